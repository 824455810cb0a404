//! Automatic blocking from reports and from the rate detector: the policy
//! an admin sets, the reports applications send, and what the detector
//! decided.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{Millis, Target, Verdict, time_ms};

/// The source of the listings reports set off.
pub const AUTO_REPORTS: &str = "auto:reports";
/// The source of the listings the rate detector sets off.
pub const AUTO_RATE: &str = "auto:rate";
/// Decisions `denylist auto` keeps.
pub const RECENT_DECISIONS: usize = 100;

/// What the rate detector does with an offender.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum RateMode {
    /// Nothing is counted.
    Off,
    /// Everything is counted; offenders are recorded, not listed.
    #[default]
    Monitor,
    /// Offenders are listed by `auto:rate` and deployed at once.
    Enforce,
}

impl RateMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Monitor => "monitor",
            Self::Enforce => "enforce",
        }
    }
}
/// Who deploys automatic listings.
pub const AUTO_ACTOR: &str = "auto";
/// A re-offence within this long escalates the TTL.
pub const REOFFENCE_WINDOW_MS: Millis = 30 * 86_400 * 1000;
/// A single report's weight is at most this, so that one report cannot
/// reach any sensible threshold alone.
pub const MAX_REPORT_WEIGHT: u8 = 10;

/// `denylist auto`: when reports and rates become a listing, and for how
/// long. A policy stored before the rate detector reads with its defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct AutoPolicy {
    /// Report weight within `within` that lists an address; `None` keeps
    /// reports from listing anything (they are still recorded).
    pub reports: Option<u64>,
    /// Seconds.
    pub within: u64,
    /// Seconds of the first listing.
    pub ttl: u64,
    /// Each re-offence within 30 days multiplies the TTL by this.
    pub escalate: u32,
    /// Seconds: the TTL never grows past it.
    pub max_ttl: u64,
    /// The rate detector's mode.
    pub mode: RateMode,
    /// Packets per second from one source (an IPv6 /64) that make it an
    /// offender.
    pub pps: u64,
    /// Bits per second that do, `None` for no such threshold.
    pub bps: Option<u64>,
    /// More new `auto:rate` listings than this in a minute trip the
    /// circuit breaker: the mode goes back to monitor.
    pub max_per_minute: u32,
    /// Never listed by the detector, beside what the guardrails protect.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub protect: Vec<Target>,
    /// The circuit breaker tripped; `auto set --mode enforce` resets it.
    pub tripped: bool,
}

impl Default for AutoPolicy {
    fn default() -> Self {
        Self {
            reports: None,
            within: 600,
            ttl: 600,
            escalate: 4,
            max_ttl: 7 * 86_400,
            mode: RateMode::Monitor,
            pps: 10_000,
            bps: None,
            max_per_minute: 100,
            protect: Vec::new(),
            tripped: false,
        }
    }
}

impl AutoPolicy {
    /// The TTL of an address's `offence`th listing within the window
    /// (the first is 1).
    pub fn ttl_for(&self, offence: u32) -> u64 {
        let factor = u64::from(self.escalate.max(1)).saturating_pow(offence.saturating_sub(1));
        self.ttl.saturating_mul(factor).min(self.max_ttl)
    }
}

/// What the detector did with an offender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RateAction {
    /// Listed by `auto:rate` and deployed.
    Listed,
    /// Over the threshold in monitor mode.
    WouldBlock,
    /// Over the threshold, but allowed or under a guardrail.
    Protected,
    /// Over the threshold while the circuit breaker held listings back, or
    /// when listing it failed.
    Suppressed,
}

impl RateAction {
    /// How `denylist auto` and the console say it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Listed => "listed",
            Self::WouldBlock => "would block",
            Self::Protected => "protected",
            Self::Suppressed => "suppressed",
        }
    }
}

/// One decision of the detector's, as `denylist auto` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RateDecision {
    pub source: Target,
    pub pps: u64,
    pub bps: u64,
    #[serde(with = "time_ms")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: Millis,
    pub action: RateAction,
    /// Why, for a protected or suppressed source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// One of the heaviest sources, as `denylist top` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TopSource {
    /// The address, or the /64 of an IPv6 source.
    pub source: Target,
    /// Packets and bits per second in the last epoch it was seen in.
    pub pps: u64,
    pub bps: u64,
    /// What the kernel does with its packets now.
    pub verdict: Verdict,
    /// A deny entry covers it.
    pub listed: bool,
    /// Who listed the entry that decides its verdict.
    pub sources: Vec<String>,
}

/// One report, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Report {
    pub seq: u64,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "198.51.100.7"))]
    pub ip: IpAddr,
    pub reason: String,
    pub weight: u8,
    pub reporter: String,
    #[serde(with = "time_ms")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: Millis,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ttl_escalates_up_to_the_cap() {
        let p = AutoPolicy::default();
        assert_eq!(p.ttl_for(1), 600);
        assert_eq!(p.ttl_for(2), 2_400);
        assert_eq!(p.ttl_for(3), 9_600);
        assert_eq!(p.ttl_for(9), 7 * 86_400);
        assert_eq!(p.ttl_for(100), 7 * 86_400, "no overflow");
    }
}
