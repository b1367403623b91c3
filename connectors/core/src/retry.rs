//! One retry policy for every remote call crest makes: the platform APIs
//! (through [`crate::http::ApiClient`]) and the warehouses a target loads
//! into. What heals is retried — HTTP 408, 429 and 5xx, timeouts, resets and
//! cut-off bodies, gRPC's UNAVAILABLE, RESOURCE_EXHAUSTED and
//! DEADLINE_EXCEEDED — with exponential backoff and jitter, at most
//! [`RetryPolicy::max_attempts`] times, each retry logged as "retrying
//! request". Everything else fails at once with the service's own message.
//!
//! A warehouse call is retried only where a second attempt cannot apply twice:
//! the caller gives the request an identity the service deduplicates
//! (BigQuery's job id and `requestId`, Snowflake's `requestId`, a Storage
//! Write offset), or the call reads.

use crate::http::{RetryPolicy, Verdict};
use std::future::Future;
use std::time::Duration;

impl RetryPolicy {
    /// The policy of a warehouse's calls: statements and load jobs take
    /// longer than an API page, and a warehouse that stays unavailable for a
    /// minute fails the load (which is safe to run again) rather than
    /// stalling the schedule.
    pub fn warehouse() -> Self {
        RetryPolicy {
            max_attempts: 6,
            max_connect_attempts: 3,
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            timeout: Duration::from_secs(600),
            ..RetryPolicy::default()
        }
    }

    /// The policy of a connector's `check`: a person is waiting, so three
    /// attempts within `timeout_secs` each (clamped to 0.1 s … a day).
    pub fn check(timeout_secs: f64) -> Self {
        let secs = if timeout_secs.is_finite() {
            timeout_secs.clamp(0.1, 86_400.0)
        } else {
            60.0
        };
        RetryPolicy {
            max_attempts: 3,
            timeout: Duration::from_secs_f64(secs),
            ..RetryPolicy::default()
        }
    }

    /// The pauses between attempts: exponential from `initial_delay`, with
    /// jitter, capped at `max_delay`.
    pub fn backoff(&self) -> impl Iterator<Item = Duration> {
        use backon::BackoffBuilder;
        backon::ExponentialBuilder::default()
            .with_min_delay(self.initial_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
    }
}

/// The verdict on an HTTP status from any service: 429 and 408/5xx are
/// retried (after `Retry-After` when given), 401/403 are credentials, the
/// rest is a bad request.
pub fn status_verdict(status: u16, after: Option<Duration>, detail: String) -> Verdict {
    match status {
        429 => Verdict::Retry {
            reason: detail,
            after,
            rate_limited: true,
        },
        408 | 500..=599 => Verdict::Retry {
            reason: detail,
            after,
            rate_limited: false,
        },
        401 => Verdict::Unauthenticated(format!("credentials rejected ({detail})")),
        403 => Verdict::Auth(format!("credentials rejected ({detail})")),
        _ => Verdict::BadRequest(detail),
    }
}

/// The verdict on a gRPC status code (`tonic::Code as i32`), for clients
/// that speak gRPC (BigQuery's Storage Write API).
pub fn grpc_verdict(code: i32, message: &str) -> Verdict {
    // google.rpc.Code: 4 DEADLINE_EXCEEDED, 8 RESOURCE_EXHAUSTED, 14 UNAVAILABLE.
    match code {
        4 | 8 | 14 => Verdict::Retry {
            reason: format!("gRPC status {code}: {message}"),
            after: None,
            rate_limited: code == 8,
        },
        16 => Verdict::Unauthenticated(message.to_string()),
        7 => Verdict::Auth(message.to_string()),
        _ => Verdict::Fatal(message.to_string()),
    }
}

/// How a retry reason starts when the service could not be reached at all:
/// such calls get [`RetryPolicy::max_connect_attempts`], since a refused
/// connection or an unknown host rarely heals within seconds.
pub const UNREACHABLE: &str = "cannot connect";

/// The verdict on a transport failure of reqwest (the request may or may
/// not have reached the service; callers retry only idempotent requests).
pub fn transport_verdict(e: &reqwest::Error) -> Verdict {
    let what = if e.is_connect() {
        UNREACHABLE
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_body() || e.is_decode() {
        "response body cut off"
    } else {
        "connection failed"
    };
    Verdict::Retry {
        reason: format!("{what}: {}", crate::http::error_chain(e)),
        after: None,
        rate_limited: false,
    }
}

/// Runs `call` until it succeeds, `classify` says its error will not heal,
/// or the policy's attempts are spent; returns the last error. `label` names
/// the call in the "retrying request" log (no secret, no SQL values).
pub async fn retry<T, E, F, Fut, C>(policy: &RetryPolicy, label: &str, mut call: F, classify: C) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    C: Fn(&E) -> Verdict,
{
    let mut backoff = policy.backoff();
    let mut attempt = 0usize;
    loop {
        attempt += 1;
        let e = match call().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let Verdict::Retry { reason, after, .. } = classify(&e) else {
            return Err(e);
        };
        let limit = if reason.starts_with(UNREACHABLE) {
            policy.max_connect_attempts
        } else {
            policy.max_attempts
        };
        if attempt >= limit {
            return Err(e);
        }
        let wait = pause(&mut backoff, policy, after);
        tracing::warn!(request = %label, attempt, wait_ms = wait.as_millis() as u64, reason = %crate::error::one_line(&reason), "retrying request");
        tokio::time::sleep(wait).await;
    }
}

fn pause(backoff: &mut impl Iterator<Item = Duration>, policy: &RetryPolicy, after: Option<Duration>) -> Duration {
    let wait = backoff.next().unwrap_or(policy.max_delay);
    match after {
        Some(after) => wait.max(after.min(crate::http::MAX_SERVER_WAIT)),
        None => wait,
    }
}

/// The policy as a `reqwest_middleware` layer, for a warehouse client built
/// on reqwest (Snowflake's): the same request — with its `requestId`, so the
/// service runs a statement once — is sent again on what heals.
pub struct RetryMiddleware {
    policy: RetryPolicy,
    service: &'static str,
}

impl RetryMiddleware {
    pub fn new(policy: RetryPolicy, service: &'static str) -> Self {
        RetryMiddleware { policy, service }
    }
}

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for RetryMiddleware {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let mut backoff = self.policy.backoff();
        let mut attempt = 0usize;
        // The request's path names it in logs; its query may carry ids, not secrets,
        // but is left out like every logged URL.
        let label = format!("{} {} {}", self.service, req.method(), req.url().path());
        loop {
            attempt += 1;
            // A streamed body cannot be sent twice: such a request gets one attempt.
            let Some(this) = req.try_clone() else {
                return next.run(req, extensions).await;
            };
            let (verdict, outcome) = match next.clone().run(this, extensions).await {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let after = crate::http::retry_after(resp.headers());
                    (status_verdict(status, after, format!("HTTP {status}")), Ok(resp))
                }
                Err(reqwest_middleware::Error::Reqwest(e)) => (transport_verdict(&e), Err(e.into())),
                Err(e) => return Err(e),
            };
            let limit = match &outcome {
                Err(reqwest_middleware::Error::Reqwest(e)) if e.is_connect() => self.policy.max_connect_attempts,
                _ => self.policy.max_attempts,
            };
            let Verdict::Retry { reason, after, .. } = verdict else {
                return outcome;
            };
            if attempt >= limit {
                return outcome;
            }
            let wait = pause(&mut backoff, &self.policy, after);
            tracing::warn!(request = %label, attempt, wait_ms = wait.as_millis() as u64, reason = %crate::error::one_line(&reason), "retrying request");
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn quick() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            initial_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            ..RetryPolicy::warehouse()
        }
    }

    /// Runs `retry` over a service answering `answers` in turn (then OK),
    /// returning the outcome and the number of calls made.
    async fn against(answers: &[u16]) -> (Result<&'static str, u16>, usize) {
        let calls = AtomicUsize::new(0);
        let out = retry(
            &quick(),
            "t",
            || async {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                answers.get(n).map_or(Ok("done"), |status| Err(*status))
            },
            |e: &u16| status_verdict(*e, None, format!("HTTP {e}")),
        )
        .await;
        (out, calls.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn retries_what_heals_and_stops_on_what_does_not() {
        assert_eq!(against(&[503, 503]).await, (Ok("done"), 3));
        assert_eq!(against(&[429]).await, (Ok("done"), 2));
        assert_eq!(against(&[400]).await, (Err(400), 1), "a bad request is not retried");
        assert_eq!(
            against(&[503, 503, 503, 503]).await,
            (Err(503), 3),
            "attempts are capped"
        );
    }

    #[test]
    fn grpc_codes() {
        assert!(matches!(grpc_verdict(14, "down"), Verdict::Retry { .. }));
        assert!(matches!(grpc_verdict(3, "bad"), Verdict::Fatal(_)));
        assert!(matches!(grpc_verdict(16, "token"), Verdict::Unauthenticated(_)));
    }
}
