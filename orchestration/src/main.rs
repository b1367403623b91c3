//! `crest`: the stages that are not per platform: `transform`, `load`,
//! `query`, the decision layer's `views`, `benchmarks` and `alerts`, and
//! `run`, which drives every stage from one config.

mod alerts;
mod attribute;
mod demo;
mod lake;
mod links;
mod lookml;
mod render;
mod run;
mod sources;
mod targets;

use clap::{Args, Parser, Subcommand};
use crest_core::cli::{self, GlobalArgs};
use crest_core::storage::{read_file, Location};
use crest_core::window::{parse_date, DateRange};
use crest_core::{Error, Result};
use crest_transforms::{
    run_transform, FxRates, Granularity, Roster, StandardWindow, TransformConfig, TransformSummary,
};
use render::render;
use std::process::ExitCode;

const EXAMPLES: &str = "\
Examples:
  # Raw TikTok reports in ./crest-out → canonical creator_performance, with a roster and fx rates
  crest transform --input ./crest-out --start 2026-01-01 --end 2026-01-31 \\
      --roster roster.csv --fx fx.csv --reporting-currency USD

  # From and to an object store, a 28-day click standard window
  crest --log-format json transform --input s3://bucket/crest --start 2026-01-01 --end 2026-01-01 \\
      --roster s3://bucket/config/roster.parquet --standard-window 28d_click

  # Load the newest transform run into the embedded lake (./crest-lake), then ask it
  crest load --input ./crest-out
  crest query \"SELECT platform, SUM(spend_reporting) AS spend FROM creator_performance GROUP BY platform\"
  crest query --format csv \"SELECT * FROM v_creator_daily WHERE date = '2026-01-31'\" > day.csv

  # A lake on an object store; re-load a run on purpose
  crest load --input s3://bucket/crest/_runs/20260201T020000Z-1a2b3c4d.json --target lake:s3://bucket/lake --force

Exit codes: 0 ok, 2 usage or bad input (roster, fx, empty range, target, SQL), 5 storage,
6 reconciliation failed or input that does not fit the target.";

#[derive(Parser)]
#[command(name = "crest", version, about = "crest: creator-marketing ETL stages that span platforms", after_help = EXAMPLES)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Raw platform reports → the canonical schema (creator_performance, attribution_windows, quarantine).
    Transform(TransformArgs),
    /// A transform run's canonical tables → a target, replacing the dates it restates.
    Load(LoadArgs),
    /// Run SQL against a target, its tables and views registered.
    Query(QueryArgs),
    /// The decision layer's views (tiers, reallocation): apply them to a target, or list them.
    #[command(subcommand, after_help = VIEWS_EXAMPLES)]
    Views(ViewsCommand),
    /// The CTR benchmarks and CPC ceilings tiers are judged against.
    #[command(subcommand, after_help = BENCHMARKS_EXAMPLES)]
    Benchmarks(BenchmarksCommand),
    /// Evaluate the tiers and send what changed since the last evaluation to Slack and/or e-mail.
    #[command(after_help = ALERTS_EXAMPLES)]
    Alerts(AlertsArgs),
    /// Every stage for a whole program from one config: extract → transform → load → views → alerts.
    #[command(after_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// The brand's site conversions (crest-ga4 extract) credited to creators under five models → creator_attribution.
    #[command(after_help = ATTRIBUTE_EXAMPLES)]
    Attribute(AttributeArgs),
    /// Creators' tracked links: issue one per creator × platform before launch, audit the ads' links during the flight.
    #[command(subcommand, after_help = LINKS_EXAMPLES)]
    Links(LinksCommand),
    /// The embedded lake's Delta tables: commit history, compaction, vacuum, migration.
    #[command(subcommand, after_help = lake::EXAMPLES)]
    Lake(lake::LakeCommand),
    /// The whole pipeline with no credentials: the platform sandbox in-process, a creator
    /// program on TikTok, Meta and YouTube, the tier board printed and written as HTML.
    #[command(after_help = DEMO_EXAMPLES)]
    Demo(DemoArgs),
}

const LINKS_EXAMPLES: &str = "\
Examples:
  crest links issue --roster roster.csv --campaign spring26 --base-url https://shop.example.com/spring
  crest links issue --roster roster.csv --campaign spring26 --base-url \"https://shop.example.com/p/42?ref=creators\" \\
      --content reel --term launch10 --platforms tiktok,meta --out links.csv

Each link: the base URL with its own parameters kept, then utm_source = the creator's roster
id, utm_medium = the platform, utm_campaign, and utm_content / utm_term when given; lower case,
percent-encoded. The CSV (long_url, title, creator_id, handle, platform, utm_*) imports into a
link shortener in bulk. A base URL that is not http(s), or that already carries utm_source,
utm_medium or a different campaign, content or term, is refused (exit 2) and nothing is written.

  crest links audit --input ./crest-out --issued links.csv     # after a transform and load, during the flight
  crest links audit --input ./crest-out --target bigquery://my-project/crest --json
  crest links audit --input ./crest-out --roster roster.csv     # also Spark Ads carrying another creator's link

The audit reads a transform run's paid rows (the creator as the transform resolved it; with
--roster also the run's raw TikTok reports, for Spark Ads identities) and lists
every creator × platform whose ads need attention, with the spend and clicks lost to attribution,
and appends the audit to the target's utm_hygiene table (v_utm_hygiene: the latest audit).

  crest links audit --input ./crest-out --issued links.csv --site ./crest-out --roster roster.csv --dry-run

With --site (a crest-ga4 extract output) the site's sessions of the run's dates are audited too:
sessions through links that name no creator (by utm_source), a creator's sessions through a
medium crest did not issue them a link for, issued links no session came through.";

const ATTRIBUTE_EXAMPLES: &str = "\
Examples:
  crest-ga4 extract --project my-gcp-project --property-id 123456789 --start 2026-10-01 --end 2026-11-30 --out ./crest-out
  crest attribute --input ./crest-out --roster roster.csv --start 2026-11-01 --end 2026-11-30
  crest load --input ./crest-out/attribution
  crest query \"SELECT * FROM v_attribution_compare ORDER BY site_last DESC\"

  crest attribute --input s3://bucket/crest --out s3://bucket/crest/attribution --roster roster.csv \\
      --start {{ ds }} --end {{ ds }} --models last,linear --lookback-days 7

Per conversion, the user's sessions in the lookback window before it (GA4's collected campaign,
else the landing page's UTMs) are its touches. Models: first (click), last (non-direct click),
linear, position (40/20/40; 50/50 for two touches), time_decay (half-life 7 days). Direct
sessions are never credited; a path of only direct sessions leaves the conversion unattributed;
sessions whose UTMs name no creator keep their share unattributed (creator_id null). Each
conversion's credits sum to exactly 1 and its revenue shares to its revenue. A transaction GA4
logged twice counts once. Sessions are read from --start minus the lookback: extract that far back.
Writes {out}/canonical/creator_attribution/date=…/ and {out}/_runs/{run_id}.json (stage
attribute), replacing what earlier runs wrote for these dates; --out defaults to {input}/attribution.";

#[derive(Args)]
struct AttributeArgs {
    /// Where crest-ga4 extract wrote (its --out).
    #[arg(long, value_name = "URL")]
    input: String,
    /// Where creator_attribution goes (default: {input}/attribution).
    #[arg(long, value_name = "URL")]
    out: Option<String>,
    /// First conversion date.
    #[arg(long, value_parser = parse_date, value_name = "DATE")]
    start: chrono::NaiveDate,
    /// Last conversion date.
    #[arg(long, value_parser = parse_date, value_name = "DATE")]
    end: chrono::NaiveDate,
    /// The creator roster (CSV or Parquet, path or URL): creator_id, handle, utm_aliases.
    #[arg(long, value_name = "FILE")]
    roster: String,
    /// Models (default: all five).
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    models: Vec<String>,
    /// Sessions up to this many days before a conversion are its touches.
    #[arg(long, default_value_t = 30, value_name = "DAYS")]
    lookback_days: u32,
    /// Time decay: a touch this many days before the conversion counts half as much.
    #[arg(long, default_value_t = 7.0, value_name = "DAYS")]
    half_life_days: f64,
    /// Wait up to SECS for another attribution into the same --out to finish.
    #[arg(long, default_value_t = 0, value_name = "SECS")]
    wait_for_lease: u64,
    /// Events held in memory at once: users are attributed in groups that stay below it.
    #[arg(long, default_value_t = crest_transforms::attribution::run::DEFAULT_MAX_EVENTS_IN_MEMORY, value_name = "N")]
    max_events_in_memory: u64,
}

#[derive(Subcommand)]
enum LinksCommand {
    /// One tracked link per creator × platform, as CSV.
    Issue(LinksIssueArgs),
    /// Per creator × platform: paid ads without UTMs, with UTMs that resolve to no creator,
    /// with another platform's link, (with --roster) another creator's link, or (with --issued)
    /// a link crest did not issue; issued links no ad carries; the spend and clicks no creator
    /// can be credited with.
    Audit(LinksAuditArgs),
}

#[derive(Args)]
struct LinksAuditArgs {
    /// A transform run: its manifest, or the transform's output folder (its newest run).
    #[arg(long, value_name = "RUN_OR_DIR")]
    input: String,
    /// The links `crest links issue` wrote, to find links crest did not issue and issued links no ad carries.
    #[arg(long, value_name = "FILE")]
    issued: Option<String>,
    /// Every creator × platform as JSON (exact decimals) instead of the table of those that need attention.
    #[arg(long)]
    json: bool,
    /// Where the audit's rows go (utm_hygiene, read by v_utm_hygiene); it must hold the run's rows already.
    #[command(flatten)]
    target: TargetArgs,
    /// Print only; write nothing to the target.
    #[arg(long)]
    dry_run: bool,
    /// Also audit the site's sessions of the run's dates: a crest-ga4 extract output.
    #[arg(long, value_name = "URL", requires = "roster")]
    site: Option<String>,
    /// The creator roster: resolves the site's UTMs (with --site) and the creators behind
    /// TikTok Spark Ads identities, to find ads carrying another creator's link.
    #[arg(long, value_name = "FILE")]
    roster: Option<String>,
}

#[derive(Args)]
struct LinksIssueArgs {
    /// The creator roster (CSV or Parquet, path or URL): creator_id and handle.
    #[arg(long, value_name = "FILE")]
    roster: String,
    /// The campaign's code (utm_campaign).
    #[arg(long, value_name = "CODE")]
    campaign: String,
    /// The landing page every link starts from (http or https).
    #[arg(long, value_name = "URL")]
    base_url: String,
    /// The content type (utm_content), e.g. reel, story, video.
    #[arg(long, value_name = "TYPE")]
    content: Option<String>,
    /// The offer (utm_term), e.g. a discount code.
    #[arg(long, value_name = "OFFER")]
    term: Option<String>,
    /// Platforms to issue links for (default: tiktok, meta, youtube).
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    platforms: Vec<String>,
    /// Write the CSV here (path or URL) instead of printing it.
    #[arg(long, value_name = "FILE")]
    out: Option<String>,
}

const DEMO_EXAMPLES: &str = "\
Examples:
  crest demo                                    # 150 creators, 21 days, into ./crest-demo
  crest demo --creators 400 --days 45 --seed 7  # another program
  crest query --target lake:./crest-demo/lake \"SELECT * FROM v_creator_tier WHERE tier = 'red'\"

Writes ./crest-demo/lake (the embedded lake, views applied), ./crest-demo/data (raw reports,
canonical tables, run manifests), ./crest-demo/tier-board.html (open it in a browser) and the
program's inputs (roster.csv, fx.csv, benchmarks.csv). Nothing leaves this machine: the
platforms are crest's sandbox on a loopback port.";

#[derive(Args)]
struct DemoArgs {
    /// Where everything goes.
    #[arg(long, default_value = "./crest-demo", value_name = "DIR")]
    out: std::path::PathBuf,
    /// Creators in the program.
    #[arg(long, default_value_t = 150, value_name = "N")]
    creators: usize,
    /// Days of the flight, ending yesterday.
    #[arg(long, default_value_t = 21, value_name = "N")]
    days: u32,
    /// Seed of the synthetic world: the same seed, the same program.
    #[arg(long, default_value_t = 42, value_name = "N")]
    seed: u64,
}

const RUN_EXAMPLES: &str = "\
Examples:
  crest run --config crest.toml                               # the config's start and end
  crest run --config crest.toml --start 2026-01-01 --end 2026-01-31
  crest --log-format json run --config crest.toml --since-last  # scheduled: hourly to every six hours
  crest run --print-example > crest.toml                      # every key, documented

Each platform's extract keeps its state in {out}/_state/{platform}.json, so a run re-reads
the days platforms restate and a re-run after a failure resumes: committed slices are not
read again and a load of a run the target has is a no-op. Secrets come from the environment
as for each connector (TIKTOK_ACCESS_TOKEN, META_ACCESS_TOKEN, GOOGLE_CLIENT_ID, … each also
as …_FILE; CREST_SLACK_WEBHOOK_URL, CREST_SMTP_*), never from the config.
Writes {out}/_runs/{run_id}.json (stage \"run\"): rows per stage, quarantined, tiers changed,
alerts sent, elapsed per stage. Exit codes as the failing stage's, its name in the message.";

#[derive(Args)]
struct RunArgs {
    /// The program's config (TOML; see --print-example).
    #[arg(long, value_name = "FILE", required_unless_present = "print_example")]
    config: Option<String>,
    /// First date (overrides the config's `start`).
    #[arg(long, value_parser = parse_date, value_name = "DATE", conflicts_with = "since_last")]
    start: Option<chrono::NaiveDate>,
    /// Last date (overrides the config's `end`).
    #[arg(long, value_parser = parse_date, value_name = "DATE", conflicts_with = "since_last")]
    end: Option<chrono::NaiveDate>,
    /// Read what is new since the last run: today (UTC), each platform's state
    /// re-reading back to its last complete day minus its lookback.
    #[arg(long)]
    since_last: bool,
    /// Wait up to SECS for another run writing the same accounts or lake to finish
    /// (overrides the config's `wait_for_lease`; default: fail at once, exit 7).
    #[arg(long, value_name = "SECS")]
    wait_for_lease: Option<u64>,
    /// Print a documented example config and exit.
    #[arg(long)]
    print_example: bool,
}

const ALERTS_EXAMPLES: &str = "\
Examples:
  crest alerts --dry-run                      # print what would be sent, store nothing
  export CREST_SLACK_WEBHOOK_URL_FILE=/secrets/slack-webhook
  crest alerts --slack --target bigquery://my-project/crest
  crest alerts --slack --email                # every four to six hours during a flight

Slack: CREST_SLACK_WEBHOOK_URL (or …_FILE), an incoming webhook.
E-mail: CREST_SMTP_HOST, CREST_SMTP_PORT (587), CREST_SMTP_TLS (starttls|tls|none; starttls),
CREST_SMTP_USER and CREST_SMTP_PASSWORD (or …_FILE), CREST_SMTP_CA_FILE (a private CA),
CREST_ALERT_EMAIL_FROM, CREST_ALERT_EMAIL_TO (comma separated).
Exit codes: 0 sent (or nothing to send), 2 bad settings, 4 a delivery failed (the evaluation
stays undelivered and the next run sends its changes again).";

#[derive(Args)]
struct AlertsArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Send to Slack (CREST_SLACK_WEBHOOK_URL).
    #[arg(long)]
    slack: bool,
    /// Send e-mail (CREST_SMTP_HOST, CREST_ALERT_EMAIL_FROM, CREST_ALERT_EMAIL_TO, …).
    #[arg(long)]
    email: bool,
    /// Print what would be sent; store nothing, send nothing.
    #[arg(long)]
    dry_run: bool,
    /// Attempts per channel before the delivery counts as failed.
    #[arg(long, default_value_t = 5, value_name = "N")]
    delivery_attempts: usize,
    /// First wait between attempts (doubling each time).
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    retry_initial_ms: u64,
}

const VIEWS_EXAMPLES: &str = "\
Examples:
  crest views list
  crest views apply                                   # the embedded lake, ./crest-lake
  crest views apply --target bigquery://my-project/crest
  crest views lookml --out ./looker/crest           # one .view.lkml per view
  crest query \"SELECT creator_handle, platform, tier, tier_reason FROM v_creator_tier ORDER BY tier\"";

const BENCHMARKS_EXAMPLES: &str = "\
Examples:
  crest benchmarks load benchmarks/default.csv
  crest benchmarks load my-benchmarks.csv --target snowflake://acct/crest/analytics?warehouse=wh

The CSV: platform,creator_tier,ctr_benchmark,cpc_ceiling[,effective_from][,evaluation_days][,conversion_source]
(platform tiktok|meta|youtube, tier nano|micro|mid|macro, CTR a fraction: 0.012 = 1.2 %,
CPC ceiling in the reporting currency; conversion_source platform (default) or the site's
conversions under a crest attribute model: site_first|site_last|site_linear|site_position|site_time_decay). The file replaces the target's benchmarks whole;
a bad cell stops the load (exit 2) with its line and column, and nothing is replaced.";

#[derive(Subcommand)]
enum ViewsCommand {
    /// Create or replace the views on a target (lake: {lake}/views/*.sql).
    Apply(TargetArgs),
    /// Each view and its grain.
    List,
    /// Write a LookML view file per view (dimensions, sums, CTR and CPC as ratios of sums).
    Lookml {
        /// The folder of the LookML project to write into.
        #[arg(long, value_name = "DIR")]
        out: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
enum BenchmarksCommand {
    /// Replace the target's benchmarks with a CSV file's.
    Load(BenchmarksLoadArgs),
}

#[derive(Args)]
struct TargetArgs {
    /// lake:PATH_OR_URL, bigquery://PROJECT/DATASET or snowflake://ACCOUNT/DATABASE/SCHEMA.
    #[arg(long, default_value = DEFAULT_TARGET, value_name = "TARGET")]
    target: String,
}

#[derive(Args)]
struct BenchmarksLoadArgs {
    /// The benchmarks CSV (path or URL).
    #[arg(value_name = "FILE")]
    file: String,
    #[command(flatten)]
    target: TargetArgs,
}

pub(crate) const DEFAULT_TARGET: &str = "lake:./crest-lake";

#[derive(Args)]
struct LoadArgs {
    /// A transform run: its manifest (…/_runs/{run_id}.json), or the transform's output
    /// folder (its newest run is loaded).
    #[arg(long, value_name = "URL")]
    input: String,
    /// lake:PATH_OR_URL (the embedded default), bigquery://PROJECT/DATASET or
    /// snowflake://ACCOUNT/DATABASE/SCHEMA?warehouse=W&role=R.
    #[arg(long, default_value = DEFAULT_TARGET, value_name = "TARGET")]
    target: String,
    /// Load the run again even if this target has it already.
    #[arg(long)]
    force: bool,
    /// Create the dataset or schema if it does not exist (warehouses; a lake folder is always created).
    #[arg(long)]
    create: bool,
    /// Accepted from scripts of earlier crests; loads no longer wait for each other: a lake's
    /// tables take concurrent commits (Delta Lake) and the warehouses serialize their own MERGEs.
    #[arg(long, default_value_t = 0, value_name = "SECS", hide = true)]
    wait_for_lease: u64,
}

#[derive(Args)]
struct QueryArgs {
    /// The SQL (tables: creator_performance, attribution_windows, quarantine, crest_loads; views: v_…).
    sql: String,
    /// lake:PATH_OR_URL, bigquery://PROJECT/DATASET or snowflake://ACCOUNT/DATABASE/SCHEMA.
    #[arg(long, default_value = DEFAULT_TARGET, value_name = "TARGET")]
    target: String,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Read the lake as it was: a table version (see crest lake history) or a time
    /// (2026-11-30T09:00:00Z, or a date for its start in UTC). Lake only.
    #[arg(long, value_name = "VERSION|TIME")]
    as_of: Option<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Args)]
struct TransformArgs {
    /// Where the connectors wrote their raw output (path or URL).
    #[arg(long, value_name = "URL")]
    input: String,
    /// Where canonical, quarantine and the manifest go (default: --input).
    #[arg(long, value_name = "URL")]
    out: Option<String>,
    /// Wait up to SECS for another transform into the same output to finish (default: fail at once, exit 7).
    #[arg(long, default_value_t = 0, value_name = "SECS")]
    wait_for_lease: u64,
    /// First date (inclusive, YYYY-MM-DD).
    #[arg(long, value_parser = parse_date, value_name = "DATE")]
    start: chrono::NaiveDate,
    /// Last date (inclusive, YYYY-MM-DD).
    #[arg(long, value_parser = parse_date, value_name = "DATE")]
    end: chrono::NaiveDate,
    /// Creator roster, CSV or Parquet: creator_id, handle, [tiktok_handle, instagram_handle,
    /// youtube_channel_id, followers, creator_tier, disclosure_status, utm_aliases].
    #[arg(long, value_name = "FILE")]
    roster: Option<String>,
    /// Exchange rates, CSV: date,currency,rate (units of the reporting currency per unit).
    #[arg(long, value_name = "FILE")]
    fx: Option<String>,
    /// Currency of spend_reporting.
    #[arg(long, default_value = "USD", value_name = "CODE")]
    reporting_currency: String,
    /// The standard attribution window every platform is normalized to.
    #[arg(long, default_value = "7d_click,1d_view", value_name = "WINDOW")]
    standard_window: StandardWindow,
    /// Daily or hourly canonical rows (from the connectors' daily or hourly reports).
    #[arg(long, value_enum, default_value_t = GranularityArg::Day)]
    granularity: GranularityArg,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum GranularityArg {
    Day,
    Hour,
}

pub(crate) async fn read_required(what: &str, spec: &str) -> Result<Vec<u8>> {
    read_file(spec)
        .await?
        .map(|b| b.to_vec())
        .ok_or_else(|| Error::Config(format!("{what} {spec} does not exist")))
}

async fn transform(args: TransformArgs) -> Result<()> {
    let range = DateRange::new(args.start, args.end)?;
    let window = args.standard_window;
    let reporting = args.reporting_currency.trim().to_uppercase();
    let summary = transform_quiet(args).await?;
    print_summary(&summary, range, window, &reporting);
    Ok(())
}

/// The transform without its printed summary (`crest run` prints its own line).
async fn transform_quiet(args: TransformArgs) -> Result<TransformSummary> {
    let range = DateRange::new(args.start, args.end)?;
    let reporting = args.reporting_currency.trim().to_uppercase();
    if reporting.len() != 3 || !reporting.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(Error::Config(format!(
            "--reporting-currency '{reporting}' is not an ISO 4217 code, e.g. USD"
        )));
    }
    let roster = match &args.roster {
        Some(spec) => Roster::parse(spec, &read_required("--roster", spec).await?)?,
        None => {
            tracing::warn!("no --roster: every creator stays unresolved");
            Roster::empty()
        }
    };
    let fx = match &args.fx {
        Some(spec) => FxRates::parse(spec, &read_required("--fx", spec).await?, &reporting)?,
        None => FxRates::identity(&reporting),
    };
    let input = Location::parse_existing(&args.input).map_err(|e| match e {
        Error::Config(m) => Error::Config(format!("--input: {m}")),
        e => e,
    })?;
    let output = match &args.out {
        Some(o) => Location::parse(o)?,
        None => input.clone(),
    };
    let config = TransformConfig {
        input,
        output,
        range,
        granularity: match args.granularity {
            GranularityArg::Day => Granularity::Day,
            GranularityArg::Hour => Granularity::Hour,
        },
        roster,
        fx,
        standard: args.standard_window,
        wait_for_lease: std::time::Duration::from_secs(args.wait_for_lease),
    };
    let summary = run_transform(config).await?;
    tracing::info!(
        run_id = %summary.run_id, rows_in = summary.rows_in, rows_out = summary.rows_out,
        unresolved_rows = summary.unresolved_rows, missing_fx = summary.missing_fx.len(),
        elapsed_ms = summary.elapsed_ms, "transform finished"
    );
    Ok(summary)
}

fn print_summary(s: &TransformSummary, range: DateRange, window: StandardWindow, reporting: &str) {
    let list = |items: Vec<String>| {
        let more = items.len().saturating_sub(6);
        let mut shown = items.into_iter().take(6).collect::<Vec<_>>().join(", ");
        if more > 0 {
            shown.push_str(&format!(", … {more} more"));
        }
        shown
    };
    println!(
        "transform {} · {range} · standard window {window} · reporting currency {reporting}",
        s.run_id
    );
    let by_platform = list(s.rows_by_platform.iter().map(|(p, n)| format!("{p} {n}")).collect());
    println!("  rows in            {:>10}", s.rows_in);
    println!("  rows out           {:>10}   {by_platform}", s.rows_out);
    let q: u64 = s.quarantined.values().sum();
    println!(
        "  quarantined        {q:>10}   {}",
        list(s.quarantined.iter().map(|(r, n)| format!("{r} {n}")).collect())
    );
    println!("  attribution rows   {:>10}", s.attribution_rows);
    println!(
        "  unresolved creator {:>10}   rows, kept with a null creator_id: {}",
        s.unresolved_rows,
        list(s.unresolved.iter().cloned().collect())
    );
    println!(
        "  missing fx rates   {:>10}   spend_reporting left null: {}",
        s.missing_fx.len(),
        list(s.missing_fx.iter().map(|(d, c)| format!("{c} {d}")).collect())
    );
    println!("  reconciled: raw = canonical + quarantine for every platform × account × date");
    let per_sec = |ms: f64| if ms > 0.0 { s.rows_in as f64 / ms * 1e3 } else { 0.0 };
    println!(
        "  {:.1}s: read {:.0} ms, map + checks {:.0} ms ({:.0} rows/s), write {:.0} ms",
        s.elapsed_ms as f64 / 1000.0,
        s.timings.read_ms,
        s.timings.map_ms,
        per_sec(s.timings.map_ms),
        s.timings.write_ms
    );
    println!("  manifest {}", s.manifest);
}

async fn load(args: LoadArgs) -> Result<()> {
    let report = load_quiet(args).await?;
    println!("{}", report.line);
    for l in &report.details {
        println!("{l}");
    }
    Ok(())
}

/// What a load did: its one-line outcome, the per-table lines and, for the
/// run summary, the same as JSON.
struct LoadReport {
    line: String,
    details: Vec<String>,
    detail: serde_json::Value,
}

async fn load_quiet(args: LoadArgs) -> Result<LoadReport> {
    let dest = targets::open(&args.target, false).await?;
    let plan = crest_core::load::plan(&args.input).await?;
    let schemas = crest_core::load::file_schemas(&plan, &crest_transforms::canonical::tables()).await?;
    let started = std::time::Instant::now();
    let options = crest_core::load::LoadOptions {
        force: args.force,
        create: args.create,
        wait_for_lease: std::time::Duration::from_secs(args.wait_for_lease),
    };
    let outcome = dest.load(&plan, &schemas, options).await?;
    let target = dest.describe();
    let mut details = Vec::new();
    match outcome {
        crest_core::load::LoadOutcome::AlreadyLoaded(r) => Ok(LoadReport {
            line: format!(
                "run {} is already in {target} (load {} at {}): nothing to do; --force loads it again",
                plan.run_id,
                r.load_id,
                r.loaded_at.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            details,
            detail: serde_json::json!({"transform_run_id": plan.run_id, "already_loaded": r.load_id}),
        }),
        crest_core::load::LoadOutcome::Loaded(r) => {
            let line = format!(
                "loaded run {} ({}) into {target} in {:.1}s; load {}",
                plan.run_id,
                plan.range,
                started.elapsed().as_secs_f64(),
                r.load_id
            );
            for t in &r.tables {
                // The same as an event, for JSON logs (Airflow).
                tracing::info!(
                    run_id = %plan.run_id,
                    load_id = %r.load_id,
                    table = %t.table,
                    inserted = t.inserted,
                    replaced = t.replaced,
                    replaced_before = t.replaced_old,
                    unchanged = t.unchanged,
                    "table loaded"
                );
                details.push(format!(
                    "  {:<22} {:>10} inserted  {:>10} replaced ({} before)  {:>10} unchanged",
                    t.table, t.inserted, t.replaced, t.replaced_old, t.unchanged
                ));
            }
            for c in &r.schema_changes {
                details.push(format!("  schema: {c}"));
            }
            crest_core::load::write_manifest(&plan, &r, &target, dest.traffic()).await;
            details.push(format!("  manifest {}/_runs/{}.json", plan.input, r.load_id));
            if let Some((calls, bytes)) = dest.traffic() {
                tracing::info!(load_id = %r.load_id, api_calls = calls, bytes_sent = bytes, rows = plan.rows(), "load traffic");
                details.push(format!(
                    "  sent {calls} API calls, {:.1} MB for {} rows",
                    bytes as f64 / 1e6,
                    plan.rows()
                ));
            }
            let tables: serde_json::Map<String, serde_json::Value> = r
                .tables
                .iter()
                .map(|t| {
                    (
                        t.table.to_string(),
                        serde_json::json!({"inserted": t.inserted, "replaced": t.replaced, "unchanged": t.unchanged}),
                    )
                })
                .collect();
            Ok(LoadReport {
                line,
                details,
                detail: serde_json::json!({"transform_run_id": plan.run_id, "load_id": r.load_id, "tables": tables}),
            })
        }
    }
}

async fn query(args: QueryArgs) -> Result<()> {
    let batches = match &args.as_of {
        Some(as_of) => lake::query_as_of(&args.target, as_of, &args.sql).await?,
        None => targets::open(&args.target, true).await?.query(&args.sql).await?,
    };
    let format = match args.format {
        Format::Table => "table",
        Format::Csv => "csv",
        Format::Json => "json",
    };
    let text = render(&batches, format)?;
    println!("{}", text.trim_end());
    Ok(())
}

async fn views(command: ViewsCommand) -> Result<()> {
    match command {
        ViewsCommand::List => {
            for v in crest_core::views::VIEWS {
                println!("{:<24} one row per {:<52} {}", v.name, v.grain, v.about);
            }
            Ok(())
        }
        ViewsCommand::Lookml { out } => {
            let files = lookml::write(&out)?;
            println!("wrote {} LookML views into {}", files.len(), out.display());
            Ok(())
        }
        ViewsCommand::Apply(args) => {
            let described = apply_views_to(&args).await?;
            let names: Vec<&str> = crest_core::views::VIEWS.iter().map(|v| v.name).collect();
            println!("applied {} views to {described}: {}", names.len(), names.join(", "));
            Ok(())
        }
    }
}

/// Creates or replaces the views; how many.
async fn apply_views(args: &TargetArgs) -> Result<usize> {
    apply_views_to(args).await?;
    Ok(crest_core::views::VIEWS.len())
}

async fn apply_views_to(args: &TargetArgs) -> Result<String> {
    let target = targets::open(&args.target, true).await?;
    target.apply_views().await?;
    Ok(target.describe())
}

async fn benchmarks(command: BenchmarksCommand) -> Result<()> {
    let BenchmarksCommand::Load(args) = command;
    let (rows, described) = load_benchmarks(args).await?;
    println!("loaded {rows} benchmarks into {described} (replacing what it had)");
    Ok(())
}

/// Replaces the target's benchmarks with a checked file's: how many, and where.
async fn load_benchmarks(args: BenchmarksLoadArgs) -> Result<(usize, String)> {
    // Read and check the whole file before the target is touched.
    let bytes = read_required("benchmarks file", &args.file).await?;
    let rows = crest_core::benchmarks::parse(&args.file, &bytes)?;
    let target = targets::open(&args.target.target, false).await?;
    target.load_benchmarks(&rows).await?;
    let described = target.describe();
    Ok((rows.len(), described))
}

/// What an evaluation found and where it went (`crest run`'s summary).
struct AlertsOutcome {
    evaluated: usize,
    changes: usize,
    sent_to: Vec<String>,
}

async fn alerts(args: AlertsArgs) -> Result<()> {
    alerts_quiet(args).await.map(|_| ())
}

async fn alerts_quiet(args: AlertsArgs) -> Result<AlertsOutcome> {
    // Channels first: a missing webhook URL or SMTP setting stops the run
    // before anything is evaluated or stored.
    if !args.dry_run && !args.slack && !args.email {
        return Err(Error::Config(
            "give --slack and/or --email to send the changes, or --dry-run to print them".into(),
        ));
    }
    let channels = alerts::Channels {
        slack: if args.slack && !args.dry_run {
            Some(alerts::slack::Slack::from_env()?)
        } else {
            None
        },
        email: if args.email && !args.dry_run {
            Some(alerts::email::Email::from_env()?)
        } else {
            None
        },
        attempts: args.delivery_attempts,
        initial_delay: std::time::Duration::from_millis(args.retry_initial_ms),
    };
    let target = targets::open(&args.target.target, true).await?;
    let out = alerts::run(target.as_ref(), &channels, args.dry_run).await?;
    let name = target.describe();
    tracing::info!(
        evaluation_id = out.evaluation_id.as_deref().unwrap_or("dry-run"),
        evaluated = out.evaluated,
        changes = out.changes.len(),
        sent_to = %out.sent_to.join(","),
        "alerts evaluated"
    );
    if args.dry_run {
        if out.changes.is_empty() {
            println!("dry run: {} creator × platform rows in {name}, no change since the last delivered evaluation: nothing would be sent", out.evaluated);
        } else {
            println!("dry run: nothing stored or sent; this would be sent:\n");
            println!("{}", alerts::message::text(&out.changes, &name).trim_end());
        }
        return Ok(AlertsOutcome {
            evaluated: out.evaluated,
            changes: out.changes.len(),
            sent_to: Vec::new(),
        });
    }
    let id = out.evaluation_id.unwrap_or_default();
    if out.changes.is_empty() {
        println!(
            "evaluated {} creator × platform rows in {name}: no change since the last delivered evaluation, nothing sent (evaluation {id})",
            out.evaluated
        );
    } else {
        println!(
            "evaluated {} creator × platform rows in {name}: {} change(s) sent to {} (evaluation {id}, delivered)",
            out.evaluated,
            out.changes.len(),
            out.sent_to.join(" and ")
        );
        for (kind, list) in alerts::message::grouped(&out.changes) {
            println!("  {:<24} {}", kind.title(), list.len());
        }
    }
    Ok(AlertsOutcome {
        evaluated: out.evaluated,
        changes: out.changes.len(),
        sent_to: out.sent_to.iter().map(|s| s.to_string()).collect(),
    })
}

fn main() -> ExitCode {
    let cli: Cli = match cli::parse() {
        Ok(c) => c,
        Err(code) => return code,
    };
    // `run` and `demo` report a line per stage on a terminal; the stages'
    // own events are for JSON logs (or CREST_LOG=info).
    if matches!(cli.command, Command::Run(_) | Command::Demo(_))
        && cli.global.log_format == cli::LogFormat::Human
        && std::env::var_os("CREST_LOG").is_none()
    {
        std::env::set_var("CREST_LOG", "warn");
    }
    cli::init_logging(cli.global.log_format);
    // The demo points the connectors at its in-process sandbox through the
    // environment, before the runtime starts any thread that could read it.
    let demo_port = match &cli.command {
        Command::Demo(_) => match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
            Ok(addr) => {
                for (key, value) in demo::sandbox_environment(addr.port()) {
                    std::env::set_var(key, value);
                }
                addr.port()
            }
            Err(e) => {
                return cli::finish(Err(Error::Config(format!(
                    "no free loopback port for the sandbox: {e}"
                ))))
            }
        },
        _ => 0,
    };
    cli::run(async {
        match cli.command {
            Command::Transform(args) => transform(args).await,
            Command::Load(args) => load(args).await,
            Command::Query(args) => query(args).await,
            Command::Lake(command) => lake::run(command).await,
            Command::Views(command) => views(command).await,
            Command::Benchmarks(command) => benchmarks(command).await,
            Command::Alerts(args) => alerts(args).await,
            Command::Attribute(a) => {
                attribute::attribute(attribute::AttributeOptions {
                    range: DateRange::new(a.start, a.end)?,
                    input: a.input,
                    out: a.out,
                    roster: a.roster,
                    models: a.models,
                    lookback_days: a.lookback_days,
                    half_life_days: a.half_life_days,
                    wait_for_lease: a.wait_for_lease,
                    max_events_in_memory: a.max_events_in_memory,
                })
                .await
            }
            Command::Links(LinksCommand::Audit(a)) => {
                links::audit(links::AuditOptions {
                    input: a.input,
                    issued: a.issued,
                    json: a.json,
                    target: a.target.target,
                    dry_run: a.dry_run,
                    site: a.site,
                    roster: a.roster,
                })
                .await
            }
            Command::Links(LinksCommand::Issue(a)) => {
                links::issue(links::IssueOptions {
                    roster: a.roster,
                    campaign: a.campaign,
                    base_url: a.base_url,
                    content: a.content,
                    term: a.term,
                    platforms: a.platforms,
                    out: a.out,
                })
                .await
            }
            Command::Demo(args) => {
                demo::demo(demo::DemoOptions {
                    out: args.out,
                    creators: args.creators,
                    days: args.days,
                    seed: args.seed,
                    port: demo_port,
                })
                .await
            }
            Command::Run(args) => {
                if args.print_example {
                    print!("{}", run::EXAMPLE_CONFIG);
                    return Ok(());
                }
                run::run(run::RunOptions {
                    config_spec: args.config.unwrap_or_default(),
                    wait_for_lease: args.wait_for_lease,
                    start: args.start,
                    end: args.end,
                    since_last: args.since_last,
                })
                .await
            }
        }
    })
}
