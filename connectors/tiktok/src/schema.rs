//! The raw TikTok report schema and the served → typed conversion: ids as
//! strings, counts as integers, money as decimals parsed from the served
//! strings, rates as floats, `"-"` as null (never 0).

use crate::api::ReportRow;
use crate::Meta;
use arrow::array::{
    ArrayRef, Date32Builder, Decimal128Builder, Float64Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampSecondBuilder,
};
use arrow::datatypes::{DataType, Date32Type, Field, Schema, SchemaRef, TimeUnit};
use chrono::{NaiveDate, NaiveDateTime};
use rust_decimal::Decimal;
use std::str::FromStr;
use std::sync::Arc;

/// Money columns: Decimal128 with 6 decimal places (any currency's minor units, exactly).
pub const MONEY_PRECISION: u8 = 38;
pub const MONEY_SCALE: i8 = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Count,
    Money,
    Rate,
    /// A metric crest does not know: kept as served.
    Text,
}

/// Metrics crest knows the type of. Others requested with `--metrics` are kept as text.
pub fn metric_kind(name: &str) -> MetricKind {
    match name {
        "spend"
        | "cpc"
        | "cpm"
        | "cost_per_conversion"
        | "cost_per_result"
        | "total_complete_payment_rate"
        | "cost_per_1000_reached"
        | "value_per_complete_payment"
        | "total_purchase_value" => MetricKind::Money,
        "impressions"
        | "clicks"
        | "reach"
        | "conversion"
        | "result"
        | "real_time_conversion"
        | "video_play_actions"
        | "video_watched_2s"
        | "video_watched_6s"
        | "video_views_p25"
        | "video_views_p50"
        | "video_views_p75"
        | "video_views_p100"
        | "likes"
        | "comments"
        | "shares"
        | "follows"
        | "profile_visits"
        | "complete_payment"
        | "clicks_on_music_disc"
        | "engaged_view" => MetricKind::Count,
        "ctr"
        | "frequency"
        | "conversion_rate"
        | "complete_payment_roas"
        | "average_video_play"
        | "average_video_play_per_user"
        | "result_rate" => MetricKind::Rate,
        _ => MetricKind::Text,
    }
}

/// The default metric set: what the canonical schema needs, and the
/// engagement counts creator programs compare.
pub const DEFAULT_METRICS: &[&str] = &[
    "spend",
    "impressions",
    "clicks",
    "ctr",
    "cpc",
    "cpm",
    "reach",
    "conversion",
    "cost_per_conversion",
    "conversion_rate",
    "complete_payment",
    "total_complete_payment_rate",
    "video_play_actions",
    "video_watched_2s",
    "video_watched_6s",
    "likes",
    "comments",
    "shares",
    "follows",
    "profile_visits",
];

/// Columns before the metrics; every level shares them (null where a level has none).
const DESCRIPTORS: &[(&str, DataType, bool)] = &[
    ("advertiser_id", DataType::Utf8, false),
    ("stat_date", DataType::Date32, false),
    ("stat_hour", DataType::Int32, true),
    ("campaign_id", DataType::Utf8, true),
    ("campaign_name", DataType::Utf8, true),
    ("adgroup_id", DataType::Utf8, true),
    ("adgroup_name", DataType::Utf8, true),
    ("ad_id", DataType::Utf8, true),
    ("ad_name", DataType::Utf8, true),
    ("landing_page_url", DataType::Utf8, true),
    ("identity_id", DataType::Utf8, true),
    ("tiktok_item_id", DataType::Utf8, true),
    ("optimization_goal", DataType::Utf8, true),
    ("click_attribution_window", DataType::Utf8, true),
    ("view_attribution_window", DataType::Utf8, true),
    ("click_window_days", DataType::Int32, true),
    ("view_window_days", DataType::Int32, true),
    ("currency", DataType::Utf8, false),
    ("timezone", DataType::Utf8, false),
];

pub fn raw_schema(metrics: &[String]) -> SchemaRef {
    let mut fields: Vec<Field> = DESCRIPTORS
        .iter()
        .map(|(n, t, null)| Field::new(*n, t.clone(), *null))
        .collect();
    fields.push(Field::new(
        "ad_modify_time",
        DataType::Timestamp(TimeUnit::Second, Some("UTC".into())),
        true,
    ));
    for m in metrics {
        let t = match metric_kind(m) {
            MetricKind::Count => DataType::Int64,
            MetricKind::Money => DataType::Decimal128(MONEY_PRECISION, MONEY_SCALE),
            MetricKind::Rate => DataType::Float64,
            MetricKind::Text => DataType::Utf8,
        };
        fields.push(Field::new(m.as_str(), t, true));
    }
    fields.push(Field::new(
        "extracted_at",
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        false,
    ));
    fields.push(Field::new("run_id", DataType::Utf8, false));
    Arc::new(
        Schema::new(fields).with_metadata(
            [("crest.schema".to_string(), "tiktok.report.v1".to_string())]
                .into_iter()
                .collect(),
        ),
    )
}

/// TikTok's attribution window enums in days (`OFF` is 0).
pub fn window_days(window: &str) -> Option<i32> {
    Some(match window {
        "OFF" => 0,
        "ONE_DAY" => 1,
        "SEVEN_DAYS" => 7,
        "FOURTEEN_DAYS" => 14,
        "TWENTY_EIGHT_DAYS" => 28,
        _ => return None,
    })
}

enum MetricBuilder {
    Count(Int64Builder),
    Money(Decimal128Builder),
    Rate(Float64Builder),
    Text(StringBuilder),
}

/// Everything a page conversion needs besides the rows.
pub struct PageContext {
    pub advertiser_id: String,
    pub meta: Arc<Meta>,
    pub metrics: Vec<String>,
    pub schema: SchemaRef,
    pub hourly: bool,
    pub extracted_at_us: i64,
    pub run_id: String,
}

/// Converts one served page into a typed batch. An unparsable value is an
/// error naming the row and metric (the caller retries, then reports it).
pub fn page_to_batch(ctx: &PageContext, rows: &[ReportRow<'_>]) -> Result<RecordBatch, String> {
    let n = rows.len();
    let mut strings: Vec<StringBuilder> = (0..14).map(|_| StringBuilder::with_capacity(n, n * 16)).collect();
    let mut dates = Date32Builder::with_capacity(n);
    let mut hours = Int32Builder::with_capacity(n);
    let mut click_days = Int32Builder::with_capacity(n);
    let mut view_days = Int32Builder::with_capacity(n);
    let mut modify = TimestampSecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut metrics: Vec<MetricBuilder> = ctx
        .metrics
        .iter()
        .map(|m| match metric_kind(m) {
            MetricKind::Count => MetricBuilder::Count(Int64Builder::with_capacity(n)),
            MetricKind::Money => MetricBuilder::Money(
                Decimal128Builder::with_capacity(n)
                    .with_precision_and_scale(MONEY_PRECISION, MONEY_SCALE)
                    .unwrap_or_default(),
            ),
            MetricKind::Rate => MetricBuilder::Rate(Float64Builder::with_capacity(n)),
            MetricKind::Text => MetricBuilder::Text(StringBuilder::new()),
        })
        .collect();
    let currency = ctx.meta.currency.as_str();
    let timezone = ctx.meta.timezone.as_str();

    for (i, row) in rows.iter().enumerate() {
        let d = &row.dimensions;
        let (date, hour) = match (&d.stat_time_day, &d.stat_time_hour) {
            (Some(t), None) if !ctx.hourly => (parse_day(t.as_str())?, None),
            (None, Some(t)) if ctx.hourly => {
                let (day, hour) = parse_hour(t.as_str())?;
                (day, Some(hour))
            }
            _ => {
                return Err(format!(
                    "row {i} has no {} dimension",
                    if ctx.hourly { "stat_time_hour" } else { "stat_time_day" }
                ))
            }
        };
        dates.append_value(Date32Type::from_naive_date(date));
        hours.append_option(hour);

        // Resolve the row's entity through the metadata, from the finest id served.
        let ad = d.ad_id.as_ref().and_then(|id| ctx.meta.ads.get(id.as_str()));
        let adgroup_id = ad
            .map(|a| a.adgroup_id.as_str())
            .or(d.adgroup_id.as_ref().map(|t| t.as_str()));
        let group = adgroup_id.and_then(|g| ctx.meta.adgroups.get(g));
        let campaign_id = group
            .map(|g| g.campaign_id.as_str())
            .or(ad.and_then(|a| a.campaign_id.as_ref().map(|t| t.as_str())))
            .or(d.campaign_id.as_ref().map(|t| t.as_str()));
        let campaign_name = campaign_id
            .and_then(|c| ctx.meta.campaign_names.get(c))
            .map(String::as_str);

        let values: [Option<&str>; 14] = [
            Some(ctx.advertiser_id.as_str()),
            campaign_id,
            campaign_name,
            adgroup_id,
            group.and_then(|g| g.adgroup_name.as_deref()),
            d.ad_id.as_ref().map(|t| t.as_str()),
            ad.and_then(|a| a.ad_name.as_deref()),
            ad.and_then(|a| a.landing_page_url.as_deref()),
            ad.and_then(|a| a.identity_id.as_deref()),
            ad.and_then(|a| a.tiktok_item_id.as_ref().map(|t| t.as_str())),
            group.and_then(|g| g.optimization_goal.as_deref()),
            group.and_then(|g| g.click_attribution_window.as_deref()),
            group.and_then(|g| g.view_attribution_window.as_deref()),
            Some(currency),
        ];
        for (b, v) in strings.iter_mut().zip(values) {
            b.append_option(v);
        }
        click_days.append_option(group.and_then(|g| g.click_days));
        view_days.append_option(group.and_then(|g| g.view_days));
        modify.append_option(ad.and_then(|a| a.modify_ts));

        for (position, (b, name)) in metrics.iter_mut().zip(&ctx.metrics).enumerate() {
            let served = row.metrics.get_at(position, name);
            let value = served.map(str::trim).filter(|v| !v.is_empty() && *v != "-");
            let bad = |v: &str| format!("row {i}: metric {name} = '{v}' is not a valid {:?}", metric_kind(name));
            match b {
                MetricBuilder::Count(b) => b.append_option(match value {
                    None => None,
                    Some(v) => Some(parse_count(v).ok_or_else(|| bad(v))?),
                }),
                MetricBuilder::Money(b) => b.append_option(match value {
                    None => None,
                    Some(v) => Some(parse_money(v).ok_or_else(|| bad(v))?),
                }),
                MetricBuilder::Rate(b) => b.append_option(match value {
                    None => None,
                    Some(v) => Some(v.parse::<f64>().ok().filter(|f| f.is_finite()).ok_or_else(|| bad(v))?),
                }),
                MetricBuilder::Text(b) => b.append_option(value),
            }
        }
    }

    let mut it = strings.into_iter();
    let mut next = || -> ArrayRef { Arc::new(it.next().expect("14 string builders").finish()) };
    let advertiser = next();
    let mut columns: Vec<ArrayRef> = vec![advertiser, Arc::new(dates.finish()), Arc::new(hours.finish())];
    for _ in 0..12 {
        columns.push(next());
    }
    columns.push(Arc::new(click_days.finish()));
    columns.push(Arc::new(view_days.finish()));
    columns.push(next()); // currency
    let mut tz = StringBuilder::with_capacity(n, n * timezone.len());
    for _ in 0..n {
        tz.append_value(timezone);
    }
    columns.push(Arc::new(tz.finish()));
    columns.push(Arc::new(modify.finish()));
    for b in metrics {
        columns.push(match b {
            MetricBuilder::Count(mut b) => Arc::new(b.finish()),
            MetricBuilder::Money(mut b) => Arc::new(b.finish()),
            MetricBuilder::Rate(mut b) => Arc::new(b.finish()),
            MetricBuilder::Text(mut b) => Arc::new(b.finish()),
        });
    }
    columns.extend(crest_core::raw::run_columns(n, &ctx.run_id, ctx.extracted_at_us));
    RecordBatch::try_new(ctx.schema.clone(), columns).map_err(|e| format!("cannot build a report batch: {e}"))
}

fn parse_day(s: &str) -> Result<NaiveDate, String> {
    crest_core::window::ymd(s).ok_or_else(|| format!("stat_time_day '{s}' is not a date"))
}

fn parse_hour(s: &str) -> Result<(NaiveDate, i32), String> {
    let t = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .map_err(|_| format!("stat_time_hour '{s}' is not a time stamp"))?;
    Ok((t.date(), chrono::Timelike::hour(&t) as i32))
}

pub fn parse_modify_time(s: &str) -> Option<i64> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|t| t.and_utc().timestamp())
}

fn parse_count(v: &str) -> Option<i64> {
    v.parse::<i64>().ok().or_else(|| {
        // Some counts are served as "12.0".
        let d = Decimal::from_str(v).ok()?;
        (d.fract().is_zero())
            .then(|| i64::try_from(d.mantissa() / 10i128.pow(d.scale())).ok())
            .flatten()
    })
}

/// A decimal string → Decimal128 mantissa at `MONEY_SCALE`, exactly (rounded
/// half-even only past six decimals, which no currency has).
pub fn parse_money(v: &str) -> Option<i128> {
    let mut d = Decimal::from_str(v).ok()?;
    d.rescale(MONEY_SCALE as u32);
    Some(d.mantissa())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_exact() {
        assert_eq!(parse_money("12.34"), Some(12_340_000));
        assert_eq!(parse_money("0.1"), Some(100_000));
        assert_eq!(parse_money("1234567890.99"), Some(1_234_567_890_990_000));
        assert_eq!(parse_money("abc"), None);
    }

    #[test]
    fn counts_accept_integral_decimals_only() {
        assert_eq!(parse_count("42"), Some(42));
        assert_eq!(parse_count("42.0"), Some(42));
        assert_eq!(parse_count("42.5"), None);
    }

    #[test]
    fn windows_map_to_days() {
        assert_eq!(window_days("SEVEN_DAYS"), Some(7));
        assert_eq!(window_days("OFF"), Some(0));
        assert_eq!(window_days("NINETY"), None);
    }
}
