//! The fault campaign: crest run as Airflow runs it — a daily task per
//! connector with `--state`, then the transform and a lake load — while the
//! platforms misbehave and workers die. Each round the sandbox restates its
//! last days (a new revision) and injects faults (429s, 5xx, cut and dropped
//! bodies, an empty answer for a day that had rows); runs are killed with
//! SIGKILL at random moments and started again until they succeed, and some
//! are started twice at once.
//!
//! After every round the lake is compared, per platform × account × date,
//! with a clean pipeline over the same dates against the same (restated)
//! sandbox with no faults: equal rows, impressions, clicks, spend and
//! conversions on the dates the round read, unchanged elsewhere; no natural
//! key twice; no credential in any output or file. `CREST_CAMPAIGN_ROUNDS`
//! (default 3) and `CREST_CAMPAIGN_SEED` (default: random, printed) steer it;
//! `scripts/fault-campaign.sh` runs hundreds of rounds.
#![allow(clippy::unwrap_used)]

use chrono::{Days, NaiveDate, Utc};
use crest_sandbox::faults::FaultPlan;
use crest_sandbox::world::WorldConfig;
use crest_sandbox::{Sandbox, SandboxConfig};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

const TIKTOK_TOKEN: &str = "campaign-tiktok-7d41c0de";
const META_TOKEN: &str = "campaign-meta-19be77aa";
const GOOGLE_SECRET: &str = "campaign-client-secret-5e2f";
const GOOGLE_REFRESH: &str = "campaign-refresh-token-a8c3";
const GOOGLE_DEVELOPER: &str = "campaign-developer-token-0f9d";
const SECRETS: [&str; 5] = [
    TIKTOK_TOKEN,
    META_TOKEN,
    GOOGLE_SECRET,
    GOOGLE_REFRESH,
    GOOGLE_DEVELOPER,
];

/// The binaries, beside `crest` in the target directory.
fn bin(name: &str) -> PathBuf {
    let crest = PathBuf::from(env!("CARGO_BIN_EXE_crest"));
    let path = crest.with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: the campaign runs every connector's binary; build the workspace (cargo test --workspace)",
        path.display()
    );
    path
}

fn world(revision: u64) -> WorldConfig {
    // Ending yesterday, as a live account's data does.
    let today = Utc::now().date_naive();
    WorldConfig {
        first_day: today - Days::new(14),
        days: 14,
        creators: 12,
        advertisers: 2,
        ads_per_creator: 2,
        revision,
        ..WorldConfig::default()
    }
}

async fn sandbox(revision: u64, faults: &str) -> Sandbox {
    Sandbox::start(SandboxConfig {
        world: world(revision),
        faults: faults.parse::<FaultPlan>().unwrap(),
        tiktok_token: TIKTOK_TOKEN.into(),
        meta_token: META_TOKEN.into(),
        google_client_secret: GOOGLE_SECRET.into(),
        google_refresh_token: GOOGLE_REFRESH.into(),
        google_developer_token: GOOGLE_DEVELOPER.into(),
        meta_job_polls: 1,
        slow: Duration::from_millis(300),
        ..SandboxConfig::default()
    })
    .await
    .unwrap()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Connector {
    TikTok,
    Meta,
    GoogleAds,
    YouTubeOrganic,
}

impl Connector {
    const ALL: [Connector; 4] = [
        Connector::TikTok,
        Connector::Meta,
        Connector::GoogleAds,
        Connector::YouTubeOrganic,
    ];

    /// The task's name (and its state file's).
    fn name(self) -> &'static str {
        match self {
            Connector::TikTok => "tiktok",
            Connector::Meta => "meta",
            Connector::GoogleAds => "google-ads",
            Connector::YouTubeOrganic => "youtube-organic",
        }
    }

    /// The command of one daily task (without the range).
    fn command(self, sb: &Sandbox, out: &Path) -> tokio::process::Command {
        let out = out.to_str().unwrap().to_string();
        let (binary, mut args) = match self {
            Connector::TikTok => {
                let ids: Vec<String> = sb.world().advertisers.iter().map(|a| a.advertiser_id.clone()).collect();
                (
                    "crest-tiktok",
                    vec!["extract".into(), "--advertiser-id".into(), ids.join(",")],
                )
            }
            Connector::Meta => {
                let ids: Vec<String> = sb.meta().accounts.iter().map(|a| a.account_id.clone()).collect();
                (
                    "crest-meta",
                    vec!["extract".into(), "--account-id".into(), ids.join(",")],
                )
            }
            Connector::GoogleAds => {
                let ids: Vec<String> = sb.ads().customers.iter().map(|c| c.id.clone()).collect();
                (
                    "crest-youtube",
                    vec!["extract".into(), "--ads-customer-id".into(), ids.join(",")],
                )
            }
            Connector::YouTubeOrganic => {
                let ids: Vec<String> = sb.youtube().channels.iter().take(3).cloned().collect();
                (
                    "crest-youtube",
                    vec!["extract".into(), "--channel-id".into(), ids.join(",")],
                )
            }
        };
        args.extend(["--out".into(), out, "--retry-initial-ms".into(), "20".into()]);
        let mut cmd = tokio::process::Command::new(bin(binary));
        cmd.args(&args)
            .env("TIKTOK_ACCESS_TOKEN", TIKTOK_TOKEN)
            .env("CREST_TIKTOK_BASE_URL", sb.base_url())
            .env("META_ACCESS_TOKEN", META_TOKEN)
            .env("CREST_META_BASE_URL", sb.base_url())
            .env("GOOGLE_CLIENT_ID", "sandbox-client")
            .env("GOOGLE_CLIENT_SECRET", GOOGLE_SECRET)
            .env("GOOGLE_REFRESH_TOKEN", GOOGLE_REFRESH)
            .env("GOOGLE_ADS_DEVELOPER_TOKEN", GOOGLE_DEVELOPER)
            .env("CREST_GOOGLE_OAUTH_URL", format!("{}/token", sb.base_url()))
            .env("CREST_GOOGLE_ADS_BASE_URL", sb.base_url())
            .env("CREST_YOUTUBE_ANALYTICS_BASE_URL", sb.base_url())
            .env("CREST_YOUTUBE_DATA_BASE_URL", sb.base_url())
            // Debug logs on: no credential may reach them either.
            .env("CREST_LOG", "debug")
            .kill_on_drop(true);
        cmd
    }
}

/// Everything the campaign ran and saw.
#[derive(Default)]
struct Tally {
    runs: u64,
    kills: u64,
    concurrent: u64,
    faults: u64,
    restated_rounds: u64,
    emptied_days: u64,
    compared: u64,
    lost: i64,
    duplicated: i64,
    output: String,
}

impl Tally {
    fn saw(&mut self, o: &Output) {
        self.runs += 1;
        self.output.push_str(&String::from_utf8_lossy(&o.stdout));
        self.output.push_str(&String::from_utf8_lossy(&o.stderr));
    }
}

async fn finish(cmd: &mut tokio::process::Command) -> Output {
    tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .expect("a run finishes within 5 minutes")
        .unwrap()
}

/// Runs a command as a scheduler would: maybe killed (SIGKILL) at a random
/// moment first, then started again until it succeeds.
async fn run_until_success(
    make: &dyn Fn() -> tokio::process::Command,
    rng: &mut rand::rngs::StdRng,
    tally: &mut Tally,
    what: &str,
) -> Output {
    if rng.random_bool(0.4) {
        let mut child = make()
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..1200))).await;
        if child.try_wait().unwrap().is_none() {
            child.start_kill().unwrap();
            tally.kills += 1;
        }
        let o = child.wait_with_output().await.unwrap();
        tally.saw(&o);
    }
    for attempt in 1..=6 {
        let o = finish(&mut make()).await;
        tally.saw(&o);
        if o.status.success() {
            return o;
        }
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!err.contains("panicked"), "{what} panicked: {err}");
        assert!(attempt < 6, "{what} still fails after {attempt} attempts: {err}");
    }
    unreachable!()
}

/// `crest query --format json` over a lake.
async fn query(lake: &Path, sql: &str) -> Vec<serde_json::Value> {
    let target = format!("lake:{}", lake.display());
    let o = finish(
        tokio::process::Command::new(bin("crest")).args(["query", "--target", &target, "--format", "json", sql]),
    )
    .await;
    assert!(o.status.success(), "{sql}: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice::<serde_json::Value>(&o.stdout)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

type Day = (String, String, NaiveDate);
type Figures = [i64; 5];

/// Rows, impressions, clicks, spend and conversions (millionths) per platform × account × date.
async fn figures(lake: &Path) -> BTreeMap<Day, Figures> {
    if !lake.join("creator_performance").exists() {
        return BTreeMap::new();
    }
    let rows = query(
        lake,
        "SELECT platform, account_id, CAST(date AS VARCHAR) AS d, COUNT(*) AS n, \
         COALESCE(SUM(impressions), 0) AS imps, COALESCE(SUM(clicks), 0) AS clicks, \
         CAST(COALESCE(SUM(spend), 0) * 1000000 AS BIGINT) AS spend, \
         CAST(COALESCE(SUM(conversions), 0) * 1000000 AS BIGINT) AS conv \
         FROM creator_performance GROUP BY platform, account_id, date",
    )
    .await;
    rows.iter()
        .map(|r| {
            let int = |k: &str| {
                r[k].as_i64()
                    .unwrap_or_else(|| r[k].as_str().map_or(0, |s| s.parse().unwrap()))
            };
            (
                (
                    r["platform"].as_str().unwrap().to_string(),
                    r["account_id"].as_str().unwrap().to_string(),
                    NaiveDate::parse_from_str(r["d"].as_str().unwrap(), "%Y-%m-%d").unwrap(),
                ),
                [int("n"), int("imps"), int("clicks"), int("spend"), int("conv")],
            )
        })
        .collect()
}

/// Natural keys seen more than once.
async fn duplicate_keys(lake: &Path) -> i64 {
    if !lake.join("creator_performance").exists() {
        return 0;
    }
    let rows = query(
        lake,
        "SELECT COUNT(*) AS n FROM (SELECT platform, account_id, ad_id, content_id, placement, date, hour, COUNT(*) AS c \
         FROM creator_performance GROUP BY platform, account_id, ad_id, content_id, placement, date, hour) WHERE c > 1",
    )
    .await;
    rows.first().and_then(|r| r["n"].as_i64()).unwrap_or(0)
}

/// What the lake must hold for an account-day after the round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Read this round: what a clean pipeline reads now.
    Truth,
    /// The platform answered the complete day with no rows: that answer stands.
    Absent,
    /// A provisional day answered empty keeps what it had (from this round's
    /// earlier read or an earlier round).
    Kept,
}

/// Per platform/account × date, what this round's extracts (in the order
/// they finished; the last read of a day decides) leave for it.
fn round_reads(out: &Path, since: &std::collections::HashSet<PathBuf>) -> BTreeMap<Day, Expect> {
    let mut manifests: Vec<serde_json::Value> = std::fs::read_dir(out.join("_runs"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|f| f.path())
        .filter(|p| !since.contains(p) && p.extension().is_some_and(|e| e == "json"))
        .map(|p| serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap())
        .filter(|m: &serde_json::Value| m["stage"] == "extract")
        .collect();
    manifests.sort_by_key(|m| m["finished_at"].as_str().unwrap_or_default().to_string());
    let date = |v: &serde_json::Value| NaiveDate::parse_from_str(v.as_str().unwrap(), "%Y-%m-%d").unwrap();
    let mut out = BTreeMap::new();
    for m in manifests {
        let platform = m["platform"].as_str().unwrap().to_string();
        for slice in m["slices"].as_array().into_iter().flatten() {
            let account = slice["account_id"].as_str().unwrap().to_string();
            let mut d = date(&slice["start"]);
            while d <= date(&slice["end"]) {
                let kept = m["emptied"].as_array().into_iter().flatten().any(|e| {
                    e["account_id"].as_str() == Some(account.as_str())
                        && date(&e["date"]) == d
                        && e["replaced"] == false
                });
                let rows = m["files"].as_array().into_iter().flatten().any(|f| {
                    f["account_id"].as_str() == Some(account.as_str())
                        && date(&f["date"]) == d
                        && f["rows"].as_u64() > Some(0)
                });
                // A day read with no rows is absent, whether the platform had
                // none or answered empty (the `empty` fault); the campaign
                // checks below that only the faulted request's days are so.
                let expect = match (rows, kept) {
                    (true, _) => Expect::Truth,
                    (false, true) => Expect::Kept,
                    (false, false) => Expect::Absent,
                };
                out.insert((platform.clone(), account.clone(), d), expect);
                d = d.succ_opt().unwrap();
            }
        }
    }
    out
}

fn files(dir: &Path) -> std::collections::HashSet<PathBuf> {
    std::fs::read_dir(dir.join("_runs"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|f| f.path())
        .collect()
}

fn all_text_under(dir: &Path) -> String {
    let mut out = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
    out
}

/// A clean pipeline (no faults, no kills, no state) over `range` against the round's world.
async fn reference(revision: u64, range: (NaiveDate, NaiveDate), dir: &Path) -> BTreeMap<Day, Figures> {
    let sb = sandbox(revision, "").await;
    let out = dir.join(format!("reference-{revision}"));
    let (start, end) = (range.0.to_string(), range.1.to_string());
    for c in Connector::ALL {
        let o = finish(c.command(&sb, &out).args(["--start", &start, "--end", &end])).await;
        assert!(
            o.status.success(),
            "reference {c:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let lake = dir.join(format!("reference-lake-{revision}"));
    transform_and_load(&out, &lake, range, None, None).await;
    figures(&lake).await
}

async fn transform_and_load(
    out: &Path,
    lake: &Path,
    range: (NaiveDate, NaiveDate),
    rng: Option<&mut rand::rngs::StdRng>,
    tally: Option<&mut Tally>,
) {
    let (start, end) = (range.0.to_string(), range.1.to_string());
    let out_s = out.to_str().unwrap().to_string();
    let target = format!("lake:{}", lake.display());
    let transform = || {
        let mut c = tokio::process::Command::new(bin("crest"));
        c.args([
            "transform",
            "--input",
            &out_s,
            "--start",
            &start,
            "--end",
            &end,
            "--wait-for-lease",
            "120",
        ])
        .kill_on_drop(true);
        c
    };
    let load = || {
        let mut c = tokio::process::Command::new(bin("crest"));
        c.args([
            "load",
            "--input",
            &out_s,
            "--target",
            &target,
            "--wait-for-lease",
            "120",
        ])
        .kill_on_drop(true);
        c
    };
    match (rng, tally) {
        (Some(rng), Some(tally)) => {
            run_until_success(&transform, rng, tally, "crest transform").await;
            run_until_success(&load, rng, tally, "crest load").await;
        }
        _ => {
            for mut c in [transform(), load()] {
                let o = finish(&mut c).await;
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_randomized_fault_campaign_loses_and_doubles_nothing() {
    let rounds: u64 = std::env::var("CREST_CAMPAIGN_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let seed: u64 = std::env::var("CREST_CAMPAIGN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    println!("fault campaign: {rounds} rounds, seed {seed} (CREST_CAMPAIGN_SEED={seed} repeats it)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pipeline");
    let lake = dir.path().join("lake");
    let state = dir.path().join("state");
    let mut tally = Tally::default();
    let today = Utc::now().date_naive();
    let mut before: BTreeMap<Day, Figures> = BTreeMap::new();

    for round in 0..rounds {
        let revision = round;
        if round > 0 {
            tally.restated_rounds += 1;
        }
        // Airflow's ds: one of the last days.
        let ds = today - Days::new(rng.random_range(1..=3));
        let mut kinds = vec![
            "rate_limit%7",
            "server_error%9",
            "http_503%11",
            "truncated%13",
            "drop%17",
            "slow%19",
        ];
        let faults: Vec<&str> = (0..rng.random_range(1..=3))
            .map(|_| kinds.remove(rng.random_range(0..kinds.len())))
            .collect();
        let mut spec = faults.join(",");
        // Now and then TikTok answers a day's report with no rows.
        if rng.random_bool(0.5) {
            spec.push_str(&format!(",empty@{}", rng.random_range(3..12)));
        }
        let sb = sandbox(revision, &spec).await;
        let seen_runs = files(&out);
        for c in Connector::ALL {
            let state_file = state.join(format!("{}.json", c.name()));
            let ds_s = ds.to_string();
            let make = || {
                let mut cmd = c.command(&sb, &out);
                cmd.args([
                    "--start",
                    &ds_s,
                    "--end",
                    &ds_s,
                    "--state",
                    state_file.to_str().unwrap(),
                    "--lookback-days",
                    "3",
                    "--wait-for-lease",
                    "120",
                ]);
                cmd
            };
            if rng.random_bool(0.3) {
                // Two workers pick up the same task: they take turns.
                tally.concurrent += 1;
                let (mut first, mut second) = (make(), make());
                let (a, b) = tokio::join!(finish(&mut first), finish(&mut second));
                for o in [&a, &b] {
                    tally.saw(o);
                }
                if !(a.status.success() && b.status.success()) {
                    run_until_success(&make, &mut rng, &mut tally, &format!("{c:?} extract")).await;
                }
            } else {
                run_until_success(&make, &mut rng, &mut tally, &format!("{c:?} extract")).await;
            }
        }
        tally.faults += sb.stats().faults;

        let reads = round_reads(&out, &seen_runs);
        let first = reads.keys().map(|k| k.2).min().unwrap();
        let last = reads.keys().map(|k| k.2).max().unwrap();
        transform_and_load(&out, &lake, (first, last), Some(&mut rng), Some(&mut tally)).await;

        // The oracle: a clean pipeline over the same dates, same restated world.
        let truth = reference(revision, (first, last), dir.path()).await;
        let now = figures(&lake).await;
        // Days answered empty although the platform has rows: only the days of
        // the one request the `empty` fault hit (one TikTok advertiser, one slice).
        let answered_empty: Vec<&Day> = reads
            .iter()
            .filter(|(k, e)| **e == Expect::Absent && truth.contains_key(*k))
            .map(|(k, _)| k)
            .collect();
        let accounts: std::collections::BTreeSet<(&str, &str)> =
            answered_empty.iter().map(|k| (k.0.as_str(), k.1.as_str())).collect();
        assert!(
            accounts.len() <= 1 && accounts.iter().all(|(p, _)| *p == "tiktok") && answered_empty.len() <= 4,
            "round {round} (seed {seed}, faults {spec}): days without rows that the platform has: {answered_empty:?}"
        );
        if !answered_empty.is_empty() {
            assert!(
                spec.contains("empty@"),
                "round {round} (seed {seed}): rows lost without an empty answer: {answered_empty:?}"
            );
        }
        tally.emptied_days += answered_empty.len() as u64;
        let keys: std::collections::BTreeSet<&Day> = truth.keys().chain(now.keys()).chain(before.keys()).collect();
        for k in keys {
            let got = now.get(k).copied();
            let ok = match reads.get(k) {
                Some(Expect::Truth) => got == truth.get(k).copied(),
                Some(Expect::Absent) => got.is_none(),
                Some(Expect::Kept) => got == before.get(k).copied() || got == truth.get(k).copied(),
                // Not read this round: as it was.
                None => got == before.get(k).copied(),
            };
            tally.compared += 1;
            if !ok {
                let expected = match reads.get(k) {
                    Some(Expect::Absent) => None,
                    None => before.get(k).copied(),
                    _ => truth.get(k).copied(),
                };
                let (e, g) = (expected.unwrap_or_default(), got.unwrap_or_default());
                if g[0] < e[0] {
                    tally.lost += e[0] - g[0];
                } else {
                    tally.duplicated += g[0] - e[0];
                }
                panic!(
                    "round {round} (seed {seed}, faults {spec}): {k:?} ({:?}) expected {expected:?}, the lake has {got:?}",
                    reads.get(k)
                );
            }
        }
        assert_eq!(
            duplicate_keys(&lake).await,
            0,
            "round {round} (seed {seed}): a natural key twice"
        );
        before = now;
    }

    let files_text = all_text_under(dir.path());
    for secret in SECRETS {
        assert!(
            !tally.output.contains(secret),
            "a credential reached a command's output"
        );
        assert!(!files_text.contains(secret), "a credential reached a file");
    }
    println!(
        "{} rounds, {} runs, {} killed, {} started twice at once, {} faults injected, {} restatements, {} days answered empty, {} account-days compared; rows lost {}, rows duplicated {}",
        rounds,
        tally.runs,
        tally.kills,
        tally.concurrent,
        tally.faults,
        tally.restated_rounds,
        tally.emptied_days,
        tally.compared,
        tally.lost,
        tally.duplicated
    );
}
