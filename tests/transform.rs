//! `crest transform` on raw TikTok data extracted from the sandbox over HTTP,
//! checked against the sandbox's truth.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Date32Type, Decimal128Type, Int32Type, Int64Type, TimestampMicrosecondType};
use crest_core::cli::Progress;
use crest_core::extract::{run_extract, ExtractPlan};
use crest_core::http::{ApiClient, RetryPolicy};
use crest_core::storage::Location;
use crest_core::window::DateRange;
use crest_core::Secret;
use crest_sandbox::Sandbox;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiktok_rows_become_canonical_with_exact_totals_creators_windows_and_fx() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lake");
    extract(&sb, &out, "2026-01-01", "2026-01-31").await;
    let (roster, fx) = write_files(dir.path());
    let o = crest(&[
        "transform",
        "--input",
        out.to_str().unwrap(),
        "--start",
        "2026-01-01",
        "--end",
        "2026-01-31",
        "--roster",
        roster.to_str().unwrap(),
        "--fx",
        fx.to_str().unwrap(),
        "--reporting-currency",
        "usd",
    ])
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = String::from_utf8_lossy(&o.stdout);
    assert!(
        summary.contains("reconciled") && summary.contains("unresolved creator"),
        "{summary}"
    );

    let batches = read_table(&out.join("canonical/creator_performance"));
    let world = sb.world();
    let mut seen: BTreeMap<String, (u64, i64, i64, i128, i128)> = BTreeMap::new();
    let ads: HashMap<String, &crest_sandbox::world::Ad> = world.ads.iter().map(|a| (a.ad_id.to_string(), a)).collect();
    let (mut unresolved, mut native, mut unnormalized, mut with_conversions) = (0, 0, 0, 0);
    for b in &batches {
        let s = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>().clone();
        let (account, ad_id, creator, tier, basis, currency) = (
            s("account_id"),
            s("ad_id"),
            s("creator_id"),
            s("creator_tier"),
            s("attribution_basis"),
            s("currency"),
        );
        let i64c = |n: &str| b.column_by_name(n).unwrap().as_primitive::<Int64Type>().clone();
        let dec = |n: &str| b.column_by_name(n).unwrap().as_primitive::<Decimal128Type>().clone();
        let (imps, clicks, spend, conv, reporting) = (
            i64c("impressions"),
            i64c("clicks"),
            dec("spend"),
            dec("conversions"),
            dec("spend_reporting"),
        );
        let windows = (
            b.column_by_name("click_window_days")
                .unwrap()
                .as_primitive::<Int32Type>()
                .clone(),
            b.column_by_name("view_window_days")
                .unwrap()
                .as_primitive::<Int32Type>()
                .clone(),
        );
        let date = b.column_by_name("date").unwrap().as_primitive::<Date32Type>().clone();
        assert!(
            b.column_by_name("extracted_at")
                .unwrap()
                .as_primitive::<TimestampMicrosecondType>()
                .null_count()
                == 0
        );
        for i in 0..b.num_rows() {
            let e = seen.entry(account.value(i).to_string()).or_default();
            e.0 += 1;
            e.1 += imps.value(i);
            e.2 += clicks.value(i);
            e.3 += spend.value(i);
            e.4 += if conv.is_valid(i) { conv.value(i) } else { 0 };
            // The creator is the one behind the ad, or none for the brand's own ads.
            let ad = ads[ad_id.value(i)];
            if ad.from_creator {
                let c = &world.creators[ad.creator];
                assert_eq!(creator.value(i), c.creator_id, "ad {}", ad.landing_page_url);
                assert_eq!(tier.value(i), c.tier, "tier from the roster or derived from followers");
            } else {
                assert!(creator.is_null(i), "brand ads stay unresolved");
                unresolved += 1;
            }
            let is_native = windows.0.value(i) == 7 && windows.1.value(i) == 1;
            assert_eq!(basis.value(i), if is_native { "native" } else { "unnormalized" });
            if is_native {
                native += 1
            } else {
                unnormalized += 1
            }
            if conv.is_valid(i) {
                with_conversions += 1;
            }
            // Reporting currency: USD as is; EUR at the day's rate, or null without one.
            let d = Date32Type::to_naive_date(date.value(i));
            match (currency.value(i), d.to_string().as_str()) {
                ("USD", _) => assert_eq!(reporting.value(i), spend.value(i)),
                ("EUR", "2026-01-02") => assert_eq!(reporting.value(i), spend.value(i) * 110 / 100),
                ("EUR", "2026-01-03") => assert_eq!(reporting.value(i), spend.value(i) * 1125 / 1000),
                ("EUR", _) => assert!(reporting.is_null(i)),
                (other, _) => panic!("unexpected currency {other}"),
            }
        }
    }
    assert!(unresolved > 0 && native > 0 && unnormalized > 0);
    for adv in &world.advertisers {
        let t = crest_sandbox::tiktok::truth(
            world,
            &adv.advertiser_id,
            day("2026-01-01"),
            day("2026-01-31"),
            "AUCTION_AD",
            false,
        );
        let s = seen[&adv.advertiser_id];
        assert_eq!(
            s,
            (
                t.rows,
                t.impressions as i64,
                t.clicks as i64,
                t.spend_cents as i128 * 10_000,
                t.conversions as i128 * 1_000_000
            )
        );
    }
    assert_eq!(
        rows(&read_table(&out.join("canonical/attribution_windows"))),
        with_conversions
    );
    assert!(summary.contains(&format!("{unresolved:>10}")), "{summary}");

    // A second run replaces the first: no row doubles.
    let o = crest(&[
        "transform",
        "--input",
        out.to_str().unwrap(),
        "--start",
        "2026-01-01",
        "--end",
        "2026-01-31",
    ])
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        rows(&read_table(&out.join("canonical/creator_performance"))),
        rows(&batches)
    );
}

/// Copies one raw file with edits, as another extraction of the same account and date.
fn write_edited_copy(
    src: &Path,
    dst: &Path,
    extracted_at_us: i64,
    schema_tag: &str,
    edit: impl Fn(&RecordBatch) -> RecordBatch,
) {
    use parquet::arrow::ArrowWriter;
    use parquet::file::metadata::KeyValue;
    use parquet::file::properties::WriterProperties;
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(src).unwrap()).unwrap();
    let kv = reader.metadata().file_metadata().key_value_metadata().unwrap().clone();
    let account = kv
        .iter()
        .find(|k| k.key == "crest.account_id")
        .unwrap()
        .value
        .clone()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.build().unwrap().map(|b| edit(&b.unwrap())).collect();
    let mut schema = batches[0].schema().as_ref().clone();
    schema.metadata.insert("crest.schema".into(), schema_tag.into());
    let schema = std::sync::Arc::new(schema);
    let stamp = chrono::DateTime::from_timestamp_micros(extracted_at_us)
        .unwrap()
        .to_rfc3339();
    let props = WriterProperties::builder()
        .set_key_value_metadata(Some(vec![
            KeyValue::new("crest.account_id".into(), account),
            KeyValue::new("crest.extracted_at".into(), stamp),
            KeyValue::new("crest.run_id".into(), "edited".to_string()),
        ]))
        .build();
    let mut w = ArrowWriter::try_new(std::fs::File::create(dst).unwrap(), schema.clone(), Some(props)).unwrap();
    for b in batches {
        let ts =
            arrow::array::TimestampMicrosecondArray::from(vec![extracted_at_us; b.num_rows()]).with_timezone("UTC");
        let mut cols = b.columns().to_vec();
        let idx = schema.index_of("extracted_at").unwrap();
        cols[idx] = std::sync::Arc::new(ts);
        w.write(&RecordBatch::try_new(schema.clone(), cols).unwrap()).unwrap();
    }
    w.close().unwrap();
    // A reader takes only raw files an extract manifest names: name it, as
    // the extraction that wrote it would have.
    let root = dst.ancestors().nth(5).unwrap();
    let rel = dst.strip_prefix(root).unwrap().to_string_lossy().into_owned();
    let mut parts = rel.split('/').skip(1);
    let (platform, report) = (parts.next().unwrap(), parts.next().unwrap());
    let name = dst.file_stem().unwrap().to_string_lossy().into_owned();
    std::fs::write(
        root.join(format!("_runs/by-hand-{name}.json")),
        serde_json::json!({"stage": "extract", "status": "succeeded", "platform": platform, "report": report, "files": [{"path": rel}]}).to_string(),
    )
    .unwrap();
}

fn replace_i64(b: &RecordBatch, name: &str, f: impl Fn(usize, Option<i64>) -> Option<i64>) -> RecordBatch {
    let idx = b.schema().index_of(name).unwrap();
    let old = b.column(idx).as_primitive::<Int64Type>();
    let new: arrow::array::Int64Array = (0..b.num_rows())
        .map(|i| f(i, old.is_valid(i).then(|| old.value(i))))
        .collect();
    let mut cols = b.columns().to_vec();
    cols[idx] = std::sync::Arc::new(new);
    RecordBatch::try_new(b.schema(), cols).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_quarantine_reason_is_applied_and_totals_still_reconcile() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lake");
    extract(&sb, &out, "2026-01-05", "2026-01-05").await;
    let partition = out.join("raw/tiktok/ad_daily/date=2026-01-05");
    let original = files_under(&partition).into_iter().next().unwrap();
    let n = rows(&[
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&original).unwrap())
            .unwrap()
            .build()
            .unwrap()
            .next()
            .unwrap()
            .unwrap(),
    ]);
    // A later extraction of the same account and day: its rows win, except three broken ones.
    let later = chrono::Utc::now().timestamp_micros() + 60_000_000;
    write_edited_copy(
        &original,
        &partition.join("edited-0.parquet"),
        later,
        "tiktok.report.v1",
        |b| {
            let b = replace_i64(b, "impressions", |i, v| if i == 0 { Some(-5) } else { v });
            let b = replace_i64(&b, "clicks", |i, v| if i == 1 { Some(1_000_000_000) } else { v });
            let idx = b.schema().index_of("stat_date").unwrap();
            let d = b.column(idx).as_primitive::<Date32Type>();
            let moved: arrow::array::Date32Array = (0..b.num_rows())
                .map(|i| Some(if i == 2 { d.value(i) + 400 } else { d.value(i) }))
                .collect();
            let mut cols = b.columns().to_vec();
            cols[idx] = std::sync::Arc::new(moved);
            RecordBatch::try_new(b.schema(), cols).unwrap()
        },
    );
    let o = crest(&[
        "transform",
        "--input",
        out.to_str().unwrap(),
        "--start",
        "2026-01-05",
        "--end",
        "2026-01-05",
    ])
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let q = read_table(&out.join("quarantine/tiktok"));
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for b in &q {
        let r = b.column_by_name("reason").unwrap().as_string::<i32>();
        for i in 0..b.num_rows() {
            *reasons.entry(r.value(i).to_string()).or_default() += 1;
        }
    }
    let expected: BTreeMap<String, usize> = [
        ("negative_metric", 1),
        ("clicks_above_impressions", 1),
        ("date_out_of_range", 1),
        ("duplicate_key", n - 3),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(reasons, expected);
    let canonical = read_table(&out.join("canonical/creator_performance"));
    let total_raw: usize = files_under(&out.join("raw"))
        .iter()
        .map(|f| {
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(f).unwrap())
                .unwrap()
                .metadata()
                .file_metadata()
                .num_rows() as usize
        })
        .sum();
    assert_eq!(rows(&canonical) + rows(&q), total_raw, "nothing dropped");
    let manifest = files_under(&out.join("_runs"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .find(|m| m.contains("\"stage\": \"transform\""))
        .unwrap();
    assert!(manifest.contains("\"reconciliation\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_one_clear_line_and_writes_nothing() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lake");
    extract(&sb, &out, "2026-01-05", "2026-01-06").await;
    let o_str = out.to_str().unwrap();
    let bad_roster = dir.path().join("bad.csv");
    std::fs::write(&bad_roster, "creator_id,handle,followers\ncr_1,maya,many\n").unwrap();
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["--roster", "/nonexistent/roster.csv"], 2, "does not exist"),
        (vec!["--roster", bad_roster.to_str().unwrap()], 2, "followers 'many'"),
        (vec!["--reporting-currency", "dollars"], 2, "ISO 4217"),
        (vec!["--standard-window", "week"], 2, "7d_click,1d_view"),
    ];
    for (extra, code, says) in cases {
        let mut args = vec![
            "transform",
            "--input",
            o_str,
            "--start",
            "2026-01-05",
            "--end",
            "2026-01-06",
        ];
        args.extend(extra);
        let o = crest(&args).await;
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o).trim().lines().filter(|l| l.starts_with("error:")).count(), 1);
    }
    let o = crest(&[
        "transform",
        "--input",
        o_str,
        "--start",
        "2025-03-01",
        "--end",
        "2025-03-02",
    ])
    .await;
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no raw data"), "{}", stderr(&o));

    // A raw file from a newer connector version.
    let partition = out.join("raw/tiktok/ad_daily/date=2026-01-06");
    let original = files_under(&partition).into_iter().next().unwrap();
    write_edited_copy(
        &original,
        &partition.join("future-0.parquet"),
        0,
        "tiktok.report.v9",
        |b| b.clone(),
    );
    let o = crest(&[
        "transform",
        "--input",
        o_str,
        "--start",
        "2026-01-05",
        "--end",
        "2026-01-06",
    ])
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("tiktok.report.v9"), "{}", stderr(&o));
    std::fs::remove_file(partition.join("future-0.parquet")).unwrap();

    // A raw file of the right version whose spend is text, not a decimal.
    write_edited_copy(
        &original,
        &partition.join("retyped-0.parquet"),
        0,
        "tiktok.report.v1",
        |b| {
            let idx = b.schema().index_of("spend").unwrap();
            let text: arrow::array::StringArray = (0..b.num_rows()).map(|_| Some("12.50")).collect();
            let mut fields: Vec<arrow::datatypes::Field> =
                b.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
            fields[idx] = arrow::datatypes::Field::new("spend", arrow::datatypes::DataType::Utf8, true);
            let mut cols = b.columns().to_vec();
            cols[idx] = std::sync::Arc::new(text);
            RecordBatch::try_new(std::sync::Arc::new(arrow::datatypes::Schema::new(fields)), cols).unwrap()
        },
    );
    let o = crest(&[
        "transform",
        "--input",
        o_str,
        "--start",
        "2026-01-06",
        "--end",
        "2026-01-06",
    ])
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("raw column spend is Utf8"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));

    assert!(
        !out.join("canonical").exists() || files_under(&out.join("canonical")).is_empty(),
        "no canonical output"
    );
    assert!(!out.join("quarantine").exists() || files_under(&out.join("quarantine")).is_empty());
}

/// Raw Meta data for every sandbox ad account, through the real connector over HTTP.
async fn extract_meta(sb: &Sandbox, out: &Path, start: &str, end: &str) {
    let windows: Vec<String> = ["1d_click", "7d_click", "28d_click", "1d_view"]
        .iter()
        .map(|w| w.to_string())
        .collect();
    let source = crest_meta::MetaSource::new(
        crest_meta::MetaConfig {
            base_url: url::Url::parse(&sb.base_url()).unwrap(),
            token: Secret::new(sb.meta_token()),
            api_version: crest_meta::DEFAULT_API_VERSION.into(),
            windows,
            conversion_action: crest_meta::DEFAULT_CONVERSION_ACTION.into(),
            by_platform: true,
            page_limit: 200,
            max_jobs: 2,
            poll_initial: std::time::Duration::from_millis(5),
            poll_max: std::time::Duration::from_millis(50),
            stall_after: std::time::Duration::from_secs(30),
        },
        ApiClient::new(RetryPolicy::default(), None).unwrap(),
    )
    .unwrap();
    let plan = ExtractPlan {
        wait_for_lease: std::time::Duration::ZERO,
        out: Location::parse(out.to_str().unwrap()).unwrap(),
        accounts: sb.meta().accounts.iter().map(|a| a.account_id.clone()).collect(),
        range: DateRange::new(day(start), day(end)).unwrap(),
        state: None,
        lookback_days: None,
        default_lookback_days: 28,
        options: serde_json::json!({}),
    };
    run_extract(&source, plan, &Progress::hidden()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_rows_keep_their_placement_link_clicks_and_the_standard_window() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lake");
    extract_meta(&sb, &out, "2026-01-01", "2026-01-20").await;
    let (roster, _) = write_files(dir.path());
    let o = crest(&[
        "transform",
        "--input",
        out.to_str().unwrap(),
        "--start",
        "2026-01-01",
        "--end",
        "2026-01-20",
        "--roster",
        roster.to_str().unwrap(),
    ])
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let batches = read_table(&out.join("canonical/creator_performance"));
    let world = sb.meta();
    let (mut rows, mut imps, mut clicks, mut conv, mut instagram) = (0u64, 0i64, 0i64, 0i128, 0u64);
    for b in &batches {
        let s = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>().clone();
        let (platform, placement, creator, basis, ad_id) = (
            s("platform"),
            s("placement"),
            s("creator_id"),
            s("attribution_basis"),
            s("ad_id"),
        );
        let c = b
            .column_by_name("conversions")
            .unwrap()
            .as_primitive::<Decimal128Type>()
            .clone();
        for i in 0..b.num_rows() {
            assert_eq!(platform.value(i), "meta");
            assert_eq!(basis.value(i), "native", "Meta serves the 7d_click and 1d_view windows");
            rows += 1;
            imps += b
                .column_by_name("impressions")
                .unwrap()
                .as_primitive::<Int64Type>()
                .value(i);
            clicks += b.column_by_name("clicks").unwrap().as_primitive::<Int64Type>().value(i);
            conv += if c.is_valid(i) { c.value(i) } else { 0 };
            instagram += u64::from(placement.value(i) == "instagram");
            let ad = world.ads.iter().find(|a| a.ad_id == ad_id.value(i)).unwrap();
            assert_eq!(
                creator.value(i),
                sb.world().creators[ad.creator].creator_id,
                "resolved from url_tags"
            );
        }
    }
    let mut want = (0u64, 0i64, 0i64, 0i128, 0u64);
    // Rows whose 1d_view key Meta left out (zero) beside a 7d_click figure.
    let mut view_absent = 0;
    for a in 0..world.accounts.len() {
        for (_, _, p, r) in world.rows(a, day("2026-01-01"), day("2026-01-20")) {
            view_absent += u64::from(r.purchases[1] > 0 && r.purchases[3] == 0);
            want.0 += 1;
            want.1 += r.impressions as i64;
            want.2 += r.inline_link_clicks as i64;
            if r.default_purchases() > 0 || r.purchases[2] > 0 {
                want.3 += (r.purchases[1] + r.purchases[3]) as i128 * 1_000_000;
            }
            want.4 += u64::from(crest_sandbox::meta::PLATFORMS[p] == "instagram");
        }
    }
    assert_eq!(
        (rows, imps, clicks, conv, instagram),
        want,
        "rows, impressions, link clicks, 7d_click + 1d_view, instagram rows"
    );
    assert!(want.4 > 0 && want.4 < want.0);
    assert!(view_absent > 0, "the fixture has absent (zero) view windows");
    let windows = read_table(&out.join("canonical/attribution_windows"));
    let labels: std::collections::BTreeSet<String> = windows
        .iter()
        .flat_map(|b| {
            let w = b.column_by_name("window").unwrap().as_string::<i32>().clone();
            (0..b.num_rows())
                .map(move |i| w.value(i).to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        labels,
        ["1d_click", "1d_view", "28d_click", "7d_click"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn youtube_organic_rows_are_the_creators_own_with_no_made_up_metrics() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lake");
    let yt = sb.youtube();
    // Four creators' channels and the brand's channel hosting several creators' videos.
    let mut channels: Vec<String> = yt.channels[..4].to_vec();
    channels.push(yt.brand_channel.clone());
    let policy = RetryPolicy::default();
    let tokens = std::sync::Arc::new(google_tokens(&sb, &policy));
    let base = url::Url::parse(&sb.base_url()).unwrap();
    let metrics = crest_youtube::METRICS.iter().map(|(m, _, _)| m.to_string()).collect();
    let config = crest_youtube::YouTubeConfig {
        analytics_base: base.clone(),
        data_base: base,
        metrics,
        page_size: 200,
    };
    let source = crest_youtube::YouTubeSource::new(config, ApiClient::new(policy, None).unwrap(), tokens).unwrap();
    extract_with(&source, &out, channels.clone(), "2026-01-01", "2026-01-31").await;
    let (roster, _) = write_files(dir.path());
    let o = crest(&[
        "transform",
        "--input",
        out.to_str().unwrap(),
        "--start",
        "2026-01-01",
        "--end",
        "2026-01-31",
        "--roster",
        roster.to_str().unwrap(),
    ])
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let batches = read_table(&out.join("canonical/creator_performance"));
    let (mut rows, mut views) = (0u64, 0i64);
    let mut brand_creators = std::collections::BTreeMap::<Option<String>, u64>::new();
    for b in &batches {
        let s = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>().clone();
        let (platform, channel, account, creator, video) = (
            s("platform"),
            s("channel"),
            s("account_id"),
            s("creator_id"),
            s("content_id"),
        );
        for i in 0..b.num_rows() {
            assert_eq!((platform.value(i), channel.value(i)), ("youtube", "organic"));
            let c = yt.channel_index(account.value(i)).unwrap();
            if account.value(i) == yt.brand_channel {
                // Each brand-channel video is its creator's, by the UTM in its description.
                let v = yt.videos.iter().find(|v| v.video_id == video.value(i)).unwrap();
                let by_link = sb
                    .world()
                    .creators
                    .iter()
                    .find(|c| v.description.ends_with(&format!("utm_content={}\n\n#ad", c.handle)));
                let got = creator.is_valid(i).then(|| creator.value(i).to_string());
                assert_eq!(got, by_link.map(|c| c.creator_id.clone()), "video {}", v.title);
                *brand_creators.entry(got).or_default() += 1;
            } else {
                assert_eq!(
                    creator.value(i),
                    sb.world().creators[c].creator_id,
                    "the channel's creator, whose link its videos carry"
                );
            }
            for none in ["impressions", "clicks", "spend", "conversions"] {
                assert!(
                    b.column_by_name(none).unwrap().is_null(i),
                    "{none} is null for organic video, never made up"
                );
            }
            rows += 1;
            views += b
                .column_by_name("video_views")
                .unwrap()
                .as_primitive::<Int64Type>()
                .value(i);
        }
    }
    assert_eq!(
        brand_creators.len(),
        4,
        "three creators and the studio video no creator's link names: {brand_creators:?}"
    );
    let truth = channels
        .iter()
        .flat_map(|c| yt.rows(yt.channel_index(c).unwrap(), day("2026-01-01"), day("2026-01-31")))
        .fold((0u64, 0i64), |t, (_, _, m)| (t.0 + 1, t.1 + m.views as i64));
    assert_eq!((rows, views), truth);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_ads_rows_recompute_the_seven_day_click_window_from_lag_buckets() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lake");
    let policy = RetryPolicy::default();
    let tokens = std::sync::Arc::new(google_tokens(&sb, &policy));
    let config = crest_youtube::ads::AdsConfig {
        base: url::Url::parse(&sb.base_url()).unwrap(),
        api_version: "v24".into(),
        developer_token: Secret::new(sb.developer_token()),
        login_customer_id: None,
    };
    let source = crest_youtube::ads::GoogleAdsSource::new(config, ApiClient::new(policy, None).unwrap(), tokens);
    let ads = sb.ads();
    let customers = ads.customers.iter().map(|c| c.id.clone()).collect();
    extract_with(&source, &out, customers, "2026-01-01", "2026-01-20").await;
    let (roster, fx) = write_files(dir.path());
    let o = crest(&[
        "transform",
        "--input",
        out.to_str().unwrap(),
        "--start",
        "2026-01-01",
        "--end",
        "2026-01-20",
        "--roster",
        roster.to_str().unwrap(),
        "--fx",
        fx.to_str().unwrap(),
    ])
    .await;
    assert!(o.status.success(), "{}", stderr(&o));

    let creator_of: HashMap<&str, Option<usize>> = ads.ads.iter().map(|a| (a.id.as_str(), a.creator)).collect();
    let mut got = (0u64, 0i64, 0i64, 0i128, 0i128, 0i128);
    let mut resolved = 0;
    for b in &read_table(&out.join("canonical/creator_performance")) {
        let s = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>().clone();
        let int = |n: &str| b.column_by_name(n).unwrap().as_primitive::<Int64Type>().clone();
        let dec = |n: &str| b.column_by_name(n).unwrap().as_primitive::<Decimal128Type>().clone();
        let i32s = |n: &str| b.column_by_name(n).unwrap().as_primitive::<Int32Type>().clone();
        let (platform, placement, channel, basis) =
            (s("platform"), s("placement"), s("channel"), s("attribution_basis"));
        let (ad, creator) = (s("ad_id"), s("creator_id"));
        let (imps, clicks, spend, conv, value) = (
            int("impressions"),
            int("clicks"),
            dec("spend"),
            dec("conversions"),
            dec("conversion_value"),
        );
        let (cw, vw) = (i32s("click_window_days"), i32s("view_window_days"));
        for i in 0..b.num_rows() {
            assert_eq!(
                (platform.value(i), placement.value(i), channel.value(i), basis.value(i)),
                ("youtube", "youtube", "paid", "recomputed")
            );
            assert_eq!(
                (cw.value(i), vw.value(i)),
                (7, 1),
                "7-day click from lag buckets, 1-day view from view-through conversions"
            );
            match creator_of[ad.value(i)] {
                Some(c) => {
                    assert_eq!(
                        creator.value(i),
                        sb.world().creators[c].creator_id,
                        "from the final URL's UTMs"
                    );
                    resolved += 1;
                }
                None => assert!(creator.is_null(i), "the brand's own ad stays unresolved"),
            }
            got.0 += 1;
            got.1 += imps.value(i);
            got.2 += clicks.value(i);
            got.3 += spend.value(i);
            got.4 += conv.value(i);
            got.5 += value.value(i);
        }
    }
    let mut truth = (0u64, 0i64, 0i64, 0i128, 0i128, 0i128);
    let (mut google_default, mut click_7d, mut views) = (0i128, 0i128, 0i128);
    for c in 0..ads.customers.len() {
        let t = ads.totals(c, day("2026-01-01"), day("2026-01-20"));
        truth.0 += t.rows;
        truth.1 += t.impressions as i64;
        truth.2 += t.clicks as i64;
        truth.3 += t.cost_micros as i128;
        truth.4 += t.conv_halves_7d as i128 * 500_000 + t.view_through as i128 * 1_000_000;
        truth.5 += t.value_cents_7d as i128 * 10_000;
        google_default += t.conv_halves as i128 * 500_000;
        click_7d += t.conv_halves_7d as i128 * 500_000;
        views += t.view_through as i128;
    }
    assert_eq!(
        got, truth,
        "rows, impressions, clicks, spend to the micro, 7d_click + 1d_view conversions, 7-day value"
    );
    // The click part is narrower than Google's 30 days; view-throughs are there.
    assert!(resolved > 0 && click_7d > 0 && click_7d < google_default && views > 0);
    // Google's own (30-day) figure stays beside it, in the windows table.
    let mut served = 0i128;
    for b in &read_table(&out.join("canonical/attribution_windows")) {
        let w = b.column_by_name("window").unwrap().as_string::<i32>();
        let c = b
            .column_by_name("conversions")
            .unwrap()
            .as_primitive::<Decimal128Type>();
        for i in 0..b.num_rows() {
            if w.value(i) == "google_default" {
                served += c.value(i);
            }
        }
    }
    assert_eq!(served, google_default);
}

/// (platform, account) → canonical rows, over every file a reader sees.
fn rows_per_pair(out: &Path) -> BTreeMap<(String, String), usize> {
    let mut n = BTreeMap::new();
    for b in read_table(&out.join("canonical/creator_performance")) {
        let (p, a) = (
            b.column_by_name("platform").unwrap().as_string::<i32>().clone(),
            b.column_by_name("account_id").unwrap().as_string::<i32>().clone(),
        );
        for i in 0..b.num_rows() {
            *n.entry((p.value(i).to_string(), a.value(i).to_string())).or_default() += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transform_replaces_only_what_it_has_input_for_and_reads_only_committed_raw_files() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    // TikTok and Meta extracted into one folder, transformed into one output.
    let raw_all = dir.path().join("raw-all");
    extract(&sb, &raw_all, "2026-01-05", "2026-01-06").await;
    extract_meta(&sb, &raw_all, "2026-01-05", "2026-01-06").await;
    let lake = dir.path().join("canonical");
    let transform = |input: &Path| {
        let (input, lake) = (input.to_str().unwrap().to_string(), lake.to_str().unwrap().to_string());
        async move {
            crest(&[
                "transform",
                "--input",
                &input,
                "--out",
                &lake,
                "--start",
                "2026-01-05",
                "--end",
                "2026-01-06",
            ])
            .await
        }
    };
    let o = transform(&raw_all).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let before = rows_per_pair(&lake);
    assert!(before.keys().any(|(p, _)| p == "meta") && before.keys().any(|(p, _)| p == "tiktok"));

    // A second folder with TikTok only (one Airflow task per platform), into
    // the same output: Meta's rows stay, TikTok's are replaced, none doubled.
    let raw_tiktok = dir.path().join("raw-tiktok");
    extract(&sb, &raw_tiktok, "2026-01-05", "2026-01-06").await;
    let o = transform(&raw_tiktok).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(rows_per_pair(&lake), before, "every pair's rows exactly once");

    // An extract's file no manifest names (in progress, or a killed run's
    // leftover) is not read; a crashed transform's leftover is removed.
    let partition = raw_tiktok.join("raw/tiktok/ad_daily/date=2026-01-05");
    let original = files_under(&partition).into_iter().next().unwrap();
    std::fs::copy(&original, partition.join("20990101T000000Z-0badc0de-0.parquet")).unwrap();
    let crashed = lake.join("canonical/creator_performance/date=2026-01-05/20990101T000000Z-deadbeef-0.parquet");
    let current = files_under(&lake.join("canonical/creator_performance/date=2026-01-05"));
    std::fs::copy(&current[0], &crashed).unwrap();
    let o = transform(&raw_tiktok).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!crashed.exists(), "a crashed transform's leftover is removed");
    assert_eq!(rows_per_pair(&lake), before, "the uncommitted raw file was not read");
    let manifests: Vec<serde_json::Value> = files_under(&lake.join("_runs"))
        .into_iter()
        .map(|f| serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap())
        .collect();
    assert!(
        manifests
            .iter()
            .any(|m| m["summary"]["uncommitted_raw_files"] == 1 && m["summary"]["carried_forward"].as_u64() > Some(0)),
        "the last transform says what it skipped and what it carried forward"
    );
}
