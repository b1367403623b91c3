//! Multi-touch attribution at a program's scale: synthetic journeys of
//! 1,000,000 sessions and 50,000 conversions over 300 creators, every
//! conversion under all five models, users streamed one at a time as
//! `crest attribute` reads them (sorted by user).
//!
//!   cargo bench -p crest-transforms --bench attribution [-- SESSIONS CONVERSIONS]

#![allow(clippy::unwrap_used)]

use chrono::{Duration, TimeZone, Utc};
use crest_transforms::attribution::{attribute_user, Conversion, Model, Rules, Touch};
use rust_decimal::Decimal;
use std::time::Instant;

/// A small deterministic generator (no dependency, the same journeys every run).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sessions = args.first().copied().unwrap_or(1_000_000);
    let conversions = args.get(1).copied().unwrap_or(50_000);
    let users = sessions / 5;
    let creators: Vec<String> = (0..300).map(|i| format!("cr_{i:05}")).collect();
    let platforms = ["tiktok", "meta", "youtube"];
    let start = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
    let mut rng = Lcg(42);
    let rules = Rules::default();
    let began = Instant::now();
    let (mut credited, mut conversions_seen, mut sessions_seen) = (Decimal::ZERO, 0u64, 0u64);
    for user in 0..users {
        // Five sessions a user on average over 60 days; a conversion for
        // `conversions / users` of them.
        let n = 1 + rng.next() % 9;
        let mut touches: Vec<Touch> = (0..n)
            .map(|_| {
                let at = start + Duration::minutes((rng.next() % (60 * 24 * 60)) as i64);
                let kind = rng.next() % 10;
                Touch {
                    at,
                    direct: kind < 3,
                    creator: (kind >= 4).then(|| creators[(rng.next() % 300) as usize].clone()),
                    platform: (kind >= 3).then(|| platforms[(rng.next() % 3) as usize].to_string()),
                }
            })
            .collect();
        let convs: Vec<Conversion> = if rng.next() % users < conversions {
            vec![Conversion {
                at: start + Duration::days(30 + (rng.next() % 30) as i64),
                transaction_id: Some(format!("T{user}")),
                revenue: Decimal::new((rng.next() % 20_000) as i64, 2),
            }]
        } else {
            Vec::new()
        };
        sessions_seen += n;
        conversions_seen += convs.len() as u64;
        for (_, _, credits) in attribute_user(&mut touches, &convs, &Model::ALL, rules) {
            credited += credits.iter().map(|c| c.conversions).sum::<Decimal>();
        }
    }
    let secs = began.elapsed().as_secs_f64();
    println!(
        "{sessions_seen} sessions, {users} users, {conversions_seen} conversions × 5 models in {secs:.2}s \
         ({:.0} sessions/s); credited conversions {credited} (each attributed conversion sums to 1 per model)",
        sessions_seen as f64 / secs
    );
}
