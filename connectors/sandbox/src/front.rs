//! An HTTP front for an emulator: forwards every request to it, optionally
//! rewriting JSON answers (the Snowflake emulator's, see `snowflake_proxy`)
//! and optionally answering every n-th request with HTTP 503 the way Google's
//! and Snowflake's front ends do under load, so tests prove that every call
//! crest makes to a warehouse survives a transient failure.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Completes a JSON answer in place, given the request's path.
pub type Rewrite = fn(&str, &mut serde_json::Value);

pub struct Front {
    pub url: String,
    faults: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Google's JSON error for an unavailable backend (the body BigQuery sends
/// with a 503).
const UNAVAILABLE: &str = r#"{"error":{"code":503,"message":"The service is currently unavailable.","errors":[{"reason":"backendError","message":"The service is currently unavailable."}],"status":"UNAVAILABLE"}}"#;

impl Front {
    /// A front on a free loopback port that forwards everything unchanged
    /// except every `every`-th request, which it answers 503.
    pub async fn flaky(upstream: String, every: usize) -> std::io::Result<Front> {
        Self::bind("127.0.0.1:0", upstream, None, Some(every)).await
    }

    pub async fn bind(
        addr: &str,
        upstream: String,
        rewrite: Option<Rewrite>,
        fail_every: Option<usize>,
    ) -> std::io::Result<Front> {
        let client = reqwest::Client::new();
        let seen = Arc::new(AtomicUsize::new(0));
        let faults = Arc::new(AtomicUsize::new(0));
        let served = faults.clone();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let (client, upstream, seen, faults) = (client.clone(), upstream.clone(), seen.clone(), faults.clone());
            async move {
                let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
                if fail_every.is_some_and(|every| every > 0 && n % every == 0) {
                    faults.fetch_add(1, Ordering::SeqCst);
                    return axum::response::Response::builder()
                        .status(503)
                        .header("content-type", "application/json")
                        .body(axum::body::Body::from(UNAVAILABLE))
                        .unwrap_or_default();
                }
                forward(&client, &upstream, req, rewrite).await
            }
        });
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the emulator's front stopped");
            }
        });
        Ok(Front {
            url,
            faults: served,
            task,
        })
    }

    /// How many requests were answered 503 instead of forwarded.
    pub fn faults(&self) -> usize {
        self.faults.load(Ordering::SeqCst)
    }
}

async fn forward(
    client: &reqwest::Client,
    upstream: &str,
    req: axum::extract::Request,
    rewrite: Option<Rewrite>,
) -> axum::response::Response {
    let bad_gateway = |e: &dyn std::fmt::Display| {
        axum::response::Response::builder()
            .status(502)
            .body(axum::body::Body::from(format!("the emulator did not answer: {e}")))
            .unwrap_or_default()
    };
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => return bad_gateway(&e),
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    let mut rb = client
        .request(parts.method.clone(), format!("{upstream}{path}"))
        .body(body);
    for (k, v) in &parts.headers {
        if !matches!(k.as_str(), "host" | "content-length" | "accept-encoding") {
            rb = rb.header(k, v);
        }
    }
    let resp = match rb.send().await {
        Ok(r) => r,
        Err(e) => return bad_gateway(&e),
    };
    let status = resp.status().as_u16();
    let content_type = resp.headers().get("content-type").cloned();
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return bad_gateway(&e),
    };
    let (body, content_type) = match (rewrite, serde_json::from_slice::<serde_json::Value>(&bytes)) {
        (Some(rewrite), Ok(mut v)) => {
            rewrite(parts.uri.path(), &mut v);
            (serde_json::to_vec(&v).unwrap_or_default(), None)
        }
        _ => (bytes.to_vec(), content_type),
    };
    let mut out = axum::response::Response::builder().status(status);
    out = match content_type {
        Some(ct) => out.header("content-type", ct),
        None => out.header("content-type", "application/json"),
    };
    out.body(axum::body::Body::from(body)).unwrap_or_default()
}
