//! crest-meta against the sandbox's Marketing API over real HTTP on loopback.
#![allow(clippy::unwrap_used)]

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Decimal128Type, Int64Type};
use crest_sandbox::faults::FaultPlan;
use crest_sandbox::meta::MetaTotals;
use crest_sandbox::world::WorldConfig;
use crest_sandbox::{Sandbox, SandboxConfig};
use crest_testkit::{assert_ok, day, files_under, run_cmd, sandbox, stderr};
use std::collections::HashSet;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

const TOKEN: &str = "meta-7c1f-SECRET-09ab";

fn config() -> SandboxConfig {
    SandboxConfig {
        world: WorldConfig {
            first_day: day("2026-01-01"),
            days: 70,
            creators: 30,
            ..WorldConfig::default()
        },
        meta_token: TOKEN.into(),
        meta_job_polls: 2,
        ..SandboxConfig::default()
    }
}

fn accounts(sb: &Sandbox) -> Vec<String> {
    sb.meta().accounts.iter().map(|a| a.account_id.clone()).collect()
}

fn command(sb: &Sandbox, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_crest-meta"));
    cmd.args(args)
        .env("META_ACCESS_TOKEN", TOKEN)
        .env("CREST_META_BASE_URL", sb.base_url())
        .env_remove("META_ACCESS_TOKEN_FILE")
        .env_remove("CREST_LOG")
        .kill_on_drop(true);
    cmd
}

async fn run(sb: &Sandbox, args: &[&str]) -> Output {
    run_cmd(command(sb, args)).await
}

fn args<'a>(ids: &'a str, start: &'a str, end: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "extract",
        "--account-id",
        ids,
        "--start",
        start,
        "--end",
        end,
        "--out",
        out,
        "--poll-initial-ms",
        "10",
        "--retry-initial-ms",
        "20",
        "--timeout-secs",
        "2",
        "--max-qps",
        "0",
        "--page-limit",
        "60",
    ]
}

fn read(out: &Path) -> Vec<RecordBatch> {
    crest_testkit::read_parquet(&out.join("raw/meta/ad_daily"))
}

const WINDOWS: [&str; 4] = ["1d_click", "7d_click", "28d_click", "1d_view"];

/// What the files hold for one account, in the sandbox's units.
fn seen(batches: &[RecordBatch], account: &str) -> MetaTotals {
    let mut t = MetaTotals::default();
    let mut keys = HashSet::new();
    for b in batches {
        let acct = b.column_by_name("account_id").unwrap().as_string::<i32>();
        let int = |n: &str| b.column_by_name(n).unwrap().as_primitive::<Int64Type>().clone();
        let dec = |n: &str| b.column_by_name(n).unwrap().as_primitive::<Decimal128Type>().clone();
        let (imps, clicks, link) = (int("impressions"), int("clicks"), int("inline_link_clicks"));
        let (spend, conv) = (dec("spend"), dec("conversions"));
        let platform = b.column_by_name("publisher_platform").unwrap().as_string::<i32>();
        let ad = b.column_by_name("ad_id").unwrap().as_string::<i32>();
        let date = b
            .column_by_name("date_start")
            .unwrap()
            .as_primitive::<arrow::datatypes::Date32Type>();
        for i in 0..b.num_rows() {
            if acct.value(i) != account {
                continue;
            }
            assert!(
                keys.insert((ad.value(i).to_string(), date.value(i), platform.value(i).to_string())),
                "duplicate row"
            );
            t.rows += 1;
            t.impressions += imps.value(i) as u64;
            t.clicks += clicks.value(i) as u64;
            t.inline_link_clicks += link.value(i) as u64;
            t.spend_cents += (spend.value(i) / 10_000) as u64;
            if conv.is_valid(i) {
                t.default_purchases += (conv.value(i) / 1_000_000) as u64;
            }
            if platform.value(i) == "instagram" {
                t.instagram_rows += 1;
            }
            for (w, name) in WINDOWS.iter().enumerate() {
                let c = dec(&format!("conversions_{name}"));
                let v = dec(&format!("conversion_value_{name}"));
                if c.is_valid(i) {
                    t.purchases[w] += (c.value(i) / 1_000_000) as u64;
                    t.purchase_value_cents[w] += (v.value(i) / 10_000) as u64;
                    // Meta left the key out: read as zero.
                    if c.value(i) == 0 {
                        t.zero[w] += 1;
                    }
                }
            }
        }
    }
    t
}

fn truth(sb: &Sandbox, account: &str, start: &str, end: &str) -> MetaTotals {
    crest_sandbox::meta::truth(sb.meta(), account, day(start), day(end))
}

fn tmp() -> (tempfile::TempDir, String) {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out").to_string_lossy().into_owned();
    (d, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_window_and_action_matches_the_platform_through_async_jobs_and_paging() {
    let sb = sandbox(config()).await;
    let ids = accounts(&sb);
    let (_d, out) = tmp();
    let joined = ids.join(",");
    let o = run(&sb, &args(&joined, "2026-01-01", "2026-02-20", &out)).await;
    assert_ok(&o);
    let batches = read(Path::new(&out));
    for id in &ids {
        let t = truth(&sb, id, "2026-01-01", "2026-02-20");
        let s = seen(&batches, id);
        assert!(
            t.rows > 500 && t.zero[3] > 0 && t.instagram_rows > 0 && t.instagram_rows < t.rows,
            "{t:?}"
        );
        assert_eq!(s, t, "account {id}");
    }
    // Overlapping purchase types were not summed: the default figure is Meta's value, once.
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&files_under(&Path::new(&out).join("_runs"), "json")[0]).unwrap())
            .unwrap();
    assert_eq!(m["status"], "succeeded");
    assert!(!stderr(&o).contains(TOKEN), "the token never appears in logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_heavy_jobs_are_split_down_to_what_completes() {
    // Jobs over 150 rows fail: account → campaigns → ad sets → ads.
    let sb = sandbox(SandboxConfig {
        meta_max_job_rows: 150,
        ..config()
    })
    .await;
    let id = accounts(&sb).remove(0);
    let (_d, out) = tmp();
    let o = run(&sb, &args(&id, "2026-01-01", "2026-01-20", &out)).await;
    assert_ok(&o);
    assert_eq!(
        seen(&read(Path::new(&out)), &id),
        truth(&sb, &id, "2026-01-01", "2026-01-20")
    );
    assert!(stderr(&o).contains("splitting it"), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_or_stalled_job_is_split_and_completes() {
    // Requests 1-2 read the account and its ads; request 3 creates the first job.
    for (fault, extra) in [
        ("job_failed@3", vec![]),
        ("job_stall@3", vec!["--job-stall-secs", "0.3"]),
    ] {
        let sb = sandbox(SandboxConfig {
            faults: fault.parse::<FaultPlan>().unwrap(),
            ..config()
        })
        .await;
        let id = accounts(&sb).remove(0);
        let (_d, out) = tmp();
        let mut a = args(&id, "2026-01-01", "2026-01-10", &out);
        a.extend(extra);
        let o = run(&sb, &a).await;
        assert_ok(&o);
        assert_eq!(
            seen(&read(Path::new(&out)), &id),
            truth(&sb, &id, "2026-01-01", "2026-01-10"),
            "{fault}"
        );
        assert!(stderr(&o).contains("splitting it"), "{fault}: {}", stderr(&o));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_with_nothing_known_to_split_into_is_an_error_not_an_empty_day() {
    // Request 2 lists the account's ads and gets none; request 3's job fails.
    let sb = sandbox(SandboxConfig {
        faults: "empty@2,job_failed@3".parse::<FaultPlan>().unwrap(),
        ..config()
    })
    .await;
    let id = accounts(&sb).remove(0);
    let (_d, out) = tmp();
    let o = run(&sb, &args(&id, "2026-01-01", "2026-01-10", &out)).await;
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("is not recorded as empty"), "{}", stderr(&o));
    assert!(read(Path::new(&out)).is_empty(), "no day was committed as empty");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_headers_keep_the_client_under_the_budget() {
    // 40 calls per 2 s; the client may go up to 100 requests/s but paces on the usage headers.
    let sb = sandbox(SandboxConfig {
        meta_budget: Some((40, Duration::from_secs(2))),
        ..config()
    })
    .await;
    let id = accounts(&sb).remove(0);
    let (_d, out) = tmp();
    let mut a = args(&id, "2026-01-01", "2026-02-28", &out);
    let qps = a.iter().position(|x| *x == "--max-qps").unwrap() + 1;
    a[qps] = "100";
    let limit = a.iter().position(|x| *x == "--page-limit").unwrap() + 1;
    a[limit] = "20";
    let o = run(&sb, &a).await;
    assert_ok(&o);
    assert_eq!(
        seen(&read(Path::new(&out)), &id),
        truth(&sb, &id, "2026-01-01", "2026-02-28")
    );
    let calls = sb.stats().requests;
    let limited = sb.stats().rate_limited;
    assert!(calls > 60, "the run spans several budget windows: {calls}");
    assert!(
        limited <= 2,
        "pacing from usage headers, not from errors: {limited} rate-limit errors in {calls} calls"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_survived_and_a_rerun_after_an_expired_token_resumes_without_duplicates() {
    let sb = sandbox(SandboxConfig {
        faults: "rate_limit@6,server_error@9,http_503@12,truncated@15,drop@18,expired_token@40"
            .parse::<FaultPlan>()
            .unwrap(),
        ..config()
    })
    .await;
    let id = accounts(&sb).remove(0);
    let (_d, out) = tmp();
    let a = args(&id, "2026-01-01", "2026-03-05", &out);
    let o = run(&sb, &a).await;
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("expired") && stderr(&o).contains("resume"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains(TOKEN));
    let o = run(&sb, &a).await;
    assert_ok(&o);
    assert_eq!(
        seen(&read(Path::new(&out)), &id),
        truth(&sb, &id, "2026-01-01", "2026-03-05")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gives_one_clear_line_and_leaves_nothing() {
    let sb = sandbox(config()).await;
    let id = accounts(&sb).remove(0);
    let (d, out) = tmp();
    // (extra flags, an environment override, exit code, what the error says)
    type Case<'a> = (Vec<&'a str>, Option<(&'a str, &'a str)>, i32, &'a str);
    let cases: Vec<Case> = vec![
        (vec!["--api-version", "v17.0"], None, 2, "--api-version"),
        (vec!["--attribution-windows", "7d_click,7d_view"], None, 2, "7d_view"),
        (vec![], Some(("META_ACCESS_TOKEN", "nope")), 3, "META_ACCESS_TOKEN"),
    ];
    for (extra, env, code, says) in cases {
        let mut a = args(&id, "2026-01-01", "2026-01-05", &out);
        a.extend(extra.clone());
        let mut cmd = command(&sb, &a);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let o = run_cmd(cmd).await;
        assert_eq!(o.status.code(), Some(code), "{extra:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{extra:?}: {}", stderr(&o));
        assert_eq!(stderr(&o).lines().filter(|l| l.starts_with("error:")).count(), 1);
    }
    let o = run(&sb, &args("act_123", "2026-01-01", "2026-01-05", &out)).await;
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("--account-id"), "{}", stderr(&o));
    let o = run(&sb, &args("act_12x", "2026-01-01", "2026-01-05", &out)).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(files_under(d.path(), "parquet").is_empty() && files_under(d.path(), "json").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reads_every_account_and_names_an_unreadable_one() {
    let sb = sandbox(config()).await;
    let ids = accounts(&sb);
    let o = run(&sb, &["check", "--account-id", &ids.join(",")]).await;
    assert_ok(&o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    for id in &ids {
        assert!(stdout.contains(&format!("act_{id}")), "{stdout}");
    }
    let o = run(&sb, &["check", "--account-id", &format!("{},act_999", ids[0])]).await;
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let mut cmd = command(&sb, &["check", "--account-id", &ids[0]]);
    cmd.env("META_ACCESS_TOKEN", "expired-token");
    let o = run_cmd(cmd).await;
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("190"), "{}", stderr(&o));
}
