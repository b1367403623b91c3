//! GAQL as the sandbox serves it: the fields, the versions that renamed
//! them, a tokenizer and parser that refuse what Google Ads refuses.

use super::*;

/// The fields the sandbox serves, by GAQL name.
pub(super) const FIELDS: &[&str] = &[
    "customer.id",
    "customer.descriptive_name",
    "customer.currency_code",
    "customer.time_zone",
    "campaign.id",
    "campaign.name",
    "campaign.advertising_channel_type",
    "ad_group.id",
    "ad_group.name",
    "ad_group_ad.ad.id",
    "ad_group_ad.ad.name",
    "ad_group_ad.ad.final_urls",
    "segments.date",
    "segments.conversion_lag_bucket",
    "metrics.impressions",
    "metrics.clicks",
    "metrics.cost_micros",
    "metrics.video_views",
    "metrics.video_trueview_views",
    "metrics.engagements",
    "metrics.view_through_conversions",
    "metrics.conversions",
    "metrics.conversions_value",
    "metrics.ctr",
    "metrics.average_cpc",
    "conversion_action.id",
    "conversion_action.name",
    "conversion_action.status",
    "conversion_action.include_in_conversions_metric",
    "conversion_action.click_through_lookback_window_days",
    "conversion_action.view_through_lookback_window_days",
];
/// Fields a version no longer or not yet has, as (field, first version
/// without it) and (field, first version with it). From v22 Google replaced
/// `metrics.video_views` by `metrics.video_trueview_views` (Google Ads API
/// "Release notes", v22; the "Metrics" field reference of v22 and later lists
/// only the TrueView metric): the API answers the old name with UNRECOGNIZED_FIELD.
pub(super) const REMOVED_IN: &[(&str, u32)] = &[("metrics.video_views", 22)];
pub(super) const ADDED_IN: &[(&str, u32)] = &[("metrics.video_trueview_views", 22)];

/// The version check of a parsed query: a field this version does not have.
pub(super) fn version_check(version: u32, q: &Gaql) -> Result<(), QueryError> {
    for &i in &q.select {
        let f = FIELDS[i];
        let gone = REMOVED_IN.iter().any(|(name, v)| *name == f && version >= *v);
        let not_yet = ADDED_IN.iter().any(|(name, v)| *name == f && version < *v);
        if gone || not_yet {
            return Err((
                "UNRECOGNIZED_FIELD",
                format!("Error in query: unrecognized field in the query: '{f}'."),
            ));
        }
    }
    Ok(())
}

/// Metrics that `segments.conversion_lag_bucket` can split.
pub(super) const LAG_METRICS: &[&str] = &["metrics.conversions", "metrics.conversions_value"];

#[derive(Debug, Default)]
pub(super) struct Gaql {
    pub(super) select: Vec<usize>,
    pub(super) from: String,
    pub(super) date_from: Option<NaiveDate>,
    pub(super) date_to: Option<NaiveDate>,
    pub(super) channel_types: Option<Vec<String>>,
    pub(super) limit: Option<usize>,
}

/// A query error: (queryError enum, message).
pub(super) type QueryError = (&'static str, String);

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Word(String),
    Str(String),
    Sym(String),
}

pub(super) fn tokenize(q: &str) -> Result<Vec<Tok>, QueryError> {
    let mut out = Vec::new();
    let chars: Vec<char> = q.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' || c == '"' {
            let end = chars[i + 1..]
                .iter()
                .position(|x| *x == c)
                .ok_or(("UNEXPECTED_END_OF_QUERY", "A string literal is not closed.".to_string()))?;
            out.push(Tok::Str(chars[i + 1..i + 1 + end].iter().collect()));
            i += end + 2;
        } else if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '.') {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
        } else if matches!(c, '>' | '<' | '!') && chars.get(i + 1) == Some(&'=') {
            out.push(Tok::Sym(format!("{c}=")));
            i += 2;
        } else if matches!(c, ',' | '(' | ')' | '=' | '>' | '<') {
            out.push(Tok::Sym(c.to_string()));
            i += 1;
        } else {
            return Err(("UNEXPECTED_INPUT", format!("Error in query: unexpected input {c}.")));
        }
    }
    Ok(out)
}

pub(super) fn is_kw(t: Option<&Tok>, kw: &str) -> bool {
    matches!(t, Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
}

pub(super) fn field_index(name: &str) -> Result<usize, QueryError> {
    FIELDS.iter().position(|f| *f == name).ok_or((
        "UNRECOGNIZED_FIELD",
        format!("Error in query: unrecognized field in the query: '{name}'."),
    ))
}

pub(super) fn date_lit(t: Option<&Tok>) -> Result<NaiveDate, QueryError> {
    match t {
        Some(Tok::Str(s)) => NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
            (
                "INVALID_VALUE_WITH_DURING_OPERATOR",
                format!("Invalid date literal '{s}'."),
            )
        }),
        _ => Err(("EXPECTED_LITERAL", "Error in query: expected a date literal.".into())),
    }
}

pub(super) fn parse_gaql(q: &str) -> Result<Gaql, QueryError> {
    let toks = tokenize(q)?;
    let mut p = 0;
    let mut g = Gaql::default();
    if !is_kw(toks.first(), "SELECT") {
        return Err(("EXPECTED_SELECT", "Error in query: expected SELECT.".into()));
    }
    p += 1;
    loop {
        match toks.get(p) {
            Some(Tok::Word(w)) => g.select.push(field_index(w)?),
            _ => return Err(("EXPECTED_FIELD_NAME", "Error in query: expected a field name.".into())),
        }
        p += 1;
        if toks.get(p) == Some(&Tok::Sym(",".into())) {
            p += 1;
        } else {
            break;
        }
    }
    if !is_kw(toks.get(p), "FROM") {
        return Err(("EXPECTED_FROM", "Error in query: expected FROM.".into()));
    }
    g.from = match toks.get(p + 1) {
        Some(Tok::Word(w)) if w == "ad_group_ad" || w == "customer" || w == "conversion_action" => w.clone(),
        Some(Tok::Word(w)) => {
            return Err((
                "INVALID_RESOURCE_NAME",
                format!(
                    "Error in query: the sandbox serves FROM ad_group_ad, customer or conversion_action, not '{w}'."
                ),
            ))
        }
        _ => {
            return Err((
                "EXPECTED_FROM",
                "Error in query: expected a resource after FROM.".into(),
            ))
        }
    };
    p += 2;
    if is_kw(toks.get(p), "WHERE") {
        p += 1;
        loop {
            let Some(Tok::Word(field)) = toks.get(p) else {
                return Err((
                    "EXPECTED_FIELD_NAME",
                    "Error in query: expected a field in WHERE.".into(),
                ));
            };
            field_index(field)?;
            p += 1;
            match field.as_str() {
                "segments.date" => {
                    if is_kw(toks.get(p), "BETWEEN") {
                        g.date_from = Some(date_lit(toks.get(p + 1))?);
                        if !is_kw(toks.get(p + 2), "AND") {
                            return Err(("EXPECTED_AND", "Error in query: expected AND in BETWEEN.".into()));
                        }
                        g.date_to = Some(date_lit(toks.get(p + 3))?);
                        p += 4;
                    } else {
                        let op = match toks.get(p) {
                            Some(Tok::Sym(s)) => s.clone(),
                            _ => return Err(("EXPECTED_OPERATOR", "Error in query: expected an operator.".into())),
                        };
                        let d = date_lit(toks.get(p + 1))?;
                        match op.as_str() {
                            "=" => (g.date_from, g.date_to) = (Some(d), Some(d)),
                            ">=" => g.date_from = Some(d),
                            ">" => g.date_from = d.succ_opt(),
                            "<=" => g.date_to = Some(d),
                            "<" => g.date_to = d.pred_opt(),
                            _ => return Err(("INVALID_OPERATOR", format!("Invalid operator {op} for segments.date."))),
                        }
                        p += 2;
                    }
                }
                "campaign.advertising_channel_type" => {
                    let mut values = Vec::new();
                    if is_kw(toks.get(p), "IN") && toks.get(p + 1) == Some(&Tok::Sym("(".into())) {
                        p += 2;
                        while let Some(Tok::Str(s) | Tok::Word(s)) = toks.get(p) {
                            values.push(s.clone());
                            p += 1;
                            if toks.get(p) == Some(&Tok::Sym(",".into())) {
                                p += 1;
                            }
                        }
                        if toks.get(p) != Some(&Tok::Sym(")".into())) {
                            return Err(("EXPECTED_CLOSING_PARENTHESIS", "Error in query: expected ).".into()));
                        }
                        p += 1;
                    } else if toks.get(p) == Some(&Tok::Sym("=".into())) {
                        match toks.get(p + 1) {
                            Some(Tok::Str(s) | Tok::Word(s)) => values.push(s.clone()),
                            _ => return Err(("EXPECTED_LITERAL", "Error in query: expected a value.".into())),
                        }
                        p += 2;
                    } else {
                        return Err(("INVALID_OPERATOR", "Use = or IN with advertising_channel_type.".into()));
                    }
                    g.channel_types = Some(values);
                }
                other => {
                    return Err((
                        "PROHIBITED_FIELD_IN_WHERE_CLAUSE",
                        format!(
                            "The sandbox filters on segments.date and campaign.advertising_channel_type, not {other}."
                        ),
                    ))
                }
            }
            if is_kw(toks.get(p), "AND") {
                p += 1;
            } else {
                break;
            }
        }
    }
    if is_kw(toks.get(p), "ORDER") && is_kw(toks.get(p + 1), "BY") {
        p += 2;
        while let Some(Tok::Word(w)) = toks.get(p) {
            if is_kw(toks.get(p), "LIMIT") || is_kw(toks.get(p), "PARAMETERS") {
                break;
            }
            if !w.eq_ignore_ascii_case("ASC") && !w.eq_ignore_ascii_case("DESC") {
                field_index(w)?;
            }
            p += 1;
            if toks.get(p) == Some(&Tok::Sym(",".into())) {
                p += 1;
            }
        }
    }
    if is_kw(toks.get(p), "LIMIT") {
        g.limit = match toks.get(p + 1) {
            Some(Tok::Word(n)) => n.parse().ok(),
            _ => None,
        };
        if g.limit.is_none() {
            return Err(("INVALID_LIMIT", "Error in query: LIMIT takes a positive number.".into()));
        }
        p += 2;
    }
    if is_kw(toks.get(p), "PARAMETERS") {
        p = toks.len();
    }
    if p < toks.len() {
        return Err((
            "UNEXPECTED_INPUT",
            format!("Error in query: unexpected input {:?}.", toks[p]),
        ));
    }
    let names: Vec<&str> = g.select.iter().map(|i| FIELDS[*i]).collect();
    if g.from == "customer" || g.from == "conversion_action" {
        let prefix = format!("{}.", g.from);
        if let Some(f) = names.iter().find(|f| !f.starts_with(&prefix)) {
            return Err((
                "PROHIBITED_FIELD_IN_SELECT_CLAUSE",
                format!("The field '{f}' cannot be selected FROM {} in the sandbox.", g.from),
            ));
        }
    }
    if names.contains(&"segments.conversion_lag_bucket") {
        if let Some(m) = names
            .iter()
            .find(|f| f.starts_with("metrics.") && !LAG_METRICS.contains(f))
        {
            return Err((
                "PROHIBITED_SEGMENT_WITH_METRIC_IN_SELECT_OR_WHERE_CLAUSE",
                format!("The segment 'segments.conversion_lag_bucket' cannot be selected with the metric '{m}'."),
            ));
        }
    }
    if names.contains(&"segments.date") && (g.date_from.is_none() || g.date_to.is_none()) {
        return Err((
            "EXPECTED_FILTERS_ON_DATE_RANGE",
            "Error in query: segments.date in the SELECT clause needs a finite date range in the WHERE clause.".into(),
        ));
    }
    Ok(g)
}

pub(super) fn camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut up = false;
    for c in snake.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.push(c.to_ascii_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}
