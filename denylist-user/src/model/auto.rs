//! Automatic blocking from reports: the policy an admin sets, and the
//! reports applications send.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{Millis, time_ms};

/// The source of the listings reports set off.
pub const AUTO_REPORTS: &str = "auto:reports";
/// Who deploys automatic listings.
pub const AUTO_ACTOR: &str = "auto";
/// A re-offence within this long escalates the TTL.
pub const REOFFENCE_WINDOW_MS: Millis = 30 * 86_400 * 1000;
/// A single report's weight is at most this, so that one report cannot
/// reach any sensible threshold alone.
pub const MAX_REPORT_WEIGHT: u8 = 10;

/// `denylist auto`: when reports become a listing, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
}

impl Default for AutoPolicy {
    fn default() -> Self {
        Self {
            reports: None,
            within: 600,
            ttl: 600,
            escalate: 4,
            max_ttl: 7 * 86_400,
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
