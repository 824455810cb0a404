//! What the store remembers of the past: each deployed revision and each
//! event of the audit log, as the API shows them.

use super::Millis;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Revision {
    pub revision: u64,
    #[serde(with = "super::time_ms")]
    pub deployed_at: Millis,
    pub deployed_by: String,
    pub message: Option<String>,
    pub added: u64,
    pub removed: u64,
    pub changed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditEvent {
    pub seq: u64,
    #[serde(with = "super::time_ms")]
    pub at: Millis,
    pub user: String,
    pub kind: String,
    pub target: Option<String>,
    pub detail: Option<serde_json::Value>,
}
