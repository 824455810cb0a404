//! The schema, and the upgrades that bring an older store to it in place.

use rusqlite::{Connection, params};

use super::rows::{meta, sort_key};
use crate::store::StoreError;

pub(crate) const SCHEMA_VERSION: i64 = 5;

const SCHEMA: &str = "
CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
{ENTRIES}
CREATE INDEX entries_next_expiry ON entries(next_expiry) WHERE next_expiry IS NOT NULL;
{PENDING}
CREATE TABLE revisions(
  rev INTEGER PRIMARY KEY, deployed_at INTEGER NOT NULL, deployed_by TEXT NOT NULL,
  message TEXT, added INTEGER NOT NULL, removed INTEGER NOT NULL, changed INTEGER NOT NULL);
CREATE TABLE versions(
  target TEXT NOT NULL, list TEXT NOT NULL, id INTEGER NOT NULL,
  reason TEXT, ttl INTEGER, expires_at INTEGER, monitor INTEGER NOT NULL,
  source TEXT NOT NULL, added_by TEXT NOT NULL, added_at INTEGER NOT NULL,
  from_rev INTEGER NOT NULL, to_rev INTEGER, listings TEXT);
CREATE INDEX versions_span ON versions(from_rev, to_rev);
CREATE TABLE audit(
  seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, user TEXT NOT NULL,
  kind TEXT NOT NULL, target TEXT, detail TEXT);
CREATE TABLE attachments(iface TEXT PRIMARY KEY, mode TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE hits(
  id INTEGER PRIMARY KEY, packets INTEGER NOT NULL, bytes INTEGER NOT NULL, last_hit INTEGER);
{FEEDS}
INSERT INTO meta VALUES ('schema', 5), ('revision', 0), ('next_id', 1);
";

// Both tables are keyed by the binary sort key, so bulk work sorted by
// target walks each B-tree in order and one tree serves both lookups and
// address-ordered listings (deny before allow). A deployed entry is its own
// current version, deployed since `from_rev`; versions keeps only the
// versions a later revision ended, so a deploy writes each new entry once.
// An entry's own columns are the merge of its listings; `listings` holds
// them as JSON only when there are several, and `next_expiry` is when the
// first of them expires (docs/autoblock.md).
const ENTRIES_TABLE: &str = "CREATE TABLE entries(
  sort_key BLOB NOT NULL, list TEXT NOT NULL, target TEXT NOT NULL, id INTEGER NOT NULL,
  reason TEXT, ttl INTEGER, expires_at INTEGER, monitor INTEGER NOT NULL,
  source TEXT NOT NULL, added_by TEXT NOT NULL, added_at INTEGER NOT NULL,
  from_rev INTEGER NOT NULL{V5_ENTRIES},
  PRIMARY KEY(sort_key, list DESC)) WITHOUT ROWID;";
const PENDING_TABLE: &str = "CREATE TABLE pending(
  sort_key BLOB NOT NULL, list TEXT NOT NULL, target TEXT NOT NULL, op TEXT NOT NULL,
  reason TEXT, ttl INTEGER, expires_at INTEGER, monitor INTEGER NOT NULL,
  source TEXT NOT NULL, added_by TEXT NOT NULL, added_at INTEGER NOT NULL,
  staged_by TEXT NOT NULL, staged_at INTEGER NOT NULL{V5_PENDING},
  PRIMARY KEY(sort_key, list DESC)) WITHOUT ROWID;";
// A feed's settings and state are JSON: they are read and written whole,
// a few at a time, and grow fields as feeds do. `held` is the list a
// failed check kept back, until approved or superseded.
// Reports are kept for the audit and their windows; offences count an
// address's automatic listings for the TTL's escalation.
const FEEDS_TABLE: &str = "CREATE TABLE feeds(
  name TEXT PRIMARY KEY, settings TEXT NOT NULL, state TEXT NOT NULL, held TEXT) WITHOUT ROWID;
CREATE TABLE reports(
  seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, ip TEXT NOT NULL,
  reason TEXT NOT NULL, weight INTEGER NOT NULL, reporter TEXT NOT NULL);
CREATE INDEX reports_ip ON reports(ip, at);
CREATE TABLE offences(ip TEXT PRIMARY KEY, count INTEGER NOT NULL, last_at INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE settings(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;";
const V5_ENTRIES: &str = ", listings TEXT, next_expiry INTEGER";
const V5_PENDING: &str = ", listings TEXT";

/// The tables as of schema 4, which upgrade 5 then extends; the current
/// ones have schema 5's columns from the start.
fn tables(v5: bool) -> (String, String) {
    let (e, p) = if v5 {
        (V5_ENTRIES, V5_PENDING)
    } else {
        ("", "")
    };
    (
        ENTRIES_TABLE.replace("{V5_ENTRIES}", e),
        PENDING_TABLE.replace("{V5_PENDING}", p),
    )
}

pub(super) fn schema() -> String {
    let (entries, pending) = tables(true);
    SCHEMA
        .replace("{ENTRIES}", &entries)
        .replace("{PENDING}", &pending)
        .replace("{FEEDS}", FEEDS_TABLE)
}

/// Brings a store written by an older denylistd to SCHEMA_VERSION, one
/// transaction a version: 2 added per-entry hit totals and the expiry
/// index; 3 a sort key, so listings stream in address order; 4 keys entries
/// and pending by that sort key and links each entry to its open version;
/// 5 gives entries several listings, indexes when the first expires, and
/// keeps feed subscriptions, reports and the automatic blocking policy.
pub(super) fn upgrade(conn: &mut Connection) -> Result<(), StoreError> {
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
                let key = StoreError::target(&t)?;
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
        let (entries_table, pending_table) = tables(false);
        let tx = conn.transaction()?;
        tx.execute_batch(&format!(
            "ALTER TABLE entries RENAME TO entries_v3;
             ALTER TABLE pending RENAME TO pending_v3;
             DROP INDEX entries_sorted;
             DROP INDEX entries_expiry;
             DROP INDEX pending_sorted;
             {entries_table}
             {pending_table}
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
    if meta(conn, "schema")? < 5 {
        conn.execute_batch(&format!(
            "BEGIN;
             {FEEDS_TABLE}
             ALTER TABLE entries ADD COLUMN listings TEXT;
             ALTER TABLE entries ADD COLUMN next_expiry INTEGER;
             UPDATE entries SET next_expiry = expires_at;
             ALTER TABLE pending ADD COLUMN listings TEXT;
             ALTER TABLE versions ADD COLUMN listings TEXT;
             DROP INDEX entries_expiry;
             CREATE INDEX entries_next_expiry ON entries(next_expiry) WHERE next_expiry IS NOT NULL;
             UPDATE meta SET value = 5 WHERE key = 'schema';
             COMMIT;"
        ))?;
    }
    Ok(())
}
