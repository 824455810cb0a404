//! SQLite's own tests of listings: a rollback reading the listings kept
//! in `versions`, `next_expiry`, the REFRESH marker kept out of the
//! deployed rows, and the upgrade from schema 4. They read SQLite's rows
//! (or write schema 4's), so they stay here; the other tests of listings
//! are in the shared suite, `store::suite::listings`, whose helpers these
//! share.

use std::path::PathBuf;

use rusqlite::Connection;

use super::{DB_FILE, SqliteStore, rows::meta, schema::SCHEMA_VERSION};
use crate::{
    model::{List, Millis, Sources, Ttl},
    store::{
        Stage, Store,
        suite::{
            deploy,
            listings::{X, deploy_only, relist, sources_of, stage, stored, sweep, upsert},
            t,
        },
    },
};

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn open() -> (Dir, SqliteStore) {
    let dir = std::env::temp_dir().join(format!(
        "denylist-listings-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let s = SqliteStore::open(&dir).unwrap();
    (Dir(dir), s)
}

/// Rollback restores the revision's admin listings, read from a version
/// that kept several listings as JSON, and leaves the feeds' listings as
/// they are now (a feed's listing gone since is not restored).
#[test]
fn rollback_reads_listings_from_versions_and_keeps_the_feeds_as_they_are() {
    let (_d, mut s) = open();
    stage(&mut s, upsert("manual", "typed", Some(Ttl::Never)), 0);
    stage(&mut s, upsert("feed:a", "feed a", Some(Ttl::Never)), 0);
    deploy(&mut s, 0); // rev 1: manual + feed:a
    stage(&mut s, upsert("manual", "changed", None), 1_000);
    deploy(&mut s, 1_000); // rev 2
    let remove = Stage::Remove {
        target: t(X),
        list: List::Deny,
        sources: Sources::Only("feed:a".into()),
    };
    stage(&mut s, remove, 2_000);
    deploy_only(&mut s, "feed:a", 2_000); // rev 3: manual only
    stage(&mut s, upsert("feed:b", "feed b", Some(Ttl::Never)), 3_000);
    deploy_only(&mut s, "feed:b", 3_000); // rev 4: manual + feed:b
    let with_listings: i64 = s
        .conn
        .query_row(
            "SELECT count(*) FROM versions WHERE listings IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(with_listings > 0, "the versions keep the listings");
    let (_, expired) = s.rollback(1, false, "carol", 4_000).unwrap();
    assert!(expired.is_empty());
    let draft = s.draft_entry(t(X), List::Deny, 4_000).unwrap().unwrap();
    assert_eq!(draft.sources, ["manual", "feed:b"]);
    assert_eq!(
        draft.listing("manual").unwrap().reason.as_deref(),
        Some("typed")
    );
    deploy(&mut s, 5_000);
    assert_eq!(sources_of(stored(&s)), ["manual", "feed:b"]);
}

/// `next_expiry` follows every write: the first listing's expiry after a
/// deploy, the next one's after the sweep takes the first out, none once
/// only a permanent listing is left; a partial deploy sets it too.
#[test]
fn next_expiry_follows_the_listings() {
    let (_d, mut s) = open();
    let next = |s: &SqliteStore| -> Option<Millis> {
        s.conn
            .query_row("SELECT next_expiry FROM entries", [], |r| r.get(0))
            .unwrap()
    };
    stage(&mut s, upsert("manual", "typed", Some(Ttl::Secs(60))), 0);
    stage(&mut s, upsert("import:a", "a", Some(Ttl::Secs(120))), 0);
    deploy(&mut s, 0);
    assert_eq!(next(&s), Some(60_000));
    assert!(s.expired(59_999).unwrap().is_empty());
    sweep(&mut s, 60_000);
    assert_eq!(next(&s), Some(120_000));
    assert!(s.expired(119_999).unwrap().is_empty());
    stage(&mut s, upsert("feed:a", "feed", Some(Ttl::Never)), 70_000);
    deploy_only(&mut s, "feed:a", 70_000);
    assert_eq!(next(&s), Some(120_000), "a partial deploy keeps it");
    sweep(&mut s, 120_000);
    assert_eq!(next(&s), None);
    assert_eq!(sources_of(stored(&s)), ["feed:a"]);
    assert!(s.expired(i64::MAX / 2).unwrap().is_empty());
}

/// The REFRESH marker lives only in pending rows: never in a deployed
/// row's columns or listings JSON, nor in what the store hands out, after
/// a partial deploy, a sweep and a full deploy.
#[test]
fn the_refresh_marker_never_leaves_the_pending_rows() {
    let (_d, mut s) = open();
    stage(&mut s, upsert("manual", "typed", Some(Ttl::Secs(1_000))), 0);
    stage(
        &mut s,
        upsert("import:a", "list a", Some(Ttl::Secs(100))),
        0,
    );
    deploy(&mut s, 0);
    stage(&mut s, upsert("manual", "changed my mind", None), 1_000);
    stage(&mut s, relist("import:a", 100), 10_000);
    let marked: i64 = s
        .conn
        .query_row(
            "SELECT count(*) FROM pending WHERE listings LIKE '%\"expires_at\":-1%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(marked, 1, "the pending row carries the marker");
    let shown = s.draft_entry(t(X), List::Deny, 10_000).unwrap().unwrap();
    assert!(shown.listings.iter().all(|l| l.expires_at != Some(-1)));
    assert!(shown.expires_at != Some(-1));
    for p in s.pending().unwrap() {
        let after = p.after.unwrap();
        assert!(after.listings.iter().all(|l| l.expires_at != Some(-1)));
    }
    deploy_only(&mut s, "import:a", 10_000);
    sweep(&mut s, 110_000);
    deploy(&mut s, 120_000);
    let leaked: i64 = s
        .conn
        .query_row(
            "SELECT count(*) FROM entries WHERE expires_at < 0 OR next_expiry < 0
               OR listings LIKE '%\"expires_at\":-1%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(leaked, 0);
    let versions: i64 = s
        .conn
        .query_row(
            "SELECT count(*) FROM versions WHERE expires_at < 0
               OR listings LIKE '%\"expires_at\":-1%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(versions, 0);
}

/// The schema-4 tables, as denylistd wrote them before listings.
const SCHEMA_V4: &str = "
    CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE entries(
      sort_key BLOB NOT NULL, list TEXT NOT NULL, target TEXT NOT NULL, id INTEGER NOT NULL,
      reason TEXT, ttl INTEGER, expires_at INTEGER, monitor INTEGER NOT NULL,
      source TEXT NOT NULL, added_by TEXT NOT NULL, added_at INTEGER NOT NULL,
      from_rev INTEGER NOT NULL,
      PRIMARY KEY(sort_key, list DESC)) WITHOUT ROWID;
    CREATE INDEX entries_expiry ON entries(expires_at) WHERE expires_at IS NOT NULL;
    CREATE TABLE pending(
      sort_key BLOB NOT NULL, list TEXT NOT NULL, target TEXT NOT NULL, op TEXT NOT NULL,
      reason TEXT, ttl INTEGER, expires_at INTEGER, monitor INTEGER NOT NULL,
      source TEXT NOT NULL, added_by TEXT NOT NULL, added_at INTEGER NOT NULL,
      staged_by TEXT NOT NULL, staged_at INTEGER NOT NULL,
      PRIMARY KEY(sort_key, list DESC)) WITHOUT ROWID;
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
    INSERT INTO meta VALUES ('schema', 4), ('revision', 2), ('next_id', 3);
    INSERT INTO revisions VALUES (1, 0, 'alice', NULL, 2, 0, 0), (2, 1000, 'alice', NULL, 0, 0, 1);
    INSERT INTO versions VALUES
      ('192.0.2.2', 'deny', 2, 'old', 100, 100000, 0, 'import:a', 'alice', 0, 1, 2);
";

/// A schema-4 store with a deployed entry that expires, an import's entry
/// and a pending re-listing (REFRESH) of it is upgraded in place: the
/// sweep finds the expiry through `next_expiry`, the re-listing deploys
/// with the longer expiry, and a rollback reads the old version.
#[test]
fn a_version_4_store_with_expiries_and_a_refresh_is_upgraded() {
    let (d, s) = open();
    drop(s);
    std::fs::remove_file(d.0.join(DB_FILE)).unwrap();
    for ext in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(d.0.join(format!("{DB_FILE}{ext}")));
    }
    let conn = Connection::open(d.0.join(DB_FILE)).unwrap();
    conn.execute_batch(SCHEMA_V4).unwrap();
    let key = |s: &str| super::rows::sort_key(&t(s)).to_vec();
    conn.execute(
        "INSERT INTO entries VALUES (?1, 'deny', '192.0.2.1', 1, 'typed', 60, 60000, 0,
           'manual', 'alice', 0, 1)",
        [key("192.0.2.1")],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO entries VALUES (?1, 'deny', '192.0.2.2', 2, 'new', 100, 101000, 0,
           'import:a', 'alice', 0, 2)",
        [key("192.0.2.2")],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO pending VALUES (?1, 'deny', '192.0.2.2', 'change', 'new', 100, -1, 0,
           'import:a', 'alice', 0, 'alice', 5000)",
        [key("192.0.2.2")],
    )
    .unwrap();
    drop(conn);
    let mut s = SqliteStore::open(&d.0).unwrap();
    assert_eq!(meta(&s.conn, "schema").unwrap(), SCHEMA_VERSION);
    let p = s.pending().unwrap();
    assert_eq!(p[0].after.as_ref().unwrap().expires_at, None, "shown");
    assert!(s.expired(59_999).unwrap().is_empty());
    deploy(&mut s, 10_000);
    let e = s
        .deployed()
        .unwrap()
        .into_iter()
        .find(|s| s.entry.target == t("192.0.2.2"))
        .unwrap()
        .entry;
    assert_eq!(e.expires_at, Some(110_000), "now + TTL, later than 101 s");
    let expired = s.expired(60_000).unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].entry.target, t(X));
    sweep(&mut s, 60_000);
    assert_eq!(stored(&s), None);
    s.rollback(1, false, "carol", 61_000).unwrap();
    let draft = s
        .draft_entry(t("192.0.2.2"), List::Deny, 61_000)
        .unwrap()
        .unwrap();
    assert_eq!(draft.reason.as_deref(), Some("old"));
}
