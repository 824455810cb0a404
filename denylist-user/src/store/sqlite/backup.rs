//! Backups through SQLite's online backup: consistent while the daemon
//! goes on writing.

use std::{fs, os::unix::fs::OpenOptionsExt, path::Path};

use rusqlite::Connection;

use crate::store::StoreError;

/// A consistent copy through SQLite's online backup, written to a new
/// file (never through a symlink) with mode 0600.
pub(super) fn backup(conn: &Connection, dest: &Path) -> Result<(), StoreError> {
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
    let b = rusqlite::backup::Backup::new(conn, &mut out)?;
    b.run_to_completion(1024, std::time::Duration::ZERO, None)?;
    Ok(())
}
