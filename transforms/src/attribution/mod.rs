//! Multi-touch attribution of a brand's site conversions to creators, under
//! the rules-based models Google Analytics documents for cross-channel
//! attribution: first click, last (non-direct) click, linear,
//! position-based (40/20/40) and time decay (a 7-day half-life by default).
//!
//! Rules shared by every model:
//! - only sessions within the lookback window before the conversion count
//!   (a session at the conversion's own instant counts);
//! - direct sessions are ignored by every model; a path of only direct
//!   sessions leaves the conversion unattributed (no credit at all);
//! - a session whose UTMs resolve to no creator keeps its share as
//!   unattributed (`creator: None`), never a creator's;
//! - the credits of one conversion sum to exactly 1, and its revenue shares
//!   to exactly its revenue: shares are exact decimals, the rounding residue
//!   going to the last touch.
//!
//! A transaction GA4 logged twice is counted once ([`dedup_transactions`]).

pub mod run;

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::str::FromStr;

/// The models `crest attribute --models` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Model {
    First,
    Last,
    Linear,
    Position,
    TimeDecay,
}

impl Model {
    pub const ALL: [Model; 5] = [
        Model::First,
        Model::Last,
        Model::Linear,
        Model::Position,
        Model::TimeDecay,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Model::First => "first",
            Model::Last => "last",
            Model::Linear => "linear",
            Model::Position => "position",
            Model::TimeDecay => "time_decay",
        }
    }
}

impl FromStr for Model {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Model::ALL
            .into_iter()
            .find(|m| m.name() == s.trim().to_lowercase())
            .ok_or_else(|| {
                format!(
                    "'{s}' is not an attribution model ({})",
                    Model::ALL.map(Model::name).join(", ")
                )
            })
    }
}

/// One session of the converting user.
#[derive(Debug, Clone, PartialEq)]
pub struct Touch {
    pub at: DateTime<Utc>,
    /// A session without campaign parameters or referrer: never credited.
    pub direct: bool,
    /// The creator its UTMs resolve to; `None` for UTMs that resolve to nobody.
    pub creator: Option<String>,
    /// The platform, from `utm_medium`.
    pub platform: Option<String>,
}

/// One conversion (a purchase, or another configured event).
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    pub at: DateTime<Utc>,
    pub transaction_id: Option<String>,
    pub revenue: Decimal,
}

/// What one creator × platform (or the unattributed share) is credited with
/// for one conversion under one model.
#[derive(Debug, Clone, PartialEq)]
pub struct Credit {
    pub creator: Option<String>,
    pub platform: Option<String>,
    pub conversions: Decimal,
    pub revenue: Decimal,
    /// Sessions of the path that were this creator's.
    pub touchpoints: u32,
    /// The creator touched the path but did not close it (the last
    /// non-direct touch was someone else's).
    pub assisted: bool,
}

/// The models' parameters.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub lookback: Duration,
    /// Time decay: a touch this long before the conversion counts half as much
    /// as one at the conversion.
    pub half_life: Duration,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            lookback: Duration::days(30),
            half_life: Duration::days(7),
        }
    }
}

/// Decimal places of a credit share: far below any reported figure.
const SHARE_SCALE: u32 = 12;
/// Decimal places of credited revenue.
const REVENUE_SCALE: u32 = 6;

/// The credits of one conversion under one model: empty when no non-direct
/// session falls in the lookback window (the conversion stays unattributed).
pub fn attribute(conversion: &Conversion, touches: &[Touch], model: Model, rules: Rules) -> Vec<Credit> {
    let from = conversion.at - rules.lookback;
    let mut path: Vec<&Touch> = touches
        .iter()
        .filter(|t| !t.direct && t.at >= from && t.at <= conversion.at)
        .collect();
    path.sort_by_key(|t| t.at);
    if path.is_empty() {
        return Vec::new();
    }
    let shares = shares(&path, conversion.at, model, rules.half_life);
    let revenue = split(conversion.revenue, &shares, REVENUE_SCALE);
    let closer = (
        path[path.len() - 1].creator.clone(),
        path[path.len() - 1].platform.clone(),
    );
    let mut by: BTreeMap<(Option<String>, Option<String>), Credit> = BTreeMap::new();
    for ((touch, share), revenue) in path.iter().zip(&shares).zip(revenue) {
        let key = (touch.creator.clone(), touch.platform.clone());
        let c = by.entry(key.clone()).or_insert_with(|| Credit {
            creator: key.0.clone(),
            platform: key.1.clone(),
            conversions: Decimal::ZERO,
            revenue: Decimal::ZERO,
            touchpoints: 0,
            assisted: key.0.is_some() && key != closer,
        });
        c.conversions += share;
        c.revenue += revenue;
        c.touchpoints += 1;
    }
    by.into_values().collect()
}

/// One user's journey attributed: their sessions (any order) and
/// conversions, every conversion under every model asked. Memory is the
/// user's own sessions: a caller streams users one at a time (input sorted
/// by user), so it stays flat however many sessions there are.
pub fn attribute_user(
    touches: &mut [Touch],
    conversions: &[Conversion],
    models: &[Model],
    rules: Rules,
) -> Vec<(usize, Model, Vec<Credit>)> {
    touches.sort_by_key(|t| t.at);
    let mut out = Vec::with_capacity(conversions.len() * models.len());
    for (i, c) in conversions.iter().enumerate() {
        // The window's sessions by binary search on the sorted journey.
        let from = touches.partition_point(|t| t.at < c.at - rules.lookback);
        let to = touches.partition_point(|t| t.at <= c.at);
        let window = &touches[from..to];
        for &m in models {
            out.push((i, m, attribute(c, window, m, rules)));
        }
    }
    out
}

/// Each touch's share of the conversion, summing to exactly 1.
fn shares(path: &[&Touch], at: DateTime<Utc>, model: Model, half_life: Duration) -> Vec<Decimal> {
    let n = path.len();
    let weights: Vec<Decimal> = match model {
        Model::First => (0..n)
            .map(|i| if i == 0 { Decimal::ONE } else { Decimal::ZERO })
            .collect(),
        Model::Last => (0..n)
            .map(|i| if i == n - 1 { Decimal::ONE } else { Decimal::ZERO })
            .collect(),
        Model::Linear => vec![Decimal::ONE; n],
        Model::Position => match n {
            1 => vec![Decimal::ONE],
            2 => vec![Decimal::ONE, Decimal::ONE],
            _ => {
                // 40 % to the first, 40 % to the last, 20 % over the middle.
                let middle = Decimal::new(20, 2) / Decimal::from(n - 2);
                (0..n)
                    .map(|i| {
                        if i == 0 || i == n - 1 {
                            Decimal::new(40, 2)
                        } else {
                            middle
                        }
                    })
                    .collect()
            }
        },
        Model::TimeDecay => path
            .iter()
            .map(|t| {
                // Ages from the newest touch (weights relative to it, the
                // same shares): its weight is 1, so however short the
                // half-life no path's weights all underflow to zero.
                let newest = path[n - 1].at.min(at);
                let age = (newest - t.at).num_milliseconds() as f64 / half_life.num_milliseconds().max(1) as f64;
                Decimal::from_f64_retain(0.5f64.powf(age)).unwrap_or(Decimal::ZERO)
            })
            .collect(),
    };
    split(Decimal::ONE, &weights, SHARE_SCALE)
}

/// `total` split in proportion to `weights`, each part rounded to `scale`
/// places and the residue added to the last part with a weight, so the parts
/// sum to exactly `total`.
fn split(total: Decimal, weights: &[Decimal], scale: u32) -> Vec<Decimal> {
    let sum: Decimal = weights.iter().sum();
    if sum.is_zero() {
        return vec![Decimal::ZERO; weights.len()];
    }
    let mut parts: Vec<Decimal> = weights.iter().map(|w| (total * w / sum).round_dp(scale)).collect();
    let residue = total - parts.iter().sum::<Decimal>();
    if let Some(last) = weights.iter().rposition(|w| !w.is_zero()) {
        parts[last] += residue;
    }
    parts
}

/// The conversions with each transaction counted once: GA4 can log a purchase
/// twice (a reloaded confirmation page); the first one stands. Conversions
/// without a transaction id are all kept.
pub fn dedup_transactions(conversions: Vec<Conversion>) -> Vec<Conversion> {
    let mut seen = std::collections::HashSet::new();
    conversions
        .into_iter()
        .filter(|c| match &c.transaction_id {
            Some(id) => seen.insert(id.clone()),
            None => true,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_half_life_never_loses_a_conversion() {
        let c = Conversion {
            at: at(30, 12),
            transaction_id: None,
            revenue: Decimal::new(10, 0),
        };
        let touches = [creator("a", "tiktok", 1), creator("b", "meta", 2)];
        let rules = Rules {
            lookback: Duration::days(30),
            half_life: Duration::hours(1),
        };
        let credits = attribute(&c, &touches, Model::TimeDecay, rules);
        let total: Decimal = credits.iter().map(|c| c.conversions).sum();
        assert_eq!(total, Decimal::ONE);
        let b = credits
            .iter()
            .find(|c| c.creator.as_deref() == Some("b"))
            .unwrap()
            .conversions;
        assert!(b > Decimal::new(9999, 4), "the newest touch keeps almost all: {b}");
    }

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        chrono::NaiveDate::from_ymd_opt(2026, 3, day)
            .unwrap()
            .and_hms_opt(hour, 0, 0)
            .unwrap()
            .and_utc()
    }

    fn creator(who: &str, platform: &str, day: u32) -> Touch {
        Touch {
            at: at(day, 12),
            direct: false,
            creator: Some(who.into()),
            platform: Some(platform.into()),
        }
    }

    fn direct(day: u32) -> Touch {
        Touch {
            at: at(day, 12),
            direct: true,
            creator: None,
            platform: None,
        }
    }

    fn purchase(day: u32, revenue: &str) -> Conversion {
        Conversion {
            at: at(day, 18),
            transaction_id: Some(format!("T{day}")),
            revenue: revenue.parse().unwrap(),
        }
    }

    fn credit(credits: &[Credit], who: Option<&str>) -> (Decimal, Decimal) {
        credits
            .iter()
            .filter(|c| c.creator.as_deref() == who)
            .fold((Decimal::ZERO, Decimal::ZERO), |(c, r), x| {
                (c + x.conversions, r + x.revenue)
            })
    }

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn a_single_touch_takes_everything_under_every_model() {
        let path = [creator("maya", "tiktok", 1)];
        for m in Model::ALL {
            let c = attribute(&purchase(3, "80.00"), &path, m, Rules::default());
            assert_eq!(c.len(), 1, "{m:?}");
            assert_eq!((c[0].conversions, c[0].revenue), (Decimal::ONE, d("80.00")), "{m:?}");
            assert!(!c[0].assisted);
        }
    }

    #[test]
    fn two_creators_then_a_purchase_split_as_each_model_says() {
        // Leo on Meta on the 1st, Maya on TikTok on the 8th, purchase on the 8th at 18:00.
        let path = [creator("leo", "meta", 1), creator("maya", "tiktok", 8)];
        let p = purchase(8, "100.00");
        let run = |m| attribute(&p, &path, m, Rules::default());
        assert_eq!(credit(&run(Model::First), Some("leo")), (Decimal::ONE, d("100")));
        assert_eq!(credit(&run(Model::Last), Some("maya")), (Decimal::ONE, d("100")));
        assert_eq!(credit(&run(Model::Linear), Some("leo")), (d("0.5"), d("50")));
        assert_eq!(credit(&run(Model::Position), Some("maya")), (d("0.5"), d("50")));
        // Time decay: Leo's touch is 7 days 6 hours older than the purchase,
        // Maya's 6 hours: weights 2^(-174/168) and 2^(-6/168).
        let (wl, wm) = (0.5f64.powf(174.0 / 168.0), 0.5f64.powf(6.0 / 168.0));
        let decay = run(Model::TimeDecay);
        let (leo, _) = credit(&decay, Some("leo"));
        let expected = wl / (wl + wm);
        assert!(
            (leo.to_string().parse::<f64>().unwrap() - expected).abs() < 1e-9,
            "{leo} vs {expected}"
        );
        for m in Model::ALL {
            let c = run(m);
            assert_eq!(c.iter().map(|x| x.conversions).sum::<Decimal>(), Decimal::ONE, "{m:?}");
            assert_eq!(c.iter().map(|x| x.revenue).sum::<Decimal>(), d("100.00"), "{m:?}");
            // Leo touched the path and did not close it.
            if let Some(leo) = c.iter().find(|x| x.creator.as_deref() == Some("leo")) {
                assert!(leo.assisted, "{m:?}");
            }
        }
    }

    #[test]
    fn a_direct_revisit_between_touches_is_ignored_and_a_direct_only_path_is_unattributed() {
        let path = [
            creator("leo", "meta", 1),
            direct(4),
            creator("maya", "tiktok", 6),
            direct(8),
        ];
        let c = attribute(&purchase(8, "30"), &path, Model::Last, Rules::default());
        assert_eq!(
            credit(&c, Some("maya")).0,
            Decimal::ONE,
            "the last non-direct click closes"
        );
        let c = attribute(&purchase(8, "30"), &path, Model::Linear, Rules::default());
        assert_eq!(c.len(), 2, "direct sessions take no share");
        for m in Model::ALL {
            assert!(attribute(&purchase(8, "30"), &[direct(2), direct(7)], m, Rules::default()).is_empty());
        }
    }

    #[test]
    fn position_based_gives_forty_twenty_forty_and_thirds_still_sum_to_one() {
        let path = [
            creator("a", "tiktok", 1),
            creator("b", "meta", 2),
            creator("c", "youtube", 3),
            creator("d", "meta", 4),
            creator("e", "tiktok", 5),
        ];
        let c = attribute(&purchase(6, "10.00"), &path, Model::Position, Rules::default());
        assert_eq!(credit(&c, Some("a")).0, d("0.4"));
        let third = (d("0.2") / d("3")).round_dp(12);
        for middle in ["b", "c", "d"] {
            assert_eq!(credit(&c, Some(middle)).0, third);
        }
        // The rounding residue of the thirds goes to the last touch.
        assert_eq!(credit(&c, Some("e")).0, Decimal::ONE - d("0.4") - third * d("3"));
        assert_eq!(c.iter().map(|x| x.conversions).sum::<Decimal>(), Decimal::ONE);
        assert_eq!(c.iter().map(|x| x.revenue).sum::<Decimal>(), d("10.00"));
        let linear = attribute(&purchase(6, "10.00"), &path[..3], Model::Linear, Rules::default());
        assert_eq!(linear.iter().map(|x| x.conversions).sum::<Decimal>(), Decimal::ONE);
        assert_eq!(linear.iter().map(|x| x.revenue).sum::<Decimal>(), d("10.00"));
    }

    #[test]
    fn a_touch_outside_the_lookback_and_an_unresolved_link_are_never_a_creators() {
        let rules = Rules {
            lookback: Duration::days(7),
            ..Rules::default()
        };
        let stranger = Touch {
            creator: None,
            ..creator("x", "meta", 9)
        };
        let path = [creator("old", "tiktok", 1), stranger, creator("maya", "tiktok", 10)];
        let c = attribute(&purchase(10, "50"), &path, Model::Linear, rules);
        assert_eq!(
            credit(&c, Some("old")),
            (Decimal::ZERO, Decimal::ZERO),
            "outside the lookback"
        );
        assert_eq!(
            credit(&c, None),
            (d("0.5"), d("25")),
            "the unresolved link keeps its share"
        );
        assert!(!c.iter().find(|x| x.creator.is_none()).unwrap().assisted);
        let c = attribute(&purchase(10, "50"), &path, Model::First, rules);
        assert_eq!(
            credit(&c, None).0,
            Decimal::ONE,
            "first in the window is the unresolved link"
        );
    }

    #[test]
    fn a_users_journey_is_attributed_conversion_by_conversion() {
        let mut path = vec![creator("maya", "tiktok", 9), creator("leo", "meta", 1), direct(5)];
        let conversions = [purchase(3, "10"), purchase(9, "20")];
        let credits = attribute_user(&mut path, &conversions, &[Model::Last, Model::First], Rules::default());
        assert_eq!(credits.len(), 4);
        let last_of_second = &credits.iter().find(|(i, m, _)| *i == 1 && *m == Model::Last).unwrap().2;
        assert_eq!(credit(last_of_second, Some("maya")), (Decimal::ONE, d("20")));
        let first_of_first = &credits
            .iter()
            .find(|(i, m, _)| *i == 0 && *m == Model::First)
            .unwrap()
            .2;
        assert_eq!(
            credit(first_of_first, Some("leo")),
            (Decimal::ONE, d("10")),
            "Maya's touch came after"
        );
    }

    #[test]
    fn a_duplicated_transaction_counts_once_and_a_conversion_without_touches_gets_no_credit() {
        let mut twice = vec![purchase(5, "20"), purchase(5, "20"), purchase(6, "15")];
        twice.push(Conversion {
            transaction_id: None,
            ..purchase(7, "5")
        });
        let once = dedup_transactions(twice);
        assert_eq!(once.len(), 3);
        assert!(attribute(&once[0], &[], Model::Last, Rules::default()).is_empty());
        assert_eq!("time_decay".parse::<Model>(), Ok(Model::TimeDecay));
        assert!("markov"
            .parse::<Model>()
            .unwrap_err()
            .contains("first, last, linear, position, time_decay"));
    }
}
