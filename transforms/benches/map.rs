//! Raw → canonical on Arrow batches, without Parquet I/O: the map and the
//! checks, per core. Reads raw TikTok Parquet from a crest output folder
//! (e.g. one written by scripts/bench-extract.sh) into memory first.
//!
//!   cargo bench -p crest-transforms --bench map -- /path/to/crest-out [roster.csv]

#![allow(clippy::unwrap_used)]

use arrow::array::RecordBatch;
use crest_core::storage::Location;
use crest_core::window::DateRange;
use crest_transforms::platforms::{tiktok, Mapper};
use crest_transforms::{quality, FxRates, Granularity, Roster, StandardWindow, TransformConfig};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn parquet_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            parquet_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let Some(dir) = args.first() else {
        eprintln!("usage: cargo bench -p crest-transforms --bench map -- CREST_OUT [ROSTER.csv]");
        return;
    };
    let mut files = Vec::new();
    parquet_files(&Path::new(dir).join("raw/tiktok/ad_daily"), &mut files);
    let batches: Vec<RecordBatch> = files
        .iter()
        .flat_map(|f| {
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(f).unwrap())
                .unwrap()
                .build()
                .unwrap()
        })
        .map(|b| b.unwrap())
        .collect();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let roster = match args.get(1) {
        Some(r) => Roster::parse(r, &std::fs::read(r).unwrap()).unwrap(),
        None => Roster::empty(),
    };
    let day = chrono::NaiveDate::from_ymd_opt(2000, 1, 1).unwrap();
    let config = TransformConfig {
        input: Location::parse(dir).unwrap(),
        output: Location::parse(dir).unwrap(),
        range: DateRange::new(day, day + chrono::Days::new(20_000)).unwrap(),
        granularity: Granularity::Day,
        roster,
        fx: FxRates::identity("USD"),
        standard: StandardWindow::default(),
        wait_for_lease: std::time::Duration::ZERO,
    };
    for round in 0..3 {
        let mut mapper = Mapper::new(&config, "20260101T000000Z-bench");
        // As `crest transform` works: a batch is mapped, checked and let go, so
        // memory stays flat however many rows pass.
        let (mut map_s, mut check_s, mut kept) = (0.0, 0.0, 0);
        for b in &batches {
            let t = Instant::now();
            let mapped = (tiktok::PLATFORM.map)(&mut mapper, b).unwrap();
            map_s += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let checked = quality::check("tiktok", vec![mapped], config.range).unwrap();
            kept += checked.canonical.iter().map(|b| b.num_rows()).sum::<usize>();
            check_s += t.elapsed().as_secs_f64();
        }
        assert_eq!(kept, rows);
        println!(
            "round {round}: {rows} rows · map {:.0} rows/s · checks {:.0} rows/s · map + checks {:.0} rows/s (one core)",
            rows as f64 / map_s,
            rows as f64 / check_s,
            rows as f64 / (map_s + check_s)
        );
    }
}
