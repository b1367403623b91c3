//! The partitioned Parquet writer: Arrow record batches → Parquet (zstd) files
//! in `{out}/{table}/date=YYYY-MM-DD/{run_id}-{n}.parquet`, where `table` is
//! `raw/{platform}/{report}` for extracts and e.g. `canonical/creator_performance`
//! for the transform.
//!
//! A raw file holds one account × one date, so a later run can replace exactly
//! that account's day. Files are encoded in memory (bounded by
//! `max_rows_per_file`) and appear with a single atomic `put`; every file
//! carries its identity in the Parquet key-value metadata (`crest.*`).

use crate::storage::Location;
use crate::{Error, Result};
use arrow::array::{Array, AsArray, RecordBatch, UInt32Array};
use arrow::datatypes::{DataType, Date32Type, SchemaRef};
use bytes::Bytes;
use chrono::NaiveDate;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// A committed raw file, as the manifest records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RawFile {
    /// Relative to the output location.
    pub path: String,
    /// The account a raw file belongs to; absent for files that hold every account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    pub date: NaiveDate,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// Metadata keys written into every raw file.
pub const META_ACCOUNT: &str = "crest.account_id";
pub const META_RUN: &str = "crest.run_id";
pub const META_PLATFORM: &str = "crest.platform";
pub const META_REPORT: &str = "crest.report";
pub const META_EXTRACTED_AT: &str = "crest.extracted_at";
/// Field metadata: `"true"` keeps a text column out of dictionary encoding
/// (long, mostly unique values such as JSON as served).
pub const PLAIN_ENCODING: &str = "crest.plain_encoding";

/// The table folder of a platform's raw report.
/// The two columns every raw row ends with: `extracted_at` (UTC µs) and `run_id`.
pub fn run_columns(rows: usize, run_id: &str, extracted_at_us: i64) -> [arrow::array::ArrayRef; 2] {
    let extracted = arrow::array::TimestampMicrosecondArray::from_value(extracted_at_us, rows).with_timezone("UTC");
    let run = arrow::array::StringArray::from_iter_values(std::iter::repeat_n(run_id, rows));
    [std::sync::Arc::new(extracted), std::sync::Arc::new(run)]
}

pub fn raw_table(platform: &str, report: &str) -> String {
    format!("raw/{platform}/{report}")
}

/// A table's partition folder for one date.
pub fn partition_dir(table: &str, date: NaiveDate) -> String {
    format!("{table}/date={date}")
}

/// Everything a slice writer needs to name and label its files.
pub struct FileIdentity<'a> {
    /// The table folder, e.g. `raw/tiktok/ad_daily`.
    pub table: String,
    pub platform: &'a str,
    pub report: &'a str,
    pub run_id: &'a str,
    /// `None` for files that hold every account (canonical tables).
    pub account_id: Option<&'a str>,
    pub extracted_at: &'a str,
}

struct OpenFile {
    writer: ArrowWriter<Vec<u8>>,
    rows: u64,
}

/// Writes one account's rows for one slice, split by the date column.
/// Nothing is visible until [`SliceWriter::finish`]; [`SliceWriter::abort`]
/// removes files a roll-over already put.
/// Raw extracts are many small files (an account × a day each), written once
/// and read once by the transform: LZ4, whose per-page cost is small. What
/// users and warehouses read (canonical, quarantine) is ZSTD: smaller files.
fn compression_for(table: &str) -> Compression {
    if table.starts_with("raw/") {
        Compression::LZ4_RAW
    } else {
        Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default())
    }
}

pub struct SliceWriter<'a> {
    out: &'a Location,
    id: FileIdentity<'a>,
    schema: SchemaRef,
    date_column: usize,
    props: WriterProperties,
    max_rows_per_file: u64,
    next_n: &'a AtomicU64,
    open: BTreeMap<NaiveDate, OpenFile>,
    written: Vec<RawFile>,
}

impl<'a> SliceWriter<'a> {
    pub fn new(
        out: &'a Location,
        id: FileIdentity<'a>,
        schema: SchemaRef,
        date_column: &str,
        next_n: &'a AtomicU64,
    ) -> Result<Self> {
        let date_column = schema
            .index_of(date_column)
            .map_err(|e| Error::Config(format!("raw schema has no date column: {e}")))?;
        let mut meta = vec![
            KeyValue::new(META_RUN.to_string(), id.run_id.to_string()),
            KeyValue::new(META_PLATFORM.to_string(), id.platform.to_string()),
            KeyValue::new(META_REPORT.to_string(), id.report.to_string()),
            KeyValue::new(META_EXTRACTED_AT.to_string(), id.extracted_at.to_string()),
        ];
        if let Some(account) = id.account_id {
            meta.push(KeyValue::new(META_ACCOUNT.to_string(), account.to_string()));
        }
        // Dictionaries pay off for repeated strings (ids, names, URLs), not for
        // metrics, where they cost CPU for little size.
        let mut props = WriterProperties::builder()
            .set_compression(compression_for(&id.table))
            .set_max_row_group_size(128 * 1024)
            .set_dictionary_enabled(false)
            .set_key_value_metadata(Some(meta));
        for field in schema.fields() {
            let plain = field.metadata().get(PLAIN_ENCODING).is_some_and(|v| v == "true");
            if matches!(field.data_type(), DataType::Utf8 | DataType::LargeUtf8) && !plain {
                props = props.set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), true);
            }
        }
        let props = props.build();
        Ok(SliceWriter {
            out,
            id,
            schema,
            date_column,
            props,
            max_rows_per_file: 1_000_000,
            next_n,
            open: BTreeMap::new(),
            written: Vec::new(),
        })
    }

    pub fn with_max_rows_per_file(mut self, rows: u64) -> Self {
        self.max_rows_per_file = rows.max(1);
        self
    }

    /// Appends a batch; rows are routed to their date's file.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let dates = batch
            .column(self.date_column)
            .as_primitive_opt::<Date32Type>()
            .ok_or_else(|| Error::Config("raw date column must be Date32".into()))?;
        if dates.null_count() > 0 {
            return Err(Error::Upstream("a report row has no date".into()));
        }
        let first = dates.value(0);
        let mut touched = Vec::new();
        if dates.values().iter().all(|d| *d == first) {
            touched.push(first);
            self.write_date(first, batch.clone()).await?;
        } else {
            let mut groups: BTreeMap<i32, Vec<u32>> = BTreeMap::new();
            for (i, d) in dates.values().iter().enumerate() {
                groups.entry(*d).or_default().push(i as u32);
            }
            for (day, idx) in groups {
                let idx = UInt32Array::from(idx);
                let part = arrow::compute::take_record_batch(batch, &idx)
                    .map_err(|e| Error::Upstream(format!("cannot split a report page by date: {e}")))?;
                touched.push(day);
                self.write_date(day, part).await?;
            }
        }
        self.settle(&touched)
    }

    /// Reports are served in date order as a rule: a date this batch did not
    /// touch is probably complete, so its open row group is encoded now. That
    /// keeps memory to about one date's encoder state, whatever the slice size
    /// (out-of-order rows still land correctly, in another row group).
    fn settle(&mut self, touched: &[i32]) -> Result<()> {
        for (date, file) in self.open.iter_mut() {
            let day = Date32Type::from_naive_date(*date);
            if file.writer.in_progress_rows() > 0 && !touched.contains(&day) {
                file.writer
                    .flush()
                    .map_err(|e| Error::storage("cannot encode Parquet", e))?;
            }
        }
        Ok(())
    }

    async fn write_date(&mut self, day: i32, batch: RecordBatch) -> Result<()> {
        let date = Date32Type::to_naive_date(day);
        if !self.open.contains_key(&date) {
            let writer = ArrowWriter::try_new(Vec::new(), self.schema.clone(), Some(self.props.clone()))
                .map_err(|e| Error::storage("cannot start a Parquet file", e))?;
            self.open.insert(date, OpenFile { writer, rows: 0 });
        }
        let full = {
            let file = self.open.get_mut(&date).expect("inserted above");
            file.writer
                .write(&batch)
                .map_err(|e| Error::storage("cannot encode Parquet", e))?;
            file.rows += batch.num_rows() as u64;
            file.rows >= self.max_rows_per_file
        };
        if full {
            let file = self.open.remove(&date).expect("present");
            let raw = self.put(date, file).await?;
            self.written.push(raw);
        }
        Ok(())
    }

    async fn put(&self, date: NaiveDate, file: OpenFile) -> Result<RawFile> {
        let bytes = file
            .writer
            .into_inner()
            .map_err(|e| Error::storage("cannot finish a Parquet file", e))?;
        let n = self.next_n.fetch_add(1, Ordering::Relaxed);
        let path = format!("{}/{}-{n}.parquet", partition_dir(&self.id.table, date), self.id.run_id);
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let len = bytes.len() as u64;
        self.out.put(&path, Bytes::from(bytes)).await?;
        Ok(RawFile {
            path,
            account_id: self.id.account_id.map(str::to_string),
            date,
            rows: file.rows,
            bytes: len,
            sha256,
        })
    }

    /// Puts the file of `date` now (the caller has no more rows for it), so
    /// memory does not grow with the number of dates written.
    pub async fn complete(&mut self, date: NaiveDate) -> Result<()> {
        if let Some(file) = self.open.remove(&date) {
            let raw = self.put(date, file).await?;
            self.written.push(raw);
        }
        Ok(())
    }

    /// Puts every open file; returns all files of this slice.
    pub async fn finish(mut self) -> Result<Vec<RawFile>> {
        let open = std::mem::take(&mut self.open);
        for (date, file) in open {
            match self.put(date, file).await {
                Ok(raw) => self.written.push(raw),
                Err(e) => {
                    self.abort().await;
                    return Err(e);
                }
            }
        }
        Ok(std::mem::take(&mut self.written))
    }

    /// Removes whatever this slice already put (best effort: a resumed run
    /// also removes its own uncommitted files).
    pub async fn abort(mut self) {
        for f in std::mem::take(&mut self.written) {
            if let Err(e) = self.out.delete(&f.path).await {
                tracing::warn!(error = %e, path = %f.path, "cannot remove an uncommitted file");
            }
        }
    }
}

/// Reads the account a raw file belongs to from its Parquet footer.
/// What a raw file's footer says: its account and row count.
#[derive(Debug, Clone, PartialEq)]
pub struct Footer {
    pub account_id: Option<String>,
    pub rows: u64,
}

/// Reads a raw file's footer; `None` (with a warning) for a file that is not readable Parquet.
pub async fn file_footer(out: &Location, rel: &str) -> Result<Option<Footer>> {
    use parquet::arrow::async_reader::ParquetObjectReader;
    use parquet::arrow::ParquetRecordBatchStreamBuilder;
    let reader = ParquetObjectReader::new(out.store().clone(), out.path(rel));
    let builder = match ParquetRecordBatchStreamBuilder::new(reader).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(path = %rel, error = %e, "cannot read a raw file's footer; leaving it");
            return Ok(None);
        }
    };
    let file = builder.metadata().file_metadata();
    let account_id = file
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == META_ACCOUNT).and_then(|k| k.value.clone()));
    Ok(Some(Footer {
        account_id,
        rows: u64::try_from(file.num_rows()).unwrap_or(0),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Date32Array, Int64Array};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    #[tokio::test]
    async fn rows_land_in_one_file_per_date_on_any_object_store() {
        let store = Arc::new(object_store::memory::InMemory::new());
        let out = Location::from_store(store, "lake", "memory://lake");
        let schema = Arc::new(Schema::new(vec![
            Field::new("day", DataType::Date32, false),
            Field::new("n", arrow::datatypes::DataType::Int64, false),
        ]));
        let d = |s: &str| Date32Type::from_naive_date(NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap());
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Date32Array::from(vec![
                    d("2026-01-02"),
                    d("2026-01-01"),
                    d("2026-01-02"),
                ])),
                Arc::new(Int64Array::from(vec![1, 2, 3])),
            ],
        )
        .unwrap();
        let next = AtomicU64::new(0);
        let id = FileIdentity {
            table: raw_table("tiktok", "ad_daily"),
            platform: "tiktok",
            report: "ad_daily",
            run_id: "r1",
            account_id: Some("42"),
            extracted_at: "2026-01-03T00:00:00Z",
        };
        let mut w = SliceWriter::new(&out, id, schema, "day", &next).unwrap();
        w.write(&batch).await.unwrap();
        assert!(
            out.list("raw").await.unwrap().is_empty(),
            "nothing visible before finish"
        );
        let files = w.finish().await.unwrap();
        let mut got: Vec<(String, u64)> = files.iter().map(|f| (f.path.clone(), f.rows)).collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("raw/tiktok/ad_daily/date=2026-01-01/r1-0.parquet".to_string(), 1),
                ("raw/tiktok/ad_daily/date=2026-01-02/r1-1.parquet".to_string(), 2),
            ]
        );
        for f in &files {
            let bytes = out.get(&f.path).await.unwrap().unwrap();
            assert_eq!(hex::encode(Sha256::digest(&bytes)), f.sha256);
            let footer = file_footer(&out, &f.path).await.unwrap().unwrap();
            assert_eq!(footer.account_id.as_deref(), Some("42"));
            assert_eq!(footer.rows, f.rows);
        }
    }
}
