//! `crest load` and `crest query` on the lake: transform runs from sandbox
//! extractions, loaded twice, restated, upgraded, on disk and in memory, and
//! read back with SQL.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Decimal128Type, Field, Int64Type, Schema};
use crest_core::load::{plan, run_load, Destination, LoadOutcome};
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

async fn query(lake: &Path, sql: &str) -> serde_json::Value {
    let target = format!("lake:{}", lake.display());
    let o = crest(&["query", "--target", &target, "--format", "json", sql]).await;
    assert!(o.status.success(), "{sql}: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
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
    (
        r["n"].as_i64().unwrap(),
        r["imps"].as_i64().unwrap_or(0),
        r["spend"].as_i64().unwrap_or(0),
    )
}

async fn load(manifest_or_dir: &str, lake: &Path, extra: &[&str]) -> std::process::Output {
    let target = format!("lake:{}", lake.display());
    let mut args = vec!["load", "--input", manifest_or_dir, "--target", &target];
    args.extend_from_slice(extra);
    crest(&args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_loads_once_restated_dates_replace_and_sums_read_back_exactly() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let (out, lake) = (dir.path().join("out"), dir.path().join("lake"));
    extract(&sb, &out, "2026-01-01", "2026-01-15").await;
    let first = transform(&out, "2026-01-01", "2026-01-10", "1.10").await;

    let o = load(&first, &lake, &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(stdout.contains("inserted"), "{stdout}");
    let truth = on_disk(&out);
    assert!(truth.0 > 0 && truth.2 > 0);
    assert_eq!(totals(&query(&lake, TOTALS).await), truth);

    // The same run again: nothing to do, nothing doubled.
    let o = load(&first, &lake, &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("already in"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(totals(&query(&lake, TOTALS).await), truth);
    // --force: loaded again, every date unchanged.
    let o = load(&first, &lake, &["--force"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(totals(&query(&lake, TOTALS).await), truth);
    let loads = query(&lake, "SELECT SUM(inserted) AS i, SUM(unchanged) AS u, COUNT(DISTINCT load_id) AS n FROM crest_loads WHERE target_table = 'creator_performance'").await;
    assert_eq!(
        (loads[0]["i"].as_i64(), loads[0]["u"].as_i64(), loads[0]["n"].as_i64()),
        (Some(truth.0), Some(truth.0), Some(2))
    );

    // An overlapping run with a new EUR rate restates Jan 5-10 and adds 11-15:
    // the lake holds each date once, with the newer numbers.
    let second = transform(&out, "2026-01-05", "2026-01-15", "1.25").await;
    let o = load(&second, &lake, &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(stdout.contains("replaced"), "{stdout}");
    let truth2 = on_disk(&out);
    assert_ne!(truth2.2, truth.2, "the restated spend differs");
    assert_eq!(totals(&query(&lake, TOTALS).await), truth2);
    let per_day = query(
        &lake,
        "SELECT COUNT(*) AS n, COUNT(DISTINCT run_id) AS runs FROM creator_performance WHERE date BETWEEN '2026-01-05' AND '2026-01-10'",
    )
    .await;
    assert_eq!(
        per_day[0]["runs"].as_i64(),
        Some(1),
        "restated dates hold only the newer run"
    );

    // Date filters prune files; they keep exactly the rows a full scan keeps.
    for cond in [
        "date BETWEEN '2026-01-05' AND '2026-01-10'",
        "date >= '2026-01-12'",
        "date < '2026-01-03'",
        "date = '2026-01-07'",
    ] {
        let pruned = query(
            &lake,
            &format!("SELECT COUNT(*) AS n FROM creator_performance WHERE {cond}"),
        )
        .await;
        let scanned = query(
            &lake,
            &format!("SELECT SUM(CASE WHEN {cond} THEN 1 ELSE 0 END) AS n FROM creator_performance"),
        )
        .await;
        assert_eq!(pruned[0]["n"], scanned[0]["n"], "{cond}");
        assert!(pruned[0]["n"].as_i64().unwrap() > 0, "{cond}");
    }

    // The view is there, over the same rows.
    let view = query(&lake, "SELECT SUM(impressions) AS imps FROM v_creator_daily").await;
    let resolved = query(
        &lake,
        "SELECT SUM(impressions) AS imps FROM creator_performance WHERE creator_id IS NOT NULL",
    )
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
    let (out, lake) = (dir.path().join("out"), dir.path().join("lake"));
    extract(&sb, &out, "2026-01-01", "2026-01-06").await;
    let old = transform(&out, "2026-01-01", "2026-01-03", "1.10").await;
    assert!(load(&old, &lake, &[]).await.status.success());
    let before = totals(&query(&lake, TOTALS).await);

    // A newer crest's run: one more (nullable) column.
    let newer = transform(&out, "2026-01-04", "2026-01-06", "1.10").await;
    rewrite(&out, &newer, |b| {
        let country: ArrayRef = Arc::new(StringArray::from(vec!["US"; b.num_rows()]));
        with_column(b, "creator_country", country)
    });
    let o = load(&newer, &lake, &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("added column creator_country"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let v = query(
        &lake,
        "SELECT COUNT(*) AS n, COUNT(creator_country) AS with_country FROM creator_performance",
    )
    .await;
    let after = totals(&query(&lake, TOTALS).await);
    assert_eq!(v[0]["n"].as_i64(), Some(after.0));
    assert_eq!(
        v[0]["with_country"].as_i64(),
        Some(after.0 - before.0),
        "old rows read the new column as null"
    );

    // impressions retyped: stopped with what differs, the lake unchanged.
    let retyped = transform(&out, "2026-01-01", "2026-01-02", "1.10").await;
    rewrite(&out, &retyped, |b| {
        let imps: ArrayRef =
            Arc::new(arrow::compute::cast(b.column_by_name("impressions").unwrap(), &DataType::Utf8).unwrap());
        with_column(b, "impressions", imps)
    });
    let o = load(&retyped, &lake, &[]).await;
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("impressions is Int64 in the lake but Utf8 in the input"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1);
    assert_eq!(totals(&query(&lake, TOTALS).await), after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_changed_after_the_transform_stops_the_load_and_leaves_the_lake_as_it_was() {
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let (out, lake) = (dir.path().join("out"), dir.path().join("lake"));
    extract(&sb, &out, "2026-01-01", "2026-01-04").await;
    let first = transform(&out, "2026-01-01", "2026-01-04", "1.10").await;
    assert!(load(&first, &lake, &[]).await.status.success());
    let before = totals(&query(&lake, TOTALS).await);
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
    std::fs::write(out.join(&victim), bytes).unwrap();

    let o = load(&second, &lake, &[]).await;
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert!(stderr(&o).contains("does not match its checksum"), "{}", stderr(&o));
    assert_eq!(totals(&query(&lake, TOTALS).await), before, "the lake is as it was");
    assert_eq!(files_under(&lake), files_before, "nothing staged is left behind");
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
        run_load(&lake, &p, &schemas, false, false).await.unwrap(),
        LoadOutcome::Loaded(_)
    ));
    assert!(matches!(
        run_load(&lake, &p, &schemas, false, false).await.unwrap(),
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
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec!["load", "--input", empty.to_str().unwrap(), "--target", "warehouse"],
            2,
            "is not a target",
        ),
        (
            vec!["load", "--input", empty.to_str().unwrap(), "--target", "bigquery://p/d"],
            2,
            "not in this crest yet",
        ),
        (
            vec!["load", "--input", empty.to_str().unwrap(), "--target", "lake:"],
            2,
            "needs a path",
        ),
        (
            vec!["load", "--input", empty.to_str().unwrap()],
            2,
            "no transform manifest",
        ),
        (vec!["load", "--input", "/nonexistent/crest-out"], 2, "does not exist"),
        (
            vec!["query", "--target", "lake:/nonexistent/lake", "SELECT 1"],
            2,
            "does not exist",
        ),
    ];
    for (args, code, needle) in cases {
        let o = crest(&args).await;
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
    std::fs::create_dir_all(&lake).unwrap();
    let target = format!("lake:{}", lake.display());
    let o = crest(&[
        "query",
        "--target",
        &target,
        "SELECT no_such_column FROM creator_performance",
    ])
    .await;
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("the query failed"), "{}", stderr(&o));
    // An empty lake still answers: its tables exist with no rows.
    let v = query(&lake, "SELECT COUNT(*) AS n FROM creator_performance").await;
    assert_eq!(v[0]["n"].as_i64(), Some(0));
}
