//! Site attribution as a brand runs it: the GA4 export (files a team
//! exported, or the BigQuery export read through the API on bqemulator) →
//! `crest-ga4 extract` → `crest attribute` → `crest load` → the
//! `v_attribution_compare` view, with every credit checked against the
//! sandbox's hand-computed truth; bad exports refused in one line.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use arrow::datatypes::{DataType, Field, Fields, Schema};
use crest_sandbox::ga4::{self, Ga4Config, Ga4Export};
use crest_sandbox::world::{World, WorldConfig};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

const PROPERTY: &str = "271828182";

fn world() -> World {
    World::new(WorldConfig {
        first_day: day("2026-03-01"),
        days: 24,
        creators: 30,
        ..WorldConfig::default()
    })
}

fn export(world: &World) -> Ga4Export {
    ga4::export(
        world,
        &Ga4Config {
            property_id: PROPERTY.into(),
            users: 320,
            lookback_days: 7,
            half_life_days: 7.0,
        },
    )
}

/// The first and last conversion dates of the export.
fn conversion_range(world: &World) -> (String, String) {
    let first = world.config.first_day + chrono::Days::new(10);
    let last = world.config.first_day + chrono::Days::new(world.config.days as u64 - 1);
    (first.to_string(), last.to_string())
}

/// The export's nested schema as Arrow, for the Parquet files.
fn arrow_schema() -> Arc<Schema> {
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    let value = Fields::from(vec![
        s("string_value"),
        Field::new("int_value", DataType::Int64, true),
        Field::new("float_value", DataType::Float64, true),
        Field::new("double_value", DataType::Float64, true),
    ]);
    let param = Fields::from(vec![s("key"), Field::new("value", DataType::Struct(value), true)]);
    Arc::new(Schema::new(vec![
        s("event_date"),
        Field::new("event_timestamp", DataType::Int64, true),
        s("event_name"),
        Field::new(
            "event_params",
            DataType::List(Arc::new(Field::new("item", DataType::Struct(param), true))),
            true,
        ),
        s("user_id"),
        s("user_pseudo_id"),
        Field::new(
            "collected_traffic_source",
            DataType::Struct(Fields::from(vec![
                s("manual_source"),
                s("manual_medium"),
                s("manual_campaign_name"),
                s("manual_content"),
                s("manual_term"),
            ])),
            true,
        ),
        Field::new(
            "ecommerce",
            DataType::Struct(Fields::from(vec![
                s("transaction_id"),
                Field::new("purchase_revenue", DataType::Float64, true),
            ])),
            true,
        ),
    ]))
}

/// The export as a team would hand it over: odd days as newline-delimited
/// JSON, even days as Parquet, one file per day named after it.
fn write_export(e: &Ga4Export, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (i, day) in e.days.keys().enumerate() {
        let name = format!("events_{}", day.format("%Y%m%d"));
        let json = e.ndjson(*day);
        if i % 2 == 1 {
            std::fs::write(dir.join(format!("{name}.json")), json).unwrap();
            continue;
        }
        let schema = arrow_schema();
        let mut reader = arrow::json::ReaderBuilder::new(schema.clone())
            .build(std::io::Cursor::new(json.into_bytes()))
            .unwrap();
        let file = std::fs::File::create(dir.join(format!("{name}.parquet"))).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
        for b in reader.by_ref() {
            w.write(&b.unwrap()).unwrap();
        }
        w.close().unwrap();
    }
}

/// What `crest attribute` wrote, summed per (date, creator, platform, model).
/// (date, creator, platform, model) → (conversions, revenue)
type Credits = BTreeMap<(String, Option<String>, Option<String>, String), (Decimal, Decimal)>;

fn credited(out: &Path) -> Credits {
    let mut sums = BTreeMap::new();
    for b in read_table(&out.join("canonical/creator_attribution")) {
        let text = |c: &str| {
            b.column_by_name(c)
                .unwrap()
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap()
                .clone()
        };
        let dec = |c: &str| {
            b.column_by_name(c)
                .unwrap()
                .as_any()
                .downcast_ref::<arrow::array::Decimal128Array>()
                .unwrap()
                .clone()
        };
        let date = b
            .column_by_name("date")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::Date32Array>()
            .unwrap()
            .clone();
        let (creator, platform, model) = (text("creator_id"), text("platform"), text("model"));
        let (conv, rev) = (dec("conversions"), dec("revenue"));
        use arrow::array::Array;
        for i in 0..b.num_rows() {
            let key = (
                date.value_as_date(i).unwrap().to_string(),
                creator.is_valid(i).then(|| creator.value(i).to_string()),
                platform.is_valid(i).then(|| platform.value(i).to_string()),
                model.value(i).to_string(),
            );
            let e: &mut (Decimal, Decimal) = sums.entry(key).or_default();
            e.0 += Decimal::from_i128_with_scale(conv.value(i), 6);
            e.1 += Decimal::from_i128_with_scale(rev.value(i), 6);
        }
    }
    sums
}

/// Every credit equals the truth: exactly under first, last, linear and
/// position; time decay to its documented rounding.
fn assert_matches_truth(out: &Path, e: &Ga4Export) {
    let got = credited(out);
    let mut checked = 0;
    for ((date, creator, platform, model), (conv, rev)) in &e.truth {
        let key = (date.to_string(), creator.clone(), platform.clone(), model.to_string());
        let (g_conv, g_rev) = got.get(&key).copied().unwrap_or_default();
        if *model == "time_decay" {
            assert!(
                (g_conv - conv).abs() < Decimal::from_str("0.00001").unwrap(),
                "{key:?}: {g_conv} vs {conv}"
            );
            assert!(
                (g_rev - rev).abs() < Decimal::from_str("0.001").unwrap(),
                "{key:?}: {g_rev} vs {rev}"
            );
        } else {
            assert_eq!(g_conv, *conv, "{key:?} conversions");
            assert_eq!(g_rev, *rev, "{key:?} revenue");
        }
        checked += 1;
    }
    // Nothing credited that the truth does not hold (zero shares aside).
    for (key, (conv, _)) in &got {
        let truth_key = e
            .truth
            .keys()
            .any(|(d, c, p, m)| (d.to_string(), c.clone(), p.clone(), m.to_string()) == *key);
        assert!(truth_key || conv.is_zero(), "credited but not due: {key:?} {conv}");
    }
    // Each model credits every purchase exactly once.
    for m in ga4::MODELS {
        let total: Decimal = got.iter().filter(|(k, _)| k.3 == m).map(|(_, v)| v.0).sum();
        assert_eq!(total, Decimal::from(e.purchases), "{m}: credits sum to the purchases");
    }
    assert!(checked > 100, "only {checked} truths checked");
}

fn manifest_summary(out: &Path) -> serde_json::Value {
    let runs: Vec<PathBuf> = files_under(&out.join("_runs"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    let newest = runs.iter().max().unwrap();
    serde_json::from_slice::<serde_json::Value>(&std::fs::read(newest).unwrap()).unwrap()["summary"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_conversions_are_credited_exactly_as_the_truth_under_every_model() {
    let world = world();
    let e = export(&world);
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("ga4-export");
    write_export(&e, &files);
    let roster = dir.path().join("roster.csv");
    std::fs::write(&roster, world.roster_csv()).unwrap();
    let out = dir.path().join("out");
    let (first, last) = (world.config.first_day.to_string(), conversion_range(&world).1);
    let o = crest_ga4(
        &[
            "extract",
            "--from",
            files.to_str().unwrap(),
            "--property-id",
            PROPERTY,
            "--start",
            &first,
            "--end",
            &last,
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let raw = rows(&read_table(&out.join("raw/ga4/events")));
    let expected: usize = e
        .days
        .values()
        .flatten()
        .filter(|r| r["event_name"] != "page_view")
        .count();
    assert_eq!(raw, expected, "sessions and purchases kept, page views left");

    let (conv_start, conv_end) = conversion_range(&world);
    let attribute = |extra: &'static [&'static str]| {
        let (out, roster, conv_start, conv_end) = (out.clone(), roster.clone(), conv_start.clone(), conv_end.clone());
        async move {
            let mut args = vec![
                "attribute".to_string(),
                "--input".into(),
                out.display().to_string(),
                "--roster".into(),
                roster.display().to_string(),
                "--start".into(),
                conv_start,
                "--end".into(),
                conv_end,
                "--lookback-days".into(),
                "7".into(),
            ];
            args.extend(extra.iter().map(|s| s.to_string()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            crest(&args).await
        }
    };
    let o = attribute(&[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let printed = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(printed.contains("load it: crest load --input"), "{printed}");
    let attributed = out.join("attribution");
    assert_matches_truth(&attributed, &e);
    let s = manifest_summary(&attributed);
    assert_eq!(s["conversions"], e.purchases);
    assert_eq!(s["duplicate_transactions"], e.duplicate_logs);
    assert_eq!(s["unattributed_conversions"], e.unattributed);
    assert_eq!(Decimal::from_str(s["revenue"].as_str().unwrap()).unwrap(), e.revenue);
    assert!(e.duplicate_logs > 0 && e.unattributed > 0);

    // Users attributed in many small groups: the same credit to the last digit.
    let first_files = files_under(&attributed.join("canonical/creator_attribution"));
    let grouped = dir.path().join("grouped");
    let o = crest(&[
        "attribute",
        "--input",
        out.to_str().unwrap(),
        "--out",
        grouped.to_str().unwrap(),
        "--roster",
        roster.to_str().unwrap(),
        "--start",
        &conv_start,
        "--end",
        &conv_end,
        "--lookback-days",
        "7",
        "--max-events-in-memory",
        "300",
    ])
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(manifest_summary(&grouped)["user_groups"].as_u64().unwrap() > 3);
    assert_eq!(credited(&grouped), credited(&attributed));
    assert_eq!(manifest_summary(&grouped)["duplicate_transactions"], e.duplicate_logs);
    assert!(!first_files.is_empty());

    // Into the lake; the view puts the site's credit beside the platforms'.
    let lake = dir.path().join("lake");
    let target = Target::lake(&lake);
    let o = target.load(attributed.to_str().unwrap(), &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let o = target.crest(&["views", "apply", "--target", &target.spec]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let compare = target
        .query("SELECT creator_id, platform, site_last, site_linear, assisted_conversions FROM v_attribution_compare")
        .await;
    let mut last_by_creator: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    for ((_, c, p, m), (conv, _)) in &e.truth {
        if let (Some(c), Some(p), "last") = (c, p, *m) {
            *last_by_creator.entry((c.clone(), p.clone())).or_default() += conv;
        }
    }
    let mut assisted_seen = 0;
    for row in compare.as_array().unwrap() {
        let key = (
            row["creator_id"].as_str().unwrap().to_string(),
            row["platform"].as_str().unwrap().to_string(),
        );
        let got = Decimal::from_str(&row["site_last"].to_string().trim_matches('"').replace("null", "0")).unwrap();
        assert_eq!(
            got.normalize(),
            last_by_creator.get(&key).copied().unwrap_or_default().normalize(),
            "{key:?}"
        );
        assisted_seen += int(&row["assisted_conversions"]);
    }
    assert!(assisted_seen > 0, "journeys with two creators leave assists");

    // A re-run restates the same dates: loaded again, nothing doubles.
    let before = target
        .query("SELECT SUM(conversions) AS c FROM creator_attribution WHERE model = 'linear'")
        .await;
    let o = attribute(&[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let o = target.load(attributed.to_str().unwrap(), &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let after = target
        .query("SELECT SUM(conversions) AS c FROM creator_attribution WHERE model = 'linear'")
        .await;
    assert_eq!(before, after);
    assert_eq!(int(&after[0]["c"]), e.purchases as i64);
    // The earlier run's files were replaced, not kept beside the new ones.
    assert_matches_truth(&attributed, &e);
}

/// The export on the BigQuery API: dataset analytics_{property}, a table per
/// day, the last day still in its intraday table.
async fn bigquery_export(e: &Ga4Export, project: &str) {
    let base = emulator("CREST_TEST_BIGQUERY_URL");
    let http = reqwest::Client::new();
    let dataset = format!("analytics_{}", e.property_id);
    let r = http
        .post(format!("{base}/bigquery/v2/projects/{project}/datasets"))
        .json(&serde_json::json!({"datasetReference": {"projectId": project, "datasetId": dataset}}))
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success() || r.status() == 409,
        "{}",
        r.text().await.unwrap()
    );
    let last = *e.days.keys().last().unwrap();
    for (day, rows) in &e.days {
        let table = if *day == last {
            format!("events_intraday_{}", day.format("%Y%m%d"))
        } else {
            format!("events_{}", day.format("%Y%m%d"))
        };
        let r = http
            .post(format!(
                "{base}/bigquery/v2/projects/{project}/datasets/{dataset}/tables"
            ))
            .json(&serde_json::json!({
                "tableReference": {"projectId": project, "datasetId": dataset, "tableId": table},
                "schema": ga4::bigquery_schema(),
            }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        let rows: Vec<serde_json::Value> = rows.iter().map(|r| serde_json::json!({ "json": r })).collect();
        let r = http
            .post(format!(
                "{base}/bigquery/v2/projects/{project}/datasets/{dataset}/tables/{table}/insertAll"
            ))
            .json(&serde_json::json!({ "rows": rows }))
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(body["insertErrors"].as_array().is_none_or(|e| e.is_empty()), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bigquery_export_gives_the_same_credit_and_loads_into_both_warehouses() {
    let world = world();
    let mut e = export(&world);
    // A property of its own on the shared emulator.
    e.property_id = format!("{}{}", PROPERTY, &uuid::Uuid::now_v7().as_u128().to_string()[30..]);
    let project = emulator("CREST_TEST_BIGQUERY_PROJECT");
    bigquery_export(&e, &project).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let roster = dir.path().join("roster.csv");
    std::fs::write(&roster, world.roster_csv()).unwrap();
    // From the first day the export has a table for.
    let (first, last) = (e.days.keys().next().unwrap().to_string(), conversion_range(&world).1);
    let env = bigquery_env();
    let o = crest_ga4(
        &[
            "extract",
            "--project",
            &project,
            "--property-id",
            &e.property_id,
            "--start",
            &first,
            "--end",
            &last,
            "--out",
            out.to_str().unwrap(),
        ],
        &env,
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let (conv_start, conv_end) = conversion_range(&world);
    let o = crest(&[
        "attribute",
        "--input",
        out.to_str().unwrap(),
        "--roster",
        roster.to_str().unwrap(),
        "--start",
        &conv_start,
        "--end",
        &conv_end,
        "--lookback-days",
        "7",
    ])
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let attributed = out.join("attribution");
    assert_matches_truth(&attributed, &e);

    for target in [Target::bigquery(), Target::snowflake().await] {
        let o = target.load(attributed.to_str().unwrap(), &[]).await;
        assert!(o.status.success(), "{:?}: {}", target.kind, stderr(&o));
        let o = target.crest(&["views", "apply", "--target", &target.spec]).await;
        assert!(o.status.success(), "{:?}: {}", target.kind, stderr(&o));
        let total = target
            .query("SELECT SUM(site_linear) AS linear, SUM(site_last) AS last FROM v_attribution_compare")
            .await;
        let creators: Decimal = e
            .truth
            .iter()
            .filter(|((_, c, _, m), _)| c.is_some() && *m == "linear")
            .map(|(_, v)| v.0)
            .sum();
        let got = Decimal::from_str(total[0]["linear"].to_string().trim_matches('"')).unwrap();
        assert_eq!(got.normalize(), creators.normalize(), "{:?}", target.kind);
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn one_error_line(o: &std::process::Output) -> String {
    assert_eq!(o.status.code(), Some(2), "{}", stderr(o));
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    lines[0].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_exports_are_refused_in_one_line_and_bad_events_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = |from: PathBuf| {
        let out = out.clone();
        async move {
            crest_ga4(
                &[
                    "extract",
                    "--from",
                    from.to_str().unwrap(),
                    "--property-id",
                    PROPERTY,
                    "--start",
                    "2026-03-01",
                    "--end",
                    "2026-03-01",
                    "--out",
                    out.to_str().unwrap(),
                ],
                &[],
            )
            .await
        }
    };
    // A Parquet file without the export's columns.
    let bad = dir.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("event_name", DataType::Utf8, true)]));
    let batch = arrow::array::RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(arrow::array::StringArray::from(vec!["purchase"]))],
    )
    .unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(bad.join("events_20260301.parquet")).unwrap(),
        schema,
        None,
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let line = one_error_line(&run(bad.clone()).await);
    assert!(line.contains("has no column event_date"), "{line}");
    assert!(!out.join("raw").exists() || rows(&read_table(&out.join("raw"))) == 0);

    // JSON that is not an export.
    let junk = dir.path().join("junk");
    std::fs::create_dir_all(&junk).unwrap();
    std::fs::write(junk.join("events_20260301.json"), "{\"event_date\":\"20260301\"}\n").unwrap();
    let line = one_error_line(&run(junk).await);
    assert!(line.contains("line 1") && line.contains("event_name"), "{line}");

    // An empty folder, a missing one.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert!(one_error_line(&run(empty).await).contains("holds no GA4 export files"));

    // A purchase with a revenue that is not a number: kept with its reason, left out of attribution.
    let odd = dir.path().join("odd");
    std::fs::create_dir_all(&odd).unwrap();
    std::fs::write(
        odd.join("events_20260301.json"),
        concat!(
            r#"{"event_date":"20260301","event_timestamp":1772366400000000,"event_name":"session_start","user_pseudo_id":"u1","event_params":[{"key":"page_location","value":{"string_value":"https://shop.example.com/?utm_source=cr_00001&utm_medium=tiktok"}}]}"#,
            "\n",
            r#"{"event_date":"20260301","event_timestamp":1772366500000000,"event_name":"purchase","user_pseudo_id":"u1","ecommerce":{"transaction_id":"T1","purchase_revenue":"twelve"}}"#,
            "\n",
            r#"{"event_date":"20260301","event_timestamp":1772366600000000,"event_name":"purchase","user_pseudo_id":"u1","ecommerce":{"transaction_id":"T2","purchase_revenue":12.5}}"#,
            "\n"
        ),
    )
    .unwrap();
    let o = run(odd).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let roster = dir.path().join("roster.csv");
    std::fs::write(&roster, world().roster_csv()).unwrap();
    let o = crest(&[
        "attribute",
        "--input",
        out.to_str().unwrap(),
        "--roster",
        roster.to_str().unwrap(),
        "--start",
        "2026-03-01",
        "--end",
        "2026-03-01",
    ])
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let printed = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(printed.contains("revenue \"twelve\" is not a number (1)"), "{printed}");
    let got = credited(&out.join("attribution"));
    let last = got
        .get(&(
            "2026-03-01".to_string(),
            Some("cr_00001".to_string()),
            Some("tiktok".to_string()),
            "last".to_string(),
        ))
        .unwrap();
    assert_eq!(*last, (Decimal::ONE, Decimal::from_str("12.5").unwrap()));

    // A roster without its columns, a bad model, a range with no events.
    let bad_roster = dir.path().join("bad_roster.csv");
    std::fs::write(&bad_roster, "name,followers\nmaya,1000\n").unwrap();
    let base = [
        "attribute",
        "--input",
        out.to_str().unwrap(),
        "--start",
        "2026-03-01",
        "--end",
        "2026-03-01",
    ];
    let with = |more: Vec<String>| base.iter().map(|s| s.to_string()).chain(more).collect::<Vec<String>>();
    let a = with(vec!["--roster".into(), bad_roster.display().to_string()]);
    let line = one_error_line(&crest(&strs(&a)).await);
    assert!(line.contains("creator_id and handle"), "{line}");
    let a = with(vec![
        "--roster".into(),
        roster.display().to_string(),
        "--models".into(),
        "last,u_shaped".into(),
    ]);
    let line = one_error_line(&crest(&strs(&a)).await);
    assert!(line.contains("'u_shaped' is not an attribution model"), "{line}");
    let line = one_error_line(
        &crest(&[
            "attribute",
            "--input",
            out.to_str().unwrap(),
            "--roster",
            roster.to_str().unwrap(),
            "--start",
            "2026-05-01",
            "--end",
            "2026-05-02",
        ])
        .await,
    );
    assert!(line.contains("no GA4 events"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bigquery_table_that_is_not_the_export_is_refused() {
    let project = emulator("CREST_TEST_BIGQUERY_PROJECT");
    let property = format!("31415{}", &uuid::Uuid::now_v7().as_u128().to_string()[30..]);
    let base = emulator("CREST_TEST_BIGQUERY_URL");
    let http = reqwest::Client::new();
    let dataset = format!("analytics_{property}");
    http.post(format!("{base}/bigquery/v2/projects/{project}/datasets"))
        .json(&serde_json::json!({"datasetReference": {"projectId": project, "datasetId": dataset}}))
        .send()
        .await
        .unwrap();
    http.post(format!(
        "{base}/bigquery/v2/projects/{project}/datasets/{dataset}/tables"
    ))
    .json(&serde_json::json!({
        "tableReference": {"projectId": project, "datasetId": dataset, "tableId": "events_20260301"},
        "schema": {"fields": [{"name": "event_name", "type": "STRING"}, {"name": "event_date", "type": "STRING"}]},
    }))
    .send()
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let args = |p: &str, start: &str| {
        vec![
            "extract".to_string(),
            "--project".into(),
            project.clone(),
            "--property-id".into(),
            p.to_string(),
            "--start".into(),
            start.to_string(),
            "--end".into(),
            start.to_string(),
            "--out".into(),
            out.display().to_string(),
        ]
    };
    let env = bigquery_env();
    let run = |a: Vec<String>| {
        let env = env.clone();
        async move {
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            crest_ga4(&a, &env).await
        }
    };
    let line = one_error_line(&run(args(&property, "2026-03-01")).await);
    assert!(line.contains("has no column event_timestamp, user_pseudo_id"), "{line}");
    let line = one_error_line(&run(args(&property, "2026-02-27")).await);
    assert!(line.contains("events_20260227 does not exist"), "{line}");
    let line = one_error_line(&run(args("999", "2026-03-01")).await);
    assert!(line.contains("analytics_999 does not exist"), "{line}");
    assert!(!out.join("raw").exists(), "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_logged_across_midnight_counts_once_and_the_sites_own_pages_are_direct() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("export");
    std::fs::create_dir_all(&files).unwrap();
    let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_micros();
    let event = |name: &str, when: &str, params: &str, extra: &str| {
        format!(
            r#"{{"event_date":"{}","event_timestamp":{},"event_name":"{name}","user_pseudo_id":"u1","event_params":[{params}]{extra}}}"#,
            &when[..10].replace('-', ""),
            at(when)
        )
    };
    let page = |url: &str| format!(r#"{{"key":"page_location","value":{{"string_value":"{url}"}}}}"#);
    let referrer = |url: &str| format!(r#"{{"key":"page_referrer","value":{{"string_value":"{url}"}}}}"#);
    let purchase = |t: &str| format!(r#","ecommerce":{{"transaction_id":"{t}","purchase_revenue":20}}"#);
    // Day one: a creator's link, a purchase late at night.
    std::fs::write(
        files.join("events_20260301.json"),
        [
            event(
                "session_start",
                "2026-03-01T20:00:00Z",
                &page("https://shop.example.com/?utm_source=cr_00001&utm_medium=tiktok"),
                "",
            ),
            event("purchase", "2026-03-01T23:59:00Z", "", &purchase("T1")),
        ]
        .join("\n"),
    )
    .unwrap();
    // Day two: the confirmation page reloaded after midnight (T1 again), then
    // a session restarted from the site's own page, and a second purchase.
    std::fs::write(
        files.join("events_20260302.json"),
        [
            event("purchase", "2026-03-02T00:01:00Z", "", &purchase("T1")),
            event(
                "session_start",
                "2026-03-02T10:00:00Z",
                &format!(
                    "{},{}",
                    page("https://shop.example.com/cart"),
                    referrer("https://www.shop.example.com/p/42")
                ),
                "",
            ),
            event("purchase", "2026-03-02T10:05:00Z", "", &purchase("T2")),
        ]
        .join("\n"),
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = crest_ga4(
        &[
            "extract",
            "--from",
            files.to_str().unwrap(),
            "--property-id",
            PROPERTY,
            "--start",
            "2026-03-01",
            "--end",
            "2026-03-02",
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let roster = dir.path().join("roster.csv");
    std::fs::write(&roster, world().roster_csv()).unwrap();
    // One run per day, as a daily schedule attributes them.
    for d in ["2026-03-01", "2026-03-02"] {
        let o = crest(&[
            "attribute",
            "--input",
            out.to_str().unwrap(),
            "--roster",
            roster.to_str().unwrap(),
            "--start",
            d,
            "--end",
            d,
        ])
        .await;
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let got = credited(&out.join("attribution"));
    let last: Decimal = got.iter().filter(|(k, _)| k.3 == "last").map(|(_, v)| v.0).sum();
    assert_eq!(last, Decimal::from(2), "T1 once across the two runs, T2 once: {got:?}");
    let key = |d: &str| {
        (
            d.to_string(),
            Some("cr_00001".to_string()),
            Some("tiktok".to_string()),
            "last".to_string(),
        )
    };
    assert_eq!(got[&key("2026-03-01")].0, Decimal::ONE);
    assert_eq!(
        got[&key("2026-03-02")].0,
        Decimal::ONE,
        "the site's own page is no campaign: the creator closed T2"
    );
    assert!(!got.keys().any(|k| k.2.as_deref() == Some("referral")), "{got:?}");
}
