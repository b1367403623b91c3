//! Date windows: `--start..--end` (inclusive calendar dates in the account's
//! reporting time zone) split into slices an API accepts.

use crate::{Error, Result};
use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// An inclusive range of calendar dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DateRange {
    pub start: NaiveDate,
    pub end: NaiveDate,
}

impl DateRange {
    pub fn new(start: NaiveDate, end: NaiveDate) -> Result<Self> {
        if end < start {
            return Err(Error::Config(format!(
                "--end {end} is before --start {start}: give the earlier date as --start"
            )));
        }
        Ok(DateRange { start, end })
    }

    pub fn single(day: NaiveDate) -> Self {
        DateRange { start: day, end: day }
    }

    pub fn contains(&self, day: NaiveDate) -> bool {
        self.start <= day && day <= self.end
    }

    pub fn days(&self) -> u64 {
        (self.end - self.start).num_days() as u64 + 1
    }

    pub fn dates(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        self.start.iter_days().take_while(|d| d <= &self.end)
    }

    /// Consecutive slices of at most `max_days` days, in date order.
    pub fn split(&self, max_days: u64) -> Vec<DateRange> {
        let max_days = max_days.max(1);
        let mut out = Vec::new();
        let mut start = self.start;
        while start <= self.end {
            let end = start
                .checked_add_days(Days::new(max_days - 1))
                .map_or(self.end, |e| e.min(self.end));
            out.push(DateRange { start, end });
            match end.succ_opt() {
                Some(next) => start = next,
                None => break,
            }
        }
        out
    }

    /// Halves a slice the API rejected as too large; `None` for a single day.
    pub fn halve(&self) -> Option<(DateRange, DateRange)> {
        let days = self.days();
        if days < 2 {
            return None;
        }
        let first_end = self.start + Days::new(days / 2 - 1);
        Some((
            DateRange {
                start: self.start,
                end: first_end,
            },
            DateRange {
                start: first_end + Days::new(1),
                end: self.end,
            },
        ))
    }

    /// The part of this range on or after `day`, if any.
    pub fn from_day(&self, day: NaiveDate) -> Option<DateRange> {
        let start = self.start.max(day);
        (start <= self.end).then_some(DateRange { start, end: self.end })
    }
}

impl fmt::Display for DateRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}..{}", self.start, self.end)
        }
    }
}

/// The last date whose whole day is over at `now` in the IANA time zone `tz`
/// (an account's reporting time zone), less `lag_days` the platform takes to
/// serve a day. A day after it is provisional: its numbers can still grow.
/// Airflow's `ds` is a UTC date, so an account behind UTC asked for
/// "yesterday" just after midnight UTC is still in that day. An unknown zone
/// is taken as the last one on Earth (UTC−12), so no day is called complete early.
pub fn last_complete_day(tz: Option<&str>, lag_days: u32, now: DateTime<Utc>) -> NaiveDate {
    let zone: chrono_tz::Tz = tz
        .and_then(|name| name.trim().parse().ok())
        .unwrap_or(chrono_tz::Etc::GMTPlus12);
    let today = now.with_timezone(&zone).date_naive();
    today.checked_sub_days(Days::new(1 + lag_days as u64)).unwrap_or(today)
}

/// `YYYY-MM-DD…` → date without a format parser: report rows carry a date
/// each, and chrono's strftime parsing costs more than the rest of a row.
pub fn ymd(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter()
            .try_fold(0u32, |acc, c| c.is_ascii_digit().then(|| acc * 10 + (c - b'0') as u32))
    };
    NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)
}

/// Parses a `YYYY-MM-DD` flag value with a message that says what to type.
pub fn parse_date(s: &str) -> std::result::Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| format!("'{s}' is not a calendar date; use YYYY-MM-DD, e.g. 2026-01-31"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        parse_date(s).unwrap()
    }

    #[test]
    fn split_covers_every_day_once_in_order() {
        let r = DateRange::new(d("2026-01-01"), d("2026-03-05")).unwrap();
        let slices = r.split(30);
        assert_eq!(slices.len(), 3);
        assert_eq!(slices[0], DateRange::new(d("2026-01-01"), d("2026-01-30")).unwrap());
        assert_eq!(slices[2].end, d("2026-03-05"));
        let days: u64 = slices.iter().map(DateRange::days).sum();
        assert_eq!(days, r.days());
        for w in slices.windows(2) {
            assert_eq!(w[0].end.succ_opt().unwrap(), w[1].start);
        }
    }

    #[test]
    fn halve_splits_into_adjacent_parts_and_stops_at_one_day() {
        let r = DateRange::new(d("2026-01-01"), d("2026-01-05")).unwrap();
        let (a, b) = r.halve().unwrap();
        assert_eq!((a.days(), b.days()), (2, 3));
        assert_eq!(a.end.succ_opt().unwrap(), b.start);
        assert!(DateRange::single(d("2026-01-01")).halve().is_none());
    }

    #[test]
    fn a_day_is_complete_only_once_it_is_over_in_the_accounts_time_zone() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        // 00:30 UTC on Jan 21: Los Angeles is still on Jan 20, Berlin on Jan 21.
        let now = at("2026-01-21T00:30:00Z");
        assert_eq!(last_complete_day(Some("America/Los_Angeles"), 0, now), d("2026-01-19"));
        assert_eq!(last_complete_day(Some("Europe/Berlin"), 0, now), d("2026-01-20"));
        assert_eq!(last_complete_day(Some("Pacific/Kiritimati"), 2, now), d("2026-01-18"));
        // An unknown zone waits for the last time zone on Earth.
        assert_eq!(last_complete_day(Some("Mars/Olympus"), 0, now), d("2026-01-19"));
        assert_eq!(last_complete_day(None, 0, at("2026-01-21T12:30:00Z")), d("2026-01-20"));
    }

    #[test]
    fn reversed_and_malformed_dates_are_config_errors() {
        assert!(matches!(
            DateRange::new(d("2026-02-01"), d("2026-01-01")),
            Err(Error::Config(_))
        ));
        assert!(parse_date("2026-13-01").is_err());
        assert!(parse_date("01/02/2026").is_err());
    }
}
