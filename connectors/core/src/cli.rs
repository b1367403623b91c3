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
    /// Log format: human or json. Log level from CREST_LOG (e.g. CREST_LOG=debug).
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
    /// Incremental state file (JSON, any location --out accepts). With it, a run
    /// starts from the last completed date minus --lookback-days.
    #[arg(long, value_name = "URL")]
    pub state: Option<String>,
    /// Days before the last completed date to read again (platforms restate conversions).
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
}

impl ExtractArgs {
    pub fn range(&self) -> Result<DateRange> {
        DateRange::new(self.start, self.end)
    }

    pub fn retry_policy(&self) -> Result<RetryPolicy> {
        if !(self.timeout_secs.is_finite() && self.timeout_secs > 0.0) {
            return Err(Error::Config("--timeout-secs must be a positive number".into()));
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

/// Logs go to stderr; stdout is left for a command's own output.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let _ = LOG_FORMAT.set(format);
    let filter = EnvFilter::try_from_env("CREST_LOG")
        // crest's own events; the warehouse clients' chatter only when asked for.
        .unwrap_or_else(|_| {
            EnvFilter::new("info,snowflake_api=warn,gcp_bigquery_client=warn,yup_oauth2=warn,reqwest_retry=error")
        });
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
}
