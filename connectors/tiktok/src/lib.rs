//! crest's TikTok source: the Business API v1.3 integrated report, joined to
//! ad and ad-group metadata (names, landing URLs with the creator's UTMs,
//! attribution windows), written as typed raw Parquet.
//!
//! This file says which requests make up a slice; retries, pacing, windows,
//! state, files and the manifest live in `crest-core`.

pub mod api;
pub mod command;
pub mod schema;

use api::{AdGroup, AdvertiserInfo, Envelope, Listing, ReportEnvelope, API_PREFIX};
use arrow::datatypes::SchemaRef;
use crest_core::cli::Progress;
use crest_core::extract::{Prepared, ReportSource, SliceError};
use crest_core::http::{malformed, ApiClient, ApiError, CallStats, Verdict};
use crest_core::raw::SliceWriter;
use crest_core::reqwest;
use crest_core::window::DateRange;
use crest_core::{Error, Result, Secret};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;

pub const DEFAULT_BASE_URL: &str = "https://business-api.tiktok.com";
/// TikTok serves at most 1,000 rows a page.
pub const MAX_PAGE_SIZE: u64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Granularity {
    Day,
    Hour,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Level {
    Ad,
    Adgroup,
    Campaign,
    Advertiser,
}

impl Level {
    fn data_level(self) -> &'static str {
        match self {
            Level::Ad => "AUCTION_AD",
            Level::Adgroup => "AUCTION_ADGROUP",
            Level::Campaign => "AUCTION_CAMPAIGN",
            Level::Advertiser => "AUCTION_ADVERTISER",
        }
    }
    fn id_dimension(self) -> &'static str {
        match self {
            Level::Ad => "ad_id",
            Level::Adgroup => "adgroup_id",
            Level::Campaign => "campaign_id",
            Level::Advertiser => "advertiser_id",
        }
    }
    fn name(self) -> &'static str {
        match self {
            Level::Ad => "ad",
            Level::Adgroup => "adgroup",
            Level::Campaign => "campaign",
            Level::Advertiser => "advertiser",
        }
    }
}

/// An advertiser's metadata, joined onto its report rows.
#[derive(Debug, Default)]
pub struct Meta {
    pub currency: String,
    pub timezone: String,
    pub ads: HashMap<String, api::Ad>,
    pub adgroups: HashMap<String, AdGroup>,
    pub campaign_names: HashMap<String, String>,
}

pub struct TikTokConfig {
    pub base_url: url::Url,
    pub token: Secret,
    pub level: Level,
    pub granularity: Granularity,
    pub metrics: Vec<String>,
    pub page_size: u64,
    pub concurrency: usize,
}

pub struct TikTokSource {
    inner: Arc<Inner>,
    schema: SchemaRef,
    meta: Prepared<Meta>,
}

/// What a report page task needs; shared so pages decode on every core while
/// the slice writer encodes Parquet.
struct Inner {
    config: TikTokConfig,
    client: ApiClient,
}

impl Inner {
    /// One report page, decoded straight from the borrowed body into a batch.
    async fn report_page(
        self: Arc<Self>,
        ctx: Arc<schema::PageContext>,
        range: DateRange,
        page: u64,
    ) -> std::result::Result<(api::PageInfo, arrow::array::RecordBatch), ApiError> {
        let time_dim = if ctx.hourly { "stat_time_hour" } else { "stat_time_day" };
        let params = [
            ("advertiser_id", ctx.advertiser_id.clone()),
            ("report_type", "BASIC".to_string()),
            ("data_level", self.config.level.data_level().to_string()),
            (
                "dimensions",
                serde_json::to_string(&[self.config.level.id_dimension(), time_dim]).unwrap_or_default(),
            ),
            ("metrics", serde_json::to_string(&ctx.metrics).unwrap_or_default()),
            ("start_date", range.start.to_string()),
            ("end_date", range.end.to_string()),
            ("page", page.to_string()),
            ("page_size", self.config.page_size.to_string()),
        ];
        let url = self.url("report/integrated/get");
        let label = format!(
            "GET {API_PREFIX}/report/integrated/get/ advertiser_id={} {}..{} page={page}",
            ctx.advertiser_id, range.start, range.end
        );
        let token = self.config.token.expose();
        let result = self
            .client
            .send(
                &label,
                |c: &reqwest::Client| c.get(&url).header("Access-Token", token).query(&params),
                |body: &[u8]| {
                    let env: ReportEnvelope = serde_json::from_slice(body).map_err(|e| malformed(body, e))?;
                    match api::classify(env.code, &env.message, &env.request_id) {
                        Verdict::Ok => {}
                        v => return Err(v),
                    }
                    let data = env.data.ok_or_else(|| malformed(body, "code 0 without data"))?;
                    let batch = schema::page_to_batch(&ctx, &data.list).map_err(|e| malformed(body, e))?;
                    Ok((data.page_info, batch))
                },
            )
            .await?;
        Ok(result)
    }

    fn url(&self, endpoint: &str) -> String {
        format!(
            "{}{API_PREFIX}/{endpoint}/",
            self.config.base_url.as_str().trim_end_matches('/')
        )
    }
}

impl TikTokSource {
    pub fn new(config: TikTokConfig, client: ApiClient) -> Result<Self> {
        if config.page_size == 0 || config.page_size > MAX_PAGE_SIZE {
            return Err(Error::Config(format!(
                "--page-size must be between 1 and {MAX_PAGE_SIZE}"
            )));
        }
        let schema = schema::raw_schema(&config.metrics);
        let client = client.with_secret(config.token.clone());
        Ok(TikTokSource {
            inner: Arc::new(Inner { config, client }),
            schema,
            meta: Prepared::default(),
        })
    }

    /// GET an endpoint whose data is a plain JSON object.
    async fn get<T: serde::de::DeserializeOwned>(&self, endpoint: &str, params: &[(&str, String)]) -> Result<T> {
        let url = self.inner.url(endpoint);
        let label = format!("GET {API_PREFIX}/{endpoint}/ {}", describe(params));
        let token = self.inner.config.token.expose();
        let env: Envelope<T> = self
            .inner
            .client
            .send_json(
                &label,
                |c: &reqwest::Client| c.get(&url).header("Access-Token", token).query(params),
                |e: &Envelope<T>| match api::classify(e.code, &e.message, &e.request_id) {
                    Verdict::Ok if e.data.is_none() => malformed(b"", "code 0 without data"),
                    v => v,
                },
            )
            .await?;
        env.data
            .ok_or_else(|| Error::Upstream(format!("{label}: code 0 without data")))
    }

    /// Every page of a listing endpoint, following `page_info.total_page`.
    async fn list_all<T: serde::de::DeserializeOwned>(&self, endpoint: &str, advertiser: &str) -> Result<Vec<T>> {
        let mut out = Vec::new();
        let mut page = 1u64;
        loop {
            let params = [
                ("advertiser_id", advertiser.to_string()),
                ("page", page.to_string()),
                ("page_size", MAX_PAGE_SIZE.to_string()),
            ];
            let listing: Listing<T> = self.get(endpoint, &params).await?;
            out.extend(listing.list);
            if page >= listing.page_info.total_page {
                return Ok(out);
            }
            page += 1;
        }
    }

    pub async fn advertiser_info(&self, ids: &[String]) -> Result<Vec<AdvertiserInfo>> {
        let ids_json = serde_json::to_string(ids).unwrap_or_default();
        let listing: Listing<AdvertiserInfo> = self.get("advertiser/info", &[("advertiser_ids", ids_json)]).await?;
        for id in ids {
            if !listing.list.iter().any(|a| a.advertiser_id.as_str() == id) {
                return Err(Error::Auth(format!(
                    "advertiser {id} is not visible to this token; check --advertiser-id and the token's authorized advertisers"
                )));
            }
        }
        Ok(listing.list)
    }

    async fn load_meta(&self, advertiser: &str) -> Result<Meta> {
        let info = self.advertiser_info(&[advertiser.to_string()]).await?.remove(0);
        let mut meta = Meta {
            currency: info.currency,
            timezone: info.timezone,
            ..Meta::default()
        };
        if self.inner.config.level != Level::Advertiser {
            for mut g in self.list_all::<AdGroup>("adgroup/get", advertiser).await? {
                g.click_days = g.click_attribution_window.as_deref().and_then(schema::window_days);
                g.view_days = g.view_attribution_window.as_deref().and_then(schema::window_days);
                if let Some(name) = &g.campaign_name {
                    meta.campaign_names
                        .insert(g.campaign_id.as_str().to_string(), name.clone());
                }
                meta.adgroups.insert(g.adgroup_id.as_str().to_string(), g);
            }
        }
        if self.inner.config.level == Level::Ad {
            for mut ad in self.list_all::<api::Ad>("ad/get", advertiser).await? {
                ad.modify_ts = ad.modify_time.as_deref().and_then(schema::parse_modify_time);
                meta.ads.insert(ad.ad_id.as_str().to_string(), ad);
            }
        }
        Ok(meta)
    }
}

/// Non-secret parameters for log lines.
fn describe(params: &[(&str, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

impl ReportSource for TikTokSource {
    fn platform(&self) -> &'static str {
        "tiktok"
    }

    fn report(&self) -> String {
        let g = match self.inner.config.granularity {
            Granularity::Day => "daily",
            Granularity::Hour => "hourly",
        };
        format!("{}_{g}", self.inner.config.level.name())
    }

    fn max_slice_days(&self) -> u64 {
        // TikTok accepts up to 30 days per daily query and one day per hourly query.
        match self.inner.config.granularity {
            Granularity::Day => 30,
            Granularity::Hour => 1,
        }
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn date_column(&self) -> &'static str {
        "stat_date"
    }

    fn call_stats(&self) -> Arc<CallStats> {
        self.inner.client.stats()
    }

    async fn prepare_account(&self, account: &str) -> Result<serde_json::Value> {
        let meta = self.load_meta(account).await?;
        let info = serde_json::json!({
            "currency": meta.currency,
            "timezone": meta.timezone,
            "ads": meta.ads.len(),
            "adgroups": meta.adgroups.len(),
            "ads_without_modify_time": meta.ads.values().filter(|a| a.modify_time.is_none()).count(),
            // Conversions of a 28-day click window keep arriving for 28 days:
            // the default lookback reaches back that far.
            "longest_window_days": meta
                .adgroups
                .values()
                .flat_map(|g| [g.click_days, g.view_days])
                .flatten()
                .max()
                .and_then(|d| u32::try_from(d).ok()),
        });
        tracing::info!(advertiser_id = %account, currency = %meta.currency, timezone = %meta.timezone, ads = meta.ads.len(), "advertiser ready");
        self.meta.insert(account, meta);
        Ok(info)
    }

    async fn fetch_slice(
        &self,
        account: &str,
        range: DateRange,
        run_id: &str,
        extracted_at_us: i64,
        sink: &mut SliceWriter<'_>,
        progress: &Progress,
    ) -> std::result::Result<u64, SliceError> {
        let meta = self.meta.get(account)?;
        let ctx = Arc::new(schema::PageContext {
            advertiser_id: account.to_string(),
            meta,
            metrics: self.inner.config.metrics.clone(),
            schema: self.schema.clone(),
            hourly: self.inner.config.granularity == Granularity::Hour,
            extracted_at_us,
            run_id: run_id.to_string(),
        });
        let (first_info, first) = self.inner.clone().report_page(ctx.clone(), range, 1).await?;
        let mut rows = first.num_rows() as u64;
        sink.write(&first).await?;
        progress.add_rows(first.num_rows() as u64);
        // Follow total_page, never a short page: a server may serve fewer rows than page_size.
        let mut total_pages = first_info.total_page;
        let mut next_page = 2u64;
        while next_page <= total_pages {
            let planned = next_page..=total_pages;
            next_page = total_pages + 1;
            // Each page is fetched and decoded in its own task (any core), in
            // order, at most `concurrency` ahead of the writer.
            let mut pages = futures::stream::iter(planned)
                .map(|p| tokio::spawn(self.inner.clone().report_page(ctx.clone(), range, p)))
                .buffered(self.inner.config.concurrency.max(1));
            while let Some(page) = pages.next().await {
                let (info, batch) = page.map_err(|e| Error::Upstream(format!("a report page task failed: {e}")))??;
                rows += batch.num_rows() as u64;
                sink.write(&batch).await?;
                progress.add_rows(batch.num_rows() as u64);
                if info.total_page > total_pages {
                    tracing::warn!(advertiser_id = %account, slice = %range, was = total_pages, now = info.total_page, "report grew while paging; reading the new pages");
                    total_pages = info.total_page;
                }
            }
        }
        if rows != first_info.total_number {
            tracing::warn!(
                advertiser_id = %account, slice = %range, served = rows, announced = first_info.total_number,
                "the report changed while paging: row count differs from total_number"
            );
        }
        Ok(rows)
    }
}
