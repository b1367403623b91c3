//! Test support shared by the organic and the Google Ads tests.
#![allow(dead_code, clippy::unwrap_used)]

use arrow::array::RecordBatch;
use std::path::{Path, PathBuf};

#[allow(unused_imports)]
pub use crest_testkit::{day, stderr};

/// The Parquet files under `dir`.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    crest_testkit::files_under(dir, "parquet")
}

/// Every row of a raw table (e.g. `raw/youtube/ads_daily`) under `out`.
pub fn read_raw(out: &Path, table: &str) -> Vec<RecordBatch> {
    crest_testkit::read_parquet(&out.join(table))
}
