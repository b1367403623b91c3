//! Request pacing. A steady budget (governor's GCRA limiter) keeps a connector
//! under the platform's documented rate; on top of it an adaptive brake slows
//! down as the platform signals it is near its limit (usage headers, a
//! rate-limit answer) instead of running into a storm of rate-limit errors.

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Pacer {
    limiter: Option<DefaultDirectRateLimiter>,
    interval: Duration,
    brake: Mutex<Brake>,
}

#[derive(Default)]
struct Brake {
    /// Nobody sends before this instant (a platform said "wait").
    paused_until: Option<Instant>,
    /// Extra spacing per request, in multiples of the budget's interval.
    slowdown: f64,
}

const MAX_SLOWDOWN: f64 = 8.0;

impl Pacer {
    /// `max_qps` of `None` (or 0) means no steady budget; the brake still applies.
    pub fn new(max_qps: Option<f64>) -> Self {
        let qps = max_qps.filter(|q| *q > 0.0 && q.is_finite());
        // A budget below one request an hour is taken as one an hour.
        let interval = qps.map_or(Duration::from_millis(100), |q| {
            Duration::from_secs_f64((1.0 / q).min(3600.0))
        });
        let limiter = qps.and_then(|_| Quota::with_period(interval)).map(RateLimiter::direct);
        Pacer {
            limiter,
            interval,
            brake: Mutex::new(Brake::default()),
        }
    }

    /// Waits until a request may be sent.
    pub async fn ready(&self) {
        loop {
            let wait = {
                let brake = self.brake.lock().unwrap_or_else(|e| e.into_inner());
                brake
                    .paused_until
                    .and_then(|t| t.checked_duration_since(Instant::now()))
            };
            match wait {
                Some(w) if !w.is_zero() => tokio::time::sleep(w).await,
                _ => break,
            }
        }
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
        let extra = {
            let brake = self.brake.lock().unwrap_or_else(|e| e.into_inner());
            self.interval.mul_f64(brake.slowdown)
        };
        if !extra.is_zero() {
            tokio::time::sleep(extra).await;
        }
    }

    /// The platform reported how much of its budget is used (0.0..=1.0 and beyond).
    /// Below 70 % nothing changes; above it requests are spaced out progressively.
    pub fn observe_usage(&self, used: f64) {
        let mut brake = self.brake.lock().unwrap_or_else(|e| e.into_inner());
        brake.slowdown = if used < 0.7 {
            brake.slowdown * 0.5
        } else {
            (((used - 0.7) / 0.3) * MAX_SLOWDOWN).clamp(0.0, MAX_SLOWDOWN)
        };
    }

    /// The platform said to wait: everyone pauses, and the pace stays slower for a while.
    pub fn rate_limited(&self, wait: Duration) {
        let mut brake = self.brake.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let until = now.checked_add(wait.min(crate::http::MAX_SERVER_WAIT)).unwrap_or(now);
        brake.paused_until = Some(brake.paused_until.map_or(until, |t| t.max(until)));
        brake.slowdown = (brake.slowdown * 2.0).clamp(1.0, MAX_SLOWDOWN);
    }

    /// A request succeeded: the brake eases off.
    pub fn succeeded(&self) {
        let mut brake = self.brake.lock().unwrap_or_else(|e| e.into_inner());
        if brake.slowdown > 0.0 {
            brake.slowdown *= 0.9;
            if brake.slowdown < 0.05 {
                brake.slowdown = 0.0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn budget_spaces_requests() {
        let pacer = Pacer::new(Some(20.0));
        let t = Instant::now();
        for _ in 0..6 {
            pacer.ready().await;
        }
        // 6 requests at 20/s need at least 5 intervals of 50 ms.
        assert!(t.elapsed() >= Duration::from_millis(240), "{:?}", t.elapsed());
    }

    #[tokio::test]
    async fn absurd_budgets_and_waits_are_capped_not_overflowed() {
        let pacer = Pacer::new(Some(1e-300));
        pacer.rate_limited(Duration::MAX);
        let paused = pacer.brake.lock().unwrap().paused_until.unwrap();
        assert!(paused <= Instant::now() + crate::http::MAX_SERVER_WAIT);
        assert!(Pacer::new(Some(f64::INFINITY)).limiter.is_none());
    }

    #[tokio::test]
    async fn rate_limit_pauses_everyone_then_eases() {
        let pacer = Pacer::new(None);
        pacer.rate_limited(Duration::from_millis(150));
        let t = Instant::now();
        pacer.ready().await;
        assert!(t.elapsed() >= Duration::from_millis(140));
        for _ in 0..100 {
            pacer.succeeded();
        }
        let t = Instant::now();
        pacer.ready().await;
        assert!(t.elapsed() < Duration::from_millis(50));
    }
}
