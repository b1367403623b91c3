//! `crest-youtube`: creators' organic YouTube videos into raw Parquet.

use clap::{Args, Parser, Subcommand};
use crest_core::cli::{self, ExtractArgs, GlobalArgs, Progress};
use crest_core::extract::{run_extract, ExtractPlan};
use crest_core::http::{ApiClient, RetryPolicy};
use crest_core::oauth::TokenSource;
use crest_core::state::StateStore;
use crest_core::storage::Location;
use crest_core::{Error, Result, Secret};
use crest_youtube::{
    YouTubeConfig, YouTubeSource, DEFAULT_ANALYTICS_BASE_URL, DEFAULT_DATA_BASE_URL, DEFAULT_OAUTH_URL, METRICS,
};
use std::process::ExitCode;
use std::time::Duration;

const EXAMPLES: &str = "\
Examples:
  # Daily per-video numbers for two creators' channels (each authorized crest through OAuth)
  export GOOGLE_CLIENT_ID=... GOOGLE_CLIENT_SECRET=... GOOGLE_REFRESH_TOKEN=...
  crest-youtube extract --channel-id UCxxxxxxxxxxxxxxxxxxxxxx --channel-id UCyyyyyyyyyyyyyyyyyyyyyy \\
      --start 2026-01-01 --end 2026-01-31 --out ./crest-out

  # Scheduled: incremental, re-reading the last days Analytics had not served yet
  crest-youtube --log-format json extract --channel-id UCxxxxxxxxxxxxxxxxxxxxxx --start {{ ds }} --end {{ ds }} \\
      --out s3://bucket/crest --state s3://bucket/crest/_state/youtube-UCxxxxxxxxxxxxxxxxxxxxxx.json

  # Check the credentials and every channel, write nothing
  crest-youtube check --channel-id UCxxxxxxxxxxxxxxxxxxxxxx

Environment:
  GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET, GOOGLE_REFRESH_TOKEN   OAuth client and the creator's refresh token
                                                                (each also as VAR_FILE: a file holding it)
  CREST_GOOGLE_OAUTH_URL             token endpoint (default https://oauth2.googleapis.com/token)
  CREST_YOUTUBE_ANALYTICS_BASE_URL   YouTube Analytics (default https://youtubeanalytics.googleapis.com)
  CREST_YOUTUBE_DATA_BASE_URL        YouTube Data API (default https://www.googleapis.com)

Exit codes: 0 ok, 2 usage or config, 3 auth (refresh token refused: re-authorize), 4 API error after retries
(also a spent daily quota), 5 storage.";

#[derive(Parser)]
#[command(name = "crest-youtube", version, about = "Extract creators' organic YouTube video metrics (YouTube Analytics) into Parquet", after_help = EXAMPLES)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check the credentials and each channel (no data written).
    Check(CheckArgs),
    /// Extract daily per-video metrics into {out}/raw/youtube/video_daily/date=YYYY-MM-DD/.
    Extract(Box<YouTubeExtractArgs>),
}

#[derive(Args)]
struct CheckArgs {
    /// A creator's channel id, UC… (repeatable, or comma separated).
    #[arg(long = "channel-id", required = true, value_delimiter = ',', value_name = "ID")]
    channel_ids: Vec<String>,
}

#[derive(Args)]
struct YouTubeExtractArgs {
    /// A creator's channel id, UC… (repeatable, or comma separated).
    #[arg(long = "channel-id", required = true, value_delimiter = ',', value_name = "ID")]
    channel_ids: Vec<String>,
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

fn env_url(var: &str, default: &str) -> Result<url::Url> {
    let raw = std::env::var(var).unwrap_or_else(|_| default.to_string());
    url::Url::parse(raw.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| Error::Config(format!("{var} '{raw}' is not an http(s) URL; e.g. {default}")))
}

fn channels(raw: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for c in raw.iter().map(|c| c.trim()).filter(|c| !c.is_empty()) {
        if !(c.starts_with("UC")
            && c.len() == 24
            && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_'))
        {
            return Err(Error::Config(format!(
                "--channel-id '{c}' is not a YouTube channel id (UC followed by 22 characters)"
            )));
        }
        if !out.iter().any(|o| o == c) {
            out.push(c.to_string());
        }
    }
    if out.is_empty() {
        return Err(Error::Config("give at least one --channel-id".into()));
    }
    Ok(out)
}

fn source(metrics: Vec<String>, page_size: usize, policy: RetryPolicy, max_qps: f64) -> Result<YouTubeSource> {
    let client_id = std::env::var("GOOGLE_CLIENT_ID")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| Error::Auth("GOOGLE_CLIENT_ID is not set: export the OAuth client id".into()))?;
    let tokens = TokenSource::new(
        env_url("CREST_GOOGLE_OAUTH_URL", DEFAULT_OAUTH_URL)?.as_str(),
        client_id.trim(),
        Secret::from_env("GOOGLE_CLIENT_SECRET")?,
        Secret::from_env("GOOGLE_REFRESH_TOKEN")?,
        "GOOGLE_REFRESH_TOKEN",
        RetryPolicy {
            max_attempts: 3,
            ..policy.clone()
        },
    )?;
    let config = YouTubeConfig {
        analytics_base: env_url("CREST_YOUTUBE_ANALYTICS_BASE_URL", DEFAULT_ANALYTICS_BASE_URL)?,
        data_base: env_url("CREST_YOUTUBE_DATA_BASE_URL", DEFAULT_DATA_BASE_URL)?,
        metrics,
        page_size,
    };
    YouTubeSource::new(config, ApiClient::new(policy, Some(max_qps))?, tokens)
}

async fn check(args: CheckArgs) -> Result<()> {
    let ids = channels(&args.channel_ids)?;
    let policy = RetryPolicy {
        max_attempts: 3,
        timeout: Duration::from_secs(30),
        ..RetryPolicy::default()
    };
    let metrics = vec!["views".to_string()];
    let source = source(metrics, 1, policy, DEFAULT_QPS)?;
    let yesterday = chrono::Utc::now().date_naive() - chrono::Days::new(3);
    for id in ids {
        source.check_channel(&id, yesterday).await?;
        println!("ok  channel {id}  (credentials valid, report readable)");
    }
    Ok(())
}

async fn extract(args: YouTubeExtractArgs, progress: &Progress) -> Result<()> {
    let ids = channels(&args.channel_ids)?;
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
    let state = match &args.common.state {
        Some(url) => Some(StateStore::open(url).await?),
        None => None,
    };
    let source = source(
        metrics.clone(),
        args.page_size,
        policy,
        args.common.max_qps.unwrap_or(DEFAULT_QPS),
    )?;
    let plan = ExtractPlan {
        out,
        accounts: ids,
        range,
        state,
        lookback_days: args.common.lookback_days.unwrap_or(DEFAULT_LOOKBACK_DAYS),
        options: serde_json::json!({"metrics": metrics, "page_size": args.page_size}),
    };
    let manifest = run_extract(&source, plan, progress).await?;
    cli::print_extract_summary(&manifest, "channel(s)", range, &args.common.out);
    Ok(())
}

fn main() -> ExitCode {
    let cli: Cli = match cli::parse() {
        Ok(c) => c,
        Err(code) => return code,
    };
    cli::init_logging(cli.global.log_format);
    let format = cli.global.log_format;
    cli::run(async {
        match cli.command {
            Command::Check(args) => check(args).await,
            Command::Extract(args) => extract(*args, &Progress::new(format, "youtube")).await,
        }
    })
}
