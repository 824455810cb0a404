//! What one revision's deploy changed, read back from the versions: an
//! entry version that starts at revision R came with R's deploy, one that
//! ends at R went with it, and a key with both was changed.

use std::cmp::Ordering;

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    audit::revision_from,
    rows::{ENTRY_COLS, entry_from},
};
use crate::{
    model::Entry,
    store::{RevisionChanges, StoreError},
};

/// The changes of revision `rev`, at most `limit` of each kind. Both sides
/// are read in key order and merged, so a revision of 1M changes is read
/// in one pass and held only up to the limit.
pub(super) fn changes(
    conn: &Connection,
    rev: u64,
    limit: usize,
) -> Result<RevisionChanges, StoreError> {
    let revision = conn
        .query_row(
            "SELECT * FROM revisions WHERE rev = ?1",
            [rev as i64],
            revision_from,
        )
        .optional()?
        .ok_or(StoreError::NoRevision { rev })?;
    // What started at `rev`: the current entries deployed by it, and the
    // versions it deployed that a later revision ended.
    let mut started = conn.prepare(&format!(
        "SELECT {ENTRY_COLS} FROM entries WHERE from_rev = ?1
         UNION ALL SELECT {ENTRY_COLS} FROM versions WHERE from_rev = ?1
         ORDER BY 1, 2"
    ))?;
    let mut ended = conn.prepare(&format!(
        "SELECT {ENTRY_COLS} FROM versions WHERE to_rev = ?1 ORDER BY 1, 2"
    ))?;
    let read = |r: &rusqlite::Row<'_>| entry_from(r, 0);
    let mut after = started.query_map(params![rev as i64], read)?.peekable();
    let mut before = ended.query_map(params![rev as i64], read)?.peekable();
    let mut out = RevisionChanges {
        revision,
        added: Vec::new(),
        removed: Vec::new(),
        changed: Vec::new(),
        truncated: false,
    };
    loop {
        // Rows come in the text order of (target, list), the ORDER BY's.
        let order = match (after.peek(), before.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(Ok(Ok(a))), Some(Ok(Ok(b)))) => text_key(a).cmp(&text_key(b)),
            // An error is taken below, where it is returned.
            (Some(_), Some(_)) => Ordering::Less,
        };
        match order {
            Ordering::Less => {
                let a = taken(after.next())?;
                keep(&mut out.added, a, limit, &mut out.truncated);
            }
            Ordering::Greater => {
                let b = taken(before.next())?;
                keep(&mut out.removed, b, limit, &mut out.truncated);
            }
            Ordering::Equal => {
                let (b, a) = (taken(before.next())?, taken(after.next())?);
                keep(&mut out.changed, (b, a), limit, &mut out.truncated);
            }
        }
    }
    out.added.sort_by_key(|e| (e.target, e.list));
    out.removed.sort_by_key(|e| (e.target, e.list));
    out.changed.sort_by_key(|(b, _)| (b.target, b.list));
    Ok(out)
}

/// Keeps `item` while the kind has fewer than `limit`.
fn keep<T>(list: &mut Vec<T>, item: T, limit: usize, truncated: &mut bool) {
    if list.len() < limit {
        list.push(item);
    } else {
        *truncated = true;
    }
}

/// The key as the statements order it: the target's text, then the list's.
fn text_key(e: &Entry) -> (String, &'static str) {
    (e.target.to_string(), e.list.as_str())
}

fn taken(item: Option<rusqlite::Result<Result<Entry, StoreError>>>) -> Result<Entry, StoreError> {
    match item {
        Some(Ok(Ok(e))) => Ok(e),
        Some(Ok(Err(e))) => Err(e),
        Some(Err(e)) => Err(e.into()),
        None => Err(StoreError::ListingChanged),
    }
}
