//! Rows both ways: query results (JSON cells) into Arrow, and Arrow rows into
//! the protocol-buffer rows the Storage Write API takes.

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{
    DataType, Date32Type, Field, Float64Type, Int32Type, Int64Type, Schema, TimeUnit, TimestampMicrosecondType,
};
use crest_core::{Error, Result};
use gcp_bigquery_client::model::error_proto::ErrorProto;
use gcp_bigquery_client::model::table_row::TableRow;
use gcp_bigquery_client::model::table_schema::TableSchema;
use prost::encoding::{encode_key, encode_varint, WireType};
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto};
use std::sync::Arc;

pub fn errors_line(errs: &[ErrorProto]) -> String {
    errs.iter()
        .map(|e| {
            let m = e.message.clone().unwrap_or_default();
            m.split_whitespace().collect::<Vec<_>>().join(" ")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A query's result as BigQuery sends it: a schema and rows of JSON cells.
pub struct Rows {
    pub schema: Option<TableSchema>,
    rows: Vec<TableRow>,
}

impl Rows {
    pub fn new(schema: Option<TableSchema>) -> Self {
        Rows {
            schema,
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, rows: Vec<TableRow>) {
        self.rows.extend(rows);
    }

    fn cell(row: &TableRow, k: usize) -> Option<String> {
        let v = row.columns.as_ref()?.get(k)?.value.as_ref()?;
        match v {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }

    /// Every cell as text.
    pub fn text(&self) -> Vec<Vec<Option<String>>> {
        let n = self.schema.as_ref().and_then(|s| s.fields.as_ref()).map_or(0, Vec::len);
        self.rows
            .iter()
            .map(|r| (0..n).map(|k| Self::cell(r, k)).collect())
            .collect()
    }

    /// One Arrow batch: integers, floats and booleans typed; NUMERIC kept as
    /// its exact decimal text; TIMESTAMP as RFC 3339 UTC; the rest as text.
    pub fn into_batch(self) -> Result<RecordBatch> {
        let fields = self.schema.as_ref().and_then(|s| s.fields.clone()).unwrap_or_default();
        let mut out_fields = Vec::with_capacity(fields.len());
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(fields.len());
        for (k, f) in fields.iter().enumerate() {
            let ty = serde_json::to_value(&f.r#type)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let cells = self.rows.iter().map(|r| Self::cell(r, k));
            let bad = |v: &str| Error::Upstream(format!("BigQuery sent '{v}' for {} ({ty})", f.name));
            let (dt, col): (DataType, ArrayRef) = match ty.as_str() {
                "INTEGER" | "INT64" => (
                    DataType::Int64,
                    Arc::new(
                        cells
                            .map(|c| c.map(|v| v.parse::<i64>().map_err(|_| bad(&v))).transpose())
                            .collect::<Result<Int64Array>>()?,
                    ),
                ),
                "FLOAT" | "FLOAT64" => (
                    DataType::Float64,
                    Arc::new(
                        cells
                            .map(|c| c.map(|v| v.parse::<f64>().map_err(|_| bad(&v))).transpose())
                            .collect::<Result<Float64Array>>()?,
                    ),
                ),
                "BOOLEAN" | "BOOL" => (
                    DataType::Boolean,
                    Arc::new(
                        cells
                            .map(|c| c.map(|v| v.eq_ignore_ascii_case("true")))
                            .collect::<BooleanArray>(),
                    ),
                ),
                "TIMESTAMP" => (
                    DataType::Utf8,
                    Arc::new(
                        cells
                            .map(|c| c.map(|v| timestamp_text(&v).ok_or_else(|| bad(&v))).transpose())
                            .collect::<Result<StringArray>>()?,
                    ),
                ),
                _ => (DataType::Utf8, Arc::new(cells.collect::<StringArray>())),
            };
            out_fields.push(Field::new(&f.name, dt, true));
            columns.push(col);
        }
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(self.rows.len()));
        RecordBatch::try_new_with_options(Arc::new(Schema::new(out_fields)), columns, &options)
            .map_err(|e| Error::Upstream(format!("BigQuery sent rows crest cannot read: {e}")))
    }
}

/// BigQuery sends TIMESTAMP cells as seconds (`1.7e9`) or, with
/// int64 timestamps, microseconds.
fn timestamp_text(v: &str) -> Option<String> {
    let micros = if let Ok(us) = v.parse::<i64>() {
        // Microseconds when the number is too large to be seconds.
        if us.abs() > 100_000_000_000 {
            us
        } else {
            us * 1_000_000
        }
    } else {
        (v.parse::<f64>().ok()? * 1e6).round() as i64
    };
    chrono::DateTime::from_timestamp_micros(micros).map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
}

/// The protocol-buffer message a staging table's rows are written as: field
/// k+1 is column k.
pub fn descriptor(schema: &Schema) -> Result<DescriptorProto> {
    let field = |k: usize, f: &Field| -> Result<FieldDescriptorProto> {
        let t = match f.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Decimal128(..) => Type::String,
            DataType::Int32 | DataType::Date32 => Type::Int32,
            DataType::Int64 | DataType::Timestamp(TimeUnit::Microsecond, _) => Type::Int64,
            DataType::Float64 => Type::Double,
            DataType::Boolean => Type::Bool,
            other => {
                return Err(Error::Data(format!(
                    "column {} has type {other}, which crest cannot write to BigQuery",
                    f.name()
                )))
            }
        };
        Ok(FieldDescriptorProto {
            name: Some(f.name().clone()),
            number: Some(k as i32 + 1),
            label: Some(Label::Optional as i32),
            r#type: Some(t as i32),
            ..Default::default()
        })
    };
    Ok(DescriptorProto {
        name: Some("CrestRow".into()),
        field: schema
            .fields()
            .iter()
            .enumerate()
            .map(|(k, f)| field(k, f))
            .collect::<Result<_>>()?,
        ..Default::default()
    })
}

/// Encodes Arrow rows as serialized protocol-buffer messages (NULLs are
/// left out, which BigQuery reads as NULL).
pub struct Encoder {
    names: Vec<String>,
}

impl Encoder {
    pub fn new(schema: &Schema) -> Result<Self> {
        descriptor(schema)?;
        Ok(Encoder {
            names: schema.fields().iter().map(|f| f.name().clone()).collect(),
        })
    }

    pub fn encode(&mut self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
        let n = batch.num_rows();
        let mut rows: Vec<Vec<u8>> = (0..n).map(|_| Vec::with_capacity(256)).collect();
        for (k, name) in self.names.iter().enumerate() {
            let tag = k as u32 + 1;
            let Some(col) = batch.column_by_name(name) else {
                continue;
            };
            match col.data_type() {
                DataType::Utf8 => {
                    let a = col.as_string::<i32>();
                    for (i, row) in rows.iter_mut().enumerate() {
                        if a.is_valid(i) {
                            let v = a.value(i).as_bytes();
                            encode_key(tag, WireType::LengthDelimited, row);
                            encode_varint(v.len() as u64, row);
                            row.extend_from_slice(v);
                        }
                    }
                }
                DataType::Decimal128(..) => {
                    let a = col.as_primitive::<arrow::datatypes::Decimal128Type>();
                    for (i, row) in rows.iter_mut().enumerate() {
                        if a.is_valid(i) {
                            let v = a.value_as_string(i);
                            encode_key(tag, WireType::LengthDelimited, row);
                            encode_varint(v.len() as u64, row);
                            row.extend_from_slice(v.as_bytes());
                        }
                    }
                }
                DataType::Int32 => varints(
                    col.as_primitive::<Int32Type>().iter().map(|v| v.map(i64::from)),
                    tag,
                    &mut rows,
                ),
                DataType::Date32 => varints(
                    col.as_primitive::<Date32Type>().iter().map(|v| v.map(i64::from)),
                    tag,
                    &mut rows,
                ),
                DataType::Int64 => varints(col.as_primitive::<Int64Type>().iter(), tag, &mut rows),
                DataType::Timestamp(TimeUnit::Microsecond, _) => {
                    varints(col.as_primitive::<TimestampMicrosecondType>().iter(), tag, &mut rows)
                }
                DataType::Boolean => varints(col.as_boolean().iter().map(|v| v.map(i64::from)), tag, &mut rows),
                DataType::Float64 => {
                    for (row, v) in rows.iter_mut().zip(col.as_primitive::<Float64Type>().iter()) {
                        if let Some(v) = v {
                            encode_key(tag, WireType::SixtyFourBit, row);
                            row.extend_from_slice(&v.to_le_bytes());
                        }
                    }
                }
                other => {
                    return Err(Error::Data(format!(
                        "column {name} has type {other}, which crest cannot write to BigQuery"
                    )))
                }
            }
        }
        Ok(rows)
    }
}

fn varints(values: impl Iterator<Item = Option<i64>>, tag: u32, rows: &mut [Vec<u8>]) {
    for (row, v) in rows.iter_mut().zip(values) {
        if let Some(v) = v {
            encode_key(tag, WireType::Varint, row);
            // Protocol buffers' int32/int64: two's complement as an unsigned varint.
            encode_varint(v as u64, row);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_as_seconds_or_micros() {
        assert_eq!(timestamp_text("1.7673984E9").unwrap(), "2026-01-03T00:00:00.000000Z");
        assert_eq!(
            timestamp_text("1767398400000000").unwrap(),
            "2026-01-03T00:00:00.000000Z"
        );
    }

    #[test]
    fn rows_encode_as_protobuf_fields_and_skip_nulls() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Utf8, true),
            Field::new("b", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![Some("hi"), None])),
                Arc::new(Int64Array::from(vec![Some(-1), Some(300)])),
            ],
        )
        .unwrap();
        let rows = Encoder::new(&schema).unwrap().encode(&batch).unwrap();
        // field 1 (string "hi"), field 2 (varint -1 as ten bytes)
        assert_eq!(&rows[0][..4], &[0x0a, 2, b'h', b'i']);
        assert_eq!(rows[0][4], 0x10);
        assert_eq!(rows[0].len(), 4 + 1 + 10);
        // field 2 only: 300 = 0xac 0x02
        assert_eq!(rows[1], vec![0x10, 0xac, 0x02]);
    }
}
