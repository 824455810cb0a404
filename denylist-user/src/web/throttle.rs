//! Login throttling: after 5 failures for one user name within 15 minutes,
//! further attempts for that name are refused (429) until the oldest
//! failure ages out. Names are counted whether or not an account has
//! them, so the throttle tells nothing about which names exist.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

pub const FAILURES: usize = 5;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Names tracked at once: past it, names without a recent failure are
/// forgotten first, so a flood of made-up names cannot fill memory.
const MAX_NAMES: usize = 100_000;

#[derive(Default)]
pub struct Throttle {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// The key a name is counted under: a long name is cut, so each key is
/// small whatever is posted.
fn key(name: &str) -> String {
    name.chars().take(64).collect()
}

impl Throttle {
    /// Whether attempts for `name` are refused now.
    pub fn blocked(&self, name: &str, now: Instant) -> bool {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(&key(name)) {
            Some(times) => {
                prune(times, now);
                times.len() >= FAILURES
            }
            None => false,
        }
    }

    pub fn fail(&self, name: &str, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_NAMES {
            map.retain(|_, times| {
                prune(times, now);
                !times.is_empty()
            });
        }
        let times = map.entry(key(name)).or_default();
        prune(times, now);
        times.push_back(now);
    }

    /// A successful sign-in clears the name's failures.
    pub fn succeed(&self, name: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key(name));
    }
}

fn prune(times: &mut VecDeque<Instant>, now: Instant) {
    while times
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
    {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sixth_attempt_within_15_minutes_is_refused() {
        let t = Throttle::default();
        let t0 = Instant::now();
        for i in 0..5 {
            assert!(!t.blocked("alice", t0), "attempt {}", i + 1);
            t.fail("alice", t0 + Duration::from_secs(i * 60));
        }
        assert!(t.blocked("alice", t0 + Duration::from_secs(300)));
        // Other names are not affected.
        assert!(!t.blocked("bob", t0));
        // The first failure ages out 15 minutes after it happened.
        assert!(t.blocked("alice", t0 + WINDOW - Duration::from_secs(1)));
        assert!(!t.blocked("alice", t0 + WINDOW));
    }

    #[test]
    fn unknown_names_are_throttled_alike_and_success_clears() {
        let t = Throttle::default();
        let now = Instant::now();
        for _ in 0..5 {
            t.fail("nobody-has-this-name", now);
            t.fail("alice", now);
        }
        assert!(t.blocked("nobody-has-this-name", now));
        t.succeed("alice");
        assert!(!t.blocked("alice", now));
    }
}
