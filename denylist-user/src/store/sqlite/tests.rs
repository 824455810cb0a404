//! The shared store suite ([`crate::store::suite`]) on SQLite, and
//! SQLite's own tests: the schema upgrade, the file's safety, the bulk
//! stage.

use std::{fs, os::unix::fs::DirBuilderExt as _, path::PathBuf};

use rusqlite::Connection;

use super::{
    DB_FILE, KeptDraft, SqliteStore,
    fleet::install_snapshot,
    rows::{REFRESH, meta},
    schema::SCHEMA_VERSION,
    snapshot,
};
use crate::{
    model::{Entry, List, Listing, Sources, Ttl},
    store::{
        Audit, HitTotal, Only, Op, Stage, Store, StoreError,
        suite::{self, Test, add, deploy, t},
    },
};

fn tmp() -> PathBuf {
    std::env::temp_dir().join(format!(
        "denylist-store-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ))
}

/// Runs a test of the shared suite on SQLite stores, each in a new
/// directory, removed afterwards.
fn on_sqlite(test: Test) {
    let mut dirs = Vec::new();
    test(&mut || {
        let dir = tmp();
        let store = SqliteStore::open(&dir).unwrap();
        dirs.push(dir);
        Box::new(store)
    });
    for d in dirs {
        let _ = fs::remove_dir_all(d);
    }
}

#[test]
fn the_store_suite_passes_on_sqlite() {
    for (name, test) in suite::ALL {
        eprintln!("suite: {name}");
        on_sqlite(*test);
    }
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

/// A stage into an empty draft keeps the draft it leaves, and a deploy's
/// plan from it is the plan from the rows read back: for every kind of
/// op (sources, TTLs given again, as never too, monitor, restores, repeats
/// of a key, listings expired since their deploy), with `only` and
/// without, and ahead of a deploy.
#[test]
fn a_draft_kept_by_its_stage_plans_as_the_rows_read_back() {
    let listing = |target: &str, list, source: &str, ttl: Option<Ttl>, longer| Stage::Upsert {
        target: t(target),
        list,
        reason: Some(format!("from {source}")),
        ttl,
        monitor: None,
        source: Some(source.into()),
        keep_longer_ttl: longer,
    };
    let v4 = |i: u32| format!("10.1.{}.{}", i / 200, i % 200);
    // Deployed: one listing each, a second (a feed's, with a TTL) on every
    // other, and allow entries.
    let mut deployed: Vec<Stage> = (0..300)
        .map(|i| listing(&v4(i), List::Deny, "manual", None, false))
        .collect();
    deployed.extend(
        (0..300)
            .step_by(2)
            .map(|i| listing(&v4(i), List::Deny, "feed:x", Some(Ttl::Secs(600)), false)),
    );
    deployed.extend(
        (0..300)
            .step_by(7)
            .map(|i| listing(&v4(i), List::Allow, "manual", None, false)),
    );
    // An import's listing alone, which an import gives a TTL again; a
    // feed's alone, expired (1 s) by the time of the stage (2 s).
    let alone = |i: u32| format!("10.2.0.{i}");
    let expired = |i: u32| format!("10.3.0.{i}");
    deployed.extend((0..40).map(|i| {
        listing(
            &alone(i),
            List::Deny,
            "import:a",
            Some(Ttl::Secs(600)),
            false,
        )
    }));
    deployed.extend(
        (0..40).map(|i| listing(&expired(i), List::Deny, "feed:y", Some(Ttl::Secs(1)), false)),
    );
    let mut ops: Vec<Stage> = (0..40)
        .flat_map(|i| {
            let again = if i % 2 == 0 {
                Ttl::Never
            } else {
                Ttl::Secs(60)
            };
            [
                listing(&alone(i), List::Deny, "import:a", Some(again), true),
                listing(&expired(i), List::Deny, "manual", None, false),
            ]
        })
        .collect();
    for i in 0..600u32 {
        let j = (i * 11) % 600;
        ops.push(match j % 6 {
            0 => listing(&v4(j), List::Deny, "import:a", Some(Ttl::Secs(60)), true),
            1 => listing(&v4(j), List::Deny, "feed:x", Some(Ttl::Secs(900)), false),
            2 => Stage::Remove {
                target: t(&v4(j)),
                list: List::Deny,
                sources: Sources::Only("feed:x".into()),
            },
            3 => Stage::Upsert {
                target: t(&v4(j)),
                list: List::Deny,
                reason: None,
                ttl: None,
                monitor: Some(true),
                source: None,
                keep_longer_ttl: false,
            },
            4 => Stage::Remove {
                target: t(&v4(j)),
                list: if j % 7 == 0 { List::Allow } else { List::Deny },
                sources: Sources::All,
            },
            _ => listing(
                &format!("2001:db8:{j:x}::/48"),
                List::Deny,
                "manual",
                None,
                false,
            ),
        });
    }
    // A key staged, then changed, then removed; one restored.
    ops.push(listing("10.9.0.1", List::Deny, "manual", None, false));
    ops.push(listing(
        "10.9.0.1",
        List::Deny,
        "import:b",
        Some(Ttl::Secs(5)),
        true,
    ));
    ops.push(listing("10.9.0.2", List::Deny, "manual", None, false));
    ops.push(Stage::Remove {
        target: t("10.9.0.2"),
        list: List::Deny,
        sources: Sources::All,
    });
    let mut restored = Entry::new(
        t("10.9.0.3"),
        List::Deny,
        Listing {
            source: "import:c".into(),
            reason: None,
            ttl: Some(30),
            expires_at: None,
            monitor: true,
            added_by: "carol".into(),
            added_at: 3,
        },
    );
    restored.merge();
    ops.push(Stage::Restore(restored));
    // Some ops fail on keys that are not there: only those that stage.
    let ops: Vec<Stage> = {
        let dir = tmp();
        let mut probe = SqliteStore::open(&dir).unwrap();
        probe
            .stage(&deployed, "alice", 0, None, &Audit::Each)
            .unwrap();
        deploy(&mut probe, 0);
        let ok = ops
            .into_iter()
            .filter(|op| {
                probe
                    .stage(std::slice::from_ref(op), "bob", 2_000, None, &Audit::Each)
                    .is_ok()
            })
            .collect();
        let _ = fs::remove_dir_all(dir);
        ok
    };
    assert!(ops.len() >= super::walk::WALK_MIN);

    let dir = tmp();
    let mut s = SqliteStore::open(&dir).unwrap();
    s.stage(&deployed, "alice", 0, None, &Audit::Each).unwrap();
    deploy(&mut s, 0);
    let summary = Audit::Summary {
        kind: "import".into(),
        detail: serde_json::json!({}),
    };
    let staged = s.stage_keeping(&ops, "bob", 2_000, None, &summary).unwrap();
    let mut read = Vec::new();
    super::draft::for_each_marked(&s.conn, |p| {
        read.push(p);
        Ok(())
    })
    .unwrap();
    let kinds = |op: Op| read.iter().filter(|p| p.op == op).count();
    assert!(kinds(Op::Add) > 50 && kinds(Op::Change) > 50 && kinds(Op::Remove) > 10);
    // The TTLs given again are waiting for the deploy, as never too.
    let again = |ttl: Option<u64>| {
        read.iter().filter_map(|p| p.after.as_ref()).any(|e| {
            e.target == t(&alone(0)) && ttl.is_none() && e.ttl.is_none()
                || e.target == t(&alone(1)) && e.ttl == ttl && e.expires_at == Some(REFRESH)
        })
    };
    assert!(again(None) && again(Some(60)));
    let draft = staged.kept.expect("an empty draft's stage keeps it");
    assert_eq!(draft.0, read);
    let copy = || KeptDraft(draft.0.clone());

    let keys = vec![(t(&v4(0)), List::Deny), (t("10.9.0.3"), List::Deny)];
    for sources in [Sources::All, Sources::Admin, Sources::Only("feed:x".into())] {
        let only = Some(Only {
            keys: &keys,
            sources: &sources,
        });
        for only in [None, only] {
            let from_rows = super::deploy::plan(&mut s.conn, only, 2_500, false, None).unwrap();
            let from_kept =
                super::deploy::plan(&mut s.conn, only, 2_500, false, Some(copy())).unwrap();
            assert_eq!(from_kept, from_rows, "only {only:?}");
        }
        let from_rows = s.plan_pending(&sources, 2_500, None).unwrap();
        let from_kept = s.plan_pending(&sources, 2_500, Some(copy())).unwrap();
        assert_eq!(from_kept, from_rows);
    }
    // A stage on top of a draft keeps none: the rows it did not write are
    // not in its hands.
    let more = [listing("10.9.0.9", List::Deny, "manual", None, false)];
    assert!(
        s.stage_keeping(&more, "bob", 3_000, None, &summary)
            .unwrap()
            .kept
            .is_none()
    );
    let _ = fs::remove_dir_all(dir);
}

/// A far-behind node's store in place of the fleet's snapshot: the
/// entries it already had keep its ids, its hit counts and attachments
/// stay, and the fleet's new entries take ids it never gave.
#[test]
fn a_snapshot_installed_over_a_nodes_store_keeps_its_ids_and_rows() {
    let (node_dir, fleet_dir) = (tmp(), tmp());
    let audit = Audit::Each;
    let mut node = SqliteStore::open(&node_dir).unwrap();
    node.stage(
        &[add("192.0.2.1"), add("192.0.2.2")],
        "root",
        1,
        None,
        &audit,
    )
    .unwrap();
    deploy(&mut node, 2);
    let ids = |s: &SqliteStore| -> Vec<(String, u32)> {
        s.deployed()
            .unwrap()
            .into_iter()
            .map(|e| (e.entry.target.to_string(), e.id))
            .collect()
    };
    let before = ids(&node);
    let id_of = |ids: &[(String, u32)], t: &str| ids.iter().find(|e| e.0 == t).unwrap().1;
    let hit = HitTotal {
        packets: 7,
        bytes: 700,
        last_hit: Some(2),
    };
    node.add_hits(&[
        (id_of(&before, "192.0.2.2"), hit),
        (id_of(&before, "192.0.2.1"), hit),
    ])
    .unwrap();
    node.set_local_attachment("eth0", Some("native")).unwrap();
    drop(node);

    // The fleet's store gave its ids in another order, and went on.
    let mut fleet = SqliteStore::open(&fleet_dir).unwrap();
    for (i, ip) in ["192.0.2.9", "192.0.2.3", "192.0.2.2"].iter().enumerate() {
        fleet
            .stage(&[add(ip)], "root", 3 + i as i64, None, &audit)
            .unwrap();
        deploy(&mut fleet, 3 + i as i64);
    }
    fleet
        .stage(
            &[Stage::Remove {
                target: t("192.0.2.9"),
                list: List::Deny,
                sources: Sources::All,
            }],
            "root",
            9,
            None,
            &audit,
        )
        .unwrap();
    deploy(&mut fleet, 9);
    let (_, bytes) = snapshot(fleet.file(), Some(42)).unwrap();
    let fleet_ids = ids(&fleet);
    drop(fleet);

    install_snapshot(&node_dir, &bytes, true).unwrap();
    let node = SqliteStore::open(&node_dir).unwrap();
    let after = ids(&node);
    assert_eq!(node.log_seq().unwrap(), 42);
    assert_eq!(
        after.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
        ["192.0.2.2", "192.0.2.3"],
        "the fleet's entries"
    );
    assert_eq!(
        id_of(&after, "192.0.2.2"),
        id_of(&before, "192.0.2.2"),
        "kept"
    );
    let fresh = id_of(&after, "192.0.2.3");
    assert!(
        before.iter().chain(&fleet_ids).all(|e| e.1 < fresh),
        "past every id either store gave: {fresh} against {before:?} {fleet_ids:?}"
    );
    let hits = node.hit_totals().unwrap();
    assert_eq!(hits.len(), 1, "only a kept entry's hits: {hits:?}");
    assert_eq!(hits[&id_of(&before, "192.0.2.2")].packets, 7);
    assert_eq!(
        node.attachments().unwrap(),
        [("eth0".to_string(), "native".to_string())]
    );
    // The next deploy's new entry takes an id past those too.
    let mut node = node;
    node.stage(&[add("192.0.2.4")], "root", 20, None, &audit)
        .unwrap();
    deploy(&mut node, 20);
    assert!(id_of(&ids(&node), "192.0.2.4") > fresh);
    for d in [node_dir, fleet_dir] {
        let _ = fs::remove_dir_all(d);
    }
}
