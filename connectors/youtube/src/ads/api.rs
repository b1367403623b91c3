//! Google Ads' REST surface: the GAQL queries, its error envelope and
//! quota delays (the retry policy), and `searchStream`'s streamed JSON array.
use super::*;

/// The metrics query; `{video_views}` is the version's video-views field.
pub(super) const METRICS_QUERY: &str =
    "SELECT campaign.id, campaign.name, campaign.advertising_channel_type, ad_group.id, \
ad_group.name, ad_group_ad.ad.id, ad_group_ad.ad.name, ad_group_ad.ad.final_urls, segments.date, \
metrics.impressions, metrics.clicks, metrics.cost_micros, {video_views}, metrics.engagements, \
metrics.view_through_conversions, metrics.conversions, metrics.conversions_value FROM ad_group_ad";
pub(super) const LAG_QUERY: &str = "SELECT segments.date, ad_group_ad.ad.id, segments.conversion_lag_bucket, \
metrics.conversions, metrics.conversions_value FROM ad_group_ad";
/// YouTube's campaign types in Google Ads.
pub(super) const VIDEO_CAMPAIGNS: &str = "campaign.advertising_channel_type IN ('VIDEO', 'DEMAND_GEN')";

/// Google Ads' failure: the Google error shape whose details carry a
/// `GoogleAdsFailure` (errorCode, message, quotaErrorDetails.retryDelay).
/// searchStream may wrap it in a one-element array.
#[derive(Deserialize)]
pub(super) struct AdsErrorEnvelope {
    pub(super) error: AdsError,
}

#[derive(Deserialize)]
pub(super) struct AdsError {
    #[serde(default)]
    pub(super) message: String,
    #[serde(default)]
    pub(super) status: String,
    #[serde(default)]
    pub(super) details: Vec<AdsFailure>,
}

#[derive(Deserialize)]
pub(super) struct AdsFailure {
    #[serde(default)]
    pub(super) errors: Vec<AdsErrorItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AdsErrorItem {
    #[serde(default)]
    pub(super) error_code: HashMap<String, String>,
    #[serde(default)]
    pub(super) message: String,
    #[serde(default)]
    pub(super) details: Option<AdsErrorDetails>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AdsErrorDetails {
    #[serde(default)]
    pub(super) quota_error_details: Option<QuotaDetails>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct QuotaDetails {
    #[serde(default)]
    pub(super) retry_delay: Option<String>,
}

pub(super) fn parse_ads_error(body: &[u8]) -> Option<AdsError> {
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

pub(super) fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{}h {:02}min", s / 3600, (s % 3600) / 60),
    }
}

pub(super) struct AdsPolicy;

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

/// Calls `f` with each result row of a searchStream body (a JSON array of
/// batches `{results, fieldMask, requestId}`), decoded borrowed from the body
/// one row at a time: no batch is ever collected. A body that is not JSON is
/// malformed (retried); an error from `f` is the API's data at fault.
pub(super) fn each_row<'de, R, F>(body: &'de [u8], mut f: F) -> std::result::Result<(), Verdict>
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
pub(super) enum Level {
    Batches,
    Batch,
    Results,
}

pub(super) struct Stream<'a, R, F> {
    pub(super) f: &'a mut F,
    pub(super) failed: &'a mut Option<String>,
    pub(super) level: Level,
    pub(super) row: std::marker::PhantomData<R>,
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
