//! crest-youtube's Google Ads path against the sandbox's searchStream over
//! real HTTP on loopback.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Decimal128Type, Int64Type};
use crest_sandbox::faults::FaultPlan;
use crest_sandbox::world::WorldConfig;
use crest_sandbox::{Sandbox, SandboxConfig};
use crest_youtube::ads::{lag_column, LAG_BUCKETS};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

fn read_raw_table(out: &Path) -> Vec<RecordBatch> {
    read_raw(out, "raw/youtube/ads_daily")
}

async fn sandbox(creators: usize, faults: &str, retry_delay: Duration) -> Sandbox {
    let world = WorldConfig {
        first_day: day("2026-01-01"),
        days: 40,
        creators,
        advertisers: 1,
        ..WorldConfig::default()
    };
    Sandbox::start(SandboxConfig {
        world,
        faults: faults.parse::<FaultPlan>().unwrap(),
        google_ads_retry_delay: retry_delay,
        ..SandboxConfig::default()
    })
    .await
    .unwrap()
}

async fn run(sb: &Sandbox, args: &[&str], refresh_token: &str, developer_token: &str) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_crest-youtube"))
        .args(args)
        .env("GOOGLE_CLIENT_ID", "sandbox-client")
        .env("GOOGLE_CLIENT_SECRET", "sandbox-client-secret")
        .env("GOOGLE_REFRESH_TOKEN", refresh_token)
        .env("GOOGLE_ADS_DEVELOPER_TOKEN", developer_token)
        .env("CREST_GOOGLE_OAUTH_URL", format!("{}/token", sb.base_url()))
        .env("CREST_GOOGLE_ADS_BASE_URL", sb.base_url())
        .env_remove("CREST_LOG")
        .output()
        .await
        .unwrap()
}

/// The one run manifest an extract wrote.
fn the_manifest(out: &std::path::Path) -> serde_json::Value {
    let manifest = std::fs::read_dir(out.join("_runs"))
        .unwrap()
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "json"))
        .unwrap();
    serde_json::from_slice(&std::fs::read(manifest.path()).unwrap()).unwrap()
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    rows: u64,
    impressions: u64,
    clicks: u64,
    cost_micros: u64,
    video_views: u64,
    conv_halves: u64,
    value_cents: u64,
    conv_halves_7d: u64,
    value_cents_7d: u64,
}

/// Totals of the raw files; every row's lag buckets must add up to its conversions.
fn seen(batches: &[RecordBatch], currency: &str) -> Seen {
    let mut s = Seen::default();
    for b in batches {
        let int = |n: &str| b.column_by_name(n).unwrap().as_primitive::<Int64Type>().clone();
        let dec = |n: &str| b.column_by_name(n).unwrap().as_primitive::<Decimal128Type>().clone();
        let (imp, clicks, views) = (int("impressions"), int("clicks"), int("video_views"));
        let (cost, conv, value) = (dec("cost"), dec("conversions"), dec("conversions_value"));
        let types = b.column_by_name("advertising_channel_type").unwrap().as_string::<i32>();
        let cur = b.column_by_name("currency").unwrap().as_string::<i32>();
        let url = b.column_by_name("final_url").unwrap().as_string::<i32>();
        let lags: Vec<_> = LAG_BUCKETS
            .iter()
            .map(|(_, f, t)| {
                (
                    *t,
                    dec(&lag_column("conversions", *f, *t)),
                    dec(&lag_column("conversions_value", *f, *t)),
                )
            })
            .collect();
        for i in 0..b.num_rows() {
            assert!(matches!(types.value(i), "VIDEO" | "DEMAND_GEN"), "{}", types.value(i));
            assert_eq!(cur.value(i), currency);
            assert!(url.value(i).starts_with("https://shop.example.com/yt/"));
            s.rows += 1;
            s.impressions += imp.value(i) as u64;
            s.clicks += clicks.value(i) as u64;
            s.video_views += views.value(i) as u64;
            // Micros are the decimal's unscaled value: exact to the micro.
            s.cost_micros += cost.value(i) as u64;
            s.conv_halves += (conv.value(i) / 500_000) as u64;
            assert_eq!(conv.value(i) % 500_000, 0, "conversions are exact halves");
            s.value_cents += (value.value(i) / 10_000) as u64;
            let lag_conv: i128 = lags.iter().map(|l| l.1.value(i)).sum();
            let lag_value: i128 = lags.iter().map(|l| l.2.value(i)).sum();
            assert_eq!(
                lag_conv,
                conv.value(i),
                "lag buckets sum to Google's 30-day conversions"
            );
            assert_eq!(lag_value, value.value(i));
            let within7 = |k: usize| -> i128 {
                lags.iter()
                    .filter(|l| l.0 <= 7)
                    .map(|l| if k == 1 { l.1.value(i) } else { l.2.value(i) })
                    .sum()
            };
            s.conv_halves_7d += (within7(1) / 500_000) as u64;
            s.value_cents_7d += (within7(2) / 10_000) as u64;
        }
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_totals_across_stream_batches_with_a_token_expiry_and_a_short_quota_wait() {
    // ~18,000 ads in one customer: each day streams in more than one 10,000-row batch.
    let sb = sandbox(9000, "expired_token@4,rate_limit@6", Duration::from_secs(1)).await;
    let customer = sb.ads().customers[0].clone();
    let dir = tempfile::tempdir().unwrap();
    let dashed = format!("{}-{}-{}", &customer.id[..3], &customer.id[3..6], &customer.id[6..]);
    let o = run(
        &sb,
        &[
            "extract",
            "--ads-customer-id",
            &dashed,
            "--start",
            "2026-01-01",
            "--end",
            "2026-01-03",
            "--out",
            dir.path().to_str().unwrap(),
            "--max-qps",
            "100",
        ],
        "sandbox-refresh-token",
        "sandbox-developer-token",
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let truth = sb.ads().totals(0, day("2026-01-01"), day("2026-01-03"));
    assert!(truth.rows > 10_000 * 3 && truth.conv_halves > 0, "{truth:?}");
    let got = seen(&read_raw_table(dir.path()), customer.currency);
    assert_eq!(
        got,
        Seen {
            rows: truth.rows,
            impressions: truth.impressions,
            clicks: truth.clicks,
            cost_micros: truth.cost_micros,
            video_views: truth.video_views,
            conv_halves: truth.conv_halves,
            value_cents: truth.value_cents,
            conv_halves_7d: truth.conv_halves_7d,
            value_cents_7d: truth.value_cents_7d,
        }
    );
    // The 401 mid-run cost exactly one more token; the quota error was waited out.
    let (refreshes, unauthenticated) = sb.google_counts();
    assert_eq!((refreshes, unauthenticated), (2, 1));
    let err = stderr(&o);
    assert!(err.contains("RESOURCE_EXHAUSTED"), "{err}");
    let m = the_manifest(dir.path());
    let info = &m["accounts"][&customer.id];
    assert_eq!(info["currency"], customer.currency, "{m}");
    assert_eq!(info["time_zone"], customer.time_zone);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_wait_of_hours_stops_with_the_delay_named() {
    let sb = sandbox(20, "rate_limit@2", Duration::from_secs(3 * 3600)).await;
    let id = sb.ads().customers[0].id.clone();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let args = [
        "extract",
        "--ads-customer-id",
        &id,
        "--start",
        "2026-01-01",
        "--end",
        "2026-01-03",
        "--out",
        out,
    ];
    let o = run(&sb, &args, "sandbox-refresh-token", "sandbox-developer-token").await;
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("wait 3h 00min"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(read_raw_table(dir.path()).is_empty(), "nothing half-written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_and_customers_exit_with_their_codes() {
    let sb = sandbox(20, "", Duration::from_secs(1)).await;
    let id = sb.ads().customers[0].id.clone();
    let check = ["check", "--ads-customer-id", &id];
    let o = run(&sb, &check, "sandbox-refresh-token", "sandbox-developer-token").await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("USD, America/New_York"));

    let o = run(&sb, &check, "revoked", "sandbox-developer-token").await;
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("re-authorize"), "{}", stderr(&o));

    let o = run(&sb, &check, "sandbox-refresh-token", "wrong-developer-token").await;
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("GOOGLE_ADS_DEVELOPER_TOKEN"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("wrong-developer-token"), "the token never shows");

    let o = run(
        &sb,
        &["check", "--ads-customer-id", "1234567890"],
        "sandbox-refresh-token",
        "sandbox-developer-token",
    )
    .await;
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("USER_PERMISSION_DENIED"), "{}", stderr(&o));

    let o = run(
        &sb,
        &["check", "--ads-customer-id", "12-34"],
        "sandbox-refresh-token",
        "sandbox-developer-token",
    )
    .await;
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("10 digits"), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_views_come_from_the_field_the_api_version_has() {
    // v22 replaced metrics.video_views by metrics.video_trueview_views: the
    // default version (v26) selects the new field, an older one the old; the
    // raw column is video_views either way.
    let sb = sandbox(20, "", Duration::from_secs(1)).await;
    let customer = sb.ads().customers[0].clone();
    let truth = sb.ads().totals(0, day("2026-01-01"), day("2026-01-02"));
    for version in [None, Some("v21")] {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_crest-youtube"));
        cmd.args([
            "extract",
            "--ads-customer-id",
            &customer.id,
            "--start",
            "2026-01-01",
            "--end",
            "2026-01-02",
            "--out",
            dir.path().to_str().unwrap(),
        ])
        .env("GOOGLE_CLIENT_ID", "sandbox-client")
        .env("GOOGLE_CLIENT_SECRET", "sandbox-client-secret")
        .env("GOOGLE_REFRESH_TOKEN", "sandbox-refresh-token")
        .env("GOOGLE_ADS_DEVELOPER_TOKEN", "sandbox-developer-token")
        .env("CREST_GOOGLE_OAUTH_URL", format!("{}/token", sb.base_url()))
        .env("CREST_GOOGLE_ADS_BASE_URL", sb.base_url())
        .env_remove("CREST_GOOGLE_ADS_API_VERSION")
        .env_remove("CREST_LOG");
        if let Some(v) = version {
            cmd.env("CREST_GOOGLE_ADS_API_VERSION", v);
        }
        let o = cmd.output().await.unwrap();
        assert!(o.status.success(), "{version:?}: {}", stderr(&o));
        let got = seen(&read_raw_table(dir.path()), customer.currency);
        assert_eq!(got.video_views, truth.video_views, "{version:?}");
        assert!(truth.video_views > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_lookback_covers_the_longest_conversion_window() {
    // The sandbox's second customer counts 90 days of clicks, the first Google's default 30.
    let sb = sandbox(20, "", Duration::from_secs(1)).await;
    let customers: Vec<String> = sb.ads().customers.iter().map(|c| c.id.clone()).collect();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let o = run(
        &sb,
        &[
            "extract",
            "--ads-customer-id",
            &customers.join(","),
            "--start",
            "2026-01-05",
            "--end",
            "2026-01-05",
            "--out",
            out,
        ],
        "sandbox-refresh-token",
        "sandbox-developer-token",
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let m = the_manifest(dir.path());
    for (customer, days) in customers.iter().zip([30, 90]) {
        assert_eq!(m["accounts"][customer]["longest_window_days"], days, "{m}");
        assert_eq!(m["accounts"][customer]["view_through_window_days"], 1, "{m}");
        assert_eq!(m["reads"][customer]["lookback_days"], days, "{m}");
    }
}
