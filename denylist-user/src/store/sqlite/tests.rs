//! The store's behaviour through the [`Store`] trait, on SQLite; the last
//! tests are SQLite's own: the schema upgrade and the file's safety.

use std::{fs, os::unix::fs::DirBuilderExt as _, path::PathBuf};

use rusqlite::Connection;

use super::{DB_FILE, SqliteStore, rows::meta, schema::SCHEMA_VERSION};
use crate::{
    model::{AuditFilter, List, Millis, Page, Revision, Sources, Target, Ttl},
    store::{Audit, DeployRecord, Op, Stage, Store, StoreError},
};

fn tmp() -> PathBuf {
    std::env::temp_dir().join(format!(
        "denylist-store-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ))
}

fn t(s: &str) -> Target {
    Target::parse(s).unwrap()
}

fn add(s: &str) -> Stage {
    Stage::Upsert {
        target: t(s),
        list: List::Deny,
        reason: Some("test".into()),
        ttl: None,
        monitor: None,
        source: None,
        keep_longer_ttl: false,
    }
}

fn deploy(store: &mut dyn Store, now: Millis) -> Revision {
    let plan = store.plan(None, now).unwrap();
    let record = DeployRecord {
        user: "root",
        message: None,
        now,
        kind: "deploy",
    };
    store
        .write_deploy(&plan, record)
        .unwrap()
        .commit()
        .unwrap()
        .0
}

/// The version-3 layout, as denylistd wrote it before entries were
/// keyed by sort key.
const SCHEMA_V3: &str = "
    CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE entries(
      target TEXT NOT NULL, list TEXT NOT NULL, id INTEGER NOT NULL,
      reason TEXT, ttl INTEGER, expires_at INTEGER, monitor INTEGER NOT NULL,
      source TEXT NOT NULL, added_by TEXT NOT NULL, added_at INTEGER NOT NULL,
      sort_key BLOB NOT NULL,
      PRIMARY KEY(target, list)) WITHOUT ROWID;
    CREATE INDEX entries_sorted ON entries(sort_key, list);
    CREATE INDEX entries_expiry ON entries(expires_at) WHERE expires_at IS NOT NULL;
    CREATE TABLE pending(
      target TEXT NOT NULL, list TEXT NOT NULL, op TEXT NOT NULL,
      reason TEXT, ttl INTEGER, expires_at INTEGER, monitor INTEGER NOT NULL,
      source TEXT NOT NULL, added_by TEXT NOT NULL, added_at INTEGER NOT NULL,
      staged_by TEXT NOT NULL, staged_at INTEGER NOT NULL,
      sort_key BLOB NOT NULL,
      PRIMARY KEY(target, list)) WITHOUT ROWID;
    CREATE INDEX pending_sorted ON pending(sort_key, list);
    CREATE TABLE revisions(
      rev INTEGER PRIMARY KEY, deployed_at INTEGER NOT NULL, deployed_by TEXT NOT NULL,
      message TEXT, added INTEGER NOT NULL, removed INTEGER NOT NULL, changed INTEGER NOT NULL);
    CREATE TABLE versions(
      target TEXT NOT NULL, list TEXT NOT NULL, id INTEGER NOT NULL,
      reason TEXT, ttl INTEGER, expires_at INTEGER, monitor INTEGER NOT NULL,
      source TEXT NOT NULL, added_by TEXT NOT NULL, added_at INTEGER NOT NULL,
      from_rev INTEGER NOT NULL, to_rev INTEGER);
    CREATE INDEX versions_open ON versions(target, list) WHERE to_rev IS NULL;
    CREATE INDEX versions_span ON versions(from_rev, to_rev);
    CREATE TABLE audit(
      seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, user TEXT NOT NULL,
      kind TEXT NOT NULL, target TEXT, detail TEXT);
    CREATE TABLE attachments(iface TEXT PRIMARY KEY, mode TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE hits(
      id INTEGER PRIMARY KEY, packets INTEGER NOT NULL, bytes INTEGER NOT NULL, last_hit INTEGER);
    INSERT INTO meta VALUES ('schema', 3), ('revision', 2), ('next_id', 3);
    INSERT INTO revisions VALUES (1, 0, 'alice', NULL, 2, 0, 0), (2, 1, 'alice', NULL, 0, 1, 0);
    INSERT INTO versions VALUES
      ('192.0.2.1', 'deny', 1, NULL, NULL, NULL, 0, 'manual', 'alice', 0, 1, NULL),
      ('192.0.2.2', 'deny', 2, NULL, NULL, NULL, 0, 'manual', 'alice', 0, 1, 2);
    INSERT INTO entries VALUES
      ('192.0.2.1', 'deny', 1, NULL, NULL, NULL, 0, 'manual', 'alice', 0, x'00c000020100000000000000000000000020');
    INSERT INTO pending VALUES
      ('10.0.0.0/8', 'allow', 'add', NULL, NULL, NULL, 0, 'manual', 'bob', 1, 'bob', 1,
       x'000a00000000000000000000000000000008');
";

#[test]
fn a_version_3_store_is_upgraded_in_place() {
    let dir = tmp();
    fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
    Connection::open(dir.join(DB_FILE))
        .unwrap()
        .execute_batch(SCHEMA_V3)
        .unwrap();
    let mut s = SqliteStore::open(&dir).unwrap();
    assert_eq!(meta(&s.conn, "schema").unwrap(), SCHEMA_VERSION);
    let deployed: Vec<String> = s
        .deployed()
        .unwrap()
        .iter()
        .map(|s| s.entry.target.to_string())
        .collect();
    assert_eq!(deployed, ["192.0.2.1"]);
    assert_eq!(
        s.pending().unwrap()[0].key(),
        (t("10.0.0.0/8"), List::Allow)
    );
    // Removing the migrated entry closes the version it had before.
    s.stage(
        &[Stage::Remove {
            target: t("192.0.2.1"),
            list: List::Deny,
            sources: Sources::Admin,
        }],
        "bob",
        2,
        None,
        &Audit::Each,
    )
    .unwrap();
    assert_eq!(deploy(&mut s, 2).revision, 3);
    let (_, expired) = s.rollback(1, false, "carol", 3).unwrap();
    assert!(expired.is_empty());
    let draft: Vec<String> = s
        .draft(3)
        .unwrap()
        .iter()
        .map(|e| e.target.to_string())
        .collect();
    assert_eq!(draft, ["192.0.2.1", "192.0.2.2"]);
    let since: Vec<(String, i64)> = s
        .conn
        .prepare("SELECT target, from_rev FROM entries")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        since,
        [("10.0.0.0/8".to_string(), 3)],
        "deployed at revision 3"
    );
    let ended: i64 = s
        .conn
        .query_row(
            "SELECT count(*) FROM versions WHERE to_rev IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(ended, 0, "versions keeps only ended versions");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn draft_keys_from_a_source_follow_the_draft() {
    let dir = tmp();
    let mut s = SqliteStore::open(&dir).unwrap();
    let from = |target: &str, source: &str, ttl: Option<u64>| Stage::Upsert {
        target: t(target),
        list: List::Deny,
        reason: None,
        ttl: Some(ttl.map_or(Ttl::Never, Ttl::Secs)),
        monitor: None,
        source: Some(source.into()),
        keep_longer_ttl: false,
    };
    let ops = [
        from("192.0.2.1", "import:a", None),
        from("192.0.2.2", "import:a", None),
        from("192.0.2.3", "import:a", Some(1)),
        from("192.0.2.4", "import:b", None),
    ];
    s.stage(&ops, "alice", 0, None, &Audit::Each).unwrap();
    deploy(&mut s, 0);
    let remove = Stage::Remove {
        target: t("192.0.2.1"),
        list: List::Deny,
        sources: Sources::Admin,
    };
    let ops = [remove, from("192.0.2.5", "import:a", None)];
    s.stage(&ops, "alice", 1, None, &Audit::Each).unwrap();
    let mut keys = s.draft_keys_from("import:a", 5_000).unwrap();
    keys.sort();
    let want: Vec<(Target, List)> = ["192.0.2.2", "192.0.2.5"]
        .iter()
        .map(|a| (t(a), List::Deny))
        .collect();
    assert_eq!(keys, want, "removed, expired and other sources left out");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn staging_deploying_and_the_draft() {
    let dir = tmp();
    let mut s = SqliteStore::open(&dir).unwrap();
    assert_eq!(s.revision().unwrap(), 0);
    s.stage(
        &[add("198.51.100.7"), add("203.0.113.0/24")],
        "alice",
        1_000,
        None,
        &Audit::Each,
    )
    .unwrap();
    assert_eq!(s.pending_count().unwrap(), 2);
    assert!(s.deployed().unwrap().is_empty());
    let rev = deploy(&mut s, 2_000);
    assert_eq!(
        (rev.revision, rev.added, rev.removed, rev.changed),
        (1, 2, 0, 0)
    );
    assert_eq!(s.pending_count().unwrap(), 0);
    let ids: Vec<u32> = s.deployed().unwrap().iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 2);

    // A re-add with the same fields is no change; a new reason is.
    s.stage(&[add("198.51.100.7")], "bob", 3_000, None, &Audit::Each)
        .unwrap();
    assert_eq!(s.pending_count().unwrap(), 0);
    let change = Stage::Upsert {
        target: t("198.51.100.7"),
        list: List::Deny,
        reason: Some("other".into()),
        ttl: Some(Ttl::Secs(60)),
        monitor: Some(true),
        source: None,
        keep_longer_ttl: false,
    };
    s.stage(&[change], "bob", 3_000, None, &Audit::Each)
        .unwrap();
    let p = s.pending().unwrap();
    assert_eq!(p[0].op, Op::Change);
    assert_eq!(
        p[0].after.as_ref().unwrap().added_by,
        "alice",
        "a change keeps who added it"
    );
    assert_eq!(p[0].staged_by, "bob");

    // Removing something absent rejects the whole call.
    let err = s
        .stage(
            &[
                Stage::Remove {
                    target: t("203.0.113.0/24"),
                    list: List::Deny,
                    sources: Sources::Admin,
                },
                Stage::Remove {
                    target: t("192.0.2.1"),
                    list: List::Deny,
                    sources: Sources::Admin,
                },
            ],
            "bob",
            4_000,
            None,
            &Audit::Each,
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    assert_eq!(s.pending_count().unwrap(), 1);

    let rev = deploy(&mut s, 10_000);
    assert_eq!((rev.revision, rev.changed), (2, 1));
    let e = s
        .deployed()
        .unwrap()
        .into_iter()
        .find(|e| e.entry.target == t("198.51.100.7"))
        .unwrap();
    assert_eq!(
        e.entry.expires_at,
        Some(70_000),
        "the TTL counts from the deploy"
    );
    assert!(e.entry.monitor);
    assert!(ids.contains(&e.id), "a change keeps the id");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn rollback_restores_a_revision_and_leaves_out_expired_entries() {
    let dir = tmp();
    let mut s = SqliteStore::open(&dir).unwrap();
    let short = Stage::Upsert {
        target: t("198.51.100.9"),
        list: List::Deny,
        reason: None,
        ttl: Some(Ttl::Secs(1)),
        monitor: None,
        source: None,
        keep_longer_ttl: false,
    };
    s.stage(
        &[add("198.51.100.7"), short],
        "alice",
        0,
        None,
        &Audit::Each,
    )
    .unwrap();
    deploy(&mut s, 0);
    s.stage(
        &[
            Stage::Remove {
                target: t("198.51.100.7"),
                list: List::Deny,
                sources: Sources::Admin,
            },
            add("192.0.2.5"),
        ],
        "bob",
        1,
        None,
        &Audit::Each,
    )
    .unwrap();
    deploy(&mut s, 1);
    s.stage(&[add("192.0.2.6")], "bob", 2, None, &Audit::Each)
        .unwrap();
    assert!(matches!(
        s.rollback(1, false, "carol", 5_000),
        Err(StoreError::Conflict { count: 1 })
    ));
    assert!(matches!(
        s.rollback(9, true, "carol", 5_000),
        Err(StoreError::NoRevision { rev: 9 })
    ));
    let (_, expired) = s.rollback(1, true, "carol", 5_000).unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].target, t("198.51.100.9"));
    let draft: Vec<String> = s
        .draft(5_000)
        .unwrap()
        .iter()
        .map(|e| e.target.to_string())
        .collect();
    assert_eq!(draft, ["198.51.100.7"]);
    let restored = s.draft(5_000).unwrap().remove(0);
    assert_eq!(
        (restored.added_by.as_str(), restored.added_at),
        ("alice", 0)
    );
    let _ = fs::remove_dir_all(dir);
}

fn remove(s: &str) -> Stage {
    Stage::Remove {
        target: t(s),
        list: List::Deny,
        sources: Sources::Admin,
    }
}

fn revs(s: &dyn Store, page: Page) -> Vec<u64> {
    s.history(page)
        .unwrap()
        .iter()
        .map(|r| r.revision)
        .collect()
}

#[test]
fn history_and_audit_page_back_and_pruning_keeps_what_a_rollback_needs() {
    const DAY: Millis = 86_400_000;
    let dir = tmp();
    let mut s = SqliteStore::open(&dir).unwrap();
    let steps: [(&[Stage], Millis); 4] = [
        (&[add("198.51.100.7")], 0),
        (&[remove("198.51.100.7"), add("192.0.2.5")], 10 * DAY),
        (&[add("192.0.2.6")], 20 * DAY),
        (&[remove("192.0.2.5")], 30 * DAY),
    ];
    for (ops, at) in steps {
        s.stage(ops, "alice", at, None, &Audit::Each).unwrap();
        deploy(&mut s, at);
    }
    let page = |since, before, limit| Page {
        since,
        before,
        limit,
    };
    assert_eq!(revs(&s, Page::default()), [1, 2, 3, 4]);
    assert_eq!(revs(&s, page(0, None, Some(2))), [3, 4]);
    assert_eq!(revs(&s, page(0, Some(3), Some(5))), [1, 2]);
    assert_eq!(revs(&s, page(1, Some(4), None)), [2, 3]);
    assert!(revs(&s, page(0, None, Some(0))).is_empty());
    let all = s.audit(Page::default(), &AuditFilter::default()).unwrap();
    let last = all.last().unwrap().seq;
    let newest = s
        .audit(page(0, None, Some(1)), &AuditFilter::default())
        .unwrap();
    assert_eq!(newest, all[all.len() - 1..]);
    let before = s
        .audit(page(0, Some(last), Some(2)), &AuditFilter::default())
        .unwrap();
    assert_eq!(before, all[all.len() - 3..all.len() - 1]);

    // Revisions 1 and 2 are older than the cutoff. The version of
    // 192.0.2.5 from revision 2 stays: revision 3 still has it.
    let (seq, pruned) = s.prune(15 * DAY, "denylistd", 40 * DAY).unwrap().unwrap();
    assert_eq!((pruned.revisions, pruned.versions), (2, 1));
    let left = s.audit(Page::default(), &AuditFilter::default()).unwrap();
    assert!(left.iter().all(|e| e.at >= 15 * DAY || e.kind == "prune"));
    assert_eq!(pruned.audit_events as usize, all.len() + 1 - left.len());
    let event = left.last().unwrap();
    assert_eq!((event.seq, event.kind.as_str()), (seq, "prune"));
    assert_eq!(event.detail.as_ref().unwrap()["oldest_revision"], 3);
    assert_eq!(revs(&s, Page::default()), [3, 4]);
    assert!(matches!(
        s.rollback(2, true, "bob", 40 * DAY),
        Err(StoreError::NoRevision { rev: 2 })
    ));
    s.rollback(3, true, "bob", 40 * DAY).unwrap();
    let mut draft: Vec<String> = s
        .draft(40 * DAY)
        .unwrap()
        .iter()
        .map(|e| e.target.to_string())
        .collect();
    draft.sort();
    assert_eq!(draft, ["192.0.2.5", "192.0.2.6"]);
    assert!(s.prune(15 * DAY, "denylistd", 40 * DAY).unwrap().is_none());

    // However old, the deployed revision stays, and so does a rollback to it.
    s.discard("bob", 40 * DAY).unwrap();
    s.prune(100 * DAY, "denylistd", 100 * DAY).unwrap().unwrap();
    assert_eq!(revs(&s, Page::default()), [4]);
    s.rollback(4, false, "bob", 100 * DAY).unwrap();
    assert_eq!(s.pending_count().unwrap(), 0);
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn listings_stream_in_address_order_and_merge_the_draft() {
    let dir = tmp();
    let mut s = SqliteStore::open(&dir).unwrap();
    let allow = |x: &str| Stage::Upsert {
        target: t(x),
        list: List::Allow,
        reason: None,
        ttl: None,
        monitor: None,
        source: None,
        keep_longer_ttl: false,
    };
    s.stage(
        &[
            add("2001:db8::1"),
            add("198.51.100.9"),
            add("10.0.0.0/24"),
            add("198.51.100.10"),
            allow("198.51.100.9"),
        ],
        "alice",
        0,
        None,
        &Audit::Each,
    )
    .unwrap();
    deploy(&mut s, 0);
    let remove = Stage::Remove {
        target: t("198.51.100.10"),
        list: List::Deny,
        sources: Sources::Admin,
    };
    s.stage(&[remove, add("198.51.100.2")], "bob", 1, None, &Audit::Each)
        .unwrap();
    let collect = |draft: bool| {
        let mut out = Vec::new();
        s.snapshots()
            .open()
            .unwrap()
            .for_each_entry(draft, 5, &mut |e| {
                out.push(format!("{} {}", e.target, e.list.as_str()));
                true
            })
            .unwrap();
        out
    };
    assert_eq!(
        collect(false),
        [
            "10.0.0.0/24 deny",
            "198.51.100.9 deny",
            "198.51.100.9 allow",
            "198.51.100.10 deny",
            "2001:db8::1 deny"
        ]
    );
    assert_eq!(
        collect(true),
        [
            "10.0.0.0/24 deny",
            "198.51.100.2 deny",
            "198.51.100.9 deny",
            "198.51.100.9 allow",
            "2001:db8::1 deny"
        ]
    );
    let mut first = Vec::new();
    s.snapshots()
        .open()
        .unwrap()
        .for_each_entry(true, 5, &mut |e| {
            first.push(e.target);
            first.len() < 2
        })
        .unwrap();
    assert_eq!(first.len(), 2, "stops when asked");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn given_ttls_restart_at_the_deploy_and_imports_never_shorten() {
    let dir = tmp();
    let mut s = SqliteStore::open(&dir).unwrap();
    let with_ttl = |ttl: u64, import: bool| Stage::Upsert {
        target: t("198.51.100.7"),
        list: List::Deny,
        reason: None,
        ttl: Some(Ttl::Secs(ttl)),
        monitor: None,
        source: None,
        keep_longer_ttl: import,
    };
    let expires = |s: &SqliteStore| s.deployed().unwrap()[0].entry.expires_at;
    s.stage(&[with_ttl(100, false)], "a", 0, None, &Audit::Each)
        .unwrap();
    deploy(&mut s, 0);
    assert_eq!(expires(&s), Some(100_000));
    // A feed re-lists it with the same TTL a minute later: extended.
    s.stage(&[with_ttl(100, true)], "feed", 60_000, None, &Audit::Each)
        .unwrap();
    assert_eq!(s.pending_count().unwrap(), 1, "a refresh is a change");
    deploy(&mut s, 60_000);
    assert_eq!(expires(&s), Some(160_000));
    // A feed with a shorter TTL never shortens it.
    s.stage(&[with_ttl(10, true)], "feed", 70_000, None, &Audit::Each)
        .unwrap();
    deploy(&mut s, 70_000);
    assert_eq!(expires(&s), Some(160_000));
    // An admin's --ttl says exactly when.
    s.stage(&[with_ttl(10, false)], "a", 80_000, None, &Audit::Each)
        .unwrap();
    deploy(&mut s, 80_000);
    assert_eq!(expires(&s), Some(90_000));
    // A re-add without a TTL changes only what it gives, and keeps
    // the expiry.
    s.stage(&[add("198.51.100.7")], "a", 85_000, None, &Audit::Each)
        .unwrap();
    deploy(&mut s, 85_000);
    assert_eq!(expires(&s), Some(90_000));
    assert_eq!(
        s.deployed().unwrap()[0].entry.reason.as_deref(),
        Some("test")
    );
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn a_damaged_store_is_refused_and_left_untouched() {
    let dir = tmp();
    {
        let mut s = SqliteStore::open(&dir).unwrap();
        s.stage(&[add("198.51.100.7")], "alice", 0, None, &Audit::Each)
            .unwrap();
    }
    let db = dir.join(DB_FILE);
    let len = fs::metadata(&db).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(&db).unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);
    let before = fs::read(&db).unwrap();
    let err = SqliteStore::open(&dir)
        .err()
        .expect("a truncated store must be refused");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert_eq!(fs::read(&db).unwrap(), before, "not a byte changed");
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn files_are_private_and_symlinks_are_not_followed() {
    let dir = tmp();
    let s = SqliteStore::open(&dir).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    let mode = fs::metadata(s.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o600);
    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let target = dir.join("elsewhere");
    std::os::unix::fs::symlink(&target, dir.join("backup.db")).unwrap();
    assert!(s.backup(&dir.join("backup.db")).is_err());
    assert!(!target.exists());
    drop(s);
    for file in ["denylist.db-wal", "denylist.db-shm", "denylist.db-journal"] {
        let link = dir.join(file);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        match SqliteStore::open(&dir) {
            Err(StoreError::Symlink { path }) => assert_eq!(path, link),
            other => panic!("{file}: {:?}", other.err()),
        }
        assert!(!target.exists(), "{file}");
        fs::remove_file(&link).unwrap();
    }
    let _ = fs::remove_dir_all(dir);
}

/// A stage of many ops reads the deployed entries in one scan, where a
/// few ops look each up: both must leave the same draft.
#[test]
fn bulk_stage_matches_one_at_a_time() {
    let upsert = |target: String, list: List, reason: &str| Stage::Upsert {
        target: t(&target),
        list,
        reason: Some(reason.into()),
        ttl: None,
        monitor: None,
        source: None,
        keep_longer_ttl: false,
    };
    let v4 = |i: u32| format!("10.0.{}.{}", i / 200, i % 200);
    let v6 = |i: u32| format!("2001:db8::{i:x}");
    // Deployed: addresses of both families on the deny list, every third
    // also on the allow list.
    let mut deployed: Vec<Stage> = (100..400)
        .flat_map(|i| {
            [
                upsert(v4(i), List::Deny, "a"),
                upsert(v6(i), List::Deny, "a"),
            ]
        })
        .collect();
    deployed.extend(
        (100..400)
            .step_by(3)
            .map(|i| upsert(v4(i), List::Allow, "a")),
    );
    // Staged on top, shuffled by a stride: unchanged, changed and removed
    // deployed entries; new ones before, inside and after the deployed
    // keys; a key staged twice (added, then removed again).
    let mut ops = Vec::new();
    for i in 0..500 {
        let j = (i * 7) % 500;
        ops.push(match j % 5 {
            _ if !(100..400).contains(&j) => upsert(v4(j), List::Deny, "new"),
            0 => upsert(v4(j), List::Deny, "a"),
            1 => upsert(v6(j), List::Deny, "changed"),
            2 => Stage::Remove {
                target: t(&v4(j)),
                list: List::Deny,
                sources: Sources::All,
            },
            3 => upsert(v4(j), List::Allow, "b"),
            _ => upsert(v6(j + 1000), List::Deny, "new"),
        });
    }
    ops.push(upsert(v4(450), List::Allow, "twice"));
    ops.push(Stage::Remove {
        target: t(&v4(450)),
        list: List::Allow,
        sources: Sources::All,
    });
    assert!(ops.len() >= super::walk::WALK_MIN);

    let (bulk_dir, each_dir) = (tmp(), tmp());
    let mut bulk = SqliteStore::open(&bulk_dir).unwrap();
    let mut each = SqliteStore::open(&each_dir).unwrap();
    for s in [&mut bulk, &mut each] {
        s.stage(&deployed, "alice", 0, None, &Audit::Each).unwrap();
        deploy(s, 0);
    }
    let left = bulk.stage(&ops, "bob", 1, None, &Audit::Each).unwrap().1;
    let left_each: Vec<Option<Op>> = ops
        .iter()
        .map(|op| {
            each.stage(std::slice::from_ref(op), "bob", 1, None, &Audit::Each)
                .unwrap()
                .1[0]
        })
        .collect();
    assert_eq!(left, left_each);
    let pending = bulk.pending().unwrap();
    assert_eq!(pending, each.pending().unwrap());
    let count = |op: Op| pending.iter().filter(|p| p.op == op).count();
    assert!(count(Op::Add) > 100 && count(Op::Change) > 10 && count(Op::Remove) > 10);
    for d in [bulk_dir, each_dir] {
        let _ = fs::remove_dir_all(d);
    }
}
