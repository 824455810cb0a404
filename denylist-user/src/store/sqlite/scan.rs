//! Listings that stream: a read-only connection of their own sees one
//! consistent snapshot and never waits for the daemon's writes.

use std::path::PathBuf;

use rusqlite::{Connection, OpenFlags};

use super::{
    open::refuse_links,
    rows::{ENTRY_COLS, entry_from, shown},
};
use crate::{
    model::{Entry, List, Millis},
    store::{Op, PageRow, PageSpec, Snapshot, Snapshots, StoreError},
};

/// A read-only connection of its own: a WAL reader sees one consistent
/// snapshot and never waits for the daemon's writes, so a 1M-row listing
/// streams while the core goes on.
struct SqliteSnapshot {
    conn: Connection,
}

/// Opens snapshots of the database at `db`.
pub(super) struct SqliteSnapshots {
    pub(super) db: PathBuf,
}

impl Snapshots for SqliteSnapshots {
    /// Opens the database read-only, refusing it first if a planted link
    /// stands in for it or a file beside it: checked while an error can
    /// still be the reply, since once a listing streams a failure can only
    /// break it.
    fn open(&self) -> Result<Box<dyn Snapshot>, StoreError> {
        refuse_links(&self.db)?;
        let conn = Connection::open_with_flags(
            &self.db,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        Ok(Box::new(SqliteSnapshot { conn }))
    }
}

impl Snapshot for SqliteSnapshot {
    fn for_each_entry(
        &mut self,
        draft: bool,
        now: Millis,
        f: &mut dyn FnMut(Entry) -> bool,
    ) -> Result<(), StoreError> {
        for_each_entry(&self.conn, draft, now, f)
    }

    fn page(&mut self, spec: &PageSpec, now: Millis) -> Result<Vec<PageRow>, StoreError> {
        super::page::page(&self.conn, spec, now)
    }
}

fn for_each_entry(
    conn: &Connection,
    draft: bool,
    now: Millis,
    f: &mut dyn FnMut(Entry) -> bool,
) -> Result<(), StoreError> {
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
            let key: Vec<u8> = r.get(10)?;
            let op: Option<String> = if with_op { Some(r.get(11)?) } else { None };
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
        let removed = op.as_deref() == Some(Op::Remove.as_str());
        // A pending entry's expiry is set again by its deploy; a deployed
        // one shows only its listings that have not expired.
        let entry = match op {
            Some(_) => Some(shown(entry)),
            None => entry.live(now),
        };
        if !removed
            && let Some(entry) = entry
            && !f(entry)
        {
            return Ok(());
        }
    }
}

fn taken<T>(item: Option<rusqlite::Result<Result<T, StoreError>>>) -> Result<T, StoreError> {
    match item {
        Some(Ok(Ok(t))) => Ok(t),
        Some(Ok(Err(e))) => Err(e),
        Some(Err(e)) => Err(e.into()),
        None => Err(StoreError::ListingChanged),
    }
}

fn next_err<T>(item: Option<rusqlite::Result<Result<T, StoreError>>>) -> StoreError {
    match taken(item) {
        Err(e) => e,
        Ok(_) => StoreError::ListingChanged,
    }
}
