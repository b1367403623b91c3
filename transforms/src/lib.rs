//! crest's transform: raw platform reports → one canonical schema.
//!
//! For each date of the range, every platform's raw files are mapped to the
//! canonical columns ([`platforms`]), attribution windows are labelled against
//! the standard window, creators are resolved from UTMs and platform handles
//! ([`roster`], [`utm`]), spend is converted to the reporting currency
//! ([`fx`]), rows failing a check go to quarantine with a reason
//! ([`quality`]), and raw totals are reconciled with canonical + quarantine
//! totals per platform × account × date: any difference fails the run.
//!
//! Input is only what extracts committed: raw files named by a succeeded
//! extract manifest or a checkpoint ([`crest_core::manifest::committed_raw_files`]),
//! never a run's work in progress. A transform replaces, per date, only the
//! platform × account pairs an extract covered (with rows or with a confirmed
//! empty answer); rows of other pairs in the output's earlier files for that
//! date are carried into the new files, so one transform per platform into
//! one output, or a missing raw folder, never deletes another's rows.
//!
//! Readers of the output folders take only files named by a transform
//! manifest in `_runs/` (`files`); files without one are a transform's work
//! in progress, or a crashed one's leftovers, which the next transform removes.
//! Mapping works on whole Arrow columns; per-row work is limited to lookups
//! cached per distinct landing URL.

pub mod attribution;
pub mod canonical;
pub mod fx;
pub mod platforms;
pub mod quality;
pub mod roster;
pub mod utm;

use arrow::array::RecordBatch;
use chrono::{NaiveDate, SecondsFormat, Utc};
use crest_core::raw::{FileIdentity, RawFile, SliceWriter, META_ACCOUNT, META_EXTRACTED_AT};
use crest_core::storage::Location;
use crest_core::window::DateRange;
use futures::TryStreamExt;
use parquet::arrow::async_reader::ParquetObjectReader;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use quality::Totals;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;

pub use fx::FxRates;
pub use roster::Roster;

#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// A bad roster, fx file, flag or raw input (exit 2).
    #[error("{0}")]
    Input(String),
    /// Raw and canonical + quarantine totals differ (exit 6).
    #[error("{0}")]
    Reconciliation(String),
    #[error(transparent)]
    Core(#[from] crest_core::Error),
}

impl From<TransformError> for crest_core::Error {
    fn from(e: TransformError) -> Self {
        match e {
            TransformError::Input(m) => crest_core::Error::Config(m),
            TransformError::Reconciliation(m) => crest_core::Error::Data(m),
            TransformError::Core(e) => e,
        }
    }
}

pub type Result<T, E = TransformError> = std::result::Result<T, E>;

/// The one attribution window every platform is normalized to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StandardWindow {
    pub click_days: i32,
    pub view_days: i32,
}

impl Default for StandardWindow {
    fn default() -> Self {
        StandardWindow {
            click_days: 7,
            view_days: 1,
        }
    }
}

impl std::str::FromStr for StandardWindow {
    type Err = String;
    /// `7d_click,1d_view` (either part may be omitted: 0 days).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("'{s}' is not a window; write e.g. 7d_click,1d_view");
        let mut w = StandardWindow {
            click_days: 0,
            view_days: 0,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (days, kind) = part.split_once("d_").ok_or_else(bad)?;
            let days: i32 = days.parse().map_err(|_| bad())?;
            match kind {
                "click" => w.click_days = days,
                "view" => w.view_days = days,
                _ => return Err(bad()),
            }
        }
        if w.click_days == 0 && w.view_days == 0 {
            return Err(bad());
        }
        Ok(w)
    }
}

impl std::fmt::Display for StandardWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}d_click,{}d_view", self.click_days, self.view_days)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    Day,
    Hour,
}

pub struct TransformConfig {
    pub input: Location,
    pub output: Location,
    pub range: DateRange,
    pub granularity: Granularity,
    pub roster: Roster,
    pub fx: FxRates,
    pub standard: StandardWindow,
    /// How long to wait for another transform into the same output to finish.
    pub wait_for_lease: std::time::Duration,
}

/// Raw vs canonical + quarantine totals for one platform × account × date.
#[derive(Debug, Clone, Serialize)]
pub struct Reconciliation {
    pub platform: String,
    pub account_id: String,
    pub date: NaiveDate,
    pub raw: Totals,
    pub canonical: Totals,
    pub quarantine: Totals,
}

#[derive(Debug, Default, Serialize)]
pub struct TransformSummary {
    pub run_id: String,
    pub rows_in: u64,
    pub rows_out: u64,
    pub quarantined: BTreeMap<String, u64>,
    pub attribution_rows: u64,
    /// Earlier output rows of platform × account pairs this run had no input
    /// for, carried into its files unchanged.
    pub carried_forward: u64,
    /// Raw files in the input folders that no extract manifest names (work in
    /// progress or leftovers of a killed run): not read.
    pub uncommitted_raw_files: u64,
    /// Rows whose creator could not be resolved (kept, with a null creator_id).
    pub unresolved_rows: u64,
    /// Distinct UTM values / handles behind the unresolved rows (first 50).
    pub unresolved: BTreeSet<String>,
    /// (date, currency) pairs without an fx rate.
    pub missing_fx: BTreeSet<(NaiveDate, String)>,
    pub rows_by_platform: BTreeMap<String, u64>,
    pub elapsed_ms: u64,
    pub timings: Timings,
    pub manifest: String,
}

/// Where the time went, in milliseconds: reading raw Parquet, mapping and
/// checking Arrow batches (raw → canonical), encoding and writing Parquet.
#[derive(Debug, Default, Serialize)]
pub struct Timings {
    pub read_ms: f64,
    pub map_ms: f64,
    pub write_ms: f64,
}

#[derive(Serialize)]
struct TransformManifest<'a> {
    run_id: &'a str,
    stage: &'static str,
    status: &'static str,
    crest_version: &'static str,
    schema_version: i32,
    started_at: String,
    finished_at: String,
    elapsed_ms: u64,
    inputs: serde_json::Value,
    files: Vec<RawFile>,
    input_files: Vec<String>,
    /// Per date, the `platform/account` pairs this run replaced.
    replaced: BTreeMap<NaiveDate, BTreeSet<String>>,
    /// Per date, every `platform/account` pair the output speaks for after
    /// this run (replaced, or carried forward): a load may delete a key of
    /// these pairs the run no longer has, and no other.
    pairs: BTreeMap<NaiveDate, BTreeSet<String>>,
    summary: &'a TransformSummary,
    reconciliation: Vec<Reconciliation>,
    superseded: Vec<String>,
}

pub const CANONICAL_TABLE: &str = "canonical/creator_performance";
pub const WINDOWS_TABLE: &str = "canonical/attribution_windows";

pub fn quarantine_table(platform: &str) -> String {
    format!("quarantine/{platform}")
}

/// One raw file read whole: its account (from the file's metadata) and batches.
pub(crate) struct RawInput {
    pub path: String,
    pub account_id: String,
    pub batches: Vec<RecordBatch>,
}

async fn read_raw(input: &Location, rel: &str) -> Result<RawInput> {
    let reader = ParquetObjectReader::new(input.store().clone(), input.path(rel));
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| TransformError::Input(format!("{input}/{rel} is not a readable Parquet file: {e}")))?;
    let kv = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default();
    let meta = |k: &str| kv.iter().find(|x| x.key == k).and_then(|x| x.value.clone());
    let schema_tag = builder
        .schema()
        .metadata()
        .get("crest.schema")
        .cloned()
        .unwrap_or_default();
    let account_id = meta(META_ACCOUNT).ok_or_else(|| {
        TransformError::Input(format!(
            "{input}/{rel} has no crest.account_id: not written by a crest connector"
        ))
    })?;
    if meta(META_EXTRACTED_AT).is_none() {
        return Err(TransformError::Input(format!(
            "{input}/{rel} has no crest.extracted_at"
        )));
    }
    platforms::check_schema(rel, &schema_tag)?;
    let stream = builder
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| TransformError::Input(format!("cannot read {input}/{rel}: {e}")))?;
    let batches = stream
        .try_collect::<Vec<_>>()
        .await
        .map_err(|e| TransformError::Input(format!("cannot read {input}/{rel}: {e}")))?;
    Ok(RawInput {
        path: rel.to_string(),
        account_id,
        batches,
    })
}

/// Runs a transform holding the output's lease: a second transform into the
/// same output fails at once naming the first (or waits `wait_for_lease`).
pub async fn run_transform(config: TransformConfig) -> Result<TransformSummary> {
    let lease =
        crest_core::lease::Lease::acquire(&config.output, "transform", "crest transform", config.wait_for_lease)
            .await?;
    let result = transform_leased(config, &lease).await;
    lease.release().await;
    result
}

async fn transform_leased(config: TransformConfig, lease: &crest_core::lease::Lease) -> Result<TransformSummary> {
    let started = std::time::Instant::now();
    let started_at = Utc::now();
    let run_id = format!(
        "{}-{}",
        started_at.format("%Y%m%dT%H%M%SZ"),
        &uuid::Uuid::now_v7().simple().to_string()[24..]
    );
    let extracted_at = started_at.to_rfc3339_opts(SecondsFormat::Micros, true);
    let next_n = AtomicU64::new(0);
    let mut summary = TransformSummary {
        run_id: run_id.clone(),
        ..TransformSummary::default()
    };
    let mut reconciliation = Vec::new();
    let mut input_files = Vec::new();

    // Find the input first: an empty range writes nothing. Only committed raw files count.
    let platforms = platforms::all();
    let committed = crest_core::manifest::committed_raw_files(&config.input).await?;
    let mut plan: Vec<(NaiveDate, &'static platforms::Platform, Vec<String>)> = Vec::new();
    let mut replaced: BTreeMap<NaiveDate, BTreeSet<String>> = BTreeMap::new();
    for date in config.range.dates() {
        for p in &platforms {
            let table = p.raw_table(config.granularity);
            let dir = crest_core::raw::partition_dir(&table, date);
            let mut files = Vec::new();
            for meta in config.input.list(&dir).await? {
                let rel = config.input.relative(&meta.location);
                if !rel.ends_with(".parquet") {
                    continue;
                }
                if committed.files.contains(&rel) {
                    files.push(rel);
                } else {
                    tracing::info!(path = %rel, "not named by any extract manifest (an extract in progress, or a killed one's leftover): not read");
                    summary.uncommitted_raw_files += 1;
                }
            }
            files.sort();
            let covered: BTreeSet<String> = committed
                .covered
                .iter()
                .filter(|(t, _, d)| *t == table && *d == date)
                .map(|(_, account, _)| pair_key(p.name, account))
                .collect();
            if !files.is_empty() || !covered.is_empty() {
                replaced.entry(date).or_default().extend(covered);
                plan.push((date, p, files));
            }
        }
    }
    if plan.iter().all(|(_, _, files)| files.is_empty()) && replaced.is_empty() {
        return Err(TransformError::Input(format!(
            "no raw data in {} for {} ({} granularity): run an extract for that range first, or check --input",
            config.input,
            config.range,
            match config.granularity {
                Granularity::Day => "daily",
                Granularity::Hour => "hourly",
            }
        )));
    }

    let identity = |table: String, platform: &'static str| FileIdentity {
        table,
        platform,
        report: "creator_performance",
        run_id: &run_id,
        account_id: None,
        extracted_at: &extracted_at,
    };
    let out = &config.output;
    let mut canonical_writer = SliceWriter::new(
        out,
        identity(CANONICAL_TABLE.into(), "all"),
        canonical::schema(),
        "date",
        &next_n,
    )?;
    let mut windows_writer = SliceWriter::new(
        out,
        identity(WINDOWS_TABLE.into(), "all"),
        canonical::attribution_windows_schema(),
        "date",
        &next_n,
    )?;
    let mut quarantine_writers: BTreeMap<&'static str, SliceWriter<'_>> = BTreeMap::new();
    let mut mapper = platforms::Mapper::new(&config, &run_id);

    let mut by_date: BTreeMap<NaiveDate, Vec<(&'static platforms::Platform, Vec<String>)>> = BTreeMap::new();
    for (date, p, files) in plan {
        by_date.entry(date).or_default().push((p, files));
    }
    // The output's current files (named by a transform manifest) and a crashed
    // transform's leftovers (named by none), listed before anything is written.
    let (earlier, leftovers) = output_files(out, &run_id, config.range, &platforms).await?;
    // Any failure removes what this run already put: no partial output without a manifest.
    let mut pairs: BTreeMap<NaiveDate, BTreeSet<String>> = BTreeMap::new();
    let written: Result<()> = async {
        for (date, work) in by_date {
            let replaced_pairs = replaced.entry(date).or_default();
            for (platform, files) in work {
                let mut mapped = Vec::new();
                let mut raw_totals: BTreeMap<String, Totals> = BTreeMap::new();
                for rel in files {
                    let clock = std::time::Instant::now();
                    let raw = read_raw(&config.input, &rel).await?;
                    summary.timings.read_ms += clock.elapsed().as_secs_f64() * 1e3;
                    input_files.push(raw.path.clone());
                    // Its account is replaced even where no slice record names it.
                    replaced_pairs.insert(pair_key(platform.name, &raw.account_id));
                    let clock = std::time::Instant::now();
                    for batch in &raw.batches {
                        summary.rows_in += batch.num_rows() as u64;
                        raw_totals
                            .entry(raw.account_id.clone())
                            .or_default()
                            .add(&(platform.raw_totals)(batch, &config.standard)?);
                        mapped.push((platform.map)(&mut mapper, batch)?);
                    }
                    summary.timings.map_ms += clock.elapsed().as_secs_f64() * 1e3;
                }
                let clock = std::time::Instant::now();
                let checked = quality::check(platform.name, mapped, config.range)?;
                // Reconcile before anything of this date is written.
                reconciliation.extend(reconcile(platform.name, date, &raw_totals, &checked)?);
                summary.timings.map_ms += clock.elapsed().as_secs_f64() * 1e3;
                let clock = std::time::Instant::now();
                for b in &checked.canonical {
                    summary.rows_out += b.num_rows() as u64;
                    *summary.rows_by_platform.entry(platform.name.to_string()).or_default() += b.num_rows() as u64;
                    canonical_writer.write(b).await?;
                }
                for b in &checked.windows {
                    summary.attribution_rows += b.num_rows() as u64;
                    windows_writer.write(b).await?;
                }
                for (reason, n) in &checked.quarantined {
                    *summary.quarantined.entry(reason.as_str().to_string()).or_default() += n;
                }
                if let Some(q) = &checked.quarantine {
                    if !quarantine_writers.contains_key(platform.name) {
                        let w = SliceWriter::new(
                            out,
                            identity(quarantine_table(platform.name), platform.name),
                            canonical::quarantine_schema(),
                            "date",
                            &next_n,
                        )?;
                        quarantine_writers.insert(platform.name, w);
                    }
                    if let Some(w) = quarantine_writers.get_mut(platform.name) {
                        w.write(q).await?;
                    }
                }
                summary.timings.write_ms += clock.elapsed().as_secs_f64() * 1e3;
            }
            // Rows of pairs this run had no input for stay as they were.
            for (table, rel) in earlier.iter().filter(|(_, rel)| file_date(rel) == Some(date)) {
                let kept = carry_forward(out, rel, replaced_pairs).await?;
                for b in kept.iter().filter(|b| b.num_rows() > 0) {
                    if table == CANONICAL_TABLE {
                        summary.carried_forward += b.num_rows() as u64;
                        pairs.entry(date).or_default().extend(batch_pairs(b));
                        canonical_writer.write(b).await?;
                    } else if table == WINDOWS_TABLE {
                        windows_writer.write(b).await?;
                    } else if let Some(name) = platforms.iter().map(|p| p.name).find(|n| *table == quarantine_table(n))
                    {
                        if !quarantine_writers.contains_key(name) {
                            let w = SliceWriter::new(
                                out,
                                identity(quarantine_table(name), name),
                                canonical::quarantine_schema(),
                                "date",
                                &next_n,
                            )?;
                            quarantine_writers.insert(name, w);
                        }
                        if let Some(w) = quarantine_writers.get_mut(name) {
                            w.write(b).await?;
                        }
                    }
                }
            }
            pairs.entry(date).or_default().extend(replaced_pairs.iter().cloned());
            let clock = std::time::Instant::now();
            canonical_writer.complete(date).await?;
            windows_writer.complete(date).await?;
            for w in quarantine_writers.values_mut() {
                w.complete(date).await?;
            }
            summary.timings.write_ms += clock.elapsed().as_secs_f64() * 1e3;
        }
        Ok(())
    }
    .await;
    if let Err(e) = written {
        canonical_writer.abort().await;
        windows_writer.abort().await;
        for (_, w) in quarantine_writers {
            w.abort().await;
        }
        return Err(e);
    }
    let mut files = canonical_writer.finish().await?;
    files.extend(windows_writer.finish().await?);
    for (_, w) in quarantine_writers {
        files.extend(w.finish().await?);
    }
    summary.unresolved_rows = mapper.unresolved_rows;
    summary.unresolved = mapper.unresolved.clone();
    summary.missing_fx = mapper.missing_fx.clone();
    summary.elapsed_ms = started.elapsed().as_millis() as u64;
    summary.manifest = format!("{}/_runs/{run_id}.json", config.output);

    // Manifest last; then the older files of these dates go, and any leftovers.
    let mut superseded: Vec<String> = earlier.into_iter().map(|(_, rel)| rel).collect();
    superseded.extend(leftovers);
    let manifest = TransformManifest {
        run_id: &run_id,
        stage: "transform",
        status: "succeeded",
        crest_version: env!("CARGO_PKG_VERSION"),
        schema_version: canonical::SCHEMA_VERSION,
        started_at: started_at.to_rfc3339(),
        finished_at: Utc::now().to_rfc3339(),
        elapsed_ms: summary.elapsed_ms,
        inputs: serde_json::json!({
            "input": config.input.to_string(),
            "range": config.range,
            "granularity": config.granularity,
            "standard_window": config.standard.to_string(),
            "reporting_currency": config.fx.reporting(),
            "roster_creators": config.roster.len(),
        }),
        files,
        input_files,
        replaced,
        pairs,
        summary: &summary,
        reconciliation,
        superseded,
    };
    if let Err(e) = lease.check() {
        for f in &manifest.files {
            out.delete(&f.path).await?;
        }
        return Err(e.into());
    }
    out.put_json(&format!("_runs/{run_id}.json"), &manifest).await?;
    for rel in &manifest.superseded {
        out.delete(rel).await?;
    }
    Ok(summary)
}

/// Raw totals against canonical + quarantine totals, per account: any
/// difference (a lost, doubled or altered row) fails the run.
pub fn reconcile(
    platform: &str,
    date: NaiveDate,
    raw_totals: &BTreeMap<String, Totals>,
    checked: &quality::Checked,
) -> Result<Vec<Reconciliation>> {
    let accounts: BTreeSet<&String> = raw_totals
        .keys()
        .chain(checked.canonical_totals.keys())
        .chain(checked.quarantine_totals.keys())
        .collect();
    let mut out = Vec::new();
    for account in accounts {
        let raw = raw_totals.get(account).copied().unwrap_or_default();
        let canonical = checked.canonical_totals.get(account).copied().unwrap_or_default();
        let quarantine = checked.quarantine_totals.get(account).copied().unwrap_or_default();
        let mut both = canonical;
        both.add(&quarantine);
        if both != raw {
            return Err(TransformError::Reconciliation(format!(
                "reconciliation failed for {platform} account {account} on {date}: raw {raw:?} but canonical + quarantine {both:?}; nothing was written (look for a connector bug or a raw file edited by hand)"
            )));
        }
        out.push(Reconciliation {
            platform: platform.to_string(),
            account_id: account.clone(),
            date,
            raw,
            canonical,
            quarantine,
        });
    }
    Ok(out)
}

fn pair_key(platform: &str, account: &str) -> String {
    format!("{platform}/{account}")
}

/// `…/date=YYYY-MM-DD/{file}` → the date.
fn file_date(rel: &str) -> Option<NaiveDate> {
    let part = rel.split('/').find(|p| p.starts_with("date="))?;
    crest_core::window::ymd(part.trim_start_matches("date="))
}

/// Files of earlier runs in the output tables for the range's dates, as
/// (table, path): those named by a transform manifest (the current output,
/// replaced by this run) and those named by none (a crashed run's leftovers).
async fn output_files(
    out: &Location,
    run_id: &str,
    range: DateRange,
    platforms: &[&'static platforms::Platform],
) -> Result<(Vec<(String, String)>, Vec<String>)> {
    let own = format!("{run_id}-");
    let mut tables = vec![CANONICAL_TABLE.to_string(), WINDOWS_TABLE.to_string()];
    tables.extend(platforms.iter().map(|p| quarantine_table(p.name)));
    // YouTube's two raw tables share one quarantine table.
    tables.dedup();
    let mut manifests: BTreeMap<String, bool> = BTreeMap::new();
    let mut current = Vec::new();
    let mut leftovers = Vec::new();
    for date in range.dates() {
        for table in &tables {
            for meta in out.list(&crest_core::raw::partition_dir(table, date)).await? {
                let rel = out.relative(&meta.location);
                let name = rel.rsplit('/').next().unwrap_or_default();
                if !name.ends_with(".parquet") || name.starts_with(&own) {
                    continue;
                }
                // `{run_id}-{n}.parquet`, where a run id is `{time}-{hex}`.
                let owner = name
                    .rsplit_once('-')
                    .map(|(run, _)| run)
                    .unwrap_or_default()
                    .to_string();
                let named = match manifests.get(&owner) {
                    Some(named) => *named,
                    None => {
                        let named = transform_manifest_names(out, &owner).await?;
                        manifests.insert(owner.clone(), named);
                        named
                    }
                };
                if named {
                    current.push((table.clone(), rel));
                } else {
                    tracing::info!(path = %rel, "no transform manifest names this file (a crashed transform's leftover): removing it");
                    leftovers.push(rel);
                }
            }
        }
    }
    Ok((current, leftovers))
}

/// Whether `_runs/{run_id}.json` is a succeeded transform's manifest.
async fn transform_manifest_names(out: &Location, run_id: &str) -> Result<bool> {
    #[derive(serde::Deserialize)]
    struct Head {
        stage: String,
        status: String,
    }
    if run_id.is_empty() {
        return Ok(false);
    }
    Ok(match out.get(&format!("_runs/{run_id}.json")).await? {
        Some(bytes) => {
            serde_json::from_slice::<Head>(&bytes).is_ok_and(|h| h.stage == "transform" && h.status == "succeeded")
        }
        None => false,
    })
}

/// The `platform/account` pairs of a canonical batch's rows.
fn batch_pairs(b: &RecordBatch) -> BTreeSet<String> {
    use arrow::array::{Array, AsArray};
    match (
        b.column_by_name("platform").and_then(|c| c.as_string_opt::<i32>()),
        b.column_by_name("account_id").and_then(|c| c.as_string_opt::<i32>()),
    ) {
        (Some(p), Some(a)) => (0..b.num_rows())
            .filter(|i| p.is_valid(*i) && a.is_valid(*i))
            .map(|i| pair_key(p.value(i), a.value(i)))
            .collect(),
        _ => BTreeSet::new(),
    }
}

/// An earlier output file's rows whose platform × account this run does not replace.
async fn carry_forward(out: &Location, rel: &str, replaced: &BTreeSet<String>) -> Result<Vec<RecordBatch>> {
    use arrow::array::{Array, AsArray, BooleanArray};
    use parquet::arrow::ProjectionMask;
    let unreadable = |e: &dyn std::fmt::Display| {
        TransformError::Input(format!(
            "{out}/{rel} is not a readable Parquet file: {e}; remove it or run the transform that wrote it again"
        ))
    };
    let open = || async {
        let reader = ParquetObjectReader::new(out.store().clone(), out.path(rel));
        ParquetRecordBatchStreamBuilder::new(reader)
            .await
            .map_err(|e| unreadable(&e))
    };
    // The two key columns first: a file this run replaces whole (the usual
    // case) is not read further.
    let keys = open().await?;
    let mask = ProjectionMask::columns(keys.parquet_schema(), ["platform", "account_id"]);
    let key_batches: Vec<RecordBatch> = keys
        .with_projection(mask)
        .build()
        .map_err(|e| unreadable(&e))?
        .try_collect()
        .await
        .map_err(|e| unreadable(&e))?;
    let any_kept = key_batches.iter().any(|b| {
        match (
            b.column_by_name("platform").and_then(|c| c.as_string_opt::<i32>()),
            b.column_by_name("account_id").and_then(|c| c.as_string_opt::<i32>()),
        ) {
            (Some(p), Some(a)) => (0..b.num_rows()).any(|i| !replaced.contains(&pair_key(p.value(i), a.value(i)))),
            _ => true,
        }
    });
    if !any_kept {
        return Ok(Vec::new());
    }
    let batches: Vec<RecordBatch> = open()
        .await?
        .build()
        .map_err(|e| unreadable(&e))?
        .try_collect()
        .await
        .map_err(|e| unreadable(&e))?;
    let mut kept = Vec::with_capacity(batches.len());
    for b in batches {
        let column = |name: &str| {
            b.column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>().cloned())
                .ok_or_else(|| unreadable(&format!("no string column {name}")))
        };
        let (platform, account) = (column("platform")?, column("account_id")?);
        let keep: BooleanArray = (0..b.num_rows())
            .map(|i| {
                Some(
                    platform.is_null(i)
                        || account.is_null(i)
                        || !replaced.contains(&pair_key(platform.value(i), account.value(i))),
                )
            })
            .collect();
        kept.push(arrow::compute::filter_record_batch(&b, &keep).map_err(|e| unreadable(&e))?);
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciliation_catches_a_lost_row() {
        let day = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        let t = |rows, impressions, clicks, spend_micros| Totals {
            rows,
            impressions,
            clicks,
            spend_micros,
            conversions_micros: 0,
        };
        let raw = BTreeMap::from([("a".to_string(), t(2, 100, 3, 1_500_000))]);
        let checked = quality::Checked {
            canonical: vec![],
            windows: vec![],
            quarantine: None,
            quarantined: BTreeMap::new(),
            canonical_totals: BTreeMap::from([("a".to_string(), t(1, 60, 2, 1_000_000))]),
            quarantine_totals: BTreeMap::from([("a".to_string(), t(1, 40, 1, 500_000))]),
        };
        assert_eq!(reconcile("tiktok", day, &raw, &checked).unwrap().len(), 1);
        // The quarantined row goes missing: the run fails, naming where.
        let lost = quality::Checked {
            quarantine_totals: BTreeMap::new(),
            ..checked
        };
        let e = reconcile("tiktok", day, &raw, &lost).unwrap_err();
        assert!(matches!(e, TransformError::Reconciliation(_)), "{e}");
        assert!(e.to_string().contains("account a on 2026-01-01"), "{e}");
    }

    #[test]
    fn standard_window_parses_and_prints() {
        let w: StandardWindow = "7d_click,1d_view".parse().unwrap();
        assert_eq!(w, StandardWindow::default());
        assert_eq!(w.to_string(), "7d_click,1d_view");
        assert_eq!(
            "28d_click".parse::<StandardWindow>().unwrap(),
            StandardWindow {
                click_days: 28,
                view_days: 0
            }
        );
        assert!("7days".parse::<StandardWindow>().is_err());
        assert!("".parse::<StandardWindow>().is_err());
    }
}
