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

fn trace_id(seed: u64) -> String {
    format!("A{:015X}", mix(seed) >> 4)
}

fn graph_error(status: StatusCode, code: i64, subcode: Option<i64>, kind: &str, message: &str) -> Response<Body> {
    let mut e = json!({"message": message, "type": kind, "code": code, "fbtrace_id": trace_id(code as u64)});
    if let Some(s) = subcode {
        e["error_subcode"] = json!(s);
    }
    if code == 2 || code == 1 {
        e["is_transient"] = json!(true);
    }
    deliver(
        status,
        serde_json::to_vec(&json!({"error": e})).unwrap_or_default(),
        None,
    )
}

/// Usage in percent of the budget over its window, after counting this call.
fn spend_budget(state: &AppState) -> (u64, bool) {
    let Some((budget, window)) = state.config.meta_budget else {
        return (1, false);
    };
    let mut calls = state.meta.calls.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    while calls.front().is_some_and(|t| now.duration_since(*t) > window) {
        calls.pop_front();
    }
    calls.push_back(now);
    let pct = calls.len() as u64 * 100 / budget.max(1) as u64;
    (pct, calls.len() as u64 > budget as u64)
}

fn usage_headers(state: &AppState, account: Option<&MetaAccount>, pct: u64) -> [(&'static str, String); 3] {
    let business = account.map_or("0".to_string(), |a| a.business_id.clone());
    let account_id = account.map_or("0".to_string(), |a| a.account_id.clone());
    // Meta reports the wait in minutes; under a minute reads as 0.
    let regain = if pct > 100 {
        state.config.meta_budget.map_or(0, |(_, w)| w.as_secs() / 60)
    } else {
        0
    };
    let pct = pct.min(100);
    [
        (
            "x-business-use-case-usage",
            json!({business: [{"type": "ads_insights", "call_count": pct, "total_cputime": pct / 2, "total_time": pct * 3 / 4, "estimated_time_to_regain_access": regain}]})
                .to_string(),
        ),
        ("x-ad-account-usage", json!({"acc_id_util_pct": pct, "reset_time_duration": 0, "ads_api_access_tier": "standard_access"}).to_string()),
        ("x-fb-ads-insights-throttle", json!({"app_id_util_pct": pct / 2, "acc_id_util_pct": pct, "ads_api_access_tier": "standard_access", "account": account_id}).to_string()),
    ]
}

fn with_headers(mut r: Response<Body>, headers: [(&'static str, String); 3]) -> Response<Body> {
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            r.headers_mut().insert(k, v);
        }
    }
    r
}

/// What every Meta endpoint does first: faults, version, token, budget.
/// `Ok(fault)` to go on (a body fault, or a job fate, still to apply).
fn gate(
    state: &AppState,
    version: &str,
    headers: &HeaderMap,
    params: &Params,
    account: Option<&MetaAccount>,
) -> Result<Option<FaultKind>, Response<Body>> {
    let (pct, over) = spend_budget(state);
    let h = usage_headers(state, account, pct);
    let fault = match state.admit() {
        Admission::OverBudget => {
            state.meta.rate_limited.fetch_add(1, Ordering::Relaxed);
            return Err(with_headers(
                graph_error(
                    StatusCode::BAD_REQUEST,
                    4,
                    None,
                    "OAuthException",
                    "(#4) Application request limit reached",
                ),
                h,
            ));
        }
        Admission::Serve(f) => f,
    };
    let fail = |r: Response<Body>| Err(with_headers(r, h.clone()));
    match fault {
        Some(FaultKind::RateLimit) => {
            state.meta.rate_limited.fetch_add(1, Ordering::Relaxed);
            return fail(graph_error(
                StatusCode::BAD_REQUEST,
                80000,
                Some(2446079),
                "OAuthException",
                "There have been too many calls from this ad-account. Please wait a bit and try again.",
            ));
        }
        Some(FaultKind::ServerError) => {
            return fail(graph_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                2,
                None,
                "OAuthException",
                "An unexpected error has occurred. Please retry your request later.",
            ))
        }
        Some(FaultKind::Http500) => {
            return fail(deliver(
                StatusCode::INTERNAL_SERVER_ERROR,
                b"<html>500</html>".to_vec(),
                None,
            ))
        }
        Some(FaultKind::Http503) => {
            let mut r = deliver(StatusCode::SERVICE_UNAVAILABLE, b"Service Unavailable".to_vec(), None);
            r.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
            return fail(r);
        }
        Some(FaultKind::ExpiredToken) => {
            return fail(graph_error(
                StatusCode::BAD_REQUEST,
                190,
                Some(463),
                "OAuthException",
                "Error validating access token: Session has expired on Tuesday, 24-Nov-26 10:00:00 PST.",
            ))
        }
        _ => {}
    }
    let v = version.trim_start_matches('v');
    let parsed = v
        .split_once('.')
        .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
    match parsed {
        None => return fail(graph_error(StatusCode::BAD_REQUEST, 100, None, "GraphMethodException", &format!("Unknown path components: /{version}"))),
        Some(p) if p < OLDEST_VERSION => {
            return fail(graph_error(
                StatusCode::BAD_REQUEST,
                2635,
                None,
                "OAuthException",
                &format!("(#2635) You are calling a deprecated version of the Ads API. Please update to the latest version: {CURRENT_VERSION}."),
            ))
        }
        _ => {}
    }
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let token = params.get("access_token").map(String::as_str).or(bearer).unwrap_or("");
    if token != state.config.meta_token {
        return fail(graph_error(
            StatusCode::BAD_REQUEST,
            190,
            None,
            "OAuthException",
            "Invalid OAuth access token - Cannot parse access token",
        ));
    }
    if over {
        state.meta.rate_limited.fetch_add(1, Ordering::Relaxed);
        return fail(graph_error(
            StatusCode::BAD_REQUEST,
            17,
            Some(2446079),
            "OAuthException",
            "(#17) User request limit reached",
        ));
    }
    Ok(fault)
}

fn account_of(state: &AppState, node: &str) -> Result<usize, Response<Body>> {
    let id = node.strip_prefix("act_").unwrap_or(node);
    state.meta.world.account_index(id).ok_or_else(|| {
        graph_error(
            StatusCode::BAD_REQUEST,
            100,
            Some(33),
            "GraphMethodException",
            &format!("Unsupported get request. Object with ID 'act_{id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation."),
        )
    })
}

fn ok_json(state: &AppState, account: Option<&MetaAccount>, body: Vec<u8>, fault: Option<FaultKind>) -> Response<Body> {
    let pct = state.config.meta_budget.map_or(1, |(budget, _)| {
        let calls = state.meta.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.len() as u64 * 100 / budget.max(1) as u64
    });
    with_headers(deliver(StatusCode::OK, body, fault), usage_headers(state, account, pct))
}

async fn slow(state: &AppState, fault: Option<FaultKind>) {
    if fault == Some(FaultKind::Slow) {
        tokio::time::sleep(state.config.slow).await;
    }
}

/// What every `act_{id}/…` endpoint does first: find the account, pass the
/// gate (faults, version, token, budget), wait out a `slow` fault.
async fn enter_account(
    state: &AppState,
    version: &str,
    node: &str,
    headers: &HeaderMap,
    params: &Params,
) -> Result<(usize, MetaAccount, Option<FaultKind>), Response<Body>> {
    let a = account_of(state, node)?;
    let account = state.meta.world.accounts[a].clone();
    let fault = gate(state, version, headers, params, Some(&account))?;
    slow(state, fault).await;
    Ok((a, account, fault))
}

/// `GET /{v}/act_{id}` (account) or `GET /{v}/{report_run_id}` (job status).
async fn node(
    State(state): State<Shared>,
    Path((version, node)): Path<(String, String)>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response<Body> {
    let account = if node.starts_with("act_") {
        account_of(&state, &node)
            .ok()
            .map(|a| state.meta.world.accounts[a].clone())
    } else {
        None
    };
    let fault = match gate(&state, &version, &headers, &params, account.as_ref()) {
        Ok(f) => f,
        Err(r) => return r,
    };
    slow(&state, fault).await;
    if node.starts_with("act_") {
        let Some(a) = account else {
            return account_of(&state, &node)
                .err()
                .unwrap_or_else(|| Response::new(Body::empty()));
        };
        let body = json!({"id": format!("act_{}", a.account_id), "account_id": a.account_id, "name": a.name, "currency": a.currency, "timezone_name": a.timezone_name, "account_status": 1, "business": {"id": a.business_id}});
        return ok_json(&state, Some(&a), serde_json::to_vec(&body).unwrap_or_default(), fault);
    }
    let mut jobs = state.meta.jobs.lock().unwrap_or_else(|e| e.into_inner());
    let Some(job) = jobs.get_mut(&node) else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            100,
            Some(33),
            "GraphMethodException",
            &format!("Unsupported get request. Object with ID '{node}' does not exist."),
        );
    };
    job.polls += 1;
    let needed = state.config.meta_job_polls.max(1);
    let (status, pct) = match job.fate {
        Some(FaultKind::JobFailed) if job.polls >= 2 => ("Job Failed", 0),
        Some(FaultKind::JobStall) => ("Job Running", 35),
        _ if job.polls >= needed => ("Job Completed", 100),
        _ if job.polls == 1 => ("Job Not Started", 0),
        _ => ("Job Running", (job.polls * 100 / needed).min(99)),
    };
    if status == "Job Failed" {
        state.meta.jobs_failed.fetch_add(1, Ordering::Relaxed);
    }
    let q = &job.query;
    let body = json!({"id": node, "account_id": state.meta.world.accounts[q.account].account_id, "async_status": status, "async_percent_completion": pct, "date_start": q.since.to_string(), "date_stop": q.until.to_string(), "time_ref": 1_764_000_000});
    let account = state.meta.world.accounts[q.account].clone();
    drop(jobs);
    ok_json(
        &state,
        Some(&account),
        serde_json::to_vec(&body).unwrap_or_default(),
        fault,
    )
}

/// A parsed insights request.
#[derive(Clone, Debug)]
struct InsightsQuery {
    account: usize,
    since: NaiveDate,
    until: NaiveDate,
    fields: Vec<String>,
    windows: Vec<usize>,
    by_platform: bool,
    campaigns: Option<Vec<String>>,
    adsets: Option<Vec<String>>,
    ads: Option<Vec<String>>,
}

const FIELDS: &[&str] = &[
    "account_id",
    "account_name",
    "campaign_id",
    "campaign_name",
    "adset_id",
    "adset_name",
    "ad_id",
    "ad_name",
    "impressions",
    "clicks",
    "inline_link_clicks",
    "spend",
    "reach",
    "frequency",
    "cpm",
    "ctr",
    "cpc",
    "actions",
    "action_values",
    "date_start",
    "date_stop",
];

fn bad_param(msg: &str) -> Response<Body> {
    graph_error(
        StatusCode::BAD_REQUEST,
        100,
        None,
        "OAuthException",
        &format!("(#100) {msg}"),
    )
}

fn parse_query(account: usize, params: &Params) -> Result<InsightsQuery, Response<Body>> {
    if params.get("level").map(String::as_str).unwrap_or("ad") != "ad" {
        return Err(bad_param("The sandbox serves level=ad"));
    }
    if params.get("time_increment").map(String::as_str).unwrap_or("1") != "1" {
        return Err(bad_param("The sandbox serves time_increment=1"));
    }
    let range: Value = params
        .get("time_range")
        .and_then(|r| serde_json::from_str(r).ok())
        .ok_or_else(|| {
            bad_param("time_range must be a JSON object {\"since\":\"YYYY-MM-DD\",\"until\":\"YYYY-MM-DD\"}")
        })?;
    let date = |k: &str| {
        range[k]
            .as_str()
            .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
    };
    let (Some(since), Some(until)) = (date("since"), date("until")) else {
        return Err(bad_param("time_range needs since and until as YYYY-MM-DD"));
    };
    if until < since {
        return Err(bad_param("time_range: since must be on or before until"));
    }
    let fields: Vec<String> = params
        .get("fields")
        .map(|f| {
            f.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_else(|| vec!["impressions".into(), "spend".into()]);
    if let Some(bad) = fields.iter().find(|f| !FIELDS.contains(&f.as_str())) {
        return Err(bad_param(&format!("{bad} is not valid for fields param.")));
    }
    let windows_raw: Vec<String> = params
        .get("action_attribution_windows")
        .map(|w| {
            serde_json::from_str::<Vec<String>>(w).unwrap_or_else(|_| {
                w.split(',')
                    .map(|s| s.trim().trim_matches(['[', ']', '"']).to_string())
                    .collect()
            })
        })
        .unwrap_or_default();
    // 7d_view and 28d_view are no longer served: silently absent, as on Meta.
    let windows = windows_raw
        .iter()
        .filter_map(|w| WINDOWS.iter().position(|x| x == w))
        .collect();
    let by_platform = match params.get("breakdowns").map(String::as_str) {
        None | Some("") | Some("[]") => false,
        Some(b) if b.contains("publisher_platform") => true,
        Some(b) => return Err(bad_param(&format!("breakdowns {b} is not served by the sandbox"))),
    };
    let mut q = InsightsQuery {
        account,
        since,
        until,
        fields,
        windows,
        by_platform,
        campaigns: None,
        adsets: None,
        ads: None,
    };
    if let Some(f) = params.get("filtering") {
        let filters: Vec<Value> = serde_json::from_str(f).map_err(|_| bad_param("filtering must be a JSON array"))?;
        for filter in filters {
            let values: Vec<String> = filter["value"]
                .as_array()
                .map(|v| v.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            match (filter["field"].as_str(), filter["operator"].as_str()) {
                (Some("campaign.id"), Some("IN")) => q.campaigns = Some(values),
                (Some("adset.id"), Some("IN")) => q.adsets = Some(values),
                (Some("ad.id"), Some("IN")) => q.ads = Some(values),
                _ => {
                    return Err(bad_param(
                        "filtering: the sandbox serves campaign.id, adset.id and ad.id with IN",
                    ))
                }
            }
        }
    }
    Ok(q)
}

/// The rows a query selects, in served order: (date, ad, platform or None, numbers).
fn select(world: &MetaWorld, q: &InsightsQuery) -> Rows {
    let keep = |ad: &MetaAd| {
        q.campaigns.as_ref().is_none_or(|c| c.contains(&ad.campaign_id))
            && q.adsets.as_ref().is_none_or(|c| c.contains(&ad.adset_id))
            && q.ads.as_ref().is_none_or(|c| c.contains(&ad.ad_id))
    };
    let mut out = Vec::new();
    for date in q.since.iter_days().take_while(|d| *d <= q.until) {
        for (i, ad) in world.ads.iter().enumerate() {
            if ad.account != q.account || !keep(ad) {
                continue;
            }
            let rows: Vec<(usize, MetaRow)> = (0..PLATFORMS.len())
                .filter_map(|p| world.row(i, date, p).map(|r| (p, r)))
                .collect();
            if q.by_platform {
                out.extend(rows.into_iter().map(|(p, r)| (date, i, Some(p), r)));
            } else if !rows.is_empty() {
                let mut sum = MetaRow::default();
                for (_, r) in &rows {
                    sum.impressions += r.impressions;
                    sum.clicks += r.clicks;
                    sum.inline_link_clicks += r.inline_link_clicks;
                    sum.spend_cents += r.spend_cents;
                    sum.reach += r.reach;
                    sum.landing_page_views += r.landing_page_views;
                    sum.post_engagement += r.post_engagement;
                    for w in 0..4 {
                        sum.purchases[w] += r.purchases[w];
                    }
                    sum.order_value_cents = r.order_value_cents;
                }
                out.push((date, i, None, sum));
            }
        }
    }
    out
}

fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn ratio(num: u64, den: u64, scale: u64) -> String {
    if den == 0 {
        return "0".into();
    }
    format!("{:.6}", num as f64 * scale as f64 / den as f64)
}

fn separate(out: &mut String, first: &mut bool) {
    if !*first {
        out.push(',');
    }
    *first = false;
}

fn put(out: &mut String, first: &mut bool, k: &str, v: &str) {
    separate(out, first);
    out.push('"');
    out.push_str(k);
    out.push_str("\":\"");
    push_escaped(out, v);
    out.push('"');
}

/// A JSON string's content, escaped (quotes, backslashes, control characters).
fn push_escaped(out: &mut String, v: &str) {
    if !v.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// A count, or money (cents → "12.34"), written straight into the page.
fn push_number(out: &mut String, n: u64, money: bool) {
    if money {
        let _ = write!(out, "{}.{:02}", n / 100, n % 100);
    } else {
        let _ = write!(out, "{n}");
    }
}

fn render_row(
    out: &mut String,
    world: &MetaWorld,
    q: &InsightsQuery,
    (date, ad_i, platform, r): &(NaiveDate, usize, Option<usize>, MetaRow),
) {
    let ad = &world.ads[*ad_i];
    let acct = &world.accounts[ad.account];
    let mut first = true;
    out.push('{');
    for f in &q.fields {
        match f.as_str() {
            "account_id" => put(out, &mut first, f, &acct.account_id),
            "account_name" => put(out, &mut first, f, &acct.name),
            "campaign_id" => put(out, &mut first, f, &ad.campaign_id),
            "campaign_name" => put(out, &mut first, f, &ad.campaign_name),
            "adset_id" => put(out, &mut first, f, &ad.adset_id),
            "adset_name" => put(out, &mut first, f, &ad.adset_name),
            "ad_id" => put(out, &mut first, f, &ad.ad_id),
            "ad_name" => put(out, &mut first, f, &ad.name),
            "impressions" => put(out, &mut first, f, &r.impressions.to_string()),
            "clicks" => put(out, &mut first, f, &r.clicks.to_string()),
            "inline_link_clicks" => put(out, &mut first, f, &r.inline_link_clicks.to_string()),
            "spend" => put(out, &mut first, f, &money(r.spend_cents)),
            "reach" => put(out, &mut first, f, &r.reach.to_string()),
            "frequency" => put(out, &mut first, f, &ratio(r.impressions, r.reach, 1)),
            "cpm" => put(out, &mut first, f, &ratio(r.spend_cents * 10, r.impressions, 1)),
            "ctr" => put(out, &mut first, f, &ratio(r.clicks * 100, r.impressions, 1)),
            "cpc" => put(out, &mut first, f, &ratio(r.spend_cents, r.clicks * 100, 1)),
            "actions" | "action_values" => {
                separate(out, &mut first);
                let _ = write!(out, "\"{f}\":");
                render_actions(out, q, r, f == "action_values");
            }
            _ => {}
        }
    }
    put(out, &mut first, "date_start", &date.to_string());
    put(out, &mut first, "date_stop", &date.to_string());
    if let Some(p) = platform {
        put(out, &mut first, "publisher_platform", PLATFORMS[*p]);
    }
    out.push('}');
}

fn render_actions(out: &mut String, q: &InsightsQuery, r: &MetaRow, values: bool) {
    out.push('[');
    let scale = if values { r.order_value_cents } else { 1 };
    let mut first = true;
    let mut item = |out: &mut String, action: &str, default: u64, windows: [Option<u64>; 4]| {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str("{\"action_type\":\"");
        out.push_str(action);
        out.push_str("\",\"value\":\"");
        push_number(out, default * scale, values);
        out.push('"');
        for w in &q.windows {
            if let Some(v) = windows[*w] {
                out.push_str(",\"");
                out.push_str(WINDOWS[*w]);
                out.push_str("\":\"");
                push_number(out, v * scale, values);
                out.push('"');
            }
        }
        out.push('}');
    };
    if !values {
        let click = [
            Some(r.inline_link_clicks),
            Some(r.inline_link_clicks),
            Some(r.inline_link_clicks),
            None,
        ];
        item(out, "link_click", r.inline_link_clicks, click);
        item(
            out,
            "landing_page_view",
            r.landing_page_views,
            [Some(r.landing_page_views); 4],
        );
        item(out, "post_engagement", r.post_engagement, [Some(r.post_engagement); 4]);
    }
    if r.has_purchases() {
        // Meta leaves a window's key out when its value is zero.
        let windows: [Option<u64>; 4] = std::array::from_fn(|w| (r.purchases[w] > 0).then_some(r.purchases[w]));
        // The same purchases under three overlapping names: never to be summed.
        for action in PURCHASE_TYPES {
            item(out, action, r.default_purchases(), windows);
        }
    }
    out.push(']');
}

fn cursor(offset: usize) -> String {
    format!("MTAx{:x}", offset ^ 0x5a5a)
}

fn offset_of(c: &str) -> Option<usize> {
    c.strip_prefix("MTAx")
        .and_then(|h| usize::from_str_radix(h, 16).ok())
        .map(|o| o ^ 0x5a5a)
}

/// One page of a query's rows, with `paging.next` as an absolute URL carrying the token.
fn page(
    state: &AppState,
    headers: &HeaderMap,
    path: &str,
    params: &Params,
    rows: &[(NaiveDate, usize, Option<usize>, MetaRow)],
    q: &InsightsQuery,
) -> Result<Vec<u8>, Response<Body>> {
    let limit: usize = params
        .get("limit")
        .map_or(Ok(25), |l| l.parse())
        .map_err(|_| bad_param("limit must be an integer"))?;
    let limit = limit.clamp(1, 5000);
    let start = match params.get("after") {
        None => 0,
        Some(a) => offset_of(a).ok_or_else(|| bad_param("Invalid cursor"))?,
    };
    let end = (start + limit).min(rows.len());
    let mut out = String::with_capacity((end - start) * 900 + 256);
    out.push_str("{\"data\":[");
    for (i, row) in rows[start.min(rows.len())..end].iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        render_row(&mut out, &state.meta.world, q, row);
    }
    out.push(']');
    if start < end {
        let _ = write!(
            out,
            ",\"paging\":{{\"cursors\":{{\"before\":\"{}\",\"after\":\"{}\"}}",
            cursor(start),
            cursor(end - 1 + 1)
        );
        if end < rows.len() {
            let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
            let mut next = url_with(&format!("http://{host}{path}"), params, "after", &cursor(end));
            if !params.contains_key("access_token") {
                next.push_str(&format!("&access_token={}", state.config.meta_token));
            }
            let _ = write!(out, ",\"next\":{}", serde_json::to_string(&next).unwrap_or_default());
        }
        out.push('}');
    }
    out.push('}');
    Ok(out.into_bytes())
}

fn url_with(base: &str, params: &Params, key: &str, value: &str) -> String {
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| k.as_str() != key)
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.sort();
    pairs.push((key, value));
    let q: String = url_encode(&pairs);
    format!("{base}?{q}")
}

fn url_encode(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `GET /{v}/act_{id}/insights` (synchronous) or `GET /{v}/{report_run_id}/insights` (a finished job's rows).
async fn insights_get(
    State(state): State<Shared>,
    Path((version, node)): Path<(String, String)>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response<Body> {
    let path = format!("/{version}/{node}/insights");
    if node.starts_with("act_") {
        let (a, account, fault) = match enter_account(&state, &version, &node, &headers, &params).await {
            Ok(entered) => entered,
            Err(r) => return r,
        };
        let q = match parse_query(a, &params) {
            Ok(q) => q,
            Err(r) => return r,
        };
        let rows = select(&state.meta.world, &q);
        let limit = state.config.meta_max_job_rows;
        if limit > 0 && rows.len() as u64 > limit {
            return graph_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                1,
                Some(99),
                "OAuthException",
                "Please reduce the amount of data you're asking for, then retry your request",
            );
        }
        return match page(&state, &headers, &path, &params, &rows, &q) {
            Ok(body) => ok_json(&state, Some(&account), body, fault),
            Err(r) => r,
        };
    }
    let job = state
        .meta
        .jobs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&node)
        .cloned();
    let Some(job) = job else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            100,
            Some(33),
            "GraphMethodException",
            &format!("Unsupported get request. Object with ID '{node}' does not exist."),
        );
    };
    let account = state.meta.world.accounts[job.query.account].clone();
    let fault = match gate(&state, &version, &headers, &params, Some(&account)) {
        Ok(f) => f,
        Err(r) => return r,
    };
    slow(&state, fault).await;
    if job.polls < state.config.meta_job_polls.max(1) || job.fate.is_some() {
        return bad_param("The report is not ready: poll its async_status until Job Completed");
    }
    let rows = match job.rows {
        Some(rows) => rows,
        None => {
            let rows = Arc::new(select(&state.meta.world, &job.query));
            if let Some(j) = state.meta.jobs.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&node) {
                j.rows = Some(rows.clone());
            }
            rows
        }
    };
    match page(&state, &headers, &path, &params, &rows, &job.query) {
        Ok(body) => ok_json(&state, Some(&account), body, fault),
        Err(r) => r,
    }
}

/// `POST /{v}/act_{id}/insights`: starts an async job.
async fn insights_post(
    State(state): State<Shared>,
    Path((version, node)): Path<(String, String)>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response<Body> {
    let (a, account, fault) = match enter_account(&state, &version, &node, &headers, &params).await {
        Ok(entered) => entered,
        Err(r) => return r,
    };
    let q = match parse_query(a, &params) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let limit = state.config.meta_max_job_rows;
    let mut fate = fault.filter(|f| matches!(f, FaultKind::JobFailed | FaultKind::JobStall));
    if limit > 0 && fate.is_none() && select(&state.meta.world, &q).len() as u64 > limit {
        // Too heavy a report: Meta's job fails after a while.
        fate = Some(FaultKind::JobFailed);
    }
    let id = (8_000_000_000_000_000u64 + state.meta.next_job.fetch_add(1, Ordering::Relaxed)).to_string();
    state.meta.jobs_created.fetch_add(1, Ordering::Relaxed);
    state.meta.jobs.lock().unwrap_or_else(|e| e.into_inner()).insert(
        id.clone(),
        Job {
            query: q,
            polls: 0,
            fate,
            rows: None,
        },
    );
    let body_fault = fault.filter(|f| matches!(f, FaultKind::Truncated | FaultKind::Drop));
    ok_json(
        &state,
        Some(&account),
        serde_json::to_vec(&json!({"report_run_id": id})).unwrap_or_default(),
        body_fault,
    )
}

/// `GET /{v}/act_{id}/ads`: ads with their ad set, campaign and creative.
async fn ads(
    State(state): State<Shared>,
    Path((version, node)): Path<(String, String)>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response<Body> {
    let (a, account, fault) = match enter_account(&state, &version, &node, &headers, &params).await {
        Ok(entered) => entered,
        Err(r) => return r,
    };
    let world = &state.meta.world;
    // The `empty` fault: the listing answers with no ads (an account whose
    // ads crest cannot see), while its insights still have rows.
    let all: Vec<&MetaAd> = world
        .ads
        .iter()
        .filter(|ad| ad.account == a && fault != Some(FaultKind::Empty))
        .collect();
    let limit: usize = params
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(25)
        .clamp(1, 500);
    let start = params
        .get("after")
        .and_then(|c| offset_of(c))
        .unwrap_or(0)
        .min(all.len());
    let end = (start + limit).min(all.len());
    let data: Vec<Value> = all[start..end]
        .iter()
        .map(|ad| {
            json!({
                "id": ad.ad_id, "name": ad.name, "adset_id": ad.adset_id, "campaign_id": ad.campaign_id,
                "adset": {"id": ad.adset_id, "name": ad.adset_name},
                "campaign": {"id": ad.campaign_id, "name": ad.campaign_name},
                "creative": {
                    "id": ad.creative_id,
                    "url_tags": ad.url_tags,
                    "object_story_spec": {"instagram_user_id": format!("1784{:011}", ad.creator), "link_data": {"link": ad.link}},
                    "instagram_permalink_url": format!("https://www.instagram.com/p/C{}/", &mix(ad.creator as u64).to_string()[..10]),
                },
                "effective_status": "ACTIVE",
            })
        })
        .collect();
    let mut body = json!({"data": data});
    if start < end {
        body["paging"] = json!({"cursors": {"before": cursor(start), "after": cursor(end)}});
        if end < all.len() {
            let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
            body["paging"]["next"] = json!(url_with(
                &format!("http://{host}/{version}/{node}/ads"),
                &params,
                "after",
                &cursor(end)
            ));
        }
    }
    ok_json(
        &state,
        Some(&account),
        serde_json::to_vec(&body).unwrap_or_default(),
        fault,
    )
}
