//! A token bucket per peer uid: what `rate_limited` answers come from.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

/// Reports a peer may send at once, and per minute after that: an
/// application that sees an attack reports each attacker once or a few
/// times, not thousands of times a minute.
pub const REPORT_BURST: u32 = 60;
pub const REPORTS_PER_MINUTE: u32 = 60;

#[derive(Clone, Default)]
pub struct RateLimit {
    buckets: Arc<Mutex<HashMap<u32, (f64, Instant)>>>,
}

impl RateLimit {
    /// Takes one token of `uid`'s bucket; `false` when it is empty.
    pub fn take(&self, uid: u32) -> bool {
        self.take_at(uid, Instant::now())
    }

    fn take_at(&self, uid: u32, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = buckets.entry(uid).or_insert((f64::from(REPORT_BURST), now));
        let refill = now.saturating_duration_since(*last).as_secs_f64()
            * f64::from(REPORTS_PER_MINUTE)
            / 60.0;
        *tokens = (*tokens + refill).min(f64::from(REPORT_BURST));
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let limit = RateLimit::default();
        let t0 = Instant::now();
        for _ in 0..REPORT_BURST {
            assert!(limit.take_at(7, t0));
        }
        assert!(!limit.take_at(7, t0), "the burst is spent");
        assert!(limit.take_at(8, t0), "another peer has its own bucket");
        assert!(!limit.take_at(7, t0 + Duration::from_millis(500)));
        assert!(
            limit.take_at(7, t0 + Duration::from_secs(1)),
            "one a second comes back"
        );
    }
}
