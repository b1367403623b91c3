//! The targets this crest speaks to, by `--target` scheme: one line each.

use crest_core::target::{Registry, Target};
use crest_core::Result;

pub fn registry() -> Registry {
    let registry = Registry::new().register(crest_lake::KIND);
    #[cfg(feature = "bigquery")]
    let registry = registry.register(crest_bigquery::KIND);
    #[cfg(feature = "snowflake")]
    let registry = registry.register(crest_snowflake::KIND);
    // A lean build (the demo's) leaves the warehouse clients out, and says how to get them.
    #[cfg(not(feature = "bigquery"))]
    let registry = registry.register(crest_core::target::Kind {
        scheme: "bigquery",
        form: "bigquery://PROJECT/DATASET",
        open: Err("this crest was built without BigQuery: build it with its default features (cargo install --path orchestration)"),
    });
    #[cfg(not(feature = "snowflake"))]
    let registry = registry.register(crest_core::target::Kind {
        scheme: "snowflake",
        form: "snowflake://ACCOUNT/DATABASE/SCHEMA",
        open: Err("this crest was built without Snowflake: build it with its default features (cargo install --path orchestration)"),
    });
    registry
}

/// Opens `--target`; `existing`: it must hold a lake already (query, views, alerts).
pub async fn open(spec: &str, existing: bool) -> Result<Box<dyn Target>> {
    registry()
        .open(spec, existing, &crest_transforms::canonical::tables())
        .await
}
