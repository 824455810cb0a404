//! Response bodies of the control API (docs/api.md).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::model::{AttachMode, AttachedMode, Entry, Format, List, Millis, Target, Verdict};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Counts {
    pub added: u64,
    pub removed: u64,
    pub changed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeployResponse {
    pub seq: Option<u64>,
    /// The new revision; `None` when nothing was pending or on a dry run.
    pub revision: Option<u64>,
    #[serde(flatten)]
    pub counts: Counts,
    pub dry_run: bool,
    pub nothing_pending: bool,
    pub duration_ms: u64,
    /// Where the time went: reading the plan from the store, writing the
    /// kernel maps, committing the revision.
    #[serde(default)]
    pub phases_ms: DeployPhases,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeployPhases {
    pub plan: u64,
    pub kernel: u64,
    pub commit: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StageResponse {
    /// The audit event's; `null` on a dry run, which records nothing.
    pub seq: Option<u64>,
    #[serde(flatten)]
    pub counts: Counts,
    /// Targets as stored, e.g. a forced prefix in its normal form.
    pub targets: Vec<Target>,
    pub warnings: Vec<String>,
    /// On a dry run, what the guardrails would refuse (a real add answers
    /// 422 instead); empty otherwise.
    #[serde(default)]
    pub refused: Vec<Refusal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed: Option<DeployResponse>,
}

/// A guardrail's refusal of one target, as a dry run lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Refusal {
    pub target: Target,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeqResponse {
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RollbackResponse {
    pub seq: u64,
    /// Entries of the revision left out because they have expired since.
    pub expired: Vec<Target>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed: Option<DeployResponse>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckResponse {
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "198.51.100.7"))]
    pub ip: IpAddr,
    pub verdict: Verdict,
    /// The entry that decided the verdict.
    pub entry: Option<Target>,
    /// The allow entry that protects the address, if any.
    pub allowed_by: Option<Target>,
    /// The sources of the deciding entry's listings (`entry` or
    /// `allowed_by`); empty when none decided.
    #[serde(default)]
    pub sources: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Interface {
    pub name: String,
    /// `native` or `skb`; `null` while the interface is missing.
    pub xdp_mode: Option<AttachedMode>,
    pub configured: AttachMode,
    pub attached: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusCounters {
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
    pub passed_packets: u64,
    pub passed_bytes: u64,
    pub monitored_packets: u64,
    pub allowed_packets: u64,
    pub unparsable_packets: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ListCounts {
    pub deny: u64,
    pub allow: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Capacity {
    pub total: u64,
    pub used: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Status {
    pub revision: u64,
    pub pending_changes: u64,
    pub interfaces: Vec<Interface>,
    pub entries: ListCounts,
    pub capacity: Capacity,
    pub counters: StatusCounters,
    /// Drift found by the last verify and not repaired.
    pub drift: u64,
    pub degraded: bool,
    /// One sentence per cause of `degraded`; empty when it is false.
    #[serde(default)]
    pub degraded_reasons: Vec<String>,
    /// The `seq` of the audit event that last changed the draft: what a
    /// deploy's `expect_seq` is checked against.
    #[serde(default)]
    pub draft_seq: u64,
    /// What is worth knowing but is no fault, e.g. no interface configured
    /// (a fresh install): `degraded` stays false.
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Diff {
    pub added: Vec<Staged<Entry>>,
    pub removed: Vec<Staged<Entry>>,
    pub changed: Vec<Staged<Change>>,
    /// The `seq` of the audit event that last changed the draft: give it
    /// to the deploy as `expect_seq` to ship exactly what was reviewed.
    #[serde(default)]
    pub draft_seq: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Change {
    pub before: Entry,
    pub after: Entry,
}

/// An item of the diff, with who staged it and when.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Staged<T> {
    #[serde(flatten)]
    pub item: T,
    pub staged_by: String,
    #[serde(with = "crate::model::time_ms")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub staged_at: Millis,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatItem {
    pub target: Target,
    pub list: List,
    pub packets: u64,
    pub bytes: u64,
    #[serde(with = "crate::model::time_ms::opt")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub last_hit: Option<Millis>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyResponse {
    pub seq: Option<u64>,
    pub drift: Vec<Target>,
    pub repaired: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportResponse {
    pub seq: u64,
    pub format: Format,
    pub source: String,
    /// Distinct targets in the file.
    pub entries: u64,
    #[serde(flatten)]
    pub counts: Counts,
    pub skipped_invalid: u64,
    pub skipped_guarded: Vec<Target>,
    /// Parsing and checking the file, then staging it in the store (and
    /// deploying it, with `deploy`).
    #[serde(default)]
    pub parse_ms: u64,
    #[serde(default)]
    pub stage_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed: Option<DeployResponse>,
}
