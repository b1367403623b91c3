//! Secrets are read from the environment or a file, never from flags, and
//! never printed: `Debug` and `Display` show a placeholder.

use crate::{Error, Result};
use std::fmt;

#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// Reads `VAR`, or the file named by `VAR_FILE` (the Docker/Kubernetes secrets convention).
    pub fn from_env(var: &str) -> Result<Self> {
        if let Ok(v) = std::env::var(var) {
            let v = v.trim().to_string();
            if !v.is_empty() {
                return Ok(Secret(v));
            }
        }
        let file_var = format!("{var}_FILE");
        if let Ok(path) = std::env::var(&file_var) {
            let v = std::fs::read_to_string(&path)
                .map_err(|e| Error::Config(format!("cannot read {file_var} ({path}): {e}")))?;
            let v = v.trim().to_string();
            if !v.is_empty() {
                return Ok(Secret(v));
            }
            return Err(Error::Config(format!("{file_var} ({path}) is empty")));
        }
        Err(Error::Auth(format!(
            "{var} is not set: export {var}=<token> (or {var}_FILE=<path to a file holding it>)"
        )))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Removes this secret from a text that may echo it (error bodies, URLs).
    pub fn scrub(&self, text: &str) -> String {
        if self.0.len() < 4 {
            return text.to_string();
        }
        text.replace(&self.0, "***")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_formats_its_value() {
        let s = Secret::new("abcd1234");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
        assert_eq!(s.scrub("token=abcd1234&x=1"), "token=***&x=1");
    }
}
