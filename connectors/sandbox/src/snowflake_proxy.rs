//! A front for fakesnow, the Snowflake emulator crest's loader tests and
//! benchmarks run against. fakesnow's server omits response fields real
//! Snowflake sends and snowflake-api requires (login: `sessionId`,
//! `masterToken`, validities, `roleName`; queries: `returned`,
//! `finalRoleName`, `version`; errors: `age`, `internalError`, `queryId`).
//! This proxy fills them in; crest reaches it through
//! `CREST_SNOWFLAKE_BASE_URL` as it would any proxy, and runs exactly as it
//! does against Snowflake. Not for production use: it exists for the emulator.

use crate::front::{Front, Rewrite};

pub struct SnowflakeProxy {
    pub url: String,
    front: Front,
}

impl SnowflakeProxy {
    pub async fn start(upstream: String) -> std::io::Result<SnowflakeProxy> {
        Self::bind("127.0.0.1:0", upstream).await
    }

    pub async fn bind(addr: &str, upstream: String) -> std::io::Result<SnowflakeProxy> {
        Self::from(Front::bind(addr, upstream, Some(complete as Rewrite), None).await?)
    }

    /// The proxy answering every `every`-th request with HTTP 503, as a
    /// Snowflake front end under load does (see [`Front::faults`]).
    pub async fn flaky(upstream: String, every: usize) -> std::io::Result<SnowflakeProxy> {
        Self::from(Front::bind("127.0.0.1:0", upstream, Some(complete as Rewrite), Some(every)).await?)
    }

    fn from(front: Front) -> std::io::Result<SnowflakeProxy> {
        Ok(SnowflakeProxy {
            url: front.url.clone(),
            front,
        })
    }

    /// How many requests were answered 503 instead of forwarded.
    pub fn faults(&self) -> usize {
        self.front.faults()
    }
}

fn complete(path: &str, v: &mut serde_json::Value) {
    use serde_json::json;
    let success = v["success"].as_bool().unwrap_or(false);
    let code = v["code"].clone();
    let Some(obj) = v.as_object_mut() else { return };
    if !obj.get("data").is_some_and(|d| d.is_object()) {
        obj.insert("data".into(), json!({}));
    }
    let Some(data) = obj.get_mut("data").and_then(|d| d.as_object_mut()) else {
        return;
    };
    let total = data.get("total").cloned().unwrap_or(json!(0));
    let returned = data
        .get("rowset")
        .and_then(|r| r.as_array())
        .map(|r| json!(r.len()))
        .unwrap_or(total);
    let mut default = |k: &str, value: serde_json::Value| {
        if data.get(k).is_none_or(|x| x.is_null()) {
            data.insert(k.into(), value);
        }
    };
    if path.contains("login-request") {
        default("sessionId", json!(1));
        default("masterToken", json!("emulator-master-token"));
        default("validityInSeconds", json!(3600));
        default("masterValidityInSeconds", json!(14400));
        default("serverVersion", json!("emulator"));
        if let Some(info) = data.get_mut("sessionInfo").and_then(|i| i.as_object_mut()) {
            if info.get("roleName").is_none_or(|x| x.is_null()) {
                info.insert("roleName".into(), json!("ACCOUNTADMIN"));
            }
        }
    } else if success {
        default("returned", returned);
        default("total", json!(0));
        default("finalRoleName", json!("ACCOUNTADMIN"));
        default("version", json!(1));
        default("parameters", json!([]));
        default("rowtype", json!([]));
        default("queryId", json!(""));
        default("statementTypeId", json!(0));
    } else {
        default("age", json!(0));
        default("errorCode", code);
        default("internalError", json!(false));
        default("queryId", json!(""));
        default("sqlState", json!(""));
    }
}
