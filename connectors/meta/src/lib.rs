//! crest's Meta source: ad insights from the Marketing API's asynchronous
//! flow (`POST act_{id}/insights` → poll the report run → page its rows by
//! cursor), one row per ad × date × publisher platform, with every requested
//! attribution window of the chosen conversion action, joined to the ads'
//! creatives (landing link and `url_tags` carrying the creator's UTMs).
//!
//! A job that fails or stalls is split (account → campaigns → ad sets → ads)
//! and run again, so one heavy slice never restarts the run. Pacing follows
//! Meta's usage headers before the limit is reached. Retries, windows, state,
//! files and the manifest live in `crest-core`.

pub mod api;
pub mod command;
pub mod schema;

use api::{AccountInfo, InsightsPage, JobStatus, Listing, MetaPolicy, ReportRun};
use arrow::array::RecordBatch;
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
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const DEFAULT_BASE_URL: &str = "https://graph.facebook.com";
pub const DEFAULT_API_VERSION: &str = "v24.0";
/// The windows Meta still serves; `7d_view` and `28d_view` were retired.
pub const SERVED_WINDOWS: &[&str] = &["1d_click", "7d_click", "28d_click", "1d_view"];
pub const DEFAULT_CONVERSION_ACTION: &str = "offsite_conversion.fb_pixel_purchase";

const ALL_AD_STATUSES: &str = r#"["ACTIVE","PAUSED","DELETED","ARCHIVED","PENDING_REVIEW","DISAPPROVED","PREAPPROVED","PENDING_BILLING_INFO","CAMPAIGN_PAUSED","ADSET_PAUSED","IN_PROCESS","WITH_ISSUES"]"#;

const INSIGHT_FIELDS: &str = "account_id,campaign_id,campaign_name,adset_id,adset_name,ad_id,ad_name,impressions,clicks,inline_link_clicks,spend,reach,actions,action_values";

/// An ad's metadata, joined onto its insights rows.
#[derive(Debug, Clone)]
pub struct AdMeta {
    pub name: Option<String>,
    pub campaign_id: String,
    pub campaign_name: Option<String>,
    pub adset_id: String,
    pub adset_name: Option<String>,
    pub link: Option<String>,
    pub url_tags: Option<String>,
    pub permalink: Option<String>,
}

struct AccountMeta {
    currency: String,
    timezone: String,
    ads: Arc<HashMap<String, AdMeta>>,
}

pub struct MetaConfig {
    pub base_url: url::Url,
    pub token: Secret,
    pub api_version: String,
    pub windows: Vec<String>,
    pub conversion_action: String,
    pub by_platform: bool,
    pub page_limit: u32,
    pub max_jobs: usize,
    pub poll_initial: Duration,
    pub poll_max: Duration,
    /// A job whose progress does not move for this long is split; one that
    /// has not finished in six times as long is split however it moves.
    pub stall_after: Duration,
}

struct Inner {
    config: MetaConfig,
    client: ApiClient,
    policy: MetaPolicy,
}

pub struct MetaSource {
    inner: Arc<Inner>,
    schema: SchemaRef,
    accounts: Prepared<AccountMeta>,
}

/// What one async job covers. A failed or stalled job is split into the next level down.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    Account,
    Campaign(String),
    Adset(String),
    Ad(String),
}

impl Scope {
    fn filtering(&self) -> Option<String> {
        let (field, id) = match self {
            Scope::Account => return None,
            Scope::Campaign(id) => ("campaign.id", id),
            Scope::Adset(id) => ("adset.id", id),
            Scope::Ad(id) => ("ad.id", id),
        };
        Some(serde_json::json!([{"field": field, "operator": "IN", "value": [id]}]).to_string())
    }

    fn children(&self, ads: &HashMap<String, AdMeta>) -> Option<Vec<Scope>> {
        let mut ids: Vec<String> = match self {
            Scope::Account => ads.values().map(|a| a.campaign_id.clone()).collect(),
            Scope::Campaign(c) => ads
                .values()
                .filter(|a| &a.campaign_id == c)
                .map(|a| a.adset_id.clone())
                .collect(),
            Scope::Adset(s) => ads
                .iter()
                .filter(|(_, a)| &a.adset_id == s)
                .map(|(id, _)| id.clone())
                .collect(),
            Scope::Ad(_) => return None,
        };
        ids.sort();
        ids.dedup();
        Some(
            ids.into_iter()
                .map(|id| match self {
                    Scope::Account => Scope::Campaign(id),
                    Scope::Campaign(_) => Scope::Adset(id),
                    _ => Scope::Ad(id),
                })
                .collect(),
        )
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Account => f.write_str("account"),
            Scope::Campaign(id) => write!(f, "campaign {id}"),
            Scope::Adset(id) => write!(f, "ad set {id}"),
            Scope::Ad(id) => write!(f, "ad {id}"),
        }
    }
}

enum JobOutcome {
    Completed(String),
    /// Failed, skipped, stalled or refused as too large: split it.
    Split(String),
}

/// Normalizes `act_123` / `123` to the digits.
pub fn account_digits(raw: &str) -> Result<String> {
    let id = raw.trim().trim_start_matches("act_");
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(Error::Config(format!(
            "--account-id '{raw}' is not a Meta ad account id (act_ followed by digits)"
        )));
    }
    Ok(id.to_string())
}

fn bearer(token: &Secret) -> String {
    format!("Bearer {}", token.expose())
}

fn decode<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> std::result::Result<T, Verdict> {
    serde_json::from_slice(body).map_err(|e| malformed(body, e))
}

fn decode_owned<T: serde::de::DeserializeOwned>(body: &[u8]) -> std::result::Result<T, Verdict> {
    serde_json::from_slice(body).map_err(|e| malformed(body, e))
}

impl Inner {
    fn url(&self, path: &str) -> String {
        format!(
            "{}/{}/{path}",
            self.config.base_url.as_str().trim_end_matches('/'),
            self.config.api_version
        )
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        params: &[(&str, String)],
    ) -> std::result::Result<T, ApiError> {
        let url = self.url(path);
        let label = format!("GET /{}/{path}", self.config.api_version);
        let auth = bearer(&self.config.token);
        self.client
            .send(
                &label,
                |c: &reqwest::Client| c.get(&url).header("Authorization", &auth).query(params),
                |body: &[u8]| decode_owned::<T>(body),
            )
            .await
    }

    fn insights_params(&self, range: DateRange, scope: &Scope) -> Vec<(&'static str, String)> {
        let mut p = vec![
            ("level", "ad".to_string()),
            ("time_increment", "1".to_string()),
            ("fields", INSIGHT_FIELDS.to_string()),
            (
                "time_range",
                serde_json::json!({"since": range.start.to_string(), "until": range.end.to_string()}).to_string(),
            ),
            (
                "action_attribution_windows",
                serde_json::to_string(&self.config.windows).unwrap_or_default(),
            ),
            ("action_report_time", "conversion".to_string()),
        ];
        if self.config.by_platform {
            p.push(("breakdowns", "publisher_platform".to_string()));
        }
        if let Some(f) = scope.filtering() {
            p.push(("filtering", f));
        }
        p
    }

    /// Starts a job for `scope` and polls it with backoff until it completes, fails or stalls.
    async fn run_job(
        self: Arc<Self>,
        account: String,
        range: DateRange,
        scope: Scope,
    ) -> std::result::Result<JobOutcome, ApiError> {
        let path = format!("act_{account}/insights");
        let url = self.url(&path);
        let label = format!("POST /{}/{path} {range} {scope}", self.config.api_version);
        let params = self.insights_params(range, &scope);
        let auth = bearer(&self.config.token);
        let created = self
            .client
            .send(
                &label,
                |c: &reqwest::Client| c.post(&url).header("Authorization", &auth).query(&params),
                |body: &[u8]| decode_owned::<ReportRun>(body),
            )
            .await;
        let id = match created {
            Ok(r) => r.report_run_id.0,
            Err(ApiError::TooLarge(m)) => return Ok(JobOutcome::Split(m)),
            Err(e) => return Err(e),
        };
        let mut delay = self.config.poll_initial;
        let mut progress = -1.0f64;
        let mut moved = Instant::now();
        let started = Instant::now();
        let deadline = self.config.stall_after.saturating_mul(6);
        loop {
            tokio::time::sleep(delay).await;
            let status: JobStatus = self
                .get(&id, &[("fields", "async_status,async_percent_completion".into())])
                .await?;
            match status.async_status.as_str() {
                "Job Completed" => return Ok(JobOutcome::Completed(id)),
                "Job Failed" | "Job Skipped" => {
                    return Ok(JobOutcome::Split(format!(
                        "report run {id} for {scope}: {}",
                        status.async_status
                    )))
                }
                _ => {}
            }
            if status.async_percent_completion > progress {
                progress = status.async_percent_completion;
                moved = Instant::now();
            } else if moved.elapsed() >= self.config.stall_after {
                return Ok(JobOutcome::Split(format!(
                    "report run {id} for {scope} stalled at {progress}% for {}s",
                    moved.elapsed().as_secs()
                )));
            }
            // A job creeping forward forever is split too: polling never runs unbounded.
            if started.elapsed() >= deadline {
                return Ok(JobOutcome::Split(format!(
                    "report run {id} for {scope} still at {progress}% after {}s",
                    started.elapsed().as_secs()
                )));
            }
            delay = delay.mul_f64(1.5).min(self.config.poll_max);
        }
    }

    /// One page of a finished job: decoded into a batch, with the next page's URL.
    async fn page(
        self: Arc<Self>,
        ctx: Arc<schema::PageContext>,
        url: String,
        params: Vec<(&'static str, String)>,
        label: String,
    ) -> std::result::Result<(RecordBatch, Option<String>), ApiError> {
        let auth = bearer(&self.config.token);
        self.client
            .send(
                &label,
                |c: &reqwest::Client| c.get(&url).header("Authorization", &auth).query(&params),
                |body: &[u8]| {
                    let page: InsightsPage = decode(body)?;
                    let batch = schema::page_to_batch(&ctx, &page.data).map_err(|e| malformed(body, e))?;
                    Ok((batch, page.paging.and_then(|p| p.next)))
                },
            )
            .await
    }
}

impl Inner {
    /// One page of a finished job, not yet decoded: only its `paging` (at the
    /// end of the body) is read, so the next page is requested while this one
    /// is decoded in its own task. A body whose end is not a complete paging
    /// object is checked whole, and retried if cut off.
    async fn page_raw(
        self: Arc<Self>,
        url: String,
        params: Vec<(&'static str, String)>,
        label: String,
    ) -> std::result::Result<(Vec<u8>, Option<String>), ApiError> {
        let auth = bearer(&self.config.token);
        self.client
            .send(
                &label,
                |c: &reqwest::Client| c.get(&url).header("Authorization", &auth).query(&params),
                |body: &[u8]| {
                    let next = match api::tail_paging(body) {
                        Some(paging) => paging.next,
                        None => decode::<api::PageEnvelope>(body)?.paging.and_then(|p| p.next),
                    };
                    Ok((body.to_vec(), next))
                },
            )
            .await
    }
}

impl MetaSource {
    pub fn new(config: MetaConfig, client: ApiClient) -> Result<Self> {
        for w in &config.windows {
            if !SERVED_WINDOWS.contains(&w.as_str()) {
                return Err(Error::Config(format!(
                    "--attribution-windows: '{w}' is not served by Meta (7d_view and 28d_view were retired); use {}",
                    SERVED_WINDOWS.join(", ")
                )));
            }
        }
        if config.windows.is_empty() {
            return Err(Error::Config("--attribution-windows needs at least one window".into()));
        }
        let v = &config.api_version;
        if !(v.starts_with('v')
            && v[1..]
                .split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())))
        {
            return Err(Error::Config(format!(
                "--api-version '{v}' is not a Graph API version, e.g. {DEFAULT_API_VERSION}"
            )));
        }
        let schema = schema::raw_schema(&config.windows);
        let policy = MetaPolicy::default();
        let client = client.with_platform(policy.clone()).with_secret(config.token.clone());
        Ok(MetaSource {
            inner: Arc::new(Inner { config, client, policy }),
            schema,
            accounts: Prepared::default(),
        })
    }

    pub async fn account_info(&self, account: &str) -> Result<AccountInfo> {
        let info = self
            .inner
            .get(
                &format!("act_{account}"),
                &[("fields", "account_id,name,currency,timezone_name".into())],
            )
            .await?;
        Ok(info)
    }

    async fn load_ads(&self, account: &str) -> Result<HashMap<String, AdMeta>> {
        let mut out = HashMap::new();
        let fields = "id,name,adset_id,campaign_id,adset{name},campaign{name},creative{url_tags,object_story_spec,instagram_permalink_url}";
        let mut after: Option<String> = None;
        loop {
            // Archived and deleted ads still have insights in the range: list them too,
            // so a split job covers every ad that served.
            let mut params = vec![
                ("fields", fields.to_string()),
                ("limit", "500".to_string()),
                ("effective_status", ALL_AD_STATUSES.to_string()),
            ];
            if let Some(a) = &after {
                params.push(("after", a.clone()));
            }
            let page: Listing<api::Ad> = self.inner.get(&format!("act_{account}/ads"), &params).await?;
            for ad in page.data {
                let creative = ad.creative.unwrap_or_default();
                out.insert(
                    ad.id.0,
                    AdMeta {
                        name: ad.name,
                        campaign_id: ad.campaign_id.0,
                        campaign_name: ad.campaign.and_then(|c| c.name),
                        adset_id: ad.adset_id.0,
                        adset_name: ad.adset.and_then(|c| c.name),
                        link: creative
                            .object_story_spec
                            .and_then(|s| s.link_data)
                            .and_then(|l| l.link),
                        url_tags: creative.url_tags,
                        permalink: creative.instagram_permalink_url,
                    },
                );
            }
            match page.paging {
                Some(p) if p.next.is_some() => after = p.cursors.and_then(|c| c.after),
                _ => return Ok(out),
            }
            if after.is_none() {
                return Ok(out);
            }
        }
    }

    /// Concurrent jobs allowed now: fewer as the insights throttle fills.
    fn job_slots(&self) -> usize {
        let used = self.inner.policy.insights_util_pct.load(Ordering::Relaxed) as usize;
        (self.inner.config.max_jobs * (100 - used.min(100)) / 100).max(1)
    }

    /// Reads every page of a finished job into the sink, fetching the next page
    /// while the current one is written.
    async fn read_job(
        &self,
        ctx: &Arc<schema::PageContext>,
        id: &str,
        sink: &mut SliceWriter<'_>,
        progress: &Progress,
    ) -> std::result::Result<u64, SliceError> {
        let v = &self.inner.config.api_version;
        let label = format!("GET /{v}/{id}/insights");
        let first = (
            self.inner.url(&format!("{id}/insights")),
            vec![("limit", self.inner.config.page_limit.to_string())],
        );
        let mut fetching = Some((
            first.0.clone(),
            first.1.clone(),
            tokio::spawn(self.inner.clone().page_raw(first.0, first.1, label.clone())),
        ));
        // Pages decoded on the blocking pool, written in order; at most two wait.
        type Decoding = (
            String,
            Vec<(&'static str, String)>,
            tokio::task::JoinHandle<std::result::Result<RecordBatch, String>>,
        );
        let mut decoding: std::collections::VecDeque<Decoding> = std::collections::VecDeque::new();
        let mut rows = 0u64;
        loop {
            if let Some((url, params, fetch)) = fetching.take() {
                let (body, next) = fetch
                    .await
                    .map_err(|e| Error::Upstream(format!("an insights page task failed: {e}")))??;
                // `paging.next` is absolute and carries the token in its query: followed, never logged.
                fetching = next.map(|next| {
                    let task = tokio::spawn(self.inner.clone().page_raw(
                        next.clone(),
                        Vec::new(),
                        format!("{label} (next page)"),
                    ));
                    (next, Vec::new(), task)
                });
                let ctx = ctx.clone();
                decoding.push_back((
                    url,
                    params,
                    tokio::task::spawn_blocking(move || schema::decode_page(&ctx, &body)),
                ));
            }
            let drain = decoding.len() > 2 || (fetching.is_none() && !decoding.is_empty());
            if drain {
                let Some((url, params, task)) = decoding.pop_front() else {
                    break;
                };
                let decoded = task
                    .await
                    .map_err(|e| Error::Upstream(format!("an insights decode task failed: {e}")))?;
                let batch = match decoded {
                    Ok(batch) => batch,
                    // A body that looked whole but does not decode: fetch it again, checked whole.
                    Err(reason) => {
                        tracing::warn!(request = %label, %reason, "a results page did not decode; fetching it again");
                        self.inner
                            .clone()
                            .page(ctx.clone(), url, params, format!("{label} (again)"))
                            .await?
                            .0
                    }
                };
                rows += batch.num_rows() as u64;
                sink.write(&batch).await?;
                progress.add_rows(batch.num_rows() as u64);
            }
            if fetching.is_none() && decoding.is_empty() {
                return Ok(rows);
            }
        }
        Ok(rows)
    }
}

impl ReportSource for MetaSource {
    fn platform(&self) -> &'static str {
        "meta"
    }

    fn report(&self) -> String {
        "ad_daily".into()
    }

    fn max_slice_days(&self) -> u64 {
        30
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn date_column(&self) -> &'static str {
        "date_start"
    }

    fn call_stats(&self) -> Arc<CallStats> {
        self.inner.client.stats()
    }

    async fn prepare_account(&self, account: &str) -> Result<serde_json::Value> {
        let info = self.account_info(account).await?;
        let ads = self.load_ads(account).await?;
        tracing::info!(account_id = %account, currency = %info.currency, timezone = %info.timezone_name, ads = ads.len(), "ad account ready");
        // The longest window asked for (28d_click by default) is how long Meta restates a day.
        let longest_window_days = self
            .inner
            .config
            .windows
            .iter()
            .filter_map(|w| w.split_once('d').and_then(|(days, _)| days.parse::<u32>().ok()))
            .max();
        let summary = serde_json::json!({"currency": info.currency, "timezone": info.timezone_name, "ads": ads.len(), "name": info.name, "longest_window_days": longest_window_days});
        let meta = AccountMeta {
            currency: info.currency,
            timezone: info.timezone_name,
            ads: Arc::new(ads),
        };
        self.accounts.insert(account, meta);
        Ok(summary)
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
        let meta = self.accounts.get(account)?;
        let ctx = Arc::new(schema::PageContext {
            needle: format!("\"{}\"", self.inner.config.conversion_action),
            account_id: account.to_string(),
            currency: meta.currency.clone(),
            timezone: meta.timezone.clone(),
            ads: meta.ads.clone(),
            windows: self.inner.config.windows.clone(),
            conversion_action: self.inner.config.conversion_action.clone(),
            schema: self.schema.clone(),
            extracted_at_us,
            run_id: run_id.to_string(),
        });
        let mut rows = 0u64;
        let mut scopes = vec![Scope::Account];
        while !scopes.is_empty() {
            let round: Vec<Scope> = std::mem::take(&mut scopes);
            let outcomes: Vec<(Scope, std::result::Result<JobOutcome, ApiError>)> = futures::stream::iter(round)
                .map(|scope| {
                    let job = tokio::spawn(self.inner.clone().run_job(account.to_string(), range, scope.clone()));
                    async move { (scope, job.await) }
                })
                .buffered(self.job_slots())
                .map(|(scope, joined)| {
                    let outcome = joined.unwrap_or_else(|e| Err(ApiError::Fatal(format!("a job task failed: {e}"))));
                    (scope, outcome)
                })
                .collect()
                .await;
            for (scope, outcome) in outcomes {
                match outcome? {
                    JobOutcome::Completed(id) => rows += self.read_job(&ctx, &id, sink, progress).await?,
                    JobOutcome::Split(reason) => match scope.children(&meta.ads) {
                        Some(children) if !children.is_empty() => {
                            tracing::warn!(account_id = %account, slice = %range, %scope, parts = children.len(), %reason, "insights job did not finish; splitting it");
                            scopes.extend(children);
                        }
                        // A job that did not finish says nothing about the day: with no
                        // known campaigns, ad sets or ads to split into, recording the
                        // slice as empty would replace rows the account had.
                        Some(_) => {
                            return Err(SliceError::Failed(Error::Upstream(format!(
                                "{reason}; the insights job for {scope} did not finish and crest knows nothing under it to split into, so {range} of account {account} is not recorded as empty: try again later"
                            ))))
                        }
                        None => {
                            return Err(SliceError::Failed(Error::Upstream(format!(
                                "{reason}; even a single ad's job does not finish for {range}: try again later"
                            ))))
                        }
                    },
                }
            }
        }
        Ok(rows)
    }
}
