//! The decision layer: one scenario with every rule of the response protocol
//! at and around its boundary, loaded into the lake, BigQuery (bqemulator)
//! and Snowflake (fakesnow); `v_creator_tier` must give the same tier,
//! reason and gaps on all three, and the ones the protocol says.
#![allow(clippy::unwrap_used)]

mod common;
use common::targets::{Kind, Target};
use common::*;

use arrow::array::{
    new_null_array, ArrayRef, Date32Array, Decimal128Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::Date32Type;
use chrono::NaiveDate;
use parquet::arrow::ArrowWriter;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// One canonical row of the scenario (everything else null or constant).
#[derive(Clone)]
struct Row {
    date: NaiveDate,
    hour: Option<i32>,
    platform: &'static str,
    channel: &'static str,
    creator: &'static str,
    tier: Option<&'static str>,
    disclosure: &'static str,
    campaign: &'static str,
    impressions: Option<i64>,
    clicks: Option<i64>,
    /// Cents.
    spend_cents: Option<i64>,
    conversions: Option<i64>,
}

fn paid(creator: &'static str, platform: &'static str, tier: &'static str, date: NaiveDate) -> Row {
    Row {
        date,
        hour: None,
        platform,
        channel: "paid",
        creator,
        tier: Some(tier),
        disclosure: "disclosed",
        campaign: "launch",
        impressions: Some(10_000),
        clicks: Some(120),
        spend_cents: Some(6_000),
        conversions: Some(5),
    }
}

const FIRST: &str = "2026-01-01";
const LAST: &str = "2026-01-10";

/// Ten days of one creator's rows, each changed by `f`.
fn ten_days(
    rows: &mut Vec<Row>,
    creator: &'static str,
    platform: &'static str,
    tier: &'static str,
    f: impl Fn(&mut Row),
) {
    for d in day(FIRST).iter_days().take_while(|d| *d <= day(LAST)) {
        let mut r = paid(creator, platform, tier, d);
        f(&mut r);
        rows.push(r);
    }
}

/// The scenario. TikTok nano's benchmark is 1.20 % with a 1.00 ceiling, so on
/// 10,000 impressions a day 90 clicks is exactly −25 %, 108 exactly −10 %
/// and 156 exactly +30 %.
fn scenario() -> Vec<Row> {
    let mut rows = Vec::new();
    ten_days(&mut rows, "gap_minus_25", "tiktok", "nano", |r| r.clicks = Some(90));
    ten_days(&mut rows, "gap_minus_24", "tiktok", "nano", |r| r.clicks = Some(91));
    ten_days(&mut rows, "gap_minus_10", "tiktok", "nano", |r| r.clicks = Some(108));
    ten_days(&mut rows, "gap_minus_9", "tiktok", "nano", |r| r.clicks = Some(109));
    ten_days(&mut rows, "gap_plus_30", "tiktok", "nano", |r| r.clicks = Some(156));
    ten_days(&mut rows, "gap_plus_29", "tiktok", "nano", |r| r.clicks = Some(155));
    ten_days(&mut rows, "cpc_at_ceiling", "tiktok", "nano", |r| {
        r.spend_cents = Some(12_000)
    });
    ten_days(&mut rows, "cpc_over_ceiling", "tiktok", "nano", |r| {
        r.spend_cents = Some(12_120)
    });
    ten_days(&mut rows, "zero_clicks", "tiktok", "nano", |r| {
        r.clicks = Some(0);
        r.spend_cents = Some(0);
        r.conversions = Some(0);
    });
    ten_days(&mut rows, "zero_impressions", "tiktok", "nano", |r| {
        r.impressions = Some(0);
        r.clicks = Some(0);
        r.spend_cents = Some(0);
    });
    ten_days(&mut rows, "no_benchmark", "tiktok", "mid", |_| {});
    ten_days(&mut rows, "not_tracked", "tiktok", "nano", |r| r.conversions = None);
    ten_days(&mut rows, "undisclosed_accelerate", "tiktok", "nano", |r| {
        r.clicks = Some(156);
        r.disclosure = "pending";
    });
    // Recalibrated on the last day: 1.5 % was +50 % against 1.00 %, and is
    // −25 % against the 2.00 % in force from 2026-01-10.
    ten_days(&mut rows, "recalibrated", "tiktok", "micro", |r| r.clicks = Some(150));
    ten_days(&mut rows, "meta_plus_30", "meta", "micro", |r| r.clicks = Some(130));
    // No conversion, first impressions 71 h and 73 h before the end of the
    // last hour with data (2026-01-10 24:00): hourly rows.
    for (creator, date, hour) in [
        ("no_conversion_71h", "2026-01-08", 1),
        ("no_conversion_73h", "2026-01-07", 23),
    ] {
        let mut r = paid(creator, "tiktok", "nano", day(date));
        r.hour = Some(hour);
        r.conversions = Some(0);
        rows.push(r);
    }
    // Organic only.
    let mut r = paid("organic_only", "youtube", "nano", day(LAST));
    (r.channel, r.impressions, r.clicks, r.spend_cents, r.conversions) = ("organic", None, None, None, None);
    rows.push(r);
    rows
}

const BENCHMARKS: &str = "platform,creator_tier,ctr_benchmark,cpc_ceiling,effective_from\n\
tiktok,nano,0.012,1.00,\n\
tiktok,nano,0.5,1.00,2026-02-01\n\
tiktok,micro,0.010,1.00,2025-12-01\n\
tiktok,micro,0.020,1.00,2026-01-10\n\
meta,micro,0.010,1.20,\n";

/// Writes the scenario as a transform run (canonical files and manifest).
fn write_run(out: &Path, rows: &[Row]) -> String {
    let schema = crest_transforms::canonical::schema();
    let run_id = "20260111T000000Z-5ce7a210";
    let mut by_date: BTreeMap<NaiveDate, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        by_date.entry(r.date).or_default().push(r);
    }
    let mut files = Vec::new();
    let mut pairs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (date, rows) in &by_date {
        let n = rows.len();
        let s = |f: &dyn Fn(&Row) -> Option<String>| -> ArrayRef {
            Arc::new(rows.iter().map(|r| f(r)).collect::<StringArray>())
        };
        let i = |f: &dyn Fn(&Row) -> Option<i64>| -> ArrayRef {
            Arc::new(rows.iter().map(|r| f(r)).collect::<Int64Array>())
        };
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|field| -> ArrayRef {
                match field.name().as_str() {
                    "date" => Arc::new(Date32Array::from(vec![Date32Type::from_naive_date(*date); n])),
                    "hour" => Arc::new(rows.iter().map(|r| r.hour).collect::<Int32Array>()),
                    "platform" => s(&|r| Some(r.platform.into())),
                    "channel" => s(&|r| Some(r.channel.into())),
                    "account_id" => s(&|r| Some(format!("acct_{}", r.platform))),
                    "campaign_id" | "campaign_name" => s(&|r| Some(r.campaign.into())),
                    "ad_id" | "content_id" => s(&|r| Some(format!("ad_{}_{}", r.creator, r.hour.unwrap_or(-1)))),
                    "creator_id" | "creator_handle" => s(&|r| Some(r.creator.into())),
                    "creator_tier" => s(&|r| r.tier.map(str::to_string)),
                    "disclosure_status" => s(&|r| Some(r.disclosure.into())),
                    "currency" => s(&|_| Some("USD".into())),
                    "impressions" => i(&|r| r.impressions),
                    "clicks" => i(&|r| r.clicks),
                    "conversions" => Arc::new(
                        rows.iter()
                            .map(|r| r.conversions.map(|c| c as i128 * 1_000_000))
                            .collect::<Decimal128Array>()
                            .with_precision_and_scale(38, 6)
                            .unwrap(),
                    ),
                    "spend" | "spend_reporting" => Arc::new(
                        rows.iter()
                            .map(|r| r.spend_cents.map(|c| c as i128 * 10_000))
                            .collect::<Decimal128Array>()
                            .with_precision_and_scale(38, 6)
                            .unwrap(),
                    ),
                    "attribution_basis" => s(&|_| Some("native".into())),
                    "extracted_at" => {
                        Arc::new(TimestampMicrosecondArray::from(vec![1_768_089_600_000_000; n]).with_timezone("UTC"))
                    }
                    "run_id" => s(&|_| Some(run_id.into())),
                    "schema_version" => Arc::new(Int32Array::from(vec![1; n])),
                    _ => new_null_array(field.data_type(), n),
                }
            })
            .collect();
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let rel = format!("canonical/creator_performance/date={date}/{run_id}-0.parquet");
        let path = out.join(&rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut buf = Vec::new();
        let mut w = ArrowWriter::try_new(&mut buf, schema.clone(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        std::fs::write(&path, &buf).unwrap();
        files.push(serde_json::json!({"path": rel, "date": date, "rows": n, "bytes": buf.len(), "sha256": hex::encode(Sha256::digest(&buf))}));
        let mut p: Vec<String> = rows
            .iter()
            .map(|r| format!("{}/acct_{}", r.platform, r.platform))
            .collect();
        p.sort();
        p.dedup();
        pairs.insert(date.to_string(), p);
    }
    let manifest = serde_json::json!({
        "run_id": run_id, "stage": "transform", "status": "succeeded",
        "inputs": {"range": {"start": FIRST, "end": LAST}},
        "files": files, "pairs": pairs,
        "finished_at": "2026-01-11T00:00:00Z",
    });
    std::fs::create_dir_all(out.join("_runs")).unwrap();
    let path = out.join(format!("_runs/{run_id}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    path.to_string_lossy().into_owned()
}

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
        assert_ne!(t.kind, Kind::Lake);
    }
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
