//! What every crest source connector shares, so that a connector is only its
//! API's shape: HTTP with retry, backoff and pacing ([`http`], [`pacing`]),
//! date windows ([`window`]), incremental state ([`state`]), the raw Parquet
//! writer and run manifest ([`raw`], [`manifest`], [`storage`]) and the CLI
//! skeleton with logging, progress and exit codes ([`cli`]); and for loaders,
//! the load plan and the destination trait ([`load`]), and the registry of
//! targets `crest` opens by URL scheme ([`target`]).

pub mod alert_log;
pub mod benchmarks;
pub mod cli;
pub mod error;
pub mod extract;
pub mod http;
pub mod json;
pub mod lease;
pub mod load;
pub mod manifest;
pub mod oauth;
pub mod pacing;
pub mod raw;
pub mod retry;
pub mod secret;
pub mod source;
pub mod state;
pub mod storage;
pub mod target;
pub mod utm_hygiene;
pub mod views;
pub mod warehouse;
pub mod window;

pub use error::{Error, Result};
pub use reqwest;
pub use secret::Secret;
