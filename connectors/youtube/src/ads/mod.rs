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

mod api;
mod rows;
mod schema;

pub use api::parse_retry_delay;
pub use rows::decimal6;
pub use schema::{ads_schema, lag_column, LAG_BUCKETS};

use api::*;
use rows::*;
use schema::*;

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
