//! Incremental state (`--state URL`): per account, the last date whose data is
//! committed. A scheduled run starts from that date minus a lookback, because
//! platforms restate recent conversions; state only advances after a slice's
//! files are committed. Give each Airflow task (platform × account) its own
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

    /// The part of `requested` this run should read for `account`: from the day
    /// after the last completed date, minus `lookback_days`, never before the request.
    pub fn effective_range(&self, account: &str, requested: DateRange, lookback_days: u32) -> Option<DateRange> {
        match self.state.accounts.get(account) {
            None => Some(requested),
            Some(s) => {
                let from = s
                    .last_completed_date
                    .succ_opt()
                    .and_then(|d| d.checked_sub_days(Days::new(lookback_days as u64)))
                    .unwrap_or(requested.start);
                requested.from_day(from)
            }
        }
    }

    /// Records that `account` is complete through `date` (never moves backwards).
    pub async fn advance(&mut self, account: &str, date: NaiveDate, run_id: &str) -> Result<()> {
        let entry = self.state.accounts.get(account);
        if entry.is_some_and(|e| e.last_completed_date >= date) {
            return Ok(());
        }
        self.state.accounts.insert(
            account.to_string(),
            AccountState {
                last_completed_date: date,
                run_id: run_id.to_string(),
                updated_at: Utc::now(),
            },
        );
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

    #[tokio::test]
    async fn lookback_rereads_recent_days_and_state_only_moves_forward() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("state/tiktok.json");
        let url = url.to_str().unwrap();
        let req = DateRange::new(parse_date("2026-01-01").unwrap(), parse_date("2026-01-31").unwrap()).unwrap();
        let mut store = StateStore::open(url).await.unwrap();
        assert_eq!(store.effective_range("a", req, 7), Some(req));
        store
            .advance("a", parse_date("2026-01-20").unwrap(), "r1")
            .await
            .unwrap();
        store
            .advance("a", parse_date("2026-01-10").unwrap(), "r0")
            .await
            .unwrap();

        let store = StateStore::open(url).await.unwrap();
        let eff = store.effective_range("a", req, 7).unwrap();
        assert_eq!(eff.start, parse_date("2026-01-14").unwrap());
        assert_eq!(eff.end, req.end);
        assert_eq!(store.effective_range("b", req, 7), Some(req));
        let done = DateRange::new(parse_date("2025-12-01").unwrap(), parse_date("2025-12-31").unwrap()).unwrap();
        assert_eq!(store.effective_range("a", done, 7), None);
    }
}
