//! Meta Marketing API (Graph API) shapes and error handling, as documented.
//!
//! Errors arrive as `{"error": {message, type, code, error_subcode, fbtrace_id}}`
//! with HTTP 400 or 500. Usage arrives in headers on every answer:
//! `x-business-use-case-usage`, `x-ad-account-usage`, `x-fb-ads-insights-throttle`.

use crest_core::http::{PlatformPolicy, Verdict};
use crest_core::json::{Pairs, Text};
use crest_core::pacing::Pacer;
use crest_core::reqwest::header::HeaderMap;
use crest_core::reqwest::StatusCode;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Deserialize)]
pub struct GraphErrorBody {
    pub error: GraphError,
}

#[derive(Debug, Deserialize)]
pub struct GraphError {
    #[serde(default)]
    pub message: String,
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub code: i64,
    #[serde(default)]
    pub error_subcode: Option<i64>,
    #[serde(default)]
    pub fbtrace_id: Option<String>,
}

/// Meta's documented error codes, mapped to what crest does about them.
pub fn classify_error(status: StatusCode, e: &GraphError, regain: Option<Duration>) -> Verdict {
    let detail = format!(
        "Meta error {}{}: {} (fbtrace_id {})",
        e.code,
        e.error_subcode.map(|s| format!("/{s}")).unwrap_or_default(),
        e.message,
        e.fbtrace_id.as_deref().unwrap_or("-")
    );
    match e.code {
        // Rate limits: application, user, ad account, and business use case budgets.
        4 | 17 | 32 | 613 | 80000..=80014 => Verdict::Retry { reason: detail, after: regain, rate_limited: true },
        190 => Verdict::Auth(format!(
            "{detail}: the access token expired or is invalid; create a new one and set META_ACCESS_TOKEN"
        )),
        2635 => Verdict::BadRequest(format!("{detail}: this Graph API version is no longer served; pass a newer --api-version")),
        100 if e.error_subcode == Some(33) => Verdict::Auth(format!(
            "{detail}: the ad account does not exist or this token cannot read it; check --account-id and the token's permissions"
        )),
        1 if e.message.contains("reduce the amount of data") => Verdict::TooLarge(detail),
        1 | 2 => Verdict::Retry { reason: detail, after: None, rate_limited: false },
        _ if status.is_server_error() => Verdict::Retry { reason: detail, after: None, rate_limited: false },
        _ => Verdict::BadRequest(detail),
    }
}

/// Reads Meta's usage headers into the pacer, and keeps the insights
/// throttle (the share of the account's async insights capacity in use).
#[derive(Clone, Default)]
pub struct MetaPolicy {
    pub insights_util_pct: Arc<AtomicU64>,
    regain: Arc<AtomicU64>,
}

fn header_json(headers: &HeaderMap, name: &str) -> Option<Value> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| serde_json::from_str(v).ok())
}

impl PlatformPolicy for MetaPolicy {
    fn classify_status(&self, status: StatusCode, body: &[u8]) -> Option<Verdict> {
        let parsed: GraphErrorBody = serde_json::from_slice(body).ok()?;
        let regain = match self.regain.load(Ordering::Relaxed) {
            0 => None,
            secs => Some(Duration::from_secs(secs).min(crest_core::http::MAX_SERVER_WAIT)),
        };
        Some(classify_error(status, &parsed.error, regain))
    }

    fn observe_headers(&self, headers: &HeaderMap, pacer: &Pacer) {
        let mut used: f64 = 0.0;
        let mut regain_minutes: u64 = 0;
        if let Some(Value::Object(businesses)) = header_json(headers, "x-business-use-case-usage") {
            for entries in businesses.values() {
                for e in entries.as_array().into_iter().flatten() {
                    for k in ["call_count", "total_cputime", "total_time"] {
                        used = used.max(e[k].as_f64().unwrap_or(0.0));
                    }
                    regain_minutes = regain_minutes.max(e["estimated_time_to_regain_access"].as_u64().unwrap_or(0));
                }
            }
        }
        if let Some(v) = header_json(headers, "x-ad-account-usage") {
            used = used.max(v["acc_id_util_pct"].as_f64().unwrap_or(0.0));
        }
        if let Some(v) = header_json(headers, "x-fb-ads-insights-throttle") {
            let pct = v["acc_id_util_pct"]
                .as_f64()
                .unwrap_or(0.0)
                .max(v["app_id_util_pct"].as_f64().unwrap_or(0.0));
            self.insights_util_pct
                .store(pct.clamp(0.0, 100.0) as u64, Ordering::Relaxed);
        }
        pacer.observe_usage(used / 100.0);
        self.regain.store(regain_minutes.saturating_mul(60), Ordering::Relaxed);
        if regain_minutes > 0 {
            tracing::warn!(
                minutes = regain_minutes,
                "Meta asks to wait before the next call; pausing"
            );
            pacer.rate_limited(Duration::from_secs(regain_minutes.saturating_mul(60)));
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct AccountInfo {
    #[serde(default)]
    pub account_id: Option<crest_core::json::Id>,
    #[serde(default)]
    pub name: Option<String>,
    pub currency: String,
    pub timezone_name: String,
}

#[derive(Debug, Deserialize, Default, Clone)]
pub struct Paging {
    #[serde(default)]
    pub cursors: Option<Cursors>,
    #[serde(default)]
    pub next: Option<String>,
}

#[derive(Debug, Deserialize, Default, Clone)]
pub struct Cursors {
    #[serde(default)]
    pub after: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Named {
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub struct LinkData {
    #[serde(default)]
    pub link: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub struct StorySpec {
    #[serde(default)]
    pub link_data: Option<LinkData>,
}

#[derive(Debug, Deserialize, Default)]
pub struct Creative {
    #[serde(default)]
    pub url_tags: Option<String>,
    #[serde(default)]
    pub object_story_spec: Option<StorySpec>,
    #[serde(default)]
    pub instagram_permalink_url: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Ad {
    pub id: crest_core::json::Id,
    #[serde(default)]
    pub name: Option<String>,
    pub adset_id: crest_core::json::Id,
    pub campaign_id: crest_core::json::Id,
    #[serde(default)]
    pub adset: Option<Named>,
    #[serde(default)]
    pub campaign: Option<Named>,
    #[serde(default)]
    pub creative: Option<Creative>,
}

#[derive(Debug, Deserialize)]
pub struct Listing<T> {
    #[serde(default = "Vec::new")]
    pub data: Vec<T>,
    #[serde(default)]
    pub paging: Option<Paging>,
}

#[derive(Debug, Deserialize)]
pub struct ReportRun {
    pub report_run_id: crest_core::json::Id,
}

#[derive(Debug, Deserialize)]
pub struct JobStatus {
    #[serde(default)]
    pub async_status: String,
    #[serde(default)]
    pub async_percent_completion: f64,
}

/// One insights row, borrowed from the page.
#[derive(Debug, Deserialize)]
pub struct InsightRow<'a> {
    #[serde(borrow, default)]
    pub account_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub campaign_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub campaign_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub adset_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub adset_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub ad_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub ad_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub impressions: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub clicks: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub inline_link_clicks: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub spend: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub reach: Option<Text<'a>>,
    /// Kept as served (the raw table stores it whole) and read with [`actions`].
    #[serde(borrow, default)]
    pub actions: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub action_values: Option<&'a RawValue>,
    #[serde(borrow)]
    pub date_start: Text<'a>,
    #[serde(borrow, default)]
    pub publisher_platform: Option<Cow<'a, str>>,
}

/// An `actions` / `action_values` list: `{action_type, value, <window>…}` items.
pub fn actions(raw: &RawValue) -> Result<Vec<Pairs<'_>>, String> {
    serde_json::from_str(raw.get()).map_err(|e| format!("malformed actions list: {e}"))
}

/// A results page checked whole without decoding its rows.
#[derive(Debug, Deserialize)]
pub struct PageEnvelope {
    #[serde(default)]
    pub data: serde::de::IgnoredAny,
    #[serde(default)]
    pub paging: Option<Paging>,
}

/// The `paging` object that ends a results page, read from the end of the
/// body: `None` unless the body ends with a complete `"paging": {…}}`.
pub fn tail_paging(body: &[u8]) -> Option<Paging> {
    let text = std::str::from_utf8(body).ok()?.trim_end();
    let inner = text.strip_suffix('}')?;
    let at = inner.rfind("\"paging\"")?;
    let rest = inner[at + "\"paging\"".len()..].trim_start().strip_prefix(':')?;
    let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<Paging>();
    let paging = stream.next()?.ok()?;
    // Nothing may follow the paging object but the closing brace.
    rest[stream.byte_offset()..].trim().is_empty().then_some(paging)
}

#[derive(Debug, Deserialize)]
pub struct InsightsPage<'a> {
    #[serde(borrow, default)]
    pub data: Vec<InsightRow<'a>>,
    #[serde(default)]
    pub paging: Option<Paging>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: i64, sub: Option<i64>, msg: &str) -> GraphError {
        GraphError {
            message: msg.into(),
            kind: "OAuthException".into(),
            code,
            error_subcode: sub,
            fbtrace_id: None,
        }
    }

    #[test]
    fn paging_is_read_from_the_end_and_a_cut_body_is_not_trusted() {
        let page = br#"{"data":[{"ad_id":"1"}],"paging":{"cursors":{"before":"a","after":"b"},"next":"http://x/v24.0/1/insights?after=b"}}"#;
        assert_eq!(
            tail_paging(page).unwrap().next.as_deref(),
            Some("http://x/v24.0/1/insights?after=b")
        );
        assert!(tail_paging(&page[..page.len() / 2]).is_none());
        assert!(tail_paging(br#"{"data":[{"ad_id":"1"}]}"#).is_none());
        let last = br#"{"data":[],"paging":{"cursors":{"before":"a","after":"b"}}}"#;
        assert!(tail_paging(last).unwrap().next.is_none());
    }

    #[test]
    fn documented_codes_are_classified() {
        let s = StatusCode::BAD_REQUEST;
        for code in [4, 17, 32, 613, 80000] {
            assert!(matches!(
                classify_error(s, &err(code, None, ""), None),
                Verdict::Retry { rate_limited: true, .. }
            ));
        }
        assert!(matches!(
            classify_error(s, &err(190, Some(463), "expired"), None),
            Verdict::Auth(_)
        ));
        assert!(matches!(
            classify_error(s, &err(2635, None, ""), None),
            Verdict::BadRequest(_)
        ));
        let big = err(1, None, "Please reduce the amount of data you're asking for");
        assert!(matches!(
            classify_error(StatusCode::INTERNAL_SERVER_ERROR, &big, None),
            Verdict::TooLarge(_)
        ));
    }

    #[test]
    fn usage_headers_brake_the_pacer_and_set_the_throttle() {
        let policy = MetaPolicy::default();
        let pacer = Pacer::new(None);
        let mut h = HeaderMap::new();
        h.insert(
            "x-business-use-case-usage",
            r#"{"1":[{"call_count":95,"total_cputime":10,"total_time":20,"estimated_time_to_regain_access":0}]}"#
                .parse()
                .unwrap(),
        );
        h.insert(
            "x-fb-ads-insights-throttle",
            r#"{"app_id_util_pct":10,"acc_id_util_pct":60}"#.parse().unwrap(),
        );
        policy.observe_headers(&h, &pacer);
        assert_eq!(policy.insights_util_pct.load(Ordering::Relaxed), 60);
    }

    #[test]
    fn an_absurd_regain_estimate_is_a_capped_wait_not_an_overflow() {
        let policy = MetaPolicy::default();
        let mut h = HeaderMap::new();
        h.insert(
            "x-business-use-case-usage",
            format!(
                r#"{{"1":[{{"call_count":100,"estimated_time_to_regain_access":{}}}]}}"#,
                u64::MAX
            )
            .parse()
            .unwrap(),
        );
        policy.observe_headers(&h, &Pacer::new(None));
        let body = br#"{"error":{"message":"limit","type":"OAuthException","code":17}}"#;
        match policy.classify_status(StatusCode::BAD_REQUEST, body) {
            Some(Verdict::Retry { after: Some(wait), .. }) => assert!(wait <= crest_core::http::MAX_SERVER_WAIT),
            other => panic!("{other:?}"),
        }
    }
}
