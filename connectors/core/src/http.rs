//! The HTTP client every connector uses: per-request timeout, pacing, retries
//! with exponential backoff and jitter (429, 5xx, timeouts, resets, cut-off or
//! malformed bodies), `Retry-After`, and a platform hook that classifies
//! errors served inside an HTTP 200 (TikTok's `code != 0`).
//!
//! Logged request labels are built by the connector from the path and
//! non-secret parameters; every message is scrubbed of the client's secrets.

use crate::error::one_line;
use crate::pacing::Pacer;
use crate::{Error, Secret};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What a platform says about one response.
#[derive(Debug, Clone)]
pub enum Verdict {
    Ok,
    /// Worth another attempt. `rate_limited` also brakes the pacer.
    Retry {
        reason: String,
        after: Option<Duration>,
        rate_limited: bool,
    },
    /// Credentials missing, rejected or expired.
    Auth(String),
    /// HTTP 401: an access token that expired during the run; a token source
    /// refreshes it once and the call is made again.
    Unauthenticated(String),
    /// The request itself is wrong (a parameter, a metric name).
    BadRequest(String),
    /// The query asks for too much at once: the caller should split it.
    TooLarge(String),
    /// Anything else that another attempt will not fix.
    Fatal(String),
}

/// Why a call finally failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Auth(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Exhausted(String),
    #[error("{0}")]
    Fatal(String),
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Auth(m) | ApiError::Unauthenticated(m) => Error::Auth(m),
            ApiError::BadRequest(m) => Error::Config(m),
            ApiError::TooLarge(m) | ApiError::Exhausted(m) | ApiError::Fatal(m) => Error::Upstream(m),
        }
    }
}

/// How a platform reads responses beyond the HTTP 200 body (which the per-call
/// classifier handles): error statuses and usage headers.
pub trait PlatformPolicy: Send + Sync {
    /// Classifies a non-2xx response; `None` applies the default rules
    /// (429 and 5xx retry, 401/403 auth, other 4xx bad request).
    fn classify_status(&self, _status: StatusCode, _body: &[u8]) -> Option<Verdict> {
        None
    }
    /// Reads usage headers so the pacer slows down before the limit.
    fn observe_headers(&self, _headers: &HeaderMap, _pacer: &Pacer) {}
}

/// Default rules only.
pub struct DefaultPolicy;
impl PlatformPolicy for DefaultPolicy {}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: usize,
    /// Attempts when the server cannot be reached at all (refused, DNS):
    /// those rarely heal within seconds, so give up sooner.
    pub max_connect_attempts: usize,
    pub initial_delay: Duration,
    pub max_delay: Duration,
    /// Whole request, body included.
    pub timeout: Duration,
    /// The largest response body read: far above any real page (a TikTok page
    /// of 1,000 rows is about 1 MB, a Google Ads day stream tens of MB), so a
    /// broken or hostile server cannot exhaust memory.
    pub max_body_bytes: u64,
}

/// [`RetryPolicy::max_body_bytes`] unless `--max-body-mib` says otherwise.
pub const DEFAULT_MAX_BODY_MIB: u64 = 256;

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            max_connect_attempts: 3,
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
            timeout: Duration::from_secs(60),
            max_body_bytes: DEFAULT_MAX_BODY_MIB << 20,
        }
    }
}

/// Counters for the run manifest.
#[derive(Debug, Default)]
pub struct CallStats {
    pub calls: AtomicU64,
    pub retries: AtomicU64,
    pub rate_limited: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct CallCounts {
    pub api_calls: u64,
    pub retries: u64,
    pub rate_limited: u64,
}

impl CallStats {
    pub fn snapshot(&self) -> CallCounts {
        CallCounts {
            api_calls: self.calls.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
        }
    }
}

pub struct ApiClient {
    http: reqwest::Client,
    pacer: Pacer,
    policy: RetryPolicy,
    platform: Box<dyn PlatformPolicy>,
    secrets: Vec<Secret>,
    stats: Arc<CallStats>,
}

impl ApiClient {
    pub fn new(policy: RetryPolicy, max_qps: Option<f64>) -> crate::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(policy.timeout)
            .connect_timeout(policy.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("crest/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(ApiClient {
            http,
            pacer: Pacer::new(max_qps),
            policy,
            platform: Box::new(DefaultPolicy),
            secrets: Vec::new(),
            stats: Arc::new(CallStats::default()),
        })
    }

    pub fn with_platform(mut self, platform: impl PlatformPolicy + 'static) -> Self {
        self.platform = Box::new(platform);
        self
    }

    /// Secrets to scrub from every message this client produces.
    pub fn with_secret(mut self, secret: Secret) -> Self {
        self.secrets.push(secret);
        self
    }

    pub fn stats(&self) -> Arc<CallStats> {
        self.stats.clone()
    }

    pub fn pacer(&self) -> &Pacer {
        &self.pacer
    }

    fn scrub(&self, text: &str) -> String {
        let mut s = one_line(text);
        for secret in &self.secrets {
            s = secret.scrub(&s);
        }
        s
    }

    /// Sends a JSON request until `classify` accepts the decoded `T`.
    pub async fn send_json<T, B, C>(&self, label: &str, build: B, classify: C) -> Result<T, ApiError>
    where
        T: DeserializeOwned,
        B: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        C: Fn(&T) -> Verdict,
    {
        self.send(label, build, |body: &[u8]| {
            let value: T = serde_json::from_slice(body).map_err(|e| malformed(body, e))?;
            match classify(&value) {
                Verdict::Ok => Ok(value),
                v => Err(v),
            }
        })
        .await
    }

    /// Sends a request built by `build` until `parse` turns a successful
    /// body into a `T`, retrying what can heal. `parse` sees the raw bytes, so
    /// a connector can decode borrowed JSON straight into its own columns; it
    /// returns the platform's verdict when the body is an error or malformed.
    /// `label` names the request in logs and errors (method, path, non-secret
    /// parameters).
    pub async fn send<T, B, P>(&self, label: &str, build: B, parse: P) -> Result<T, ApiError>
    where
        B: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        P: Fn(&[u8]) -> Result<T, Verdict>,
    {
        let mut backoff = self.policy.backoff();
        let mut attempt = 0usize;
        loop {
            attempt += 1;
            self.pacer.ready().await;
            self.stats.calls.fetch_add(1, Ordering::Relaxed);
            let started = std::time::Instant::now();
            let (verdict, connect_failure) = match self.attempt(&build, &parse).await {
                Attempt::Done(value) => {
                    self.pacer.succeeded();
                    // The label holds no secret (tokens travel in headers; queries are stripped).
                    tracing::debug!(request = %self.scrub(&strip_queries(label)), attempt, elapsed_ms = started.elapsed().as_millis() as u64, "request done");
                    return Ok(value);
                }
                Attempt::Verdict(v) => (v, false),
                Attempt::Unreachable(reason) => (
                    Verdict::Retry {
                        reason,
                        after: None,
                        rate_limited: false,
                    },
                    true,
                ),
            };
            let limit = if connect_failure {
                self.policy.max_connect_attempts
            } else {
                self.policy.max_attempts
            };
            match verdict {
                // A parser that accepts a body returns its value instead.
                Verdict::Ok => return Err(ApiError::Fatal(format!("{label}: response accepted but not decoded"))),
                Verdict::Auth(m) => return Err(ApiError::Auth(self.scrub(&m))),
                Verdict::Unauthenticated(m) => {
                    return Err(ApiError::Unauthenticated(self.scrub(&format!("{label}: {m}"))))
                }
                Verdict::BadRequest(m) => return Err(ApiError::BadRequest(self.scrub(&format!("{label}: {m}")))),
                Verdict::TooLarge(m) => return Err(ApiError::TooLarge(self.scrub(&format!("{label}: {m}")))),
                Verdict::Fatal(m) => return Err(ApiError::Fatal(self.scrub(&format!("{label}: {m}")))),
                Verdict::Retry {
                    reason,
                    after,
                    rate_limited,
                } => {
                    let reason = self.scrub(&reason);
                    if attempt >= limit {
                        return Err(ApiError::Exhausted(format!(
                            "{label} failed after {attempt} attempts: {reason}"
                        )));
                    }
                    let mut wait = backoff.next().unwrap_or(self.policy.max_delay);
                    if let Some(after) = after {
                        // However long a platform says to wait, one pause is at most an hour.
                        wait = wait.max(after.min(MAX_SERVER_WAIT));
                    }
                    if rate_limited {
                        self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                        self.pacer.rate_limited(wait);
                    }
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        request = %label,
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        reason = %reason,
                        "retrying request"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn attempt<T, B, P>(&self, build: &B, parse: &P) -> Attempt<T>
    where
        B: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        P: Fn(&[u8]) -> Result<T, Verdict>,
    {
        let response = match build(&self.http).send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                return Attempt::Unreachable(format!("{}: {}", crate::retry::UNREACHABLE, error_chain(&e)))
            }
            Err(e) => return Attempt::Verdict(crate::retry::transport_verdict(&e)),
        };
        let status = response.status();
        let headers = response.headers().clone();
        self.platform.observe_headers(&headers, &self.pacer);
        let limit = self.policy.max_body_bytes;
        let too_large = || {
            Attempt::Verdict(Verdict::Fatal(format!(
                "the response body is larger than {limit} bytes; if that is real, raise --max-body-mib"
            )))
        };
        if response.content_length().is_some_and(|n| n > limit) {
            return too_large();
        }
        let mut response = response;
        let mut body = bytes::BytesMut::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() as u64 + chunk.len() as u64 > limit {
                        return too_large();
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Attempt::Verdict(crate::retry::transport_verdict(&e)),
            }
        }
        let body = body.freeze();
        if !status.is_success() {
            if let Some(v) = self.platform.classify_status(status, &body) {
                return Attempt::Verdict(v);
            }
            return Attempt::Verdict(default_status_verdict(status, &headers, &body));
        }
        match parse(&body) {
            Ok(value) => Attempt::Done(value),
            Err(v) => Attempt::Verdict(v),
        }
    }
}

/// The verdict for a body that does not decode: retried, then reported.
pub fn malformed(body: &[u8], err: impl std::fmt::Display) -> Verdict {
    Verdict::Retry {
        reason: format!("malformed response body ({} bytes): {err}", body.len()),
        after: None,
        rate_limited: false,
    }
}

enum Attempt<T> {
    Done(T),
    Verdict(Verdict),
    Unreachable(String),
}

/// reqwest's Display hides the cause ("error sending request"); the chain says what happened.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        source = cause.source();
    }
    // Never echo a full URL with its query string: it may carry a token.
    strip_queries(&s)
}

/// A message with the query string of every URL in it cut off: a signed
/// download link or a token in a query never reaches a log or an error.
pub fn strip_queries(s: &str) -> String {
    s.split(' ')
        .map(|word| match word.find('?') {
            Some(i) if word.contains("://") => &word[..i],
            _ => word,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The longest single pause a platform's "retry after" can ask for: an absurd
/// value in a response is a wait of an hour, not an overflow.
pub const MAX_SERVER_WAIT: Duration = Duration::from_secs(3600);

/// Seconds a platform said to wait, as a duration capped at [`MAX_SERVER_WAIT`];
/// `None` for a negative, infinite or unparsable value.
pub fn server_wait_secs(secs: f64) -> Option<Duration> {
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(MAX_SERVER_WAIT.as_secs_f64())))
}

pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return server_wait_secs(secs);
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO).min(Duration::from_secs(3600)))
}

fn body_snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    one_line(&text)
}

fn default_status_verdict(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Verdict {
    let detail = format!("HTTP {status}: {}", body_snippet(body));
    crate::retry::status_verdict(status.as_u16(), retry_after(headers), detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves `body_len` bytes at `/`, with or without a Content-Length.
    async fn server(body_len: usize, chunked: bool) -> String {
        use axum::body::Body;
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(move || async move {
                let body = vec![b'x'; body_len];
                if chunked {
                    let chunks = body
                        .chunks(1000)
                        .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
                        .collect::<Vec<_>>();
                    Body::from_stream(futures::stream::iter(chunks))
                } else {
                    Body::from(body)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn a_body_above_the_cap_is_refused_whether_or_not_its_length_is_announced() {
        let policy = RetryPolicy {
            max_body_bytes: 4096,
            max_attempts: 1,
            ..RetryPolicy::default()
        };
        let client = ApiClient::new(policy, None).unwrap();
        for chunked in [false, true] {
            let url = server(10_000, chunked).await;
            let e = client
                .send("GET /", |c: &reqwest::Client| c.get(&url), |b: &[u8]| Ok(b.len()))
                .await
                .unwrap_err();
            assert!(
                matches!(e, ApiError::Fatal(_)) && e.to_string().contains("--max-body-mib"),
                "{e}"
            );
            let small = server(4000, chunked).await;
            let n = client
                .send("GET /", |c: &reqwest::Client| c.get(&small), |b: &[u8]| Ok(b.len()))
                .await
                .unwrap();
            assert_eq!(n, 4000);
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
    }

    #[test]
    fn urls_in_errors_lose_their_query() {
        assert_eq!(
            strip_queries("error for url (http://x/a?access_token=s3cret) here"),
            "error for url (http://x/a here"
        );
    }
}
