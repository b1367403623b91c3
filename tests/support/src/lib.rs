//! What crest's tests share, so each test file says only what it tests: the
//! sandbox started on a free loopback port, a command run to a deadline (a
//! hung run fails its test), the warehouse emulators' settings from
//! `scripts/emulators.sh`, and readers of the files a run wrote.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use arrow::array::RecordBatch;
use chrono::NaiveDate;
use crest_sandbox::{Sandbox, SandboxConfig};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

pub fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// The sandbox on 127.0.0.1, any free port.
pub async fn sandbox(config: SandboxConfig) -> Sandbox {
    Sandbox::start(config).await.expect("the sandbox starts on loopback")
}

/// Runs a command to completion within 3 minutes.
pub async fn run_cmd(mut cmd: tokio::process::Command) -> Output {
    cmd.kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(180), cmd.output())
        .await
        .expect("the command finishes within 3 minutes")
        .expect("the command starts")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn assert_ok(o: &Output) {
    assert!(o.status.success(), "failed ({:?}):\n{}", o.status.code(), stderr(o));
}

/// A warehouse emulator's setting, written by `scripts/emulators.sh start`;
/// a test that needs one fails loudly without it.
pub fn emulator(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: the loader tests run against the warehouse emulators; \
             run ./scripts/test.sh, or `scripts/emulators.sh start DIR` and source DIR/env"
        )
    })
}

/// Every file under `dir` (none if it does not exist), sorted.
pub fn every_file(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(every_file(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The files under `dir` with extension `ext`, sorted.
pub fn files_under(dir: &Path, ext: &str) -> Vec<PathBuf> {
    every_file(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect()
}

/// Every row of the Parquet files under `dir`, file by file in name order.
pub fn read_parquet(dir: &Path) -> Vec<RecordBatch> {
    files_under(dir, "parquet")
        .into_iter()
        .flat_map(|f| {
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(f).unwrap())
                .unwrap()
                .build()
                .unwrap()
        })
        .map(|b| b.unwrap())
        .collect()
}
