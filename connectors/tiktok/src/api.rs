//! TikTok Business API v1.3 request and response shapes, as served.
//!
//! Every answer is HTTP 200 with `{code, message, request_id, data}`; errors
//! are `code != 0`. Ids are strings (some exceed 2^53, so they are never read
//! as floats; a number is accepted only as an exact integer). Metrics are
//! strings, `"-"` where there is nothing to report.

use crest_core::http::Verdict;
use serde::Deserialize;
use std::borrow::Cow;
use std::time::Duration;

pub const API_PREFIX: &str = "/open_api/v1.3";

#[derive(Debug, Deserialize)]
pub struct Envelope<T> {
    pub code: i64,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub request_id: String,
    pub data: Option<T>,
}

/// TikTok's documented codes, mapped to what crest does about them.
pub fn classify(code: i64, message: &str, request_id: &str) -> Verdict {
    let detail = format!("TikTok code {code}: {message} (request_id {request_id})");
    match code {
        0 => Verdict::Ok,
        // Rate limited: the QPS budget of the app or advertiser is spent.
        40100 => Verdict::Retry { reason: detail, after: Some(Duration::from_secs(1)), rate_limited: true },
        // System errors: transient.
        50000 | 50002 | 51000 | 51001 => Verdict::Retry { reason: detail, after: None, rate_limited: false },
        40001 => Verdict::Auth(format!(
            "{detail}: the token has no permission for this advertiser; check --advertiser-id and the token's authorized advertisers"
        )),
        40101..=40199 => Verdict::Auth(format!(
            "{detail}: the access token was rejected or has expired; create a new one and set TIKTOK_ACCESS_TOKEN"
        )),
        40067 => Verdict::TooLarge(detail),
        40000..=49999 => Verdict::BadRequest(detail),
        _ => Verdict::Fatal(detail),
    }
}

#[derive(Debug, Deserialize, Clone, Copy, Default)]
pub struct PageInfo {
    #[serde(default)]
    pub page: u64,
    #[serde(default)]
    pub page_size: u64,
    #[serde(default)]
    pub total_number: u64,
    #[serde(default)]
    pub total_page: u64,
}

#[derive(Debug, Deserialize)]
pub struct Listing<T> {
    #[serde(default = "Vec::new")]
    pub list: Vec<T>,
    #[serde(default)]
    pub page_info: PageInfo,
}

#[derive(Debug, Deserialize, Clone)]
pub struct AdvertiserInfo {
    pub advertiser_id: Id,
    #[serde(default)]
    pub name: Option<String>,
    pub currency: String,
    pub timezone: String,
}

#[derive(Debug, Deserialize, Clone)]
pub struct Ad {
    pub ad_id: Id,
    #[serde(default)]
    pub ad_name: Option<String>,
    pub adgroup_id: Id,
    #[serde(default)]
    pub campaign_id: Option<Id>,
    #[serde(default)]
    pub landing_page_url: Option<String>,
    #[serde(default)]
    pub identity_id: Option<String>,
    #[serde(default)]
    pub tiktok_item_id: Option<Id>,
    /// Absent on Smart+ ads: such ads are kept, with a null modify time.
    #[serde(default)]
    pub modify_time: Option<String>,
    /// `modify_time` as seconds since the epoch (UTC), parsed once when loaded.
    #[serde(skip)]
    pub modify_ts: Option<i64>,
}

#[derive(Debug, Deserialize, Clone)]
pub struct AdGroup {
    pub adgroup_id: Id,
    #[serde(default)]
    pub adgroup_name: Option<String>,
    pub campaign_id: Id,
    #[serde(default)]
    pub campaign_name: Option<String>,
    #[serde(default)]
    pub optimization_goal: Option<String>,
    #[serde(default)]
    pub click_attribution_window: Option<String>,
    #[serde(default)]
    pub view_attribution_window: Option<String>,
    /// The windows in days, derived once when loaded.
    #[serde(skip)]
    pub click_days: Option<i32>,
    #[serde(skip)]
    pub view_days: Option<i32>,
}

/// One report row, borrowed from the response body.
#[derive(Debug, Deserialize)]
pub struct ReportRow<'a> {
    #[serde(borrow)]
    pub dimensions: Dimensions<'a>,
    #[serde(borrow)]
    pub metrics: Metrics<'a>,
}

#[derive(Debug, Deserialize, Default)]
pub struct Dimensions<'a> {
    #[serde(borrow, default)]
    pub ad_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub adgroup_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub campaign_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub advertiser_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub stat_time_day: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub stat_time_hour: Option<Text<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct ReportData<'a> {
    #[serde(borrow, default)]
    pub list: Vec<ReportRow<'a>>,
    #[serde(default)]
    pub page_info: PageInfo,
}

#[derive(Debug, Deserialize)]
pub struct ReportEnvelope<'a> {
    pub code: i64,
    #[serde(borrow, default)]
    pub message: Cow<'a, str>,
    #[serde(borrow, default)]
    pub request_id: Cow<'a, str>,
    #[serde(borrow)]
    pub data: Option<ReportData<'a>>,
}

pub use crest_core::json::{Id, Pairs as Metrics, Text};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_above_2_pow_53_survive_as_strings_or_integers() {
        let row: ReportRow = serde_json::from_str(
            r#"{"dimensions":{"ad_id":1790000000000002948,"stat_time_day":"2026-01-01 00:00:00"},"metrics":{"spend":"1.50","cpc":"-"}}"#,
        )
        .unwrap();
        assert_eq!(row.dimensions.ad_id.unwrap().as_str(), "1790000000000002948");
        assert_eq!(row.metrics.get("cpc"), Some("-"));
        assert_eq!(row.metrics.get("spend"), Some("1.50"));
    }

    #[test]
    fn codes_are_classified() {
        assert!(matches!(
            classify(40100, "", ""),
            Verdict::Retry { rate_limited: true, .. }
        ));
        assert!(matches!(
            classify(50002, "", ""),
            Verdict::Retry {
                rate_limited: false,
                ..
            }
        ));
        assert!(matches!(classify(40105, "", ""), Verdict::Auth(_)));
        assert!(matches!(classify(40001, "", ""), Verdict::Auth(_)));
        assert!(matches!(classify(40067, "", ""), Verdict::TooLarge(_)));
        assert!(matches!(classify(40002, "", ""), Verdict::BadRequest(_)));
    }
}
