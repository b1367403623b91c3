//! crest's BigQuery target: `bigquery://PROJECT/DATASET`.
//!
//! Tables are created through the tables API, partitioned by `date`,
//! clustered by `platform, creator_id`, every column described from the
//! canonical schema's documentation. A load stages the run's rows in a
//! staging table, through a BigQuery load job when the canonical Parquet sits
//! in GCS (`gs://`), otherwise through the Storage Write API (one pending
//! stream per table, committed atomically) with gcp-bigquery-client's
//! generated gRPC client; then one MERGE per table (`sql/bigquery/merge.sql`)
//! de-duplicates on the natural key and replaces the run's dates row for row.
//!
//! Credentials: `GOOGLE_OAUTH_ACCESS_TOKEN` (a token, e.g. from
//! `gcloud auth print-access-token`), else `GOOGLE_APPLICATION_CREDENTIALS`
//! (a service-account key file), else gcloud's application-default
//! credentials. `CREST_BIGQUERY_BASE_URL` and `CREST_BIGQUERY_STORAGE_URL`
//! reach other endpoints (a proxy, an emulator).

mod rows;
mod target;

pub use target::KIND;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use crest_core::http::{RetryPolicy, Verdict};
use crest_core::load::{Destination, LoadPlan, LoadRecord, TableReport};
use crest_core::retry;
use crest_core::warehouse::{self, Literal, Quote, Statements};
use crest_core::{Error, Result, Secret};
use crest_sql::bigquery::{
    ADD_COLUMN, ALERT_LOG_APPEND, ALERT_LOG_CREATE, ALERT_LOG_DELIVERED, BENCHMARKS_CREATE, BENCHMARKS_REPLACE, COUNTS,
    LOADED, MERGE, VIEWS,
};
use gcp_bigquery_client::auth::Authenticator;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::google::cloud::bigquery::storage::v1 as storage;
use gcp_bigquery_client::model::field_type::FieldType;
use gcp_bigquery_client::model::query_request::QueryRequest;
use gcp_bigquery_client::model::table::Table;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use gcp_bigquery_client::model::table_schema::TableSchema;
use gcp_bigquery_client::Client;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How long a load job may run before the load gives up (a day's rows load in
/// seconds; polling never runs unbounded).
const LOAD_JOB_DEADLINE: std::time::Duration = std::time::Duration::from_secs(3600);

/// A Storage Write request must stay under 10 MB.
const APPEND_BYTES: usize = 8 << 20;
const DEFAULT_BASE: &str = "https://bigquery.googleapis.com";
const DEFAULT_STORAGE: &str = "https://bigquerystorage.googleapis.com";

/// Where a `bigquery://` target points.
#[derive(Debug, Clone)]
pub struct BigQueryTarget {
    pub project: String,
    pub dataset: String,
    /// Where `--create` makes the dataset (`?location=EU`); BigQuery's default otherwise.
    pub location: Option<String>,
}

impl BigQueryTarget {
    pub fn parse(target: &str) -> Result<Self> {
        let usage = |why: &str| {
            Error::Config(format!(
                "--target {target}: {why}; write bigquery://PROJECT/DATASET[?location=EU]"
            ))
        };
        let rest = target
            .strip_prefix("bigquery://")
            .ok_or_else(|| usage("not a bigquery:// URL"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let [project, dataset] = parts[..] else {
            return Err(usage("it needs a project and a dataset"));
        };
        // Project ids: lower-case letters, digits, hyphens; older ones carry a domain ("example.com:proj").
        let project_ok = !project.is_empty()
            && project.len() <= 100
            && project
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' || c == ':');
        if !project_ok {
            return Err(usage(&format!("'{project}' is not a project id")));
        }
        let mut location = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("location", v)) if !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') => {
                    location = Some(v.to_string())
                }
                _ => return Err(usage(&format!("unknown or bad parameter '{pair}'"))),
            }
        }
        Ok(BigQueryTarget {
            project: project.to_string(),
            dataset: warehouse::ident("dataset", dataset)?.to_string(),
            location,
        })
    }
}

/// BigQuery's quoting: backticks; names keep their case.
struct Bq;

impl Quote for Bq {
    fn quote(&self, name: &str) -> String {
        format!("`{}`", name.replace('`', ""))
    }
}

impl Literal for Bq {
    fn string(&self, s: &str) -> String {
        let mut out = String::with_capacity(s.len() + 2);
        out.push('\'');
        for c in s.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\'' => out.push_str("\\'"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c => out.push(c),
            }
        }
        out.push('\'');
        out
    }
}

/// The BigQuery type of an Arrow type, as the tables API names it.
fn field_type(t: &DataType) -> Option<(FieldType, &'static str)> {
    Some(match t {
        DataType::Utf8 | DataType::LargeUtf8 => (FieldType::String, "STRING"),
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::UInt32 => {
            (FieldType::Integer, "INTEGER")
        }
        // NUMERIC holds 29 integer digits and 9 decimals: every amount crest
        // carries (Decimal(38,6)) fits in practice, and BigQuery refuses a value that does not.
        DataType::Decimal128(_, s) if *s <= 9 => (FieldType::Numeric, "NUMERIC"),
        DataType::Decimal128(..) => (FieldType::Bignumeric, "BIGNUMERIC"),
        DataType::Float32 | DataType::Float64 => (FieldType::Float, "FLOAT"),
        DataType::Boolean => (FieldType::Boolean, "BOOLEAN"),
        DataType::Date32 => (FieldType::Date, "DATE"),
        DataType::Timestamp(..) => (FieldType::Timestamp, "TIMESTAMP"),
        _ => return None,
    })
}

/// The tables API's spelling of a type, with its aliases folded.
fn type_name(t: &FieldType) -> String {
    let s = serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    match s.as_str() {
        "INT64" => "INTEGER".into(),
        "FLOAT64" => "FLOAT".into(),
        "BOOL" => "BOOLEAN".into(),
        _ => s,
    }
}

fn bq_field(f: &Field) -> Result<TableFieldSchema> {
    let (t, _) = field_type(f.data_type()).ok_or_else(|| {
        Error::Data(format!(
            "column {} has type {}, which crest cannot load into BigQuery",
            f.name(),
            f.data_type()
        ))
    })?;
    let mut field = TableFieldSchema::new(f.name(), t);
    field.mode = Some(if f.is_nullable() { "NULLABLE" } else { "REQUIRED" }.into());
    field.description = Some(warehouse::description(f).to_string()).filter(|d| !d.is_empty());
    Ok(field)
}

/// A token given in the environment (`gcloud auth print-access-token`, a CI's workload identity).
#[derive(Clone)]
struct StaticToken(Secret);

#[async_trait::async_trait]
impl Authenticator for StaticToken {
    async fn access_token(&self) -> std::result::Result<String, BQError> {
        Ok(self.0.expose().to_string())
    }
}

/// A key file's or gcloud's credentials, refreshed as they expire.
#[derive(Clone)]
struct Yup(yup_oauth2::authenticator::DefaultAuthenticator);

#[async_trait::async_trait]
impl Authenticator for Yup {
    async fn access_token(&self) -> std::result::Result<String, BQError> {
        let token = self.0.token(&["https://www.googleapis.com/auth/bigquery"]).await?;
        token.token().map(str::to_string).ok_or(BQError::NoToken)
    }
}

/// A gRPC request with the token and the routing header BigQuery asks for.
fn authorized<T>(msg: T, token: &str, routing: String) -> std::result::Result<tonic::Request<T>, tonic::Status> {
    let mut r = tonic::Request::new(msg);
    let md = r.metadata_mut();
    md.insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .map_err(|_| tonic::Status::unauthenticated("the access token is not a header value"))?,
    );
    md.insert(
        "x-goog-request-params",
        routing
            .parse()
            .map_err(|_| tonic::Status::invalid_argument("bad routing header"))?,
    );
    Ok(r)
}

pub struct BigQuery {
    client: Client,
    auth: Arc<dyn Authenticator>,
    target: BigQueryTarget,
    endpoint: String,
    storage_url: String,
    retry: RetryPolicy,
    calls: AtomicU64,
    bytes: AtomicU64,
}

/// Whether another attempt of a BigQuery call can succeed: crest's one
/// policy over the REST API's JSON errors and the Storage Write API's gRPC
/// statuses; BigQuery's 403 `rateLimitExceeded` is a rate limit, not a
/// credentials problem.
fn verdict(e: &BQError) -> Verdict {
    match e {
        BQError::RequestError(e) => retry::transport_verdict(e),
        BQError::ResponseError { error } => {
            let e = &error.error;
            let rate_limited = e
                .errors
                .iter()
                .any(|d| d.get("reason").is_some_and(|r| r == "rateLimitExceeded"));
            let status = if rate_limited { 429 } else { e.code as u16 };
            retry::status_verdict(status, None, format!("HTTP {}: {}", e.code, one_line(&e.message)))
        }
        BQError::TonicStatusError(s) => retry::grpc_verdict(s.code() as i32, s.message()),
        BQError::TonicTransportError(e) => retry::grpc_verdict(14, &one_line(e)),
        e => Verdict::Fatal(one_line(e)),
    }
}

fn status_verdict(s: &tonic::Status) -> Verdict {
    retry::grpc_verdict(s.code() as i32, s.message())
}

/// An id for a job or a statement, chosen by crest so a retried request is
/// recognised by BigQuery as the same one.
fn job_id() -> String {
    format!("crest_{}", uuid::Uuid::now_v7().simple())
}

/// A REST call that failed because an earlier attempt of it succeeded: the
/// job id, table or dataset it creates exists.
fn already_done(e: &BQError) -> bool {
    matches!(e, BQError::ResponseError { error } if error.error.code == 409)
}

fn one_line(e: &dyn std::fmt::Display) -> String {
    crest_core::error::brief(&e.to_string(), 400)
}

impl BigQuery {
    pub async fn connect(target: BigQueryTarget) -> Result<Self> {
        let endpoint = std::env::var("CREST_BIGQUERY_BASE_URL")
            .ok()
            .filter(|b| !b.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_BASE.into());
        let endpoint = endpoint
            .trim_end_matches('/')
            .trim_end_matches("/bigquery/v2")
            .to_string();
        url::Url::parse(&endpoint)
            .map_err(|e| Error::Config(format!("CREST_BIGQUERY_BASE_URL '{endpoint}' is not a URL: {e}")))?;
        let storage_url = std::env::var("CREST_BIGQUERY_STORAGE_URL")
            .ok()
            .filter(|b| !b.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_STORAGE.into());
        url::Url::parse(&storage_url)
            .map_err(|e| Error::Config(format!("CREST_BIGQUERY_STORAGE_URL '{storage_url}' is not a URL: {e}")))?;
        let auth: Arc<dyn Authenticator> = match Secret::from_env("GOOGLE_OAUTH_ACCESS_TOKEN") {
            Ok(token) => Arc::new(StaticToken(token)),
            Err(Error::Config(m)) => return Err(Error::Config(m)),
            Err(_) => Self::google_credentials().await?,
        };
        let http = reqwest::Client::builder()
            .user_agent(concat!("crest/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(600))
            .build()
            .map_err(|e| Error::Config(format!("cannot set up HTTP: {e}")))?;
        let client = gcp_bigquery_client::client_builder::ClientBuilder::new()
            .with_v2_base_url(format!("{endpoint}/bigquery/v2"))
            .with_client(http)
            .build_from_authenticator(auth.clone())
            .await
            .map_err(|e| Error::Config(format!("cannot set up the BigQuery client: {}", one_line(&e))))?;
        Ok(BigQuery {
            client,
            auth,
            target,
            endpoint,
            storage_url,
            retry: RetryPolicy::warehouse(),
            calls: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        })
    }

    /// A service-account key file, else gcloud's application-default credentials.
    async fn google_credentials() -> Result<Arc<dyn Authenticator>> {
        if let Ok(path) = std::env::var("GOOGLE_APPLICATION_CREDENTIALS") {
            let key = yup_oauth2::read_service_account_key(&path).await.map_err(|e| {
                Error::Auth(format!(
                    "GOOGLE_APPLICATION_CREDENTIALS names {path}, which is not a service-account key file ({})",
                    one_line(&e)
                ))
            })?;
            let auth = yup_oauth2::ServiceAccountAuthenticator::builder(key)
                .build()
                .await
                .map_err(|e| Error::Auth(format!("cannot use the service-account key {path}: {}", one_line(&e))))?;
            return Ok(Arc::new(Yup(auth)));
        }
        let home = std::env::var("HOME").unwrap_or_default();
        let adc = std::path::Path::new(&home).join(".config/gcloud/application_default_credentials.json");
        if adc.is_file() {
            let secret = yup_oauth2::read_authorized_user_secret(&adc).await.map_err(|e| {
                Error::Auth(format!(
                    "cannot read gcloud's application-default credentials: {}",
                    one_line(&e)
                ))
            })?;
            let auth = yup_oauth2::AuthorizedUserAuthenticator::builder(secret)
                .build()
                .await
                .map_err(|e| {
                    Error::Auth(format!(
                        "cannot use gcloud's application-default credentials: {}",
                        one_line(&e)
                    ))
                })?;
            return Ok(Arc::new(Yup(auth)));
        }
        Err(Error::Auth(
            "no Google credentials: set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, run `gcloud auth application-default login`, or export GOOGLE_OAUTH_ACCESS_TOKEN"
                .into(),
        ))
    }

    fn describe_target(&self) -> String {
        format!("bigquery://{}/{}", self.target.project, self.target.dataset)
    }

    fn count(&self, bytes: usize) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn job_reference(&self, id: &str) -> gcp_bigquery_client::model::job_reference::JobReference {
        gcp_bigquery_client::model::job_reference::JobReference {
            job_id: Some(id.to_string()),
            location: self.target.location.clone(),
            project_id: Some(self.target.project.clone()),
        }
    }

    /// One REST call with crest's retry policy; `call` makes the same
    /// request each time (a job id or `requestId` makes a write idempotent).
    async fn call<T, F, Fut>(&self, label: &str, call: F) -> std::result::Result<T, BQError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, BQError>>,
    {
        retry::retry(&self.retry, label, call, verdict).await
    }

    fn error(&self, e: BQError, what: &str) -> Error {
        match &e {
            BQError::RequestError(r) if r.is_connect() || r.is_timeout() => Error::Upstream(format!(
                "cannot reach BigQuery at {} ({}): check the network or CREST_BIGQUERY_BASE_URL",
                self.endpoint,
                one_line(&e)
            )),
            BQError::ResponseError { error } if error.error.code == 401 || error.error.code == 403 => {
                Error::Auth(format!(
                    "BigQuery refused {what} ({} {}): check the credentials and their roles on {}",
                    error.error.code,
                    one_line(&error.error.message),
                    self.describe_target()
                ))
            }
            BQError::ResponseError { error } => Error::Upstream(format!(
                "BigQuery refused {what} ({} {})",
                error.error.code,
                one_line(&error.error.message)
            )),
            BQError::AuthError(_) | BQError::YupAuthError(_) | BQError::NoToken => {
                Error::Auth(format!("cannot get a Google access token: {}", one_line(&e)))
            }
            _ => Error::Upstream(format!("BigQuery failed {what}: {}", one_line(&e))),
        }
    }

    fn is_not_found(e: &BQError) -> bool {
        matches!(e, BQError::ResponseError { error } if error.error.code == 404)
    }

    /// Runs a statement to completion and returns its rows (all pages).
    async fn run(&self, sql: &str) -> Result<rows::Rows> {
        let what = format!("{}…", sql.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
        self.fetch(sql, false, &what).await
    }

    /// Runs a user's SQL with the target's dataset as the default; a
    /// statement BigQuery refuses is the user's to fix (exit 2).
    pub async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let rows = self.fetch(sql, true, "the query").await.map_err(|e| match e {
            Error::Upstream(m) if m.starts_with("BigQuery refused") => Error::Config(m),
            e => e,
        })?;
        rows.into_batch().map(|b| vec![b])
    }

    async fn fetch(&self, sql: &str, default_dataset: bool, what: &str) -> Result<rows::Rows> {
        self.count(sql.len());
        if default_dataset {
            // A query job carries a default dataset, so the user's SQL names tables unqualified.
            use gcp_bigquery_client::model::{
                dataset_reference::DatasetReference, job::Job, job_configuration::JobConfiguration,
                job_configuration_query::JobConfigurationQuery,
            };
            let id = job_id();
            let job = Job {
                job_reference: Some(self.job_reference(&id)),
                configuration: Some(JobConfiguration {
                    query: Some(JobConfigurationQuery {
                        query: sql.to_string(),
                        use_legacy_sql: Some(false),
                        default_dataset: Some(DatasetReference {
                            dataset_id: self.target.dataset.clone(),
                            project_id: self.target.project.clone(),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let job = match self
                .call("BigQuery jobs.insert", || {
                    self.client.job().insert(&self.target.project, job.clone())
                })
                .await
            {
                Ok(job) => job,
                // A retry of an insert that reached BigQuery: the job runs once, under its id.
                Err(e) if already_done(&e) => Job::default(),
                Err(e) => return Err(self.error(e, what)),
            };
            if let Some(e) = job.status.as_ref().and_then(|s| s.error_result.as_ref()) {
                return Err(Error::Upstream(format!(
                    "BigQuery refused {what}: {}",
                    rows::errors_line(std::slice::from_ref(e))
                )));
            }
            let id = job.job_reference.and_then(|j| j.job_id).unwrap_or(id);
            return self.pages(rows::Rows::new(None), Some(id), false, None, what).await;
        }
        let mut req = QueryRequest::new(sql);
        req.timeout_ms = Some(60_000);
        req.location = self.target.location.clone();
        // BigQuery runs a statement retried with the same requestId once.
        req.request_id = Some(job_id());
        let resp = self
            .call("BigQuery jobs.query", || {
                self.client.job().query(&self.target.project, req.clone())
            })
            .await
            .map_err(|e| self.error(e, what))?;
        // Errors can come with HTTP 200.
        if let Some(errs) = resp.errors.as_ref().filter(|e| !e.is_empty()) {
            return Err(Error::Upstream(format!(
                "BigQuery refused {what}: {}",
                rows::errors_line(errs)
            )));
        }
        let mut out = rows::Rows::new(resp.schema.clone());
        out.push(resp.rows.unwrap_or_default());
        let job = resp.job_reference.and_then(|j| j.job_id);
        self.pages(out, job, resp.job_complete.unwrap_or(true), resp.page_token, what)
            .await
    }

    /// Waits for a query job and reads its remaining pages.
    async fn pages(
        &self,
        mut out: rows::Rows,
        job: Option<String>,
        mut complete: bool,
        mut token: Option<String>,
        what: &str,
    ) -> Result<rows::Rows> {
        while !complete || token.is_some() {
            let Some(job) = job.as_deref() else { break };
            self.count(0);
            let params = gcp_bigquery_client::model::get_query_results_parameters::GetQueryResultsParameters {
                page_token: token.clone(),
                location: self.target.location.clone(),
                timeout_ms: Some(60_000),
                ..Default::default()
            };
            let page = self
                .call("BigQuery jobs.getQueryResults", || {
                    self.client
                        .job()
                        .get_query_results(&self.target.project, job, params.clone())
                })
                .await
                .map_err(|e| self.error(e, what))?;
            if let Some(errs) = page.errors.as_ref().filter(|e| !e.is_empty()) {
                return Err(Error::Upstream(format!(
                    "BigQuery refused {what}: {}",
                    rows::errors_line(errs)
                )));
            }
            complete = page.job_complete.unwrap_or(true);
            if complete {
                if out.schema.is_none() {
                    out.schema = page.schema.clone();
                }
                out.push(page.rows.unwrap_or_default());
                token = page.page_token;
            }
        }
        Ok(out)
    }

    fn name(&self, table: &str) -> String {
        format!("`{}`.`{}`.`{}`", self.target.project, self.target.dataset, table)
    }

    async fn table(&self, table: &str) -> Result<Option<Table>> {
        self.count(0);
        match self
            .call("BigQuery tables.get", || {
                self.client
                    .table()
                    .get(&self.target.project, &self.target.dataset, table, None)
            })
            .await
        {
            Ok(t) => Ok(Some(t)),
            Err(e) if Self::is_not_found(&e) => Ok(None),
            Err(e) => Err(self.error(e, &format!("reading table {table}"))),
        }
    }

    async fn create_table(&self, table: &str, schema: &Schema, canonical: bool) -> Result<()> {
        use gcp_bigquery_client::model::{clustering::Clustering, time_partitioning::TimePartitioning};
        let fields = schema
            .fields()
            .iter()
            .map(|f| bq_field(f))
            .collect::<Result<Vec<_>>>()?;
        let mut t = Table::new(
            &self.target.project,
            &self.target.dataset,
            table,
            TableSchema::new(fields),
        )
        .description(&format!(
            "crest {table}: see the column descriptions; loaded by crest load"
        ));
        if canonical {
            t = t.time_partitioning(TimePartitioning {
                r#type: "DAY".into(),
                field: Some("date".into()),
                expiration_ms: None,
                require_partition_filter: None,
            });
            let cluster: Vec<String> = ["platform", "creator_id"]
                .iter()
                .filter(|c| schema.field_with_name(c).is_ok())
                .map(|c| c.to_string())
                .collect();
            if !cluster.is_empty() {
                t = t.clustering(Clustering { fields: Some(cluster) });
            }
        }
        self.count(serde_json::to_vec(&t).map(|v| v.len()).unwrap_or(0));
        match self
            .call("BigQuery tables.insert", || self.client.table().create(t.clone()))
            .await
        {
            // An earlier attempt created it.
            Err(e) if already_done(&e) => Ok(()),
            Err(e) => Err(self.error(e, &format!("creating table {table}"))),
            Ok(_) => Ok(()),
        }
    }

    /// Streams a table's files into its staging table through one pending
    /// write stream, committed only when every row is in.
    async fn write_stream(&self, plan: &LoadPlan, table: &str, staging: &str, schema: &SchemaRef) -> Result<u64> {
        use storage::big_query_write_client::BigQueryWriteClient;
        let what = |e: &dyn std::fmt::Display| {
            Error::Upstream(format!(
                "the BigQuery Storage Write API at {} failed: {}",
                self.storage_url,
                one_line(e)
            ))
        };
        let mut endpoint = tonic::transport::Channel::from_shared(self.storage_url.clone())
            .map_err(|e| Error::Config(format!("CREST_BIGQUERY_STORAGE_URL: {e}")))?;
        if self.storage_url.starts_with("https://") {
            endpoint = endpoint
                .tls_config(tonic::transport::ClientTlsConfig::new().with_native_roots())
                .map_err(|e| what(&e))?;
        }
        let channel = endpoint.connect().await.map_err(|e| what(&e))?;
        let client = BigQueryWriteClient::new(channel).max_decoding_message_size(64 << 20);
        let parent = format!(
            "projects/{}/datasets/{}/tables/{staging}",
            self.target.project, self.target.dataset
        );
        let token = self.auth.access_token().await.map_err(|e| self.error(e, "a token"))?;
        self.count(parent.len());
        let stream = retry::retry(
            &self.retry,
            "BigQuery CreateWriteStream",
            || {
                let mut client = client.clone();
                // A retry may leave an empty pending stream behind: never
                // committed, it holds no rows.
                let req = authorized(
                    storage::CreateWriteStreamRequest {
                        parent: parent.clone(),
                        write_stream: Some(storage::WriteStream {
                            r#type: storage::write_stream::Type::Pending as i32,
                            ..Default::default()
                        }),
                    },
                    &token,
                    format!("parent={parent}"),
                );
                async move { client.create_write_stream(req?).await }
            },
            status_verdict,
        )
        .await
        .map_err(|e| what(&e.message()))?
        .into_inner();
        let descriptor = rows::descriptor(schema)?;
        let mut encoder = rows::Encoder::new(schema)?;
        let mut buffered: Vec<Vec<u8>> = Vec::new();
        let mut size = 0usize;
        let mut offset = 0i64;
        let mut sent = 0u64;
        let files: Vec<&crest_core::raw::RawFile> = plan
            .tables
            .iter()
            .filter(|t| t.table == table)
            .flat_map(|t| t.dates.values().flatten())
            .collect();
        // Each append names its offset in the stream, so a retried append
        // whose rows are already in is refused (ALREADY_EXISTS), never doubled.
        let append = |rows: Vec<Vec<u8>>, offset: i64| {
            let bytes: usize = rows.iter().map(Vec::len).sum();
            self.count(bytes);
            let req = storage::AppendRowsRequest {
                write_stream: stream.name.clone(),
                offset: Some(offset),
                rows: Some(storage::append_rows_request::Rows::ProtoRows(
                    storage::append_rows_request::ProtoData {
                        writer_schema: Some(storage::ProtoSchema {
                            proto_descriptor: Some(descriptor.clone()),
                        }),
                        rows: Some(storage::ProtoRows { serialized_rows: rows }),
                    },
                )),
                ..Default::default()
            };
            let (client, token, stream) = (&client, &token, &stream);
            async move {
                let sent = retry::retry(
                    &self.retry,
                    "BigQuery AppendRows",
                    || {
                        let r = authorized(
                            futures::stream::iter(vec![req.clone()]),
                            token,
                            format!("write_stream={}", stream.name),
                        );
                        let mut client = client.clone();
                        async move {
                            let mut responses = client.append_rows(r?).await?.into_inner();
                            while let Some(resp) = responses.message().await? {
                                if let Some(storage::append_rows_response::Response::Error(s)) = resp.response {
                                    return Err(tonic::Status::new(tonic::Code::from(s.code), s.message));
                                }
                                if let Some(row) = resp.row_errors.first() {
                                    return Ok(Some(format!(
                                        "BigQuery refused row {} of {table}: {}",
                                        row.index, row.message
                                    )));
                                }
                            }
                            Ok(None)
                        }
                    },
                    status_verdict,
                )
                .await;
                match sent {
                    Ok(None) => Ok(()),
                    Ok(Some(refused)) => Err(Error::Data(refused)),
                    // An earlier attempt's rows are in; its answer was lost.
                    Err(s) if s.code() == tonic::Code::AlreadyExists => Ok(()),
                    Err(s) => Err(what(&s.message())),
                }
            }
        };
        for f in files {
            for b in warehouse::file_batches(&plan.input, f, 8192).await? {
                let b = b?;
                for row in encoder.encode(&b)? {
                    if size + row.len() > APPEND_BYTES && !buffered.is_empty() {
                        let n = buffered.len() as i64;
                        append(std::mem::take(&mut buffered), offset).await?;
                        offset += n;
                        size = 0;
                    }
                    size += row.len();
                    buffered.push(row);
                    sent += 1;
                }
            }
        }
        if !buffered.is_empty() {
            append(std::mem::take(&mut buffered), offset).await?;
        }
        self.count(stream.name.len());
        retry::retry(
            &self.retry,
            "BigQuery FinalizeWriteStream",
            || {
                let mut client = client.clone();
                let req = authorized(
                    storage::FinalizeWriteStreamRequest {
                        name: stream.name.clone(),
                    },
                    &token,
                    format!("name={}", stream.name),
                );
                async move { client.finalize_write_stream(req?).await }
            },
            status_verdict,
        )
        .await
        .map_err(|e| what(&e.message()))?;
        self.count(stream.name.len());
        let commit = retry::retry(
            &self.retry,
            "BigQuery BatchCommitWriteStreams",
            || {
                let mut client = client.clone();
                let req = authorized(
                    storage::BatchCommitWriteStreamsRequest {
                        parent: parent.clone(),
                        write_streams: vec![stream.name.clone()],
                    },
                    &token,
                    format!("parent={parent}"),
                );
                async move { client.batch_commit_write_streams(req?).await }
            },
            status_verdict,
        )
        .await
        .map_err(|e| what(&e.message()))?
        .into_inner();
        if let Some(e) = commit.stream_errors.first() {
            return Err(what(&e.error_message));
        }
        Ok(sent)
    }

    /// Stages from GCS with a load job: BigQuery reads the Parquet itself.
    async fn load_job(&self, plan: &LoadPlan, table: &str, staging: &str) -> Result<()> {
        use gcp_bigquery_client::model::{
            job::Job, job_configuration::JobConfiguration, job_configuration_load::JobConfigurationLoad,
            table_reference::TableReference,
        };
        let uris: Vec<String> = plan
            .tables
            .iter()
            .filter(|t| t.table == table)
            .flat_map(|t| t.dates.values().flatten())
            .map(|f| format!("{}/{}", plan.input.to_string().trim_end_matches('/'), f.path))
            .collect();
        if uris.is_empty() {
            return Ok(());
        }
        let id = job_id();
        let job = Job {
            job_reference: Some(self.job_reference(&id)),
            configuration: Some(JobConfiguration {
                load: Some(JobConfigurationLoad {
                    source_uris: Some(uris),
                    source_format: Some("PARQUET".into()),
                    write_disposition: Some("WRITE_APPEND".into()),
                    destination_table: Some(TableReference::new(&self.target.project, &self.target.dataset, staging)),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.count(serde_json::to_vec(&job).map(|v| v.len()).unwrap_or(0));
        // The job id is crest's, so a retried insert cannot append the files twice.
        let id = match self
            .call("BigQuery jobs.insert", || {
                self.client.job().insert(&self.target.project, job.clone())
            })
            .await
        {
            Ok(job) => job.job_reference.and_then(|r| r.job_id).unwrap_or(id),
            Err(e) if already_done(&e) => id,
            Err(e) => return Err(self.error(e, "a load job")),
        };
        let started = std::time::Instant::now();
        loop {
            if started.elapsed() >= LOAD_JOB_DEADLINE {
                return Err(Error::Upstream(format!(
                    "BigQuery's load job {id} for {table} did not finish within {} minutes; nothing was merged: look at the job in BigQuery, then load again",
                    LOAD_JOB_DEADLINE.as_secs() / 60
                )));
            }
            self.count(0);
            let j = self
                .call("BigQuery jobs.get", || {
                    self.client
                        .job()
                        .get_job(&self.target.project, &id, self.target.location.as_deref())
                })
                .await
                .map_err(|e| self.error(e, "a load job"))?;
            let status = j.status.unwrap_or_default();
            if status.state.as_deref() == Some("DONE") {
                if let Some(e) = status.error_result {
                    return Err(Error::Upstream(format!(
                        "BigQuery's load job for {table} failed: {}",
                        e.message.unwrap_or_default()
                    )));
                }
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
}

/// BigQuery's statements. One MERGE for tables with and without a key:
/// without one its match is FALSE, so the run's dates are replaced whole.
static STATEMENTS: Statements = Statements {
    merge: MERGE,
    replace: None,
    counts: COUNTS,
    benchmarks_create: BENCHMARKS_CREATE,
    benchmarks_replace: BENCHMARKS_REPLACE,
    alert_log_create: ALERT_LOG_CREATE,
    alert_log_append: ALERT_LOG_APPEND,
    alert_log_delivered: ALERT_LOG_DELIVERED,
    views: VIEWS,
};

#[async_trait::async_trait(?Send)]
impl warehouse::Warehouse for BigQuery {
    fn quoting(&self) -> &dyn Quote {
        &Bq
    }

    fn literals(&self) -> &dyn Literal {
        &Bq
    }

    fn date_bound(&self, d: chrono::NaiveDate) -> String {
        format!("DATE '{d}'")
    }

    fn table_name(&self, table: &str) -> String {
        self.name(table)
    }

    fn statements(&self) -> &'static Statements {
        &STATEMENTS
    }

    fn view_column(&self, column: &str, about: &str) -> String {
        // Each column with its description, as BigQuery shows it in the schema.
        format!("{} OPTIONS(description = {})", Bq.quote(column), Bq.string(about))
    }

    fn view_params(&self) -> Vec<(&'static str, String)> {
        // BigQuery views name their tables with the dataset.
        vec![(
            "dataset",
            format!("`{}`.`{}`", self.target.project, self.target.dataset),
        )]
    }

    fn benchmark_types(&self) -> [&'static str; 3] {
        ["NUMERIC", "STRING", "INT64"]
    }

    async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        BigQuery::query(self, sql).await
    }

    async fn rows(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        Ok(self.run(sql).await?.text())
    }

    async fn execute(&self, sql: &str) -> Result<()> {
        self.run(sql).await?;
        self.count(0);
        Ok(())
    }

    async fn drop_staging_table(&self, table: &str, load_id: &str) {
        let staging = warehouse::staging_name(table, load_id);
        self.count(0);
        let dropped = self
            .call("BigQuery tables.delete", || {
                self.client
                    .table()
                    .delete(&self.target.project, &self.target.dataset, &staging)
            })
            .await;
        match dropped {
            Err(e) if !Self::is_not_found(&e) => {
                tracing::warn!(table = %staging, error = %one_line(&e), "cannot drop a staging table; it is harmless, drop it by hand")
            }
            _ => {}
        }
    }
}

/// What `stage` leaves for `merge`: each table's schema as staged.
pub struct Staged(Vec<(&'static str, SchemaRef)>);

impl Destination for BigQuery {
    fn describe(&self) -> String {
        self.describe_target()
    }

    async fn loaded(&self, checksum: &str) -> Result<Option<LoadRecord>> {
        if self.table(crest_core::load::LOADS_TABLE).await?.is_none() {
            return Ok(None);
        }
        let sql = warehouse::render_loaded(
            LOADED,
            &Bq,
            &self.name(crest_core::load::LOADS_TABLE),
            &Bq.string(checksum),
        )?;
        Ok(crest_core::load::record_from_rows(
            checksum,
            &self.run(&sql).await?.text(),
        ))
    }

    async fn prepare(&self, schemas: &[(&'static str, SchemaRef)], create: bool) -> Result<Vec<String>> {
        self.count(0);
        match self
            .call("BigQuery datasets.get", || {
                self.client.dataset().get(&self.target.project, &self.target.dataset)
            })
            .await
        {
            Ok(_) => {}
            Err(e) if Self::is_not_found(&e) => {
                if !create {
                    return Err(Error::Config(format!(
                        "{} does not exist: create the dataset, or pass --create to let crest create it",
                        self.describe_target()
                    )));
                }
                let mut ds =
                    gcp_bigquery_client::model::dataset::Dataset::new(&self.target.project, &self.target.dataset);
                if let Some(l) = &self.target.location {
                    ds = ds.location(l);
                }
                self.count(0);
                match self
                    .call("BigQuery datasets.insert", || self.client.dataset().create(ds.clone()))
                    .await
                {
                    Ok(_) => {}
                    Err(e) if already_done(&e) => {}
                    Err(e) => return Err(self.error(e, "creating the dataset")),
                }
            }
            Err(e) => return Err(self.error(e, "reading the dataset")),
        }
        let mut all: Vec<(&str, SchemaRef, bool)> = schemas.iter().map(|(t, s)| (*t, s.clone(), true)).collect();
        all.push((crest_core::load::LOADS_TABLE, crest_core::load::loads_schema(), false));
        let mut problems = Vec::new();
        let mut widen = Vec::new();
        let mut creates = Vec::new();
        for (table, schema, canonical) in &all {
            let Some(existing) = self.table(table).await? else {
                creates.push((*table, schema.clone(), *canonical));
                continue;
            };
            let held: Vec<(String, String)> = existing
                .schema
                .fields
                .as_ref()
                .map(|fs| fs.iter().map(|f| (f.name.clone(), type_name(&f.r#type))).collect())
                .unwrap_or_default();
            let input: Vec<(String, String, bool)> = schema
                .fields()
                .iter()
                .map(|f| {
                    let ty = field_type(f.data_type())
                        .map(|t| t.1.to_string())
                        .unwrap_or_else(|| f.data_type().to_string());
                    (f.name().clone(), ty, f.is_nullable())
                })
                .collect();
            match warehouse::compare_columns(table, &held, &input) {
                Ok(added) if added.is_empty() => {}
                Ok(added) => widen.push((
                    *table,
                    existing,
                    added.into_iter().map(|i| schema.field(i).clone()).collect::<Vec<_>>(),
                )),
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
        for (table, schema, canonical) in creates {
            self.create_table(table, &schema, canonical).await?;
        }
        let mut changes = Vec::new();
        for (table, mut existing, added) in widen {
            let mut fields = existing.schema.fields.take().unwrap_or_default();
            for f in &added {
                let ty = field_type(f.data_type()).map(|t| t.1).unwrap_or("STRING");
                let sql = warehouse::render(
                    ADD_COLUMN,
                    &[
                        ("table", &self.name(table)),
                        ("column", &Bq.quote(f.name())),
                        ("type", ty),
                        ("description", &Bq.string(warehouse::description(f))),
                    ],
                )?;
                self.run(&sql).await?;
                fields.push(bq_field(f)?);
                changes.push(format!("{table}: added column {} ({ty})", f.name()));
            }
            // The tables API then carries the full schema with every description.
            existing.schema.fields = Some(fields);
            self.count(serde_json::to_vec(&existing).map(|v| v.len()).unwrap_or(0));
            self.call("BigQuery tables.patch", || {
                self.client
                    .table()
                    .patch(&self.target.project, &self.target.dataset, table, existing.clone())
            })
            .await
            .map_err(|e| self.error(e, &format!("describing the columns added to {table}")))?;
        }
        Ok(changes)
    }

    type Staged = Staged;

    async fn stage(&self, plan: &LoadPlan, schemas: &[(&'static str, SchemaRef)], load_id: &str) -> Result<Staged> {
        let mut staged = Vec::new();
        let from_gcs = plan.input.to_string().starts_with("gs://");
        for t in &plan.tables {
            let schema = schemas
                .iter()
                .find(|(name, _)| *name == t.table)
                .map(|(_, s)| s.clone())
                .ok_or_else(|| Error::Data(format!("crest has no schema for {}", t.table)))?;
            let staging = warehouse::staging_name(t.table, load_id);
            // Staging takes any row: checks ran in the transform, and a NULL in a key must still merge.
            let loose = Schema::new(
                schema
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone().with_nullable(true))
                    .collect::<Vec<_>>(),
            );
            self.create_table(&staging, &loose, false).await?;
            if t.rows == 0 {
                // Nothing to stage: the merge still empties the dates the run restates.
            } else if from_gcs {
                self.load_job(plan, t.table, &staging).await?;
            } else {
                self.write_stream(plan, t.table, &staging, &schema).await?;
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
        let columns = batch
            .schema()
            .fields()
            .iter()
            .map(|f| Bq.quote(f.name()))
            .collect::<Vec<_>>()
            .join(", ");
        let values = warehouse::value_rows(&batch, &Bq)?.join(",\n");
        self.run(&format!(
            "INSERT INTO {} ({columns}) VALUES\n{values}",
            self.name(crest_core::load::LOADS_TABLE)
        ))
        .await
        .map(|_| ())
    }

    fn traffic(&self) -> Option<(u64, u64)> {
        Some((self.calls.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_bad_ones_say_why() {
        let t = BigQueryTarget::parse("bigquery://my-proj/crest_prod?location=EU").unwrap();
        assert_eq!(
            (t.project.as_str(), t.dataset.as_str(), t.location.as_deref()),
            ("my-proj", "crest_prod", Some("EU"))
        );
        for bad in [
            "bigquery://p",
            "bigquery://p/d/x",
            "bigquery://P_Q/d",
            "bigquery://p/bad-name",
            "bigquery://p/d?x=1",
        ] {
            let e = BigQueryTarget::parse(bad).unwrap_err().to_string();
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn string_literals_escape() {
        assert_eq!(Bq.string("it's \\ x\n"), r"'it\'s \\ x\n'");
    }
}
