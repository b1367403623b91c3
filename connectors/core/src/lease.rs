//! Leases: one writer at a time for what a stage writes (an extract's account,
//! a transform's output, a load's lake), on any object store.
//!
//! A lease is a file `_leases/{name}/{seq}.json` created with a conditional
//! put (create only if absent: `If-None-Match` on S3 and GCS, a no-clobber
//! rename on disk), so of two runs racing for it exactly one wins. The holder
//! renews it every third of its time to live; a lease whose holder stopped
//! renewing (a killed worker) expires, and the next run takes it over by
//! creating the next sequence number, which again only one run can do. A
//! holder on this machine whose process is gone is taken over at once. A
//! holder that finds a higher sequence number has lost its lease and stops
//! before it commits anything.

use crate::storage::Location;
use crate::{Error, Result};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::{PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a lease lives without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LeaseHolder {
    /// What holds it, e.g. `crest-tiktok extract`.
    pub holder: String,
    pub host: String,
    pub pid: u32,
    pub acquired_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl LeaseHolder {
    fn describe(&self) -> String {
        format!(
            "{} (pid {} on {}, since {})",
            self.holder,
            self.pid,
            self.host,
            self.acquired_at.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }

    /// Expired, or held by a process of this machine that is gone.
    fn is_stale(&self, now: DateTime<Utc>) -> bool {
        self.expires_at <= now
            || (self.host == host_name()
                && self.pid != std::process::id()
                && cfg!(target_os = "linux")
                && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists())
    }
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// A held lease; call [`Lease::release`] when done (a lease not released
/// expires after [`LEASE_TTL`]).
pub struct Lease {
    location: Location,
    dir: String,
    seq: u64,
    lost: Arc<AtomicBool>,
    renewal: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Takes the lease `name` at `location` for `holder`, waiting up to `wait`
    /// for another holder to finish; fails with one line naming the holder.
    pub async fn acquire(location: &Location, name: &str, holder: &str, wait: Duration) -> Result<Lease> {
        Self::acquire_with_ttl(location, name, holder, wait, LEASE_TTL).await
    }

    pub async fn acquire_with_ttl(
        location: &Location,
        name: &str,
        holder: &str,
        wait: Duration,
        ttl: Duration,
    ) -> Result<Lease> {
        let dir = format!("_leases/{name}");
        let deadline = tokio::time::Instant::now() + wait;
        let ttl_chrono = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(60));
        loop {
            let now = Utc::now();
            let current = newest(location, &dir).await?;
            let next_seq = match &current {
                None => 1,
                Some((seq, held)) if held.is_stale(now) => {
                    tracing::warn!(lease = %name, holder = %held.describe(), "taking over a lease its holder stopped renewing");
                    seq + 1
                }
                Some((_, held)) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(Error::Busy(format!(
                            "{name} is being written by {}; wait for it to finish, or pass --wait-for-lease SECS (a killed holder's lease expires {} s after its last renewal)",
                            held.describe(),
                            ttl.as_secs()
                        )));
                    }
                    tracing::info!(lease = %name, holder = %held.describe(), "waiting for the lease");
                    tokio::time::sleep(Duration::from_millis(500).min(ttl / 4)).await;
                    continue;
                }
            };
            let me = LeaseHolder {
                holder: holder.to_string(),
                host: host_name(),
                pid: std::process::id(),
                acquired_at: now,
                expires_at: now + ttl_chrono,
            };
            let path = format!("{dir}/{next_seq:020}.json");
            match create(location, &path, &me).await? {
                true => {
                    let lost = Arc::new(AtomicBool::new(false));
                    let renewal = tokio::spawn(renew(location.clone(), dir.clone(), next_seq, me, ttl, lost.clone()));
                    return Ok(Lease {
                        location: location.clone(),
                        dir,
                        seq: next_seq,
                        lost,
                        renewal,
                    });
                }
                // Another run created it first: look again.
                false => continue,
            }
        }
    }

    /// Fails when another run took the lease over (this one stopped renewing
    /// in time): call before committing anything.
    pub fn check(&self) -> Result<()> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(Error::Busy(format!(
                "{} was taken over by another run while this one worked (it could not renew the lease in time); nothing more was committed: run again",
                self.dir.trim_start_matches("_leases/")
            )));
        }
        Ok(())
    }

    /// Gives the lease up: its file and any older ones are removed.
    pub async fn release(self) {
        self.renewal.abort();
        if self.lost.load(Ordering::SeqCst) {
            return;
        }
        if let Ok(entries) = self.location.list(&self.dir).await {
            for meta in entries {
                let rel = self.location.relative(&meta.location);
                if seq_of(&rel).is_some_and(|s| s <= self.seq) {
                    let _ = self.location.delete(&rel).await;
                }
            }
        }
    }
}

/// A lease dropped without [`Lease::release`] (its run was cancelled) stops
/// renewing and expires, as a killed process's would.
impl Drop for Lease {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

fn seq_of(rel: &str) -> Option<u64> {
    rel.rsplit('/').next()?.strip_suffix(".json")?.parse().ok()
}

/// The lease with the highest sequence number, if any.
async fn newest(location: &Location, dir: &str) -> Result<Option<(u64, LeaseHolder)>> {
    let mut seqs: Vec<(u64, String)> = location
        .list(dir)
        .await?
        .iter()
        .map(|m| location.relative(&m.location))
        .filter_map(|rel| seq_of(&rel).map(|s| (s, rel)))
        .collect();
    seqs.sort();
    while let Some((seq, rel)) = seqs.pop() {
        match location.get(&rel).await? {
            Some(bytes) => match serde_json::from_slice::<LeaseHolder>(&bytes) {
                Ok(holder) => return Ok(Some((seq, holder))),
                // Half-written by a store without atomic puts: treat as expired.
                Err(_) => {
                    return Ok(Some((
                        seq,
                        LeaseHolder {
                            holder: "an unreadable lease".into(),
                            host: String::new(),
                            pid: 0,
                            acquired_at: DateTime::<Utc>::MIN_UTC,
                            expires_at: DateTime::<Utc>::MIN_UTC,
                        },
                    )))
                }
            },
            None => continue,
        }
    }
    Ok(None)
}

/// Creates `path` only if absent: `false` when another run created it first.
async fn create(location: &Location, path: &str, holder: &LeaseHolder) -> Result<bool> {
    let body = serde_json::to_vec_pretty(holder).map_err(|e| Error::storage(format!("cannot encode {path}"), e))?;
    let opts = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    match location
        .store()
        .put_opts(&location.path(path), PutPayload::from_bytes(Bytes::from(body)), opts)
        .await
    {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. }) | Err(object_store::Error::Precondition { .. }) => Ok(false),
        Err(e) => Err(Error::storage(
            format!(
                "cannot take the lease {location}/{path} (the store must support conditional puts, create-if-absent)"
            ),
            e,
        )),
    }
}

/// Renews the lease every third of its time to live, until a newer lease appears.
async fn renew(location: Location, dir: String, seq: u64, mut me: LeaseHolder, ttl: Duration, lost: Arc<AtomicBool>) {
    let path = format!("{dir}/{seq:020}.json");
    let ttl_chrono = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(60));
    loop {
        tokio::time::sleep(ttl / 3).await;
        match newest(&location, &dir).await {
            Ok(Some((newest_seq, _))) if newest_seq > seq => {
                tracing::error!(lease = %dir, "another run took this lease over; stopping before the next commit");
                lost.store(true, Ordering::SeqCst);
                return;
            }
            _ => {}
        }
        me.expires_at = Utc::now() + ttl_chrono;
        if let Ok(body) = serde_json::to_vec_pretty(&me) {
            if let Err(e) = location.put(&path, Bytes::from(body)).await {
                tracing::warn!(lease = %dir, error = %e, "cannot renew the lease; trying again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> Location {
        Location::from_store(Arc::new(object_store::memory::InMemory::new()), "lake", "memory://lake")
    }

    #[tokio::test]
    async fn a_second_holder_fails_at_once_naming_the_first_then_gets_it_after_release() {
        let loc = memory();
        let first = Lease::acquire(&loc, "load", "crest load", Duration::ZERO)
            .await
            .unwrap();
        let e = Lease::acquire(&loc, "load", "crest load", Duration::ZERO)
            .await
            .err()
            .unwrap();
        assert!(matches!(e, Error::Busy(_)), "{e}");
        assert!(
            e.to_string().contains("crest load (pid") && e.to_string().contains("--wait-for-lease"),
            "{e}"
        );
        first.check().unwrap();
        first.release().await;
        let second = Lease::acquire(&loc, "load", "crest load", Duration::ZERO)
            .await
            .unwrap();
        second.release().await;
    }

    #[tokio::test]
    async fn a_waiting_holder_gets_the_lease_when_it_is_released() {
        let loc = memory();
        let first = Lease::acquire(&loc, "t", "a", Duration::ZERO).await.unwrap();
        let waiter = tokio::spawn({
            let loc = loc.clone();
            async move {
                Lease::acquire(&loc, "t", "b", Duration::from_secs(10))
                    .await
                    .map(|_| ())
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        first.release().await;
        waiter.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn an_unrenewed_lease_expires_and_its_old_holder_learns_it_lost() {
        let loc = memory();
        let ttl = Duration::from_millis(300);
        let stuck = Lease::acquire_with_ttl(&loc, "x", "a", Duration::ZERO, ttl)
            .await
            .unwrap();
        // A holder that stopped renewing (its process froze or was killed).
        stuck.renewal.abort();
        tokio::time::sleep(ttl + Duration::from_millis(100)).await;
        let taker = Lease::acquire_with_ttl(&loc, "x", "b", Duration::ZERO, ttl)
            .await
            .unwrap();
        assert_eq!(taker.seq, stuck.seq + 1);
        // Had the old holder kept renewing, it would find the newer lease.
        let lost = Arc::new(AtomicBool::new(false));
        let me = newest(&loc, "_leases/x").await.unwrap().unwrap().1;
        let renewal = tokio::spawn(renew(loc.clone(), "_leases/x".into(), stuck.seq, me, ttl, lost.clone()));
        tokio::time::sleep(ttl).await;
        assert!(lost.load(Ordering::SeqCst));
        renewal.abort();
        taker.release().await;
    }

    #[tokio::test]
    async fn two_racing_holders_never_both_win() {
        let loc = memory();
        let attempts = (0..8).map(|i| {
            let loc = loc.clone();
            tokio::spawn(async move { Lease::acquire(&loc, "race", &format!("run {i}"), Duration::ZERO).await })
        });
        let mut won = 0;
        for a in attempts {
            if a.await.unwrap().is_ok() {
                won += 1;
            }
        }
        assert_eq!(won, 1);
    }
}
