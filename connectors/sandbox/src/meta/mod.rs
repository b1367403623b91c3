//! Meta Marketing API (Graph API), as documented: ad account insights,
//! synchronous (`GET /{v}/act_{id}/insights`) and asynchronous (`POST` →
//! `report_run_id`, `GET /{v}/{report_run_id}` for `async_status`, `GET
//! /{v}/{report_run_id}/insights` for the rows), cursor paging with an
//! absolute `paging.next`, `act_{id}/ads` with creatives' `url_tags` and link,
//! and `act_{id}` (currency, `timezone_name`).
//!
//! Numbers are strings. `actions`/`action_values` are lists of `{action_type,
//! value, <window>…}` where a window key appears only if requested and only
//! when its value is not zero (Meta leaves zero-valued keys out, so for a
//! requested window an absent key is 0; a window not requested is unknown —
//! Marketing API reference "Ads Action Stats" and the Insights API page
//! "Attribution windows" (`action_attribution_windows`));
//! an action with no events at all is left out of the list; `value` follows the account's
//! default window (7-day click + 1-day view), not the sum of windows; the
//! purchase types `purchase`, `omni_purchase` and
//! `offsite_conversion.fb_pixel_purchase` carry the same events. Every answer
//! carries the usage headers, rising as the client spends its budget; errors
//! have the documented `{"error": {message, type, code, error_subcode,
//! fbtrace_id}}` shape.

// Handlers return ready HTTP error responses as `Err`: boxing them buys nothing here.
#![allow(clippy::result_large_err)]

use crate::faults::FaultKind;
use crate::world::{mix, World};
use crate::{deliver, Admission, AppState};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode};
use axum::routing::get;
use axum::Router;
use chrono::NaiveDate;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

mod endpoints;
mod graph;
mod insights;

use endpoints::*;
use graph::*;
use insights::*;

type Shared = Arc<AppState>;
type Params = HashMap<String, String>;

/// The oldest Graph API version still served; older ones get error 2635.
pub const OLDEST_VERSION: (u32, u32) = (22, 0);
pub const CURRENT_VERSION: &str = "v24.0";
pub const WINDOWS: &[&str] = &["1d_click", "7d_click", "28d_click", "1d_view"];
pub const PURCHASE_TYPES: &[&str] = &["offsite_conversion.fb_pixel_purchase", "omni_purchase", "purchase"];
pub const PLATFORMS: &[&str] = &["facebook", "instagram"];

#[derive(Debug, Clone)]
pub struct MetaAccount {
    pub account_id: String,
    pub name: String,
    pub currency: &'static str,
    pub timezone_name: &'static str,
    pub business_id: String,
}

#[derive(Debug, Clone)]
pub struct MetaAd {
    pub account: usize,
    pub ad_id: String,
    pub name: String,
    pub adset_id: String,
    pub adset_name: String,
    pub campaign_id: String,
    pub campaign_name: String,
    pub creator: usize,
    pub creative_id: String,
    pub url_tags: String,
    pub link: String,
    pub active_from: u32,
    pub active_to: u32,
}

/// One ad × day × publisher platform, in the sandbox's units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetaRow {
    pub impressions: u64,
    pub clicks: u64,
    pub inline_link_clicks: u64,
    pub spend_cents: u64,
    pub reach: u64,
    /// Purchases per window (1d_click, 7d_click, 28d_click, 1d_view).
    pub purchases: [u64; 4],
    /// Value of one purchase, in cents.
    pub order_value_cents: u64,
    pub landing_page_views: u64,
    pub post_engagement: u64,
}

impl MetaRow {
    /// The account-default figure (7-day click + 1-day view): Meta's `value`.
    pub fn default_purchases(&self) -> u64 {
        self.purchases[1] + self.purchases[3]
    }

    /// Whether the purchase actions appear in the row's `actions` at all.
    pub fn has_purchases(&self) -> bool {
        self.purchases.iter().any(|p| *p > 0)
    }
}

pub struct MetaWorld {
    pub seed: u64,
    /// The world's spread of performers (see [`crate::world::performer`]).
    pub spread: bool,
    pub first_day: NaiveDate,
    pub days: u32,
    pub accounts: Vec<MetaAccount>,
    pub ads: Vec<MetaAd>,
}

fn h(seed: u64, parts: &[u64]) -> u64 {
    parts.iter().fold(mix(seed ^ 0x4D45_5441), |acc, p| {
        mix(acc ^ p.wrapping_mul(0x2545_F491_4F6C_DD1D))
    })
}

impl MetaWorld {
    pub fn new(world: &World) -> MetaWorld {
        let seed = world.config.seed;
        let accounts: Vec<MetaAccount> = [("USD", "America/New_York"), ("GBP", "Europe/London")]
            .iter()
            .enumerate()
            .map(|(i, (currency, tz))| MetaAccount {
                account_id: (100_000_000_000_000u64 + h(seed, &[1, i as u64]) % 900_000_000_000_000).to_string(),
                name: format!("Brand {} Meta", (b'A' + i as u8) as char),
                currency,
                timezone_name: tz,
                business_id: (200_000_000_000_000u64 + h(seed, &[2, i as u64]) % 100_000_000_000_000).to_string(),
            })
            .collect();
        let mut ads = Vec::new();
        for (ci, creator) in world.creators.iter().enumerate() {
            let account = ci % accounts.len();
            let n_ads = 1 + (h(seed, &[3, ci as u64]) % 2) as usize;
            for k in 0..n_ads {
                let r = h(seed, &[4, ci as u64, k as u64]);
                let campaign = (r % 2) as usize;
                let adset = (r >> 8) % 3;
                let days = world.config.days.max(1);
                let active_from = if r.is_multiple_of(5) {
                    ((r >> 16) % (days as u64 / 3 + 1)) as u32
                } else {
                    0
                };
                let idx = ads.len() as u64;
                let slug = ["glow_drop", "summer_fits"][campaign];
                ads.push(MetaAd {
                    account,
                    // Meta ids exceed 2^53 too.
                    ad_id: (120_210_000_000_000_000u64 + idx * 7_907 + r % 7_907).to_string(),
                    name: format!("{} × {slug} (partnership)", creator.handle),
                    adset_id: (120_211_000_000_000_000u64 + (account as u64) * 100 + campaign as u64 * 10 + adset)
                        .to_string(),
                    adset_name: format!("{slug} creators {}", adset + 1),
                    campaign_id: (120_212_000_000_000_000u64 + (account as u64) * 10 + campaign as u64).to_string(),
                    campaign_name: format!("{slug} — Instagram creators"),
                    creator: ci,
                    creative_id: (120_213_000_000_000_000u64 + idx).to_string(),
                    url_tags: format!(
                        "utm_source=instagram&utm_medium=paid_social&utm_campaign={slug}&utm_content={}",
                        creator.handle
                    ),
                    link: format!("https://shop.example.com/c/{slug}"),
                    active_from,
                    active_to: days - 1,
                });
            }
        }
        MetaWorld {
            seed,
            spread: world.config.spread,
            first_day: world.config.first_day,
            days: world.config.days,
            accounts,
            ads,
        }
    }

    pub fn account_index(&self, id: &str) -> Option<usize> {
        self.accounts.iter().position(|a| a.account_id == id)
    }

    fn day_offset(&self, date: NaiveDate) -> Option<u32> {
        let off = (date - self.first_day).num_days();
        (0..self.days as i64).contains(&off).then_some(off as u32)
    }

    /// One ad's numbers on one day on one publisher platform; `None` when it did not serve there.
    pub fn row(&self, ad_index: usize, date: NaiveDate, platform: usize) -> Option<MetaRow> {
        let ad = &self.ads[ad_index];
        let day = self.day_offset(date)?;
        if day < ad.active_from || day > ad.active_to {
            return None;
        }
        let r = h(self.seed, &[5, ad_index as u64, day as u64]);
        let r2 = mix(r ^ platform as u64);
        // Instagram carries most of a creator ad's delivery; Facebook sometimes none.
        let base = 300 + r % 3_000;
        let share = if platform == 1 {
            60 + r2 % 35
        } else if r2.is_multiple_of(4) {
            0
        } else {
            5 + r2 % 30
        };
        let impressions = base * share / 100;
        if impressions == 0 {
            return None;
        }
        // Link clicks average about 2.1 % of impressions, 2.2 × a typical benchmark.
        let (per_mille, converts) = crate::world::performer(self.seed, self.spread, ad.creator, 2, 2200);
        let clicks = impressions * (2 + (r2 >> 8) % 4) * per_mille / 100_000;
        let inline_link_clicks = clicks * (40 + (r2 >> 12) % 40) / 100;
        let c1 = inline_link_clicks * ((r2 >> 16) % 6) / 100;
        let (c7, c28, v1) = if converts {
            let c7 = c1 + (r2 >> 20) % 3;
            (c7, c7 + (r2 >> 24) % 2, (r2 >> 28) % 2)
        } else {
            (0, 0, 0)
        };
        let c1 = if converts { c1 } else { 0 };
        Some(MetaRow {
            impressions,
            clicks,
            inline_link_clicks,
            spend_cents: impressions * (400 + (r2 >> 36) % 900) / 1_000,
            reach: impressions * (75 + (r2 >> 44) % 20) / 100,
            purchases: [c1, c7, c28, v1],
            order_value_cents: 2_500 + (r2 >> 48) % 5_000,
            landing_page_views: inline_link_clicks * 8 / 10,
            post_engagement: clicks + impressions / 50,
        })
    }

    /// Every (date, ad, platform) row of an account over a range, in served order.
    pub fn rows(&self, account: usize, start: NaiveDate, end: NaiveDate) -> Vec<(NaiveDate, usize, usize, MetaRow)> {
        let mut out = Vec::new();
        for date in start.iter_days().take_while(|d| *d <= end) {
            for (i, ad) in self.ads.iter().enumerate() {
                if ad.account != account {
                    continue;
                }
                for p in 0..PLATFORMS.len() {
                    if let Some(row) = self.row(i, date, p) {
                        out.push((date, i, p, row));
                    }
                }
            }
        }
        out
    }
}

/// What an account's insights truly hold over a range (the ground truth for tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetaTotals {
    pub rows: u64,
    pub impressions: u64,
    pub clicks: u64,
    pub inline_link_clicks: u64,
    pub spend_cents: u64,
    /// Purchases per window.
    pub purchases: [u64; 4],
    pub purchase_value_cents: [u64; 4],
    /// Rows with purchases whose key for the window is left out because it is zero.
    pub zero: [u64; 4],
    pub default_purchases: u64,
    pub instagram_rows: u64,
}

pub fn truth(world: &MetaWorld, account_id: &str, start: NaiveDate, end: NaiveDate) -> MetaTotals {
    let mut t = MetaTotals::default();
    let Some(a) = world.account_index(account_id) else {
        return t;
    };
    for (_, _, p, r) in world.rows(a, start, end) {
        t.rows += 1;
        t.impressions += r.impressions;
        t.clicks += r.clicks;
        t.inline_link_clicks += r.inline_link_clicks;
        t.spend_cents += r.spend_cents;
        t.default_purchases += r.default_purchases();
        if PLATFORMS[p] == "instagram" {
            t.instagram_rows += 1;
        }
        for w in 0..4 {
            t.purchases[w] += r.purchases[w];
            t.purchase_value_cents[w] += r.purchases[w] * r.order_value_cents;
            if r.has_purchases() && r.purchases[w] == 0 {
                t.zero[w] += 1;
            }
        }
    }
    t
}

/// Sandbox state for Meta: the world, async jobs, the usage budget.
pub struct MetaState {
    pub world: MetaWorld,
    jobs: Mutex<HashMap<String, Job>>,
    next_job: AtomicU64,
    calls: Mutex<VecDeque<Instant>>,
    pub rate_limited: AtomicU64,
    pub jobs_created: AtomicU64,
    pub jobs_failed: AtomicU64,
}

type Rows = Vec<(NaiveDate, usize, Option<usize>, MetaRow)>;

#[derive(Clone)]
struct Job {
    query: InsightsQuery,
    polls: u32,
    fate: Option<FaultKind>,
    /// The finished report, computed once and paged from.
    rows: Option<Arc<Rows>>,
}

impl MetaState {
    pub fn new(world: &World) -> MetaState {
        MetaState {
            world: MetaWorld::new(world),
            jobs: Mutex::new(HashMap::new()),
            next_job: AtomicU64::new(1),
            calls: Mutex::new(VecDeque::new()),
            rate_limited: AtomicU64::new(0),
            jobs_created: AtomicU64::new(0),
            jobs_failed: AtomicU64::new(0),
        }
    }
}

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/{version}/{node}", get(node))
        .route("/{version}/{node}/insights", get(insights_get).post(insights_post))
        .route("/{version}/{node}/ads", get(ads))
}
