//! The connection: credentials, the REST client with crest's retry policy,
//! statements and their result pages, tables.
use super::*;

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
pub struct BigQuery {
    pub(crate) client: Client,
    pub(crate) auth: Arc<dyn Authenticator>,
    pub(crate) target: BigQueryTarget,
    pub(crate) endpoint: String,
    pub(crate) storage_url: String,
    pub(crate) retry: RetryPolicy,
    pub(crate) calls: AtomicU64,
    pub(crate) bytes: AtomicU64,
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

/// An id for a job or a statement, chosen by crest so a retried request is
/// recognised by BigQuery as the same one.
pub(crate) fn job_id() -> String {
    format!("crest_{}", uuid::Uuid::now_v7().simple())
}

/// A REST call that failed because an earlier attempt of it succeeded: the
/// job id, table or dataset it creates exists.
pub(crate) fn already_done(e: &BQError) -> bool {
    matches!(e, BQError::ResponseError { error } if error.error.code == 409)
}

pub(crate) fn one_line(e: &dyn std::fmt::Display) -> String {
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
    pub(crate) async fn google_credentials() -> Result<Arc<dyn Authenticator>> {
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

    pub(crate) fn describe_target(&self) -> String {
        format!("bigquery://{}/{}", self.target.project, self.target.dataset)
    }

    pub(crate) fn count(&self, bytes: usize) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn job_reference(&self, id: &str) -> gcp_bigquery_client::model::job_reference::JobReference {
        gcp_bigquery_client::model::job_reference::JobReference {
            job_id: Some(id.to_string()),
            location: self.target.location.clone(),
            project_id: Some(self.target.project.clone()),
        }
    }

    /// One REST call with crest's retry policy; `call` makes the same
    /// request each time (a job id or `requestId` makes a write idempotent).
    pub(crate) async fn call<T, F, Fut>(&self, label: &str, call: F) -> std::result::Result<T, BQError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, BQError>>,
    {
        retry::retry(&self.retry, label, call, verdict).await
    }

    pub(crate) fn error(&self, e: BQError, what: &str) -> Error {
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

    pub(crate) fn is_not_found(e: &BQError) -> bool {
        matches!(e, BQError::ResponseError { error } if error.error.code == 404)
    }

    /// Runs a statement to completion and returns its rows (all pages).
    pub(crate) async fn run(&self, sql: &str) -> Result<rows::Rows> {
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

    pub(crate) async fn fetch(&self, sql: &str, default_dataset: bool, what: &str) -> Result<rows::Rows> {
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
        // BigQuery runs a statement retried with the same requestId once
        // (at most 36 characters: a UUID's text).
        req.request_id = Some(uuid::Uuid::now_v7().to_string());
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
    pub(crate) async fn pages(
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

    pub(crate) fn name(&self, table: &str) -> String {
        format!("`{}`.`{}`.`{}`", self.target.project, self.target.dataset, table)
    }

    pub(crate) async fn table(&self, table: &str) -> Result<Option<Table>> {
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

    pub(crate) async fn create_table(&self, table: &str, schema: &Schema, canonical: bool) -> Result<()> {
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
}
