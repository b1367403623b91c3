//! A brand's GA4 BigQuery export consistent with the sandbox's world: users
//! click creators' links (sessions carrying the creators' UTMs, as
//! `crest links issue` writes them: source = creator id, medium = platform),
//! come back directly or through another creator's link, buy days later,
//! some purchases logged twice — each user one of a few journeys whose true
//! credit under every model is known here, by hand, so tests assert exact
//! credit.
//!
//! Rows are the export's JSON (`events_YYYYMMDD`, nested `event_params`,
//! `collected_traffic_source`, `ecommerce`), as BigQuery's JSON export writes
//! them, field for field as Google documents the schema ("[GA4] BigQuery
//! Export schema", support.google.com/analytics/answer/7029846: `event_date`
//! a YYYYMMDD string, `event_timestamp` µs, `event_params.value.*_value`,
//! `ecommerce.purchase_revenue` FLOAT64; daily `events_` and streaming
//! `events_intraday_` tables, answer/9358801); nothing here is looser than it; [`bigquery_schema`] is the tables' schema for loading them into an
//! emulator.

use crate::world::{mix, World};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub const SHOP: &str = "https://shop.example.com/spring";
/// Sessions from this partner carry UTMs that name no creator.
pub const PARTNER: &str = "partner_blog";
const PLATFORMS: [&str; 3] = ["tiktok", "meta", "youtube"];
pub const MODELS: [&str; 5] = ["first", "last", "linear", "position", "time_decay"];

pub struct Ga4Config {
    pub property_id: String,
    pub users: usize,
    /// The lookback the truth is computed for (`crest attribute --lookback-days`).
    pub lookback_days: i64,
    /// Time decay's half-life in days.
    pub half_life_days: f64,
}

impl Default for Ga4Config {
    fn default() -> Self {
        Ga4Config {
            property_id: "271828182".into(),
            users: 400,
            lookback_days: 7,
            half_life_days: 7.0,
        }
    }
}

/// (conversion date, creator id, platform, model)
pub type TruthKey = (NaiveDate, Option<String>, Option<String>, &'static str);

pub struct Ga4Export {
    pub property_id: String,
    /// Export rows per day (`events_YYYYMMDD`).
    pub days: BTreeMap<NaiveDate, Vec<Value>>,
    /// The credit each creator × platform is due per conversion date and
    /// model: conversions and revenue. `creator None, platform Some`: UTMs of
    /// no creator; both `None`: conversions with no non-direct session.
    pub truth: BTreeMap<TruthKey, (Decimal, Decimal)>,
    /// Distinct purchases (a transaction logged twice counts once).
    pub purchases: u64,
    pub duplicate_logs: u64,
    /// Purchases with no non-direct session in the lookback.
    pub unattributed: u64,
    pub revenue: Decimal,
}

struct Touch {
    at: DateTime<Utc>,
    /// (creator id or `None` for the partner, platform); `None`: direct.
    who: Option<(Option<String>, String)>,
}

/// The export for the world's creators over its days: conversions from day
/// `lookback + 3` on, so every journey's sessions fall inside the world.
pub fn export(world: &World, config: &Ga4Config) -> Ga4Export {
    let mut out = Ga4Export {
        property_id: config.property_id.clone(),
        days: BTreeMap::new(),
        truth: BTreeMap::new(),
        purchases: 0,
        duplicate_logs: 0,
        unattributed: 0,
        revenue: Decimal::ZERO,
    };
    // Every day has visitors who come directly and buy nothing: the export
    // has a table for each day, as a live site's does.
    for d in 0..world.config.days {
        let day = world.date(d);
        for v in 0..3u32 {
            let touch = Touch {
                at: day.and_hms_opt(8 + v, 30, 0).expect("morning").and_utc(),
                who: None,
            };
            let user = format!("{}.{}", 900_000_000 + d * 10 + v, 1_600_000_000 + d);
            out.push(
                touch.at,
                session_start(&user, touch.at.timestamp(), &touch, &config.property_id, false),
            );
        }
    }
    let n = world.creators.len().max(3);
    let first_conversion_day = config.lookback_days + 3;
    let span = (world.config.days as i64 - first_conversion_day).max(1);
    for u in 0..config.users {
        let r = mix(world.config.seed ^ ((u as u64 + 1) * 0x9e37_79b9));
        let day = world.config.first_day + Duration::days(first_conversion_day + (u as i64 % span));
        let t = day.and_hms_opt(12, 0, 0).expect("noon").and_utc() + Duration::minutes((r % 600) as i64);
        let creator = |k: usize| {
            let i = (u * 7 + k) % n;
            (Some(world.creators[i].creator_id.clone()), PLATFORMS[i % 3].to_string())
        };
        let (a, b, c) = (creator(0), creator(1), creator(2));
        let partner = (None, "referral".to_string());
        let at = |d: Duration| t - d;
        let mins = Duration::minutes;
        let days = Duration::days;
        // (touches, purchases logged: 0, 1, or 2 = the same transaction twice)
        let (touches, logged) = match u % 8 {
            // A single touch.
            0 => (
                vec![Touch {
                    at: at(mins(10)),
                    who: Some(a),
                }],
                1,
            ),
            // Two creators, then a purchase three days after the first.
            1 => (
                vec![
                    Touch {
                        at: at(days(3) + mins(10)),
                        who: Some(a),
                    },
                    Touch {
                        at: at(mins(10)),
                        who: Some(b),
                    },
                ],
                1,
            ),
            // A direct revisit between the touch and the purchase.
            2 => (
                vec![
                    Touch {
                        at: at(days(2)),
                        who: Some(a),
                    },
                    Touch {
                        at: at(mins(10)),
                        who: None,
                    },
                ],
                1,
            ),
            // A touch outside the lookback, one inside.
            3 => (
                vec![
                    Touch {
                        at: at(days(config.lookback_days + 2)),
                        who: Some(a),
                    },
                    Touch {
                        at: at(days(1)),
                        who: Some(b),
                    },
                ],
                1,
            ),
            // A purchase GA4 logged twice.
            4 => (
                vec![Touch {
                    at: at(mins(10)),
                    who: Some(a),
                }],
                2,
            ),
            // No touch at all: direct only.
            5 => (
                vec![Touch {
                    at: at(mins(10)),
                    who: None,
                }],
                1,
            ),
            // Four touches, one through a partner's link that names no creator.
            6 => (
                vec![
                    Touch {
                        at: at(days(6)),
                        who: Some(a),
                    },
                    Touch {
                        at: at(days(4)),
                        who: Some(partner),
                    },
                    Touch {
                        at: at(days(2)),
                        who: Some(b),
                    },
                    Touch {
                        at: at(mins(10)),
                        who: Some(c),
                    },
                ],
                1,
            ),
            // Browsed after a creator's link, bought nothing.
            _ => (
                vec![Touch {
                    at: at(days(1)),
                    who: Some(a),
                }],
                0,
            ),
        };
        let user = format!("{}.{}", 1_000_000_000 + (r % 1_000_000_000), 1_700_000_000 + u);
        // Half the users' sessions carry GA4's collected campaign; the other
        // half only the landing page (older exports, or consent modes).
        let collected = u % 2 == 0;
        for (s, touch) in touches.iter().enumerate() {
            let session_id = touch.at.timestamp() + s as i64;
            out.push(
                touch.at,
                session_start(&user, session_id, touch, &config.property_id, collected),
            );
            out.push(touch.at + Duration::seconds(1), page_view(&user, session_id, touch));
        }
        if logged == 0 {
            continue;
        }
        let revenue = Decimal::new(((u % 5) as i64 + 1) * 1000 + 99, 2);
        let transaction = format!("T{:06}", u);
        let last_session = touches.iter().map(|t| t.at.timestamp()).max().unwrap_or(0) + touches.len() as i64 - 1;
        for k in 0..logged {
            let when = t + Duration::minutes(2 * k as i64);
            out.push(when, purchase(&user, last_session, when, &transaction, revenue));
        }
        out.duplicate_logs += logged as u64 - 1;
        out.purchases += 1;
        out.revenue += revenue;
        // The truth, by hand, from the journey's shape.
        let window: Vec<&Touch> = touches
            .iter()
            .filter(|x| x.who.is_some() && x.at >= t - days(config.lookback_days) && x.at <= t)
            .collect();
        if window.is_empty() {
            out.unattributed += 1;
            for m in MODELS {
                out.credit(day, &(None, String::new()), m, Decimal::ONE, revenue, true);
            }
            continue;
        }
        let k = window.len();
        let whose = |i: usize| window[i].who.clone().expect("non-direct");
        let dec = |s: &str| s.parse::<Decimal>().expect("decimal");
        for m in MODELS {
            let shares: Vec<Decimal> = match (m, k) {
                (_, 1) => vec![Decimal::ONE],
                ("first", _) => (0..k)
                    .map(|i| if i == 0 { Decimal::ONE } else { Decimal::ZERO })
                    .collect(),
                ("last", _) => (0..k)
                    .map(|i| if i == k - 1 { Decimal::ONE } else { Decimal::ZERO })
                    .collect(),
                ("linear", 2) | ("position", 2) => vec![dec("0.5"), dec("0.5")],
                ("linear", 4) => vec![dec("0.25"); 4],
                ("position", 4) => vec![dec("0.4"), dec("0.1"), dec("0.1"), dec("0.4")],
                ("time_decay", _) => {
                    let w: Vec<f64> = window
                        .iter()
                        .map(|x| 0.5f64.powf((t - x.at).num_seconds() as f64 / (config.half_life_days * 86_400.0)))
                        .collect();
                    let sum: f64 = w.iter().sum();
                    w.iter()
                        .map(|x| Decimal::from_f64_retain(x / sum).unwrap_or_default().round_dp(9))
                        .collect()
                }
                _ => unreachable!("journeys have 1, 2 or 4 touches"),
            };
            for (i, share) in shares.into_iter().enumerate() {
                if !share.is_zero() {
                    out.credit(day, &whose(i), m, share, share * revenue, false);
                }
            }
        }
    }
    out
}

impl Ga4Export {
    fn push(&mut self, at: DateTime<Utc>, row: Value) {
        self.days.entry(at.date_naive()).or_default().push(row);
    }

    fn credit(
        &mut self,
        day: NaiveDate,
        who: &(Option<String>, String),
        model: &'static str,
        share: Decimal,
        revenue: Decimal,
        no_touch: bool,
    ) {
        let platform = (!no_touch).then(|| who.1.clone());
        let e = self.truth.entry((day, who.0.clone(), platform, model)).or_default();
        e.0 += share;
        e.1 += revenue;
    }

    /// A day's rows as newline-delimited JSON (BigQuery's JSON export).
    pub fn ndjson(&self, day: NaiveDate) -> String {
        let mut s = String::new();
        for row in self.days.get(&day).into_iter().flatten() {
            s.push_str(&row.to_string());
            s.push('\n');
        }
        s
    }
}

fn param_s(key: &str, v: &str) -> Value {
    json!({"key": key, "value": {"string_value": v, "int_value": null, "float_value": null, "double_value": null}})
}

fn param_i(key: &str, v: i64) -> Value {
    json!({"key": key, "value": {"string_value": null, "int_value": v, "float_value": null, "double_value": null}})
}

fn landing(touch: &Touch) -> String {
    match &touch.who {
        None => SHOP.to_string(),
        Some((Some(creator), platform)) => {
            format!("{SHOP}?utm_source={creator}&utm_medium={platform}&utm_campaign=spring26")
        }
        Some((None, medium)) => format!("{SHOP}?utm_source={PARTNER}&utm_medium={medium}&utm_campaign=spring26"),
    }
}

fn base(name: &str, user: &str, at: DateTime<Utc>, params: Vec<Value>) -> Value {
    json!({
        "event_date": at.format("%Y%m%d").to_string(),
        "event_timestamp": at.timestamp_micros(),
        "event_name": name,
        "event_params": params,
        "user_id": null,
        "user_pseudo_id": user,
        "collected_traffic_source": null,
        "ecommerce": null,
    })
}

fn session_start(user: &str, session: i64, touch: &Touch, _property: &str, collected: bool) -> Value {
    let mut row = base(
        "session_start",
        user,
        touch.at,
        vec![
            param_i("ga_session_id", session),
            param_s("page_location", &landing(touch)),
        ],
    );
    if let (true, Some((creator, medium))) = (collected, &touch.who) {
        row["collected_traffic_source"] = json!({
            "manual_source": creator.clone().unwrap_or_else(|| PARTNER.to_string()),
            "manual_medium": medium,
            "manual_campaign_name": "spring26",
            "manual_content": null,
            "manual_term": null,
        });
    }
    row
}

fn page_view(user: &str, session: i64, touch: &Touch) -> Value {
    base(
        "page_view",
        user,
        touch.at + Duration::seconds(1),
        vec![
            param_i("ga_session_id", session),
            param_s("page_location", &landing(touch)),
        ],
    )
}

fn purchase(user: &str, session: i64, at: DateTime<Utc>, transaction: &str, revenue: Decimal) -> Value {
    let mut row = base(
        "purchase",
        user,
        at,
        vec![
            param_i("ga_session_id", session),
            param_s("currency", "USD"),
            param_s("page_location", &format!("{SHOP}/checkout")),
        ],
    );
    row["ecommerce"] = json!({
        "transaction_id": transaction,
        "purchase_revenue": revenue.to_string().parse::<f64>().unwrap_or_default(),
    });
    row
}

/// The export tables' schema (the part crest reads, nested as GA4 writes it),
/// for `tables.insert`.
pub fn bigquery_schema() -> Value {
    let s = |name: &str| json!({"name": name, "type": "STRING", "mode": "NULLABLE"});
    json!({"fields": [
        s("event_date"),
        {"name": "event_timestamp", "type": "INTEGER", "mode": "NULLABLE"},
        s("event_name"),
        {"name": "event_params", "type": "RECORD", "mode": "REPEATED", "fields": [
            s("key"),
            {"name": "value", "type": "RECORD", "mode": "NULLABLE", "fields": [
                s("string_value"),
                {"name": "int_value", "type": "INTEGER", "mode": "NULLABLE"},
                {"name": "float_value", "type": "FLOAT", "mode": "NULLABLE"},
                {"name": "double_value", "type": "FLOAT", "mode": "NULLABLE"},
            ]},
        ]},
        s("user_id"),
        s("user_pseudo_id"),
        {"name": "collected_traffic_source", "type": "RECORD", "mode": "NULLABLE", "fields": [
            s("manual_source"), s("manual_medium"), s("manual_campaign_name"), s("manual_content"), s("manual_term"),
        ]},
        {"name": "ecommerce", "type": "RECORD", "mode": "NULLABLE", "fields": [
            s("transaction_id"),
            {"name": "purchase_revenue", "type": "FLOAT", "mode": "NULLABLE"},
        ]},
    ]})
}
