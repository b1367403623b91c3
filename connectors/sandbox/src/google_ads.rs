//! Google Ads REST for a brand's YouTube ads, as documented:
//! `POST /v{N}/customers/{id}/googleAds:searchStream` with a GAQL query in
//! `{"query": …}` and the `developer-token`, `login-customer-id` and bearer
//! headers. The body is a JSON array of batches `[{results, fieldMask,
//! requestId}]` of at most 10,000 rows; fields are camelCase and nested by
//! resource; int64 values are strings, doubles are numbers, and values equal
//! to their default (0, "") are omitted, as proto3 JSON does. Errors carry a
//! `GoogleAdsFailure`: `RESOURCE_EXHAUSTED` (429, with
//! `quotaErrorDetails.retryDelay`), `UNAUTHENTICATED`, `INVALID_ARGUMENT`
//! (an unknown field, a segment a metric cannot be split by).
//!
//! The GAQL reader is minimal: the SELECT list, FROM `ad_group_ad` or
//! `customer`, WHERE conditions joined by AND on `segments.date` (BETWEEN,
//! comparisons) and `campaign.advertising_channel_type` (= or IN),
//! ORDER BY and LIMIT.

use crate::faults::FaultKind;
use crate::world::{apportion, World};
use crate::{deliver, Admission, AppState};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Response, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{Days, NaiveDate};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::sync::Arc;

type Shared = Arc<AppState>;

/// `segments.conversion_lag_bucket`: days from the click to the conversion,
/// as (enum, from day, to day).
pub const LAG_BUCKETS: &[(&str, u32, u32)] = &[
    ("LESS_THAN_ONE_DAY", 0, 1),
    ("ONE_TO_TWO_DAYS", 1, 2),
    ("TWO_TO_THREE_DAYS", 2, 3),
    ("THREE_TO_FOUR_DAYS", 3, 4),
    ("FOUR_TO_FIVE_DAYS", 4, 5),
    ("FIVE_TO_SIX_DAYS", 5, 6),
    ("SIX_TO_SEVEN_DAYS", 6, 7),
    ("SEVEN_TO_EIGHT_DAYS", 7, 8),
    ("EIGHT_TO_NINE_DAYS", 8, 9),
    ("NINE_TO_TEN_DAYS", 9, 10),
    ("TEN_TO_ELEVEN_DAYS", 10, 11),
    ("ELEVEN_TO_TWELVE_DAYS", 11, 12),
    ("TWELVE_TO_THIRTEEN_DAYS", 12, 13),
    ("THIRTEEN_TO_FOURTEEN_DAYS", 13, 14),
    ("FOURTEEN_TO_TWENTY_ONE_DAYS", 14, 21),
    ("TWENTY_ONE_TO_THIRTY_DAYS", 21, 30),
    ("THIRTY_TO_FORTY_FIVE_DAYS", 30, 45),
    ("FORTY_FIVE_TO_SIXTY_DAYS", 45, 60),
    ("SIXTY_TO_NINETY_DAYS", 60, 90),
];
/// Google's default conversion window: 30 days from the click.
const WINDOW_BUCKETS: usize = 16;
/// Relative share of conversions per lag bucket within 30 days.
const LAG_SHAPE: [u64; WINDOW_BUCKETS] = [500, 120, 70, 45, 35, 28, 22, 18, 15, 12, 10, 9, 8, 7, 30, 25];
/// Rows per searchStream batch.
pub const BATCH_ROWS: usize = 10_000;
const CHANNEL_TYPES: &[&str] = &["VIDEO", "VIDEO", "DEMAND_GEN", "SEARCH"];

#[derive(Debug, Clone)]
pub struct Customer {
    pub id: String,
    pub name: String,
    pub currency: &'static str,
    pub time_zone: &'static str,
    /// The customer's purchase conversion action and its lookback windows
    /// (`conversion_action.click_through_lookback_window_days` 1–90, default
    /// 30; `view_through_lookback_window_days` 1–30, default 1), as the Google
    /// Ads API reference page "ConversionAction" documents them.
    pub conversion_action: ConversionAction,
}

#[derive(Debug, Clone)]
pub struct ConversionAction {
    pub id: String,
    pub name: String,
    pub click_through_days: u64,
    pub view_through_days: u64,
}

#[derive(Debug, Clone)]
pub struct AdsCampaign {
    pub customer: usize,
    pub id: String,
    pub name: String,
    pub channel_type: &'static str,
}

#[derive(Debug, Clone)]
pub struct AdsAdGroup {
    pub campaign: usize,
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct AdsAd {
    pub ad_group: usize,
    pub id: String,
    pub name: String,
    pub final_url: String,
    /// The creator the ad promotes; `None` for the brand's own ads.
    pub creator: Option<usize>,
    pub active_from: u32,
    pub active_to: u32,
}

/// One ad's numbers on one day. Conversions are counted in halves and values
/// in cents so the doubles Google serves are exact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdsDay {
    pub impressions: u64,
    pub clicks: u64,
    pub cost_micros: u64,
    pub video_views: u64,
    pub engagements: u64,
    pub view_through: u64,
    pub conv_halves: u64,
    pub value_cents: u64,
    /// Per lag bucket; they sum to the totals above (all within 30 days).
    pub lag_halves: [u64; LAG_BUCKETS.len()],
    pub lag_cents: [u64; LAG_BUCKETS.len()],
}

pub struct AdsWorld {
    seed: u64,
    spread: bool,
    pub first_day: NaiveDate,
    pub days: u32,
    pub customers: Vec<Customer>,
    pub campaigns: Vec<AdsCampaign>,
    pub ad_groups: Vec<AdsAdGroup>,
    pub ads: Vec<AdsAd>,
    /// Ads of each customer, in id order.
    by_customer: Vec<Vec<usize>>,
}

/// The world's hash, salted so Google Ads draws differ from the other platforms'.
fn h(seed: u64, parts: &[u64]) -> u64 {
    crate::world::h(seed ^ 0x6761, parts)
}

/// Totals of a customer's video ads over a range, as the tests check them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdsTotals {
    pub rows: u64,
    pub impressions: u64,
    pub clicks: u64,
    pub cost_micros: u64,
    pub video_views: u64,
    pub conv_halves: u64,
    pub value_cents: u64,
    /// Conversions (halves) whose lag bucket ends within 7 days of the click.
    pub conv_halves_7d: u64,
    pub value_cents_7d: u64,
    /// View-through conversions (Google counts them in the action's view window).
    pub view_through: u64,
}

impl AdsWorld {
    pub fn new(world: &World) -> AdsWorld {
        let seed = world.config.seed;
        let customers: Vec<Customer> = (0..world.config.advertisers.max(1))
            .map(|i| {
                let (currency, time_zone) = if i % 2 == 0 {
                    ("USD", "America/New_York")
                } else {
                    ("EUR", "Europe/Berlin")
                };
                Customer {
                    id: (1_000_000_000 + h(seed, &[1, i as u64]) % 8_999_999_999).to_string(),
                    name: format!("Brand {} YouTube", (b'A' + (i % 26) as u8) as char),
                    currency,
                    time_zone,
                    // Google's defaults, except a second customer counting 90 days of clicks.
                    conversion_action: ConversionAction {
                        id: (6_000_000_000 + h(seed, &[10, i as u64]) % 999_999_999).to_string(),
                        name: "Purchase".into(),
                        click_through_days: if i % 2 == 1 { 90 } else { 30 },
                        view_through_days: 1,
                    },
                }
            })
            .collect();
        let mut campaigns = Vec::new();
        let mut ad_groups = Vec::new();
        for c in 0..customers.len() {
            for (k, channel_type) in CHANNEL_TYPES.iter().enumerate() {
                let id = 20_000_000_000 + h(seed, &[2, c as u64, k as u64]) % 9_000_000_000;
                campaigns.push(AdsCampaign {
                    customer: c,
                    id: id.to_string(),
                    name: format!("Creators {} {}", channel_type.to_lowercase(), k + 1),
                    channel_type,
                });
                for g in 0..2u64 {
                    ad_groups.push(AdsAdGroup {
                        campaign: campaigns.len() - 1,
                        id: (140_000_000_000 + h(seed, &[3, id, g]) % 9_000_000_000).to_string(),
                        name: format!("Creators {} group {}", k + 1, g + 1),
                    });
                }
            }
        }
        let mut ads = Vec::new();
        let days = world.config.days.max(1);
        for (ci, creator) in world.creators.iter().enumerate() {
            let n = 1 + (h(seed, &[4, ci as u64]) % world.config.ads_per_creator.max(1) as u64) as usize;
            for k in 0..n {
                let r = h(seed, &[5, ci as u64, k as u64]);
                let customer = (ci + k) % customers.len();
                let campaign = customer * CHANNEL_TYPES.len() + (r % CHANNEL_TYPES.len() as u64) as usize;
                let ad_group = campaign * 2 + ((r >> 8) % 2) as usize;
                // One ad in eleven is the brand's own: no creator in its link.
                let from_creator = r % 11 != 5;
                let handle = &creator.handle;
                let final_url = match (from_creator, (r >> 12) % 4) {
                    (false, _) => "https://shop.example.com/yt/brand?utm_source=youtube&utm_medium=paid".to_string(),
                    (true, 1) => format!(
                        "https://shop.example.com/yt/{k}?UTM_Source=YouTube&utm_medium=paid&utm_content={}#watch",
                        handle.replace('.', "%2E")
                    ),
                    (true, _) => format!(
                        "https://shop.example.com/yt/{k}?utm_source=youtube&utm_medium=paid&utm_campaign=creators&utm_content={handle}"
                    ),
                };
                let active_from = if r.is_multiple_of(5) {
                    ((r >> 20) % (days as u64 / 3 + 1)) as u32
                } else {
                    0
                };
                ads.push(AdsAd {
                    ad_group,
                    id: (600_000_000_000 + h(seed, &[6, ci as u64, k as u64]) % 99_000_000_000).to_string(),
                    name: format!("{handle} video #{}", k + 1),
                    final_url,
                    creator: from_creator.then_some(ci),
                    active_from,
                    active_to: days - 1,
                });
            }
        }
        let mut by_customer = vec![Vec::new(); customers.len()];
        for (i, ad) in ads.iter().enumerate() {
            by_customer[campaigns[ad_groups[ad.ad_group].campaign].customer].push(i);
        }
        for list in &mut by_customer {
            list.sort_by(|a, b| ads[*a].id.cmp(&ads[*b].id));
        }
        AdsWorld {
            seed,
            spread: world.config.spread,
            first_day: world.config.first_day,
            days,
            customers,
            campaigns,
            ad_groups,
            ads,
            by_customer,
        }
    }

    pub fn customer_index(&self, id: &str) -> Option<usize> {
        self.customers.iter().position(|c| c.id == id)
    }

    pub fn campaign_of(&self, ad: usize) -> &AdsCampaign {
        &self.campaigns[self.ad_groups[self.ads[ad].ad_group].campaign]
    }

    pub fn ad_day(&self, ad: usize, date: NaiveDate) -> Option<AdsDay> {
        let off = (date - self.first_day).num_days();
        let a = &self.ads[ad];
        if off < a.active_from as i64 || off > a.active_to as i64 {
            return None;
        }
        let r = h(self.seed, &[7, ad as u64, off as u64]);
        let impressions = 800 + r % 20_000;
        // Clicks average about 1.95 % of impressions, 3.5 × a typical YouTube benchmark.
        let (per_mille, converts) = match a.creator {
            Some(c) => crate::world::performer(self.seed, self.spread, c, 3, 3500),
            None => (1000, true),
        };
        let clicks = impressions * (5 + (r >> 16) % 30) * per_mille / 1_000_000;
        // About 1.5% of clicks convert, in whole and half conversions (data-driven
        // attribution splits some).
        let conv_halves = if converts {
            clicks * 2 * ((r >> 32) % 4) / 100
        } else {
            0
        };
        let value_cents = conv_halves * (1_000 + (r >> 48) % 6_000);
        // Each half conversion lands in a lag bucket drawn from LAG_SHAPE:
        // most the same day, fewer each day after, as Google's lag reports show.
        let total: u64 = LAG_SHAPE.iter().sum();
        let mut halves = vec![0u64; WINDOW_BUCKETS];
        for k in 0..conv_halves {
            let mut x = h(self.seed, &[8, ad as u64, off as u64, k]) % total;
            let b = LAG_SHAPE
                .iter()
                .position(|w| {
                    if x < *w {
                        true
                    } else {
                        x -= w;
                        false
                    }
                })
                .unwrap_or(0);
            halves[b] += 1;
        }
        let cents = apportion(value_cents, &halves);
        let mut day = AdsDay {
            impressions,
            clicks,
            cost_micros: clicks * (80_000 + (r >> 24) % 1_900_000) + (r >> 40) % 10_000,
            video_views: impressions * (10 + (r >> 8) % 40) / 100,
            engagements: impressions / 200,
            view_through: if converts { impressions / 4_000 } else { 0 },
            conv_halves,
            value_cents,
            ..AdsDay::default()
        };
        day.lag_halves[..WINDOW_BUCKETS].copy_from_slice(&halves);
        day.lag_cents[..WINDOW_BUCKETS].copy_from_slice(&cents);
        Some(day)
    }

    fn dates(&self, from: Option<NaiveDate>, to: Option<NaiveDate>) -> impl Iterator<Item = NaiveDate> {
        let last = self.first_day + Days::new(self.days as u64 - 1);
        let from = from.unwrap_or(self.first_day).max(self.first_day);
        let to = to.unwrap_or(last).min(last);
        from.iter_days().take_while(move |d| *d <= to)
    }

    /// The true totals of a customer's VIDEO and DEMAND_GEN ads over a range.
    pub fn totals(&self, customer: usize, start: NaiveDate, end: NaiveDate) -> AdsTotals {
        let mut t = AdsTotals::default();
        for date in self.dates(Some(start), Some(end)) {
            for &ad in &self.by_customer[customer] {
                if self.campaign_of(ad).channel_type == "SEARCH" {
                    continue;
                }
                if let Some(d) = self.ad_day(ad, date) {
                    t.rows += 1;
                    t.impressions += d.impressions;
                    t.clicks += d.clicks;
                    t.cost_micros += d.cost_micros;
                    t.video_views += d.video_views;
                    t.conv_halves += d.conv_halves;
                    t.value_cents += d.value_cents;
                    t.conv_halves_7d += d.lag_halves[..7].iter().sum::<u64>();
                    t.value_cents_7d += d.lag_cents[..7].iter().sum::<u64>();
                    t.view_through += d.view_through;
                }
            }
        }
        t
    }
}

// ---------------------------------------------------------------- GAQL

/// The fields the sandbox serves, by GAQL name.
const FIELDS: &[&str] = &[
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
const REMOVED_IN: &[(&str, u32)] = &[("metrics.video_views", 22)];
const ADDED_IN: &[(&str, u32)] = &[("metrics.video_trueview_views", 22)];

/// The version check of a parsed query: a field this version does not have.
fn version_check(version: u32, q: &Gaql) -> Result<(), QueryError> {
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
const LAG_METRICS: &[&str] = &["metrics.conversions", "metrics.conversions_value"];

#[derive(Debug, Default)]
struct Gaql {
    select: Vec<usize>,
    from: String,
    date_from: Option<NaiveDate>,
    date_to: Option<NaiveDate>,
    channel_types: Option<Vec<String>>,
    limit: Option<usize>,
}

/// A query error: (queryError enum, message).
type QueryError = (&'static str, String);

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Sym(String),
}

fn tokenize(q: &str) -> Result<Vec<Tok>, QueryError> {
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

fn is_kw(t: Option<&Tok>, kw: &str) -> bool {
    matches!(t, Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
}

fn field_index(name: &str) -> Result<usize, QueryError> {
    FIELDS.iter().position(|f| *f == name).ok_or((
        "UNRECOGNIZED_FIELD",
        format!("Error in query: unrecognized field in the query: '{name}'."),
    ))
}

fn date_lit(t: Option<&Tok>) -> Result<NaiveDate, QueryError> {
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

fn parse_gaql(q: &str) -> Result<Gaql, QueryError> {
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

fn camel(snake: &str) -> String {
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

// ---------------------------------------------------------------- responses

fn ads_failure(
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
struct RowCtx<'a> {
    customer: &'a Customer,
    ad: Option<(usize, &'a AdsAd)>,
    date: Option<NaiveDate>,
    day: Option<&'a AdsDay>,
    bucket: Option<usize>,
}

enum V<'a> {
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

fn value<'a>(world: &'a AdsWorld, field: &str, r: &RowCtx<'a>) -> V<'a> {
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

fn write_str(out: &mut String, s: &str) {
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
struct Tree {
    children: Vec<(String, Tree)>,
    field: Option<&'static str>,
}

impl Tree {
    fn insert(&mut self, path: &[String], field: &'static str) {
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
    fn write(&self, out: &mut String, world: &AdsWorld, r: &RowCtx<'_>, top: bool) -> bool {
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

fn resource_name(world: &AdsWorld, key: &str, r: &RowCtx<'_>) -> Option<String> {
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
fn ads_gate(state: &AppState, headers: &HeaderMap) -> Result<Option<FaultKind>, Response<Body>> {
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

async fn search_stream(
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

pub(crate) fn routes() -> Router<Shared> {
    Router::new().route("/{version}/customers/{customer}/{method}", post(search_stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaql_reads_select_from_where() {
        let q = parse_gaql(
            "SELECT campaign.id, metrics.cost_micros, segments.date FROM ad_group_ad \
             WHERE segments.date BETWEEN '2026-01-01' AND '2026-01-07' \
             AND campaign.advertising_channel_type IN ('VIDEO', 'DEMAND_GEN') ORDER BY segments.date",
        )
        .unwrap();
        assert_eq!(q.select.len(), 3);
        assert_eq!(q.date_from, NaiveDate::from_ymd_opt(2026, 1, 1));
        assert_eq!(q.date_to, NaiveDate::from_ymd_opt(2026, 1, 7));
        assert_eq!(q.channel_types.unwrap(), vec!["VIDEO", "DEMAND_GEN"]);
        assert_eq!(
            parse_gaql("SELECT metrics.nope FROM ad_group_ad").unwrap_err().0,
            "UNRECOGNIZED_FIELD"
        );
        assert_eq!(
            parse_gaql("SELECT segments.conversion_lag_bucket, metrics.clicks FROM ad_group_ad")
                .unwrap_err()
                .0,
            "PROHIBITED_SEGMENT_WITH_METRIC_IN_SELECT_OR_WHERE_CLAUSE"
        );
        assert_eq!(
            parse_gaql("SELECT segments.date, metrics.clicks FROM ad_group_ad")
                .unwrap_err()
                .0,
            "EXPECTED_FILTERS_ON_DATE_RANGE"
        );
    }

    #[test]
    fn video_views_are_refused_from_v22_on_and_trueview_views_before() {
        // Release notes of v22: metrics.video_views became metrics.video_trueview_views.
        let q = |field: &str| {
            parse_gaql(&format!(
                "SELECT {field} FROM ad_group_ad WHERE segments.date BETWEEN '2026-01-01' AND '2026-01-01'"
            ))
            .unwrap()
        };
        let old = q("metrics.video_views");
        let new = q("metrics.video_trueview_views");
        assert!(version_check(21, &old).is_ok());
        assert_eq!(version_check(24, &old).unwrap_err().0, "UNRECOGNIZED_FIELD");
        assert_eq!(version_check(21, &new).unwrap_err().0, "UNRECOGNIZED_FIELD");
        assert!(version_check(26, &new).is_ok());
    }

    #[test]
    fn lag_buckets_sum_to_the_total() {
        let world = World::new(crate::world::WorldConfig::default());
        let ads = AdsWorld::new(&world);
        let mut some = false;
        for a in 0..ads.ads.len().min(40) {
            if let Some(d) = ads.ad_day(a, ads.first_day) {
                assert_eq!(d.lag_halves.iter().sum::<u64>(), d.conv_halves);
                assert_eq!(d.lag_cents.iter().sum::<u64>(), d.value_cents);
                some |= d.conv_halves > 0;
            }
        }
        assert!(some);
    }
}
