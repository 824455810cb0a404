//! What fleet mode asks of the local store: the seq of the last fleet log
//! entry applied, written in one transaction with that entry's changes, so
//! that a node killed at any point applies each entry exactly once.

use std::{
    fs,
    io::Write as _,
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::Path,
    sync::atomic::{AtomicU64, Ordering},
};

use flate2::{Compression, read::GzDecoder, write::GzEncoder};
use rusqlite::{Connection, OptionalExtension as _};

use super::{
    SqliteStore, audit, deploy,
    draft::{self, KeptDraft, Staged},
    rows::{meta, set_meta},
};
use crate::{
    model::{Millis, Sources},
    store::{Audit, DeployRecord, Only, Plan, PlanKeys, Stage, StoreError, WrittenDeploy},
};

fn stamp(conn: &Connection, seq: u64) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO meta(key, value) VALUES ('log_seq', ?1)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [seq as i64],
    )?;
    Ok(())
}

/// The seq of the last fleet log entry `conn`'s store applied; None for a
/// store that never followed a fleet.
fn following(conn: &Connection) -> Result<Option<u64>, StoreError> {
    let seq: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE key = 'log_seq'", [], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(seq.map(|s| s as u64))
}

impl SqliteStore {
    /// The seq of the last fleet log entry applied here; 0 for none.
    pub(crate) fn log_seq(&self) -> Result<u64, StoreError> {
        Ok(following(&self.conn)?.unwrap_or(0))
    }

    /// Whether this store follows a fleet's log (it may have applied no
    /// entry yet).
    pub(crate) fn is_following(&self) -> Result<bool, StoreError> {
        Ok(following(&self.conn)?.is_some())
    }

    /// Whether anything ever happened in this store: an audit event.
    pub(crate) fn has_history(&self) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT EXISTS (SELECT 1 FROM audit)", [], |r| r.get(0))?)
    }

    /// Marks this store as following a fleet from entry `seq` on.
    pub(crate) fn follow_from(&mut self, seq: u64) -> Result<(), StoreError> {
        stamp(&self.conn, seq)
    }

    /// The store's file, which [`snapshot`] copies on a connection of its
    /// own.
    pub(crate) fn file(&self) -> &Path {
        &self.path
    }

    /// Puts the fleet's snapshot `bytes` in place of this store's file
    /// ([`install_snapshot`]) and opens it; on a failure the file is the
    /// old one, opened again.
    pub(crate) fn load_snapshot(&mut self, bytes: &[u8], carry: bool) -> Result<(), StoreError> {
        let dir = self
            .path
            .parent()
            .expect("the store's file is in its state directory")
            .to_path_buf();
        // Both connections closed first: the file is replaced under them.
        self.checkpointer.stop();
        self.conn = Connection::open_in_memory()?;
        let installed = install_snapshot(&dir, bytes, carry);
        *self = SqliteStore::open(&dir)?;
        installed
    }

    /// Opens the transaction a log entry's changes go in: the store's own
    /// transactions are savepoints, which nest inside it.
    pub(crate) fn begin_entry(&mut self) -> Result<(), StoreError> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(())
    }

    /// Records `seq` as applied and commits the entry's transaction.
    pub(crate) fn commit_entry(&mut self, seq: u64) -> Result<(), StoreError> {
        stamp(&self.conn, seq)?;
        self.conn.execute_batch("COMMIT")?;
        Ok(())
    }

    /// [`Store::write_deploy`](crate::store::Store::write_deploy) for the
    /// log entry `seq`, outside any entry transaction: the deploy's own
    /// transaction records `seq`, and runs `before_commit` (the database's
    /// commit) last, so the local store never holds a deploy the fleet's
    /// log lacks.
    pub(crate) fn write_deploy_entry<'s>(
        &'s mut self,
        plan: &Plan,
        record: DeployRecord<'_>,
        seq: u64,
        before_commit: Box<dyn FnOnce() -> Result<(), StoreError> + 's>,
    ) -> Result<Box<dyn WrittenDeploy + 's>, StoreError> {
        let hook: deploy::BeforeCommit<'s> = Box::new(move |conn| {
            stamp(conn, seq)?;
            before_commit()
        });
        Ok(Box::new(deploy::write(
            &mut self.conn,
            plan,
            record,
            Some(hook),
        )?))
    }

    /// A deploy's plan of exactly the keys pending now (the draft `kept`,
    /// when the caller knows it is this store's), shipping their listings
    /// of `sources`, made ahead of it: no id is reserved until
    /// [`SqliteStore::reserve_planned`]. Also the keys.
    pub(crate) fn plan_pending(
        &mut self,
        sources: &Sources,
        now: Millis,
        kept: Option<KeptDraft>,
    ) -> Result<(Plan, PlanKeys), StoreError> {
        deploy::plan_pending(&mut self.conn, sources, now, kept)
    }

    /// [`Store::plan`](crate::store::Store::plan) from the draft `kept`,
    /// when the caller knows it is this store's.
    pub(crate) fn plan_kept(
        &mut self,
        only: Option<Only<'_>>,
        now: Millis,
        kept: Option<KeptDraft>,
    ) -> Result<Plan, StoreError> {
        deploy::plan(&mut self.conn, only, now, true, kept)
    }

    /// [`Store::stage`](crate::store::Store::stage) that also keeps the
    /// draft it leaves, when it staged into an empty one: a follower's
    /// next entry is most often that draft's deploy.
    pub(crate) fn stage_keeping(
        &mut self,
        ops: &[Stage],
        user: &str,
        now: Millis,
        default_ttl: Option<u64>,
        audit_as: &Audit,
    ) -> Result<Staged, StoreError> {
        draft::stage(&mut self.conn, ops, user, now, default_ttl, audit_as, true)
    }

    /// Reserves the ids that a plan made ahead with `preview` gave its new
    /// entries, as `plan` would have: false when ids were given since, so
    /// that the plan is stale.
    pub(crate) fn reserve_planned(&mut self, plan: &Plan) -> Result<bool, StoreError> {
        let Some(first) = plan.adds.first().map(|s| i64::from(s.id)) else {
            return Ok(true);
        };
        let tx = self.conn.savepoint()?;
        if meta(&tx, "next_id")? != first {
            return Ok(false);
        }
        set_meta(&tx, "next_id", first + plan.adds.len() as i64)?;
        tx.commit()?;
        Ok(true)
    }

    /// Records an attach or a detach without auditing it: in a fleet the
    /// audit event goes through the log, and the attachment stays this
    /// node's.
    pub(crate) fn set_local_attachment(
        &mut self,
        iface: &str,
        mode: Option<&str>,
    ) -> Result<(), StoreError> {
        audit::write_attachment(&self.conn, iface, mode)
    }

    /// Rolls the entry's transaction back, if one is open.
    pub(crate) fn abort_entry(&mut self) {
        if !self.conn.is_autocommit() {
            // A failed rollback leaves SQLite in autocommit mode too (the
            // transaction is gone either way), so there is nothing to do.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// A fleet's snapshot of the store in the file `db`: a compact copy,
/// gzipped, without what is this node's alone (its attachments and hit
/// counts), and the seq of the last log entry it holds. `stamp` marks a
/// store that follows no fleet yet as following one from that seq.
///
/// Made on a connection of its own: `VACUUM INTO` reads one consistent
/// state in one read transaction, and under WAL the store's writer goes
/// on meanwhile, so a large store does not hold up the node's changes.
pub(crate) fn snapshot(db: &Path, stamp_seq: Option<u64>) -> Result<(u64, Vec<u8>), StoreError> {
    static TAKEN: AtomicU64 = AtomicU64::new(0);
    let tmp = db.with_extension(format!(
        "snapshot-{}-{}",
        std::process::id(),
        TAKEN.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_file(&tmp);
    let made = (|| {
        Connection::open(db)?.execute("VACUUM INTO ?1", [utf8(&tmp)?])?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600)).map_err(io(&tmp))?;
        let copy = Connection::open(&tmp)?;
        if let Some(seq) = stamp_seq {
            stamp(&copy, seq)?;
        }
        // Zeroed, not only freed: the copy leaves the node.
        copy.execute_batch(
            "PRAGMA secure_delete = ON; DELETE FROM attachments; DELETE FROM hits;",
        )?;
        let seq = following(&copy)?.unwrap_or(0);
        drop(copy);
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        std::io::copy(&mut fs::File::open(&tmp).map_err(io(&tmp))?, &mut gz)
            .and_then(|_| gz.finish())
            .map(|bytes| (seq, bytes))
            .map_err(io(&tmp))
    })();
    let _ = fs::remove_file(&tmp);
    made
}

/// An I/O error on `path`, as the store reports it.
fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { path, source }
}

/// `path` as SQL takes a file name.
fn utf8(path: &Path) -> Result<&str, StoreError> {
    path.to_str().ok_or_else(|| {
        io(path)(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the state directory's path is not UTF-8",
        ))
    })
}

/// Removes what snapshots of the store in the file `db` left behind when
/// their process died.
pub(crate) fn remove_stale_snapshots(db: &Path) {
    let (Some(dir), Some(stem)) = (db.parent(), db.file_stem()) else {
        return;
    };
    let prefix = format!("{}.snapshot-", stem.to_string_lossy());
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Puts a fleet's snapshot (as [`snapshot`] made it) in place as the store
/// under `state_dir`, which no one has open: written beside it (mode 0600,
/// never through a link), synced, then renamed over it, with the old
/// store's journal files gone. With `carry`, the store it replaces keeps
/// what is this node's alone (see [`carry_local`]).
pub(crate) fn install_snapshot(
    state_dir: &Path,
    bytes: &[u8],
    carry: bool,
) -> Result<(), StoreError> {
    let path = state_dir.join(super::DB_FILE);
    let tmp = path.with_extension("incoming");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(io(&tmp))?;
    // Snapshots stored before they were gzipped are taken as they are.
    if bytes.starts_with(&[0x1f, 0x8b]) {
        std::io::copy(&mut GzDecoder::new(bytes), &mut f).map_err(io(&tmp))?;
    } else {
        f.write_all(bytes).map_err(io(&tmp))?;
    }
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    if carry {
        carry_local(&tmp, &path)?;
    }
    for journal in ["-wal", "-shm"] {
        let j = state_dir.join(format!("{}{journal}", super::DB_FILE));
        match fs::remove_file(&j) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&j)(e)),
            _ => {}
        }
    }
    fs::rename(&tmp, &path).map_err(io(&path))?;
    fs::File::open(state_dir)
        .and_then(|d| d.sync_all())
        .map_err(io(state_dir))
}

/// Gives the snapshot in the file `new` what is this node's alone from its
/// store in the file `old`: each entry both hold keeps the node's id, since
/// ids name its kernel's slots and hit counters; the others take ids past
/// any either store gave. The node's attachments and hit counts come along.
fn carry_local(new: &Path, old: &Path) -> Result<(), StoreError> {
    let mut conn = Connection::open(new)?;
    conn.execute("ATTACH DATABASE ?1 AS old", [utf8(old)?])?;
    let tx = conn.transaction()?;
    let base: i64 = tx.query_row(
        "SELECT max(n.value, o.value) FROM main.meta n, old.meta o
         WHERE n.key = 'next_id' AND o.key = 'next_id'",
        [],
        |r| r.get(0),
    )?;
    // The new ones first, off every id the old store gave, so that the
    // ids carried over below cannot meet one of the snapshot's.
    let fresh = tx.execute(
        "UPDATE main.entries AS n SET id = ?1 + f.k
         FROM (SELECT e.sort_key, e.list, row_number() OVER (ORDER BY e.sort_key, e.list) - 1 AS k
               FROM main.entries e WHERE NOT EXISTS (
                 SELECT 1 FROM old.entries o WHERE o.sort_key = e.sort_key AND o.list = e.list)) AS f
         WHERE n.sort_key = f.sort_key AND n.list = f.list",
        [base],
    )? as i64;
    if base + fresh > i64::from(u32::MAX) {
        return Err(StoreError::IdsExhausted);
    }
    tx.execute_batch(
        "UPDATE main.entries AS n SET id = o.id FROM old.entries AS o
           WHERE o.sort_key = n.sort_key AND o.list = n.list;
         INSERT INTO main.attachments SELECT * FROM old.attachments;
         INSERT INTO main.hits SELECT h.* FROM old.hits h
           WHERE h.id IN (SELECT id FROM main.entries);",
    )?;
    tx.execute(
        "UPDATE main.meta SET value = ?1 WHERE key = 'next_id'",
        [base + fresh],
    )?;
    tx.commit()?;
    conn.execute("DETACH DATABASE old", [])?;
    Ok(())
}
