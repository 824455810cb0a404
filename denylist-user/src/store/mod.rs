//! The store: the deployed entries, the shared draft (as pending changes
//! against them), revisions, entry versions for rollback, the audit log,
//! hit totals and attachments.
//!
//! The daemon reaches it only through the [`Store`] trait, so another
//! backend (PostgreSQL, for fleets) can stand beside [`SqliteStore`], the
//! single host's crash-safe store, without the daemon changing. Every change
//! is one transaction, durable before the caller answers the client.

mod change;
mod error;
mod fleet;
mod page;
mod sqlite;
/// The store's shared test suite, which every backend passes.
#[cfg(any(test, feature = "store-suite"))]
pub mod suite;

use std::{path::Path, sync::Arc};

pub use change::{
    Announced, Audit, HitTotal, Only, Op, Pending, Plan, Pruned, RevisionChanges, Stage,
};
pub use error::StoreError;
pub use fleet::{
    Applied, Command, Connect, FLEET_SCHEMA_VERSION, FleetStore, Held, LOG_CHANNEL, NODE_ROLE,
    WRITER_LOCK, deploy_announced, migrate,
};
pub use page::{PageKey, PageOrder, PageRow, PageSpec};
pub use sqlite::{DB_FILE, SqliteStore};

/// The keys a deploy's plan covers, one per pending listing: a million for
/// a million-entry import, so hashed with foldhash, not SipHash.
pub(crate) type PlanKeys = std::collections::HashSet<(Target, List), foldhash::fast::RandomState>;

use std::net::IpAddr;

use crate::model::{
    AuditEvent, AuditFilter, AutoPolicy, Entry, FeedSettings, FeedState, List, Millis, NodeReport,
    NodeStatus, Page, ProtectedSet, Report, Revision, Stored, Target,
};

/// What a report adds up to: its audit event, and the address's report
/// weight and latest distinct reasons within the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportTally {
    pub seq: u64,
    pub weight: u64,
    pub reasons: Vec<String>,
}

/// What a feed state update does to the list a fetch held back.
#[derive(Debug, Clone, Copy)]
pub enum HeldList<'a> {
    /// Leaves it as it is: a failure or a 304 neither makes nor settles one.
    Keep,
    /// Drops it: a good list was deployed.
    Clear,
    Set(&'a [Target]),
}

/// One feed subscription as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedRecord {
    pub name: String,
    pub settings: FeedSettings,
    pub state: FeedState,
}

/// Who deploys, why, and when: what the revision and its audit event say.
#[derive(Debug, Clone, Copy)]
pub struct DeployRecord<'a> {
    pub user: &'a str,
    pub message: Option<&'a str>,
    pub now: Millis,
    /// The audit event's kind: `deploy`, or `rollback` for a rollback's.
    pub kind: &'a str,
}

/// What a host applied from the fleet's log that its kernel must follow.
#[derive(Debug, Clone)]
pub enum Followed {
    /// Another host's deploy of `revision`, as planned here (with this
    /// host's ids), shared with the store's write that follows the
    /// kernel's; `ahead` when planned before its log entry came.
    Deployed {
        plan: Arc<Plan>,
        revision: u64,
        ahead: bool,
    },
    /// Another host's expiry sweep at `now`: the listings it found expired.
    Expired { expired: Vec<Stored>, now: Millis },
}

/// A task that one host of a fleet does for all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duty {
    /// The expiry sweep: its `expire` reaches every host through the log.
    Sweep,
    /// Scheduled feed refreshes: one fetch of each feed, for every host.
    Feeds,
    /// The fleet's snapshots, which new nodes start from.
    Snapshot,
}

/// The durable state of one denylist.
pub trait Store: Send {
    /// The deployed revision, 0 before the first deploy.
    fn revision(&self) -> Result<u64, StoreError>;

    /// The deployed entries, expired ones included (the sweep removes them).
    fn deployed(&self) -> Result<Vec<Stored>, StoreError>;

    /// The draft's entries: live deployed ones with the pending changes
    /// applied (a pending entry's expiry is set again by its deploy).
    fn draft(&self, now: Millis) -> Result<Vec<Entry>, StoreError>;

    /// The draft's entries from `source`, by key only: what an import with
    /// --replace removes when its file leaves them out.
    fn draft_keys_from(&self, source: &str, now: Millis)
    -> Result<Vec<(Target, List)>, StoreError>;

    /// The keys whose deployed entry `source` lists (and has not expired).
    fn deployed_keys_from(
        &self,
        source: &str,
        now: Millis,
    ) -> Result<Vec<(Target, List)>, StoreError>;

    /// One key's entry in the draft.
    fn draft_entry(
        &self,
        target: Target,
        list: List,
        now: Millis,
    ) -> Result<Option<Entry>, StoreError>;

    /// One key's deployed entry, with the listings that have not expired.
    fn deployed_entry(
        &self,
        target: Target,
        list: List,
        now: Millis,
    ) -> Result<Option<Entry>, StoreError>;

    fn pending_count(&self) -> Result<usize, StoreError>;

    /// The `seq` of the audit event that last changed the draft (a stage,
    /// a discard, a rollback, a deploy, an expiry reaching a pending
    /// change); 0 when none has.
    fn draft_seq(&self) -> Result<u64, StoreError>;

    /// The pending changes, sorted by target.
    fn pending(&self) -> Result<Vec<Pending>, StoreError>;

    /// Stages `ops` all or nothing: a target that is not there to remove
    /// fails the whole call. Returns the sequence number of the last audit
    /// event, and for each op the pending change it left (none when the
    /// draft now equals the deployed entry).
    fn stage(
        &mut self,
        ops: &[Stage],
        user: &str,
        now: Millis,
        default_ttl: Option<u64>,
        audit_as: &Audit,
    ) -> Result<(u64, Vec<Option<Op>>), StoreError>;

    /// What [`Store::stage`] would leave for each op, with nothing
    /// written and nothing audited: for a dry run.
    fn stage_preview(
        &mut self,
        ops: &[Stage],
        now: Millis,
        default_ttl: Option<u64>,
    ) -> Result<Vec<Option<Op>>, StoreError>;

    /// Drops every pending change; returns the audit sequence number and
    /// how many there were.
    fn discard(&mut self, user: &str, now: Millis) -> Result<(u64, usize), StoreError>;

    /// What deploying would do, without reserving ids: for a dry run.
    fn preview(&mut self, only: Option<Only<'_>>, now: Millis) -> Result<Plan, StoreError>;

    /// Fixes ids and expiries for deploying the pending changes (only those
    /// for `only`, when given). Ids are reserved durably before the kernel
    /// sees them, so no id is ever handed out twice.
    fn plan(&mut self, only: Option<Only<'_>>, now: Millis) -> Result<Plan, StoreError>;

    /// Writes a deploy's revision, entries, versions and audit event without
    /// committing them: the daemon commits once the kernel has the plan, and
    /// dropping what this returns records nothing.
    fn write_deploy<'s>(
        &'s mut self,
        plan: &Plan,
        record: DeployRecord<'_>,
    ) -> Result<Box<dyn WrittenDeploy + 's>, StoreError>;

    /// Makes the draft's manual and import listings those of revision
    /// `rev`, leaving out listings that have expired since (the entries
    /// left with none are returned); feed and detector listings stay as
    /// they are. With pending changes and no `force`, refuses with a
    /// conflict.
    fn rollback(
        &mut self,
        rev: u64,
        force: bool,
        user: &str,
        now: Millis,
    ) -> Result<(u64, Vec<Entry>), StoreError>;

    /// Deployed entries with a listing whose expiry has passed.
    fn expired(&self, now: Millis) -> Result<Vec<Stored>, StoreError>;

    /// Removes the listings whose expiry has passed from the deployed set
    /// and the draft, and the entries left with none, with an `expiry`
    /// audit event each; no revision. What is left of an entry is
    /// `Entry::live`.
    fn expire(&mut self, expired: &[Stored], now: Millis) -> Result<u64, StoreError>;

    /// Adds hit counts folded from the kernel, by entry id.
    fn add_hits(&mut self, deltas: &[(u32, HitTotal)]) -> Result<(), StoreError>;

    /// Folded hit totals by entry id.
    fn hit_totals(&self) -> Result<std::collections::HashMap<u32, HitTotal>, StoreError>;

    /// Records an event that changed nothing in the store itself.
    fn record(
        &mut self,
        user: &str,
        kind: &str,
        target: Option<&str>,
        detail: Option<serde_json::Value>,
        now: Millis,
    ) -> Result<u64, StoreError>;

    /// The revisions in `page`, oldest first.
    fn history(&self, page: Page) -> Result<Vec<Revision>, StoreError>;

    /// The audit events in `page` (by sequence number) that pass
    /// `filter`, oldest first.
    fn audit(&self, page: Page, filter: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError>;

    /// What deploying revision `rev` changed, at most `limit` items of each
    /// kind; an unknown or pruned revision is `NoRevision`.
    fn revision_changes(&self, rev: u64, limit: usize) -> Result<RevisionChanges, StoreError>;

    /// Deletes audit events and revisions older than `cutoff`, keeping the
    /// deployed revision and whatever a rollback to a kept revision reads.
    /// Anything pruned is itself audited (kind `prune`, by `user`): its
    /// sequence number and counts, or `None` when nothing was old enough.
    fn prune(
        &mut self,
        cutoff: Millis,
        user: &str,
        now: Millis,
    ) -> Result<Option<(u64, Pruned)>, StoreError>;

    /// The interfaces an admin attached, with the XDP mode asked for.
    fn attachments(&self) -> Result<Vec<(String, String)>, StoreError>;

    /// Records an attach (`Some(mode)`) or a detach (`None`), audited.
    fn set_attachment(
        &mut self,
        iface: &str,
        mode: Option<&str>,
        user: &str,
        now: Millis,
    ) -> Result<u64, StoreError>;

    /// The feed subscriptions, by name.
    fn feeds(&self) -> Result<Vec<FeedRecord>, StoreError>;

    /// Subscribes to a feed, audited (`feed add`, by `state.added_by`,
    /// with the URL as `redacted_url` shows it); a name in use is refused.
    fn add_feed(
        &mut self,
        name: &str,
        settings: &FeedSettings,
        redacted_url: &str,
        state: &FeedState,
        now: Millis,
    ) -> Result<u64, StoreError>;

    /// Records how an attempt went, and what became of the held list.
    fn set_feed_state(
        &mut self,
        name: &str,
        state: &FeedState,
        held: HeldList<'_>,
    ) -> Result<(), StoreError>;

    /// The list a feed's last fetch held back, if any.
    fn held_list(&self, name: &str) -> Result<Option<Vec<Target>>, StoreError>;

    /// Ends a subscription, audited; its listings are the caller's to remove.
    fn remove_feed(&mut self, name: &str, user: &str, now: Millis) -> Result<u64, StoreError>;

    /// Records a report, audited (`report`, by its reporter), and tallies
    /// the address's reports since `since`.
    fn report(&mut self, report: &Report, since: Millis) -> Result<ReportTally, StoreError>;

    /// The latest `limit` reports, oldest first; only `reporter`'s, when
    /// given.
    fn reports(&self, reporter: Option<&str>, limit: usize) -> Result<Vec<Report>, StoreError>;

    /// Counts an automatic listing of `ip`: 1 for the first, one more for
    /// each within 30 days of the last.
    fn offence(&mut self, ip: IpAddr, now: Millis) -> Result<u32, StoreError>;

    fn auto_policy(&self) -> Result<AutoPolicy, StoreError>;

    /// Sets the automatic blocking policy, audited as `action` (`auto
    /// set`, or `auto tripped` by the circuit breaker).
    fn set_auto_policy(
        &mut self,
        policy: &AutoPolicy,
        user: &str,
        action: &str,
        now: Millis,
    ) -> Result<u64, StoreError>;

    /// A consistent copy of the whole store in the new file `dest`.
    fn backup(&self, dest: &Path) -> Result<(), StoreError>;

    /// Where listings get their snapshots: they stream without the core,
    /// while the store goes on taking writes.
    fn snapshots(&self) -> Arc<dyn Snapshots>;

    /// Applies what other hosts changed since the last call, oldest first;
    /// a single host's store has nobody to follow.
    fn follow(&mut self) -> Result<Vec<Followed>, StoreError> {
        Ok(Vec::new())
    }

    /// [`Store::follow`] for the fleet's follower, one round at a time:
    /// another host's deploy ends the round, handed out planned but not
    /// written, for [`Store::follow_done`] to write once the kernel took
    /// it.
    fn follow_round(&mut self) -> Result<Vec<Followed>, StoreError> {
        self.follow()
    }

    /// Finishes what [`Store::follow_round`] handed out ahead of this store: a
    /// deploy of another host's goes into the kernel before the store
    /// writes it, so that the node says it applied the revision as soon as
    /// its kernel has it. True when there may be more to follow.
    fn follow_done(&mut self) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// Hears that another host is about to plan a deploy: the next
    /// [`Store::follow_round`] may plan it too, ahead of its entry. A
    /// single host has no other.
    fn foresee_deploy(&mut self, _deploy: Announced) {}

    /// The plan of another host's deploy that the last
    /// [`Store::follow_round`] made ahead of its entry, handed out once: the
    /// kernel may write ahead what it adds. A single host has no other.
    fn plan_made_ahead(&mut self) -> Option<Arc<Plan>> {
        None
    }

    /// Says that the deploy [`Store::plan`] began is over, written or not:
    /// a store that serializes deploys across hosts lets the next one go.
    fn deploy_done(&mut self) {}

    /// Whether this host does `duty`: on a single host always; in a fleet,
    /// one live host at a time, another taking over when it goes.
    fn holds_duty(&mut self, _duty: Duty) -> bool {
        true
    }

    /// Takes a snapshot of the fleet's state for new nodes to start from,
    /// in the background, when this host has that duty and the log grew
    /// enough since the last one; a single host's store has no log.
    fn keep_snapshot(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Tells the fleet that this host is alive and what it applied.
    fn heartbeat(&mut self, _report: &NodeReport) -> Result<(), StoreError> {
        Ok(())
    }

    /// What the fleet's other nodes protect; none on a single host.
    fn fleet_protected(&mut self) -> Result<Vec<ProtectedSet>, StoreError> {
        Ok(Vec::new())
    }

    /// The fleet's nodes; `None` on a single host.
    fn nodes(&mut self) -> Result<Option<Vec<NodeStatus>>, StoreError> {
        Ok(None)
    }

    /// Forgets a retired node of the fleet, once it has been offline for
    /// five minutes; a single host has none.
    fn forget_node(&mut self, node: &str) -> Result<(), StoreError> {
        Err(StoreError::NoNode {
            node: node.to_string(),
        })
    }
}

/// A deploy written into the store but not yet committed.
pub trait WrittenDeploy {
    /// Makes it durable: the new revision and the audit sequence number.
    fn commit(self: Box<Self>) -> Result<(Revision, u64), StoreError>;
}

/// Opens snapshots, from any thread, without the store itself.
pub trait Snapshots: Send + Sync {
    fn open(&self) -> Result<Box<dyn Snapshot>, StoreError>;
}

/// One consistent view of the entries.
pub trait Snapshot: Send {
    /// Calls `f` with each live entry in address order (deny before allow
    /// for one target), deployed or the draft, until it returns false.
    fn for_each_entry(
        &mut self,
        draft: bool,
        now: Millis,
        f: &mut dyn FnMut(Entry) -> bool,
    ) -> Result<(), StoreError>;

    /// Up to `spec.limit` rows of one list, in the spec's order, after its
    /// key: for a console's page.
    fn page(&mut self, spec: &PageSpec, now: Millis) -> Result<Vec<PageRow>, StoreError>;
}
