//! Test support: a sandbox on a free loopback port, raw data extracted from it
//! through the real connectors, the `crest` binary, and readers for what it wrote.
#![allow(dead_code, clippy::unwrap_used)]

#[allow(unused_imports)]
pub use crest_testkit::{day, every_file as files_under, stderr};

pub mod scenario;
pub mod targets;
#[allow(unused_imports)]
pub use targets::*;

use arrow::array::RecordBatch;
use crest_core::cli::Progress;
use crest_core::extract::{run_extract, ExtractPlan};
use crest_core::http::{ApiClient, RetryPolicy};
use crest_core::storage::Location;
use crest_core::window::DateRange;
use crest_core::Secret;
use crest_sandbox::world::WorldConfig;
use crest_sandbox::{Sandbox, SandboxConfig};
use crest_tiktok::schema::DEFAULT_METRICS;
use crest_tiktok::{Granularity, Level, TikTokConfig, TikTokSource};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::path::{Path, PathBuf};
use std::process::Output;

pub async fn sandbox() -> Sandbox {
    let world = WorldConfig {
        first_day: day("2026-01-01"),
        days: 40,
        creators: 40,
        ..WorldConfig::default()
    };
    Sandbox::start(SandboxConfig {
        world,
        ..SandboxConfig::default()
    })
    .await
    .unwrap()
}

/// Raw TikTok data for every sandbox advertiser, through the real connector over HTTP.
pub async fn extract(sb: &Sandbox, out: &Path, start: &str, end: &str) {
    let all = sb.world().advertisers.iter().map(|a| a.advertiser_id.clone()).collect();
    extract_advertisers(sb, out, all, start, end).await;
}

/// Raw TikTok data for some sandbox advertisers.
pub async fn extract_advertisers(sb: &Sandbox, out: &Path, advertisers: Vec<String>, start: &str, end: &str) {
    let source = TikTokSource::new(
        TikTokConfig {
            base_url: url::Url::parse(&sb.base_url()).unwrap(),
            token: Secret::new(sb.tiktok_token()),
            level: Level::Ad,
            granularity: Granularity::Day,
            metrics: DEFAULT_METRICS.iter().map(|m| m.to_string()).collect(),
            page_size: 1000,
            concurrency: 2,
        },
        ApiClient::new(RetryPolicy::default(), None).unwrap(),
    )
    .unwrap();
    extract_with(&source, out, advertisers, start, end).await;
}

pub async fn crest(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_crest"))
        .args(args)
        .env_remove("CREST_LOG")
        .output()
        .await
        .unwrap()
}

/// `crest-ga4`, built beside `crest` (`cargo test --workspace` builds it).
pub async fn crest_ga4(args: &[&str], env: &[(String, String)]) -> Output {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_crest")).with_file_name("crest-ga4");
    assert!(path.exists(), "{} is missing: build the workspace", path.display());
    let mut cmd = tokio::process::Command::new(path);
    cmd.args(args)
        .env_remove("CREST_LOG")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GOOGLE_OAUTH_ACCESS_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.unwrap()
}

pub fn read_table(dir: &Path) -> Vec<RecordBatch> {
    files_under(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .flat_map(|f| {
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(f).unwrap())
                .unwrap()
                .build()
                .unwrap()
        })
        .map(|b| b.unwrap())
        .collect()
}

pub fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

pub fn write_files(dir: &Path) -> (PathBuf, PathBuf) {
    let roster = dir.join("roster.csv");
    std::fs::write(
        &roster,
        crest_sandbox::world::World::new(WorldConfig::default()).roster_csv(),
    )
    .unwrap();
    let fx = dir.join("fx.csv");
    std::fs::write(&fx, "date,currency,rate\n2026-01-02,EUR,1.10\n2026-01-03,EUR,1.125\n").unwrap();
    (roster, fx)
}

/// The sandbox's Google OAuth client and refresh token.
pub fn google_tokens(sb: &Sandbox, policy: &RetryPolicy) -> crest_core::oauth::TokenSource {
    crest_core::oauth::TokenSource::new(
        &format!("{}/token", sb.base_url()),
        "sandbox-client",
        Secret::new("sandbox-client-secret"),
        Secret::new("sandbox-refresh-token"),
        "GOOGLE_REFRESH_TOKEN",
        policy.clone(),
    )
    .unwrap()
}

/// Raw data for `accounts` over a range, through a connector's real source over HTTP.
pub async fn extract_with<S: crest_core::extract::ReportSource>(
    source: &S,
    out: &Path,
    accounts: Vec<String>,
    start: &str,
    end: &str,
) {
    let plan = ExtractPlan {
        wait_for_lease: std::time::Duration::ZERO,
        out: Location::parse(out.to_str().unwrap()).unwrap(),
        accounts,
        range: DateRange::new(day(start), day(end)).unwrap(),
        state: None,
        lookback_days: None,
        default_lookback_days: 7,
        options: serde_json::json!({}),
    };
    run_extract(source, plan, &Progress::hidden()).await.unwrap();
}
