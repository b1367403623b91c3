//! The extract loop's promises, with a scripted report source: what a day
//! answered with no rows does to the rows it had, when the state may move,
//! and which days are provisional.
#![allow(clippy::unwrap_used)]

use arrow::array::{Date32Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Date32Type, Field, Schema, SchemaRef};
use chrono::{NaiveDate, Utc};
use crest_core::cli::Progress;
use crest_core::extract::{run_extract, ExtractPlan, ReportSource, SliceError};
use crest_core::http::CallStats;
use crest_core::raw::SliceWriter;
use crest_core::state::StateStore;
use crest_core::storage::Location;
use crest_core::window::DateRange;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Serves `rows[(account, date)]` rows per day (none when absent); a slice
/// that reaches `hang_from` never returns, like a worker killed mid-request.
struct Scripted {
    rows: Mutex<HashMap<NaiveDate, i64>>,
    timezone: &'static str,
    hang_from: Mutex<Option<NaiveDate>>,
    stats: Arc<CallStats>,
}

impl Scripted {
    fn new(timezone: &'static str) -> Self {
        Scripted {
            rows: Mutex::new(HashMap::new()),
            timezone,
            hang_from: Mutex::new(None),
            stats: Arc::new(CallStats::default()),
        }
    }

    fn serve(&self, date: NaiveDate, rows: i64) {
        self.rows.lock().unwrap().insert(date, rows);
    }
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("stat_date", DataType::Date32, false),
        Field::new("n", DataType::Int64, false),
    ]))
}

impl ReportSource for Scripted {
    fn platform(&self) -> &'static str {
        "scripted"
    }
    fn report(&self) -> String {
        "daily".into()
    }
    fn max_slice_days(&self) -> u64 {
        1
    }
    fn schema(&self) -> SchemaRef {
        schema()
    }
    fn date_column(&self) -> &'static str {
        "stat_date"
    }
    fn call_stats(&self) -> Arc<CallStats> {
        self.stats.clone()
    }
    async fn prepare_account(&self, _account: &str) -> crest_core::Result<serde_json::Value> {
        Ok(serde_json::json!({"timezone": self.timezone}))
    }
    async fn fetch_slice(
        &self,
        _account: &str,
        range: DateRange,
        _run_id: &str,
        _extracted_at_us: i64,
        sink: &mut SliceWriter<'_>,
        _progress: &Progress,
    ) -> Result<u64, SliceError> {
        if self.hang_from.lock().unwrap().is_some_and(|d| range.end >= d) {
            std::future::pending::<()>().await;
        }
        let mut written = 0;
        for date in range.dates() {
            let n = self.rows.lock().unwrap().get(&date).copied().unwrap_or(0);
            if n == 0 {
                continue;
            }
            let days = Date32Type::from_naive_date(date);
            let batch = RecordBatch::try_new(
                schema(),
                vec![
                    Arc::new(Date32Array::from(vec![days; n as usize])),
                    Arc::new(Int64Array::from((0..n).collect::<Vec<_>>())),
                ],
            )
            .unwrap();
            sink.write(&batch).await?;
            written += n as u64;
        }
        Ok(written)
    }
}

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

async fn extract(
    source: &Scripted,
    out: &Path,
    state: Option<&Path>,
    start: NaiveDate,
    end: NaiveDate,
) -> crest_core::manifest::RunManifest {
    let plan = ExtractPlan {
        wait_for_lease: std::time::Duration::ZERO,
        out: Location::parse(out.to_str().unwrap()).unwrap(),
        accounts: vec!["acct".into()],
        range: DateRange::new(start, end).unwrap(),
        state: match state {
            Some(p) => Some(StateStore::open(p.to_str().unwrap()).await.unwrap()),
            None => None,
        },
        lookback_days: Some(0),
        default_lookback_days: 0,
        options: serde_json::json!({}),
    };
    run_extract(source, plan, &Progress::hidden()).await.unwrap()
}

/// Rows per date in the raw files on disk.
fn rows_on_disk(out: &Path) -> HashMap<NaiveDate, u64> {
    let mut rows = HashMap::new();
    let dir = out.join("raw/scripted/daily");
    for part in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = part.file_name().to_string_lossy().into_owned();
        let date = d(name.trim_start_matches("date="));
        for file in std::fs::read_dir(part.path()).unwrap().flatten() {
            let reader =
                parquet::file::reader::SerializedFileReader::new(std::fs::File::open(file.path()).unwrap()).unwrap();
            use parquet::file::reader::FileReader;
            *rows.entry(date).or_default() += reader.metadata().file_metadata().num_rows() as u64;
        }
    }
    rows
}

#[tokio::test]
async fn an_empty_answer_for_a_complete_day_is_reported_and_a_provisional_one_keeps_its_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    // Los Angeles is never past today's UTC date: today is provisional there, an old day is not.
    let today = Utc::now().date_naive();
    let old = d("2026-01-05");
    let source = Scripted::new("America/Los_Angeles");
    source.serve(old, 120);
    source.serve(today, 40);
    extract(&source, &out, None, old, old).await;
    extract(&source, &out, None, today, today).await;
    assert_eq!(rows_on_disk(&out).get(&old), Some(&120));
    assert_eq!(rows_on_disk(&out).get(&today), Some(&40));

    // The platform now answers both days with no rows.
    source.serve(old, 0);
    source.serve(today, 0);
    let m = extract(&source, &out, None, old, old).await;
    assert_eq!(m.emptied.len(), 1);
    assert_eq!(
        (m.emptied[0].date, m.emptied[0].rows_before, m.emptied[0].replaced),
        (old, 120, true)
    );
    assert_eq!(rows_on_disk(&out).get(&old), None, "a complete day's answer stands");

    let m = extract(&source, &out, None, today, today).await;
    assert_eq!(m.provisional["acct"], vec![today]);
    assert_eq!(
        (m.emptied[0].date, m.emptied[0].rows_before, m.emptied[0].replaced),
        (today, 40, false)
    );
    assert_eq!(
        rows_on_disk(&out).get(&today),
        Some(&40),
        "a provisional day keeps its rows"
    );
}

#[tokio::test]
async fn state_moves_only_over_slices_a_written_checkpoint_names() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let state = tmp.path().join("state.json");
    let source = Scripted::new("Europe/Berlin");
    for day in DateRange::new(d("2026-01-01"), d("2026-01-10")).unwrap().dates() {
        source.serve(day, 5);
    }
    // A worker killed while reading Jan 5: slices Jan 1..4 were committed, but
    // only the first is in a checkpoint (they are written at most every 2 s).
    *source.hang_from.lock().unwrap() = Some(d("2026-01-05"));
    let killed = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        extract(&source, &out, Some(&state), d("2026-01-01"), d("2026-01-10")),
    )
    .await;
    assert!(killed.is_err(), "the run hangs, as a killed worker would");
    // A killed process's lease is taken over once it is gone; this one lives
    // on in the test's process, so its lease is removed by hand.
    std::fs::remove_dir_all(out.join("_leases")).unwrap();
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let checkpoints: Vec<_> = std::fs::read_dir(out.join("_runs/_inflight"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(checkpoints.len(), 1);
    let checkpoint: serde_json::Value = serde_json::from_slice(&std::fs::read(checkpoints[0].path()).unwrap()).unwrap();
    let last_checkpointed = checkpoint["slices"].as_array().unwrap().last().unwrap()["end"].clone();
    assert_eq!(
        saved["accounts"]["acct"]["last_completed_date"], last_checkpointed,
        "state names no day the checkpoint does not"
    );

    // The same command again resumes and completes every day, once.
    *source.hang_from.lock().unwrap() = None;
    let m = extract(&source, &out, Some(&state), d("2026-01-01"), d("2026-01-10")).await;
    assert_eq!(m.resumed, 1);
    let on_disk = rows_on_disk(&out);
    assert!(
        DateRange::new(d("2026-01-01"), d("2026-01-10"))
            .unwrap()
            .dates()
            .all(|day| on_disk.get(&day) == Some(&5)),
        "{on_disk:?}"
    );
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(saved["accounts"]["acct"]["last_completed_date"], "2026-01-10");
}
