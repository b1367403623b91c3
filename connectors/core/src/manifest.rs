//! The run: its id, its checkpoint while in flight, and its manifest.
//!
//! While a run works, `_runs/_inflight/{key}.json` records each committed
//! slice (key = a hash of the run's inputs). A run started again with the same
//! inputs finds it, keeps the same run id, removes files it had put but not
//! committed, and skips committed slices. The manifest `_runs/{run_id}.json`
//! is written last, so a reader that sees it sees every file it names.
//!
//! Readers of `raw/` take only files named by a succeeded manifest or by a
//! checkpoint's committed slices ([`committed_raw_files`]): a file in a date
//! folder that neither names is a run's work in progress (or its leftover).
//!
//! A slice's files replace earlier runs' files of the same account and dates
//! only once a checkpoint names them. A date the platform answered with no
//! rows replaces rows it had only when the day is complete (a provisional day
//! keeps them), and the manifest lists it under `emptied` as "N rows → 0".

use crate::http::CallCounts;
use crate::raw::{self, FileIdentity, RawFile, SliceWriter};
use crate::state::PlannedRead;
use crate::storage::Location;
use crate::window::DateRange;
use crate::Result;
use arrow::datatypes::SchemaRef;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SliceRecord {
    pub account_id: String,
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub rows: u64,
    pub files: usize,
    pub committed_at: DateTime<Utc>,
    /// Days of the slice that were not complete yet (see [`AccountRead`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provisional: Vec<NaiveDate>,
}

/// What the run reads for one account and why: the range (widened before
/// `--start` by the lookback when state says so), the lookback in days, and
/// the last day that was complete when the run started.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccountRead {
    #[serde(flatten)]
    pub planned: PlannedRead,
    pub lookback_days: u32,
    pub complete_through: NaiveDate,
}

/// A date that had rows and that the platform now answered with none.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EmptiedDay {
    pub account_id: String,
    pub date: NaiveDate,
    pub rows_before: u64,
    /// True when the old rows were removed (a complete day: the platform's
    /// answer stands); false when they were kept (a provisional day).
    pub replaced: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunManifest {
    pub run_id: String,
    pub stage: String,
    pub platform: String,
    pub report: String,
    pub status: RunStatus,
    pub crest_version: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Wall time across every attempt of this run.
    pub elapsed_ms: u64,
    /// How many times the run was started again after a failure or a kill.
    pub resumed: u32,
    /// The arguments that identify the run (never a secret).
    pub inputs: serde_json::Value,
    /// What the platform said about each account (currency, time zone, …).
    pub accounts: BTreeMap<String, serde_json::Value>,
    pub slices: Vec<SliceRecord>,
    pub files: Vec<RawFile>,
    pub rows: u64,
    pub api: CallCounts,
    /// Per account: what was read and why (lookback, last complete day).
    #[serde(default)]
    pub reads: BTreeMap<String, AccountRead>,
    /// Per account: days read that were not complete yet; the next run with
    /// `--state` reads them again.
    #[serde(default)]
    pub provisional: BTreeMap<String, Vec<NaiveDate>>,
    /// Dates that had rows and came back empty ("N rows → 0").
    #[serde(default)]
    pub emptied: Vec<EmptiedDay>,
    /// Files of earlier runs replaced by this one (same account and date).
    pub superseded: Vec<String>,
    pub next_file_number: u64,
    /// The incremental state after the run, when `--state` was given.
    pub state: Option<serde_json::Value>,
}

pub struct Run {
    out: Location,
    key: String,
    manifest: RunManifest,
    next_n: AtomicU64,
    extracted_at: String,
    extracted_at_us: i64,
    /// Calls and elapsed time of earlier attempts, added to this one's.
    prior_api: CallCounts,
    prior_elapsed_ms: u64,
    started: std::time::Instant,
    /// When the checkpoint was last written; commits in between are recorded
    /// by the next one (a crash before it re-reads those slices, nothing more).
    last_checkpoint: Option<std::time::Instant>,
    /// Committed slices not yet named by a written checkpoint: their older
    /// files wait for it, and so does the state.
    pending: Vec<SliceRecord>,
    /// Other runs' files per date partition, with their footer, listed once.
    foreign: BTreeMap<chrono::NaiveDate, Vec<(String, raw::Footer)>>,
}

/// How often commits are checkpointed: each checkpoint holds every file of
/// the run, so writing one per slice would grow quadratically with accounts.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

impl Run {
    /// Opens a new run, or resumes the unfinished run with the same inputs.
    pub async fn open(out: Location, platform: &str, report: &str, inputs: serde_json::Value) -> Result<Run> {
        let key = {
            let canon = serde_json::to_vec(&(platform, report, &inputs)).unwrap_or_default();
            hex::encode(&Sha256::digest(&canon)[..12])
        };
        let checkpoint: Option<RunManifest> = out.get_json(&Self::checkpoint_path(&key)).await?;
        let now = Utc::now();
        let extracted_at = now.to_rfc3339_opts(SecondsFormat::Micros, true);
        let extracted_at_us = now.timestamp_micros();
        match checkpoint {
            Some(mut m) if m.status == RunStatus::Running => {
                m.resumed += 1;
                tracing::info!(run_id = %m.run_id, committed_slices = m.slices.len(), "resuming an unfinished run");
                let mut run = Run {
                    next_n: AtomicU64::new(m.next_file_number),
                    prior_api: m.api,
                    prior_elapsed_ms: m.elapsed_ms,
                    out,
                    key,
                    manifest: m,
                    extracted_at,
                    extracted_at_us,
                    started: std::time::Instant::now(),
                    last_checkpoint: None,
                    pending: Vec::new(),
                    foreign: BTreeMap::new(),
                };
                run.remove_uncommitted_files().await?;
                run.supersede_committed().await?;
                Ok(run)
            }
            _ => {
                let run_id = format!(
                    "{}-{}",
                    now.format("%Y%m%dT%H%M%SZ"),
                    &uuid::Uuid::now_v7().simple().to_string()[24..]
                );
                out.probe_writable(&run_id).await?;
                Ok(Run {
                    manifest: RunManifest {
                        run_id,
                        stage: "extract".into(),
                        platform: platform.into(),
                        report: report.into(),
                        status: RunStatus::Running,
                        crest_version: env!("CARGO_PKG_VERSION").into(),
                        started_at: now,
                        finished_at: None,
                        elapsed_ms: 0,
                        resumed: 0,
                        inputs,
                        accounts: BTreeMap::new(),
                        slices: Vec::new(),
                        files: Vec::new(),
                        rows: 0,
                        api: CallCounts::default(),
                        reads: BTreeMap::new(),
                        provisional: BTreeMap::new(),
                        emptied: Vec::new(),
                        superseded: Vec::new(),
                        next_file_number: 0,
                        state: None,
                    },
                    next_n: AtomicU64::new(0),
                    prior_api: CallCounts::default(),
                    prior_elapsed_ms: 0,
                    out,
                    key,
                    extracted_at,
                    extracted_at_us,
                    started: std::time::Instant::now(),
                    last_checkpoint: None,
                    pending: Vec::new(),
                    foreign: BTreeMap::new(),
                })
            }
        }
    }

    fn checkpoint_path(key: &str) -> String {
        format!("_runs/_inflight/{key}.json")
    }

    pub fn run_id(&self) -> &str {
        &self.manifest.run_id
    }

    pub fn is_resumed(&self) -> bool {
        self.manifest.resumed > 0
    }

    /// RFC 3339 time stamp every row of this attempt carries.
    pub fn extracted_at(&self) -> &str {
        &self.extracted_at
    }

    /// The same time stamp in microseconds since the epoch (UTC), for Arrow columns.
    pub fn extracted_at_us(&self) -> i64 {
        self.extracted_at_us
    }

    pub fn manifest(&self) -> &RunManifest {
        &self.manifest
    }

    pub fn set_account_info(&mut self, account: &str, info: serde_json::Value) {
        self.manifest.accounts.insert(account.to_string(), info);
    }

    /// What an interrupted attempt of this run planned to read for `account`:
    /// a resumed run keeps its plan, whatever the state says since.
    pub fn planned_read(&self, account: &str) -> Option<&AccountRead> {
        self.manifest.reads.get(account)
    }

    pub fn set_planned_read(&mut self, account: &str, read: AccountRead) {
        self.manifest.reads.insert(account.to_string(), read);
    }

    /// The parts of `range` not yet committed for `account`, as contiguous ranges.
    pub fn uncommitted(&self, account: &str, range: DateRange) -> Vec<DateRange> {
        let done: BTreeSet<NaiveDate> = self
            .manifest
            .slices
            .iter()
            .filter(|s| s.account_id == account)
            .flat_map(|s| s.start.iter_days().take_while(move |d| *d <= s.end))
            .collect();
        let mut out: Vec<DateRange> = Vec::new();
        for day in range.dates().filter(|d| !done.contains(d)) {
            match out.last_mut() {
                Some(last) if last.end.succ_opt() == Some(day) => last.end = day,
                _ => out.push(DateRange::single(day)),
            }
        }
        out
    }

    pub fn slice_writer<'a>(
        &'a self,
        account: &'a str,
        schema: SchemaRef,
        date_column: &str,
    ) -> Result<SliceWriter<'a>> {
        SliceWriter::new(
            &self.out,
            FileIdentity {
                table: raw::raw_table(&self.manifest.platform, &self.manifest.report),
                platform: &self.manifest.platform,
                report: &self.manifest.report,
                run_id: &self.manifest.run_id,
                account_id: Some(account),
                extracted_at: &self.extracted_at,
            },
            schema,
            date_column,
            &self.next_n,
        )
    }

    fn api_total(&self, now: CallCounts) -> CallCounts {
        CallCounts {
            api_calls: self.prior_api.api_calls + now.api_calls,
            retries: self.prior_api.retries + now.retries,
            rate_limited: self.prior_api.rate_limited + now.rate_limited,
        }
    }

    fn refresh_counters(&mut self, api: CallCounts) {
        self.manifest.api = self.api_total(api);
        self.manifest.elapsed_ms = self.prior_elapsed_ms + self.started.elapsed().as_millis() as u64;
        self.manifest.next_file_number = self.next_n.load(Ordering::Relaxed);
    }

    /// Records a slice as committed. Returns the slices that became durable
    /// (named by a checkpoint just written), whose state may now advance; the
    /// checkpoint is written at most every [`CHECKPOINT_EVERY`].
    pub async fn commit_slice(
        &mut self,
        account: &str,
        range: DateRange,
        files: Vec<RawFile>,
        api: CallCounts,
    ) -> Result<Vec<SliceRecord>> {
        let rows = files.iter().map(|f| f.rows).sum();
        let complete_through = self.manifest.reads.get(account).map(|r| r.complete_through);
        let provisional: Vec<NaiveDate> = range
            .dates()
            .filter(|d| complete_through.is_some_and(|c| *d > c))
            .collect();
        if !provisional.is_empty() {
            let days = self.manifest.provisional.entry(account.to_string()).or_default();
            days.extend(&provisional);
            days.sort();
            days.dedup();
        }
        let record = SliceRecord {
            account_id: account.to_string(),
            start: range.start,
            end: range.end,
            rows,
            files: files.len(),
            committed_at: Utc::now(),
            provisional,
        };
        self.manifest.slices.push(record.clone());
        self.manifest.rows += rows;
        self.manifest.files.extend(files);
        self.refresh_counters(api);
        self.pending.push(record);
        if self.last_checkpoint.is_none_or(|t| t.elapsed() >= CHECKPOINT_EVERY) {
            return self.checkpoint().await;
        }
        Ok(Vec::new())
    }

    /// Writes a checkpoint naming every committed slice, if one is pending,
    /// and returns the slices it made durable.
    pub async fn flush(&mut self, api: CallCounts) -> Result<Vec<SliceRecord>> {
        self.refresh_counters(api);
        if self.pending.is_empty() {
            return Ok(Vec::new());
        }
        self.checkpoint().await
    }

    /// Writes the checkpoint, then removes the older files its new slices
    /// replace (only once a checkpoint names their replacements).
    async fn checkpoint(&mut self) -> Result<Vec<SliceRecord>> {
        self.out
            .put_json(&Self::checkpoint_path(&self.key), &self.manifest)
            .await?;
        self.last_checkpoint = Some(std::time::Instant::now());
        let durable = std::mem::take(&mut self.pending);
        let mut removed = Vec::new();
        let emptied = self.manifest.emptied.len();
        for slice in &durable {
            removed.extend(self.supersede(slice).await?);
        }
        if !removed.is_empty() || self.manifest.emptied.len() != emptied {
            self.manifest.superseded.extend(removed);
            self.out
                .put_json(&Self::checkpoint_path(&self.key), &self.manifest)
                .await?;
        }
        Ok(durable)
    }

    /// Deletes other runs' files of the slice's account in its date
    /// partitions; a date this run found empty keeps them while provisional.
    async fn supersede(&mut self, slice: &SliceRecord) -> Result<Vec<String>> {
        let own = format!("{}-", self.manifest.run_id);
        let account = slice.account_id.as_str();
        let range = DateRange {
            start: slice.start,
            end: slice.end,
        };
        let with_rows: BTreeSet<NaiveDate> = self
            .manifest
            .files
            .iter()
            .filter(|f| {
                f.account_id.as_deref() == Some(account) && f.rows > 0 && f.date >= range.start && f.date <= range.end
            })
            .map(|f| f.date)
            .collect();
        let mut removed = Vec::new();
        for date in range.dates() {
            if !self.foreign.contains_key(&date) {
                // Listed once per run: this run's own files are never candidates.
                let dir = raw::partition_dir(&raw::raw_table(&self.manifest.platform, &self.manifest.report), date);
                let mut files = Vec::new();
                for meta in self.out.list(&dir).await? {
                    let rel = self.out.relative(&meta.location);
                    let name = rel.rsplit('/').next().unwrap_or_default();
                    if name.starts_with(&own) || !name.ends_with(".parquet") {
                        continue;
                    }
                    if let Some(footer) = raw::file_footer(&self.out, &rel).await? {
                        files.push((rel, footer));
                    }
                }
                self.foreign.insert(date, files);
            }
            let Some(files) = self.foreign.get_mut(&date) else {
                continue;
            };
            let (theirs, others): (Vec<_>, Vec<_>) = files
                .drain(..)
                .partition(|(_, f)| f.account_id.as_deref() == Some(account));
            *files = others;
            let rows_before: u64 = theirs.iter().map(|(_, f)| f.rows).sum();
            if !with_rows.contains(&date) && rows_before > 0 {
                let replaced = !slice.provisional.contains(&date);
                if replaced {
                    tracing::warn!(account = %account, date = %date, rows_before, "the platform answered a complete day with no rows: {rows_before} rows → 0");
                } else {
                    tracing::warn!(account = %account, date = %date, rows_before, "no rows for a day that is not complete yet; its {rows_before} earlier rows are kept until it is");
                }
                // A resumed run meets the same day again: recorded once.
                if !self
                    .manifest
                    .emptied
                    .iter()
                    .any(|e| e.account_id == account && e.date == date)
                {
                    self.manifest.emptied.push(EmptiedDay {
                        account_id: account.to_string(),
                        date,
                        rows_before,
                        replaced,
                    });
                }
                if !replaced {
                    continue;
                }
            }
            for (rel, _) in theirs {
                self.out.delete(&rel).await?;
                tracing::debug!(path = %rel, "replaced by this run");
                removed.push(rel);
            }
        }
        Ok(removed)
    }

    async fn supersede_committed(&mut self) -> Result<()> {
        for slice in self.manifest.slices.clone() {
            let removed = self.supersede(&slice).await?;
            self.manifest.superseded.extend(removed);
        }
        Ok(())
    }

    /// After a kill, files put after the last checkpoint belong to no slice: remove them.
    async fn remove_uncommitted_files(&self) -> Result<()> {
        let committed: BTreeSet<&str> = self.manifest.files.iter().map(|f| f.path.as_str()).collect();
        let own = format!("{}-", self.manifest.run_id);
        // Every date any account's read covers (a lookback reaches before --start).
        let mut dates: BTreeSet<NaiveDate> = self
            .manifest
            .reads
            .values()
            .flat_map(|r| r.planned.range.dates().collect::<Vec<_>>())
            .collect();
        let requested: Option<DateRange> = serde_json::from_value(self.manifest.inputs["range"].clone()).ok();
        dates.extend(requested.iter().flat_map(|r| r.dates().collect::<Vec<_>>()));
        for date in dates {
            let dir = raw::partition_dir(&raw::raw_table(&self.manifest.platform, &self.manifest.report), date);
            for meta in self.out.list(&dir).await? {
                let rel = self.out.relative(&meta.location);
                let name = rel.rsplit('/').next().unwrap_or_default();
                if name.starts_with(&own) && !committed.contains(rel.as_str()) {
                    tracing::info!(path = %rel, "removing a file the interrupted attempt had not committed");
                    self.out.delete(&rel).await?;
                }
            }
        }
        Ok(())
    }

    /// Writes the manifest (last) and removes the checkpoint.
    /// Call [`Run::flush`] first (and advance the state for what it returns).
    pub async fn finish(mut self, api: CallCounts, state: Option<serde_json::Value>) -> Result<RunManifest> {
        self.refresh_counters(api);
        if !self.pending.is_empty() {
            self.checkpoint().await?;
        }
        self.manifest.status = RunStatus::Succeeded;
        self.manifest.finished_at = Some(Utc::now());
        self.manifest.state = state;
        let path = format!("_runs/{}.json", self.manifest.run_id);
        self.out.put_json(&path, &self.manifest).await?;
        self.out.delete(&Self::checkpoint_path(&self.key)).await?;
        Ok(self.manifest)
    }

    /// Saves the counters so far, for a run that stops on an error.
    pub async fn save_checkpoint(&mut self, api: CallCounts) -> Result<()> {
        self.refresh_counters(api);
        if self.manifest.slices.is_empty() {
            // Nothing committed: leave nothing behind.
            return self.out.delete(&Self::checkpoint_path(&self.key)).await;
        }
        self.checkpoint().await.map(|_| ())
    }
}

/// What readers of `raw/` may take: the files named by a succeeded extract
/// manifest or by a checkpoint's committed slices, and every (raw table,
/// account, date) such a slice covered, with or without rows. A file in a
/// date folder that none names is a run's work in progress or the leftover
/// of a killed one; a covered account × date without files is a day the
/// platform answered with no rows.
#[derive(Debug, Default)]
pub struct CommittedRaw {
    pub files: std::collections::HashSet<String>,
    pub covered: std::collections::HashSet<(String, String, NaiveDate)>,
}

impl CommittedRaw {
    pub fn covers(&self, table: &str, account: &str, date: NaiveDate) -> bool {
        self.covered.contains(&(table.to_string(), account.to_string(), date))
    }
}

/// Reads every extract manifest and checkpoint under `{out}/_runs/`.
pub async fn committed_raw_files(out: &Location) -> Result<CommittedRaw> {
    use futures::StreamExt;

    #[derive(Deserialize)]
    struct Named {
        path: String,
    }
    #[derive(Deserialize)]
    struct Slice {
        account_id: String,
        start: NaiveDate,
        end: NaiveDate,
    }
    #[derive(Deserialize)]
    struct ExtractRun {
        stage: String,
        status: RunStatus,
        #[serde(default)]
        platform: String,
        #[serde(default)]
        report: String,
        #[serde(default)]
        files: Vec<Named>,
        #[serde(default)]
        slices: Vec<Slice>,
    }

    let names: Vec<String> = out
        .list("_runs")
        .await?
        .iter()
        .map(|m| out.relative(&m.location))
        .filter(|rel| rel.ends_with(".json"))
        .collect();
    let runs: Vec<Result<Option<ExtractRun>>> = futures::stream::iter(names)
        .map(|rel| async move {
            let inflight = rel.starts_with("_runs/_inflight/");
            // Other stages' manifests share the folder: not an extract, not a reason to fail.
            let run = match out.get(&rel).await? {
                Some(bytes) => serde_json::from_slice::<ExtractRun>(&bytes).ok(),
                None => None,
            };
            Ok(run.filter(|r| {
                r.stage == "extract"
                    && (r.status == RunStatus::Succeeded || (inflight && r.status == RunStatus::Running))
            }))
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut committed = CommittedRaw::default();
    for run in runs {
        let Some(run) = run? else { continue };
        let table = raw::raw_table(&run.platform, &run.report);
        committed.files.extend(run.files.into_iter().map(|f| f.path));
        for s in run.slices {
            for date in (DateRange {
                start: s.start,
                end: s.end,
            })
            .dates()
            {
                committed.covered.insert((table.clone(), s.account_id.clone(), date));
            }
        }
    }
    Ok(committed)
}
