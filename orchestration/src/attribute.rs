//! `crest attribute`: the brand's site conversions (what `crest-ga4
//! extract` wrote) credited to creators under each model, into
//! `creator_attribution` for `crest load`.

use crest_core::storage::Location;
use crest_core::window::DateRange;
use crest_core::{Error, Result};
use crest_transforms::attribution::run::{run_attribution, AttributeConfig, AttributeSummary};
use crest_transforms::attribution::{Model, Rules};
use crest_transforms::Roster;

pub struct AttributeOptions {
    pub input: String,
    pub out: Option<String>,
    pub range: DateRange,
    pub roster: String,
    pub models: Vec<String>,
    pub lookback_days: u32,
    pub half_life_days: f64,
    pub wait_for_lease: u64,
    pub max_events_in_memory: u64,
}

pub async fn attribute(o: AttributeOptions) -> Result<()> {
    let (summary, out_spec) = attribute_quiet(&o).await?;
    let models = models(&o.models)?;
    print(&summary, &o, &models, &out_spec);
    Ok(())
}

/// The attribution without its printed summary (`crest run` prints its own
/// line): what it did and where it wrote.
pub async fn attribute_quiet(o: &AttributeOptions) -> Result<(AttributeSummary, String)> {
    let models = models(&o.models)?;
    if o.lookback_days == 0 || o.lookback_days > 365 {
        return Err(Error::Config(format!(
            "--lookback-days {}: give 1 to 365 days (GA4's own lookback is 30 or 90)",
            o.lookback_days
        )));
    }
    if !(o.half_life_days.is_finite() && o.half_life_days > 0.0 && o.half_life_days <= 365.0) {
        return Err(Error::Config(format!(
            "--half-life-days {}: give a positive number of days, at most 365",
            o.half_life_days
        )));
    }
    let roster = Roster::parse(&o.roster, &crate::read_required("--roster", &o.roster).await?)?;
    if roster.is_empty() {
        return Err(Error::Config(format!(
            "--roster {} lists no creator: attribution would credit nobody",
            o.roster
        )));
    }
    let input = Location::parse_existing(&o.input).map_err(|e| match e {
        Error::Config(m) => Error::Config(format!("--input: {m}")),
        e => e,
    })?;
    let out_spec = o
        .out
        .clone()
        .unwrap_or_else(|| format!("{}/attribution", o.input.trim_end_matches('/')));
    let output = Location::parse(&out_spec)?;
    let summary = run_attribution(AttributeConfig {
        input,
        output,
        range: o.range,
        roster,
        models: models.clone(),
        rules: Rules {
            lookback: chrono::Duration::days(i64::from(o.lookback_days)),
            half_life: chrono::Duration::seconds((o.half_life_days * 86_400.0).round() as i64),
        },
        wait_for_lease: std::time::Duration::from_secs(o.wait_for_lease),
        max_events_in_memory: o.max_events_in_memory,
    })
    .await?;
    tracing::info!(
        run_id = %summary.run_id, conversions = summary.conversions, sessions = summary.sessions,
        unattributed = summary.unattributed_conversions, duplicates = summary.duplicate_transactions,
        rows_out = summary.rows_out, elapsed_ms = summary.elapsed_ms, "attribution finished"
    );
    Ok((summary, out_spec))
}

fn print(summary: &AttributeSummary, o: &AttributeOptions, models: &[Model], out_spec: &str) {
    println!(
        "attribute {} · {} · lookback {} days · models {}",
        summary.run_id,
        o.range,
        o.lookback_days,
        models.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ")
    );
    println!(
        "  sessions           {:>10}   {} direct, {} with UTMs of no creator",
        summary.sessions, summary.direct_sessions, summary.unresolved_sessions
    );
    println!(
        "  conversions        {:>10}   revenue {}; {} duplicate transactions counted once",
        summary.conversions,
        summary.revenue.normalize(),
        summary.duplicate_transactions
    );
    println!(
        "  unattributed       {:>10}   conversions with no non-direct session in the lookback",
        summary.unattributed_conversions
    );
    if summary.missing_session_days > 0 {
        println!(
            "  warning: {} lookback day(s) before --start have no GA4 events: the first conversions' paths are shorter; extract from --start minus the lookback",
            summary.missing_session_days
        );
    }
    for m in models {
        let credited = summary.creator_conversions.get(m.name()).copied().unwrap_or_default();
        println!(
            "  to creators {:<10} {:>10}",
            m.name(),
            credited.round_dp(2).normalize()
        );
    }
    let q: u64 = summary.quarantined.values().sum();
    if q > 0 {
        println!(
            "  quarantined        {q:>10}   {}",
            summary
                .quarantined
                .iter()
                .map(|(r, n)| format!("{r} ({n})"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!(
        "  rows out           {:>10}   from {} raw files, users in {} group(s)",
        summary.rows_out, summary.raw_files, summary.user_groups
    );
    println!("  manifest {}", summary.manifest);
    println!("  load it: crest load --input {out_spec}");
}

fn models(names: &[String]) -> Result<Vec<Model>> {
    let mut out: Vec<Model> = Vec::new();
    for n in names.iter().filter(|n| !n.trim().is_empty()) {
        let m: Model = n.parse().map_err(|e: String| Error::Config(format!("--models: {e}")))?;
        if !out.contains(&m) {
            out.push(m);
        }
    }
    if out.is_empty() {
        return Ok(Model::ALL.to_vec());
    }
    Ok(out)
}
