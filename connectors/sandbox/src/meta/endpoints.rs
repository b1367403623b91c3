//! The insights endpoints (synchronous, async report runs and their rows)
//! and the ads listing.
// Handlers return ready HTTP error responses as `Err`: boxing them buys nothing here.
#![allow(clippy::result_large_err)]

use super::*;

/// `GET /{v}/act_{id}/insights` (synchronous) or `GET /{v}/{report_run_id}/insights` (a finished job's rows).
pub(super) async fn insights_get(
    State(state): State<Shared>,
    Path((version, node)): Path<(String, String)>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response<Body> {
    let path = format!("/{version}/{node}/insights");
    if node.starts_with("act_") {
        let (a, account, fault) = match enter_account(&state, &version, &node, &headers, &params).await {
            Ok(entered) => entered,
            Err(r) => return r,
        };
        let q = match parse_query(a, &params) {
            Ok(q) => q,
            Err(r) => return r,
        };
        let rows = select(&state.meta.world, &q);
        let limit = state.config.meta_max_job_rows;
        if limit > 0 && rows.len() as u64 > limit {
            return graph_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                1,
                Some(99),
                "OAuthException",
                "Please reduce the amount of data you're asking for, then retry your request",
            );
        }
        return match page(&state, &headers, &path, &params, &rows, &q) {
            Ok(body) => ok_json(&state, Some(&account), body, fault),
            Err(r) => r,
        };
    }
    let job = state
        .meta
        .jobs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&node)
        .cloned();
    let Some(job) = job else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            100,
            Some(33),
            "GraphMethodException",
            &format!("Unsupported get request. Object with ID '{node}' does not exist."),
        );
    };
    let account = state.meta.world.accounts[job.query.account].clone();
    let fault = match gate(&state, &version, &headers, &params, Some(&account)) {
        Ok(f) => f,
        Err(r) => return r,
    };
    slow(&state, fault).await;
    if job.polls < state.config.meta_job_polls.max(1) || job.fate.is_some() {
        return bad_param("The report is not ready: poll its async_status until Job Completed");
    }
    let rows = match job.rows {
        Some(rows) => rows,
        None => {
            let rows = Arc::new(select(&state.meta.world, &job.query));
            if let Some(j) = state.meta.jobs.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&node) {
                j.rows = Some(rows.clone());
            }
            rows
        }
    };
    match page(&state, &headers, &path, &params, &rows, &job.query) {
        Ok(body) => ok_json(&state, Some(&account), body, fault),
        Err(r) => r,
    }
}

/// `POST /{v}/act_{id}/insights`: starts an async job.
pub(super) async fn insights_post(
    State(state): State<Shared>,
    Path((version, node)): Path<(String, String)>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response<Body> {
    let (a, account, fault) = match enter_account(&state, &version, &node, &headers, &params).await {
        Ok(entered) => entered,
        Err(r) => return r,
    };
    let q = match parse_query(a, &params) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let limit = state.config.meta_max_job_rows;
    let mut fate = fault.filter(|f| matches!(f, FaultKind::JobFailed | FaultKind::JobStall));
    if limit > 0 && fate.is_none() && select(&state.meta.world, &q).len() as u64 > limit {
        // Too heavy a report: Meta's job fails after a while.
        fate = Some(FaultKind::JobFailed);
    }
    let id = (8_000_000_000_000_000u64 + state.meta.next_job.fetch_add(1, Ordering::Relaxed)).to_string();
    state.meta.jobs_created.fetch_add(1, Ordering::Relaxed);
    state.meta.jobs.lock().unwrap_or_else(|e| e.into_inner()).insert(
        id.clone(),
        Job {
            query: q,
            polls: 0,
            fate,
            rows: None,
        },
    );
    let body_fault = fault.filter(|f| matches!(f, FaultKind::Truncated | FaultKind::Drop));
    ok_json(
        &state,
        Some(&account),
        serde_json::to_vec(&json!({"report_run_id": id})).unwrap_or_default(),
        body_fault,
    )
}

/// `GET /{v}/act_{id}/ads`: ads with their ad set, campaign and creative.
pub(super) async fn ads(
    State(state): State<Shared>,
    Path((version, node)): Path<(String, String)>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response<Body> {
    let (a, account, fault) = match enter_account(&state, &version, &node, &headers, &params).await {
        Ok(entered) => entered,
        Err(r) => return r,
    };
    let world = &state.meta.world;
    // The `empty` fault: the listing answers with no ads (an account whose
    // ads crest cannot see), while its insights still have rows.
    let all: Vec<&MetaAd> = world
        .ads
        .iter()
        .filter(|ad| ad.account == a && fault != Some(FaultKind::Empty))
        .collect();
    let limit: usize = params
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(25)
        .clamp(1, 500);
    let start = params
        .get("after")
        .and_then(|c| offset_of(c))
        .unwrap_or(0)
        .min(all.len());
    let end = (start + limit).min(all.len());
    let data: Vec<Value> = all[start..end]
        .iter()
        .map(|ad| {
            json!({
                "id": ad.ad_id, "name": ad.name, "adset_id": ad.adset_id, "campaign_id": ad.campaign_id,
                "adset": {"id": ad.adset_id, "name": ad.adset_name},
                "campaign": {"id": ad.campaign_id, "name": ad.campaign_name},
                "creative": {
                    "id": ad.creative_id,
                    "url_tags": ad.url_tags,
                    "object_story_spec": {"instagram_user_id": format!("1784{:011}", ad.creator), "link_data": {"link": ad.link}},
                    "instagram_permalink_url": format!("https://www.instagram.com/p/C{}/", &mix(ad.creator as u64).to_string()[..10]),
                },
                "effective_status": "ACTIVE",
            })
        })
        .collect();
    let mut body = json!({"data": data});
    if start < end {
        body["paging"] = json!({"cursors": {"before": cursor(start), "after": cursor(end)}});
        if end < all.len() {
            let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
            body["paging"]["next"] = json!(url_with(
                &format!("http://{host}/{version}/{node}/ads"),
                &params,
                "after",
                &cursor(end)
            ));
        }
    }
    ok_json(
        &state,
        Some(&account),
        serde_json::to_vec(&body).unwrap_or_default(),
        fault,
    )
}
