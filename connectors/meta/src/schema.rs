//! The raw Meta insights schema (`meta.insights.v1`) and the served → typed
//! conversion. One row per ad × date × publisher platform. The chosen
//! conversion action's figures are columns per requested attribution window
//! (0 where the action's entry leaves a requested window out, because Meta
//! omits zero-valued window keys; null where the row has no entry for the
//! action; a window not requested has no column), next to the account-default
//! `value`; the full `actions` and `action_values` lists are kept as served.

use crate::api::{self, InsightRow};
use crate::AdMeta;
use arrow::array::{ArrayRef, Date32Builder, Decimal128Builder, Int64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Date32Type, Field, Schema, SchemaRef, TimeUnit};
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

pub const SCHEMA_TAG: &str = "meta.insights.v1";
const SCALE: i8 = 6;
const DECIMAL: DataType = DataType::Decimal128(38, SCALE);

const TEXT_COLUMNS: &[&str] = &[
    "account_id",
    "publisher_platform",
    "campaign_id",
    "campaign_name",
    "adset_id",
    "adset_name",
    "ad_id",
    "ad_name",
    "landing_url",
    "url_tags",
    "instagram_permalink_url",
    "currency",
    "timezone",
    "conversion_action",
];
const COUNT_COLUMNS: &[&str] = &["impressions", "clicks", "inline_link_clicks", "reach"];

pub fn raw_schema(windows: &[String]) -> SchemaRef {
    let mut fields = vec![Field::new("date_start", DataType::Date32, false)];
    for name in TEXT_COLUMNS {
        let nullable = !matches!(*name, "account_id" | "currency" | "timezone" | "conversion_action");
        fields.push(Field::new(*name, DataType::Utf8, nullable));
    }
    for name in COUNT_COLUMNS {
        fields.push(Field::new(*name, DataType::Int64, true));
    }
    fields.push(Field::new("spend", DECIMAL, true));
    fields.push(Field::new("conversions", DECIMAL, true));
    fields.push(Field::new("conversion_value", DECIMAL, true));
    for w in windows {
        fields.push(Field::new(format!("conversions_{w}"), DECIMAL, true));
        fields.push(Field::new(format!("conversion_value_{w}"), DECIMAL, true));
    }
    // The lists as served: long and mostly unique, so no dictionary.
    let plain = HashMap::from([(crest_core::raw::PLAIN_ENCODING.to_string(), "true".to_string())]);
    fields.push(Field::new("actions_json", DataType::Utf8, true).with_metadata(plain.clone()));
    fields.push(Field::new("action_values_json", DataType::Utf8, true).with_metadata(plain));
    fields.push(Field::new(
        "extracted_at",
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        false,
    ));
    fields.push(Field::new("run_id", DataType::Utf8, false));
    Arc::new(Schema::new(fields).with_metadata(HashMap::from([("crest.schema".to_string(), SCHEMA_TAG.to_string())])))
}

/// What converting a page needs besides the rows.
pub struct PageContext {
    /// `"{conversion_action}"`, searched for in each actions list.
    pub needle: String,
    pub account_id: String,
    pub currency: String,
    pub timezone: String,
    pub ads: Arc<HashMap<String, AdMeta>>,
    pub windows: Vec<String>,
    pub conversion_action: String,
    pub schema: SchemaRef,
    pub extracted_at_us: i64,
    pub run_id: String,
}

/// A decimal string → Decimal128 mantissa at scale 6, exactly.
pub fn parse_decimal(v: &str) -> Option<i128> {
    let mut d = Decimal::from_str(v.trim()).ok()?;
    if d.scale() > SCALE as u32 {
        return None;
    }
    d.rescale(SCALE as u32);
    Some(d.mantissa())
}

fn decimal_builder(n: usize) -> Decimal128Builder {
    Decimal128Builder::with_capacity(n)
        .with_precision_and_scale(38, SCALE)
        .unwrap_or_default()
}

/// The object of `action` in a served actions list, read without parsing the
/// rest: the list is most of a row, and only one of its items counts.
fn find_action<'a>(list: &'a str, needle: &str) -> Option<crest_core::json::Pairs<'a>> {
    let mut from = 0;
    while let Some(at) = list[from..].find(needle).map(|i| i + from) {
        from = at + needle.len();
        // It must be the value of "action_type", not some other key's.
        let before = list[..at].trim_end().strip_suffix(':')?.trim_end();
        if !before.ends_with("\"action_type\"") {
            continue;
        }
        let start = list[..at].rfind('{')?;
        let mut de = serde_json::Deserializer::from_str(&list[start..]).into_iter::<crest_core::json::Pairs<'a>>();
        return de.next().and_then(|r| r.ok());
    }
    None
}

/// The chosen action's `value` and per-window figures from an actions list.
fn pick(
    list: Option<&serde_json::value::RawValue>,
    needle: &str,
    action: &str,
    windows: &[String],
    row: usize,
) -> Result<(Option<i128>, Vec<Option<i128>>), String> {
    let mut out = (None, vec![None; windows.len()]);
    let Some(raw) = list else { return Ok(out) };
    // Exactly one action type counts: overlapping types (purchase, omni_purchase,
    // offsite_conversion.fb_pixel_purchase) carry the same events and are never summed.
    let found = match find_action(raw.get(), needle) {
        Some(item) => Some(item),
        None => {
            // Not found by the fast path: read the whole list (and catch a malformed one).
            let items = api::actions(raw).map_err(|e| format!("row {row}: {e}"))?;
            items.into_iter().find(|i| i.get("action_type") == Some(action))
        }
    };
    let Some(item) = found else { return Ok(out) };
    let num = |k: &str| -> Result<Option<i128>, String> {
        match item.get(k) {
            None => Ok(None),
            Some(v) => parse_decimal(v)
                .map(Some)
                .ok_or_else(|| format!("row {row}: {action} {k} = '{v}' is not a number")),
        }
    };
    out.0 = num("value")?;
    for (i, w) in windows.iter().enumerate() {
        // A requested window whose key is absent is zero: Meta omits zero-valued keys.
        out.1[i] = Some(num(w)?.unwrap_or(0));
    }
    Ok(out)
}

/// Decodes a whole results page into a batch.
pub fn decode_page(ctx: &PageContext, body: &[u8]) -> Result<RecordBatch, String> {
    let page: api::InsightsPage = serde_json::from_slice(body).map_err(|e| format!("malformed results page: {e}"))?;
    page_to_batch(ctx, &page.data)
}

pub fn page_to_batch(ctx: &PageContext, rows: &[InsightRow<'_>]) -> Result<RecordBatch, String> {
    let n = rows.len();
    let mut dates = Date32Builder::with_capacity(n);
    let mut text: Vec<StringBuilder> = TEXT_COLUMNS
        .iter()
        .map(|_| StringBuilder::with_capacity(n, n * 16))
        .collect();
    let mut counts: Vec<Int64Builder> = COUNT_COLUMNS.iter().map(|_| Int64Builder::with_capacity(n)).collect();
    let mut spend = decimal_builder(n);
    let mut conv = decimal_builder(n);
    let mut value = decimal_builder(n);
    let mut conv_w: Vec<Decimal128Builder> = ctx.windows.iter().map(|_| decimal_builder(n)).collect();
    let mut value_w: Vec<Decimal128Builder> = ctx.windows.iter().map(|_| decimal_builder(n)).collect();
    let mut actions_json = StringBuilder::with_capacity(n, n * 400);
    let mut values_json = StringBuilder::with_capacity(n, n * 200);
    for (i, r) in rows.iter().enumerate() {
        let date = Some(r.date_start.as_str())
            .filter(|d| d.len() == 10)
            .and_then(crest_core::window::ymd)
            .ok_or_else(|| format!("row {i}: date_start '{}' is not a date", r.date_start.as_str()))?;
        dates.append_value(Date32Type::from_naive_date(date));
        let ad_id = r.ad_id.as_ref().map(|t| t.as_str());
        let meta = ad_id.and_then(|a| ctx.ads.get(a));
        let values: [Option<&str>; 14] = [
            Some(r.account_id.as_ref().map_or(ctx.account_id.as_str(), |t| t.as_str())),
            r.publisher_platform.as_deref(),
            r.campaign_id
                .as_ref()
                .map(|t| t.as_str())
                .or(meta.map(|m| m.campaign_id.as_str())),
            r.campaign_name
                .as_deref()
                .or(meta.and_then(|m| m.campaign_name.as_deref())),
            r.adset_id
                .as_ref()
                .map(|t| t.as_str())
                .or(meta.map(|m| m.adset_id.as_str())),
            r.adset_name.as_deref().or(meta.and_then(|m| m.adset_name.as_deref())),
            ad_id,
            r.ad_name.as_deref().or(meta.and_then(|m| m.name.as_deref())),
            meta.and_then(|m| m.link.as_deref()),
            meta.and_then(|m| m.url_tags.as_deref()),
            meta.and_then(|m| m.permalink.as_deref()),
            Some(&ctx.currency),
            Some(&ctx.timezone),
            Some(&ctx.conversion_action),
        ];
        for (b, v) in text.iter_mut().zip(values) {
            b.append_option(v);
        }
        let served = [&r.impressions, &r.clicks, &r.inline_link_clicks, &r.reach];
        for ((b, v), name) in counts.iter_mut().zip(served).zip(COUNT_COLUMNS) {
            b.append_option(match v {
                None => None,
                Some(t) => Some(
                    t.as_str()
                        .parse::<i64>()
                        .map_err(|_| format!("row {i}: {name} = '{}' is not a count", t.as_str()))?,
                ),
            });
        }
        spend.append_option(match &r.spend {
            None => None,
            Some(t) => Some(
                parse_decimal(t.as_str()).ok_or_else(|| format!("row {i}: spend = '{}' is not money", t.as_str()))?,
            ),
        });
        let (c, cw) = pick(r.actions, &ctx.needle, &ctx.conversion_action, &ctx.windows, i)?;
        let (v, vw) = pick(r.action_values, &ctx.needle, &ctx.conversion_action, &ctx.windows, i)?;
        conv.append_option(c);
        value.append_option(v);
        for (b, x) in conv_w.iter_mut().zip(cw) {
            b.append_option(x);
        }
        for (b, x) in value_w.iter_mut().zip(vw) {
            b.append_option(x);
        }
        actions_json.append_option(r.actions.map(|a| a.get()));
        values_json.append_option(r.action_values.map(|a| a.get()));
    }
    let mut columns: Vec<ArrayRef> = vec![Arc::new(dates.finish())];
    columns.extend(text.into_iter().map(|mut b| Arc::new(b.finish()) as ArrayRef));
    columns.extend(counts.into_iter().map(|mut b| Arc::new(b.finish()) as ArrayRef));
    columns.push(Arc::new(spend.finish()));
    columns.push(Arc::new(conv.finish()));
    columns.push(Arc::new(value.finish()));
    for (mut c, mut v) in conv_w.into_iter().zip(value_w) {
        columns.push(Arc::new(c.finish()));
        columns.push(Arc::new(v.finish()));
    }
    columns.push(Arc::new(actions_json.finish()));
    columns.push(Arc::new(values_json.finish()));
    columns.extend(crest_core::raw::run_columns(n, &ctx.run_id, ctx.extracted_at_us));
    RecordBatch::try_new(ctx.schema.clone(), columns).map_err(|e| format!("cannot build an insights batch: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chosen_action_is_read_per_window_and_an_absent_requested_window_is_zero() {
        let raw = serde_json::value::RawValue::from_string(
            r#"[{"action_type":"purchase","value":"3","7d_click":"2"},{"action_type":"offsite_conversion.fb_pixel_purchase","value":"3","1d_click":"1","7d_click":"2","1d_view":"1"}]"#.into(),
        )
        .unwrap();
        let windows: Vec<String> = ["1d_click", "7d_click", "28d_click", "1d_view"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let action = "offsite_conversion.fb_pixel_purchase";
        let (v, w) = pick(Some(&raw), &format!("\"{action}\""), action, &windows, 0).unwrap();
        assert_eq!(v, Some(3_000_000));
        assert_eq!(w, vec![Some(1_000_000), Some(2_000_000), Some(0), Some(1_000_000)]);
        // No entry for the action at all: unknown, not zero.
        let other =
            serde_json::value::RawValue::from_string(r#"[{"action_type":"link_click","value":"5"}]"#.into()).unwrap();
        let (v, w) = pick(Some(&other), &format!("\"{action}\""), action, &windows, 0).unwrap();
        assert_eq!((v, w), (None, vec![None; 4]));
        let spaced = r#"[ {"action_type": "omni_purchase", "value": "9"}, { "action_type" : "offsite_conversion.fb_pixel_purchase", "value": "4" } ]"#;
        let item = find_action(spaced, "\"offsite_conversion.fb_pixel_purchase\"").unwrap();
        assert_eq!(item.get("value"), Some("4"));
        assert!(
            find_action(spaced, "purchase").is_none(),
            "\"purchase\" is not \"omni_purchase\""
        );
        assert_eq!(parse_decimal("12.34"), Some(12_340_000));
        assert_eq!(parse_decimal("1.1234567"), None);
    }
}
