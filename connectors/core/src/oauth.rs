//! OAuth 2.0 refresh-token flow, shared by every connector that needs it
//! (Google: YouTube Analytics, YouTube Data, Google Ads). The access token is
//! refreshed before it expires; a call answered 401 gets one fresh token and
//! one more try; a refresh token the server no longer accepts (`invalid_grant`)
//! is an auth error that says to re-authorize.

use crate::http::{ApiClient, ApiError, PlatformPolicy, RetryPolicy, Verdict};
use crate::{Result, Secret};
use reqwest::StatusCode;
use serde::Deserialize;
use std::future::Future;
use std::time::{Duration, Instant};

/// Refresh this long before the server says the token expires.
const EARLY: Duration = Duration::from_secs(60);

pub struct TokenSource {
    api: ApiClient,
    token_url: String,
    client_id: String,
    client_secret: Secret,
    refresh_token: Secret,
    /// What to set again when the refresh token is refused.
    reauthorize_hint: String,
    current: tokio::sync::Mutex<Option<(Secret, Instant)>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct TokenError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// The token endpoint's errors: a refused grant or client is final.
struct TokenPolicy {
    hint: String,
}

impl PlatformPolicy for TokenPolicy {
    fn classify_status(&self, status: StatusCode, body: &[u8]) -> Option<Verdict> {
        let e: TokenError = serde_json::from_slice(body).ok()?;
        let detail = match &e.error_description {
            Some(d) => format!("{}: {d}", e.error),
            None => e.error.clone(),
        };
        match e.error.as_str() {
            "invalid_grant" => Some(Verdict::Auth(format!(
                "the OAuth refresh token was refused ({detail}): it expired or was revoked; re-authorize crest and set {}",
                self.hint
            ))),
            "invalid_client" | "unauthorized_client" => Some(Verdict::Auth(format!(
                "the OAuth client was refused ({detail}); check the client id and secret"
            ))),
            _ if status.is_server_error() => None,
            _ => Some(Verdict::BadRequest(format!("token endpoint: {detail}"))),
        }
    }
}

impl TokenSource {
    pub fn new(
        token_url: &str,
        client_id: &str,
        client_secret: Secret,
        refresh_token: Secret,
        reauthorize_hint: &str,
        policy: RetryPolicy,
    ) -> Result<Self> {
        let api = ApiClient::new(policy, None)?
            .with_platform(TokenPolicy {
                hint: reauthorize_hint.to_string(),
            })
            .with_secret(client_secret.clone())
            .with_secret(refresh_token.clone());
        Ok(TokenSource {
            api,
            token_url: token_url.to_string(),
            client_id: client_id.to_string(),
            client_secret,
            refresh_token,
            reauthorize_hint: reauthorize_hint.to_string(),
            current: tokio::sync::Mutex::new(None),
        })
    }

    /// A valid access token: the cached one, or a fresh one when it is about to expire.
    pub async fn access_token(&self) -> std::result::Result<Secret, ApiError> {
        let mut current = self.current.lock().await;
        if let Some((token, expires)) = current.as_ref() {
            if Instant::now().checked_add(EARLY).is_some_and(|soon| soon < *expires) {
                return Ok(token.clone());
            }
        }
        let fresh = self.refresh().await?;
        *current = Some(fresh.clone());
        Ok(fresh.0)
    }

    /// Forgets the cached token (the API answered 401).
    pub async fn invalidate(&self) {
        *self.current.lock().await = None;
    }

    async fn refresh(&self) -> std::result::Result<(Secret, Instant), ApiError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
            ("refresh_token", self.refresh_token.expose()),
        ];
        let started = Instant::now();
        let label = format!(
            "POST {} (refresh the access token)",
            self.token_url.split('?').next().unwrap_or("")
        );
        let response: TokenResponse = self
            .api
            .send_json(
                &label,
                |c: &reqwest::Client| c.post(&self.token_url).form(&form),
                |_: &TokenResponse| Verdict::Ok,
            )
            .await?;
        // Google's tokens live an hour; a longer (or absurd) expires_in is
        // trusted for a day at most, and a 401 refreshes early anyway.
        let ttl = Duration::from_secs(response.expires_in.unwrap_or(3600).min(86_400));
        tracing::debug!(expires_in_s = ttl.as_secs(), "access token refreshed");
        Ok((
            Secret::new(response.access_token),
            started.checked_add(ttl).unwrap_or(started),
        ))
    }

    /// Runs `call` with a valid token; on a 401 it refreshes once and tries again.
    pub async fn with_token<T, F, Fut>(&self, call: F) -> std::result::Result<T, ApiError>
    where
        F: Fn(Secret) -> Fut,
        Fut: Future<Output = std::result::Result<T, ApiError>>,
    {
        match call(self.access_token().await?).await {
            Err(ApiError::Unauthenticated(m)) => {
                tracing::info!(reason = %m, "access token rejected; refreshing it once");
                self.invalidate().await;
                match call(self.access_token().await?).await {
                    Err(ApiError::Unauthenticated(m)) => Err(ApiError::Auth(format!(
                        "{m}: rejected even with a fresh access token; re-authorize crest and set {}",
                        self.reauthorize_hint
                    ))),
                    other => other,
                }
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    async fn server(refresh_ok: bool, ttl: u64) -> (String, Arc<AtomicU64>) {
        let issued = Arc::new(AtomicU64::new(0));
        let count = issued.clone();
        let app = axum::Router::new().route(
            "/token",
            post(move || {
                let count = count.clone();
                async move {
                    if !refresh_ok {
                        return (
                            axum::http::StatusCode::BAD_REQUEST,
                            r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#
                                .to_string(),
                        );
                    }
                    let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                    (
                        axum::http::StatusCode::OK,
                        format!(r#"{{"access_token":"tok-{n}","expires_in":{ttl},"token_type":"Bearer"}}"#),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}/token"), issued)
    }

    fn source(url: &str) -> TokenSource {
        let policy = RetryPolicy {
            max_attempts: 2,
            initial_delay: Duration::from_millis(5),
            ..RetryPolicy::default()
        };
        TokenSource::new(
            url,
            "client",
            Secret::new("client-secret-1"),
            Secret::new("refresh-secret-1"),
            "GOOGLE_REFRESH_TOKEN",
            policy,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn tokens_are_cached_refreshed_before_expiry_and_once_on_401() {
        let (url, issued) = server(true, 3600).await;
        let tokens = source(&url);
        assert_eq!(tokens.access_token().await.unwrap().expose(), "tok-1");
        assert_eq!(tokens.access_token().await.unwrap().expose(), "tok-1", "cached");
        let calls = AtomicU64::new(0);
        let seen = tokens
            .with_token(|t| {
                let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
                async move {
                    if first {
                        Err(ApiError::Unauthenticated("401".into()))
                    } else {
                        Ok(t.expose().to_string())
                    }
                }
            })
            .await
            .unwrap();
        assert_eq!(seen, "tok-2", "one refresh after a 401");
        assert_eq!(issued.load(Ordering::SeqCst), 2);

        // A token that expires within the safety margin is refreshed before use.
        let (url, issued) = server(true, 30).await;
        let tokens = source(&url);
        tokens.access_token().await.unwrap();
        tokens.access_token().await.unwrap();
        assert_eq!(issued.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_absurd_expires_in_is_a_token_for_a_day_not_a_panic() {
        let (url, issued) = server(true, u64::MAX).await;
        let tokens = source(&url);
        assert_eq!(tokens.access_token().await.unwrap().expose(), "tok-1");
        assert_eq!(tokens.access_token().await.unwrap().expose(), "tok-1", "cached");
        assert_eq!(issued.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_refused_refresh_token_is_an_auth_error_saying_to_reauthorize() {
        let (url, _) = server(false, 3600).await;
        let e = source(&url).access_token().await.unwrap_err();
        let m = e.to_string();
        assert!(matches!(e, ApiError::Auth(_)), "{m}");
        assert!(
            m.contains("invalid_grant") && m.contains("GOOGLE_REFRESH_TOKEN") && !m.contains("refresh-secret-1"),
            "{m}"
        );
    }
}
