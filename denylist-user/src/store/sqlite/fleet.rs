//! What fleet mode asks of the local store: the seq of the last fleet log
//! entry applied, written in one transaction with that entry's changes, so
//! that a node killed at any point applies each entry exactly once.

use rusqlite::{Connection, OptionalExtension as _};

use super::{SqliteStore, audit, deploy};
use crate::store::{DeployRecord, Plan, StoreError, WrittenDeploy};

fn stamp(conn: &Connection, seq: u64) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO meta(key, value) VALUES ('log_seq', ?1)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [seq as i64],
    )?;
    Ok(())
}

impl SqliteStore {
    /// The seq of the last fleet log entry applied here; 0 for none.
    pub(crate) fn log_seq(&self) -> Result<u64, StoreError> {
        let seq: Option<i64> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'log_seq'", [], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(seq.unwrap_or(0) as u64)
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
