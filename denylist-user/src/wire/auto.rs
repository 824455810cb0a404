//! The bodies of automatic blocking: feed subscriptions and reports from
//! applications.

use serde::{Deserialize, Serialize};

use crate::model::{AutoPolicy, Format, RateDecision, RateMode, Target};

/// `denylist feed add`: every field but the name may be left out (a
/// preset gives the URL, the format and the interval).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FeedAddRequest {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// A duration, at least `1m` [default: the preset's, or `1h`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// [default: 3 × every]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_after: Option<String>,
    #[serde(default)]
    pub monitor: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_entries: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_change: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_width: Option<u8>,
    #[serde(default)]
    pub allow_empty: bool,
    #[serde(default)]
    pub review: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_file: Option<String>,
}

/// `denylist report IP --reason TEXT [--weight N]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "198.51.100.7"))]
    pub ip: std::net::IpAddr,
    pub reason: String,
    /// 1 to 10 [default: 1].
    #[serde(default = "one")]
    pub weight: u8,
}

fn one() -> u8 {
    1
}

/// What a report did.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportResponse {
    pub seq: u64,
    /// The address's report weight within the window, this one included.
    pub weight: u64,
    pub threshold: u64,
    /// The listing it set off (`auto:reports`), if it reached the threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<Target>,
    /// Its TTL in seconds, escalated for a re-offence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    /// Why the guardrails refused to list it, when they did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// `denylist auto set`: the automatic blocking policy. Absent fields keep
/// their value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AutoSetRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reports: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalate: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ttl: Option<String>,
    /// The rate detector's mode; `enforce` also resets a tripped circuit
    /// breaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<RateMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pps: Option<u64>,
    /// Bits per second; 0 removes the threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_minute: Option<u32>,
    /// Replaces the protected prefixes; an empty list clears them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protect: Option<Vec<String>>,
}

/// `denylist auto`: the policy, and what the rate detector has done.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AutoStatus {
    #[serde(flatten)]
    pub policy: AutoPolicy,
    /// Live `auto:rate` listings, deployed.
    pub active: u64,
    /// The latest decisions, newest first.
    pub recent: Vec<RateDecision>,
    /// Reports the kernel could not send to the daemon (a cap or a full
    /// ring buffer), since the program was loaded.
    pub events_dropped: u64,
}
