//! A front for fakesnow, the Snowflake emulator crest's loader tests and
//! benchmarks run against. fakesnow's server omits response fields real
//! Snowflake sends and snowflake-api requires (login: `sessionId`,
//! `masterToken`, validities, `roleName`; queries: `returned`,
//! `finalRoleName`, `version`; errors: `age`, `internalError`, `queryId`).
//! This proxy fills them in; crest reaches it through
//! `CREST_SNOWFLAKE_BASE_URL` as it would any proxy, and runs exactly as it
//! does against Snowflake. Not for production use: it exists for the emulator.

pub struct SnowflakeProxy {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SnowflakeProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SnowflakeProxy {
    pub async fn start(upstream: String) -> std::io::Result<SnowflakeProxy> {
        Self::bind("127.0.0.1:0", upstream).await
    }

    pub async fn bind(addr: &str, upstream: String) -> std::io::Result<SnowflakeProxy> {
        let client = reqwest::Client::new();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let (client, upstream) = (client.clone(), upstream.clone());
            async move { forward(&client, &upstream, req).await }
        });
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the Snowflake proxy stopped");
            }
        });
        Ok(SnowflakeProxy { url, task })
    }
}

async fn forward(client: &reqwest::Client, upstream: &str, req: axum::extract::Request) -> axum::response::Response {
    let bad_gateway = |e: &dyn std::fmt::Display| {
        axum::response::Response::builder()
            .status(502)
            .body(axum::body::Body::from(format!(
                "the Snowflake emulator did not answer: {e}"
            )))
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
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return bad_gateway(&e),
    };
    let body = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(mut v) => {
            complete(parts.uri.path(), &mut v);
            serde_json::to_vec(&v).unwrap_or_default()
        }
        Err(_) => bytes.to_vec(),
    };
    axum::response::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body))
        .unwrap_or_default()
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
