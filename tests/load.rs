//! `crest load` and `crest query` on every target (the lake, BigQuery on
//! bqemulator, Snowflake on fakesnow): transform runs from sandbox
//! extractions, loaded twice, restated, upgraded, refused, and read back with
//! SQL; the lake also on an object store other than the disk.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Decimal128Type, Field, Int64Type, Schema};
use crest_core::load::{plan, run_load, Destination, LoadOptions, LoadOutcome};
use crest_core::storage::Location;
use parquet::arrow::ArrowWriter;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;

/// Transforms the raw data in `out` for a range (with an EUR rate), returning the manifest path.
async fn transform(out: &Path, start: &str, end: &str, eur: &str) -> String {
    let fx = out.join(format!("fx-{start}.csv"));
    std::fs::write(&fx, format!("date,currency,rate\n{}", fx_rows(start, end, eur))).unwrap();
    let o = crest(&[
        "transform",
        "--input",
        out.to_str().unwrap(),
        "--start",
        start,
        "--end",
        end,
        "--fx",
        fx.to_str().unwrap(),
    ])
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let manifest = text
        .split_whitespace()
        .find(|w| w.ends_with(".json") && w.contains("_runs/"))
        .unwrap()
        .to_string();
    manifest
}

fn fx_rows(start: &str, end: &str, eur: &str) -> String {
    day(start)
        .iter_days()
        .take_while(|d| *d <= day(end))
        .map(|d| format!("{d},EUR,{eur}\n"))
        .collect()
}

/// (rows, impressions, spend_reporting in millionths) of canonical files on disk.
fn on_disk(out: &Path) -> (i64, i64, i64) {
    let mut t = (0, 0, 0);
    for b in read_table(&out.join("canonical/creator_performance")) {
        let imps = b.column_by_name("impressions").unwrap().as_primitive::<Int64Type>();
        let spend = b
            .column_by_name("spend_reporting")
            .unwrap()
            .as_primitive::<Decimal128Type>();
        t.0 += b.num_rows() as i64;
        t.1 += imps.iter().flatten().sum::<i64>();
        t.2 += spend.iter().flatten().sum::<i128>() as i64;
    }
    t
}

const TOTALS: &str = "SELECT COUNT(*) AS n, SUM(impressions) AS imps, \
    CAST(SUM(spend_reporting) * 1000000 AS BIGINT) AS spend FROM creator_performance";

fn totals(v: &serde_json::Value) -> (i64, i64, i64) {
    let r = &v[0];
    (int(&r["n"]), int(&r["imps"]), int(&r["spend"]))
}

async fn totals_of(t: &Target) -> (i64, i64, i64) {
    totals(&t.query(TOTALS).await)
}

fn copy_dir(from: &Path, to: &Path) {
    for f in files_under(from) {
        let dst = to.join(f.strip_prefix(from).unwrap());
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(&f, &dst).unwrap();
    }
}

/// The lines of stderr that are the error (the rest are WARN logs, e.g. of retries).
fn error_lines(o: &std::process::Output) -> usize {
    stderr(o).lines().filter(|l| l.starts_with("error:")).count()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_loads_once_restated_dates_replace_and_sums_read_back_exactly() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    extract(&sb, &raw, "2026-01-01", "2026-01-15").await;

    for t in Target::all(&dir.path().join("lake")).await {
        let k = t.kind;
        // Each target its own transform output: a transform replaces the dates it restates.
        let out = dir.path().join(format!("out-{k:?}"));
        copy_dir(&raw, &out);
        let first = transform(&out, "2026-01-01", "2026-01-10", "1.10").await;
        let truth = on_disk(&out);
        assert!(truth.0 > 0 && truth.2 > 0);
        let o = t.load(&first, &[]).await;
        assert!(o.status.success(), "{k:?}: {}", stderr(&o));
        assert!(stdout(&o).contains("inserted"), "{k:?}: {}", stdout(&o));
        assert_eq!(totals_of(&t).await, truth, "{k:?}");
        // The load's own manifest, beside the transform's.
        let loads: Vec<serde_json::Value> = files_under(&out.join("_runs"))
            .iter()
            .filter_map(|p| serde_json::from_slice::<serde_json::Value>(&std::fs::read(p).ok()?).ok())
            .filter(|m| m["stage"] == "load")
            .collect();
        assert_eq!(loads.len(), 1, "{k:?}");
        assert_eq!(
            loads[0]["inputs"]["target"].as_str().unwrap().to_lowercase(),
            t.spec.split('?').next().unwrap().to_lowercase(),
            "{k:?}"
        );
        let cp = loads[0]["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["table"] == "creator_performance")
            .unwrap();
        assert_eq!(cp["inserted"].as_i64(), Some(truth.0), "{k:?}");

        // The same run again: nothing to do, nothing doubled.
        let o = t.load(&first, &[]).await;
        assert!(o.status.success(), "{k:?}: {}", stderr(&o));
        assert!(stdout(&o).contains("already in"), "{k:?}: {}", stdout(&o));
        assert_eq!(totals_of(&t).await, truth, "{k:?}");
        // --force: loaded again, every row unchanged.
        let o = t.load(&first, &["--force"]).await;
        assert!(o.status.success(), "{k:?}: {}", stderr(&o));
        assert_eq!(totals_of(&t).await, truth, "{k:?}");
        let loads = t
            .query(
                "SELECT SUM(inserted) AS i, SUM(unchanged) AS u, COUNT(DISTINCT load_id) AS n \
                 FROM crest_loads WHERE target_table = 'creator_performance'",
            )
            .await;
        assert_eq!(
            (int(&loads[0]["i"]), int(&loads[0]["u"]), int(&loads[0]["n"])),
            (truth.0, truth.0, 2),
            "{k:?}"
        );

        // An overlapping run with a new EUR rate restates Jan 5-10 and adds 11-15:
        // the target holds each row once, with the newer numbers.
        let second = transform(&out, "2026-01-05", "2026-01-15", "1.25").await;
        let truth2 = on_disk(&out);
        assert_ne!(truth2.2, truth.2, "the restated spend differs");
        let o = t.load(&second, &[]).await;
        assert!(o.status.success(), "{k:?}: {}", stderr(&o));
        assert!(stdout(&o).contains("replaced"), "{k:?}: {}", stdout(&o));
        assert_eq!(totals_of(&t).await, truth2, "{k:?}");
        let per_day = t
            .query(
                "SELECT COUNT(*) AS n, COUNT(DISTINCT run_id) AS runs FROM creator_performance \
                 WHERE date BETWEEN '2026-01-05' AND '2026-01-10'",
            )
            .await;
        assert_eq!(
            int(&per_day[0]["runs"]),
            1,
            "{k:?}: restated dates hold only the newer run"
        );
        // The canonical table's natural key is unique.
        let dup = t
            .query(
                "SELECT COUNT(*) AS n FROM (SELECT date, platform, account_id, ad_id, content_id, hour, placement, COUNT(*) AS c \
                 FROM creator_performance GROUP BY date, platform, account_id, ad_id, content_id, hour, placement) g WHERE c > 1",
            )
            .await;
        assert_eq!(int(&dup[0]["n"]), 0, "{k:?}");
        if t.kind != Kind::Lake {
            assert!(stdout(&o).contains("API calls"), "{k:?}: {}", stdout(&o));
        }
        if t.kind == Kind::BigQuery {
            // BI users see what each column means; the table is partitioned and clustered.
            let table = bigquery_table(&t, "creator_performance").await;
            assert_eq!(table["timePartitioning"]["field"], "date");
            assert_eq!(
                table["clustering"]["fields"],
                serde_json::json!(["platform", "creator_id"])
            );
            let clicks = table["schema"]["fields"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["name"] == "clicks")
                .unwrap()
                .clone();
            let doc = crest_transforms::canonical::COLUMNS
                .iter()
                .find(|c| c.0 == "clicks")
                .unwrap()
                .3;
            assert_eq!(clicks["description"], doc);
        }
    }

    // Lake: date filters prune files and keep exactly the rows a full scan keeps.
    let lake = Target::lake(&dir.path().join("lake"));
    for cond in [
        "date BETWEEN '2026-01-05' AND '2026-01-10'",
        "date >= '2026-01-12'",
        "date < '2026-01-03'",
        "date = '2026-01-07'",
    ] {
        let pruned = lake
            .query(&format!("SELECT COUNT(*) AS n FROM creator_performance WHERE {cond}"))
            .await;
        let scanned = lake
            .query(&format!(
                "SELECT SUM(CASE WHEN {cond} THEN 1 ELSE 0 END) AS n FROM creator_performance"
            ))
            .await;
        assert_eq!(pruned[0]["n"], scanned[0]["n"], "{cond}");
        assert!(pruned[0]["n"].as_i64().unwrap() > 0, "{cond}");
    }

    // The view is there, over the same rows.
    let view = lake.query("SELECT SUM(impressions) AS imps FROM v_creator_daily").await;
    let resolved = lake
        .query("SELECT SUM(impressions) AS imps FROM creator_performance WHERE creator_id IS NOT NULL")
        .await;
    assert_eq!(view[0]["imps"], resolved[0]["imps"]);
}

/// Rewrites the run's canonical files with `f` and fixes their checksums in the manifest.
fn rewrite(out: &Path, manifest: &str, f: impl Fn(&RecordBatch) -> RecordBatch) {
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
    for file in m["files"].as_array_mut().unwrap() {
        let rel = file["path"].as_str().unwrap().to_string();
        if !rel.starts_with("canonical/creator_performance/") {
            continue;
        }
        let path = out.join(&rel);
        let batches: Vec<RecordBatch> =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap())
                .unwrap()
                .build()
                .unwrap()
                .map(|b| f(&b.unwrap()))
                .collect();
        let mut buf = Vec::new();
        let mut w = ArrowWriter::try_new(&mut buf, batches[0].schema(), None).unwrap();
        for b in &batches {
            w.write(b).unwrap();
        }
        w.close().unwrap();
        std::fs::write(&path, &buf).unwrap();
        file["sha256"] = hex::encode(Sha256::digest(&buf)).into();
        file["bytes"] = buf.len().into();
    }
    std::fs::write(manifest, serde_json::to_vec(&m).unwrap()).unwrap();
}

fn with_column(b: &RecordBatch, name: &str, column: ArrayRef) -> RecordBatch {
    let mut fields: Vec<Field> = b.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut columns = b.columns().to_vec();
    match fields.iter().position(|f| f.name() == name) {
        Some(i) => {
            fields[i] = Field::new(name, column.data_type().clone(), true);
            columns[i] = column;
        }
        None => {
            fields.push(Field::new(name, column.data_type().clone(), true));
            columns.push(column);
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_adds_a_column_and_an_incompatible_one_changes_nothing() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    extract(&sb, &raw, "2026-01-01", "2026-01-06").await;

    for t in Target::all(&dir.path().join("lake")).await {
        let k = t.kind;
        let out = dir.path().join(format!("out-{k:?}"));
        copy_dir(&raw, &out);
        let old = transform(&out, "2026-01-01", "2026-01-03", "1.10").await;
        let o = t.load(&old, &[]).await;
        assert!(o.status.success(), "{k:?}: {}", stderr(&o));
        let before = totals_of(&t).await;

        // A newer crest's run: one more (nullable) column.
        let newer = transform(&out, "2026-01-04", "2026-01-06", "1.10").await;
        rewrite(&out, &newer, |b| {
            let country: ArrayRef = Arc::new(StringArray::from(vec!["US"; b.num_rows()]));
            with_column(b, "creator_country", country)
        });
        let o = t.load(&newer, &[]).await;
        assert!(o.status.success(), "{k:?}: {}", stderr(&o));
        assert!(
            stdout(&o).contains("added column creator_country"),
            "{k:?}: {}",
            stdout(&o)
        );
        let v = t
            .query("SELECT COUNT(*) AS n, COUNT(creator_country) AS with_country FROM creator_performance")
            .await;
        let after = totals_of(&t).await;
        assert_eq!(int(&v[0]["n"]), after.0, "{k:?}");
        assert_eq!(
            int(&v[0]["with_country"]),
            after.0 - before.0,
            "{k:?}: old rows read the new column as null"
        );

        // impressions retyped: stopped with what differs; the target unchanged.
        let retyped = transform(&out, "2026-01-01", "2026-01-02", "1.10").await;
        rewrite(&out, &retyped, |b| {
            let imps: ArrayRef =
                Arc::new(arrow::compute::cast(b.column_by_name("impressions").unwrap(), &DataType::Utf8).unwrap());
            with_column(b, "impressions", imps)
        });
        let o = t.load(&retyped, &[]).await;
        assert_eq!(o.status.code(), Some(6), "{k:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("impressions is") && err.contains("in the input"),
            "{k:?}: {err}"
        );
        if k == Kind::Lake {
            assert!(
                err.contains("impressions is Int64 in the lake but Utf8 in the input"),
                "{err}"
            );
        }
        assert_eq!(err.trim().lines().count(), 1, "{k:?}: {err}");
        assert_eq!(totals_of(&t).await, after, "{k:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_changed_after_the_transform_stops_the_load_and_leaves_the_target_as_it_was() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let (raw, lake) = (dir.path().join("raw"), dir.path().join("lake"));
    extract(&sb, &raw, "2026-01-01", "2026-01-04").await;

    for t in Target::all(&lake).await {
        let k = t.kind;
        let out = dir.path().join(format!("out-{k:?}"));
        copy_dir(&raw, &out);
        let first = transform(&out, "2026-01-01", "2026-01-04", "1.10").await;
        assert!(t.load(&first, &[]).await.status.success(), "{k:?}");
        let before = totals_of(&t).await;
        let files_before = files_under(&lake);

        // The next run restates the same dates, but one of its files is edited afterwards.
        let second = transform(&out, "2026-01-01", "2026-01-04", "1.30").await;
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&second).unwrap()).unwrap();
        let victim = m["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["path"].as_str().unwrap().to_string())
            .rfind(|p| p.starts_with("canonical/creator_performance/"))
            .unwrap();
        let mut bytes = std::fs::read(out.join(&victim)).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(out.join(&victim), &bytes).unwrap();
        let o = t.load(&second, &[]).await;
        assert_eq!(o.status.code(), Some(6), "{k:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("does not match its checksum"),
            "{k:?}: {}",
            stderr(&o)
        );
        assert_eq!(totals_of(&t).await, before, "{k:?}: the target is as it was");
        match k {
            Kind::Lake => assert_eq!(files_under(&lake), files_before, "nothing staged is left behind"),
            Kind::BigQuery => {
                let tables = bigquery_tables(&t).await;
                assert!(
                    !tables.iter().any(|n| n.contains("crest_stage")),
                    "staging tables are dropped: {tables:?}"
                );
            }
            Kind::Snowflake => {
                let staged = t
                    .query("SELECT COUNT(*) AS n FROM INFORMATION_SCHEMA.TABLES WHERE LOWER(table_name) LIKE '%crest_stage%'")
                    .await;
                assert_eq!(int(&staged[0]["n"]), 0, "{k:?}: staging tables are dropped");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lake_runs_on_an_object_store_other_than_the_disk() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    extract(&sb, &out, "2026-01-01", "2026-01-04").await;
    transform(&out, "2026-01-01", "2026-01-04", "1.10").await;
    let memory = Location::from_store(
        Arc::new(object_store::memory::InMemory::new()),
        "lakes/brand",
        "memory://lakes/brand",
    );
    let lake = crest_lake::Lake::new(memory);
    let tables = crest_transforms::canonical::tables();
    let p = plan(out.to_str().unwrap()).await.unwrap();
    let schemas = crest_core::load::file_schemas(&p, &tables).await.unwrap();
    assert!(matches!(
        run_load(&lake, &p, &schemas, LoadOptions::default()).await.unwrap(),
        LoadOutcome::Loaded(_)
    ));
    assert!(matches!(
        run_load(&lake, &p, &schemas, LoadOptions::default()).await.unwrap(),
        LoadOutcome::AlreadyLoaded(_)
    ));
    assert_eq!(lake.describe(), "lake:memory://lakes/brand");
    let batches = lake
        .query(
            &tables,
            "SELECT COUNT(*) AS n, SUM(impressions) AS imps FROM creator_performance",
        )
        .await
        .unwrap();
    let (n, imps) = (
        batches[0].column(0).as_primitive::<Int64Type>().value(0),
        batches[0].column(1).as_primitive::<Int64Type>().value(0),
    );
    let truth = on_disk(&out);
    assert_eq!((n, imps), (truth.0, truth.1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_targets_inputs_and_sql_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let e = empty.to_str().unwrap();
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec!["load", "--input", e, "--target", "warehouse"],
            2,
            "is not a target",
        ),
        (vec!["load", "--input", e, "--target", "lake:"], 2, "needs a path"),
        (
            vec!["load", "--input", e, "--target", "bigquery://p"],
            2,
            "needs a project and a dataset",
        ),
        (
            vec!["load", "--input", e, "--target", "bigquery://p/bad-name"],
            2,
            "is not a valid name",
        ),
        (
            vec!["load", "--input", e, "--target", "snowflake://acct/db"],
            2,
            "needs a database and a schema",
        ),
        (
            vec![
                "load",
                "--input",
                e,
                "--target",
                "snowflake://acct/db/s?warehouse=x;drop",
            ],
            2,
            "is not a valid name",
        ),
        (vec!["load", "--input", e], 2, "no transform or attribution manifest"),
        (vec!["load", "--input", "/nonexistent/crest-out"], 2, "does not exist"),
        (
            vec!["query", "--target", "lake:/nonexistent/lake", "SELECT 1"],
            2,
            "does not exist",
        ),
        // No credentials at all (HOME has no gcloud credentials either).
        (
            vec!["query", "--target", "bigquery://p/d", "SELECT 1"],
            3,
            "no Google credentials",
        ),
        (
            vec!["query", "--target", "snowflake://acct/db/s", "SELECT 1"],
            3,
            "SNOWFLAKE_USER",
        ),
    ];
    let home = dir.path().to_str().unwrap().to_string();
    let no_credentials = vec![("HOME".to_string(), home)];
    for (args, code, needle) in cases {
        let o = crest_env(&args, &no_credentials).await;
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
    std::fs::create_dir_all(&lake).unwrap();
    let target = Target::lake(&lake);
    let o = target
        .crest(&[
            "query",
            "--target",
            &target.spec,
            "SELECT no_such_column FROM creator_performance",
        ])
        .await;
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("the query failed"), "{}", stderr(&o));
    // An empty lake still answers: its tables exist with no rows.
    let v = target.query("SELECT COUNT(*) AS n FROM creator_performance").await;
    assert_eq!(v[0]["n"].as_i64(), Some(0));
}

/// The warehouses: a missing dataset or schema (without --create), an
/// unreachable endpoint, SQL they refuse: one line, the right exit code, nothing created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warehouses_refuse_missing_schemas_unreachable_endpoints_and_bad_sql_in_one_line() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    extract(&sb, &out, "2026-01-01", "2026-01-02").await;
    let run = transform(&out, "2026-01-01", "2026-01-02", "1.10").await;
    let bq = Target::bigquery();
    let sf = Target::snowflake().await;
    for t in [&bq, &sf] {
        let k = t.kind;
        let o = t.crest(&["load", "--input", &run, "--target", &t.spec]).await;
        assert_eq!(o.status.code(), Some(2), "{k:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("does not exist") && stderr(&o).contains("--create"),
            "{k:?}: {}",
            stderr(&o)
        );
        assert_eq!(stderr(&o).trim().lines().count(), 1);
        // Still missing: a query says so.
        let o = t
            .crest(&[
                "query",
                "--target",
                &t.spec,
                "SELECT COUNT(*) AS n FROM creator_performance",
            ])
            .await;
        assert_eq!(o.status.code(), Some(2), "{k:?}: {}", stderr(&o));

        assert!(t.load(&run, &[]).await.status.success(), "{k:?}");
        let o = t
            .crest(&[
                "query",
                "--target",
                &t.spec,
                "SELECT no_such_column FROM creator_performance",
            ])
            .await;
        assert_eq!(o.status.code(), Some(2), "{k:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("no_such_column"), "{k:?}: {}", stderr(&o));
        assert_eq!(stderr(&o).trim().lines().count(), 1, "{k:?}: {}", stderr(&o));
    }
    // Nothing listens on port 9 of loopback.
    let mut env = bigquery_env();
    env[1].1 = "http://127.0.0.1:9".into();
    let o = crest_env(&["load", "--input", &run, "--target", &bq.spec], &env).await;
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot reach BigQuery"), "{}", stderr(&o));
    let o = crest_env(
        &["load", "--input", &run, "--target", &sf.spec],
        &snowflake_env("http://127.0.0.1:9"),
    )
    .await;
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot reach Snowflake"), "{}", stderr(&o));
    // The retries are logged at WARN; the error is one line.
    assert!(stderr(&o).contains("retrying request"), "{}", stderr(&o));
    assert_eq!(error_lines(&o), 1, "{}", stderr(&o));
}

/// Every call crest makes to a warehouse goes through one retry policy: with
/// every third request answered 503, a load, a re-load and a query still
/// succeed, with exactly the rows on disk and each retry logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_from_either_warehouse_is_retried_and_the_load_is_exact() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    extract(&sb, &out, "2026-01-01", "2026-01-03").await;
    let run = transform(&out, "2026-01-01", "2026-01-03", "1.10").await;
    let truth = on_disk(&out);
    for t in [Target::bigquery_flaky(3).await, Target::snowflake_flaky(3).await] {
        let k = t.kind;
        let o = t.load(&run, &[]).await;
        assert!(o.status.success(), "{k:?}: {}", stderr(&o));
        assert_eq!(totals_of(&t).await, truth, "{k:?}");
        let o = t.load(&run, &["--force"]).await;
        assert!(o.status.success(), "{k:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("retrying request"), "{k:?}: {}", stderr(&o));
        assert_eq!(totals_of(&t).await, truth, "{k:?}: nothing doubled");
        assert!(t.faults() >= 3, "{k:?}: {} faults", t.faults());
    }
}

/// (API calls, MB) from a warehouse load's report.
fn traffic(stdout: &str) -> (u64, f64) {
    let line = stdout.lines().find(|l| l.contains("API calls")).unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    (words[1].parse().unwrap(), words[4].parse().unwrap())
}

/// Where the run's Parquet sits behind an external stage, Snowflake reads it
/// with COPY INTO: the same rows as the INSERT path, without sending them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snowflake_copies_a_run_from_an_external_stage() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    extract(&sb, &out, "2026-01-01", "2026-01-08").await;
    let first = transform(&out, "2026-01-01", "2026-01-08", "1.10").await;
    let truth = on_disk(&out);
    let t = Target::snowflake().await;
    let o = t.load(&first, &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let inserted = traffic(&stdout(&o));

    // The stage's URL is the transform output; Snowflake reads the files itself.
    let stage = format!("CREATE STAGE crest_out URL = 'file://{}/'", out.display());
    let o = t.crest(&["query", "--target", &t.spec, &stage]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let staged = format!("{}&stage=crest_out", t.spec);
    let o = t
        .crest(&["load", "--input", &first, "--target", &staged, "--force"])
        .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(&format!("{} unchanged", truth.0)), "{}", stdout(&o));
    let copied = traffic(&stdout(&o));
    assert!(
        copied.1 * 10.0 < inserted.1,
        "COPY sends no rows: {copied:?} vs {inserted:?}"
    );
    assert_eq!(totals_of(&t).await, truth);

    // A restated run through the stage replaces the numbers.
    let second = transform(&out, "2026-01-03", "2026-01-08", "1.25").await;
    let o = t.crest(&["load", "--input", &second, "--target", &staged]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(totals_of(&t).await, on_disk(&out));

    // A stage over another folder reads no rows: stopped, nothing merged.
    let before = totals_of(&t).await;
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let o = t
        .crest(&[
            "query",
            "--target",
            &t.spec,
            &format!("CREATE STAGE wrong_place URL = 'file://{}/'", elsewhere.display()),
        ])
        .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let wrong = format!("{}&stage=wrong_place", t.spec);
    let o = t
        .crest(&["load", "--input", &second, "--target", &wrong, "--force"])
        .await;
    assert_ne!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(error_lines(&o), 1, "{}", stderr(&o));
    assert_eq!(totals_of(&t).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_logs_of_loads_and_queries_carry_no_credential() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    extract(&sb, &out, "2026-01-02", "2026-01-03").await;
    let run = transform(&out, "2026-01-02", "2026-01-03", "1.10").await;
    for t in Target::all(&dir.path().join("lake")).await {
        let mut env = t.env().to_vec();
        env.push(("CREST_LOG".into(), "debug".into()));
        let secrets: Vec<String> = t
            .env()
            .iter()
            .filter(|(k, _)| k.contains("PASSWORD") || k.contains("TOKEN"))
            .map(|(_, v)| v.clone())
            .collect();
        let load = crest_env(
            &[
                "load",
                "--input",
                &run,
                "--target",
                &t.spec,
                "--create",
                "--log-format",
                "json",
            ],
            &env,
        )
        .await;
        assert!(load.status.success(), "{:?}: {}", t.kind, stderr(&load));
        let query = crest_env(
            &[
                "query",
                "--target",
                &t.spec,
                "SELECT COUNT(*) AS n FROM creator_performance",
            ],
            &env,
        )
        .await;
        assert!(query.status.success(), "{:?}: {}", t.kind, stderr(&query));
        for o in [&load, &query] {
            let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(o));
            for secret in &secrets {
                assert!(
                    !text.contains(secret.as_str()),
                    "{:?} logged a credential: {text}",
                    t.kind
                );
            }
            // Snowflake's session and master tokens, BigQuery's OAuth exchange.
            for field in ["masterToken", "sessionToken", "access_token", "Authorization"] {
                assert!(!text.contains(field), "{:?} logged {field}: {text}", t.kind);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_never_deletes_rows_of_an_account_it_has_no_rows_for() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = sb.world().advertisers.iter().map(|a| a.advertiser_id.clone()).collect();
    // One Airflow task per advertiser, each with its own raw folder and
    // transform output, both loading into one target for the same dates.
    let mut runs = Vec::new();
    let mut truth = (0, 0, 0);
    for (k, id) in ids.iter().take(2).enumerate() {
        let out = dir.path().join(format!("out-{k}"));
        extract_advertisers(&sb, &out, vec![id.clone()], "2026-01-03", "2026-01-05").await;
        runs.push(transform(&out, "2026-01-03", "2026-01-05", "1.10").await);
        let t = on_disk(&out);
        truth = (truth.0 + t.0, truth.1 + t.1, truth.2 + t.2);
    }
    for t in Target::all(&dir.path().join("lake")).await {
        for run in &runs {
            let o = t.load(run, &[]).await;
            assert!(o.status.success(), "{:?}: {}", t.kind, stderr(&o));
        }
        assert_eq!(totals_of(&t).await, truth, "{:?}: both advertisers' rows, once", t.kind);
        // The first advertiser again, restated: the second's rows stay.
        let o = t.load(&runs[0], &["--force"]).await;
        assert!(o.status.success(), "{:?}: {}", t.kind, stderr(&o));
        assert_eq!(totals_of(&t).await, truth, "{:?}: after a forced reload", t.kind);
    }
}

/// The lake's creator_performance as the Python `deltalake` package and
/// `polars` read it (tests/readers/delta_totals.py): engines that are not
/// crest. `scripts/test.sh` installs them (`CREST_TEST_DELTA_PYTHON`).
fn independent_read(lake: &Path, version: Option<i64>) -> serde_json::Value {
    let python = std::env::var("CREST_TEST_DELTA_PYTHON").expect(
        "CREST_TEST_DELTA_PYTHON is not set: run the tests with scripts/test.sh, which installs deltalake and polars",
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/readers/delta_totals.py");
    let mut cmd = std::process::Command::new(python);
    cmd.arg(script).arg(lake);
    if let Some(v) = version {
        cmd.arg(v.to_string());
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

const READER_TOTALS: &str = "SELECT COUNT(*) AS n, SUM(impressions) AS imps, SUM(clicks) AS clicks, \
    CAST(SUM(spend) AS VARCHAR) AS spend FROM creator_performance";

/// crest's totals and each independent reader's are the same, to the cent;
/// returns the row count.
async fn readers_agree(t: &Target, lake: &Path, as_of: Option<i64>) -> i64 {
    let mut args = vec!["query", "--target", &t.spec, "--format", "json"];
    let v = as_of.map(|v| v.to_string());
    if let Some(v) = &v {
        args.extend(["--as-of", v.as_str()]);
    }
    args.push(READER_TOTALS);
    let o = t.crest(&args).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let ours: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ours = &ours[0];
    let decimal = |v: &serde_json::Value| -> rust_decimal::Decimal {
        let s = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
        s.parse().unwrap_or_default()
    };
    let theirs = independent_read(lake, as_of);
    for reader in ["deltalake", "polars"] {
        let r = &theirs[reader];
        assert_eq!(int(&r["rows"]), int(&ours["n"]), "{reader} rows");
        assert_eq!(int(&r["impressions"]), int(&ours["imps"]), "{reader} impressions");
        assert_eq!(int(&r["clicks"]), int(&ours["clicks"]), "{reader} clicks");
        assert_eq!(decimal(&r["spend"]), decimal(&ours["spend"]), "{reader} spend");
    }
    int(&ours["n"])
}

/// Rows per date of a transform output's creator_performance files.
fn rows_by_date(out: &Path) -> std::collections::BTreeMap<String, i64> {
    let mut m = std::collections::BTreeMap::new();
    for f in files_under(&out.join("canonical/creator_performance")) {
        let d = f
            .to_str()
            .unwrap()
            .split("date=")
            .nth(1)
            .map(|s| s[..10].to_string())
            .unwrap();
        let file = std::fs::File::open(&f).unwrap();
        let n = parquet::file::reader::SerializedFileReader::new(file)
            .map(|r| {
                parquet::file::reader::FileReader::metadata(&r)
                    .file_metadata()
                    .num_rows()
            })
            .unwrap();
        *m.entry(d).or_default() += n;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_engines_read_the_lake_exactly_after_loads_reloads_restatements_and_concurrent_loads() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    extract(&sb, &raw, "2026-01-01", "2026-01-06").await;
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    copy_dir(&raw, &a);
    copy_dir(&raw, &b);
    let lake_dir = dir.path().join("lake");
    let lake = Target::lake(&lake_dir);

    // A load, then the same run again: a no-op, the table's version unchanged.
    let first = transform(&a, "2026-01-01", "2026-01-04", "1.10").await;
    assert!(lake.load(&first, &[]).await.status.success());
    let n = readers_agree(&lake, &lake_dir, None).await;
    assert_eq!(n, on_disk(&a).0);
    let version = int(&independent_read(&lake_dir, None)["deltalake"]["version"]);
    let again = lake.load(&first, &[]).await;
    assert!(
        again.status.success() && stdout(&again).contains("already in"),
        "{}",
        stdout(&again)
    );
    assert_eq!(int(&independent_read(&lake_dir, None)["deltalake"]["version"]), version);

    // A restated run of overlapping dates: those dates replaced, none doubled.
    let second = transform(&b, "2026-01-03", "2026-01-06", "1.30").await;
    assert!(lake.load(&second, &[]).await.status.success());
    let mut expected = rows_by_date(&a);
    expected.extend(rows_by_date(&b));
    let seen = independent_read(&lake_dir, None);
    for reader in ["deltalake", "polars"] {
        let by_date: std::collections::BTreeMap<String, i64> = seen[reader]["by_date"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), int(v)))
            .collect();
        assert_eq!(by_date, expected, "{reader}: every date once, as its newest run has it");
    }
    readers_agree(&lake, &lake_dir, None).await;
    // The first load's version is still there to read (time travel), by every engine.
    assert_eq!(readers_agree(&lake, &lake_dir, Some(version)).await, n);

    // Two loads of overlapping dates into a fresh lake at the same time: both
    // commit, nothing is lost or doubled.
    let both_dir = dir.path().join("both");
    let both = Target::lake(&both_dir);
    let (x, y) = tokio::join!(both.load(&first, &[]), both.load(&second, &[]));
    assert!(x.status.success(), "{}", stderr(&x));
    assert!(y.status.success(), "{}", stderr(&y));
    let seen = independent_read(&both_dir, None);
    let by_date: std::collections::BTreeMap<String, i64> = seen["polars"]["by_date"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), int(v)))
        .collect();
    // Overlapping dates hold one run's rows (the same extraction: the same count).
    assert_eq!(by_date, expected);
    readers_agree(&both, &both_dir, None).await;
    let loads = both
        .query("SELECT COUNT(DISTINCT load_id) AS n FROM crest_loads WHERE target_table = 'creator_performance'")
        .await;
    assert_eq!(int(&loads[0]["n"]), 2, "both loads are in crest_loads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lake_history_time_travel_optimize_vacuum_and_a_killed_load() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    extract(&sb, &out, "2026-01-01", "2026-01-04").await;
    let lake_dir = dir.path().join("lake");
    let lake = Target::lake(&lake_dir);
    let first = transform(&out, "2026-01-01", "2026-01-04", "1.10").await;
    assert!(lake.load(&first, &[]).await.status.success());
    let before = totals_of(&lake).await;
    let second = transform(&out, "2026-01-01", "2026-01-04", "1.30").await;
    assert!(lake.load(&second, &[]).await.status.success());
    let after = totals_of(&lake).await;
    assert_ne!(before.2, after.2, "the second run changed spend_reporting");

    // The history names each load; --as-of reads the lake as the first left it.
    let o = lake
        .crest(&[
            "lake",
            "history",
            "--target",
            &lake.spec,
            "--table",
            "creator_performance",
        ])
        .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let history = stdout(&o);
    assert!(
        history.contains("      2  ") && history.contains("      0  "),
        "every version by its number: {history}"
    );
    let loads = lake
        .query("SELECT load_id FROM crest_loads WHERE target_table = 'creator_performance' ORDER BY load_id")
        .await;
    for l in loads.as_array().unwrap() {
        assert!(history.contains(l["load_id"].as_str().unwrap()), "{history}");
    }
    let o = lake
        .crest(&[
            "query", "--target", &lake.spec, "--as-of", "1", "--format", "json", TOTALS,
        ])
        .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(totals(&serde_json::from_slice(&o.stdout).unwrap()), before);
    let o = lake
        .crest(&["query", "--target", &lake.spec, "--as-of", "99", TOTALS])
        .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = lake
        .crest(&["query", "--target", &lake.spec, "--as-of", "yesterday", TOTALS])
        .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(error_lines(&o), 1);

    // Compaction changes files, never rows; a vacuum keeps what readers may use.
    let o = lake.crest(&["lake", "optimize", "--target", &lake.spec]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("creator_performance:"), "{}", stdout(&o));
    assert_eq!(totals_of(&lake).await, after);
    readers_agree(&lake, &lake_dir, None).await;
    let o = lake
        .crest(&["lake", "vacuum", "--target", &lake.spec, "--retention-hours", "1"])
        .await;
    assert_eq!(o.status.code(), Some(2), "below Delta's safety check: {}", stderr(&o));
    let o = lake
        .crest(&["lake", "vacuum", "--target", &lake.spec, "--dry-run"])
        .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("would remove 0 files"), "{}", stdout(&o));

    // A load killed (SIGKILL) at any moment leaves the table as a whole
    // version; the next load succeeds.
    let third = transform(&out, "2026-01-01", "2026-01-04", "1.50").await;
    for wait_ms in [5u64, 40, 120, 300, 600] {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_crest"))
            .args(["load", "--input", &third, "--target", &lake.spec])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
        let _ = child.start_kill();
        let _ = child.wait().await;
        let now = totals_of(&lake).await;
        assert_eq!((now.0, now.1), (after.0, after.1), "rows never doubled or lost");
        readers_agree(&lake, &lake_dir, None).await;
    }
    assert!(lake.load(&third, &[]).await.status.success());
    let last = totals_of(&lake).await;
    assert_eq!((last.0, last.1), (after.0, after.1));
    readers_agree(&lake, &lake_dir, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lake_of_the_earlier_format_is_refused_then_migrated_once() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    extract(&sb, &out, "2026-01-01", "2026-01-03").await;
    let manifest = transform(&out, "2026-01-01", "2026-01-03", "1.10").await;
    let checksum = hex::encode(Sha256::digest(std::fs::read(&manifest).unwrap()));

    // The earlier format, as an earlier crest wrote it: per-date pointers,
    // the table's schema, the load's record.
    let lake_dir = dir.path().join("lake");
    for (name, schema) in crest_transforms::canonical::tables() {
        let table = lake_dir.join(name);
        std::fs::create_dir_all(&table).unwrap();
        let mut buf = Vec::new();
        ArrowWriter::try_new(&mut buf, schema, None).unwrap().close().unwrap();
        std::fs::write(table.join("_schema.parquet"), buf).unwrap();
        let folder = match name {
            "quarantine" => out.join("quarantine"),
            _ => out.join("canonical").join(name),
        };
        let mut dates: std::collections::BTreeMap<String, Vec<std::path::PathBuf>> = Default::default();
        for f in files_under(&folder) {
            let d = f
                .to_str()
                .unwrap()
                .split("date=")
                .nth(1)
                .map(|s| s[..10].to_string())
                .unwrap();
            dates.entry(d).or_default().push(f);
        }
        for (date, sources) in dates {
            let part = table.join(format!("date={date}"));
            std::fs::create_dir_all(&part).unwrap();
            let mut files = Vec::new();
            for (k, f) in sources.iter().enumerate() {
                let name = format!("20260101T000000Z-0000-{k}.parquet");
                let bytes = std::fs::read(f).unwrap();
                std::fs::write(part.join(&name), &bytes).unwrap();
                files.push(serde_json::json!({"name": name, "sha256": hex::encode(Sha256::digest(&bytes)), "rows": 0, "bytes": bytes.len()}));
            }
            std::fs::write(
                part.join("_partition.json"),
                serde_json::to_vec(
                    &serde_json::json!({"load_id": "20260101T000000Z-0000", "run_id": "r", "rows": 0, "files": files}),
                )
                .unwrap(),
            )
            .unwrap();
        }
    }
    std::fs::create_dir_all(lake_dir.join("_loads")).unwrap();
    std::fs::write(
        lake_dir.join("_loads/20260101T000000Z-0000.json"),
        serde_json::to_vec(&serde_json::json!({
            "load_id": "20260101T000000Z-0000", "run_id": "r", "manifest": manifest, "manifest_checksum": checksum,
            "rows": on_disk(&out).0, "loaded_at": "2026-01-01T00:00:00Z", "status": "succeeded",
            "tables": [
                {"table": "creator_performance", "inserted": on_disk(&out).0, "replaced": 0, "replaced_old": 0, "unchanged": 0},
                {"table": "attribution_windows", "inserted": 0, "replaced": 0, "replaced_old": 0, "unchanged": 0},
                {"table": "quarantine", "inserted": 0, "replaced": 0, "replaced_old": 0, "unchanged": 0}
            ],
            "schema_changes": []
        }))
        .unwrap(),
    )
    .unwrap();
    let lake = Target::lake(&lake_dir);

    // Refused, with how to convert, by a query and by a load; nothing changed.
    let files_before = files_under(&lake_dir);
    for args in [
        vec!["query", "--target", &lake.spec, TOTALS],
        vec!["load", "--input", &manifest, "--target", &lake.spec],
    ] {
        let o = lake.crest(&args).await;
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains("crest lake migrate"), "{}", stderr(&o));
        assert_eq!(error_lines(&o), 1);
    }
    assert_eq!(files_under(&lake_dir), files_before);

    // Migrated: the same rows, the old load still counts as loaded.
    let o = lake.crest(&["lake", "migrate", "--target", &lake.spec]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let truth = on_disk(&out);
    assert_eq!(totals_of(&lake).await, truth);
    readers_agree(&lake, &lake_dir, None).await;
    let o = lake.load(&manifest, &[]).await;
    assert!(stdout(&o).contains("already in"), "{}", stdout(&o));
    assert!(!lake_dir.join("creator_performance/_schema.parquet").exists());
    assert!(!files_under(&lake_dir).iter().any(|f| f.ends_with("_partition.json")));
    let o = lake.crest(&["lake", "migrate", "--target", &lake.spec]).await;
    assert!(
        stdout(&o).contains("every table is a Delta table already"),
        "{}",
        stdout(&o)
    );
}
