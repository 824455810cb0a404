//! Fleet mode's store: the shared state is a log of commands in
//! PostgreSQL, and each node keeps the SQLite store those commands build
//! (docs/fleet.md).
//!
//! A change takes the fleet's writer lock, brings the local store up to
//! the log's head, appends its command and applies it here; the database
//! commits before the local store does, so a node killed in between
//! replays the entry on its next start rather than holding a change the
//! fleet lacks. Reads are the local store's, so a node answers them, and
//! keeps filtering, while the database is away.

mod command;
mod log;

use std::{collections::HashMap, net::IpAddr, path::Path, sync::Arc};

pub use command::{Applied, Command, Held};
pub use log::{FLEET_SCHEMA_VERSION, LOG_CHANNEL, NODE_ROLE, migrate};
use postgres::Client;

use super::{
    Audit, DeployRecord, Duty, FeedRecord, Followed, HeldList, HitTotal, Only, Op, Pending, Plan,
    Pruned, ReportTally, RevisionChanges, Snapshots, SqliteStore, Stage, Store, StoreError,
    WrittenDeploy,
    sqlite::{attach_kind, install_snapshot},
};
use crate::model::{
    AuditEvent, AuditFilter, AutoPolicy, Entry, FeedSettings, FeedState, List, Millis, NodeReport,
    NodeStatus, Page, ProtectedSet, Report, Revision, Sources, Stored, Target,
};

/// Log entries read at a time while catching up.
const CATCH_UP_BATCH: i64 = 1_000;

/// Opens a connection to the fleet's database, with the TLS and
/// credentials the daemon was configured with; called again after the
/// connection breaks.
pub type Connect = Box<dyn FnMut() -> Result<Client, postgres::Error> + Send>;

/// A deploy between its plan and its write: the writer lock is held, and
/// this is the command it will append.
struct Deploying {
    seq: u64,
    only: Option<(Vec<(Target, List)>, Sources)>,
    now: Millis,
}

pub struct FleetStore {
    local: SqliteStore,
    connect: Connect,
    /// The database as messages name it: the URL, which holds no password.
    database: String,
    /// None until connected, and again once the connection broke.
    client: Option<Client>,
    node: String,
    /// A writer's transaction is open on the connection: a connection
    /// made anew now would write outside it, without the lock.
    tx_open: bool,
    /// The [`Duty`]s this connection holds, a bit each.
    duties: u8,
    deploying: Option<Deploying>,
    /// Other hosts' deploys and sweeps applied here whose kernel changes
    /// [`Store::follow`] has not handed out yet.
    followed: Vec<Followed>,
}

impl FleetStore {
    /// Follows the fleet that `connect` reaches, as node `node`, with the
    /// store under `state_dir` as this node's copy, and catches up.
    ///
    /// A new node (an empty store) starts from the fleet's latest
    /// snapshot, when there is one, and needs the database for that. A
    /// node with a copy starts from it when the database cannot be
    /// reached. A store with a single host's history is refused: replaying
    /// the fleet over it would number revisions and audit events apart
    /// from the fleet's. So is a database without the fleet's tables, or
    /// with a newer schema. What the catch-up applied is not handed to
    /// [`Store::follow`]: the caller builds its kernel from the store.
    pub fn open(
        state_dir: &Path,
        connect: Connect,
        database: &str,
        node: &str,
    ) -> Result<Self, StoreError> {
        let local = SqliteStore::open(state_dir)?;
        let fresh = !local.is_following()?;
        if fresh && local.has_history()? {
            return Err(StoreError::LocalHistory {
                path: local.path().to_path_buf(),
            });
        }
        let mut store = FleetStore {
            local,
            connect,
            database: database.to_string(),
            client: None,
            node: node.to_string(),
            tx_open: false,
            duties: 0,
            deploying: None,
            followed: Vec::new(),
        };
        match store.pg_afresh(log::check) {
            Ok(()) => {}
            Err(e) if e.is_unreachable() && !fresh => {
                tracing::warn!("fleet: starting from the local copy: {e}");
                return Ok(store);
            }
            Err(e) => return Err(e),
        }
        if fresh {
            store = store.bootstrap(state_dir)?;
        }
        match store.catch_up(u64::MAX) {
            Ok(_) => {}
            Err(e) if e.is_unreachable() => {
                tracing::warn!("fleet: starting from the local copy: {e}");
            }
            Err(e) => return Err(e),
        }
        store.followed.clear();
        Ok(store)
    }

    /// A new node's store: the fleet's latest snapshot, or none to start
    /// from the log's first entry.
    fn bootstrap(mut self, state_dir: &Path) -> Result<Self, StoreError> {
        let Some((seq, bytes)) = self.pg_afresh(log::latest_snapshot)? else {
            self.local.follow_from(0)?;
            return Ok(self);
        };
        let FleetStore {
            local,
            connect,
            database,
            client,
            node,
            tx_open,
            duties,
            deploying,
            followed,
        } = self;
        // Closed before its file is replaced.
        drop(local);
        install_snapshot(state_dir, &bytes)?;
        tracing::info!(
            seq,
            bytes = bytes.len(),
            "fleet: starting from the fleet's snapshot"
        );
        Ok(FleetStore {
            local: SqliteStore::open(state_dir)?,
            connect,
            database,
            client,
            node,
            tx_open,
            duties,
            deploying,
            followed,
        })
    }

    /// Moves the single host's store under `state_dir` into the empty
    /// fleet that `connect` reaches, history and audit included: it
    /// becomes the fleet's first snapshot, and this host its first node.
    /// A database that holds a fleet already is refused.
    pub fn move_into(state_dir: &Path, mut connect: Connect) -> Result<u64, StoreError> {
        let mut local = SqliteStore::open(state_dir)?;
        if local.is_following()? {
            return Err(StoreError::AlreadyFleet {
                path: local.path().to_path_buf(),
            });
        }
        let mut client = connect()?;
        log::check(&mut client)?;
        let head = log::begin_write(&mut client)?;
        let moved = (|| {
            if head > 0 || log::latest_snapshot(&mut client)?.is_some() {
                return Err(StoreError::FleetNotEmpty);
            }
            let bytes = local.snapshot(0)?;
            log::insert_snapshot(&mut client, 0, &bytes)?;
            log::commit(&mut client)?;
            Ok(bytes.len() as u64)
        })();
        match moved {
            Ok(n) => {
                local.follow_from(0)?;
                Ok(n)
            }
            Err(e) => {
                log::rollback(&mut client);
                Err(e)
            }
        }
    }

    /// The seq of the last log entry applied here.
    pub fn applied(&self) -> Result<u64, StoreError> {
        self.local.log_seq()
    }

    /// The connection, made anew if there is none, except under an open
    /// writer's transaction, which a broken connection took with it.
    fn client(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            if self.tx_open {
                self.tx_open = false;
                self.client = None;
                return Err(StoreError::FleetConnectionLost);
            }
            let mut client = (self.connect)()?;
            if !log::claim(&mut client, &self.node)? {
                return Err(StoreError::NodeNameTaken {
                    node: self.node.clone(),
                });
            }
            self.client = Some(client);
            // Session locks went with the old connection.
            self.duties = 0;
        }
        Ok(self.client.as_mut().expect("connected just above"))
    }

    /// As [`FleetStore::pg`], for a call that opens no transaction and
    /// runs in none: a connection that broke while idle (the server
    /// restarted) is replaced, and the call made once more.
    fn pg_afresh<T>(
        &mut self,
        mut f: impl FnMut(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match self.pg(&mut f) {
            Err(StoreError::FleetUnavailable { .. }) if self.client.is_none() && !self.tx_open => {
                self.pg(f)
            }
            r => r,
        }
    }

    /// Runs `f` on the connection; a connection that broke under it is
    /// dropped, so the next call connects again.
    fn pg<T>(
        &mut self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let result = self.client().and_then(f);
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        // A server that answered with an error is reachable: that error
        // stands. Anything else is the database out of reach.
        result.map_err(|e| match e {
            StoreError::Postgres(source) if source.as_db_error().is_none() => {
                StoreError::FleetUnavailable {
                    database: self.database.clone(),
                    source,
                }
            }
            e => e,
        })
    }

    /// Applies the log's entries up to `head`, in order.
    fn catch_up(&mut self, head: u64) -> Result<usize, StoreError> {
        let mut n = 0;
        loop {
            let at = self.local.log_seq()?;
            if at >= head {
                return Ok(n);
            }
            let batch = if self.tx_open {
                self.pg(|c| log::since(c, at, CATCH_UP_BATCH))?
            } else {
                self.pg_afresh(|c| log::since(c, at, CATCH_UP_BATCH))?
            };
            if batch.is_empty() {
                return Ok(n);
            }
            for (seq, command) in batch {
                let applied = self.apply_entry(seq, &command)?;
                self.note_followed(applied);
                n += 1;
            }
        }
    }

    fn note_followed(&mut self, applied: Applied) {
        match applied {
            Applied::Deployed(_, _, plan) => self.followed.push(Followed::Deployed(plan)),
            Applied::Expired(_, expired, now) if !expired.is_empty() => {
                self.followed.push(Followed::Expired { expired, now });
            }
            _ => {}
        }
    }

    fn apply_entry(&mut self, seq: u64, command: &Command) -> Result<Applied, StoreError> {
        self.local.begin_entry()?;
        match command.apply(&mut self.local) {
            Ok(applied) => {
                self.local.commit_entry(seq)?;
                Ok(applied)
            }
            Err(e) => {
                self.local.abort_entry();
                Err(StoreError::Diverged {
                    seq,
                    source: Box::new(e),
                })
            }
        }
    }

    /// A plan whose deploy never came holds the writer lock until this.
    fn release(&mut self) {
        self.deploying = None;
        self.rollback();
    }

    /// Takes the writer lock and brings this node to the log's head;
    /// returns the seq the next entry gets.
    fn begin(&mut self) -> Result<u64, StoreError> {
        self.release();
        let head = self.pg_afresh(|c| log::begin_write(c).inspect_err(|_| log::rollback(c)))?;
        self.tx_open = true;
        match self.catch_up(head) {
            Ok(_) => Ok(head + 1),
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }

    fn rollback(&mut self) {
        if std::mem::take(&mut self.tx_open)
            && let Some(c) = self.client.as_mut()
        {
            log::rollback(c);
        }
    }

    /// One change: appended to the log and applied here, both or neither.
    fn write(&mut self, command: Command) -> Result<Applied, StoreError> {
        let seq = self.begin()?;
        let result = self.append_and_apply(seq, &command);
        if result.is_err() {
            self.rollback();
        }
        result
    }

    /// [`FleetStore::write`] of a command whose call returns an audit seq.
    fn write_seq(&mut self, command: Command, name: &'static str) -> Result<u64, StoreError> {
        match self.write(command)? {
            Applied::Seq(seq) => Ok(seq),
            _ => Err(mismatch(name)),
        }
    }

    fn append_and_apply(&mut self, seq: u64, command: &Command) -> Result<Applied, StoreError> {
        let node = self.node.clone();
        self.pg(|c| log::append(c, seq, &node, command, None))?;
        self.local.begin_entry()?;
        let applied = command.apply(&mut self.local).and_then(|applied| {
            self.pg(log::commit)?;
            self.tx_open = false;
            Ok(applied)
        });
        match applied {
            Ok(applied) => {
                // Committed in the fleet: should this fail, the entry is
                // applied again from the log on the next catch-up.
                self.local.commit_entry(seq)?;
                Ok(applied)
            }
            Err(e) => {
                self.local.abort_entry();
                Err(e)
            }
        }
    }
}

/// The writer's open transaction in a deploy's commit: committed by the
/// local store's commit, rolled back when the deploy is dropped unwritten
/// (the kernel refused it), so the lock never outlives the deploy.
struct DeployTx<'c> {
    client: &'c mut Client,
    tx_open: &'c mut bool,
}

impl DeployTx<'_> {
    fn commit(self) -> Result<(), StoreError> {
        *self.tx_open = false;
        log::commit(self.client)
    }
}

impl Drop for DeployTx<'_> {
    fn drop(&mut self) {
        if std::mem::take(self.tx_open) {
            log::rollback(self.client);
        }
    }
}

fn mismatch(command: &'static str) -> StoreError {
    StoreError::CommandResult { command }
}

impl Store for FleetStore {
    fn revision(&self) -> Result<u64, StoreError> {
        self.local.revision()
    }

    fn deployed(&self) -> Result<Vec<Stored>, StoreError> {
        self.local.deployed()
    }

    fn draft(&self, now: Millis) -> Result<Vec<Entry>, StoreError> {
        self.local.draft(now)
    }

    fn draft_keys_from(
        &self,
        source: &str,
        now: Millis,
    ) -> Result<Vec<(Target, List)>, StoreError> {
        self.local.draft_keys_from(source, now)
    }

    fn deployed_keys_from(
        &self,
        source: &str,
        now: Millis,
    ) -> Result<Vec<(Target, List)>, StoreError> {
        self.local.deployed_keys_from(source, now)
    }

    fn draft_entry(
        &self,
        target: Target,
        list: List,
        now: Millis,
    ) -> Result<Option<Entry>, StoreError> {
        self.local.draft_entry(target, list, now)
    }

    fn deployed_entry(
        &self,
        target: Target,
        list: List,
        now: Millis,
    ) -> Result<Option<Entry>, StoreError> {
        self.local.deployed_entry(target, list, now)
    }

    fn pending_count(&self) -> Result<usize, StoreError> {
        self.local.pending_count()
    }

    fn draft_seq(&self) -> Result<u64, StoreError> {
        self.local.draft_seq()
    }

    fn pending(&self) -> Result<Vec<Pending>, StoreError> {
        self.local.pending()
    }

    fn stage(
        &mut self,
        ops: &[Stage],
        user: &str,
        now: Millis,
        default_ttl: Option<u64>,
        audit_as: &Audit,
    ) -> Result<(u64, Vec<Option<Op>>), StoreError> {
        match self.write(Command::Stage {
            ops: ops.to_vec(),
            user: user.to_string(),
            now,
            default_ttl,
            audit: audit_as.clone(),
        })? {
            Applied::Staged(seq, ops) => Ok((seq, ops)),
            _ => Err(mismatch("stage")),
        }
    }

    fn stage_preview(
        &mut self,
        ops: &[Stage],
        now: Millis,
        default_ttl: Option<u64>,
    ) -> Result<Vec<Option<Op>>, StoreError> {
        self.local.stage_preview(ops, now, default_ttl)
    }

    fn discard(&mut self, user: &str, now: Millis) -> Result<(u64, usize), StoreError> {
        match self.write(Command::Discard {
            user: user.to_string(),
            now,
        })? {
            Applied::Discarded(seq, n) => Ok((seq, n)),
            _ => Err(mismatch("discard")),
        }
    }

    fn preview(&mut self, only: Option<Only<'_>>, now: Millis) -> Result<Plan, StoreError> {
        self.local.preview(only, now)
    }

    /// Takes the writer lock and keeps it until the deploy is committed or
    /// over: deploys from different nodes are serialized by the database,
    /// each planned from the state the one before it left.
    fn plan(&mut self, only: Option<Only<'_>>, now: Millis) -> Result<Plan, StoreError> {
        let seq = self.begin()?;
        match self.local.plan(only, now) {
            Ok(plan) if plan.is_empty() => {
                self.rollback();
                Ok(plan)
            }
            Ok(plan) => {
                self.deploying = Some(Deploying {
                    seq,
                    only: only.map(|o| (o.keys.to_vec(), o.sources.clone())),
                    now,
                });
                Ok(plan)
            }
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }

    fn write_deploy<'s>(
        &'s mut self,
        plan: &Plan,
        record: DeployRecord<'_>,
    ) -> Result<Box<dyn WrittenDeploy + 's>, StoreError> {
        let Some(d) = self.deploying.take() else {
            return Err(StoreError::NotPlanned);
        };
        let command = Command::Deploy {
            only: d.only,
            now: d.now,
            user: record.user.to_string(),
            message: record.message.map(str::to_string),
            kind: record.kind.to_string(),
        };
        let node = self.node.clone();
        let revision = self.local.revision()? + 1;
        if let Err(e) = self.pg(|c| log::append(c, d.seq, &node, &command, Some(revision))) {
            self.rollback();
            return Err(e);
        }
        let Some(client) = self.client.as_mut() else {
            self.tx_open = false;
            return Err(StoreError::FleetConnectionLost);
        };
        let tx = DeployTx {
            client,
            tx_open: &mut self.tx_open,
        };
        let commit = Box::new(move || tx.commit());
        self.local.write_deploy_entry(plan, record, d.seq, commit)
    }

    fn rollback(
        &mut self,
        rev: u64,
        force: bool,
        user: &str,
        now: Millis,
    ) -> Result<(u64, Vec<Entry>), StoreError> {
        match self.write(Command::Rollback {
            rev,
            force,
            user: user.to_string(),
            now,
        })? {
            Applied::RolledBack(seq, left) => Ok((seq, left)),
            _ => Err(mismatch("rollback")),
        }
    }

    fn expired(&self, now: Millis) -> Result<Vec<Stored>, StoreError> {
        self.local.expired(now)
    }

    /// The sweep is logged as its time alone: each node finds the same
    /// expired listings in the same state, under its own entry ids.
    fn expire(&mut self, _expired: &[Stored], now: Millis) -> Result<u64, StoreError> {
        match self.write(Command::Expire { now })? {
            Applied::Expired(seq, ..) => Ok(seq),
            _ => Err(mismatch("expire")),
        }
    }

    /// Hits are this node's own: its kernel's counters, under its ids.
    fn add_hits(&mut self, deltas: &[(u32, HitTotal)]) -> Result<(), StoreError> {
        self.local.add_hits(deltas)
    }

    fn hit_totals(&self) -> Result<HashMap<u32, HitTotal>, StoreError> {
        self.local.hit_totals()
    }

    fn record(
        &mut self,
        user: &str,
        kind: &str,
        target: Option<&str>,
        detail: Option<serde_json::Value>,
        now: Millis,
    ) -> Result<u64, StoreError> {
        self.write_seq(
            Command::Record {
                user: user.to_string(),
                kind: kind.to_string(),
                target: target.map(str::to_string),
                detail,
                now,
            },
            "record",
        )
    }

    fn history(&self, page: Page) -> Result<Vec<Revision>, StoreError> {
        self.local.history(page)
    }

    fn audit(&self, page: Page, filter: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        self.local.audit(page, filter)
    }

    fn revision_changes(&self, rev: u64, limit: usize) -> Result<RevisionChanges, StoreError> {
        self.local.revision_changes(rev, limit)
    }

    fn prune(
        &mut self,
        cutoff: Millis,
        user: &str,
        now: Millis,
    ) -> Result<Option<(u64, Pruned)>, StoreError> {
        match self.write(Command::Prune {
            cutoff,
            user: user.to_string(),
            now,
        })? {
            Applied::Pruned(p) => Ok(p),
            _ => Err(mismatch("prune")),
        }
    }

    /// Interfaces are this node's own, so attachments stay local; the
    /// attach and detach go to the shared audit log as records.
    fn attachments(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.local.attachments()
    }

    fn set_attachment(
        &mut self,
        iface: &str,
        mode: Option<&str>,
        user: &str,
        now: Millis,
    ) -> Result<u64, StoreError> {
        self.local.set_local_attachment(iface, mode)?;
        let detail = serde_json::json!({ "node": self.node, "xdp_mode": mode });
        self.record(user, attach_kind(mode), Some(iface), Some(detail), now)
    }

    fn feeds(&self) -> Result<Vec<FeedRecord>, StoreError> {
        self.local.feeds()
    }

    fn add_feed(
        &mut self,
        name: &str,
        settings: &FeedSettings,
        redacted_url: &str,
        state: &FeedState,
        now: Millis,
    ) -> Result<u64, StoreError> {
        self.write_seq(
            Command::AddFeed {
                name: name.to_string(),
                settings: settings.clone(),
                redacted_url: redacted_url.to_string(),
                state: state.clone(),
                now,
            },
            "feed add",
        )
    }

    fn set_feed_state(
        &mut self,
        name: &str,
        state: &FeedState,
        held: HeldList<'_>,
    ) -> Result<(), StoreError> {
        self.write(Command::SetFeedState {
            name: name.to_string(),
            state: state.clone(),
            held: held.into(),
        })
        .map(drop)
    }

    fn held_list(&self, name: &str) -> Result<Option<Vec<Target>>, StoreError> {
        self.local.held_list(name)
    }

    fn remove_feed(&mut self, name: &str, user: &str, now: Millis) -> Result<u64, StoreError> {
        self.write_seq(
            Command::RemoveFeed {
                name: name.to_string(),
                user: user.to_string(),
                now,
            },
            "feed remove",
        )
    }

    fn report(&mut self, report: &Report, since: Millis) -> Result<ReportTally, StoreError> {
        match self.write(Command::Report {
            report: report.clone(),
            since,
        })? {
            Applied::Tally(t) => Ok(t),
            _ => Err(mismatch("report")),
        }
    }

    fn reports(&self, reporter: Option<&str>, limit: usize) -> Result<Vec<Report>, StoreError> {
        self.local.reports(reporter, limit)
    }

    fn offence(&mut self, ip: IpAddr, now: Millis) -> Result<u32, StoreError> {
        match self.write(Command::Offence { ip, now })? {
            Applied::Offences(n) => Ok(n),
            _ => Err(mismatch("offence")),
        }
    }

    fn auto_policy(&self) -> Result<AutoPolicy, StoreError> {
        self.local.auto_policy()
    }

    fn set_auto_policy(
        &mut self,
        policy: &AutoPolicy,
        user: &str,
        action: &str,
        now: Millis,
    ) -> Result<u64, StoreError> {
        self.write_seq(
            Command::SetAutoPolicy {
                policy: policy.clone(),
                user: user.to_string(),
                action: action.to_string(),
                now,
            },
            "auto set",
        )
    }

    fn backup(&self, dest: &Path) -> Result<(), StoreError> {
        self.local.backup(dest)
    }

    fn snapshots(&self) -> Arc<dyn Snapshots> {
        self.local.snapshots()
    }

    /// Mid-deploy (the writer lock held) this only hands out what the
    /// plan's catch-up applied, which the kernel must take first.
    fn follow(&mut self) -> Result<Vec<Followed>, StoreError> {
        if self.deploying.is_none() {
            self.catch_up(u64::MAX)?;
        }
        Ok(std::mem::take(&mut self.followed))
    }

    fn deploy_done(&mut self) {
        self.release();
    }

    /// A session-level advisory lock per duty, on this node's connection:
    /// whoever holds it does the duty until its connection goes, and the
    /// database then lets another node take it.
    fn holds_duty(&mut self, duty: Duty) -> bool {
        let bit = 1 << duty as u8;
        if self.duties & bit != 0 && self.client.as_ref().is_some_and(|c| !c.is_closed()) {
            return true;
        }
        let held = self.pg_afresh(|c| log::take_duty(c, duty)).unwrap_or(false);
        if held {
            self.duties |= bit;
        }
        held
    }

    fn heartbeat(&mut self, report: &NodeReport) -> Result<(), StoreError> {
        let applied = (self.local.log_seq()?, self.local.revision()?);
        let node = self.node.clone();
        self.pg_afresh(|c| log::heartbeat(c, &node, applied, report))
    }

    fn fleet_protected(&mut self) -> Result<Vec<ProtectedSet>, StoreError> {
        let node = self.node.clone();
        self.pg_afresh(|c| log::protected(c, &node))
    }

    fn nodes(&mut self) -> Result<Option<Vec<NodeStatus>>, StoreError> {
        self.pg_afresh(log::nodes).map(Some)
    }

    fn forget_node(&mut self, node: &str) -> Result<(), StoreError> {
        match self.pg_afresh(|c| log::forget(c, node))? {
            Ok(()) => Ok(()),
            Err(None) => Err(StoreError::NoNode {
                node: node.to_string(),
            }),
            Err(Some(age_ms)) => Err(StoreError::NodeLive {
                node: node.to_string(),
                age_s: age_ms / 1_000,
            }),
        }
    }
}
