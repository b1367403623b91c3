//! Google's APIs for YouTube creators, as documented: OAuth (`POST /token`
//! with a refresh token), YouTube Analytics `GET /v2/reports` (typed cells,
//! `columnHeaders` in the order asked, `rows` absent when empty, the most
//! recent days missing, `startIndex` paging), and YouTube Data
//! `GET /youtube/v3/videos` (title, publish time, a description carrying the
//! creator's UTM-tagged link). Access tokens expire; the APIs then answer 401.

use crate::faults::FaultKind;
use crate::world::{mix, World};
use crate::{deliver, Admission, AppState};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Response, StatusCode};
use axum::routing::{get, post};
use axum::{Form, Router};
use chrono::{Days, NaiveDate};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

type Shared = Arc<AppState>;
type Params = HashMap<String, String>;

/// Days before the world's last day for which Analytics has no data yet.
pub const DATA_LAG_DAYS: u32 = 2;
pub const METRICS: &[&str] = &[
    "views",
    "estimatedMinutesWatched",
    "averageViewPercentage",
    "likes",
    "comments",
    "shares",
    "subscribersGained",
    "cardClicks",
    "cardImpressions",
];

#[derive(Debug, Clone)]
pub struct Video {
    pub channel: usize,
    pub video_id: String,
    pub title: String,
    pub published: NaiveDate,
    pub description: String,
}

pub struct YouTubeWorld {
    pub seed: u64,
    pub first_day: NaiveDate,
    pub days: u32,
    /// One channel per creator: `UC` + 22 characters.
    pub channels: Vec<String>,
    pub videos: Vec<Video>,
    /// The videos of each channel: a range of `videos` (they are made channel by channel).
    by_channel: Vec<std::ops::Range<usize>>,
    by_id: HashMap<String, usize>,
}

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn id(seed: u64, len: usize) -> String {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = mix(x);
            ALPHABET[(x % 64) as usize] as char
        })
        .collect()
}

/// The YouTube channel of the `i`-th creator of a seeded world.
pub fn channel_id(seed: u64, i: usize) -> String {
    format!("UC{}", id(seed ^ 0x5954 ^ (i as u64) << 8, 22))
}

/// One video's numbers on one day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VideoDay {
    pub views: u64,
    pub minutes: u64,
    /// Average view percentage × 100 (two decimals, served as a float).
    pub avg_pct_x100: u64,
    pub likes: u64,
    pub comments: u64,
    pub shares: u64,
    pub subscribers: u64,
    pub card_clicks: u64,
    pub card_impressions: u64,
}

impl YouTubeWorld {
    pub fn new(world: &World) -> YouTubeWorld {
        let seed = world.config.seed;
        let channels: Vec<String> = (0..world.creators.len())
            .map(|i| format!("UC{}", id(seed ^ 0x5954 ^ (i as u64) << 8, 22)))
            .collect();
        let mut videos = Vec::new();
        for (ci, creator) in world.creators.iter().enumerate() {
            let n = 2 + (mix(seed ^ 0x7669 ^ ci as u64) % (world.config.videos_per_channel.max(2) as u64 - 1)) as usize;
            for k in 0..n {
                let r = mix(seed ^ 0x7670 ^ ((ci as u64) << 16) ^ k as u64);
                let published = world.config.first_day + Days::new(r % (world.config.days as u64 / 2 + 1));
                videos.push(Video {
                    channel: ci,
                    video_id: id(r, 11),
                    title: format!("{} — my honest review #{}", creator.handle, k + 1),
                    published,
                    description: format!(
                        "Everything I used is linked below!\n\nShop my picks: https://shop.example.com/p/yt?utm_source=youtube&utm_medium=organic&utm_campaign=creator_reviews&utm_content={}\n\n#ad",
                        creator.handle
                    ),
                });
            }
        }
        let mut by_channel = vec![0..0; channels.len()];
        for (i, v) in videos.iter().enumerate() {
            let r = &mut by_channel[v.channel];
            if r.start == r.end {
                *r = i..i + 1;
            } else {
                r.end = i + 1;
            }
        }
        let by_id = videos
            .iter()
            .enumerate()
            .map(|(i, v)| (v.video_id.clone(), i))
            .collect();
        YouTubeWorld {
            by_channel,
            by_id,
            seed,
            first_day: world.config.first_day,
            days: world.config.days,
            channels,
            videos,
        }
    }

    /// The last day Analytics serves (the world's last day minus the data lag).
    pub fn last_served_day(&self) -> NaiveDate {
        self.first_day + Days::new((self.days.saturating_sub(1 + DATA_LAG_DAYS)) as u64)
    }

    pub fn channel_index(&self, channel: &str) -> Option<usize> {
        self.channels.iter().position(|c| c == channel)
    }

    pub fn video_day(&self, v: usize, date: NaiveDate) -> Option<VideoDay> {
        let video = &self.videos[v];
        if date < video.published || date > self.last_served_day() || date < self.first_day {
            return None;
        }
        let r = mix(self.seed ^ mix(v as u64) ^ (date - self.first_day).num_days() as u64);
        let age = (date - video.published).num_days() as u64;
        let views = (200 + r % 4_000) / (1 + age / 7);
        Some(VideoDay {
            views,
            minutes: views * (2 + (r >> 12) % 6),
            avg_pct_x100: 2_500 + (r >> 20) % 5_000,
            likes: views * ((r >> 28) % 8) / 100,
            comments: views / 150,
            shares: views / 300,
            subscribers: views / 400,
            card_clicks: views / 90,
            card_impressions: views / 4,
        })
    }

    /// (date, video) rows of a channel over a range, day by day, as served.
    pub fn rows(&self, channel: usize, start: NaiveDate, end: NaiveDate) -> Vec<(NaiveDate, usize, VideoDay)> {
        let mut out = Vec::new();
        for date in start.iter_days().take_while(|d| *d <= end) {
            for v in self.by_channel[channel].clone() {
                if let Some(m) = self.video_day(v, date) {
                    out.push((date, v, m));
                }
            }
        }
        out
    }
}

type ReportRows = Arc<Vec<(NaiveDate, usize, VideoDay)>>;

/// Issued access tokens and their expiry, and the last reports computed.
#[derive(Default)]
pub struct GoogleState {
    tokens: Mutex<HashMap<String, Instant>>,
    /// (channel, start, end) → its rows, so paging a report does not recompute it.
    reports: Mutex<HashMap<(usize, NaiveDate, NaiveDate), ReportRows>>,
    issued: AtomicU64,
    pub refreshes: AtomicU64,
    pub unauthenticated: AtomicU64,
}

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/token", post(token))
        .route("/v2/reports", get(reports))
        .route("/youtube/v3/videos", get(videos))
}

fn google_error(status: StatusCode, reason: &str, message: &str, state_name: &str) -> Response<Body> {
    let body = json!({"error": {"code": status.as_u16(), "message": message, "errors": [{"message": message, "domain": "global", "reason": reason}], "status": state_name}});
    deliver(status, serde_json::to_vec(&body).unwrap_or_default(), None)
}

async fn token(State(state): State<Shared>, Form(form): Form<Params>) -> Response<Body> {
    if let Admission::Serve(Some(FaultKind::Http503)) = state.admit() {
        return deliver(StatusCode::SERVICE_UNAVAILABLE, b"unavailable".to_vec(), None);
    }
    let c = &state.config;
    if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
        return deliver(
            StatusCode::BAD_REQUEST,
            br#"{"error":"unsupported_grant_type"}"#.to_vec(),
            None,
        );
    }
    if form.get("client_id") != Some(&c.google_client_id) || form.get("client_secret") != Some(&c.google_client_secret)
    {
        return deliver(
            StatusCode::UNAUTHORIZED,
            br#"{"error":"invalid_client","error_description":"The OAuth client was not found."}"#.to_vec(),
            None,
        );
    }
    if form.get("refresh_token") != Some(&c.google_refresh_token) {
        return deliver(
            StatusCode::BAD_REQUEST,
            br#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#.to_vec(),
            None,
        );
    }
    let n = state.google.issued.fetch_add(1, Ordering::Relaxed) + 1;
    state.google.refreshes.fetch_add(1, Ordering::Relaxed);
    let access = format!("ya29.sandbox-{n}-{:x}", mix(n));
    let ttl = c.google_token_ttl;
    state
        .google
        .tokens
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(access.clone(), Instant::now() + ttl);
    let body = json!({"access_token": access, "expires_in": ttl.as_secs().max(1), "token_type": "Bearer", "scope": "https://www.googleapis.com/auth/yt-analytics.readonly"});
    deliver(StatusCode::OK, serde_json::to_vec(&body).unwrap_or_default(), None)
}

/// The gate shared by the YouTube APIs: faults, then a valid bearer token.
async fn gate(state: &AppState, headers: &HeaderMap) -> Result<Option<FaultKind>, Response<Body>> {
    let fault = match state.admit() {
        Admission::OverBudget => {
            return Err(google_error(
                StatusCode::TOO_MANY_REQUESTS,
                "rateLimitExceeded",
                "Rate limit exceeded.",
                "RESOURCE_EXHAUSTED",
            ))
        }
        Admission::Serve(f) => f,
    };
    match fault {
        Some(FaultKind::RateLimit) => {
            return Err(google_error(
                StatusCode::FORBIDDEN,
                "quotaExceeded",
                "The request cannot be completed because you have exceeded your quota.",
                "PERMISSION_DENIED",
            ))
        }
        Some(FaultKind::ServerError) | Some(FaultKind::Http500) => {
            return Err(google_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "backendError",
                "Backend Error",
                "INTERNAL",
            ))
        }
        Some(FaultKind::Http503) => {
            return Err(google_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "backendError",
                "The service is currently unavailable.",
                "UNAVAILABLE",
            ))
        }
        Some(FaultKind::Slow) => tokio::time::sleep(state.config.slow).await,
        _ => {}
    }
    check_bearer(state, headers, fault)?;
    Ok(fault)
}

/// A valid, unexpired bearer token, else Google's 401 `UNAUTHENTICATED`.
// The error is the response to send, returned once per request.
#[allow(clippy::result_large_err)]
pub(crate) fn check_bearer(
    state: &AppState,
    headers: &HeaderMap,
    fault: Option<FaultKind>,
) -> Result<(), Response<Body>> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let valid = state
        .google
        .tokens
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(token)
        .is_some_and(|exp| Instant::now() < *exp);
    if !valid || fault == Some(FaultKind::ExpiredToken) {
        state.google.unauthenticated.fetch_add(1, Ordering::Relaxed);
        return Err(google_error(
            StatusCode::UNAUTHORIZED,
            "authError",
            "Request had invalid authentication credentials. Expected OAuth 2 access token.",
            "UNAUTHENTICATED",
        ));
    }
    Ok(())
}

fn bad(message: &str) -> Response<Body> {
    google_error(StatusCode::BAD_REQUEST, "badRequest", message, "INVALID_ARGUMENT")
}

async fn reports(State(state): State<Shared>, headers: HeaderMap, Query(params): Query<Params>) -> Response<Body> {
    let fault = match gate(&state, &headers).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let world = &state.youtube;
    let Some(channel) = params.get("ids").and_then(|i| i.strip_prefix("channel==")) else {
        return bad("Required parameter: ids (channel==UC…)");
    };
    let Some(c) = world.channel_index(channel) else {
        return google_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Forbidden: the channel is not authorized for this token.",
            "PERMISSION_DENIED",
        );
    };
    let date = |k: &str| {
        params
            .get(k)
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
    };
    let (Some(start), Some(end)) = (date("startDate"), date("endDate")) else {
        return bad("Required parameters: startDate and endDate (YYYY-MM-DD)");
    };
    let dims: Vec<&str> = params
        .get("dimensions")
        .map(|d| d.split(',').collect())
        .unwrap_or_default();
    if dims != ["day", "video"] && dims != ["video", "day"] {
        return bad("The sandbox serves dimensions=day,video");
    }
    let metrics: Vec<&str> = params
        .get("metrics")
        .map(|m| m.split(',').collect())
        .unwrap_or_default();
    if metrics.is_empty() {
        return bad("Required parameter: metrics");
    }
    if let Some(unknown) = metrics.iter().find(|m| !METRICS.contains(m)) {
        return bad(&format!(
            "Unknown identifier ({unknown}) given in field parameters.metrics."
        ));
    }
    let max: usize = params
        .get("maxResults")
        .and_then(|m| m.parse().ok())
        .unwrap_or(200)
        .clamp(1, 200);
    let start_index: usize = params
        .get("startIndex")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1);
    let rows = {
        let mut cache = state.google.reports.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 64 {
            cache.clear();
        }
        cache
            .entry((c, start, end))
            .or_insert_with(|| Arc::new(world.rows(c, start, end)))
            .clone()
    };
    let mut headers_json = Vec::new();
    for d in &dims {
        headers_json.push(json!({"name": d, "columnType": "DIMENSION", "dataType": "STRING"}));
    }
    for m in &metrics {
        let t = if *m == "averageViewPercentage" {
            "FLOAT"
        } else {
            "INTEGER"
        };
        headers_json.push(json!({"name": m, "columnType": "METRIC", "dataType": t}));
    }
    let page: Vec<Value> = rows
        .iter()
        .skip(start_index - 1)
        .take(max)
        .map(|(date, v, m)| {
            let mut cells: Vec<Value> = dims
                .iter()
                .map(|d| {
                    if *d == "day" {
                        json!(date.to_string())
                    } else {
                        json!(world.videos[*v].video_id)
                    }
                })
                .collect();
            for metric in &metrics {
                cells.push(match *metric {
                    "views" => json!(m.views),
                    "estimatedMinutesWatched" => json!(m.minutes),
                    "averageViewPercentage" => json!(m.avg_pct_x100 as f64 / 100.0),
                    "likes" => json!(m.likes),
                    "comments" => json!(m.comments),
                    "shares" => json!(m.shares),
                    "subscribersGained" => json!(m.subscribers),
                    "cardClicks" => json!(m.card_clicks),
                    _ => json!(m.card_impressions),
                });
            }
            Value::Array(cells)
        })
        .collect();
    let mut body = json!({"kind": "youtubeAnalytics#resultTable", "columnHeaders": headers_json});
    // `rows` is absent, not empty, when there is no data.
    if !page.is_empty() {
        body["rows"] = Value::Array(page);
    }
    deliver(StatusCode::OK, serde_json::to_vec(&body).unwrap_or_default(), fault)
}

async fn videos(State(state): State<Shared>, headers: HeaderMap, Query(params): Query<Params>) -> Response<Body> {
    let fault = match gate(&state, &headers).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let world = &state.youtube;
    let ids: Vec<&str> = params.get("id").map(|i| i.split(',').collect()).unwrap_or_default();
    if ids.len() > 50 {
        return bad("Too many ids: at most 50 per request.");
    }
    let items: Vec<Value> = ids
        .iter()
        .filter_map(|id| world.by_id.get(*id).map(|i| &world.videos[*i]))
        .map(|v| {
            json!({
                "kind": "youtube#video", "id": v.video_id,
                "snippet": {"publishedAt": format!("{}T15:00:00Z", v.published), "channelId": world.channels[v.channel], "title": v.title, "description": v.description},
                "statistics": {"viewCount": "0", "likeCount": "0", "commentCount": "0"}
            })
        })
        .collect();
    let body = json!({"kind": "youtube#videoListResponse", "items": items, "pageInfo": {"totalResults": items.len(), "resultsPerPage": items.len()}});
    deliver(StatusCode::OK, serde_json::to_vec(&body).unwrap_or_default(), fault)
}
