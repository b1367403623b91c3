//! Snowflake as a `crest` target (`snowflake://ACCOUNT/DATABASE/SCHEMA`).

use crate::{Snowflake, SnowflakeTarget};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use crest_core::benchmarks::Benchmark;
use crest_core::load::{run_load, Destination, LoadOptions, LoadOutcome, LoadPlan};
use crest_core::target::{Kind, Opening, Target};
use crest_core::Result;
use futures::future::LocalBoxFuture;

pub const KIND: Kind = Kind {
    scheme: "snowflake",
    form: "snowflake://ACCOUNT/DATABASE/SCHEMA",
    open: Ok(open),
};

fn open<'a>(o: &'a Opening<'a>) -> LocalBoxFuture<'a, Result<Box<dyn Target>>> {
    Box::pin(async move { Ok(Box::new(Snowflake::connect(SnowflakeTarget::parse(o.spec)?)?) as Box<dyn Target>) })
}

#[async_trait::async_trait(?Send)]
impl Target for Snowflake {
    fn describe(&self) -> String {
        Destination::describe(self)
    }

    async fn load(
        &self,
        plan: &LoadPlan,
        schemas: &[(&'static str, SchemaRef)],
        options: LoadOptions,
    ) -> Result<LoadOutcome> {
        run_load(self, plan, schemas, options).await
    }

    fn traffic(&self) -> Option<(u64, u64)> {
        Destination::traffic(self)
    }

    async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        Snowflake::query(self, sql).await
    }

    async fn apply_views(&self) -> Result<()> {
        Snowflake::apply_views(self).await
    }

    async fn load_benchmarks(&self, rows: &[Benchmark]) -> Result<()> {
        Snowflake::load_benchmarks(self, rows).await
    }

    async fn ensure_alert_log(&self) -> Result<()> {
        Snowflake::ensure_alert_log(self).await
    }

    async fn append_alert_log(&self, _evaluation_id: &str, batch: &RecordBatch) -> Result<()> {
        Snowflake::append_alert_log(self, batch).await
    }

    async fn mark_alerts_delivered(&self, evaluation_id: &str, at: DateTime<Utc>) -> Result<()> {
        let at = at.format("%Y-%m-%d %H:%M:%S%.6f").to_string();
        Snowflake::mark_alerts_delivered(self, evaluation_id, &at).await
    }
}
