//! Benchmarks: per platform × creator tier, the CTR a creator is judged
//! against (a fraction) and the CPC ceiling (reporting currency), in force
//! from `effective_from` so a recalibration does not rewrite earlier
//! evaluations, and optionally the trailing `evaluation_days` the tier is
//! judged over (campaign-to-date when empty), and optionally the
//! `conversion_source` its no-conversion rule reads: the platforms' reported
//! conversions (`platform`, the default) or the brand's site conversions
//! credited by `crest attribute` under one model (`site_last`, …).
//!
//! The file is read whole and checked before anything is written: one bad
//! cell stops the load with its line and column, and the target keeps the
//! benchmarks it had.

use crate::warehouse::Literal;
use crate::{Error, Result};
use arrow::array::{ArrayRef, Date32Builder, Decimal128Builder, Int64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Date32Type, Field, Schema, SchemaRef};
use chrono::NaiveDate;
use rust_decimal::Decimal;
use std::collections::BTreeSet;
use std::sync::Arc;

pub const TABLE: &str = "benchmarks";
pub const PLATFORMS: &[&str] = &["tiktok", "meta", "youtube"];
pub const CREATOR_TIERS: &[&str] = &["nano", "micro", "mid", "macro"];
/// Scale of the decimal columns, as the canonical table's money.
const SCALE: u32 = 6;
/// A benchmark without a date has always been in force.
const ALWAYS: NaiveDate = match NaiveDate::from_ymd_opt(2000, 1, 1) {
    Some(d) => d,
    None => NaiveDate::MIN,
};

/// Where a tier's conversions come from: the platforms' reports, or the
/// site's conversions under one of `crest attribute`'s models.
pub const CONVERSION_SOURCES: &[&str] = &[
    "platform",
    "site_first",
    "site_last",
    "site_linear",
    "site_position",
    "site_time_decay",
];

/// The benchmarks that ship with crest (`benchmarks/default.csv`).
pub const DEFAULT_CSV: &str = include_str!("../benchmarks/default.csv");

#[derive(Debug, Clone, PartialEq)]
pub struct Benchmark {
    pub platform: String,
    pub creator_tier: String,
    pub ctr_benchmark: Decimal,
    pub cpc_ceiling: Decimal,
    pub effective_from: NaiveDate,
    pub evaluation_days: Option<i64>,
    /// One of [`CONVERSION_SOURCES`].
    pub conversion_source: String,
}

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("platform", DataType::Utf8, false),
        Field::new("creator_tier", DataType::Utf8, false),
        Field::new("ctr_benchmark", DataType::Decimal128(38, SCALE as i8), false),
        Field::new("cpc_ceiling", DataType::Decimal128(38, SCALE as i8), false),
        Field::new("effective_from", DataType::Date32, false),
        Field::new("evaluation_days", DataType::Int64, true),
        // Added later: benchmarks loaded before it read null, the platforms' conversions.
        Field::new("conversion_source", DataType::Utf8, true),
    ]))
}

/// Parses and checks a benchmarks CSV:
/// `platform,creator_tier,ctr_benchmark,cpc_ceiling[,effective_from][,evaluation_days][,conversion_source]`.
pub fn parse(name: &str, bytes: &[u8]) -> Result<Vec<Benchmark>> {
    let bad = |line: usize, column: &str, m: String| Error::Config(format!("{name} line {line}, {column}: {m}"));
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(bytes);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| Error::Config(format!("{name}: cannot read the header line: {e}")))?
        .iter()
        .map(str::to_lowercase)
        .collect();
    let col = |n: &str| headers.iter().position(|h| h == n);
    let required = ["platform", "creator_tier", "ctr_benchmark", "cpc_ceiling"];
    let missing: Vec<&str> = required.iter().copied().filter(|n| col(n).is_none()).collect();
    if !missing.is_empty() {
        return Err(Error::Config(format!(
            "{name}: the header has no {} column; write platform,creator_tier,ctr_benchmark,cpc_ceiling[,effective_from][,evaluation_days][,conversion_source]",
            missing.join(", ")
        )));
    }
    if let Some(extra) = headers.iter().find(|h| {
        !required.contains(&h.as_str())
            && !["effective_from", "evaluation_days", "conversion_source"].contains(&h.as_str())
    }) {
        return Err(Error::Config(format!(
            "{name}: unknown column '{extra}': the columns are platform, creator_tier, ctr_benchmark, cpc_ceiling, effective_from, evaluation_days, conversion_source"
        )));
    }
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, record) in reader.records().enumerate() {
        // Line numbers as an editor shows them: the header is line 1.
        let line = record
            .as_ref()
            .ok()
            .and_then(|r| r.position())
            .map_or(i + 2, |p| p.line() as usize);
        let record = record.map_err(|e| Error::Config(format!("{name} line {line}: {e}")))?;
        let get = |n: &str| col(n).and_then(|c| record.get(c)).unwrap_or("");
        let platform = get("platform").to_lowercase();
        if !PLATFORMS.contains(&platform.as_str()) {
            return Err(bad(
                line,
                "platform",
                format!("'{platform}' is not one of {}", PLATFORMS.join(", ")),
            ));
        }
        let creator_tier = get("creator_tier").to_lowercase();
        if !CREATOR_TIERS.contains(&creator_tier.as_str()) {
            return Err(bad(
                line,
                "creator_tier",
                format!("'{creator_tier}' is not one of {}", CREATOR_TIERS.join(", ")),
            ));
        }
        let number = |column: &str, max: Decimal| -> Result<Decimal> {
            let text = get(column);
            let v: Decimal = text
                .parse()
                .map_err(|_| bad(line, column, format!("'{text}' is not a number")))?;
            if v <= Decimal::ZERO || v > max {
                return Err(bad(
                    line,
                    column,
                    format!("{v} is out of range: above 0, at most {max}"),
                ));
            }
            if v.scale() > SCALE {
                return Err(bad(line, column, format!("{v} has more than {SCALE} decimal places")));
            }
            Ok(v)
        };
        // A CTR is a fraction: 0.012 is 1.2 %.
        let ctr_benchmark = number("ctr_benchmark", Decimal::ONE)?;
        let cpc_ceiling = number("cpc_ceiling", Decimal::from(1_000_000))?;
        let effective_from = match get("effective_from") {
            "" => ALWAYS,
            d => NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map_err(|_| bad(line, "effective_from", format!("'{d}' is not a date (YYYY-MM-DD)")))?,
        };
        let evaluation_days = match get("evaluation_days") {
            "" => None,
            d => match d.parse::<i64>() {
                Ok(n) if (1..=366).contains(&n) => Some(n),
                _ => {
                    return Err(bad(
                        line,
                        "evaluation_days",
                        format!("'{d}' is not a whole number of days from 1 to 366 (empty: campaign-to-date)"),
                    ))
                }
            },
        };
        let conversion_source = match get("conversion_source").to_lowercase() {
            e if e.is_empty() => "platform".to_string(),
            c if CONVERSION_SOURCES.contains(&c.as_str()) => c,
            c => {
                return Err(bad(
                    line,
                    "conversion_source",
                    format!("'{c}' is not one of {}", CONVERSION_SOURCES.join(", ")),
                ))
            }
        };
        if !seen.insert((platform.clone(), creator_tier.clone(), effective_from)) {
            return Err(bad(
                line,
                "effective_from",
                format!("{platform} {creator_tier} from {effective_from} is given twice"),
            ));
        }
        out.push(Benchmark {
            platform,
            creator_tier,
            ctr_benchmark,
            cpc_ceiling,
            effective_from,
            evaluation_days,
            conversion_source,
        });
    }
    if out.is_empty() {
        return Err(Error::Config(format!("{name} has no benchmark rows")));
    }
    Ok(out)
}

fn scaled(d: Decimal) -> i128 {
    let mut d = d;
    d.rescale(SCALE);
    d.mantissa()
}

pub fn to_batch(rows: &[Benchmark]) -> Result<RecordBatch> {
    let (mut platform, mut tier) = (StringBuilder::new(), StringBuilder::new());
    let mut ctr = Decimal128Builder::new()
        .with_precision_and_scale(38, SCALE as i8)
        .map_err(arrow_err)?;
    let mut cpc = Decimal128Builder::new()
        .with_precision_and_scale(38, SCALE as i8)
        .map_err(arrow_err)?;
    let (mut from, mut days, mut source) = (Date32Builder::new(), Int64Builder::new(), StringBuilder::new());
    for b in rows {
        platform.append_value(&b.platform);
        tier.append_value(&b.creator_tier);
        ctr.append_value(scaled(b.ctr_benchmark));
        cpc.append_value(scaled(b.cpc_ceiling));
        from.append_value(Date32Type::from_naive_date(b.effective_from));
        days.append_option(b.evaluation_days);
        source.append_value(&b.conversion_source);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(platform.finish()),
        Arc::new(tier.finish()),
        Arc::new(ctr.finish()),
        Arc::new(cpc.finish()),
        Arc::new(from.finish()),
        Arc::new(days.finish()),
        Arc::new(source.finish()),
    ];
    RecordBatch::try_new(schema(), columns).map_err(arrow_err)
}

fn arrow_err(e: arrow::error::ArrowError) -> Error {
    Error::Data(format!("benchmarks: {e}"))
}

/// The rows as one `SELECT … UNION ALL SELECT …` of literals, typed by the
/// first (the dialect's decimal type given), for `CREATE OR REPLACE TABLE … AS`.
pub fn select_sql(rows: &[Benchmark], lit: &dyn Literal, decimal: &str, string: &str, int: &str) -> String {
    rows.iter()
        .enumerate()
        .map(|(i, b)| {
            let days = b.evaluation_days.map_or("NULL".to_string(), |d| d.to_string());
            if i == 0 {
                format!(
                    "SELECT CAST({} AS {string}) AS platform, CAST({} AS {string}) AS creator_tier, \
                     CAST('{}' AS {decimal}) AS ctr_benchmark, CAST('{}' AS {decimal}) AS cpc_ceiling, \
                     CAST('{}' AS DATE) AS effective_from, CAST({days} AS {int}) AS evaluation_days, \
                     CAST({} AS {string}) AS conversion_source",
                    lit.string(&b.platform),
                    lit.string(&b.creator_tier),
                    b.ctr_benchmark,
                    b.cpc_ceiling,
                    b.effective_from,
                    lit.string(&b.conversion_source),
                )
            } else {
                format!(
                    "SELECT {}, {}, CAST('{}' AS {decimal}), CAST('{}' AS {decimal}), CAST('{}' AS DATE), CAST({days} AS {int}), {}",
                    lit.string(&b.platform),
                    lit.string(&b.creator_tier),
                    b.ctr_benchmark,
                    b.cpc_ceiling,
                    b.effective_from,
                    lit.string(&b.conversion_source),
                )
            }
        })
        .collect::<Vec<_>>()
        .join("\nUNION ALL ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_file_parses() {
        let rows = parse("default.csv", DEFAULT_CSV.as_bytes()).unwrap();
        assert_eq!(rows.len(), PLATFORMS.len() * CREATOR_TIERS.len());
        let tiktok_nano = rows
            .iter()
            .find(|b| b.platform == "tiktok" && b.creator_tier == "nano")
            .unwrap();
        assert_eq!(tiktok_nano.ctr_benchmark, "0.012".parse::<Decimal>().unwrap());
        assert_eq!(to_batch(&rows).unwrap().num_rows(), rows.len());
    }

    #[test]
    fn every_bad_cell_is_named_by_line_and_column() {
        let head = "platform,creator_tier,ctr_benchmark,cpc_ceiling,effective_from\n";
        for (body, says) in [
            ("tiktok,nano,0.012\n", "line 2"),
            (
                "tiktok,nano,-0.01,0.8,\n",
                "line 2, ctr_benchmark: -0.01 is out of range",
            ),
            ("tiktok,nano,abc,0.8,\n", "line 2, ctr_benchmark: 'abc' is not a number"),
            (
                "tiktok,nano,0.012,lots,\n",
                "line 2, cpc_ceiling: 'lots' is not a number",
            ),
            ("snapchat,nano,0.012,0.8,\n", "line 2, platform: 'snapchat'"),
            ("tiktok,giant,0.012,0.8,\n", "line 2, creator_tier: 'giant'"),
            ("tiktok,nano,0.012,0.8,2026-13-01\n", "line 2, effective_from"),
            (
                "tiktok,nano,0.012,0.8,2026-01-01\nmeta,nano,0.01,0.9,\ntiktok,nano,0.013,0.8,2026-01-01\n",
                "line 4, effective_from: tiktok nano from 2026-01-01 is given twice",
            ),
            ("", "no benchmark rows"),
        ] {
            let e = parse("b.csv", format!("{head}{body}").as_bytes())
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{body:?}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
        let e = parse(
            "b.csv",
            b"platform,creator_tier,ctr_benchmark,cpc_ceiling,conversion_source\ntiktok,nano,0.012,0.8,site\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("line 2, conversion_source: 'site' is not one of platform, site_first"),
            "{e}"
        );
        let ok = parse(
            "b.csv",
            b"platform,creator_tier,ctr_benchmark,cpc_ceiling,conversion_source\ntiktok,nano,0.012,0.8,Site_Last\nmeta,nano,0.01,0.9,\n",
        )
        .unwrap();
        assert_eq!(
            (ok[0].conversion_source.as_str(), ok[1].conversion_source.as_str()),
            ("site_last", "platform")
        );
        let e = parse("b.csv", b"platform,creator_tier,ctr\n").unwrap_err().to_string();
        assert!(e.contains("no ctr_benchmark, cpc_ceiling column"), "{e}");
    }
}
