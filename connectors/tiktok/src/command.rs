//! The `crest-tiktok` command: extract TikTok ad reports into raw Parquet.
//! Lives in the library so `crest run` drives the same flags, checks and
//! defaults from its config (`extract_with`).

use crate::schema::DEFAULT_METRICS;
use crate::{Granularity, Level, TikTokConfig, TikTokSource, DEFAULT_BASE_URL};
use clap::{Args, Parser, Subcommand};
use crest_core::cli::{self, ExtractArgs, GlobalArgs, Report};
use crest_core::extract::{run_extract, ExtractPlan};
use crest_core::http::{ApiClient, RetryPolicy};
use crest_core::manifest::RunManifest;
use crest_core::source::{self, Section, SectionError, Source};
use crest_core::storage::Location;
use crest_core::{Error, Result, Secret};

const EXAMPLES: &str = "\
Examples:
  # Daily ad-level report for January into a local folder
  export TIKTOK_ACCESS_TOKEN=...   # or TIKTOK_ACCESS_TOKEN_FILE=/run/secrets/tiktok
  crest-tiktok extract --advertiser-id 7265296963772121252 --start 2026-01-01 --end 2026-01-31 --out ./crest-out

  # Scheduled (Airflow): the data interval, incremental state, JSON logs
  crest-tiktok --log-format json extract --advertiser-id 7265296963772121252 \\
      --start {{ ds }} --end {{ ds }} --out s3://bucket/crest --state s3://bucket/crest/_state/tiktok-7265296963772121252.json

  # Hourly, with extra metrics
  crest-tiktok extract --advertiser-id 7265296963772121252 --granularity hour --metrics video_views_p100,frequency \\
      --start 2026-01-30 --end 2026-01-31 --out ./crest-out

  # Check the token and advertiser ids, write nothing
  crest-tiktok check --advertiser-id 7265296963772121252

Environment:
  TIKTOK_ACCESS_TOKEN      access token (or TIKTOK_ACCESS_TOKEN_FILE: a file holding it)
  CREST_TIKTOK_BASE_URL    API base URL (default https://business-api.tiktok.com)
  CREST_LOG                log level filter (default info)

Exit codes: 0 ok, 2 usage or config, 3 auth, 4 TikTok API error after retries, 5 storage.";

#[derive(Parser)]
#[command(
    name = "crest-tiktok",
    version,
    about = "Extract TikTok Business API reports (ads, creators' landing URLs, attribution windows) into Parquet",
    after_help = EXAMPLES
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Check the access token and advertiser ids (no data written).
    Check(CheckArgs),
    /// Extract a report into {out}/raw/tiktok/{level}_{daily|hourly}/date=YYYY-MM-DD/.
    Extract(Box<TikTokExtractArgs>),
}

#[derive(Args)]
pub struct CheckArgs {
    /// Advertiser id (repeatable, or comma separated).
    #[arg(long = "advertiser-id", required = true, value_delimiter = ',', value_name = "ID")]
    advertiser_ids: Vec<String>,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    timeout_secs: f64,
}

#[derive(Args)]
pub struct TikTokExtractArgs {
    /// Advertiser id (repeatable, or comma separated).
    #[arg(long = "advertiser-id", required = true, value_delimiter = ',', value_name = "ID")]
    advertiser_ids: Vec<String>,
    #[command(flatten)]
    common: ExtractArgs,
    /// Report granularity: day (slices of up to 30 days) or hour (one day per query).
    #[arg(long, value_enum, default_value_t = Granularity::Day)]
    granularity: Granularity,
    /// Report level.
    #[arg(long, value_enum, default_value_t = Level::Ad)]
    level: Level,
    /// Metrics beyond the default set (comma separated TikTok metric names).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    metrics: Vec<String>,
    /// Rows per report page (TikTok serves at most 1000).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    page_size: u64,
}

/// TikTok's documented budget is about 10 requests per second per app.
const DEFAULT_QPS: f64 = 10.0;
/// TikTok restates conversions for about a week.
const DEFAULT_LOOKBACK_DAYS: u32 = 7;

fn token() -> Result<Secret> {
    Secret::from_env("TIKTOK_ACCESS_TOKEN")
}

fn base_url() -> Result<url::Url> {
    cli::env_base_url("CREST_TIKTOK_BASE_URL", DEFAULT_BASE_URL)
}

fn validate_ids(ids: &[String]) -> Result<Vec<String>> {
    let out = cli::account_ids(ids, |id| match id.chars().all(|c| c.is_ascii_digit()) {
        true => Ok(id.to_string()),
        false => Err(Error::Config(format!(
            "--advertiser-id '{id}' is not a TikTok advertiser id (digits only)"
        ))),
    })?;
    if out.is_empty() {
        return Err(Error::Config("give at least one --advertiser-id".into()));
    }
    Ok(out)
}

async fn check(args: CheckArgs) -> Result<()> {
    let ids = validate_ids(&args.advertiser_ids)?;
    let policy = RetryPolicy::check(args.timeout_secs);
    let source = TikTokSource::new(
        TikTokConfig {
            base_url: base_url()?,
            token: token()?,
            level: Level::Advertiser,
            granularity: Granularity::Day,
            metrics: vec![],
            page_size: 1000,
            concurrency: 1,
        },
        ApiClient::new(policy, Some(DEFAULT_QPS))?,
    )?;
    for info in source.advertiser_info(&ids).await? {
        println!(
            "ok  advertiser {}  {}  currency {}  timezone {}",
            info.advertiser_id.as_str(),
            info.name.as_deref().unwrap_or("-"),
            info.currency,
            info.timezone
        );
    }
    Ok(())
}

async fn extract(args: TikTokExtractArgs, report: Report) -> Result<Vec<RunManifest>> {
    let ids = validate_ids(&args.advertiser_ids)?;
    let range = args.common.range()?;
    let policy = args.common.retry_policy()?;
    let base_url = base_url()?;
    let token = token()?;
    let mut metrics: Vec<String> = DEFAULT_METRICS.iter().map(|m| m.to_string()).collect();
    for m in args.metrics.iter().map(|m| m.trim()).filter(|m| !m.is_empty()) {
        if !m.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::Config(format!("--metrics: '{m}' is not a TikTok metric name")));
        }
        if !metrics.iter().any(|x| x == m) {
            metrics.push(m.to_string());
        }
    }
    let out = Location::parse(&args.common.out)?;
    let state = args.common.state_store().await?;
    let max_qps = args.common.max_qps.unwrap_or(DEFAULT_QPS);
    let source = TikTokSource::new(
        TikTokConfig {
            base_url,
            token,
            level: args.level,
            granularity: args.granularity,
            metrics: metrics.clone(),
            page_size: args.page_size,
            concurrency: args.common.concurrency,
        },
        ApiClient::new(policy, Some(max_qps))?,
    )?;
    let plan = ExtractPlan {
        wait_for_lease: args.common.wait_for_lease(),
        out,
        accounts: ids,
        range,
        state,
        lookback_days: args.common.lookback_days,
        default_lookback_days: DEFAULT_LOOKBACK_DAYS,
        options: serde_json::json!({
            "level": format!("{:?}", args.level).to_lowercase(),
            "granularity": format!("{:?}", args.granularity).to_lowercase(),
            "metrics": metrics,
            "page_size": args.page_size,
        }),
    };
    let manifest = run_extract(&source, plan, &report.progress("tiktok")).await?;
    tracing::info!(
        run_id = %manifest.run_id, rows = manifest.rows, files = manifest.files.len(),
        api_calls = manifest.api.api_calls, retries = manifest.api.retries, elapsed_ms = manifest.elapsed_ms,
        "extract finished"
    );
    report.summary(&manifest, "advertiser(s)", range, &args.common.out);
    Ok(vec![manifest])
}

crest_core::connector_entry_points!("crest-tiktok");

/// `crest run`'s `[tiktok]` table.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RunTable {
    advertiser_ids: Vec<String>,
    max_qps: Option<f64>,
    lookback_days: Option<u32>,
}

/// TikTok as `crest run` drives it (`[tiktok]` in the config).
pub const SOURCE: Source = Source {
    name: "tiktok",
    hourly: true,
    site: false,
    section: |text| {
        let Some(t) = source::table::<RunTable>(text, "tiktok")? else {
            return Ok(None);
        };
        if t.advertiser_ids.is_empty() {
            return Err(SectionError::key(
                "tiktok.advertiser_ids",
                "is empty: list at least one advertiser id",
            ));
        }
        Ok(Some(Section {
            flags: source::ids_flag("--advertiser-id", &t.advertiser_ids)
                .into_iter()
                .collect(),
            accounts: t.advertiser_ids,
            max_qps: t.max_qps,
            lookback_days: t.lookback_days,
        }))
    },
    extract: |flags| Box::pin(extract_with(flags)),
};
