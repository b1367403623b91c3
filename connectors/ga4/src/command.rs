//! The `crest-ga4` command: extract a GA4 property's sessions and
//! conversions into raw Parquet.

use crate::{export, property_id, Ga4Source, Origin};
use clap::{Args, Parser, Subcommand};
use crest_core::cli::{self, ExtractArgs, GlobalArgs, Report};
use crest_core::extract::{run_extract, ExtractPlan};
use crest_core::manifest::RunManifest;
use crest_core::storage::Location;
use crest_core::{Error, Result};

const EXAMPLES: &str = "\
Examples:
  # The BigQuery export of property 123456789 (project my-gcp-project) for November
  export GOOGLE_APPLICATION_CREDENTIALS=/run/secrets/bq-reader.json
  crest-ga4 extract --project my-gcp-project --property-id 123456789 \\
      --start 2026-11-01 --end 2026-11-30 --out ./crest-out

  # The same schema from files a team exported (Parquet or newline-delimited JSON)
  crest-ga4 extract --from gs://brand-exports/ga4/ --property-id 123456789 \\
      --start 2026-11-01 --end 2026-11-30 --out ./crest-out

  # Leads count as conversions too; scheduled with JSON logs
  crest-ga4 --log-format json extract --project my-gcp-project --property-id 123456789 \\
      --conversion-events purchase,generate_lead --start {{ ds }} --end {{ ds }} --out s3://bucket/crest

  # Check access to the export, write nothing
  crest-ga4 check --project my-gcp-project --property-id 123456789

Then: crest attribute --input ./crest-out --roster roster.csv --start 2026-11-01 --end 2026-11-30

Environment:
  GOOGLE_OAUTH_ACCESS_TOKEN       a token (or _FILE), else GOOGLE_APPLICATION_CREDENTIALS
                                  (a service-account key file), else gcloud's default credentials
  CREST_BIGQUERY_BASE_URL         BigQuery API base URL (an emulator or a proxy)
  CREST_LOG                       log level filter (default info)

Exit codes: 0 ok, 2 usage, config or input that is not a GA4 export, 3 auth, 4 BigQuery error after retries, 5 storage.";

#[derive(Parser)]
#[command(
    name = "crest-ga4",
    version,
    about = "Extract a GA4 property's sessions and conversions (its BigQuery export, or the same schema as files) into Parquet, for creator attribution",
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
    /// Check access to the export (no data written).
    Check(CheckArgs),
    /// Extract sessions and conversions into {out}/raw/ga4/events/date=YYYY-MM-DD/.
    Extract(Box<Ga4ExtractArgs>),
}

#[derive(Args)]
struct Where {
    /// GA4 property id (repeatable, or comma separated; one with --from).
    #[arg(long = "property-id", required = true, value_delimiter = ',', value_name = "ID")]
    property_ids: Vec<String>,
    /// The Google Cloud project holding the export (dataset analytics_{property}).
    #[arg(
        long,
        value_name = "PROJECT",
        required_unless_present = "from",
        conflicts_with = "from"
    )]
    project: Option<String>,
    /// Exported files instead of the BigQuery API: a folder or a file, local
    /// or on an object store (.parquet, .json, .jsonl, .ndjson).
    #[arg(long, value_name = "PATH_OR_URL")]
    from: Option<String>,
}

#[derive(Args)]
pub struct CheckArgs {
    #[command(flatten)]
    at: Where,
}

#[derive(Args)]
pub struct Ga4ExtractArgs {
    #[command(flatten)]
    at: Where,
    #[command(flatten)]
    common: ExtractArgs,
    /// Events counted as conversions (GA4 event names).
    #[arg(long, value_delimiter = ',', default_value = "purchase", value_name = "NAMES")]
    conversion_events: Vec<String>,
}

/// GA4 may add late events to a day's table for up to 72 hours.
const DEFAULT_LOOKBACK_DAYS: u32 = crate::export::LATE_DAYS as u32;

impl Where {
    fn resolve(&self) -> Result<(Vec<String>, Origin)> {
        let ids = cli::account_ids(&self.property_ids, property_id)?;
        if ids.is_empty() {
            return Err(Error::Config("give at least one --property-id".into()));
        }
        let origin = match (&self.project, &self.from) {
            (_, Some(from)) if ids.len() > 1 => {
                return Err(Error::Config(format!(
                    "--from {from} is one property's export: give one --property-id"
                )))
            }
            (_, Some(from)) => Origin::Files { from: from.clone() },
            (Some(project), None) => Origin::BigQuery {
                project: project.trim().to_string(),
            },
            (None, None) => {
                return Err(Error::Config(
                    "give --project (the BigQuery export) or --from (files)".into(),
                ))
            }
        };
        Ok((ids, origin))
    }
}

fn conversion_events(names: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for n in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        // GA4 event names: letters, digits, underscores, starting with a letter.
        let ok = n.len() <= 40
            && n.starts_with(|c: char| c.is_ascii_alphabetic())
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(Error::Config(format!(
                "--conversion-events: '{n}' is not a GA4 event name"
            )));
        }
        if n == crate::event::SESSION_START {
            return Err(Error::Config(
                "--conversion-events: session_start is a session, not a conversion".into(),
            ));
        }
        if !out.iter().any(|x| x == n) {
            out.push(n.to_string());
        }
    }
    if out.is_empty() {
        return Err(Error::Config(
            "--conversion-events is empty: name at least one event (e.g. purchase)".into(),
        ));
    }
    Ok(out)
}

async fn check(args: CheckArgs) -> Result<()> {
    let (ids, origin) = args.at.resolve()?;
    for id in ids {
        let what = match &origin {
            Origin::BigQuery { project } => {
                export::Export::bigquery(project, &id).await?;
                format!("{project}.{}", export::dataset(&id))
            }
            Origin::Files { from } => match export::Export::files(from).await? {
                export::Export::Files { files, .. } => format!("{from} ({} files)", files.len()),
                export::Export::BigQuery { .. } => from.clone(),
            },
        };
        println!("ok  property {id}  {what}");
    }
    Ok(())
}

async fn extract(args: Ga4ExtractArgs, report: Report) -> Result<Vec<RunManifest>> {
    let (ids, origin) = args.at.resolve()?;
    let conversions = conversion_events(&args.conversion_events)?;
    let range = args.common.range()?;
    let out = Location::parse(&args.common.out)?;
    let state = args.common.state_store().await?;
    let source = Ga4Source::new(origin.clone(), conversions.clone());
    let plan = ExtractPlan {
        wait_for_lease: args.common.wait_for_lease(),
        out,
        accounts: ids,
        range,
        state,
        lookback_days: args.common.lookback_days,
        default_lookback_days: DEFAULT_LOOKBACK_DAYS,
        options: serde_json::json!({
            "origin": match &origin {
                Origin::BigQuery { project } => format!("bigquery://{project}"),
                Origin::Files { from } => from.clone(),
            },
            "conversion_events": conversions,
        }),
    };
    let manifest = run_extract(&source, plan, &report.progress("ga4")).await?;
    tracing::info!(
        run_id = %manifest.run_id, rows = manifest.rows, files = manifest.files.len(),
        api_calls = manifest.api.api_calls, elapsed_ms = manifest.elapsed_ms,
        "extract finished"
    );
    report.summary(&manifest, "property(ies)", range, &args.common.out);
    Ok(vec![manifest])
}

crest_core::connector_entry_points!("crest-ga4");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_events_are_checked_names() {
        assert_eq!(
            conversion_events(&["purchase".into(), " purchase".into()]).unwrap(),
            ["purchase"]
        );
        assert!(conversion_events(&["drop table".into()]).is_err());
        assert!(conversion_events(&["session_start".into()]).is_err());
        assert!(conversion_events(&[]).is_err());
    }
}

/// `crest run`'s `[ga4]` table.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RunTable {
    property_ids: Vec<String>,
    project: Option<String>,
    from: Option<String>,
    conversion_events: Option<Vec<String>>,
    lookback_days: Option<u32>,
}

/// The brand's site as `crest run` drives it (`[ga4]` in the config): its
/// sessions and conversions, credited to creators after the load.
pub const SOURCE: crest_core::source::Source = crest_core::source::Source {
    name: "ga4",
    hourly: false,
    site: true,
    section: |text| {
        use crest_core::source::{self, Section, SectionError};
        let Some(t) = source::table::<RunTable>(text, "ga4")? else {
            return Ok(None);
        };
        if t.property_ids.is_empty() {
            return Err(SectionError::key(
                "ga4.property_ids",
                "is empty: list the GA4 property id",
            ));
        }
        let mut flags: Vec<String> = source::ids_flag("--property-id", &t.property_ids).into_iter().collect();
        match (&t.project, &t.from) {
            (Some(p), None) => flags.push(format!("--project={p}")),
            (None, Some(f)) => flags.push(format!("--from={f}")),
            _ => {
                return Err(SectionError::key(
                    "ga4",
                    "needs one of project (the BigQuery export's project) or from (exported files)",
                ))
            }
        }
        if let Some(events) = &t.conversion_events {
            flags.push(format!("--conversion-events={}", events.join(",")));
        }
        Ok(Some(Section {
            flags,
            accounts: t.property_ids,
            max_qps: None,
            lookback_days: t.lookback_days,
        }))
    },
    extract: |flags| Box::pin(extract_with(flags)),
};
