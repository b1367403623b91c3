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
    let sb = sandbox("quota@3").await;
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
    // The 3rd request (the uploads listing) answers quotaExceeded: final, named.
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

/// GET a sandbox path with a fresh access token; (status, body).
async fn google_get(sb: &Sandbox, path: &str, query: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let http = crest_core::reqwest::Client::new();
    let token = http
        .post(format!("{}/token", sb.base_url()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "sandbox-client"),
            ("client_secret", "sandbox-client-secret"),
            ("refresh_token", "sandbox-refresh-token"),
        ])
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let token: serde_json::Value = serde_json::from_slice(&token).unwrap();
    let r = http
        .get(format!("{}{path}", sb.base_url()))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .query(query)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, serde_json::from_slice(&r.bytes().await.unwrap()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_refuses_a_day_by_video_report_that_names_no_videos_as_analytics_does() {
    // Analytics' channel reports page ("Video reports") lists `video` as a
    // dimension only with a video filter or as a top-videos list; the
    // dimensions page ("Filters") allows up to 500 IDs in one filter.
    let sb = sandbox("").await;
    let yt = sb.youtube();
    let c = yt.channels[0].clone();
    let ids = format!("channel=={c}");
    let base = [
        ("ids", ids.as_str()),
        ("startDate", "2026-01-01"),
        ("endDate", "2026-01-31"),
        ("metrics", "views"),
        ("dimensions", "day,video"),
    ];
    let (status, body) = google_get(&sb, "/v2/reports", &base).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("The query is not supported"),
        "{body}"
    );
    let too_many = format!("video=={}", vec!["abcdefghijk"; 501].join(","));
    let (status, body) = google_get(
        &sb,
        "/v2/reports",
        &[&base[..], &[("filters", too_many.as_str())]].concat(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // Named videos: rows for those videos only.
    let c0 = yt.channel_index(&c).unwrap();
    let first = yt.uploads(c0)[0].video_id.clone();
    let one = format!("video=={first}");
    let (status, body) = google_get(&sb, "/v2/reports", &[&base[..], &[("filters", one.as_str())]].concat()).await;
    assert_eq!(status, 200, "{body}");
    let rows = body["rows"].as_array().unwrap();
    assert!(
        !rows.is_empty() && rows.iter().all(|r| r[1] == first.as_str()),
        "{body}"
    );
    // The uploads playlist, paged.
    let (status, body) = google_get(&sb, "/youtube/v3/channels", &[("part", "contentDetails"), ("id", &c)]).await;
    assert_eq!(status, 200, "{body}");
    let uploads = body["items"][0]["contentDetails"]["relatedPlaylists"]["uploads"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = google_get(
        &sb,
        "/youtube/v3/playlistItems",
        &[
            ("part", "contentDetails"),
            ("playlistId", &uploads),
            ("maxResults", "1"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"][0]["contentDetails"]["videoId"], first.as_str());
    assert!(body["nextPageToken"].is_string(), "{body}");
    let (status, _) = google_get(
        &sb,
        "/youtube/v3/playlistItems",
        &[
            ("part", "contentDetails"),
            ("playlistId", &uploads),
            ("maxResults", "51"),
        ],
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_with_more_videos_than_one_filter_holds_is_read_in_batches_with_exact_totals() {
    // 60 days, up to 1,200 videos a channel: more than one 500-ID filter and
    // more than one page of the uploads playlist.
    let world = WorldConfig {
        first_day: day("2026-01-01"),
        days: 60,
        creators: 2,
        videos_per_channel: 1_200,
        ..WorldConfig::default()
    };
    let sb = Sandbox::start(SandboxConfig {
        world,
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let yt = sb.youtube();
    let big = (0..2)
        .max_by_key(|c| yt.uploads(*c).len())
        .map(|c| yt.channels[c].clone())
        .unwrap();
    assert!(yt.uploads(yt.channel_index(&big).unwrap()).len() > 500);
    let brand = yt.brand_channel.clone();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let ids = format!("{big},{brand}");
    let o = run(
        &sb,
        &[
            "extract",
            "--channel-id",
            &ids,
            "--start",
            "2026-01-01",
            "--end",
            "2026-01-20",
            "--out",
            out.to_str().unwrap(),
            "--max-qps",
            "0",
        ],
        "sandbox-refresh-token",
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let batches = read_raw_table(&out);
    let t = truth(&sb, &big, "2026-01-01", "2026-01-20");
    assert_eq!(seen(&batches, &big), t);
    // The brand channel's videos keep the link each creator's video carries.
    let mut links = std::collections::BTreeSet::new();
    let mut rows = 0;
    for b in &batches {
        let (c, link) = (
            b.column_by_name("channel_id").unwrap().as_string::<i32>(),
            b.column_by_name("description_link").unwrap().as_string::<i32>(),
        );
        for i in 0..b.num_rows() {
            if c.value(i) == brand {
                rows += 1;
                links.insert(link.value(i).to_string());
            }
        }
    }
    let truth_rows = yt
        .rows(yt.channel_index(&brand).unwrap(), day("2026-01-01"), day("2026-01-20"))
        .len();
    assert_eq!(rows, truth_rows);
    let creators = links.iter().filter(|l| l.contains("utm_content=")).count();
    // Two creators in this world: both their links, and the studio video's plain one.
    assert_eq!((creators, links.len()), (2, 3), "{links:?}");
}
