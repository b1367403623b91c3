//! TikTok Business API v1.3, as documented: the integrated report
//! (`report/integrated/get/`), `ad/get/`, `adgroup/get/` and
//! `advertiser/info/`. Every answer is HTTP 200 with the envelope
//! `{code, message, request_id, data}`; errors are `code != 0`. Metrics are
//! strings, `"-"` where there is nothing to report; ids are strings above 2^53.

use crate::faults::FaultKind;
use crate::world::{AdMetrics, World};
use crate::{deliver, Admission, AppState};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Response, StatusCode};
use axum::routing::get;
use axum::Router;
use chrono::NaiveDate;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

pub const OK: i64 = 0;
pub const NO_PERMISSION: i64 = 40001;
pub const BAD_PARAMETER: i64 = 40002;
pub const RANGE_TOO_LARGE: i64 = 40067;
pub const RATE_LIMITED: i64 = 40100;
pub const INVALID_TOKEN: i64 = 40105;
pub const SERVER_ERROR: i64 = 50000;

type Shared = Arc<AppState>;

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/open_api/v1.3/report/integrated/get/", get(report))
        .route("/open_api/v1.3/ad/get/", get(ads))
        .route("/open_api/v1.3/adgroup/get/", get(adgroups))
        .route("/open_api/v1.3/advertiser/info/", get(advertiser_info))
}

/// Report levels, by the `data_level` TikTok names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    Ad,
    AdGroup,
    Campaign,
    Advertiser,
}

impl Level {
    fn parse(s: &str) -> Option<Level> {
        Some(match s {
            "AUCTION_AD" => Level::Ad,
            "AUCTION_ADGROUP" => Level::AdGroup,
            "AUCTION_CAMPAIGN" => Level::Campaign,
            "AUCTION_ADVERTISER" => Level::Advertiser,
            _ => return None,
        })
    }

    fn id_dimension(self) -> &'static str {
        match self {
            Level::Ad => "ad_id",
            Level::AdGroup => "adgroup_id",
            Level::Campaign => "campaign_id",
            Level::Advertiser => "advertiser_id",
        }
    }
}

/// A reporting entity (ad, ad group, campaign, advertiser): its id and the ads it sums.
type Entity = (String, Vec<usize>);

/// Per advertiser and level: each reporting entity.
pub(crate) struct Index {
    entities: HashMap<(usize, Level), Vec<Entity>>,
}

impl Index {
    pub fn new(world: &World) -> Index {
        let mut entities: HashMap<(usize, Level), Vec<Entity>> = HashMap::new();
        for (a, adv) in world.advertisers.iter().enumerate() {
            let ads: Vec<usize> = (0..world.ads.len())
                .filter(|i| world.ad_advertiser(&world.ads[*i]) == a)
                .collect();
            entities.insert(
                (a, Level::Ad),
                ads.iter()
                    .map(|i| (world.ads[*i].ad_id.to_string(), vec![*i]))
                    .collect(),
            );
            let mut by_group: Vec<Entity> = Vec::new();
            let mut by_campaign: Vec<Entity> = Vec::new();
            for (g, group) in world.adgroups.iter().enumerate() {
                if world.campaigns[group.campaign].advertiser != a {
                    continue;
                }
                let members: Vec<usize> = ads.iter().copied().filter(|i| world.ads[*i].adgroup == g).collect();
                if !members.is_empty() {
                    by_group.push((group.adgroup_id.clone(), members));
                }
            }
            for (c, campaign) in world.campaigns.iter().enumerate() {
                if campaign.advertiser != a {
                    continue;
                }
                let members: Vec<usize> = ads
                    .iter()
                    .copied()
                    .filter(|i| world.adgroups[world.ads[*i].adgroup].campaign == c)
                    .collect();
                if !members.is_empty() {
                    by_campaign.push((campaign.campaign_id.clone(), members));
                }
            }
            entities.insert((a, Level::AdGroup), by_group);
            entities.insert((a, Level::Campaign), by_campaign);
            entities.insert((a, Level::Advertiser), vec![(adv.advertiser_id.clone(), ads)]);
        }
        Index { entities }
    }
}

/// What a TikTok report over `start..=end` truly holds (ad-level sums; the
/// row count for the given level and granularity). "-" counts as absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub rows: u64,
    pub impressions: u64,
    pub clicks: u64,
    pub spend_cents: u64,
    pub conversions: u64,
    pub conversion_value_cents: u64,
    pub video_plays: u64,
    /// Rows whose `conversion` is served as "-".
    pub rows_without_conversions: u64,
}

pub fn truth(
    world: &World,
    advertiser_id: &str,
    start: NaiveDate,
    end: NaiveDate,
    level: &str,
    hourly: bool,
) -> Totals {
    let index = Index::new(world);
    let mut t = Totals::default();
    let (Some(a), Some(level)) = (world.advertiser_index(advertiser_id), Level::parse(level)) else {
        return t;
    };
    for date in start.iter_days().take_while(|d| *d <= end) {
        for (_, members) in &index.entities[&(a, level)] {
            let Some(m) = entity_day(world, members, date) else {
                continue;
            };
            let rows = if hourly { 24 } else { 1 };
            t.rows += rows;
            t.impressions += m.impressions;
            t.clicks += m.clicks;
            t.spend_cents += m.spend_cents;
            t.conversions += m.conversions.unwrap_or(0);
            t.conversion_value_cents += m.conversion_value_cents.unwrap_or(0);
            t.video_plays += m.video_plays;
            if m.conversions.is_none() {
                // An entity-day without conversion tracking serves "-" every hour.
                t.rows_without_conversions += rows;
            }
        }
    }
    t
}

fn entity_day(world: &World, members: &[usize], date: NaiveDate) -> Option<AdMetrics> {
    let mut sum: Option<AdMetrics> = None;
    for i in members {
        if let Some(m) = world.ad_day(*i, date) {
            sum.get_or_insert_with(AdMetrics::default).add(&m);
        }
    }
    sum
}

fn entity_hour(world: &World, members: &[usize], date: NaiveDate, hour: usize) -> Option<AdMetrics> {
    let mut sum: Option<AdMetrics> = None;
    for i in members {
        if let Some(hours) = world.ad_hours(*i, date) {
            sum.get_or_insert_with(AdMetrics::default).add(&hours[hour]);
        }
    }
    sum
}

fn is_active(world: &World, members: &[usize], day_offset: Option<u32>) -> bool {
    let Some(d) = day_offset else { return false };
    members.iter().any(|i| {
        let ad = &world.ads[*i];
        ad.active_from <= d && d <= ad.active_to
    })
}

/// The metrics this simulated API knows; anything else is a bad parameter.
pub const METRICS: &[&str] = &[
    "spend",
    "impressions",
    "clicks",
    "ctr",
    "cpc",
    "cpm",
    "reach",
    "frequency",
    "conversion",
    "cost_per_conversion",
    "conversion_rate",
    "result",
    "video_play_actions",
    "video_watched_2s",
    "video_watched_6s",
    "video_views_p25",
    "video_views_p50",
    "video_views_p75",
    "video_views_p100",
    "average_video_play",
    "likes",
    "comments",
    "shares",
    "follows",
    "profile_visits",
    "complete_payment",
    "total_complete_payment_rate",
    "complete_payment_roas",
];

fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// `num / den` with two decimals (rounded half up), or "-" when `den` is 0.
fn ratio2(num: u128, den: u128) -> String {
    if den == 0 {
        return "-".into();
    }
    let hundredths = (num * 100 * 2 + den) / (den * 2);
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}

fn metric_value(name: &str, m: &AdMetrics, seed: u64) -> String {
    let dash = || "-".to_string();
    match name {
        "spend" => money(m.spend_cents),
        "impressions" => m.impressions.to_string(),
        "clicks" => m.clicks.to_string(),
        "ctr" => ratio2(m.clicks as u128 * 100, m.impressions as u128),
        "cpc" => ratio2(m.spend_cents as u128, m.clicks as u128 * 100),
        "cpm" => ratio2(m.spend_cents as u128 * 10, m.impressions as u128),
        "reach" => m.reach.to_string(),
        "frequency" => ratio2(m.impressions as u128, m.reach as u128),
        "conversion" | "complete_payment" => m.conversions.map_or_else(dash, |c| c.to_string()),
        "result" => m.conversions.unwrap_or(m.reach).to_string(),
        "cost_per_conversion" => match m.conversions {
            Some(c) => ratio2(m.spend_cents as u128, c as u128 * 100),
            None => dash(),
        },
        "conversion_rate" => match m.conversions {
            Some(c) => ratio2(c as u128 * 100, m.clicks as u128),
            None => dash(),
        },
        "total_complete_payment_rate" => m.conversion_value_cents.map_or_else(dash, money),
        "complete_payment_roas" => match m.conversion_value_cents {
            Some(v) => ratio2(v as u128, m.spend_cents as u128),
            None => dash(),
        },
        "video_play_actions" => m.video_plays.to_string(),
        "video_watched_2s" => m.watched_2s.to_string(),
        "video_watched_6s" => m.watched_6s.to_string(),
        "video_views_p25" => (m.video_plays / 2).to_string(),
        "video_views_p50" => (m.video_plays * 35 / 100).to_string(),
        "video_views_p75" => (m.video_plays / 4).to_string(),
        "video_views_p100" => (m.video_plays * 15 / 100).to_string(),
        "average_video_play" => {
            if m.video_plays == 0 {
                dash()
            } else {
                ratio2(200 + (crate::world::mix(seed ^ m.video_plays) % 600) as u128, 100)
            }
        }
        "likes" => m.likes.to_string(),
        "comments" => m.comments.to_string(),
        "shares" => m.shares.to_string(),
        "follows" => m.follows.to_string(),
        "profile_visits" => m.profile_visits.to_string(),
        _ => dash(),
    }
}

fn envelope(code: i64, message: &str, data: Value, request_id: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"code": code, "message": message, "request_id": request_id, "data": data}))
        .unwrap_or_default()
}

struct ApiError(i64, String);

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(BAD_PARAMETER, msg.into())
}

type Params = HashMap<String, String>;

/// The part every endpoint shares: the gate, the token, faults, the envelope.
async fn serve(
    state: &AppState,
    headers: &HeaderMap,
    params: &Params,
    handler: impl FnOnce(&AppState, &Params) -> Result<Vec<u8>, ApiError>,
) -> Response<Body> {
    serve_with(state, headers, params, handler, None).await
}

/// [`serve`], with what an `empty` fault answers instead of the handler.
async fn serve_with(
    state: &AppState,
    headers: &HeaderMap,
    params: &Params,
    handler: impl FnOnce(&AppState, &Params) -> Result<Vec<u8>, ApiError>,
    empty: Option<fn(&Params) -> Vec<u8>>,
) -> Response<Body> {
    let seq = state.stats.requests.load(std::sync::atomic::Ordering::Relaxed);
    let request_id = format!("2026{:016X}", crate::world::mix(seq));
    let fault = match state.admit() {
        Admission::OverBudget => {
            let body = envelope(
                RATE_LIMITED,
                "Too many requests. Please retry in some time.",
                json!({}),
                &request_id,
            );
            return deliver(StatusCode::OK, body, None);
        }
        Admission::Serve(f) => f,
    };
    let error = |code: i64, msg: &str| deliver(StatusCode::OK, envelope(code, msg, json!({}), &request_id), None);
    match fault {
        Some(FaultKind::RateLimit) => return error(RATE_LIMITED, "Too many requests. Please retry in some time."),
        Some(FaultKind::ServerError) => return error(SERVER_ERROR, "System error. Please try again later."),
        Some(FaultKind::ExpiredToken) => return error(INVALID_TOKEN, "Access token has expired. Please re-authorize."),
        Some(FaultKind::Http500) => {
            return deliver(
                StatusCode::INTERNAL_SERVER_ERROR,
                b"<html>500 Internal Server Error</html>".to_vec(),
                None,
            )
        }
        Some(FaultKind::Http503) => {
            let mut r = deliver(StatusCode::SERVICE_UNAVAILABLE, b"Service Unavailable".to_vec(), None);
            r.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
            return r;
        }
        Some(FaultKind::Slow) => tokio::time::sleep(state.config.slow).await,
        _ => {}
    }
    let token = headers.get("Access-Token").and_then(|v| v.to_str().ok()).unwrap_or("");
    if token.is_empty() || token != state.config.tiktok_token {
        return error(INVALID_TOKEN, "The access token is invalid or has been revoked.");
    }
    let answer = match (fault, empty) {
        (Some(FaultKind::Empty), Some(empty)) => Ok(empty(params)),
        _ => handler(state, params),
    };
    match answer {
        Ok(data_json) => {
            // `data` is pre-rendered JSON (report pages are built by hand for speed).
            let mut body = Vec::with_capacity(data_json.len() + 96);
            body.extend_from_slice(b"{\"code\":0,\"message\":\"OK\",\"request_id\":\"");
            body.extend_from_slice(request_id.as_bytes());
            body.extend_from_slice(b"\",\"data\":");
            body.extend_from_slice(&data_json);
            body.push(b'}');
            deliver(StatusCode::OK, body, fault)
        }
        Err(ApiError(code, msg)) => error(code, &msg),
    }
}

fn json_array(params: &Params, key: &str) -> Result<Option<Vec<String>>, ApiError> {
    match params.get(key) {
        None => Ok(None),
        Some(raw) => serde_json::from_str::<Vec<String>>(raw)
            .map(Some)
            .map_err(|_| bad(format!("{key}: Invalid value. It should be a JSON array of strings."))),
    }
}

fn paging(params: &Params) -> Result<(u64, u64), ApiError> {
    let page: u64 = params
        .get("page")
        .map_or(Ok(1), |p| p.parse())
        .map_err(|_| bad("page: Not a valid integer."))?;
    let size: u64 = params
        .get("page_size")
        .map_or(Ok(10), |p| p.parse())
        .map_err(|_| bad("page_size: Not a valid integer."))?;
    if page == 0 {
        return Err(bad("page: Must be greater than or equal to 1."));
    }
    if size == 0 || size > 1000 {
        return Err(bad("page_size: Must be between 1 and 1000."));
    }
    Ok((page, size))
}

fn advertiser(state: &AppState, params: &Params) -> Result<usize, ApiError> {
    let id = params
        .get("advertiser_id")
        .ok_or_else(|| bad("advertiser_id: Missing data for required field."))?;
    state
        .world
        .advertiser_index(id)
        .ok_or_else(|| ApiError(NO_PERMISSION, format!("No permission to operate advertiser {id}.")))
}

fn page_info(page: u64, size: u64, total: u64) -> Value {
    json!({"page": page, "page_size": size, "total_number": total, "total_page": total.div_ceil(size)})
}

fn date_param(params: &Params, key: &str) -> Result<NaiveDate, ApiError> {
    let raw = params
        .get(key)
        .ok_or_else(|| bad(format!("{key}: Missing data for required field.")))?;
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| bad(format!("{key}: Not a valid date (YYYY-MM-DD).")))
}

async fn report(State(state): State<Shared>, headers: HeaderMap, Query(params): Query<Params>) -> Response<Body> {
    state
        .stats
        .report_requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    serve_with(&state, &headers, &params, report_page, Some(empty_report_page)).await
}

/// A report page with no rows, as the `empty` fault serves it.
fn empty_report_page(params: &Params) -> Vec<u8> {
    let size = params.get("page_size").and_then(|s| s.parse().ok()).unwrap_or(10u64);
    json!({"list": [], "page_info": page_info(1, size, 0)})
        .to_string()
        .into_bytes()
}

fn report_page(state: &AppState, params: &Params) -> Result<Vec<u8>, ApiError> {
    let a = advertiser(state, params)?;
    if params.get("report_type").map(String::as_str) != Some("BASIC") {
        return Err(bad("report_type: Only BASIC is supported here."));
    }
    let level = params.get("data_level").and_then(|l| Level::parse(l)).ok_or_else(|| {
        bad("data_level: Must be one of AUCTION_AD, AUCTION_ADGROUP, AUCTION_CAMPAIGN, AUCTION_ADVERTISER.")
    })?;
    let dims = json_array(params, "dimensions")?.ok_or_else(|| bad("dimensions: Missing data for required field."))?;
    let hourly = dims.iter().any(|d| d == "stat_time_hour");
    let daily = dims.iter().any(|d| d == "stat_time_day");
    if dims.len() != 2 || !dims.iter().any(|d| d == level.id_dimension()) || hourly == daily {
        return Err(bad(format!(
            "dimensions: Invalid dimensions {dims:?} for {level:?}: use [\"{}\", \"stat_time_day\" or \"stat_time_hour\"].",
            level.id_dimension()
        )));
    }
    let metrics = json_array(params, "metrics")?.unwrap_or_else(|| vec!["spend".into(), "impressions".into()]);
    if let Some(unknown) = metrics.iter().find(|m| !METRICS.contains(&m.as_str())) {
        return Err(bad(format!("metrics: Invalid metric field: {unknown}.")));
    }
    let start = date_param(params, "start_date")?;
    let end = date_param(params, "end_date")?;
    if end < start {
        return Err(bad("end_date: Must be on or after start_date."));
    }
    let days = (end - start).num_days() + 1;
    if (hourly && days > 1) || days > 30 {
        return Err(ApiError(
            RANGE_TOO_LARGE,
            format!(
                "The time range is too large: at most {} for this granularity.",
                if hourly { "1 day" } else { "30 days" }
            ),
        ));
    }
    let (page, size) = paging(params)?;
    let world = &state.world;
    let entities = &state.tiktok.entities[&(a, level)];
    let per_day: Vec<(NaiveDate, Vec<usize>)> = start
        .iter_days()
        .take_while(|d| *d <= end)
        .map(|d| {
            let offset = world.day_offset(d);
            (
                d,
                (0..entities.len())
                    .filter(|e| is_active(world, &entities[*e].1, offset))
                    .collect(),
            )
        })
        .collect();
    let buckets = if hourly { 24 } else { 1 };
    let total: u64 = per_day.iter().map(|(_, act)| act.len() as u64 * buckets).sum();
    let limit = state.config.max_rows_per_query;
    if limit > 0 && total > limit {
        return Err(ApiError(
            RANGE_TOO_LARGE,
            format!("Too much data requested ({total} rows): narrow the time range."),
        ));
    }

    let mut out = String::with_capacity(size as usize * 512);
    out.push_str("{\"list\":[");
    let mut skip = (page - 1) * size;
    let mut emitted = 0u64;
    'days: for (date, active) in &per_day {
        let rows_today = active.len() as u64 * buckets;
        if skip >= rows_today {
            skip -= rows_today;
            continue;
        }
        for k in skip..rows_today {
            if emitted == size {
                break 'days;
            }
            let (hour, e) = (
                (k / active.len() as u64) as usize,
                active[(k % active.len() as u64) as usize],
            );
            let (id, members) = &entities[e];
            let m = if hourly {
                entity_hour(world, members, *date, hour)
            } else {
                entity_day(world, members, *date)
            };
            let m = m.unwrap_or_default();
            if emitted > 0 {
                out.push(',');
            }
            let _ = write!(out, "{{\"dimensions\":{{\"{}\":\"{id}\",", level.id_dimension());
            if hourly {
                let _ = write!(out, "\"stat_time_hour\":\"{date} {hour:02}:00:00\"}},\"metrics\":{{");
            } else {
                let _ = write!(out, "\"stat_time_day\":\"{date} 00:00:00\"}},\"metrics\":{{");
            }
            for (i, name) in metrics.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "\"{name}\":\"{}\"", metric_value(name, &m, world.config.seed));
            }
            out.push_str("}}");
            emitted += 1;
        }
        skip = 0;
    }
    let _ = write!(out, "],\"page_info\":{}}}", page_info(page, size, total));
    Ok(out.into_bytes())
}

async fn ads(State(state): State<Shared>, headers: HeaderMap, Query(params): Query<Params>) -> Response<Body> {
    serve(&state, &headers, &params, |state, params| {
        let a = advertiser(state, params)?;
        let (page, size) = paging(params)?;
        let w = &state.world;
        let all: Vec<Value> = w
            .ads
            .iter()
            .filter(|ad| w.ad_advertiser(ad) == a)
            .map(|ad| {
                let group = &w.adgroups[ad.adgroup];
                let campaign = &w.campaigns[group.campaign];
                let mut v = json!({
                    "advertiser_id": w.advertisers[a].advertiser_id,
                    "campaign_id": campaign.campaign_id,
                    "campaign_name": campaign.name,
                    "adgroup_id": group.adgroup_id,
                    "adgroup_name": group.name,
                    "ad_id": ad.ad_id.to_string(),
                    "ad_name": ad.name,
                    "landing_page_url": ad.landing_page_url,
                    "identity_type": ad.identity_type,
                    "identity_id": ad.identity_id,
                    "tiktok_item_id": ad.tiktok_item_id,
                    "operation_status": "ENABLE",
                    "create_time": ad.create_time,
                });
                if let Some(t) = &ad.modify_time {
                    v["modify_time"] = json!(t);
                }
                v
            })
            .collect();
        paged(all, page, size)
    })
    .await
}

async fn adgroups(State(state): State<Shared>, headers: HeaderMap, Query(params): Query<Params>) -> Response<Body> {
    serve(&state, &headers, &params, |state, params| {
        let a = advertiser(state, params)?;
        let (page, size) = paging(params)?;
        let w = &state.world;
        let all: Vec<Value> = w
            .adgroups
            .iter()
            .filter(|g| w.campaigns[g.campaign].advertiser == a)
            .map(|g| {
                let c = &w.campaigns[g.campaign];
                json!({
                    "advertiser_id": w.advertisers[a].advertiser_id,
                    "campaign_id": c.campaign_id,
                    "campaign_name": c.name,
                    "adgroup_id": g.adgroup_id,
                    "adgroup_name": g.name,
                    "optimization_goal": g.optimization_goal,
                    "click_attribution_window": g.click_window,
                    "view_attribution_window": g.view_window,
                    "operation_status": "ENABLE",
                })
            })
            .collect();
        paged(all, page, size)
    })
    .await
}

fn paged(all: Vec<Value>, page: u64, size: u64) -> Result<Vec<u8>, ApiError> {
    let total = all.len() as u64;
    let list: Vec<Value> = all
        .into_iter()
        .skip(((page - 1) * size) as usize)
        .take(size as usize)
        .collect();
    serde_json::to_vec(&json!({"list": list, "page_info": page_info(page, size, total)}))
        .map_err(|e| ApiError(SERVER_ERROR, e.to_string()))
}

async fn advertiser_info(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response<Body> {
    serve(&state, &headers, &params, |state, params| {
        let ids = json_array(params, "advertiser_ids")?
            .ok_or_else(|| bad("advertiser_ids: Missing data for required field."))?;
        let mut list = Vec::new();
        for id in &ids {
            let a = state
                .world
                .advertiser_index(id)
                .ok_or_else(|| ApiError(NO_PERMISSION, format!("No permission to operate advertiser {id}.")))?;
            let adv = &state.world.advertisers[a];
            list.push(json!({
                "advertiser_id": adv.advertiser_id,
                "name": adv.name,
                "currency": adv.currency,
                "timezone": adv.timezone,
                "display_timezone": adv.timezone,
                "status": "STATUS_ENABLE",
            }));
        }
        serde_json::to_vec(&json!({"list": list})).map_err(|e| ApiError(SERVER_ERROR, e.to_string()))
    })
    .await
}
