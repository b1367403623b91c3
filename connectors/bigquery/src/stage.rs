//! Staging a run's rows: the Storage Write API (one pending stream per
//! table, appends at offsets, committed at once) or a load job from GCS.
use super::*;

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

fn status_verdict(s: &tonic::Status) -> Verdict {
    retry::grpc_verdict(s.code() as i32, s.message())
}

impl BigQuery {
    /// Streams a table's files into its staging table through one pending
    /// write stream, committed only when every row is in.
    pub(crate) async fn write_stream(
        &self,
        plan: &LoadPlan,
        table: &str,
        staging: &str,
        schema: &SchemaRef,
    ) -> Result<u64> {
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
        // A retried commit whose first answer was lost finds the stream
        // committed: the rows are in, exactly once.
        let committed = storage::storage_error::StorageErrorCode::StreamAlreadyCommitted as i32;
        if let Some(e) = commit.stream_errors.iter().find(|e| e.code != committed) {
            return Err(what(&e.error_message));
        }
        Ok(sent)
    }

    /// Stages from GCS with a load job: BigQuery reads the Parquet itself.
    pub(crate) async fn load_job(&self, plan: &LoadPlan, table: &str, staging: &str) -> Result<()> {
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
