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

mod calls;
mod command;
mod foresee;
mod log;

use std::{
    collections::HashMap,
    path::Path,
    sync::Arc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

pub use command::{Applied, Command, Held};
pub use log::{
    FLEET_SCHEMA_VERSION, LOG_CHANNEL, NODE_ROLE, WRITER_LOCK, deploy_announced, migrate,
};
use postgres::Client;

use super::{
    Followed, SqliteStore, StoreError,
    sqlite::{KeptDraft, remove_stale_snapshots, snapshot},
};
use crate::{
    model::{List, Millis, Sources, Stored, Target},
    store::{Announced, Duty, Plan, Store as _},
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
    /// This round loaded a snapshot: the log past it is for the next.
    skipped: bool,
    snapshots: Snapshotting,
    /// Another node's deploy that [`Store::follow`] handed to the kernel,
    /// planned here but not written yet: [`Store::follow_done`] writes it.
    deferred: Option<Deferred>,
    /// A deploy another node announced: the next round plans it ahead.
    foreseen: Option<Announced>,
    /// The plan made ahead for it.
    ahead: Option<foresee::Ahead>,
    /// The draft that a stage into an empty draft left, this node's or
    /// another's, for the deploy that most often follows it (an import,
    /// then its deploy): every node plans that deploy, and from this it
    /// need not read a million rows back.
    kept: Option<Kept>,
}

/// A draft kept as the log entry `seq` left it, since `at`.
struct Kept {
    seq: u64,
    draft: KeptDraft,
    at: Instant,
}

/// How long a kept draft waits for its deploy: a million staged changes
/// hold hundreds of MB, and a draft left staged for longer is read back
/// from the store, as it was before.
const KEPT_FOR: Duration = Duration::from_secs(60);

/// A followed deploy between its plan and its write.
struct Deferred {
    seq: u64,
    command: Command,
    plan: Arc<Plan>,
    revision: u64,
}

/// Where this node is with the fleet's snapshots (`Duty::Snapshot`).
#[derive(Default)]
struct Snapshotting {
    /// The snapshot being taken and stored: its seq and size once done.
    running: Option<JoinHandle<Result<(u64, usize), StoreError>>>,
    /// The last seq applied here, and since when.
    moved: Option<(u64, Instant)>,
    /// The seq at which the log was last measured against the latest
    /// snapshot.
    checked: Option<u64>,
}

/// How long the log must stand still before a snapshot is considered.
const SNAPSHOT_QUIET: Duration = Duration::from_secs(2);
/// How long it must stand still with changes staged but not deployed: a
/// large import is followed by its deploy, and the snapshot should hold
/// both. One of the stage alone leaves every new node to plan the deploy
/// from its entry, and that entry, a few bytes, never makes another due.
/// A round of this node's can itself last longer than
/// [`SNAPSHOT_QUIET`] (a million-entry stage, or a plan made ahead), so
/// the log only seems still then.
const SNAPSHOT_QUIET_STAGED: Duration = Duration::from_secs(60);

impl FleetStore {
    /// Follows the fleet that `connect` reaches, as node `node`, with the
    /// store under `state_dir` as this node's copy, and catches up.
    ///
    /// A new node (an empty store) starts from the fleet's latest
    /// snapshot, when there is one, and needs the database for that; so
    /// does a node far behind it (`log::snapshot_past`), keeping its own
    /// ids and rows. A node with a copy starts from it when the database
    /// cannot be reached. A store with a single host's history is refused: replaying
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
        remove_stale_snapshots(local.file());
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
            skipped: false,
            snapshots: Snapshotting::default(),
            deferred: None,
            foreseen: None,
            ahead: None,
            kept: None,
        };
        match store.pg_afresh(log::check) {
            Ok(()) => {}
            Err(e) if e.is_unreachable() && !fresh => {
                tracing::warn!("fleet: starting from the local copy: {e}");
                return Ok(store);
            }
            Err(e) => return Err(e),
        }
        let started = if fresh {
            store.bootstrap()
        } else {
            store.skip_ahead(false).map(drop)
        };
        match started {
            Ok(()) => {}
            Err(e) if e.is_unreachable() && !fresh => {
                tracing::warn!("fleet: starting from the local copy: {e}");
                return Ok(store);
            }
            Err(e) => return Err(e),
        }
        match store.catch_up(u64::MAX, false) {
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
    fn bootstrap(&mut self) -> Result<(), StoreError> {
        match self.pg_afresh(log::latest_snapshot)? {
            Some((seq, bytes)) => self.load_snapshot(seq, &bytes, false),
            None => self.local.follow_from(0),
        }
    }

    /// Loads the fleet's latest snapshot in place of this node's copy,
    /// keeping the node's ids and own rows, when the node is far behind it
    /// (`log::snapshot_past`): replaying the log would take longer. With
    /// `to_kernel`, what that changed in the deployed entries is handed
    /// out as a followed deploy of the snapshot's revision; returns
    /// whether it loaded one.
    fn skip_ahead(&mut self, to_kernel: bool) -> Result<bool, StoreError> {
        let at = self.local.log_seq()?;
        if self.pg_afresh(|c| log::snapshot_past(c, at))?.is_none() {
            return Ok(false);
        }
        let Some((seq, bytes)) = self.pg_afresh(log::latest_snapshot)? else {
            return Ok(false);
        };
        tracing::info!(at, seq, "fleet: far behind; loading the fleet's snapshot");
        let before = if to_kernel {
            self.local.deployed()?
        } else {
            Vec::new()
        };
        self.load_snapshot(seq, &bytes, true)?;
        if to_kernel {
            let plan = plan_between(before, self.local.deployed()?);
            let revision = self.local.revision()?;
            self.followed.push(Followed::Deployed {
                plan: Arc::new(plan),
                revision,
                ahead: false,
            });
        }
        Ok(true)
    }

    /// The snapshot of entry `seq` in place of this node's copy; with
    /// `carry`, the copy's node-local rows and ids kept.
    fn load_snapshot(&mut self, seq: u64, bytes: &[u8], carry: bool) -> Result<(), StoreError> {
        // Another node's store, with its ids: no draft kept here is its.
        self.kept = None;
        self.local.load_snapshot(bytes, carry)?;
        tracing::info!(
            seq,
            bytes = bytes.len(),
            "fleet: starting from the fleet's snapshot"
        );
        Ok(())
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
            let (_, bytes) = snapshot(local.file(), Some(0))?;
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
        // stands. A certificate this node does not trust is told apart;
        // anything else is the database out of reach.
        result.map_err(|e| match e {
            StoreError::Postgres(source) if let Some(detail) = refused_by_tls(&source) => {
                StoreError::FleetUntrusted {
                    database: self.database.clone(),
                    detail,
                    source,
                }
            }
            StoreError::Postgres(source) if source.as_db_error().is_none() => {
                StoreError::FleetUnavailable {
                    database: self.database.clone(),
                    source,
                }
            }
            e => e,
        })
    }

    /// Applies the log's entries up to `head`, in order. With `defer`, it
    /// stops at another node's deploy once it planned it, and leaves the
    /// write to [`FleetStore::finish_deferred`], after the kernel took the
    /// plan: the store's write of a large deploy takes as long as the
    /// kernel's, and the node's row should not wait for both.
    fn catch_up(&mut self, head: u64, defer: bool) -> Result<usize, StoreError> {
        self.finish_deferred()?;
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
            match batch.first() {
                None => return Ok(n),
                // The writer lock numbers entries without gaps: a gap is
                // entries pruned that no snapshot past them covers.
                Some(&(next, _)) if next != at + 1 => {
                    return Err(StoreError::LogGap { at, next });
                }
                Some(_) => {}
            }
            for (seq, command) in batch {
                let planned = if defer {
                    match self.planned_ahead(seq, &command) {
                        Ok(Some(plan)) => Ok(Some((plan, true))),
                        Ok(None) => {
                            let kept = self.kept_at(seq - 1);
                            command
                                .deploy_plan(&mut self.local, kept)
                                .map(|p| p.map(|p| (Arc::new(p), false)))
                        }
                        Err(e) => Err(e),
                    }
                    .map_err(|e| StoreError::Diverged {
                        seq,
                        source: Box::new(e),
                    })?
                } else {
                    self.ahead = None;
                    None
                };
                if let Some((plan, ahead)) = planned {
                    let revision = self.local.revision()? + 1;
                    self.followed.push(Followed::Deployed {
                        plan: plan.clone(),
                        revision,
                        ahead,
                    });
                    self.deferred = Some(Deferred {
                        seq,
                        command,
                        plan,
                        revision,
                    });
                    return Ok(n + 1);
                }
                let applied = self.apply_entry(seq, &command)?;
                self.note_followed(applied);
                n += 1;
            }
        }
    }

    fn note_followed(&mut self, applied: Applied) {
        match applied {
            Applied::Deployed(rev, _, plan) => self.followed.push(Followed::Deployed {
                plan: Arc::new(plan),
                revision: rev.revision,
                ahead: false,
            }),
            Applied::Expired(_, expired, now) if !expired.is_empty() => {
                self.followed.push(Followed::Expired { expired, now });
            }
            _ => {}
        }
    }

    /// Writes the deploy [`FleetStore::catch_up`] planned and deferred, if
    /// any; true when there was one.
    fn finish_deferred(&mut self) -> Result<bool, StoreError> {
        let Some(Deferred {
            seq, command, plan, ..
        }) = self.deferred.take()
        else {
            return Ok(false);
        };
        self.local.begin_entry()?;
        match command
            .write_planned(&mut self.local, &plan)
            .and_then(|_| self.local.commit_entry(seq))
        {
            Ok(()) => Ok(true),
            Err(e) => {
                self.local.abort_entry();
                Err(StoreError::Diverged {
                    seq,
                    source: Box::new(e),
                })
            }
        }
    }

    /// The log entry and revision this node's kernel applied: a deferred
    /// deploy's once it was handed out.
    fn applied_here(&self) -> Result<(u64, u64), StoreError> {
        match &self.deferred {
            Some(d) => Ok((d.seq, d.revision)),
            None => Ok((self.local.log_seq()?, self.local.revision()?)),
        }
    }

    fn apply_entry(&mut self, seq: u64, command: &Command) -> Result<Applied, StoreError> {
        let kept = self.kept_at(seq - 1);
        self.local.begin_entry()?;
        match command.apply_local(&mut self.local, kept) {
            Ok((applied, kept)) => {
                self.local.commit_entry(seq)?;
                self.keep(seq, kept);
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

    /// Keeps the draft entry `seq` left, if its command kept it.
    fn keep(&mut self, seq: u64, kept: Option<KeptDraft>) {
        self.kept = kept.map(|draft| Kept {
            seq,
            draft,
            at: Instant::now(),
        });
    }

    /// The draft kept as entry `seq` left it, if that is the entry this
    /// store applied last; any other is dropped. Every change to the
    /// store's draft or entries is an entry of the log, so the draft kept
    /// at the seq the store stands at is the store's.
    fn kept_at(&mut self, seq: u64) -> Option<KeptDraft> {
        self.kept.take().filter(|k| k.seq == seq).map(|k| k.draft)
    }

    /// [`Store::keep_snapshot`]: once the log stood still for a moment (or
    /// grew by many entries regardless), measures it against the latest
    /// snapshot, and when one is due, takes it on a thread and a
    /// connection of its own.
    fn keep_snapshot(&mut self) -> Result<(), StoreError> {
        let s = &mut self.snapshots;
        if let Some(done) = s.running.take_if(|h| h.is_finished()) {
            match done.join() {
                Ok(Ok((seq, bytes))) => {
                    tracing::info!(seq, bytes, "fleet: stored a snapshot for new nodes");
                }
                Ok(Err(e)) => {
                    tracing::warn!("fleet: taking a snapshot for new nodes: {e}; trying again");
                    s.checked = None;
                }
                Err(_) => {
                    tracing::error!("fleet: the snapshot's thread panicked; trying again");
                    s.checked = None;
                }
            }
        }
        let at = self.local.log_seq()?;
        let s = &mut self.snapshots;
        if s.moved.is_none_or(|(seq, _)| seq != at) {
            s.moved = Some((at, Instant::now()));
        }
        let still = s.moved.map_or(Duration::ZERO, |(_, t)| t.elapsed());
        let grown = at.saturating_sub(s.checked.unwrap_or(0)) >= log::SNAPSHOT_ENTRIES;
        if s.running.is_some()
            || s.checked == Some(at)
            || !(still >= SNAPSHOT_QUIET || grown)
            || self.tx_open
        {
            return Ok(());
        }
        // Counted last, and only once the rest holds: a large draft takes
        // milliseconds to count.
        if !grown && still < SNAPSHOT_QUIET_STAGED && self.local.pending_count()? > 0 {
            return Ok(());
        }
        if !self.holds_duty(Duty::Snapshot) {
            return Ok(());
        }
        let since = self.pg_afresh(|c| log::since_snapshot(c, at))?;
        self.snapshots.checked = Some(at);
        if !since.due() {
            return Ok(());
        }
        let mut client = (self.connect)()?;
        let db = self.local.file().to_path_buf();
        let io_path = db.clone();
        let running = std::thread::Builder::new()
            .name("fleet snapshot".into())
            .spawn(move || {
                let (seq, bytes) = snapshot(&db, None)?;
                log::insert_snapshot(&mut client, seq, &bytes)?;
                Ok((seq, bytes.len()))
            })
            .map_err(|source| StoreError::Io {
                path: io_path,
                source,
            })?;
        self.snapshots.running = Some(running);
        Ok(())
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
        match self.catch_up(head, false) {
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
        let kept = self.kept_at(seq - 1);
        let node = self.node.clone();
        self.local.begin_entry()?;
        // The entry's body is encoded while this node applies it: for a
        // million-entry import each takes about a second, and the followers
        // can start on the entry only once both are done.
        let (body, applied) = std::thread::scope(|s| {
            let body = s.spawn(|| log::encode(command));
            let applied = command.apply_local(&mut self.local, kept);
            (body.join(), applied)
        });
        let applied = applied.and_then(|applied| {
            let body = body.unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
            self.pg(|c| log::append(c, seq, &node, command.kind(), &body, None))?;
            self.pg(log::commit)?;
            self.tx_open = false;
            Ok(applied)
        });
        match applied {
            Ok((applied, kept)) => {
                // Committed in the fleet: should this fail, the entry is
                // applied again from the log on the next catch-up.
                self.local.commit_entry(seq)?;
                self.keep(seq, kept);
                Ok(applied)
            }
            Err(e) => {
                self.local.abort_entry();
                Err(e)
            }
        }
    }
}

/// What TLS said when it refused the server (its certificate, or its
/// name), which tokio-postgres-rustls hands over inside an I/O error.
fn refused_by_tls(e: &postgres::Error) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cause {
        let inner = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref);
        if let Some(tls) = err
            .downcast_ref::<rustls::Error>()
            .or_else(|| inner.and_then(|i| i.downcast_ref::<rustls::Error>()))
        {
            return Some(tls.to_string());
        }
        cause = err.source();
    }
    None
}

/// What a [`Command`] applied returns, when it is not what the caller's
/// method returns: a store whose commands disagree with its methods.
fn mismatch(command: &'static str) -> StoreError {
    StoreError::CommandResult { command }
}

/// What takes a kernel from the entries `before` to those `after`, both
/// under this node's ids, as a deploy's plan.
fn plan_between(before: Vec<Stored>, after: Vec<Stored>) -> Plan {
    let mut left: HashMap<(Target, List), Stored> = before
        .into_iter()
        .map(|s| ((s.entry.target, s.entry.list), s))
        .collect();
    let mut plan = Plan::default();
    for s in after {
        match left.remove(&(s.entry.target, s.entry.list)) {
            None => plan.adds.push(s),
            Some(b) if b != s => plan.changes.push((b, s)),
            Some(_) => {}
        }
    }
    plan.removes.extend(left.into_values());
    plan
}
