//! `utm_hygiene`: what `crest links audit` found, one row per audit ×
//! creator × platform, appended per audit on every target so the hygiene of a
//! program can be followed over a flight; `v_utm_hygiene` reads the latest.

use crate::{Error, Result};
use arrow::array::{ArrayRef, Decimal128Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use std::sync::Arc;

pub const TABLE: &str = "utm_hygiene";

/// Decimal places of the money columns (the canonical schema's).
const SCALE: i8 = 6;

/// What one creator × platform's paid ads carry.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct Row {
    /// `None`: ads the transform could credit to no creator.
    pub creator_id: Option<String>,
    pub creator_handle: Option<String>,
    pub platform: String,
    pub ads: usize,
    /// Landing URL without any UTM (the creator, if any, came from the
    /// platform's handle).
    pub no_utm: usize,
    /// UTMs that resolve to no creator of the roster.
    pub unresolvable: usize,
    /// A link whose `utm_medium` names another platform.
    pub wrong_platform: usize,
    /// Ads on this creator's own identity (TikTok Spark Ads) whose link names
    /// another creator: that creator is credited with them (their `ads`,
    /// spend and clicks are on the other creator's row), this one must fix
    /// the link. `None`: not looked for (no roster, or no raw input to read).
    pub other_creator: Option<usize>,
    /// A link that is not among the issued ones (only with the issued links).
    pub not_issued: usize,
    /// Issued links for this creator × platform no ad carries.
    pub issued_unseen: usize,
    /// Reporting-currency spend, in millionths (exact).
    #[serde(rename = "spend", serialize_with = "micros")]
    pub spend_micros: i128,
    /// Spend of ads no creator can be credited with: neither their UTMs nor
    /// the platform's handle named one.
    #[serde(rename = "spend_unattributable", serialize_with = "micros")]
    pub spend_unattributable_micros: i128,
    pub clicks: i64,
    pub clicks_unattributable: i64,
}

impl Row {
    /// Nothing to fix: every ad carries an issued link of its own platform
    /// that resolves to the creator, and every issued link is in use.
    pub fn clean(&self) -> bool {
        self.no_utm
            + self.unresolvable
            + self.wrong_platform
            + self.other_creator.unwrap_or(0)
            + self.not_issued
            + self.issued_unseen
            == 0
    }
}

/// Millionths as an exact decimal string ("12.340000").
fn micros<S: serde::Serializer>(v: &i128, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&rust_decimal::Decimal::from_i128_with_scale(*v, SCALE as u32).to_string())
}

pub fn schema() -> SchemaRef {
    let int = |n: &str| Field::new(n, DataType::Int64, false);
    let money = |n: &str| Field::new(n, DataType::Decimal128(38, SCALE), true);
    Arc::new(Schema::new(vec![
        Field::new("audit_id", DataType::Utf8, false),
        Field::new(
            "audited_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("run_id", DataType::Utf8, false),
        Field::new("creator_id", DataType::Utf8, true),
        Field::new("creator_handle", DataType::Utf8, true),
        Field::new("platform", DataType::Utf8, false),
        int("ads"),
        int("no_utm"),
        int("unresolvable"),
        int("wrong_platform"),
        int("not_issued"),
        int("issued_unseen"),
        money("spend"),
        money("spend_unattributable"),
        int("clicks"),
        int("clicks_unattributable"),
        // Added after the first audits: tables and files written before it hold none.
        Field::new("other_creator", DataType::Int64, true),
    ]))
}

/// One audit's rows as the table holds them.
pub fn to_batch(rows: &[Row], audit_id: &str, audited_at_us: i64, run_id: &str) -> Result<RecordBatch> {
    let n = rows.len();
    let text = |f: &dyn Fn(&Row) -> Option<String>| {
        let mut b = StringBuilder::new();
        rows.iter().for_each(|r| b.append_option(f(r)));
        Arc::new(b.finish()) as ArrayRef
    };
    let int = |f: &dyn Fn(&Row) -> i64| {
        let mut b = Int64Builder::new();
        rows.iter().for_each(|r| b.append_value(f(r)));
        Arc::new(b.finish()) as ArrayRef
    };
    let money = |f: &dyn Fn(&Row) -> i128| -> Result<ArrayRef> {
        let mut b = Decimal128Builder::new()
            .with_precision_and_scale(38, SCALE)
            .map_err(|e| Error::Data(e.to_string()))?;
        rows.iter().for_each(|r| b.append_value(f(r)));
        Ok(Arc::new(b.finish()))
    };
    let columns: Vec<ArrayRef> = vec![
        text(&|_| Some(audit_id.to_string())),
        Arc::new(TimestampMicrosecondArray::from(vec![audited_at_us; n]).with_timezone("UTC")),
        text(&|_| Some(run_id.to_string())),
        text(&|r| r.creator_id.clone()),
        text(&|r| r.creator_handle.clone()),
        text(&|r| Some(r.platform.clone())),
        int(&|r| r.ads as i64),
        int(&|r| r.no_utm as i64),
        int(&|r| r.unresolvable as i64),
        int(&|r| r.wrong_platform as i64),
        int(&|r| r.not_issued as i64),
        int(&|r| r.issued_unseen as i64),
        money(&|r| r.spend_micros)?,
        money(&|r| r.spend_unattributable_micros)?,
        int(&|r| r.clicks),
        int(&|r| r.clicks_unattributable),
        {
            let mut b = Int64Builder::new();
            rows.iter()
                .for_each(|r| b.append_option(r.other_creator.map(|n| n as i64)));
            Arc::new(b.finish()) as ArrayRef
        },
    ];
    RecordBatch::try_new(schema(), columns).map_err(|e| Error::Data(format!("the links audit's rows: {e}")))
}
