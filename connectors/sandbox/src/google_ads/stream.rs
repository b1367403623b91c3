//! `searchStream` answers: Google Ads' failure shape, the rate gate, rows
//! rendered as nested camelCase JSON, streamed in batches.

use super::*;

pub(super) fn ads_failure(
    status: StatusCode,
    state_name: &str,
    code: Value,
    message: &str,
    extra: Option<Value>,
) -> Response<Body> {
    let mut error = json!({"errorCode": code, "message": message});
    if let Some(extra) = extra {
        error["details"] = extra;
    }
    let body = json!({"error": {
        "code": status.as_u16(),
        "message": if status == StatusCode::BAD_REQUEST { "Request contains an invalid argument." } else { message },
        "status": state_name,
        "details": [{
            "@type": "type.googleapis.com/google.ads.googleads.v22.errors.GoogleAdsFailure",
            "errors": [error],
            "requestId": "sandbox-request"
        }]
    }});
    deliver(status, serde_json::to_vec(&body).unwrap_or_default(), None)
}

/// One row's values; fields not applicable to the row are absent.
pub(super) struct RowCtx<'a> {
    pub(super) customer: &'a Customer,
    pub(super) ad: Option<(usize, &'a AdsAd)>,
    pub(super) date: Option<NaiveDate>,
    pub(super) day: Option<&'a AdsDay>,
    pub(super) bucket: Option<usize>,
}

pub(super) enum V<'a> {
    Str(&'a str),
    Owned(String),
    /// int64: a JSON string, omitted when 0.
    Int(u64),
    /// double: a JSON number, omitted when 0.
    Num(f64),
    List(&'a str),
    /// bool: `true`, omitted when false (proto3 JSON).
    Bool(bool),
    None,
}

pub(super) fn value<'a>(world: &'a AdsWorld, field: &str, r: &RowCtx<'a>) -> V<'a> {
    let ad = r.ad.map(|(_, a)| a);
    let group = ad.map(|a| &world.ad_groups[a.ad_group]);
    let campaign = group.map(|g| &world.campaigns[g.campaign]);
    let day = r.day;
    let lag = |halves: bool| -> u64 {
        match (day, r.bucket) {
            (Some(d), Some(b)) => {
                if halves {
                    d.lag_halves[b]
                } else {
                    d.lag_cents[b]
                }
            }
            (Some(d), None) => {
                if halves {
                    d.conv_halves
                } else {
                    d.value_cents
                }
            }
            _ => 0,
        }
    };
    match field {
        "customer.id" => V::Str(&r.customer.id),
        "customer.descriptive_name" => V::Str(&r.customer.name),
        "customer.currency_code" => V::Str(r.customer.currency),
        "customer.time_zone" => V::Str(r.customer.time_zone),
        "conversion_action.id" => V::Int(r.customer.conversion_action.id.parse().unwrap_or(0)),
        "conversion_action.name" => V::Str(&r.customer.conversion_action.name),
        "conversion_action.status" => V::Str("ENABLED"),
        "conversion_action.include_in_conversions_metric" => V::Bool(true),
        "conversion_action.click_through_lookback_window_days" => {
            V::Int(r.customer.conversion_action.click_through_days)
        }
        "conversion_action.view_through_lookback_window_days" => V::Int(r.customer.conversion_action.view_through_days),
        "campaign.id" => campaign.map_or(V::None, |c| V::Str(&c.id)),
        "campaign.name" => campaign.map_or(V::None, |c| V::Str(&c.name)),
        "campaign.advertising_channel_type" => campaign.map_or(V::None, |c| V::Str(c.channel_type)),
        "ad_group.id" => group.map_or(V::None, |g| V::Str(&g.id)),
        "ad_group.name" => group.map_or(V::None, |g| V::Str(&g.name)),
        "ad_group_ad.ad.id" => ad.map_or(V::None, |a| V::Str(&a.id)),
        "ad_group_ad.ad.name" => ad.map_or(V::None, |a| V::Str(&a.name)),
        "ad_group_ad.ad.final_urls" => ad.map_or(V::None, |a| V::List(&a.final_url)),
        "segments.date" => r.date.map_or(V::None, |d| V::Owned(d.to_string())),
        "segments.conversion_lag_bucket" => r.bucket.map_or(V::None, |b| V::Str(LAG_BUCKETS[b].0)),
        "metrics.impressions" => V::Int(day.map_or(0, |d| d.impressions)),
        "metrics.clicks" => V::Int(day.map_or(0, |d| d.clicks)),
        "metrics.cost_micros" => V::Int(day.map_or(0, |d| d.cost_micros)),
        "metrics.video_views" | "metrics.video_trueview_views" => V::Int(day.map_or(0, |d| d.video_views)),
        "metrics.engagements" => V::Int(day.map_or(0, |d| d.engagements)),
        "metrics.view_through_conversions" => V::Int(day.map_or(0, |d| d.view_through)),
        "metrics.conversions" => V::Num(lag(true) as f64 / 2.0),
        "metrics.conversions_value" => V::Num(lag(false) as f64 / 100.0),
        "metrics.ctr" => V::Num(day.map_or(0.0, |d| d.clicks as f64 / d.impressions.max(1) as f64)),
        "metrics.average_cpc" => V::Num(day.map_or(0.0, |d| d.cost_micros as f64 / d.clicks.max(1) as f64)),
        _ => V::None,
    }
}

pub(super) fn write_str(out: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        // serde_json escapes exactly as JSON needs.
        out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
    }
}

/// The selected fields as a tree of camelCase keys, in first-seen order.
#[derive(Default)]
pub(super) struct Tree {
    pub(super) children: Vec<(String, Tree)>,
    pub(super) field: Option<&'static str>,
}

impl Tree {
    pub(super) fn insert(&mut self, path: &[String], field: &'static str) {
        match path.split_first() {
            None => self.field = Some(field),
            Some((head, rest)) => {
                let pos = match self.children.iter().position(|(k, _)| k == head) {
                    Some(p) => p,
                    None => {
                        self.children.push((head.clone(), Tree::default()));
                        self.children.len() - 1
                    }
                };
                self.children[pos].1.insert(rest, field);
            }
        }
    }

    /// Writes this object's members; returns whether any was written.
    pub(super) fn write(&self, out: &mut String, world: &AdsWorld, r: &RowCtx<'_>, top: bool) -> bool {
        let mut wrote = false;
        for (key, child) in &self.children {
            let mark = out.len();
            if wrote {
                out.push(',');
            }
            write_str(out, key);
            out.push(':');
            let ok = match child.field {
                Some(f) => match value(world, f, r) {
                    V::Str(s) if !s.is_empty() => {
                        write_str(out, s);
                        true
                    }
                    V::Owned(s) => {
                        write_str(out, &s);
                        true
                    }
                    V::Int(n) if n != 0 => {
                        let _ = write!(out, "\"{n}\"");
                        true
                    }
                    V::Num(x) if x != 0.0 => {
                        let _ = write!(out, "{x}");
                        true
                    }
                    V::List(s) => {
                        out.push('[');
                        write_str(out, s);
                        out.push(']');
                        true
                    }
                    V::Bool(true) => {
                        out.push_str("true");
                        true
                    }
                    _ => false,
                },
                None => {
                    out.push('{');
                    if top {
                        // Each resource names itself, as the API does.
                        if let Some(name) = resource_name(world, key, r) {
                            out.push_str("\"resourceName\":");
                            write_str(out, &name);
                            if !child.children.is_empty() {
                                out.push(',');
                            }
                        }
                    }
                    let inner = child.write(out, world, r, false);
                    if !inner && out.ends_with(',') {
                        out.pop();
                    }
                    out.push('}');
                    inner || (top && resource_name(world, key, r).is_some())
                }
            };
            if ok {
                wrote = true;
            } else {
                out.truncate(mark);
            }
        }
        wrote
    }
}

pub(super) fn resource_name(world: &AdsWorld, key: &str, r: &RowCtx<'_>) -> Option<String> {
    let c = &r.customer.id;
    let group = r.ad.map(|(_, a)| &world.ad_groups[a.ad_group]);
    Some(match key {
        "customer" => format!("customers/{c}"),
        "conversionAction" => format!("customers/{c}/conversionActions/{}", r.customer.conversion_action.id),
        "campaign" => format!("customers/{c}/campaigns/{}", world.campaigns[group?.campaign].id),
        "adGroup" => format!("customers/{c}/adGroups/{}", group?.id),
        "adGroupAd" => format!("customers/{c}/adGroupAds/{}~{}", group?.id, r.ad?.1.id),
        _ => return None,
    })
}

// The error is the response to send, returned once per request.
#[allow(clippy::result_large_err)]
pub(super) fn ads_gate(state: &AppState, headers: &HeaderMap) -> Result<Option<FaultKind>, Response<Body>> {
    let quota = |state: &AppState| {
        let delay = state.config.google_ads_retry_delay.as_secs();
        ads_failure(
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            json!({"quotaError": "RESOURCE_EXHAUSTED"}),
            &format!("Too many requests. Retry in {delay} seconds."),
            Some(
                json!({"quotaErrorDetails": {"rateScope": "DEVELOPER", "rateName": "Number of operations for basic access", "retryDelay": format!("{delay}s")}}),
            ),
        )
    };
    let fault = match state.admit() {
        Admission::OverBudget => return Err(quota(state)),
        Admission::Serve(f) => f,
    };
    match fault {
        Some(FaultKind::RateLimit) => return Err(quota(state)),
        Some(FaultKind::ServerError | FaultKind::Http500) => {
            return Err(ads_failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                json!({"internalError": "INTERNAL_ERROR"}),
                "An internal error has occurred.",
                None,
            ))
        }
        Some(FaultKind::Http503) => {
            return Err(ads_failure(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                json!({"internalError": "TRANSIENT_ERROR"}),
                "The service is currently unavailable.",
                None,
            ))
        }
        _ => {}
    }
    if headers.get("developer-token").and_then(|v| v.to_str().ok())
        != Some(state.config.google_developer_token.as_str())
    {
        return Err(ads_failure(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            json!({"authenticationError": "DEVELOPER_TOKEN_INVALID"}),
            "The developer token is not valid.",
            None,
        ));
    }
    if let Some(login) = headers.get("login-customer-id") {
        if !login
            .to_str()
            .is_ok_and(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(ads_failure(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                json!({"authenticationError": "LOGIN_CUSTOMER_ID_PARAMETER_INVALID"}),
                "login-customer-id must be a customer id without dashes.",
                None,
            ));
        }
    }
    Ok(fault)
}

pub(super) async fn search_stream(
    State(state): State<Shared>,
    Path((version, customer, method)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Response<Body> {
    if method != "googleAds:searchStream" || version.strip_prefix('v').is_none_or(|v| v.parse::<u32>().is_err()) {
        return deliver(
            StatusCode::NOT_FOUND,
            b"{\"error\":{\"code\":404,\"message\":\"Not Found\",\"status\":\"NOT_FOUND\"}}".to_vec(),
            None,
        );
    }
    let fault = match ads_gate(&state, &headers) {
        Ok(f) => f,
        Err(r) => return r,
    };
    if let Some(FaultKind::Slow) = fault {
        tokio::time::sleep(state.config.slow).await;
    }
    // A valid bearer token (shared with YouTube's APIs).
    if let Err(r) = crate::google::check_bearer(&state, &headers, fault) {
        return r;
    }
    let world = &state.ads;
    let Some(c) = world.customer_index(&customer) else {
        return ads_failure(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            json!({"authorizationError": "USER_PERMISSION_DENIED"}),
            &format!("User doesn't have permission to access customer {customer}."),
            None,
        );
    };
    let Some(query) = body.as_ref().and_then(|b| b.get("query")).and_then(Value::as_str) else {
        return ads_failure(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            json!({"requestError": "REQUIRED_FIELD_MISSING"}),
            "The query is missing.",
            None,
        );
    };
    let served = version.trim_start_matches('v').parse::<u32>().unwrap_or(0);
    let q = match parse_gaql(query).and_then(|q| version_check(served, &q).map(|()| q)) {
        Ok(q) => q,
        Err((code, message)) => {
            return ads_failure(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                json!({"queryError": code}),
                &message,
                None,
            )
        }
    };
    state
        .stats
        .report_requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut tree = Tree::default();
    let mut mask = Vec::new();
    for &i in &q.select {
        let path: Vec<String> = FIELDS[i].split('.').map(camel).collect();
        mask.push(path.join("."));
        tree.insert(&path, FIELDS[i]);
    }
    let mask = mask.join(",");
    let customer = &world.customers[c];
    let lag = q.select.iter().any(|i| FIELDS[*i] == "segments.conversion_lag_bucket");
    let by_date = q.select.iter().any(|i| FIELDS[*i] == "segments.date");
    let limit = q.limit.unwrap_or(usize::MAX);

    let mut out = String::from("[");
    let mut rows_in_batch = 0usize;
    let mut total = 0usize;
    let mut batches = 0usize;
    let open_batch = |out: &mut String, batches: &mut usize| {
        if *batches > 0 {
            out.push(',');
        }
        *batches += 1;
        out.push_str("{\"results\":[");
    };
    let close_batch = |out: &mut String, n: usize| {
        let _ = write!(out, "],\"fieldMask\":\"{mask}\",\"requestId\":\"sandbox-{n:08x}\"}}");
    };
    let mut emit = |out: &mut String, ctx: &RowCtx<'_>, rows_in_batch: &mut usize, total: &mut usize| {
        if *rows_in_batch == 0 {
            open_batch(out, &mut batches);
        } else {
            out.push(',');
        }
        out.push('{');
        tree.write(out, world, ctx, true);
        out.push('}');
        *rows_in_batch += 1;
        *total += 1;
        if *rows_in_batch == BATCH_ROWS {
            close_batch(out, *total);
            *rows_in_batch = 0;
        }
    };
    if q.from == "customer" || q.from == "conversion_action" {
        let ctx = RowCtx {
            customer,
            ad: None,
            date: None,
            day: None,
            bucket: None,
        };
        emit(&mut out, &ctx, &mut rows_in_batch, &mut total);
    } else {
        let dates: Vec<Option<NaiveDate>> = if by_date {
            world.dates(q.date_from, q.date_to).map(Some).collect()
        } else {
            vec![None]
        };
        'rows: for date in dates {
            for &a in &world.by_customer[c] {
                let ad = &world.ads[a];
                if let Some(types) = &q.channel_types {
                    if !types.iter().any(|t| t == world.campaign_of(a).channel_type) {
                        continue;
                    }
                }
                let day = match date {
                    Some(d) => world.ad_day(a, d),
                    // Without segments.date: the whole range summed.
                    None => {
                        let mut sum: Option<AdsDay> = None;
                        for d in world.dates(q.date_from, q.date_to) {
                            if let Some(x) = world.ad_day(a, d) {
                                let s = sum.get_or_insert_with(AdsDay::default);
                                s.impressions += x.impressions;
                                s.clicks += x.clicks;
                                s.cost_micros += x.cost_micros;
                                s.video_views += x.video_views;
                                s.engagements += x.engagements;
                                s.view_through += x.view_through;
                                s.conv_halves += x.conv_halves;
                                s.value_cents += x.value_cents;
                                for b in 0..LAG_BUCKETS.len() {
                                    s.lag_halves[b] += x.lag_halves[b];
                                    s.lag_cents[b] += x.lag_cents[b];
                                }
                            }
                        }
                        sum
                    }
                };
                let Some(day) = day else { continue };
                let buckets: Vec<Option<usize>> = if lag {
                    (0..LAG_BUCKETS.len())
                        .filter(|b| day.lag_halves[*b] > 0)
                        .map(Some)
                        .collect()
                } else {
                    vec![None]
                };
                for bucket in buckets {
                    if total >= limit {
                        break 'rows;
                    }
                    let ctx = RowCtx {
                        customer,
                        ad: Some((a, ad)),
                        date,
                        day: Some(&day),
                        bucket,
                    };
                    emit(&mut out, &ctx, &mut rows_in_batch, &mut total);
                }
            }
        }
    }
    if rows_in_batch > 0 {
        close_batch(&mut out, total);
    }
    if batches == 0 {
        // No rows: one batch without `results`.
        let _ = write!(out, "{{\"fieldMask\":\"{mask}\",\"requestId\":\"sandbox-empty\"}}");
    }
    out.push(']');
    deliver(StatusCode::OK, out.into_bytes(), fault)
}
