//! A target: where canonical tables are loaded, asked and decided on — the
//! embedded lake or a warehouse. `crest` never names one: it opens whatever a
//! `--target` spec names through a [`Registry`] of [`Kind`]s keyed by URL
//! scheme (`lake:`, `bigquery://`, `snowflake://`), the way object stores are
//! chosen by their URL. A new warehouse is a folder that implements
//! [`Target`] (its loads through [`crate::load::Destination`]) and exports a
//! [`Kind`]; the `crest` binary registers it in one line.

use crate::benchmarks::Benchmark;
use crate::load::{LoadOptions, LoadOutcome, LoadPlan};
use crate::{Error, Result};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use futures::future::LocalBoxFuture;

/// What `crest` does with a target. One target per process, driven on one
/// task: the futures need not be `Send`.
#[async_trait::async_trait(?Send)]
pub trait Target {
    /// How the target prints in messages (never with credentials).
    fn describe(&self) -> String;
    /// Loads a transform run (see [`crate::load::run_load`]).
    async fn load(
        &self,
        plan: &LoadPlan,
        schemas: &[(&'static str, SchemaRef)],
        options: LoadOptions,
    ) -> Result<LoadOutcome>;
    /// API calls made and request bytes sent so far (warehouses).
    fn traffic(&self) -> Option<(u64, u64)> {
        None
    }
    /// Runs SQL in the target's dialect, its tables and views visible.
    async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>>;
    /// Creates or replaces the decision layer's views ([`crate::views::VIEWS`]).
    async fn apply_views(&self) -> Result<()>;
    /// Replaces the benchmarks table with checked rows, all at once.
    async fn load_benchmarks(&self, rows: &[Benchmark]) -> Result<()>;
    /// Creates `alert_log` where it does not exist yet.
    async fn ensure_alert_log(&self) -> Result<()>;
    /// Adds an evaluation's rows to `alert_log`, undelivered.
    async fn append_alert_log(&self, evaluation_id: &str, batch: &RecordBatch) -> Result<()>;
    /// Marks an evaluation delivered.
    async fn mark_alerts_delivered(&self, evaluation_id: &str, at: DateTime<Utc>) -> Result<()>;
    /// Appends one links audit's rows (`crate::utm_hygiene`), all or none.
    async fn append_utm_hygiene(&self, batch: &RecordBatch) -> Result<()>;
}

/// What opening a target needs besides its spec.
pub struct Opening<'a> {
    /// The whole `--target` value, e.g. `bigquery://my-project/crest`.
    pub spec: &'a str,
    /// The target must exist already (query, views, alerts), not be created by a load.
    pub existing: bool,
    /// The canonical tables and their schemas, for a target that has not
    /// loaded one of them yet (the lake answers with an empty table).
    pub tables: &'a [(&'static str, SchemaRef)],
}

/// Opens a target from its spec.
pub type Open = for<'a> fn(&'a Opening<'a>) -> LocalBoxFuture<'a, Result<Box<dyn Target>>>;

/// A kind of target: its scheme, how its spec is written, how it opens.
#[derive(Clone, Copy)]
pub struct Kind {
    /// The spec's scheme, before the `:`.
    pub scheme: &'static str,
    /// The spec's form for help and errors, e.g. `bigquery://PROJECT/DATASET`.
    pub form: &'static str,
    /// `Err`: this build of crest leaves the target out, and the text says how to get it.
    pub open: std::result::Result<Open, &'static str>,
}

/// The kinds of target a build of crest speaks to.
#[derive(Default)]
pub struct Registry {
    kinds: Vec<Kind>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(mut self, kind: Kind) -> Self {
        self.kinds.retain(|k| k.scheme != kind.scheme);
        self.kinds.push(kind);
        self
    }

    /// The specs this build accepts, for help and errors:
    /// "lake:PATH_OR_URL, bigquery://PROJECT/DATASET or …".
    pub fn forms(&self) -> String {
        let forms: Vec<&str> = self.kinds.iter().map(|k| k.form).collect();
        match forms.split_last() {
            None => String::new(),
            Some((last, [])) => (*last).to_string(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        }
    }

    /// The kind a spec names, by its scheme.
    pub fn kind(&self, spec: &str) -> Result<&Kind> {
        let scheme = spec.trim().split(':').next().unwrap_or_default().to_ascii_lowercase();
        self.kinds.iter().find(|k| k.scheme == scheme).ok_or_else(|| {
            Error::Config(format!(
                "--target '{}' is not a target: write {}",
                spec.trim(),
                self.forms()
            ))
        })
    }

    /// Opens the target a spec names.
    pub async fn open(
        &self,
        spec: &str,
        existing: bool,
        tables: &[(&'static str, SchemaRef)],
    ) -> Result<Box<dyn Target>> {
        let kind = self.kind(spec)?;
        let open = kind.open.map_err(|why| Error::Config(why.to_string()))?;
        open(&Opening {
            spec: spec.trim(),
            existing,
            tables,
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lake<'a>(_: &'a Opening<'a>) -> LocalBoxFuture<'a, Result<Box<dyn Target>>> {
        Box::pin(async { Err(Error::Config("opened".into())) })
    }

    fn registry() -> Registry {
        Registry::new()
            .register(Kind {
                scheme: "lake",
                form: "lake:PATH_OR_URL",
                open: Ok(lake),
            })
            .register(Kind {
                scheme: "bigquery",
                form: "bigquery://PROJECT/DATASET",
                open: Err("this crest was built without BigQuery"),
            })
    }

    #[test]
    fn a_spec_opens_the_kind_its_scheme_names() {
        let r = registry();
        assert_eq!(r.forms(), "lake:PATH_OR_URL or bigquery://PROJECT/DATASET");
        let err = |spec: &str| match futures::executor::block_on(r.open(spec, false, &[])) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{spec} opened"),
        };
        assert!(err(" LAKE:./x").contains("opened"));
        assert!(err("bigquery://p/d").contains("built without BigQuery"));
        let unknown = err("postgres://h/db");
        assert!(unknown.contains("'postgres://h/db' is not a target"), "{unknown}");
        assert!(
            unknown.contains("lake:PATH_OR_URL or bigquery://PROJECT/DATASET"),
            "{unknown}"
        );
    }
}
