//! TikTok raw (`crest-tiktok`, schema `tiktok.report.v1`) → canonical.
//!
//! - `clicks` are TikTok's destination clicks (link clicks that leave TikTok);
//! - `conversions`/`conversion_value` are `conversion`/`total_complete_payment_rate`
//!   under the ad group's own click/view windows: `native` when they equal the
//!   standard window, otherwise `unnormalized` (TikTok serves no per-window
//!   breakdown, so nothing is rescaled);
//! - the creator comes from the landing URL's UTMs, else the Spark Ads identity
//!   (`identity_id`, the creator's TikTok handle);
//! - `content_id` is the promoted post (`tiktok_item_id`); `placement` is null
//!   (one surface).

use super::{Mapped, Mapper, Platform, Resolved};
use crate::canonical::{self, DECIMAL_SCALE, SCHEMA_VERSION};
use crate::quality::Totals;
use crate::{Result, TransformError};
use arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, Decimal128Builder, Int32Array, Int64Array, RecordBatch, StringArray,
    UInt32Array,
};
use arrow::compute::{cast, take};
use arrow::datatypes::{DataType, Date32Type, Decimal128Type, Int32Type, Int64Type};
use chrono::NaiveDate;
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::sync::Arc;

pub static PLATFORM: Platform = Platform {
    name: "tiktok",
    daily_report: "ad_daily",
    hourly_report: "ad_hourly",
    schema_tags: &["tiktok.report.v1"],
    map,
    raw_totals,
};

fn missing(name: &str) -> TransformError {
    TransformError::Input(format!(
        "a TikTok raw file lacks the column {name}: not written by crest-tiktok"
    ))
}

fn arrow_err(e: arrow::error::ArrowError) -> TransformError {
    TransformError::Input(format!("tiktok: {e}"))
}

pub fn raw_totals(raw: &RecordBatch) -> Result<Totals> {
    let int = |n: &str| -> Result<i64> {
        Ok(raw
            .column_by_name(n)
            .map(|c| arrow::compute::sum(c.as_primitive::<Int64Type>()).unwrap_or(0))
            .unwrap_or(0))
    };
    let spend = raw.column_by_name("spend").ok_or_else(|| missing("spend"))?;
    Ok(Totals {
        rows: raw.num_rows() as u64,
        impressions: int("impressions")?,
        clicks: int("clicks")?,
        spend_micros: arrow::compute::sum(spend.as_primitive::<Decimal128Type>()).unwrap_or(0),
        conversions_micros: int("conversion")? as i128 * 10i128.pow(DECIMAL_SCALE as u32),
    })
}

fn map(mapper: &mut Mapper<'_>, raw: &RecordBatch) -> Result<Mapped> {
    let n = raw.num_rows();
    let req = |name: &str| raw.column_by_name(name).cloned().ok_or_else(|| missing(name));
    let opt = |name: &str, t: &DataType| {
        raw.column_by_name(name)
            .cloned()
            .unwrap_or_else(|| new_null_array(t, n))
    };
    let constant = |v: &str| -> ArrayRef { Arc::new(StringArray::from_iter_values(std::iter::repeat_n(v, n))) };

    let date = req("stat_date")?;
    let currency = req("currency")?;
    let spend = req("spend")?;
    let landing = opt("landing_page_url", &DataType::Utf8);
    let identity = opt("identity_id", &DataType::Utf8);
    let click_days = opt("click_window_days", &DataType::Int32);
    let view_days = opt("view_window_days", &DataType::Int32);

    // Creators: resolved once per distinct (landing URL, handle) in the batch.
    let (landing_s, identity_s) = (landing.as_string::<i32>(), identity.as_string::<i32>());
    let mut local: HashMap<(&str, &str), usize> = HashMap::new();
    let mut distinct: Vec<Resolved> = Vec::new();
    let mut which = Vec::with_capacity(n);
    for i in 0..n {
        let url = landing_s.is_valid(i).then(|| landing_s.value(i));
        let handle = identity_s.is_valid(i).then(|| identity_s.value(i));
        let k = *local
            .entry((url.unwrap_or(""), handle.unwrap_or("")))
            .or_insert_with(|| {
                distinct.push(mapper.resolve(url, handle).clone());
                distinct.len() - 1
            });
        which.push(k as u32);
    }
    let which = UInt32Array::from(which);
    let roster = mapper.roster;
    let per_distinct = |f: &dyn Fn(&Resolved) -> Option<String>| -> Result<ArrayRef> {
        let values: StringArray = distinct.iter().map(f).collect();
        take(&values, &which, None).map_err(arrow_err)
    };
    let creator = |r: &Resolved| r.creator.map(|c| &roster.creators()[c]);
    let utm_source = per_distinct(&|r| r.utm.source.clone())?;
    let utm_medium = per_distinct(&|r| r.utm.medium.clone())?;
    let utm_campaign = per_distinct(&|r| r.utm.campaign.clone())?;
    let utm_content = per_distinct(&|r| r.utm.content.clone())?;
    let utm_term = per_distinct(&|r| r.utm.term.clone())?;
    let creator_id = per_distinct(&|r| creator(r).map(|c| c.creator_id.clone()))?;
    let creator_handle = per_distinct(&|r| creator(r).map(|c| c.handle.clone()))?;
    let creator_tier = per_distinct(&|r| creator(r).and_then(|c| c.tier.clone()))?;
    let disclosure = per_distinct(&|r| creator(r).and_then(|c| c.disclosure_status.clone()))?;
    mapper.unresolved_rows += creator_id.null_count() as u64;

    // Spend in the reporting currency: the rate of (date, currency), exact decimals.
    let (dates, currencies) = (date.as_primitive::<Date32Type>(), currency.as_string::<i32>());
    let spend_d = spend.as_primitive::<Decimal128Type>();
    let mut reporting = Decimal128Builder::with_capacity(n);
    let mut last: Option<((i32, &str), Option<Decimal>)> = None;
    for i in 0..n {
        if spend_d.is_null(i) || currencies.is_null(i) {
            reporting.append_null();
            continue;
        }
        let key = (dates.value(i), currencies.value(i));
        let rate = match last {
            Some((k, r)) if k == key => r,
            _ => {
                let day: NaiveDate = Date32Type::to_naive_date(key.0);
                let r = mapper.fx.rate(day, key.1);
                if r.is_none() {
                    mapper.missing_fx.insert((day, key.1.to_string()));
                }
                last = Some((key, r));
                r
            }
        };
        match rate {
            Some(rate) => {
                let mut v = Decimal::from_i128_with_scale(spend_d.value(i), DECIMAL_SCALE as u32) * rate;
                v.rescale(DECIMAL_SCALE as u32);
                reporting.append_value(v.mantissa());
            }
            None => reporting.append_null(),
        }
    }
    let reporting = reporting
        .finish()
        .with_precision_and_scale(38, DECIMAL_SCALE)
        .map_err(arrow_err)?;

    // Engagements: likes + comments + shares + follows (null only when none is served).
    let parts: Vec<ArrayRef> = ["likes", "comments", "shares", "follows"]
        .iter()
        .filter_map(|m| raw.column_by_name(m).cloned())
        .collect();
    let engagements: Int64Array = (0..n)
        .map(|i| {
            let present: Vec<i64> = parts
                .iter()
                .map(|p| p.as_primitive::<Int64Type>())
                .filter(|p| p.is_valid(i))
                .map(|p| p.value(i))
                .collect();
            (!present.is_empty()).then(|| present.iter().sum())
        })
        .collect();

    let decimal = DataType::Decimal128(38, DECIMAL_SCALE);
    let conversions = cast(&opt("conversion", &DataType::Int64), &decimal).map_err(arrow_err)?;
    let value = raw
        .column_by_name("total_complete_payment_rate")
        .cloned()
        .unwrap_or_else(|| new_null_array(&decimal, n));

    // Attribution basis: the ad group's windows against the standard window.
    let (cd, vd) = (
        click_days.as_primitive::<Int32Type>(),
        view_days.as_primitive::<Int32Type>(),
    );
    let std = mapper.standard;
    let basis: StringArray = (0..n)
        .map(|i| {
            let native =
                cd.is_valid(i) && vd.is_valid(i) && cd.value(i) == std.click_days && vd.value(i) == std.view_days;
            Some(if native { "native" } else { "unnormalized" })
        })
        .collect();

    let columns: Vec<ArrayRef> = vec![
        date.clone(),
        opt("stat_hour", &DataType::Int32),
        constant("tiktok"),
        new_null_array(&DataType::Utf8, n),
        constant("paid"),
        req("advertiser_id")?,
        opt("campaign_id", &DataType::Utf8),
        opt("campaign_name", &DataType::Utf8),
        opt("adgroup_id", &DataType::Utf8),
        opt("adgroup_name", &DataType::Utf8),
        opt("ad_id", &DataType::Utf8),
        opt("ad_name", &DataType::Utf8),
        opt("tiktok_item_id", &DataType::Utf8),
        landing.clone(),
        utm_source,
        utm_medium,
        utm_campaign,
        utm_content,
        utm_term,
        creator_id,
        creator_handle,
        creator_tier,
        disclosure,
        opt("impressions", &DataType::Int64),
        opt("clicks", &DataType::Int64),
        spend.clone(),
        currency.clone(),
        Arc::new(reporting),
        opt("video_play_actions", &DataType::Int64),
        Arc::new(engagements),
        conversions.clone(),
        value.clone(),
        click_days.clone(),
        view_days.clone(),
        Arc::new(basis),
        req("extracted_at")?,
        constant(mapper.run_id),
        Arc::new(Int32Array::from_value(SCHEMA_VERSION, n)),
    ];
    let canonical = RecordBatch::try_new(canonical::schema(), columns).map_err(arrow_err)?;

    // The windows as served: one row per row that reports conversions.
    let rows: UInt32Array = (0..n as u32).filter(|i| conversions.is_valid(*i as usize)).collect();
    let pick = |a: &ArrayRef| take(a, &rows, None).map_err(arrow_err);
    let labels: StringArray = rows
        .values()
        .iter()
        .map(|&i| {
            let i = i as usize;
            Some(match (cd.is_valid(i), vd.is_valid(i)) {
                (true, true) => format!("{}d_click_{}d_view", cd.value(i), vd.value(i)),
                _ => "unknown".to_string(),
            })
        })
        .collect();
    let m = rows.len();
    let windows = RecordBatch::try_new(
        canonical::attribution_windows_schema(),
        vec![
            pick(&date)?,
            pick(&opt("stat_hour", &DataType::Int32))?,
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n("tiktok", m))),
            pick(&req("advertiser_id")?)?,
            pick(&opt("ad_id", &DataType::Utf8))?,
            pick(&opt("tiktok_item_id", &DataType::Utf8))?,
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n("conversion", m))),
            Arc::new(labels),
            pick(&conversions)?,
            pick(&value)?,
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(mapper.run_id, m))),
        ],
    )
    .map_err(arrow_err)?;
    Ok(Mapped {
        canonical,
        windows,
        window_rows: rows,
    })
}
