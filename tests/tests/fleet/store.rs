//! Nodes sharing one log: each builds the same store from it, writers
//! are serialized by the database, and a node catches up on whatever it
//! missed.

use std::{
    net::Ipv4Addr,
    os::unix::fs::PermissionsExt as _,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use denylist::{
    daemon::FleetConfig,
    model::{AuditFilter, Entry, List, NodeReport, Page, Sources, Target},
    store::{
        Announced, Audit, DeployRecord, Duty, FleetStore, Followed, Only, SqliteStore, Stage,
        Store, StoreError,
    },
};
use denylist_tests::{daemon::TempDir, postgres::Postgres};
use postgres::error::SqlState;

/// A node: its own state directory, following the fleet in `pg`.
struct Node {
    store: FleetStore,
    _dir: TempDir,
}

fn node(pg: &Postgres, name: &str) -> Node {
    let dir = TempDir::new("fleet");
    let store = FleetStore::open(dir.path(), admin_connect(pg), "the test's", name).unwrap();
    Node { store, _dir: dir }
}

/// A database set up as docs/fleet.md says, with a login role per node.
pub(crate) fn fleet_with(nodes: &[&str]) -> Postgres {
    Postgres::fleet(nodes)
}

fn owner(pg: &Postgres) -> postgres::Client {
    pg.owner()
}

/// Connections as the superuser, over the socket.
fn admin_connect(pg: &Postgres) -> denylist::store::Connect {
    let params = pg.admin_params("denylist");
    Box::new(move || postgres::Client::connect(&params, postgres::NoTls))
}

fn fleet() -> Postgres {
    fleet_with(&[])
}

/// A node that logs in as its own role, with its password, over TCP.
fn node_as(pg: &Postgres, name: &str) -> Node {
    let dir = TempDir::new("fleet");
    let params = pg.params(name, &format!("pw-{name}"), "denylist");
    let connect = Box::new(move || postgres::Client::connect(&params, postgres::NoTls));
    let store = FleetStore::open(dir.path(), connect, "the test's", name).unwrap();
    Node { store, _dir: dir }
}

/// Follows the log to its head as the daemon's follower does, a round per
/// deploy: each handed to the kernel, then written.
fn follow(store: &mut FleetStore) -> Vec<Followed> {
    let mut all = Vec::new();
    loop {
        all.extend(store.follow_round().unwrap());
        if !store.follow_done().unwrap() {
            return all;
        }
    }
}

/// A file only its owner may read, as password files must be.
fn write_private(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn t(s: &str) -> Target {
    Target::parse(s).unwrap()
}

fn add(s: &str) -> Stage {
    Stage::Upsert {
        target: t(s),
        list: List::Deny,
        reason: Some("fleet test".into()),
        ttl: None,
        monitor: None,
        source: None,
        keep_longer_ttl: false,
    }
}

fn stage(s: &mut dyn Store, ops: &[Stage], now: i64) -> u64 {
    s.stage(ops, "root", now, None, &Audit::Each).unwrap().0
}

/// Plans, writes and commits a deploy, as the daemon does around its
/// kernel update.
fn deploy(s: &mut dyn Store, now: i64) -> u64 {
    let plan = s.plan(None, now).unwrap();
    let written = s.write_deploy(&plan, record(now)).unwrap();
    written.commit().unwrap().0.revision
}

fn record(now: i64) -> DeployRecord<'static> {
    DeployRecord {
        user: "root",
        message: Some("fleet test"),
        now,
        kind: "deploy",
    }
}

/// What every node must agree on: the deployed entries (ids aside, which
/// are each node's own), the revision, the draft and its seq, the audit log.
#[derive(Debug, PartialEq)]
struct State {
    deployed: Vec<Entry>,
    revision: u64,
    draft: Vec<Entry>,
    draft_seq: u64,
    audit: Vec<(u64, String)>,
}

fn state(s: &dyn Store) -> State {
    let audit = s
        .audit(
            Page {
                since: 0,
                before: None,
                limit: Some(10_000),
            },
            &AuditFilter::default(),
        )
        .unwrap()
        .into_iter()
        .map(|e| (e.seq, e.kind))
        .collect();
    State {
        deployed: s.deployed().unwrap().into_iter().map(|d| d.entry).collect(),
        revision: s.revision().unwrap(),
        draft: s.draft(5_000).unwrap(),
        draft_seq: s.draft_seq().unwrap(),
        audit,
    }
}

#[test]
fn every_node_builds_the_same_store_from_the_log() {
    let pg = fleet();
    let mut a = node(&pg, "a");
    let mut b = node(&pg, "b");
    stage(
        &mut a.store,
        &[add("192.0.2.1"), add("198.51.100.0/24")],
        1_000,
    );
    assert_eq!(deploy(&mut a.store, 1_100), 1);
    // a's deploy goes to b's kernel first, and into b's store after.
    assert_eq!(
        b.store.follow_round().unwrap().len(),
        1,
        "a's deploy, for b's kernel"
    );
    assert_eq!(b.store.revision().unwrap(), 0, "not written yet");
    assert!(b.store.follow_done().unwrap(), "written now");
    assert!(b.store.follow_round().unwrap().is_empty());
    assert!(!b.store.follow_done().unwrap());
    assert_eq!(b.store.applied().unwrap(), 2, "a stage and a deploy");
    assert_eq!(state(&a.store), state(&b.store));
    assert_eq!(b.store.revision().unwrap(), 1);

    // The other way round, and a node that joins late.
    let remove = Stage::Remove {
        target: t("192.0.2.1"),
        list: List::Deny,
        sources: Sources::All,
    };
    stage(&mut b.store, &[remove], 2_000);
    assert_eq!(deploy(&mut b.store, 2_100), 2);
    follow(&mut a.store);
    let c = node(&pg, "c");
    assert_eq!(state(&a.store), state(&b.store));
    assert_eq!(state(&c.store), state(&b.store));
    let left: Vec<Target> = c
        .store
        .deployed()
        .unwrap()
        .into_iter()
        .map(|s| s.entry.target)
        .collect();
    assert_eq!(left, [t("198.51.100.0/24")]);
    assert_eq!(c.store.applied().unwrap(), 4);
}

#[test]
fn a_change_catches_up_before_it_writes() {
    let pg = fleet();
    let mut a = node(&pg, "a");
    let mut b = node(&pg, "b");
    stage(&mut a.store, &[add("192.0.2.1")], 1_000);
    // b has not followed: its stage still lands after a's, on a's draft.
    stage(&mut b.store, &[add("192.0.2.2")], 1_001);
    assert_eq!(b.store.pending_count().unwrap(), 2);
    follow(&mut a.store);
    assert_eq!(state(&a.store), state(&b.store));
}

#[test]
fn a_failed_change_leaves_no_log_entry() {
    let pg = fleet();
    let mut a = node(&pg, "a");
    let mut b = node(&pg, "b");
    let missing = Stage::Remove {
        target: t("203.0.113.9"),
        list: List::Deny,
        sources: Sources::All,
    };
    let err = a.store.stage(&[missing], "root", 1_000, None, &Audit::Each);
    assert!(matches!(err, Err(StoreError::NotFound { .. })), "{err:?}");
    assert_eq!(a.store.applied().unwrap(), 0);
    follow(&mut b.store);
    assert_eq!(b.store.applied().unwrap(), 0);
    // The lock was released: the next change goes through.
    stage(&mut b.store, &[add("192.0.2.1")], 1_001);
    follow(&mut a.store);
    assert_eq!(a.store.applied().unwrap(), 1);
}

#[test]
fn deploys_from_two_nodes_are_serialized() {
    let pg = fleet();
    let mut a = node(&pg, "a");
    let b = node(&pg, "b");
    stage(&mut a.store, &[add("192.0.2.1")], 1_000);
    // a holds the writer lock from its plan until its commit, as it does
    // while its kernel takes the plan.
    let plan = a.store.plan(None, 1_100).unwrap();
    let (tx, rx) = mpsc::channel();
    let other = thread::spawn(move || {
        let mut b = b;
        stage(&mut b.store, &[add("192.0.2.2")], 1_200);
        let rev = deploy(&mut b.store, 1_300);
        tx.send(()).unwrap();
        (b, rev)
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "b wrote while a held the writer lock"
    );
    let rev = a
        .store
        .write_deploy(&plan, record(1_100))
        .unwrap()
        .commit()
        .unwrap()
        .0
        .revision;
    assert_eq!(rev, 1);
    let (b, b_rev) = other.join().unwrap();
    assert_eq!(
        b_rev, 2,
        "b's deploy comes after a's, with its own revision"
    );
    follow(&mut a.store);
    assert_eq!(state(&a.store), state(&b.store));
    let deployed: Vec<Target> = a
        .store
        .deployed()
        .unwrap()
        .into_iter()
        .map(|s| s.entry.target)
        .collect();
    assert_eq!(
        deployed,
        [t("192.0.2.1"), t("192.0.2.2")],
        "no change is lost"
    );
}

#[test]
fn an_abandoned_plan_releases_the_lock_and_logs_nothing() {
    let pg = fleet();
    let mut a = node(&pg, "a");
    let mut b = node(&pg, "b");
    stage(&mut a.store, &[add("192.0.2.1")], 1_000);
    // The kernel refused the plan: the daemon never writes it.
    a.store.plan(None, 1_100).unwrap();
    a.store.deploy_done();
    stage(&mut b.store, &[add("192.0.2.2")], 1_200);
    follow(&mut a.store);
    assert_eq!(a.store.applied().unwrap(), 2);
    assert_eq!(a.store.revision().unwrap(), 0);
    assert_eq!(state(&a.store), state(&b.store));
}

#[test]
fn a_schema_newer_than_this_denylistd_is_refused() {
    let pg = fleet();
    let mut a = node(&pg, "a");
    owner(&pg)
        .batch_execute("UPDATE denylist_meta SET value = value + 1 WHERE key = 'schema'")
        .unwrap();
    let err = a
        .store
        .stage(&[add("192.0.2.1")], "root", 1_000, None, &Audit::Each);
    assert!(
        matches!(err, Err(StoreError::FleetSchema { .. })),
        "{err:?}"
    );
}

#[test]
fn a_deploy_the_kernel_refused_releases_the_lock_and_logs_nothing() {
    let pg = fleet();
    let mut a = node(&pg, "a");
    let mut b = node(&pg, "b");
    stage(&mut a.store, &[add("192.0.2.1")], 1_000);
    let plan = a.store.plan(None, 1_100).unwrap();
    // Written, then dropped uncommitted, as the daemon does when the
    // kernel fails.
    drop(a.store.write_deploy(&plan, record(1_100)).unwrap());
    a.store.deploy_done();
    stage(&mut b.store, &[add("192.0.2.2")], 1_200);
    follow(&mut a.store);
    assert_eq!(a.store.revision().unwrap(), 0);
    assert_eq!(b.store.revision().unwrap(), 0);
    assert_eq!(state(&a.store), state(&b.store));
}

#[test]
fn without_the_database_reads_go_on_and_changes_fail_until_it_returns() {
    let pg = fleet();
    let mut a = node(&pg, "a");
    let mut b = node(&pg, "b");
    stage(&mut a.store, &[add("192.0.2.1")], 1_000);
    deploy(&mut a.store, 1_100);
    follow(&mut b.store);
    pg.stop();
    assert_eq!(
        b.store.revision().unwrap(),
        1,
        "reads come from the local copy"
    );
    let err = b
        .store
        .stage(&[add("192.0.2.2")], "root", 1_200, None, &Audit::Each);
    assert!(
        matches!(err, Err(StoreError::FleetUnavailable { .. })),
        "{err:?}"
    );
    assert!(b.store.follow().is_err());
    // A node that starts meanwhile starts from its copy.
    drop(b);
    pg.resume();
    stage(&mut a.store, &[add("192.0.2.2")], 1_300);
    deploy(&mut a.store, 1_400);
    let mut c = node(&pg, "c");
    follow(&mut c.store);
    assert_eq!(state(&a.store), state(&c.store));
    assert_eq!(c.store.revision().unwrap(), 2);
}

#[test]
fn a_node_appends_to_the_log_but_never_rewrites_it_nor_another_node_s_row() {
    let pg = fleet_with(&["edge_a", "edge_b"]);
    let mut a = node_as(&pg, "edge_a");
    let mut b = node_as(&pg, "edge_b");
    stage(&mut a.store, &[add("192.0.2.1")], 1_000);
    deploy(&mut a.store, 1_100);
    follow(&mut b.store);
    assert_eq!(
        b.store.revision().unwrap(),
        1,
        "the node roles may do their work"
    );
    let report = NodeReport::default();
    a.store.heartbeat(&report).unwrap();
    b.store.heartbeat(&report).unwrap();

    let params = pg.params("edge_a", "pw-edge_a", "denylist");
    let mut raw = postgres::Client::connect(&params, postgres::NoTls).unwrap();
    for sql in [
        "UPDATE log SET kind = 'forged'",
        "DELETE FROM log",
        "UPDATE denylist_meta SET value = 0",
        "INSERT INTO nodes(node, role, applied_seq, applied_revision, heartbeat_at, drift, capacity)
         VALUES ('edge_c', 'edge_b', 0, 0, now(), 0, 0)",
    ] {
        let err = raw.batch_execute(sql).expect_err(sql);
        // Both a missing grant and a row-level security violation.
        assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{sql}: {err}");
    }
    // Row-level security hides edge_b's row from edge_a's writes, and a
    // live node's row from deletion.
    for sql in [
        "UPDATE nodes SET error = 'forged' WHERE node = 'edge_b'",
        "DELETE FROM nodes",
    ] {
        assert_eq!(raw.execute(sql, &[]).unwrap(), 0, "{sql}");
    }
    let nodes = a.store.nodes().unwrap().expect("a fleet");
    assert_eq!(nodes.len(), 2);
    assert!(nodes.iter().all(|n| n.error.is_none()), "{nodes:?}");
    let log: i64 = raw
        .query_one("SELECT count(*) FROM log", &[])
        .unwrap()
        .get(0);
    assert_eq!(log, 2, "the log is whole");
}

#[test]
fn a_node_name_is_one_daemon_s_at_a_time() {
    let pg = fleet();
    let a = node(&pg, "a");
    let dir = TempDir::new("fleet");
    let err = FleetStore::open(dir.path(), admin_connect(&pg), "the test's", "a").err();
    assert!(
        matches!(err, Some(StoreError::NodeNameTaken { .. })),
        "{err:?}"
    );
    // Once the first is gone, its name is free.
    drop(a);
    node(&pg, "a");
}

#[test]
fn a_node_is_forgotten_only_once_it_has_been_offline_for_five_minutes() {
    let pg = fleet_with(&["a", "b"]);
    let mut a = node_as(&pg, "a");
    let mut b = node_as(&pg, "b");
    b.store.heartbeat(&NodeReport::default()).unwrap();
    let err = a.store.forget_node("b");
    assert!(matches!(err, Err(StoreError::NodeLive { .. })), "{err:?}");
    let err = a.store.forget_node("nobody");
    assert!(matches!(err, Err(StoreError::NoNode { .. })), "{err:?}");
    owner(&pg)
        .batch_execute(
            "UPDATE nodes SET heartbeat_at = now() - interval '6 minutes' WHERE node = 'b'",
        )
        .unwrap();
    let listed = a.store.nodes().unwrap().unwrap();
    assert_eq!(listed[0].state, denylist::model::NodeState::Offline);
    a.store.forget_node("b").unwrap();
    assert!(a.store.nodes().unwrap().unwrap().is_empty());
}

#[test]
fn a_single_host_s_history_is_not_replayed_over() {
    let pg = fleet();
    let dir = TempDir::new("fleet");
    let mut local = SqliteStore::open(dir.path()).unwrap();
    stage(&mut local, &[add("192.0.2.1")], 1_000);
    drop(local);
    let err = FleetStore::open(dir.path(), admin_connect(&pg), "the test's", "a").err();
    assert!(
        matches!(err, Some(StoreError::LocalHistory { .. })),
        "{err:?}"
    );
}

#[test]
fn one_live_node_sweeps_and_fetches_for_all() {
    let pg = fleet();
    let mut a = node(&pg, "a");
    let mut b = node(&pg, "b");
    for duty in [Duty::Sweep, Duty::Feeds] {
        assert!(a.store.holds_duty(duty), "{duty:?}: the first to ask");
        assert!(a.store.holds_duty(duty), "{duty:?}: and it keeps it");
        assert!(!b.store.holds_duty(duty), "{duty:?}: one node at a time");
    }
    // Its connection gone, another node takes over.
    drop(a);
    for duty in [Duty::Sweep, Duty::Feeds] {
        assert!(b.store.holds_duty(duty), "{duty:?}");
    }
}

#[test]
fn a_single_host_moves_into_a_fleet_with_its_history_and_audit() {
    let pg = fleet();
    let host = TempDir::new("fleet");
    let mut single = SqliteStore::open(host.path()).unwrap();
    stage(&mut single, &[add("192.0.2.1"), add("192.0.2.2")], 1_000);
    deploy(&mut single, 1_100);
    stage(&mut single, &[add("198.51.100.0/24")], 1_200);
    deploy(&mut single, 1_300);
    stage(&mut single, &[add("192.0.2.3")], 1_400);
    let before = state(&single);
    drop(single);

    FleetStore::move_into(host.path(), admin_connect(&pg)).unwrap();
    // The host goes on as the fleet's first node, on its own store.
    let mut a = FleetStore::open(host.path(), admin_connect(&pg), "the test's", "a").unwrap();
    assert_eq!(state(&a), before, "history, draft and audit kept");
    // A new node starts from the snapshot, then follows the log.
    let mut b = node(&pg, "b");
    assert_eq!(state(&b.store), before);
    assert_eq!(b.store.revision().unwrap(), 2);
    deploy(&mut a, 2_000);
    follow(&mut b.store);
    assert_eq!(state(&a), state(&b.store));
    assert_eq!(b.store.revision().unwrap(), 3);

    // Only into an empty fleet.
    let other = TempDir::new("fleet");
    let mut single = SqliteStore::open(other.path()).unwrap();
    stage(&mut single, &[add("192.0.2.9")], 1_000);
    drop(single);
    let err = FleetStore::move_into(other.path(), admin_connect(&pg));
    assert!(matches!(err, Err(StoreError::FleetNotEmpty)), "{err:?}");
}

#[test]
fn a_node_logs_in_with_libpq_s_password_file() {
    let pg = fleet_with(&["pp"]);
    let dir = TempDir::new("fleet-pgpass");
    let passfile = dir.path().join("pgpass");
    let url = format!(
        "postgres://pp@127.0.0.1:{}/denylist?sslmode=disable",
        pg.port()
    );
    let open = |lines: &str| {
        write_private(&passfile, lines);
        let config = FleetConfig::new(&url, None, Some("pp".into()))
            .unwrap()
            .with_passfile(Some(passfile.clone()));
        config.check().unwrap();
        let state = TempDir::new("fleet-pgpass-state");
        FleetStore::open(state.path(), config.connector(), &config.url, "pp").map(drop)
    };
    open("127.0.0.1:*:denylist:other:pw-pp\n*:*:*:pp:pw-pp\n").expect("the second line matches");
    let refused = open("*:*:*:pp:wrong\n").expect_err("a wrong password");
    assert!(
        refused
            .to_string()
            .contains("password authentication failed for user \"pp\""),
        "the server's refusal: {refused}"
    );
}

#[test]
fn a_node_verifies_the_database_s_certificate_and_name() {
    let pg = fleet_with(&["tl"]);
    let (ca, other_ca) = pg.enable_tls();
    let dir = TempDir::new("fleet-tls");
    let password = dir.path().join("password");
    write_private(&password, "pw-tl\n");
    let open = |host: &str, ca: &std::path::Path| {
        let url = format!(
            "postgres://tl@{host}:{}/denylist?sslmode=verify-full&sslrootcert={}",
            pg.port(),
            ca.display()
        );
        let config = FleetConfig::new(&url, Some(&password), Some("tl".into())).unwrap();
        let state = TempDir::new("fleet-tls-state");
        FleetStore::open(state.path(), config.connector(), &config.url, "tl")
            .map(|store| (store, state))
    };
    let (_store, _state) = open("localhost", &ca).expect("the right CA and name");
    // As the superuser: others' rows of pg_stat_ssl are hidden from the
    // owner.
    let over_tls: i64 = pg
        .admin("postgres")
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid)
             WHERE usename = 'tl' AND ssl",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(over_tls >= 1, "the node's connection is not TLS");
    for (host, ca, why, says) in [
        (
            "localhost",
            &other_ca,
            "a CA that did not sign it",
            "UnknownIssuer",
        ),
        (
            "127.0.0.1",
            &ca,
            "a name the certificate lacks",
            "not valid for name",
        ),
    ] {
        let err = open(host, ca)
            .err()
            .unwrap_or_else(|| panic!("{why}: accepted"));
        assert!(
            matches!(err, StoreError::FleetUntrusted { .. }),
            "{why}: {err:?}"
        );
        assert!(err.is_unreachable(), "a node with a copy starts from it");
        let message = err.to_string();
        assert!(
            message.contains("sslrootcert") && message.contains(says),
            "{why}: {message}"
        );
    }
}

#[test]
fn a_node_behind_log_entries_pruned_with_no_snapshot_past_them_stops_and_says_so() {
    let pg = fleet();
    let mut a = node(&pg, "a");
    let b = node(&pg, "b");
    let Node { store, _dir: b_dir } = b;
    drop(store);
    stage(&mut a.store, &[add("192.0.2.1")], 1_000);
    deploy(&mut a.store, 1_100);
    stage(&mut a.store, &[add("192.0.2.2")], 1_200);
    // The owner prunes entries b never applied, and no snapshot has them.
    owner(&pg)
        .execute("DELETE FROM log WHERE seq <= 2", &[])
        .unwrap();
    let err = FleetStore::open(b_dir.path(), admin_connect(&pg), "the test's", "b").err();
    assert!(
        matches!(err, Some(StoreError::LogGap { next: 3, .. })),
        "{err:?}"
    );
    assert!(
        err.unwrap()
            .to_string()
            .contains("start this node with an empty state directory"),
        "says what to do"
    );
}

/// The deploys `follow` handed to the kernel: how many entries each
/// added, and whether it was planned ahead.
fn deploys(followed: &[Followed]) -> Vec<(usize, bool)> {
    followed
        .iter()
        .filter_map(|f| match f {
            Followed::Deployed { plan, ahead, .. } => Some((plan.adds.len(), *ahead)),
            Followed::Expired { .. } => None,
        })
        .collect()
}

/// `ops` staged on `a`, then a deploy announced to `b` once it followed
/// them, at `now` of `sources`: `b` plans it ahead, and hands out nothing.
fn staged_then_announced(a: &mut Node, b: &mut Node, ops: &[Stage], now: i64, sources: Sources) {
    stage(&mut a.store, ops, now - 100);
    follow(&mut b.store);
    b.store.foresee_deploy(Announced { now, sources });
    assert!(deploys(&follow(&mut b.store)).is_empty(), "no deploy yet");
}

#[test]
fn a_follower_plans_an_announced_deploy_ahead_and_uses_it_only_if_nothing_changed_since() {
    let pg = fleet();
    let mut a = node(&pg, "a");
    let mut b = node(&pg, "b");
    let adds = |targets: &[&str]| -> Vec<Stage> { targets.iter().map(|s| add(s)).collect() };

    // A full deploy, announced at its `now`, with nothing between.
    let ops = adds(&["192.0.2.1", "192.0.2.2"]);
    staged_then_announced(&mut a, &mut b, &ops, 1_100, Sources::All);
    deploy(&mut a.store, 1_100);
    assert_eq!(deploys(&follow(&mut b.store)), [(2, true)]);

    // A change staged after the plan ahead: planned again on its entry.
    let ops = adds(&["192.0.2.3"]);
    staged_then_announced(&mut a, &mut b, &ops, 1_300, Sources::All);
    stage(&mut a.store, &adds(&["192.0.2.4"]), 1_250);
    deploy(&mut a.store, 1_300);
    assert_eq!(deploys(&follow(&mut b.store)), [(2, false)]);

    // Another `now` than the one announced.
    let ops = adds(&["192.0.2.5"]);
    staged_then_announced(&mut a, &mut b, &ops, 1_450, Sources::All);
    deploy(&mut a.store, 1_500);
    assert_eq!(deploys(&follow(&mut b.store)), [(1, false)]);

    // A deploy of some keys, as `add --deploy` makes: ahead when they are
    // every key pending, on its entry when one more is pending.
    let deploy_only = |s: &mut FleetStore, keys: &[(Target, List)], now| {
        let only = Only {
            keys,
            sources: &Sources::Admin,
        };
        let plan = s.plan(Some(only), now).unwrap();
        s.write_deploy(&plan, record(now))
            .unwrap()
            .commit()
            .unwrap();
    };
    let key = |s| (t(s), List::Deny);
    let ops = adds(&["192.0.2.6", "192.0.2.7"]);
    staged_then_announced(&mut a, &mut b, &ops, 1_700, Sources::Admin);
    deploy_only(&mut a.store, &[key("192.0.2.7"), key("192.0.2.6")], 1_700);
    assert_eq!(deploys(&follow(&mut b.store)), [(2, true)]);
    let ops = adds(&["192.0.2.8", "192.0.2.9"]);
    staged_then_announced(&mut a, &mut b, &ops, 1_900, Sources::Admin);
    deploy_only(&mut a.store, &[key("192.0.2.8")], 1_900);
    assert_eq!(deploys(&follow(&mut b.store)), [(1, false)]);

    assert_eq!(state(&a.store), state(&b.store));
    // The ids a plan made ahead gave stay b's: the next entry gets a new one.
    let ids: Vec<u32> = b.store.deployed().unwrap().iter().map(|s| s.id).collect();
    let mut distinct = ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), ids.len(), "ids given twice: {ids:?}");
}

#[test]
fn a_snapshot_of_a_large_stage_waits_for_its_deploy() {
    let pg = fleet();
    let mut a = node(&pg, "a");
    let mut owner = owner(&pg);
    assert!(a.store.holds_duty(Duty::Snapshot));
    let ops: Vec<Stage> = (0..100_000u32)
        .map(|i| add(&Ipv4Addr::from(0x0b00_0000 + i).to_string()))
        .collect();
    stage(&mut a.store, &ops, 1_000);
    let log_bytes: i64 = owner
        .query_one("SELECT sum(octet_length(body))::bigint FROM log", &[])
        .unwrap()
        .get(0);
    assert!(log_bytes >= 256 << 10, "a snapshot due: {log_bytes} bytes");
    // The log stands still past its short quiet with the stage alone.
    a.store.keep_snapshot().unwrap();
    thread::sleep(Duration::from_millis(2_100));
    a.store.keep_snapshot().unwrap();
    deploy(&mut a.store, 1_100);
    let head: i64 = owner
        .query_one("SELECT max(seq) FROM log", &[])
        .unwrap()
        .get(0);
    // The first snapshot holds the deploy: one of the stage alone would
    // leave the deploy's entry, a few bytes, too small to make another due.
    let deadline = Instant::now() + Duration::from_secs(20);
    let snapshots = loop {
        a.store.keep_snapshot().unwrap();
        let seqs: Vec<i64> = owner
            .query("SELECT seq FROM snapshots ORDER BY seq", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if seqs.contains(&head) || Instant::now() > deadline {
            break seqs;
        }
        thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(snapshots, [head]);
}
