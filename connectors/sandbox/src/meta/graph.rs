//! The Graph API's manners: its error shape, the usage headers and the
//! budget behind them, the rate gate, account nodes.
// Handlers return ready HTTP error responses as `Err`: boxing them buys nothing here.
#![allow(clippy::result_large_err)]

use super::*;

pub(super) fn trace_id(seed: u64) -> String {
    format!("A{:015X}", mix(seed) >> 4)
}

pub(super) fn graph_error(
    status: StatusCode,
    code: i64,
    subcode: Option<i64>,
    kind: &str,
    message: &str,
) -> Response<Body> {
    let mut e = json!({"message": message, "type": kind, "code": code, "fbtrace_id": trace_id(code as u64)});
    if let Some(s) = subcode {
        e["error_subcode"] = json!(s);
    }
    if code == 2 || code == 1 {
        e["is_transient"] = json!(true);
    }
    deliver(
        status,
        serde_json::to_vec(&json!({"error": e})).unwrap_or_default(),
        None,
    )
}

/// Usage in percent of the budget over its window, after counting this call.
pub(super) fn spend_budget(state: &AppState) -> (u64, bool) {
    let Some((budget, window)) = state.config.meta_budget else {
        return (1, false);
    };
    let mut calls = state.meta.calls.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    while calls.front().is_some_and(|t| now.duration_since(*t) > window) {
        calls.pop_front();
    }
    calls.push_back(now);
    let pct = calls.len() as u64 * 100 / budget.max(1) as u64;
    (pct, calls.len() as u64 > budget as u64)
}

pub(super) fn usage_headers(state: &AppState, account: Option<&MetaAccount>, pct: u64) -> [(&'static str, String); 3] {
    let business = account.map_or("0".to_string(), |a| a.business_id.clone());
    let account_id = account.map_or("0".to_string(), |a| a.account_id.clone());
    // Meta reports the wait in minutes; under a minute reads as 0.
    let regain = if pct > 100 {
        state.config.meta_budget.map_or(0, |(_, w)| w.as_secs() / 60)
    } else {
        0
    };
    let pct = pct.min(100);
    [
        (
            "x-business-use-case-usage",
            json!({business: [{"type": "ads_insights", "call_count": pct, "total_cputime": pct / 2, "total_time": pct * 3 / 4, "estimated_time_to_regain_access": regain}]})
                .to_string(),
        ),
        ("x-ad-account-usage", json!({"acc_id_util_pct": pct, "reset_time_duration": 0, "ads_api_access_tier": "standard_access"}).to_string()),
        ("x-fb-ads-insights-throttle", json!({"app_id_util_pct": pct / 2, "acc_id_util_pct": pct, "ads_api_access_tier": "standard_access", "account": account_id}).to_string()),
    ]
}

pub(super) fn with_headers(mut r: Response<Body>, headers: [(&'static str, String); 3]) -> Response<Body> {
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            r.headers_mut().insert(k, v);
        }
    }
    r
}

/// What every Meta endpoint does first: faults, version, token, budget.
/// `Ok(fault)` to go on (a body fault, or a job fate, still to apply).
pub(super) fn gate(
    state: &AppState,
    version: &str,
    headers: &HeaderMap,
    params: &Params,
    account: Option<&MetaAccount>,
) -> Result<Option<FaultKind>, Response<Body>> {
    let (pct, over) = spend_budget(state);
    let h = usage_headers(state, account, pct);
    let fault = match state.admit() {
        Admission::OverBudget => {
            state.meta.rate_limited.fetch_add(1, Ordering::Relaxed);
            return Err(with_headers(
                graph_error(
                    StatusCode::BAD_REQUEST,
                    4,
                    None,
                    "OAuthException",
                    "(#4) Application request limit reached",
                ),
                h,
            ));
        }
        Admission::Serve(f) => f,
    };
    let fail = |r: Response<Body>| Err(with_headers(r, h.clone()));
    match fault {
        Some(FaultKind::RateLimit) => {
            state.meta.rate_limited.fetch_add(1, Ordering::Relaxed);
            return fail(graph_error(
                StatusCode::BAD_REQUEST,
                80000,
                Some(2446079),
                "OAuthException",
                "There have been too many calls from this ad-account. Please wait a bit and try again.",
            ));
        }
        Some(FaultKind::ServerError) => {
            return fail(graph_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                2,
                None,
                "OAuthException",
                "An unexpected error has occurred. Please retry your request later.",
            ))
        }
        Some(FaultKind::Http500) => {
            return fail(deliver(
                StatusCode::INTERNAL_SERVER_ERROR,
                b"<html>500</html>".to_vec(),
                None,
            ))
        }
        Some(FaultKind::Http503) => {
            let mut r = deliver(StatusCode::SERVICE_UNAVAILABLE, b"Service Unavailable".to_vec(), None);
            r.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
            return fail(r);
        }
        Some(FaultKind::ExpiredToken) => {
            return fail(graph_error(
                StatusCode::BAD_REQUEST,
                190,
                Some(463),
                "OAuthException",
                "Error validating access token: Session has expired on Tuesday, 24-Nov-26 10:00:00 PST.",
            ))
        }
        _ => {}
    }
    let v = version.trim_start_matches('v');
    let parsed = v
        .split_once('.')
        .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
    match parsed {
        None => return fail(graph_error(StatusCode::BAD_REQUEST, 100, None, "GraphMethodException", &format!("Unknown path components: /{version}"))),
        Some(p) if p < OLDEST_VERSION => {
            return fail(graph_error(
                StatusCode::BAD_REQUEST,
                2635,
                None,
                "OAuthException",
                &format!("(#2635) You are calling a deprecated version of the Ads API. Please update to the latest version: {CURRENT_VERSION}."),
            ))
        }
        _ => {}
    }
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let token = params.get("access_token").map(String::as_str).or(bearer).unwrap_or("");
    if token != state.config.meta_token {
        return fail(graph_error(
            StatusCode::BAD_REQUEST,
            190,
            None,
            "OAuthException",
            "Invalid OAuth access token - Cannot parse access token",
        ));
    }
    if over {
        state.meta.rate_limited.fetch_add(1, Ordering::Relaxed);
        return fail(graph_error(
            StatusCode::BAD_REQUEST,
            17,
            Some(2446079),
            "OAuthException",
            "(#17) User request limit reached",
        ));
    }
    Ok(fault)
}

pub(super) fn account_of(state: &AppState, node: &str) -> Result<usize, Response<Body>> {
    let id = node.strip_prefix("act_").unwrap_or(node);
    state.meta.world.account_index(id).ok_or_else(|| {
        graph_error(
            StatusCode::BAD_REQUEST,
            100,
            Some(33),
            "GraphMethodException",
            &format!("Unsupported get request. Object with ID 'act_{id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation."),
        )
    })
}

pub(super) fn ok_json(
    state: &AppState,
    account: Option<&MetaAccount>,
    body: Vec<u8>,
    fault: Option<FaultKind>,
) -> Response<Body> {
    let pct = state.config.meta_budget.map_or(1, |(budget, _)| {
        let calls = state.meta.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.len() as u64 * 100 / budget.max(1) as u64
    });
    with_headers(deliver(StatusCode::OK, body, fault), usage_headers(state, account, pct))
}

pub(super) async fn slow(state: &AppState, fault: Option<FaultKind>) {
    if fault == Some(FaultKind::Slow) {
        tokio::time::sleep(state.config.slow).await;
    }
}

/// What every `act_{id}/…` endpoint does first: find the account, pass the
/// gate (faults, version, token, budget), wait out a `slow` fault.
pub(super) async fn enter_account(
    state: &AppState,
    version: &str,
    node: &str,
    headers: &HeaderMap,
    params: &Params,
) -> Result<(usize, MetaAccount, Option<FaultKind>), Response<Body>> {
    let a = account_of(state, node)?;
    let account = state.meta.world.accounts[a].clone();
    let fault = gate(state, version, headers, params, Some(&account))?;
    slow(state, fault).await;
    Ok((a, account, fault))
}

/// `GET /{v}/act_{id}` (account) or `GET /{v}/{report_run_id}` (job status).
pub(super) async fn node(
    State(state): State<Shared>,
    Path((version, node)): Path<(String, String)>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response<Body> {
    let account = if node.starts_with("act_") {
        account_of(&state, &node)
            .ok()
            .map(|a| state.meta.world.accounts[a].clone())
    } else {
        None
    };
    let fault = match gate(&state, &version, &headers, &params, account.as_ref()) {
        Ok(f) => f,
        Err(r) => return r,
    };
    slow(&state, fault).await;
    if node.starts_with("act_") {
        let Some(a) = account else {
            return account_of(&state, &node)
                .err()
                .unwrap_or_else(|| Response::new(Body::empty()));
        };
        let body = json!({"id": format!("act_{}", a.account_id), "account_id": a.account_id, "name": a.name, "currency": a.currency, "timezone_name": a.timezone_name, "account_status": 1, "business": {"id": a.business_id}});
        return ok_json(&state, Some(&a), serde_json::to_vec(&body).unwrap_or_default(), fault);
    }
    let mut jobs = state.meta.jobs.lock().unwrap_or_else(|e| e.into_inner());
    let Some(job) = jobs.get_mut(&node) else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            100,
            Some(33),
            "GraphMethodException",
            &format!("Unsupported get request. Object with ID '{node}' does not exist."),
        );
    };
    job.polls += 1;
    let needed = state.config.meta_job_polls.max(1);
    let (status, pct) = match job.fate {
        Some(FaultKind::JobFailed) if job.polls >= 2 => ("Job Failed", 0),
        Some(FaultKind::JobStall) => ("Job Running", 35),
        _ if job.polls >= needed => ("Job Completed", 100),
        _ if job.polls == 1 => ("Job Not Started", 0),
        _ => ("Job Running", (job.polls * 100 / needed).min(99)),
    };
    if status == "Job Failed" {
        state.meta.jobs_failed.fetch_add(1, Ordering::Relaxed);
    }
    let q = &job.query;
    let body = json!({"id": node, "account_id": state.meta.world.accounts[q.account].account_id, "async_status": status, "async_percent_completion": pct, "date_start": q.since.to_string(), "date_stop": q.until.to_string(), "time_ref": 1_764_000_000});
    let account = state.meta.world.accounts[q.account].clone();
    drop(jobs);
    ok_json(
        &state,
        Some(&account),
        serde_json::to_vec(&body).unwrap_or_default(),
        fault,
    )
}
