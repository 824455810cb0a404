//! The console's queries: one page of entries at a time, a revision's
//! diff, and the audit log filtered (docs/api.md). A page is a JSON object
//! rather than a stream: 500 entries at most, and the cursor to go on.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::Change;
use crate::model::{AuditFilter, Entry, List, Millis, Page, Revision};

fn deny() -> List {
    List::Deny
}

fn yes() -> bool {
    true
}

/// Entries a page holds unless `limit` says otherwise.
pub const PAGE_DEFAULT: u32 = 50;
/// The most a page holds.
pub const PAGE_MAX: u32 = 500;
/// Items of each kind a revision's diff holds unless `limit` says otherwise.
pub const REVISION_DIFF_DEFAULT: u64 = 1000;

/// How an entry acts on a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum EntryMode {
    /// Drops (deny) or passes (allow) the packet.
    Enforce,
    /// Counts the packet and passes it (deny entries only).
    Monitor,
}

/// The order of a page. Ties of a value go in address order, whichever
/// the direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PageSort {
    /// Address order: IPv4 before IPv6, then by address, then by length.
    #[default]
    Target,
    /// Soonest expiry first; entries that never expire come last.
    #[value(name = "expires_at")]
    ExpiresAt,
    /// Oldest first.
    #[value(name = "added_at")]
    AddedAt,
}

/// The query of `GET /v1/entries/page`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::IntoParams),
    into_params(parameter_in = Query)
)]
#[serde(deny_unknown_fields)]
pub struct EntryPageQuery {
    /// `deny` (the default) or `allow`.
    #[serde(default = "deny")]
    #[cfg_attr(feature = "openapi", param(inline))]
    pub list: List,
    /// The draft (the default), with pending changes marked; `false` for
    /// the deployed entries.
    #[serde(default = "yes")]
    pub draft: bool,
    /// Where to go on: the `next` of the page before. Opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Entries on the page, 1 to 500; 50 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Entries listed by this source, or by `import:` followed by this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(inline))]
    pub mode: Option<EntryMode>,
    /// `true`: only entries that expire; `false`: only those that never do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiring: Option<bool>,
    /// Entries with exactly this reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Entries whose target contains this address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<String>))]
    pub contains: Option<IpAddr>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", param(inline))]
    pub sort: PageSort,
    /// The other way round.
    #[serde(default)]
    pub desc: bool,
}

impl Default for EntryPageQuery {
    fn default() -> Self {
        Self {
            list: List::Deny,
            draft: true,
            cursor: None,
            limit: None,
            source: None,
            mode: None,
            expiring: None,
            reason: None,
            contains: None,
            sort: PageSort::Target,
            desc: false,
        }
    }
}

/// What is staged for an entry of the draft.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Pending {
    /// New in the draft.
    Add,
    /// Deployed, and staged for removal: still shown, so it can be seen
    /// going.
    Remove,
    /// Deployed, and staged with other settings (shown as staged).
    Change,
}

/// An entry's hits since it was deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Hits {
    pub packets: u64,
    pub bytes: u64,
    #[serde(with = "crate::model::time_ms::opt")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub last_hit: Option<Millis>,
}

/// An entry of a page: the entry's fields, what is pending for it, and its
/// hits (`null` when it is not deployed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PageEntry {
    #[serde(flatten)]
    pub entry: Entry,
    pub pending: Option<Pending>,
    pub hits: Option<Hits>,
}

/// The answer of `GET /v1/entries/page`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EntryPage {
    pub entries: Vec<PageEntry>,
    /// The `cursor` of the next page; `null` on the last.
    pub next: Option<String>,
}

/// The query of `GET /v1/history/{rev}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::IntoParams),
    into_params(parameter_in = Query)
)]
#[serde(deny_unknown_fields)]
pub struct RevisionQuery {
    /// At most this many items of each kind; 1000 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// What a revision's deploy changed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevisionDiff {
    pub revision: Revision,
    pub added: Vec<Entry>,
    pub removed: Vec<Entry>,
    pub changed: Vec<Change>,
    /// Some kind had more than `limit` items; `revision` counts them all.
    pub truncated: bool,
}

/// The query of `GET /v1/audit`: the window of [`super::PageQuery`] and
/// filters, all of which an event must pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::IntoParams),
    into_params(parameter_in = Query)
)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only events numbered above this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// Only events numbered below this: the first `seq` of the page after,
    /// to page back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<u64>,
    /// Only the newest this many of those, still oldest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// Only events by this user, exactly as the log shows it (`alice`,
    /// `alice (as root)`, `alice (web)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Only events of this kind (`stage`, `deploy`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Only events at or after this time (RFC 3339).
    #[serde(
        default,
        with = "crate::model::time_ms::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", param(value_type = Option<String>, format = DateTime))]
    pub from: Option<Millis>,
    /// Only events before this time (RFC 3339).
    #[serde(
        default,
        with = "crate::model::time_ms::opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", param(value_type = Option<String>, format = DateTime))]
    pub to: Option<Millis>,
}

impl AuditQuery {
    /// The window, without the filters.
    pub fn page(&self) -> Page {
        Page {
            since: self.since.unwrap_or(0),
            before: self.before,
            limit: self.limit,
        }
    }

    /// The filters, without the window.
    pub fn filter(&self) -> AuditFilter {
        AuditFilter {
            actor: self.actor.clone(),
            kind: self.kind.clone(),
            from: self.from,
            to: self.to,
        }
    }
}
