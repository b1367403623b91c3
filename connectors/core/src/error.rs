//! One error type for every connector. Its kind decides the exit code, so the
//! same classification drives what Airflow sees and what an operator reads.

use std::process::ExitCode;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A user-facing failure. Every message is one line that says what was wrong
/// and what to do; none carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad flags, dates, config or environment (exit 2).
    #[error("{0}")]
    Config(String),
    /// Credentials missing, rejected or expired (exit 3).
    #[error("{0}")]
    Auth(String),
    /// The platform API failed after retries or answered something unusable (exit 4).
    #[error("{0}")]
    Upstream(String),
    /// Reading or writing the output or state location failed (exit 5).
    #[error("{0}")]
    Storage(String),
    /// The data failed a check that must hold, e.g. reconciliation (exit 6).
    #[error("{0}")]
    Data(String),
    /// Another run holds the lease on what this run would write (exit 7):
    /// retry later, or wait with `--wait-for-lease`.
    #[error("{0}")]
    Busy(String),
}

impl Error {
    /// Documented exit codes: 0 ok, 2 usage/config, 3 auth, 4 upstream API error, 5 storage, 6 data check, 7 busy (another run holds the lease).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => 2,
            Error::Auth(_) => 3,
            Error::Upstream(_) => 4,
            Error::Storage(_) => 5,
            Error::Data(_) => 6,
            Error::Busy(_) => 7,
        }
    }

    pub fn exit(&self) -> ExitCode {
        ExitCode::from(self.exit_code())
    }

    /// The same error (and exit code) with where it happened in front, e.g.
    /// "extract tiktok 7265…: …" when `crest run` names the failing stage.
    pub fn context(self, context: impl std::fmt::Display) -> Self {
        let with = |m: String| format!("{context}: {m}");
        match self {
            Error::Config(m) => Error::Config(with(m)),
            Error::Auth(m) => Error::Auth(with(m)),
            Error::Upstream(m) => Error::Upstream(with(m)),
            Error::Storage(m) => Error::Storage(with(m)),
            Error::Data(m) => Error::Data(with(m)),
            Error::Busy(m) => Error::Busy(with(m)),
        }
    }

    pub fn storage(context: impl std::fmt::Display, err: impl std::fmt::Display) -> Self {
        Error::Storage(one_line(&format!("{context}: {err}")))
    }
}

/// One line, cut at `max` characters: a warehouse may quote a whole statement back.
pub fn brief(s: &str, max: usize) -> String {
    let line = one_line(s);
    match line.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

/// Collapses a multi-line message (nested causes, response bodies) into one line.
pub fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for part in s.split(['\n', '\r']).map(str::trim).filter(|p| !p.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(part);
    }
    out
}
