//! Test support: a sandbox on a free loopback port, the real `crest-tiktok`
//! binary against it, and readers for what it wrote.
#![allow(dead_code, clippy::unwrap_used)]

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Date32Type, Decimal128Type, Int32Type, Int64Type};
use crest_sandbox::faults::FaultPlan;
use crest_sandbox::world::WorldConfig;
use crest_sandbox::{Sandbox, SandboxConfig};
#[allow(unused_imports)]
pub use crest_testkit::{assert_ok, day, files_under, run_cmd, sandbox, stderr, stdout};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Output;

pub const TOKEN: &str = "tok-3f9a-SECRET-77c1";

pub fn config() -> SandboxConfig {
    SandboxConfig {
        world: WorldConfig {
            first_day: day("2026-01-01"),
            days: 70,
            creators: 40,
            ..WorldConfig::default()
        },
        tiktok_token: TOKEN.into(),
        ..SandboxConfig::default()
    }
}

pub fn with_faults(spec: &str) -> SandboxConfig {
    SandboxConfig {
        faults: spec.parse::<FaultPlan>().unwrap(),
        ..config()
    }
}

pub fn advertisers(sb: &Sandbox) -> Vec<String> {
    sb.world().advertisers.iter().map(|a| a.advertiser_id.clone()).collect()
}

pub fn command(sb: &Sandbox, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_crest-tiktok"));
    cmd.args(args)
        .env("TIKTOK_ACCESS_TOKEN", TOKEN)
        .env("CREST_TIKTOK_BASE_URL", sb.base_url())
        .env_remove("TIKTOK_ACCESS_TOKEN_FILE")
        .env_remove("CREST_LOG")
        .kill_on_drop(true);
    cmd
}

/// Runs crest-tiktok to completion (bounded: a hung run fails the test).
pub async fn run(sb: &Sandbox, args: &[&str]) -> Output {
    run_cmd(command(sb, args)).await
}

/// Standard extract arguments for tests: fast retries, short timeouts.
pub fn extract_args<'a>(ids: &'a str, start: &'a str, end: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "extract",
        "--advertiser-id",
        ids,
        "--start",
        start,
        "--end",
        end,
        "--out",
        out,
        "--retry-initial-ms",
        "20",
        "--timeout-secs",
        "1",
        "--max-qps",
        "0",
    ]
}

pub fn read_report(out: &Path, report: &str) -> Vec<RecordBatch> {
    crest_testkit::read_parquet(&out.join("raw/tiktok").join(report))
}

/// What the files hold, in the sandbox's units.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub rows: u64,
    pub impressions: u64,
    pub clicks: u64,
    pub spend_cents: u64,
    pub conversions: u64,
    pub conversion_value_cents: u64,
    pub video_plays: u64,
    pub rows_without_conversions: u64,
}

pub fn seen(batches: &[RecordBatch], advertiser: &str) -> Seen {
    let mut s = Seen::default();
    for b in batches {
        let adv = b.column_by_name("advertiser_id").unwrap().as_string::<i32>();
        let imps = b.column_by_name("impressions").unwrap().as_primitive::<Int64Type>();
        let clicks = b.column_by_name("clicks").unwrap().as_primitive::<Int64Type>();
        let spend = b.column_by_name("spend").unwrap().as_primitive::<Decimal128Type>();
        let conv = b.column_by_name("conversion").unwrap().as_primitive::<Int64Type>();
        let value = b
            .column_by_name("total_complete_payment_rate")
            .unwrap()
            .as_primitive::<Decimal128Type>();
        let plays = b
            .column_by_name("video_play_actions")
            .unwrap()
            .as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            if adv.value(i) != advertiser {
                continue;
            }
            s.rows += 1;
            s.impressions += imps.value(i) as u64;
            s.clicks += clicks.value(i) as u64;
            // Money is Decimal128 with 6 places; the sandbox serves cents.
            assert_eq!(spend.value(i) % 10_000, 0, "spend is exact to the cent");
            s.spend_cents += (spend.value(i) / 10_000) as u64;
            if conv.is_null(i) {
                s.rows_without_conversions += 1;
                assert!(value.is_null(i), "value is null where conversions are");
            } else {
                s.conversions += conv.value(i) as u64;
                s.conversion_value_cents += (value.value(i) / 10_000) as u64;
            }
            s.video_plays += plays.value(i) as u64;
        }
    }
    s
}

pub fn truth(sb: &Sandbox, advertiser: &str, start: &str, end: &str, level: &str, hourly: bool) -> Seen {
    let t = crest_sandbox::tiktok::truth(sb.world(), advertiser, day(start), day(end), level, hourly);
    Seen {
        rows: t.rows,
        impressions: t.impressions,
        clicks: t.clicks,
        spend_cents: t.spend_cents,
        conversions: t.conversions,
        conversion_value_cents: t.conversion_value_cents,
        video_plays: t.video_plays,
        rows_without_conversions: t.rows_without_conversions,
    }
}

/// Fails on a natural key seen twice: (advertiser, entity id, date, hour).
pub fn assert_no_duplicate_keys(batches: &[RecordBatch], id_column: &str) {
    let mut keys = HashSet::new();
    for b in batches {
        let adv = b.column_by_name("advertiser_id").unwrap().as_string::<i32>();
        let id = b.column_by_name(id_column).unwrap().as_string::<i32>();
        let date = b.column_by_name("stat_date").unwrap().as_primitive::<Date32Type>();
        let hour = b.column_by_name("stat_hour").unwrap().as_primitive::<Int32Type>();
        for i in 0..b.num_rows() {
            let key = (
                adv.value(i).to_string(),
                id.value(i).to_string(),
                date.value(i),
                hour.is_valid(i).then(|| hour.value(i)),
            );
            assert!(keys.insert(key.clone()), "duplicate row {key:?}");
        }
    }
}

pub fn manifests(out: &Path) -> Vec<serde_json::Value> {
    files_under(&out.join("_runs"), "json")
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains("_inflight"))
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
        .collect()
}

pub fn checkpoints(out: &Path) -> Vec<PathBuf> {
    files_under(&out.join("_runs/_inflight"), "json")
}
