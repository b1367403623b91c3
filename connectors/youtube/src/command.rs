//! The `crest-youtube` command: creators' organic YouTube videos (YouTube Analytics) and
//! the brand's YouTube ads (Google Ads) into raw Parquet.
//! Lives in the library so `crest run` drives the same flags, checks and
//! defaults from its config (`extract_with`).

use crate::ads::{AdsConfig, GoogleAdsSource, DEFAULT_ADS_API_VERSION, DEFAULT_ADS_BASE_URL};
use crate::{
    YouTubeConfig, YouTubeSource, DEFAULT_ANALYTICS_BASE_URL, DEFAULT_DATA_BASE_URL, DEFAULT_OAUTH_URL, METRICS,
};
use clap::{Args, Parser, Subcommand};
use crest_core::cli::{self, ExtractArgs, GlobalArgs, Report};
use crest_core::extract::{run_extract, ExtractPlan};
use crest_core::http::{ApiClient, RetryPolicy};
use crest_core::manifest::RunManifest;
use crest_core::oauth::TokenSource;
use crest_core::source::{self, Section, SectionError, Source};
use crest_core::storage::Location;
use crest_core::{Error, Result, Secret};
use std::sync::Arc;

const EXAMPLES: &str = "\
Examples:
  # Daily per-video numbers for two creators' channels (each authorized crest through OAuth)
  export GOOGLE_CLIENT_ID=... GOOGLE_CLIENT_SECRET=... GOOGLE_REFRESH_TOKEN=...
  crest-youtube extract --channel-id UCxxxxxxxxxxxxxxxxxxxxxx --channel-id UCyyyyyyyyyyyyyyyyyyyyyy \\
      --start 2026-01-01 --end 2026-01-31 --out ./crest-out

  # Scheduled: incremental, re-reading the last days Analytics had not served yet
  crest-youtube --log-format json extract --channel-id UCxxxxxxxxxxxxxxxxxxxxxx --start {{ ds }} --end {{ ds }} \\
      --out s3://bucket/crest --state s3://bucket/crest/_state/youtube-UCxxxxxxxxxxxxxxxxxxxxxx.json

  # The brand's YouTube ads (VIDEO and DEMAND_GEN campaigns) from Google Ads, daily per ad
  export GOOGLE_ADS_DEVELOPER_TOKEN=...
  crest-youtube extract --ads-customer-id 123-456-7890 --login-customer-id 9876543210 \
      --start 2026-01-01 --end 2026-01-31 --out ./crest-out

  # Check the credentials, every channel and every customer, write nothing
  crest-youtube check --channel-id UCxxxxxxxxxxxxxxxxxxxxxx --ads-customer-id 1234567890

Environment:
  GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET, GOOGLE_REFRESH_TOKEN   OAuth client and the creator's refresh token
                                                                (each also as VAR_FILE: a file holding it)
  CREST_GOOGLE_OAUTH_URL             token endpoint (default https://oauth2.googleapis.com/token)
  CREST_YOUTUBE_ANALYTICS_BASE_URL   YouTube Analytics (default https://youtubeanalytics.googleapis.com)
  CREST_YOUTUBE_DATA_BASE_URL        YouTube Data API (default https://www.googleapis.com)
  GOOGLE_ADS_DEVELOPER_TOKEN         Google Ads developer token (or GOOGLE_ADS_DEVELOPER_TOKEN_FILE), for --ads-customer-id
  CREST_GOOGLE_ADS_BASE_URL          Google Ads API (default https://googleads.googleapis.com)
  CREST_GOOGLE_ADS_API_VERSION       Google Ads API version (default v26)

Organic rows land in {out}/raw/youtube/video_daily/, ads in {out}/raw/youtube/ads_daily/, each with its own
run manifest. Google Ads quota errors are waited out when Google asks for a short delay, and stop the run
with the delay named when it is long.

Exit codes: 0 ok, 2 usage or config, 3 auth (refresh token refused: re-authorize), 4 API error after retries
(also a spent daily quota), 5 storage.";

#[derive(Parser)]
#[command(name = "crest-youtube", version, about = "Extract creators' organic YouTube video metrics (YouTube Analytics) and the brand's YouTube ads (Google Ads) into Parquet", after_help = EXAMPLES)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Check the credentials, each channel and each customer (no data written).
    Check(Targets),
    /// Extract daily per-video metrics (--channel-id) into {out}/raw/youtube/video_daily/ and
    /// daily per-ad metrics (--ads-customer-id) into {out}/raw/youtube/ads_daily/.
    Extract(Box<YouTubeExtractArgs>),
}

#[derive(Args)]
#[group(id = "targets", required = true, multiple = true, args = ["channel_ids", "ads_customer_ids"])]
pub struct Targets {
    /// A creator's channel id, UC… (repeatable, or comma separated): organic videos.
    #[arg(long = "channel-id", value_delimiter = ',', value_name = "ID")]
    channel_ids: Vec<String>,
    /// A Google Ads customer id, with or without dashes (repeatable, or comma separated): YouTube ads.
    #[arg(long = "ads-customer-id", value_delimiter = ',', value_name = "ID")]
    ads_customer_ids: Vec<String>,
    /// The manager account through which the customers are reached (Google Ads login-customer-id).
    #[arg(long, value_name = "ID")]
    login_customer_id: Option<String>,
}

#[derive(Args)]
pub struct YouTubeExtractArgs {
    #[command(flatten)]
    targets: Targets,
    #[command(flatten)]
    common: ExtractArgs,
    /// Metrics to read, by their API names (default: all crest knows).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    metrics: Vec<String>,
    /// Rows per report page (at most 200).
    #[arg(long, default_value_t = 200, value_name = "N")]
    page_size: usize,
}

/// YouTube Analytics restates recent days and lags a couple: read a week again.
const DEFAULT_LOOKBACK_DAYS: u32 = 7;
const DEFAULT_QPS: f64 = 10.0;
/// Google Ads publishes no fixed request rate (it answers RESOURCE_EXHAUSTED
/// with a retry delay, which crest honours); two calls read a customer-day.
const ADS_DEFAULT_QPS: f64 = 50.0;
/// Google Ads attributes conversions to the click's date for up to 30 days.
const ADS_LOOKBACK_DAYS: u32 = 30;

fn channels(raw: &[String]) -> Result<Vec<String>> {
    cli::account_ids(raw, |c| {
        match c.starts_with("UC")
            && c.len() == 24
            && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        {
            true => Ok(c.to_string()),
            false => Err(Error::Config(format!(
                "--channel-id '{c}' is not a YouTube channel id (UC followed by 22 characters)"
            ))),
        }
    })
}

/// Google Ads customer ids: ten digits, dashes allowed as the UI shows them.
fn customer_id(raw: &str, flag: &str) -> Result<String> {
    let digits: String = raw.trim().chars().filter(|c| *c != '-').collect();
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Config(format!(
            "{flag} '{}' is not a Google Ads customer id (10 digits, e.g. 123-456-7890)",
            raw.trim()
        )));
    }
    Ok(digits)
}

fn customers(raw: &[String]) -> Result<Vec<String>> {
    cli::account_ids(raw, |c| customer_id(c, "--ads-customer-id"))
}

fn tokens(policy: &RetryPolicy) -> Result<TokenSource> {
    let client_id = std::env::var("GOOGLE_CLIENT_ID")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| Error::Auth("GOOGLE_CLIENT_ID is not set: export the OAuth client id".into()))?;
    TokenSource::new(
        cli::env_base_url("CREST_GOOGLE_OAUTH_URL", DEFAULT_OAUTH_URL)?.as_str(),
        client_id.trim(),
        Secret::from_env("GOOGLE_CLIENT_SECRET")?,
        Secret::from_env("GOOGLE_REFRESH_TOKEN")?,
        "GOOGLE_REFRESH_TOKEN",
        RetryPolicy {
            max_attempts: 3,
            ..policy.clone()
        },
    )
}

fn ads_source(
    login: Option<&str>,
    tokens: Arc<TokenSource>,
    policy: RetryPolicy,
    max_qps: f64,
) -> Result<GoogleAdsSource> {
    let login_customer_id = login.map(|l| customer_id(l, "--login-customer-id")).transpose()?;
    let version = std::env::var("CREST_GOOGLE_ADS_API_VERSION").unwrap_or_else(|_| DEFAULT_ADS_API_VERSION.into());
    let version = version.trim().to_string();
    if !version
        .strip_prefix('v')
        .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(Error::Config(format!(
            "CREST_GOOGLE_ADS_API_VERSION '{version}' is not a Google Ads API version such as {DEFAULT_ADS_API_VERSION}"
        )));
    }
    let config = AdsConfig {
        base: cli::env_base_url("CREST_GOOGLE_ADS_BASE_URL", DEFAULT_ADS_BASE_URL)?,
        api_version: version,
        developer_token: Secret::from_env("GOOGLE_ADS_DEVELOPER_TOKEN")?,
        login_customer_id,
    };
    Ok(GoogleAdsSource::new(
        config,
        ApiClient::new(policy, Some(max_qps))?,
        tokens,
    ))
}

fn source(
    metrics: Vec<String>,
    page_size: usize,
    tokens: Arc<TokenSource>,
    policy: RetryPolicy,
    max_qps: f64,
) -> Result<YouTubeSource> {
    let config = YouTubeConfig {
        analytics_base: cli::env_base_url("CREST_YOUTUBE_ANALYTICS_BASE_URL", DEFAULT_ANALYTICS_BASE_URL)?,
        data_base: cli::env_base_url("CREST_YOUTUBE_DATA_BASE_URL", DEFAULT_DATA_BASE_URL)?,
        metrics,
        page_size,
    };
    YouTubeSource::new(config, ApiClient::new(policy, Some(max_qps))?, tokens)
}

async fn check(args: Targets) -> Result<()> {
    let ids = channels(&args.channel_ids)?;
    let customer_ids = customers(&args.ads_customer_ids)?;
    if ids.is_empty() && customer_ids.is_empty() {
        return Err(Error::Config(
            "give at least one --channel-id or --ads-customer-id".into(),
        ));
    }
    let policy = RetryPolicy::check(30.0);
    let tokens = Arc::new(tokens(&policy)?);
    if !ids.is_empty() {
        let metrics = vec!["views".to_string()];
        let source = source(metrics, 1, tokens.clone(), policy.clone(), DEFAULT_QPS)?;
        let yesterday = chrono::Utc::now().date_naive() - chrono::Days::new(3);
        for id in ids {
            source.check_channel(&id, yesterday).await?;
            println!("ok  channel {id}  (credentials valid, report readable)");
        }
    }
    if !customer_ids.is_empty() {
        let source = ads_source(args.login_customer_id.as_deref(), tokens, policy, DEFAULT_QPS)?;
        for id in customer_ids {
            let info = source.customer_info(&id).await?;
            println!(
                "ok  google ads customer {id}  {} ({}, {})",
                info.name.as_deref().unwrap_or("-"),
                info.currency.as_deref().unwrap_or("-"),
                info.time_zone.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(())
}

async fn extract(args: YouTubeExtractArgs, report: Report) -> Result<Vec<RunManifest>> {
    let mut manifests = Vec::new();
    let ids = channels(&args.targets.channel_ids)?;
    let customer_ids = customers(&args.targets.ads_customer_ids)?;
    if ids.is_empty() && customer_ids.is_empty() {
        return Err(Error::Config(
            "give at least one --channel-id or --ads-customer-id".into(),
        ));
    }
    let range = args.common.range()?;
    let policy = args.common.retry_policy()?;
    let mut metrics: Vec<String> = args
        .metrics
        .iter()
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect();
    if metrics.is_empty() {
        metrics = METRICS.iter().map(|(m, _, _)| m.to_string()).collect();
    }
    let out = Location::parse(&args.common.out)?;
    let qps = args.common.max_qps.unwrap_or(DEFAULT_QPS);
    // Both sources are built first: a missing credential fails before anything is read.
    let tokens = Arc::new(tokens(&policy)?);
    let organic = if ids.is_empty() {
        None
    } else {
        Some(source(
            metrics.clone(),
            args.page_size,
            tokens.clone(),
            policy.clone(),
            qps,
        )?)
    };
    let paid = if customer_ids.is_empty() {
        None
    } else {
        let qps = args.common.max_qps.unwrap_or(ADS_DEFAULT_QPS);
        Some(ads_source(
            args.targets.login_customer_id.as_deref(),
            tokens,
            policy,
            qps,
        )?)
    };
    // One state file may hold channels and customers: each run reopens it.
    let state = || args.common.state_store();
    if let Some(source) = organic {
        let plan = ExtractPlan {
            wait_for_lease: args.common.wait_for_lease(),
            out: out.clone(),
            accounts: ids,
            range,
            state: state().await?,
            lookback_days: args.common.lookback_days,
            default_lookback_days: DEFAULT_LOOKBACK_DAYS,
            options: serde_json::json!({"metrics": metrics, "page_size": args.page_size}),
        };
        let manifest = run_extract(&source, plan, &report.progress("youtube")).await?;
        report.summary(&manifest, "channel(s)", range, &args.common.out);
        manifests.push(manifest);
    }
    if let Some(source) = paid {
        let plan = ExtractPlan {
            wait_for_lease: args.common.wait_for_lease(),
            out,
            accounts: customer_ids,
            range,
            state: state().await?,
            // Conversions keep arriving for up to 30 days after a click.
            lookback_days: args.common.lookback_days,
            default_lookback_days: ADS_LOOKBACK_DAYS,
            options: serde_json::json!({"campaign_types": ["VIDEO", "DEMAND_GEN"], "login_customer_id": args.targets.login_customer_id}),
        };
        let manifest = run_extract(&source, plan, &report.progress("youtube ads")).await?;
        report.summary(&manifest, "customer(s)", range, &args.common.out);
        manifests.push(manifest);
    }
    Ok(manifests)
}

crest_core::connector_entry_points!("crest-youtube");

/// `crest run`'s `[youtube]` table: creators' channels (YouTube Analytics)
/// and the brand's Google Ads customers (paid YouTube).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RunTable {
    #[serde(default)]
    channel_ids: Vec<String>,
    #[serde(default)]
    ads_customer_ids: Vec<String>,
    login_customer_id: Option<String>,
    max_qps: Option<f64>,
    lookback_days: Option<u32>,
}

/// YouTube as `crest run` drives it (`[youtube]` in the config).
pub const SOURCE: Source = Source {
    name: "youtube",
    hourly: false,
    site: false,
    section: |text| {
        let Some(y) = source::table::<RunTable>(text, "youtube")? else {
            return Ok(None);
        };
        if y.channel_ids.is_empty() && y.ads_customer_ids.is_empty() {
            return Err(SectionError::key(
                "youtube",
                "has neither channel_ids nor ads_customer_ids",
            ));
        }
        let flags = [
            source::ids_flag("--channel-id", &y.channel_ids),
            source::ids_flag("--ads-customer-id", &y.ads_customer_ids),
            y.login_customer_id.map(|l| format!("--login-customer-id={l}")),
        ];
        Ok(Some(Section {
            flags: flags.into_iter().flatten().collect(),
            accounts: y.channel_ids.into_iter().chain(y.ads_customer_ids).collect(),
            max_qps: y.max_qps,
            lookback_days: y.lookback_days,
        }))
    },
    extract: |flags| Box::pin(extract_with(flags)),
};
