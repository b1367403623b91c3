//! The `crest-meta` command: extract Meta (Facebook and Instagram) ad insights into raw Parquet.
//! Lives in the library so `crest run` drives the same flags, checks and
//! defaults from its config (`extract_with`).

use crate::{account_digits, MetaConfig, MetaSource, DEFAULT_API_VERSION, DEFAULT_BASE_URL, DEFAULT_CONVERSION_ACTION};
use clap::{Args, Parser, Subcommand};
use crest_core::cli::{self, ExtractArgs, GlobalArgs, Report};
use crest_core::extract::{run_extract, ExtractPlan};
use crest_core::http::{ApiClient, RetryPolicy};
use crest_core::manifest::RunManifest;
use crest_core::source::{self, Section, SectionError, Source};
use crest_core::storage::Location;
use crest_core::{Error, Result, Secret};
use std::time::Duration;

const EXAMPLES: &str = "\
Examples:
  # Daily insights for January, Instagram and Facebook told apart, every window kept
  export META_ACCESS_TOKEN=...   # or META_ACCESS_TOKEN_FILE=/run/secrets/meta
  crest-meta extract --account-id act_879895805896151 --start 2026-01-01 --end 2026-01-31 --out ./crest-out

  # Scheduled (Airflow): incremental with a 28-day lookback, JSON logs
  crest-meta --log-format json extract --account-id act_879895805896151 --start {{ ds }} --end {{ ds }} \\
      --out s3://bucket/crest --state s3://bucket/crest/_state/meta-879895805896151.json

  # Count purchases as the pixel reports them, in 7-day click and 1-day view windows only
  crest-meta extract --account-id act_879895805896151 --start 2026-01-01 --end 2026-01-31 --out ./crest-out \\
      --conversion-action offsite_conversion.fb_pixel_purchase --attribution-windows 7d_click,1d_view

  # Check the token and account ids, write nothing
  crest-meta check --account-id act_879895805896151

Environment:
  META_ACCESS_TOKEN        access token (or META_ACCESS_TOKEN_FILE: a file holding it)
  CREST_META_BASE_URL      Graph API base URL (default https://graph.facebook.com)
  CREST_LOG                log level filter (default info)

Exit codes: 0 ok, 2 usage or config (also a retired --api-version), 3 auth (token expired or invalid,
account not readable), 4 Meta API error after retries, 5 storage.";

#[derive(Parser)]
#[command(name = "crest-meta", version, about = "Extract Meta (Facebook and Instagram) ad insights into Parquet", after_help = EXAMPLES)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Check the access token and ad account ids (no data written).
    Check(CheckArgs),
    /// Extract ad insights into {out}/raw/meta/ad_daily/date=YYYY-MM-DD/.
    Extract(Box<MetaExtractArgs>),
}

#[derive(Args)]
pub struct CheckArgs {
    /// Ad account id, act_… or digits (repeatable, or comma separated).
    #[arg(long = "account-id", required = true, value_delimiter = ',', value_name = "ID")]
    account_ids: Vec<String>,
    /// Graph API version.
    #[arg(long, default_value = DEFAULT_API_VERSION)]
    api_version: String,
}

#[derive(Args)]
pub struct MetaExtractArgs {
    /// Ad account id, act_… or digits (repeatable, or comma separated).
    #[arg(long = "account-id", required = true, value_delimiter = ',', value_name = "ID")]
    account_ids: Vec<String>,
    #[command(flatten)]
    common: ExtractArgs,
    /// Graph API version.
    #[arg(long, default_value = DEFAULT_API_VERSION)]
    api_version: String,
    /// Attribution windows requested and kept, one column pair each (1d_click, 7d_click, 28d_click, 1d_view).
    #[arg(long, value_delimiter = ',', default_value = "1d_click,7d_click,28d_click,1d_view")]
    attribution_windows: Vec<String>,
    /// The one action_type counted as a conversion and its value (overlapping
    /// purchase types are never summed).
    #[arg(long, default_value = DEFAULT_CONVERSION_ACTION, value_name = "ACTION_TYPE")]
    conversion_action: String,
    /// Breakdown by publisher platform (instagram, facebook, …): on unless `none`.
    #[arg(long, default_value = "publisher_platform", value_parser = ["publisher_platform", "none"])]
    breakdown: String,
    /// Async insights jobs in flight at once (fewer as Meta's insights throttle fills).
    #[arg(long, default_value_t = 4, value_name = "N")]
    max_jobs: usize,
    /// First delay between job status polls; grows 1.5× up to 10 s.
    #[arg(long, default_value_t = 500, value_name = "MS")]
    poll_initial_ms: u64,
    /// A job whose progress does not move for this long is split and run again.
    #[arg(long, default_value_t = 600.0, value_name = "SECS")]
    job_stall_secs: f64,
    /// Rows per results page.
    #[arg(long, default_value_t = 500, value_name = "N")]
    page_limit: u32,
}

/// Meta's budgets are per hour and per account; the usage headers do the fine pacing.
const DEFAULT_QPS: f64 = 10.0;
/// Meta restates conversions for up to 28 days.
const DEFAULT_LOOKBACK_DAYS: u32 = 28;

fn token() -> Result<Secret> {
    Secret::from_env("META_ACCESS_TOKEN")
}

fn base_url() -> Result<url::Url> {
    cli::env_base_url("CREST_META_BASE_URL", DEFAULT_BASE_URL)
}

fn accounts(raw: &[String]) -> Result<Vec<String>> {
    let out = cli::account_ids(raw, account_digits)?;
    if out.is_empty() {
        return Err(Error::Config("give at least one --account-id".into()));
    }
    Ok(out)
}

fn config(api_version: &str, windows: Vec<String>, conversion_action: String) -> Result<MetaConfig> {
    Ok(MetaConfig {
        base_url: base_url()?,
        token: token()?,
        api_version: api_version.trim().to_string(),
        windows,
        conversion_action,
        by_platform: true,
        page_limit: 500,
        max_jobs: 4,
        poll_initial: Duration::from_millis(500),
        poll_max: Duration::from_secs(10),
        stall_after: Duration::from_secs(600),
    })
}

async fn check(args: CheckArgs) -> Result<()> {
    let ids = accounts(&args.account_ids)?;
    let windows = vec!["7d_click".to_string()];
    let policy = RetryPolicy::check(30.0);
    let source = MetaSource::new(
        config(&args.api_version, windows, DEFAULT_CONVERSION_ACTION.into())?,
        ApiClient::new(policy, Some(DEFAULT_QPS))?,
    )?;
    for id in ids {
        let info = source.account_info(&id).await?;
        println!(
            "ok  ad account act_{id}  {}  currency {}  timezone {}",
            info.name.as_deref().unwrap_or("-"),
            info.currency,
            info.timezone_name
        );
    }
    Ok(())
}

async fn extract(args: MetaExtractArgs, report: Report) -> Result<Vec<RunManifest>> {
    let ids = accounts(&args.account_ids)?;
    let range = args.common.range()?;
    let policy = args.common.retry_policy()?;
    let windows: Vec<String> = args
        .attribution_windows
        .iter()
        .map(|w| w.trim().to_string())
        .filter(|w| !w.is_empty())
        .collect();
    let action = args.conversion_action.trim().to_string();
    if action.is_empty()
        || !action
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    {
        return Err(Error::Config(format!(
            "--conversion-action '{action}' is not a Meta action_type"
        )));
    }
    if args.max_jobs == 0 || args.page_limit == 0 {
        return Err(Error::Config("--max-jobs and --page-limit must be at least 1".into()));
    }
    if !(args.job_stall_secs.is_finite() && args.job_stall_secs > 0.0) {
        return Err(Error::Config("--job-stall-secs must be a positive number".into()));
    }
    let mut cfg = config(&args.api_version, windows.clone(), action.clone())?;
    cfg.by_platform = args.breakdown == "publisher_platform";
    cfg.page_limit = args.page_limit;
    cfg.max_jobs = args.max_jobs;
    cfg.poll_initial = Duration::from_millis(args.poll_initial_ms.max(1));
    cfg.stall_after = Duration::try_from_secs_f64(args.job_stall_secs)
        .ok()
        .filter(|d| !d.is_zero() && *d <= Duration::from_secs(86_400))
        .ok_or_else(|| Error::Config("--job-stall-secs must be a positive number of seconds, at most 86400".into()))?;
    let out = Location::parse(&args.common.out)?;
    let state = args.common.state_store().await?;
    let source = MetaSource::new(
        cfg,
        ApiClient::new(policy, Some(args.common.max_qps.unwrap_or(DEFAULT_QPS)))?,
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
            "api_version": args.api_version,
            "attribution_windows": windows,
            "conversion_action": action,
            "breakdown": args.breakdown,
        }),
    };
    let manifest = run_extract(&source, plan, &report.progress("meta")).await?;
    report.summary(&manifest, "ad account(s)", range, &args.common.out);
    Ok(vec![manifest])
}

crest_core::connector_entry_points!("crest-meta");

/// `crest run`'s `[meta]` table.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RunTable {
    account_ids: Vec<String>,
    max_qps: Option<f64>,
    lookback_days: Option<u32>,
    /// Poll interval of the async report jobs (the sandbox finishes fast).
    poll_initial_ms: Option<u64>,
}

/// Meta as `crest run` drives it (`[meta]` in the config).
pub const SOURCE: Source = Source {
    name: "meta",
    hourly: false,
    site: false,
    section: |text| {
        let Some(m) = source::table::<RunTable>(text, "meta")? else {
            return Ok(None);
        };
        if m.account_ids.is_empty() {
            return Err(SectionError::key(
                "meta.account_ids",
                "is empty: list at least one ad account id",
            ));
        }
        let mut flags: Vec<String> = source::ids_flag("--account-id", &m.account_ids).into_iter().collect();
        flags.extend(m.poll_initial_ms.map(|ms| format!("--poll-initial-ms={ms}")));
        Ok(Some(Section {
            flags,
            accounts: m.account_ids,
            max_qps: m.max_qps,
            lookback_days: m.lookback_days,
        }))
    },
    extract: |flags| Box::pin(extract_with(flags)),
};
