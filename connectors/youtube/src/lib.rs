//! crest's YouTube source for creators' own videos: YouTube Analytics
//! `reports.query` (`GET /v2/reports`, daily per video), which serves fresh
//! numbers from the first run, unlike the bulk Reporting API with its 48-hour
//! lag and empty first sync; and YouTube Data `videos.list` for each video's
//! title, publish time and the UTM-tagged link in its description. Cells are
//! mapped by `columnHeaders`, never by position; a missing `rows` is no data.
//! Days not served yet (Analytics lags a couple of days) are read again by the
//! next scheduled run through the lookback.

pub mod ads;

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
    /// Per channel: video id → (title, published at, link from the description).
    videos: Mutex<HashMap<String, Arc<HashMap<String, VideoMeta>>>>,
}

#[derive(Debug, Clone, Default)]
pub struct VideoMeta {
    pub title: Option<String>,
    pub published_at: Option<String>,
    pub link: Option<String>,
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
struct VideoList {
    #[serde(default)]
    items: Vec<VideoItem>,
}

#[derive(Deserialize)]
struct VideoItem {
    id: String,
    #[serde(default)]
    snippet: Option<Snippet>,
}

#[derive(Deserialize)]
struct Snippet {
    #[serde(default)]
    title: Option<String>,
    #[serde(rename = "publishedAt", default)]
    published_at: Option<String>,
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
            videos: Mutex::new(HashMap::new()),
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

    /// One page of the day × video report for a channel.
    async fn report_page(
        &self,
        channel: &str,
        range: DateRange,
        start_index: usize,
    ) -> std::result::Result<ResultTable, ApiError> {
        let params = [
            ("ids", format!("channel=={channel}")),
            ("startDate", range.start.to_string()),
            ("endDate", range.end.to_string()),
            ("metrics", self.config.metrics.join(",")),
            ("dimensions", "day,video".to_string()),
            ("sort", "day".to_string()),
            ("maxResults", self.config.page_size.to_string()),
            ("startIndex", start_index.to_string()),
        ];
        let label = format!("GET /v2/reports channel=={channel} {range} startIndex={start_index}");
        self.get(&self.config.analytics_base, "/v2/reports", &params, &label)
            .await
    }

    /// Titles, publish times and description links for videos not seen yet.
    async fn video_meta(
        &self,
        channel: &str,
        ids: &[String],
    ) -> std::result::Result<Arc<HashMap<String, VideoMeta>>, ApiError> {
        let known = self
            .videos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(channel)
            .cloned()
            .unwrap_or_default();
        let missing: Vec<&String> = ids.iter().filter(|id| !known.contains_key(*id)).collect();
        if missing.is_empty() {
            return Ok(known);
        }
        let mut all = (*known).clone();
        for chunk in missing.chunks(50) {
            let ids: Vec<&str> = chunk.iter().map(|s| s.as_str()).collect();
            let params = [("id", ids.join(",")), ("part", "snippet".to_string())];
            let list: VideoList = self
                .get(
                    &self.config.data_base,
                    "/youtube/v3/videos",
                    &params,
                    "GET /youtube/v3/videos",
                )
                .await?;
            for item in list.items {
                let s = item.snippet;
                all.insert(
                    item.id,
                    VideoMeta {
                        title: s.as_ref().and_then(|s| s.title.clone()),
                        published_at: s.as_ref().and_then(|s| s.published_at.clone()),
                        link: s
                            .as_ref()
                            .and_then(|s| s.description.as_deref())
                            .and_then(description_link),
                    },
                );
            }
            // A video the Data API no longer lists (deleted, private) keeps its rows, without metadata.
            for id in chunk {
                all.entry((*id).clone()).or_default();
            }
        }
        let all = Arc::new(all);
        self.videos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(channel.to_string(), all.clone());
        Ok(all)
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

    /// Checks the credentials and that the channel's report can be read.
    pub async fn check_channel(&self, channel: &str, day: chrono::NaiveDate) -> Result<usize> {
        let t = self.report_page(channel, DateRange::single(day), 1).await?;
        Ok(t.rows.len())
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
        // Analytics reports days in Pacific time and serves a day about two days
        // after it ends: later days are provisional and read again.
        Ok(serde_json::json!({
            "channel_id": channel,
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
        let mut rows = 0u64;
        let mut start_index = 1;
        let mut table = self.report_page(channel, range, start_index).await?;
        loop {
            // No total is served: read until a page comes back empty.
            if table.rows.is_empty() {
                return Ok(rows);
            }
            start_index += table.rows.len();
            // The next page is asked for while this one is written.
            let (next, written) = tokio::join!(
                self.report_page(channel, range, start_index),
                self.write_page(channel, range, &table, run_id, extracted_at_us, sink, progress)
            );
            rows += written?;
            table = next?;
        }
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
        run_id: &str,
        extracted_at_us: i64,
        sink: &mut SliceWriter<'_>,
        progress: &Progress,
    ) -> std::result::Result<u64, SliceError> {
        let ids: Vec<String> = {
            let video_i = table.column_headers.iter().position(|h| h.name == "video");
            let mut ids: Vec<String> = table
                .rows
                .iter()
                .filter_map(|r| {
                    video_i
                        .and_then(|i| r.get(i))
                        .and_then(|v| v.as_str())
                        .map(str::to_string)
                })
                .collect();
            ids.sort();
            ids.dedup();
            ids
        };
        let meta = self.video_meta(channel, &ids).await?;
        let batch = self
            .to_batch(channel, table, &meta, run_id, extracted_at_us)
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
