//! crest's Snowflake target: `snowflake://ACCOUNT/DATABASE/SCHEMA?warehouse=W&role=R`.
//!
//! Tables are created with every column's description as a comment and
//! clustered by date. A load puts the run's rows into a transient staging
//! table (batched multi-row INSERTs with escaped literals: snowflake-api has
//! no bind parameters, and its PUT reaches only AWS-hosted stages), then
//! merges them into each table in one statement: de-duplicated on the natural
//! key, latest `extracted_at` first, and the run's dates replaced row for row.
//! The SQL lives in `sql/snowflake/*.sql`.
//!
//! Credentials come from the environment as snowflake-api reads them:
//! `SNOWFLAKE_USER` with `SNOWFLAKE_PASSWORD` or `SNOWFLAKE_PRIVATE_KEY` (PEM;
//! each also as `…_FILE`). `CREST_SNOWFLAKE_BASE_URL` sends every request to
//! another endpoint (a proxy, PrivateLink, an emulator).

mod target;

pub use target::KIND;

use arrow::array::{Array, ArrayRef, AsArray, Decimal128Array, RecordBatch, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
use crest_core::http::RetryPolicy;
use crest_core::load::{Destination, LoadPlan, LoadRecord, TableReport};
use crest_core::retry::RetryMiddleware;
use crest_core::warehouse::{self, Literal, Quote, Statements};
use crest_core::{Error, Result, Secret};
use crest_sql::snowflake::{
    ADD_COLUMN, ALERT_LOG_CREATE, ALERT_LOG_DELIVERED, APPEND, BENCHMARKS_CREATE, BENCHMARKS_EVOLVE,
    BENCHMARKS_REPLACE, COPY, COUNTS, CREATE_STAGING, CREATE_TABLE, LOADED, MERGE, REPLACE, UTM_HYGIENE_CREATE,
    UTM_HYGIENE_EVOLVE, VIEWS,
};
use snowflake_api::{
    AuthArgs, AuthType, CertificateArgs, PasswordArgs, QueryResult, SnowflakeApi, SnowflakeApiBuilder,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// COPY INTO takes at most 1,000 files by name.
const COPY_FILES: usize = 1000;

/// Snowflake takes at most 16,384 rows in one VALUES list, and statements
/// above 1 MB cannot be retried (it truncates their text before keeping it).
const INSERT_ROWS: usize = 16_384;
const INSERT_BYTES: usize = 1_000_000;

/// Where a `snowflake://` target points.
#[derive(Debug, Clone)]
pub struct SnowflakeTarget {
    pub account: String,
    pub database: String,
    pub schema: String,
    pub warehouse: Option<String>,
    pub role: Option<String>,
    /// An external stage whose URL is the transform output (`?stage=NAME` or
    /// `DB.SCHEMA.NAME`): the run's Parquet is then read with COPY INTO.
    pub stage: Option<Vec<String>>,
}

impl SnowflakeTarget {
    pub fn parse(target: &str) -> Result<Self> {
        let usage = |why: &str| {
            Error::Config(format!(
                "--target {target}: {why}; write snowflake://ACCOUNT/DATABASE/SCHEMA?warehouse=W&role=R"
            ))
        };
        let url = url::Url::parse(target).map_err(|e| usage(&e.to_string()))?;
        let account = url.host_str().unwrap_or_default().to_string();
        let account_ok = !account.is_empty()
            && account
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if !account_ok {
            return Err(usage("no valid account"));
        }
        let parts: Vec<&str> = url
            .path()
            .trim_matches('/')
            .split('/')
            .filter(|p| !p.is_empty())
            .collect();
        let [database, schema] = parts[..] else {
            return Err(usage("it needs a database and a schema"));
        };
        let mut warehouse = None;
        let mut role = None;
        let mut stage = None;
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "warehouse" => warehouse = Some(warehouse::ident("warehouse", &v)?.to_string()),
                "role" => role = Some(warehouse::ident("role", &v)?.to_string()),
                "stage" => {
                    let parts = v
                        .split('.')
                        .map(|p| warehouse::ident("stage", p).map(str::to_ascii_uppercase))
                        .collect::<Result<Vec<_>>>()?;
                    if parts.len() != 1 && parts.len() != 3 {
                        return Err(usage("stage= takes NAME or DATABASE.SCHEMA.NAME"));
                    }
                    stage = Some(parts);
                }
                other => return Err(usage(&format!("unknown parameter '{other}'"))),
            }
        }
        Ok(SnowflakeTarget {
            account,
            database: warehouse::ident("database", database)?.to_ascii_uppercase(),
            schema: warehouse::ident("schema", schema)?.to_ascii_uppercase(),
            warehouse,
            role,
            stage,
        })
    }
}

/// Snowflake's quoting: unquoted names are upper case, so crest's names are
/// quoted upper case and a user's `SELECT spend FROM creator_performance` finds them.
struct Sf;

impl Quote for Sf {
    fn quote(&self, name: &str) -> String {
        format!("\"{}\"", name.to_ascii_uppercase().replace('"', "\"\""))
    }
}

impl Literal for Sf {
    fn string(&self, s: &str) -> String {
        // Snowflake string literals read backslash escapes.
        format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
    }
    // A string literal into a DATE or TIMESTAMP_NTZ column is cast on insert.
    fn date(&self, d: &str) -> String {
        format!("'{d}'")
    }
    fn timestamp(&self, t: &str) -> String {
        format!("'{t}'")
    }
}

/// The column type Snowflake declares for an Arrow type, and how its
/// information schema names it (for comparing a table with the input).
fn sql_type(t: &DataType) -> Option<(String, String)> {
    Some(match t {
        DataType::Utf8 | DataType::LargeUtf8 => ("VARCHAR".into(), "TEXT".into()),
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::UInt32 | DataType::UInt64 => {
            ("NUMBER(38,0)".into(), "NUMBER(0)".into())
        }
        DataType::Decimal128(p, s) => (format!("NUMBER({p},{s})"), format!("NUMBER({s})")),
        DataType::Float32 | DataType::Float64 => ("FLOAT".into(), "FLOAT".into()),
        DataType::Boolean => ("BOOLEAN".into(), "BOOLEAN".into()),
        DataType::Date32 => ("DATE".into(), "DATE".into()),
        // Stored as UTC wall time.
        DataType::Timestamp(_, _) => ("TIMESTAMP_NTZ".into(), "TIMESTAMP_NTZ".into()),
        _ => return None,
    })
}

pub struct Snowflake {
    api: SnowflakeApi,
    target: SnowflakeTarget,
    endpoint: String,
    calls: AtomicU64,
    bytes: AtomicU64,
}

/// Sends every request to `base` instead of `{account}.snowflakecomputing.com`.
struct BaseUrl(url::Url);

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for BaseUrl {
    async fn handle(
        &self,
        mut req: reqwest::Request,
        ext: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let url = req.url_mut();
        let path = format!("{}{}", self.0.path().trim_end_matches('/'), url.path());
        let _ = url.set_scheme(self.0.scheme());
        let _ = url.set_host(self.0.host_str());
        let _ = url.set_port(self.0.port());
        url.set_path(&path);
        next.run(req, ext).await
    }
}

/// Whether an error comes from not reaching the server at all (the login's
/// error type is private to snowflake-api, so the source chain tells).
fn unreachable(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<reqwest::Error>() {
            if r.is_connect() || r.is_timeout() {
                return true;
            }
        }
        let text = e.to_string();
        if ["error sending request", "onnection refused", "dns error"]
            .iter()
            .any(|m| text.contains(m))
        {
            return true;
        }
        cur = e.source();
    }
    false
}

/// An error on one line, cut short: a warehouse may quote the whole statement back.
fn one_line(e: &dyn std::fmt::Display) -> String {
    // Result chunks are fetched from pre-signed URLs: never echo their queries.
    crest_core::error::brief(&crest_core::http::strip_queries(&e.to_string()), 300)
}

impl Snowflake {
    /// Logs in lazily: the first statement opens the session.
    pub fn connect(target: SnowflakeTarget) -> Result<Self> {
        let user = std::env::var("SNOWFLAKE_USER")
            .ok()
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| {
                Error::Auth("SNOWFLAKE_USER is not set: export the Snowflake user crest logs in as".into())
            })?;
        let auth_type = match Secret::from_env("SNOWFLAKE_PASSWORD") {
            Ok(p) => AuthType::Password(PasswordArgs { password: p.expose().to_string() }),
            Err(_) => match Secret::from_env("SNOWFLAKE_PRIVATE_KEY") {
                Ok(k) => AuthType::Certificate(CertificateArgs { private_key_pem: k.expose().to_string() }),
                Err(_) => {
                    return Err(Error::Auth(
                        "no Snowflake credentials: export SNOWFLAKE_PASSWORD or SNOWFLAKE_PRIVATE_KEY (PEM), or their _FILE forms"
                            .into(),
                    ))
                }
            },
        };
        let base = std::env::var("CREST_SNOWFLAKE_BASE_URL")
            .ok()
            .filter(|b| !b.trim().is_empty());
        let endpoint = base
            .clone()
            .unwrap_or_else(|| format!("https://{}.snowflakecomputing.com", target.account));
        let http = reqwest::Client::builder()
            .user_agent(concat!("crest/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(600))
            .build()
            .map_err(|e| Error::Config(format!("cannot set up HTTP: {e}")))?;
        // Transient failures are retried by crest's one policy with the same
        // requestId, which Snowflake recognises, so a retried statement runs once.
        let mut builder = reqwest_middleware::ClientBuilder::new(http)
            .with(RetryMiddleware::new(RetryPolicy::warehouse(), "snowflake"));
        if let Some(b) = &base {
            let url = url::Url::parse(b)
                .map_err(|e| Error::Config(format!("CREST_SNOWFLAKE_BASE_URL '{b}' is not a URL: {e}")))?;
            builder = builder.with(BaseUrl(url));
        }
        let auth = AuthArgs {
            account_identifier: target.account.clone(),
            warehouse: target.warehouse.clone(),
            // Names are qualified in every statement; the session needs no default.
            database: None,
            schema: None,
            username: user,
            role: target.role.clone(),
            auth_type,
        };
        let api = SnowflakeApiBuilder::new(auth)
            .with_client(builder.build())
            .build()
            .map_err(|e| Error::Config(format!("cannot set up the Snowflake client: {}", one_line(&e))))?;
        Ok(Snowflake {
            api,
            target,
            endpoint,
            calls: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        })
    }

    fn describe_target(&self) -> String {
        format!(
            "snowflake://{}/{}/{}",
            self.target.account, self.target.database, self.target.schema
        )
    }

    fn error(&self, e: snowflake_api::SnowflakeApiError, sql: &str) -> Error {
        use snowflake_api::SnowflakeApiError as E;
        let what = sql.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
        match e {
            e if unreachable(&e) => Error::Upstream(format!(
                "cannot reach Snowflake at {} ({}): check the account and the network",
                self.endpoint,
                one_line(&e)
            )),
            E::AuthError(e) => Error::Auth(format!(
                "Snowflake refused the login at {} ({}): check SNOWFLAKE_USER and SNOWFLAKE_PASSWORD or SNOWFLAKE_PRIVATE_KEY",
                self.endpoint,
                one_line(&e)
            )),
            E::ApiError(code, msg) => Error::Upstream(format!("Snowflake refused {what}… ({code}): {}", one_line(&msg))),
            other => Error::Upstream(format!("Snowflake answered {what}… with something unusable: {}", one_line(&other))),
        }
    }

    async fn exec(&self, sql: &str) -> Result<QueryResult> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(sql.len() as u64, Ordering::Relaxed);
        tracing::debug!(sql = %sql.chars().take(200).collect::<String>(), "snowflake");
        self.api.exec(sql).await.map_err(|e| self.error(e, sql))
    }

    /// A statement's result as batches in plain Arrow types.
    async fn batches(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        Ok(match self.exec(sql).await? {
            QueryResult::Arrow(b) => b.into_iter().map(plain).collect::<Result<_>>()?,
            QueryResult::Json(j) => vec![json_batch(&j)?],
            QueryResult::Empty => Vec::new(),
        })
    }

    /// A statement's result as rows of text.
    async fn rows(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        let mut out = Vec::new();
        for b in self.batches(sql).await? {
            let options = arrow::util::display::FormatOptions::new();
            let fmts: Vec<_> = b
                .columns()
                .iter()
                .map(|c| arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &options))
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| Error::Upstream(format!("Snowflake answered a value crest cannot read: {e}")))?;
            for i in 0..b.num_rows() {
                out.push(
                    b.columns()
                        .iter()
                        .zip(&fmts)
                        .map(|(c, f)| c.is_valid(i).then(|| f.value(i).to_string()))
                        .collect(),
                );
            }
        }
        Ok(out)
    }

    /// Runs a user's SQL with the target's database and schema as defaults.
    pub async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let q = Sf;
        self.exec(&format!(
            "USE SCHEMA {}.{}",
            q.quote(&self.target.database),
            q.quote(&self.target.schema)
        ))
        .await
        .map_err(|e| match e {
            Error::Upstream(m) => Error::Config(format!(
                "{m}: does {} exist? load into it first",
                self.describe_target()
            )),
            e => e,
        })?;
        self.batches(sql).await.map_err(|e| match e {
            Error::Upstream(m) if m.starts_with("Snowflake refused") => Error::Config(m),
            e => e,
        })
    }

    fn name(&self, table: &str) -> String {
        let q = Sf;
        format!(
            "{}.{}.{}",
            q.quote(&self.target.database),
            q.quote(&self.target.schema),
            q.quote(table)
        )
    }

    async fn schema_exists(&self) -> Result<bool> {
        let sql = format!(
            "SELECT COUNT(*) FROM {}.INFORMATION_SCHEMA.SCHEMATA WHERE SCHEMA_NAME = {}",
            Sf.quote(&self.target.database),
            Sf.string(&self.target.schema)
        );
        match self.rows(&sql).await {
            Ok(rows) => Ok(rows.first().and_then(|r| r[0].as_deref()).is_some_and(|n| n != "0")),
            // The database itself is missing.
            Err(Error::Upstream(m)) if m.starts_with("Snowflake refused") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The table's columns as (name, information-schema type), empty if it does not exist.
    async fn columns(&self, table: &str) -> Result<Vec<(String, String)>> {
        let sql = format!(
            "SELECT COLUMN_NAME, DATA_TYPE, NUMERIC_SCALE FROM {}.INFORMATION_SCHEMA.COLUMNS \
             WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {} ORDER BY ORDINAL_POSITION",
            Sf.quote(&self.target.database),
            Sf.string(&self.target.schema),
            Sf.string(&table.to_ascii_uppercase())
        );
        Ok(self
            .rows(&sql)
            .await?
            .into_iter()
            .map(|r| {
                let ty = r[1].clone().unwrap_or_default();
                let ty = if ty == "NUMBER" {
                    format!("NUMBER({})", r[2].as_deref().unwrap_or("0"))
                } else {
                    ty
                };
                (r[0].clone().unwrap_or_default().to_ascii_lowercase(), ty)
            })
            .collect())
    }

    fn column_defs(schema: &Schema, not_null: bool) -> Result<String> {
        schema
            .fields()
            .iter()
            .map(|f| {
                let (ty, _) = sql_type(f.data_type()).ok_or_else(|| {
                    Error::Data(format!(
                        "column {} has type {}, which crest cannot load into Snowflake",
                        f.name(),
                        f.data_type()
                    ))
                })?;
                let null = if not_null && !f.is_nullable() { " NOT NULL" } else { "" };
                let comment = if not_null {
                    format!(" COMMENT {}", Sf.string(warehouse::description(f)))
                } else {
                    String::new()
                };
                Ok(format!("  {} {ty}{null}{comment}", Sf.quote(f.name())))
            })
            .collect::<Result<Vec<_>>>()
            .map(|c| c.join(",\n"))
    }

    async fn create_table(&self, table: &str, schema: &Schema, cluster: bool) -> Result<()> {
        let columns = Self::column_defs(schema, true)?;
        let comment = Sf.string(&format!("crest {table}: see the column comments; loaded by crest load"));
        let sql = warehouse::render(
            CREATE_TABLE,
            &[
                ("table", &self.name(table)),
                ("columns", &columns),
                ("cluster", if cluster { " CLUSTER BY (\"DATE\")" } else { "" }),
                ("comment", &comment),
            ],
        )?;
        self.exec(&sql).await.map(|_| ())
    }

    async fn insert(&self, staging: &str, batch: &RecordBatch) -> Result<()> {
        let head = format!(
            "INSERT INTO {staging} ({}) VALUES\n",
            batch
                .schema()
                .fields()
                .iter()
                .map(|f| Sf.quote(f.name()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let rows = warehouse::value_rows(batch, &Sf)?;
        let mut sql = String::with_capacity(INSERT_BYTES + 4096);
        let mut n = 0;
        for row in rows {
            if n > 0 && (n == INSERT_ROWS || sql.len() + row.len() > INSERT_BYTES) {
                self.exec(&sql).await?;
                sql.clear();
                n = 0;
            }
            if n == 0 {
                sql.push_str(&head);
            } else {
                sql.push_str(",\n");
            }
            sql.push_str(&row);
            n += 1;
        }
        if n > 0 {
            self.exec(&sql).await?;
        }
        Ok(())
    }
}

/// Snowflake's statements: a table without a key is replaced by date.
static STATEMENTS: Statements = Statements {
    merge: MERGE,
    replace: Some(REPLACE),
    counts: COUNTS,
    benchmarks_create: BENCHMARKS_CREATE,
    benchmarks_replace: BENCHMARKS_REPLACE,
    benchmarks_evolve: BENCHMARKS_EVOLVE,
    alert_log_create: ALERT_LOG_CREATE,
    append: APPEND,
    utm_hygiene_create: UTM_HYGIENE_CREATE,
    utm_hygiene_evolve: UTM_HYGIENE_EVOLVE,
    alert_log_delivered: ALERT_LOG_DELIVERED,
    views: VIEWS,
};

#[async_trait::async_trait(?Send)]
impl warehouse::Warehouse for Snowflake {
    fn quoting(&self) -> &dyn Quote {
        &Sf
    }

    fn literals(&self) -> &dyn Literal {
        &Sf
    }

    fn date_bound(&self, d: chrono::NaiveDate) -> String {
        format!("'{d}'::DATE")
    }

    fn table_name(&self, table: &str) -> String {
        self.name(table)
    }

    fn statements(&self) -> &'static Statements {
        &STATEMENTS
    }

    fn view_column(&self, column: &str, about: &str) -> String {
        // Each column with its description as its comment.
        format!("{column} COMMENT {}", Sf.string(about))
    }

    fn benchmark_types(&self) -> [&'static str; 3] {
        ["NUMBER(38, 6)", "VARCHAR", "BIGINT"]
    }

    async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        Snowflake::query(self, sql).await
    }

    async fn rows(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        Snowflake::rows(self, sql).await
    }

    async fn execute(&self, sql: &str) -> Result<()> {
        self.exec(sql).await.map(|_| ())
    }

    async fn drop_staging_table(&self, table: &str, load_id: &str) {
        let sql = format!(
            "DROP TABLE IF EXISTS {}",
            self.name(&warehouse::staging_name(table, load_id))
        );
        if let Err(e) = self.exec(&sql).await {
            tracing::warn!(error = %e, table, "cannot drop a staging table; drop it by hand");
        }
    }
}

/// A JSON result (DML counts, SHOW) as a batch of text columns.
fn json_batch(j: &snowflake_api::JsonResult) -> Result<RecordBatch> {
    let rows = j.value.as_array().cloned().unwrap_or_default();
    let fields: Vec<Field> = j
        .schema
        .iter()
        .map(|f| Field::new(&f.name, DataType::Utf8, true))
        .collect();
    let columns: Vec<ArrayRef> = (0..fields.len())
        .map(|k| {
            Arc::new(arrow::array::StringArray::from_iter(rows.iter().map(|r| {
                r.get(k).and_then(|v| match v {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                })
            }))) as ArrayRef
        })
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| Error::Upstream(format!("Snowflake answered rows crest cannot read: {e}")))
}

/// Snowflake's Arrow results carry scaled integers for NUMBER(p,s) and
/// structs for timestamps; this turns them into plain decimals and timestamps.
fn plain(batch: RecordBatch) -> Result<RecordBatch> {
    let schema = batch.schema();
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (f, c) in schema.fields().iter().zip(batch.columns()) {
        let md = f.metadata();
        let scale: i8 = md.get("scale").and_then(|s| s.parse().ok()).unwrap_or(0);
        let logical = md.get("logicalType").map(String::as_str).unwrap_or("");
        let (field, col): (Field, ArrayRef) = match (logical, c.data_type()) {
            ("FIXED", DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64) if scale > 0 => {
                let ints = arrow::compute::cast(c, &DataType::Int64)
                    .map_err(|e| Error::Upstream(format!("Snowflake answered a number crest cannot read: {e}")))?;
                let d = Decimal128Array::from_iter(ints.as_primitive::<Int64Type>().iter().map(|v| v.map(i128::from)))
                    .with_precision_and_scale(38, scale)
                    .map_err(|e| Error::Upstream(e.to_string()))?;
                (Field::new(f.name(), d.data_type().clone(), true), Arc::new(d))
            }
            (_, DataType::Struct(_)) if logical.starts_with("TIMESTAMP") => {
                let s = c.as_struct();
                let epoch =
                    arrow::compute::cast(s.column(0), &DataType::Int64).map_err(|e| Error::Upstream(e.to_string()))?;
                let frac =
                    arrow::compute::cast(s.column(1), &DataType::Int64).map_err(|e| Error::Upstream(e.to_string()))?;
                let (epoch, frac) = (epoch.as_primitive::<Int64Type>(), frac.as_primitive::<Int64Type>());
                let ts: TimestampMicrosecondArray = (0..s.len())
                    .map(|i| {
                        s.is_valid(i)
                            .then(|| epoch.value(i) * 1_000_000 + frac.value(i) / 1_000)
                    })
                    .collect();
                let ts = ts.with_timezone("UTC");
                (
                    Field::new(
                        f.name(),
                        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                        true,
                    ),
                    Arc::new(ts),
                )
            }
            _ => (Field::new(f.name(), c.data_type().clone(), true), c.clone()),
        };
        fields.push(field);
        columns.push(col);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| Error::Upstream(format!("Snowflake answered rows crest cannot read: {e}")))
}

/// What `stage` leaves for `merge`: each table's schema as staged.
pub struct Staged(Vec<(&'static str, SchemaRef)>);

impl Destination for Snowflake {
    fn describe(&self) -> String {
        self.describe_target()
    }

    async fn loaded(&self, plan: &LoadPlan) -> Result<Option<LoadRecord>> {
        let checksum = plan.checksum.as_str();
        if !self.schema_exists().await? || self.columns(crest_core::load::LOADS_TABLE).await?.is_empty() {
            return Ok(None);
        }
        let sql = warehouse::render_loaded(
            LOADED,
            &Sf,
            &self.name(crest_core::load::LOADS_TABLE),
            &Sf.string(checksum),
        )?;
        Ok(crest_core::load::record_from_rows(checksum, &self.rows(&sql).await?))
    }

    async fn prepare(&self, schemas: &[(&'static str, SchemaRef)], create: bool) -> Result<Vec<String>> {
        if !self.schema_exists().await? {
            if !create {
                return Err(Error::Config(format!(
                    "{} does not exist: create it, or pass --create to let crest create it",
                    self.describe_target()
                )));
            }
            let q = Sf;
            self.exec(&format!(
                "CREATE DATABASE IF NOT EXISTS {}",
                q.quote(&self.target.database)
            ))
            .await?;
            self.exec(&format!(
                "CREATE SCHEMA IF NOT EXISTS {}.{}",
                q.quote(&self.target.database),
                q.quote(&self.target.schema)
            ))
            .await?;
        }
        // The session works in the target schema from here (statements stay qualified).
        let q = Sf;
        self.exec(&format!(
            "USE SCHEMA {}.{}",
            q.quote(&self.target.database),
            q.quote(&self.target.schema)
        ))
        .await?;
        let loads = crest_core::load::loads_schema();
        let mut all: Vec<(&str, SchemaRef, bool)> = schemas.iter().map(|(t, s)| (*t, s.clone(), true)).collect();
        all.push((crest_core::load::LOADS_TABLE, loads, false));
        let mut problems = Vec::new();
        let mut adds = Vec::new();
        let mut creates = Vec::new();
        for (table, schema, cluster) in &all {
            let held = self.columns(table).await?;
            if held.is_empty() {
                creates.push((*table, schema.clone(), *cluster));
                continue;
            }
            let input: Vec<(String, String, bool)> = schema
                .fields()
                .iter()
                .map(|f| {
                    let ty = sql_type(f.data_type())
                        .map(|t| t.1)
                        .unwrap_or_else(|| f.data_type().to_string());
                    (f.name().clone(), ty, f.is_nullable())
                })
                .collect();
            match warehouse::compare_columns(table, &held, &input) {
                Ok(added) => adds.extend(added.into_iter().map(|i| (*table, schema.field(i).clone()))),
                Err(p) => problems.extend(p),
            }
        }
        if !problems.is_empty() {
            return Err(Error::Data(format!(
                "the input does not fit {}, nothing was loaded: {}",
                self.describe_target(),
                problems.join("; ")
            )));
        }
        for (table, schema, cluster) in creates {
            self.create_table(table, &schema, cluster).await?;
        }
        let mut changes = Vec::new();
        for (table, f) in adds {
            let (ty, _) = sql_type(f.data_type())
                .ok_or_else(|| Error::Data(format!("{table}.{} has a type Snowflake cannot hold", f.name())))?;
            let sql = warehouse::render(
                ADD_COLUMN,
                &[
                    ("table", &self.name(table)),
                    ("column", &Sf.quote(f.name())),
                    ("type", &ty),
                    ("comment", &Sf.string(warehouse::description(&f))),
                ],
            )?;
            self.exec(&sql).await?;
            changes.push(format!("{table}: added column {} ({ty})", f.name()));
        }
        Ok(changes)
    }

    type Staged = Staged;

    async fn stage(&self, plan: &LoadPlan, schemas: &[(&'static str, SchemaRef)], load_id: &str) -> Result<Staged> {
        let mut staged = Vec::new();
        for t in &plan.tables {
            let schema = schemas
                .iter()
                .find(|(name, _)| *name == t.table)
                .map(|(_, s)| s.clone())
                .ok_or_else(|| Error::Data(format!("crest has no schema for {}", t.table)))?;
            let staging = self.name(&warehouse::staging_name(t.table, load_id));
            let sql = warehouse::render(
                CREATE_STAGING,
                &[("staging", &staging), ("columns", &Self::column_defs(&schema, false)?)],
            )?;
            self.exec(&sql).await?;
            let files: Vec<&crest_core::raw::RawFile> = t.dates.values().flatten().collect();
            match &self.target.stage {
                Some(stage) => self.copy(plan, stage, &staging, &files, t.rows).await?,
                None => {
                    for f in files {
                        for b in warehouse::file_batches(&plan.input, f, 8192).await? {
                            self.insert(&staging, &b?).await?;
                        }
                    }
                }
            }
            staged.push((t.table, schema));
        }
        Ok(Staged(staged))
    }

    async fn merge(&self, plan: &LoadPlan, load_id: &str, staged: Staged) -> Result<Vec<TableReport>> {
        warehouse::merge_staged(self, plan, load_id, staged.0).await
    }

    async fn abort(&self, plan: &LoadPlan, load_id: &str) {
        warehouse::drop_staging(self, plan, load_id).await;
    }

    async fn record(&self, record: &LoadRecord) -> Result<()> {
        let batch = crest_core::load::loads_batch(std::slice::from_ref(record))?;
        self.insert(&self.name(crest_core::load::LOADS_TABLE), &batch).await
    }

    fn traffic(&self) -> Option<(u64, u64)> {
        Some((self.calls.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed)))
    }
}

impl Snowflake {
    /// Stages files through the external stage over the transform output.
    /// Each file is still checked against its manifest checksum first, and the
    /// rows Snowflake read must be the rows the manifest names.
    async fn copy(
        &self,
        plan: &LoadPlan,
        stage: &[String],
        staging: &str,
        files: &[&crest_core::raw::RawFile],
        rows: u64,
    ) -> Result<()> {
        let stage = match stage {
            [name] => format!("@{}", self.name(name)),
            parts => format!("@{}", parts.iter().map(|p| Sf.quote(p)).collect::<Vec<_>>().join(".")),
        };
        for f in files {
            warehouse::verify_file(&plan.input, f).await?;
        }
        for chunk in files.chunks(COPY_FILES) {
            let names = chunk.iter().map(|f| Sf.string(&f.path)).collect::<Vec<_>>().join(", ");
            let sql = warehouse::render(COPY, &[("staging", staging), ("stage", &stage), ("files", &names)])?;
            self.exec(&sql).await?;
        }
        let held = self.rows(&format!("SELECT COUNT(*) FROM {staging}")).await?;
        let held = warehouse::number(&held, 0);
        if held != rows {
            return Err(Error::Data(format!(
                "Snowflake read {held} rows through {stage} but the run's manifest names {rows}: does the stage's URL point at {}?",
                plan.input
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_bad_ones_say_why() {
        let t = SnowflakeTarget::parse("snowflake://xy12345.eu-west-1/analytics/crest?warehouse=LOAD_WH&role=LOADER")
            .unwrap();
        assert_eq!(
            (t.account.as_str(), t.database.as_str(), t.schema.as_str()),
            ("xy12345.eu-west-1", "ANALYTICS", "CREST")
        );
        assert_eq!(t.warehouse.as_deref(), Some("LOAD_WH"));
        for bad in [
            "snowflake://acct/db",
            "snowflake://acct/db/s/x",
            "snowflake://acct/db/bad-name",
            "snowflake://acct/db/s?warehouse=a;b",
            "snowflake://acct/db/s?wh=x",
        ] {
            let e = SnowflakeTarget::parse(bad).unwrap_err().to_string();
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn string_literals_escape_quotes_and_backslashes() {
        assert_eq!(Sf.string(r"it's \ x"), r"'it''s \\ x'");
    }
}
