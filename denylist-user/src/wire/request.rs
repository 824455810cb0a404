//! Request bodies of the control API (docs/api.md), shared by the daemon
//! and its clients. Requests refuse unknown fields, so a typo in a script
//! is an error rather than a silently ignored option.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::model::{AttachMode, Format, List, Page, Target};

fn deny() -> List {
    List::Deny
}

/// One target to stage. Its target stays text until the daemon parses it:
/// with `force`, a prefix with host bits set is taken as its network, so
/// how it parses depends on the request around it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StageItem {
    /// An address or CIDR prefix.
    pub target: String,
    #[serde(default = "deny")]
    pub list: List,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A duration (`90s`, `30m`, `24h`, `7d`) or `never`; absent keeps the
    /// entry's TTL (a new deny entry gets `--default-ttl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AddRequest {
    pub entries: Vec<StageItem>,
    /// Pass the guardrails, and normalize prefixes with host bits set.
    #[serde(default)]
    pub force: bool,
    /// Deploy just these changes; other pending changes stay staged.
    #[serde(default)]
    pub deploy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Where the admin is connected from (the CLI's SSH_CONNECTION).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "192.0.2.44"))]
    pub admin_addr: Option<IpAddr>,
    /// Whose listing the entries become: `manual` (the default), or
    /// `import:NAME` for a tool that blocks on an admin's behalf (the
    /// fail2ban action), so that it can remove its own listings alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Check and count, stage nothing and record nothing: the guardrails'
    /// refusals come back in `refused` instead of as a 422.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RemoveRequest {
    pub targets: Vec<Target>,
    #[serde(default = "deny")]
    pub list: List,
    #[serde(default)]
    pub deploy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Remove just this source's listing (`feed:NAME`, `auto:reports`...);
    /// without it, the `manual` and `import:*` listings go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Switches existing deny entries between enforcing and monitor mode.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ModeRequest {
    pub targets: Vec<Target>,
    pub monitor: bool,
    #[serde(default)]
    pub deploy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Key {
    pub target: Target,
    #[serde(default = "deny")]
    pub list: List,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
    /// Deploy only these pending changes; the rest stay staged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only: Option<Vec<Key>>,
    /// The `draft_seq` the caller reviewed (`GET /v1/diff`): if the draft
    /// changed since, nothing is deployed and the answer is 409.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_seq: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    pub revision: u64,
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub deploy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AttachRequest {
    pub iface: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xdp_mode: Option<AttachMode>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DetachRequest {
    pub iface: String,
}

/// Query parameters of `POST /v1/import`; the body is the file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::IntoParams),
    into_params(parameter_in = Query)
)]
#[serde(deny_unknown_fields)]
pub struct ImportParams {
    #[serde(default)]
    #[cfg_attr(feature = "openapi", param(inline))]
    pub format: Format,
    /// Entries become `import:SOURCE`; default `stdin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The list of every entry (default deny); not for `json`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", param(inline))]
    pub list: Option<List>,

    /// The draft's entries from this source become exactly the file's.
    #[serde(default)]
    pub replace: bool,
    /// The reason of every entry, instead of the file's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The TTL of every entry: a duration or `never`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// Let in lines the guardrails refuse.
    #[serde(default)]
    pub force: bool,
    /// Leave out invalid lines instead of refusing the import.
    #[serde(default)]
    pub skip_invalid: bool,
    /// Leave out refused lines instead of refusing the import.
    #[serde(default)]
    pub skip_guarded: bool,
    /// Deploy this import's changes now.
    #[serde(default)]
    pub deploy: bool,
    /// Where the admin is connected from; a deny entry covering it is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<String>))]
    pub admin_addr: Option<IpAddr>,
}

/// The query of `GET /v1/history` and `GET /v1/audit`: revisions or events
/// numbered after `since` and before `before`, the newest `limit` of them,
/// oldest first. With no `limit`, the whole window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::IntoParams),
    into_params(parameter_in = Query)
)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Only what is numbered above this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// Only what is numbered below this: the first number of the page
    /// after, to page back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<u64>,
    /// Only the newest this many of those, still oldest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

impl From<PageQuery> for Page {
    fn from(q: PageQuery) -> Self {
        Self {
            since: q.since.unwrap_or(0),
            before: q.before,
            limit: q.limit,
        }
    }
}
