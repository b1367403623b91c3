//! One row of the GA4 export (`analytics_{property}.events_*`), as BigQuery's
//! `TO_JSON_STRING`, a newline-delimited JSON export or a Parquet export
//! (through Arrow's JSON writer) all spell it, reduced to what attribution
//! needs: who, when, which session, the session's campaign parameters and,
//! for a conversion, its transaction and revenue.
//!
//! A row that cannot be placed at all (no event name, no date) stops the
//! extract: the input is not a GA4 export. A row with a bad value (no user,
//! a revenue that is not a number) is kept with its `quarantine_reason`, so
//! nothing is dropped silently and attribution leaves it out.

use arrow::array::{
    ArrayRef, Date32Builder, Decimal128Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Date32Type, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDate};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

/// The event GA4 logs when a session starts: it carries the session's
/// landing page and campaign parameters.
pub const SESSION_START: &str = "session_start";
/// Revenue columns: exact decimals with six places, as every crest money column.
pub const MONEY: DataType = DataType::Decimal128(38, 6);
const MONEY_SCALE: u32 = 6;

/// The export's columns a table or file must have to be read.
pub const REQUIRED_COLUMNS: &[&str] = &["event_date", "event_timestamp", "event_name", "user_pseudo_id"];

/// (name, type, description)
const COLUMNS: &[(&str, DataType, &str)] = &[
    ("event_date", DataType::Date32, "The event's date in the property's reporting time zone (GA4 event_date)."),
    ("event_timestamp", DataType::Timestamp(TimeUnit::Microsecond, None), "When the event was logged, UTC (GA4 event_timestamp)."),
    ("event_name", DataType::Utf8, "session_start, or a conversion event (purchase by default)."),
    ("property_id", DataType::Utf8, "The GA4 property."),
    ("user_pseudo_id", DataType::Utf8, "GA4's pseudonymous id of the browser or app instance: one user's journey."),
    ("user_id", DataType::Utf8, "The brand's own user id, where the site sets one."),
    ("ga_session_id", DataType::Int64, "The session (event parameter ga_session_id)."),
    ("manual_source", DataType::Utf8, "utm_source as GA4 collected it for this event (collected_traffic_source.manual_source)."),
    ("manual_medium", DataType::Utf8, "utm_medium (collected_traffic_source.manual_medium)."),
    ("manual_campaign_name", DataType::Utf8, "utm_campaign (collected_traffic_source.manual_campaign_name)."),
    ("manual_content", DataType::Utf8, "utm_content (collected_traffic_source.manual_content)."),
    ("manual_term", DataType::Utf8, "utm_term (collected_traffic_source.manual_term)."),
    ("page_location", DataType::Utf8, "The page URL (event parameter page_location): its UTMs stand in where GA4 collected none."),
    ("page_referrer", DataType::Utf8, "The referring URL (event parameter page_referrer)."),
    ("last_click_source", DataType::Utf8, "The session's last non-direct click source (session_traffic_source_last_click), where the export has it."),
    ("last_click_medium", DataType::Utf8, "The session's last non-direct click medium."),
    ("last_click_campaign", DataType::Utf8, "The session's last non-direct click campaign."),
    ("transaction_id", DataType::Utf8, "A purchase's transaction (ecommerce.transaction_id): GA4 may log one twice."),
    ("revenue", MONEY, "A conversion's revenue in the property's currency (ecommerce.purchase_revenue, else the value parameter), exact."),
    ("currency", DataType::Utf8, "The currency parameter of the event."),
    ("quarantine_reason", DataType::Utf8, "Why attribution leaves the event out (no user, a revenue that is not a number); null for a good event."),
    ("extracted_at", DataType::Timestamp(TimeUnit::Microsecond, None), "When crest read the event (UTC)."),
    ("run_id", DataType::Utf8, "The extract run that wrote the row."),
];

/// The raw `raw/ga4/events` schema.
pub fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let fields: Vec<Field> = COLUMNS
                .iter()
                .map(|(name, t, doc)| {
                    let t = match t {
                        DataType::Timestamp(unit, None) => DataType::Timestamp(*unit, Some(Arc::from("UTC"))),
                        t => t.clone(),
                    };
                    let required = matches!(*name, "event_date" | "event_timestamp" | "event_name" | "property_id")
                        || matches!(*name, "extracted_at" | "run_id");
                    Field::new(*name, t, !required)
                        .with_metadata(HashMap::from([("description".to_string(), doc.to_string())]))
                })
                .collect();
            Arc::new(Schema::new(fields).with_metadata(HashMap::from([(
                "crest.schema".to_string(),
                "raw.ga4.events.v1".to_string(),
            )])))
        })
        .clone()
}

/// One kept event, flattened.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub date: NaiveDate,
    pub at_us: i64,
    pub name: String,
    pub user_pseudo_id: Option<String>,
    pub user_id: Option<String>,
    pub ga_session_id: Option<i64>,
    /// source, medium, campaign, content, term
    pub manual: [Option<String>; 5],
    pub page_location: Option<String>,
    pub page_referrer: Option<String>,
    /// source, medium, campaign
    pub last_click: [Option<String>; 3],
    pub transaction_id: Option<String>,
    pub revenue: Option<Decimal>,
    pub currency: Option<String>,
    pub quarantine_reason: Option<String>,
}

#[derive(Deserialize)]
struct ExportRow {
    event_date: Option<Value>,
    event_timestamp: Option<Value>,
    event_name: Option<String>,
    #[serde(default)]
    event_params: Option<Vec<Param>>,
    user_id: Option<String>,
    user_pseudo_id: Option<String>,
    collected_traffic_source: Option<Collected>,
    session_traffic_source_last_click: Option<LastClick>,
    ecommerce: Option<Ecommerce>,
}

#[derive(Deserialize)]
struct Param {
    key: Option<String>,
    value: Option<ParamValue>,
}

#[derive(Deserialize)]
struct ParamValue {
    string_value: Option<String>,
    int_value: Option<Value>,
    float_value: Option<Value>,
    double_value: Option<Value>,
}

#[derive(Deserialize)]
struct Collected {
    manual_source: Option<String>,
    manual_medium: Option<String>,
    manual_campaign_name: Option<String>,
    manual_content: Option<String>,
    manual_term: Option<String>,
}

#[derive(Deserialize)]
struct LastClick {
    manual_campaign: Option<ManualCampaign>,
}

#[derive(Deserialize)]
struct ManualCampaign {
    source: Option<String>,
    medium: Option<String>,
    campaign_name: Option<String>,
}

#[derive(Deserialize)]
struct Ecommerce {
    transaction_id: Option<String>,
    purchase_revenue: Option<Value>,
}

/// A number as JSON carries it: a number, or a string (BigQuery's JSON
/// spells INT64 as a string where it could lose precision).
fn number_text(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    }
}

fn int(v: Option<&Value>) -> Option<i64> {
    v.and_then(number_text).and_then(|s| s.parse::<i64>().ok())
}

fn blank_to_none(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Parses one export row. `Ok(None)`: an event attribution does not use.
/// `Err`: the row is not a GA4 export row at all.
pub fn parse(row: &[u8], conversions: &[String]) -> Result<Option<Event>, String> {
    let row: ExportRow = serde_json::from_slice(row).map_err(|e| format!("is not a GA4 export row ({e})"))?;
    let name = blank_to_none(row.event_name).ok_or("has no event_name: not a GA4 export row")?;
    if name != SESSION_START && !conversions.contains(&name) {
        return Ok(None);
    }
    let mut problems: Vec<String> = Vec::new();
    let at_us = int(row.event_timestamp.as_ref());
    let date = row
        .event_date
        .as_ref()
        .and_then(number_text)
        .and_then(|d| NaiveDate::parse_from_str(&d, "%Y%m%d").ok())
        .or_else(|| at_us.and_then(DateTime::from_timestamp_micros).map(|t| t.date_naive()))
        .ok_or("has neither a YYYYMMDD event_date nor an event_timestamp")?;
    let at_us = at_us.unwrap_or_else(|| {
        problems.push("event_timestamp missing or not a number".into());
        date.and_hms_opt(0, 0, 0).map_or(0, |t| t.and_utc().timestamp_micros())
    });
    let user_pseudo_id = blank_to_none(row.user_pseudo_id);
    if user_pseudo_id.is_none() {
        problems.push("no user_pseudo_id".into());
    }
    let params: Vec<(String, ParamValue)> = row
        .event_params
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| Some((p.key?, p.value?)))
        .collect();
    let param = |k: &str| params.iter().find(|(key, _)| key == k).map(|(_, v)| v);
    let text = |k: &str| param(k).and_then(|v| blank_to_none(v.string_value.clone()));
    let ga_session_id = param("ga_session_id").and_then(|v| {
        int(v.int_value.as_ref()).or_else(|| v.string_value.as_deref().and_then(|s| s.trim().parse().ok()))
    });
    let collected = row.collected_traffic_source;
    let manual = match collected {
        Some(c) => [
            blank_to_none(c.manual_source),
            blank_to_none(c.manual_medium),
            blank_to_none(c.manual_campaign_name),
            blank_to_none(c.manual_content),
            blank_to_none(c.manual_term),
        ],
        None => Default::default(),
    };
    let last = row.session_traffic_source_last_click.and_then(|l| l.manual_campaign);
    let last_click = match last {
        Some(m) => [
            blank_to_none(m.source),
            blank_to_none(m.medium),
            blank_to_none(m.campaign_name),
        ],
        None => Default::default(),
    };
    let (mut transaction_id, mut revenue) = (None, None);
    if name != SESSION_START {
        let ecommerce = row.ecommerce;
        transaction_id = ecommerce
            .as_ref()
            .and_then(|e| blank_to_none(e.transaction_id.clone()))
            .or_else(|| text("transaction_id"));
        // purchase_revenue, else the event's value parameter (a lead's value).
        let served = ecommerce
            .and_then(|e| e.purchase_revenue)
            .filter(|v| !v.is_null())
            .or_else(|| {
                param("value").and_then(|v| {
                    [&v.double_value, &v.float_value, &v.int_value]
                        .into_iter()
                        .flatten()
                        .find(|x| !x.is_null())
                        .cloned()
                        .or_else(|| v.string_value.clone().map(Value::String))
                })
            });
        if let Some(v) = served {
            match number_text(&v).and_then(|s| Decimal::from_str(&s).or_else(|_| Decimal::from_scientific(&s)).ok()) {
                Some(d) if d.is_sign_negative() => problems.push(format!("revenue {d} is negative")),
                Some(d) => revenue = Some(d.round_dp(MONEY_SCALE)),
                None => problems.push(format!(
                    "revenue {} is not a number",
                    crest_core::error::brief(&v.to_string(), 40)
                )),
            }
        }
    }
    Ok(Some(Event {
        date,
        at_us,
        name,
        user_pseudo_id,
        user_id: blank_to_none(row.user_id),
        ga_session_id,
        manual,
        page_location: text("page_location"),
        page_referrer: text("page_referrer"),
        last_click,
        transaction_id,
        revenue,
        currency: text("currency"),
        quarantine_reason: (!problems.is_empty()).then(|| problems.join("; ")),
    }))
}

/// The kept events of one property as a raw batch.
pub fn batch(
    events: &[Event],
    property_id: &str,
    run_id: &str,
    extracted_at_us: i64,
) -> crest_core::Result<RecordBatch> {
    let n = events.len();
    let text = |f: &dyn Fn(&Event) -> Option<&str>| -> ArrayRef {
        let mut b = StringBuilder::with_capacity(n, n * 8);
        for e in events {
            b.append_option(f(e));
        }
        Arc::new(b.finish())
    };
    let mut date = Date32Builder::with_capacity(n);
    let mut at = TimestampMicrosecondBuilder::with_capacity(n);
    let mut session = Int64Builder::with_capacity(n);
    let mut revenue = Decimal128Builder::with_capacity(n);
    for e in events {
        date.append_value(Date32Type::from_naive_date(e.date));
        at.append_value(e.at_us);
        session.append_option(e.ga_session_id);
        revenue.append_option(e.revenue.map(|d| {
            let mut d = d;
            d.rescale(MONEY_SCALE);
            d.mantissa()
        }));
    }
    let [extracted, run] = crest_core::raw::run_columns(n, run_id, extracted_at_us);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(date.finish()),
        Arc::new(at.finish().with_timezone("UTC")),
        text(&|e| Some(e.name.as_str())),
        Arc::new(arrow::array::StringArray::from_iter_values(std::iter::repeat_n(
            property_id,
            n,
        ))),
        text(&|e| e.user_pseudo_id.as_deref()),
        text(&|e| e.user_id.as_deref()),
        Arc::new(session.finish()),
        text(&|e| e.manual[0].as_deref()),
        text(&|e| e.manual[1].as_deref()),
        text(&|e| e.manual[2].as_deref()),
        text(&|e| e.manual[3].as_deref()),
        text(&|e| e.manual[4].as_deref()),
        text(&|e| e.page_location.as_deref()),
        text(&|e| e.page_referrer.as_deref()),
        text(&|e| e.last_click[0].as_deref()),
        text(&|e| e.last_click[1].as_deref()),
        text(&|e| e.last_click[2].as_deref()),
        text(&|e| e.transaction_id.as_deref()),
        Arc::new(
            revenue
                .finish()
                .with_precision_and_scale(38, MONEY_SCALE as i8)
                .map_err(|e| crest_core::Error::Data(format!("revenue column: {e}")))?,
        ),
        text(&|e| e.currency.as_deref()),
        text(&|e| e.quarantine_reason.as_deref()),
        extracted,
        run,
    ];
    RecordBatch::try_new(schema(), columns).map_err(|e| crest_core::Error::Data(format!("cannot build GA4 rows: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv() -> Vec<String> {
        vec!["purchase".into()]
    }

    #[test]
    fn a_session_start_keeps_its_campaign_and_page() {
        let row = br#"{"event_date":"20261201","event_timestamp":1764547200000000,"event_name":"session_start",
            "user_pseudo_id":"u1","event_params":[{"key":"ga_session_id","value":{"int_value":"17"}},
            {"key":"page_location","value":{"string_value":"https://shop.example/?utm_source=cr_00001"}}],
            "collected_traffic_source":{"manual_source":"cr_00001","manual_medium":"tiktok"}}"#;
        let e = parse(row, &conv()).unwrap().unwrap();
        assert_eq!(e.date, NaiveDate::from_ymd_opt(2026, 12, 1).unwrap());
        assert_eq!(e.ga_session_id, Some(17));
        assert_eq!(e.manual[0].as_deref(), Some("cr_00001"));
        assert_eq!(e.manual[1].as_deref(), Some("tiktok"));
        assert!(e.page_location.unwrap().contains("utm_source"));
        assert_eq!(e.quarantine_reason, None);
    }

    #[test]
    fn a_purchase_keeps_its_transaction_and_exact_revenue() {
        let row = br#"{"event_date":"20261201","event_timestamp":"1764547300000000","event_name":"purchase",
            "user_pseudo_id":"u1","ecommerce":{"transaction_id":"T1","purchase_revenue":19.99},
            "event_params":[{"key":"currency","value":{"string_value":"USD"}}]}"#;
        let e = parse(row, &conv()).unwrap().unwrap();
        assert_eq!(e.transaction_id.as_deref(), Some("T1"));
        assert_eq!(e.revenue, Some(Decimal::from_str("19.99").unwrap()));
        assert_eq!(e.currency.as_deref(), Some("USD"));
    }

    #[test]
    fn other_events_are_skipped_and_configured_conversions_kept() {
        let row = br#"{"event_date":"20261201","event_timestamp":1,"event_name":"page_view","user_pseudo_id":"u1"}"#;
        assert_eq!(parse(row, &conv()).unwrap(), None);
        let lead = br#"{"event_date":"20261201","event_timestamp":1,"event_name":"generate_lead","user_pseudo_id":"u1",
            "event_params":[{"key":"value","value":{"double_value":12.5}}]}"#;
        let e = parse(lead, &["generate_lead".into()]).unwrap().unwrap();
        assert_eq!(e.revenue, Some(Decimal::from_str("12.5").unwrap()));
    }

    #[test]
    fn bad_values_are_quarantined_with_a_reason_and_bad_rows_refused() {
        let row = br#"{"event_date":"20261201","event_timestamp":1,"event_name":"purchase","user_pseudo_id":"u1",
            "ecommerce":{"transaction_id":"T1","purchase_revenue":"twelve"}}"#;
        let e = parse(row, &conv()).unwrap().unwrap();
        assert_eq!(e.revenue, None);
        assert!(e
            .quarantine_reason
            .unwrap()
            .contains("revenue \"twelve\" is not a number"));
        let no_user = br#"{"event_date":"20261201","event_timestamp":1,"event_name":"purchase"}"#;
        assert_eq!(
            parse(no_user, &conv()).unwrap().unwrap().quarantine_reason.as_deref(),
            Some("no user_pseudo_id")
        );
        assert!(parse(br#"{"event_timestamp":1}"#, &conv())
            .unwrap_err()
            .contains("event_name"));
        assert!(parse(br#"{"event_name":"purchase"}"#, &conv())
            .unwrap_err()
            .contains("event_date"));
        assert!(parse(b"[1,2]", &conv()).unwrap_err().contains("not a GA4 export row"));
    }

    #[test]
    fn the_batch_matches_the_schema() {
        let row = br#"{"event_date":"20261201","event_timestamp":1,"event_name":"purchase","user_pseudo_id":"u1",
            "ecommerce":{"transaction_id":"T1","purchase_revenue":5}}"#;
        let e = parse(row, &conv()).unwrap().unwrap();
        let b = batch(&[e.clone(), e], "123", "run", 0).unwrap();
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.schema(), schema());
    }
}
