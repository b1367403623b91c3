//! crest's BigQuery target: `bigquery://PROJECT/DATASET`.
//!
//! Tables are created through the tables API, partitioned by `date`,
//! clustered by `platform, creator_id`, every column described from the
//! canonical schema's documentation. A load stages the run's rows in a
//! staging table, through a BigQuery load job when the canonical Parquet sits
//! in GCS (`gs://`), otherwise through the Storage Write API (one pending
//! stream per table, committed atomically) with gcp-bigquery-client's
//! generated gRPC client; then one MERGE per table (`sql/bigquery/merge.sql`)
//! de-duplicates on the natural key and replaces the run's dates row for row.
//!
//! Credentials: `GOOGLE_OAUTH_ACCESS_TOKEN` (a token, e.g. from
//! `gcloud auth print-access-token`), else `GOOGLE_APPLICATION_CREDENTIALS`
//! (a service-account key file), else gcloud's application-default
//! credentials. `CREST_BIGQUERY_BASE_URL` and `CREST_BIGQUERY_STORAGE_URL`
//! reach other endpoints (a proxy, an emulator).

mod client;
mod config;
mod dialect;
mod read;
mod rows;
mod schema;
mod stage;
mod target;

pub use client::BigQuery;
pub use config::BigQueryTarget;

use client::{already_done, job_id, one_line};
use schema::{bq_field, field_type, type_name, Bq};

pub use target::KIND;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use crest_core::http::{RetryPolicy, Verdict};
use crest_core::load::{Destination, LoadPlan, LoadRecord, TableReport};
use crest_core::retry;
use crest_core::warehouse::{self, Literal, Quote, Statements};
use crest_core::{Error, Result, Secret};
use crest_sql::bigquery::{
    ADD_COLUMN, ALERT_LOG_CREATE, ALERT_LOG_DELIVERED, APPEND, BENCHMARKS_CREATE, BENCHMARKS_EVOLVE,
    BENCHMARKS_REPLACE, COUNTS, LOADED, MERGE, UTM_HYGIENE_CREATE, UTM_HYGIENE_EVOLVE, VIEWS,
};
use gcp_bigquery_client::auth::Authenticator;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::google::cloud::bigquery::storage::v1 as storage;
use gcp_bigquery_client::model::field_type::FieldType;
use gcp_bigquery_client::model::query_request::QueryRequest;
use gcp_bigquery_client::model::table::Table;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use gcp_bigquery_client::model::table_schema::TableSchema;
use gcp_bigquery_client::Client;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How long a load job may run before the load gives up (a day's rows load in
/// seconds; polling never runs unbounded).
const LOAD_JOB_DEADLINE: std::time::Duration = std::time::Duration::from_secs(3600);

/// A Storage Write request must stay under 10 MB.
const APPEND_BYTES: usize = 8 << 20;
const DEFAULT_BASE: &str = "https://bigquery.googleapis.com";
const DEFAULT_STORAGE: &str = "https://bigquerystorage.googleapis.com";

/// What `stage` leaves for `merge`: each table's schema as staged.
pub struct Staged(Vec<(&'static str, SchemaRef)>);

impl Destination for BigQuery {
    fn describe(&self) -> String {
        self.describe_target()
    }

    async fn loaded(&self, plan: &LoadPlan) -> Result<Option<LoadRecord>> {
        let checksum = plan.checksum.as_str();
        if self.table(crest_core::load::LOADS_TABLE).await?.is_none() {
            return Ok(None);
        }
        let sql = warehouse::render_loaded(
            LOADED,
            &Bq,
            &self.name(crest_core::load::LOADS_TABLE),
            &Bq.string(checksum),
        )?;
        Ok(crest_core::load::record_from_rows(
            checksum,
            &self.run(&sql).await?.text(),
        ))
    }

    async fn prepare(&self, schemas: &[(&'static str, SchemaRef)], create: bool) -> Result<Vec<String>> {
        self.count(0);
        match self
            .call("BigQuery datasets.get", || {
                self.client.dataset().get(&self.target.project, &self.target.dataset)
            })
            .await
        {
            Ok(_) => {}
            Err(e) if Self::is_not_found(&e) => {
                if !create {
                    return Err(Error::Config(format!(
                        "{} does not exist: create the dataset, or pass --create to let crest create it",
                        self.describe_target()
                    )));
                }
                let mut ds =
                    gcp_bigquery_client::model::dataset::Dataset::new(&self.target.project, &self.target.dataset);
                if let Some(l) = &self.target.location {
                    ds = ds.location(l);
                }
                self.count(0);
                match self
                    .call("BigQuery datasets.insert", || self.client.dataset().create(ds.clone()))
                    .await
                {
                    Ok(_) => {}
                    Err(e) if already_done(&e) => {}
                    Err(e) => return Err(self.error(e, "creating the dataset")),
                }
            }
            Err(e) => return Err(self.error(e, "reading the dataset")),
        }
        let mut all: Vec<(&str, SchemaRef, bool)> = schemas.iter().map(|(t, s)| (*t, s.clone(), true)).collect();
        all.push((crest_core::load::LOADS_TABLE, crest_core::load::loads_schema(), false));
        let mut problems = Vec::new();
        let mut widen = Vec::new();
        let mut creates = Vec::new();
        for (table, schema, canonical) in &all {
            let Some(existing) = self.table(table).await? else {
                creates.push((*table, schema.clone(), *canonical));
                continue;
            };
            let held: Vec<(String, String)> = existing
                .schema
                .fields
                .as_ref()
                .map(|fs| fs.iter().map(|f| (f.name.clone(), type_name(&f.r#type))).collect())
                .unwrap_or_default();
            let input: Vec<(String, String, bool)> = schema
                .fields()
                .iter()
                .map(|f| {
                    let ty = field_type(f.data_type())
                        .map(|t| t.1.to_string())
                        .unwrap_or_else(|| f.data_type().to_string());
                    (f.name().clone(), ty, f.is_nullable())
                })
                .collect();
            match warehouse::compare_columns(table, &held, &input) {
                Ok(added) if added.is_empty() => {}
                Ok(added) => widen.push((
                    *table,
                    existing,
                    added.into_iter().map(|i| schema.field(i).clone()).collect::<Vec<_>>(),
                )),
                Err(p) => problems.extend(p),
            }
        }
        if !problems.is_empty() {
            return Err(Error::Data(format!(
                "the input does not fit {}, nothing was loaded: {}",
                self.describe_target(),
                problems.join("; ")
            )));
        }
        for (table, schema, canonical) in creates {
            self.create_table(table, &schema, canonical).await?;
        }
        let mut changes = Vec::new();
        for (table, mut existing, added) in widen {
            let mut fields = existing.schema.fields.take().unwrap_or_default();
            for f in &added {
                let ty = field_type(f.data_type()).map(|t| t.1).unwrap_or("STRING");
                let sql = warehouse::render(
                    ADD_COLUMN,
                    &[
                        ("table", &self.name(table)),
                        ("column", &Bq.quote(f.name())),
                        ("type", ty),
                        ("description", &Bq.string(warehouse::description(f))),
                    ],
                )?;
                self.run(&sql).await?;
                fields.push(bq_field(f)?);
                changes.push(format!("{table}: added column {} ({ty})", f.name()));
            }
            // The tables API then carries the full schema with every description.
            existing.schema.fields = Some(fields);
            self.count(serde_json::to_vec(&existing).map(|v| v.len()).unwrap_or(0));
            self.call("BigQuery tables.patch", || {
                self.client
                    .table()
                    .patch(&self.target.project, &self.target.dataset, table, existing.clone())
            })
            .await
            .map_err(|e| self.error(e, &format!("describing the columns added to {table}")))?;
        }
        Ok(changes)
    }

    type Staged = Staged;

    async fn stage(&self, plan: &LoadPlan, schemas: &[(&'static str, SchemaRef)], load_id: &str) -> Result<Staged> {
        let mut staged = Vec::new();
        let from_gcs = plan.input.to_string().starts_with("gs://");
        for t in &plan.tables {
            let schema = schemas
                .iter()
                .find(|(name, _)| *name == t.table)
                .map(|(_, s)| s.clone())
                .ok_or_else(|| Error::Data(format!("crest has no schema for {}", t.table)))?;
            let staging = warehouse::staging_name(t.table, load_id);
            // Staging takes any row: checks ran in the transform, and a NULL in a key must still merge.
            let loose = Schema::new(
                schema
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone().with_nullable(true))
                    .collect::<Vec<_>>(),
            );
            self.create_table(&staging, &loose, false).await?;
            if t.rows == 0 {
                // Nothing to stage: the merge still empties the dates the run restates.
            } else if from_gcs {
                self.load_job(plan, t.table, &staging).await?;
            } else {
                self.write_stream(plan, t.table, &staging, &schema).await?;
            }
            staged.push((t.table, schema));
        }
        Ok(Staged(staged))
    }

    async fn merge(&self, plan: &LoadPlan, load_id: &str, staged: Staged) -> Result<Vec<TableReport>> {
        warehouse::merge_staged(self, plan, load_id, staged.0).await
    }

    async fn abort(&self, plan: &LoadPlan, load_id: &str) {
        warehouse::drop_staging(self, plan, load_id).await;
    }

    async fn record(&self, record: &LoadRecord) -> Result<()> {
        let batch = crest_core::load::loads_batch(std::slice::from_ref(record))?;
        let columns = batch
            .schema()
            .fields()
            .iter()
            .map(|f| Bq.quote(f.name()))
            .collect::<Vec<_>>()
            .join(", ");
        let values = warehouse::value_rows(&batch, &Bq)?.join(",\n");
        self.run(&format!(
            "INSERT INTO {} ({columns}) VALUES\n{values}",
            self.name(crest_core::load::LOADS_TABLE)
        ))
        .await
        .map(|_| ())
    }

    fn traffic(&self) -> Option<(u64, u64)> {
        Some((self.calls.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_bad_ones_say_why() {
        let t = BigQueryTarget::parse("bigquery://my-proj/crest_prod?location=EU").unwrap();
        assert_eq!(
            (t.project.as_str(), t.dataset.as_str(), t.location.as_deref()),
            ("my-proj", "crest_prod", Some("EU"))
        );
        for bad in [
            "bigquery://p",
            "bigquery://p/d/x",
            "bigquery://P_Q/d",
            "bigquery://p/bad-name",
            "bigquery://p/d?x=1",
        ] {
            let e = BigQueryTarget::parse(bad).unwrap_err().to_string();
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn string_literals_escape() {
        assert_eq!(Bq.string("it's \\ x\n"), r"'it\'s \\ x\n'");
    }
}
