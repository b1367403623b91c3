//! `crest-sandbox serve`: the simulated platform APIs on a local port.

use chrono::NaiveDate;
use clap::{Parser, Subcommand};
use crest_sandbox::faults::FaultPlan;
use crest_sandbox::world::WorldConfig;
use crest_sandbox::{Sandbox, SandboxConfig};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "crest-sandbox",
    version,
    about = "Simulated ad platform APIs (TikTok Business API v1.3, Meta Marketing API, YouTube Analytics and Data, Google Ads) with seeded data and fault injection",
    after_help = "Examples:\n  crest-sandbox serve --port 8787\n  crest-sandbox serve --port 8787 --seed 7 --creators 500 --days 90 --qps 10\n  crest-sandbox serve --port 8787 --faults 'rate_limit@5x3,truncated@9,drop%40'\n\nThe TikTok API accepts the access token 'sandbox-token' (--tiktok-token), the Meta Graph API 'sandbox-meta-token' (--meta-token)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the simulated APIs until interrupted.
    Serve(Box<ServeArgs>),
    /// Front the Snowflake emulator (fakesnow) with the response fields it omits,
    /// for benchmarks and tests: crest reaches it through CREST_SNOWFLAKE_BASE_URL.
    SnowflakeProxy {
        /// fakesnow's server, e.g. http://127.0.0.1:8090
        #[arg(long)]
        upstream: String,
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// Write a GA4 export of a seeded world (one newline-delimited JSON file per day,
    /// events_YYYYMMDD.json) for crest-ga4 extract --from; prints the truth's totals.
    Ga4Export {
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value_t = 60)]
        creators: usize,
        #[arg(long, default_value_t = 60)]
        days: u32,
        /// First day of the export (YYYY-MM-DD).
        #[arg(long, value_parser = crest_sandbox_date, default_value = "2026-01-01")]
        first_day: NaiveDate,
        /// Site users (each one journey).
        #[arg(long, default_value_t = 1000)]
        users: usize,
        /// The folder the files go to.
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Print the creator roster of a seeded world as CSV (the transform's --roster).
    Roster {
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value_t = 60)]
        creators: usize,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Port on 127.0.0.1 (0 picks a free one and prints it).
    #[arg(long, default_value_t = 8787)]
    port: u16,
    /// Seed of the synthetic world: same seed, same data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Creators in the roster.
    #[arg(long, default_value_t = 60)]
    creators: usize,
    /// Days of data, ending yesterday (UTC) unless --first-day is given.
    #[arg(long, default_value_t = 60)]
    days: u32,
    /// First day with data (YYYY-MM-DD).
    #[arg(long, value_parser = crest_sandbox_date)]
    first_day: Option<NaiveDate>,
    /// Ad accounts (TikTok advertisers).
    #[arg(long, default_value_t = 2)]
    advertisers: usize,
    /// Up to this many ads per creator.
    #[arg(long, default_value_t = 3)]
    ads_per_creator: usize,
    /// Faults to inject: KIND@N, KIND@NxCOUNT or KIND%EVERY, comma separated
    /// (rate_limit, server_error, http_500, http_503, slow, truncated, drop, expired_token, quota,
    /// job_failed, job_stall, empty).
    #[arg(long, default_value = "")]
    faults: String,
    /// Requests per second allowed before the platform's rate-limit error.
    #[arg(long)]
    qps: Option<f64>,
    /// Delay of a `slow` fault, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    slow_ms: u64,
    /// Reports larger than this many rows are refused as too large (0 = no limit).
    #[arg(long, default_value_t = 0)]
    max_rows_per_query: u64,
    /// Access token the TikTok API accepts.
    #[arg(long, default_value = "sandbox-token")]
    tiktok_token: String,
    /// Access token the Meta Graph API accepts.
    #[arg(long, default_value = "sandbox-meta-token")]
    meta_token: String,
    /// Meta's usage budget as CALLS/SECONDS (e.g. 200/60): usage headers rise
    /// toward it, and calls beyond it get error 17.
    #[arg(long, value_parser = parse_budget)]
    meta_budget: Option<(u32, Duration)>,
    /// Status polls before a Meta async insights job completes.
    #[arg(long, default_value_t = 3)]
    meta_job_polls: u32,
    /// Meta async jobs with more rows than this fail (synchronous calls get code 1); 0 = no limit.
    #[arg(long, default_value_t = 0)]
    meta_max_job_rows: u64,
    /// Videos each creator's YouTube channel has (2..=N, seeded).
    #[arg(long, default_value_t = 3)]
    videos_per_channel: usize,
    /// Restatements of the last 7 days so far (each adds late conversions and spend).
    #[arg(long, default_value_t = 0)]
    revision: u64,
    /// Creators differ: some well below their benchmark CTR, some well above,
    /// some never convert (every tier occurs; the demo's program).
    #[arg(long)]
    spread: bool,
    /// One creator Spark Ad in eleven carries the next creator's link (what
    /// `crest links audit --roster` finds).
    #[arg(long)]
    crossed_links: bool,
    /// Developer token Google Ads accepts.
    #[arg(long, default_value = "sandbox-developer-token")]
    google_developer_token: String,
    /// Seconds Google Ads names as retryDelay in its RESOURCE_EXHAUSTED errors.
    #[arg(long, default_value_t = 1)]
    google_ads_retry_delay: u64,
}

fn parse_budget(s: &str) -> Result<(u32, Duration), String> {
    let (calls, secs) = s.split_once('/').ok_or("write CALLS/SECONDS, e.g. 200/60")?;
    let calls: u32 = calls.trim().parse().map_err(|_| "CALLS must be a whole number")?;
    let secs: f64 = secs.trim().parse().map_err(|_| "SECONDS must be a number")?;
    Ok((calls.max(1), Duration::from_secs_f64(secs.max(0.001))))
}

fn crest_sandbox_date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| format!("'{s}' is not a date; use YYYY-MM-DD"))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("CREST_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let args = match cli.command {
        Command::Serve(args) => *args,
        Command::SnowflakeProxy { upstream, port } => {
            let proxy = match crest_sandbox::snowflake_proxy::SnowflakeProxy::bind(
                &format!("127.0.0.1:{port}"),
                upstream,
            )
            .await
            {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("error: cannot listen on port {port}: {e}");
                    return ExitCode::from(2);
                }
            };
            // Scripts wait for this line.
            println!("snowflake proxy listening on {}", proxy.url);
            let _ = tokio::signal::ctrl_c().await;
            return ExitCode::SUCCESS;
        }
        Command::Ga4Export {
            seed,
            creators,
            days,
            first_day,
            users,
            out,
        } => {
            let world = crest_sandbox::world::World::new(WorldConfig {
                seed,
                creators,
                days: days.max(12),
                first_day,
                ..WorldConfig::default()
            });
            let export = crest_sandbox::ga4::export(
                &world,
                &crest_sandbox::ga4::Ga4Config {
                    users,
                    ..Default::default()
                },
            );
            if let Err(e) = std::fs::create_dir_all(&out) {
                eprintln!("error: cannot create {}: {e}", out.display());
                return ExitCode::from(5);
            }
            let mut events = 0;
            for day in export.days.keys() {
                let path = out.join(format!("events_{}.json", day.format("%Y%m%d")));
                let text = export.ndjson(*day);
                events += text.lines().count();
                if let Err(e) = std::fs::write(&path, text) {
                    eprintln!("error: cannot write {}: {e}", path.display());
                    return ExitCode::from(5);
                }
            }
            println!(
                    "ga4 export: property {} · {events} events over {} days · {} purchases ({} logged twice, {} unattributed) · revenue {}",
                    export.property_id,
                    export.days.len(),
                    export.purchases,
                    export.duplicate_logs,
                    export.unattributed,
                    export.revenue
                );
            return ExitCode::SUCCESS;
        }
        Command::Roster { seed, creators } => {
            let world = WorldConfig {
                seed,
                creators,
                ..WorldConfig::default()
            };
            print!("{}", crest_sandbox::world::World::new(world).roster_csv());
            return ExitCode::SUCCESS;
        }
    };
    let faults: FaultPlan = match args.faults.parse() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: --faults: {e}");
            return ExitCode::from(2);
        }
    };
    let first_day = args
        .first_day
        .unwrap_or_else(|| chrono::Utc::now().date_naive() - chrono::Days::new(args.days.max(1) as u64));
    let config = SandboxConfig {
        world: WorldConfig {
            seed: args.seed,
            creators: args.creators,
            days: args.days.max(1),
            first_day,
            advertisers: args.advertisers.max(1),
            ads_per_creator: args.ads_per_creator.max(1),
            videos_per_channel: args.videos_per_channel.max(2),
            revision: args.revision,
            spread: args.spread,
            crossed_links: args.crossed_links,
        },
        faults,
        qps: args.qps,
        slow: Duration::from_millis(args.slow_ms),
        tiktok_token: args.tiktok_token,
        max_rows_per_query: args.max_rows_per_query,
        meta_token: args.meta_token,
        meta_budget: args.meta_budget,
        meta_job_polls: args.meta_job_polls,
        meta_max_job_rows: args.meta_max_job_rows,
        google_developer_token: args.google_developer_token,
        google_ads_retry_delay: Duration::from_secs(args.google_ads_retry_delay),
        port: args.port,
        ..SandboxConfig::default()
    };
    let sandbox = match Sandbox::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot listen on 127.0.0.1:{}: {e}", args.port);
            return ExitCode::from(2);
        }
    };
    let w = sandbox.world();
    let last = w.date(w.config.days - 1);
    println!("crest-sandbox listening on {}", sandbox.base_url());
    println!(
        "data: {} .. {} ({} creators, {} ads)",
        w.config.first_day,
        last,
        w.creators.len(),
        w.ads.len()
    );
    for a in &w.advertisers {
        println!("tiktok advertiser {} ({}, {})", a.advertiser_id, a.currency, a.timezone);
    }
    for a in &sandbox.meta().accounts {
        println!("meta ad account {} ({}, {})", a.account_id, a.currency, a.timezone_name);
    }
    let yt = sandbox.youtube();
    println!(
        "youtube channels {} ({} in all; analytics served through {})",
        yt.channels[..yt.channels.len().min(5)].join(","),
        yt.channels.len(),
        yt.last_served_day()
    );
    println!(
        "youtube brand channel {} (hosts videos by several creators, each linked with its creator's UTM)",
        yt.brand_channel
    );
    for c in &sandbox.ads().customers {
        println!("google ads customer {} ({}, {})", c.id, c.currency, c.time_zone);
    }
    println!("google oauth: client sandbox-client / sandbox-client-secret, refresh token sandbox-refresh-token; google ads developer token {}", sandbox.developer_token());
    sandbox.serve_until_ctrl_c().await;
    ExitCode::SUCCESS
}
