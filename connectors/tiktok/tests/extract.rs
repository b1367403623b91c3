//! crest-tiktok against the sandbox over real HTTP on loopback.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use crest_sandbox::SandboxConfig;
use std::time::Duration;

fn out_dir() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out").to_string_lossy().into_owned();
    (dir, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_page_multi_slice_extract_matches_the_platform_exactly() {
    let sb = sandbox(config()).await;
    let ids = advertisers(&sb);
    let (_tmp, out) = out_dir();
    let joined = ids.join(",");
    // 65 days → three slices of up to 30 days; 97-row pages → many pages per slice.
    let mut args = extract_args(&joined, "2026-01-01", "2026-03-06", &out);
    args.extend(["--page-size", "97"]);
    let o = run(&sb, &args).await;
    assert_ok(&o);

    let batches = read_report(std::path::Path::new(&out), "ad_daily");
    for id in &ids {
        let t = truth(&sb, id, "2026-01-01", "2026-03-06", "AUCTION_AD", false);
        assert!(t.rows > 1000, "the test covers many pages: {t:?}");
        assert_eq!(seen(&batches, id), t, "advertiser {id}");
    }
    assert_no_duplicate_keys(&batches, "ad_id");

    let m = manifests(std::path::Path::new(&out));
    assert_eq!(m.len(), 1);
    let rows: u64 = ids
        .iter()
        .map(|id| truth(&sb, id, "2026-01-01", "2026-03-06", "AUCTION_AD", false).rows)
        .sum();
    assert_eq!(m[0]["rows"], rows);
    assert_eq!(m[0]["status"], "succeeded");
    assert_eq!(m[0]["slices"].as_array().unwrap().len(), 6, "3 slices × 2 advertisers");
    assert!(checkpoints(std::path::Path::new(&out)).is_empty());
    // Every file named in the manifest exists with the recorded size.
    for f in m[0]["files"].as_array().unwrap() {
        let p = std::path::Path::new(&out).join(f["path"].as_str().unwrap());
        assert_eq!(std::fs::metadata(&p).unwrap().len(), f["bytes"].as_u64().unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_is_survived_with_exact_totals() {
    let mut cfg =
        with_faults("rate_limit@4x3,server_error@9,http_500@11,http_503@13,truncated@15,drop@17,slow@19,truncated@22");
    cfg.slow = Duration::from_secs(3);
    let sb = sandbox(cfg).await;
    let id = advertisers(&sb).remove(0);
    let (_tmp, out) = out_dir();
    let mut args = extract_args(&id, "2026-01-01", "2026-02-10", &out);
    args.extend(["--page-size", "60", "--concurrency", "2"]);
    let o = run(&sb, &args).await;
    assert_ok(&o);

    let batches = read_report(std::path::Path::new(&out), "ad_daily");
    assert_eq!(
        seen(&batches, &id),
        truth(&sb, &id, "2026-01-01", "2026-02-10", "AUCTION_AD", false)
    );
    assert_no_duplicate_keys(&batches, "ad_id");
    assert!(sb.stats().faults >= 10, "{:?}", sb.stats());
    let m = &manifests(std::path::Path::new(&out))[0];
    assert!(
        m["api"]["retries"].as_u64().unwrap() >= 10,
        "every fault was retried: {}",
        m["api"]
    );
    let err = stderr(&o);
    assert!(err.contains("retrying request"), "retries are logged at WARN:\n{err}");
    assert!(!err.contains(TOKEN), "the token never appears in logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_stops_with_exit_3_and_a_rerun_resumes_without_duplicates() {
    // Metadata takes 5 requests; with 50-row pages the token expires mid-way through the slices.
    let sb = sandbox(with_faults("expired_token@30")).await;
    let id = advertisers(&sb).remove(0);
    let (_tmp, out) = out_dir();
    let outp = std::path::Path::new(&out);
    let mut args = extract_args(&id, "2026-01-01", "2026-03-06", &out);
    args.extend(["--page-size", "50", "--concurrency", "1"]);
    let o = run(&sb, &args).await;
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("TIKTOK_ACCESS_TOKEN") && err.contains("resume"), "{err}");
    assert_eq!(err.trim().lines().filter(|l| l.starts_with("error:")).count(), 1);
    assert!(manifests(outp).is_empty(), "no manifest for an unfinished run");
    assert_eq!(checkpoints(outp).len(), 1);
    let partial = read_report(outp, "ad_daily");
    assert!(!partial.is_empty(), "committed slices are kept");

    let before = sb.stats().report_requests;
    let o = run(&sb, &args).await;
    assert_ok(&o);
    let batches = read_report(outp, "ad_daily");
    assert_eq!(
        seen(&batches, &id),
        truth(&sb, &id, "2026-01-01", "2026-03-06", "AUCTION_AD", false)
    );
    assert_no_duplicate_keys(&batches, "ad_id");
    let m = &manifests(outp)[0];
    assert_eq!(m["resumed"], 1);
    assert!(checkpoints(outp).is_empty());
    // The committed slice was not fetched again.
    let full = truth(&sb, &id, "2026-01-01", "2026-03-06", "AUCTION_AD", false)
        .rows
        .div_ceil(50);
    assert!(
        sb.stats().report_requests - before < full,
        "resume skipped committed slices"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_resumes_without_refetching_committed_slices_or_duplicating_rows() {
    let sb = sandbox(config()).await;
    let id = advertisers(&sb).remove(0);
    let (_tmp, out) = out_dir();
    let outp = std::path::Path::new(&out).to_path_buf();
    let args = vec![
        "extract",
        "--advertiser-id",
        &id,
        "--start",
        "2026-01-01",
        "--end",
        "2026-03-06",
        "--out",
        &out,
        "--page-size",
        "40",
        "--max-qps",
        "25",
        "--concurrency",
        "1",
    ];
    let mut child = command(&sb, &args).spawn().unwrap();
    // Kill it as soon as one slice is committed, mid-way through the next.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let committed = checkpoints(&outp)
            .first()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .map_or(0, |v| v["slices"].as_array().map_or(0, |s| s.len()));
        if committed >= 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no slice committed in time");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().await.unwrap();
    assert!(manifests(&outp).is_empty());

    let before = sb.stats().report_requests;
    // The same command again.
    let o = run(&sb, &args).await;
    assert_ok(&o);
    let batches = read_report(&outp, "ad_daily");
    let t = truth(&sb, &id, "2026-01-01", "2026-03-06", "AUCTION_AD", false);
    assert_eq!(seen(&batches, &id), t);
    assert_no_duplicate_keys(&batches, "ad_id");
    assert!(
        sb.stats().report_requests - before < t.rows.div_ceil(40),
        "committed slices were not fetched again"
    );
    assert_eq!(manifests(&outp)[0]["resumed"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashes_become_nulls_ids_survive_and_smart_plus_ads_are_kept() {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Decimal128Type, Int64Type};
    let sb = sandbox(config()).await;
    let id = advertisers(&sb).remove(0);
    let (_tmp, out) = out_dir();
    assert_ok(&run(&sb, &extract_args(&id, "2026-01-01", "2026-01-31", &out)).await);
    let batches = read_report(std::path::Path::new(&out), "ad_daily");
    let t = truth(&sb, &id, "2026-01-01", "2026-01-31", "AUCTION_AD", false);
    let s = seen(&batches, &id);
    assert!(t.rows_without_conversions > 0);
    assert_eq!(
        s.rows_without_conversions, t.rows_without_conversions,
        "'-' conversions are null, not 0"
    );

    let world = sb.world();
    let expected: std::collections::HashSet<String> = world
        .ads
        .iter()
        .filter(|ad| world.advertisers[world.ad_advertiser(ad)].advertiser_id == id)
        .map(|ad| ad.ad_id.to_string())
        .collect();
    let mut served = std::collections::HashSet::new();
    let (mut zero_click_rows, mut smart_plus_rows) = (0, 0);
    for b in &batches {
        let ad = b.column_by_name("ad_id").unwrap().as_string::<i32>();
        let clicks = b.column_by_name("clicks").unwrap().as_primitive::<Int64Type>();
        let cpc = b.column_by_name("cpc").unwrap().as_primitive::<Decimal128Type>();
        let modify = b.column_by_name("ad_modify_time").unwrap();
        let url = b.column_by_name("landing_page_url").unwrap().as_string::<i32>();
        for i in 0..b.num_rows() {
            served.insert(ad.value(i).to_string());
            assert!(
                url.value(i).to_lowercase().contains("utm_source=tiktok"),
                "landing URL joined"
            );
            if clicks.value(i) == 0 {
                zero_click_rows += 1;
                assert!(cpc.is_null(i), "cpc '-' is null");
            }
            if modify.is_null(i) {
                smart_plus_rows += 1;
            }
        }
    }
    assert!(zero_click_rows > 0 && smart_plus_rows > 0);
    assert!(served.iter().all(|a| a.parse::<u64>().unwrap() > 1u64 << 53));
    assert!(
        served.is_subset(&expected),
        "every id is exactly an id the platform has"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hourly_rows_sum_to_the_daily_truth() {
    let sb = sandbox(config()).await;
    let id = advertisers(&sb).remove(0);
    let (_tmp, out) = out_dir();
    let mut args = extract_args(&id, "2026-01-10", "2026-01-12", &out);
    args.extend(["--granularity", "hour"]);
    assert_ok(&run(&sb, &args).await);
    let batches = read_report(std::path::Path::new(&out), "ad_hourly");
    let daily = truth(&sb, &id, "2026-01-10", "2026-01-12", "AUCTION_AD", false);
    let hourly = seen(&batches, &id);
    assert_eq!(hourly.rows, daily.rows * 24);
    assert_eq!(
        (
            hourly.impressions,
            hourly.clicks,
            hourly.spend_cents,
            hourly.conversions
        ),
        (daily.impressions, daily.clicks, daily.spend_cents, daily.conversions)
    );
    assert_no_duplicate_keys(&batches, "ad_id");
    let m = &manifests(std::path::Path::new(&out))[0];
    assert_eq!(
        m["slices"].as_array().unwrap().len(),
        3,
        "one slice per day when hourly"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adgroup_and_campaign_levels_match_the_truth() {
    let sb = sandbox(config()).await;
    let id = advertisers(&sb).remove(1);
    for (level, data_level, report, column) in [
        ("adgroup", "AUCTION_ADGROUP", "adgroup_daily", "adgroup_id"),
        ("campaign", "AUCTION_CAMPAIGN", "campaign_daily", "campaign_id"),
    ] {
        let (_tmp, out) = out_dir();
        let mut args = extract_args(&id, "2026-01-01", "2026-02-05", &out);
        args.extend(["--level", level]);
        assert_ok(&run(&sb, &args).await);
        let batches = read_report(std::path::Path::new(&out), report);
        assert_eq!(
            seen(&batches, &id),
            truth(&sb, &id, "2026-01-01", "2026-02-05", data_level, false),
            "{level}"
        );
        assert_no_duplicate_keys(&batches, column);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_qps_budget_keeps_clear_of_rate_limit_errors() {
    let sb = sandbox(SandboxConfig {
        qps: Some(8.0),
        ..config()
    })
    .await;
    let id = advertisers(&sb).remove(0);
    let (_tmp, out) = out_dir();
    let args = vec![
        "extract",
        "--advertiser-id",
        &id,
        "--start",
        "2026-01-01",
        "--end",
        "2026-01-31",
        "--out",
        &out,
        "--page-size",
        "100",
        "--max-qps",
        "6",
        "--concurrency",
        "4",
        "--retry-initial-ms",
        "50",
    ];
    assert_ok(&run(&sb, &args).await);
    let batches = read_report(std::path::Path::new(&out), "ad_daily");
    assert_eq!(
        seen(&batches, &id),
        truth(&sb, &id, "2026-01-01", "2026-01-31", "AUCTION_AD", false)
    );
    assert!(sb.stats().requests > 12);
    assert_eq!(sb.stats().rate_limited, 0, "no rate-limit error while under the budget");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_budget_rate_limits_brake_the_client_instead_of_storming() {
    let sb = sandbox(SandboxConfig {
        qps: Some(5.0),
        ..config()
    })
    .await;
    let id = advertisers(&sb).remove(0);
    let (_tmp, out) = out_dir();
    let args = vec![
        "extract",
        "--advertiser-id",
        &id,
        "--start",
        "2026-01-01",
        "--end",
        "2026-01-31",
        "--out",
        &out,
        "--page-size",
        "60",
        "--max-qps",
        "0",
        "--concurrency",
        "4",
        "--retry-initial-ms",
        "100",
    ];
    assert_ok(&run(&sb, &args).await);
    let batches = read_report(std::path::Path::new(&out), "ad_daily");
    assert_eq!(
        seen(&batches, &id),
        truth(&sb, &id, "2026-01-01", "2026-01-31", "AUCTION_AD", false)
    );
    let s = sb.stats();
    let ok_requests = s.requests - s.rate_limited;
    assert!(
        s.rate_limited <= ok_requests / 2 + 4,
        "rate-limit errors stay a small share of requests: {s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_the_api_calls_too_large_is_split_and_completes() {
    let sb = sandbox(SandboxConfig {
        max_rows_per_query: 400,
        ..config()
    })
    .await;
    let id = advertisers(&sb).remove(0);
    let (_tmp, out) = out_dir();
    assert_ok(&run(&sb, &extract_args(&id, "2026-01-01", "2026-01-30", &out)).await);
    let batches = read_report(std::path::Path::new(&out), "ad_daily");
    assert_eq!(
        seen(&batches, &id),
        truth(&sb, &id, "2026-01-01", "2026-01-30", "AUCTION_AD", false)
    );
    let m = &manifests(std::path::Path::new(&out))[0];
    assert!(m["slices"].as_array().unwrap().len() > 1, "the 30-day slice was split");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerunning_an_interval_replaces_its_data_instead_of_duplicating_it() {
    let sb = sandbox(config()).await;
    let ids = advertisers(&sb);
    let (_tmp, out) = out_dir();
    let outp = std::path::Path::new(&out);
    let joined = ids.join(",");
    assert_ok(&run(&sb, &extract_args(&joined, "2026-01-01", "2026-01-20", &out)).await);
    // Only the first advertiser again, overlapping: the second advertiser's files stay.
    assert_ok(&run(&sb, &extract_args(&ids[0], "2026-01-10", "2026-01-25", &out)).await);
    let batches = read_report(outp, "ad_daily");
    assert_eq!(
        seen(&batches, &ids[0]),
        truth(&sb, &ids[0], "2026-01-01", "2026-01-25", "AUCTION_AD", false)
    );
    assert_eq!(
        seen(&batches, &ids[1]),
        truth(&sb, &ids[1], "2026-01-01", "2026-01-20", "AUCTION_AD", false)
    );
    assert_no_duplicate_keys(&batches, "ad_id");
    let ms = manifests(outp);
    assert_eq!(ms.len(), 2);
    assert!(
        ms.iter().any(|m| m["superseded"].as_array().unwrap().len() == 11),
        "11 days of the first advertiser replaced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_run_with_state_rereads_the_lookback_before_its_start() {
    let sb = sandbox(config()).await;
    let id = advertisers(&sb).remove(0);
    let (tmp, out) = out_dir();
    let state = tmp.path().join("state/tiktok.json").to_string_lossy().into_owned();
    let mut args = extract_args(&id, "2026-01-01", "2026-01-20", &out);
    args.extend(["--state", &state]);
    assert_ok(&run(&sb, &args).await);
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(saved["accounts"][&id]["last_completed_date"], "2026-01-20");

    // Airflow's daily task: `--start {{ ds }} --end {{ ds }}`. It reads the
    // three days before --start again, because TikTok restates them.
    let mut args = extract_args(&id, "2026-01-21", "2026-01-21", &out);
    args.extend(["--state", &state, "--lookback-days", "3"]);
    let o = run(&sb, &args).await;
    assert_ok(&o);
    assert!(stdout(&o).contains("re-read 2026-01-18..2026-01-20"), "{}", stdout(&o));
    let ms = manifests(std::path::Path::new(&out));
    let second = ms.iter().find(|m| m["inputs"]["lookback_days"] == 3).unwrap();
    assert_eq!(
        second["slices"][0]["start"], "2026-01-18",
        "re-reads 3 days before --start"
    );
    assert_eq!(second["reads"][&id]["reread_from"], "2026-01-18");
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(saved["accounts"][&id]["last_completed_date"], "2026-01-21");

    // A backfill of an old interval after the state moved past it reads it again.
    let mut args = extract_args(&id, "2026-01-02", "2026-01-03", &out);
    args.extend(["--state", &state]);
    let o = run(&sb, &args).await;
    assert_ok(&o);
    assert!(stdout(&o).contains("extracted "), "{}", stdout(&o));
    let ms = manifests(std::path::Path::new(&out));
    assert_eq!(ms.len(), 3, "the backfill wrote its own manifest");
    assert!(ms
        .iter()
        .any(|m| m["slices"][0]["start"] == "2026-01-02" && m["slices"][0]["end"] == "2026-01-03"));

    let batches = read_report(std::path::Path::new(&out), "ad_daily");
    assert_eq!(
        seen(&batches, &id),
        truth(&sb, &id, "2026-01-01", "2026-01-21", "AUCTION_AD", false)
    );
    assert_no_duplicate_keys(&batches, "ad_id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_response_is_retried_then_reported_with_its_request() {
    let sb = sandbox(with_faults("truncated%1")).await;
    let id = advertisers(&sb).remove(0);
    let (_tmp, out) = out_dir();
    let mut args = extract_args(&id, "2026-01-01", "2026-01-05", &out);
    args.extend(["--max-attempts", "3"]);
    let o = run(&sb, &args).await;
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("GET /open_api/v1.3/advertiser/info/") && err.contains("after 3 attempts"),
        "{err}"
    );
    assert!(err.contains("malformed") || err.contains("cut off"), "{err}");
    assert!(!err.contains("panicked"));
    assert!(files_under(std::path::Path::new(&out), "parquet").is_empty());
    assert!(manifests(std::path::Path::new(&out)).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_advertiser_level_sums_every_ad() {
    let sb = sandbox(config()).await;
    let id = advertisers(&sb).remove(0);
    let (_tmp, out) = out_dir();
    let mut args = extract_args(&id, "2026-01-01", "2026-01-31", &out);
    args.extend(["--level", "advertiser"]);
    assert_ok(&run(&sb, &args).await);
    let batches = read_report(std::path::Path::new(&out), "advertiser_daily");
    assert_eq!(
        seen(&batches, &id),
        truth(&sb, &id, "2026-01-01", "2026-01-31", "AUCTION_ADVERTISER", false)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_logs_carry_no_token() {
    let sb = sandbox(with_faults("rate_limit@5")).await;
    let id = advertisers(&sb).remove(0);
    let (_tmp, out) = out_dir();
    let mut cmd = command(&sb, &extract_args(&id, "2026-01-01", "2026-01-03", &out));
    cmd.env("CREST_LOG", "trace");
    let o = run_cmd(cmd).await;
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert_ok(&o);
    assert!(
        text.contains("DEBUG") || text.contains("TRACE"),
        "debug logs are on: {text}"
    );
    assert!(!text.contains(TOKEN), "the access token reached the output: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_on_one_advertiser_take_turns_through_its_lease() {
    // Every third request answers after 2 s: the first run is still working
    // when the second starts.
    let sb = sandbox(SandboxConfig {
        slow: std::time::Duration::from_secs(2),
        ..with_faults("slow%3")
    })
    .await;
    let id = advertisers(&sb).remove(0);
    let (_tmp, out) = out_dir();
    let outp = std::path::Path::new(&out);
    let args = extract_args(&id, "2026-01-01", "2026-01-10", &out);
    let first = tokio::spawn(run_cmd(command(&sb, &args)));
    let lease_dir = outp.join(format!("_leases/extract/tiktok/ad_daily/{id}"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while files_under(&lease_dir, "json").is_empty() {
        assert!(std::time::Instant::now() < deadline, "the first run takes its lease");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let second = run(&sb, &args).await;
    assert_eq!(second.status.code(), Some(7), "{}", stderr(&second));
    let err = stderr(&second);
    assert!(
        err.contains("crest-tiktok extract (pid") && err.contains("--wait-for-lease"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // The same second run, told to wait, runs after the first one.
    let mut waiting = args.clone();
    waiting.extend(["--wait-for-lease", "120"]);
    let second = tokio::spawn(run_cmd(command(&sb, &waiting)));
    assert_ok(&first.await.unwrap());
    assert_ok(&second.await.unwrap());
    assert!(files_under(&lease_dir, "json").is_empty(), "leases are released");
    let batches = read_report(outp, "ad_daily");
    assert_eq!(
        seen(&batches, &id),
        truth(&sb, &id, "2026-01-01", "2026-01-10", "AUCTION_AD", false)
    );
    assert_no_duplicate_keys(&batches, "ad_id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_not_over_in_the_advertisers_time_zone_is_provisional_and_read_again() {
    // A world that runs up to today (UTC).
    let today = chrono::Utc::now().date_naive();
    let sb = sandbox(SandboxConfig {
        world: crest_sandbox::world::WorldConfig {
            first_day: today - chrono::Days::new(5),
            days: 6,
            creators: 10,
            ..crest_sandbox::world::WorldConfig::default()
        },
        tiktok_token: TOKEN.into(),
        ..SandboxConfig::default()
    })
    .await;
    // The Los Angeles advertiser: its "today" is never past UTC's.
    let id = sb
        .world()
        .advertisers
        .iter()
        .find(|a| a.timezone == "America/Los_Angeles")
        .unwrap()
        .advertiser_id
        .clone();
    let (tmp, out) = out_dir();
    let state = tmp.path().join("state.json").to_string_lossy().into_owned();
    let (start, end) = ((today - chrono::Days::new(3)).to_string(), today.to_string());
    let mut args = extract_args(&id, &start, &end, &out);
    args.extend(["--state", &state]);
    let o = run(&sb, &args).await;
    assert_ok(&o);
    assert!(stdout(&o).contains("provisional day(s)"), "{}", stdout(&o));
    let m = &manifests(std::path::Path::new(&out))[0];
    let provisional: Vec<&str> = m["provisional"][&id]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert!(provisional.contains(&end.as_str()), "{provisional:?}");
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let last = saved["accounts"][&id]["last_completed_date"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(last < end, "the state stops before today: {last}");
    assert!(saved["accounts"][&id]["provisional"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d == end.as_str()));

    // The next run, even asked only for today, reads the provisional days again.
    let mut args = extract_args(&id, &end, &end, &out);
    args.extend(["--state", &state, "--lookback-days", "0"]);
    assert_ok(&run(&sb, &args).await);
    let ms = manifests(std::path::Path::new(&out));
    let second = ms.iter().find(|m| m["inputs"]["lookback_days"] == 0).unwrap();
    let first_read = second["reads"][&id]["range"]["start"].as_str().unwrap();
    assert!(
        first_read <= provisional[0],
        "re-reads from {first_read}, provisional from {}",
        provisional[0]
    );
}
