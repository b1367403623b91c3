//! Insights requests: parameters parsed and refused as Meta does, rows
//! selected from the world, rendered as Meta's JSON, cursor pages.
// Handlers return ready HTTP error responses as `Err`: boxing them buys nothing here.
#![allow(clippy::result_large_err)]

use super::*;

/// A parsed insights request.
#[derive(Clone, Debug)]
pub(super) struct InsightsQuery {
    pub(super) account: usize,
    pub(super) since: NaiveDate,
    pub(super) until: NaiveDate,
    pub(super) fields: Vec<String>,
    pub(super) windows: Vec<usize>,
    pub(super) by_platform: bool,
    pub(super) campaigns: Option<Vec<String>>,
    pub(super) adsets: Option<Vec<String>>,
    pub(super) ads: Option<Vec<String>>,
}

pub(super) const FIELDS: &[&str] = &[
    "account_id",
    "account_name",
    "campaign_id",
    "campaign_name",
    "adset_id",
    "adset_name",
    "ad_id",
    "ad_name",
    "impressions",
    "clicks",
    "inline_link_clicks",
    "spend",
    "reach",
    "frequency",
    "cpm",
    "ctr",
    "cpc",
    "actions",
    "action_values",
    "date_start",
    "date_stop",
];

pub(super) fn bad_param(msg: &str) -> Response<Body> {
    graph_error(
        StatusCode::BAD_REQUEST,
        100,
        None,
        "OAuthException",
        &format!("(#100) {msg}"),
    )
}

pub(super) fn parse_query(account: usize, params: &Params) -> Result<InsightsQuery, Response<Body>> {
    if params.get("level").map(String::as_str).unwrap_or("ad") != "ad" {
        return Err(bad_param("The sandbox serves level=ad"));
    }
    if params.get("time_increment").map(String::as_str).unwrap_or("1") != "1" {
        return Err(bad_param("The sandbox serves time_increment=1"));
    }
    let range: Value = params
        .get("time_range")
        .and_then(|r| serde_json::from_str(r).ok())
        .ok_or_else(|| {
            bad_param("time_range must be a JSON object {\"since\":\"YYYY-MM-DD\",\"until\":\"YYYY-MM-DD\"}")
        })?;
    let date = |k: &str| {
        range[k]
            .as_str()
            .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
    };
    let (Some(since), Some(until)) = (date("since"), date("until")) else {
        return Err(bad_param("time_range needs since and until as YYYY-MM-DD"));
    };
    if until < since {
        return Err(bad_param("time_range: since must be on or before until"));
    }
    let fields: Vec<String> = params
        .get("fields")
        .map(|f| {
            f.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_else(|| vec!["impressions".into(), "spend".into()]);
    if let Some(bad) = fields.iter().find(|f| !FIELDS.contains(&f.as_str())) {
        return Err(bad_param(&format!("{bad} is not valid for fields param.")));
    }
    let windows_raw: Vec<String> = params
        .get("action_attribution_windows")
        .map(|w| {
            serde_json::from_str::<Vec<String>>(w).unwrap_or_else(|_| {
                w.split(',')
                    .map(|s| s.trim().trim_matches(['[', ']', '"']).to_string())
                    .collect()
            })
        })
        .unwrap_or_default();
    // 7d_view and 28d_view are no longer served: silently absent, as on Meta.
    let windows = windows_raw
        .iter()
        .filter_map(|w| WINDOWS.iter().position(|x| x == w))
        .collect();
    let by_platform = match params.get("breakdowns").map(String::as_str) {
        None | Some("") | Some("[]") => false,
        Some(b) if b.contains("publisher_platform") => true,
        Some(b) => return Err(bad_param(&format!("breakdowns {b} is not served by the sandbox"))),
    };
    let mut q = InsightsQuery {
        account,
        since,
        until,
        fields,
        windows,
        by_platform,
        campaigns: None,
        adsets: None,
        ads: None,
    };
    if let Some(f) = params.get("filtering") {
        let filters: Vec<Value> = serde_json::from_str(f).map_err(|_| bad_param("filtering must be a JSON array"))?;
        for filter in filters {
            let values: Vec<String> = filter["value"]
                .as_array()
                .map(|v| v.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            match (filter["field"].as_str(), filter["operator"].as_str()) {
                (Some("campaign.id"), Some("IN")) => q.campaigns = Some(values),
                (Some("adset.id"), Some("IN")) => q.adsets = Some(values),
                (Some("ad.id"), Some("IN")) => q.ads = Some(values),
                _ => {
                    return Err(bad_param(
                        "filtering: the sandbox serves campaign.id, adset.id and ad.id with IN",
                    ))
                }
            }
        }
    }
    Ok(q)
}

/// The rows a query selects, in served order: (date, ad, platform or None, numbers).
pub(super) fn select(world: &MetaWorld, q: &InsightsQuery) -> Rows {
    let keep = |ad: &MetaAd| {
        q.campaigns.as_ref().is_none_or(|c| c.contains(&ad.campaign_id))
            && q.adsets.as_ref().is_none_or(|c| c.contains(&ad.adset_id))
            && q.ads.as_ref().is_none_or(|c| c.contains(&ad.ad_id))
    };
    let mut out = Vec::new();
    for date in q.since.iter_days().take_while(|d| *d <= q.until) {
        for (i, ad) in world.ads.iter().enumerate() {
            if ad.account != q.account || !keep(ad) {
                continue;
            }
            let rows: Vec<(usize, MetaRow)> = (0..PLATFORMS.len())
                .filter_map(|p| world.row(i, date, p).map(|r| (p, r)))
                .collect();
            if q.by_platform {
                out.extend(rows.into_iter().map(|(p, r)| (date, i, Some(p), r)));
            } else if !rows.is_empty() {
                let mut sum = MetaRow::default();
                for (_, r) in &rows {
                    sum.impressions += r.impressions;
                    sum.clicks += r.clicks;
                    sum.inline_link_clicks += r.inline_link_clicks;
                    sum.spend_cents += r.spend_cents;
                    sum.reach += r.reach;
                    sum.landing_page_views += r.landing_page_views;
                    sum.post_engagement += r.post_engagement;
                    for w in 0..4 {
                        sum.purchases[w] += r.purchases[w];
                    }
                    sum.order_value_cents = r.order_value_cents;
                }
                out.push((date, i, None, sum));
            }
        }
    }
    out
}

pub(super) fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

pub(super) fn ratio(num: u64, den: u64, scale: u64) -> String {
    if den == 0 {
        return "0".into();
    }
    format!("{:.6}", num as f64 * scale as f64 / den as f64)
}

pub(super) fn separate(out: &mut String, first: &mut bool) {
    if !*first {
        out.push(',');
    }
    *first = false;
}

pub(super) fn put(out: &mut String, first: &mut bool, k: &str, v: &str) {
    separate(out, first);
    out.push('"');
    out.push_str(k);
    out.push_str("\":\"");
    push_escaped(out, v);
    out.push('"');
}

/// A JSON string's content, escaped (quotes, backslashes, control characters).
pub(super) fn push_escaped(out: &mut String, v: &str) {
    if !v.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// A count, or money (cents → "12.34"), written straight into the page.
pub(super) fn push_number(out: &mut String, n: u64, money: bool) {
    if money {
        let _ = write!(out, "{}.{:02}", n / 100, n % 100);
    } else {
        let _ = write!(out, "{n}");
    }
}

pub(super) fn render_row(
    out: &mut String,
    world: &MetaWorld,
    q: &InsightsQuery,
    (date, ad_i, platform, r): &(NaiveDate, usize, Option<usize>, MetaRow),
) {
    let ad = &world.ads[*ad_i];
    let acct = &world.accounts[ad.account];
    let mut first = true;
    out.push('{');
    for f in &q.fields {
        match f.as_str() {
            "account_id" => put(out, &mut first, f, &acct.account_id),
            "account_name" => put(out, &mut first, f, &acct.name),
            "campaign_id" => put(out, &mut first, f, &ad.campaign_id),
            "campaign_name" => put(out, &mut first, f, &ad.campaign_name),
            "adset_id" => put(out, &mut first, f, &ad.adset_id),
            "adset_name" => put(out, &mut first, f, &ad.adset_name),
            "ad_id" => put(out, &mut first, f, &ad.ad_id),
            "ad_name" => put(out, &mut first, f, &ad.name),
            "impressions" => put(out, &mut first, f, &r.impressions.to_string()),
            "clicks" => put(out, &mut first, f, &r.clicks.to_string()),
            "inline_link_clicks" => put(out, &mut first, f, &r.inline_link_clicks.to_string()),
            "spend" => put(out, &mut first, f, &money(r.spend_cents)),
            "reach" => put(out, &mut first, f, &r.reach.to_string()),
            "frequency" => put(out, &mut first, f, &ratio(r.impressions, r.reach, 1)),
            "cpm" => put(out, &mut first, f, &ratio(r.spend_cents * 10, r.impressions, 1)),
            "ctr" => put(out, &mut first, f, &ratio(r.clicks * 100, r.impressions, 1)),
            "cpc" => put(out, &mut first, f, &ratio(r.spend_cents, r.clicks * 100, 1)),
            "actions" | "action_values" => {
                separate(out, &mut first);
                let _ = write!(out, "\"{f}\":");
                render_actions(out, q, r, f == "action_values");
            }
            _ => {}
        }
    }
    put(out, &mut first, "date_start", &date.to_string());
    put(out, &mut first, "date_stop", &date.to_string());
    if let Some(p) = platform {
        put(out, &mut first, "publisher_platform", PLATFORMS[*p]);
    }
    out.push('}');
}

pub(super) fn render_actions(out: &mut String, q: &InsightsQuery, r: &MetaRow, values: bool) {
    out.push('[');
    let scale = if values { r.order_value_cents } else { 1 };
    let mut first = true;
    let mut item = |out: &mut String, action: &str, default: u64, windows: [Option<u64>; 4]| {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str("{\"action_type\":\"");
        out.push_str(action);
        out.push_str("\",\"value\":\"");
        push_number(out, default * scale, values);
        out.push('"');
        for w in &q.windows {
            if let Some(v) = windows[*w] {
                out.push_str(",\"");
                out.push_str(WINDOWS[*w]);
                out.push_str("\":\"");
                push_number(out, v * scale, values);
                out.push('"');
            }
        }
        out.push('}');
    };
    if !values {
        let click = [
            Some(r.inline_link_clicks),
            Some(r.inline_link_clicks),
            Some(r.inline_link_clicks),
            None,
        ];
        item(out, "link_click", r.inline_link_clicks, click);
        item(
            out,
            "landing_page_view",
            r.landing_page_views,
            [Some(r.landing_page_views); 4],
        );
        item(out, "post_engagement", r.post_engagement, [Some(r.post_engagement); 4]);
    }
    if r.has_purchases() {
        // Meta leaves a window's key out when its value is zero.
        let windows: [Option<u64>; 4] = std::array::from_fn(|w| (r.purchases[w] > 0).then_some(r.purchases[w]));
        // The same purchases under three overlapping names: never to be summed.
        for action in PURCHASE_TYPES {
            item(out, action, r.default_purchases(), windows);
        }
    }
    out.push(']');
}

pub(super) fn cursor(offset: usize) -> String {
    format!("MTAx{:x}", offset ^ 0x5a5a)
}

pub(super) fn offset_of(c: &str) -> Option<usize> {
    c.strip_prefix("MTAx")
        .and_then(|h| usize::from_str_radix(h, 16).ok())
        .map(|o| o ^ 0x5a5a)
}

/// One page of a query's rows, with `paging.next` as an absolute URL carrying the token.
pub(super) fn page(
    state: &AppState,
    headers: &HeaderMap,
    path: &str,
    params: &Params,
    rows: &[(NaiveDate, usize, Option<usize>, MetaRow)],
    q: &InsightsQuery,
) -> Result<Vec<u8>, Response<Body>> {
    let limit: usize = params
        .get("limit")
        .map_or(Ok(25), |l| l.parse())
        .map_err(|_| bad_param("limit must be an integer"))?;
    let limit = limit.clamp(1, 5000);
    let start = match params.get("after") {
        None => 0,
        Some(a) => offset_of(a).ok_or_else(|| bad_param("Invalid cursor"))?,
    };
    let end = (start + limit).min(rows.len());
    let mut out = String::with_capacity((end - start) * 900 + 256);
    out.push_str("{\"data\":[");
    for (i, row) in rows[start.min(rows.len())..end].iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        render_row(&mut out, &state.meta.world, q, row);
    }
    out.push(']');
    if start < end {
        let _ = write!(
            out,
            ",\"paging\":{{\"cursors\":{{\"before\":\"{}\",\"after\":\"{}\"}}",
            cursor(start),
            cursor(end - 1 + 1)
        );
        if end < rows.len() {
            let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
            let mut next = url_with(&format!("http://{host}{path}"), params, "after", &cursor(end));
            if !params.contains_key("access_token") {
                next.push_str(&format!("&access_token={}", state.config.meta_token));
            }
            let _ = write!(out, ",\"next\":{}", serde_json::to_string(&next).unwrap_or_default());
        }
        out.push('}');
    }
    out.push('}');
    Ok(out.into_bytes())
}

pub(super) fn url_with(base: &str, params: &Params, key: &str, value: &str) -> String {
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| k.as_str() != key)
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.sort();
    pairs.push((key, value));
    let q: String = url_encode(&pairs);
    format!("{base}?{q}")
}

pub(super) fn url_encode(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}
