//! The extract loop every connector shares: plan slices per account (state,
//! lookback, what an interrupted attempt already committed), fetch each slice
//! through the connector, commit it, advance state, shrink a slice the API
//! calls too large, and write the manifest last.

use crate::cli::Progress;
use crate::http::{ApiError, CallStats};
use crate::manifest::{Run, RunManifest};
use crate::raw::SliceWriter;
use crate::state::StateStore;
use crate::storage::Location;
use crate::window::DateRange;
use crate::{Error, Result};
use arrow::datatypes::SchemaRef;
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
    /// record about it (currency, time zone). Called for every account before
    /// any data is written, so a bad id fails the run early and cleanly.
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

pub struct ExtractPlan {
    pub out: Location,
    pub accounts: Vec<String>,
    pub range: DateRange,
    pub state: Option<StateStore>,
    pub lookback_days: u32,
    /// Everything that identifies the run besides accounts and range (level,
    /// granularity, metrics …); never a secret.
    pub options: serde_json::Value,
}

pub async fn run_extract<S: ReportSource>(source: &S, plan: ExtractPlan, progress: &Progress) -> Result<RunManifest> {
    let ExtractPlan {
        out,
        accounts,
        range,
        mut state,
        lookback_days,
        options,
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
    for (account, info) in accounts.iter().zip(infos) {
        run.set_account_info(account, info);
    }

    let mut work: Vec<(String, DateRange)> = Vec::new();
    for account in &accounts {
        let Some(eff) = state
            .as_ref()
            .map_or(Some(range), |s| s.effective_range(account, range, lookback_days))
        else {
            tracing::info!(account = %account, "already complete through the requested end; nothing to read");
            continue;
        };
        if eff != range {
            tracing::info!(account = %account, from = %eff.start, lookback_days, "incremental: reading from state minus lookback");
        }
        for part in run.uncommitted(account, eff) {
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
                run.commit_slice(&account, slice, files, stats.snapshot()).await?;
                if let Some(state) = state.as_mut() {
                    state.advance(&account, slice.end, run.run_id()).await?;
                }
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
                });
            }
        }
    }
    let state_json = state.as_ref().and_then(|s| serde_json::to_value(s.state()).ok());
    run.finish(stats.snapshot(), state_json).await
}
