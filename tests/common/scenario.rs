//! The decision layer's test scenario: every rule of the response protocol
//! at and around its boundary, written as a transform run (canonical files
//! and manifest) that any target can load.

use super::day;
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
pub struct Row {
    pub date: NaiveDate,
    pub hour: Option<i32>,
    pub platform: &'static str,
    pub channel: &'static str,
    pub creator: &'static str,
    pub tier: Option<&'static str>,
    pub disclosure: &'static str,
    pub campaign: &'static str,
    pub impressions: Option<i64>,
    pub clicks: Option<i64>,
    /// Cents.
    pub spend_cents: Option<i64>,
    pub conversions: Option<i64>,
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

pub const FIRST: &str = "2026-01-01";
pub const LAST: &str = "2026-01-10";

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
pub fn scenario() -> Vec<Row> {
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

pub const BENCHMARKS: &str = "platform,creator_tier,ctr_benchmark,cpc_ceiling,effective_from\n\
tiktok,nano,0.012,1.00,\n\
tiktok,nano,0.5,1.00,2026-02-01\n\
tiktok,micro,0.010,1.00,2025-12-01\n\
tiktok,micro,0.020,1.00,2026-01-10\n\
meta,micro,0.010,1.20,\n";

/// Writes the scenario as a transform run (canonical files and manifest).
pub fn write_run(out: &Path, rows: &[Row]) -> String {
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
        files.push(write_file(
            out,
            "creator_performance",
            &date.to_string(),
            run_id,
            &batch,
        ));
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

/// One date's rows of a canonical table as a run writes them; its manifest entry.
fn write_file(out: &Path, table: &str, date: &str, run_id: &str, batch: &RecordBatch) -> serde_json::Value {
    let rel = format!("canonical/{table}/date={date}/{run_id}-0.parquet");
    let path = out.join(&rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
    std::fs::write(&path, &buf).unwrap();
    serde_json::json!({"path": rel, "date": date, "rows": batch.num_rows(), "bytes": buf.len(), "sha256": hex::encode(Sha256::digest(&buf))})
}

/// One site conversion credit: (date, creator, platform, model, conversions in millionths).
pub type Credit = (&'static str, &'static str, &'static str, &'static str, i128);

/// Writes credits as a `crest attribute` run (creator_attribution files and
/// manifest) over `start..=end`.
pub fn write_attribution_run(out: &Path, start: &str, end: &str, credits: &[Credit]) -> String {
    let schema = crest_transforms::canonical::creator_attribution_schema();
    let run_id = "20260113T000000Z-a77b0c11";
    assert!(
        !out.join(format!("_runs/{run_id}.json")).exists(),
        "one attribution run per folder"
    );
    let mut by_date: BTreeMap<&str, Vec<&Credit>> = BTreeMap::new();
    for c in credits {
        by_date.entry(c.0).or_default().push(c);
    }
    let mut files = Vec::new();
    for (date, rows) in &by_date {
        let n = rows.len();
        let s = |f: &dyn Fn(&Credit) -> Option<String>| -> ArrayRef {
            Arc::new(rows.iter().map(|r| f(r)).collect::<StringArray>())
        };
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|field| -> ArrayRef {
                match field.name().as_str() {
                    "date" => Arc::new(Date32Array::from(vec![Date32Type::from_naive_date(day(date)); n])),
                    "property_id" => s(&|_| Some("123456".into())),
                    "creator_id" => s(&|r| Some(r.1.into())),
                    "platform" => s(&|r| Some(r.2.into())),
                    "model" => s(&|r| Some(r.3.into())),
                    "conversions" => Arc::new(
                        rows.iter()
                            .map(|r| Some(r.4))
                            .collect::<Decimal128Array>()
                            .with_precision_and_scale(38, 6)
                            .unwrap(),
                    ),
                    "touchpoints" | "assisted_conversions" => Arc::new(Int64Array::from(vec![1; n])),
                    "lookback_days" => Arc::new(Int32Array::from(vec![30; n])),
                    "run_id" => s(&|_| Some(run_id.into())),
                    _ => new_null_array(field.data_type(), n),
                }
            })
            .collect();
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        files.push(write_file(out, "creator_attribution", date, run_id, &batch));
    }
    let manifest = serde_json::json!({
        "run_id": run_id, "stage": "attribute", "status": "succeeded",
        "inputs": {"range": {"start": start, "end": end}},
        "tables": ["creator_attribution"],
        "files": files,
        "finished_at": "2026-01-13T00:00:00Z",
    });
    std::fs::create_dir_all(out.join("_runs")).unwrap();
    let path = out.join(format!("_runs/{run_id}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    path.to_string_lossy().into_owned()
}

/// Three Meta micro creators, green on CTR (+20 %), ten days active: one the
/// platforms credit with no conversion that the site credits (last click),
/// one the platforms credit that the site never does, and one the site
/// credits only after the platform's as-of date.
pub fn conversion_source_scenario() -> Vec<Row> {
    let mut rows = Vec::new();
    ten_days(&mut rows, "site_closes", "meta", "micro", |r| r.conversions = Some(0));
    ten_days(&mut rows, "site_silent", "meta", "micro", |_| {});
    ten_days(&mut rows, "site_late", "meta", "micro", |_| {});
    rows
}

/// The site's credits for [`conversion_source_scenario`].
pub const SITE_CREDITS: &[Credit] = &[
    ("2026-01-04", "site_closes", "meta", "last", 1_000_000),
    ("2026-01-09", "site_closes", "meta", "last", 1_000_000),
    ("2026-01-09", "site_closes", "meta", "linear", 500_000),
    // A linear share only: nothing under last click; and a last click the
    // day before the creator's first day: another flight, not this one's.
    ("2026-01-05", "site_silent", "meta", "linear", 250_000),
    ("2025-12-31", "site_silent", "meta", "last", 1_000_000),
    // After 2026-01-10, the platform's latest date: outside the window.
    ("2026-01-12", "site_late", "meta", "last", 1_000_000),
];
