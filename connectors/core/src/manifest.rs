//! The run: its id, its checkpoint while in flight, and its manifest.
//!
//! While a run works, `_runs/_inflight/{key}.json` records each committed
//! slice (key = a hash of the run's inputs). A run started again with the same
//! inputs finds it, keeps the same run id, removes files it had put but not
//! committed, and skips committed slices. The manifest `_runs/{run_id}.json`
//! is written last, so a reader that sees it sees every file it names.

use crate::http::CallCounts;
use crate::raw::{self, FileIdentity, RawFile, SliceWriter};
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
    /// Committed slices whose older files wait for a checkpoint naming them.
    pending_supersede: Vec<(String, DateRange)>,
    /// Other runs' files per date partition, with their account, listed once.
    foreign: BTreeMap<chrono::NaiveDate, Vec<(String, Option<String>)>>,
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
                    pending_supersede: Vec::new(),
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
                    pending_supersede: Vec::new(),
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

    /// Records a slice as committed (checkpoint first), then removes files of
    /// earlier runs for the same account and dates.
    pub async fn commit_slice(
        &mut self,
        account: &str,
        range: DateRange,
        files: Vec<RawFile>,
        api: CallCounts,
    ) -> Result<()> {
        let rows = files.iter().map(|f| f.rows).sum();
        self.manifest.slices.push(SliceRecord {
            account_id: account.to_string(),
            start: range.start,
            end: range.end,
            rows,
            files: files.len(),
            committed_at: Utc::now(),
        });
        self.manifest.rows += rows;
        self.manifest.files.extend(files);
        self.refresh_counters(api);
        self.pending_supersede.push((account.to_string(), range));
        if self.last_checkpoint.is_none_or(|t| t.elapsed() >= CHECKPOINT_EVERY) {
            self.checkpoint().await?;
        }
        Ok(())
    }

    /// Writes the checkpoint, then removes the older files its new slices
    /// replace (only once a checkpoint names their replacements).
    async fn checkpoint(&mut self) -> Result<()> {
        self.out
            .put_json(&Self::checkpoint_path(&self.key), &self.manifest)
            .await?;
        self.last_checkpoint = Some(std::time::Instant::now());
        let mut removed = Vec::new();
        for (account, range) in std::mem::take(&mut self.pending_supersede) {
            removed.extend(self.supersede(&account, range).await?);
        }
        if !removed.is_empty() {
            self.manifest.superseded.extend(removed);
            self.out
                .put_json(&Self::checkpoint_path(&self.key), &self.manifest)
                .await?;
        }
        Ok(())
    }

    /// Deletes other runs' files of `account` in `range`'s date partitions.
    async fn supersede(&mut self, account: &str, range: DateRange) -> Result<Vec<String>> {
        let own = format!("{}-", self.manifest.run_id);
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
                    let owner = raw::file_account(&self.out, &rel).await?;
                    files.push((rel, owner));
                }
                self.foreign.insert(date, files);
            }
            let Some(files) = self.foreign.get_mut(&date) else {
                continue;
            };
            let mut kept = Vec::with_capacity(files.len());
            for (rel, owner) in files.drain(..) {
                if owner.as_deref() == Some(account) {
                    self.out.delete(&rel).await?;
                    tracing::debug!(path = %rel, "replaced by this run");
                    removed.push(rel);
                } else {
                    kept.push((rel, owner));
                }
            }
            *files = kept;
        }
        Ok(removed)
    }

    async fn supersede_committed(&mut self) -> Result<()> {
        let slices: Vec<(String, DateRange)> = self
            .manifest
            .slices
            .iter()
            .map(|s| {
                (
                    s.account_id.clone(),
                    DateRange {
                        start: s.start,
                        end: s.end,
                    },
                )
            })
            .collect();
        for (account, range) in slices {
            self.supersede(&account, range).await?;
        }
        Ok(())
    }

    /// After a kill, files put after the last checkpoint belong to no slice: remove them.
    async fn remove_uncommitted_files(&self) -> Result<()> {
        let committed: BTreeSet<&str> = self.manifest.files.iter().map(|f| f.path.as_str()).collect();
        let own = format!("{}-", self.manifest.run_id);
        let range: Option<DateRange> = serde_json::from_value(self.manifest.inputs["range"].clone()).ok();
        let Some(range) = range else { return Ok(()) };
        for date in range.dates() {
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
    pub async fn finish(mut self, api: CallCounts, state: Option<serde_json::Value>) -> Result<RunManifest> {
        self.refresh_counters(api);
        if !self.pending_supersede.is_empty() {
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
        self.checkpoint().await
    }
}
