//! crest's source for a brand's paid YouTube: Google Ads `searchStream`
//! (REST) over the customer's VIDEO and DEMAND_GEN campaigns, daily per ad.
//!
//! Two GAQL queries make a slice: the ad metrics, and conversions split by
//! `segments.conversion_lag_bucket` (Google serves that segment only with
//! conversion metrics). The buckets land as columns beside the metrics so the
//! transform can recompute any click window up to Google's 30-day default.
//! Money arrives as micros and becomes an exact decimal; conversion doubles
//! are read from their JSON text, never through a float. Values equal to
//! their default (0, "") are omitted by Google's JSON and read as zero.

use crate::GoogleErrorBody;
use arrow::array::{ArrayRef, AsArray, Date32Builder, Decimal128Builder, Int64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Date32Type, Field, Schema, SchemaRef, TimeUnit};
use crest_core::cli::Progress;
use crest_core::extract::{Prepared, ReportSource, SliceError};
use crest_core::http::{malformed, ApiClient, ApiError, CallStats, PlatformPolicy, Verdict};
use crest_core::json::Text;
use crest_core::oauth::TokenSource;
use crest_core::raw::SliceWriter;
use crest_core::reqwest::{self, StatusCode};
use crest_core::window::DateRange;
use crest_core::{Error, Result, Secret};
use rust_decimal::Decimal;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

pub const DEFAULT_ADS_BASE_URL: &str = "https://googleads.googleapis.com";
/// The newest Google Ads API version (v22 sunset on 2026-10-07; each version
/// is served for about a year after its release).
pub const DEFAULT_ADS_API_VERSION: &str = "v26";

/// The first API version whose video views are `metrics.video_trueview_views`
/// (`metrics.video_views` is an unrecognized field from v22 on).
pub const TRUEVIEW_VIEWS_SINCE: u32 = 22;

/// The video-views metric a version serves; the raw column stays `video_views`.
pub fn video_views_field(api_version: &str) -> &'static str {
    match api_version.trim_start_matches('v').parse::<u32>() {
        Ok(n) if n < TRUEVIEW_VIEWS_SINCE => "metrics.video_views",
        _ => "metrics.video_trueview_views",
    }
}
pub const ADS_SCHEMA_TAG: &str = "google_ads.ad_daily.v1";
/// Quota waits up to this long are waited out; longer ones stop the run.
pub const MAX_QUOTA_WAIT: Duration = Duration::from_secs(300);
/// Money and conversions with six places. Precision 18 is stored as INT64 in
/// Parquet (compact and fast to write); values beyond it are refused.
const DECIMAL: DataType = DataType::Decimal128(18, 6);
const MAX_DECIMAL: i128 = 999_999_999_999_999_999;

fn fits(v: i128, what: &str) -> std::result::Result<i128, String> {
    if v.abs() > MAX_DECIMAL {
        return Err(format!(
            "{what} {v} (millionths) is beyond what crest stores (under 10^12)"
        ));
    }
    Ok(v)
}

/// `segments.conversion_lag_bucket` values: (enum, from day, to day). The raw
/// columns are named after the day bounds so readers need no enum table.
pub const LAG_BUCKETS: &[(&str, u32, u32)] = &[
    ("LESS_THAN_ONE_DAY", 0, 1),
    ("ONE_TO_TWO_DAYS", 1, 2),
    ("TWO_TO_THREE_DAYS", 2, 3),
    ("THREE_TO_FOUR_DAYS", 3, 4),
    ("FOUR_TO_FIVE_DAYS", 4, 5),
    ("FIVE_TO_SIX_DAYS", 5, 6),
    ("SIX_TO_SEVEN_DAYS", 6, 7),
    ("SEVEN_TO_EIGHT_DAYS", 7, 8),
    ("EIGHT_TO_NINE_DAYS", 8, 9),
    ("NINE_TO_TEN_DAYS", 9, 10),
    ("TEN_TO_ELEVEN_DAYS", 10, 11),
    ("ELEVEN_TO_TWELVE_DAYS", 11, 12),
    ("TWELVE_TO_THIRTEEN_DAYS", 12, 13),
    ("THIRTEEN_TO_FOURTEEN_DAYS", 13, 14),
    ("FOURTEEN_TO_TWENTY_ONE_DAYS", 14, 21),
    ("TWENTY_ONE_TO_THIRTY_DAYS", 21, 30),
    ("THIRTY_TO_FORTY_FIVE_DAYS", 30, 45),
    ("FORTY_FIVE_TO_SIXTY_DAYS", 45, 60),
    ("SIXTY_TO_NINETY_DAYS", 60, 90),
];
const NB: usize = LAG_BUCKETS.len();

/// `conversions_lag_00_01d`: conversions of clicks on the row's date that
/// came 0 to 1 days later.
pub fn lag_column(prefix: &str, from: u32, to: u32) -> String {
    format!("{prefix}_lag_{from:02}_{to:02}d")
}

/// The metrics query; `{video_views}` is the version's video-views field.
const METRICS_QUERY: &str = "SELECT campaign.id, campaign.name, campaign.advertising_channel_type, ad_group.id, \
ad_group.name, ad_group_ad.ad.id, ad_group_ad.ad.name, ad_group_ad.ad.final_urls, segments.date, \
metrics.impressions, metrics.clicks, metrics.cost_micros, {video_views}, metrics.engagements, \
metrics.view_through_conversions, metrics.conversions, metrics.conversions_value FROM ad_group_ad";
const LAG_QUERY: &str = "SELECT segments.date, ad_group_ad.ad.id, segments.conversion_lag_bucket, \
metrics.conversions, metrics.conversions_value FROM ad_group_ad";
/// YouTube's campaign types in Google Ads.
const VIDEO_CAMPAIGNS: &str = "campaign.advertising_channel_type IN ('VIDEO', 'DEMAND_GEN')";

pub fn ads_schema() -> SchemaRef {
    let utf8 = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
    let int = |n: &str| Field::new(n, DataType::Int64, true);
    let mut fields = vec![
        utf8("customer_id", false),
        utf8("currency", true),
        utf8("time_zone", true),
        Field::new("date", DataType::Date32, false),
        utf8("campaign_id", true),
        utf8("campaign_name", true),
        utf8("advertising_channel_type", true),
        utf8("ad_group_id", true),
        utf8("ad_group_name", true),
        utf8("ad_id", false),
        utf8("ad_name", true),
        utf8("final_url", true),
        int("impressions"),
        int("clicks"),
        Field::new("cost", DECIMAL, true),
        int("video_views"),
        int("engagements"),
        int("view_through_conversions"),
        Field::new("conversions", DECIMAL, true),
        Field::new("conversions_value", DECIMAL, true),
    ];
    for (_, from, to) in LAG_BUCKETS {
        fields.push(Field::new(lag_column("conversions", *from, *to), DECIMAL, false));
    }
    for (_, from, to) in LAG_BUCKETS {
        fields.push(Field::new(lag_column("conversions_value", *from, *to), DECIMAL, false));
    }
    // The conversion actions' lookback windows: which view-through
    // conversions the transform may count as the standard window's view part.
    fields.push(Field::new("click_through_window_days", DataType::Int32, true));
    fields.push(Field::new("view_through_window_days", DataType::Int32, true));
    fields.push(Field::new(
        "extracted_at",
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        false,
    ));
    fields.push(utf8("run_id", false));
    Arc::new(Schema::new(fields).with_metadata(HashMap::from([(
        "crest.schema".to_string(),
        ADS_SCHEMA_TAG.to_string(),
    )])))
}

// ------------------------------------------------------------------ errors

/// Google Ads' failure: the Google error shape whose details carry a
/// `GoogleAdsFailure` (errorCode, message, quotaErrorDetails.retryDelay).
/// searchStream may wrap it in a one-element array.
#[derive(Deserialize)]
struct AdsErrorEnvelope {
    error: AdsError,
}

#[derive(Deserialize)]
struct AdsError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<AdsFailure>,
}

#[derive(Deserialize)]
struct AdsFailure {
    #[serde(default)]
    errors: Vec<AdsErrorItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AdsErrorItem {
    #[serde(default)]
    error_code: HashMap<String, String>,
    #[serde(default)]
    message: String,
    #[serde(default)]
    details: Option<AdsErrorDetails>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AdsErrorDetails {
    #[serde(default)]
    quota_error_details: Option<QuotaDetails>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QuotaDetails {
    #[serde(default)]
    retry_delay: Option<String>,
}

fn parse_ads_error(body: &[u8]) -> Option<AdsError> {
    if let Ok(e) = serde_json::from_slice::<AdsErrorEnvelope>(body) {
        return Some(e.error);
    }
    serde_json::from_slice::<Vec<AdsErrorEnvelope>>(body)
        .ok()
        .and_then(|v| v.into_iter().next())
        .map(|e| e.error)
}

/// A protobuf JSON duration: `"30s"`, `"1.5s"`. An absurd one (`"1e30s"`) is
/// the longest duration, never an overflow: it stops the run with the wait named.
pub fn parse_retry_delay(s: &str) -> Option<Duration> {
    s.trim()
        .strip_suffix('s')
        .and_then(|n| n.parse::<f64>().ok())
        .filter(|n| n.is_finite() && *n >= 0.0)
        .map(|n| Duration::try_from_secs_f64(n).unwrap_or(Duration::MAX))
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{}h {:02}min", s / 3600, (s % 3600) / 60),
    }
}

struct AdsPolicy;

impl PlatformPolicy for AdsPolicy {
    fn classify_status(&self, status: StatusCode, body: &[u8]) -> Option<Verdict> {
        let Some(e) = parse_ads_error(body) else {
            // YouTube's shape (the shared OAuth gate), or none.
            return serde_json::from_slice::<GoogleErrorBody>(body)
                .ok()
                .map(|_| crate::GooglePolicy.classify_status(status, body))?;
        };
        let item = e.details.iter().flat_map(|d| d.errors.iter()).next();
        let code = item
            .and_then(|i| i.error_code.iter().next())
            .map(|(k, v)| format!("{k} {v}"))
            .unwrap_or_default();
        let message = item.map(|i| i.message.as_str()).unwrap_or(e.message.as_str());
        let detail = format!(
            "HTTP {} {} ({code}): {}",
            status.as_u16(),
            e.status,
            message.trim_end_matches('.')
        );
        Some(match status.as_u16() {
            429 => {
                let delay = item
                    .and_then(|i| i.details.as_ref())
                    .and_then(|d| d.quota_error_details.as_ref())
                    .and_then(|q| q.retry_delay.as_deref())
                    .and_then(parse_retry_delay);
                match delay {
                    Some(d) if d > MAX_QUOTA_WAIT => Verdict::Fatal(format!(
                        "{detail}; Google Ads asks to wait {} before the next request: run again after that",
                        human(d)
                    )),
                    d => Verdict::Retry {
                        reason: detail,
                        after: d,
                        rate_limited: true,
                    },
                }
            }
            401 if code.contains("DEVELOPER_TOKEN") => Verdict::Auth(format!(
                "{detail}; check GOOGLE_ADS_DEVELOPER_TOKEN"
            )),
            401 => Verdict::Unauthenticated(detail),
            403 => Verdict::Auth(format!(
                "{detail}; check that the authorized Google account can read this customer (for a manager account, give --login-customer-id)"
            )),
            s if s >= 500 => Verdict::Retry {
                reason: detail,
                after: None,
                rate_limited: false,
            },
            _ => Verdict::BadRequest(detail),
        })
    }
}

// ------------------------------------------------------------------ rows

/// Calls `f` with each result row of a searchStream body (a JSON array of
/// batches `{results, fieldMask, requestId}`), decoded borrowed from the body
/// one row at a time: no batch is ever collected. A body that is not JSON is
/// malformed (retried); an error from `f` is the API's data at fault.
fn each_row<'de, R, F>(body: &'de [u8], mut f: F) -> std::result::Result<(), Verdict>
where
    R: Deserialize<'de>,
    F: FnMut(R) -> std::result::Result<(), String>,
{
    let mut failed = None;
    let mut de = serde_json::Deserializer::from_slice(body);
    let read = Stream {
        f: &mut f,
        failed: &mut failed,
        level: Level::Batches,
        row: std::marker::PhantomData,
    }
    .deserialize(&mut de)
    .and_then(|_| de.end());
    if let Some(e) = failed {
        return Err(Verdict::Fatal(e));
    }
    read.map_err(|e| malformed(body, e))
}

#[derive(Clone, Copy)]
enum Level {
    Batches,
    Batch,
    Results,
}

struct Stream<'a, R, F> {
    f: &'a mut F,
    failed: &'a mut Option<String>,
    level: Level,
    row: std::marker::PhantomData<R>,
}

impl<'de, R, F> DeserializeSeed<'de> for Stream<'_, R, F>
where
    R: Deserialize<'de>,
    F: FnMut(R) -> std::result::Result<(), String>,
{
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        match self.level {
            Level::Batch => d.deserialize_map(self),
            Level::Batches | Level::Results => d.deserialize_seq(self),
        }
    }
}

impl<'de, R, F> Visitor<'de> for Stream<'_, R, F>
where
    R: Deserialize<'de>,
    F: FnMut(R) -> std::result::Result<(), String>,
{
    type Value = ();
    fn expecting(&self, out: &mut std::fmt::Formatter) -> std::fmt::Result {
        out.write_str("searchStream batches [{results, fieldMask, requestId}]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        match self.level {
            Level::Results => {
                while let Some(row) = seq.next_element::<R>()? {
                    if let Err(e) = (self.f)(row) {
                        *self.failed = Some(e);
                        return Err(de::Error::custom("stopped"));
                    }
                }
            }
            _ => {
                let (f, failed) = (self.f, self.failed);
                while seq
                    .next_element_seed(Stream {
                        f: &mut *f,
                        failed: &mut *failed,
                        level: Level::Batch,
                        row: std::marker::PhantomData::<R>,
                    })?
                    .is_some()
                {}
            }
        }
        Ok(())
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> std::result::Result<(), M::Error> {
        let (f, failed) = (self.f, self.failed);
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "results" {
                map.next_value_seed(Stream {
                    f: &mut *f,
                    failed: &mut *failed,
                    level: Level::Results,
                    row: std::marker::PhantomData::<R>,
                })?;
            } else {
                map.next_value::<de::IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AdsRow<'a> {
    #[serde(borrow, default)]
    customer: Option<CustomerObj<'a>>,
    #[serde(borrow, default)]
    campaign: Option<Named<'a>>,
    #[serde(borrow, default)]
    ad_group: Option<Named<'a>>,
    #[serde(borrow, default)]
    ad_group_ad: Option<AdGroupAdObj<'a>>,
    #[serde(borrow, default)]
    segments: Option<Segments<'a>>,
    #[serde(borrow, default)]
    metrics: Option<Metrics<'a>>,
    #[serde(borrow, default)]
    conversion_action: Option<ConversionActionObj<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ConversionActionObj<'a> {
    #[serde(borrow, default)]
    status: Option<Text<'a>>,
    #[serde(default)]
    include_in_conversions_metric: bool,
    #[serde(borrow, default)]
    click_through_lookback_window_days: Option<Text<'a>>,
    #[serde(borrow, default)]
    view_through_lookback_window_days: Option<Text<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CustomerObj<'a> {
    #[serde(borrow, default)]
    descriptive_name: Option<Text<'a>>,
    #[serde(borrow, default)]
    currency_code: Option<Text<'a>>,
    #[serde(borrow, default)]
    time_zone: Option<Text<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Named<'a> {
    #[serde(borrow, default)]
    id: Option<Text<'a>>,
    #[serde(borrow, default)]
    name: Option<Text<'a>>,
    #[serde(borrow, default)]
    advertising_channel_type: Option<Text<'a>>,
}

#[derive(Deserialize, Default)]
struct AdGroupAdObj<'a> {
    #[serde(borrow, default)]
    ad: Option<AdObj<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AdObj<'a> {
    #[serde(borrow, default)]
    id: Option<Text<'a>>,
    #[serde(borrow, default)]
    name: Option<Text<'a>>,
    #[serde(borrow, default)]
    final_urls: Vec<Text<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Segments<'a> {
    #[serde(borrow, default)]
    date: Option<Text<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Metrics<'a> {
    #[serde(borrow, default)]
    impressions: Option<Text<'a>>,
    #[serde(borrow, default)]
    clicks: Option<Text<'a>>,
    #[serde(borrow, default)]
    cost_micros: Option<Text<'a>>,
    /// `videoTrueviewViews` from v22 on, `videoViews` before.
    #[serde(borrow, default, alias = "videoTrueviewViews")]
    video_views: Option<Text<'a>>,
    #[serde(borrow, default)]
    engagements: Option<Text<'a>>,
    #[serde(borrow, default)]
    view_through_conversions: Option<Text<'a>>,
    #[serde(borrow, default)]
    conversions: Option<&'a RawValue>,
    #[serde(borrow, default)]
    conversions_value: Option<&'a RawValue>,
}

fn text<'b>(v: &'b Option<Text<'_>>) -> Option<&'b str> {
    v.as_ref().map(|t| t.as_str())
}

/// An int64 served as a string; omitted means 0.
fn int64(v: &Option<Text<'_>>, what: &str) -> std::result::Result<i64, String> {
    match v {
        None => Ok(0),
        Some(t) => t
            .as_str()
            .parse::<i64>()
            .map_err(|_| format!("{what} '{}' is not an int64", t.as_str())),
    }
}

/// A JSON number as an exact decimal with six places (rounded half away
/// from zero beyond that): `21.5` → 21_500_000. Omitted means 0.
pub fn decimal6(v: Option<&RawValue>, what: &str) -> std::result::Result<i128, String> {
    let Some(raw) = v else { return Ok(0) };
    let text = raw.get().trim().trim_matches('"');
    if let Some(exact) = plain_decimal6(text) {
        return fits(exact, what);
    }
    let d = Decimal::from_str(text)
        .or_else(|_| Decimal::from_scientific(text))
        .map_err(|_| format!("{what} '{text}' is not a number"))?;
    let d = d.round_dp_with_strategy(6, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    let scale = d.scale();
    fits(d.mantissa() * 10i128.pow(6 - scale), what)
}

/// `-?digits[.digits]` with at most six decimals, as Google serves most
/// doubles, parsed without a general decimal parser.
fn plain_decimal6(text: &str) -> Option<i128> {
    let (neg, t) = match text.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, text),
    };
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty() || int.len() > 20 || frac.len() > 6 {
        return None;
    }
    let mut v: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (b - b'0') as i128;
    }
    v *= 10i128.pow(6 - frac.len() as u32);
    Some(if neg { -v } else { v })
}

/// The customer's currency and time zone, asked once per run.
#[derive(Debug, Clone, Default)]
pub struct CustomerInfo {
    pub name: Option<String>,
    pub currency: Option<String>,
    pub time_zone: Option<String>,
    /// The conversion actions' longest click-through and view-through windows.
    pub click_through_days: Option<u32>,
    pub view_through_days: Option<u32>,
}

pub struct AdsConfig {
    pub base: url::Url,
    pub api_version: String,
    pub developer_token: Secret,
    pub login_customer_id: Option<String>,
}

pub struct GoogleAdsSource {
    config: AdsConfig,
    client: ApiClient,
    /// Shared by every Google source of a run: one refresh serves them all.
    tokens: Arc<TokenSource>,
    schema: SchemaRef,
    customers: Prepared<CustomerInfo>,
}

/// Lag-bucket conversions and values of one (date, ad).
type Lags = ([i128; NB], [i128; NB]);

impl GoogleAdsSource {
    pub fn new(config: AdsConfig, client: ApiClient, tokens: Arc<TokenSource>) -> Self {
        let client = client
            .with_platform(AdsPolicy)
            .with_secret(config.developer_token.clone());
        GoogleAdsSource {
            config,
            client,
            tokens,
            schema: ads_schema(),
            customers: Prepared::default(),
        }
    }

    /// One searchStream call; `decode` turns the body into `T` (or says why
    /// it cannot: malformed bodies are retried).
    async fn search<T>(
        &self,
        customer: &str,
        query: &str,
        label: &str,
        decode: impl Fn(&[u8]) -> std::result::Result<T, Verdict>,
    ) -> std::result::Result<T, ApiError> {
        let url = format!(
            "{}/{}/customers/{customer}/googleAds:searchStream",
            self.config.base.as_str().trim_end_matches('/'),
            self.config.api_version
        );
        let body = serde_json::json!({ "query": query });
        let decode = &decode;
        self.tokens
            .with_token(|token| {
                let (url, body) = (url.clone(), body.clone());
                async move {
                    let auth = format!("Bearer {}", token.expose());
                    self.client
                        .send(
                            label,
                            |c: &reqwest::Client| {
                                let mut r = c
                                    .post(&url)
                                    .header("Authorization", &auth)
                                    .header("developer-token", self.config.developer_token.expose())
                                    .json(&body);
                                if let Some(login) = &self.config.login_customer_id {
                                    r = r.header("login-customer-id", login);
                                }
                                r
                            },
                            decode,
                        )
                        .await
                }
            })
            .await
    }

    /// Checks the credentials and reads the customer's currency and time zone.
    pub async fn customer_info(&self, customer: &str) -> Result<CustomerInfo> {
        let q =
            "SELECT customer.id, customer.descriptive_name, customer.currency_code, customer.time_zone FROM customer";
        let label = format!("POST /customers/{customer}/googleAds:searchStream (customer)");
        let info = self
            .search(customer, q, &label, |body| {
                let mut info = CustomerInfo::default();
                each_row(body, |row: AdsRow<'_>| {
                    if let Some(c) = row.customer {
                        let s = |t: Option<Text<'_>>| t.map(|t| t.as_str().to_string());
                        info = CustomerInfo {
                            click_through_days: None,
                            view_through_days: None,
                            name: s(c.descriptive_name),
                            currency: s(c.currency_code),
                            time_zone: s(c.time_zone),
                        };
                    }
                    Ok(())
                })?;
                Ok(info)
            })
            .await?;
        Ok(info)
    }

    /// The longest click-through and view-through lookback windows (days) of the
    /// enabled conversion actions counted in `metrics.conversions`.
    pub async fn conversion_windows(&self, customer: &str) -> Result<(Option<u32>, Option<u32>)> {
        let q = "SELECT conversion_action.id, conversion_action.status, \
conversion_action.include_in_conversions_metric, conversion_action.click_through_lookback_window_days, \
conversion_action.view_through_lookback_window_days FROM conversion_action";
        let label = format!("POST /customers/{customer}/googleAds:searchStream (conversion actions)");
        self.search(customer, q, &label, |body| {
            let (mut click, mut view): (Option<u32>, Option<u32>) = (None, None);
            each_row(body, |row: AdsRow<'_>| {
                let Some(a) = row.conversion_action else { return Ok(()) };
                if text(&a.status) != Some("ENABLED") || !a.include_in_conversions_metric {
                    return Ok(());
                }
                let days = |t: &Option<Text<'_>>| text(t).and_then(|d| d.parse::<u32>().ok());
                click = click.max(days(&a.click_through_lookback_window_days));
                view = view.max(days(&a.view_through_lookback_window_days));
                Ok(())
            })?;
            Ok((click, view))
        })
        .await
        .map_err(Into::into)
    }

    /// A day's two queries (conversion lag, metrics) with their log labels.
    fn day_queries(&self, customer: &str, day: chrono::NaiveDate) -> [(String, String); 2] {
        let metrics_query = METRICS_QUERY.replace("{video_views}", video_views_field(&self.config.api_version));
        let filter = format!(" WHERE segments.date BETWEEN '{day}' AND '{day}' AND {VIDEO_CAMPAIGNS}");
        let label = |what: &str| format!("POST /customers/{customer}/googleAds:searchStream {day}{what}");
        [
            (format!("{LAG_QUERY}{filter}"), label(" (conversion lag)")),
            (format!("{metrics_query}{filter}"), label("")),
        ]
    }

    /// A searchStream body, undecoded: it is decoded where that overlaps the
    /// next day's requests.
    async fn body(&self, customer: &str, query: &str, label: &str) -> std::result::Result<Vec<u8>, ApiError> {
        self.search(customer, query, label, |b| Ok(b.to_vec())).await
    }

    /// A day's two bodies, asked for at once.
    async fn day_bodies(
        &self,
        customer: &str,
        day: chrono::NaiveDate,
    ) -> std::result::Result<(Vec<u8>, Vec<u8>), ApiError> {
        let [(lq, ll), (mq, ml)] = self.day_queries(customer, day);
        let (lags, metrics) = tokio::join!(self.body(customer, &lq, &ll), self.body(customer, &mq, &ml));
        Ok((lags?, metrics?))
    }

    /// `decode(body)`; a malformed body (cut off in transit) is fetched again
    /// through the retrying path.
    async fn decoded<T>(
        &self,
        body: &[u8],
        customer: &str,
        (query, label): &(String, String),
        decode: impl Fn(&[u8]) -> std::result::Result<T, Verdict>,
    ) -> std::result::Result<T, ApiError> {
        match decode(body) {
            Ok(v) => Ok(v),
            Err(Verdict::Fatal(m)) => Err(ApiError::Fatal(format!("{label}: {m}"))),
            Err(_) => {
                tracing::warn!(request = %label, "malformed response body; asking again");
                self.search(customer, query, label, decode).await
            }
        }
    }

    /// Decodes one day's bodies into raw batches and writes them.
    #[allow(clippy::too_many_arguments)]
    async fn write_day(
        &self,
        customer: &str,
        day: chrono::NaiveDate,
        info: &CustomerInfo,
        (lag_body, metrics_body): (Vec<u8>, Vec<u8>),
        run_id: &str,
        extracted_at_us: i64,
        sink: &mut SliceWriter<'_>,
        progress: &Progress,
    ) -> std::result::Result<u64, SliceError> {
        let [lag_q, metrics_q] = self.day_queries(customer, day);
        let (cur, tz) = (info.currency.as_deref(), info.time_zone.as_deref());
        let lags = self.decoded(&lag_body, customer, &lag_q, decode_lags).await?;
        drop(lag_body);
        let metrics = self
            .decoded(&metrics_body, customer, &metrics_q, |b| {
                decode_metrics(b, customer, cur, tz)
            })
            .await?;
        drop(metrics_body);
        let fail = |e: String| SliceError::Failed(Error::Upstream(format!("{}: {e}", metrics_q.1)));
        // Lag rows without a metrics row (conversions on a day the ad had no
        // other numbers) still count: each becomes a row of its own.
        let mut seen: std::collections::HashSet<(i32, &str)> = std::collections::HashSet::new();
        for cols in &metrics {
            let (dates, ads) = (
                cols[DATE_COL].as_primitive::<Date32Type>(),
                cols[AD_COL].as_string::<i32>(),
            );
            for i in 0..dates.len() {
                seen.insert((dates.value(i), ads.value(i)));
            }
        }
        let mut orphans = Columns::new();
        for (ad, by_date) in &lags {
            for (date, l) in by_date {
                if !seen.contains(&(*date, ad.as_str())) {
                    let mut strings = [None; STRINGS];
                    // The text columns skip `date`, so ad_id is one place earlier there.
                    (strings[0], strings[1], strings[2], strings[AD_COL - 1]) =
                        (Some(customer), cur, tz, Some(ad.as_str()));
                    orphans.push(strings, *date, [0; INTS], [0, l.0.iter().sum(), l.1.iter().sum()]);
                }
            }
        }
        drop(seen);
        let orphans = (orphans.rows > 0).then(|| orphans.finish());
        let mut rows = 0u64;
        for cols in metrics.into_iter().chain(orphans) {
            let windows = (info.click_through_days, info.view_through_days);
            let b = assemble(cols, &lags, windows, &self.schema, run_id, extracted_at_us).map_err(fail)?;
            sink.write(&b).await?;
            rows += b.num_rows() as u64;
            progress.add_rows(b.num_rows() as u64);
        }
        Ok(rows)
    }
}

type LagMap = HashMap<String, HashMap<i32, Lags>>;

/// A conversion-lag row: only what that query selects.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LagRow<'a> {
    #[serde(borrow)]
    segments: LagSegments<'a>,
    #[serde(borrow)]
    ad_group_ad: LagAdGroupAd<'a>,
    #[serde(borrow, default)]
    metrics: LagMetrics<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LagSegments<'a> {
    #[serde(borrow)]
    date: Cow<'a, str>,
    #[serde(borrow)]
    conversion_lag_bucket: Cow<'a, str>,
}

#[derive(Deserialize)]
struct LagAdGroupAd<'a> {
    #[serde(borrow)]
    ad: LagAd<'a>,
}

#[derive(Deserialize)]
struct LagAd<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct LagMetrics<'a> {
    #[serde(borrow, default)]
    conversions: Option<&'a RawValue>,
    #[serde(borrow, default)]
    conversions_value: Option<&'a RawValue>,
}

/// Conversions and values by lag bucket, per ad and date.
fn decode_lags(body: &[u8]) -> std::result::Result<LagMap, Verdict> {
    let mut out: LagMap = HashMap::new();
    each_row(body, |row: LagRow<'_>| {
        let date = crest_core::window::ymd(&row.segments.date).ok_or("segments.date is not a date")?;
        let bucket = &*row.segments.conversion_lag_bucket;
        let Some(b) = LAG_BUCKETS.iter().position(|(name, _, _)| *name == bucket) else {
            return Err(format!("unknown conversionLagBucket '{bucket}'"));
        };
        let ad = &*row.ad_group_ad.ad.id;
        // A key is allocated once per ad, not once per bucket row.
        if !out.contains_key(ad) {
            out.insert(ad.to_string(), HashMap::new());
        }
        let e = out
            .get_mut(ad)
            .ok_or("conversion-lag rows")?
            .entry(Date32Type::from_naive_date(date))
            .or_insert(([0; NB], [0; NB]));
        e.0[b] += decimal6(row.metrics.conversions, "conversions")?;
        e.1[b] += decimal6(row.metrics.conversions_value, "conversionsValue")?;
        Ok(())
    })?;
    Ok(out)
}

/// The metrics rows as raw columns, in batches of [`ROWS_PER_BATCH`].
fn decode_metrics(
    body: &[u8],
    customer: &str,
    cur: Option<&str>,
    tz: Option<&str>,
) -> std::result::Result<Vec<Vec<ArrayRef>>, Verdict> {
    let mut out = Vec::new();
    let mut cols = Columns::new();
    each_row(body, |row: AdsRow<'_>| {
        let seg = row.segments.unwrap_or_default();
        let date = seg
            .date
            .as_ref()
            .and_then(|d| crest_core::window::ymd(d.as_str()))
            .ok_or("a row lacks segments.date")?;
        let campaign = row.campaign.unwrap_or_default();
        let group = row.ad_group.unwrap_or_default();
        let ad = row.ad_group_ad.and_then(|a| a.ad).unwrap_or_default();
        let ad_id = ad.id.as_ref().ok_or("a row lacks adGroupAd.ad.id")?.as_str();
        let m = row.metrics.unwrap_or_default();
        cols.push(
            [
                Some(customer),
                cur,
                tz,
                text(&campaign.id),
                text(&campaign.name),
                text(&campaign.advertising_channel_type),
                text(&group.id),
                text(&group.name),
                Some(ad_id),
                text(&ad.name),
                ad.final_urls.first().map(|u| u.as_str()),
            ],
            Date32Type::from_naive_date(date),
            [
                int64(&m.impressions, "impressions")?,
                int64(&m.clicks, "clicks")?,
                int64(&m.video_views, "videoViews")?,
                int64(&m.engagements, "engagements")?,
                int64(&m.view_through_conversions, "viewThroughConversions")?,
            ],
            [
                fits(int64(&m.cost_micros, "costMicros")? as i128, "costMicros")?,
                decimal6(m.conversions, "conversions")?,
                decimal6(m.conversions_value, "conversionsValue")?,
            ],
        );
        if cols.rows == ROWS_PER_BATCH {
            out.push(std::mem::replace(&mut cols, Columns::new()).finish());
        }
        Ok(())
    })?;
    if cols.rows > 0 {
        out.push(cols.finish());
    }
    Ok(out)
}

/// Column builders of the raw table's metric columns (customer_id …
/// conversions_value); [`assemble`] adds the lag buckets and the run columns.
struct Columns {
    strings: Vec<StringBuilder>,
    date: Date32Builder,
    ints: Vec<Int64Builder>,
    decimals: Vec<Decimal128Builder>,
    rows: usize,
}

const STRINGS: usize = 11;
/// Positions of `date` and `ad_id` among the raw columns (see [`ads_schema`]).
const DATE_COL: usize = 3;
const AD_COL: usize = 9;
/// Rows per Arrow batch (Google's stream batches hold up to 10,000 too).
const ROWS_PER_BATCH: usize = 10_000;
const INTS: usize = 5;

impl Columns {
    fn new() -> Self {
        Columns {
            strings: (0..STRINGS).map(|_| StringBuilder::new()).collect(),
            date: Date32Builder::new(),
            ints: (0..INTS).map(|_| Int64Builder::new()).collect(),
            decimals: (0..3)
                .map(|_| Decimal128Builder::new().with_data_type(DECIMAL))
                .collect(),
            rows: 0,
        }
    }

    fn push(&mut self, strings: [Option<&str>; STRINGS], date: i32, ints: [i64; INTS], decimals: [i128; 3]) {
        for (b, s) in self.strings.iter_mut().zip(strings) {
            b.append_option(s);
        }
        self.date.append_value(date);
        for (b, v) in self.ints.iter_mut().zip(ints) {
            b.append_value(v);
        }
        for (b, v) in self.decimals.iter_mut().zip(decimals) {
            b.append_value(v);
        }
        self.rows += 1;
    }

    /// The columns in the schema's order, up to conversions_value.
    fn finish(mut self) -> Vec<ArrayRef> {
        let mut s = self.strings.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(64);
        // customer_id, currency, time_zone, date, campaign_id … final_url
        columns.extend(s.by_ref().take(3));
        columns.push(Arc::new(self.date.finish()));
        columns.extend(s.by_ref().take(STRINGS - 3));
        let mut ints = self.ints.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef);
        let mut decs = self.decimals.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef);
        // impressions, clicks, cost, video_views, engagements, view_through, conversions, value
        columns.extend(ints.by_ref().take(2));
        columns.extend(decs.by_ref().take(1));
        columns.extend(ints.by_ref().take(3));
        columns.extend(decs.by_ref().take(2));
        columns
    }
}

/// Metric columns + each row's lag buckets (zero where Google served none)
/// + extracted_at and run_id.
fn assemble(
    mut columns: Vec<ArrayRef>,
    lags: &HashMap<String, HashMap<i32, Lags>>,
    windows: (Option<u32>, Option<u32>),
    schema: &SchemaRef,
    run_id: &str,
    extracted_at_us: i64,
) -> std::result::Result<RecordBatch, String> {
    let n = columns[0].len();
    let dates = columns[DATE_COL].as_primitive::<Date32Type>().clone();
    let ads = columns[AD_COL].as_string::<i32>().clone();
    let dec = || Decimal128Builder::with_capacity(n).with_data_type(DECIMAL);
    let mut conv: Vec<Decimal128Builder> = (0..NB).map(|_| dec()).collect();
    let mut value: Vec<Decimal128Builder> = (0..NB).map(|_| dec()).collect();
    for i in 0..n {
        let l = lags.get(ads.value(i)).and_then(|by_date| by_date.get(&dates.value(i)));
        for k in 0..NB {
            conv[k].append_value(l.map_or(0, |l| l.0[k]));
            value[k].append_value(l.map_or(0, |l| l.1[k]));
        }
    }
    columns.extend(conv.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.extend(value.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    for days in [windows.0, windows.1] {
        let days = days.and_then(|d| i32::try_from(d).ok());
        columns.push(Arc::new(arrow::array::Int32Array::from(vec![days; n])));
    }
    columns.extend(crest_core::raw::run_columns(n, run_id, extracted_at_us));
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

impl ReportSource for GoogleAdsSource {
    fn platform(&self) -> &'static str {
        "youtube"
    }
    fn report(&self) -> String {
        "ads_daily".into()
    }
    fn max_slice_days(&self) -> u64 {
        // Read day by day within a slice (see fetch_slice); a slice is what
        // commits at once.
        7
    }
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn date_column(&self) -> &'static str {
        "date"
    }
    fn call_stats(&self) -> Arc<CallStats> {
        self.client.stats()
    }

    async fn prepare_account(&self, customer: &str) -> Result<serde_json::Value> {
        let mut info = self.customer_info(customer).await?;
        let (click_days, view_days) = self.conversion_windows(customer).await?;
        (info.click_through_days, info.view_through_days) = (click_days, view_days);
        let json = serde_json::json!({
            "customer_id": customer,
            "name": info.name,
            "currency": info.currency,
            "time_zone": info.time_zone,
            // Conversions keep arriving for as long as the longest click-through
            // window of the actions counted in `conversions` (up to 90 days):
            // the default lookback reaches that far.
            "longest_window_days": click_days,
            "view_through_window_days": view_days,
        });
        self.customers.insert(customer, info);
        Ok(json)
    }

    async fn fetch_slice(
        &self,
        customer: &str,
        range: DateRange,
        run_id: &str,
        extracted_at_us: i64,
        sink: &mut SliceWriter<'_>,
        progress: &Progress,
    ) -> std::result::Result<u64, SliceError> {
        let info = self.customers.get(customer)?;
        // Day by day, with the next day's two requests in flight while this
        // day is decoded and written: Google (or the sandbox) prepares one
        // while crest reads the other, and only one day is held in memory.
        let days: Vec<chrono::NaiveDate> = range.dates().collect();
        let mut rows = 0u64;
        let mut bodies = self.day_bodies(customer, range.start).await?;
        for (k, day) in days.iter().enumerate() {
            let write = self.write_day(customer, *day, &info, bodies, run_id, extracted_at_us, sink, progress);
            match days.get(k + 1) {
                Some(next) => {
                    // The next requests go out first, then this day is decoded.
                    let (next, written) = tokio::join!(self.day_bodies(customer, *next), write);
                    rows += written?;
                    bodies = next?;
                }
                None => {
                    rows += write.await?;
                    break;
                }
            }
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    #[test]
    fn doubles_become_exact_six_place_decimals() {
        for (text, want) in [
            ("21", 21_000_000),
            ("21.5", 21_500_000),
            ("533.4", 533_400_000),
            ("0.000001", 1),
            ("-3.25", -3_250_000),
            ("1e2", 100_000_000),
            ("1.23456789", 1_234_568),
        ] {
            assert_eq!(decimal6(Some(&raw(text)), "x").unwrap(), want, "{text}");
        }
        assert_eq!(decimal6(None, "x").unwrap(), 0, "omitted is Google's default, 0");
        assert!(decimal6(Some(&raw("\"abc\"")), "x").is_err());
    }

    #[test]
    fn column_positions_match_the_schema() {
        let schema = ads_schema();
        assert_eq!(schema.field(DATE_COL).name(), "date");
        assert_eq!(schema.field(AD_COL).name(), "ad_id");
    }

    #[test]
    fn retry_delays_read_as_durations() {
        assert_eq!(parse_retry_delay("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_delay("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_retry_delay("soon"), None);
        assert_eq!(parse_retry_delay("-3s"), None);
        assert_eq!(parse_retry_delay("1e300s"), Some(Duration::MAX));
        assert!(human(Duration::MAX).ends_with("min"));
        assert_eq!(human(Duration::from_secs(3 * 3600 + 600)), "3h 10min");
    }

    #[test]
    fn stream_rows_are_visited_one_by_one_across_batches() {
        let body = br#"[{"results":[{"segments":{"date":"2026-01-01"},"metrics":{"clicks":"3"}},
            {"segments":{"date":"2026-01-02"}}],"fieldMask":"segments.date,metrics.clicks","requestId":"a"},
            {"results":[{"metrics":{"clicks":"4"}}],"fieldMask":"x","requestId":"b"},{"fieldMask":"x"}]"#;
        let mut clicks = Vec::new();
        each_row(body, |r: AdsRow<'_>| {
            clicks.push(int64(&r.metrics.unwrap_or_default().clicks, "clicks")?);
            Ok(())
        })
        .unwrap();
        assert_eq!(clicks, vec![3, 0, 4]);
        assert!(matches!(
            each_row(b"[{\"results\":[{", |_: AdsRow<'_>| Ok(())),
            Err(Verdict::Retry { .. })
        ));
        assert!(matches!(
            each_row(body, |_: AdsRow<'_>| Err("bad row".into())),
            Err(Verdict::Fatal(m)) if m == "bad row"
        ));
    }
}
