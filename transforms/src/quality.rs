//! Data-quality checks and the totals reconciliation is made of. A row that
//! fails a check goes to quarantine with its reason; nothing is dropped.

use crate::canonical;
use crate::platforms::Mapped;
use crate::{Result, TransformError};
use ahash::HashMap;
use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::{Date32Type, Decimal128Type, Int32Type, Int64Type, TimestampMicrosecondType};
use crest_core::window::DateRange;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    DateOutOfRange,
    NegativeMetric,
    ClicksAboveImpressions,
    DuplicateKey,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::DateOutOfRange => "date_out_of_range",
            Reason::NegativeMetric => "negative_metric",
            Reason::ClicksAboveImpressions => "clicks_above_impressions",
            Reason::DuplicateKey => "duplicate_key",
        }
    }
}

/// The sum of a decimal column, in its unscaled units (0 when empty).
pub fn sum_decimal(a: &ArrayRef) -> i128 {
    arrow::compute::sum(a.as_primitive::<Decimal128Type>()).unwrap_or(0)
}

/// What reconciliation compares. Money and conversions in millionths (scale 6).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub rows: u64,
    pub impressions: i64,
    pub clicks: i64,
    pub spend_micros: i128,
    pub conversions_micros: i128,
}

impl Totals {
    /// A raw batch's totals: impressions and clicks summed from its Int64
    /// columns of those names (0 where absent), spend from its decimal
    /// column, conversions as the platform derives them (millionths).
    pub fn of_raw(
        raw: &RecordBatch,
        impressions: &str,
        clicks: &str,
        spend: &ArrayRef,
        conversions_micros: i128,
    ) -> crate::Result<Totals> {
        use crate::platforms::typed;
        let int = |n: &str| -> crate::Result<i64> {
            raw.column_by_name(n)
                .map(|c| typed::sum_int64(c, n))
                .transpose()
                .map(|s| s.unwrap_or(0))
        };
        Ok(Totals {
            rows: raw.num_rows() as u64,
            impressions: int(impressions)?,
            clicks: int(clicks)?,
            spend_micros: typed::sum_decimal(spend, "spend")?,
            conversions_micros,
        })
    }

    pub fn add(&mut self, o: &Totals) {
        self.rows += o.rows;
        self.impressions += o.impressions;
        self.clicks += o.clicks;
        self.spend_micros += o.spend_micros;
        self.conversions_micros += o.conversions_micros;
    }
}

/// Totals of canonical rows per account.
pub fn canonical_totals(batch: &RecordBatch) -> Result<BTreeMap<String, Totals>> {
    let col = |n: &str| {
        batch
            .column_by_name(n)
            .ok_or_else(|| TransformError::Input(format!("canonical batch lacks {n}")))
    };
    let account = col("account_id")?.as_string::<i32>();
    let imps = col("impressions")?.as_primitive::<Int64Type>();
    let clicks = col("clicks")?.as_primitive::<Int64Type>();
    let spend = col("spend")?.as_primitive::<Decimal128Type>();
    let conv = col("conversions")?.as_primitive::<Decimal128Type>();
    let mut out: BTreeMap<String, Totals> = BTreeMap::new();
    let mut current: Option<(&str, Totals)> = None;
    for i in 0..batch.num_rows() {
        let a = account.value(i);
        if current.as_ref().is_some_and(|(c, _)| *c != a) {
            let (c, t) = current.take().unwrap_or_default();
            out.entry(c.to_string()).or_default().add(&t);
        }
        let t = &mut current.get_or_insert_with(|| (a, Totals::default())).1;
        t.rows += 1;
        t.impressions += if imps.is_valid(i) { imps.value(i) } else { 0 };
        t.clicks += if clicks.is_valid(i) { clicks.value(i) } else { 0 };
        t.spend_micros += if spend.is_valid(i) { spend.value(i) } else { 0 };
        t.conversions_micros += if conv.is_valid(i) { conv.value(i) } else { 0 };
    }
    if let Some((c, t)) = current {
        out.entry(c.to_string()).or_default().add(&t);
    }
    Ok(out)
}

/// (`account_id`, `ad_id` or `content_id`, `date`, `hour`, `placement`) within
/// one platform: placement counts where a platform serves several (Meta).
type NaturalKey<'a> = (&'a str, &'a str, i32, Option<i32>, Option<&'a str>);

pub struct Checked {
    pub canonical: Vec<RecordBatch>,
    pub windows: Vec<RecordBatch>,
    pub quarantine: Option<RecordBatch>,
    pub quarantined: BTreeMap<Reason, u64>,
    pub canonical_totals: BTreeMap<String, Totals>,
    pub quarantine_totals: BTreeMap<String, Totals>,
}

/// Runs every check over one platform's rows of one date. The natural key
/// (`account_id`, `ad_id` or `content_id`, `date`, `hour`) is unique among the
/// rows kept: of duplicates, the latest `extracted_at` stays.
pub fn check(platform: &str, mapped: Vec<Mapped>, range: DateRange) -> Result<Checked> {
    let start = Date32Type::from_naive_date(range.start);
    let end = Date32Type::from_naive_date(range.end);
    let mut reasons: Vec<Vec<Option<Reason>>> = Vec::with_capacity(mapped.len());
    // Natural key → (batch, row, extracted_at) of the row that currently wins.
    let rows: usize = mapped.iter().map(|m| m.canonical.num_rows()).sum();
    let mut winners: HashMap<NaturalKey<'_>, (usize, usize, i64)> =
        HashMap::with_capacity_and_hasher(rows, Default::default());
    for (b, m) in mapped.iter().enumerate() {
        let batch = &m.canonical;
        let n = batch.num_rows();
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| TransformError::Input(format!("{platform}: no {name}")))
        };
        let date = col("date")?.as_primitive::<Date32Type>();
        let hour = col("hour")?.as_primitive::<Int32Type>();
        let account = col("account_id")?.as_string::<i32>();
        let ad = col("ad_id")?.as_string::<i32>();
        let content = col("content_id")?.as_string::<i32>();
        let imps = col("impressions")?.as_primitive::<Int64Type>();
        let clicks = col("clicks")?.as_primitive::<Int64Type>();
        let spend = col("spend")?.as_primitive::<Decimal128Type>();
        let conv = col("conversions")?.as_primitive::<Decimal128Type>();
        let extracted = col("extracted_at")?.as_primitive::<TimestampMicrosecondType>();
        let placement = col("placement")?.as_string::<i32>();
        let neg_i = |a: &arrow::array::Int64Array, i: usize| a.is_valid(i) && a.value(i) < 0;
        let neg_d = |a: &arrow::array::Decimal128Array, i: usize| a.is_valid(i) && a.value(i) < 0;
        let mut row_reasons = Vec::with_capacity(n);
        for i in 0..n {
            let d = date.value(i);
            let reason = if d < start || d > end {
                Some(Reason::DateOutOfRange)
            } else if neg_i(imps, i) || neg_i(clicks, i) || neg_d(spend, i) || neg_d(conv, i) {
                Some(Reason::NegativeMetric)
            } else if imps.is_valid(i) && clicks.is_valid(i) && clicks.value(i) > imps.value(i) {
                Some(Reason::ClicksAboveImpressions)
            } else {
                None
            };
            if reason.is_none() {
                let id = if ad.is_valid(i) { ad.value(i) } else { content.value(i) };
                let key = (
                    account.value(i),
                    id,
                    d,
                    hour.is_valid(i).then(|| hour.value(i)),
                    placement.is_valid(i).then(|| placement.value(i)),
                );
                let ts = extracted.value(i);
                match winners.get(&key) {
                    Some(&(_, _, kept_ts)) if kept_ts >= ts => {
                        // The row already kept is as new or newer: this one is the duplicate.
                        row_reasons.push(Some(Reason::DuplicateKey));
                        continue;
                    }
                    Some(&(wb, wi, _)) => {
                        // This row is newer: the earlier winner becomes the duplicate.
                        if wb == b {
                            row_reasons[wi] = Some(Reason::DuplicateKey);
                        } else {
                            reasons[wb][wi] = Some(Reason::DuplicateKey);
                        }
                    }
                    None => {}
                }
                winners.insert(key, (b, i, ts));
            }
            row_reasons.push(reason);
        }
        reasons.push(row_reasons);
    }

    let mut out = Checked {
        canonical: Vec::new(),
        windows: Vec::new(),
        quarantine: None,
        quarantined: BTreeMap::new(),
        canonical_totals: BTreeMap::new(),
        quarantine_totals: BTreeMap::new(),
    };
    let mut quarantined_batches = Vec::new();
    for (m, row_reasons) in mapped.into_iter().zip(reasons) {
        let keep = BooleanArray::from(row_reasons.iter().map(|r| r.is_none()).collect::<Vec<_>>());
        let err = |e: arrow::error::ArrowError| TransformError::Input(format!("{platform}: {e}"));
        let all_kept = keep.true_count() == keep.len();
        // The usual case, nothing quarantined, copies nothing.
        let kept = if all_kept {
            m.canonical.clone()
        } else {
            filter_record_batch(&m.canonical, &keep).map_err(err)?
        };
        for (a, t) in canonical_totals(&kept)? {
            out.canonical_totals.entry(a).or_default().add(&t);
        }
        // Window rows follow their canonical row.
        let windows = if all_kept {
            m.windows.clone()
        } else {
            let window_keep: BooleanArray = m
                .window_rows
                .values()
                .iter()
                .map(|r| Some(row_reasons[*r as usize].is_none()))
                .collect();
            filter_record_batch(&m.windows, &window_keep).map_err(err)?
        };
        if kept.num_rows() > 0 {
            out.canonical.push(kept);
        }
        if windows.num_rows() > 0 {
            out.windows.push(windows);
        }
        if !all_kept {
            let drop = arrow::compute::not(&keep).map_err(err)?;
            let q = filter_record_batch(&m.canonical, &drop).map_err(err)?;
            for (a, t) in canonical_totals(&q)? {
                out.quarantine_totals.entry(a).or_default().add(&t);
            }
            let why: Vec<&str> = row_reasons.iter().flatten().map(|r| r.as_str()).collect();
            for r in row_reasons.iter().flatten() {
                *out.quarantined.entry(*r).or_default() += 1;
            }
            let mut cols: Vec<ArrayRef> = q.columns().to_vec();
            cols.push(Arc::new(StringArray::from(why)));
            quarantined_batches.push(RecordBatch::try_new(canonical::quarantine_schema(), cols).map_err(err)?);
        }
    }
    if !quarantined_batches.is_empty() {
        let q = concat_batches(&canonical::quarantine_schema(), &quarantined_batches)
            .map_err(|e| TransformError::Input(format!("{platform}: {e}")))?;
        out.quarantine = Some(q);
    }
    Ok(out)
}
