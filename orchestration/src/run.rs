//! `crest run --config crest.toml`: a whole program in one command. Extract
//! (platforms at once, each with its own connector's checks, budget and
//! incremental state) → transform → load → benchmarks and views → alerts,
//! each stage what its own subcommand does, then a run summary in `_runs/`.
//!
//! A re-run resumes: extracts keep state per platform (`{out}/_state/`) and
//! skip committed slices, and a load of a run already in the target is a
//! no-op. Secrets never sit in the config: a key that looks like one is
//! refused with the environment variable to use instead.

use crate::{AlertsArgs, BenchmarksLoadArgs, GranularityArg, LoadArgs, TargetArgs, TransformArgs};
use chrono::{NaiveDate, Utc};
use crest_core::source::{Section, SectionError, Source};
use crest_core::storage::{read_file, Location};
use crest_core::window::parse_date;
use crest_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;

pub const EXAMPLE_CONFIG: &str = include_str!("../crest.example.toml");

/// The config file: see `crest.example.toml`, which documents every key.
/// Each platform's table (`[tiktok]`, …) is read by its connector's
/// [`Source`]; unknown keys are refused in [`RunConfig::parse`].
#[derive(Debug, Deserialize)]
pub struct RunConfig {
    /// Where raw, canonical, manifests and state go: a path or object-store URL.
    pub out: String,
    #[serde(default = "default_target")]
    pub target: String,
    #[serde(default, deserialize_with = "date_text")]
    pub start: Option<String>,
    #[serde(default, deserialize_with = "date_text")]
    pub end: Option<String>,
    pub roster: Option<String>,
    pub fx: Option<String>,
    #[serde(default = "default_currency")]
    pub reporting_currency: String,
    #[serde(default = "default_window")]
    pub standard_window: String,
    #[serde(default)]
    pub granularity: Granularity,
    pub benchmarks: Option<String>,
    /// The platforms the config has a table for, in the registry's order,
    /// with what their tables ask.
    #[serde(skip)]
    pub platforms: Vec<(&'static Source, Section)>,
    #[serde(default)]
    pub alerts: Alerts,
    /// How `[ga4]`'s conversions are credited to creators.
    #[serde(default)]
    pub attribution: Attribution,
    /// Seconds to wait for another run writing the same accounts or lake to
    /// finish (default: fail at once with exit 7, naming it).
    #[serde(default)]
    pub wait_for_lease: u64,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    #[default]
    Day,
    Hour,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alerts {
    #[serde(default)]
    pub slack: bool,
    #[serde(default)]
    pub email: bool,
}

/// `crest attribute`'s settings for a config with a `[ga4]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attribution {
    /// Models (default: all five).
    #[serde(default)]
    pub models: Vec<String>,
    /// Sessions up to this many days before a conversion are its touches.
    #[serde(default = "default_attribution_lookback")]
    pub lookback_days: u32,
    /// Time decay's half-life in days.
    #[serde(default = "default_half_life")]
    pub half_life_days: f64,
}

impl Default for Attribution {
    fn default() -> Self {
        Attribution {
            models: Vec::new(),
            lookback_days: default_attribution_lookback(),
            half_life_days: default_half_life(),
        }
    }
}

fn default_attribution_lookback() -> u32 {
    30
}

fn default_half_life() -> f64 {
    7.0
}

/// A date as a string (`"2026-01-01"`) or a TOML date (`2026-01-01`).
fn date_text<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Text(String),
        Date(toml::value::Datetime),
    }
    Ok(Option::<Either>::deserialize(d)?.map(|e| match e {
        Either::Text(t) => t,
        Either::Date(d) => d.to_string(),
    }))
}

fn default_target() -> String {
    crate::DEFAULT_TARGET.to_string()
}
fn default_currency() -> String {
    "USD".into()
}
fn default_window() -> String {
    "7d_click,1d_view".into()
}

/// The config's own keys; every other key is a platform's table.
const KEYS: [&str; 14] = [
    "out",
    "target",
    "start",
    "end",
    "roster",
    "fx",
    "reporting_currency",
    "standard_window",
    "granularity",
    "benchmarks",
    "alerts",
    "wait_for_lease",
    "attribution",
    "platforms",
];

/// Key names that hold secrets elsewhere; in the config they are refused.
const SECRET_WORDS: [&str; 6] = ["token", "secret", "password", "webhook", "api_key", "credential"];

impl RunConfig {
    /// Reads and checks the file: one line naming the file and key on any problem.
    pub async fn read(spec: &str) -> Result<RunConfig> {
        let bytes = read_file(spec)
            .await?
            .ok_or_else(|| Error::Config(format!("{spec} does not exist (see crest.example.toml)")))?;
        let text = std::str::from_utf8(&bytes).map_err(|_| Error::Config(format!("{spec} is not UTF-8 text")))?;
        Self::parse(spec, text)
    }

    pub fn parse(spec: &str, text: &str) -> Result<RunConfig> {
        let table: toml::Table =
            toml::from_str(text).map_err(|e| Error::Config(format!("{spec}: {}", toml_error(&e))))?;
        let names = || {
            crate::sources::SOURCES
                .iter()
                .map(|s| format!("[{}]", s.name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (key, value) in &table {
            let platform = crate::sources::SOURCES.iter().any(|s| s.name == key.as_str());
            if platform || (KEYS.contains(&key.as_str()) && key != "platforms") {
                continue;
            }
            return Err(Error::Config(match value.is_table() {
                true => format!("{spec}: [{key}] is not a platform crest reads: use {}", names()),
                false => format!(
                    "{spec}: unknown field `{key}`: the keys are {} and a table per platform",
                    KEYS[..KEYS.len() - 1].join(", ")
                ),
            }));
        }
        if let Some(key) = secret_key(&table, "") {
            return Err(Error::Config(format!(
                "{spec}: `{key}` looks like a secret; secrets stay out of the config: set the platform's environment variable (or …_FILE) instead, see crest run --help"
            )));
        }
        let mut config: RunConfig =
            toml::from_str(text).map_err(|e| Error::Config(format!("{spec}: {}", toml_error(&e))))?;
        config.platforms = platform_tables(spec, text)?;
        config.check(spec)?;
        Ok(config)
    }

    fn check(&self, spec: &str) -> Result<()> {
        let bad = |key: &str, what: String| Err(Error::Config(format!("{spec}: `{key}` {what}")));
        if self.out.trim().is_empty() {
            return bad("out", "is empty: give a path or URL, e.g. out = \"./crest-out\"".into());
        }
        if self.platforms.is_empty() {
            let names: Vec<String> = crate::sources::SOURCES
                .iter()
                .map(|s| format!("[{}]", s.name))
                .collect();
            return Err(Error::Config(format!(
                "{spec}: no platform: add a table with its accounts, one of {}",
                names.join(", ")
            )));
        }
        for (key, value) in [("start", &self.start), ("end", &self.end)] {
            if let Some(v) = value {
                if let Err(e) = parse_date(v) {
                    return bad(key, e);
                }
            }
        }
        if let Err(e) = self.standard_window.parse::<crest_transforms::StandardWindow>() {
            return bad("standard_window", e);
        }
        let currency = self.reporting_currency.trim();
        if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_alphabetic()) {
            return bad("reporting_currency", "is not an ISO 4217 code, e.g. \"USD\"".into());
        }
        for (source, section) in &self.platforms {
            if section.max_qps.is_some_and(|q| !(q.is_finite() && q >= 0.0)) {
                return bad(
                    &format!("{}.max_qps", source.name),
                    "must be a number of requests per second, 0 or more (0: no budget)".into(),
                );
            }
        }
        // A platform without an hourly report would be extracted by day and
        // then left out of an hourly transform.
        let daily: Vec<&str> = self
            .platforms
            .iter()
            .filter(|(s, _)| !s.hourly)
            .map(|(s, _)| s.name)
            .collect();
        if self.granularity == Granularity::Hour && !daily.is_empty() {
            return bad(
                "granularity",
                format!(
                    "= \"hour\" needs platforms with hourly reports, and {} is read by day: run the hourly platforms in their own config",
                    daily.join(", ")
                ),
            );
        }
        if let Some((site, _)) = self.platforms.iter().find(|(s, _)| s.site) {
            if self.roster.is_none() {
                return bad(
                    "roster",
                    format!(
                        "is needed with [{}]: attribution resolves the site's UTMs to creators",
                        site.name
                    ),
                );
            }
        }
        for m in &self.attribution.models {
            if let Err(e) = m.parse::<crest_transforms::attribution::Model>() {
                return bad("attribution.models", e);
            }
        }
        if !(1..=365).contains(&self.attribution.lookback_days) {
            return bad("attribution.lookback_days", "must be 1 to 365 days".into());
        }
        let h = self.attribution.half_life_days;
        if !(h.is_finite() && h > 0.0 && h <= 365.0) {
            return bad(
                "attribution.half_life_days",
                "must be a positive number of days, at most 365".into(),
            );
        }
        if self.alerts.slack
            && std::env::var_os("CREST_SLACK_WEBHOOK_URL").is_none()
            && std::env::var_os("CREST_SLACK_WEBHOOK_URL_FILE").is_none()
        {
            return bad(
                "alerts.slack",
                "is on but neither CREST_SLACK_WEBHOOK_URL nor CREST_SLACK_WEBHOOK_URL_FILE is set".into(),
            );
        }
        if self.alerts.email && std::env::var_os("CREST_SMTP_HOST").is_none() {
            return bad(
                "alerts.email",
                "is on but CREST_SMTP_HOST is not set (see crest alerts --help)".into(),
            );
        }
        Ok(())
    }
}

/// Each registered platform's table in a config's text, read by its connector.
pub fn platform_tables(spec: &str, text: &str) -> Result<Vec<(&'static Source, Section)>> {
    let mut platforms = Vec::new();
    for source in crate::sources::SOURCES {
        match (source.section)(text) {
            Ok(Some(section)) => platforms.push((source, section)),
            Ok(None) => {}
            Err(SectionError::Toml(e)) => {
                return Err(Error::Config(format!("{spec}: [{}]: {}", source.name, toml_error(&e))))
            }
            Err(SectionError::Key { key, problem }) => return Err(Error::Config(format!("{spec}: `{key}` {problem}"))),
        }
    }
    Ok(platforms)
}

fn toml_error(e: &toml::de::Error) -> String {
    // toml's message spans lines (a caret under the spot); keep the gist and the line.
    // serde quotes the offending value ("invalid type: string \"…\""): it may
    // be a secret pasted into the wrong key, so it is never echoed.
    let mut msg = e.message().trim().to_string();
    if msg.starts_with("invalid type") || msg.starts_with("invalid value") {
        let mut cleaned = String::new();
        let mut quoted = false;
        for c in msg.chars() {
            if c == '"' {
                quoted = !quoted;
                if quoted {
                    cleaned.push('…');
                }
            } else if !quoted {
                cleaned.push(c);
            }
        }
        msg = cleaned;
    }
    match e.span() {
        Some(_) => {
            let rendered = e.to_string();
            let line = rendered
                .lines()
                .find_map(|l| l.trim().strip_prefix("TOML parse error at line "))
                .and_then(|l| l.split(',').next())
                .map(|n| format!(" (line {n})"))
                .unwrap_or_default();
            format!("{msg}{line}")
        }
        None => msg,
    }
}

fn secret_key(table: &toml::Table, prefix: &str) -> Option<String> {
    for (k, v) in table {
        let key = format!("{prefix}{k}");
        let lower = k.to_ascii_lowercase();
        if SECRET_WORDS.iter().any(|w| lower.contains(w)) {
            return Some(key);
        }
        if let toml::Value::Table(t) = v {
            if let Some(found) = secret_key(t, &format!("{key}.")) {
                return Some(found);
            }
        }
    }
    None
}

/// The dates a run covers: the config's or the flags', or with `--since-last`
/// today (UTC), the connectors' state widening the read back to the last
/// complete day minus each platform's lookback.
pub fn dates(
    config: &RunConfig,
    spec: &str,
    start: Option<NaiveDate>,
    end: Option<NaiveDate>,
    since_last: bool,
) -> Result<(NaiveDate, NaiveDate)> {
    let today = Utc::now().date_naive();
    let from_config = |v: &Option<String>| v.as_deref().map(parse_date).transpose().map_err(Error::Config);
    let (start, end) = if since_last {
        (today, today)
    } else {
        let start = start.or(from_config(&config.start)?);
        let end = end.or(from_config(&config.end)?);
        match (start, end) {
            (Some(s), Some(e)) => (s, e),
            _ => {
                return Err(Error::Config(format!(
                    "{spec} has no start and end: set them, or give --start and --end, or --since-last"
                )))
            }
        }
    };
    if end < start {
        return Err(Error::Config(format!("{spec}: end {end} is before start {start}")));
    }
    // The earliest time zone is UTC+14: a later date has not begun anywhere.
    if end > today + chrono::Days::new(1) {
        return Err(Error::Config(format!(
            "{spec}: end {end} is in the future (today is {today} UTC): no platform has data for it yet; use --since-last for what is new"
        )));
    }
    Ok((start, end))
}

/// Reads and checks the files the config names before anything is
/// extracted: a bad roster should not cost an hour of API calls.
async fn preflight(config: &RunConfig, label: &str) -> Result<()> {
    let read = |key: &'static str, spec: String| async move {
        read_file(&spec)
            .await
            .map_err(|e| e.context(format!("{label}: `{key}`")))?
            .ok_or_else(|| Error::Config(format!("{label}: `{key}` {spec} does not exist")))
    };
    if let Some(spec) = &config.roster {
        let bytes = read("roster", spec.clone()).await?;
        crest_transforms::Roster::parse(spec, &bytes)
            .map_err(|e| Error::from(e).context(format!("{label}: `roster`")))?;
    }
    if let Some(spec) = &config.fx {
        let bytes = read("fx", spec.clone()).await?;
        let reporting = config.reporting_currency.trim().to_uppercase();
        crest_transforms::FxRates::parse(spec, &bytes, &reporting)
            .map_err(|e| Error::from(e).context(format!("{label}: `fx`")))?;
    }
    if let Some(spec) = &config.benchmarks {
        let bytes = read("benchmarks", spec.clone()).await?;
        crest_core::benchmarks::parse(spec, &bytes).map_err(|e| e.context(format!("{label}: `benchmarks`")))?;
    }
    Ok(())
}

/// What one stage did, for the summary and the JSON log.
#[derive(Debug, Serialize)]
struct StageRecord {
    stage: String,
    elapsed_ms: u64,
    #[serde(flatten)]
    detail: serde_json::Value,
}

#[derive(Debug, Serialize)]
struct RunSummary {
    run_id: String,
    stage: &'static str,
    status: &'static str,
    config: String,
    start: NaiveDate,
    end: NaiveDate,
    started_at: chrono::DateTime<Utc>,
    finished_at: Option<chrono::DateTime<Utc>>,
    failed: Option<String>,
    stages: Vec<StageRecord>,
}

struct Stages {
    summary: RunSummary,
    out: Location,
}

impl Stages {
    /// A progress line for people; JSON logs carry the same as events.
    fn line(&self, stage: &str, text: &str) {
        if crest_core::cli::log_format() == crest_core::cli::LogFormat::Human {
            println!("▸ {stage:<10} {text}");
        }
    }

    fn record(&mut self, stage: &str, started: Instant, detail: serde_json::Value) {
        let elapsed_ms = started.elapsed().as_millis() as u64;
        tracing::info!(run_id = %self.summary.run_id, stage, elapsed_ms, detail = %detail, "stage finished");
        self.summary.stages.push(StageRecord {
            stage: stage.to_string(),
            elapsed_ms,
            detail,
        });
    }

    async fn save_running(&self) -> Result<()> {
        self.out
            .put_json(&format!("_runs/{}.json", self.summary.run_id), &self.summary)
            .await
    }

    async fn save(&mut self, failed: Option<&Error>) -> Result<()> {
        self.summary.finished_at = Some(Utc::now());
        self.summary.status = if failed.is_some() { "failed" } else { "succeeded" };
        self.summary.failed = failed.map(|e| e.to_string());
        self.out
            .put_json(&format!("_runs/{}.json", self.summary.run_id), &self.summary)
            .await
    }
}

/// Flags a platform's extract is run with.
fn extract_flags(
    config: &RunConfig,
    platform: &str,
    section: &Section,
    (start, end): (NaiveDate, NaiveDate),
) -> Vec<String> {
    // `--flag=value`: a value is never read as a flag of its own.
    let mut flags = vec![
        format!("--wait-for-lease={}", config.wait_for_lease),
        format!("--start={start}"),
        format!("--end={end}"),
        format!("--out={}", config.out),
        format!("--state={}/_state/{platform}.json", config.out.trim_end_matches('/')),
    ];
    flags.extend(section.flags.iter().cloned());
    if let Some(q) = section.max_qps {
        flags.push(format!("--max-qps={q}"));
    }
    if let Some(d) = section.lookback_days {
        flags.push(format!("--lookback-days={d}"));
    }
    flags
}

pub struct RunOptions {
    pub config_spec: String,
    pub wait_for_lease: Option<u64>,
    pub start: Option<NaiveDate>,
    pub end: Option<NaiveDate>,
    pub since_last: bool,
}

pub async fn run(options: RunOptions) -> Result<()> {
    let mut config = RunConfig::read(&options.config_spec).await?;
    if let Some(secs) = options.wait_for_lease {
        config.wait_for_lease = secs;
    }
    let range = dates(
        &config,
        &options.config_spec,
        options.start,
        options.end,
        options.since_last,
    )?;
    if options.since_last {
        require_state(&config, &options.config_spec).await?;
    }
    run_with(config, &options.config_spec, range).await
}

/// `--since-last` reads on from each platform's last complete day: without
/// a state file there is none, and it would read today alone for ever.
async fn require_state(config: &RunConfig, spec: &str) -> Result<()> {
    // An output that does not exist yet has no state (and is not created here).
    let out = Location::parse_existing(&config.out).ok();
    for (source, _) in &config.platforms {
        let platform = source.name;
        let state = match &out {
            Some(out) => out.get(&format!("_state/{platform}.json")).await?,
            None => None,
        };
        if state.is_none() {
            return Err(Error::Config(format!(
                "{spec}: no state for {platform} yet ({}/_state/{platform}.json): run once with the config's start and end (or --start/--end) before --since-last",
                config.out.trim_end_matches('/')
            )));
        }
    }
    Ok(())
}

/// Runs every stage of a checked config over `start..=end`; `label` names
/// where the config came from in the summary.
pub async fn run_with(config: RunConfig, label: &str, (start, end): (NaiveDate, NaiveDate)) -> Result<()> {
    preflight(&config, label).await?;
    let out = Location::parse(&config.out).map_err(|e| e.context(format!("{label}: `out`")))?;
    let now = Utc::now();
    let run_id = format!(
        "{}-{}",
        now.format("%Y%m%dT%H%M%SZ"),
        &uuid::Uuid::now_v7().simple().to_string()[24..]
    );
    let mut stages = Stages {
        summary: RunSummary {
            run_id: run_id.clone(),
            stage: "run",
            status: "running",
            config: label.to_string(),
            start,
            end,
            started_at: now,
            finished_at: None,
            failed: None,
            stages: Vec::new(),
        },
        out,
    };
    // One run of a program at a time: a second run's extracts would replace
    // raw files the first one's transform is reading. It waits its turn (or
    // stops with exit 7, naming the holder).
    let lease = crest_core::lease::Lease::acquire(
        &stages.out,
        "run",
        "crest run",
        std::time::Duration::from_secs(config.wait_for_lease),
    )
    .await?;
    // A summary from the start: a killed run leaves one that says "running".
    stages.save_running().await?;
    let result = pipeline(&config, (start, end), &mut stages).await;
    lease.release().await;
    let saved = stages.save(result.as_ref().err()).await;
    result?;
    saved?;
    println!(
        "run {run_id} finished in {:.1}s; summary {}/_runs/{run_id}.json",
        (Utc::now() - now).num_milliseconds() as f64 / 1000.0,
        config.out.trim_end_matches('/')
    );
    Ok(())
}

async fn pipeline(config: &RunConfig, range: (NaiveDate, NaiveDate), stages: &mut Stages) -> Result<()> {
    // Extract: every platform at once, each within its own request budget.
    let started = Instant::now();
    let jobs: Vec<(&Source, &[String], Vec<String>)> = config
        .platforms
        .iter()
        .map(|(source, section)| {
            let mut flags = extract_flags(config, source.name, section, range);
            if source.hourly && config.granularity == Granularity::Hour {
                flags.push("--granularity=hour".into());
            }
            (*source, section.accounts.as_slice(), flags)
        })
        .collect();
    stages.line(
        "extract",
        &format!(
            "{} ({}..{}) …",
            jobs.iter().map(|j| j.0.name).collect::<Vec<_>>().join(", "),
            range.0,
            range.1
        ),
    );
    let results =
        futures::future::join_all(jobs.iter().map(|(source, _, flags)| (source.extract)(flags.clone()))).await;
    let mut extracted: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let mut first = range.0;
    let mut last = range.1;
    // The ad platforms' reports are transformed; the site's are attributed.
    let mut ads_read = false;
    let mut site_range: Option<(NaiveDate, NaiveDate)> = None;
    let mut failure: Option<Error> = None;
    for ((source, accounts, _), result) in jobs.iter().zip(results) {
        let platform = source.name;
        match result {
            Ok(manifests) => {
                for m in &manifests {
                    for s in &m.slices {
                        if source.site {
                            let (a, b) = site_range.get_or_insert((s.start, s.end));
                            *a = (*a).min(s.start);
                            *b = (*b).max(s.end);
                        } else {
                            first = first.min(s.start);
                            last = last.max(s.end);
                        }
                    }
                    ads_read |= !source.site;
                    stages.line(
                        "",
                        &format!(
                            "{}/{}: {} rows from {} account(s), {} API calls, {} retries ({:.1}s)",
                            m.platform,
                            m.report,
                            m.rows,
                            m.accounts.len(),
                            m.api.api_calls,
                            m.api.retries,
                            m.elapsed_ms as f64 / 1000.0
                        ),
                    );
                    extracted.insert(
                        format!("{}/{}", m.platform, m.report),
                        serde_json::json!({"run_id": m.run_id, "rows": m.rows, "api_calls": m.api.api_calls, "retries": m.api.retries}),
                    );
                }
            }
            Err(e) => {
                // Name the account when there is one; the first failure decides the exit code.
                let who = if accounts.len() == 1 {
                    format!("extract {platform} {}", accounts[0])
                } else {
                    format!("extract {platform} ({})", accounts.join(","))
                };
                let e = e.context(who);
                stages.line("", &format!("failed: {e}"));
                failure.get_or_insert(e);
            }
        }
    }
    stages.record("extract", started, serde_json::json!({ "reports": extracted }));
    // What the other platforms read is still transformed and loaded (each
    // platform's rows are replaced only where it has input); the run then
    // fails with the first failure, and alerts wait for a complete picture.
    if extracted.is_empty() {
        if let Some(e) = failure {
            return Err(e);
        }
    }

    let any_ads = config.platforms.iter().any(|(s, _)| !s.site);
    if any_ads && !ads_read {
        // Every ad platform failed: what the site read is still attributed below.
        stages.line("transform", "skipped: no ad platform was read");
    } else if any_ads {
        transform_and_load(config, (first, last), stages).await?;
    }
    if let Some(site) = site_range {
        attribute_and_load(config, site, stages).await?;
    }
    decide(config, stages, failure).await
}

/// Transform everything the ad platforms' extracts read (the lookback widens
/// it), then load it.
async fn transform_and_load(
    config: &RunConfig,
    (first, last): (NaiveDate, NaiveDate),
    stages: &mut Stages,
) -> Result<()> {
    let started = Instant::now();
    stages.line("transform", &format!("{first}..{last} …"));
    let summary = crate::transform_quiet(TransformArgs {
        input: config.out.clone(),
        out: None,
        wait_for_lease: config.wait_for_lease.max(60),
        start: first,
        end: last,
        roster: config.roster.clone(),
        fx: config.fx.clone(),
        reporting_currency: config.reporting_currency.clone(),
        standard_window: config.standard_window.parse().map_err(Error::Config)?,
        granularity: match config.granularity {
            Granularity::Day => GranularityArg::Day,
            Granularity::Hour => GranularityArg::Hour,
        },
    })
    .await
    .map_err(|e| e.context("transform"))?;
    let quarantined: u64 = summary.quarantined.values().sum();
    stages.line(
        "",
        &format!(
            "{} rows in, {} out, {} quarantined, {} with no creator; reconciled ({:.1}s)",
            summary.rows_in,
            summary.rows_out,
            quarantined,
            summary.unresolved_rows,
            summary.elapsed_ms as f64 / 1000.0
        ),
    );
    stages.record(
        "transform",
        started,
        serde_json::json!({"run_id": summary.run_id, "rows_in": summary.rows_in, "rows_out": summary.rows_out,
            "quarantined": quarantined, "unresolved_rows": summary.unresolved_rows, "reconciled": true}),
    );

    // Load, then the decision layer on the target.
    let started = Instant::now();
    stages.line("load", &format!("into {} …", config.target));
    let loaded = crate::load_quiet(LoadArgs {
        input: config.out.clone(),
        target: config.target.clone(),
        force: false,
        create: true,
        wait_for_lease: config.wait_for_lease.max(300),
    })
    .await
    .map_err(|e| e.context("load"))?;
    stages.line("", &loaded.line);
    stages.record("load", started, loaded.detail);
    Ok(())
}

/// The site's conversions of the days its extract read, credited to
/// creators into `{out}/attribution`, then loaded.
async fn attribute_and_load(
    config: &RunConfig,
    (first, last): (NaiveDate, NaiveDate),
    stages: &mut Stages,
) -> Result<()> {
    let Some(roster) = &config.roster else {
        stages.line(
            "attribute",
            "skipped: the config has no roster to resolve the site's UTMs to creators",
        );
        return Ok(());
    };
    let started = Instant::now();
    stages.line("attribute", &format!("{first}..{last} …"));
    let options = crate::attribute::AttributeOptions {
        input: config.out.clone(),
        out: None,
        range: crest_core::window::DateRange::new(first, last)?,
        roster: roster.clone(),
        models: config.attribution.models.clone(),
        lookback_days: config.attribution.lookback_days,
        half_life_days: config.attribution.half_life_days,
        wait_for_lease: config.wait_for_lease.max(60),
        max_events_in_memory: crest_transforms::attribution::run::DEFAULT_MAX_EVENTS_IN_MEMORY,
    };
    let (summary, out) = crate::attribute::attribute_quiet(&options)
        .await
        .map_err(|e| e.context("attribute"))?;
    stages.line(
        "",
        &format!(
            "{} site conversions, {} with no creator touch, {} duplicate transactions counted once ({:.1}s)",
            summary.conversions,
            summary.unattributed_conversions,
            summary.duplicate_transactions,
            summary.elapsed_ms as f64 / 1000.0
        ),
    );
    stages.record(
        "attribute",
        started,
        serde_json::json!({"run_id": summary.run_id, "conversions": summary.conversions,
            "unattributed": summary.unattributed_conversions, "rows_out": summary.rows_out}),
    );
    let started = Instant::now();
    let loaded = crate::load_quiet(LoadArgs {
        input: out,
        target: config.target.clone(),
        force: false,
        create: true,
        wait_for_lease: config.wait_for_lease.max(300),
    })
    .await
    .map_err(|e| e.context("load attribution"))?;
    stages.line("", &loaded.line);
    stages.record("load_attribution", started, loaded.detail);
    Ok(())
}

/// Benchmarks and views on the target, then the alerts (only when every
/// extract succeeded: alerts wait for a complete picture).
async fn decide(config: &RunConfig, stages: &mut Stages, failure: Option<Error>) -> Result<()> {
    let started = Instant::now();
    let target = TargetArgs {
        target: config.target.clone(),
    };
    let benchmarks = match &config.benchmarks {
        Some(file) => Some(
            crate::load_benchmarks(BenchmarksLoadArgs {
                file: file.clone(),
                target: TargetArgs {
                    target: config.target.clone(),
                },
            })
            .await
            .map_err(|e| e.context("benchmarks"))?
            .0,
        ),
        None => None,
    };
    let views = crate::apply_views(&target).await.map_err(|e| e.context("views"))?;
    stages.line(
        "views",
        &format!(
            "{views} views applied{}",
            benchmarks
                .map(|n| format!(", {n} benchmarks loaded"))
                .unwrap_or_default()
        ),
    );
    stages.record(
        "views",
        started,
        serde_json::json!({"views": views, "benchmarks": config.benchmarks}),
    );

    if let Some(e) = failure {
        return Err(e);
    }
    if config.alerts.slack || config.alerts.email {
        let started = Instant::now();
        let outcome = crate::alerts_quiet(AlertsArgs {
            target,
            slack: config.alerts.slack,
            email: config.alerts.email,
            dry_run: false,
            delivery_attempts: 5,
            retry_initial_ms: 1000,
        })
        .await
        .map_err(|e| e.context("alerts"))?;
        stages.line(
            "alerts",
            &format!(
                "{} creator × platform rows evaluated, {} tier change(s){}",
                outcome.evaluated,
                outcome.changes,
                if outcome.sent_to.is_empty() {
                    String::new()
                } else {
                    format!(" sent to {}", outcome.sent_to.join(" and "))
                }
            ),
        );
        stages.record(
            "alerts",
            started,
            serde_json::json!({"evaluated": outcome.evaluated, "tiers_changed": outcome.changes, "sent_to": outcome.sent_to}),
        );
    }
    Ok(())
}
