//! `crest`: the stages that are not per platform. This release: `transform`.

use clap::{Args, Parser, Subcommand};
use crest_core::cli::{self, GlobalArgs};
use crest_core::storage::{read_file, Location};
use crest_core::window::{parse_date, DateRange};
use crest_core::{Error, Result};
use crest_transforms::{
    run_transform, FxRates, Granularity, Roster, StandardWindow, TransformConfig, TransformSummary,
};
use std::process::ExitCode;

const EXAMPLES: &str = "\
Examples:
  # Raw TikTok reports in ./crest-out → canonical creator_performance, with a roster and fx rates
  crest transform --input ./crest-out --start 2026-01-01 --end 2026-01-31 \\
      --roster roster.csv --fx fx.csv --reporting-currency USD

  # From and to an object store, a 28-day click standard window
  crest --log-format json transform --input s3://bucket/crest --start 2026-01-01 --end 2026-01-01 \\
      --roster s3://bucket/config/roster.parquet --standard-window 28d_click

Exit codes: 0 ok, 2 usage or bad input (roster, fx, empty range), 5 storage, 6 reconciliation failed.";

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
}

#[derive(Args)]
struct TransformArgs {
    /// Where the connectors wrote their raw output (path or URL).
    #[arg(long, value_name = "URL")]
    input: String,
    /// Where canonical, quarantine and the manifest go (default: --input).
    #[arg(long, value_name = "URL")]
    out: Option<String>,
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

async fn read_required(what: &str, spec: &str) -> Result<Vec<u8>> {
    read_file(spec)
        .await?
        .map(|b| b.to_vec())
        .ok_or_else(|| Error::Config(format!("{what} {spec} does not exist")))
}

async fn transform(args: TransformArgs) -> Result<()> {
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
    };
    let summary = run_transform(config).await?;
    tracing::info!(
        run_id = %summary.run_id, rows_in = summary.rows_in, rows_out = summary.rows_out,
        unresolved_rows = summary.unresolved_rows, missing_fx = summary.missing_fx.len(),
        elapsed_ms = summary.elapsed_ms, "transform finished"
    );
    print_summary(&summary, range, args.standard_window, &reporting);
    Ok(())
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

fn main() -> ExitCode {
    let cli: Cli = match cli::parse() {
        Ok(c) => c,
        Err(code) => return code,
    };
    cli::init_logging(cli.global.log_format);
    cli::run(async {
        match cli.command {
            Command::Transform(args) => transform(args).await,
        }
    })
}
