//! The lake as a `crest` target (`lake:PATH_OR_URL`).

use crate::Lake;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use crest_core::benchmarks::Benchmark;
use crest_core::load::{run_load, Destination, LoadOptions, LoadOutcome, LoadPlan};
use crest_core::storage::Location;
use crest_core::target::{Kind, Opening, Target};
use crest_core::{Error, Result};
use futures::future::LocalBoxFuture;

/// `lake:PATH_OR_URL`: a local folder or any object store URL.
pub const KIND: Kind = Kind {
    scheme: "lake",
    form: "lake:PATH_OR_URL",
    open: Ok(open),
};

/// A lake and the canonical tables it answers for before it has loaded them.
struct LakeTarget {
    lake: Lake,
    tables: Vec<(&'static str, SchemaRef)>,
}

fn open<'a>(o: &'a Opening<'a>) -> LocalBoxFuture<'a, Result<Box<dyn Target>>> {
    Box::pin(async move {
        let rest = o.spec.split_once(':').map(|(_, r)| r.trim()).unwrap_or_default();
        if rest.is_empty() {
            return Err(Error::Config(
                "--target lake: needs a path or URL, e.g. lake:./crest-lake".into(),
            ));
        }
        let loc = if o.existing {
            Location::parse_existing(rest).map_err(|e| match e {
                Error::Config(m) => Error::Config(format!("{m}: run crest load into it first, or give --target")),
                other => other,
            })?
        } else {
            Location::parse(rest)?
        };
        Ok(Box::new(LakeTarget {
            lake: Lake::new(loc),
            tables: o.tables.to_vec(),
        }) as Box<dyn Target>)
    })
}

#[async_trait::async_trait(?Send)]
impl Target for LakeTarget {
    fn describe(&self) -> String {
        Destination::describe(&self.lake)
    }

    async fn load(
        &self,
        plan: &LoadPlan,
        schemas: &[(&'static str, SchemaRef)],
        options: LoadOptions,
    ) -> Result<LoadOutcome> {
        run_load(&self.lake, plan, schemas, options).await
    }

    async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        self.lake.query(&self.tables, sql).await
    }

    async fn apply_views(&self) -> Result<()> {
        self.lake.apply_views(&self.tables).await
    }

    async fn load_benchmarks(&self, rows: &[Benchmark]) -> Result<()> {
        self.lake.load_benchmarks(rows).await
    }

    async fn ensure_alert_log(&self) -> Result<()> {
        // The lake's log is a folder of files: nothing to create.
        Ok(())
    }

    async fn append_alert_log(&self, evaluation_id: &str, batch: &RecordBatch) -> Result<()> {
        self.lake.append_alert_log(evaluation_id, batch).await
    }

    async fn mark_alerts_delivered(&self, evaluation_id: &str, at: DateTime<Utc>) -> Result<()> {
        self.lake
            .mark_alerts_delivered(evaluation_id, at.timestamp_micros())
            .await
    }

    async fn append_utm_hygiene(&self, batch: &RecordBatch) -> Result<()> {
        self.lake.append_utm_hygiene(batch).await
    }
}
