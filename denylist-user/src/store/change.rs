//! What changes the draft and the deployed set: the ops a client stages,
//! the pending changes they leave, and the plan a deploy carries out.

use crate::model::{Entry, List, Millis, Revision, Sources, Stored, Target, Ttl};

use super::StoreError;

/// How a staging call is recorded in the audit log.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Audit {
    /// One `stage add|change|remove` event per target.
    Each,
    /// One event for the whole call, e.g. an import of 1M lines.
    Summary {
        kind: String,
        detail: serde_json::Value,
    },
}

/// What a client asks to stage for one target.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Stage {
    /// Add an entry, or change the given fields of an existing one.
    ///
    /// The fields it leaves out are left out of its JSON in the fleet's
    /// log, where a million-entry import is one entry that every node
    /// decodes: a third fewer bytes. A missing field reads as `None`, so
    /// nodes of either release read both forms.
    Upsert {
        target: Target,
        list: List,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// `None` keeps the entry's TTL (a new entry gets the default).
        #[serde(skip_serializing_if = "Option::is_none")]
        ttl: Option<Ttl>,
        #[serde(skip_serializing_if = "Option::is_none")]
        monitor: Option<bool>,
        /// Whose listing: it is added when the entry lacks one. `None`
        /// changes every listing the entry has (enforce, monitor), or adds
        /// a `manual` one to a new entry.
        #[serde(skip_serializing_if = "Option::is_none")]
        source: Option<String>,
        /// An import: its TTL replaces the old one, but the expiry it gives
        /// never comes before the deployed one (the longer expiry wins).
        keep_longer_ttl: bool,
    },
    /// Remove the listings of `sources`; the entry goes once none is left.
    Remove {
        target: Target,
        list: List,
        sources: Sources,
    },
    /// Put an entry back with every field as given (an import of our own
    /// export); the expiry is set again by the deploy, from the TTL.
    Restore(Entry),
}

impl Stage {
    pub fn key(&self) -> (Target, List) {
        match self {
            Stage::Upsert { target, list, .. } | Stage::Remove { target, list, .. } => {
                (*target, *list)
            }
            Stage::Restore(e) => (e.target, e.list),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Add,
    Change,
    Remove,
}

impl Op {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Op::Add => "add",
            Op::Change => "change",
            Op::Remove => "remove",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "add" => Ok(Op::Add),
            "change" => Ok(Op::Change),
            "remove" => Ok(Op::Remove),
            other => Err(StoreError::Unreadable {
                what: "pending op",
                value: other.to_string(),
            }),
        }
    }
}

/// One pending change: the draft's row against the deployed one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub op: Op,
    /// The deployed entry (change, remove), with its id.
    pub before: Option<Stored>,
    /// The draft's entry (add, change).
    pub after: Option<Entry>,
    pub staged_by: String,
    pub staged_at: Millis,
}

impl Pending {
    pub fn key(&self) -> (Target, List) {
        let e = self
            .after
            .as_ref()
            .or(self.before.as_ref().map(|s| &s.entry));
        let e = e.expect("a pending change has a before or an after");
        (e.target, e.list)
    }
}

/// An entry's hits, folded from the kernel's per-CPU counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HitTotal {
    pub packets: u64,
    pub bytes: u64,
    pub last_hit: Option<Millis>,
}

/// What a deploy will do, with ids and expiries fixed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub adds: Vec<Stored>,
    pub changes: Vec<(Stored, Stored)>,
    pub removes: Vec<Stored>,
    /// What a deploy of some sources' listings leaves staged: the other
    /// listings' changes to the same entries, each as the pending row
    /// (op, draft entry) it becomes against the new deployed entry.
    pub kept: Vec<(Op, Entry, String, Millis)>,
}

/// A deploy another host announced as it began (`FleetStore`): its `now`,
/// and the listings it ships, of the keys pending then (all of them, or
/// those its log entry names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    pub now: Millis,
    pub sources: Sources,
}

/// What a partial deploy ships: these keys' changes, and of them only
/// the listings of `sources`.
#[derive(Debug, Clone, Copy)]
pub struct Only<'a> {
    pub keys: &'a [(Target, List)],
    pub sources: &'a Sources,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> usize {
        self.adds.len() + self.changes.len() + self.removes.len()
    }
}

/// What a prune deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub audit_events: u64,
    pub revisions: u64,
    /// Entry versions that no kept revision spans any more.
    pub versions: u64,
}

/// What one revision's deploy changed, in address order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionChanges {
    pub revision: Revision,
    pub added: Vec<Entry>,
    pub removed: Vec<Entry>,
    /// Before and after.
    pub changed: Vec<(Entry, Entry)>,
    /// Some kind had more than the limit.
    pub truncated: bool,
}
