//! Google's APIs for YouTube creators, as documented: OAuth (`POST /token`
//! with a refresh token), YouTube Analytics `GET /v2/reports` (typed cells,
//! `columnHeaders` in the order asked, `rows` absent when empty, the most
//! recent days missing, `startIndex` paging, and `dimensions=day,video` only
//! for the videos named in `filters=video==…`, at most 500), and YouTube Data
//! `channels.list` (the uploads playlist) and `playlistItems.list` (paged by
//! `pageToken`, newest first; title, publish time, a description carrying
//! the creator's UTM-tagged link). Besides one channel
//! per creator there is a brand channel hosting several creators' videos.
//! Access tokens expire; the APIs then answer 401.

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
/// Values a `video==` filter may list (Analytics' dimensions page, "Filters":
/// a filter on video, playlist or channel takes a comma-separated list of up
/// to 500 IDs).
pub const MAX_FILTER_VIDEOS: usize = 500;
/// The creators whose videos the brand channel hosts (by roster position),
/// and one more video of its own without a creator's link.
pub const BRAND_CHANNEL_CREATORS: &[usize] = &[0, 1, 2];
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
    /// The brand's own channel: videos by the creators of
    /// [`BRAND_CHANNEL_CREATORS`], each linked with its creator's UTM, and one
    /// studio video with a plain link. Not in the roster.
    pub brand_channel: String,
    pub videos: Vec<Video>,
    /// The videos of each channel: a range of `videos` (they are made channel by channel).
    by_channel: Vec<std::ops::Range<usize>>,
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
                    description: creator_description(&creator.handle),
                });
            }
        }
        let brand = channels.len();
        let brand_channel = format!("UC{}", id(seed ^ 0x62_7261_6e64, 22));
        let brand_first = world.config.first_day + Days::new(world.config.days as u64 / 4);
        for (k, &ci) in BRAND_CHANNEL_CREATORS.iter().enumerate() {
            let Some(creator) = world.creators.get(ci) else {
                continue;
            };
            videos.push(Video {
                channel: brand,
                video_id: id(seed ^ 0x6272 ^ ((k as u64) << 20), 11),
                title: format!("Brand studio session with {}", creator.handle),
                published: brand_first,
                description: creator_description(&creator.handle),
            });
        }
        videos.push(Video {
            channel: brand,
            video_id: id(seed ^ 0x6273, 11),
            title: "Inside our studio".into(),
            published: brand_first,
            description: "How we make it. Shop: https://shop.example.com/".into(),
        });
        let mut by_channel = vec![0..0; channels.len() + 1];
        for (i, v) in videos.iter().enumerate() {
            let r = &mut by_channel[v.channel];
            if r.start == r.end {
                *r = i..i + 1;
            } else {
                r.end = i + 1;
            }
        }
        YouTubeWorld {
            brand_channel,
            by_channel,
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

    /// A creator's channel is its creator's index; the brand channel comes after them.
    pub fn channel_index(&self, channel: &str) -> Option<usize> {
        if channel == self.brand_channel {
            return Some(self.channels.len());
        }
        self.channels.iter().position(|c| c == channel)
    }

    pub fn channel_name(&self, c: usize) -> &str {
        self.channels.get(c).unwrap_or(&self.brand_channel)
    }

    /// A channel's videos, newest first (the order of its uploads playlist).
    pub fn uploads(&self, c: usize) -> Vec<&Video> {
        let mut v: Vec<&Video> = self.videos[self.by_channel[c].clone()].iter().collect();
        v.sort_by(|a, b| b.published.cmp(&a.published).then(a.video_id.cmp(&b.video_id)));
        v
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
        self.rows_of(channel, start, end, None)
    }

    /// The rows of the channel's videos named in `only` (all when `None`).
    pub fn rows_of(
        &self,
        channel: usize,
        start: NaiveDate,
        end: NaiveDate,
        only: Option<&[String]>,
    ) -> Vec<(NaiveDate, usize, VideoDay)> {
        let mut out = Vec::new();
        let videos: Vec<usize> = self.by_channel[channel]
            .clone()
            .filter(|v| only.is_none_or(|ids| ids.contains(&self.videos[*v].video_id)))
            .collect();
        for date in start.iter_days().take_while(|d| *d <= end) {
            for &v in &videos {
                if let Some(m) = self.video_day(v, date) {
                    out.push((date, v, m));
                }
            }
        }
        out
    }
}

/// The description a creator's video carries: its creator's UTM-tagged link.
fn creator_description(handle: &str) -> String {
    format!(
        "Everything I used is linked below!\n\nShop my picks: https://shop.example.com/p/yt?utm_source=youtube&utm_medium=organic&utm_campaign=creator_reviews&utm_content={handle}\n\n#ad"
    )
}

type ReportRows = Arc<Vec<(NaiveDate, usize, VideoDay)>>;

/// Issued access tokens and their expiry, and the last reports computed.
#[derive(Default)]
pub struct GoogleState {
    tokens: Mutex<HashMap<String, Instant>>,
    /// (channel, start, end, video filter) → its rows, so paging a report does not recompute it.
    reports: Mutex<HashMap<(usize, NaiveDate, NaiveDate, String), ReportRows>>,
    issued: AtomicU64,
    pub refreshes: AtomicU64,
    pub unauthenticated: AtomicU64,
}

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/token", post(token))
        .route("/v2/reports", get(reports))
        .route("/youtube/v3/channels", get(channels))
        .route("/youtube/v3/playlistItems", get(playlist_items))
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
        // The per-user rate limit: retried. A spent daily quota (`quota`) is final.
        Some(FaultKind::RateLimit) => {
            return Err(google_error(
                StatusCode::FORBIDDEN,
                "userRateLimitExceeded",
                "The request cannot be completed because you have exceeded your rate limit.",
                "PERMISSION_DENIED",
            ))
        }
        Some(FaultKind::Quota) => {
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
    // Channel reports list `video` as a dimension of the "top videos" report
    // (sorted by a metric, at most 200 rows) and otherwise only where the
    // request filters on the videos: a day × video report over a whole channel
    // is refused (channel_reports page, "Video reports"; dims page, "Filters").
    let Some(videos) = params
        .get("filters")
        .and_then(|f| f.split(';').find_map(|f| f.strip_prefix("video==")))
        .map(|v| v.split(',').map(str::to_string).collect::<Vec<_>>())
    else {
        return bad("The query is not supported. Check the documentation at https://developers.google.com/youtube/analytics/v2/available_reports for a list of supported queries.");
    };
    if videos.len() > MAX_FILTER_VIDEOS || videos.iter().any(|v| v.is_empty()) {
        return bad(&format!(
            "Invalid value in filters parameter: a video filter lists 1 to {MAX_FILTER_VIDEOS} video IDs."
        ));
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
            .entry((c, start, end, videos.join(",")))
            .or_insert_with(|| Arc::new(world.rows_of(c, start, end, Some(&videos))))
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

/// `channels.list?part=contentDetails&id=UC…`: the channel's uploads playlist.
async fn channels(State(state): State<Shared>, headers: HeaderMap, Query(params): Query<Params>) -> Response<Body> {
    let fault = match gate(&state, &headers).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    if !params
        .get("part")
        .is_some_and(|p| p.split(',').any(|p| p == "contentDetails"))
    {
        return bad("Required parameter: part (contentDetails)");
    }
    let world = &state.youtube;
    let ids: Vec<&str> = params.get("id").map(|i| i.split(',').collect()).unwrap_or_default();
    if ids.is_empty() || ids.len() > 50 {
        return bad("The id parameter lists 1 to 50 channel IDs.");
    }
    // An unknown channel is left out of `items`, as the Data API does.
    let items: Vec<Value> = ids
        .iter()
        .filter(|id| world.channel_index(id).is_some())
        .map(|id| {
            json!({"kind": "youtube#channel", "id": id,
                   "contentDetails": {"relatedPlaylists": {"likes": "", "uploads": uploads_playlist(id)}}})
        })
        .collect();
    let body = json!({"kind": "youtube#channelListResponse", "pageInfo": {"totalResults": items.len(), "resultsPerPage": 5}, "items": items});
    deliver(StatusCode::OK, serde_json::to_vec(&body).unwrap_or_default(), fault)
}

/// A channel's uploads playlist: `UU` and the rest of its `UC…` id.
fn uploads_playlist(channel: &str) -> String {
    format!("UU{}", channel.strip_prefix("UC").unwrap_or(channel))
}

/// `playlistItems.list` of an uploads playlist: newest first, `maxResults`
/// 0–50 (default 5), `nextPageToken` while more remain.
async fn playlist_items(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response<Body> {
    let fault = match gate(&state, &headers).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let world = &state.youtube;
    let Some(playlist) = params.get("playlistId") else {
        return bad("Required parameter: playlistId");
    };
    let Some(c) = playlist
        .strip_prefix("UU")
        .and_then(|rest| world.channel_index(&format!("UC{rest}")))
    else {
        return google_error(
            StatusCode::NOT_FOUND,
            "playlistNotFound",
            "The playlist identified with the request's playlistId parameter cannot be found.",
            "NOT_FOUND",
        );
    };
    let max: usize = match params.get("maxResults").map(|m| m.parse::<usize>()) {
        None => 5,
        Some(Ok(m)) if m <= 50 => m,
        Some(_) => return bad("Invalid value for maxResults: 0 to 50."),
    };
    // Page tokens are opaque to clients: here the offset, disguised.
    let offset = match params.get("pageToken") {
        None => 0,
        Some(t) => match t.strip_prefix("EAAa").and_then(|o| o.parse::<usize>().ok()) {
            Some(o) => o,
            None => return bad("The request specifies an invalid page token."),
        },
    };
    let uploads = world.uploads(c);
    let items: Vec<Value> = uploads
        .iter()
        .skip(offset)
        .take(max)
        .enumerate()
        .map(|(i, v)| {
            let published = format!("{}T15:00:00Z", v.published);
            json!({
                "kind": "youtube#playlistItem", "id": format!("{playlist}.{}", offset + i),
                "snippet": {"publishedAt": published, "channelId": world.channel_name(c), "title": v.title,
                            "description": v.description, "playlistId": playlist, "position": offset + i,
                            "resourceId": {"kind": "youtube#video", "videoId": v.video_id}},
                "contentDetails": {"videoId": v.video_id, "videoPublishedAt": published}
            })
        })
        .collect();
    let mut body = json!({"kind": "youtube#playlistItemListResponse", "items": items,
                          "pageInfo": {"totalResults": uploads.len(), "resultsPerPage": max}});
    if offset + max < uploads.len() && max > 0 {
        body["nextPageToken"] = json!(format!("EAAa{}", offset + max));
    }
    deliver(StatusCode::OK, serde_json::to_vec(&body).unwrap_or_default(), fault)
}
