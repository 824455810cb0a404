//! Opening the store: the state directory's safety checks, a read-only
//! integrity check that never changes a damaged store, and the WAL's
//! checkpointer.

use std::{
    fs,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::mpsc,
};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::{
    DB_FILE, SqliteStore,
    schema::{SCHEMA_VERSION, schema, upgrade},
};
use crate::store::StoreError;

/// Checkpoints the WAL on its own connection and thread, twice a second and
/// once more when the store closes. A passive checkpoint never blocks the
/// writer or readers; committed data is durable in the WAL either way.
pub(super) struct Checkpointer {
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

    /// Checkpoints once more and closes its connection.
    pub(super) fn stop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
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

/// Refuses the store when it, or a file SQLite keeps beside it, is a
/// symbolic link. SQLite opens them all with O_NOFOLLOW, so a planted link
/// only makes it fail, with an error that reads like a damaged store.
pub(super) fn refuse_links(db: &Path) -> Result<(), StoreError> {
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

impl SqliteStore {
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
            checkpointer,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
