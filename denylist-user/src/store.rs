//! The crash-safe store: deployed entries, the shared draft (as pending
//! changes against them), revisions, entry versions for rollback, the audit
//! log and attachments, in one SQLite database under `--state-dir`.
//!
//! Every change is one transaction, committed with `synchronous=FULL`
//! before the caller answers the client. Opening never repairs, wipes or
//! recreates a database: a damaged one is reported and left byte for byte
//! as it was.

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::mpsc,
};

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, Transaction, params};

use crate::{
    entry::{Entry, Millis, Stored},
    target::Target,
    verdict::List,
};

const SCHEMA_VERSION: i64 = 4;
pub const DB_FILE: &str = "denylist.db";

const SCHEMA: &str = "
CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
{ENTRIES}
CREATE INDEX entries_expiry ON entries(expires_at) WHERE expires_at IS NOT NULL;
{PENDING}
CREATE TABLE revisions(
  rev INTEGER PRIMARY KEY, deployed_at INTEGER NOT NULL, deployed_by TEXT NOT NULL,
  message TEXT, added INTEGER NOT NULL, removed INTEGER NOT NULL, changed INTEGER NOT NULL);
CREATE TABLE versions(
  target TEXT NOT NULL, list TEXT NOT NULL, id INTEGER NOT NULL,
  reason TEXT, ttl INTEGER, expires_at INTEGER, monitor INTEGER NOT NULL,
  source TEXT NOT NULL, added_by TEXT NOT NULL, added_at INTEGER NOT NULL,
  from_rev INTEGER NOT NULL, to_rev INTEGER);
CREATE INDEX versions_span ON versions(from_rev, to_rev);
CREATE TABLE audit(
  seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, user TEXT NOT NULL,
  kind TEXT NOT NULL, target TEXT, detail TEXT);
CREATE TABLE attachments(iface TEXT PRIMARY KEY, mode TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE hits(
  id INTEGER PRIMARY KEY, packets INTEGER NOT NULL, bytes INTEGER NOT NULL, last_hit INTEGER);
INSERT INTO meta VALUES ('schema', 4), ('revision', 0), ('next_id', 1);
";

// Both tables are keyed by the binary sort key, so bulk work sorted by
// target walks each B-tree in order and one tree serves both lookups and
// address-ordered listings (deny before allow). A deployed entry is its own
// current version, deployed since `from_rev`; versions keeps only the
// versions a later revision ended, so a deploy writes each new entry once.
const ENTRIES_TABLE: &str = "CREATE TABLE entries(
  sort_key BLOB NOT NULL, list TEXT NOT NULL, target TEXT NOT NULL, id INTEGER NOT NULL,
  reason TEXT, ttl INTEGER, expires_at INTEGER, monitor INTEGER NOT NULL,
  source TEXT NOT NULL, added_by TEXT NOT NULL, added_at INTEGER NOT NULL,
  from_rev INTEGER NOT NULL,
  PRIMARY KEY(sort_key, list DESC)) WITHOUT ROWID;";
const PENDING_TABLE: &str = "CREATE TABLE pending(
  sort_key BLOB NOT NULL, list TEXT NOT NULL, target TEXT NOT NULL, op TEXT NOT NULL,
  reason TEXT, ttl INTEGER, expires_at INTEGER, monitor INTEGER NOT NULL,
  source TEXT NOT NULL, added_by TEXT NOT NULL, added_at INTEGER NOT NULL,
  staged_by TEXT NOT NULL, staged_at INTEGER NOT NULL,
  PRIMARY KEY(sort_key, list DESC)) WITHOUT ROWID;";

fn schema() -> String {
    SCHEMA
        .replace("{ENTRIES}", ENTRIES_TABLE)
        .replace("{PENDING}", PENDING_TABLE)
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the store {path} failed its integrity check ({detail}); denylistd will not start on it and has not changed it: restore a backup (docs/operations.md) or move the file away to start empty. Filtering goes on with the pinned maps."
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "the state directory {path} is not writable ({detail}): fix its permissions or choose another --state-dir"
    )]
    NotWritable { path: PathBuf, detail: String },
    #[error(
        "{path} is a symbolic link, and denylistd opens none of its files through one: remove the link"
    )]
    Symlink { path: PathBuf },
    #[error(
        "the store {path} has schema version {found}, newer than this denylistd understands ({SCHEMA_VERSION}): upgrade denylistd"
    )]
    Schema { path: PathBuf, found: i64 },
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{target} is not on the {} list: nothing was staged", list.as_str())]
    NotFound { target: Target, list: List },
    #[error("{target} ({}) has no pending change to deploy: `denylist diff` lists them", list.as_str())]
    NotPending { target: Target, list: List },
    #[error("revision {rev} does not exist: `denylist history` lists the revisions")]
    NoRevision { rev: u64 },
    #[error(
        "there are {count} pending changes that this would overwrite: deploy or discard them, or pass --force"
    )]
    Conflict { count: usize },
    #[error(
        "all 2^32 entry ids have been used: export the entries, start a new store, and import them"
    )]
    IdsExhausted,
    #[error("the store holds an unreadable value ({0}): restore a backup")]
    Damaged(String),
}

/// How a staging call is recorded in the audit log.
#[derive(Debug, Clone)]
pub enum Audit {
    /// One `stage add|change|remove` event per target.
    Each,
    /// One event for the whole call, e.g. an import of 1M lines.
    Summary {
        kind: String,
        detail: serde_json::Value,
    },
}

/// A pending entry's `expires_at` that means "at the deploy: now + TTL,
/// unless the deployed expiry is later": an import re-listing an entry.
pub const REFRESH: Millis = -1;

/// What a client asks to stage for one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// Add an entry, or change the given fields of an existing one.
    Upsert {
        target: Target,
        list: List,
        reason: Option<String>,
        /// `Some(None)`: never expires; `None`: keep (a new entry gets the default).
        ttl: Option<Option<u64>>,
        monitor: Option<bool>,
        source: Option<String>,
        /// An import: its TTL replaces the old one, but the expiry it gives
        /// never comes before the deployed one (the longer expiry wins).
        keep_longer_ttl: bool,
    },
    Remove {
        target: Target,
        list: List,
    },
    /// Put an entry back with every field as given (an import of our own
    /// export); the expiry is set again by the deploy, from the TTL.
    Restore(Entry),
}

impl Stage {
    pub fn key(&self) -> (Target, List) {
        match self {
            Stage::Upsert { target, list, .. } | Stage::Remove { target, list } => (*target, *list),
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
    fn as_str(self) -> &'static str {
        match self {
            Op::Add => "add",
            Op::Change => "change",
            Op::Remove => "remove",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "add" => Ok(Op::Add),
            "change" => Ok(Op::Change),
            "remove" => Ok(Op::Remove),
            other => Err(StoreError::Damaged(format!("pending op {other:?}"))),
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

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Revision {
    pub revision: u64,
    #[serde(with = "crate::entry::time_ms")]
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
    #[serde(with = "crate::entry::time_ms")]
    pub at: Millis,
    pub user: String,
    pub kind: String,
    pub target: Option<String>,
    pub detail: Option<serde_json::Value>,
}

/// An entry's hits, folded from the kernel's per-CPU counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HitTotal {
    pub packets: u64,
    pub bytes: u64,
    pub last_hit: Option<Millis>,
}

/// A recorded deploy's revision and audit sequence number, or why the
/// store could not record it.
pub type Committed = Result<(Revision, u64), StoreError>;

/// What a deploy will do, with ids and expiries fixed.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub adds: Vec<Stored>,
    pub changes: Vec<(Stored, Stored)>,
    pub removes: Vec<Stored>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> usize {
        self.adds.len() + self.changes.len() + self.removes.len()
    }
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
    _checkpointer: Checkpointer,
}

/// Checkpoints the WAL on its own connection and thread, twice a second and
/// once more when the store closes. A passive checkpoint never blocks the
/// writer or readers; committed data is durable in the WAL either way.
struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    const EVERY: std::time::Duration = std::time::Duration::from_millis(500);

    fn start(db: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(
            db,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || {
                let checkpoint = || {
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!("checkpointing the store's WAL: {e}; retrying");
                    }
                };
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(Self::EVERY) {
                    checkpoint();
                }
                checkpoint();
            })
            .map_err(|source| StoreError::Io {
                path: db.to_path_buf(),
                source,
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn not_writable(path: &Path, detail: impl ToString) -> StoreError {
    StoreError::NotWritable {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    }
}

/// Checks an existing database without changing a byte of it: opened
/// read-only, SQLite cannot roll back a hot journal. In WAL mode a
/// read-only reader still sees the committed transactions in the WAL.
fn check_read_only(db: &Path) -> Result<(), StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        path: db.to_path_buf(),
        detail,
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(db, flags).map_err(|e| corrupt(e.to_string()))?;
    let result: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| corrupt(e.to_string()))?;
    if result != "ok" {
        return Err(corrupt(result));
    }
    let version: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(|e| corrupt(e.to_string()))?;
    match version {
        Some(v) if v > SCHEMA_VERSION => Err(StoreError::Schema {
            path: db.to_path_buf(),
            found: v,
        }),
        Some(_) => Ok(()),
        None => Err(corrupt("no schema version".into())),
    }
}

fn entry_from(row: &Row<'_>, at: usize) -> rusqlite::Result<Result<Entry, StoreError>> {
    let target: String = row.get(at)?;
    let list: String = row.get(at + 1)?;
    let ttl: Option<i64> = row.get(at + 3)?;
    Ok((|| {
        Ok(Entry {
            target: Target::parse(&target).map_err(|e| StoreError::Damaged(e.to_string()))?,
            list: list.parse().map_err(StoreError::Damaged)?,
            reason: row.get(at + 2)?,
            ttl: ttl.map(|t| t as u64),
            expires_at: row.get(at + 4)?,
            monitor: row.get(at + 5)?,
            source: row.get(at + 6)?,
            added_by: row.get(at + 7)?,
            added_at: row.get(at + 8)?,
        })
    })())
}

/// Columns after (target, list) in `entry_from` order.
const ENTRY_COLS: &str =
    "target, list, reason, ttl, expires_at, monitor, source, added_by, added_at";

/// Refuses the store when it, or a file SQLite keeps beside it, is a
/// symbolic link. SQLite opens them all with O_NOFOLLOW, so a planted link
/// only makes it fail, with an error that reads like a damaged store.
pub fn refuse_links(db: &Path) -> Result<(), StoreError> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut file = db.as_os_str().to_owned();
        file.push(suffix);
        let file = PathBuf::from(file);
        if fs::symlink_metadata(&file).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(StoreError::Symlink { path: file });
        }
    }
    Ok(())
}

impl Store {
    /// Opens `state_dir/denylist.db`, creating the directory (mode 0700)
    /// and an empty store when neither exists.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        if !state_dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(state_dir)
                .map_err(|e| not_writable(state_dir, e))?;
        }
        let meta = fs::symlink_metadata(state_dir).map_err(|e| not_writable(state_dir, e))?;
        if meta.file_type().is_symlink() {
            return Err(StoreError::Symlink {
                path: state_dir.to_path_buf(),
            });
        }
        if !meta.is_dir() {
            return Err(not_writable(state_dir, "not a directory"));
        }
        // access(2) as the effective user tells a read-only mount or a
        // missing permission apart before SQLite hides it in a vague error.
        let c = std::ffi::CString::new(state_dir.as_os_str().as_encoded_bytes())
            .map_err(|e| not_writable(state_dir, e))?;
        // SAFETY: a valid C string.
        if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
            return Err(not_writable(state_dir, std::io::Error::last_os_error()));
        }
        let path = state_dir.join(DB_FILE);
        refuse_links(&path)?;
        let exists = fs::symlink_metadata(&path).is_ok();
        if exists {
            check_read_only(&path)?;
        } else {
            // Create the file ourselves: 0600 and never through a symlink.
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map_err(|e| not_writable(&path, e))?;
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // 16 MiB of page cache (the default is 2 MiB) keeps a bulk deploy's
        // B-tree pages in memory instead of spilling them to the WAL.
        conn.pragma_update(None, "cache_size", -16384)?;
        // The checkpointer thread copies the WAL into the database instead:
        // done by the committing connection, it adds seconds to a 1M-entry
        // deploy. A reset WAL is cut back to 64 MiB.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.pragma_update(None, "journal_size_limit", 64 << 20)?;
        let mut conn = conn;
        if exists {
            upgrade(&mut conn)?;
        } else {
            conn.execute_batch(&format!("BEGIN; {} COMMIT;", schema()))?;
        }
        let checkpointer = Checkpointer::start(&path)?;
        Ok(Self {
            conn,
            path,
            _checkpointer: checkpointer,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The deployed revision, 0 before the first deploy.
    pub fn revision(&self) -> Result<u64, StoreError> {
        Ok(meta(&self.conn, "revision")? as u64)
    }

    /// The deployed entries, expired ones included (the sweep removes them).
    pub fn deployed(&self) -> Result<Vec<Stored>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT id, {ENTRY_COLS} FROM entries"))?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, u32>(0)?, entry_from(r, 1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, entry) = row?;
            out.push(Stored { id, entry: entry? });
        }
        Ok(out)
    }

    /// The draft's entries: live deployed ones with the pending changes
    /// applied (a pending entry's expiry is set again by its deploy).
    pub fn draft(&self, now: Millis) -> Result<Vec<Entry>, StoreError> {
        let mut by_key: BTreeMap<(Target, List), Entry> = self
            .deployed()?
            .into_iter()
            .filter(|s| !s.entry.expired_at(now))
            .map(|s| ((s.entry.target, s.entry.list), s.entry))
            .collect();
        for p in self.pending()? {
            let key = p.key();
            match p.after {
                Some(e) => by_key.insert(key, e),
                None => by_key.remove(&key),
            };
        }
        Ok(by_key.into_values().collect())
    }

    /// The draft's entries from `source`, by key only: what an import with
    /// --replace removes when its file leaves them out. One pass in SQL, so
    /// a 1M-entry draft is not read into memory for it.
    pub fn draft_keys_from(
        &self,
        source: &str,
        now: Millis,
    ) -> Result<Vec<(Target, List)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT e.target, e.list FROM entries e
             WHERE e.source = ?1 AND (e.expires_at IS NULL OR e.expires_at > ?2)
               AND NOT EXISTS (SELECT 1 FROM pending p WHERE p.sort_key = e.sort_key AND p.list = e.list)
             UNION ALL
             SELECT target, list FROM pending WHERE source = ?1 AND op != 'remove'",
        )?;
        let rows = stmt.query_map(params![source, now], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (t, l) = row?;
            let target = Target::parse(&t).map_err(|e| StoreError::Damaged(e.to_string()))?;
            out.push((target, l.parse().map_err(StoreError::Damaged)?));
        }
        Ok(out)
    }

    pub fn pending_count(&self) -> Result<usize, StoreError> {
        pending_rows(&self.conn)
    }

    /// The pending changes, sorted by target.
    pub fn pending(&self) -> Result<Vec<Pending>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT p.op, p.staged_by, p.staged_at, {p}, e.id, {e} FROM pending p
             LEFT JOIN entries e ON e.sort_key = p.sort_key AND e.list = p.list",
            p = prefixed("p"),
            e = prefixed("e"),
        ))?;
        let rows = stmt.query_map([], |r| {
            let op: String = r.get(0)?;
            let staged_by: String = r.get(1)?;
            let staged_at: Millis = r.get(2)?;
            let after = entry_from(r, 3)?;
            let id: Option<u32> = r.get(12)?;
            let before = match id {
                Some(id) => Some((id, entry_from(r, 13)?)),
                None => None,
            };
            Ok((op, staged_by, staged_at, after, before))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (op, staged_by, staged_at, after, before) = row?;
            let op = Op::parse(&op)?;
            let before = match before {
                Some((id, e)) => Some(Stored { id, entry: e? }),
                None => None,
            };
            out.push(Pending {
                op,
                after: if op == Op::Remove { None } else { Some(after?) },
                before,
                staged_by,
                staged_at,
            });
        }
        out.sort_by_key(|p| p.key());
        Ok(out)
    }

    /// Stages `ops` as one transaction: a target that is not there to
    /// remove fails the whole call and nothing is staged. Returns the
    /// sequence number of the last audit event, and for each op the pending
    /// change it left (none when the draft now equals the deployed entry).
    pub fn stage(
        &mut self,
        ops: &[Stage],
        user: &str,
        now: Millis,
        default_ttl: Option<u64>,
        audit_as: &Audit,
    ) -> Result<(u64, Vec<Option<Op>>), StoreError> {
        let tx = self.conn.transaction()?;
        let mut seq = 0;
        let mut left = vec![None; ops.len()];
        // In key order, so a bulk import walks the B-trees in order; the
        // sort is stable, so repeats of one key keep their given order.
        let mut order: Vec<usize> = (0..ops.len()).collect();
        order.sort_by_cached_key(|&i| {
            let (target, list) = ops[i].key();
            (sort_key(&target), list)
        });
        // With no draft to start from (the usual bulk import), only a key
        // this call already staged can have a pending row: a million
        // lookups that would find nothing are skipped.
        let no_draft = pending_rows(&tx)? == 0;
        let mut staged: std::collections::HashSet<(Target, List)> =
            std::collections::HashSet::new();
        for i in order {
            let op = &ops[i];
            let (target, list) = op.key();
            let deployed = deployed_entry(&tx, target, list)?;
            let pending = if no_draft && staged.insert((target, list)) {
                None
            } else {
                pending_row(&tx, target, list)?
            };
            // An expired entry is absent, even before the sweep removes it.
            let draft: Option<Entry> = match &pending {
                Some((Op::Remove, _)) => None,
                Some((_, e)) => Some(e.clone()),
                None => deployed
                    .as_ref()
                    .filter(|d| !d.entry.expired_at(now))
                    .map(|s| s.entry.clone()),
            };
            let existed = draft.is_some();
            let new = match op {
                Stage::Restore(e) => Some(e.clone()),
                Stage::Remove { .. } => {
                    if draft.is_none() {
                        return Err(StoreError::NotFound { target, list });
                    }
                    None
                }
                Stage::Upsert {
                    reason,
                    ttl,
                    monitor,
                    source,
                    keep_longer_ttl,
                    ..
                } => Some(match draft {
                    Some(mut e) => {
                        if let Some(r) = reason {
                            e.reason = Some(r.clone());
                        }
                        if let Some(t) = ttl {
                            // A TTL given again counts from the next deploy:
                            // exactly (the admin said so), or never shorter
                            // (an import, where the longer expiry wins, and
                            // a permanent entry stays permanent).
                            if !*keep_longer_ttl {
                                e.ttl = *t;
                                e.expires_at = None;
                            } else if e.ttl.is_some() {
                                e.ttl = *t;
                                e.expires_at = Some(REFRESH);
                            }
                        }
                        if let Some(m) = monitor {
                            e.monitor = *m && list == List::Deny;
                        }
                        if let Some(s) = source {
                            e.source = s.clone();
                        }
                        e
                    }
                    None => Entry {
                        target,
                        list,
                        reason: reason.clone(),
                        ttl: match ttl {
                            Some(t) => *t,
                            None if list == List::Deny => default_ttl,
                            None => None,
                        },
                        expires_at: None,
                        monitor: monitor.unwrap_or(false) && list == List::Deny,
                        source: source.clone().unwrap_or_else(|| "manual".into()),
                        added_by: user.to_string(),
                        added_at: now,
                    },
                }),
            };
            // The pending row is whatever makes draft = deployed + pending.
            let row = match (&deployed, &new) {
                (None, None) => None,
                (Some(d), None) => Some((Op::Remove, d.entry.clone())),
                (None, Some(n)) => Some((Op::Add, n.clone())),
                (Some(d), Some(n))
                    if d.entry.same_settings(n)
                        && !d.entry.expired_at(now)
                        && !(n.ttl.is_some() && matches!(n.expires_at, None | Some(REFRESH))) =>
                {
                    None
                }
                (Some(_), Some(n)) => Some((Op::Change, n.clone())),
            };
            match &row {
                // INSERT OR REPLACE: it overwrites a pending row.
                Some((op, e)) => insert_pending(&tx, *op, e, user, now)?,
                None if pending.is_some() => {
                    tx.prepare_cached("DELETE FROM pending WHERE sort_key = ?1 AND list = ?2")?
                        .execute(params![sort_key(&target).as_slice(), list.as_str()])?;
                }
                None => {}
            }
            left[i] = row.as_ref().map(|(op, _)| *op);
            let kind = match (&new, existed) {
                (None, _) => "remove",
                (Some(_), false) => "add",
                (Some(_), true) => "change",
            };
            if let Audit::Each = audit_as {
                // The draft's entry after the change, or for a removal the
                // list it left: enough to replay the draft from the log.
                let detail = Some(match &new {
                    Some(e) => {
                        let mut shown = e.clone();
                        if shown.expires_at == Some(REFRESH) {
                            shown.expires_at = None;
                        }
                        serde_json::to_value(shown).expect("entries serialize")
                    }
                    None => serde_json::json!({ "list": list.as_str() }),
                });
                seq = audit(
                    &tx,
                    now,
                    user,
                    &format!("stage {kind}"),
                    Some(&target.to_string()),
                    detail,
                )?;
            }
        }
        if let Audit::Summary { kind, detail } = audit_as {
            seq = audit(&tx, now, user, kind, None, Some(detail.clone()))?;
        }
        tx.commit()?;
        Ok((seq, left))
    }

    /// Drops every pending change.
    pub fn discard(&mut self, user: &str, now: Millis) -> Result<(u64, usize), StoreError> {
        let tx = self.conn.transaction()?;
        let n = tx.execute("DELETE FROM pending", [])?;
        let seq = audit(
            &tx,
            now,
            user,
            "discard",
            None,
            Some(serde_json::json!({ "changes": n })),
        )?;
        tx.commit()?;
        Ok((seq, n))
    }

    /// What deploying would do, without reserving ids: for a dry run.
    pub fn preview(
        &mut self,
        only: Option<&[(Target, List)]>,
        now: Millis,
    ) -> Result<Plan, StoreError> {
        self.plan_inner(only, now, false)
    }

    /// Fixes ids and expiries for deploying the pending changes (only those
    /// for `only`, when given). Ids are reserved durably before the kernel
    /// sees them, so no id is ever handed out twice.
    pub fn plan(
        &mut self,
        only: Option<&[(Target, List)]>,
        now: Millis,
    ) -> Result<Plan, StoreError> {
        self.plan_inner(only, now, true)
    }

    fn plan_inner(
        &mut self,
        only: Option<&[(Target, List)]>,
        now: Millis,
        reserve: bool,
    ) -> Result<Plan, StoreError> {
        let mut pending = self.pending()?;
        if let Some(keys) = only {
            let staged: std::collections::HashSet<(Target, List)> =
                pending.iter().map(Pending::key).collect();
            for k in keys {
                if !staged.contains(k) {
                    return Err(StoreError::NotPending {
                        target: k.0,
                        list: k.1,
                    });
                }
            }
            let keys: std::collections::HashSet<&(Target, List)> = keys.iter().collect();
            pending.retain(|p| keys.contains(&p.key()));
        }
        let adds = pending.iter().filter(|p| p.op == Op::Add).count() as i64;
        let tx = self.conn.transaction()?;
        let first_id = meta(&tx, "next_id")?;
        if first_id + adds > i64::from(u32::MAX) {
            return Err(StoreError::IdsExhausted);
        }
        if reserve {
            set_meta(&tx, "next_id", first_id + adds)?;
            tx.commit()?;
        }
        let mut plan = Plan::default();
        let mut next = first_id as u32;
        let expiry = |ttl: Option<u64>| ttl.map(|t| now + (t as i64) * 1000);
        for p in pending {
            match (p.op, p.before, p.after) {
                (Op::Add, _, Some(mut e)) => {
                    e.expires_at = expiry(e.ttl);
                    plan.adds.push(Stored { id: next, entry: e });
                    next += 1;
                }
                (Op::Change, Some(before), Some(mut e)) => {
                    // A TTL counts from the deploy that sets it; an
                    // unchanged TTL keeps its expiry, unless that has passed
                    // and the entry is being put back.
                    let live = !before.entry.expired_at(now);
                    e.expires_at = match e.expires_at {
                        Some(REFRESH) if live => match (before.entry.expires_at, expiry(e.ttl)) {
                            (Some(old), Some(new)) => Some(old.max(new)),
                            (_, new) => new,
                        },
                        Some(_) if live && e.ttl == before.entry.ttl => before.entry.expires_at,
                        _ => expiry(e.ttl),
                    };
                    let id = before.id;
                    plan.changes.push((before, Stored { id, entry: e }));
                }
                (Op::Remove, Some(before), _) => plan.removes.push(before),
                (op, _, _) => {
                    return Err(StoreError::Damaged(format!(
                        "pending {} without its entry",
                        op.as_str()
                    )));
                }
            }
        }
        Ok(plan)
    }

    /// Records a deploy that the kernel already carries: the new revision,
    /// the deployed set, entry versions, and the audit event.
    pub fn commit(
        &mut self,
        plan: &Plan,
        user: &str,
        message: Option<&str>,
        now: Millis,
        kind: &str,
    ) -> Result<(Revision, u64), StoreError> {
        let tx = self.conn.transaction()?;
        let done = write_commit(&tx, plan, user, message, now, kind)?;
        tx.commit()?;
        Ok(done)
    }

    /// [`Self::commit`], with the rows written while `kernel` runs on
    /// another thread: a big deploy costs the longer of the two, not their
    /// sum. The transaction commits only once `kernel` has succeeded, and
    /// its value comes back with the store's result; if it fails, nothing
    /// is recorded and its error is returned.
    #[allow(clippy::too_many_arguments)]
    pub fn commit_alongside<T: Send, E: Send>(
        &mut self,
        plan: &Plan,
        user: &str,
        message: Option<&str>,
        now: Millis,
        kind: &str,
        kernel: impl FnOnce() -> Result<T, E> + Send,
    ) -> Result<(T, Committed), E> {
        std::thread::scope(|scope| {
            let applied = scope.spawn(kernel);
            let written = self
                .conn
                .transaction()
                .map_err(StoreError::from)
                .and_then(|tx| Ok((write_commit(&tx, plan, user, message, now, kind)?, tx)));
            let value = match applied.join() {
                Ok(Ok(value)) => value,
                Ok(Err(e)) => return Err(e),
                Err(panic) => std::panic::resume_unwind(panic),
            };
            let recorded = written.and_then(|(done, tx)| {
                tx.commit()?;
                Ok(done)
            });
            Ok((value, recorded))
        })
    }
}

/// Writes a deploy's rows into `tx`, which the caller commits.
fn write_commit(
    tx: &Transaction<'_>,
    plan: &Plan,
    user: &str,
    message: Option<&str>,
    now: Millis,
    kind: &str,
) -> Result<(Revision, u64), StoreError> {
    let rev = meta(tx, "revision")? + 1;
    // Every change in the plan came from its own pending row, so equal
    // counts mean the plan is the whole draft: one bulk delete then.
    let whole = pending_rows(tx)? == plan.len();
    for s in &plan.removes {
        delete_entry(tx, &s.entry, rev, whole)?;
        tx.prepare_cached("DELETE FROM hits WHERE id = ?1")?
            .execute([s.id])?;
    }
    for (before, after) in &plan.changes {
        delete_entry(tx, &before.entry, rev, whole)?;
        insert_entry(tx, after, rev, whole)?;
    }
    for s in &plan.adds {
        insert_entry(tx, s, rev, whole)?;
    }
    if whole {
        tx.execute("DELETE FROM pending", [])?;
    }
    let revision = Revision {
        revision: rev as u64,
        deployed_at: now,
        deployed_by: user.to_string(),
        message: message.map(str::to_string),
        added: plan.adds.len() as u64,
        removed: plan.removes.len() as u64,
        changed: plan.changes.len() as u64,
    };
    tx.execute(
        "INSERT INTO revisions VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            rev,
            now,
            user,
            message,
            plan.adds.len() as i64,
            plan.removes.len() as i64,
            plan.changes.len() as i64
        ],
    )?;
    set_meta(tx, "revision", rev)?;
    let mut detail = serde_json::json!({
        "revision": rev, "message": message,
        "added": revision.added, "removed": revision.removed, "changed": revision.changed,
    });
    // A partial deploy names the changes it shipped (`only`) or, when
    // fewer, those that stay pending (`kept`), so that the log alone
    // replays the draft without a row the size of a big import.
    if !whole {
        let key = |t: String, l: &str| serde_json::json!({ "target": t, "list": l });
        if pending_rows(tx)? < plan.len() {
            let mut stmt = tx.prepare("SELECT target, list FROM pending")?;
            let kept = stmt
                .query_map([], |r| Ok(key(r.get(0)?, &r.get::<_, String>(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            detail["kept"] = kept.into();
        } else {
            let shipped = plan
                .adds
                .iter()
                .chain(plan.changes.iter().map(|(_, after)| after))
                .chain(&plan.removes)
                .map(|s| key(s.entry.target.to_string(), s.entry.list.as_str()));
            detail["only"] = shipped.collect();
        }
    }
    let seq = audit(tx, now, user, kind, None, Some(detail))?;
    Ok((revision, seq))
}

impl Store {
    /// Makes the draft equal to revision `rev`, leaving out entries that
    /// have expired since (returned). With pending changes and no `force`,
    /// refuses with a conflict.
    pub fn rollback(
        &mut self,
        rev: u64,
        force: bool,
        user: &str,
        now: Millis,
    ) -> Result<(u64, Vec<Entry>), StoreError> {
        let current = self.revision()?;
        if rev == 0 || rev > current {
            return Err(StoreError::NoRevision { rev });
        }
        let pending = self.pending_count()?;
        if pending > 0 && !force {
            return Err(StoreError::Conflict { count: pending });
        }
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {ENTRY_COLS} FROM versions WHERE from_rev <= ?1 AND to_rev > ?1
             UNION ALL SELECT {ENTRY_COLS} FROM entries WHERE from_rev <= ?1"
        ))?;
        let mut target_set: HashMap<(Target, List), Entry> = HashMap::new();
        let mut expired = Vec::new();
        for row in stmt.query_map([rev as i64], |r| entry_from(r, 0))? {
            let e = row??;
            if e.expired_at(now) {
                expired.push(e);
            } else {
                target_set.insert((e.target, e.list), e);
            }
        }
        drop(stmt);
        let deployed: HashMap<(Target, List), Entry> = self
            .deployed()?
            .into_iter()
            .map(|s| ((s.entry.target, s.entry.list), s.entry))
            .collect();
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM pending", [])?;
        for (key, e) in &target_set {
            match deployed.get(key) {
                Some(d) if d.same_settings(e) => {}
                Some(_) => insert_pending(&tx, Op::Change, e, user, now)?,
                None => insert_pending(&tx, Op::Add, e, user, now)?,
            }
        }
        for (key, d) in &deployed {
            if !target_set.contains_key(key) {
                insert_pending(&tx, Op::Remove, d, user, now)?;
            }
        }
        let detail = serde_json::json!({
            "to_revision": rev,
            "left_out_expired": expired.iter().map(|e| e.target.to_string()).collect::<Vec<_>>(),
        });
        let seq = audit(&tx, now, user, "rollback", None, Some(detail))?;
        tx.commit()?;
        expired.sort_by_key(|e| (e.target, e.list));
        Ok((seq, expired))
    }

    /// Deployed entries whose expiry has passed.
    pub fn expired(&self, now: Millis) -> Result<Vec<Stored>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT id, {ENTRY_COLS} FROM entries WHERE expires_at IS NOT NULL AND expires_at <= ?1"
        ))?;
        let rows = stmt.query_map([now], |r| Ok((r.get::<_, u32>(0)?, entry_from(r, 1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, entry) = row?;
            out.push(Stored { id, entry: entry? });
        }
        Ok(out)
    }

    /// Removes entries whose expiry has passed from the deployed set and
    /// the draft, with an `expiry` audit event each; no revision.
    pub fn expire(&mut self, expired: &[Stored], now: Millis) -> Result<u64, StoreError> {
        let tx = self.conn.transaction()?;
        let rev = meta(&tx, "revision")?;
        let mut seq = 0;
        for s in expired {
            let (t, l) = (s.entry.target.to_string(), s.entry.list.as_str());
            let key = sort_key(&s.entry.target);
            // It was in the revisions up to now, and is in none after.
            close_version(&tx, &s.entry, rev + 1)?;
            tx.execute(
                "DELETE FROM entries WHERE sort_key = ?1 AND list = ?2",
                params![key.as_slice(), l],
            )?;
            // The draft loses it too, so no later deploy revives it; but a
            // re-add staged after it expired is a new entry, and stays.
            tx.execute(
                "DELETE FROM pending WHERE sort_key = ?1 AND list = ?2 AND (op = 'remove' OR staged_at < ?3)",
                params![key.as_slice(), l, s.entry.expires_at.unwrap_or(now)],
            )?;
            tx.execute(
                "UPDATE pending SET op = 'add' WHERE sort_key = ?1 AND list = ?2",
                params![key.as_slice(), l],
            )?;
            tx.execute("DELETE FROM hits WHERE id = ?1", [s.id])?;
            let detail = serde_json::json!({ "list": l, "expires_at": s.entry.expires_at.map(crate::entry::rfc3339) });
            seq = audit(&tx, now, "denylistd", "expiry", Some(&t), Some(detail))?;
        }
        tx.commit()?;
        Ok(seq)
    }

    /// Adds hit counts folded from the kernel, by entry id.
    pub fn add_hits(&mut self, deltas: &[(u32, HitTotal)]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO hits VALUES (?1, ?2, ?3, ?4) ON CONFLICT(id) DO UPDATE SET
                 packets = packets + excluded.packets, bytes = bytes + excluded.bytes,
                 last_hit = CASE WHEN last_hit IS NULL THEN excluded.last_hit
                                 WHEN excluded.last_hit IS NULL THEN last_hit
                                 ELSE max(last_hit, excluded.last_hit) END",
            )?;
            for (id, h) in deltas {
                stmt.execute(params![id, h.packets as i64, h.bytes as i64, h.last_hit])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Folded hit totals by entry id.
    pub fn hit_totals(&self) -> Result<HashMap<u32, HitTotal>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, packets, bytes, last_hit FROM hits")?;
        let rows = stmt.query_map([], |r| {
            let total = HitTotal {
                packets: r.get::<_, i64>(1)? as u64,
                bytes: r.get::<_, i64>(2)? as u64,
                last_hit: r.get(3)?,
            };
            Ok((r.get::<_, u32>(0)?, total))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records an event that changed nothing in the store itself.
    pub fn record(
        &mut self,
        user: &str,
        kind: &str,
        target: Option<&str>,
        detail: Option<serde_json::Value>,
        now: Millis,
    ) -> Result<u64, StoreError> {
        let tx = self.conn.transaction()?;
        let seq = audit(&tx, now, user, kind, target, detail)?;
        tx.commit()?;
        Ok(seq)
    }

    pub fn history(&self) -> Result<Vec<Revision>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT * FROM revisions ORDER BY rev")?;
        let rows = stmt.query_map([], |r| {
            Ok(Revision {
                revision: r.get::<_, i64>(0)? as u64,
                deployed_at: r.get(1)?,
                deployed_by: r.get(2)?,
                message: r.get(3)?,
                added: r.get::<_, i64>(4)? as u64,
                removed: r.get::<_, i64>(5)? as u64,
                changed: r.get::<_, i64>(6)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn audit_since(&self, since: u64) -> Result<Vec<AuditEvent>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT seq, at, user, kind, target, detail FROM audit WHERE seq > ?1 ORDER BY seq",
        )?;
        let rows = stmt.query_map([since as i64], |r| {
            let detail: Option<String> = r.get(5)?;
            Ok(AuditEvent {
                seq: r.get::<_, i64>(0)? as u64,
                at: r.get(1)?,
                user: r.get(2)?,
                kind: r.get(3)?,
                target: r.get(4)?,
                detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn attachments(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT iface, mode FROM attachments ORDER BY iface")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn set_attachment(
        &mut self,
        iface: &str,
        mode: Option<&str>,
        user: &str,
        now: Millis,
    ) -> Result<u64, StoreError> {
        let tx = self.conn.transaction()?;
        let kind = match mode {
            Some(m) => {
                tx.execute(
                    "INSERT OR REPLACE INTO attachments VALUES (?1, ?2)",
                    params![iface, m],
                )?;
                "attach"
            }
            None => {
                tx.execute("DELETE FROM attachments WHERE iface = ?1", params![iface])?;
                "detach"
            }
        };
        let seq = audit(
            &tx,
            now,
            user,
            kind,
            Some(iface),
            mode.map(|m| serde_json::json!({ "xdp_mode": m })),
        )?;
        tx.commit()?;
        Ok(seq)
    }

    /// A consistent copy through SQLite's online backup, written to a new
    /// file (never through a symlink) with mode 0600.
    pub fn backup(&self, dest: &Path) -> Result<(), StoreError> {
        let io = |source| StoreError::Io {
            path: dest.to_path_buf(),
            source,
        };
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(dest)
            .map_err(io)?;
        let mut out = Connection::open(dest)?;
        let b = rusqlite::backup::Backup::new(&self.conn, &mut out)?;
        b.run_to_completion(1024, std::time::Duration::ZERO, None)?;
        Ok(())
    }
}

/// Brings a store written by an older denylistd to SCHEMA_VERSION, one
/// transaction a version: 2 added per-entry hit totals and the expiry
/// index; 3 a sort key, so listings stream in address order; 4 keys entries
/// and pending by that sort key and links each entry to its open version.
fn upgrade(conn: &mut Connection) -> Result<(), StoreError> {
    if meta(conn, "schema")? < 2 {
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE IF NOT EXISTS hits(
               id INTEGER PRIMARY KEY, packets INTEGER NOT NULL, bytes INTEGER NOT NULL, last_hit INTEGER);
             CREATE INDEX IF NOT EXISTS entries_expiry ON entries(expires_at) WHERE expires_at IS NOT NULL;
             UPDATE meta SET value = 2 WHERE key = 'schema';
             COMMIT;",
        )?;
    }
    if meta(conn, "schema")? < 3 {
        let tx = conn.transaction()?;
        tx.execute_batch(
            "ALTER TABLE entries ADD COLUMN sort_key BLOB NOT NULL DEFAULT x'';
             ALTER TABLE pending ADD COLUMN sort_key BLOB NOT NULL DEFAULT x'';",
        )?;
        for table in ["entries", "pending"] {
            let targets: Vec<String> = tx
                .prepare(&format!("SELECT DISTINCT target FROM {table}"))?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for t in targets {
                let key = Target::parse(&t).map_err(|e| StoreError::Damaged(e.to_string()))?;
                tx.execute(
                    &format!("UPDATE {table} SET sort_key = ?2 WHERE target = ?1"),
                    params![t, sort_key(&key).as_slice()],
                )?;
            }
        }
        tx.execute_batch(
            "CREATE INDEX entries_sorted ON entries(sort_key, list);
             CREATE INDEX pending_sorted ON pending(sort_key, list);
             UPDATE meta SET value = 3 WHERE key = 'schema';",
        )?;
        tx.commit()?;
    }
    if meta(conn, "schema")? < 4 {
        let tx = conn.transaction()?;
        tx.execute_batch(&format!(
            "ALTER TABLE entries RENAME TO entries_v3;
             ALTER TABLE pending RENAME TO pending_v3;
             DROP INDEX entries_sorted;
             DROP INDEX entries_expiry;
             DROP INDEX pending_sorted;
             {ENTRIES_TABLE}
             {PENDING_TABLE}
             INSERT INTO entries(sort_key, list, target, id, reason, ttl, expires_at, monitor,
               source, added_by, added_at, from_rev)
             SELECT e.sort_key, e.list, e.target, e.id, e.reason, e.ttl, e.expires_at, e.monitor,
               e.source, e.added_by, e.added_at,
               coalesce((SELECT max(v.from_rev) FROM versions v
                WHERE v.target = e.target AND v.list = e.list AND v.to_rev IS NULL), 0)
             FROM entries_v3 e;
             DELETE FROM versions WHERE to_rev IS NULL;
             INSERT INTO pending(sort_key, list, target, op, reason, ttl, expires_at, monitor,
               source, added_by, added_at, staged_by, staged_at)
             SELECT sort_key, list, target, op, reason, ttl, expires_at, monitor,
               source, added_by, added_at, staged_by, staged_at FROM pending_v3;
             DROP TABLE entries_v3;
             DROP TABLE pending_v3;
             DROP INDEX versions_open;
             CREATE INDEX entries_expiry ON entries(expires_at) WHERE expires_at IS NOT NULL;
             UPDATE meta SET value = 4 WHERE key = 'schema';"
        ))?;
        tx.commit()?;
    }
    Ok(())
}

/// Orders targets as `Target` does: IPv4 before IPv6, then by address, then
/// by prefix length.
fn sort_key(t: &Target) -> [u8; 18] {
    let mut k = [0u8; 18];
    match t.addr() {
        std::net::IpAddr::V4(a) => k[1..5].copy_from_slice(&a.octets()),
        std::net::IpAddr::V6(a) => {
            k[0] = 1;
            k[1..17].copy_from_slice(&a.octets());
        }
    }
    k[17] = t.prefix_len();
    k
}

/// Calls `f` with each live entry in address order (deny before allow for
/// one target), deployed or the draft, until it returns false. It opens its
/// own read-only connection: a WAL reader sees one consistent snapshot and
/// never waits for the daemon's writes, so a 1M-row listing streams.
pub fn for_each_entry(
    db: &Path,
    draft: bool,
    now: Millis,
    mut f: impl FnMut(Entry) -> bool,
) -> Result<(), StoreError> {
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let tx = conn.unchecked_transaction()?;
    let mut deployed = tx.prepare(&format!(
        "SELECT {ENTRY_COLS}, sort_key FROM entries ORDER BY sort_key, list DESC"
    ))?;
    let mut pending = tx.prepare(&format!(
        "SELECT {ENTRY_COLS}, sort_key, op FROM pending ORDER BY sort_key, list DESC"
    ))?;
    type Row = (Entry, Vec<u8>, Option<String>);
    let read =
        |r: &rusqlite::Row<'_>, with_op: bool| -> rusqlite::Result<Result<Row, StoreError>> {
            let e = entry_from(r, 0)?;
            let key: Vec<u8> = r.get(9)?;
            let op: Option<String> = if with_op { Some(r.get(10)?) } else { None };
            Ok(e.map(|e| (e, key, op)))
        };
    let rank = |e: &Entry| u8::from(e.list == List::Allow);
    let mut ds = deployed.query_map([], |r| read(r, false))?.peekable();
    let mut ps = if draft {
        Some(pending.query_map([], |r| read(r, true))?.peekable())
    } else {
        None
    };
    loop {
        let d = match ds.peek() {
            Some(Ok(Ok((e, k, _)))) => Some((k.clone(), rank(e))),
            Some(_) => return Err(next_err(ds.next())),
            None => None,
        };
        let p = match ps.as_mut().and_then(|ps| ps.peek()) {
            Some(Ok(Ok((e, k, _)))) => Some((k.clone(), rank(e))),
            Some(_) => return Err(next_err(ps.as_mut().and_then(|ps| ps.next()))),
            None => None,
        };
        let (entry, op) = match (d, p) {
            (None, None) => return Ok(()),
            (Some(d), Some(p)) if d == p => {
                ds.next();
                let (e, _, op) = taken(ps.as_mut().and_then(|ps| ps.next()))?;
                (e, op)
            }
            (Some(d), Some(p)) if p < d => {
                let (e, _, op) = taken(ps.as_mut().and_then(|ps| ps.next()))?;
                (e, op)
            }
            (Some(_), _) => {
                let (e, _, op) = taken(ds.next())?;
                (e, op)
            }
            (None, Some(_)) => {
                let (e, _, op) = taken(ps.as_mut().and_then(|ps| ps.next()))?;
                (e, op)
            }
        };
        let mut entry = entry;
        if entry.expires_at == Some(REFRESH) {
            entry.expires_at = None;
        }
        let removed = op.as_deref() == Some(Op::Remove.as_str());
        // A pending entry's expiry is set again by its deploy.
        let live = op.is_some() || !entry.expired_at(now);
        if !removed && live && !f(entry) {
            return Ok(());
        }
    }
}

fn taken<T>(item: Option<rusqlite::Result<Result<T, StoreError>>>) -> Result<T, StoreError> {
    match item {
        Some(Ok(Ok(t))) => Ok(t),
        Some(Ok(Err(e))) => Err(e),
        Some(Err(e)) => Err(e.into()),
        None => Err(StoreError::Damaged("a row vanished while listing".into())),
    }
}

fn next_err<T>(item: Option<rusqlite::Result<Result<T, StoreError>>>) -> StoreError {
    match taken(item) {
        Err(e) => e,
        Ok(_) => StoreError::Damaged("a row changed while listing".into()),
    }
}

fn prefixed(t: &str) -> String {
    ENTRY_COLS
        .split(", ")
        .map(|c| format!("{t}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn meta(conn: &Connection, key: &str) -> Result<i64, StoreError> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::Damaged(format!("meta key {key} missing")))
}

fn set_meta(tx: &Transaction<'_>, key: &str, value: i64) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE meta SET value = ?2 WHERE key = ?1",
        params![key, value],
    )?;
    Ok(())
}

fn audit(
    tx: &Transaction<'_>,
    at: Millis,
    user: &str,
    kind: &str,
    target: Option<&str>,
    detail: Option<serde_json::Value>,
) -> Result<u64, StoreError> {
    tx.execute(
        "INSERT INTO audit(at, user, kind, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![at, user, kind, target, detail.map(|d| d.to_string())],
    )?;
    Ok(tx.last_insert_rowid() as u64)
}

fn deployed_entry(tx: &Transaction<'_>, t: Target, l: List) -> Result<Option<Stored>, StoreError> {
    let row = tx
        .prepare_cached(&format!(
            "SELECT id, {ENTRY_COLS} FROM entries WHERE sort_key = ?1 AND list = ?2"
        ))?
        .query_row(params![sort_key(&t).as_slice(), l.as_str()], |r| {
            Ok((r.get::<_, u32>(0)?, entry_from(r, 1)?))
        })
        .optional()?;
    match row {
        Some((id, e)) => Ok(Some(Stored { id, entry: e? })),
        None => Ok(None),
    }
}

fn pending_row(
    tx: &Transaction<'_>,
    t: Target,
    l: List,
) -> Result<Option<(Op, Entry)>, StoreError> {
    let row = tx
        .prepare_cached(&format!(
            "SELECT op, {ENTRY_COLS} FROM pending WHERE sort_key = ?1 AND list = ?2"
        ))?
        .query_row(params![sort_key(&t).as_slice(), l.as_str()], |r| {
            Ok((r.get::<_, String>(0)?, entry_from(r, 1)?))
        })
        .optional()?;
    match row {
        Some((op, e)) => Ok(Some((Op::parse(&op)?, e?))),
        None => Ok(None),
    }
}

fn insert_pending(
    tx: &Transaction<'_>,
    op: Op,
    e: &Entry,
    user: &str,
    now: Millis,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO pending(target, list, op, reason, ttl, expires_at, monitor,
           source, added_by, added_at, staged_by, staged_at, sort_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        e.target.to_string(),
        e.list.as_str(),
        op.as_str(),
        e.reason,
        e.ttl.map(|t| t as i64),
        e.expires_at,
        e.monitor,
        e.source,
        e.added_by,
        e.added_at,
        user,
        now,
        sort_key(&e.target).as_slice(),
    ])?;
    Ok(())
}

fn pending_rows(conn: &Connection) -> Result<usize, StoreError> {
    Ok(conn.query_row("SELECT count(*) FROM pending", [], |r| r.get::<_, i64>(0))? as usize)
}

/// Deploys `s` as of revision `rev`. Unless the caller clears the draft in
/// bulk (`bulk`), its pending row goes too.
fn insert_entry(tx: &Transaction<'_>, s: &Stored, rev: i64, bulk: bool) -> Result<(), StoreError> {
    let e = &s.entry;
    let key = sort_key(&e.target);
    tx.prepare_cached(
        "INSERT OR REPLACE INTO entries(target, list, id, reason, ttl, expires_at, monitor,
           source, added_by, added_at, sort_key, from_rev)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        e.target.to_string(),
        e.list.as_str(),
        s.id,
        e.reason,
        e.ttl.map(|t| t as i64),
        e.expires_at,
        e.monitor,
        e.source,
        e.added_by,
        e.added_at,
        key.as_slice(),
        rev,
    ])?;
    if !bulk {
        tx.prepare_cached("DELETE FROM pending WHERE sort_key = ?1 AND list = ?2")?
            .execute(params![key.as_slice(), e.list.as_str()])?;
    }
    Ok(())
}

/// Ends the current version of a deployed entry at revision `rev`: it was
/// in the revisions from its `from_rev` up to `rev`, and is in none after.
fn close_version(tx: &Transaction<'_>, e: &Entry, rev: i64) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO versions(target, list, id, reason, ttl, expires_at, monitor, source,
           added_by, added_at, from_rev, to_rev)
         SELECT target, list, id, reason, ttl, expires_at, monitor, source,
           added_by, added_at, from_rev, ?3
         FROM entries WHERE sort_key = ?1 AND list = ?2",
    )?
    .execute(params![
        sort_key(&e.target).as_slice(),
        e.list.as_str(),
        rev
    ])?;
    Ok(())
}

fn delete_entry(tx: &Transaction<'_>, e: &Entry, rev: i64, bulk: bool) -> Result<(), StoreError> {
    let (key, l) = (sort_key(&e.target), e.list.as_str());
    close_version(tx, e, rev)?;
    tx.prepare_cached("DELETE FROM entries WHERE sort_key = ?1 AND list = ?2")?
        .execute(params![key.as_slice(), l])?;
    if !bulk {
        tx.prepare_cached("DELETE FROM pending WHERE sort_key = ?1 AND list = ?2")?
            .execute(params![key.as_slice(), l])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> PathBuf {
        std::env::temp_dir().join(format!(
            "denylist-store-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ))
    }

    fn t(s: &str) -> Target {
        Target::parse(s).unwrap()
    }

    fn add(s: &str) -> Stage {
        Stage::Upsert {
            target: t(s),
            list: List::Deny,
            reason: Some("test".into()),
            ttl: None,
            monitor: None,
            source: None,
            keep_longer_ttl: false,
        }
    }

    fn deploy(store: &mut Store, now: Millis) -> Revision {
        let plan = store.plan(None, now).unwrap();
        store.commit(&plan, "root", None, now, "deploy").unwrap().0
    }

    /// The version-3 layout, as denylistd wrote it before entries were
    /// keyed by sort key.
    const SCHEMA_V3: &str = "
        CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
        CREATE TABLE entries(
          target TEXT NOT NULL, list TEXT NOT NULL, id INTEGER NOT NULL,
          reason TEXT, ttl INTEGER, expires_at INTEGER, monitor INTEGER NOT NULL,
          source TEXT NOT NULL, added_by TEXT NOT NULL, added_at INTEGER NOT NULL,
          sort_key BLOB NOT NULL,
          PRIMARY KEY(target, list)) WITHOUT ROWID;
        CREATE INDEX entries_sorted ON entries(sort_key, list);
        CREATE INDEX entries_expiry ON entries(expires_at) WHERE expires_at IS NOT NULL;
        CREATE TABLE pending(
          target TEXT NOT NULL, list TEXT NOT NULL, op TEXT NOT NULL,
          reason TEXT, ttl INTEGER, expires_at INTEGER, monitor INTEGER NOT NULL,
          source TEXT NOT NULL, added_by TEXT NOT NULL, added_at INTEGER NOT NULL,
          staged_by TEXT NOT NULL, staged_at INTEGER NOT NULL,
          sort_key BLOB NOT NULL,
          PRIMARY KEY(target, list)) WITHOUT ROWID;
        CREATE INDEX pending_sorted ON pending(sort_key, list);
        CREATE TABLE revisions(
          rev INTEGER PRIMARY KEY, deployed_at INTEGER NOT NULL, deployed_by TEXT NOT NULL,
          message TEXT, added INTEGER NOT NULL, removed INTEGER NOT NULL, changed INTEGER NOT NULL);
        CREATE TABLE versions(
          target TEXT NOT NULL, list TEXT NOT NULL, id INTEGER NOT NULL,
          reason TEXT, ttl INTEGER, expires_at INTEGER, monitor INTEGER NOT NULL,
          source TEXT NOT NULL, added_by TEXT NOT NULL, added_at INTEGER NOT NULL,
          from_rev INTEGER NOT NULL, to_rev INTEGER);
        CREATE INDEX versions_open ON versions(target, list) WHERE to_rev IS NULL;
        CREATE INDEX versions_span ON versions(from_rev, to_rev);
        CREATE TABLE audit(
          seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, user TEXT NOT NULL,
          kind TEXT NOT NULL, target TEXT, detail TEXT);
        CREATE TABLE attachments(iface TEXT PRIMARY KEY, mode TEXT NOT NULL) WITHOUT ROWID;
        CREATE TABLE hits(
          id INTEGER PRIMARY KEY, packets INTEGER NOT NULL, bytes INTEGER NOT NULL, last_hit INTEGER);
        INSERT INTO meta VALUES ('schema', 3), ('revision', 2), ('next_id', 3);
        INSERT INTO revisions VALUES (1, 0, 'alice', NULL, 2, 0, 0), (2, 1, 'alice', NULL, 0, 1, 0);
        INSERT INTO versions VALUES
          ('192.0.2.1', 'deny', 1, NULL, NULL, NULL, 0, 'manual', 'alice', 0, 1, NULL),
          ('192.0.2.2', 'deny', 2, NULL, NULL, NULL, 0, 'manual', 'alice', 0, 1, 2);
        INSERT INTO entries VALUES
          ('192.0.2.1', 'deny', 1, NULL, NULL, NULL, 0, 'manual', 'alice', 0, x'00c000020100000000000000000000000020');
        INSERT INTO pending VALUES
          ('10.0.0.0/8', 'allow', 'add', NULL, NULL, NULL, 0, 'manual', 'bob', 1, 'bob', 1,
           x'000a00000000000000000000000000000008');
    ";

    #[test]
    fn a_version_3_store_is_upgraded_in_place() {
        let dir = tmp();
        fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        Connection::open(dir.join(DB_FILE))
            .unwrap()
            .execute_batch(SCHEMA_V3)
            .unwrap();
        let mut s = Store::open(&dir).unwrap();
        assert_eq!(meta(&s.conn, "schema").unwrap(), SCHEMA_VERSION);
        let deployed: Vec<String> = s
            .deployed()
            .unwrap()
            .iter()
            .map(|s| s.entry.target.to_string())
            .collect();
        assert_eq!(deployed, ["192.0.2.1"]);
        assert_eq!(
            s.pending().unwrap()[0].key(),
            (t("10.0.0.0/8"), List::Allow)
        );
        // Removing the migrated entry closes the version it had before.
        s.stage(
            &[Stage::Remove {
                target: t("192.0.2.1"),
                list: List::Deny,
            }],
            "bob",
            2,
            None,
            &Audit::Each,
        )
        .unwrap();
        assert_eq!(deploy(&mut s, 2).revision, 3);
        let (_, expired) = s.rollback(1, false, "carol", 3).unwrap();
        assert!(expired.is_empty());
        let draft: Vec<String> = s
            .draft(3)
            .unwrap()
            .iter()
            .map(|e| e.target.to_string())
            .collect();
        assert_eq!(draft, ["192.0.2.1", "192.0.2.2"]);
        let since: Vec<(String, i64)> = s
            .conn
            .prepare("SELECT target, from_rev FROM entries")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            since,
            [("10.0.0.0/8".to_string(), 3)],
            "deployed at revision 3"
        );
        let ended: i64 = s
            .conn
            .query_row(
                "SELECT count(*) FROM versions WHERE to_rev IS NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(ended, 0, "versions keeps only ended versions");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn draft_keys_from_a_source_follow_the_draft() {
        let dir = tmp();
        let mut s = Store::open(&dir).unwrap();
        let from = |target: &str, source: &str, ttl: Option<u64>| Stage::Upsert {
            target: t(target),
            list: List::Deny,
            reason: None,
            ttl: Some(ttl),
            monitor: None,
            source: Some(source.into()),
            keep_longer_ttl: false,
        };
        let ops = [
            from("192.0.2.1", "import:a", None),
            from("192.0.2.2", "import:a", None),
            from("192.0.2.3", "import:a", Some(1)),
            from("192.0.2.4", "import:b", None),
        ];
        s.stage(&ops, "alice", 0, None, &Audit::Each).unwrap();
        deploy(&mut s, 0);
        let remove = Stage::Remove {
            target: t("192.0.2.1"),
            list: List::Deny,
        };
        let ops = [remove, from("192.0.2.5", "import:a", None)];
        s.stage(&ops, "alice", 1, None, &Audit::Each).unwrap();
        let mut keys = s.draft_keys_from("import:a", 5_000).unwrap();
        keys.sort();
        let want: Vec<(Target, List)> = ["192.0.2.2", "192.0.2.5"]
            .iter()
            .map(|a| (t(a), List::Deny))
            .collect();
        assert_eq!(keys, want, "removed, expired and other sources left out");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn staging_deploying_and_the_draft() {
        let dir = tmp();
        let mut s = Store::open(&dir).unwrap();
        assert_eq!(s.revision().unwrap(), 0);
        s.stage(
            &[add("198.51.100.7"), add("203.0.113.0/24")],
            "alice",
            1_000,
            None,
            &Audit::Each,
        )
        .unwrap();
        assert_eq!(s.pending_count().unwrap(), 2);
        assert!(s.deployed().unwrap().is_empty());
        let rev = deploy(&mut s, 2_000);
        assert_eq!(
            (rev.revision, rev.added, rev.removed, rev.changed),
            (1, 2, 0, 0)
        );
        assert_eq!(s.pending_count().unwrap(), 0);
        let ids: Vec<u32> = s.deployed().unwrap().iter().map(|e| e.id).collect();
        assert_eq!(ids.len(), 2);

        // A re-add with the same fields is no change; a new reason is.
        s.stage(&[add("198.51.100.7")], "bob", 3_000, None, &Audit::Each)
            .unwrap();
        assert_eq!(s.pending_count().unwrap(), 0);
        let change = Stage::Upsert {
            target: t("198.51.100.7"),
            list: List::Deny,
            reason: Some("other".into()),
            ttl: Some(Some(60)),
            monitor: Some(true),
            source: None,
            keep_longer_ttl: false,
        };
        s.stage(&[change], "bob", 3_000, None, &Audit::Each)
            .unwrap();
        let p = s.pending().unwrap();
        assert_eq!(p[0].op, Op::Change);
        assert_eq!(
            p[0].after.as_ref().unwrap().added_by,
            "alice",
            "a change keeps who added it"
        );
        assert_eq!(p[0].staged_by, "bob");

        // Removing something absent rejects the whole call.
        let err = s
            .stage(
                &[
                    Stage::Remove {
                        target: t("203.0.113.0/24"),
                        list: List::Deny,
                    },
                    Stage::Remove {
                        target: t("192.0.2.1"),
                        list: List::Deny,
                    },
                ],
                "bob",
                4_000,
                None,
                &Audit::Each,
            )
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
        assert_eq!(s.pending_count().unwrap(), 1);

        let rev = deploy(&mut s, 10_000);
        assert_eq!((rev.revision, rev.changed), (2, 1));
        let e = s
            .deployed()
            .unwrap()
            .into_iter()
            .find(|e| e.entry.target == t("198.51.100.7"))
            .unwrap();
        assert_eq!(
            e.entry.expires_at,
            Some(70_000),
            "the TTL counts from the deploy"
        );
        assert!(e.entry.monitor);
        assert!(ids.contains(&e.id), "a change keeps the id");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn rollback_restores_a_revision_and_leaves_out_expired_entries() {
        let dir = tmp();
        let mut s = Store::open(&dir).unwrap();
        let short = Stage::Upsert {
            target: t("198.51.100.9"),
            list: List::Deny,
            reason: None,
            ttl: Some(Some(1)),
            monitor: None,
            source: None,
            keep_longer_ttl: false,
        };
        s.stage(
            &[add("198.51.100.7"), short],
            "alice",
            0,
            None,
            &Audit::Each,
        )
        .unwrap();
        deploy(&mut s, 0);
        s.stage(
            &[
                Stage::Remove {
                    target: t("198.51.100.7"),
                    list: List::Deny,
                },
                add("192.0.2.5"),
            ],
            "bob",
            1,
            None,
            &Audit::Each,
        )
        .unwrap();
        deploy(&mut s, 1);
        s.stage(&[add("192.0.2.6")], "bob", 2, None, &Audit::Each)
            .unwrap();
        assert!(matches!(
            s.rollback(1, false, "carol", 5_000),
            Err(StoreError::Conflict { count: 1 })
        ));
        assert!(matches!(
            s.rollback(9, true, "carol", 5_000),
            Err(StoreError::NoRevision { rev: 9 })
        ));
        let (_, expired) = s.rollback(1, true, "carol", 5_000).unwrap();
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].target, t("198.51.100.9"));
        let draft: Vec<String> = s
            .draft(5_000)
            .unwrap()
            .iter()
            .map(|e| e.target.to_string())
            .collect();
        assert_eq!(draft, ["198.51.100.7"]);
        let restored = s.draft(5_000).unwrap().remove(0);
        assert_eq!(
            (restored.added_by.as_str(), restored.added_at),
            ("alice", 0)
        );
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn listings_stream_in_address_order_and_merge_the_draft() {
        let dir = tmp();
        let mut s = Store::open(&dir).unwrap();
        let allow = |x: &str| Stage::Upsert {
            target: t(x),
            list: List::Allow,
            reason: None,
            ttl: None,
            monitor: None,
            source: None,
            keep_longer_ttl: false,
        };
        s.stage(
            &[
                add("2001:db8::1"),
                add("198.51.100.9"),
                add("10.0.0.0/24"),
                add("198.51.100.10"),
                allow("198.51.100.9"),
            ],
            "alice",
            0,
            None,
            &Audit::Each,
        )
        .unwrap();
        deploy(&mut s, 0);
        let remove = Stage::Remove {
            target: t("198.51.100.10"),
            list: List::Deny,
        };
        s.stage(&[remove, add("198.51.100.2")], "bob", 1, None, &Audit::Each)
            .unwrap();
        let collect = |draft: bool| {
            let mut out = Vec::new();
            for_each_entry(s.path(), draft, 5, |e| {
                out.push(format!("{} {}", e.target, e.list.as_str()));
                true
            })
            .unwrap();
            out
        };
        assert_eq!(
            collect(false),
            [
                "10.0.0.0/24 deny",
                "198.51.100.9 deny",
                "198.51.100.9 allow",
                "198.51.100.10 deny",
                "2001:db8::1 deny"
            ]
        );
        assert_eq!(
            collect(true),
            [
                "10.0.0.0/24 deny",
                "198.51.100.2 deny",
                "198.51.100.9 deny",
                "198.51.100.9 allow",
                "2001:db8::1 deny"
            ]
        );
        let mut first = Vec::new();
        for_each_entry(s.path(), true, 5, |e| {
            first.push(e.target);
            first.len() < 2
        })
        .unwrap();
        assert_eq!(first.len(), 2, "stops when asked");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn given_ttls_restart_at_the_deploy_and_imports_never_shorten() {
        let dir = tmp();
        let mut s = Store::open(&dir).unwrap();
        let with_ttl = |ttl: u64, import: bool| Stage::Upsert {
            target: t("198.51.100.7"),
            list: List::Deny,
            reason: None,
            ttl: Some(Some(ttl)),
            monitor: None,
            source: None,
            keep_longer_ttl: import,
        };
        let expires = |s: &Store| s.deployed().unwrap()[0].entry.expires_at;
        s.stage(&[with_ttl(100, false)], "a", 0, None, &Audit::Each)
            .unwrap();
        deploy(&mut s, 0);
        assert_eq!(expires(&s), Some(100_000));
        // A feed re-lists it with the same TTL a minute later: extended.
        s.stage(&[with_ttl(100, true)], "feed", 60_000, None, &Audit::Each)
            .unwrap();
        assert_eq!(s.pending_count().unwrap(), 1, "a refresh is a change");
        deploy(&mut s, 60_000);
        assert_eq!(expires(&s), Some(160_000));
        // A feed with a shorter TTL never shortens it.
        s.stage(&[with_ttl(10, true)], "feed", 70_000, None, &Audit::Each)
            .unwrap();
        deploy(&mut s, 70_000);
        assert_eq!(expires(&s), Some(160_000));
        // An admin's --ttl says exactly when.
        s.stage(&[with_ttl(10, false)], "a", 80_000, None, &Audit::Each)
            .unwrap();
        deploy(&mut s, 80_000);
        assert_eq!(expires(&s), Some(90_000));
        // A re-add without a TTL changes only what it gives, and keeps
        // the expiry.
        s.stage(&[add("198.51.100.7")], "a", 85_000, None, &Audit::Each)
            .unwrap();
        deploy(&mut s, 85_000);
        assert_eq!(expires(&s), Some(90_000));
        assert_eq!(
            s.deployed().unwrap()[0].entry.reason.as_deref(),
            Some("test")
        );
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn a_damaged_store_is_refused_and_left_untouched() {
        let dir = tmp();
        {
            let mut s = Store::open(&dir).unwrap();
            s.stage(&[add("198.51.100.7")], "alice", 0, None, &Audit::Each)
                .unwrap();
        }
        let db = dir.join(DB_FILE);
        let len = fs::metadata(&db).unwrap().len();
        let f = fs::OpenOptions::new().write(true).open(&db).unwrap();
        f.set_len(len / 2).unwrap();
        drop(f);
        let before = fs::read(&db).unwrap();
        let err = Store::open(&dir)
            .err()
            .expect("a truncated store must be refused");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert_eq!(fs::read(&db).unwrap(), before, "not a byte changed");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn files_are_private_and_symlinks_are_not_followed() {
        let dir = tmp();
        let s = Store::open(&dir).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(s.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o600);
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let target = dir.join("elsewhere");
        std::os::unix::fs::symlink(&target, dir.join("backup.db")).unwrap();
        assert!(s.backup(&dir.join("backup.db")).is_err());
        assert!(!target.exists());
        drop(s);
        for file in ["denylist.db-wal", "denylist.db-shm", "denylist.db-journal"] {
            let link = dir.join(file);
            let _ = fs::remove_file(&link);
            std::os::unix::fs::symlink(&target, &link).unwrap();
            match Store::open(&dir) {
                Err(StoreError::Symlink { path }) => assert_eq!(path, link),
                other => panic!("{file}: {:?}", other.err()),
            }
            assert!(!target.exists(), "{file}");
            fs::remove_file(&link).unwrap();
        }
        let _ = fs::remove_dir_all(dir);
    }
}
