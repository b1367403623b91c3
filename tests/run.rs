//! `crest run --config`: every platform from the sandbox over real HTTP into
//! a lake in one command; a re-run doubles nothing; bad configs stop before
//! anything is extracted. `crest demo`: the tier board, checked in headless
//! Chromium.
#![allow(clippy::unwrap_used)]

mod common;

use common::{crest, sandbox, stderr};
use crest_sandbox::Sandbox;
use std::path::Path;
use std::process::Output;

/// The connectors' settings for the sandbox: what a team sets for the real APIs.
fn sandbox_env(sb: &Sandbox) -> Vec<(&'static str, String)> {
    let base = sb.base_url();
    vec![
        ("TIKTOK_ACCESS_TOKEN", sb.tiktok_token().to_string()),
        ("CREST_TIKTOK_BASE_URL", base.clone()),
        ("META_ACCESS_TOKEN", sb.meta_token().to_string()),
        ("CREST_META_BASE_URL", base.clone()),
        ("GOOGLE_CLIENT_ID", "sandbox-client".into()),
        ("GOOGLE_CLIENT_SECRET", "sandbox-client-secret".into()),
        ("GOOGLE_REFRESH_TOKEN", "sandbox-refresh-token".into()),
        ("GOOGLE_ADS_DEVELOPER_TOKEN", "sandbox-developer-token".into()),
        ("CREST_GOOGLE_OAUTH_URL", format!("{base}/token")),
        ("CREST_YOUTUBE_ANALYTICS_BASE_URL", base.clone()),
        ("CREST_YOUTUBE_DATA_BASE_URL", base.clone()),
        ("CREST_GOOGLE_ADS_BASE_URL", base),
    ]
}

async fn crest_with(env: &[(&'static str, String)], args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_crest"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("CREST_LOG")
        .output()
        .await
        .unwrap()
}

fn config(sb: &Sandbox, dir: &Path) -> String {
    let w = sb.world();
    std::fs::write(dir.join("roster.csv"), w.roster_csv()).unwrap();
    let quoted = |ids: Vec<String>| ids.iter().map(|i| format!("\"{i}\"")).collect::<Vec<_>>().join(", ");
    let benchmarks = Path::new(env!("CARGO_MANIFEST_DIR")).join("../benchmarks/default.csv");
    format!(
        r#"out = "{out}"
target = "lake:{lake}"
start = 2026-01-05
end = "2026-01-18"
roster = "{roster}"
benchmarks = "{benchmarks}"

[tiktok]
advertiser_ids = [{tiktok}]

[meta]
account_ids = [{meta}]
poll_initial_ms = 20

[youtube]
channel_ids = [{channels}]
ads_customer_ids = [{customers}]
"#,
        out = dir.join("out").display(),
        lake = dir.join("lake").display(),
        roster = dir.join("roster.csv").display(),
        benchmarks = benchmarks.display(),
        tiktok = quoted(w.advertisers.iter().map(|a| a.advertiser_id.clone()).collect()),
        meta = quoted(sb.meta().accounts.iter().map(|a| a.account_id.clone()).collect()),
        channels = quoted(sb.youtube().channels.iter().take(3).cloned().collect()),
        customers = quoted(sb.ads().customers.iter().map(|c| c.id.clone()).collect()),
    )
}

async fn count(lake: &Path, sql: &str) -> String {
    let target = format!("lake:{}", lake.display());
    let o = crest(&["query", "--target", &target, "--format", "csv", sql]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .skip(1)
        .collect::<Vec<_>>()
        .join("\n")
}

/// How many natural keys of creator_performance hold more than one row.
async fn keys_twice(lake: &Path) -> String {
    count(
        lake,
        "SELECT COUNT(*) FROM (SELECT date, hour, platform, placement, account_id, ad_id, content_id \
         FROM creator_performance GROUP BY 1, 2, 3, 4, 5, 6, 7 HAVING COUNT(*) > 1)",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_config_runs_every_stage_and_a_rerun_doubles_nothing() {
    let sb = sandbox().await;
    let env = sandbox_env(&sb);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("crest.toml");
    std::fs::write(&file, config(&sb, dir.path())).unwrap();
    let file = file.display().to_string();

    let first = crest_with(&env, &["run", "--config", &file]).await;
    assert!(first.status.success(), "{}", stderr(&first));
    let out = String::from_utf8_lossy(&first.stdout).to_string();
    for stage in ["▸ extract", "▸ transform", "▸ load", "▸ views"] {
        assert!(out.contains(stage), "a line for {stage}: {out}");
    }
    let lake = dir.path().join("lake");
    let by_platform = count(
        &lake,
        "SELECT platform, channel, COUNT(*) FROM creator_performance GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .await;
    for p in ["meta,paid", "tiktok,paid", "youtube,organic", "youtube,paid"] {
        assert!(by_platform.contains(p), "{p} rows in the lake: {by_platform}");
    }
    let rows = count(&lake, "SELECT COUNT(*) FROM creator_performance").await;
    let tiers = count(&lake, "SELECT COUNT(*) FROM v_creator_tier WHERE tier IS NOT NULL").await;
    assert!(
        tiers.parse::<u64>().unwrap() > 0,
        "benchmarks loaded, views applied: tiers exist"
    );

    // The run summary: every stage, with rows and time.
    let runs = dir.path().join("out/_runs");
    let summary: serde_json::Value = std::fs::read_dir(&runs)
        .unwrap()
        .filter_map(|e| serde_json::from_slice::<serde_json::Value>(&std::fs::read(e.unwrap().path()).ok()?).ok())
        .find(|m| m["stage"] == "run")
        .expect("a run summary in _runs/");
    assert_eq!(summary["status"], "succeeded");
    let stages: Vec<&str> = summary["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["extract", "transform", "load", "views"]);
    assert_eq!(
        summary["stages"][1]["rows_out"].as_u64().unwrap(),
        rows.parse::<u64>().unwrap(),
        "the transform's rows are the lake's"
    );

    // Again, as a scheduler would after a retry: the state re-reads the
    // lookback, the transform replaces the same keys, nothing is doubled.
    let again = crest_with(&env, &["run", "--config", &file]).await;
    assert!(again.status.success(), "{}", stderr(&again));
    // With state, each platform re-reads its lookback, which reaches before
    // the first run's start: earlier days are added, the first run's days stay.
    let in_range = "SELECT COUNT(*) FROM creator_performance WHERE date BETWEEN '2026-01-05' AND '2026-01-18'";
    assert_eq!(count(&lake, in_range).await, rows);
    assert_eq!(keys_twice(&lake).await, "0", "no key twice after a re-run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_site_is_attributed_after_the_load_and_a_rerun_doubles_no_credit() {
    use crest_sandbox::ga4;
    let sb = sandbox().await;
    let env = sandbox_env(&sb);
    let dir = tempfile::tempdir().unwrap();
    // The brand's site as exported files, over the same world.
    let export = ga4::export(sb.world(), &ga4::Ga4Config::default());
    let site = dir.path().join("site");
    std::fs::create_dir_all(&site).unwrap();
    for day in export.days.keys() {
        std::fs::write(
            site.join(format!("events_{}.json", day.format("%Y%m%d"))),
            export.ndjson(*day),
        )
        .unwrap();
    }
    let file = dir.path().join("crest.toml");
    let text = config(&sb, dir.path()).replace("[tiktok]", "[attribution]\nlookback_days = 7\n\n[tiktok]");
    std::fs::write(
        &file,
        format!(
            "{text}\n[ga4]\nproperty_ids = [\"{}\"]\nfrom = \"{}\"\n",
            export.property_id,
            site.display()
        ),
    )
    .unwrap();
    let file = file.display().to_string();
    let first = crest_with(&env, &["run", "--config", &file]).await;
    assert!(first.status.success(), "{}", stderr(&first));
    let out = String::from_utf8_lossy(&first.stdout).to_string();
    assert!(out.contains("▸ attribute") && out.contains("site conversions"), "{out}");
    let lake = dir.path().join("lake");
    let credited = "SELECT MIN(date), MAX(date), SUM(conversions) FROM creator_attribution WHERE model = 'linear'";
    let got = count(&lake, credited).await;
    let cols: Vec<&str> = got.split(',').collect();
    let (from, to) = (crest_testkit::day(cols[0]), crest_testkit::day(cols[1]));
    // Every purchase of those days is credited once under each model.
    let purchases: rust_decimal::Decimal = export
        .truth
        .iter()
        .filter(|((d, _, _, m), _)| *m == "linear" && *d >= from && *d <= to)
        .map(|(_, v)| v.0)
        .sum();
    assert_eq!(cols[2].parse::<rust_decimal::Decimal>().unwrap(), purchases, "{got}");
    let compare = count(
        &lake,
        "SELECT COUNT(*) FROM v_attribution_compare WHERE site_linear > 0",
    )
    .await;
    assert!(
        compare.parse::<u64>().unwrap() > 0,
        "the view puts the site beside the platforms"
    );

    let again = crest_with(&env, &["run", "--config", &file]).await;
    assert!(again.status.success(), "{}", stderr(&again));
    let by_day =
        "SELECT date, SUM(conversions) FROM creator_attribution WHERE model = 'linear' GROUP BY date ORDER BY date";
    let days_after: Vec<String> = count(&lake, by_day).await.lines().map(String::from).collect();
    let recount = count(
        &lake,
        &format!(
            "SELECT SUM(conversions) FROM creator_attribution WHERE model = 'linear' AND date BETWEEN '{from}' AND '{to}'"
        ),
    )
    .await;
    assert_eq!(
        recount.parse::<rust_decimal::Decimal>().unwrap(),
        purchases,
        "no credit twice: {days_after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_at_once_take_turns_and_double_nothing() {
    let sb = sandbox().await;
    let env = sandbox_env(&sb);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("crest.toml");
    std::fs::write(&file, config(&sb, dir.path())).unwrap();
    let file = file.display().to_string();
    // As an hourly schedule overlapping a slow run would: the second waits for
    // the first's leases (extract per account, transform, lake load).
    let args = ["run", "--config", &file, "--wait-for-lease", "300"];
    let (a, b) = tokio::join!(crest_with(&env, &args), crest_with(&env, &args));
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(b.status.success(), "{}", stderr(&b));
    let lake = dir.path().join("lake");
    assert_eq!(keys_twice(&lake).await, "0", "no key twice after two runs at once");
    let days = count(
        &lake,
        "SELECT COUNT(DISTINCT date) FROM creator_performance WHERE platform = 'tiktok'",
    )
    .await;
    assert!(days.parse::<u32>().unwrap() >= 14, "every day of the range: {days}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_is_one_line_naming_the_file_and_key_and_extracts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let head = format!(
        "out = \"{}\"\nstart = \"2026-01-01\"\nend = \"2026-01-31\"\n",
        out.display()
    );
    let cases: [(&str, String, &str); 12] = [
        (
            "a site without a roster",
            format!("{head}[ga4]\nproperty_ids = [\"1\"]\nfrom = \"./site\"\n"),
            "`roster` is needed with [ga4]",
        ),
        (
            "an unknown attribution model",
            format!("{head}[attribution]\nmodels = [\"last\", \"u_shaped\"]\n[tiktok]\nadvertiser_ids = [\"1\"]\n"),
            "`attribution.models` 'u_shaped' is not an attribution model",
        ),
        (
            "a site with neither project nor files",
            format!("{head}[ga4]\nproperty_ids = [\"1\"]\n"),
            "needs one of project",
        ),
        (
            "unknown key",
            format!("{head}bogus = 1\n[tiktok]\nadvertiser_ids = [\"1\"]\n"),
            "unknown field `bogus`",
        ),
        (
            "wrong type, a secret pasted in",
            format!("{head}[tiktok]\nadvertiser_ids = \"tok-123\"\n"),
            "expected a sequence (line 5)",
        ),
        (
            "hourly with Meta",
            format!(
                "{head}granularity = \"hour\"\n[tiktok]\nadvertiser_ids = [\"1\"]\n[meta]\naccount_ids = [\"1\"]\n"
            ),
            "`granularity`",
        ),
        (
            "alerts without a webhook",
            format!("{head}[tiktok]\nadvertiser_ids = [\"1\"]\n[alerts]\nslack = true\n"),
            "`alerts.slack`",
        ),
        (
            "missing key",
            "start = \"2026-01-01\"\n[tiktok]\nadvertiser_ids = [\"1\"]\n".into(),
            "missing field `out`",
        ),
        (
            "unknown platform",
            format!("{head}[snapchat]\nids = [\"1\"]\n"),
            "[snapchat] is not a platform",
        ),
        (
            "future end",
            format!(
                "out = \"{}\"\nstart = \"2026-01-01\"\nend = \"2099-01-01\"\n[meta]\naccount_ids = [\"1\"]\n",
                out.display()
            ),
            "end 2099-01-01 is in the future",
        ),
        (
            "inline secret",
            format!("{head}[tiktok]\nadvertiser_ids = [\"1\"]\naccess_token = \"tok-123\"\n"),
            "`tiktok.access_token` looks like a secret",
        ),
        (
            "unreadable roster",
            format!(
                "{head}roster = \"{}/missing.csv\"\n[tiktok]\nadvertiser_ids = [\"1\"]\n",
                dir.path().display()
            ),
            "`roster`",
        ),
    ];
    for (what, text, expect, since_last) in cases.into_iter().map(|(w, t, e)| (w, t, e, false)).chain([(
        "--since-last before any dated run",
        format!("{head}[tiktok]\nadvertiser_ids = [\"1\"]\n"),
        "no state for tiktok yet",
        true,
    )]) {
        let file = dir.path().join("crest.toml");
        std::fs::write(&file, text).unwrap();
        let file = file.display().to_string();
        let mut args = vec!["run", "--config", &file];
        if since_last {
            args.push("--since-last");
        }
        let o = crest_with(&[("TIKTOK_ACCESS_TOKEN", "tok".into())], &args).await;
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{what}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{what}: one line: {err}");
        assert!(err.contains("crest.toml") && err.contains(expect), "{what}: {err}");
        assert!(!err.contains("tok-123"), "{what}: the secret is not echoed");
        assert!(!out.exists(), "{what}: nothing written");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_prints_every_tier_and_its_page_renders_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let o = crest(&[
        "demo",
        "--out",
        &out.display().to_string(),
        "--creators",
        "40",
        "--days",
        "10",
        "--seed",
        "7",
    ])
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let board = text
        .lines()
        .find(|l| l.starts_with("Tier board:"))
        .expect("a tier board line");
    for tier in ["red", "yellow", "accelerate", "green"] {
        let n: u64 = board
            .split([',', '—'])
            .find_map(|part| {
                part.trim()
                    .strip_suffix(&format!(" {tier}"))
                    .and_then(|n| n.trim().parse().ok())
            })
            .unwrap_or(0);
        assert!(n > 0, "some creators are {tier}: {board}");
    }
    assert!(text.contains("Budget reallocation: move"), "{text}");
    let lake = out.join("lake");
    let rows: usize = count(&lake, "SELECT COUNT(*) FROM v_creator_tier")
        .await
        .parse()
        .unwrap();
    let plotted: usize = count(
        &lake,
        "SELECT COUNT(*) FROM v_creator_tier WHERE ctr IS NOT NULL AND cpc IS NOT NULL",
    )
    .await
    .parse()
    .unwrap();
    assert!(rows > 100 && plotted > 50, "{rows} rows, {plotted} plotted");

    // The page in a real browser, from disk, with no network.
    let chromium = std::env::var("CREST_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "headless Chromium is needed ({chromium}); scripts/test.sh installs it (apt-get install chromium)"
    );
    let page = out.join("tier-board.html");
    let url = format!("file://{}", page.display());
    let browser = |extra: &[String]| {
        let mut args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--no-first-run".into(),
            format!("--user-data-dir={}", dir.path().join("chromium").display()),
        ];
        args.extend(extra.iter().cloned());
        args.push(url.clone());
        std::process::Command::new(&chromium).args(args).output().unwrap()
    };
    let dom = browser(&["--dump-dom".into()]);
    assert!(dom.status.success(), "{}", String::from_utf8_lossy(&dom.stderr));
    let dom = String::from_utf8_lossy(&dom.stdout).to_string();
    assert_eq!(
        dom.matches("class=\"board-row").count(),
        rows,
        "one board row per creator × platform"
    );
    assert_eq!(
        dom.matches("<circle class=\"point").count(),
        plotted,
        "one point per plotted pair"
    );
    assert!(
        dom.contains("class=\"move reduce") && dom.contains("class=\"move increase"),
        "the reallocation"
    );
    let shot = out.join("tier-board.png");
    let s = browser(&[
        format!("--screenshot={}", shot.display()),
        "--window-size=1280,1600".into(),
    ]);
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a screenshot next to the page"
    );
}
