//! `crest lake history | optimize | vacuum | migrate` and `crest query --as-of`:
//! the embedded lake's Delta tables kept in shape.

use clap::{Args, Subcommand};
use crest_core::storage::Location;
use crest_core::{Error, Result};
use crest_lake::{AsOf, Lake};

pub const EXAMPLES: &str = "\
Examples:
  crest lake history                                   # every table's commits, newest first
  crest lake history --table creator_performance --limit 5
  crest lake optimize --target lake:s3://bucket/lake   # compact the small files hourly runs leave
  crest lake vacuum --dry-run                          # what a vacuum would remove
  crest lake vacuum --retention-hours 336              # remove files no version of the last 14 days reads
  crest lake migrate --target lake:./crest-lake        # convert a lake of an earlier crest, once
  crest query --as-of 2026-11-30T09:00:00Z \"SELECT SUM(spend) FROM creator_performance\"

Each table is a Delta Lake table: DuckDB (delta_scan), Polars (read_delta), Spark and
Databricks read {lake}/{table} directly. Time travel: crest query --as-of VERSION|TIME.";

#[derive(Subcommand)]
pub enum LakeCommand {
    /// Each table's commits: version, time, operation, the crest load and rows it wrote.
    History(HistoryArgs),
    /// Compact small files into larger ones (no row changes; readers are never disturbed).
    Optimize(LakeArgs),
    /// Remove files no version within the retention reads (replaced, compacted, or left by a killed load).
    Vacuum(VacuumArgs),
    /// Convert a lake written by an earlier crest (date pointers) into Delta tables, once.
    Migrate(LakeArgs),
}

#[derive(Args)]
pub struct LakeArgs {
    /// lake:PATH_OR_URL.
    #[arg(long, default_value = crate::DEFAULT_TARGET, value_name = "TARGET")]
    target: String,
    /// Only this table (default: every canonical table).
    #[arg(long, value_name = "TABLE")]
    table: Option<String>,
}

#[derive(Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    lake: LakeArgs,
    /// The newest N commits of each table.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
}

#[derive(Args)]
pub struct VacuumArgs {
    #[command(flatten)]
    lake: LakeArgs,
    /// Keep every file a version of the last HOURS reads (at least 168, Delta's safety check).
    #[arg(long, default_value_t = crest_lake::DEFAULT_RETENTION_HOURS, value_name = "HOURS")]
    retention_hours: u64,
    /// Print what would be removed, remove nothing.
    #[arg(long)]
    dry_run: bool,
}

/// `lake:PATH_OR_URL` as a lake that exists.
pub fn open(spec: &str) -> Result<Lake> {
    let rest = spec
        .strip_prefix("lake:")
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            Error::Config(format!(
                "--target {spec}: crest lake and --as-of work on the embedded lake, lake:PATH_OR_URL"
            ))
        })?;
    let loc = Location::parse_existing(rest).map_err(|e| match e {
        Error::Config(m) => Error::Config(format!("{m}: run crest load into it first, or give --target")),
        other => other,
    })?;
    Ok(Lake::new(loc))
}

fn tables(only: Option<&str>) -> Result<Vec<&'static str>> {
    let all: Vec<&'static str> = crest_transforms::canonical::tables()
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    match only {
        None => Ok(all),
        Some(t) => all
            .iter()
            .find(|a| **a == t)
            .map(|a| vec![*a])
            .ok_or_else(|| Error::Config(format!("--table {t}: the lake's tables are {}", all.join(", ")))),
    }
}

pub async fn run(command: LakeCommand) -> Result<()> {
    match command {
        LakeCommand::History(a) => {
            let lake = open(&a.lake.target)?;
            let commits = lake.history(&tables(a.lake.table.as_deref())?, a.limit).await?;
            println!(
                "{:<22} {:>7}  {:<20}  {:<14} {:<28} {:>12} {:>12}",
                "table", "version", "committed (UTC)", "operation", "load", "rows in", "rows replaced"
            );
            for c in commits {
                println!(
                    "{:<22} {:>7}  {:<20}  {:<14} {:<28} {:>12} {:>12}",
                    c.table,
                    c.version,
                    c.at.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_default(),
                    c.operation,
                    c.load_id.unwrap_or_default(),
                    c.rows_in.map(|n| n.to_string()).unwrap_or_default(),
                    c.rows_replaced.map(|n| n.to_string()).unwrap_or_default(),
                );
            }
            Ok(())
        }
        LakeCommand::Optimize(a) => {
            let lake = open(&a.target)?;
            for c in lake.optimize(&tables(a.table.as_deref())?).await? {
                println!(
                    "{}: {} files compacted into {} across {} dates",
                    c.table, c.files_removed, c.files_added, c.partitions
                );
            }
            Ok(())
        }
        LakeCommand::Vacuum(a) => {
            let lake = open(&a.lake.target)?;
            for v in lake
                .vacuum(&tables(a.lake.table.as_deref())?, a.retention_hours, a.dry_run)
                .await?
            {
                let verb = if a.dry_run { "would remove" } else { "removed" };
                println!("{}: {verb} {} files", v.table, v.files.len());
                for f in v.files.iter().take(if a.dry_run { usize::MAX } else { 0 }) {
                    println!("  {f}");
                }
            }
            Ok(())
        }
        LakeCommand::Migrate(a) => {
            let lake = open(&a.target)?;
            let migrated = lake.migrate(&tables(a.table.as_deref())?).await?;
            if migrated.is_empty() {
                println!("lake:{}: every table is a Delta table already", lake.location());
            }
            for m in migrated {
                println!("{}: {} dates, {} rows now a Delta table", m.table, m.dates, m.rows);
            }
            Ok(())
        }
    }
}

/// `crest query --as-of`: the lake as it was.
pub async fn query_as_of(target: &str, as_of: &str, sql: &str) -> Result<Vec<arrow::record_batch::RecordBatch>> {
    let as_of = AsOf::parse(as_of)?;
    let lake = open(target)?.as_of(Some(as_of));
    lake.query(&crest_transforms::canonical::tables(), sql).await
}
