//! What a query answers, as people and programs read it: a table, CSV, JSON.

use arrow::record_batch::RecordBatch;
use crest_core::target::Target;
use crest_core::{Error, Result};

/// Query results as a table, CSV or JSON (an array of objects).
pub fn render(batches: &[RecordBatch], format: &str) -> Result<String> {
    let err = |e: arrow::error::ArrowError| Error::Data(format!("cannot print the result: {e}"));
    match format {
        "table" => Ok(arrow::util::pretty::pretty_format_batches(batches)
            .map_err(err)?
            .to_string()),
        "csv" => {
            let mut buf = Vec::new();
            {
                let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(&mut buf);
                for b in batches {
                    w.write(b).map_err(err)?;
                }
            }
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        "json" => {
            let mut buf = Vec::new();
            {
                let mut w = arrow::json::ArrayWriter::new(&mut buf);
                for b in batches {
                    w.write(b).map_err(err)?;
                }
                w.finish().map_err(err)?;
            }
            if buf.is_empty() {
                buf.extend_from_slice(b"[]");
            }
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        other => Err(Error::Config(format!("--format {other}: use table, csv or json"))),
    }
}

/// Rows of a query as JSON objects, column names in lower case (Snowflake
/// answers in upper case).
pub async fn json_rows(target: &dyn Target, sql: &str) -> Result<Vec<serde_json::Map<String, serde_json::Value>>> {
    let batches = target.query(sql).await?;
    let rows: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_str(&render(&batches, "json")?)
        .map_err(|e| Error::Data(format!("cannot read the query's rows: {e}")))?;
    Ok(rows
        .into_iter()
        .map(|r| r.into_iter().map(|(k, v)| (k.to_lowercase(), v)).collect())
        .collect())
}
