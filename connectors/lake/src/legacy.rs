//! crest's earlier lake format (date pointers) and `crest lake migrate`,
//! which converts it to Delta tables once:
//!
//! ```text
//! {lake}/{table}/date=YYYY-MM-DD/_partition.json   which files made the date
//! {lake}/{table}/date=YYYY-MM-DD/{load_id}-{n}.parquet
//! {lake}/{table}/_schema.parquet                   the table's schema (no rows)
//! {lake}/_loads/{load_id}.json                     each load's record
//! ```
//!
//! Each table becomes one Delta commit holding every date's rows and, as
//! application transactions, every earlier load's manifest checksum (so
//! re-loading an old run stays a no-op). Only after that commit are the old
//! files removed, `_schema.parquet` last: a migration killed at any point is
//! finished by running it again, and a reader never sees a mix.

use crate::delta::{app_id, arrow_schema, conform, delta_err, PARTITION};
use crate::{Lake, LEGACY_SCHEMA_FILE};
use crest_core::load::LoadRecord;
use crest_core::{Error, Result};
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Deserialize;

const POINTER: &str = "_partition.json";
/// The commit metadata key of a migration: the earlier loads' records.
pub(crate) const MIGRATED_KEY: &str = "crest_migrated";

#[derive(Debug, Deserialize)]
struct Partition {
    files: Vec<PartFile>,
}

#[derive(Debug, Deserialize)]
struct PartFile {
    name: String,
}

/// What `crest lake migrate` did to one table.
#[derive(Debug, Clone)]
pub struct Migrated {
    pub table: String,
    pub dates: usize,
    pub rows: u64,
}

impl Lake {
    /// Converts every table still in the earlier format; tables already in
    /// Delta are left as they are.
    pub async fn migrate(&self, tables: &[&'static str]) -> Result<Vec<Migrated>> {
        let loads = self.legacy_loads().await?;
        let mut out = Vec::new();
        for table in tables {
            let Some(bytes) = self.loc.get(&format!("{table}/{LEGACY_SCHEMA_FILE}")).await? else {
                continue;
            };
            let schema = ParquetRecordBatchReaderBuilder::try_new(bytes)
                .map_err(|e| {
                    Error::Storage(format!(
                        "{}/{table}/{LEGACY_SCHEMA_FILE} is not readable: {e}",
                        self.loc
                    ))
                })?
                .schema()
                .clone();
            out.push(self.migrate_table(table, &schema, &loads).await?);
        }
        // The records live on in the tables' commits now, once no table is
        // left to migrate (`--table` migrates one at a time).
        for table in crate::KNOWN_TABLES {
            if self.loc.get(&format!("{table}/{LEGACY_SCHEMA_FILE}")).await?.is_some() {
                return Ok(out);
            }
        }
        for meta in self.loc.list("_loads").await? {
            let rel = self.loc.relative(&meta.location);
            self.loc.delete(&rel).await?;
        }
        Ok(out)
    }

    async fn legacy_loads(&self) -> Result<Vec<LoadRecord>> {
        let mut out = Vec::new();
        for meta in self.loc.list("_loads").await? {
            let rel = self.loc.relative(&meta.location);
            if rel.ends_with(".json") {
                if let Some(r) = self.loc.get_json::<LoadRecord>(&rel).await? {
                    out.push(r);
                }
            }
        }
        out.sort_by(|a, b| a.load_id.cmp(&b.load_id));
        Ok(out)
    }

    async fn migrate_table(
        &self,
        table: &'static str,
        schema: &arrow::datatypes::SchemaRef,
        loads: &[LoadRecord],
    ) -> Result<Migrated> {
        // Every date's pointer and the files it names.
        let mut pointers: Vec<(String, chrono::NaiveDate, Partition)> = Vec::new();
        for meta in self.loc.list(table).await? {
            let rel = self.loc.relative(&meta.location);
            if !rel.ends_with(POINTER) {
                continue;
            }
            let dir = rel.trim_end_matches(POINTER).trim_end_matches('/').to_string();
            let date = dir
                .rsplit("date=")
                .next()
                .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
                .ok_or_else(|| Error::Storage(format!("{}/{dir} is not a date partition", self.loc)))?;
            if let Some(p) = self.loc.get_json::<Partition>(&rel).await? {
                pointers.push((dir, date, p));
            }
        }
        pointers.sort_by_key(|p| p.1);
        let t = match self.open_table_as_is(table, None).await? {
            Some(t) => t,
            None => {
                self.prepare_tables_unchecked(&[(table, schema.clone())]).await?;
                self.open_table_as_is(table, None)
                    .await?
                    .ok_or_else(|| Error::Storage(format!("{}/{table} is missing after it was created", self.loc)))?
            }
        };
        let done = t
            .history(None)
            .await
            .map_err(|e| delta_err(&format!("cannot read the history of {}/{table}", self.loc), e))?
            .any(|c| c.info.contains_key(MIGRATED_KEY));
        let mut rows = 0u64;
        if !done {
            let table_schema = arrow_schema(&t)?;
            let mut adds = Vec::new();
            for (dir, _, p) in &pointers {
                let mut writer = RecordBatchWriter::for_table(&t)
                    .map_err(|e| delta_err(&format!("cannot write to {}/{table}", self.loc), e))?;
                for f in &p.files {
                    let rel = format!("{dir}/{}", f.name);
                    let bytes = self.loc.get(&rel).await?.ok_or_else(|| {
                        Error::Storage(format!("{}/{rel} is named by its date's pointer but missing", self.loc))
                    })?;
                    let unreadable =
                        |e: &dyn std::fmt::Display| Error::Storage(format!("{}/{rel} is not readable: {e}", self.loc));
                    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                        .map_err(|e| unreadable(&e))?
                        .build()
                        .map_err(|e| unreadable(&e))?;
                    for b in reader {
                        let b = b.map_err(|e| unreadable(&e))?;
                        rows += b.num_rows() as u64;
                        writer
                            .write(conform(&b, &table_schema)?)
                            .await
                            .map_err(|e| delta_err(&format!("cannot write to {}/{table}", self.loc), e))?;
                    }
                }
                adds.extend(
                    writer
                        .flush()
                        .await
                        .map_err(|e| delta_err(&format!("cannot write to {}/{table}", self.loc), e))?,
                );
            }
            let mut properties = CommitProperties::default().with_metadata([(
                MIGRATED_KEY.to_string(),
                serde_json::to_value(
                    loads
                        .iter()
                        .filter(|l| l.tables.iter().any(|r| r.table == table))
                        .collect::<Vec<_>>(),
                )
                .map_err(|e| Error::Storage(e.to_string()))?,
            )]);
            let mut seen = std::collections::BTreeSet::new();
            for l in loads.iter().filter(|l| l.tables.iter().any(|r| r.table == table)) {
                if seen.insert(l.manifest_checksum.clone()) {
                    properties =
                        properties.with_application_transaction(Transaction::new(app_id(&l.manifest_checksum), 0));
                }
            }
            let snapshot = t.snapshot().map_err(|e| delta_err("cannot read the table", e))?;
            // Two migrations at once: one commits, the other stops (run again: done).
            properties = properties.with_max_retries(0);
            CommitBuilder::from(properties)
                .with_actions(adds.into_iter().map(Action::Add).collect())
                .build(
                    Some(snapshot),
                    t.log_store(),
                    DeltaOperation::Write {
                        mode: SaveMode::Append,
                        partition_by: Some(vec![PARTITION.to_string()]),
                        predicate: None,
                    },
                )
                .await
                .map_err(|e| {
                    Error::Storage(crest_core::error::one_line(&format!(
                        "cannot commit the migration of {}/{table} ({e}): another migration may be running; run crest lake migrate again",
                        self.loc
                    )))
                })?;
        }
        // Committed: the old files go, the schema marker last.
        for (dir, _, p) in &pointers {
            for f in &p.files {
                self.loc.delete(&format!("{dir}/{}", f.name)).await?;
            }
            self.loc.delete(&format!("{dir}/{POINTER}")).await?;
        }
        self.loc.delete(&format!("{table}/{LEGACY_SCHEMA_FILE}")).await?;
        Ok(Migrated {
            table: table.to_string(),
            dates: pointers.len(),
            rows,
        })
    }
}
