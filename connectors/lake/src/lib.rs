//! The lake: crest's embedded default target. One folder per table on a local
//! path or any object store, partitioned by date, in the canonical Parquet:
//!
//! ```text
//! {lake}/{table}/date=YYYY-MM-DD/{load_id}-{n}.parquet   the rows
//! {lake}/{table}/date=YYYY-MM-DD/_partition.json         which files make the date now
//! {lake}/{table}/_schema.parquet                         the table's schema (no rows)
//! {lake}/_loads/{load_id}.json                           what was loaded (crest_loads)
//! {lake}/views/*.sql                                     views, registered by crest query
//! {lake}/benchmarks/benchmarks.parquet                   benchmarks (crest benchmarks load)
//! {lake}/utm_hygiene/{audit_id}.parquet                    links audits (crest links audit)
//! ```
//!
//! A load replaces whole date partitions: new files first, then the date's
//! `_partition.json` (one atomic put), then the old files go. Readers go
//! through the pointers, so they see the old date or the new one, never a mix
//! and never a staged file. Queries run in-process with DataFusion.

mod target;

pub use target::KIND;

use arrow::array::{ArrayRef, RecordBatch, TimestampMicrosecondArray};
use arrow::datatypes::{Field, Schema, SchemaRef};
use bytes::Bytes;
use chrono::NaiveDate;
use crest_core::load::{Destination, LoadPlan, LoadRecord, TableReport, LOADS_TABLE};
use crest_core::storage::Location;
use crest_core::{Error, Result};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Where `crest benchmarks load` puts the benchmarks: one file, replaced whole.
const BENCHMARKS_FILE: &str = "benchmarks/benchmarks.parquet";
/// `crest alerts`' log: one file per evaluation, rewritten whole when delivered.
const ALERT_LOG_DIR: &str = "alert_log";
/// Where `crest links audit` puts each audit's rows: one file per audit.
const UTM_HYGIENE_DIR: &str = "utm_hygiene";
const POINTER: &str = "_partition.json";
/// The lake's store as DataFusion's session knows it.
const LAKE_URL: &str = "crest-lake://lake";
const SCHEMA_FILE: &str = "_schema.parquet";
/// Files copied at once while staging.
const COPY_CONCURRENCY: usize = 8;

/// A table read from the files its date pointers name, as they name them:
/// no listing of the store at query time (one request per file on S3).
#[derive(Debug)]
struct PointerTable {
    schema: SchemaRef,
    /// Each file with its partition's date (days since the epoch).
    files: Vec<(i32, PartitionedFile)>,
}

/// The date range (days since the epoch) a filter on `date` keeps, if it is
/// one crest can read: `date` compared with a date, or BETWEEN two.
fn date_bounds(e: &datafusion::prelude::Expr) -> Option<(i32, i32)> {
    use datafusion::logical_expr::{Between, BinaryExpr, Operator};
    use datafusion::prelude::Expr;
    use datafusion::scalar::ScalarValue;
    let day = |e: &Expr| match e {
        Expr::Literal(ScalarValue::Date32(Some(d)), _) => Some(*d),
        _ => None,
    };
    let is_date = |e: &Expr| matches!(e, Expr::Column(c) if c.name == "date");
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) if is_date(left) => {
            let d = day(right)?;
            match op {
                Operator::Eq => Some((d, d)),
                Operator::GtEq => Some((d, i32::MAX)),
                Operator::Gt => Some((d.saturating_add(1), i32::MAX)),
                Operator::LtEq => Some((i32::MIN, d)),
                Operator::Lt => Some((i32::MIN, d.saturating_sub(1))),
                _ => None,
            }
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) if is_date(expr) => Some((day(low)?, day(high)?)),
        _ => None,
    }
}

#[async_trait::async_trait]
impl datafusion::catalog::TableProvider for PointerTable {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> datafusion::datasource::TableType {
        datafusion::datasource::TableType::Base
    }

    /// Filters on `date` prune whole files; DataFusion still applies every
    /// filter to the rows read.
    fn supports_filters_pushdown(
        &self,
        filters: &[&datafusion::prelude::Expr],
    ) -> datafusion::error::Result<Vec<datafusion::logical_expr::TableProviderFilterPushDown>> {
        Ok(vec![
            datafusion::logical_expr::TableProviderFilterPushDown::Inexact;
            filters.len()
        ])
    }

    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[datafusion::prelude::Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        let url = datafusion::execution::object_store::ObjectStoreUrl::parse(LAKE_URL)?;
        let source = Arc::new(ParquetSource::new(self.schema.clone()));
        let (from, to) = filters
            .iter()
            .filter_map(date_bounds)
            .fold((i32::MIN, i32::MAX), |(a, b), (c, d)| (a.max(c), b.min(d)));
        let files: Vec<&PartitionedFile> = self
            .files
            .iter()
            .filter(|(d, _)| (from..=to).contains(d))
            .map(|(_, f)| f)
            .collect();
        // Files spread over the session's partitions, each a similar number of files.
        let parts = state.config().target_partitions().max(1);
        let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); parts.min(files.len()).max(1)];
        let n = groups.len();
        for (i, f) in files.into_iter().enumerate() {
            groups[i % n].push(f.clone());
        }
        let config = FileScanConfigBuilder::new(url, source)
            .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

/// A date partition's current files.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Partition {
    load_id: String,
    run_id: String,
    rows: u64,
    files: Vec<PartFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
struct PartFile {
    name: String,
    sha256: String,
    rows: u64,
    /// Size, so readers open the file without asking the store for it.
    #[serde(default)]
    bytes: u64,
}

pub struct Lake {
    loc: Location,
}

/// What each date of a load held before it (its pointer), read once by
/// `stage` and used by `merge`.
pub struct Staged {
    before: BTreeMap<(&'static str, NaiveDate), Option<Partition>>,
    /// Rows of a date the run does not speak for (another platform × account),
    /// rewritten into files of this load so the date's switch keeps them.
    kept: BTreeMap<(&'static str, NaiveDate), Vec<PartFile>>,
}

fn dir(table: &str, date: NaiveDate) -> String {
    format!("{table}/date={date}")
}

fn staged_name(load_id: &str, k: usize) -> String {
    format!("{load_id}-{k}.parquet")
}

impl Lake {
    pub fn new(loc: Location) -> Self {
        Lake { loc }
    }

    pub fn location(&self) -> &Location {
        &self.loc
    }

    async fn pointer(&self, table: &str, date: NaiveDate) -> Result<Option<Partition>> {
        self.loc.get_json(&format!("{}/{POINTER}", dir(table, date))).await
    }

    /// Every date's pointer of a table.
    async fn pointers(&self, table: &str) -> Result<Vec<(String, Partition)>> {
        let rels: Vec<String> = self
            .loc
            .list(table)
            .await?
            .iter()
            .map(|m| self.loc.relative(&m.location))
            .filter(|rel| rel.ends_with(POINTER))
            .collect();
        // Small reads, many dates: read them side by side.
        let mut out: Vec<(String, Partition)> = futures::stream::iter(rels)
            .map(|rel| async move {
                let p = self.loc.get_json::<Partition>(&rel).await?;
                let d = rel.trim_end_matches(POINTER).trim_end_matches('/').to_string();
                Ok::<_, Error>(p.map(|p| (d, p)))
            })
            .buffer_unordered(32)
            .try_filter_map(|x| async move { Ok(x) })
            .try_collect()
            .await?;
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn table_schema(&self, table: &str) -> Result<Option<SchemaRef>> {
        let rel = format!("{table}/{SCHEMA_FILE}");
        // A footer and no rows: one read, decoded in memory.
        let Some(bytes) = self.loc.get(&rel).await? else {
            return Ok(None);
        };
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .map_err(|e| Error::Storage(format!("{}/{rel} is not readable: {e}", self.loc)))?;
        Ok(Some(builder.schema().clone()))
    }

    async fn write_schema(&self, table: &str, schema: &SchemaRef) -> Result<()> {
        let mut buf = Vec::new();
        let mut w = ArrowWriter::try_new(&mut buf, schema.clone(), None)
            .map_err(|e| Error::Storage(format!("cannot encode the {table} schema: {e}")))?;
        w.finish()
            .map_err(|e| Error::Storage(format!("cannot encode the {table} schema: {e}")))?;
        drop(w);
        self.loc.put(&format!("{table}/{SCHEMA_FILE}"), Bytes::from(buf)).await
    }

    async fn records(&self) -> Result<Vec<LoadRecord>> {
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

    /// A DataFusion session with the lake's tables (through the partition
    /// pointers), `crest_loads`, and the views in `{lake}/views/`. With `sql`,
    /// only what it names (directly or through a view) is registered: a table
    /// costs a read of every date's pointer.
    pub async fn session(&self, defaults: &[(&'static str, SchemaRef)], sql: Option<&str>) -> Result<SessionContext> {
        let ctx = SessionContext::new();
        let base = url::Url::parse(LAKE_URL).map_err(|e| Error::Config(e.to_string()))?;
        ctx.register_object_store(&base, self.loc.store().clone());
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
            let schema = self.table_schema(table).await?.unwrap_or_else(|| default.clone());
            let mut files = Vec::new();
            for (d, p) in self.pointers(table).await? {
                let day = d
                    .rsplit("date=")
                    .next()
                    .and_then(|x| NaiveDate::parse_from_str(x, "%Y-%m-%d").ok())
                    .map(arrow::datatypes::Date32Type::from_naive_date)
                    .ok_or_else(|| Error::Storage(format!("{}/{d} is not a date partition", self.loc)))?;
                for f in &p.files {
                    let path = self.loc.path(&format!("{d}/{}", f.name));
                    let bytes = match f.bytes {
                        0 => {
                            self.loc
                                .store()
                                .head(&path)
                                .await
                                .map_err(|e| Error::storage(&path, e))?
                                .size
                        }
                        b => b,
                    };
                    files.push((day, PartitionedFile::new(path.to_string(), bytes)));
                }
            }
            let provider: Arc<dyn datafusion::catalog::TableProvider> = Arc::new(PointerTable { schema, files });
            ctx.register_table(*table, provider).map_err(df)?;
        }
        if needs(crest_core::benchmarks::TABLE) {
            let batch = match self.loc.get(BENCHMARKS_FILE).await? {
                Some(bytes) => read_parquet(bytes, &format!("{}/{BENCHMARKS_FILE}", self.loc))?,
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
                    batches.extend(read_parquet(bytes, &format!("{}/{rel}", self.loc))?);
                }
            }
            let provider = MemTable::try_new(schema, vec![batches]).map_err(df)?;
            ctx.register_table(table, Arc::new(provider)).map_err(df)?;
        }
        if needs(LOADS_TABLE) {
            let loads = crest_core::load::loads_batch(&self.records().await?)?;
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
        frame
            .collect()
            .await
            .map_err(|e| Error::Config(format!("the query failed: {}", one_line(&e))))
    }
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

impl Lake {
    /// The files a date will hold after this load: (staged name, source file).
    fn new_files<'p>(load_id: &str, files: &'p [crest_core::raw::RawFile]) -> Vec<(PartFile, &'p str)> {
        files
            .iter()
            .enumerate()
            .map(|(k, f)| {
                (
                    PartFile {
                        name: staged_name(load_id, k),
                        sha256: f.sha256.clone(),
                        rows: f.rows,
                        bytes: f.bytes,
                    },
                    f.path.as_str(),
                )
            })
            .collect()
    }

    /// The rows of an old file whose platform × account is outside `scope`,
    /// written as a file of this load; `None` when every row is in scope.
    async fn keep_outside(
        &self,
        d: &str,
        old: &PartFile,
        scope: &BTreeSet<String>,
        name: String,
    ) -> Result<Option<PartFile>> {
        use arrow::array::{Array, AsArray, BooleanArray};
        let rel = format!("{d}/{}", old.name);
        let unreadable = |e: &dyn std::fmt::Display| Error::Storage(format!("{}/{rel} is not readable: {e}", self.loc));
        let bytes =
            self.loc.get(&rel).await?.ok_or_else(|| {
                Error::Storage(format!("{}/{rel} is named by its date's pointer but missing", self.loc))
            })?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .map_err(|e| unreadable(&e))?
            .build()
            .map_err(|e| unreadable(&e))?;
        let mut kept: Vec<RecordBatch> = Vec::new();
        for b in reader {
            let b = b.map_err(|e| unreadable(&e))?;
            let (Some(p), Some(a)) = (
                b.column_by_name("platform").and_then(|c| c.as_string_opt::<i32>()),
                b.column_by_name("account_id").and_then(|c| c.as_string_opt::<i32>()),
            ) else {
                continue;
            };
            let keep: BooleanArray = (0..b.num_rows())
                .map(|i| {
                    Some(p.is_valid(i) && a.is_valid(i) && !scope.contains(&format!("{}/{}", p.value(i), a.value(i))))
                })
                .collect();
            let out = arrow::compute::filter_record_batch(&b, &keep).map_err(|e| unreadable(&e))?;
            if out.num_rows() > 0 {
                kept.push(out);
            }
        }
        let Some(first) = kept.first() else { return Ok(None) };
        let mut buf = Vec::new();
        let mut w = ArrowWriter::try_new(&mut buf, first.schema(), None).map_err(|e| unreadable(&e))?;
        let mut rows = 0u64;
        for b in &kept {
            rows += b.num_rows() as u64;
            w.write(b).map_err(|e| unreadable(&e))?;
        }
        w.close().map_err(|e| unreadable(&e))?;
        let file = PartFile {
            name,
            sha256: hex::encode(Sha256::digest(&buf)),
            rows,
            bytes: buf.len() as u64,
        };
        self.loc.put(&format!("{d}/{}", file.name), Bytes::from(buf)).await?;
        Ok(Some(file))
    }

    fn same_content(old: Option<&Partition>, new: &[(PartFile, &str)]) -> bool {
        let Some(old) = old else { return false };
        let a: BTreeSet<&str> = old.files.iter().map(|f| f.sha256.as_str()).collect();
        let b: BTreeSet<&str> = new.iter().map(|(f, _)| f.sha256.as_str()).collect();
        a == b && old.files.len() == new.len()
    }
}

impl Destination for Lake {
    fn describe(&self) -> String {
        format!("lake:{}", self.loc)
    }

    fn lease_location(&self) -> Option<&Location> {
        Some(&self.loc)
    }

    async fn loaded(&self, checksum: &str) -> Result<Option<LoadRecord>> {
        Ok(self
            .records()
            .await?
            .into_iter()
            .rev()
            .find(|r| r.manifest_checksum == checksum && r.status == "succeeded"))
    }

    async fn prepare(&self, schemas: &[(&'static str, SchemaRef)], _create: bool) -> Result<Vec<String>> {
        // The lake is created where it is missing: it is the embedded default.
        let mut changes = Vec::new();
        let mut updates = Vec::new();
        let mut problems = Vec::new();
        for (table, input) in schemas {
            match self.table_schema(table).await? {
                None => updates.push((*table, input.clone())),
                Some(lake) => {
                    let (added, bad) = compare(table, &lake, input);
                    problems.extend(bad);
                    if !added.is_empty() {
                        // The lake's columns first, in their order, then the new ones.
                        let mut fields: Vec<Field> = lake.fields().iter().map(|f| f.as_ref().clone()).collect();
                        for g in input.fields() {
                            if lake.field_with_name(g.name()).is_err() {
                                fields.push(g.as_ref().clone());
                            }
                        }
                        updates.push((
                            *table,
                            Arc::new(Schema::new_with_metadata(fields, lake.metadata().clone())),
                        ));
                        changes.extend(added);
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
        for (table, schema) in updates {
            self.write_schema(table, &schema).await?;
        }
        self.write_views().await?;
        Ok(changes)
    }

    type Staged = Staged;

    async fn stage(&self, plan: &LoadPlan, _schemas: &[(&'static str, SchemaRef)], load_id: &str) -> Result<Staged> {
        // What each date holds now, read side by side; merge needs it too.
        let keys: Vec<(&'static str, NaiveDate)> = plan
            .tables
            .iter()
            .flat_map(|t| t.dates.keys().map(move |d| (t.table, *d)))
            .collect();
        let before: BTreeMap<(&'static str, NaiveDate), Option<Partition>> = futures::stream::iter(keys)
            .map(|(table, date)| async move { Ok::<_, Error>(((table, date), self.pointer(table, date).await?)) })
            .buffer_unordered(32)
            .try_collect()
            .await?;
        // Rows of pairs the run does not speak for stay: a run of TikTok alone
        // never removes Meta's rows of the same dates.
        let mut kept: BTreeMap<(&'static str, NaiveDate), Vec<PartFile>> = BTreeMap::new();
        if let Some(scope) = &plan.scope {
            for t in &plan.tables {
                for date in t.dates.keys() {
                    let Some(Some(old)) = before.get(&(t.table, *date)) else {
                        continue;
                    };
                    let d = dir(t.table, *date);
                    for (k, f) in old.files.iter().enumerate() {
                        let name = format!("{load_id}-kept-{k}.parquet");
                        if let Some(file) = self.keep_outside(&d, f, scope, name).await? {
                            kept.entry((t.table, *date)).or_default().push(file);
                        }
                    }
                }
            }
        }
        let mut copies: Vec<(String, String, String)> = Vec::new();
        for t in &plan.tables {
            for (date, files) in &t.dates {
                let old = before.get(&(t.table, *date)).and_then(|p| p.as_ref());
                let new = Self::new_files(load_id, files);
                if Self::same_content(old, &new) {
                    continue;
                }
                for (f, src) in new {
                    copies.push((src.to_string(), format!("{}/{}", dir(t.table, *date), f.name), f.sha256));
                }
            }
        }
        futures::stream::iter(copies)
            .map(|(src, dst, sha)| async move {
                let bytes = plan
                    .input
                    .get(&src)
                    .await?
                    .ok_or_else(|| Error::Data(format!("{}/{src} is named by the manifest but missing", plan.input)))?;
                if hex::encode(Sha256::digest(&bytes)) != sha {
                    return Err(Error::Data(format!(
                        "{}/{src} does not match its checksum in the manifest: it changed after the transform; run crest transform again",
                        plan.input
                    )));
                }
                self.loc.put(&dst, bytes).await
            })
            .buffer_unordered(COPY_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(Staged { before, kept })
    }

    async fn merge(&self, plan: &LoadPlan, load_id: &str, mut staged: Staged) -> Result<Vec<TableReport>> {
        let mut reports = Vec::new();
        for t in &plan.tables {
            let mut report = TableReport {
                table: t.table.to_string(),
                ..TableReport::default()
            };
            for (date, files) in &t.dates {
                let d = dir(t.table, *date);
                let old = staged.before.remove(&(t.table, *date)).flatten();
                let kept = staged.kept.remove(&(t.table, *date)).unwrap_or_default();
                let kept_rows: u64 = kept.iter().map(|f| f.rows).sum();
                let new = Self::new_files(load_id, files);
                let rows: u64 = new.iter().map(|(f, _)| f.rows).sum();
                if kept.is_empty() && Self::same_content(old.as_ref(), &new) {
                    report.unchanged += rows;
                    continue;
                }
                if old.is_none() && new.is_empty() {
                    continue;
                }
                let mut files: Vec<PartFile> = new.into_iter().map(|(f, _)| f).collect();
                files.extend(kept);
                let pointer = Partition {
                    load_id: load_id.to_string(),
                    run_id: plan.run_id.clone(),
                    rows: rows + kept_rows,
                    files,
                };
                // The switch: one atomic put.
                self.loc.put_json(&format!("{d}/{POINTER}"), &pointer).await?;
                match &old {
                    Some(o) => {
                        report.replaced += rows;
                        report.replaced_old += o.rows.saturating_sub(kept_rows);
                    }
                    None => report.inserted += rows,
                }
                // Then the old files (and any a crashed load left) go.
                let keep: BTreeSet<&str> = pointer.files.iter().map(|f| f.name.as_str()).collect();
                for meta in self.loc.list(&d).await? {
                    let rel = self.loc.relative(&meta.location);
                    let name = rel.rsplit('/').next().unwrap_or_default();
                    if name.ends_with(".parquet") && !keep.contains(name) {
                        self.loc.delete(&rel).await?;
                    }
                }
            }
            reports.push(report);
        }
        Ok(reports)
    }

    async fn abort(&self, plan: &LoadPlan, load_id: &str) {
        for t in &plan.tables {
            for date in t.dates.keys() {
                let d = dir(t.table, *date);
                let Ok(list) = self.loc.list(&d).await else { continue };
                for meta in list {
                    let rel = self.loc.relative(&meta.location);
                    if rel.rsplit('/').next().is_some_and(|n| n.starts_with(load_id)) {
                        let _ = self.loc.delete(&rel).await;
                    }
                }
            }
        }
    }

    async fn record(&self, record: &LoadRecord) -> Result<()> {
        self.loc
            .put_json(&format!("_loads/{}.json", record.load_id), record)
            .await
    }
}
