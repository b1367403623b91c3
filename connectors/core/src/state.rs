//! Incremental state (`--state URL`): per account, the last date whose data is
//! committed *and complete* (the day was over in the account's time zone and
//! served by the platform). Every scheduled run re-reads from that date minus
//! a lookback, even when that is before `--start`, because platforms restate
//! recent conversions for as long as their attribution windows; days read
//! while not yet complete are kept as `provisional` and fall inside the next
//! run's re-read. State only advances after the checkpoint naming a slice's
//! files is durable. Give each Airflow task (platform × account) its own
//! state file: the file is read-modify-written by one run at a time.

use crate::storage::Location;
use crate::window::DateRange;
use crate::{Error, Result};
use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct IncrementalState {
    pub version: u32,
    pub accounts: BTreeMap<String, AccountState>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccountState {
    pub last_completed_date: NaiveDate,
    pub run_id: String,
    pub updated_at: DateTime<Utc>,
    /// Days committed after `last_completed_date` that were not complete yet
    /// (still under way in the account's time zone, or not served): re-read
    /// by the next run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provisional: Vec<NaiveDate>,
}

/// What one account's run reads, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedRead {
    pub range: DateRange,
    /// Set when the read starts before `--start` to re-read days the platform
    /// may have restated (or that were provisional): the first such day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reread_from: Option<NaiveDate>,
}

pub struct StateStore {
    location: Location,
    name: String,
    url: String,
    state: IncrementalState,
}

impl StateStore {
    /// Opens the state at `url` (a JSON file; a missing file is an empty state).
    pub async fn open(url: &str) -> Result<Self> {
        let url = url.trim();
        let (location, name) = crate::storage::split_file(url, true)?;
        let state: IncrementalState = location.get_json(&name).await?.unwrap_or(IncrementalState {
            version: 1,
            accounts: BTreeMap::new(),
        });
        if state.version > 1 {
            return Err(Error::Config(format!(
                "--state {url} was written by a newer crest (version {}); upgrade crest",
                state.version
            )));
        }
        Ok(StateStore {
            location,
            name: name.to_string(),
            url: url.to_string(),
            state,
        })
    }

    pub fn state(&self) -> &IncrementalState {
        &self.state
    }

    /// What this run reads for `account`: the requested range, widened back to
    /// the day after the last completed date minus `lookback_days` when that
    /// is earlier, so a daily `--start {{ds}} --end {{ds}}` task re-reads the
    /// days a platform restates. An old interval asked for again is read again.
    pub fn planned_read(&self, account: &str, requested: DateRange, lookback_days: u32) -> PlannedRead {
        let Some(s) = self.state.accounts.get(account) else {
            return PlannedRead {
                range: requested,
                reread_from: None,
            };
        };
        let first_incomplete = s.last_completed_date.succ_opt().unwrap_or(s.last_completed_date);
        let from = first_incomplete
            .checked_sub_days(Days::new(lookback_days as u64))
            .unwrap_or(first_incomplete);
        if from < requested.start && first_incomplete <= requested.end.succ_opt().unwrap_or(requested.end) {
            PlannedRead {
                range: DateRange {
                    start: from,
                    end: requested.end,
                },
                reread_from: Some(from),
            }
        } else {
            PlannedRead {
                range: requested,
                reread_from: None,
            }
        }
    }

    /// Records `account`'s committed slices: complete through `complete` (never
    /// moves backwards), with `provisional` days after it. Call only once the
    /// checkpoint naming the slices' files is durable.
    pub async fn advance(
        &mut self,
        account: &str,
        complete: Option<NaiveDate>,
        provisional: &[NaiveDate],
        run_id: &str,
    ) -> Result<()> {
        let entry = self.state.accounts.get(account);
        let last = match (entry.map(|e| e.last_completed_date), complete) {
            (Some(old), Some(new)) => old.max(new),
            (Some(old), None) => old,
            (None, Some(new)) => new,
            // Nothing complete yet and no earlier state: the next run reads the
            // same range again, which is what an absent state means.
            (None, None) => return Ok(()),
        };
        let mut days: Vec<NaiveDate> = entry.map(|e| e.provisional.clone()).unwrap_or_default();
        days.extend_from_slice(provisional);
        days.retain(|d| *d > last);
        days.sort();
        days.dedup();
        let next = AccountState {
            last_completed_date: last,
            run_id: run_id.to_string(),
            updated_at: Utc::now(),
            provisional: days,
        };
        if entry.is_some_and(|e| e.last_completed_date == next.last_completed_date && e.provisional == next.provisional)
        {
            return Ok(());
        }
        self.state.accounts.insert(account.to_string(), next);
        self.location
            .put_json(&self.name, &self.state)
            .await
            .map_err(|e| Error::Storage(format!("cannot save --state {}: {e}", self.url)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::parse_date;

    fn d(s: &str) -> NaiveDate {
        parse_date(s).unwrap()
    }

    fn range(a: &str, b: &str) -> DateRange {
        DateRange::new(d(a), d(b)).unwrap()
    }

    #[tokio::test]
    async fn a_daily_run_rereads_the_lookback_before_its_start_and_state_only_moves_forward() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("state/tiktok.json");
        let url = url.to_str().unwrap();
        let mut store = StateStore::open(url).await.unwrap();
        let first = store.planned_read("a", range("2026-01-01", "2026-01-20"), 7);
        assert_eq!(
            (first.range, first.reread_from),
            (range("2026-01-01", "2026-01-20"), None)
        );
        store.advance("a", Some(d("2026-01-20")), &[], "r1").await.unwrap();
        store.advance("a", Some(d("2026-01-10")), &[], "r0").await.unwrap();

        let store = StateStore::open(url).await.unwrap();
        // Airflow's `--start {{ ds }} --end {{ ds }}`: the day plus 7 restated days before it.
        let daily = store.planned_read("a", range("2026-01-21", "2026-01-21"), 7);
        assert_eq!(daily.range, range("2026-01-14", "2026-01-21"));
        assert_eq!(daily.reread_from, Some(d("2026-01-14")));
        // An unknown account reads what was asked.
        assert_eq!(
            store.planned_read("b", range("2026-01-21", "2026-01-21"), 7).range,
            range("2026-01-21", "2026-01-21")
        );
        // An old interval asked for again (a backfill) is read again, not skipped.
        let old = store.planned_read("a", range("2025-12-01", "2025-12-31"), 7);
        assert_eq!((old.range, old.reread_from), (range("2025-12-01", "2025-12-31"), None));
    }

    #[tokio::test]
    async fn provisional_days_stay_after_the_last_complete_date_until_complete() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("state.json");
        let url = url.to_str().unwrap();
        let mut store = StateStore::open(url).await.unwrap();
        store
            .advance("a", Some(d("2026-01-19")), &[d("2026-01-20")], "r1")
            .await
            .unwrap();
        let saved = StateStore::open(url).await.unwrap();
        let a = &saved.state().accounts["a"];
        assert_eq!(
            (a.last_completed_date, a.provisional.clone()),
            (d("2026-01-19"), vec![d("2026-01-20")])
        );
        // The provisional day is read again by the next daily run, even with no lookback.
        assert_eq!(
            saved.planned_read("a", range("2026-01-21", "2026-01-21"), 0).range,
            range("2026-01-20", "2026-01-21")
        );
        store.advance("a", Some(d("2026-01-20")), &[], "r2").await.unwrap();
        assert!(store.state().accounts["a"].provisional.is_empty());
        // A run with nothing complete and no earlier state records nothing.
        store.advance("b", None, &[d("2026-01-21")], "r2").await.unwrap();
        assert!(!store.state().accounts.contains_key("b"));
    }
}
