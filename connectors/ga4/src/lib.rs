//! crest's site-analytics source: a GA4 property's BigQuery export
//! (`analytics_{property}.events_YYYYMMDD`, `events_intraday_YYYYMMDD` for a
//! day not exported yet), or the same schema as files, reduced to the events
//! attribution needs into `{out}/raw/ga4/events/date=…/`:
//! sessions' starts (with their campaign parameters) and conversions (with
//! their transaction and revenue). Manifests, atomic files, state, leases
//! and resume come from `crest-core`'s extract loop, as for every platform.
//!
//! - [`event`]: an export row → the raw columns; bad values quarantined with a reason
//! - [`export`]: where the rows are read (BigQuery or files)
//! - [`command`]: the `crest-ga4` command line

pub mod command;
pub mod event;
pub mod export;

use arrow::datatypes::SchemaRef;
use crest_core::cli::Progress;
use crest_core::extract::{Prepared, ReportSource, SliceError};
use crest_core::http::CallStats;
use crest_core::raw::SliceWriter;
use crest_core::window::DateRange;
use crest_core::{Error, Result};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Where a property's export is read.
#[derive(Debug, Clone)]
pub enum Origin {
    /// The BigQuery project holding `analytics_{property}`.
    BigQuery { project: String },
    /// Exported files (a folder or a file, any object store).
    Files { from: String },
}

pub struct Ga4Source {
    origin: Origin,
    /// Events counted as conversions besides sessions' starts.
    conversions: Vec<String>,
    exports: Prepared<export::Export>,
    stats: Arc<CallStats>,
}

impl Ga4Source {
    pub fn new(origin: Origin, conversions: Vec<String>) -> Self {
        Ga4Source {
            origin,
            conversions,
            exports: Prepared::default(),
            stats: Arc::new(CallStats::default()),
        }
    }
}

/// Rows per raw batch written.
const BATCH_ROWS: usize = 64 * 1024;

impl ReportSource for Ga4Source {
    fn platform(&self) -> &'static str {
        "ga4"
    }

    fn report(&self) -> String {
        "events".into()
    }

    fn max_slice_days(&self) -> u64 {
        // One export table per day.
        1
    }

    fn schema(&self) -> SchemaRef {
        event::schema()
    }

    fn date_column(&self) -> &'static str {
        "event_date"
    }

    fn call_stats(&self) -> Arc<CallStats> {
        self.stats.clone()
    }

    async fn prepare_account(&self, account: &str) -> Result<serde_json::Value> {
        let (export, info) = match &self.origin {
            Origin::BigQuery { project } => (
                export::Export::bigquery(project, account).await?,
                serde_json::json!({ "project": project, "dataset": export::dataset(account) }),
            ),
            Origin::Files { from } => (export::Export::files(from).await?, serde_json::json!({ "from": from })),
        };
        self.stats.calls.store(export.calls(), Ordering::Relaxed);
        self.exports.insert(account, export);
        let mut info = info;
        info["conversion_events"] = serde_json::json!(self.conversions);
        // GA4 writes a day's table during the following day.
        info["data_lag_days"] = serde_json::json!(1);
        Ok(info)
    }

    async fn fetch_slice(
        &self,
        account: &str,
        range: DateRange,
        run_id: &str,
        extracted_at_us: i64,
        sink: &mut SliceWriter<'_>,
        progress: &Progress,
    ) -> std::result::Result<u64, SliceError> {
        let export = self.exports.get(account)?;
        let mut rows = 0u64;
        for date in range.dates() {
            let events = export.day(date, &self.conversions).await?;
            self.stats.calls.store(export.calls(), Ordering::Relaxed);
            let quarantined = events.iter().filter(|e| e.quarantine_reason.is_some()).count();
            if quarantined > 0 {
                tracing::warn!(property_id = %account, date = %date, events = quarantined, "events kept with a quarantine_reason: attribution leaves them out");
            }
            for chunk in events.chunks(BATCH_ROWS) {
                let batch = event::batch(chunk, account, run_id, extracted_at_us).map_err(SliceError::Failed)?;
                sink.write(&batch).await?;
                progress.add_rows(chunk.len() as u64);
            }
            rows += events.len() as u64;
        }
        Ok(rows)
    }
}

/// A GA4 property id: digits.
pub fn property_id(id: &str) -> Result<String> {
    match !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()) {
        true => Ok(id.to_string()),
        false => Err(Error::Config(format!(
            "--property-id '{id}' is not a GA4 property id (digits, as in Admin › Property details)"
        ))),
    }
}
