//! Paid YouTube raw (`crest-youtube --ads-customer-id`, schema
//! `google_ads.ad_daily.v1`) → canonical.
//!
//! - `platform` youtube, `placement` youtube, `channel` paid; the account is
//!   the Google Ads customer; UTMs and the creator come from the ad's final URL;
//! - `spend` is the cost (exact micros), `clicks` Google's clicks;
//! - conversions are **recomputed** for the standard click window from the
//!   conversion-lag buckets: a bucket counts when it ends within the window
//!   (`to ≤ click days`). A bucket that straddles the boundary (e.g. 14–21
//!   days for a 15-day window) is left out: the figure may undercount, never
//!   invents conversions. With 7 days every bucket boundary falls on the
//!   window (0–1 … 6–7 count). Google's `conversions` metric counts clicks
//!   only, so `view_window_days` is 0; its view-through conversions and its
//!   own all-window figure stay in the attribution-windows table
//!   (`view_through`, `google_default`).

use super::{
    creator_columns, spend_reporting, windows_batch, LinkKind, Mapped, Mapper, Platform, RawColumns, WindowKeys,
    WindowRows,
};
use crate::canonical;
use crate::quality::{sum_decimal, Totals};
use crate::{Result, StandardWindow, TransformError};
use arrow::array::{new_null_array, Array, ArrayRef, Decimal128Array, Int32Array, RecordBatch, UInt32Array};
use arrow::datatypes::DataType;
use std::sync::Arc;

pub static PLATFORM: Platform = Platform {
    name: "youtube",
    daily_report: "ads_daily",
    hourly_report: "ads_hourly",
    schema_tags: &["google_ads.ad_daily.v1"],
    map,
    raw_totals,
};

/// The lag-bucket columns of a raw batch: (from day, to day, conversions, value).
type LagBucket = (u32, u32, Decimal128Array, Option<Decimal128Array>);

fn lag_buckets(raw: &RecordBatch) -> Result<Vec<LagBucket>> {
    let schema = raw.schema();
    let mut out = Vec::new();
    for f in schema.fields() {
        // conversions_lag_FF_TTd
        let Some(bounds) = f
            .name()
            .strip_prefix("conversions_lag_")
            .and_then(|b| b.strip_suffix('d'))
        else {
            continue;
        };
        let Some((from, to)) = bounds
            .split_once('_')
            .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
        else {
            continue;
        };
        let Some(conv) = raw.column_by_name(f.name()) else {
            continue;
        };
        let value_name = format!("conversions_value_lag_{bounds}d");
        let value = raw
            .column_by_name(&value_name)
            .map(|c| super::typed::decimal(c, &value_name).cloned())
            .transpose()?;
        out.push((from, to, super::typed::decimal(conv, f.name())?.clone(), value));
    }
    Ok(out)
}

/// Conversions and value whose lag bucket ends within `click_days`, per row;
/// `None` when the raw file carries no lag buckets.
fn recomputed(raw: &RecordBatch, click_days: i32) -> Result<Option<(ArrayRef, ArrayRef)>> {
    let buckets = lag_buckets(raw)?;
    if buckets.is_empty() {
        return Ok(None);
    }
    let n = raw.num_rows();
    let (mut conv, mut value) = (vec![0i128; n], vec![0i128; n]);
    for (_, _, c, v) in buckets.iter().filter(|b| b.1 as i64 <= click_days as i64) {
        for (i, x) in c.values().iter().enumerate() {
            conv[i] += x;
        }
        if let Some(v) = v {
            for (i, x) in v.values().iter().enumerate() {
                value[i] += x;
            }
        }
    }
    let dec = |v: Vec<i128>| -> Result<ArrayRef> {
        Ok(Arc::new(
            Decimal128Array::from(v)
                .with_precision_and_scale(38, canonical::DECIMAL_SCALE)
                .map_err(arrow_err)?,
        ))
    };
    Ok(Some((dec(conv)?, dec(value)?)))
}

/// A raw decimal (precision 18, stored compactly) as the canonical Decimal128(38, 6).
fn widen(a: &ArrayRef) -> Result<ArrayRef> {
    Ok(Arc::new(
        super::typed::decimal(a, "conversions")?
            .clone()
            .with_precision_and_scale(38, canonical::DECIMAL_SCALE)
            .map_err(arrow_err)?,
    ))
}

/// How a row's standard-window figure was made.
struct Standard {
    conversions: ArrayRef,
    value: ArrayRef,
    /// Per row: click and view window of the figure, and whether it is the
    /// standard window (`recomputed`) or not (`unnormalized`).
    click_days: Int32Array,
    view_days: Int32Array,
    normalized: Vec<bool>,
}

/// The standard window's conversions and value. The click part comes from
/// the lag buckets within the click window. The view part is the row's
/// view-through conversions (Google serves no value for them) when the
/// conversion actions count views for exactly the standard view window;
/// where they count another window the view-throughs are still added and the
/// row says `unnormalized` with its real windows. Without lag buckets,
/// Google's own figure is kept, unnormalized.
fn standard(raw: &RecordBatch, w: &StandardWindow) -> Result<Standard> {
    let n = raw.num_rows();
    let Some((click_conv, click_value)) = recomputed(raw, w.click_days)? else {
        return Ok(Standard {
            conversions: widen(
                raw.column_by_name("conversions")
                    .ok_or_else(|| missing("conversions"))?,
            )?,
            value: widen(
                raw.column_by_name("conversions_value")
                    .ok_or_else(|| missing("conversions_value"))?,
            )?,
            click_days: Int32Array::new_null(n),
            view_days: Int32Array::new_null(n),
            normalized: vec![false; n],
        });
    };
    // Raw files of older crest versions carry no window: the view part is unknown.
    let view_window = match raw.column_by_name("view_through_window_days") {
        Some(c) => Some(super::typed::int32(c, "view_through_window_days")?.clone()),
        None => None,
    };
    let view_through = match raw.column_by_name("view_through_conversions") {
        Some(c) => Some(super::typed::int64(c, "view_through_conversions")?.clone()),
        None => None,
    };
    let scale = 10i128.pow(canonical::DECIMAL_SCALE as u32);
    let clicks = super::typed::decimal(&click_conv, "conversions")?;
    let mut conv = Vec::with_capacity(n);
    let (mut views, mut normalized) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let window = view_window.as_ref().and_then(|v| v.is_valid(i).then(|| v.value(i)));
        let through = view_through
            .as_ref()
            .map_or(0, |v| if v.is_valid(i) { v.value(i) } else { 0 });
        let (extra, view, standard) = match window {
            _ if w.view_days == 0 => (0, 0, true),
            Some(days) => (through as i128 * scale, days, days == w.view_days),
            None => (0, 0, false),
        };
        conv.push(clicks.value(i) + extra);
        views.push(view);
        normalized.push(standard);
    }
    Ok(Standard {
        conversions: Arc::new(
            Decimal128Array::from(conv)
                .with_precision_and_scale(38, canonical::DECIMAL_SCALE)
                .map_err(arrow_err)?,
        ),
        value: click_value,
        click_days: Int32Array::from_value(w.click_days, n),
        view_days: Int32Array::from(views),
        normalized,
    })
}

pub fn raw_totals(raw: &RecordBatch, w: &StandardWindow) -> Result<Totals> {
    let cost = raw.column_by_name("cost").ok_or_else(|| missing("cost"))?;
    let conversions = standard(raw, w)?.conversions;
    Totals::of_raw(raw, "impressions", "clicks", cost, sum_decimal(&conversions))
}

fn map(mapper: &mut Mapper<'_>, raw: &RecordBatch) -> Result<Mapped> {
    let n = raw.num_rows();
    let cols = RawColumns::new(raw, "Google Ads", "crest-youtube");
    let req = |name: &str| cols.required(name);
    let opt = |name: &str, t: &DataType| cols.optional(name, t);

    let date = req("date")?;
    let currency = req("currency")?;
    let spend = widen(&req("cost")?)?;
    let link = opt("final_url", &DataType::Utf8);
    let no_handle = new_null_array(&DataType::Utf8, n);
    let creator = creator_columns(mapper, &link, &no_handle, LinkKind::Url)?;
    mapper.unresolved_rows += creator.creator_id().null_count() as u64;
    let reporting = spend_reporting(mapper, &date, &currency, &spend)?;
    let Standard {
        conversions,
        value,
        click_days: click,
        view_days: view,
        normalized,
    } = standard(raw, &mapper.standard)?;
    let basis: ArrayRef = Arc::new(arrow::array::StringArray::from_iter_values(
        normalized
            .iter()
            .map(|s| if *s { "recomputed" } else { "unnormalized" }),
    ));
    let canonical = mapper
        .canonical(n)
        .column("date", date)
        .nulls(&["hour"])
        .text("platform", "youtube")
        .text("placement", "youtube")
        .text("channel", "paid")
        .column("account_id", req("customer_id")?)
        .column("campaign_id", opt("campaign_id", &DataType::Utf8))
        .column("campaign_name", opt("campaign_name", &DataType::Utf8))
        .column("ad_group_id", opt("ad_group_id", &DataType::Utf8))
        .column("ad_group_name", opt("ad_group_name", &DataType::Utf8))
        .column("ad_id", req("ad_id")?)
        .column("ad_name", opt("ad_name", &DataType::Utf8))
        .nulls(&["content_id"])
        .column("landing_url", link)
        .creator(creator)
        .column("impressions", opt("impressions", &DataType::Int64))
        .column("clicks", opt("clicks", &DataType::Int64))
        .column("spend", spend)
        .column("currency", currency)
        .column("spend_reporting", reporting)
        .column("video_views", opt("video_views", &DataType::Int64))
        .column("engagements", opt("engagements", &DataType::Int64))
        .column("conversions", conversions)
        .column("conversion_value", value)
        .column("click_window_days", Arc::new(click))
        .column("view_window_days", Arc::new(view))
        .column("attribution_basis", basis)
        .column("extracted_at", req("extracted_at")?)
        .finish()?;
    let (windows, window_rows) = windows_as_served(mapper.run_id, raw)?;
    Ok(Mapped {
        canonical,
        windows,
        window_rows,
    })
}

/// Google's own figures per row: `google_default` (the `conversions` metric,
/// every lag the conversion action's window allows, 30 days by default) and
/// `view_through` (view-through conversions; Google serves no value for them).
fn windows_as_served(run_id: &str, raw: &RecordBatch) -> Result<(RecordBatch, UInt32Array)> {
    let conv = raw
        .column_by_name("conversions")
        .ok_or_else(|| missing("conversions"))?;
    let conv = super::typed::decimal(conv, "conversions")?;
    let value = super::typed::decimal(
        raw.column_by_name("conversions_value")
            .ok_or_else(|| missing("conversions_value"))?,
        "conversions_value",
    )?;
    let view = raw
        .column_by_name("view_through_conversions")
        .map(|c| super::typed::int64(c, "view_through_conversions").cloned())
        .transpose()?;
    let scale = 10i128.pow(canonical::DECIMAL_SCALE as u32);
    let mut out = WindowRows::default();
    for i in 0..raw.num_rows() {
        if conv.is_valid(i) {
            out.push(
                i,
                "google_default",
                Some(conv.value(i)),
                value.is_valid(i).then(|| value.value(i)),
            );
        }
        if let Some(v) = view.as_ref().filter(|v| v.is_valid(i)) {
            out.push(i, "view_through", Some(v.value(i) as i128 * scale), None);
        }
    }
    let keys = WindowKeys {
        platform: "youtube",
        date: "date",
        hour: None,
        account: "customer_id",
        ad: "ad_id",
        content: None,
        action: Err("conversions"),
    };
    windows_batch(raw, &keys, out, run_id)
}

fn missing(name: &str) -> TransformError {
    RawColumns::missing_for("Google Ads", "crest-youtube", name)
}

fn arrow_err(e: arrow::error::ArrowError) -> TransformError {
    TransformError::Input(format!("google ads: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::Decimal128Type;
    use arrow::datatypes::{Field, Schema};

    const DECIMAL: DataType = DataType::Decimal128(38, canonical::DECIMAL_SCALE);

    fn dec(v: &[i128]) -> ArrayRef {
        Arc::new(
            Decimal128Array::from(v.to_vec())
                .with_precision_and_scale(38, 6)
                .unwrap(),
        )
    }

    /// Three rows, 5 click conversions within 7 days each and 2 view-throughs:
    /// the action's view window is 1 day (the standard's), 3 days, unknown.
    #[test]
    fn view_throughs_are_the_view_part_when_the_action_counts_the_standard_view_window() {
        let fields = vec![
            Field::new("conversions_lag_00_01d", DECIMAL, false),
            Field::new("conversions_value_lag_00_01d", DECIMAL, false),
            Field::new("view_through_conversions", DataType::Int64, true),
            Field::new("view_through_window_days", DataType::Int32, true),
        ];
        let columns: Vec<ArrayRef> = vec![
            dec(&[5_000_000; 3]),
            dec(&[50_000_000; 3]),
            Arc::new(arrow::array::Int64Array::from(vec![2, 2, 2])),
            Arc::new(Int32Array::from(vec![Some(1), Some(3), None])),
        ];
        let raw = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        let s = standard(&raw, &StandardWindow::default()).unwrap();
        let conv = s.conversions.as_primitive::<Decimal128Type>();
        let got: Vec<(i128, i32, bool)> = (0..3)
            .map(|i| (conv.value(i) / 1_000_000, s.view_days.value(i), s.normalized[i]))
            .collect();
        // 5 + 2 in 7d_click,1d_view; 5 + 2 counted in a 3-day view window; 5 with no known view part.
        assert_eq!(got, vec![(7, 1, true), (7, 3, false), (5, 0, false)]);
        assert_eq!(
            s.value.as_primitive::<Decimal128Type>().value(0),
            50_000_000,
            "no value for view-throughs"
        );
        // A click-only standard window never adds views.
        let click_only = StandardWindow {
            click_days: 7,
            view_days: 0,
        };
        let s = standard(&raw, &click_only).unwrap();
        assert_eq!(s.conversions.as_primitive::<Decimal128Type>().value(1), 5_000_000);
        assert!(s.normalized.iter().all(|n| *n));
    }

    /// Worked example: one ad-day with 10 conversions (Google's 30-day
    /// figure): 4 the same day, 3 on day 3, 2 on day 10, 1 on day 20.
    #[test]
    fn lag_buckets_recompute_the_click_window() {
        let buckets = [(0, 1, 4), (2, 3, 3), (9, 10, 2), (14, 21, 1)];
        let mut fields = Vec::new();
        let mut columns = Vec::new();
        for (from, to, c) in buckets {
            fields.push(Field::new(
                format!("conversions_lag_{from:02}_{to:02}d"),
                DECIMAL,
                false,
            ));
            columns.push(dec(&[c * 1_000_000]));
            fields.push(Field::new(
                format!("conversions_value_lag_{from:02}_{to:02}d"),
                DECIMAL,
                false,
            ));
            columns.push(dec(&[c * 25_000_000]));
        }
        let raw = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        let at = |days: i32| {
            let (c, v) = recomputed(&raw, days).unwrap().unwrap();
            (
                c.as_primitive::<Decimal128Type>().value(0) / 1_000_000,
                v.as_primitive::<Decimal128Type>().value(0) / 1_000_000,
            )
        };
        assert_eq!(at(1), (4, 100));
        assert_eq!(at(7), (7, 175), "0-1 and 2-3 are within 7 days; 9-10 is not");
        assert_eq!(at(14), (9, 225));
        // 14-21 straddles a 15-day window: left out, never guessed.
        assert_eq!(at(15), (9, 225));
        assert_eq!(at(30), (10, 250), "Google's 30-day figure");
    }
}
