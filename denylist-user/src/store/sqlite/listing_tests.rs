//! Listings in the store: partial deploys, expiry of single listings,
//! rollback with feeds, the REFRESH marker, `next_expiry`, the source
//! keys and the upgrade from schema 4. The sequences come from a review
//! of the feature, each of the first six a bug it found.

use std::path::PathBuf;

use rusqlite::Connection;

use super::{DB_FILE, SqliteStore, rows::meta, schema::SCHEMA_VERSION};
use crate::{
    model::{Entry, List, Millis, Sources, Target, Ttl},
    store::{Audit, DeployRecord, Only, Stage, Store},
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

fn t(s: &str) -> Target {
    Target::parse(s).unwrap()
}

const X: &str = "192.0.2.1";

fn upsert(source: &str, reason: &str, ttl: Option<Ttl>) -> Stage {
    Stage::Upsert {
        target: t(X),
        list: List::Deny,
        reason: Some(reason.into()),
        ttl,
        monitor: None,
        source: Some(source.into()),
        keep_longer_ttl: false,
    }
}

/// An import re-listing X: its TTL never shortens the deployed expiry.
fn relist(source: &str, secs: u64) -> Stage {
    Stage::Upsert {
        target: t(X),
        list: List::Deny,
        reason: None,
        ttl: Some(Ttl::Secs(secs)),
        monitor: None,
        source: Some(source.into()),
        keep_longer_ttl: true,
    }
}

fn stage(s: &mut SqliteStore, op: Stage, now: Millis) {
    s.stage(&[op], "alice", now, None, &Audit::Each).unwrap();
}

fn write(s: &mut SqliteStore, plan: &crate::store::Plan, now: Millis) {
    let record = DeployRecord {
        user: "root",
        message: None,
        now,
        kind: "deploy",
    };
    s.write_deploy(plan, record).unwrap().commit().unwrap();
}

fn deploy_all(s: &mut SqliteStore, now: Millis) {
    let plan = s.plan(None, now).unwrap();
    write(s, &plan, now);
}

/// Deploys only `source`'s listings of X, as a feed, a report or
/// `add --deploy` does.
fn deploy_only(s: &mut SqliteStore, source: &str, now: Millis) {
    let keys = [(t(X), List::Deny)];
    let sources = Sources::Only(source.into());
    let only = Only {
        keys: &keys,
        sources: &sources,
    };
    let plan = s.plan(Some(only), now).unwrap();
    write(s, &plan, now);
}

fn sweep(s: &mut SqliteStore, now: Millis) {
    let expired = s.expired(now).unwrap();
    s.expire(&expired, now).unwrap();
}

/// The deployed entry of X as stored, expired listings included.
fn stored(s: &SqliteStore) -> Option<Entry> {
    s.deployed()
        .unwrap()
        .into_iter()
        .map(|s| s.entry)
        .find(|e| e.target == t(X))
}

fn expiry_of(e: &Entry, source: &str) -> Option<Millis> {
    e.listing(source)
        .unwrap_or_else(|| panic!("{source} lists {e:?}"))
        .expires_at
}

fn sources_of(e: Option<Entry>) -> Vec<String> {
    e.map(|e| e.sources).unwrap_or_default()
}

const REPORTS: &str = "auto:reports";

/// X deployed with a permanent manual listing, an admin's change to it
/// staged, and then a report's listing of X (60 s) deployed on its own at
/// 2 s, leaving the admin's change staged.
fn admin_change_then_report(s: &mut SqliteStore) {
    stage(s, upsert("manual", "typed", Some(Ttl::Never)), 0);
    deploy_all(s, 0);
    stage(s, upsert("manual", "changed my mind", None), 1_000);
    stage(s, upsert(REPORTS, "3 reports", Some(Ttl::Secs(60))), 2_000);
    deploy_only(s, REPORTS, 2_000);
    let e = stored(s).unwrap();
    assert_eq!(expiry_of(&e, REPORTS), Some(62_000));
    assert_eq!(s.pending_count().unwrap(), 1, "the admin's change is kept");
}

/// A partial deploy keeps the other sources' changes staged as the whole
/// draft entry, whose copy of the shipped listing still waits for a
/// deploy to set its expiry: the admin's next deploy sets it again.
#[test]
fn an_admins_deploy_keeps_the_expiry_a_partial_deploy_gave_a_listing() {
    let (_d, mut s) = open();
    admin_change_then_report(&mut s);
    deploy_all(&mut s, 30_000);
    let e = stored(&s).unwrap();
    assert_eq!(
        e.listing("manual").unwrap().reason.as_deref(),
        Some("changed my mind")
    );
    assert_eq!(
        expiry_of(&e, REPORTS),
        Some(62_000),
        "the report's listing was deployed at 2 s for 60 s; the admin's deploy at 30 s renewed it"
    );
}

/// The same copy survives the listing's expiry (it has no expiry of its
/// own, so the sweep does not see it as a copy) and the admin's deploy
/// puts the expired listing back, for a whole TTL.
#[test]
fn a_listing_shipped_by_a_partial_deploy_stays_gone_once_expired() {
    let (_d, mut s) = open();
    admin_change_then_report(&mut s);
    sweep(&mut s, 62_000);
    assert_eq!(sources_of(stored(&s)), ["manual"], "the sweep took it out");
    let draft = s.draft_entry(t(X), List::Deny, 62_000).unwrap();
    assert_eq!(
        sources_of(draft),
        ["manual"],
        "the draft still lists the expired report listing"
    );
    deploy_all(&mut s, 63_000);
    assert_eq!(
        sources_of(stored(&s)),
        ["manual"],
        "the admin's deploy revived the expired report listing"
    );
}

/// The REFRESH marker of an import's re-listing, shipped by the import's
/// own deploy, stays in the kept row: the admin's later deploy extends
/// the import's listing once more.
#[test]
fn an_imports_refreshed_expiry_is_not_extended_by_the_next_deploy() {
    let (_d, mut s) = open();
    stage(&mut s, upsert("manual", "typed", Some(Ttl::Never)), 0);
    stage(
        &mut s,
        upsert("import:a", "list a", Some(Ttl::Secs(100))),
        0,
    );
    deploy_all(&mut s, 0);
    assert_eq!(expiry_of(&stored(&s).unwrap(), "import:a"), Some(100_000));
    stage(&mut s, upsert("manual", "changed my mind", None), 1_000);
    // `import --source a --deploy` at 10 s: the longer expiry wins.
    stage(&mut s, relist("import:a", 100), 10_000);
    deploy_only(&mut s, "import:a", 10_000);
    assert_eq!(expiry_of(&stored(&s).unwrap(), "import:a"), Some(110_000));
    assert_eq!(s.pending_count().unwrap(), 1, "the admin's change is kept");
    deploy_all(&mut s, 50_000);
    let e = stored(&s).unwrap();
    assert_eq!(
        e.listing("manual").unwrap().reason.as_deref(),
        Some("changed my mind")
    );
    assert_eq!(
        expiry_of(&e, "import:a"),
        Some(110_000),
        "the import re-listed at 10 s; the admin's deploy at 50 s refreshed it again"
    );
}

/// An entry whose only deployed listing expires loses its pending row
/// when that was staged before the expiry, even if what it stages is a
/// new listing by another source, not a copy of the expired one.
#[test]
fn the_expiry_of_an_entrys_last_listing_keeps_another_sources_staged_listing() {
    let (_d, mut s) = open();
    stage(&mut s, upsert("manual", "typed", Some(Ttl::Secs(60))), 0);
    deploy_all(&mut s, 0);
    stage(
        &mut s,
        upsert("import:y", "list y", Some(Ttl::Never)),
        10_000,
    );
    sweep(&mut s, 60_000);
    assert_eq!(stored(&s), None, "the manual listing expired");
    let draft = s.draft_entry(t(X), List::Deny, 60_000).unwrap();
    assert_eq!(
        sources_of(draft),
        ["import:y"],
        "the staged import listing was dropped with the expired entry"
    );
}

/// The same for an admin's TTL given again before the expiry: with
/// another listing beside it (`expire_listings`), such a listing "stays";
/// when it is the entry's last, the whole pending row goes.
#[test]
fn a_ttl_given_again_survives_expiry_whether_or_not_another_listing_is_left() {
    // With a feed listing beside it: kept, as documented.
    let (_d, mut s) = open();
    stage(&mut s, upsert("manual", "typed", Some(Ttl::Secs(60))), 0);
    stage(&mut s, upsert("feed:a", "feed a", Some(Ttl::Never)), 0);
    deploy_all(&mut s, 0);
    stage(
        &mut s,
        upsert("manual", "typed", Some(Ttl::Secs(3600))),
        10_000,
    );
    sweep(&mut s, 60_000);
    let draft = s.draft_entry(t(X), List::Deny, 60_000).unwrap().unwrap();
    assert_eq!(draft.listing("manual").unwrap().ttl, Some(3600));
    // Alone: dropped.
    let (_d, mut s) = open();
    stage(&mut s, upsert("manual", "typed", Some(Ttl::Secs(60))), 0);
    deploy_all(&mut s, 0);
    stage(
        &mut s,
        upsert("manual", "typed", Some(Ttl::Secs(3600))),
        10_000,
    );
    sweep(&mut s, 60_000);
    let draft = s.draft_entry(t(X), List::Deny, 60_000).unwrap();
    assert_eq!(
        draft.and_then(|e| e.listing("manual").and_then(|l| l.ttl)),
        Some(3600),
        "the TTL given again before the expiry was dropped with the entry"
    );
}

/// Staging on top of a pending row copies the row's listings, expired
/// ones included (only the deployed entry is read `live`). When a feed's
/// partial deploy then rewrites the deployed entry before the sweep ran,
/// the sweep never sees the expired listing, and the admin's deploy puts
/// it back for a whole TTL.
#[test]
fn an_expired_listing_copied_into_the_draft_is_not_revived_by_a_deploy() {
    let (_d, mut s) = open();
    stage(&mut s, upsert("manual", "typed", Some(Ttl::Secs(60))), 0);
    deploy_all(&mut s, 0);
    stage(&mut s, upsert("manual", "changed my mind", None), 10_000);
    // 70 s, the sweep not yet run: the feed lists X and deploys.
    stage(&mut s, upsert("feed:a", "feed a", Some(Ttl::Never)), 70_000);
    deploy_only(&mut s, "feed:a", 70_000);
    assert_eq!(sources_of(stored(&s)), ["feed:a"]);
    sweep(&mut s, 71_000);
    deploy_all(&mut s, 72_000);
    assert_eq!(
        sources_of(stored(&s)),
        ["feed:a"],
        "the manual listing expired at 60 s and was deployed again at 72 s"
    );
}

// Regression tests: behaviour worth keeping.

/// A feed taking its listing out, deployed on its own while an admin's
/// change to the same entry is staged: the admin's deploy ships the
/// change and does not bring the feed's listing back; a discard leaves
/// the deployed entry as the feed left it.
#[test]
fn a_feeds_removal_survives_an_admins_pending_change() {
    for discard in [false, true] {
        let (_d, mut s) = open();
        stage(&mut s, upsert("manual", "typed", Some(Ttl::Never)), 0);
        stage(&mut s, upsert("feed:a", "feed a", Some(Ttl::Never)), 0);
        deploy_all(&mut s, 0);
        stage(&mut s, upsert("manual", "changed my mind", None), 1_000);
        let remove = Stage::Remove {
            target: t(X),
            list: List::Deny,
            sources: Sources::Only("feed:a".into()),
        };
        stage(&mut s, remove, 2_000);
        deploy_only(&mut s, "feed:a", 2_000);
        let e = stored(&s).unwrap();
        assert_eq!(e.sources, ["manual"]);
        assert_eq!(e.reason.as_deref(), Some("typed"), "the admin's is staged");
        assert_eq!(s.pending_count().unwrap(), 1);
        if discard {
            s.discard("alice", 3_000).unwrap();
        } else {
            deploy_all(&mut s, 3_000);
        }
        let e = stored(&s).unwrap();
        assert_eq!(e.sources, ["manual"]);
        let want = if discard { "typed" } else { "changed my mind" };
        assert_eq!(e.reason.as_deref(), Some(want));
        assert_eq!(s.pending_count().unwrap(), 0);
    }
}

/// An admin's removal staged, then a feed listing the same entry, deployed
/// on its own: the admin's removal of the manual listing stays staged.
#[test]
fn an_admins_staged_removal_stays_staged_under_a_feeds_deploy() {
    let (_d, mut s) = open();
    stage(&mut s, upsert("manual", "typed", Some(Ttl::Never)), 0);
    deploy_all(&mut s, 0);
    let remove = Stage::Remove {
        target: t(X),
        list: List::Deny,
        sources: Sources::Admin,
    };
    stage(&mut s, remove, 1_000);
    stage(&mut s, upsert("feed:a", "feed a", Some(Ttl::Never)), 2_000);
    deploy_only(&mut s, "feed:a", 2_000);
    assert_eq!(sources_of(stored(&s)), ["manual", "feed:a"]);
    let draft = s.draft_entry(t(X), List::Deny, 2_000).unwrap();
    assert_eq!(sources_of(draft), ["feed:a"]);
    deploy_all(&mut s, 3_000);
    assert_eq!(sources_of(stored(&s)), ["feed:a"]);
}

/// Rollback restores the revision's admin listings, read from a version
/// that kept several listings as JSON, and leaves the feeds' listings as
/// they are now (a feed's listing gone since is not restored).
#[test]
fn rollback_reads_listings_from_versions_and_keeps_the_feeds_as_they_are() {
    let (_d, mut s) = open();
    stage(&mut s, upsert("manual", "typed", Some(Ttl::Never)), 0);
    stage(&mut s, upsert("feed:a", "feed a", Some(Ttl::Never)), 0);
    deploy_all(&mut s, 0); // rev 1: manual + feed:a
    stage(&mut s, upsert("manual", "changed", None), 1_000);
    deploy_all(&mut s, 1_000); // rev 2
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
    deploy_all(&mut s, 5_000);
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
    deploy_all(&mut s, 0);
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
    deploy_all(&mut s, 0);
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
    deploy_all(&mut s, 120_000);
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

/// The source keys read the `listings` JSON (integer milliseconds), drop
/// expired deployed listings, and in the draft follow the pending rows.
#[test]
fn source_keys_read_the_listings_json() {
    let (_d, mut s) = open();
    stage(&mut s, upsert("manual", "typed", Some(Ttl::Secs(60))), 0);
    stage(&mut s, upsert("feed:a", "feed", Some(Ttl::Never)), 0);
    deploy_all(&mut s, 0);
    let key = vec![(t(X), List::Deny)];
    assert_eq!(s.deployed_keys_from("manual", 59_999).unwrap(), key);
    assert!(s.deployed_keys_from("manual", 60_000).unwrap().is_empty());
    assert!(s.draft_keys_from("manual", 60_000).unwrap().is_empty());
    assert_eq!(s.deployed_keys_from("feed:a", 60_000).unwrap(), key);
    assert!(s.deployed_keys_from("feed", 0).unwrap().is_empty());
    // A pending row with several listings, and one with one.
    stage(&mut s, upsert("import:b", "b", Some(Ttl::Never)), 1_000);
    assert_eq!(s.draft_keys_from("import:b", 1_000).unwrap(), key);
    assert_eq!(s.draft_keys_from("feed:a", 1_000).unwrap(), key);
    assert!(s.deployed_keys_from("import:b", 1_000).unwrap().is_empty());
    let remove = Stage::Remove {
        target: t(X),
        list: List::Deny,
        sources: Sources::Only("feed:a".into()),
    };
    stage(&mut s, remove, 2_000);
    assert!(s.draft_keys_from("feed:a", 2_000).unwrap().is_empty());
    assert_eq!(s.deployed_keys_from("feed:a", 2_000).unwrap(), key);
}

/// A partially expired entry: the sweep takes the expired listing out of
/// the deployed row and out of a pending row that only copied it, and the
/// pending row goes when nothing else is left to deploy.
#[test]
fn the_sweep_drops_a_copied_listing_and_a_pending_row_left_with_nothing() {
    let (_d, mut s) = open();
    stage(&mut s, upsert("manual", "typed", Some(Ttl::Secs(60))), 0);
    stage(&mut s, upsert("feed:a", "feed", Some(Ttl::Never)), 0);
    deploy_all(&mut s, 0);
    // Changes only the manual listing's reason: a copy of its expiry.
    stage(&mut s, upsert("manual", "changed", None), 1_000);
    sweep(&mut s, 60_000);
    assert_eq!(sources_of(stored(&s)), ["feed:a"]);
    assert_eq!(s.pending_count().unwrap(), 0);
    let draft = s.draft_entry(t(X), List::Deny, 60_000).unwrap();
    assert_eq!(sources_of(draft), ["feed:a"]);
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
    deploy_all(&mut s, 10_000);
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
