//! The lake's canonical tables as Delta Lake tables (delta-rs): one table per
//! canonical table at `{lake}/{table}`, partitioned by `date`.
//!
//! A load is one Delta commit per table: it removes every file of the dates
//! the run restates and adds the run's files in the same commit, so a reader
//! of any engine sees the table before or after the load, never between. The
//! commit carries the load's identity twice: as an application transaction
//! (`txn`, app id `crest-load:{manifest checksum}`), which makes a re-load a
//! no-op, and as `crest` commit metadata, from which `crest_loads` is read.
//!
//! Commits are optimistic: each is made on the latest version, and when
//! another load committed first the work is redone on the new version (the
//! rows to keep are read again), so two loads at once never lose or double a
//! row. Files written for a commit that never happened are invisible to every
//! reader; `abort` removes them and `crest lake vacuum` any a killed load left.

use crate::Lake;
use arrow::array::{new_null_array, Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::{Field, Schema, SchemaRef};
use chrono::NaiveDate;
use crest_core::load::{LoadPlan, LoadRecord, TableReport};
use crest_core::{Error, Result};
use deltalake::kernel::engine::arrow_conversion::{TryIntoArrow, TryIntoKernel};
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake::kernel::{Action, Add, Remove, StructField, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use futures::StreamExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Every table is partitioned by its reporting date.
pub(crate) const PARTITION: &str = "date";
/// The application transaction id of a load: the manifest it loads.
const APP_ID_PREFIX: &str = "crest-load:";
/// The commit metadata key holding the load's record.
pub(crate) const COMMIT_KEY: &str = "crest";
/// The `tags` key naming the transform file an added file was written from.
const SOURCE_TAG: &str = "crest.source_sha256";
/// How often a commit is redone on a newer version before giving up.
const MAX_COMMIT_ATTEMPTS: u32 = 30;
/// The Delta column metadata key BI tools and catalogs read descriptions from.
const COMMENT: &str = "comment";

pub(crate) fn app_id(checksum: &str) -> String {
    format!("{APP_ID_PREFIX}{checksum}")
}

/// What a load's commit says about it (`crest` commit metadata).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CommitRecord {
    pub load_id: String,
    pub run_id: String,
    pub manifest: String,
    pub manifest_checksum: String,
    pub rows: u64,
    pub loaded_at: chrono::DateTime<chrono::Utc>,
    pub table: TableReport,
    #[serde(default)]
    pub schema_changes: Vec<String>,
    /// The files the load set for each date it replaced, with the transform
    /// file (SHA-256) each was written from (none for rows kept from other
    /// accounts): a date still made of the same transform files is unchanged.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<NaiveDate, Vec<CommitFile>>,
}

/// A commit's `crest` record, if a crest load made it.
pub(crate) fn commit_record(value: Option<&serde_json::Value>) -> Option<CommitRecord> {
    value.and_then(|v| serde_json::from_value::<CommitRecord>(v.clone()).ok())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CommitFile {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

pub(crate) fn delta_err(what: &str, e: DeltaTableError) -> Error {
    match e {
        DeltaTableError::ObjectStore { source } => Error::storage(what, source),
        e => Error::Storage(crest_core::error::one_line(&format!("{what}: {e}"))),
    }
}

/// A commit lost to another writer's: redo it on the new version.
fn lost_race(e: &DeltaTableError) -> bool {
    matches!(
        e,
        DeltaTableError::VersionAlreadyExists(_)
            | DeltaTableError::Transaction {
                source: TransactionError::VersionAlreadyExists(_)
                    | TransactionError::MaxCommitAttempts(_)
                    | TransactionError::CommitConflict(_)
            }
    )
}

/// delta-rs opens `file://` and `memory://` tables by itself; crest hands it
/// its own store for the clouds, whose commits are conditional puts
/// (`PutMode::Create`), so the default log store is safe there too.
fn register_cloud_schemes() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let factories = deltalake::logstore::logstore_factories();
        let Some(default) = url::Url::parse("file://")
            .ok()
            .and_then(|u| factories.get(&u).map(|f| f.value().clone()))
        else {
            return;
        };
        for scheme in ["s3", "s3a", "gs", "az", "abfs", "abfss", "azure"] {
            if let Ok(u) = url::Url::parse(&format!("{scheme}://")) {
                if !factories.contains_key(&u) {
                    factories.insert(u, default.clone());
                }
            }
        }
    });
}

/// Which snapshot a reader opens.
#[derive(Debug, Clone)]
pub enum AsOf {
    Version(i64),
    Timestamp(chrono::DateTime<chrono::Utc>),
}

impl AsOf {
    /// `--as-of`: a table version (an integer) or a time (RFC 3339, or a date
    /// for its start in UTC).
    pub fn parse(s: &str) -> Result<AsOf> {
        let s = s.trim();
        if let Ok(v) = s.parse::<i64>() {
            if v < 0 {
                return Err(Error::Config(format!("--as-of {s}: a version is 0 or more")));
            }
            return Ok(AsOf::Version(v));
        }
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
            return Ok(AsOf::Timestamp(t.with_timezone(&chrono::Utc)));
        }
        if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return Ok(AsOf::Timestamp(d.and_time(chrono::NaiveTime::MIN).and_utc()));
        }
        Err(Error::Config(format!(
            "--as-of {s}: give a table version (e.g. 12, see crest lake history) or a time (2026-12-01T09:00:00Z or 2026-12-01)"
        )))
    }
}

/// The Delta schema of a canonical table: its columns with their
/// descriptions as `comment`.
fn delta_fields(schema: &Schema) -> Result<Vec<StructField>> {
    schema
        .fields()
        .iter()
        .map(|f| {
            let t: deltalake::kernel::DataType = f
                .data_type()
                .try_into_kernel()
                .map_err(|e| Error::Data(format!("{} cannot be a Delta column: {e}", f.name())))?;
            let field = StructField::new(f.name(), t, f.is_nullable());
            Ok(match f.metadata().get(crate::DESCRIPTION) {
                Some(d) => field.with_metadata([(COMMENT.to_string(), d.clone())]),
                None => field,
            })
        })
        .collect()
}

/// The arrow schema of a Delta table as it is now.
pub(crate) fn arrow_schema(t: &DeltaTable) -> Result<SchemaRef> {
    let snapshot = t
        .snapshot()
        .map_err(|e| delta_err("cannot read the table's schema", e))?;
    let schema: Schema = snapshot
        .snapshot()
        .schema()
        .as_ref()
        .try_into_arrow()
        .map_err(|e| Error::Storage(format!("cannot read the table's schema: {e}")))?;
    Ok(Arc::new(schema))
}

/// `batch` with exactly `schema`'s columns, in its order: a column the input
/// lacks (added by a newer crest) is null, a type that differs only in
/// representation (a string view) is cast.
pub(crate) fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let n = batch.num_rows();
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            None => Ok(new_null_array(f.data_type(), n)),
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) => arrow::compute::cast(c, f.data_type())
                .map_err(|e| Error::Data(format!("{} cannot be read as {}: {e}", f.name(), f.data_type()))),
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| Error::Data(format!("the rows do not fit the table: {e}")))
}

/// A file of a table and the date partition it is in.
struct Active {
    date: Option<NaiveDate>,
    remove: Remove,
    rows: u64,
}

fn active_files(t: &DeltaTable) -> Result<Vec<Active>> {
    let snapshot = t.snapshot().map_err(|e| delta_err("cannot read the table", e))?;
    Ok(snapshot
        .log_data()
        .iter()
        .map(|f| {
            let remove = f.remove_action(true);
            let date = remove
                .partition_values
                .as_ref()
                .and_then(|p| p.get(PARTITION))
                .and_then(|v| v.as_deref())
                .and_then(|v| NaiveDate::parse_from_str(v, "%Y-%m-%d").ok());
            Active {
                date,
                rows: f.num_records().unwrap_or(0) as u64,
                remove,
            }
        })
        .collect())
}

/// What `stage` wrote for one table.
#[derive(Default)]
pub(crate) struct StagedTable {
    /// Each date's new files, with the transform file each was written from.
    adds: BTreeMap<NaiveDate, Vec<Add>>,
    unchanged: BTreeSet<NaiveDate>,
}

pub struct Staged {
    tables: BTreeMap<&'static str, StagedTable>,
}

impl Lake {
    /// The Delta table at `{lake}/{table}`, loaded (at `as_of` when given);
    /// `None` where there is none yet. A lake of the earlier format is refused.
    pub(crate) async fn open_table(&self, table: &str, as_of: Option<&AsOf>) -> Result<Option<DeltaTable>> {
        // A migration under way (or cut off) has a Delta table beside the
        // marker: its rows are not all there yet.
        self.refuse_legacy(table).await?;
        let t = self.open_table_as_is(table, as_of).await?;
        if t.is_none() {
            self.refuse_foreign(table).await?;
        }
        Ok(t)
    }

    /// [`Self::open_table`] without looking for the earlier format (migration).
    pub(crate) async fn open_table_as_is(&self, table: &str, as_of: Option<&AsOf>) -> Result<Option<DeltaTable>> {
        let mut t = self.table_handle(table)?;
        let loaded = match as_of {
            None => t.load().await,
            Some(AsOf::Version(v)) => t.load_version(*v).await,
            Some(AsOf::Timestamp(at)) => t.load_with_datetime(*at).await,
        };
        match loaded {
            Ok(()) => {
                if let Some(AsOf::Timestamp(at)) = as_of {
                    // delta-rs answers a time before the oldest version it still
                    // has with that version: a newer state, never shown as older.
                    let v = t.version().unwrap_or(0);
                    let kept = t.snapshot().ok().and_then(|s| s.snapshot().version_timestamp(v));
                    if kept.is_some_and(|ms| ms > at.timestamp_millis()) {
                        return Err(Error::Config(format!(
                            "{table} has no version as old as {at}: its oldest is version {v}; see crest lake history"
                        )));
                    }
                }
                Ok(Some(t))
            }
            Err(DeltaTableError::NotATable(_)) => Ok(None),
            Err(e) if as_of.is_some() => Err(Error::Config(crest_core::error::one_line(&format!(
                "{table} cannot be read as of that point ({e}); see its versions with crest lake history"
            )))),
            Err(e) => Err(delta_err(&format!("cannot open {}/{table}", self.loc), e)),
        }
    }

    /// An unloaded handle on `{lake}/{table}`.
    pub(crate) fn table_handle(&self, table: &str) -> Result<DeltaTable> {
        register_cloud_schemes();
        let (root, url) = self.loc.url(table)?;
        DeltaTableBuilder::from_url(url.clone())
            .map_err(|e| delta_err(&format!("{}/{table} is not a table location", self.loc), e))?
            .with_storage_backend(root, url)
            .build()
            .map_err(|e| delta_err(&format!("cannot open {}/{table}", self.loc), e))
    }

    /// Creates `{lake}/{table}`; another load creating it at the same time is fine.
    async fn create_table(&self, table: &str, schema: &Schema) -> Result<DeltaTable> {
        let handle = self.table_handle(table)?;
        let created = handle
            .create()
            .with_table_name(table)
            .with_comment(format!("crest canonical table {table}"))
            .with_columns(delta_fields(schema)?)
            .with_partition_columns([PARTITION])
            .with_save_mode(SaveMode::ErrorIfExists)
            // Another load creating it at once wins; this one then uses that table.
            .with_commit_properties(CommitProperties::default().with_max_retries(0))
            .await;
        match created {
            Ok(t) => Ok(t),
            Err(e) => match self.open_table_as_is(table, None).await? {
                Some(t) => Ok(t),
                None => Err(delta_err(&format!("cannot create {}/{table}", self.loc), e)),
            },
        }
    }

    /// Creates the tables a load writes, or adds the columns a newer schema
    /// brings (nullable, with their descriptions); an incompatible change stops
    /// with what differs and changes nothing.
    pub(crate) async fn prepare_tables(&self, schemas: &[(&'static str, SchemaRef)]) -> Result<Vec<String>> {
        for (table, _) in schemas {
            // A migration cut off leaves Delta tables beside the marker.
            self.refuse_legacy(table).await?;
            if self.open_table_as_is(table, None).await?.is_none() {
                self.refuse_foreign(table).await?;
            }
        }
        self.prepare_tables_unchecked(schemas).await
    }

    pub(crate) async fn prepare_tables_unchecked(&self, schemas: &[(&'static str, SchemaRef)]) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let mut work = Vec::new();
        for (table, input) in schemas {
            match self.open_table_as_is(table, None).await? {
                None => work.push((*table, input.clone(), None, Vec::new())),
                Some(t) => {
                    let lake = arrow_schema(&t)?;
                    let (added, bad) = crate::compare(table, &lake, input);
                    problems.extend(bad);
                    if !added.is_empty() {
                        let new: Vec<Field> = input
                            .fields()
                            .iter()
                            .filter(|g| lake.field_with_name(g.name()).is_err())
                            .map(|g| g.as_ref().clone())
                            .collect();
                        work.push((*table, Arc::new(Schema::new(new)), Some(t), added));
                    }
                }
            }
        }
        if !problems.is_empty() {
            return Err(Error::Data(format!(
                "the input does not fit the lake's tables, nothing was loaded: {}; load into a new lake or with the crest version that wrote it",
                problems.join("; ")
            )));
        }
        let mut changes = Vec::new();
        for (table, schema, existing, added) in work {
            match existing {
                None => {
                    self.create_table(table, &schema).await?;
                }
                Some(t) => {
                    t.add_columns()
                        .with_fields(delta_fields(&schema)?)
                        .await
                        .map_err(|e| delta_err(&format!("cannot add columns to {}/{table}", self.loc), e))?;
                    changes.extend(added);
                }
            }
        }
        Ok(changes)
    }

    /// The load of `checksum` if every table of the plan has committed it.
    pub(crate) async fn loaded_in(&self, plan: &LoadPlan) -> Result<Option<LoadRecord>> {
        if plan.tables.is_empty() {
            return Ok(None);
        }
        for t in &plan.tables {
            let Some(table) = self.open_table(t.table, None).await? else {
                return Ok(None);
            };
            if Self::txn_version(&table, &plan.checksum).await?.is_none() {
                return Ok(None);
            }
        }
        let tables: Vec<&str> = plan.tables.iter().map(|t| t.table).collect();
        let found = self
            .records(&tables)
            .await?
            .into_iter()
            .rev()
            .find(|r| r.manifest_checksum == plan.checksum);
        // The transactions outlive the commit log (kept in checkpoints): a run
        // loaded before the log's retention is still loaded.
        Ok(Some(found.unwrap_or_else(|| LoadRecord {
            load_id: format!("{} (its commit has left the log)", app_id(&plan.checksum)),
            run_id: plan.run_id.clone(),
            manifest: format!("{}/{}", plan.input, plan.manifest),
            manifest_checksum: plan.checksum.clone(),
            rows: plan.rows(),
            loaded_at: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            status: "succeeded".into(),
            tables: Vec::new(),
            schema_changes: Vec::new(),
        })))
    }

    async fn txn_version(t: &DeltaTable, checksum: &str) -> Result<Option<i64>> {
        let snapshot = t.snapshot().map_err(|e| delta_err("cannot read the table", e))?;
        snapshot
            .transaction_version(t.log_store().as_ref(), app_id(checksum))
            .await
            .map_err(|e| delta_err("cannot read the table's transactions", e))
    }

    /// Writes the run's rows as files of each table, not yet in any version.
    pub(crate) async fn stage_tables(&self, plan: &LoadPlan, load_id: &str) -> Result<Staged> {
        let mut tables = BTreeMap::new();
        for t in &plan.tables {
            let table = self
                .open_table(t.table, None)
                .await?
                .ok_or_else(|| Error::Storage(format!("{}/{} is missing after it was created", self.loc, t.table)))?;
            let schema = arrow_schema(&table)?;
            // The transform files each date is made of now.
            let mut sources = self.current_sources(&table, t.dates.keys().copied().collect()).await?;
            let mut staged = StagedTable::default();
            let mut work: Vec<(NaiveDate, &crest_core::raw::RawFile)> = Vec::new();
            for (date, files) in &t.dates {
                let now: Option<Vec<String>> = sources.remove(date);
                let mut new: Vec<String> = files.iter().map(|f| f.sha256.clone()).collect();
                new.sort();
                if !new.is_empty() && now.as_ref() == Some(&new) {
                    staged.unchanged.insert(*date);
                    continue;
                }
                staged.adds.insert(*date, Vec::new());
                work.extend(files.iter().map(|f| (*date, f)));
            }
            // Decoding and encoding is the work: spread over the cores. Every
            // file under way is finished (and so known to `abort`) before an
            // error returns; after one, no new file starts.
            let failed = std::sync::atomic::AtomicBool::new(false);
            let results: Vec<Result<(NaiveDate, Vec<Add>)>> = futures::stream::iter(work)
                .map(|(date, f)| {
                    let (table, schema, failed) = (&table, &schema, &failed);
                    async move {
                        if failed.load(std::sync::atomic::Ordering::Relaxed) {
                            return Ok((date, Vec::new()));
                        }
                        let adds = self.write_file(plan, table, schema, t.table, date, f, load_id).await;
                        if adds.is_err() {
                            failed.store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                        Ok::<_, Error>((date, adds?))
                    }
                })
                .buffer_unordered(parallelism())
                .collect()
                .await;
            let written = results.into_iter().collect::<Result<Vec<_>>>()?;
            for (date, adds) in written {
                staged.adds.entry(date).or_default().extend(adds);
            }
            tables.insert(t.table, staged);
        }
        Ok(Staged { tables })
    }

    /// For each of `dates` that has files now, the transform files (SHA-256,
    /// sorted) a crest load last set it from, if its files are still exactly
    /// the ones that load set (an OPTIMIZE or another engine's write makes the
    /// date count as changed). Reads the history newest first, only as far
    /// back as the dates were last loaded.
    async fn current_sources(
        &self,
        table: &DeltaTable,
        dates: BTreeSet<NaiveDate>,
    ) -> Result<BTreeMap<NaiveDate, Vec<String>>> {
        let mut active: BTreeMap<NaiveDate, BTreeSet<String>> = BTreeMap::new();
        for f in active_files(table)? {
            if let Some(d) = f.date.filter(|d| dates.contains(d)) {
                active.entry(d).or_default().insert(f.remove.path);
            }
        }
        let mut out = BTreeMap::new();
        let mut open: BTreeSet<NaiveDate> = active.keys().copied().collect();
        let latest = table.version().unwrap_or(0);
        let mut limit = 16usize;
        while !open.is_empty() {
            let infos = table
                .history(Some(limit))
                .await
                .map_err(|e| delta_err(&format!("cannot read the history of {}", self.loc), e))?;
            for info in infos {
                let Some(r) = commit_record(info.info.get(COMMIT_KEY)) else {
                    continue;
                };
                for (d, files) in &r.files {
                    if !open.remove(d) {
                        continue;
                    }
                    let paths: BTreeSet<String> = files.iter().map(|f| f.path.clone()).collect();
                    let sources: Option<Vec<String>> = files.iter().map(|f| f.source.clone()).collect();
                    if let (true, Some(mut s)) = (paths == active[d], sources) {
                        s.sort();
                        out.insert(*d, s);
                    }
                }
            }
            if limit as i64 > latest {
                break;
            }
            limit = limit.saturating_mul(8);
        }
        Ok(out)
    }

    /// One transform file written into `table` (its checksum checked first);
    /// the file's rows must all be of `date`.
    #[allow(clippy::too_many_arguments)]
    async fn write_file(
        &self,
        plan: &LoadPlan,
        table: &DeltaTable,
        schema: &SchemaRef,
        name: &str,
        date: NaiveDate,
        f: &crest_core::raw::RawFile,
        load_id: &str,
    ) -> Result<Vec<Add>> {
        let bytes = plan.input.get(&f.path).await?.ok_or_else(|| {
            Error::Data(format!(
                "{}/{} is named by the manifest but missing",
                plan.input, f.path
            ))
        })?;
        let writer = RecordBatchWriter::for_table(table)
            .map_err(|e| delta_err(&format!("cannot write to {}/{name}", self.loc), e))?
            .with_writer_properties(writer_properties());
        let (input, path, sha, schema) = (plan.input.to_string(), f.path.clone(), f.sha256.clone(), schema.clone());
        let mut writer =
            tokio::task::spawn_blocking(move || encode_file(bytes, &sha, writer, &schema, date, &input, &path))
                .await
                .map_err(|e| Error::Storage(format!("a load worker stopped: {e}")))??;
        let mut adds = writer
            .flush()
            .await
            .map_err(|e| delta_err(&format!("cannot write to {}/{name}", self.loc), e))?;
        let day = date.to_string();
        for a in &mut adds {
            self.written
                .lock()
                .expect("written files")
                .push((load_id.to_string(), format!("{name}/{}", a.path)));
            if a.partition_values.get(PARTITION).and_then(|v| v.as_deref()) != Some(day.as_str()) {
                return Err(Error::Data(format!(
                    "{}/{} holds rows of a date other than {date}, its date in the manifest: run crest transform again",
                    plan.input, f.path
                )));
            }
            a.tags = Some(HashMap::from([(SOURCE_TAG.to_string(), Some(f.sha256.clone()))]));
        }
        Ok(adds)
    }

    /// Commits each table's staged files in place of the dates they restate.
    pub(crate) async fn commit_tables(
        &self,
        plan: &LoadPlan,
        load_id: &str,
        mut staged: Staged,
        schema_changes: &[String],
    ) -> Result<Vec<TableReport>> {
        let mut reports = Vec::new();
        for t in &plan.tables {
            let mut st = staged.tables.remove(t.table).unwrap_or_default();
            let mut attempt = 0;
            let report = loop {
                let table = self
                    .open_table(t.table, None)
                    .await?
                    .ok_or_else(|| Error::Storage(format!("{}/{} is gone", self.loc, t.table)))?;
                match self
                    .commit_once(plan, load_id, &table, t, &mut st, schema_changes)
                    .await
                {
                    Ok(report) => break report,
                    Err(Some(e)) => return Err(e),
                    Err(None) if attempt + 1 >= MAX_COMMIT_ATTEMPTS => {
                        return Err(Error::Storage(format!(
                        "{}/{}: other writers committed first {MAX_COMMIT_ATTEMPTS} times in a row; run the load again",
                        self.loc, t.table
                    )))
                    }
                    Err(None) => {
                        attempt += 1;
                        // Another load won the version: back off a little, read the new one, redo.
                        let pause = 20 + rand::random::<u64>() % (40 * u64::from(attempt.min(10)));
                        tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                    }
                }
            };
            // Committed: this table's files are the table's now.
            let prefix = format!("{}/", t.table);
            self.written
                .lock()
                .expect("written files")
                .retain(|(id, p)| id != load_id || !p.starts_with(&prefix));
            reports.push(report);
        }
        Ok(reports)
    }

    /// One try at a table's commit on its latest version; `Err(None)` when
    /// another writer committed first.
    async fn commit_once(
        &self,
        plan: &LoadPlan,
        load_id: &str,
        table: &DeltaTable,
        t: &crest_core::load::TablePlan,
        st: &mut StagedTable,
        schema_changes: &[String],
    ) -> std::result::Result<TableReport, Option<Error>> {
        let mut report = TableReport {
            table: t.table.to_string(),
            ..TableReport::default()
        };
        // A date found unchanged when staged may have been restated since by
        // another load: on this version it is written like any other.
        if !st.unchanged.is_empty() {
            let mut now = self.current_sources(table, st.unchanged.clone()).await.map_err(Some)?;
            let schema = arrow_schema(table).map_err(Some)?;
            for d in st.unchanged.clone() {
                let mut new: Vec<String> = t.dates[&d].iter().map(|f| f.sha256.clone()).collect();
                new.sort();
                if now.remove(&d).as_ref() != Some(&new) {
                    let mut adds = Vec::new();
                    for f in &t.dates[&d] {
                        adds.extend(
                            self.write_file(plan, table, &schema, t.table, d, f, load_id)
                                .await
                                .map_err(Some)?,
                        );
                    }
                    st.adds.insert(d, adds);
                    st.unchanged.remove(&d);
                }
            }
        }
        let replaced: BTreeSet<NaiveDate> = t.dates.keys().filter(|d| !st.unchanged.contains(d)).copied().collect();
        let mut actions: Vec<Action> = Vec::new();
        let mut old_rows: BTreeMap<NaiveDate, u64> = BTreeMap::new();
        let mut files: BTreeMap<NaiveDate, Vec<CommitFile>> = BTreeMap::new();
        let mut kept_paths: Vec<String> = Vec::new();
        let schema = arrow_schema(table).map_err(Some)?;
        let now_ms = chrono::Utc::now().timestamp_millis();
        for f in active_files(table).map_err(Some)? {
            let Some(d) = f.date.filter(|d| replaced.contains(d)) else {
                continue;
            };
            *old_rows.entry(d).or_default() += f.rows;
            // Rows of pairs the run does not speak for stay: a run of TikTok
            // alone never removes Meta's rows of the same dates.
            if let Some(scope) = &plan.scope {
                let kept = self
                    .keep_outside(table, t.table, &schema, &f.remove.path, d, scope, load_id)
                    .await
                    .map_err(Some)?;
                for (add, rows) in kept {
                    kept_paths.push(add.path.clone());
                    *old_rows.entry(d).or_default() -= rows.min(old_rows[&d]);
                    files.entry(d).or_default().push(CommitFile {
                        path: add.path.clone(),
                        source: None,
                    });
                    actions.push(Action::Add(add));
                }
            }
            actions.push(Action::Remove(f.remove));
        }
        for (date, files) in &t.dates {
            let rows: u64 = files.iter().map(|f| f.rows).sum();
            if st.unchanged.contains(date) {
                report.unchanged += rows;
            } else if old_rows.contains_key(date) {
                report.replaced += rows;
                report.replaced_old += old_rows[date];
            } else {
                report.inserted += rows;
            }
        }
        for (date, adds) in &st.adds {
            for a in adds {
                files.entry(*date).or_default().push(CommitFile {
                    path: a.path.clone(),
                    source: a.tags.as_ref().and_then(|t| t.get(SOURCE_TAG).cloned().flatten()),
                });
                actions.push(Action::Add(a.clone()));
            }
        }
        // A date emptied by the run is set to no files.
        for d in &replaced {
            files.entry(*d).or_default();
        }
        let previous = Self::txn_version(table, &plan.checksum).await.map_err(Some)?;
        let record = CommitRecord {
            load_id: load_id.to_string(),
            run_id: plan.run_id.clone(),
            manifest: format!("{}/{}", plan.input, plan.manifest),
            manifest_checksum: plan.checksum.clone(),
            rows: plan.rows(),
            loaded_at: chrono::Utc::now(),
            table: report.clone(),
            schema_changes: schema_changes.to_vec(),
            files,
        };
        let metadata = serde_json::to_value(&record).map_err(|e| Some(Error::Storage(e.to_string())))?;
        let predicate = (!replaced.is_empty()).then(|| {
            let days: Vec<String> = replaced.iter().map(|d| format!("'{d}'")).collect();
            format!("{PARTITION} IN ({})", days.join(", "))
        });
        let properties = CommitProperties::default()
            .with_application_transaction(Transaction::new_with_last_update(
                app_id(&plan.checksum),
                previous.map_or(0, |v| v + 1),
                Some(now_ms),
            ))
            .with_create_checkpoint(true)
            .with_metadata([(COMMIT_KEY.to_string(), metadata)])
            .with_max_retries(0);
        let snapshot = table
            .snapshot()
            .map_err(|e| Some(delta_err("cannot read the table", e)))?;
        let committed = CommitBuilder::from(properties)
            .with_actions(actions)
            .build(
                Some(snapshot),
                table.log_store(),
                DeltaOperation::Write {
                    mode: SaveMode::Overwrite,
                    partition_by: Some(vec![PARTITION.to_string()]),
                    predicate,
                },
            )
            .await;
        let ours = previous.map_or(0, |v| v + 1);
        match committed {
            Ok(_) => Ok(report),
            // The commit was written but what followed it failed (a checkpoint,
            // log clean-up, an uncertain answer from the store): it stands.
            Err(_) if self.landed(t.table, &plan.checksum, ours).await => Ok(report),
            Err(e) if lost_race(&e) => {
                // The rows kept are read again on the new version.
                for path in kept_paths {
                    let rel = format!("{}/{path}", t.table);
                    let _ = self.loc.delete(&rel).await;
                    self.written.lock().expect("written files").retain(|(_, p)| *p != rel);
                }
                Err(None)
            }
            Err(e) => Err(Some(delta_err(
                &format!("cannot commit to {}/{}", self.loc, t.table),
                e,
            ))),
        }
    }

    /// Whether this load's commit (transaction `version` of its manifest) is in
    /// `table`'s latest version.
    async fn landed(&self, table: &str, checksum: &str, version: i64) -> bool {
        match self.open_table_as_is(table, None).await {
            Ok(Some(t)) => matches!(Self::txn_version(&t, checksum).await, Ok(Some(v)) if v >= version),
            _ => false,
        }
    }

    /// The rows of an old file whose platform × account is outside `scope`,
    /// written as new files of the same date.
    #[allow(clippy::too_many_arguments)]
    async fn keep_outside(
        &self,
        table: &DeltaTable,
        name: &str,
        schema: &SchemaRef,
        old: &str,
        date: NaiveDate,
        scope: &BTreeSet<String>,
        load_id: &str,
    ) -> Result<Vec<(Add, u64)>> {
        let store = table.object_store();
        let path = object_store::path::Path::parse(old).unwrap_or_else(|_| object_store::path::Path::from(old));
        let rel = format!("{}/{name}/{old}", self.loc);
        let unreadable = |e: &dyn std::fmt::Display| Error::Storage(format!("{rel} is not readable: {e}"));
        let bytes = store
            .get(&path)
            .await
            .map_err(|e| unreadable(&e))?
            .bytes()
            .await
            .map_err(|e| unreadable(&e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .map_err(|e| unreadable(&e))?
            .build()
            .map_err(|e| unreadable(&e))?;
        let mut writer = RecordBatchWriter::for_table(table)
            .map_err(|e| delta_err(&format!("cannot write to {}/{name}", self.loc), e))?
            .with_writer_properties(writer_properties());
        let mut rows = 0u64;
        for b in reader {
            let b = b.map_err(|e| unreadable(&e))?;
            // Any string type another engine wrote; a row without a platform
            // or account is no run's to replace, so it stays.
            let text = |name: &str| -> Result<ArrayRef> {
                let c = b.column_by_name(name).ok_or_else(|| {
                    Error::Data(format!(
                        "{rel} has no {name} column: the rows to keep cannot be told apart"
                    ))
                })?;
                arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8).map_err(|e| unreadable(&e))
            };
            let (p, a) = (text("platform")?, text("account_id")?);
            let (p, a) = (p.as_string::<i32>(), a.as_string::<i32>());
            let keep: BooleanArray = (0..b.num_rows())
                .map(|i| {
                    Some(!(p.is_valid(i) && a.is_valid(i) && scope.contains(&format!("{}/{}", p.value(i), a.value(i)))))
                })
                .collect();
            let out = arrow::compute::filter_record_batch(&b, &keep).map_err(|e| unreadable(&e))?;
            if out.num_rows() == 0 {
                continue;
            }
            // The file holds no `date` (it is the partition): put it back.
            let n = out.num_rows();
            let day: ArrayRef = Arc::new(arrow::array::Date32Array::from(vec![
                arrow::datatypes::Date32Type::from_naive_date(date);
                n
            ]));
            let mut columns: Vec<ArrayRef> = out.columns().to_vec();
            let mut fields: Vec<Field> = out.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
            columns.push(day);
            fields.push(Field::new(PARTITION, arrow::datatypes::DataType::Date32, false));
            let with_date = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| unreadable(&e))?;
            rows += n as u64;
            writer
                .write(conform(&with_date, schema)?)
                .await
                .map_err(|e| delta_err(&format!("cannot write to {}/{name}", self.loc), e))?;
        }
        if rows == 0 {
            return Ok(Vec::new());
        }
        let adds = writer
            .flush()
            .await
            .map_err(|e| delta_err(&format!("cannot write to {}/{name}", self.loc), e))?;
        let mut out = Vec::new();
        for a in adds {
            self.written
                .lock()
                .expect("written files")
                .push((load_id.to_string(), format!("{name}/{}", a.path)));
            let r = a
                .get_stats()
                .ok()
                .flatten()
                .map(|s| s.num_records as u64)
                .unwrap_or(rows);
            out.push((a, r));
        }
        Ok(out)
    }

    /// Removes the files a failed load wrote (none is in any version).
    pub(crate) async fn remove_written(&self, load_id: &str) {
        let mine: Vec<String> = {
            let mut written = self.written.lock().expect("written files");
            let (mine, rest): (Vec<_>, Vec<_>) = written.drain(..).partition(|(id, _)| id == load_id);
            *written = rest;
            mine.into_iter().map(|(_, p)| p).collect()
        };
        for rel in mine {
            let _ = self.loc.delete(&rel).await;
        }
    }

    /// Every load's record, from the commits of every table (`crest_loads`).
    pub(crate) async fn records(&self, tables: &[&str]) -> Result<Vec<LoadRecord>> {
        let mut by_load: BTreeMap<String, LoadRecord> = BTreeMap::new();
        for table in tables {
            let Some(t) = self.open_table(table, None).await? else {
                continue;
            };
            for info in t
                .history(None)
                .await
                .map_err(|e| delta_err(&format!("cannot read the history of {}/{table}", self.loc), e))?
            {
                // A migrated lake's earlier loads, as their records were.
                if let Some(old) = info
                    .info
                    .get(crate::legacy::MIGRATED_KEY)
                    .and_then(|v| serde_json::from_value::<Vec<LoadRecord>>(v.clone()).ok())
                {
                    for r in old {
                        by_load.entry(r.load_id.clone()).or_insert(r);
                    }
                }
                let Some(r) = commit_record(info.info.get(COMMIT_KEY)) else {
                    continue;
                };
                let entry = by_load.entry(r.load_id.clone()).or_insert_with(|| LoadRecord {
                    load_id: r.load_id.clone(),
                    run_id: r.run_id.clone(),
                    manifest: r.manifest.clone(),
                    manifest_checksum: r.manifest_checksum.clone(),
                    rows: r.rows,
                    loaded_at: r.loaded_at,
                    status: "succeeded".into(),
                    tables: Vec::new(),
                    schema_changes: r.schema_changes.clone(),
                });
                entry.tables.push(r.table);
            }
        }
        Ok(by_load.into_values().collect())
    }
}

/// Files encoded at once: two per core, so one's read or write overlaps
/// another's encoding.
fn parallelism() -> usize {
    2 * std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4)
}

/// A transform file's rows into `writer`'s buffers, after its checksum is
/// checked (CPU work, run off the async workers).
fn encode_file(
    bytes: bytes::Bytes,
    sha256: &str,
    mut writer: RecordBatchWriter,
    schema: &SchemaRef,
    date: NaiveDate,
    input: &str,
    path: &str,
) -> Result<RecordBatchWriter> {
    if hex::encode(Sha256::digest(&bytes)) != sha256 {
        return Err(Error::Data(format!(
            "{input}/{path} does not match its checksum in the manifest: it changed after the transform; run crest transform again"
        )));
    }
    let unreadable = |e: &dyn std::fmt::Display| Error::Data(format!("{input}/{path} is not readable: {e}"));
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| unreadable(&e))?
        .build()
        .map_err(|e| unreadable(&e))?;
    // A transform file is one date: its rows go to that partition as they
    // are (no sorting them into partitions); a row of another date stops it.
    let day = arrow::datatypes::Date32Type::from_naive_date(date);
    let partition = indexmap::IndexMap::from([(PARTITION.to_string(), delta_kernel::expressions::Scalar::Date(day))]);
    for b in reader {
        let b = conform(&b.map_err(|e| unreadable(&e))?, schema)?;
        let dates = b
            .column_by_name(PARTITION)
            .and_then(|c| c.as_primitive_opt::<arrow::datatypes::Date32Type>())
            .ok_or_else(|| Error::Data(format!("{input}/{path} has no date column")))?;
        if dates.null_count() > 0 || dates.values().iter().any(|d| *d != day) {
            return Err(Error::Data(format!(
                "{input}/{path} holds rows of a date other than {date}, its date in the manifest: run crest transform again"
            )));
        }
        // Buffers only: the writer's I/O is its flush, awaited by the caller.
        futures::executor::block_on(writer.write_partition(b, &partition, deltalake::writer::WriteMode::Default))
            .map_err(|e| Error::Data(crest_core::error::one_line(&format!("{input}/{path}: {e}"))))?;
    }
    Ok(writer)
}

/// Data files as the transform writes them: zstd, which DuckDB, Spark,
/// Polars and every Delta reader decode.
fn writer_properties() -> parquet::file::properties::WriterProperties {
    parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build()
}
