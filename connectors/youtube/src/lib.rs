//! crest's YouTube source for creators' own videos: YouTube Analytics
//! `reports.query` (`GET /v2/reports`, daily per video), which serves fresh
//! numbers from the first run, unlike the bulk Reporting API with its 48-hour
//! lag and empty first sync. Analytics answers `dimensions=day,video` only for
//! videos the request names (`filters=video==ID1,ID2,…`, at most 500), so the
//! channel's videos come first from YouTube Data: `channels.list` gives its
//! uploads playlist, `playlistItems.list` (paged) each video's id, title,
//! publish time and the UTM-tagged link in its description. Cells are mapped
//! by `columnHeaders`, never by position; a missing `rows` is no data. Days
//! not served yet (Analytics lags a couple of days) are read again by the next
//! scheduled run through the lookback.

pub mod ads;
pub mod command;

use arrow::array::{ArrayRef, Date32Builder, Float64Builder, Int64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Date32Type, Field, Schema, SchemaRef, TimeUnit};
use crest_core::cli::Progress;
use crest_core::extract::{ReportSource, SliceError};
use crest_core::http::{malformed, ApiClient, ApiError, CallStats, PlatformPolicy, Verdict};
use crest_core::oauth::TokenSource;
use crest_core::raw::SliceWriter;
use crest_core::reqwest::{self, StatusCode};
use crest_core::window::DateRange;
use crest_core::{Error, Result};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const DEFAULT_OAUTH_URL: &str = "https://oauth2.googleapis.com/token";
pub const DEFAULT_ANALYTICS_BASE_URL: &str = "https://youtubeanalytics.googleapis.com";
pub const DEFAULT_DATA_BASE_URL: &str = "https://www.googleapis.com";
pub const SCHEMA_TAG: &str = "youtube.analytics.v1";
/// The time zone YouTube Analytics reports days in (its docs: "all dates are in Pacific time").
pub const ANALYTICS_TIME_ZONE: &str = "America/Los_Angeles";
/// Days Analytics takes to serve a finished day.
pub const ANALYTICS_LAG_DAYS: u32 = 2;
/// reports.query serves at most 200 rows a page for day × video.
pub const MAX_PAGE: usize = 200;
/// Video IDs one `video==` filter may list (Analytics' dimensions page,
/// "Filters": up to 500 IDs for a video, playlist or channel filter).
pub const MAX_FILTER_VIDEOS: usize = 500;
/// playlistItems.list serves at most 50 items a page.
const PLAYLIST_PAGE: usize = 50;

/// (metric as the API names it, raw column, integer or float)
pub const METRICS: &[(&str, &str, bool)] = &[
    ("views", "views", true),
    ("estimatedMinutesWatched", "estimated_minutes_watched", true),
    ("averageViewPercentage", "average_view_percentage", false),
    ("likes", "likes", true),
    ("comments", "comments", true),
    ("shares", "shares", true),
    ("subscribersGained", "subscribers_gained", true),
    ("cardClicks", "card_clicks", true),
    ("cardImpressions", "card_impressions", true),
];

/// Google's error shape: `{"error": {code, message, errors: [{reason}], status}}`.
#[derive(Deserialize)]
pub(crate) struct GoogleErrorBody {
    error: GoogleError,
}

#[derive(Deserialize)]
struct GoogleError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    errors: Vec<GoogleErrorItem>,
    #[serde(default)]
    status: String,
}

#[derive(Deserialize)]
struct GoogleErrorItem {
    #[serde(default)]
    reason: String,
}

pub(crate) struct GooglePolicy;

impl PlatformPolicy for GooglePolicy {
    fn classify_status(&self, status: StatusCode, body: &[u8]) -> Option<Verdict> {
        let e: GoogleErrorBody = serde_json::from_slice(body).ok()?;
        let reason = e.error.errors.first().map(|r| r.reason.as_str()).unwrap_or("");
        let detail = format!(
            "HTTP {} {} ({reason}): {}",
            status.as_u16(),
            e.error.status,
            e.error.message
        );
        Some(match (status.as_u16(), reason) {
            (401, _) => Verdict::Unauthenticated(detail),
            (403, "quotaExceeded" | "dailyLimitExceeded") => Verdict::Fatal(format!(
                "{detail}; the project's YouTube Analytics quota is spent for today: run again after it resets"
            )),
            (403, "rateLimitExceeded" | "userRateLimitExceeded") | (429, _) => Verdict::Retry {
                reason: detail,
                after: None,
                rate_limited: true,
            },
            (403, _) => Verdict::Auth(format!(
                "{detail}; check that the creator authorized this channel for crest"
            )),
            (s, _) if s >= 500 => Verdict::Retry {
                reason: detail,
                after: None,
                rate_limited: false,
            },
            _ => Verdict::BadRequest(detail),
        })
    }
}

pub struct YouTubeConfig {
    pub analytics_base: url::Url,
    pub data_base: url::Url,
    /// The metrics asked for, by their API names (any order).
    pub metrics: Vec<String>,
    pub page_size: usize,
}

pub struct YouTubeSource {
    config: YouTubeConfig,
    client: ApiClient,
    /// Shared by every Google source of a run: one refresh serves them all.
    tokens: Arc<TokenSource>,
    schema: SchemaRef,
    /// Per channel: its uploads, listed once per run by `prepare_account`.
    uploads: Mutex<HashMap<String, Arc<Uploads>>>,
}

#[derive(Debug, Clone, Default)]
pub struct VideoMeta {
    pub title: Option<String>,
    pub published_at: Option<String>,
    pub link: Option<String>,
}

/// A channel's videos: ids in the uploads playlist's order, and what each carries.
#[derive(Debug, Default)]
struct Uploads {
    ids: Vec<String>,
    meta: HashMap<String, VideoMeta>,
}

impl Uploads {
    /// The videos that can have rows on or before `end`: published by then (a
    /// day of slack, since publish times are UTC and Analytics days Pacific),
    /// or of unknown publish time.
    fn published_by(&self, end: chrono::NaiveDate) -> Vec<String> {
        let last = end + chrono::Days::new(1);
        self.ids
            .iter()
            .filter(|id| {
                self.meta
                    .get(*id)
                    .and_then(|m| m.published_at.as_deref())
                    .and_then(|p| p.get(..10))
                    .and_then(crest_core::window::ymd)
                    .is_none_or(|day| day <= last)
            })
            .cloned()
            .collect()
    }
}

#[derive(Deserialize)]
struct ResultTable {
    #[serde(rename = "columnHeaders", default)]
    column_headers: Vec<ColumnHeader>,
    /// Absent when there is no data: zero rows, not an error.
    #[serde(default)]
    rows: Vec<Vec<Value>>,
}

#[derive(Deserialize)]
struct ColumnHeader {
    name: String,
}

#[derive(Deserialize)]
struct ChannelList {
    #[serde(default)]
    items: Vec<ChannelItem>,
}

#[derive(Deserialize)]
struct ChannelItem {
    #[serde(rename = "contentDetails")]
    content_details: ChannelContent,
}

#[derive(Deserialize)]
struct ChannelContent {
    #[serde(rename = "relatedPlaylists")]
    related_playlists: RelatedPlaylists,
}

#[derive(Deserialize)]
struct RelatedPlaylists {
    uploads: String,
}

#[derive(Deserialize)]
struct PlaylistItems {
    #[serde(default)]
    items: Vec<PlaylistItem>,
    #[serde(rename = "nextPageToken", default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct PlaylistItem {
    #[serde(default)]
    snippet: Option<Snippet>,
    #[serde(rename = "contentDetails")]
    content_details: PlaylistItemContent,
}

#[derive(Deserialize)]
struct PlaylistItemContent {
    #[serde(rename = "videoId")]
    video_id: String,
    /// Absent for a video that is not public yet.
    #[serde(rename = "videoPublishedAt", default)]
    video_published_at: Option<String>,
}

#[derive(Deserialize)]
struct Snippet {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

/// The first link in a description that carries UTM parameters (else the first link).
pub fn description_link(description: &str) -> Option<String> {
    let links: Vec<&str> = description
        .split(|c: char| c.is_whitespace())
        .filter(|w| w.starts_with("http://") || w.starts_with("https://"))
        .collect();
    links
        .iter()
        .find(|l| l.contains("utm_"))
        .or(links.first())
        .map(|l| l.trim_end_matches([',', '.', ')']).to_string())
}

pub fn raw_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("channel_id", DataType::Utf8, false),
        Field::new("day", DataType::Date32, false),
        Field::new("video_id", DataType::Utf8, false),
        Field::new("video_title", DataType::Utf8, true),
        Field::new("published_at", DataType::Utf8, true),
        Field::new("description_link", DataType::Utf8, true),
    ];
    for (_, column, integer) in METRICS {
        fields.push(Field::new(
            *column,
            if *integer { DataType::Int64 } else { DataType::Float64 },
            true,
        ));
    }
    fields.push(Field::new(
        "extracted_at",
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        false,
    ));
    fields.push(Field::new("run_id", DataType::Utf8, false));
    Arc::new(Schema::new(fields).with_metadata(HashMap::from([("crest.schema".to_string(), SCHEMA_TAG.to_string())])))
}

impl YouTubeSource {
    pub fn new(config: YouTubeConfig, client: ApiClient, tokens: Arc<TokenSource>) -> Result<Self> {
        for m in &config.metrics {
            if !METRICS.iter().any(|(name, _, _)| name == m) {
                let known: Vec<&str> = METRICS.iter().map(|(n, _, _)| *n).collect();
                return Err(Error::Config(format!(
                    "--metrics: '{m}' is not one crest reads; use {}",
                    known.join(", ")
                )));
            }
        }
        if config.metrics.is_empty() || config.page_size == 0 || config.page_size > MAX_PAGE {
            return Err(Error::Config(format!(
                "give at least one metric and a --page-size from 1 to {MAX_PAGE}"
            )));
        }
        Ok(YouTubeSource {
            config,
            client: client.with_platform(GooglePolicy),
            tokens,
            schema: raw_schema(),
            uploads: Mutex::new(HashMap::new()),
        })
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        base: &url::Url,
        path: &str,
        params: &[(&str, String)],
        label: &str,
    ) -> std::result::Result<T, ApiError> {
        let url = format!("{}{path}", base.as_str().trim_end_matches('/'));
        self.tokens
            .with_token(|token| {
                let url = url.clone();
                async move {
                    let auth = format!("Bearer {}", token.expose());
                    self.client
                        .send(
                            label,
                            |c: &reqwest::Client| c.get(&url).header("Authorization", &auth).query(params),
                            |body: &[u8]| serde_json::from_slice::<T>(body).map_err(|e| malformed(body, e)),
                        )
                        .await
                }
            })
            .await
    }

    /// One page of the day × video report for some of a channel's videos.
    async fn report_page(
        &self,
        channel: &str,
        videos: &[String],
        range: DateRange,
        start_index: usize,
    ) -> std::result::Result<ResultTable, ApiError> {
        let params = [
            ("ids", format!("channel=={channel}")),
            ("startDate", range.start.to_string()),
            ("endDate", range.end.to_string()),
            ("metrics", self.config.metrics.join(",")),
            ("dimensions", "day,video".to_string()),
            ("filters", format!("video=={}", videos.join(","))),
            ("sort", "day".to_string()),
            ("maxResults", self.config.page_size.to_string()),
            ("startIndex", start_index.to_string()),
        ];
        let label = format!(
            "GET /v2/reports channel=={channel} {range} ({} videos) startIndex={start_index}",
            videos.len()
        );
        self.get(&self.config.analytics_base, "/v2/reports", &params, &label)
            .await
    }

    /// The channel's uploads: `channels.list` for its uploads playlist, then
    /// every page of `playlistItems.list`.
    async fn list_uploads(&self, channel: &str) -> std::result::Result<Uploads, ApiError> {
        let params = [("part", "contentDetails".to_string()), ("id", channel.to_string())];
        let label = format!("GET /youtube/v3/channels id={channel}");
        let list: ChannelList = self
            .get(&self.config.data_base, "/youtube/v3/channels", &params, &label)
            .await?;
        let Some(item) = list.items.into_iter().next() else {
            return Err(ApiError::BadRequest(format!(
                "YouTube has no channel {channel}: check --channel-id (a channel id starts with UC)"
            )));
        };
        let playlist = item.content_details.related_playlists.uploads;
        let mut uploads = Uploads::default();
        let mut page_token: Option<String> = None;
        loop {
            let mut params = vec![
                ("part", "snippet,contentDetails".to_string()),
                ("playlistId", playlist.clone()),
                ("maxResults", PLAYLIST_PAGE.to_string()),
            ];
            if let Some(t) = &page_token {
                params.push(("pageToken", t.clone()));
            }
            let label = format!("GET /youtube/v3/playlistItems playlistId={playlist}");
            let page: PlaylistItems = self
                .get(&self.config.data_base, "/youtube/v3/playlistItems", &params, &label)
                .await?;
            for item in page.items {
                let id = item.content_details.video_id;
                // A video listed twice (it moved while paging) is read once.
                if uploads.meta.contains_key(&id) {
                    continue;
                }
                let s = item.snippet;
                uploads.meta.insert(
                    id.clone(),
                    VideoMeta {
                        title: s.as_ref().and_then(|s| s.title.clone()),
                        published_at: item.content_details.video_published_at,
                        link: s
                            .as_ref()
                            .and_then(|s| s.description.as_deref())
                            .and_then(description_link),
                    },
                );
                uploads.ids.push(id);
            }
            match page.next_page_token {
                Some(t) if !t.is_empty() && Some(&t) != page_token.as_ref() => page_token = Some(t),
                _ => return Ok(uploads),
            }
        }
    }

    async fn uploads(&self, channel: &str) -> std::result::Result<Arc<Uploads>, ApiError> {
        let known = self
            .uploads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(channel)
            .cloned();
        if let Some(u) = known {
            return Ok(u);
        }
        let u = Arc::new(self.list_uploads(channel).await?);
        self.uploads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(channel.to_string(), u.clone());
        Ok(u)
    }

    fn to_batch(
        &self,
        channel: &str,
        table: &ResultTable,
        meta: &HashMap<String, VideoMeta>,
        run_id: &str,
        extracted_at_us: i64,
    ) -> std::result::Result<RecordBatch, String> {
        let col = |name: &str| table.column_headers.iter().position(|h| h.name == name);
        let (Some(day_i), Some(video_i)) = (col("day"), col("video")) else {
            return Err("the report lacks its day or video column".into());
        };
        let n = table.rows.len();
        let mut channel_b = StringBuilder::with_capacity(n, n * channel.len());
        let mut days = Date32Builder::with_capacity(n);
        let mut video_b = StringBuilder::new();
        let (mut title, mut published, mut link) = (StringBuilder::new(), StringBuilder::new(), StringBuilder::new());
        let mut ints: Vec<(Option<usize>, Int64Builder)> = Vec::new();
        let mut floats: Vec<(Option<usize>, Float64Builder)> = Vec::new();
        for (name, _, integer) in METRICS {
            if *integer {
                ints.push((col(name), Int64Builder::with_capacity(n)));
            } else {
                floats.push((col(name), Float64Builder::with_capacity(n)));
            }
        }
        for (r, row) in table.rows.iter().enumerate() {
            let cell = |i: usize| {
                row.get(i)
                    .ok_or_else(|| format!("row {r} has fewer cells than columnHeaders"))
            };
            let day = cell(day_i)?
                .as_str()
                .and_then(crest_core::window::ymd)
                .ok_or_else(|| format!("row {r}: day is not a date"))?;
            let video = cell(video_i)?
                .as_str()
                .ok_or_else(|| format!("row {r}: video is not a string"))?;
            channel_b.append_value(channel);
            days.append_value(Date32Type::from_naive_date(day));
            video_b.append_value(video);
            let m = meta.get(video);
            title.append_option(m.and_then(|m| m.title.as_deref()));
            published.append_option(m.and_then(|m| m.published_at.as_deref()));
            link.append_option(m.and_then(|m| m.link.as_deref()));
            for (i, b) in ints.iter_mut() {
                match i {
                    None => b.append_null(),
                    Some(i) => {
                        let v = cell(*i)?;
                        b.append_option(if v.is_null() {
                            None
                        } else {
                            Some(v.as_i64().ok_or_else(|| format!("row {r}: {v} is not an integer"))?)
                        });
                    }
                }
            }
            for (i, b) in floats.iter_mut() {
                match i {
                    None => b.append_null(),
                    Some(i) => {
                        let v = cell(*i)?;
                        b.append_option(if v.is_null() {
                            None
                        } else {
                            Some(v.as_f64().ok_or_else(|| format!("row {r}: {v} is not a number"))?)
                        });
                    }
                }
            }
        }
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(channel_b.finish()),
            Arc::new(days.finish()),
            Arc::new(video_b.finish()),
            Arc::new(title.finish()),
            Arc::new(published.finish()),
            Arc::new(link.finish()),
        ];
        // Metric columns in the schema's order, whatever order the API served them in.
        let (mut ints, mut floats) = (ints.into_iter(), floats.into_iter());
        for (_, _, integer) in METRICS {
            if *integer {
                columns.push(Arc::new(ints.next().ok_or("metric columns")?.1.finish()));
            } else {
                columns.push(Arc::new(floats.next().ok_or("metric columns")?.1.finish()));
            }
        }
        columns.extend(crest_core::raw::run_columns(n, run_id, extracted_at_us));
        RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| e.to_string())
    }

    /// Checks the credentials, that the channel's videos can be listed and
    /// that their report can be read; the number of videos.
    pub async fn check_channel(&self, channel: &str, day: chrono::NaiveDate) -> Result<usize> {
        let uploads = self.uploads(channel).await?;
        if let Some(batch) = uploads.ids.chunks(MAX_FILTER_VIDEOS).next() {
            self.report_page(channel, batch, DateRange::single(day), 1).await?;
        }
        Ok(uploads.ids.len())
    }
}

impl ReportSource for YouTubeSource {
    fn platform(&self) -> &'static str {
        "youtube"
    }
    fn report(&self) -> String {
        "video_daily".into()
    }
    fn max_slice_days(&self) -> u64 {
        30
    }
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn date_column(&self) -> &'static str {
        "day"
    }
    fn call_stats(&self) -> Arc<CallStats> {
        self.client.stats()
    }

    async fn prepare_account(&self, channel: &str) -> Result<serde_json::Value> {
        // A token now: a refused refresh token fails before anything is written.
        self.tokens.access_token().await?;
        // The video list every slice filters on, listed once per run: a video
        // uploaded later is read by the next run, from its publish day on.
        let uploads = self.uploads(channel).await?;
        // Analytics reports days in Pacific time and serves a day about two days
        // after it ends: later days are provisional and read again.
        Ok(serde_json::json!({
            "channel_id": channel,
            "videos": uploads.ids.len(),
            "timezone": ANALYTICS_TIME_ZONE,
            "data_lag_days": ANALYTICS_LAG_DAYS,
        }))
    }

    async fn fetch_slice(
        &self,
        channel: &str,
        range: DateRange,
        run_id: &str,
        extracted_at_us: i64,
        sink: &mut SliceWriter<'_>,
        progress: &Progress,
    ) -> std::result::Result<u64, SliceError> {
        let uploads = self.uploads(channel).await?;
        let videos = uploads.published_by(range.end);
        let mut rows = 0u64;
        for batch in videos.chunks(MAX_FILTER_VIDEOS) {
            let mut start_index = 1;
            let mut table = self.report_page(channel, batch, range, start_index).await?;
            // No total is served: read until a page comes back empty.
            while !table.rows.is_empty() {
                start_index += table.rows.len();
                // The next page is asked for while this one is written.
                let (next, written) = tokio::join!(
                    self.report_page(channel, batch, range, start_index),
                    self.write_page(
                        channel,
                        range,
                        &table,
                        &uploads.meta,
                        run_id,
                        extracted_at_us,
                        sink,
                        progress
                    )
                );
                rows += written?;
                table = next?;
            }
        }
        Ok(rows)
    }
}

impl YouTubeSource {
    /// One page's rows, with their videos' metadata, into the sink.
    #[allow(clippy::too_many_arguments)]
    async fn write_page(
        &self,
        channel: &str,
        range: DateRange,
        table: &ResultTable,
        meta: &HashMap<String, VideoMeta>,
        run_id: &str,
        extracted_at_us: i64,
        sink: &mut SliceWriter<'_>,
        progress: &Progress,
    ) -> std::result::Result<u64, SliceError> {
        let batch = self
            .to_batch(channel, table, meta, run_id, extracted_at_us)
            .map_err(|e| Error::Upstream(format!("GET /v2/reports channel=={channel} {range}: {e}")))?;
        sink.write(&batch).await?;
        progress.add_rows(batch.num_rows() as u64);
        Ok(batch.num_rows() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_utm_link_is_found_in_a_description() {
        let d = "New video! My gear: https://example.com/gear and the shop:\nhttps://shop.example.com/p?utm_source=youtube&utm_content=maya.\n#ad";
        assert_eq!(
            description_link(d).as_deref(),
            Some("https://shop.example.com/p?utm_source=youtube&utm_content=maya")
        );
        assert_eq!(
            description_link("only https://a.example/x").as_deref(),
            Some("https://a.example/x")
        );
        assert_eq!(description_link("no links"), None);
    }
}
