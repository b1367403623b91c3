//! The tier board: every creator × platform with its tier and why, printed
//! for the terminal and rendered as one self-contained HTML page (a sortable
//! table, a CTR-vs-CPC scatter coloured by tier against the benchmark lines,
//! and the budget reallocation).

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;

pub const TIERS_SQL: &str =
    "SELECT creator_handle, creator_id, platform, creator_tier, disclosure_status, tier, tier_reason, \
    compliance_flag, impressions, clicks, spend_reporting, conversions, ctr, cpc, ctr_benchmark, cpc_ceiling \
    FROM v_creator_tier \
    ORDER BY CASE tier WHEN 'red' THEN 0 WHEN 'yellow' THEN 1 WHEN 'accelerate' THEN 2 WHEN 'green' THEN 3 ELSE 4 END, \
    spend_reporting DESC NULLS LAST, platform, creator_handle";

pub const REALLOCATION_SQL: &str =
    "SELECT platform, campaign_name, creator_handle, tier, action, recent_daily_spend, pool, \
    efficiency_basis, share, suggested_daily_change FROM v_budget_reallocation \
    ORDER BY platform, campaign_name, action DESC, suggested_daily_change";

const TEMPLATE: &str = include_str!("tier-board.html");
const TIER_ORDER: [&str; 4] = ["red", "yellow", "accelerate", "green"];

pub struct Row {
    handle: String,
    platform: String,
    creator_tier: String,
    tier: Option<String>,
    reason: String,
    compliance_flag: bool,
    disclosure: String,
    spend: Option<f64>,
    conversions: Option<f64>,
    ctr: Option<f64>,
    cpc: Option<f64>,
    ctr_benchmark: Option<f64>,
    cpc_ceiling: Option<f64>,
}

pub struct Move {
    platform: String,
    campaign: String,
    handle: String,
    tier: String,
    action: String,
    recent_daily_spend: Option<f64>,
    share: Option<f64>,
    change: Option<f64>,
}

pub struct Board {
    rows: Vec<Row>,
    moves: Vec<Move>,
}

fn text(r: &Map<String, Value>, k: &str) -> String {
    match r.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

/// Numbers arrive as JSON numbers, or as strings for decimals.
fn num(r: &Map<String, Value>, k: &str) -> Option<f64> {
    match r.get(k)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{:.2} %", v * 100.0)).unwrap_or_else(|| "–".into())
}

fn money(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "–".into())
}

fn count(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.0}")).unwrap_or_else(|| "–".into())
}

/// How a platform is written for people.
fn display_name(platform: &str) -> &str {
    match platform {
        "tiktok" => "TikTok",
        "meta" => "Meta",
        "youtube" => "YouTube",
        other => other,
    }
}

/// Text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Never a template placeholder, whatever a handle holds.
            '{' => out.push_str("&#123;"),
            '}' => out.push_str("&#125;"),
            c => out.push(c),
        }
    }
    out
}

impl Board {
    pub fn new(tiers: Vec<Map<String, Value>>, moves: Vec<Map<String, Value>>) -> Board {
        let rows = tiers
            .iter()
            .map(|r| Row {
                handle: text(r, "creator_handle"),
                platform: text(r, "platform"),
                creator_tier: text(r, "creator_tier"),
                tier: Some(text(r, "tier")).filter(|t| !t.is_empty()),
                reason: text(r, "tier_reason"),
                compliance_flag: r.get("compliance_flag") == Some(&Value::Bool(true)),
                disclosure: text(r, "disclosure_status"),
                spend: num(r, "spend_reporting"),
                conversions: num(r, "conversions"),
                ctr: num(r, "ctr"),
                cpc: num(r, "cpc"),
                ctr_benchmark: num(r, "ctr_benchmark"),
                cpc_ceiling: num(r, "cpc_ceiling"),
            })
            .collect();
        let moves = moves
            .iter()
            .map(|r| Move {
                platform: text(r, "platform"),
                campaign: text(r, "campaign_name"),
                handle: text(r, "creator_handle"),
                tier: text(r, "tier"),
                action: text(r, "action"),
                recent_daily_spend: num(r, "recent_daily_spend"),
                share: num(r, "share"),
                change: num(r, "suggested_daily_change"),
            })
            .collect();
        Board { rows, moves }
    }

    fn counts(&self) -> BTreeMap<&str, usize> {
        let mut counts = BTreeMap::new();
        for r in &self.rows {
            *counts.entry(r.tier.as_deref().unwrap_or("none")).or_insert(0) += 1;
        }
        counts
    }

    /// The terminal board: counts, then each tier's first creators, then the
    /// reallocation per campaign.
    pub fn print(&self) {
        const SHOWN: usize = 8;
        let counts = self.counts();
        println!();
        println!(
            "Tier board: {} creator × platform rows — {}",
            self.rows.len(),
            TIER_ORDER
                .iter()
                .chain(["none"].iter())
                .map(|t| format!("{} {t}", counts.get(t).copied().unwrap_or(0)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "{:<11} {:<18} {:<8} {:>8} {:>7} {:>6}  reason",
            "tier", "creator", "platform", "CTR", "CPC", "conv"
        );
        for tier in TIER_ORDER {
            let rows: Vec<&Row> = self.rows.iter().filter(|r| r.tier.as_deref() == Some(tier)).collect();
            for r in rows.iter().take(SHOWN) {
                let flag = if r.compliance_flag { "  ⚑ not disclosed" } else { "" };
                println!(
                    "{:<11} {:<18} {:<8} {:>8} {:>7} {:>6}  {}{flag}",
                    tier,
                    r.handle,
                    r.platform,
                    pct(r.ctr),
                    money(r.cpc),
                    count(r.conversions),
                    r.reason
                );
            }
            if rows.len() > SHOWN {
                println!("{:<11} … {} more", "", rows.len() - SHOWN);
            }
        }
        println!();
        let reduce: Vec<&Move> = self.moves.iter().filter(|m| m.action == "reduce").collect();
        let increase: Vec<&Move> = self.moves.iter().filter(|m| m.action == "increase").collect();
        let pool: f64 = reduce.iter().filter_map(|m| m.recent_daily_spend).sum();
        println!(
            "Budget reallocation: move {pool:.2} USD a day from {} red creator placement(s) to {} accelerate one(s) (v_budget_reallocation)",
            reduce.len(),
            increase.len()
        );
        let mut by_gain: Vec<&&Move> = increase.iter().collect();
        by_gain.sort_by(|a, b| b.change.unwrap_or(0.0).total_cmp(&a.change.unwrap_or(0.0)));
        for m in by_gain.iter().take(5) {
            println!(
                "  + {:>8} /day  {:<18} {:<8} {} ({} of the pool)",
                money(m.change),
                m.handle,
                m.platform,
                m.campaign,
                m.share.map(|s| format!("{:.0} %", s * 100.0)).unwrap_or_default()
            );
        }
        if by_gain.len() > 5 {
            println!("  … {} more receivers; every row in tier-board.html", by_gain.len() - 5);
        }
    }

    /// The page: the template with the summary, board rows, scatter and
    /// reallocation filled in. Everything inline: no script or style is fetched.
    pub fn html(&self, subtitle: &str) -> String {
        let counts = self.counts();
        let mut summary = String::new();
        for t in TIER_ORDER.iter().chain(["none"].iter()) {
            let _ = write!(
                summary,
                "<span class=\"pill {t}\">{} {t}</span>",
                counts.get(t).copied().unwrap_or(0)
            );
        }
        let mut rows = String::new();
        for r in &self.rows {
            let tier = r.tier.as_deref().unwrap_or("none");
            let flag = if r.compliance_flag {
                " <span class=\"flag\" title=\"not disclosed: amplifying carries regulatory exposure\">⚑</span>"
            } else {
                ""
            };
            let _ = writeln!(
                rows,
                "<tr class=\"board-row {tier}\"><td>{}</td><td>{}</td><td>{}</td><td class=\"tier\">{tier}{flag}</td>\
                 <td data-v=\"{}\">{}</td><td data-v=\"{}\">{}</td><td data-v=\"{}\">{}</td><td data-v=\"{}\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(&r.handle),
                esc(&r.platform),
                esc(&r.creator_tier),
                r.ctr.unwrap_or(-1.0),
                pct(r.ctr),
                r.cpc.unwrap_or(-1.0),
                money(r.cpc),
                r.conversions.unwrap_or(-1.0),
                count(r.conversions),
                r.spend.unwrap_or(-1.0),
                money(r.spend),
                esc(&r.disclosure),
                esc(&r.reason),
            );
        }
        let (scatter, plotted) = self.scatter();
        let mut moves = String::new();
        for m in &self.moves {
            let _ = writeln!(
                moves,
                "<tr class=\"move {}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&m.action),
                esc(&m.platform),
                esc(&m.campaign),
                esc(&m.handle),
                esc(&m.tier),
                esc(&m.action),
                money(m.recent_daily_spend),
                m.share.map(|s| format!("{:.1} %", s * 100.0)).unwrap_or_else(|| "–".into()),
                money(m.change),
            );
        }
        TEMPLATE
            .replace("{{subtitle}}", &esc(subtitle))
            .replace("{{summary}}", &summary)
            .replace("{{board_rows}}", &rows)
            .replace("{{rows}}", &self.rows.len().to_string())
            .replace("{{plotted}}", &plotted.to_string())
            .replace("{{scatter}}", &scatter)
            .replace("{{moves}}", &moves)
    }

    /// One SVG panel per platform: CTR (x) against CPC (y), a point per
    /// creator with both, the benchmark CTR and CPC ceiling of its tier as
    /// lines (the most common creator tier's, dashed).
    fn scatter(&self) -> (String, usize) {
        const W: f64 = 360.0;
        const H: f64 = 260.0;
        const PAD: f64 = 40.0;
        let mut svg = String::new();
        let mut plotted = 0;
        let platforms: Vec<&str> = {
            let mut p: Vec<&str> = self.rows.iter().map(|r| r.platform.as_str()).collect();
            p.sort();
            p.dedup();
            p
        };
        for platform in platforms {
            let points: Vec<&Row> = self
                .rows
                .iter()
                .filter(|r| r.platform == platform && r.ctr.is_some() && r.cpc.is_some())
                .collect();
            if points.is_empty() {
                continue;
            }
            let max_ctr = points.iter().filter_map(|r| r.ctr).fold(0.0_f64, f64::max).max(0.001) * 1.1;
            let max_cpc = points.iter().filter_map(|r| r.cpc).fold(0.0_f64, f64::max).max(0.01) * 1.1;
            let x = |v: f64| PAD + (v / max_ctr).min(1.0) * (W - PAD - 10.0);
            let y = |v: f64| H - PAD - (v / max_cpc).min(1.0) * (H - PAD - 10.0);
            let _ = write!(
                svg,
                "<figure><figcaption>{}</figcaption><svg class=\"scatter\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"CTR against CPC on {}\">\
                 <line class=\"axis\" x1=\"{PAD}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/><line class=\"axis\" x1=\"{PAD}\" y1=\"10\" x2=\"{PAD}\" y2=\"{}\"/>\
                 <text x=\"{}\" y=\"{}\" class=\"label\">CTR → (max {})</text><text x=\"4\" y=\"20\" class=\"label\">CPC ↑ (max {})</text>",
                esc(display_name(platform)),
                esc(display_name(platform)),
                H - PAD,
                W - 10.0,
                H - PAD,
                H - PAD,
                W / 2.0 - 40.0,
                H - 12.0,
                pct(Some(max_ctr)),
                money(Some(max_cpc)),
            );
            // The benchmark lines of the platform's most common creator tier.
            let mut tiers: BTreeMap<&str, usize> = BTreeMap::new();
            for r in &points {
                *tiers.entry(r.creator_tier.as_str()).or_insert(0) += 1;
            }
            if let Some((common, _)) = tiers.iter().max_by_key(|(_, n)| **n) {
                if let Some(r) = points
                    .iter()
                    .find(|r| r.creator_tier == *common && r.ctr_benchmark.is_some())
                {
                    if let Some(b) = r.ctr_benchmark {
                        let bx = x(b);
                        let _ = write!(
                            svg,
                            "<line class=\"benchmark\" x1=\"{bx:.1}\" y1=\"10\" x2=\"{bx:.1}\" y2=\"{}\"><title>{} {common} CTR benchmark {}</title></line>",
                            H - PAD,
                            esc(platform),
                            pct(Some(b))
                        );
                    }
                    if let Some(c) = r.cpc_ceiling {
                        let cy = y(c);
                        let _ = write!(
                            svg,
                            "<line class=\"benchmark\" x1=\"{PAD}\" y1=\"{cy:.1}\" x2=\"{}\" y2=\"{cy:.1}\"><title>{} {common} CPC ceiling {}</title></line>",
                            W - 10.0,
                            esc(platform),
                            money(Some(c))
                        );
                    }
                }
            }
            for r in points {
                let (Some(ctr), Some(cpc)) = (r.ctr, r.cpc) else {
                    continue;
                };
                let tier = r.tier.as_deref().unwrap_or("none");
                let _ = write!(
                    svg,
                    "<circle class=\"point {tier}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\"><title>{} · {tier} · CTR {} · CPC {}</title></circle>",
                    x(ctr),
                    y(cpc),
                    esc(&r.handle),
                    pct(Some(ctr)),
                    money(Some(cpc))
                );
                plotted += 1;
            }
            svg.push_str("</svg></figure>\n");
        }
        (svg, plotted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_escapes_what_it_is_given_and_counts_what_it_plots() {
        let row = |handle: &str, tier: Value, ctr: Value| {
            serde_json::json!({"creator_handle": handle, "platform": "tiktok", "creator_tier": "nano", "tier": tier,
                "tier_reason": "r", "ctr": ctr, "cpc": 0.5, "ctr_benchmark": "0.012000", "cpc_ceiling": "0.800000"})
            .as_object()
            .cloned()
            .unwrap()
        };
        let board = Board::new(
            vec![
                row("<script>x</script>", Value::from("red"), Value::from(0.01)),
                row("b", Value::Null, Value::Null),
            ],
            vec![],
        );
        let html = board.html("s");
        assert!(!html.contains("<script>x"), "a handle is escaped");
        assert!(html.contains("&lt;script&gt;x"));
        assert_eq!(html.matches("class=\"board-row").count(), 2);
        assert_eq!(
            html.matches("<circle class=\"point").count(),
            1,
            "a row without CTR is not plotted"
        );
        assert!(!html.contains("{{"), "every placeholder is filled");
        let braces = Board::new(vec![row("{{moves}}", Value::from("green"), Value::from(0.02))], vec![]).html("s");
        assert!(!braces.contains("{{moves}}") && braces.contains("&#123;&#123;moves&#125;&#125;"));
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "nothing is fetched"
        );
    }
}
