//! Google Ads REST for a brand's YouTube ads, as documented:
//! `POST /v{N}/customers/{id}/googleAds:searchStream` with a GAQL query in
//! `{"query": …}` and the `developer-token`, `login-customer-id` and bearer
//! headers. The body is a JSON array of batches `[{results, fieldMask,
//! requestId}]` of at most 10,000 rows; fields are camelCase and nested by
//! resource; int64 values are strings, doubles are numbers, and values equal
//! to their default (0, "") are omitted, as proto3 JSON does. Errors carry a
//! `GoogleAdsFailure`: `RESOURCE_EXHAUSTED` (429, with
//! `quotaErrorDetails.retryDelay`), `UNAUTHENTICATED`, `INVALID_ARGUMENT`
//! (an unknown field, a segment a metric cannot be split by).
//!
//! The GAQL reader is minimal: the SELECT list, FROM `ad_group_ad` or
//! `customer`, WHERE conditions joined by AND on `segments.date` (BETWEEN,
//! comparisons) and `campaign.advertising_channel_type` (= or IN),
//! ORDER BY and LIMIT.

use crate::faults::FaultKind;
use crate::world::{apportion, World};
use crate::{deliver, Admission, AppState};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Response, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{Days, NaiveDate};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::sync::Arc;

mod gaql;
mod stream;

use gaql::*;
use stream::*;

type Shared = Arc<AppState>;

/// `segments.conversion_lag_bucket`: days from the click to the conversion,
/// as (enum, from day, to day).
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
/// Google's default conversion window: 30 days from the click.
const WINDOW_BUCKETS: usize = 16;
/// Relative share of conversions per lag bucket within 30 days.
const LAG_SHAPE: [u64; WINDOW_BUCKETS] = [500, 120, 70, 45, 35, 28, 22, 18, 15, 12, 10, 9, 8, 7, 30, 25];
/// Rows per searchStream batch.
pub const BATCH_ROWS: usize = 10_000;
const CHANNEL_TYPES: &[&str] = &["VIDEO", "VIDEO", "DEMAND_GEN", "SEARCH"];

#[derive(Debug, Clone)]
pub struct Customer {
    pub id: String,
    pub name: String,
    pub currency: &'static str,
    pub time_zone: &'static str,
    /// The customer's purchase conversion action and its lookback windows
    /// (`conversion_action.click_through_lookback_window_days` 1–90, default
    /// 30; `view_through_lookback_window_days` 1–30, default 1), as the Google
    /// Ads API reference page "ConversionAction" documents them.
    pub conversion_action: ConversionAction,
}

#[derive(Debug, Clone)]
pub struct ConversionAction {
    pub id: String,
    pub name: String,
    pub click_through_days: u64,
    pub view_through_days: u64,
}

#[derive(Debug, Clone)]
pub struct AdsCampaign {
    pub customer: usize,
    pub id: String,
    pub name: String,
    pub channel_type: &'static str,
}

#[derive(Debug, Clone)]
pub struct AdsAdGroup {
    pub campaign: usize,
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct AdsAd {
    pub ad_group: usize,
    pub id: String,
    pub name: String,
    pub final_url: String,
    /// The creator the ad promotes; `None` for the brand's own ads.
    pub creator: Option<usize>,
    pub active_from: u32,
    pub active_to: u32,
}

/// One ad's numbers on one day. Conversions are counted in halves and values
/// in cents so the doubles Google serves are exact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdsDay {
    pub impressions: u64,
    pub clicks: u64,
    pub cost_micros: u64,
    pub video_views: u64,
    pub engagements: u64,
    pub view_through: u64,
    pub conv_halves: u64,
    pub value_cents: u64,
    /// Per lag bucket; they sum to the totals above (all within 30 days).
    pub lag_halves: [u64; LAG_BUCKETS.len()],
    pub lag_cents: [u64; LAG_BUCKETS.len()],
}

pub struct AdsWorld {
    seed: u64,
    spread: bool,
    pub first_day: NaiveDate,
    pub days: u32,
    pub customers: Vec<Customer>,
    pub campaigns: Vec<AdsCampaign>,
    pub ad_groups: Vec<AdsAdGroup>,
    pub ads: Vec<AdsAd>,
    /// Ads of each customer, in id order.
    by_customer: Vec<Vec<usize>>,
}

/// The world's hash, salted so Google Ads draws differ from the other platforms'.
fn h(seed: u64, parts: &[u64]) -> u64 {
    crate::world::h(seed ^ 0x6761, parts)
}

/// Totals of a customer's video ads over a range, as the tests check them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdsTotals {
    pub rows: u64,
    pub impressions: u64,
    pub clicks: u64,
    pub cost_micros: u64,
    pub video_views: u64,
    pub conv_halves: u64,
    pub value_cents: u64,
    /// Conversions (halves) whose lag bucket ends within 7 days of the click.
    pub conv_halves_7d: u64,
    pub value_cents_7d: u64,
    /// View-through conversions (Google counts them in the action's view window).
    pub view_through: u64,
}

impl AdsWorld {
    pub fn new(world: &World) -> AdsWorld {
        let seed = world.config.seed;
        let customers: Vec<Customer> = (0..world.config.advertisers.max(1))
            .map(|i| {
                let (currency, time_zone) = if i % 2 == 0 {
                    ("USD", "America/New_York")
                } else {
                    ("EUR", "Europe/Berlin")
                };
                Customer {
                    id: (1_000_000_000 + h(seed, &[1, i as u64]) % 8_999_999_999).to_string(),
                    name: format!("Brand {} YouTube", (b'A' + (i % 26) as u8) as char),
                    currency,
                    time_zone,
                    // Google's defaults, except a second customer counting 90 days of clicks.
                    conversion_action: ConversionAction {
                        id: (6_000_000_000 + h(seed, &[10, i as u64]) % 999_999_999).to_string(),
                        name: "Purchase".into(),
                        click_through_days: if i % 2 == 1 { 90 } else { 30 },
                        view_through_days: 1,
                    },
                }
            })
            .collect();
        let mut campaigns = Vec::new();
        let mut ad_groups = Vec::new();
        for c in 0..customers.len() {
            for (k, channel_type) in CHANNEL_TYPES.iter().enumerate() {
                let id = 20_000_000_000 + h(seed, &[2, c as u64, k as u64]) % 9_000_000_000;
                campaigns.push(AdsCampaign {
                    customer: c,
                    id: id.to_string(),
                    name: format!("Creators {} {}", channel_type.to_lowercase(), k + 1),
                    channel_type,
                });
                for g in 0..2u64 {
                    ad_groups.push(AdsAdGroup {
                        campaign: campaigns.len() - 1,
                        id: (140_000_000_000 + h(seed, &[3, id, g]) % 9_000_000_000).to_string(),
                        name: format!("Creators {} group {}", k + 1, g + 1),
                    });
                }
            }
        }
        let mut ads = Vec::new();
        let days = world.config.days.max(1);
        for (ci, creator) in world.creators.iter().enumerate() {
            let n = 1 + (h(seed, &[4, ci as u64]) % world.config.ads_per_creator.max(1) as u64) as usize;
            for k in 0..n {
                let r = h(seed, &[5, ci as u64, k as u64]);
                let customer = (ci + k) % customers.len();
                let campaign = customer * CHANNEL_TYPES.len() + (r % CHANNEL_TYPES.len() as u64) as usize;
                let ad_group = campaign * 2 + ((r >> 8) % 2) as usize;
                // One ad in eleven is the brand's own: no creator in its link.
                let from_creator = r % 11 != 5;
                let handle = &creator.handle;
                let final_url = match (from_creator, (r >> 12) % 4) {
                    (false, _) => "https://shop.example.com/yt/brand?utm_source=youtube&utm_medium=paid".to_string(),
                    (true, 1) => format!(
                        "https://shop.example.com/yt/{k}?UTM_Source=YouTube&utm_medium=paid&utm_content={}#watch",
                        handle.replace('.', "%2E")
                    ),
                    (true, _) => format!(
                        "https://shop.example.com/yt/{k}?utm_source=youtube&utm_medium=paid&utm_campaign=creators&utm_content={handle}"
                    ),
                };
                let active_from = if r.is_multiple_of(5) {
                    ((r >> 20) % (days as u64 / 3 + 1)) as u32
                } else {
                    0
                };
                ads.push(AdsAd {
                    ad_group,
                    id: (600_000_000_000 + h(seed, &[6, ci as u64, k as u64]) % 99_000_000_000).to_string(),
                    name: format!("{handle} video #{}", k + 1),
                    final_url,
                    creator: from_creator.then_some(ci),
                    active_from,
                    active_to: days - 1,
                });
            }
        }
        let mut by_customer = vec![Vec::new(); customers.len()];
        for (i, ad) in ads.iter().enumerate() {
            by_customer[campaigns[ad_groups[ad.ad_group].campaign].customer].push(i);
        }
        for list in &mut by_customer {
            list.sort_by(|a, b| ads[*a].id.cmp(&ads[*b].id));
        }
        AdsWorld {
            seed,
            spread: world.config.spread,
            first_day: world.config.first_day,
            days,
            customers,
            campaigns,
            ad_groups,
            ads,
            by_customer,
        }
    }

    pub fn customer_index(&self, id: &str) -> Option<usize> {
        self.customers.iter().position(|c| c.id == id)
    }

    pub fn campaign_of(&self, ad: usize) -> &AdsCampaign {
        &self.campaigns[self.ad_groups[self.ads[ad].ad_group].campaign]
    }

    pub fn ad_day(&self, ad: usize, date: NaiveDate) -> Option<AdsDay> {
        let off = (date - self.first_day).num_days();
        let a = &self.ads[ad];
        if off < a.active_from as i64 || off > a.active_to as i64 {
            return None;
        }
        let r = h(self.seed, &[7, ad as u64, off as u64]);
        let impressions = 800 + r % 20_000;
        // Clicks average about 1.95 % of impressions, 3.5 × a typical YouTube benchmark.
        let (per_mille, converts) = match a.creator {
            Some(c) => crate::world::performer(self.seed, self.spread, c, 3, 3500),
            None => (1000, true),
        };
        let clicks = impressions * (5 + (r >> 16) % 30) * per_mille / 1_000_000;
        // About 1.5% of clicks convert, in whole and half conversions (data-driven
        // attribution splits some).
        let conv_halves = if converts {
            clicks * 2 * ((r >> 32) % 4) / 100
        } else {
            0
        };
        let value_cents = conv_halves * (1_000 + (r >> 48) % 6_000);
        // Each half conversion lands in a lag bucket drawn from LAG_SHAPE:
        // most the same day, fewer each day after, as Google's lag reports show.
        let total: u64 = LAG_SHAPE.iter().sum();
        let mut halves = vec![0u64; WINDOW_BUCKETS];
        for k in 0..conv_halves {
            let mut x = h(self.seed, &[8, ad as u64, off as u64, k]) % total;
            let b = LAG_SHAPE
                .iter()
                .position(|w| {
                    if x < *w {
                        true
                    } else {
                        x -= w;
                        false
                    }
                })
                .unwrap_or(0);
            halves[b] += 1;
        }
        let cents = apportion(value_cents, &halves);
        let mut day = AdsDay {
            impressions,
            clicks,
            cost_micros: clicks * (80_000 + (r >> 24) % 1_900_000) + (r >> 40) % 10_000,
            video_views: impressions * (10 + (r >> 8) % 40) / 100,
            engagements: impressions / 200,
            view_through: if converts { impressions / 4_000 } else { 0 },
            conv_halves,
            value_cents,
            ..AdsDay::default()
        };
        day.lag_halves[..WINDOW_BUCKETS].copy_from_slice(&halves);
        day.lag_cents[..WINDOW_BUCKETS].copy_from_slice(&cents);
        Some(day)
    }

    fn dates(&self, from: Option<NaiveDate>, to: Option<NaiveDate>) -> impl Iterator<Item = NaiveDate> {
        let last = self.first_day + Days::new(self.days as u64 - 1);
        let from = from.unwrap_or(self.first_day).max(self.first_day);
        let to = to.unwrap_or(last).min(last);
        from.iter_days().take_while(move |d| *d <= to)
    }

    /// The true totals of a customer's VIDEO and DEMAND_GEN ads over a range.
    pub fn totals(&self, customer: usize, start: NaiveDate, end: NaiveDate) -> AdsTotals {
        let mut t = AdsTotals::default();
        for date in self.dates(Some(start), Some(end)) {
            for &ad in &self.by_customer[customer] {
                if self.campaign_of(ad).channel_type == "SEARCH" {
                    continue;
                }
                if let Some(d) = self.ad_day(ad, date) {
                    t.rows += 1;
                    t.impressions += d.impressions;
                    t.clicks += d.clicks;
                    t.cost_micros += d.cost_micros;
                    t.video_views += d.video_views;
                    t.conv_halves += d.conv_halves;
                    t.value_cents += d.value_cents;
                    t.conv_halves_7d += d.lag_halves[..7].iter().sum::<u64>();
                    t.value_cents_7d += d.lag_cents[..7].iter().sum::<u64>();
                    t.view_through += d.view_through;
                }
            }
        }
        t
    }
}
pub(crate) fn routes() -> Router<Shared> {
    Router::new().route("/{version}/customers/{customer}/{method}", post(search_stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaql_reads_select_from_where() {
        let q = parse_gaql(
            "SELECT campaign.id, metrics.cost_micros, segments.date FROM ad_group_ad \
             WHERE segments.date BETWEEN '2026-01-01' AND '2026-01-07' \
             AND campaign.advertising_channel_type IN ('VIDEO', 'DEMAND_GEN') ORDER BY segments.date",
        )
        .unwrap();
        assert_eq!(q.select.len(), 3);
        assert_eq!(q.date_from, NaiveDate::from_ymd_opt(2026, 1, 1));
        assert_eq!(q.date_to, NaiveDate::from_ymd_opt(2026, 1, 7));
        assert_eq!(q.channel_types.unwrap(), vec!["VIDEO", "DEMAND_GEN"]);
        assert_eq!(
            parse_gaql("SELECT metrics.nope FROM ad_group_ad").unwrap_err().0,
            "UNRECOGNIZED_FIELD"
        );
        assert_eq!(
            parse_gaql("SELECT segments.conversion_lag_bucket, metrics.clicks FROM ad_group_ad")
                .unwrap_err()
                .0,
            "PROHIBITED_SEGMENT_WITH_METRIC_IN_SELECT_OR_WHERE_CLAUSE"
        );
        assert_eq!(
            parse_gaql("SELECT segments.date, metrics.clicks FROM ad_group_ad")
                .unwrap_err()
                .0,
            "EXPECTED_FILTERS_ON_DATE_RANGE"
        );
    }

    #[test]
    fn video_views_are_refused_from_v22_on_and_trueview_views_before() {
        // Release notes of v22: metrics.video_views became metrics.video_trueview_views.
        let q = |field: &str| {
            parse_gaql(&format!(
                "SELECT {field} FROM ad_group_ad WHERE segments.date BETWEEN '2026-01-01' AND '2026-01-01'"
            ))
            .unwrap()
        };
        let old = q("metrics.video_views");
        let new = q("metrics.video_trueview_views");
        assert!(version_check(21, &old).is_ok());
        assert_eq!(version_check(24, &old).unwrap_err().0, "UNRECOGNIZED_FIELD");
        assert_eq!(version_check(21, &new).unwrap_err().0, "UNRECOGNIZED_FIELD");
        assert!(version_check(26, &new).is_ok());
    }

    #[test]
    fn lag_buckets_sum_to_the_total() {
        let world = World::new(crate::world::WorldConfig::default());
        let ads = AdsWorld::new(&world);
        let mut some = false;
        for a in 0..ads.ads.len().min(40) {
            if let Some(d) = ads.ad_day(a, ads.first_day) {
                assert_eq!(d.lag_halves.iter().sum::<u64>(), d.conv_halves);
                assert_eq!(d.lag_cents.iter().sum::<u64>(), d.value_cents);
                some |= d.conv_halves > 0;
            }
        }
        assert!(some);
    }
}
