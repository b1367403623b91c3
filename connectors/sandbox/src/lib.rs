//! crest's sandbox: a faithful simulator of the ad platform APIs crest reads,
//! served over real HTTP on loopback, with seeded synthetic data, rate limits
//! and fault injection. Used by tests, benchmarks and the demo.
//!
//! Platforms are modules that add routes to one router ([`tiktok`], [`meta`],
//! [`google`] for YouTube Analytics and Data, [`google_ads`]); they share the
//! world ([`world`]), the admission gate (request counting, QPS budget,
//! faults) and the delivery of broken bodies. [`front`] and
//! [`snowflake_proxy`] stand in front of the warehouse emulators. [`ga4`] is
//! the brand's site analytics as GA4 exports it, with the true attribution of
//! every conversion known.

pub mod faults;
pub mod front;
pub mod ga4;
pub mod google;
pub mod google_ads;
pub mod meta;
pub mod snowflake_proxy;
pub mod tiktok;
pub mod world;

use axum::body::Body;
use axum::http::{header, HeaderValue, Response, StatusCode};
use bytes::Bytes;
use faults::{FaultKind, FaultPlan};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use world::{World, WorldConfig};

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub world: WorldConfig,
    pub faults: FaultPlan,
    /// Requests per second the platform allows; above it, its rate-limit error.
    pub qps: Option<f64>,
    /// How long a `slow` fault waits before answering.
    pub slow: Duration,
    /// The access token the TikTok API accepts.
    pub tiktok_token: String,
    /// Reports larger than this many rows are refused as too large (0 = no limit).
    pub max_rows_per_query: u64,
    /// The access token the Meta Graph API accepts.
    pub meta_token: String,
    /// Meta's business-use-case budget: calls per window; beyond it, code 17.
    pub meta_budget: Option<(u32, Duration)>,
    /// Polls of an async insights job before it completes.
    pub meta_job_polls: u32,
    /// Async insights jobs with more rows than this fail (0 = no limit), as
    /// Meta's do when a report is too heavy; synchronous calls get code 1.
    pub meta_max_job_rows: u64,
    /// The OAuth client and refresh token Google's token endpoint accepts.
    pub google_client_id: String,
    pub google_client_secret: String,
    pub google_refresh_token: String,
    /// How long an issued Google access token stays valid.
    pub google_token_ttl: Duration,
    /// The developer token Google Ads accepts.
    pub google_developer_token: String,
    /// The `retryDelay` Google Ads names in its RESOURCE_EXHAUSTED errors.
    pub google_ads_retry_delay: Duration,
    pub port: u16,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            world: WorldConfig::default(),
            faults: FaultPlan::none(),
            qps: None,
            slow: Duration::from_secs(5),
            tiktok_token: "sandbox-token".into(),
            max_rows_per_query: 0,
            meta_token: "sandbox-meta-token".into(),
            meta_budget: None,
            meta_job_polls: 3,
            meta_max_job_rows: 0,
            google_client_id: "sandbox-client".into(),
            google_client_secret: "sandbox-client-secret".into(),
            google_refresh_token: "sandbox-refresh-token".into(),
            google_token_ttl: Duration::from_secs(3600),
            google_developer_token: "sandbox-developer-token".into(),
            google_ads_retry_delay: Duration::from_secs(1),
            port: 0,
        }
    }
}

/// What the sandbox served, so tests can assert on it.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    /// Rate-limit errors served (budget exceeded or injected).
    pub rate_limited: AtomicU64,
    pub faults: AtomicU64,
    pub report_requests: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub requests: u64,
    pub rate_limited: u64,
    pub faults: u64,
    pub report_requests: u64,
}

pub(crate) struct Bucket {
    tokens: f64,
    last: Instant,
}

pub(crate) struct AppState {
    pub world: World,
    pub config: SandboxConfig,
    pub stats: Stats,
    bucket: Mutex<Bucket>,
    pub tiktok: tiktok::Index,
    pub meta: meta::MetaState,
    pub youtube: google::YouTubeWorld,
    pub google: google::GoogleState,
    pub ads: google_ads::AdsWorld,
}

/// The gate's decision for one request.
pub(crate) enum Admission {
    Serve(Option<FaultKind>),
    OverBudget,
}

impl AppState {
    pub fn admit(&self) -> Admission {
        let n = self.stats.requests.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(qps) = self.config.qps.filter(|q| *q > 0.0) {
            let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let cap = qps.max(1.0);
            b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * qps).min(cap);
            b.last = now;
            if b.tokens < 1.0 {
                self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                return Admission::OverBudget;
            }
            b.tokens -= 1.0;
        }
        let fault = self.config.faults.fault_for(n);
        if let Some(kind) = fault {
            self.stats.faults.fetch_add(1, Ordering::Relaxed);
            if kind == FaultKind::RateLimit {
                self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            }
            tracing::debug!(request = n, fault = ?kind, "injecting fault");
        }
        Admission::Serve(fault)
    }
}

/// Sends a JSON body, broken the way `fault` says (truncated, dropped) if any.
pub(crate) fn deliver(status: StatusCode, body: Vec<u8>, fault: Option<FaultKind>) -> Response<Body> {
    let len = body.len();
    let json = HeaderValue::from_static("application/json;charset=utf-8");
    let mut builder = Response::builder().status(status).header(header::CONTENT_TYPE, json);
    let body = match fault {
        Some(FaultKind::Truncated) => {
            let cut = len / 2;
            builder = builder.header(header::CONTENT_LENGTH, cut);
            Body::from(Bytes::from(body).slice(..cut))
        }
        Some(FaultKind::Drop) => {
            let bytes = Bytes::from(body);
            let first = bytes.slice(..len / 2);
            builder = builder.header(header::CONTENT_LENGTH, len);
            let parts: Vec<Result<Bytes, std::io::Error>> = vec![
                Ok(first),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "sandbox dropped the connection",
                )),
            ];
            Body::from_stream(futures::stream::iter(parts))
        }
        _ => Body::from(body),
    };
    builder.body(body).unwrap_or_else(|_| Response::new(Body::empty()))
}

/// A running sandbox. Dropping it stops the server.
pub struct Sandbox {
    addr: SocketAddr,
    state: Arc<AppState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Sandbox {
    /// Starts serving on 127.0.0.1 (`config.port`, 0 for any free port).
    pub async fn start(config: SandboxConfig) -> std::io::Result<Sandbox> {
        let world = World::new(config.world.clone());
        let tiktok = tiktok::Index::new(&world);
        let meta = meta::MetaState::new(&world);
        let youtube = google::YouTubeWorld::new(&world);
        let ads = google_ads::AdsWorld::new(&world);
        let state = Arc::new(AppState {
            world,
            bucket: Mutex::new(Bucket {
                tokens: config.qps.unwrap_or(1.0).max(1.0),
                last: Instant::now(),
            }),
            config,
            stats: Stats::default(),
            tiktok,
            meta,
            youtube,
            google: google::GoogleState::default(),
            ads,
        });
        let app = tiktok::routes()
            .merge(google::routes())
            .merge(google_ads::routes())
            .merge(meta::routes())
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", state.config.port)).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Sandbox {
            addr,
            state,
            shutdown: Some(tx),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn world(&self) -> &World {
        &self.state.world
    }

    pub fn tiktok_token(&self) -> &str {
        &self.state.config.tiktok_token
    }

    pub fn meta_token(&self) -> &str {
        &self.state.config.meta_token
    }

    pub fn meta(&self) -> &meta::MetaWorld {
        &self.state.meta.world
    }

    pub fn youtube(&self) -> &google::YouTubeWorld {
        &self.state.youtube
    }

    pub fn ads(&self) -> &google_ads::AdsWorld {
        &self.state.ads
    }

    pub fn developer_token(&self) -> &str {
        &self.state.config.google_developer_token
    }

    /// Google access tokens issued, and 401 answers served.
    pub fn google_counts(&self) -> (u64, u64) {
        let g = &self.state.google;
        (
            g.refreshes.load(Ordering::Relaxed),
            g.unauthenticated.load(Ordering::Relaxed),
        )
    }

    pub fn stats(&self) -> StatsSnapshot {
        let s = &self.state.stats;
        StatsSnapshot {
            requests: s.requests.load(Ordering::Relaxed),
            rate_limited: s.rate_limited.load(Ordering::Relaxed),
            faults: s.faults.load(Ordering::Relaxed),
            report_requests: s.report_requests.load(Ordering::Relaxed),
        }
    }

    /// Waits until the server is stopped by ctrl-c (for the binary).
    pub async fn serve_until_ctrl_c(mut self) {
        let _ = tokio::signal::ctrl_c().await;
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
