//! Meta raw (`crest-meta`, schema `meta.insights.v1`) → canonical.
//!
//! - `placement` is the `publisher_platform` (instagram, facebook, …), and is
//!   part of the row's key: one row per ad × date × placement;
//! - `clicks` are `inline_link_clicks` (link clicks that leave Meta), not all clicks;
//! - conversions are the chosen action's figures in the standard window, e.g.
//!   7-day click + 1-day view = `conversions_7d_click` + `conversions_1d_view`,
//!   both served by Meta: `native`. A window missing on a row leaves the
//!   conversions null, never 0. Where the raw file lacks a standard window
//!   (not requested), the account-default `value` is kept, `unnormalized`;
//! - UTMs come from the creative's `url_tags`, else its link;
//! - `content_id` is the promoted Instagram post's permalink.

use super::{
    creator_columns, spend_reporting, windows_batch, CreatorColumns, LinkKind, Mapped, Mapper, Platform, RawColumns,
    WindowKeys, WindowRows,
};
use crate::canonical;
use crate::quality::{sum_decimal, Totals};
use crate::{Result, StandardWindow, TransformError};
use arrow::array::{new_null_array, Array, ArrayRef, Decimal128Array, Int32Array, RecordBatch, UInt32Array};
use arrow::compute::kernels::zip::zip;
use arrow::datatypes::DataType;
use std::sync::Arc;

pub static PLATFORM: Platform = Platform {
    name: "meta",
    daily_report: "ad_daily",
    hourly_report: "ad_hourly",
    schema_tags: &["meta.insights.v1"],
    map,
    raw_totals,
};

const DECIMAL: DataType = DataType::Decimal128(38, canonical::DECIMAL_SCALE);

/// The standard window's conversions and value, and whether they are native.
struct Standard {
    conversions: ArrayRef,
    value: ArrayRef,
    native: bool,
}

fn window_column(raw: &RecordBatch, prefix: &str, days: i32, kind: &str) -> Result<Option<Option<Decimal128Array>>> {
    if days == 0 {
        return Ok(Some(None));
    }
    let name = format!("{prefix}_{days}d_{kind}");
    raw.column_by_name(&name)
        .map(|c| super::typed::decimal(c, &name).map(|a| Some(a.clone())))
        .transpose()
}

/// Click window + view window, null where either is missing on the row.
fn add_windows(click: Option<Decimal128Array>, view: Option<Decimal128Array>, n: usize) -> Result<ArrayRef> {
    let out: Decimal128Array = match (click, view) {
        // Both windows were requested (their columns exist). Meta leaves a
        // zero-valued window key out, so a null part beside a figure is 0
        // (raw files of older crest versions kept it null); the sum is null
        // only when the row has no entry for the action at all.
        (Some(c), Some(v)) => (0..n)
            .map(|i| {
                let part = |a: &Decimal128Array| a.is_valid(i).then(|| a.value(i));
                match (part(&c), part(&v)) {
                    (None, None) => None,
                    (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
                }
            })
            .collect(),
        (Some(c), None) => c,
        (None, Some(v)) => v,
        (None, None) => return Ok(new_null_array(&DECIMAL, n)),
    };
    Ok(Arc::new(
        out.with_precision_and_scale(38, canonical::DECIMAL_SCALE)
            .map_err(arrow_err)?,
    ))
}

fn standard(raw: &RecordBatch, w: &StandardWindow) -> Result<Standard> {
    let n = raw.num_rows();
    let parts = |prefix: &str| -> Result<_> {
        Ok((
            window_column(raw, prefix, w.click_days, "click")?,
            window_column(raw, prefix, w.view_days, "view")?,
        ))
    };
    match (parts("conversions")?, parts("conversion_value")?) {
        ((Some(cc), Some(cv)), (Some(vc), Some(vv))) => Ok(Standard {
            conversions: add_windows(cc, cv, n)?,
            value: add_windows(vc, vv, n)?,
            native: true,
        }),
        _ => Ok(Standard {
            conversions: raw
                .column_by_name("conversions")
                .cloned()
                .ok_or_else(|| missing("conversions"))?,
            value: raw
                .column_by_name("conversion_value")
                .cloned()
                .ok_or_else(|| missing("conversion_value"))?,
            native: false,
        }),
    }
}

pub fn raw_totals(raw: &RecordBatch, w: &StandardWindow) -> Result<Totals> {
    let spend = raw.column_by_name("spend").ok_or_else(|| missing("spend"))?;
    let conversions = sum_decimal(&standard(raw, w)?.conversions);
    Totals::of_raw(raw, "impressions", "inline_link_clicks", spend, conversions)
}

fn map(mapper: &mut Mapper<'_>, raw: &RecordBatch) -> Result<Mapped> {
    let n = raw.num_rows();
    let cols = RawColumns::new(raw, "Meta", "crest-meta");
    let req = |name: &str| cols.required(name);
    let opt = |name: &str, t: &DataType| cols.optional(name, t);

    let date = req("date_start")?;
    let currency = req("currency")?;
    let spend = req("spend")?;
    // UTMs from url_tags where the creative has them, else from its link.
    let tags = opt("url_tags", &DataType::Utf8);
    let link = opt("landing_url", &DataType::Utf8);
    let no_handle = new_null_array(&DataType::Utf8, n);
    let from_tags = creator_columns(mapper, &tags, &no_handle, LinkKind::Query)?;
    let creator = if tags.null_count() == 0 {
        from_tags
    } else {
        // Rows without url_tags fall back to the link.
        let from_link = creator_columns(mapper, &link, &no_handle, LinkKind::Url)?;
        let has_tags = arrow::compute::is_not_null(&tags).map_err(arrow_err)?;
        let merged: Vec<ArrayRef> = from_tags
            .0
            .iter()
            .zip(&from_link.0)
            .map(|(t, l)| zip(&has_tags, t, l).map_err(arrow_err))
            .collect::<Result<_>>()?;
        CreatorColumns(std::array::from_fn(|i| merged[i].clone()))
    };
    mapper.unresolved_rows += creator.creator_id().null_count() as u64;
    let reporting = spend_reporting(mapper, &date, &currency, &spend)?;
    let std = standard(raw, &mapper.standard)?;
    let (click, view) = if std.native {
        (
            Int32Array::from_value(mapper.standard.click_days, n),
            Int32Array::from_value(mapper.standard.view_days, n),
        )
    } else {
        (Int32Array::new_null(n), Int32Array::new_null(n))
    };
    let canonical = mapper
        .canonical(n)
        .column("date", date)
        .nulls(&["hour"])
        .text("platform", "meta")
        .column("placement", opt("publisher_platform", &DataType::Utf8))
        .text("channel", "paid")
        .column("account_id", req("account_id")?)
        .column("campaign_id", opt("campaign_id", &DataType::Utf8))
        .column("campaign_name", opt("campaign_name", &DataType::Utf8))
        .column("ad_group_id", opt("adset_id", &DataType::Utf8))
        .column("ad_group_name", opt("adset_name", &DataType::Utf8))
        .column("ad_id", opt("ad_id", &DataType::Utf8))
        .column("ad_name", opt("ad_name", &DataType::Utf8))
        .column("content_id", opt("instagram_permalink_url", &DataType::Utf8))
        .column("landing_url", link)
        .creator(creator)
        .column("impressions", opt("impressions", &DataType::Int64))
        .column("clicks", opt("inline_link_clicks", &DataType::Int64))
        .column("spend", spend)
        .column("currency", currency)
        .column("spend_reporting", reporting)
        .nulls(&["video_views", "engagements"])
        .column("conversions", std.conversions)
        .column("conversion_value", std.value)
        .column("click_window_days", Arc::new(click))
        .column("view_window_days", Arc::new(view))
        .text("attribution_basis", if std.native { "native" } else { "unnormalized" })
        .column("extracted_at", req("extracted_at")?)
        .finish()?;
    let (windows, window_rows) = windows_as_served(mapper.run_id, raw)?;
    Ok(Mapped {
        canonical,
        windows,
        window_rows,
    })
}

/// Every window column of the raw file as rows of the long table: one per
/// canonical row and window where the window is served.
fn windows_as_served(run_id: &str, raw: &RecordBatch) -> Result<(RecordBatch, UInt32Array)> {
    let n = raw.num_rows();
    let schema = raw.schema();
    let mut out = WindowRows::default();
    for w in schema
        .fields()
        .iter()
        .filter_map(|f| f.name().strip_prefix("conversions_"))
    {
        let typed_decimal = |name: String| {
            raw.column_by_name(&name)
                .map(|c| super::typed::decimal(c, &name).cloned())
                .transpose()
        };
        let c = typed_decimal(format!("conversions_{w}"))?;
        let v = typed_decimal(format!("conversion_value_{w}"))?;
        let (Some(c), Some(v)) = (c, v) else { continue };
        for i in 0..n {
            if c.is_valid(i) {
                out.push(i, w, Some(c.value(i)), v.is_valid(i).then(|| v.value(i)));
            }
        }
    }
    let keys = WindowKeys {
        platform: "meta",
        date: "date_start",
        hour: None,
        account: "account_id",
        ad: "ad_id",
        content: Some("instagram_permalink_url"),
        action: Ok("conversion_action"),
    };
    windows_batch(raw, &keys, out, run_id)
}

fn missing(name: &str) -> TransformError {
    RawColumns::missing_for("Meta", "crest-meta", name)
}

fn arrow_err(e: arrow::error::ArrowError) -> TransformError {
    TransformError::Input(format!("meta: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requested_window_left_out_is_zero_and_a_row_without_the_action_unknown() {
        // 7d_click, then 1d_view, as raw files of older crest versions hold them:
        // null where Meta left a zero-valued key out.
        let click = Decimal128Array::from(vec![Some(411), Some(5), None, None]);
        let view = Decimal128Array::from(vec![Some(204), None, Some(3), None]);
        let sum = add_windows(Some(click), Some(view), 4).unwrap();
        let sum = sum.as_any().downcast_ref::<Decimal128Array>().unwrap();
        assert_eq!(sum.iter().collect::<Vec<_>>(), vec![Some(615), Some(5), Some(3), None]);
    }
}
