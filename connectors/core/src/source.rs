//! The platforms `crest run` drives, each described once by its connector
//! (the way a target is by [`crate::target::Kind`]): the name of its table
//! in the run's config, how that table becomes the connector's extract flags,
//! and the extract itself. `crest run` reads the config, hands each platform
//! its table, and never names a platform.

use crate::manifest::RunManifest;
use crate::Result;
use futures::future::LocalBoxFuture;
use serde::de::{DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

/// What a platform's table asks of its connector.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Section {
    /// The accounts it names, for the run's summary.
    pub accounts: Vec<String>,
    /// The connector's own extract flags (`--flag=value`: ids, options);
    /// `crest run` adds the dates, output, state, lease and the budget below.
    pub flags: Vec<String>,
    /// Requests per second (`--max-qps`); 0 is no budget.
    pub max_qps: Option<f64>,
    /// Days re-read before the start (`--lookback-days`).
    pub lookback_days: Option<u32>,
}

/// Why a platform's table cannot be used.
#[derive(Debug)]
pub enum SectionError {
    /// It does not parse into the platform's keys (the message names the line).
    Toml(toml::de::Error),
    /// A key holds something the platform cannot use.
    Key { key: String, problem: String },
}

impl SectionError {
    pub fn key(key: impl Into<String>, problem: impl Into<String>) -> Self {
        SectionError::Key {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// A platform `crest run` can drive.
pub struct Source {
    /// Its table in the config (`[tiktok]`), its state file and its name in logs.
    pub name: &'static str,
    /// Whether it reads hourly reports (`granularity = "hour"`, passed as
    /// `--granularity=hour`); a run by the hour refuses platforms that do not.
    pub hourly: bool,
    /// The brand's site analytics (GA4), not an ad platform: its rows are not
    /// transformed but credited to creators (`crest attribute`) after the load.
    pub site: bool,
    /// Reads the platform's table out of the whole config text, if present.
    pub section: fn(&str) -> std::result::Result<Option<Section>, SectionError>,
    /// The connector's extract with flags as on its command line, reporting
    /// through the caller.
    pub extract: fn(Vec<String>) -> LocalBoxFuture<'static, Result<Vec<RunManifest>>>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("name", &self.name)
            .field("hourly", &self.hourly)
            .field("site", &self.site)
            .finish()
    }
}

/// The table `name` of a TOML document as `T`, if the document has one;
/// errors carry the document's line numbers.
pub fn table<T: DeserializeOwned>(text: &str, name: &str) -> std::result::Result<Option<T>, SectionError> {
    let document = toml::de::Deserializer::parse(text).map_err(SectionError::Toml)?;
    Pick::<T> {
        name,
        table: std::marker::PhantomData,
    }
    .deserialize(document)
    .map_err(SectionError::Toml)
}

struct Pick<'n, T> {
    name: &'n str,
    table: std::marker::PhantomData<T>,
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for Pick<'_, T> {
    type Value = Option<T>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<Option<T>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, T: DeserializeOwned> Visitor<'de> for Pick<'_, T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "a TOML document")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Option<T>, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == self.name {
                found = Some(map.next_value::<T>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// `--flag=a,b` for a list of ids; nothing for none.
pub fn ids_flag(flag: &str, ids: &[String]) -> Option<String> {
    (!ids.is_empty()).then(|| format!("{flag}={}", ids.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct T {
        ids: Vec<String>,
    }

    #[test]
    fn picks_one_table_and_names_the_line_of_a_bad_key() {
        let text = "out = \"x\"\n[other]\nk = 1\n[p]\nids = [\"1\"]\n";
        assert_eq!(table::<T>(text, "p").unwrap(), Some(T { ids: vec!["1".into()] }));
        assert_eq!(table::<T>(text, "missing").unwrap(), None);
        let Err(SectionError::Toml(e)) = table::<T>("out = 1\n[p]\nids = \"x\"\n", "p") else {
            panic!("a string is not a list")
        };
        assert!(e.to_string().contains("line 3"), "{e}");
        assert!(e.message().contains("expected a sequence"), "{}", e.message());
    }
}
