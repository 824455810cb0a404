//! The verdict function, in plain Rust: the contract the XDP program keeps,
//! and what `check` answers. The differential tests hold the kernel to it.
//!
//! 1. An entry whose expiry has passed is absent; the next most specific
//!    entry covering the address decides.
//! 2. Any live allow entry covering the address: pass, counted as allowed.
//! 3. Otherwise the most specific live deny entry decides: drop if it is
//!    enforcing, monitor (would drop, passes) if it is in monitor mode. An
//!    exact address is more specific than any prefix.
//! 4. Otherwise pass.
//! 5. The deciding entry's counters go up; for an allowed packet that is the
//!    most specific live allow entry.
//!
//! The kernel looks past at most [`MAX_FALLBACK`] expired prefixes of a list
//! for one address; deeper chains of expired prefixes wait for the daemon's
//! expiry sweep. The model keeps the same bound, so the two never disagree.

use std::net::IpAddr;

use denylist_common::MAX_FALLBACK;

use super::{Target, normal_ip};

/// Which list an entry is on.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum List {
    Deny,
    Allow,
}

/// What happens to a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// No entry covers the source.
    Pass,
    Drop,
    /// A monitor-mode deny entry matched: counted as "would drop", passes.
    Monitor,
    /// An allow entry covers the source.
    Allowed,
}

impl Verdict {
    /// The name in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Drop => "drop",
            Verdict::Monitor => "monitor",
            Verdict::Allowed => "allowed",
        }
    }
}

/// An entry as the data plane sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The id whose hit counters go up.
    pub id: u32,
    pub target: Target,
    pub list: List,
    pub monitor: bool,
    /// Expiry in CLOCK_TAI milliseconds; `None` never expires.
    pub expires_ms: Option<u64>,
}

impl Rule {
    /// What the rule is kept under: its target on its list.
    pub fn key(&self) -> (Target, List) {
        (self.target, self.list)
    }

    pub fn live_at(&self, now_tai_ns: u64) -> bool {
        self.expires_ms
            .is_none_or(|ms| u128::from(now_tai_ns) < u128::from(ms) * 1_000_000)
    }
}

/// The verdict and the entry that decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'a> {
    pub verdict: Verdict,
    pub rule: Option<&'a Rule>,
}

/// The verdict for a packet from `ip` at `now_tai_ns`.
pub fn decide(rules: &[Rule], ip: IpAddr, now_tai_ns: u64) -> Decision<'_> {
    let ip = normal_ip(ip);
    if let Some(a) = most_specific_live(rules, ip, List::Allow, now_tai_ns) {
        return Decision {
            verdict: Verdict::Allowed,
            rule: Some(a),
        };
    }
    match most_specific_live(rules, ip, List::Deny, now_tai_ns) {
        Some(d) => Decision {
            verdict: if d.monitor {
                Verdict::Monitor
            } else {
                Verdict::Drop
            },
            rule: Some(d),
        },
        None => Decision {
            verdict: Verdict::Pass,
            rule: None,
        },
    }
}

fn most_specific_live(rules: &[Rule], ip: IpAddr, list: List, now: u64) -> Option<&Rule> {
    let mut covering: Vec<&Rule> = rules
        .iter()
        .filter(|r| r.list == list && r.target.contains(ip))
        .collect();
    covering.sort_by_key(|r| std::cmp::Reverse(r.target.prefix_len()));
    let (exact, prefixes): (Vec<&Rule>, Vec<&Rule>) =
        covering.into_iter().partition(|r| r.target.is_exact());
    exact
        .into_iter()
        .chain(prefixes.into_iter().take(MAX_FALLBACK as usize))
        .find(|r| r.live_at(now))
}

impl List {
    pub fn as_str(self) -> &'static str {
        match self {
            List::Deny => "deny",
            List::Allow => "allow",
        }
    }
}

impl std::str::FromStr for List {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "deny" => Ok(List::Deny),
            "allow" => Ok(List::Allow),
            other => Err(format!("unknown list {other:?}: use deny or allow")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: u32, t: &str, list: List, monitor: bool, expires_ms: Option<u64>) -> Rule {
        Rule {
            id,
            target: Target::parse(t).unwrap(),
            list,
            monitor,
            expires_ms,
        }
    }

    fn v(rules: &[Rule], ip: &str, now_ms: u64) -> (Verdict, Option<u32>) {
        let d = decide(rules, ip.parse().unwrap(), now_ms * 1_000_000);
        (d.verdict, d.rule.map(|r| r.id))
    }

    #[test]
    fn allow_beats_any_deny_and_most_specific_deny_decides() {
        let rules = [
            rule(1, "203.0.113.0/24", List::Deny, false, None),
            rule(2, "203.0.113.128/25", List::Deny, true, None),
            rule(3, "203.0.113.200", List::Deny, false, None),
            rule(4, "203.0.0.0/16", List::Allow, false, None),
            rule(5, "198.51.100.0/24", List::Deny, false, None),
            rule(6, "198.51.100.7", List::Allow, false, None),
        ];
        assert_eq!(v(&rules, "203.0.113.1", 0), (Verdict::Allowed, Some(4)));
        assert_eq!(v(&rules, "198.51.100.1", 0), (Verdict::Drop, Some(5)));
        assert_eq!(v(&rules, "198.51.100.7", 0), (Verdict::Allowed, Some(6)));
        assert_eq!(v(&rules, "192.0.2.1", 0), (Verdict::Pass, None));
        let deny_only = &rules[..3];
        assert_eq!(v(deny_only, "203.0.113.1", 0), (Verdict::Drop, Some(1)));
        assert_eq!(
            v(deny_only, "203.0.113.129", 0),
            (Verdict::Monitor, Some(2))
        );
        assert_eq!(v(deny_only, "203.0.113.200", 0), (Verdict::Drop, Some(3)));
    }

    #[test]
    fn expired_entries_fall_back_to_the_next_most_specific() {
        let rules = [
            rule(1, "203.0.113.0/24", List::Deny, true, None),
            rule(2, "203.0.113.9", List::Deny, false, Some(1_000)),
            rule(3, "203.0.113.9", List::Allow, false, Some(500)),
        ];
        assert_eq!(v(&rules, "203.0.113.9", 499), (Verdict::Allowed, Some(3)));
        assert_eq!(v(&rules, "203.0.113.9", 500), (Verdict::Drop, Some(2)));
        assert_eq!(v(&rules, "203.0.113.9", 1_000), (Verdict::Monitor, Some(1)));
    }

    #[test]
    fn fallback_looks_past_a_bounded_number_of_expired_prefixes() {
        let mut rules: Vec<Rule> = (0..=MAX_FALLBACK)
            .map(|i| {
                let len = 24 - i;
                rule(
                    i + 1,
                    &format!("10.0.0.0/{len}"),
                    List::Deny,
                    false,
                    Some(1),
                )
            })
            .collect();
        assert_eq!(v(&rules, "10.0.0.1", 2), (Verdict::Pass, None));
        rules[MAX_FALLBACK as usize - 1].expires_ms = None;
        assert_eq!(
            v(&rules, "10.0.0.1", 2),
            (Verdict::Drop, Some(MAX_FALLBACK))
        );
    }

    #[test]
    fn mapped_sources_match_ipv4_entries() {
        let rules = [rule(1, "198.51.100.0/24", List::Deny, false, None)];
        assert_eq!(
            v(&rules, "::ffff:198.51.100.3", 0),
            (Verdict::Drop, Some(1))
        );
    }
}
