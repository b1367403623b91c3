//! crest-youtube against the sandbox's Google APIs over real HTTP on loopback.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type};
use crest_sandbox::faults::FaultPlan;
use crest_sandbox::world::WorldConfig;
use crest_sandbox::{Sandbox, SandboxConfig};
use std::path::Path;
use std::process::Output;

fn read_raw_table(out: &Path) -> Vec<RecordBatch> {
    read_raw(out, "raw/youtube/video_daily")
}

async fn sandbox(faults: &str) -> Sandbox {
    let world = WorldConfig {
        first_day: day("2026-01-01"),
        days: 60,
        creators: 12,
        ..WorldConfig::default()
    };
    Sandbox::start(SandboxConfig {
        world,
        faults: faults.parse::<FaultPlan>().unwrap(),
        ..SandboxConfig::default()
    })
    .await
    .unwrap()
}

async fn run(sb: &Sandbox, args: &[&str], refresh_token: &str) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_crest-youtube"))
        .args(args)
        .env("GOOGLE_CLIENT_ID", "sandbox-client")
        .env("GOOGLE_CLIENT_SECRET", "sandbox-client-secret")
        .env("GOOGLE_REFRESH_TOKEN", refresh_token)
        .env("CREST_GOOGLE_OAUTH_URL", format!("{}/token", sb.base_url()))
        .env("CREST_YOUTUBE_ANALYTICS_BASE_URL", sb.base_url())
        .env("CREST_YOUTUBE_DATA_BASE_URL", sb.base_url())
        .env_remove("CREST_LOG")
        .output()
        .await
        .unwrap()
}

/// (rows, views, minutes, likes, card clicks, average view % × 100) for a channel.
fn seen(batches: &[RecordBatch], channel: &str) -> (u64, u64, u64, u64, u64, u64) {
    let mut t = (0, 0, 0, 0, 0, 0);
    for b in batches {
        let c = b.column_by_name("channel_id").unwrap().as_string::<i32>();
        let int = |n: &str| b.column_by_name(n).unwrap().as_primitive::<Int64Type>().clone();
        let (views, minutes, likes, cards) = (
            int("views"),
            int("estimated_minutes_watched"),
            int("likes"),
            int("card_clicks"),
        );
        let pct = b
            .column_by_name("average_view_percentage")
            .unwrap()
            .as_primitive::<Float64Type>();
        let link = b.column_by_name("description_link").unwrap().as_string::<i32>();
        for i in 0..b.num_rows() {
            if c.value(i) != channel {
                continue;
            }
            assert!(
                link.value(i).contains("utm_content="),
                "the UTM link from the description"
            );
            t.0 += 1;
            t.1 += views.value(i) as u64;
            t.2 += minutes.value(i) as u64;
            t.3 += likes.value(i) as u64;
            t.4 += cards.value(i) as u64;
            t.5 += (pct.value(i) * 100.0).round() as u64;
        }
    }
    t
}

fn truth(sb: &Sandbox, channel: &str, start: &str, end: &str) -> (u64, u64, u64, u64, u64, u64) {
    let yt = sb.youtube();
    let c = yt.channel_index(channel).unwrap();
    yt.rows(c, day(start), day(end))
        .iter()
        .fold((0, 0, 0, 0, 0, 0), |t, (_, _, m)| {
            (
                t.0 + 1,
                t.1 + m.views,
                t.2 + m.minutes,
                t.3 + m.likes,
                t.4 + m.card_clicks,
                t.5 + m.avg_pct_x100,
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_totals_across_pages_whatever_order_the_metrics_are_asked_in() {
    let sb = sandbox("").await;
    let channels: Vec<String> = sb.youtube().channels[..3].to_vec();
    for (i, metrics) in ["", "cardImpressions,cardClicks,subscribersGained,shares,comments,likes,averageViewPercentage,estimatedMinutesWatched,views"]
        .iter()
        .enumerate()
    {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let joined = channels.join(",");
        let mut args = vec!["extract", "--channel-id", &joined, "--start", "2026-01-01", "--end", "2026-03-01", "--out", out.to_str().unwrap(), "--page-size", "15", "--max-qps", "0"];
        if !metrics.is_empty() {
            args.extend(["--metrics", metrics]);
        }
        let o = run(&sb, &args, "sandbox-refresh-token").await;
        assert!(o.status.success(), "{}", stderr(&o));
        let batches = read_raw_table(&out);
        for c in &channels {
            let t = truth(&sb, c, "2026-01-01", "2026-03-01");
            assert!(t.0 > 30, "several pages: {t:?}");
            assert_eq!(seen(&batches, c), t, "channel {c}, metric order {i}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn days_not_served_yet_are_zero_rows_not_an_error() {
    let sb = sandbox("").await;
    let c = sb.youtube().channels[0].clone();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // The world's last two days are within Analytics' lag: `rows` is absent.
    let o = run(
        &sb,
        &[
            "extract",
            "--channel-id",
            &c,
            "--start",
            "2026-02-28",
            "--end",
            "2026-03-01",
            "--out",
            out.to_str().unwrap(),
        ],
        "sandbox-refresh-token",
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("extracted 0 rows"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_token_rejected_mid_run_is_refreshed_once_and_the_run_completes() {
    // Request 1 is the token refresh; the 5th request is answered 401 UNAUTHENTICATED.
    let sb = sandbox("expired_token@5").await;
    let c = sb.youtube().channels[1].clone();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = run(
        &sb,
        &[
            "extract",
            "--channel-id",
            &c,
            "--start",
            "2026-01-01",
            "--end",
            "2026-02-20",
            "--out",
            out.to_str().unwrap(),
            "--page-size",
            "10",
            "--max-qps",
            "0",
        ],
        "sandbox-refresh-token",
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        seen(&read_raw_table(&out), &c),
        truth(&sb, &c, "2026-01-01", "2026-02-20")
    );
    let (refreshes, unauthenticated) = sb.google_counts();
    assert_eq!((refreshes, unauthenticated), (2, 1), "one 401, one extra refresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_refresh_token_or_a_spent_quota_stops_with_a_clear_line_and_nothing_written() {
    let sb = sandbox("rate_limit@3").await;
    let c = sb.youtube().channels[0].clone();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let args = [
        "extract",
        "--channel-id",
        c.as_str(),
        "--start",
        "2026-01-01",
        "--end",
        "2026-01-31",
        "--out",
        out.to_str().unwrap(),
        "--max-qps",
        "0",
    ];
    let o = run(&sb, &args, "revoked").await;
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("invalid_grant") && stderr(&o).contains("re-authorize"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("sandbox-client-secret"));
    // The 3rd request (the first report page) answers quotaExceeded: final, named.
    let o = run(&sb, &args, "sandbox-refresh-token").await;
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("quota"), "{}", stderr(&o));
    assert!(files(&out).is_empty());
    let o = run(
        &sb,
        &[
            "extract",
            "--channel-id",
            "UCshort",
            "--start",
            "2026-01-01",
            "--end",
            "2026-01-31",
            "--out",
            out.to_str().unwrap(),
        ],
        "x",
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
