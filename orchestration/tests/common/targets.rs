//! The three targets a loader test runs against: a lake in a temporary
//! folder, BigQuery (bqemulator) and Snowflake (fakesnow), each test in its
//! own dataset or database. The emulators are started by `scripts/test.sh`
//! (`scripts/emulators.sh`); a test that needs one fails loudly without it.

use std::path::Path;
use std::process::Output;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Lake,
    BigQuery,
    Snowflake,
}

pub struct Target {
    pub kind: Kind,
    pub spec: String,
    env: Vec<(String, String)>,
    _proxy: Option<SnowflakeProxy>,
}

pub fn emulator(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: the loader tests run against the warehouse emulators; \
             run ./scripts/test.sh, or `scripts/emulators.sh start DIR` and source DIR/env"
        )
    })
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", &uuid::Uuid::now_v7().simple().to_string()[20..])
}

impl Target {
    pub fn lake(dir: &Path) -> Target {
        Target {
            kind: Kind::Lake,
            spec: format!("lake:{}", dir.display()),
            env: Vec::new(),
            _proxy: None,
        }
    }

    /// A fresh dataset on the BigQuery emulator.
    pub fn bigquery() -> Target {
        Target {
            kind: Kind::BigQuery,
            spec: format!(
                "bigquery://{}/{}",
                emulator("CREST_TEST_BIGQUERY_PROJECT"),
                unique("crest")
            ),
            env: bigquery_env(),
            _proxy: None,
        }
    }

    /// A fresh database on the Snowflake emulator, reached through the
    /// test-only proxy that completes its responses.
    pub async fn snowflake() -> Target {
        let proxy = SnowflakeProxy::start(emulator("CREST_TEST_SNOWFLAKE_URL")).await;
        Target {
            kind: Kind::Snowflake,
            spec: format!("snowflake://crest_test/{}/crest?warehouse=load_wh", unique("db")),
            env: snowflake_env(&proxy.url),
            _proxy: Some(proxy),
        }
    }

    pub async fn all(lake: &Path) -> Vec<Target> {
        vec![Target::lake(lake), Target::bigquery(), Target::snowflake().await]
    }

    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    pub async fn crest(&self, args: &[&str]) -> Output {
        crest_env(args, &self.env).await
    }

    /// `crest load` into this target (creating the dataset or database on first use).
    pub async fn load(&self, input: &str, extra: &[&str]) -> Output {
        let mut args = vec!["load", "--input", input, "--target", &self.spec, "--create"];
        args.extend_from_slice(extra);
        self.crest(&args).await
    }

    /// `crest query --format json`, with column names lower-cased (Snowflake
    /// answers in upper case).
    pub async fn query(&self, sql: &str) -> serde_json::Value {
        let o = self
            .crest(&["query", "--target", &self.spec, "--format", "json", sql])
            .await;
        assert!(
            o.status.success(),
            "{:?} {sql}: {}",
            self.kind,
            String::from_utf8_lossy(&o.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let rows = v.as_array().cloned().unwrap_or_default();
        serde_json::Value::Array(
            rows.into_iter()
                .map(|r| {
                    let obj = r.as_object().cloned().unwrap_or_default();
                    serde_json::Value::Object(obj.into_iter().map(|(k, v)| (k.to_lowercase(), v)).collect())
                })
                .collect(),
        )
    }
}

/// A JSON number, or a number sent as text (exact decimals), as i64.
pub fn int(v: &serde_json::Value) -> i64 {
    match v {
        serde_json::Value::Number(n) => n.as_i64().unwrap_or_else(|| n.as_f64().unwrap() as i64),
        serde_json::Value::String(s) => s.parse::<f64>().unwrap() as i64,
        serde_json::Value::Null => 0,
        other => panic!("not a number: {other}"),
    }
}

/// The tables of a BigQuery target's dataset, through the emulator's tables API.
pub async fn bigquery_tables(t: &Target) -> Vec<String> {
    let dataset = t.spec.rsplit('/').next().unwrap();
    let url = format!(
        "{}/bigquery/v2/projects/{}/datasets/{dataset}/tables",
        emulator("CREST_TEST_BIGQUERY_URL"),
        emulator("CREST_TEST_BIGQUERY_PROJECT")
    );
    let v: serde_json::Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    v["tables"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|t| t["tableReference"]["tableId"].as_str().unwrap().to_string())
        .collect()
}

pub fn bigquery_env() -> Vec<(String, String)> {
    vec![
        ("GOOGLE_OAUTH_ACCESS_TOKEN".into(), "emulator-token".into()),
        ("CREST_BIGQUERY_BASE_URL".into(), emulator("CREST_TEST_BIGQUERY_URL")),
        (
            "CREST_BIGQUERY_STORAGE_URL".into(),
            emulator("CREST_TEST_BIGQUERY_STORAGE_URL"),
        ),
    ]
}

pub fn snowflake_env(base: &str) -> Vec<(String, String)> {
    vec![
        ("SNOWFLAKE_USER".into(), "crest_loader".into()),
        ("SNOWFLAKE_PASSWORD".into(), "emulator-password".into()),
        ("CREST_SNOWFLAKE_BASE_URL".into(), base.into()),
    ]
}

pub async fn crest_env(args: &[&str], env: &[(String, String)]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_crest"));
    cmd.args(args)
        .env_remove("CREST_LOG")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GOOGLE_OAUTH_ACCESS_TOKEN")
        .env_remove("SNOWFLAKE_PASSWORD")
        .env_remove("SNOWFLAKE_PRIVATE_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.unwrap()
}

/// The test-only middleware DESIGN.md describes: fakesnow's server omits
/// response fields real Snowflake sends and snowflake-api requires (login:
/// `sessionId`, `masterToken`, validities, `roleName`; queries: `returned`,
/// `finalRoleName`, `version`; errors: `age`, `internalError`, `queryId`).
/// crest reaches it through `CREST_SNOWFLAKE_BASE_URL`, as it would a proxy,
/// and runs exactly as it does against Snowflake.
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
    pub async fn start(upstream: String) -> SnowflakeProxy {
        let client = reqwest::Client::new();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let (client, upstream) = (client.clone(), upstream.clone());
            async move { forward(&client, &upstream, req).await }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        SnowflakeProxy { url, task }
    }
}

async fn forward(client: &reqwest::Client, upstream: &str, req: axum::extract::Request) -> axum::response::Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
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
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    let body = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(mut v) => {
            complete(parts.uri.path(), &mut v);
            serde_json::to_vec(&v).unwrap()
        }
        Err(_) => bytes.to_vec(),
    };
    axum::response::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body))
        .unwrap()
}

fn complete(path: &str, v: &mut serde_json::Value) {
    use serde_json::json;
    let success = v["success"].as_bool().unwrap_or(false);
    let code = v["code"].clone();
    let obj = v.as_object_mut().unwrap();
    if !obj.get("data").is_some_and(|d| d.is_object()) {
        obj.insert("data".into(), json!({}));
    }
    let data = obj.get_mut("data").unwrap().as_object_mut().unwrap();
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
