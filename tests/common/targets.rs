//! The three targets a loader test runs against: a lake in a temporary
//! folder, BigQuery (bqemulator) and Snowflake (fakesnow), each test in its
//! own dataset or database. The emulators are started by `scripts/test.sh`
//! (`scripts/emulators.sh`); a test that needs one fails loudly without it.

use crest_sandbox::front::Front;
use crest_sandbox::snowflake_proxy::SnowflakeProxy;
pub use crest_testkit::emulator;
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
    proxy: Option<SnowflakeProxy>,
    front: Option<Front>,
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
            proxy: None,
            front: None,
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
            proxy: None,
            front: None,
        }
    }

    /// A fresh database on the Snowflake emulator, reached through the
    /// test-only proxy that completes its responses.
    pub async fn snowflake() -> Target {
        let proxy = SnowflakeProxy::start(emulator("CREST_TEST_SNOWFLAKE_URL"))
            .await
            .unwrap();
        Target {
            kind: Kind::Snowflake,
            spec: format!("snowflake://crest_test/{}/crest?warehouse=load_wh", unique("db")),
            env: snowflake_env(&proxy.url),
            proxy: Some(proxy),
            front: None,
        }
    }

    /// A fresh dataset on the BigQuery emulator behind a front that answers
    /// every `every`-th REST request 503, as Google's front ends do under load.
    pub async fn bigquery_flaky(every: usize) -> Target {
        let front = Front::flaky(emulator("CREST_TEST_BIGQUERY_URL"), every).await.unwrap();
        let mut t = Target::bigquery();
        t.env[1].1 = front.url.clone();
        t.front = Some(front);
        t
    }

    /// A fresh database on the Snowflake emulator whose proxy answers every
    /// `every`-th request 503.
    pub async fn snowflake_flaky(every: usize) -> Target {
        let proxy = SnowflakeProxy::flaky(emulator("CREST_TEST_SNOWFLAKE_URL"), every)
            .await
            .unwrap();
        let mut t = Target::snowflake().await;
        t.env = snowflake_env(&proxy.url);
        t.proxy = Some(proxy);
        t
    }

    /// How many requests a flaky target's front answered 503.
    pub fn faults(&self) -> usize {
        self.front.as_ref().map(Front::faults).unwrap_or(0)
            + self.proxy.as_ref().map(SnowflakeProxy::faults).unwrap_or(0)
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

/// A BigQuery target's table as the tables API describes it.
pub async fn bigquery_table(t: &Target, table: &str) -> serde_json::Value {
    let dataset = t.spec.rsplit('/').next().unwrap();
    let url = format!(
        "{}/bigquery/v2/projects/{}/datasets/{dataset}/tables/{table}",
        emulator("CREST_TEST_BIGQUERY_URL"),
        emulator("CREST_TEST_BIGQUERY_PROJECT")
    );
    reqwest::get(url).await.unwrap().json().await.unwrap()
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
