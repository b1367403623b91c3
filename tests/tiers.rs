//! The decision layer: one scenario with every rule of the response protocol
//! at and around its boundary, loaded into the lake, BigQuery (bqemulator)
//! and Snowflake (fakesnow); `v_creator_tier` must give the same tier,
//! reason and gaps on all three, and the ones the protocol says.
#![allow(clippy::unwrap_used)]

mod common;
use common::scenario::{scenario, write_run, BENCHMARKS};
use common::targets::{Kind, Target};
use common::*;

use std::collections::BTreeMap;
use std::path::Path;

/// `v_creator_tier` as comparable rows: creator/platform → (tier, reason, CTR gap, CPC gap, hours, flag).
type Tiers = BTreeMap<(String, String), (Option<String>, String, Option<f64>, Option<f64>, Option<i64>, bool)>;

async fn tiers(t: &Target) -> Tiers {
    let v = t
        .query("SELECT creator_id, platform, tier, tier_reason, ctr_gap_pct, cpc_gap_pct, hours_active, compliance_flag FROM v_creator_tier")
        .await;
    let num = |v: &serde_json::Value| match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.parse::<f64>().unwrap()),
        v => v.as_f64(),
    };
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().map(str::to_string);
            let flag = match &r["compliance_flag"] {
                serde_json::Value::Bool(b) => *b,
                serde_json::Value::String(s) => s == "true",
                other => panic!("{:?}: compliance_flag {other}", t.kind),
            };
            (
                (s("creator_id").unwrap(), s("platform").unwrap()),
                (
                    s("tier"),
                    s("tier_reason").unwrap_or_default(),
                    num(&r["ctr_gap_pct"]),
                    num(&r["cpc_gap_pct"]),
                    num(&r["hours_active"]).map(|h| h as i64),
                    flag,
                ),
            )
        })
        .collect()
}

async fn prepare(t: &Target, manifest: &str, bench: &Path) {
    let o = t.load(manifest, &[]).await;
    assert!(o.status.success(), "{:?} load: {}", t.kind, stderr(&o));
    let o = t
        .crest(&["benchmarks", "load", bench.to_str().unwrap(), "--target", &t.spec])
        .await;
    assert!(o.status.success(), "{:?} benchmarks: {}", t.kind, stderr(&o));
    let o = t.crest(&["views", "apply", "--target", &t.spec]).await;
    assert!(o.status.success(), "{:?} views: {}", t.kind, stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_and_boundary_gives_the_same_tier_on_the_lake_bigquery_and_snowflake() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let manifest = write_run(&out, &scenario());
    let bench = dir.path().join("benchmarks.csv");
    std::fs::write(&bench, BENCHMARKS).unwrap();
    let lake = Target::lake(&dir.path().join("lake"));
    prepare(&lake, &manifest, &bench).await;
    let got = tiers(&lake).await;
    let tier = |c: &str, p: &str| got[&(c.to_string(), p.to_string())].clone();
    let expect = [
        (
            "gap_minus_25",
            "tiktok",
            Some("red"),
            "CTR 25 % below the 1.20 % TikTok nano benchmark",
        ),
        (
            "gap_minus_24",
            "tiktok",
            Some("yellow"),
            "CTR 24 % below the 1.20 % TikTok nano benchmark",
        ),
        (
            "gap_minus_10",
            "tiktok",
            Some("yellow"),
            "CTR 10 % below the 1.20 % TikTok nano benchmark",
        ),
        (
            "gap_minus_9",
            "tiktok",
            Some("green"),
            "CTR 9 % below the 1.20 % TikTok nano benchmark",
        ),
        (
            "gap_plus_30",
            "tiktok",
            Some("accelerate"),
            "CTR 30 % above the 1.20 % TikTok nano benchmark",
        ),
        (
            "gap_plus_29",
            "tiktok",
            Some("green"),
            "CTR 29 % above the 1.20 % TikTok nano benchmark",
        ),
        (
            "cpc_at_ceiling",
            "tiktok",
            Some("green"),
            "CTR 0 % above the 1.20 % TikTok nano benchmark",
        ),
        (
            "cpc_over_ceiling",
            "tiktok",
            Some("yellow"),
            "CPC 1.01 above the 1.00 ceiling",
        ),
        (
            "zero_clicks",
            "tiktok",
            Some("red"),
            "CTR 100 % below the 1.20 % TikTok nano benchmark; no attributed conversion after 240 h active",
        ),
        (
            "zero_impressions",
            "tiktok",
            None,
            "no impressions in the evaluation window",
        ),
        ("no_benchmark", "tiktok", None, "no benchmark for TikTok mid"),
        (
            "not_tracked",
            "tiktok",
            Some("green"),
            "CTR 0 % above the 1.20 % TikTok nano benchmark (conversions not tracked)",
        ),
        (
            "undisclosed_accelerate",
            "tiktok",
            Some("accelerate"),
            "CTR 30 % above the 1.20 % TikTok nano benchmark",
        ),
        (
            "recalibrated",
            "tiktok",
            Some("red"),
            "CTR 25 % below the 2.00 % TikTok micro benchmark",
        ),
        (
            "meta_plus_30",
            "meta",
            Some("accelerate"),
            "CTR 30 % above the 1.00 % Meta micro benchmark",
        ),
        (
            "no_conversion_71h",
            "tiktok",
            Some("green"),
            "CTR 0 % above the 1.20 % TikTok nano benchmark",
        ),
        (
            "no_conversion_73h",
            "tiktok",
            Some("red"),
            "no attributed conversion after 73 h active",
        ),
        (
            "organic_only",
            "youtube",
            None,
            "organic only: no paid delivery to judge",
        ),
    ];
    for (creator, platform, want_tier, want_reason) in expect {
        let (tier_got, reason, ..) = tier(creator, platform);
        assert_eq!(
            (tier_got.as_deref(), reason.as_str()),
            (want_tier, want_reason),
            "{creator} on {platform}"
        );
    }
    assert_eq!(got.len(), expect.len(), "one row per creator × platform");
    assert_eq!(tier("no_conversion_71h", "tiktok").4, Some(71));
    assert_eq!(tier("gap_minus_25", "tiktok").2, Some(-25.0));
    assert_eq!(tier("cpc_over_ceiling", "tiktok").3, Some(1.0));
    assert_eq!(tier("cpc_at_ceiling", "tiktok").3, Some(0.0));
    let flagged: Vec<&(String, String)> = got.iter().filter(|(_, v)| v.5).map(|(k, _)| k).collect();
    assert_eq!(flagged, [&("undisclosed_accelerate".to_string(), "tiktok".to_string())]);

    // The red creators' spend goes to the one accelerate creator without a flag.
    let moves = lake
        .query("SELECT creator_id, action, recent_daily_spend, pool, share, suggested_daily_change FROM v_budget_reallocation WHERE platform = 'tiktok' ORDER BY creator_id")
        .await;
    let moves: Vec<(String, String, f64)> = moves
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["creator_id"].as_str().unwrap().to_string(),
                m["action"].as_str().unwrap().to_string(),
                m["suggested_daily_change"].as_f64().unwrap(),
            )
        })
        .collect();
    let receivers: Vec<&(String, String, f64)> = moves.iter().filter(|m| m.1 == "increase").collect();
    assert_eq!(receivers.len(), 1, "{moves:?}");
    assert_eq!(receivers[0].0, "gap_plus_30");
    let given: f64 = moves.iter().filter(|m| m.1 == "reduce").map(|m| -m.2).sum();
    assert!((receivers[0].2 - given).abs() < 1e-6 && given > 0.0, "{moves:?}");
    assert!(moves.iter().all(|m| m.0 != "undisclosed_accelerate"));

    for t in [Target::bigquery(), Target::snowflake().await] {
        prepare(&t, &manifest, &bench).await;
        assert_eq!(tiers(&t).await, got, "{:?} agrees with the lake", t.kind);
        if t.kind == Kind::BigQuery {
            // The view is created with its documented column list (the
            // descriptions ride along; the emulator keeps only the names).
            let view = common::targets::bigquery_table(&t, "v_creator_tier").await;
            let names: Vec<&str> = view["schema"]["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["name"].as_str().unwrap())
                .collect();
            let documented: Vec<&str> = crest_core::views::VIEWS
                .iter()
                .find(|v| v.name == "v_creator_tier")
                .unwrap()
                .columns
                .iter()
                .map(|c| c.name)
                .collect();
            assert_eq!(names, documented);
        }
        assert_ne!(t.kind, Kind::Lake);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_view_has_the_columns_its_documentation_and_lookml_name() {
    let dir = tempfile::tempdir().unwrap();
    let lake_dir = dir.path().join("lake");
    let lake = Target::lake(&lake_dir);
    let manifest = write_run(&dir.path().join("out"), &scenario());
    let bench = dir.path().join("benchmarks.csv");
    std::fs::write(&bench, BENCHMARKS).unwrap();
    prepare(&lake, &manifest, &bench).await;
    let session = crest_lake::Lake::new(crest_core::storage::Location::parse(lake_dir.to_str().unwrap()).unwrap())
        .session(&crest_transforms::canonical::tables(), None)
        .await
        .unwrap();
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/views.md")).unwrap();
    for v in crest_core::views::VIEWS {
        let frame = session.table(v.name).await.unwrap();
        let actual: Vec<String> = frame.schema().fields().iter().map(|f| f.name().clone()).collect();
        let documented: Vec<String> = v.columns.iter().map(|c| c.name.to_string()).collect();
        assert_eq!(
            actual, documented,
            "{}: the view's columns and crest_core::views",
            v.name
        );
        assert!(
            docs.contains(&format!("## {}", v.name)),
            "docs/views.md has no section for {}",
            v.name
        );
        for c in v.columns {
            assert!(
                docs.contains(&format!("| `{}` |", c.name)),
                "docs/views.md does not describe {}.{}",
                v.name,
                c.name
            );
        }
    }
    let out = dir.path().join("lookml");
    let o = lake.crest(&["views", "lookml", "--out", out.to_str().unwrap()]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), crest_core::views::VIEWS.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_benchmarks_file_is_one_line_exit_2_and_replaces_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Target::lake(&dir.path().join("lake"));
    let good = dir.path().join("good.csv");
    std::fs::write(&good, BENCHMARKS).unwrap();
    let o = lake
        .crest(&["benchmarks", "load", good.to_str().unwrap(), "--target", &lake.spec])
        .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let before = lake.query("SELECT COUNT(*) AS n FROM benchmarks").await;
    for (body, says) in [
        (
            "platform,creator_tier,ctr_benchmark\ntiktok,nano,0.01\n",
            "no cpc_ceiling column",
        ),
        (
            "platform,creator_tier,ctr_benchmark,cpc_ceiling\ntiktok,nano,-0.01,1\n",
            "line 2, ctr_benchmark",
        ),
        (
            "platform,creator_tier,ctr_benchmark,cpc_ceiling\ntiktok,nano,0.01,x\n",
            "line 2, cpc_ceiling",
        ),
        (
            "platform,creator_tier,ctr_benchmark,cpc_ceiling\nvine,nano,0.01,1\n",
            "line 2, platform",
        ),
        (
            "platform,creator_tier,ctr_benchmark,cpc_ceiling\ntiktok,huge,0.01,1\n",
            "line 2, creator_tier",
        ),
        (
            "platform,creator_tier,ctr_benchmark,cpc_ceiling\ntiktok,nano,0.01,1\ntiktok,nano,0.02,1\n",
            "line 3, effective_from",
        ),
    ] {
        let bad = dir.path().join("bad.csv");
        std::fs::write(&bad, body).unwrap();
        let o = lake
            .crest(&["benchmarks", "load", bad.to_str().unwrap(), "--target", &lake.spec])
            .await;
        assert_eq!(o.status.code(), Some(2), "{body}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(e.contains(says) && e.trim().lines().count() == 1, "{body}: {e}");
    }
    assert_eq!(lake.query("SELECT COUNT(*) AS n FROM benchmarks").await, before);
    assert_eq!(before[0]["n"], 5);
}

/// A team that takes conversions from its own site: the benchmark row's
/// conversion_source picks `crest attribute`'s credits under one model for
/// the no-conversion rule, on every target; before any attribution the
/// site's conversions are not tracked (never read as zero), and switching
/// back to the platforms' conversions is one benchmarks load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_attribution_as_the_conversion_source_decides_the_no_conversion_rule_on_every_target() {
    use common::scenario::{conversion_source_scenario, write_attribution_run, SITE_CREDITS};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let perf = write_run(&out, &conversion_source_scenario());
    let site = write_attribution_run(&out, "2025-12-31", "2026-01-12", SITE_CREDITS);
    let bench = |source: &str| {
        let path = dir.path().join(format!("benchmarks-{source}.csv"));
        std::fs::write(
            &path,
            format!(
                "platform,creator_tier,ctr_benchmark,cpc_ceiling,conversion_source\nmeta,micro,0.010,1.20,{source}\n"
            ),
        )
        .unwrap();
        path
    };
    let (by_site, by_platform) = (bench("site_last"), bench("platform"));
    type Seen = BTreeMap<String, (Option<String>, String, Option<String>, Option<f64>)>;
    async fn seen(t: &Target) -> Seen {
        let v = t
            .query("SELECT creator_id, tier, tier_reason, conversion_source, site_conversions FROM v_creator_tier")
            .await;
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let s = |k: &str| r[k].as_str().map(str::to_string);
                let n = match &r["site_conversions"] {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(s) => Some(s.parse::<f64>().unwrap()),
                    v => v.as_f64(),
                };
                (
                    s("creator_id").unwrap(),
                    (
                        s("tier"),
                        s("tier_reason").unwrap_or_default(),
                        s("conversion_source"),
                        n,
                    ),
                )
            })
            .collect()
    }
    for t in Target::all(&dir.path().join("lake")).await {
        let k = t.kind;
        prepare(&t, &perf, &by_site).await;
        // No attribution loaded yet: not tracked, so the rule does not fire.
        let before = seen(&t).await;
        for c in ["site_closes", "site_silent", "site_late"] {
            let (tier, reason, source, n) = &before[c];
            assert_eq!(tier.as_deref(), Some("green"), "{k:?} {c}: {reason}");
            assert!(reason.ends_with("(conversions not tracked)"), "{k:?} {c}: {reason}");
            assert_eq!((source.as_deref(), *n), (Some("site_last"), None), "{k:?} {c}");
        }

        let o = t.load(&site, &[]).await;
        assert!(o.status.success(), "{k:?}: {}", stderr(&o));
        let o = t.crest(&["views", "apply", "--target", &t.spec]).await;
        assert!(o.status.success(), "{k:?}: {}", stderr(&o));
        let after = seen(&t).await;
        let closes = &after["site_closes"];
        assert_eq!(
            (closes.0.as_deref(), closes.3),
            (Some("green"), Some(2.0)),
            "{k:?}: {closes:?}"
        );
        for c in ["site_silent", "site_late"] {
            let (tier, reason, _, n) = &after[c];
            assert_eq!((tier.as_deref(), *n), (Some("red"), Some(0.0)), "{k:?} {c}: {reason}");
            assert!(
                reason.starts_with("no conversion credited on the site (site_last) after 240 h active"),
                "{k:?} {c}: {reason}"
            );
        }

        // Back to the platforms' conversions: the creator they credit with none is red.
        let o = t
            .crest(&["benchmarks", "load", by_platform.to_str().unwrap(), "--target", &t.spec])
            .await;
        assert!(o.status.success(), "{k:?}: {}", stderr(&o));
        let platform = seen(&t).await;
        let (tier, reason, source, n) = &platform["site_closes"];
        assert_eq!(
            (tier.as_deref(), source.as_deref(), *n),
            (Some("red"), Some("platform"), None),
            "{k:?}"
        );
        assert!(
            reason.starts_with("no attributed conversion after 240 h active"),
            "{k:?}: {reason}"
        );
        for c in ["site_silent", "site_late"] {
            assert_eq!(platform[c].0.as_deref(), Some("green"), "{k:?} {c}: {}", platform[c].1);
        }
    }

    // The site reports late: its attribution reaches 2026-01-02 while the
    // platforms reach 2026-01-10. Only the 48 hours the site has seen count,
    // so nobody is red for days the site has not reported yet.
    let lagging = dir.path().join("lagging");
    let perf = write_run(&lagging, &conversion_source_scenario());
    let site = write_attribution_run(
        &lagging,
        "2026-01-01",
        "2026-01-02",
        &[("2026-01-02", "site_closes", "meta", "last", 1_000_000)],
    );
    for t in Target::all(&lagging.join("lake")).await {
        let k = t.kind;
        prepare(&t, &perf, &by_site).await;
        let o = t.load(&site, &[]).await;
        assert!(o.status.success(), "{k:?}: {}", stderr(&o));
        let o = t.crest(&["views", "apply", "--target", &t.spec]).await;
        assert!(o.status.success(), "{k:?}: {}", stderr(&o));
        let v = t
            .query("SELECT creator_id, conversion_hours_active, hours_active FROM v_creator_performance")
            .await;
        for r in v.as_array().unwrap() {
            assert_eq!(
                (int(&r["conversion_hours_active"]), int(&r["hours_active"])),
                (48, 240),
                "{k:?}: {r}"
            );
        }
        let lag = seen(&t).await;
        for c in ["site_closes", "site_silent", "site_late"] {
            assert_eq!(lag[c].0.as_deref(), Some("green"), "{k:?} {c}: {}", lag[c].1);
        }
        assert_eq!(
            (lag["site_closes"].3, lag["site_silent"].3),
            (Some(1.0), Some(0.0)),
            "{k:?}"
        );
    }
}
