//! The CLI skeleton every connector binary uses: common flags, logging (human
//! on a terminal, JSON for Airflow), a progress bar on a terminal, one-line
//! errors and documented exit codes.
//!
//! Exit codes: 0 ok, 2 usage or config, 3 auth, 4 upstream API error after
//! retries, 5 storage.

use crate::http::RetryPolicy;
use crate::window::{parse_date, DateRange};
use crate::{Error, Result};
use chrono::NaiveDate;
use clap::{Args, Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// Readable lines (the default on a terminal).
    #[default]
    Human,
    /// One JSON object per line, for Airflow and log shippers.
    Json,
}

/// Flags every binary accepts.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Log format: human or json. Log level of crest's own events from CREST_LOG
    /// (e.g. CREST_LOG=debug); other libraries stay at warn unless CREST_LOG_DEPENDENCIES=1.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    pub log_format: LogFormat,
}

/// Flags of every `extract` subcommand.
#[derive(Debug, Clone, Args)]
pub struct ExtractArgs {
    /// First date to extract (inclusive, YYYY-MM-DD, in the account's reporting time zone).
    #[arg(long, value_parser = parse_date, value_name = "DATE")]
    pub start: NaiveDate,
    /// Last date to extract (inclusive, YYYY-MM-DD, in the account's reporting time zone).
    #[arg(long, value_parser = parse_date, value_name = "DATE")]
    pub end: NaiveDate,
    /// Output location: a path, file://, s3://, gs:// or az:// URL.
    #[arg(long, value_name = "URL")]
    pub out: String,
    /// Incremental state file (JSON, any location --out accepts). With it, every
    /// run also re-reads from the last complete date minus --lookback-days, even
    /// before --start, and days not over yet in the account's time zone stay
    /// provisional until a later run reads them complete.
    #[arg(long, value_name = "URL")]
    pub state: Option<String>,
    /// Days before the last complete date to read again (platforms restate
    /// conversions). Default: the longest attribution window the account counts
    /// conversions in, and at least the platform's restatement period.
    #[arg(long, value_name = "DAYS")]
    pub lookback_days: Option<u32>,
    /// Request budget in requests per second (0 = no budget; the platform's rate-limit answers still pace).
    #[arg(long, value_name = "QPS")]
    pub max_qps: Option<f64>,
    /// Requests in flight at once for one report slice.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub concurrency: usize,
    /// Per-request timeout in seconds (whole request, body included).
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    pub timeout_secs: f64,
    /// Attempts per request before the run stops (the first included).
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub max_attempts: usize,
    /// First retry delay in milliseconds; it doubles (with jitter) up to a minute.
    #[arg(long, default_value_t = 500, value_name = "MS")]
    pub retry_initial_ms: u64,
    /// Largest response body read, in MiB (a guard against a broken server).
    #[arg(long, default_value_t = crate::http::DEFAULT_MAX_BODY_MIB, value_name = "MIB")]
    pub max_body_mib: u64,
    /// Wait up to SECS for another run writing the same account to finish
    /// (default: fail at once with exit 7, naming it).
    #[arg(long, default_value_t = 0, value_name = "SECS")]
    pub wait_for_lease: u64,
}

impl ExtractArgs {
    pub fn range(&self) -> Result<DateRange> {
        DateRange::new(self.start, self.end)
    }

    pub fn wait_for_lease(&self) -> Duration {
        Duration::from_secs(self.wait_for_lease)
    }

    /// The incremental state file `--state` names, opened (created on first use).
    pub async fn state_store(&self) -> Result<Option<crate::state::StateStore>> {
        match &self.state {
            Some(url) => crate::state::StateStore::open(url).await.map(Some),
            None => Ok(None),
        }
    }

    pub fn retry_policy(&self) -> Result<RetryPolicy> {
        if !(self.timeout_secs.is_finite() && self.timeout_secs > 0.0 && self.timeout_secs <= 86_400.0) {
            return Err(Error::Config(
                "--timeout-secs must be a positive number of seconds, at most 86400".into(),
            ));
        }
        if self.max_attempts == 0 {
            return Err(Error::Config("--max-attempts must be at least 1".into()));
        }
        if self.concurrency == 0 {
            return Err(Error::Config("--concurrency must be at least 1".into()));
        }
        Ok(RetryPolicy {
            max_attempts: self.max_attempts,
            initial_delay: Duration::from_millis(self.retry_initial_ms),
            timeout: Duration::from_secs_f64(self.timeout_secs),
            max_body_bytes: self.max_body_mib.max(1).saturating_mul(1 << 20),
            ..RetryPolicy::default()
        })
    }
}

/// Parses arguments; usage errors print one line (plus a pointer to --help) and exit 2.
pub fn parse<P: Parser>() -> std::result::Result<P, ExitCode> {
    match P::try_parse() {
        Ok(p) => Ok(p),
        Err(e) => {
            use clap::error::ErrorKind;
            match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = e.print();
                    Err(if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                        ExitCode::from(2)
                    } else {
                        ExitCode::SUCCESS
                    })
                }
                _ => {
                    let rendered = e.render().to_string();
                    let first = rendered
                        .lines()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("invalid arguments");
                    eprintln!("{} (see --help)", first.trim());
                    Err(ExitCode::from(2))
                }
            }
        }
    }
}

/// The current progress bar, so log lines are printed above it rather than through it.
static ACTIVE_BAR: OnceLock<Mutex<Option<ProgressBar>>> = OnceLock::new();
static LOG_FORMAT: OnceLock<LogFormat> = OnceLock::new();

fn active_bar() -> Option<ProgressBar> {
    ACTIVE_BAR.get().and_then(|m| m.lock().ok().and_then(|b| b.clone()))
}

struct BarAwareStderr;

impl std::io::Write for BarAwareStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match active_bar() {
            Some(bar) => bar.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// crest's own crates: `CREST_LOG` sets their level.
const CREST_TARGETS: &[&str] = &[
    "crest",
    "crest_core",
    "crest_tiktok",
    "crest_meta",
    "crest_youtube",
    "crest_transforms",
    "crest_lake",
    "crest_bigquery",
    "crest_snowflake",
    "crest_sandbox",
];

/// The log filter: `CREST_LOG` (a level such as `debug`, or `target=level`
/// directives) applies to crest's own crates; every other crate stays at
/// `warn`, because at debug the warehouse and OAuth clients log their token
/// exchanges and auth responses. `CREST_LOG_DEPENDENCIES=1` lets `CREST_LOG`
/// reach them too (for debugging a client library, never in production logs).
pub fn log_filter(crest_log: Option<&str>, dependencies: bool) -> String {
    let crest_log = crest_log.map(str::trim).filter(|s| !s.is_empty()).unwrap_or("info");
    if dependencies {
        return crest_log.to_string();
    }
    // The lake's commits race on purpose (optimistic concurrency) and crest
    // retries them; delta-rs's own notes of a lost race are not the user's.
    let mut directives = vec!["warn".to_string(), "deltalake_core=error".to_string()];
    for directive in crest_log.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        match directive.split_once('=') {
            // A bare level: crest's crates at that level.
            None => directives.extend(CREST_TARGETS.iter().map(|t| format!("{t}={directive}"))),
            Some((target, _))
                if CREST_TARGETS
                    .iter()
                    .any(|t| target == *t || target.starts_with(&format!("{t}::"))) =>
            {
                directives.push(directive.to_string())
            }
            // Another crate's target: only with CREST_LOG_DEPENDENCIES=1.
            Some(_) => {}
        }
    }
    directives.join(",")
}

/// Logs go to stderr; stdout is left for a command's own output.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let _ = LOG_FORMAT.set(format);
    let spec = log_filter(
        std::env::var("CREST_LOG").ok().as_deref(),
        std::env::var("CREST_LOG_DEPENDENCIES").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")),
    );
    let filter = EnvFilter::try_new(&spec).unwrap_or_else(|_| EnvFilter::new(log_filter(None, false)));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .try_init(),
        LogFormat::Human => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(|| BarAwareStderr)
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn crest_log_never_raises_another_crates_level_unless_asked() {
        let debug = log_filter(Some("debug"), false);
        assert!(debug.starts_with("warn,") && debug.contains("crest_core=debug") && debug.contains("crest=debug"));
        assert!(
            !debug.contains("snowflake_api") && !debug.contains("yup_oauth2"),
            "{debug}"
        );
        let mixed = log_filter(Some("info,crest_lake=trace,yup_oauth2=debug"), false);
        assert!(
            mixed.contains("crest_lake=trace") && !mixed.contains("yup_oauth2"),
            "{mixed}"
        );
        assert_eq!(log_filter(Some("yup_oauth2=debug"), true), "yup_oauth2=debug");
        assert!(log_filter(None, false).contains("crest_tiktok=info"));
    }
}

/// Runs a command's body on the async runtime and ends it with [`finish`].
pub fn run<F: std::future::Future<Output = Result<()>>>(body: F) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => finish(runtime.block_on(body)),
        Err(e) => finish(Err(Error::Config(format!("cannot start the async runtime: {e}")))),
    }
}

/// Ends a command: prints the error as one line, returns its exit code.
pub fn finish(result: Result<()>) -> ExitCode {
    if let Some(bar) = active_bar() {
        bar.finish_and_clear();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: a JSON event for log shippers, or plain text for people.
            if LOG_FORMAT.get() == Some(&LogFormat::Json) {
                tracing::error!(exit_code = e.exit_code(), "{e}");
            } else {
                eprintln!("error: {e}");
            }
            e.exit()
        }
    }
}

/// Progress of a long command: a bar on a terminal, silent otherwise (the
/// logs say what happened). Counts days done and rows written.
#[derive(Clone)]
pub struct Progress {
    bar: ProgressBar,
    rows: Arc<AtomicU64>,
}

impl Progress {
    pub fn new(format: LogFormat, what: &str) -> Self {
        let visible = format == LogFormat::Human && std::io::stderr().is_terminal();
        let bar = if visible {
            ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {pos}/{len} days · {msg} · {elapsed_precise}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        if visible {
            let slot = ACTIVE_BAR.get_or_init(|| Mutex::new(None));
            if let Ok(mut s) = slot.lock() {
                *s = Some(bar.clone());
            }
        }
        Progress {
            bar,
            rows: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn hidden() -> Self {
        Progress {
            bar: ProgressBar::hidden(),
            rows: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn set_length(&self, days: u64) {
        self.bar.set_length(days);
    }

    pub fn advance(&self, days: u64) {
        self.bar.inc(days);
    }

    pub fn add_rows(&self, rows: u64) {
        let total = self.rows.fetch_add(rows, Ordering::Relaxed) + rows;
        self.bar.set_message(format!("{total} rows"));
    }

    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }
}

/// The one line an extract prints on success (stdout), with where its manifest is.
pub fn print_extract_summary(manifest: &crate::manifest::RunManifest, accounts: &str, range: DateRange, out: &str) {
    println!(
        "extracted {} rows of {}/{} ({} {accounts}, {range}) into {} file(s) in {:.1}s; {} API calls, {} retries; manifest {}/_runs/{}.json",
        manifest.rows,
        manifest.platform,
        manifest.report,
        manifest.accounts.len(),
        manifest.files.len(),
        manifest.elapsed_ms as f64 / 1000.0,
        manifest.api.api_calls,
        manifest.api.retries,
        out.trim_end_matches('/'),
        manifest.run_id
    );
    for (account, read) in &manifest.reads {
        if let Some(from) = read.planned.reread_from {
            println!(
                "  account {account}: re-read {from}..{} for restatements ({}-day lookback from the last complete day)",
                range.start.pred_opt().unwrap_or(range.start),
                read.lookback_days
            );
        }
    }
    for (account, days) in &manifest.provisional {
        if let (Some(first), Some(last)) = (days.first(), days.last()) {
            println!(
                "  account {account}: {} provisional day(s) {} (not complete yet in the account's time zone or not served; read again by the next run with --state)",
                days.len(),
                DateRange { start: *first, end: *last }
            );
        }
    }
    for e in &manifest.emptied {
        println!(
            "warning: account {} {}: {} rows → 0 ({})",
            e.account_id,
            e.date,
            e.rows_before,
            if e.replaced {
                "the platform answered the complete day with no rows; the earlier rows were replaced"
            } else {
                "no rows yet for a day that is not complete; the earlier rows were kept"
            }
        );
    }
}

/// The log format `init_logging` set (human before it ran).
pub fn log_format() -> LogFormat {
    LOG_FORMAT.get().copied().unwrap_or_default()
}

/// How an extract reports as it goes: on its own (`crest-tiktok extract`:
/// a progress bar on a terminal and a summary line on stdout), or through a
/// caller that reports per stage itself (`crest run`: nothing printed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    Own(LogFormat),
    Caller,
}

impl Report {
    pub fn progress(self, what: &str) -> Progress {
        match self {
            Report::Own(format) => Progress::new(format, what),
            Report::Caller => Progress::hidden(),
        }
    }

    pub fn summary(self, manifest: &crate::manifest::RunManifest, accounts: &str, range: DateRange, out: &str) {
        if let Report::Own(_) = self {
            print_extract_summary(manifest, accounts, range, out);
        }
    }
}

/// A connector's command line for `extract` with these flags (as `crest run`
/// drives it), parsed by the connector's own `Cli`.
pub fn parse_extract<P: Parser>(binary: &str, flags: Vec<String>) -> Result<P> {
    parse_from([binary.to_string(), "extract".to_string()].into_iter().chain(flags))
}

/// Parses a command's arguments given as a list (`crest run` driving a
/// connector with the flags its config stands for): a bad value is a config
/// error naming the flag, as it would be on the command line.
pub fn parse_from<P: Parser>(argv: impl IntoIterator<Item = String>) -> Result<P> {
    P::try_parse_from(argv).map_err(|e| {
        let rendered = e.render().to_string();
        let first = rendered
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("invalid arguments")
            .trim()
            .trim_start_matches("error: ")
            .to_string();
        Error::Config(first)
    })
}

/// A connector's entry points, the same for every platform: `main` and
/// `execute` (its binary, reporting on its own) and `extract_with` (how
/// `crest run` drives it through its [`crate::source::Source`], reporting
/// through the caller, with the connector's own checks and defaults).
/// Expects in scope: `Cli` (with `global.log_format` and
/// `command: Command::{Check, Extract(Box<…>)}`), `async fn check(args)`
/// and `async fn extract(args, Report) -> Result<Vec<RunManifest>>`.
#[macro_export]
macro_rules! connector_entry_points {
    ($bin:literal) => {
        /// The binary's `main`: parse the command line, set up logging, run, exit code.
        pub fn main() -> std::process::ExitCode {
            let cli: Cli = match $crate::cli::parse() {
                Ok(c) => c,
                Err(code) => return code,
            };
            $crate::cli::init_logging(cli.global.log_format);
            $crate::cli::run(execute(cli))
        }

        /// Runs a parsed command line.
        pub async fn execute(cli: Cli) -> $crate::Result<()> {
            let format = cli.global.log_format;
            match cli.command {
                Command::Check(args) => check(args).await,
                Command::Extract(args) => extract(*args, $crate::cli::Report::Own(format)).await.map(|_| ()),
            }
        }

        /// `extract` with these flags (as on the command line, without the
        /// command name), reporting through the caller.
        pub async fn extract_with(flags: Vec<String>) -> $crate::Result<Vec<$crate::manifest::RunManifest>> {
            match $crate::cli::parse_extract::<Cli>($bin, flags)?.command {
                Command::Extract(args) => extract(*args, $crate::cli::Report::Caller).await,
                Command::Check(_) => Err($crate::Error::Config("extract_with runs extract only".into())),
            }
        }
    };
}

/// A base URL from the environment (`var`, else `default`): http(s) only; a
/// bad one is a config error naming the variable. Tests and proxies point a
/// connector elsewhere this way.
pub fn env_base_url(var: &str, default: &str) -> Result<url::Url> {
    let raw = std::env::var(var).unwrap_or_else(|_| default.to_string());
    url::Url::parse(raw.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| Error::Config(format!("{var} '{raw}' is not an http(s) URL; e.g. {default}")))
}

/// Account ids from a repeated or comma-separated flag: blanks dropped, each
/// checked and normalised by `parse` (e.g. Meta's `act_123` → `123`), then
/// de-duplicated in order, so an account is never read twice in one run.
pub fn account_ids(raw: &[String], parse: impl Fn(&str) -> Result<String>) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for id in raw.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let id = parse(id)?;
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}
