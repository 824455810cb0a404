//! What the store remembers of the past: each deployed revision and each
//! event of the audit log, as the API shows them.

use super::Millis;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Revision {
    pub revision: u64,
    #[serde(with = "super::time_ms")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub deployed_at: Millis,
    pub deployed_by: String,
    pub message: Option<String>,
    pub added: u64,
    pub removed: u64,
    pub changed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEvent {
    pub seq: u64,
    #[serde(with = "super::time_ms")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: Millis,

    pub user: String,
    pub kind: String,
    pub target: Option<String>,
    pub detail: Option<serde_json::Value>,
}

/// Which audit events to show, besides their window: each filter given
/// must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// The user exactly as the log names them.
    pub actor: Option<String>,
    /// The kind exactly, or its first word: `stage` is every `stage ...`.
    pub kind: Option<String>,
    /// At or after this time.
    pub from: Option<Millis>,
    /// Before this time.
    pub to: Option<Millis>,
}

/// A window of the history or of the audit log: what comes after `since`
/// and before `before` (revision or sequence numbers), and of that only the
/// newest `limit`, oldest first. Paging back from the end takes `before`
/// from the first item of the page before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Page {
    pub since: u64,
    pub before: Option<u64>,
    pub limit: Option<u64>,
}
