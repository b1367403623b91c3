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

use super::{windows_batch, Mapped, Mapper, Platform, RawColumns, WindowKeys, WindowRows};
use crate::canonical::DECIMAL_SCALE;
use crate::quality::Totals;
use crate::{Result, TransformError};
use arrow::array::{new_null_array, Array, Int64Array, RecordBatch, StringArray};
use arrow::compute::cast;
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

    let date = req("stat_date")?;
    let currency = req("currency")?;
    let spend = req("spend")?;
    let landing = opt("landing_page_url", &DataType::Utf8);
    let identity = opt("identity_id", &DataType::Utf8);
    let click_days = opt("click_window_days", &DataType::Int32);
    let view_days = opt("view_window_days", &DataType::Int32);

    let creator = super::creator_columns(mapper, &landing, &identity, super::LinkKind::Url)?;
    mapper.unresolved_rows += creator.creator_id().null_count() as u64;
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

    let canonical = mapper
        .canonical(n)
        .column("date", date)
        .column("hour", opt("stat_hour", &DataType::Int32))
        .text("platform", "tiktok")
        .nulls(&["placement"])
        .text("channel", "paid")
        .column("account_id", req("advertiser_id")?)
        .column("campaign_id", opt("campaign_id", &DataType::Utf8))
        .column("campaign_name", opt("campaign_name", &DataType::Utf8))
        .column("ad_group_id", opt("adgroup_id", &DataType::Utf8))
        .column("ad_group_name", opt("adgroup_name", &DataType::Utf8))
        .column("ad_id", opt("ad_id", &DataType::Utf8))
        .column("ad_name", opt("ad_name", &DataType::Utf8))
        .column("content_id", opt("tiktok_item_id", &DataType::Utf8))
        .column("landing_url", landing)
        .creator(creator)
        .column("impressions", opt("impressions", &DataType::Int64))
        .column("clicks", opt("clicks", &DataType::Int64))
        .column("spend", spend)
        .column("currency", currency)
        .column("spend_reporting", reporting)
        .column("video_views", opt("video_play_actions", &DataType::Int64))
        .column("engagements", Arc::new(engagements))
        .column("conversions", conversions.clone())
        .column("conversion_value", value.clone())
        .column("click_window_days", click_days.clone())
        .column("view_window_days", view_days.clone())
        .column("attribution_basis", Arc::new(basis))
        .column("extracted_at", req("extracted_at")?)
        .finish()?;

    // The windows as served: one row per row that reports conversions, under
    // the ad group's own windows.
    let (conv, val) = (
        super::typed::decimal(&conversions, "conversion")?,
        super::typed::decimal(&value, "total_complete_payment_rate")?,
    );
    let mut label_cache: Vec<((i32, i32), String)> = Vec::new();
    for i in (0..n).filter(|i| conv.is_valid(*i)) {
        if !(cd.is_valid(i) && vd.is_valid(i)) {
            continue;
        }
        let w = (cd.value(i), vd.value(i));
        if !label_cache.iter().any(|(k, _)| *k == w) {
            label_cache.push((w, format!("{}d_click_{}d_view", w.0, w.1)));
        }
    }
    let mut served = WindowRows::default();
    for i in (0..n).filter(|i| conv.is_valid(*i)) {
        let label = if cd.is_valid(i) && vd.is_valid(i) {
            let w = (cd.value(i), vd.value(i));
            label_cache
                .iter()
                .find(|(k, _)| *k == w)
                .map_or("unknown", |(_, l)| l.as_str())
        } else {
            "unknown"
        };
        served.push(i, label, Some(conv.value(i)), val.is_valid(i).then(|| val.value(i)));
    }
    let keys = WindowKeys {
        platform: "tiktok",
        date: "stat_date",
        hour: Some("stat_hour"),
        account: "advertiser_id",
        ad: "ad_id",
        content: Some("tiktok_item_id"),
        action: Err("conversion"),
    };
    let (windows, rows) = windows_batch(raw, &keys, served, mapper.run_id)?;
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
