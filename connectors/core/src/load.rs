//! What every destination shares: the load plan read from a transform run's
//! manifest (which files, which tables, which dates it restates), and the
//! steps a destination takes (create or upgrade its tables, stage the run's
//! files, merge them in, record the load), driven by [`run_load`]. A new
//! warehouse implements [`Destination`]; planning, idempotency and the
//! report come from here.

use crate::raw::RawFile;
use crate::storage::{split_file, Location};
use crate::window::DateRange;
use crate::{Error, Result};
use arrow::datatypes::SchemaRef;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::future::Future;

/// The tables a load writes: (folder prefix in the transform output, table).
pub const TABLES: &[(&str, &str)] = &[
    ("canonical/creator_performance/", "creator_performance"),
    ("canonical/attribution_windows/", "attribution_windows"),
    ("quarantine/", "quarantine"),
    ("canonical/creator_attribution/", "creator_attribution"),
];
/// The tables a transform run restates (a manifest that does not list its
/// `tables` is a transform's).
pub const TRANSFORM_TABLES: &[&str] = &["creator_performance", "attribution_windows", "quarantine"];
/// The stages whose runs `crest load` loads.
pub const LOADABLE_STAGES: &[&str] = &["transform", "attribute"];
/// The table that records loads.
pub const LOADS_TABLE: &str = "crest_loads";

/// `crest_loads` on every target: one row per load and table.
pub fn loads_schema() -> SchemaRef {
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    let col = |name: &str, t: DataType, doc: &str| {
        Field::new(name, t, false).with_metadata(std::collections::HashMap::from([(
            "description".to_string(),
            doc.to_string(),
        )]))
    };
    std::sync::Arc::new(Schema::new(vec![
        col(
            "load_id",
            DataType::Utf8,
            "The load: its UTC start time and a unique suffix.",
        ),
        col(
            "run_id",
            DataType::Utf8,
            "The transform run loaded (see its _runs/{run_id}.json).",
        ),
        col("manifest", DataType::Utf8, "Where the run's manifest was read."),
        col(
            "manifest_checksum",
            DataType::Utf8,
            "SHA-256 of the manifest: a manifest loads once unless forced.",
        ),
        col("target_table", DataType::Utf8, "The table this row reports on."),
        col(
            "rows",
            DataType::Int64,
            "Rows of the run for the table, after de-duplication.",
        ),
        col("inserted", DataType::Int64, "Rows with keys the table did not hold."),
        col(
            "replaced",
            DataType::Int64,
            "Rows that replaced different numbers for their key.",
        ),
        col(
            "replaced_before",
            DataType::Int64,
            "Rows the table held in the run's dates that were replaced or removed.",
        ),
        col("unchanged", DataType::Int64, "Rows already there with the same values."),
        col(
            "loaded_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            "When the load started (UTC).",
        ),
        col(
            "status",
            DataType::Utf8,
            "succeeded (a load that fails records nothing).",
        ),
    ]))
}

/// Loads' rows for `crest_loads` (one per load and table): the one shape of
/// the table on every target, the lake's included.
pub fn loads_batch(records: &[LoadRecord]) -> Result<arrow::record_batch::RecordBatch> {
    use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
    let rows: Vec<(&LoadRecord, &TableReport)> = records
        .iter()
        .flat_map(|r| r.tables.iter().map(move |t| (r, t)))
        .collect();
    let s = |f: &dyn Fn(&LoadRecord, &TableReport) -> String| -> ArrayRef {
        std::sync::Arc::new(StringArray::from_iter_values(rows.iter().map(|(r, t)| f(r, t))))
    };
    let i = |f: &dyn Fn(&TableReport) -> u64| -> ArrayRef {
        std::sync::Arc::new(Int64Array::from_iter_values(rows.iter().map(|(_, t)| f(t) as i64)))
    };
    let columns: Vec<ArrayRef> = vec![
        s(&|r, _| r.load_id.clone()),
        s(&|r, _| r.run_id.clone()),
        s(&|r, _| r.manifest.clone()),
        s(&|r, _| r.manifest_checksum.clone()),
        s(&|_, t| t.table.clone()),
        i(&|t| t.inserted + t.replaced + t.unchanged),
        i(&|t| t.inserted),
        i(&|t| t.replaced),
        i(&|t| t.replaced_old),
        i(&|t| t.unchanged),
        std::sync::Arc::new(
            TimestampMicrosecondArray::from_iter_values(rows.iter().map(|(r, _)| r.loaded_at.timestamp_micros()))
                .with_timezone("UTC"),
        ),
        s(&|r, _| r.status.clone()),
    ];
    arrow::record_batch::RecordBatch::try_new(loads_schema(), columns)
        .map_err(|e| Error::Data(format!("cannot build the crest_loads rows: {e}")))
}

/// A load record read back from `crest_loads` rows: (load_id, table, rows, inserted, replaced, replaced_before, unchanged).
pub fn record_from_rows(checksum: &str, rows: &[Vec<Option<String>>]) -> Option<LoadRecord> {
    let newest = rows.iter().filter_map(|r| r.first().cloned().flatten()).max()?;
    let num = |v: &Option<String>| v.as_deref().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    let tables = rows
        .iter()
        .filter(|r| r.first().cloned().flatten().as_deref() == Some(newest.as_str()))
        .map(|r| TableReport {
            table: r.get(1).cloned().flatten().unwrap_or_default(),
            inserted: num(&r[3]),
            replaced: num(&r[4]),
            replaced_old: num(&r[5]),
            unchanged: num(&r[6]),
        })
        .collect();
    // The load id starts with the load's UTC start time.
    let loaded_at = chrono::NaiveDateTime::parse_from_str(newest.get(..16).unwrap_or_default(), "%Y%m%dT%H%M%SZ")
        .map(|t| t.and_utc())
        .unwrap_or_else(|_| chrono::Utc::now());
    Some(LoadRecord {
        load_id: newest,
        // The caller knows the run (the plan's); crest_loads is asked by checksum.
        run_id: String::new(),
        manifest: String::new(),
        manifest_checksum: checksum.to_string(),
        rows: 0,
        loaded_at,
        status: "succeeded".into(),
        tables,
        schema_changes: Vec::new(),
    })
}

#[derive(Deserialize)]
struct ManifestView {
    run_id: String,
    #[serde(default)]
    stage: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    inputs: serde_json::Value,
    #[serde(default)]
    files: Vec<RawFile>,
    #[serde(default)]
    finished_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Per date, the `platform/account` pairs the transform output speaks for.
    #[serde(default)]
    pairs: Option<BTreeMap<NaiveDate, std::collections::BTreeSet<String>>>,
    /// The tables the run restates in its range (absent: a transform's).
    #[serde(default)]
    tables: Option<Vec<String>>,
}

/// One table's part of a load: its files by date, for every date the run
/// restates (a date without files empties that date).
#[derive(Debug, Clone)]
pub struct TablePlan {
    pub table: &'static str,
    pub dates: BTreeMap<NaiveDate, Vec<RawFile>>,
    pub rows: u64,
}

#[derive(Debug, Clone)]
pub struct LoadPlan {
    pub input: Location,
    /// The manifest, relative to `input`.
    pub manifest: String,
    /// SHA-256 of the manifest's bytes: the same run loads once.
    pub checksum: String,
    pub run_id: String,
    pub range: DateRange,
    pub tables: Vec<TablePlan>,
    /// The `platform/account` pairs the run speaks for (`None` for a run of a
    /// crest that did not record them): a load deletes keys only of these.
    pub scope: Option<std::collections::BTreeSet<String>>,
    /// Where the run read its input, as it was given (`inputs.input`).
    pub source: Option<String>,
}

impl LoadPlan {
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}

/// Reads the load plan from `--input`: a transform's or an attribution's
/// manifest path or URL (`…/_runs/{run_id}.json`), or their output folder,
/// whose newest successful one is taken. A plan holds only the tables its run
/// restates.
pub async fn plan(spec: &str) -> Result<LoadPlan> {
    let spec = spec.trim();
    let (input, rel) = if spec.ends_with(".json") {
        let (loc, name) = split_file(spec, false)?;
        // The manifest sits in {input}/_runs/: file paths in it are relative to {input}.
        let base = spec.trim_end_matches(&name).trim_end_matches('/');
        match base.strip_suffix("_runs") {
            Some(root) => {
                let root = if root.is_empty() {
                    "."
                } else {
                    root.trim_end_matches('/')
                };
                (Location::parse_existing(root)?, format!("_runs/{name}"))
            }
            None => (loc, name),
        }
    } else {
        let input = Location::parse_existing(spec)?;
        let rel = newest_transform(&input).await?.ok_or_else(|| {
            Error::Config(format!(
                "{spec} has no transform or attribution manifest (_runs/*.json): run crest transform (or crest attribute) into it first, or give a manifest's path"
            ))
        })?;
        (input, rel)
    };
    let bytes = input
        .get(&rel)
        .await?
        .ok_or_else(|| Error::Config(format!("{input}/{rel} does not exist: give a transform manifest")))?;
    let m: ManifestView = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Config(format!("{input}/{rel} is not a crest run manifest ({e})")))?;
    if !LOADABLE_STAGES.contains(&m.stage.as_str()) || m.status != "succeeded" {
        return Err(Error::Config(format!(
            "{input}/{rel} is a {} run ({}), not a finished transform or attribution: load what crest transform or crest attribute wrote",
            if m.stage.is_empty() { "non-crest" } else { &m.stage },
            if m.status.is_empty() { "no status" } else { &m.status }
        )));
    }
    let range: DateRange = serde_json::from_value(m.inputs["range"].clone())
        .map_err(|_| Error::Config(format!("{input}/{rel} names no date range")))?;
    let restated: Vec<String> = m
        .tables
        .clone()
        .unwrap_or_else(|| TRANSFORM_TABLES.iter().map(|t| t.to_string()).collect());
    // Only the tables the run restates: a transform's dates say nothing of attribution.
    let mut tables: Vec<TablePlan> = TABLES
        .iter()
        .filter(|(_, table)| restated.iter().any(|t| t == table))
        .map(|(_, table)| TablePlan {
            table,
            dates: range.dates().map(|d| (d, Vec::new())).collect(),
            rows: 0,
        })
        .collect();
    for f in m.files {
        let Some((_, name)) = TABLES.iter().find(|(prefix, _)| f.path.starts_with(prefix)) else {
            continue;
        };
        let Some(plan) = tables.iter_mut().find(|t| t.table == *name) else {
            continue;
        };
        plan.rows += f.rows;
        plan.dates.entry(f.date).or_default().push(f);
    }
    Ok(LoadPlan {
        input,
        manifest: rel,
        checksum: hex::encode(Sha256::digest(&bytes)),
        run_id: m.run_id,
        range,
        tables,
        scope: m.pairs.map(|p| p.into_values().flatten().collect()),
        source: m.inputs["input"].as_str().map(str::to_string),
    })
}

async fn newest_transform(input: &Location) -> Result<Option<String>> {
    let mut runs: Vec<String> = input
        .list("_runs")
        .await?
        .iter()
        .map(|m| input.relative(&m.location))
        .filter(|r| r.ends_with(".json") && !r.contains("_inflight"))
        .collect();
    // Run ids start with their UTC start second: the newest is among the last
    // names, but two runs of one second sort by their random suffix, so the
    // runs of that second are told apart by when they finished.
    runs.sort();
    let mut newest: Option<(String, Option<chrono::DateTime<chrono::Utc>>)> = None;
    for rel in runs.into_iter().rev() {
        let second = |r: &str| r.trim_start_matches("_runs/").get(..16).map(str::to_string);
        if let Some((found, _)) = &newest {
            if second(&rel) != second(found) {
                break;
            }
        }
        let Some(bytes) = input.get(&rel).await? else { continue };
        if let Ok(m) = serde_json::from_slice::<ManifestView>(&bytes) {
            if LOADABLE_STAGES.contains(&m.stage.as_str())
                && m.status == "succeeded"
                && newest.as_ref().is_none_or(|(_, at)| m.finished_at > *at)
            {
                newest = Some((rel, m.finished_at));
            }
        }
    }
    Ok(newest.map(|(rel, _)| rel))
}

/// What a load did to one table.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableReport {
    pub table: String,
    /// Rows in dates the table did not hold before.
    pub inserted: u64,
    /// Rows that replaced a date's earlier rows, and how many rows that date held.
    pub replaced: u64,
    pub replaced_old: u64,
    /// Rows of dates whose content was already there.
    pub unchanged: u64,
}

/// The record of one load, kept by the destination (`crest_loads`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadRecord {
    pub load_id: String,
    pub run_id: String,
    pub manifest: String,
    pub manifest_checksum: String,
    pub rows: u64,
    pub loaded_at: chrono::DateTime<chrono::Utc>,
    pub status: String,
    pub tables: Vec<TableReport>,
    /// Schema changes applied (columns added).
    #[serde(default)]
    pub schema_changes: Vec<String>,
}

/// A warehouse or lake crest loads into.
pub trait Destination {
    /// How the target prints in messages (never with credentials).
    fn describe(&self) -> String;
    /// Where loads must take turns (a lake replaces files on an object store):
    /// [`run_load`] holds a lease there. Warehouses serialize their own MERGEs.
    fn lease_location(&self) -> Option<&Location> {
        None
    }
    /// The record of an earlier load of this plan's manifest (`plan.checksum`)
    /// into every table it writes, if any.
    fn loaded(&self, plan: &LoadPlan) -> impl Future<Output = Result<Option<LoadRecord>>>;
    /// Creates the tables, or adds the columns a newer schema brings; stops on
    /// an incompatible change with what differs. Returns the changes made.
    fn prepare(&self, schemas: &[(&'static str, SchemaRef)], create: bool)
        -> impl Future<Output = Result<Vec<String>>>;
    /// What `stage` learned that `merge` needs (e.g. what the target held before).
    type Staged;
    /// Puts the run's rows where readers do not see them yet; `schemas` are
    /// the tables' schemas as `prepare` was given them.
    fn stage(
        &self,
        plan: &LoadPlan,
        schemas: &[(&'static str, SchemaRef)],
        load_id: &str,
    ) -> impl Future<Output = Result<Self::Staged>>;
    /// Makes the staged rows visible, replacing the dates they restate, all at
    /// once per date (per table for warehouses); reports what changed.
    fn merge(
        &self,
        plan: &LoadPlan,
        load_id: &str,
        staged: Self::Staged,
    ) -> impl Future<Output = Result<Vec<TableReport>>>;
    /// Removes what `stage` put, after a failure.
    fn abort(&self, plan: &LoadPlan, load_id: &str) -> impl Future<Output = ()>;
    fn record(&self, record: &LoadRecord) -> impl Future<Output = Result<()>>;
    /// API calls made and request bytes sent so far (warehouses), for the
    /// report and the benchmarks.
    fn traffic(&self) -> Option<(u64, u64)> {
        None
    }
}

/// Each table's schema as the run's files carry it (a newer crest may add
/// columns), else `defaults` for a table the run wrote no file of.
pub async fn file_schemas(
    plan: &LoadPlan,
    defaults: &[(&'static str, SchemaRef)],
) -> Result<Vec<(&'static str, SchemaRef)>> {
    use parquet::arrow::async_reader::ParquetObjectReader;
    use parquet::arrow::ParquetRecordBatchStreamBuilder;
    let mut out = Vec::new();
    for (table, default) in defaults {
        let first = plan
            .tables
            .iter()
            .find(|t| t.table == *table)
            .and_then(|t| t.dates.values().flatten().next());
        let schema = match first {
            None => default.clone(),
            Some(f) => {
                let reader = ParquetObjectReader::new(plan.input.store().clone(), plan.input.path(&f.path));
                let builder = ParquetRecordBatchStreamBuilder::new(reader)
                    .await
                    .map_err(|e| Error::Data(format!("{}/{} is not readable Parquet: {e}", plan.input, f.path)))?;
                builder.schema().clone()
            }
        };
        out.push((*table, schema));
    }
    Ok(out)
}

/// The outcome of [`run_load`].
#[derive(Debug, Clone)]
pub enum LoadOutcome {
    Loaded(LoadRecord),
    /// The manifest was loaded before (`--force` loads it again).
    AlreadyLoaded(LoadRecord),
}

/// How a load runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Load the run again even if the target has it.
    pub force: bool,
    /// Create the dataset or schema if missing.
    pub create: bool,
    /// How long to wait for another load into the same lake to finish.
    pub wait_for_lease: std::time::Duration,
}

/// Loads a transform run into a destination: once per manifest unless
/// `force`; schema first, then stage, merge, record. A failure before the
/// merge leaves the destination as it was. Loads into one lake take turns.
pub async fn run_load<D: Destination>(
    dest: &D,
    plan: &LoadPlan,
    schemas: &[(&'static str, SchemaRef)],
    options: LoadOptions,
) -> Result<LoadOutcome> {
    let lease = match dest.lease_location() {
        Some(loc) => Some(crate::lease::Lease::acquire(loc, "load", "crest load", options.wait_for_lease).await?),
        None => None,
    };
    let outcome = load_leased(dest, plan, schemas, options, lease.as_ref()).await;
    if let Some(lease) = lease {
        lease.release().await;
    }
    outcome
}

async fn load_leased<D: Destination>(
    dest: &D,
    plan: &LoadPlan,
    schemas: &[(&'static str, SchemaRef)],
    LoadOptions { force, create, .. }: LoadOptions,
    lease: Option<&crate::lease::Lease>,
) -> Result<LoadOutcome> {
    if !force {
        if let Some(done) = dest.loaded(plan).await? {
            return Ok(LoadOutcome::AlreadyLoaded(done));
        }
    }
    let schema_changes = dest.prepare(schemas, create).await?;
    let now = chrono::Utc::now();
    let load_id = format!(
        "{}-{}",
        now.format("%Y%m%dT%H%M%SZ"),
        &uuid::Uuid::now_v7().simple().to_string()[24..]
    );
    let staged = match dest.stage(plan, schemas, &load_id).await {
        Ok(s) => s,
        Err(e) => {
            dest.abort(plan, &load_id).await;
            return Err(e);
        }
    };
    if let Some(lease) = lease {
        if let Err(e) = lease.check() {
            dest.abort(plan, &load_id).await;
            return Err(e);
        }
    }
    let tables = match dest.merge(plan, &load_id, staged).await {
        Ok(t) => t,
        Err(e) => {
            dest.abort(plan, &load_id).await;
            return Err(e);
        }
    };
    let record = LoadRecord {
        load_id,
        run_id: plan.run_id.clone(),
        manifest: format!("{}/{}", plan.input, plan.manifest),
        manifest_checksum: plan.checksum.clone(),
        rows: plan.rows(),
        loaded_at: now,
        status: "succeeded".into(),
        tables,
        schema_changes,
    };
    dest.record(&record).await?;
    Ok(LoadOutcome::Loaded(record))
}

/// Writes the load's own run manifest beside the transform's
/// (`{input}/_runs/{load_id}.json`, stage `load`): what was loaded where, what
/// each table got, the schema changes and the traffic. The load has already
/// succeeded; a manifest that cannot be written is a warning, not a failure.
pub async fn write_manifest(plan: &LoadPlan, record: &LoadRecord, target: &str, traffic: Option<(u64, u64)>) {
    let finished = chrono::Utc::now();
    let manifest = serde_json::json!({
        "run_id": record.load_id,
        "stage": "load",
        "status": "succeeded",
        "crest_version": env!("CARGO_PKG_VERSION"),
        "started_at": record.loaded_at,
        "finished_at": finished,
        "elapsed_ms": (finished - record.loaded_at).num_milliseconds().max(0),
        "inputs": {
            "transform_run": plan.run_id,
            "manifest": record.manifest,
            "manifest_checksum": plan.checksum,
            "range": plan.range,
            "target": target,
        },
        "rows": plan.rows(),
        "tables": record.tables,
        "schema_changes": record.schema_changes,
        "api": traffic.map(|(calls, bytes)| serde_json::json!({ "calls": calls, "bytes_sent": bytes })),
    });
    let rel = format!("_runs/{}.json", record.load_id);
    if let Err(e) = plan.input.put_json(&rel, &manifest).await {
        tracing::warn!(error = %e, manifest = %format!("{}/{rel}", plan.input), "the load succeeded but its manifest could not be written");
    }
}
