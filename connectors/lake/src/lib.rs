//! The lake: crest's embedded default target, on a local path or any object
//! store. Each canonical table is a Delta Lake table partitioned by date, so
//! DuckDB, Spark, Polars, Trino and the warehouses' external tables read it
//! as well as crest does:
//!
//! ```text
//! {lake}/{table}/_delta_log/…                         the table's versions (Delta Lake)
//! {lake}/{table}/date=YYYY-MM-DD/part-….parquet       the rows
//! {lake}/views/*.sql                                  views, registered by crest query
//! {lake}/benchmarks/benchmarks.parquet                benchmarks (crest benchmarks load)
//! {lake}/alert_log/{evaluation_id}.parquet            alerts sent (crest alerts)
//! {lake}/utm_hygiene/{audit_id}.parquet               links audits (crest links audit)
//! ```
//!
//! A load is one commit per table (see `delta`); queries run in-process with
//! DataFusion over delta-rs's table provider (partition pruning on `date`,
//! file statistics).

mod delta;
mod legacy;
mod maintain;
mod target;

pub use delta::AsOf;
pub use legacy::Migrated;
pub use maintain::{Commit, Compaction, Vacuumed, DEFAULT_RETENTION_HOURS};
pub use target::KIND;

use arrow::array::{ArrayRef, RecordBatch, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use bytes::Bytes;
use crest_core::load::{Destination, LoadPlan, LoadRecord, TableReport, LOADS_TABLE};
use crest_core::storage::Location;
use crest_core::{Error, Result};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use std::sync::Arc;

/// Where `crest benchmarks load` puts the benchmarks: one file, replaced whole.
const BENCHMARKS_FILE: &str = "benchmarks/benchmarks.parquet";
/// `crest alerts`' log: one file per evaluation, rewritten whole when delivered.
const ALERT_LOG_DIR: &str = "alert_log";
/// A file written before its table gained nullable columns, read as the
/// table is now: the columns it lacks are null.
fn written_before(batch: &RecordBatch, schema: &SchemaRef, what: &str) -> Result<RecordBatch> {
    delta::conform(batch, schema).map_err(|e| e.context(what))
}

/// Where `crest links audit` puts each audit's rows: one file per audit.
const UTM_HYGIENE_DIR: &str = "utm_hygiene";
/// A table's schema in crest's earlier lake format: its presence without a
/// Delta log marks a lake to migrate.
const LEGACY_SCHEMA_FILE: &str = "_schema.parquet";
/// Every table a lake of an earlier crest may hold (`crest lake migrate`).
const KNOWN_TABLES: &[&str] = &[
    "creator_performance",
    "attribution_windows",
    "quarantine",
    "creator_attribution",
];
/// The arrow field metadata key holding a column's description.
const DESCRIPTION: &str = "description";

pub struct Lake {
    loc: Location,
    /// The snapshot queries read (`crest query --as-of`); the latest when `None`.
    as_of: Option<AsOf>,
    /// Files a load wrote that no commit names yet, by load id: removed if it fails.
    written: std::sync::Mutex<Vec<(String, String)>>,
    /// The columns `prepare` added, recorded with the load's commits.
    changes: std::sync::Mutex<Vec<String>>,
}

impl Lake {
    pub fn new(loc: Location) -> Self {
        Lake {
            loc,
            as_of: None,
            written: Default::default(),
            changes: Default::default(),
        }
    }

    /// The lake as it was at a table version or a time (time travel).
    pub fn as_of(mut self, as_of: Option<AsOf>) -> Self {
        self.as_of = as_of;
        self
    }

    pub fn location(&self) -> &Location {
        &self.loc
    }

    /// A lake written by a crest before the Delta format is refused, never
    /// read as something else.
    pub(crate) async fn refuse_legacy(&self, table: &str) -> Result<()> {
        if self.loc.get(&format!("{table}/{LEGACY_SCHEMA_FILE}")).await?.is_some() {
            return Err(Error::Config(format!(
                "{} is a lake in crest's earlier format (date pointers), not Delta tables: convert it once with `crest lake migrate --target lake:{}`",
                self.loc, self.loc
            )));
        }
        Ok(())
    }

    /// A table's folder that holds files but no Delta log is refused: crest
    /// never writes a table over files it did not write.
    pub(crate) async fn refuse_foreign(&self, table: &str) -> Result<()> {
        let listed = self.loc.list(table).await?;
        // A log appearing: another load is creating the table right now.
        if listed
            .iter()
            .any(|m| self.loc.relative(&m.location).contains("/_delta_log/"))
        {
            return Ok(());
        }
        if let Some(other) = listed.first() {
            return Err(Error::Config(format!(
                "{}/{table} holds files but is not a Delta table ({} among them): give --target a lake of crest's, or a new folder",
                self.loc,
                self.loc.relative(&other.location)
            )));
        }
        Ok(())
    }

    /// A DataFusion session with the lake's tables (Delta, at `as_of` when
    /// set), `crest_loads`, and the views in `{lake}/views/`. With `sql`, only
    /// what it names (directly or through a view) is registered: a table costs
    /// a read of its log.
    pub async fn session(&self, defaults: &[(&'static str, SchemaRef)], sql: Option<&str>) -> Result<SessionContext> {
        let ctx = SessionContext::new();
        let mut views: Vec<(String, String)> = Vec::new();
        let mut names: Vec<String> = self
            .loc
            .list("views")
            .await?
            .iter()
            .map(|m| self.loc.relative(&m.location))
            .filter(|r| r.ends_with(".sql"))
            .collect();
        // crest's views in the order they read each other, then a user's own.
        let rank = |rel: &String| {
            crest_core::views::VIEWS
                .iter()
                .position(|v| rel.ends_with(&format!("/{}.sql", v.name)) || *rel == format!("views/{}.sql", v.name))
                .unwrap_or(usize::MAX)
        };
        names.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.cmp(b)));
        for rel in names {
            let Some(text) = self.loc.get(&rel).await? else {
                continue;
            };
            let name = rel
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .trim_end_matches(".sql")
                .to_string();
            views.push((name, String::from_utf8_lossy(&text).into_owned()));
        }
        // The views the SQL names, and the views those read, and so on.
        let wanted = sql.map(str::to_lowercase);
        let views: Vec<(String, String)> = match &wanted {
            None => views,
            Some(w) => {
                let mut keep: Vec<bool> = views.iter().map(|(name, _)| w.contains(&name.to_lowercase())).collect();
                loop {
                    let texts: Vec<String> = views
                        .iter()
                        .zip(&keep)
                        .filter(|(_, k)| **k)
                        .map(|((_, t), _)| t.to_lowercase())
                        .collect();
                    let mut grew = false;
                    for (i, (name, _)) in views.iter().enumerate() {
                        if !keep[i] && texts.iter().any(|t| t.contains(&name.to_lowercase())) {
                            keep[i] = true;
                            grew = true;
                        }
                    }
                    if !grew {
                        break;
                    }
                }
                views
                    .into_iter()
                    .zip(keep)
                    .filter(|(_, k)| *k)
                    .map(|(v, _)| v)
                    .collect()
            }
        };
        let needs = |name: &str| {
            wanted
                .as_ref()
                .is_none_or(|w| w.contains(name) || views.iter().any(|(_, text)| text.to_lowercase().contains(name)))
        };
        for (table, default) in defaults {
            if !needs(table) {
                continue;
            }
            let provider: Arc<dyn datafusion::catalog::TableProvider> =
                match self.open_table(table, self.as_of.as_ref()).await? {
                    Some(t) => {
                        t.update_datafusion_session(&ctx.state())
                            .map_err(|e| delta::delta_err(&format!("cannot read {}/{table}", self.loc), e))?;
                        t.table_provider().await.map_err(|e| {
                            Error::Storage(format!("cannot read {}/{table}: {}", self.loc, one_line(&e)))
                        })?
                    }
                    // Not loaded yet: the table exists with no rows.
                    None => Arc::new(MemTable::try_new(default.clone(), vec![vec![]]).map_err(df)?),
                };
            ctx.register_table(*table, provider).map_err(df)?;
        }
        if needs(crest_core::benchmarks::TABLE) {
            let batch = match self.loc.get(BENCHMARKS_FILE).await? {
                Some(bytes) => {
                    let what = format!("{}/{BENCHMARKS_FILE}", self.loc);
                    read_parquet(bytes, &what)?
                        .iter()
                        .map(|b| written_before(b, &crest_core::benchmarks::schema(), &what))
                        .collect::<Result<Vec<_>>>()?
                }
                // No benchmarks loaded: the table is empty and every tier says so.
                None => Vec::new(),
            };
            let table = MemTable::try_new(crest_core::benchmarks::schema(), vec![batch]).map_err(df)?;
            ctx.register_table(crest_core::benchmarks::TABLE, Arc::new(table))
                .map_err(df)?;
        }
        for (table, dir, schema) in [
            (
                crest_core::alert_log::TABLE,
                ALERT_LOG_DIR,
                crest_core::alert_log::schema(),
            ),
            (
                crest_core::utm_hygiene::TABLE,
                UTM_HYGIENE_DIR,
                crest_core::utm_hygiene::schema(),
            ),
        ] {
            if !needs(table) {
                continue;
            }
            // A folder of files, one per evaluation or audit; none yet is an empty table.
            let mut batches = Vec::new();
            for meta in self.loc.list(dir).await? {
                let rel = self.loc.relative(&meta.location);
                if !rel.ends_with(".parquet") {
                    continue;
                }
                if let Some(bytes) = self.loc.get(&rel).await? {
                    let what = format!("{}/{rel}", self.loc);
                    for b in read_parquet(bytes, &what)? {
                        batches.push(written_before(&b, &schema, &what)?);
                    }
                }
            }
            let provider = MemTable::try_new(schema, vec![batches]).map_err(df)?;
            ctx.register_table(table, Arc::new(provider)).map_err(df)?;
        }
        if needs(LOADS_TABLE) {
            let names: Vec<&str> = defaults.iter().map(|(t, _)| *t).collect();
            let loads = crest_core::load::loads_batch(&self.records(&names).await?)?;
            ctx.register_table(
                LOADS_TABLE,
                Arc::new(MemTable::try_new(loads.schema(), vec![vec![loads]]).map_err(df)?),
            )
            .map_err(df)?;
        }
        for (name, text) in views {
            ctx.sql(&text).await.map_err(|e| {
                Error::Data(format!(
                    "the view {}/views/{name}.sql does not compile: {}",
                    self.loc,
                    one_line(&e)
                ))
            })?;
        }
        Ok(ctx)
    }

    async fn write_views(&self) -> Result<()> {
        // The views every lake carries, in DataFusion's dialect.
        for (name, sql) in crest_sql::datafusion::VIEWS {
            self.loc
                .put(&format!("views/{name}.sql"), Bytes::from_static(sql.as_bytes()))
                .await?;
        }
        Ok(())
    }

    /// `crest views apply`: writes crest's views into `{lake}/views/` and
    /// checks that every view there compiles against the lake's tables.
    pub async fn apply_views(&self, defaults: &[(&'static str, SchemaRef)]) -> Result<()> {
        self.write_views().await?;
        self.session(defaults, None).await.map(|_| ())
    }

    /// `crest benchmarks load`: the benchmarks replace the lake's in one put.
    pub async fn load_benchmarks(&self, rows: &[crest_core::benchmarks::Benchmark]) -> Result<()> {
        let batch = crest_core::benchmarks::to_batch(rows)?;
        self.loc.put(BENCHMARKS_FILE, encode(&batch, "the benchmarks")?).await
    }

    /// `crest alerts`: one evaluation's rows, in a file of their own (one put).
    pub async fn append_alert_log(&self, evaluation_id: &str, batch: &RecordBatch) -> Result<()> {
        self.loc
            .put(
                &format!("{ALERT_LOG_DIR}/{evaluation_id}.parquet"),
                encode(batch, "the alert log")?,
            )
            .await
    }

    /// `crest links audit`: one audit's rows, in a file of their own (one put).
    pub async fn append_utm_hygiene(&self, batch: &RecordBatch) -> Result<()> {
        let audit_id = batch
            .column_by_name("audit_id")
            .and_then(|c| c.as_any().downcast_ref::<arrow::array::StringArray>())
            .filter(|c| arrow::array::Array::len(*c) > 0)
            .map(|c| c.value(0).to_string());
        let Some(audit_id) = audit_id else {
            return Ok(());
        };
        self.loc
            .put(
                &format!("{UTM_HYGIENE_DIR}/{audit_id}.parquet"),
                encode(batch, "the links audit")?,
            )
            .await
    }

    /// `crest alerts`: the evaluation reached every channel; its file is
    /// rewritten with `delivered_at` set (one put).
    pub async fn mark_alerts_delivered(&self, evaluation_id: &str, at_us: i64) -> Result<()> {
        let rel = format!("{ALERT_LOG_DIR}/{evaluation_id}.parquet");
        let bytes = self
            .loc
            .get(&rel)
            .await?
            .ok_or_else(|| Error::Storage(format!("{}/{rel} is gone", self.loc)))?;
        let mut out = Vec::new();
        for b in read_parquet(bytes, &format!("{}/{rel}", self.loc))? {
            let n = b.num_rows();
            let delivered: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![at_us; n]).with_timezone("UTC"));
            let i = b
                .schema()
                .index_of("delivered_at")
                .map_err(|e| Error::Storage(format!("{}/{rel}: {e}", self.loc)))?;
            let mut columns = b.columns().to_vec();
            columns[i] = delivered;
            out.push(RecordBatch::try_new(b.schema(), columns).map_err(|e| Error::Storage(e.to_string()))?);
        }
        let batch = arrow::compute::concat_batches(&crest_core::alert_log::schema(), &out)
            .map_err(|e| Error::Storage(e.to_string()))?;
        self.loc.put(&rel, encode(&batch, "the alert log")?).await
    }

    /// Runs SQL against the lake.
    pub async fn query(&self, defaults: &[(&'static str, SchemaRef)], sql: &str) -> Result<Vec<RecordBatch>> {
        let ctx = self.session(defaults, Some(sql)).await?;
        let frame = ctx
            .sql(sql)
            .await
            .map_err(|e| Error::Config(format!("the query failed: {}", one_line(&e))))?;
        let batches = frame
            .collect()
            .await
            .map_err(|e| Error::Config(format!("the query failed: {}", one_line(&e))))?;
        batches.iter().map(plain_strings).collect()
    }
}

/// Strings as `Utf8`, as every target answers them (the Delta scan reads
/// string views).
fn plain_strings(batch: &RecordBatch) -> Result<RecordBatch> {
    let schema = batch.schema();
    if !schema
        .fields()
        .iter()
        .any(|f| matches!(f.data_type(), DataType::Utf8View | DataType::LargeUtf8))
    {
        return Ok(batch.clone());
    }
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (f, c) in schema.fields().iter().zip(batch.columns()) {
        if matches!(f.data_type(), DataType::Utf8View | DataType::LargeUtf8) {
            columns.push(arrow::compute::cast(c, &DataType::Utf8).map_err(|e| Error::Storage(e.to_string()))?);
            fields.push(f.as_ref().clone().with_data_type(DataType::Utf8));
        } else {
            columns.push(c.clone());
            fields.push(f.as_ref().clone());
        }
    }
    RecordBatch::try_new(
        Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
        columns,
    )
    .map_err(|e| Error::Storage(e.to_string()))
}

/// A small table's rows, all in memory.
fn read_parquet(bytes: Bytes, what: &str) -> Result<Vec<RecordBatch>> {
    ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.build())
        .map_err(|e| Error::Storage(format!("{what} is not readable: {e}")))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Storage(format!("{what} is not readable: {e}")))
}

/// A small table as one Parquet file's bytes.
fn encode(batch: &RecordBatch, what: &str) -> Result<Bytes> {
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), None)
        .map_err(|e| Error::Storage(format!("cannot encode {what}: {e}")))?;
    w.write(batch)
        .and_then(|_| w.finish().map(|_| ()))
        .map_err(|e| Error::Storage(format!("cannot encode {what}: {e}")))?;
    drop(w);
    Ok(Bytes::from(buf))
}

fn df(e: datafusion::error::DataFusionError) -> Error {
    Error::Storage(one_line(&e))
}

fn one_line(e: &dyn std::fmt::Display) -> String {
    crest_core::error::one_line(&e.to_string())
}

/// `crest_loads`: one row per load and table.
/// What differs between the lake's table and the input, as (added, problems).
fn compare(table: &str, lake: &Schema, input: &Schema) -> (Vec<String>, Vec<String>) {
    let mut added = Vec::new();
    let mut problems = Vec::new();
    for f in lake.fields() {
        match input.field_with_name(f.name()) {
            Err(_) => problems.push(format!("{table}.{} is missing from the input", f.name())),
            Ok(g) if g.data_type() != f.data_type() => problems.push(format!(
                "{table}.{} is {} in the lake but {} in the input",
                f.name(),
                f.data_type(),
                g.data_type()
            )),
            Ok(_) => {}
        }
    }
    for g in input.fields() {
        if lake.field_with_name(g.name()).is_err() {
            if g.is_nullable() {
                added.push(format!("{table}: added column {} ({})", g.name(), g.data_type()));
            } else {
                problems.push(format!(
                    "{table}.{} is new but not nullable: old rows cannot hold it",
                    g.name()
                ));
            }
        }
    }
    (added, problems)
}

impl Destination for Lake {
    fn describe(&self) -> String {
        format!("lake:{}", self.loc)
    }

    // No lease: each table's commit is optimistic (see `delta`), so loads
    // into one lake run side by side.

    async fn loaded(&self, plan: &LoadPlan) -> Result<Option<LoadRecord>> {
        self.loaded_in(plan).await
    }

    async fn prepare(&self, schemas: &[(&'static str, SchemaRef)], _create: bool) -> Result<Vec<String>> {
        // The lake is created where it is missing: it is the embedded default.
        let changes = self.prepare_tables(schemas).await?;
        self.write_views().await?;
        *self.changes.lock().expect("schema changes") = changes.clone();
        Ok(changes)
    }

    type Staged = delta::Staged;

    async fn stage(
        &self,
        plan: &LoadPlan,
        _schemas: &[(&'static str, SchemaRef)],
        load_id: &str,
    ) -> Result<Self::Staged> {
        self.stage_tables(plan, load_id).await
    }

    async fn merge(&self, plan: &LoadPlan, load_id: &str, staged: Self::Staged) -> Result<Vec<TableReport>> {
        let changes = self.changes.lock().expect("schema changes").clone();
        let reports = self.commit_tables(plan, load_id, staged, &changes).await?;
        // Committed: nothing of this load is left to remove.
        self.written
            .lock()
            .expect("written files")
            .retain(|(id, _)| id != load_id);
        Ok(reports)
    }

    async fn abort(&self, _plan: &LoadPlan, load_id: &str) {
        self.remove_written(load_id).await;
    }

    async fn record(&self, _record: &LoadRecord) -> Result<()> {
        // Each table's commit holds the load's record already.
        Ok(())
    }
}
