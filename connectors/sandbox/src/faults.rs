//! Fault injection: `--faults SPEC` makes chosen requests fail the way real
//! platforms do. SPEC is a comma list of `KIND@N` (the N-th API request),
//! `KIND@NxC` (C requests from the N-th on) or `KIND%P` (every P-th request).
//!
//! Kinds: `rate_limit` (the platform's rate-limit error), `server_error`
//! (its 5xx-class error code in an HTTP 200), `http_500`, `http_503` (with
//! `Retry-After: 1`), `slow` (answers after the slow delay, longer than a
//! client's timeout), `truncated` (half the JSON body, with a matching
//! Content-Length), `drop` (the connection closes mid-body),
//! `expired_token` (the platform's expired-token error), `quota` (YouTube
//! Analytics' spent daily quota, final until it resets), and for Meta's async
//! insights `job_failed` and `job_stall` (the job this request creates fails,
//! or never finishes), and `empty` (a successful answer with no rows: TikTok's
//! report, as for a day the platform has not processed; Meta's ads listing).

use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    RateLimit,
    ServerError,
    Http500,
    Http503,
    Slow,
    Truncated,
    Drop,
    ExpiredToken,
    /// YouTube: the project's daily quota is spent (`quotaExceeded`).
    Quota,
    /// Meta: the async job created by this request fails.
    JobFailed,
    /// Meta: the async job created by this request never finishes.
    JobStall,
    /// A successful answer with no rows: TikTok's report, Meta's ads listing
    /// (other requests are served as usual).
    Empty,
}

impl FromStr for FaultKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "rate_limit" => FaultKind::RateLimit,
            "server_error" => FaultKind::ServerError,
            "http_500" => FaultKind::Http500,
            "http_503" => FaultKind::Http503,
            "slow" => FaultKind::Slow,
            "truncated" => FaultKind::Truncated,
            "drop" => FaultKind::Drop,
            "expired_token" => FaultKind::ExpiredToken,
            "quota" => FaultKind::Quota,
            "job_failed" => FaultKind::JobFailed,
            "job_stall" => FaultKind::JobStall,
            "empty" => FaultKind::Empty,
            other => {
                return Err(format!(
                    "unknown fault '{other}': use rate_limit, server_error, http_500, http_503, slow, truncated, drop, expired_token, quota, job_failed, job_stall or empty"
                ))
            }
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    /// Requests `from..from+count` (1-based).
    At {
        from: u64,
        count: u64,
    },
    Every(u64),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultPlan {
    rules: Vec<(FaultKind, When)>,
}

impl FaultPlan {
    pub fn none() -> Self {
        FaultPlan::default()
    }

    /// The fault for the `n`-th request (1-based), if any.
    pub fn fault_for(&self, n: u64) -> Option<FaultKind> {
        self.rules.iter().find_map(|(kind, when)| {
            let hit = match *when {
                When::At { from, count } => n >= from && n < from + count,
                When::Every(p) => n.is_multiple_of(p),
            };
            hit.then_some(*kind)
        })
    }
}

impl FromStr for FaultPlan {
    type Err = String;
    fn from_str(spec: &str) -> Result<Self, String> {
        let mut rules = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let bad = || format!("bad fault '{item}': write KIND@N, KIND@NxCOUNT or KIND%EVERY");
            let rule = if let Some((kind, n)) = item.split_once('@') {
                let (from, count) = match n.split_once('x') {
                    Some((a, b)) => (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?),
                    None => (n.parse().map_err(|_| bad())?, 1),
                };
                if from == 0 {
                    return Err(bad());
                }
                (kind.parse()?, When::At { from, count })
            } else if let Some((kind, p)) = item.split_once('%') {
                let p: u64 = p.parse().map_err(|_| bad())?;
                if p == 0 {
                    return Err(bad());
                }
                (kind.parse()?, When::Every(p))
            } else {
                return Err(bad());
            };
            rules.push(rule);
        }
        Ok(FaultPlan { rules })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_selects_requests() {
        let plan: FaultPlan = "rate_limit@3x2,drop%10,slow@5".parse().unwrap();
        assert_eq!(plan.fault_for(2), None);
        assert_eq!(plan.fault_for(3), Some(FaultKind::RateLimit));
        assert_eq!(plan.fault_for(4), Some(FaultKind::RateLimit));
        assert_eq!(plan.fault_for(5), Some(FaultKind::Slow));
        assert_eq!(plan.fault_for(20), Some(FaultKind::Drop));
        assert!("nope@1".parse::<FaultPlan>().is_err());
        assert!("drop@0".parse::<FaultPlan>().is_err());
    }
}
