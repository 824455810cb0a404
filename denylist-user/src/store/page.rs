//! One page of entries, for a console: a keyset over one list in one
//! order, filtered, with what is pending for each entry and its hits.

use std::net::IpAddr;

use super::{HitTotal, Op};
use crate::model::{Entry, List, Millis, Target};

/// The order of a page; ties go in address order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageOrder {
    Target,
    /// Soonest first; entries that never expire after every other.
    ExpiresAt,
    AddedAt,
}

/// Where a page starts: after the entry with this sort value and target
/// (before it, going down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageKey {
    /// The order's value: `expires_at` (`i64::MAX` for never) or
    /// `added_at`; 0 in address order.
    pub value: i64,
    pub target: Target,
}

/// What a page holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageSpec {
    pub list: List,
    /// The draft, with pending changes marked; else the deployed entries.
    pub draft: bool,
    pub after: Option<PageKey>,
    /// Rows to return: the page and one more tell whether another follows.
    pub limit: usize,
    /// Entries listed by this source, or by `import:` followed by this.
    pub source: Option<String>,
    pub monitor: Option<bool>,
    /// Whether the entry has an expiry.
    pub expiring: Option<bool>,
    pub reason: Option<String>,
    /// Entries whose target contains this address.
    pub contains: Option<IpAddr>,
    pub order: PageOrder,
    pub desc: bool,
}

impl PageSpec {
    /// Whether `e` passes the filters (all but `contains`, which picks the
    /// candidates).
    pub fn passes(&self, e: &Entry) -> bool {
        self.source.as_deref().is_none_or(|s| {
            e.sources
                .iter()
                .any(|src| src == s || src.strip_prefix("import:") == Some(s))
        }) && self.monitor.is_none_or(|m| e.monitor == m)
            && self.expiring.is_none_or(|x| e.expires_at.is_some() == x)
            && self
                .reason
                .as_deref()
                .is_none_or(|r| e.reason.as_deref() == Some(r))
    }

    /// The key `e` sorts by in this page's order.
    pub fn key_of(&self, e: &Entry) -> PageKey {
        let value = match self.order {
            PageOrder::Target => 0,
            PageOrder::ExpiresAt => e.expires_at.unwrap_or(Millis::MAX),
            PageOrder::AddedAt => e.added_at,
        };
        PageKey {
            value,
            target: e.target,
        }
    }
}

/// One row of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRow {
    /// As the draft shows it; for a pending removal, the deployed entry.
    pub entry: Entry,
    /// What is staged for it, in the draft.
    pub pending: Option<Op>,
    /// The deployed entry's hits as last folded; none when not deployed.
    pub hits: Option<HitTotal>,
    pub key: PageKey,
}
