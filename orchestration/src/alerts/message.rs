//! What changed between two evaluations, and the one message that says it.

use std::collections::BTreeMap;

/// One creator × platform as an evaluation of `v_creator_tier` saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub platform: String,
    pub creator_id: String,
    pub creator_handle: Option<String>,
    pub tier: Option<String>,
    pub tier_reason: Option<String>,
    pub compliance_flag: bool,
    pub ctr: Option<f64>,
    pub cpc: Option<f64>,
    pub conversions: Option<f64>,
}

/// A change worth telling the campaign pod, in the order a message lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    EnteredRed,
    ComplianceFlagRaised,
    EnteredYellow,
    LeftRed,
    EnteredAccelerate,
    LeftAccelerate,
    EnteredGreen,
    NoLongerJudged,
    ComplianceFlagCleared,
}

impl Kind {
    pub fn title(self) -> &'static str {
        match self {
            Kind::EnteredRed => "Entered red",
            Kind::ComplianceFlagRaised => "Compliance flag raised",
            Kind::EnteredYellow => "Entered yellow",
            Kind::LeftRed => "Left red",
            Kind::EnteredAccelerate => "Entered accelerate",
            Kind::LeftAccelerate => "Left accelerate",
            Kind::EnteredGreen => "Entered green",
            Kind::NoLongerJudged => "No longer judged",
            Kind::ComplianceFlagCleared => "Compliance flag cleared",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Change {
    pub kind: Kind,
    pub now: Seen,
    pub previous_tier: Option<String>,
}

/// The changes from `before` (the last delivered evaluation; empty for the
/// first) to `now`: a tier entered or left, a compliance flag raised or
/// cleared. A creator's tier change is one change, named by where it went
/// (leaving red for yellow is "entered yellow"; for green, "left red").
pub fn changes(before: &[Seen], now: &[Seen]) -> Vec<Change> {
    let before: BTreeMap<(&str, &str), &Seen> = before
        .iter()
        .map(|s| ((s.platform.as_str(), s.creator_id.as_str()), s))
        .collect();
    let mut out = Vec::new();
    for s in now {
        let prev = before.get(&(s.platform.as_str(), s.creator_id.as_str()));
        let prev_tier = prev.and_then(|p| p.tier.clone());
        if prev_tier != s.tier {
            let kind = match (prev_tier.as_deref(), s.tier.as_deref()) {
                (_, Some("red")) => Some(Kind::EnteredRed),
                (_, Some("yellow")) => Some(Kind::EnteredYellow),
                (_, Some("accelerate")) => Some(Kind::EnteredAccelerate),
                (Some("red"), _) => Some(Kind::LeftRed),
                (Some("accelerate"), _) => Some(Kind::LeftAccelerate),
                (_, Some(_)) => Some(Kind::EnteredGreen),
                (Some(_), None) => Some(Kind::NoLongerJudged),
                (None, None) => None,
            };
            if let Some(kind) = kind {
                out.push(Change {
                    kind,
                    now: s.clone(),
                    previous_tier: prev_tier.clone(),
                });
            }
        }
        let was_flagged = prev.is_some_and(|p| p.compliance_flag);
        if s.compliance_flag != was_flagged {
            out.push(Change {
                kind: if s.compliance_flag {
                    Kind::ComplianceFlagRaised
                } else {
                    Kind::ComplianceFlagCleared
                },
                now: s.clone(),
                previous_tier: prev_tier,
            });
        }
    }
    out.sort_by(|a, b| (a.kind, &a.now.platform, &a.now.creator_id).cmp(&(b.kind, &b.now.platform, &b.now.creator_id)));
    out
}

fn platform_name(p: &str) -> &str {
    match p {
        "tiktok" => "TikTok",
        "meta" => "Meta",
        "youtube" => "YouTube",
        other => other,
    }
}

/// One line per change: creator, platform, tier move, reason, the numbers.
pub fn line(c: &Change) -> String {
    let s = &c.now;
    let who = s.creator_handle.as_deref().unwrap_or(&s.creator_id);
    let tiers = format!(
        "{} → {}",
        c.previous_tier.as_deref().unwrap_or("none"),
        s.tier.as_deref().unwrap_or("none")
    );
    let mut numbers = Vec::new();
    if let Some(ctr) = s.ctr {
        numbers.push(format!("CTR {:.2} %", ctr * 100.0));
    }
    if let Some(cpc) = s.cpc {
        numbers.push(format!("CPC {cpc:.2}"));
    }
    numbers.push(match s.conversions {
        Some(n) => format!("{n} conversions"),
        None => "conversions not tracked".into(),
    });
    format!(
        "{who} ({}): {tiers} — {} — {}",
        platform_name(&s.platform),
        s.tier_reason.as_deref().unwrap_or("no reason given"),
        numbers.join(", ")
    )
}

/// The changes grouped by kind, in message order.
pub fn grouped(changes: &[Change]) -> Vec<(Kind, Vec<&Change>)> {
    let mut groups: Vec<(Kind, Vec<&Change>)> = Vec::new();
    for c in changes {
        match groups.last_mut() {
            Some((k, v)) if *k == c.kind => v.push(c),
            _ => groups.push((c.kind, vec![c])),
        }
    }
    groups
}

pub fn subject(changes: &[Change], target: &str) -> String {
    format!(
        "crest: {} tier change{} in {target}",
        changes.len(),
        if changes.len() == 1 { "" } else { "s" }
    )
}

/// The plain-text message (e-mail, `--dry-run`).
pub fn text(changes: &[Change], target: &str) -> String {
    let mut out = format!("{}\n", subject(changes, target));
    for (kind, list) in grouped(changes) {
        out.push_str(&format!("\n{} ({})\n", kind.title(), list.len()));
        for c in list {
            out.push_str(&format!("  - {}\n", line(c)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(creator: &str, tier: Option<&str>, flag: bool) -> Seen {
        Seen {
            platform: "tiktok".into(),
            creator_id: creator.into(),
            creator_handle: Some(format!("@{creator}")),
            tier: tier.map(str::to_string),
            tier_reason: Some("CTR 31 % below the 1.20 % TikTok nano benchmark".into()),
            compliance_flag: flag,
            ctr: Some(0.0083),
            cpc: Some(0.92),
            conversions: Some(0.0),
        }
    }

    #[test]
    fn only_changes_are_reported_grouped_by_kind() {
        let before = [
            seen("a", Some("green"), false),
            seen("b", Some("red"), false),
            seen("c", Some("green"), false),
            seen("d", Some("accelerate"), false),
        ];
        let now = [
            seen("a", Some("red"), false),
            seen("b", Some("green"), false),
            seen("c", Some("green"), false),
            seen("d", Some("accelerate"), true),
            seen("e", Some("yellow"), false),
        ];
        let c = changes(&before, &now);
        let kinds: Vec<(Kind, &str)> = c.iter().map(|c| (c.kind, c.now.creator_id.as_str())).collect();
        assert_eq!(
            kinds,
            [
                (Kind::EnteredRed, "a"),
                (Kind::ComplianceFlagRaised, "d"),
                (Kind::EnteredYellow, "e"),
                (Kind::LeftRed, "b"),
            ]
        );
        assert!(changes(&now, &now).is_empty(), "no change, nothing to say");
        let t = text(&c, "lake:./crest-lake");
        assert!(t.starts_with("crest: 4 tier changes in lake:./crest-lake"), "{t}");
        assert!(
            t.contains("@a (TikTok): green → red — CTR 31 % below the 1.20 % TikTok nano benchmark — CTR 0.83 %, CPC 0.92, 0 conversions"),
            "{t}"
        );
    }
}
