//! Rows: the entry columns, spelled once, and the statements every part of
//! the store shares.

use rusqlite::{Connection, OptionalExtension, Row, Savepoint, Statement, params};

use crate::{
    model::{Entry, List, Listing, Millis, Stored, Target},
    store::{Op, StoreError},
};

pub(super) fn entry_from(row: &Row<'_>, at: usize) -> rusqlite::Result<Result<Entry, StoreError>> {
    let target: String = row.get(at)?;
    let list: String = row.get(at + 1)?;
    let ttl: Option<i64> = row.get(at + 3)?;
    let listings: Option<String> = row.get(at + 9)?;
    Ok((|| {
        let e = Entry {
            target: StoreError::target(&target)?,
            list: StoreError::list(&list)?,
            reason: row.get(at + 2)?,
            ttl: ttl.map(|t| t as u64),
            expires_at: row.get(at + 4)?,
            monitor: row.get(at + 5)?,
            source: row.get(at + 6)?,
            added_by: row.get(at + 7)?,
            added_at: row.get(at + 8)?,
            sources: Vec::new(),
            listings: match listings {
                None => Vec::new(),
                Some(json) => serde_json::from_str::<Vec<RowListing>>(&json)
                    .map_err(|_| StoreError::Unreadable {
                        what: "listings",
                        value: json,
                    })?
                    .into_iter()
                    .map(Listing::from)
                    .collect(),
            },
        };
        Ok(e.normalized())
    })())
}

/// `e` as a row of it reads back through [`entry_from`]. A single listing
/// is stored in the entry's own columns, which `merge` derived from it, so
/// it comes back with the entry's fields; of those only the expiry can
/// differ: a listing with no TTL (one given again as never, with the
/// [`REFRESH`] marker) merges into an entry with no expiry.
pub(super) fn as_read_back(mut e: Entry) -> Entry {
    if let [l] = e.listings.as_mut_slice() {
        l.expires_at = e.expires_at;
    }
    e
}

/// A pending row's `expires_at` that means "at the deploy: now + TTL,
/// unless the deployed expiry is later": an import re-listing an entry.
/// It never leaves the store: what the store hands out shows no expiry for
/// a pending entry, since its deploy sets one.
pub(super) const REFRESH: Millis = -1;

/// An entry's columns, in `entry_from` and `bind_entry` order: the one
/// place they are spelled. A macro, so that `concat!` builds whole
/// statements at compile time and a bulk write formats nothing per row.
macro_rules! entry_cols {
    () => {
        "target, list, reason, ttl, expires_at, monitor, source, added_by, added_at, listings"
    };
}

pub(super) const ENTRY_COLS: &str = entry_cols!();

/// Binds `e` to parameters 1 to 10, in [`ENTRY_COLS`] order. An entry with
/// one listing, nearly every entry, keeps no listings column: its own
/// fields are that listing, so a bulk import writes no JSON.
fn bind_entry(stmt: &mut Statement<'_>, e: &Entry) -> rusqlite::Result<()> {
    stmt.raw_bind_parameter(1, e.target.to_string())?;
    stmt.raw_bind_parameter(2, e.list.as_str())?;
    stmt.raw_bind_parameter(3, &e.reason)?;
    stmt.raw_bind_parameter(4, e.ttl.map(|t| t as i64))?;
    stmt.raw_bind_parameter(5, e.expires_at)?;
    stmt.raw_bind_parameter(6, e.monitor)?;
    stmt.raw_bind_parameter(7, &e.source)?;
    stmt.raw_bind_parameter(8, &e.added_by)?;
    stmt.raw_bind_parameter(9, e.added_at)?;
    let listings = (e.listings.len() > 1).then(|| {
        let rows: Vec<RowListing> = e.listings.iter().map(RowListing::from).collect();
        serde_json::to_string(&rows).expect("listings serialize")
    });
    stmt.raw_bind_parameter(10, listings)
}

/// A listing in the `listings` column: times in milliseconds, as every
/// other column keeps them, so SQL compares them and the [`REFRESH`]
/// marker survives.
#[derive(serde::Serialize, serde::Deserialize)]
struct RowListing {
    source: String,
    reason: Option<String>,
    ttl: Option<u64>,
    expires_at: Option<Millis>,
    monitor: bool,
    added_by: String,
    added_at: Millis,
}

impl From<&Listing> for RowListing {
    fn from(l: &Listing) -> Self {
        RowListing {
            source: l.source.clone(),
            reason: l.reason.clone(),
            ttl: l.ttl,
            expires_at: l.expires_at,
            monitor: l.monitor,
            added_by: l.added_by.clone(),
            added_at: l.added_at,
        }
    }
}

impl From<RowListing> for Listing {
    fn from(l: RowListing) -> Self {
        Listing {
            source: l.source,
            reason: l.reason,
            ttl: l.ttl,
            expires_at: l.expires_at,
            monitor: l.monitor,
            added_by: l.added_by,
            added_at: l.added_at,
        }
    }
}

/// An entry as the store's users see it: a pending listing shows no
/// expiry, since its deploy sets one.
pub(super) fn shown(mut e: Entry) -> Entry {
    for l in &mut e.listings {
        if l.expires_at == Some(REFRESH) {
            l.expires_at = None;
        }
    }
    e.merge();
    e
}

/// Drops the draft's listings whose copied expiry has passed: a pending
/// row keeps a deployed listing's expiry, and once that passes the listing
/// is gone, whether or not the sweep has come. The refresh marker and a
/// TTL given again (no expiry yet) are no copies.
pub(super) fn drop_expired_copies(e: &mut Entry, now: Millis) {
    let before = e.listings.len();
    e.listings
        .retain(|l| !l.expires_at.is_some_and(|x| x != REFRESH && x <= now));
    if e.listings.len() != before {
        e.merge();
    }
}

/// Orders targets as `Target` does: IPv4 before IPv6, then by address, then
/// by prefix length.
pub(super) fn sort_key(t: &Target) -> [u8; 18] {
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

pub(super) fn prefixed(t: &str) -> String {
    ENTRY_COLS
        .split(", ")
        .map(|c| format!("{t}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn meta(conn: &Connection, key: &str) -> Result<i64, StoreError> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::MissingMeta {
            key: key.to_string(),
        })
}

pub(super) fn set_meta(tx: &Savepoint<'_>, key: &str, value: i64) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE meta SET value = ?2 WHERE key = ?1",
        params![key, value],
    )?;
    Ok(())
}

pub(super) fn audit(
    tx: &Savepoint<'_>,
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

/// Notes that the event `seq` changed the draft: a deploy given the
/// `draft_seq` an admin reviewed ships nothing once it has moved on. A
/// store from before issue 14 has no such row until its draft changes.
pub(super) fn draft_changed(tx: &Savepoint<'_>, seq: u64) -> Result<(), StoreError> {
    tx.prepare_cached("INSERT OR REPLACE INTO meta(key, value) VALUES ('draft_seq', ?1)")?
        .execute([seq as i64])?;
    Ok(())
}

/// The `seq` of the event that last changed the draft; 0 for none.
pub(super) fn draft_seq(conn: &Connection) -> Result<u64, StoreError> {
    let seq: Option<i64> = conn
        .prepare_cached("SELECT value FROM meta WHERE key = 'draft_seq'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(seq.unwrap_or(0) as u64)
}

pub(super) fn deployed_entry(
    tx: &Connection,
    t: Target,
    l: List,
) -> Result<Option<Stored>, StoreError> {
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

pub(super) fn pending_row(
    tx: &Connection,
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

pub(super) fn insert_pending(
    tx: &Savepoint<'_>,
    op: Op,
    e: &Entry,
    user: &str,
    now: Millis,
) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(concat!(
        "INSERT OR REPLACE INTO pending(",
        entry_cols!(),
        ", op, staged_by, staged_at, sort_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
    ))?;
    bind_entry(&mut stmt, e)?;
    stmt.raw_bind_parameter(11, op.as_str())?;
    stmt.raw_bind_parameter(12, user)?;
    stmt.raw_bind_parameter(13, now)?;
    stmt.raw_bind_parameter(14, sort_key(&e.target).as_slice())?;
    stmt.raw_execute()?;
    Ok(())
}

pub(super) fn pending_rows(conn: &Connection) -> Result<usize, StoreError> {
    Ok(conn.query_row("SELECT count(*) FROM pending", [], |r| r.get::<_, i64>(0))? as usize)
}

/// Deploys `s` as of revision `rev`. Unless the caller clears the draft in
/// bulk (`bulk`), its pending row goes too.
pub(super) fn insert_entry(
    tx: &Savepoint<'_>,
    s: &Stored,
    rev: i64,
    bulk: bool,
) -> Result<(), StoreError> {
    let e = &s.entry;
    let key = sort_key(&e.target);
    let mut stmt = tx.prepare_cached(concat!(
        "INSERT OR REPLACE INTO entries(",
        entry_cols!(),
        ", id, sort_key, from_rev, next_expiry) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
    ))?;
    bind_entry(&mut stmt, e)?;
    stmt.raw_bind_parameter(11, s.id)?;
    stmt.raw_bind_parameter(12, key.as_slice())?;
    stmt.raw_bind_parameter(13, rev)?;
    stmt.raw_bind_parameter(14, e.next_expiry())?;
    stmt.raw_execute()?;
    if !bulk {
        tx.prepare_cached("DELETE FROM pending WHERE sort_key = ?1 AND list = ?2")?
            .execute(params![key.as_slice(), e.list.as_str()])?;
    }
    Ok(())
}

/// Ends the current version of a deployed entry at revision `rev`: it was
/// in the revisions from its `from_rev` up to `rev`, and is in none after.
pub(super) fn close_version(tx: &Savepoint<'_>, e: &Entry, rev: i64) -> Result<(), StoreError> {
    tx.prepare_cached(concat!(
        "INSERT INTO versions(",
        entry_cols!(),
        ", id, from_rev, to_rev) SELECT ",
        entry_cols!(),
        ", id, from_rev, ?3 FROM entries WHERE sort_key = ?1 AND list = ?2"
    ))?
    .execute(params![
        sort_key(&e.target).as_slice(),
        e.list.as_str(),
        rev
    ])?;
    Ok(())
}

pub(super) fn delete_entry(
    tx: &Savepoint<'_>,
    e: &Entry,
    rev: i64,
    bulk: bool,
) -> Result<(), StoreError> {
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
