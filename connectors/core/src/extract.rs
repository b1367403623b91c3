//! The extract loop every connector shares: plan slices per account (state,
//! lookback, what an interrupted attempt already committed), fetch each slice
//! through the connector, commit it, advance state once the checkpoint naming
//! the slice is durable, shrink a slice the API calls too large, and write the
//! manifest last.
//!
//! What an account reports about itself (`prepare_account`'s JSON) decides
//! two things here, through [`AccountFacts`]: when a day is complete (its time
//! zone and the platform's serving lag), and how far back restatements reach
//! (the longest attribution window it counts conversions in).

use crate::cli::Progress;
use crate::http::{ApiError, CallStats};
use crate::lease::Lease;
use crate::manifest::{AccountRead, Run, RunManifest, SliceRecord};
use crate::raw::SliceWriter;
use crate::state::PlannedRead;
use crate::state::StateStore;
use crate::storage::Location;
use crate::window::{last_complete_day, DateRange};
use crate::{Error, Result};
use arrow::datatypes::SchemaRef;
use serde::Deserialize;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;

/// A platform's report, as the extract loop sees it. The connector says which
/// requests make up a slice; everything else is here.
pub trait ReportSource {
    /// `tiktok`, `meta`, `youtube`: the first path segment under `raw/`.
    fn platform(&self) -> &'static str;
    /// The report folder under `raw/{platform}/`, e.g. `ad_daily`.
    fn report(&self) -> String;
    /// The widest date range one query may ask for.
    fn max_slice_days(&self) -> u64;
    fn schema(&self) -> SchemaRef;
    /// The Date32 column that partitions the raw files.
    fn date_column(&self) -> &'static str;
    fn call_stats(&self) -> Arc<CallStats>;

    /// Validates access to an account and returns what the manifest should
    /// record about it (currency, time zone, …; the keys of [`AccountFacts`]
    /// are read by the extract loop). Called for every account before any
    /// data is written, so a bad id fails the run early and cleanly.
    fn prepare_account(&self, account: &str) -> impl Future<Output = Result<serde_json::Value>>;

    /// Fetches one account × date range into `sink`. Returns rows written.
    fn fetch_slice(
        &self,
        account: &str,
        range: DateRange,
        run_id: &str,
        // When this attempt extracted the rows, µs since the epoch (UTC).
        extracted_at_us: i64,
        sink: &mut SliceWriter<'_>,
        progress: &Progress,
    ) -> impl Future<Output = std::result::Result<u64, SliceError>>;
}

/// A slice failed: the API said it was too large (split and retry), or
/// anything else (stop the run; committed slices stay for a resume).
#[derive(Debug)]
pub enum SliceError {
    TooLarge(String),
    Failed(Error),
}

impl From<Error> for SliceError {
    fn from(e: Error) -> Self {
        SliceError::Failed(e)
    }
}

impl From<ApiError> for SliceError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::TooLarge(m) => SliceError::TooLarge(m),
            other => SliceError::Failed(other.into()),
        }
    }
}

/// What `prepare_account` learned about each account (metadata to join onto
/// its rows), kept for `fetch_slice`.
pub struct Prepared<T> {
    accounts: std::sync::Mutex<std::collections::HashMap<String, Arc<T>>>,
}

impl<T> Default for Prepared<T> {
    fn default() -> Self {
        Prepared {
            accounts: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }
}

impl<T> Prepared<T> {
    pub fn insert(&self, account: &str, value: T) {
        self.accounts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(account.to_string(), Arc::new(value));
    }

    pub fn get(&self, account: &str) -> Result<Arc<T>> {
        self.accounts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(account)
            .cloned()
            .ok_or_else(|| Error::Config(format!("account {account} was not prepared")))
    }
}

/// What the extract loop reads from an account's `prepare_account` JSON.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AccountFacts {
    /// The IANA time zone the account reports days in.
    #[serde(default, alias = "time_zone")]
    pub timezone: Option<String>,
    /// The longest attribution window (click or view) any of the account's
    /// conversions are counted in: the platform restates a day for that long.
    #[serde(default)]
    pub longest_window_days: Option<u32>,
    /// Days the platform takes to serve a finished day (YouTube Analytics lags).
    #[serde(default)]
    pub data_lag_days: Option<u32>,
}

impl AccountFacts {
    pub fn of(info: &serde_json::Value) -> Self {
        serde_json::from_value(info.clone()).unwrap_or_default()
    }
}

pub struct ExtractPlan {
    pub out: Location,
    pub accounts: Vec<String>,
    pub range: DateRange,
    pub state: Option<StateStore>,
    /// `--lookback-days`: when set, every account's lookback.
    pub lookback_days: Option<u32>,
    /// The platform's restatement period, used unless an account's own
    /// attribution windows reach further back.
    pub default_lookback_days: u32,
    /// Everything that identifies the run besides accounts and range (level,
    /// granularity, metrics …); never a secret.
    pub options: serde_json::Value,
    /// How long to wait for another run writing one of the accounts to finish.
    pub wait_for_lease: std::time::Duration,
}

/// Runs an extract holding a lease on each account it writes (a second run
/// on the same account fails at once, or waits `wait_for_lease`).
pub async fn run_extract<S: ReportSource>(source: &S, plan: ExtractPlan, progress: &Progress) -> Result<RunManifest> {
    let mut ids: Vec<&String> = plan.accounts.iter().collect();
    ids.sort();
    ids.dedup();
    let mut leases = Vec::with_capacity(ids.len());
    let holder = format!("crest-{} extract", source.platform());
    for account in ids {
        let name = format!(
            "extract/{}/{}/{}",
            source.platform(),
            source.report(),
            lease_part(account)
        );
        match Lease::acquire(&plan.out, &name, &holder, plan.wait_for_lease).await {
            Ok(lease) => leases.push(lease),
            Err(e) => {
                for lease in leases {
                    lease.release().await;
                }
                return Err(e);
            }
        }
    }
    let result = extract_leased(source, plan, progress, &leases).await;
    for lease in leases {
        lease.release().await;
    }
    result
}

/// An account id as one path segment of a lease name.
fn lease_part(account: &str) -> String {
    account
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn check_leases(leases: &[Lease]) -> Result<()> {
    leases.iter().try_for_each(Lease::check)
}

async fn extract_leased<S: ReportSource>(
    source: &S,
    plan: ExtractPlan,
    progress: &Progress,
    leases: &[Lease],
) -> Result<RunManifest> {
    let ExtractPlan {
        out,
        accounts,
        range,
        mut state,
        lookback_days,
        default_lookback_days,
        options,
        wait_for_lease: _,
    } = plan;
    let inputs = serde_json::json!({
        "accounts": accounts,
        "range": range,
        "lookback_days": lookback_days,
        "state": state.is_some(),
        "options": options,
    });
    // Every account is checked before anything is written, so a bad id or
    // token fails the run cleanly.
    let mut infos = Vec::with_capacity(accounts.len());
    for account in &accounts {
        infos.push(source.prepare_account(account).await?);
    }
    let mut run = Run::open(out, source.platform(), &source.report(), inputs).await?;
    let stats = source.call_stats();
    let now = chrono::Utc::now();
    for (account, info) in accounts.iter().zip(infos) {
        let facts = AccountFacts::of(&info);
        run.set_account_info(account, info);
        if run.planned_read(account).is_some() {
            continue; // a resumed run keeps the plan of its first attempt
        }
        let lookback =
            lookback_days.unwrap_or_else(|| default_lookback_days.max(facts.longest_window_days.unwrap_or(0)));
        let planned = state.as_ref().map_or(
            PlannedRead {
                range,
                reread_from: None,
            },
            |s| s.planned_read(account, range, lookback),
        );
        let complete_through = last_complete_day(facts.timezone.as_deref(), facts.data_lag_days.unwrap_or(0), now);
        if let Some(from) = planned.reread_from {
            tracing::info!(account = %account, from = %from, start = %range.start, lookback_days = lookback, "re-reading restated days before --start (last completed date minus the lookback)");
        }
        if range.end > complete_through {
            tracing::info!(account = %account, complete_through = %complete_through, timezone = facts.timezone.as_deref().unwrap_or("unknown"), "days after the last complete day are provisional: recorded as such and read again by the next run");
        }
        run.set_planned_read(
            account,
            AccountRead {
                planned,
                lookback_days: lookback,
                complete_through,
            },
        );
    }

    let mut work: Vec<(String, DateRange)> = Vec::new();
    for account in &accounts {
        let read = run.planned_read(account).map_or(range, |r| r.planned.range);
        for part in run.uncommitted(account, read) {
            for slice in part.split(source.max_slice_days()) {
                work.push((account.clone(), slice));
            }
        }
    }
    progress.set_length(work.iter().map(|(_, s)| s.days()).sum());

    let mut queue: VecDeque<(String, DateRange)> = work.into();
    while let Some((account, slice)) = queue.pop_front() {
        let result = {
            let mut writer = run.slice_writer(&account, source.schema(), source.date_column())?;
            let fetched = source
                .fetch_slice(
                    &account,
                    slice,
                    run.run_id(),
                    run.extracted_at_us(),
                    &mut writer,
                    progress,
                )
                .await;
            match fetched {
                Ok(_) => writer.finish().await.map_err(SliceError::Failed),
                Err(e) => {
                    writer.abort().await;
                    Err(e)
                }
            }
        };
        match result {
            Ok(files) => {
                check_leases(leases)?;
                let durable = run.commit_slice(&account, slice, files, stats.snapshot()).await?;
                advance_state(state.as_mut(), &durable, run.run_id()).await?;
                progress.advance(slice.days());
                tracing::info!(account = %account, slice = %slice, "slice committed");
            }
            Err(SliceError::TooLarge(msg)) => match slice.halve() {
                Some((a, b)) => {
                    tracing::warn!(account = %account, slice = %slice, reason = %msg, "query too large; splitting the date range");
                    queue.push_front((account.clone(), b));
                    queue.push_front((account, a));
                }
                None => {
                    run.save_checkpoint(stats.snapshot()).await?;
                    return Err(Error::Upstream(format!(
                        "{msg}; a single day is still too large for account {account}: use a finer --level or fewer --metrics"
                    )));
                }
            },
            Err(SliceError::Failed(e)) => {
                let durable = run.flush(stats.snapshot()).await?;
                advance_state(state.as_mut(), &durable, run.run_id()).await?;
                run.save_checkpoint(stats.snapshot()).await?;
                let hint = if run.manifest().slices.is_empty() {
                    String::new()
                } else {
                    " (committed slices are kept; run the same command again to resume)".to_string()
                };
                return Err(match e {
                    Error::Config(m) => Error::Config(m + &hint),
                    Error::Auth(m) => Error::Auth(m + &hint),
                    Error::Upstream(m) => Error::Upstream(m + &hint),
                    Error::Storage(m) => Error::Storage(m + &hint),
                    Error::Data(m) => Error::Data(m + &hint),
                    Error::Busy(m) => Error::Busy(m + &hint),
                });
            }
        }
    }
    check_leases(leases)?;
    let durable = run.flush(stats.snapshot()).await?;
    advance_state(state.as_mut(), &durable, run.run_id()).await?;
    let state_json = state.as_ref().and_then(|s| serde_json::to_value(s.state()).ok());
    run.finish(stats.snapshot(), state_json).await
}

/// Moves the state over slices a written checkpoint names: complete through
/// the slice's last complete day, its later days provisional.
async fn advance_state(state: Option<&mut StateStore>, durable: &[SliceRecord], run_id: &str) -> Result<()> {
    let Some(state) = state else { return Ok(()) };
    for slice in durable {
        let complete = match slice.provisional.first() {
            None => Some(slice.end),
            Some(first) => first.pred_opt().filter(|d| *d >= slice.start),
        };
        state
            .advance(&slice.account_id, complete, &slice.provisional, run_id)
            .await?;
    }
    Ok(())
}
