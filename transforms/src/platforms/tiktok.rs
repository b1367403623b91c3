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

use super::{Mapped, Mapper, Platform, RawColumns};
use crate::canonical::{self, DECIMAL_SCALE, SCHEMA_VERSION};
use crate::quality::Totals;
use crate::{Result, TransformError};
use arrow::array::{new_null_array, Array, ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, UInt32Array};
use arrow::compute::{cast, take};
use arrow::datatypes::DataType;
use std::sync::Arc;

pub static PLATFORM: Platform = Platform {
    name: "tiktok",
    daily_report: "ad_daily",
    hourly_report: "ad_hourly",
    schema_tags: &["tiktok.report.v1"],
    map,
    raw_totals,
};

pub fn raw_totals(raw: &RecordBatch, _standard: &crate::StandardWindow) -> Result<Totals> {
    let spend = raw.column_by_name("spend").ok_or_else(|| missing("spend"))?;
    let conversions = raw
        .column_by_name("conversion")
        .map(|c| super::typed::sum_int64(c, "conversion"))
        .transpose()?
        .unwrap_or(0);
    Totals::of_raw(
        raw,
        "impressions",
        "clicks",
        spend,
        conversions as i128 * 10i128.pow(DECIMAL_SCALE as u32),
    )
}

fn map(mapper: &mut Mapper<'_>, raw: &RecordBatch) -> Result<Mapped> {
    let n = raw.num_rows();
    let cols = RawColumns::new(raw, "TikTok", "crest-tiktok");
    let req = |name: &str| cols.required(name);
    let opt = |name: &str, t: &DataType| cols.optional(name, t);
    let constant = |v: &str| cols.constant(v);

    let date = req("stat_date")?;
    let currency = req("currency")?;
    let spend = req("spend")?;
    let landing = opt("landing_page_url", &DataType::Utf8);
    let identity = opt("identity_id", &DataType::Utf8);
    let click_days = opt("click_window_days", &DataType::Int32);
    let view_days = opt("view_window_days", &DataType::Int32);

    let [utm_source, utm_medium, utm_campaign, utm_content, utm_term, creator_id, creator_handle, creator_tier, disclosure] =
        super::creator_columns(mapper, &landing, &identity, super::LinkKind::Url)?;
    mapper.unresolved_rows += creator_id.null_count() as u64;
    let reporting = super::spend_reporting(mapper, &date, &currency, &spend)?;

    // Engagements: likes + comments + shares + follows (null only when none is served).
    let parts: Vec<&arrow::array::Int64Array> = ["likes", "comments", "shares", "follows"]
        .iter()
        .filter_map(|m| raw.column_by_name(m).map(|c| super::typed::int64(c, m)))
        .collect::<Result<_>>()?;
    let engagements: Int64Array = (0..n)
        .map(|i| {
            parts
                .iter()
                .filter(|p| p.is_valid(i))
                .fold(None, |acc: Option<i64>, p| Some(acc.unwrap_or(0) + p.value(i)))
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
        super::typed::int32(&click_days, "click_window_days")?,
        super::typed::int32(&view_days, "view_window_days")?,
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
        reporting,
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
    let mut label_cache: Vec<((i32, i32), String)> = Vec::new();
    let mut labels = arrow::array::StringBuilder::with_capacity(rows.len(), rows.len() * 16);
    for &i in rows.values() {
        let i = i as usize;
        if !(cd.is_valid(i) && vd.is_valid(i)) {
            labels.append_value("unknown");
            continue;
        }
        let w = (cd.value(i), vd.value(i));
        match label_cache.iter().find(|(k, _)| *k == w) {
            Some((_, l)) => labels.append_value(l),
            None => {
                let l = format!("{}d_click_{}d_view", w.0, w.1);
                labels.append_value(&l);
                label_cache.push((w, l));
            }
        }
    }
    let labels = labels.finish();
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

fn missing(name: &str) -> TransformError {
    RawColumns::missing_for("TikTok", "crest-tiktok", name)
}

fn arrow_err(e: arrow::error::ArrowError) -> TransformError {
    TransformError::Input(format!("tiktok: {e}"))
}
