//! Where a property's export is read: BigQuery (`analytics_{property}`, a
//! daily table per day, the intraday table for a day not exported yet), or
//! files a team exported with the same schema (Parquet, or newline-delimited
//! JSON as BigQuery's JSON export writes it).

use crate::event::{self, Event, REQUIRED_COLUMNS, SESSION_START};
use chrono::{Days, NaiveDate, Utc};
use crest_bigquery::{BigQuery, BigQueryTarget};
use crest_core::storage::Location;
use crest_core::{Error, Result};
use futures::TryStreamExt;
use parquet::arrow::async_reader::ParquetObjectReader;
use parquet::arrow::ParquetRecordBatchStreamBuilder;

/// One property's export.
pub enum Export {
    BigQuery { bq: Box<BigQuery>, dataset: String },
    Files { root: Location, files: Vec<String> },
}

/// Days GA4 may take to write a day's table (and adds late events to it).
pub const LATE_DAYS: u64 = 3;

/// The GA4 export's dataset for a property.
pub fn dataset(property_id: &str) -> String {
    format!("analytics_{property_id}")
}

impl Export {
    /// The export in BigQuery project `project`: the dataset must exist.
    pub async fn bigquery(project: &str, property_id: &str) -> Result<Export> {
        let dataset = dataset(property_id);
        let bq = BigQuery::connect(BigQueryTarget::parse(&format!("bigquery://{project}/{dataset}"))?).await?;
        if !bq.dataset_exists().await? {
            return Err(Error::Config(format!(
                "{project}.{dataset} does not exist: link GA4 property {property_id} to BigQuery (Admin › BigQuery links), or check --project and --property-id"
            )));
        }
        Ok(Export::BigQuery {
            bq: Box::new(bq),
            dataset,
        })
    }

    /// Exported files under `spec` (a folder, or one file): `.parquet`,
    /// `.json`, `.jsonl` or `.ndjson`.
    pub async fn files(spec: &str) -> Result<Export> {
        let spec = spec.trim().trim_end_matches('/');
        let is_file = file_kind(spec).is_some();
        let (root, files) = if is_file {
            let (dir, name) = crest_core::storage::split_file(spec, false)?;
            if dir.get(&name).await?.is_none() {
                return Err(Error::Config(format!("--from {spec} does not exist")));
            }
            (dir, vec![name])
        } else {
            let root = Location::parse_existing(spec)?;
            let mut files: Vec<String> = root
                .list("")
                .await?
                .iter()
                .map(|m| root.relative(&m.location))
                .filter(|r| file_kind(r).is_some())
                .collect();
            files.sort();
            (root, files)
        };
        if files.is_empty() {
            return Err(Error::Config(format!(
                "--from {spec} holds no GA4 export files (.parquet, .json, .jsonl, .ndjson)"
            )));
        }
        Ok(Export::Files { root, files })
    }

    /// The events of `date` that attribution uses: sessions' starts and the
    /// `conversions`. An API error or a file that is not an export is an error.
    pub async fn day(&self, date: NaiveDate, conversions: &[String]) -> Result<Vec<Event>> {
        match self {
            Export::BigQuery { bq, dataset } => bigquery_day(bq, dataset, date, conversions).await,
            Export::Files { root, files } => {
                let mut out = Vec::new();
                for rel in files {
                    // A file named after its day (events_YYYYMMDD…) is read only for that day.
                    if file_day(rel).is_some_and(|d| d != date) {
                        continue;
                    }
                    read_file(root, rel, conversions, &mut |e| {
                        if e.date == date {
                            out.push(e)
                        }
                    })
                    .await?;
                }
                Ok(out)
            }
        }
    }

    /// API calls made (BigQuery), for the manifest.
    pub fn calls(&self) -> u64 {
        match self {
            Export::BigQuery { bq, .. } => bq.calls(),
            Export::Files { .. } => 0,
        }
    }
}

/// The export's columns attribution reads, where the table has them.
const READ_COLUMNS: &[&str] = &[
    "event_date",
    "event_timestamp",
    "event_name",
    "event_params",
    "user_id",
    "user_pseudo_id",
    "collected_traffic_source",
    "session_traffic_source_last_click",
    "ecommerce",
];

/// The event names a query keeps, as SQL literals: GA4 event names are
/// letters, digits and underscores (checked on the command line).
fn names_sql(conversions: &[String]) -> String {
    std::iter::once(SESSION_START)
        .chain(conversions.iter().map(String::as_str))
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn bigquery_day(bq: &BigQuery, dataset: &str, date: NaiveDate, conversions: &[String]) -> Result<Vec<Event>> {
    let day = date.format("%Y%m%d");
    let mut table = None;
    for name in [format!("events_{day}"), format!("events_intraday_{day}")] {
        if let Some(columns) = bq.columns(&name).await? {
            table = Some((name, columns));
            break;
        }
    }
    let Some((table, columns)) = table else {
        // GA4 writes a day's table during the next day (later when the
        // property is busy) and the intraday table holds today's. A day
        // within GA4's late-events window without either is not exported
        // yet, read again by the next run; an older one is a gap the user
        // must know about.
        let recent = Utc::now()
            .date_naive()
            .checked_sub_days(Days::new(LATE_DAYS))
            .unwrap_or(date);
        if date >= recent {
            tracing::info!(dataset = %dataset, date = %date, "no export table for the day yet: read again by the next run");
            return Ok(Vec::new());
        }
        return Err(Error::Config(format!(
            "{dataset}.events_{day} does not exist: GA4 exported nothing for {date} (the link may be newer); start --start at the first exported day"
        )));
    };
    let missing: Vec<&str> = REQUIRED_COLUMNS
        .iter()
        .copied()
        .filter(|c| !columns.iter().any(|x| x == c))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Config(format!(
            "{dataset}.{table} has no column {}: not a GA4 export table",
            missing.join(", ")
        )));
    }
    // Only the columns crest reads (the export has dozens: items, device,
    // geo…), each named from the table's own schema, never from input.
    let wanted: Vec<&str> = READ_COLUMNS
        .iter()
        .copied()
        .filter(|c| columns.iter().any(|x| x == c))
        .collect();
    let sql = format!(
        "SELECT TO_JSON_STRING(t) FROM (SELECT {} FROM {} AS e WHERE e.event_name IN ({})) AS t",
        wanted.iter().map(|c| format!("e.`{c}`")).collect::<Vec<_>>().join(", "),
        bq.qualified(&table),
        names_sql(conversions)
    );
    let rows = bq.select_text(&sql, &format!("reading {dataset}.{table}")).await?;
    let mut out = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let json = row.first().cloned().flatten().unwrap_or_default();
        match event::parse(json.as_bytes(), conversions) {
            Ok(Some(e)) => out.push(e),
            Ok(None) => {}
            Err(why) => return Err(Error::Data(format!("{dataset}.{table} row {}: {why}", i + 1))),
        }
    }
    Ok(out)
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Parquet,
    Json,
}

fn file_kind(name: &str) -> Option<Kind> {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".parquet") {
        Some(Kind::Parquet)
    } else if [".json", ".jsonl", ".ndjson"].iter().any(|s| lower.ends_with(s)) {
        Some(Kind::Json)
    } else {
        None
    }
}

/// The day a file is named after (`events_20261201.json`,
/// `events_intraday_20261201-000.parquet`), if it is.
fn file_day(rel: &str) -> Option<NaiveDate> {
    let name = rel.rsplit('/').next()?;
    let rest = name.strip_prefix("events_")?;
    let rest = rest.strip_prefix("intraday_").unwrap_or(rest);
    NaiveDate::parse_from_str(rest.get(..8)?, "%Y%m%d").ok()
}

async fn read_file(root: &Location, rel: &str, conversions: &[String], keep: &mut dyn FnMut(Event)) -> Result<()> {
    let parse_lines = |bytes: &[u8], keep: &mut dyn FnMut(Event), first_line: usize| -> Result<usize> {
        let mut n = first_line;
        for line in bytes.split(|b| *b == b'\n') {
            n += 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match event::parse(line, conversions) {
                Ok(Some(e)) => keep(e),
                Ok(None) => {}
                Err(why) => return Err(Error::Config(format!("{root}/{rel} line {n}: {why}"))),
            }
        }
        Ok(n)
    };
    match file_kind(rel) {
        Some(Kind::Json) => {
            let bytes = root
                .get(rel)
                .await?
                .ok_or_else(|| Error::Config(format!("{root}/{rel} disappeared while reading")))?;
            parse_lines(&bytes, keep, 0)?;
        }
        Some(Kind::Parquet) => {
            let reader = ParquetObjectReader::new(root.store().clone(), root.path(rel));
            let builder = ParquetRecordBatchStreamBuilder::new(reader)
                .await
                .map_err(|e| Error::Config(format!("{root}/{rel} is not a readable Parquet file: {e}")))?;
            let missing: Vec<&str> = REQUIRED_COLUMNS
                .iter()
                .copied()
                .filter(|c| builder.schema().field_with_name(c).is_err())
                .collect();
            if !missing.is_empty() {
                return Err(Error::Config(format!(
                    "{root}/{rel} has no column {}: not a GA4 export",
                    missing.join(", ")
                )));
            }
            let mut stream = builder
                .with_batch_size(8 * 1024)
                .build()
                .map_err(|e| Error::Config(format!("cannot read {root}/{rel}: {e}")))?;
            let mut line = 0;
            while let Some(batch) = stream
                .try_next()
                .await
                .map_err(|e| Error::Data(format!("cannot read {root}/{rel}: {e}")))?
            {
                // The nested columns as the export's JSON spells them, then
                // the one parser every input goes through.
                let mut json = Vec::new();
                let mut writer = arrow::json::LineDelimitedWriter::new(&mut json);
                writer
                    .write(&batch)
                    .and_then(|_| writer.finish())
                    .map_err(|e| Error::Data(format!("cannot read {root}/{rel}: {e}")))?;
                line = parse_lines(&json, keep, line)?;
            }
        }
        None => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_named_after_a_day_are_read_for_that_day_only() {
        let d = NaiveDate::from_ymd_opt(2026, 12, 1);
        assert_eq!(file_day("x/events_20261201.json"), d);
        assert_eq!(file_day("events_intraday_20261201-000000000000.parquet"), d);
        assert_eq!(file_day("export.ndjson"), None);
        assert!(file_kind("a.NDJSON").is_some() && file_kind("a.csv").is_none());
    }

    #[test]
    fn the_query_keeps_sessions_and_the_conversions() {
        assert_eq!(names_sql(&["purchase".into()]), "'session_start', 'purchase'");
    }
}
