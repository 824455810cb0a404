//! Three denylistd nodes, each on its own veth in its own netns with its
//! own state and pins, sharing one PostgreSQL: Save and Deploy on any of
//! them drops on all of them.

use std::{
    net::IpAddr,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use denylist::{
    cli::Client,
    model::{AuditEvent, List, NodeState, NodeStatus, Target},
    store::WRITER_LOCK,
    wire::{
        AddRequest, Class, DeployRequest, DeployResponse, RemoveRequest, StageItem, StageResponse,
        Status, VerifyResponse,
    },
};
use denylist_common::{ExactValue, MAP_EXACT_V4};
use denylist_tests::{
    daemon::{Daemon, Home, bin, cli, generation},
    netns::{Pair, PairConfig},
    postgres::Postgres,
};

const A: &str = "198.51.100.7";
const B: &str = "198.51.100.8";
const C: &str = "198.51.100.9";
const COUNT: u32 = 3;
/// How long a node may take to converge here; the bench measures it.
const CONVERGE: Duration = Duration::from_secs(10);

struct Node {
    pair: Pair,
    home: Home,
    daemon: Option<Daemon>,
}

impl Node {
    fn new(pg: &Postgres, tag: &str, extra: &[&str]) -> Node {
        let pair = Pair::new(tag, PairConfig::default()).expect("veth pair");
        for s in [A, B, C] {
            pair.add_sender_source(s.parse().unwrap()).unwrap();
        }
        let mut n = Node {
            pair,
            home: Home::new(tag),
            daemon: None,
        };
        n.start(pg, tag, extra);
        n
    }

    fn start(&mut self, pg: &Postgres, name: &str, extra: &[&str]) {
        let iface = self.pair.receiver_xdp_if.clone();
        let url = pg.node_url(name);
        let mut args = vec!["--iface", &iface, "--store", &url, "--node", name];
        args.extend_from_slice(extra);
        self.daemon = Some(Daemon::start(&self.home, Some(&self.pair.receiver), &args));
    }

    fn client(&self) -> Client {
        self.home.client()
    }

    fn replies(&self, src: &str) -> u32 {
        let ip: IpAddr = src.parse().unwrap();
        self.pair.ping(ip, COUNT, 56).unwrap()
    }
}

/// A fleet of nodes named `tags`, each started with its extra arguments.
fn fleet(tags: &[(&str, &[&str])]) -> (Postgres, Vec<Node>) {
    let names: Vec<&str> = tags.iter().map(|t| t.0).collect();
    let pg = crate::store::fleet_with(&names);
    let nodes = tags
        .iter()
        .map(|(t, extra)| Node::new(&pg, t, extra))
        .collect();
    (pg, nodes)
}

fn item(target: &str) -> StageItem {
    StageItem {
        target: target.into(),
        list: List::Deny,
        reason: Some("fleet".into()),
        ttl: None,
        monitor: None,
    }
}

fn add(c: &Client, target: &str, deploy: bool) -> StageResponse {
    let req = AddRequest {
        entries: vec![item(target)],
        deploy,
        ..AddRequest::default()
    };
    c.post("/v1/entries", &req).expect("add")
}

/// Waits until every node answers `src` with `want` replies.
fn converge(nodes: &[Node], src: &str, want: u32) {
    converge_within(nodes, src, want, CONVERGE);
}

/// [`converge`] with its own patience.
fn converge_within(nodes: &[Node], src: &str, want: u32, patience: Duration) {
    let deadline = Instant::now() + patience;
    for (i, n) in nodes.iter().enumerate() {
        loop {
            let got = n.replies(src);
            if got == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {} still answers {src} {got} times, not {want}:\n{}",
                i + 1,
                n.daemon.as_ref().map(Daemon::log_text).unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn a_deploy_on_any_node_drops_on_every_node() {
    // The third node holds fewer entries than the others.
    let (_pg, nodes) = fleet(&[("fl1", &[]), ("fl2", &[]), ("fl3", &["--capacity", "16"])]);
    let (n1, n2) = (nodes[0].client(), nodes[1].client());
    for n in &nodes {
        assert_eq!(n.replies(A), COUNT, "nothing deployed yet");
    }

    add(&n1, A, false);
    // --wait returns once every live node applied the revision.
    let r = cli(&nodes[0].home.socket(), &["deploy", "--wait", "10s"]);
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.out.contains("revision 1 is applied on all 3 live nodes"),
        "{r}"
    );
    for n in &nodes {
        assert_eq!(n.replies(A), 0, "applied, so dropped");
    }

    let req = RemoveRequest {
        targets: vec![Target::parse(A).unwrap()],
        list: List::Deny,
        deploy: true,
        message: None,
        source: None,
    };
    let r: StageResponse = n2.post("/v1/entries/remove", &req).unwrap();
    assert_eq!(r.deployed.and_then(|d| d.revision), Some(2));
    converge(&nodes, A, COUNT);

    // Two deploys at the same moment from two nodes: the database orders
    // them, each gets its own revision, and neither change is lost.
    let (c1, c2) = (nodes[0].home.client(), nodes[1].home.client());
    let one = thread::spawn(move || add(&c1, B, true));
    let two = thread::spawn(move || add(&c2, C, true));
    let revs = [one.join().unwrap(), two.join().unwrap()]
        .map(|r| r.deployed.and_then(|d| d.revision).expect("deployed"));
    assert!(
        revs == [3, 4] || revs == [4, 3],
        "two revisions, one each: {revs:?}"
    );
    converge(&nodes, B, 0);
    converge(&nodes, C, 0);

    // Every node's guardrails hold on every node: fl2 may not block an
    // address of fl3's (once fl3 has published it, at its next follow).
    let iface = nodes[2].pair.receiver_xdp_if.clone();
    nodes[2]
        .pair
        .receiver
        .run(&["ip", "addr", "add", "203.0.113.3/32", "dev", &iface])
        .unwrap();
    let deadline = Instant::now() + CONVERGE;
    let reason = loop {
        let req = AddRequest {
            entries: vec![item("203.0.113.3")],
            dry_run: true,
            ..AddRequest::default()
        };
        let preview: StageResponse = n2.post("/v1/entries", &req).expect("dry run");
        if let Some(r) = preview.refused.first() {
            break r.reason.clone();
        }
        assert!(
            Instant::now() < deadline,
            "fl3's address never protected on fl2"
        );
        thread::sleep(Duration::from_millis(200));
    };
    assert!(reason.contains("of fleet node fl3"), "{reason}");
    let refused = n2
        .post::<_, StageResponse>(
            "/v1/entries",
            &AddRequest {
                entries: vec![item("203.0.113.3")],
                ..AddRequest::default()
            },
        )
        .expect_err("guarded");
    assert_eq!(refused.class, Class::Guarded, "{refused:?}");

    // A deploy the smallest node cannot hold is refused before anything
    // changes, on every node.
    let many: Vec<String> = (100..116).map(|i| format!("198.51.100.{i}")).collect();
    let req = AddRequest {
        entries: many.iter().map(|t| item(t)).collect(),
        ..AddRequest::default()
    };
    let _: StageResponse = n1.post("/v1/entries", &req).expect("stage");
    let refused = n1
        .post::<_, DeployResponse>("/v1/deploy", &DeployRequest::default())
        .expect_err("over fl3's capacity");
    assert_eq!(refused.class, Class::Conflict, "{refused:?}");
    assert!(refused.message.contains("fl3"), "{}", refused.message);
    let listed: Vec<NodeStatus> = n1.get("/v1/nodes").unwrap();
    assert!(listed.iter().all(|n| n.applied_revision == 4), "{listed:?}");
}

/// Waits until `nodes` shows every node in sync at `revision`.
fn all_in_sync(c: &Client, names: &[&str], revision: u64) -> Vec<NodeStatus> {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let nodes: Vec<NodeStatus> = c.get("/v1/nodes").expect("nodes");
        let done = nodes.len() == names.len()
            && nodes.iter().zip(names).all(|(n, name)| {
                n.node == *name && n.state == NodeState::InSync && n.applied_revision == revision
            });
        if done {
            return nodes;
        }
        assert!(
            Instant::now() < deadline,
            "not all in sync at {revision}: {nodes:?}"
        );
        thread::sleep(Duration::from_millis(200));
    }
}

/// The metrics of the node at `addr` in its namespace, once they hold
/// `until` (within [`CONVERGE`]).
fn scrape(node: &Node, addr: &str, until: &str) -> String {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let out = node
            .pair
            .receiver
            .cmd("curl")
            .args(["-s", "--max-time", "10", &format!("http://{addr}/metrics")])
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains(until) {
            return text;
        }
        assert!(Instant::now() < deadline, "{until} never came:\n{text}");
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn nodes_show_what_each_applied_and_a_database_outage_stops_no_filtering() {
    // In the node's own namespace, where nothing else listens.
    let metrics = "127.0.0.1:19478";
    let (pg, mut nodes) = fleet(&[("fo1", &["--metrics", metrics]), ("fo2", &[])]);
    let c1 = nodes[0].client();
    add(&c1, A, true);
    converge(&nodes, A, 0);
    let listed = all_in_sync(&c1, &["fo1", "fo2"], 1);
    assert!(
        listed
            .iter()
            .all(|n| n.lag_ms == 0 && n.drift == 0 && n.error.is_none())
    );
    let text = scrape(&nodes[0], metrics, "denylist_fleet_database_up 1");
    for needle in [
        "denylist_fleet_apply_failed 0",
        // fo1 deployed A itself: it followed no other node's deploy.
        "denylist_fleet_deploys_followed_total{planned=\"ahead\"} 0",
        "denylist_fleet_deploys_followed_total{planned=\"on_entry\"} 0",
        "denylist_fleet_nodes{state=\"in_sync\"} 2",
        "denylist_fleet_nodes{state=\"offline\"} 0",
        "denylist_fleet_node_applied_revision{node=\"fo2\"} 1",
        "denylist_fleet_node_lag_seconds{node=\"fo1\"} 0",
        "denylist_fleet_node_heartbeat_timestamp_seconds{node=\"fo2\"} ",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }

    pg.stop();
    scrape(&nodes[0], metrics, "denylist_fleet_database_up 0");
    // Every node keeps dropping; a change fails at once, naming the database.
    converge(&nodes, A, 0);
    let refused = c1
        .post::<_, StageResponse>(
            "/v1/entries",
            &AddRequest {
                entries: vec![item(B)],
                deploy: true,
                ..AddRequest::default()
            },
        )
        .expect_err("no database, no change");
    assert_eq!(refused.class, Class::Unavailable, "{refused:?}");
    assert!(
        refused.message.contains("cannot be reached"),
        "{}",
        refused.message
    );
    // Reads still answer, from the node's copy, and say so.
    let status: Status = c1.get("/v1/status").expect("status");
    assert_eq!(status.revision, 1);
    let stale = cli(&nodes[0].home.socket(), &["status"]);
    assert_eq!(stale.code, 0, "{stale}");
    assert!(stale.err.contains("denylist: stale:"), "{stale}");
    // A node restarted meanwhile starts from its copy and keeps dropping.
    nodes[1].daemon.take().expect("running").stop();
    nodes[1].start(&pg, "fo2", &[]);
    converge(&nodes, A, 0);

    pg.resume();
    add(&c1, B, true);
    converge(&nodes, B, 0);
    all_in_sync(&c1, &["fo1", "fo2"], 2);
    scrape(&nodes[0], metrics, "denylist_fleet_database_up 1");
    let fresh = cli(&nodes[0].home.socket(), &["status"]);
    assert!(!fresh.err.contains("stale"), "{fresh}");

    // A deploy fo2 announces while the test holds the writer lock: fo1
    // plans it ahead, and takes that plan once its entry comes.
    add(&nodes[1].client(), C, false);
    let mut holder = pg.owner();
    let mut lock = holder.transaction().unwrap();
    lock.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITER_LOCK])
        .unwrap();
    let socket = nodes[1].home.socket();
    let deploying = thread::spawn(move || cli(&socket, &["deploy"]));
    thread::sleep(Duration::from_secs(1));
    lock.commit().unwrap();
    let deployed = deploying.join().unwrap();
    assert_eq!(deployed.code, 0, "{deployed}");
    converge(&nodes, C, 0);
    let text = scrape(
        &nodes[0],
        metrics,
        "denylist_fleet_deploys_followed_total{planned=\"ahead\"} 1",
    );
    // C went into fo1's kernel ahead of the entry, live once it came.
    assert!(
        text.contains("denylist_fleet_entries_written_ahead_total 1"),
        "{text}"
    );
}

#[test]
fn one_node_sweeps_expiry_for_the_fleet() {
    let sweep: &[&str] = &["--expiry-sweep", "1s"];
    let (_pg, nodes) = fleet(&[("fe1", sweep), ("fe2", sweep)]);
    let c1 = nodes[0].client();
    let req = AddRequest {
        entries: vec![StageItem {
            ttl: Some("3s".into()),
            ..item(A)
        }],
        deploy: true,
        ..AddRequest::default()
    };
    let _: StageResponse = c1.post("/v1/entries", &req).expect("add");
    converge(&nodes, A, 0);
    // The kernel lets it through at its expiry, and one sweep takes it out
    // of every node's store.
    converge(&nodes, A, COUNT);
    let deadline = Instant::now() + CONVERGE;
    loop {
        let events: Vec<Vec<AuditEvent>> = nodes
            .iter()
            .map(|n| n.client().get("/v1/audit?kind=expiry").expect("audit"))
            .collect();
        if events.iter().all(|e| e.len() == 1) {
            assert_eq!(events[0], events[1], "the same event on both nodes");
            for n in &nodes {
                let log = n.daemon.as_ref().map(Daemon::log_text).unwrap_or_default();
                assert!(!log.contains("expiry sweep:"), "{log}");
            }
            break;
        }
        assert!(
            events.iter().all(|e| e.len() <= 1),
            "swept once: {events:?}"
        );
        assert!(
            Instant::now() < deadline,
            "not swept everywhere: {events:?}"
        );
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_single_host_moves_into_the_fleet_and_a_new_node_takes_its_list() {
    let pg = crate::store::fleet_with(&["fm1", "fm2"]);
    // A single host first, with a deployed list and its history.
    let pair = Pair::new("fm1", PairConfig::default()).expect("veth pair");
    for s in [A, B, C] {
        pair.add_sender_source(s.parse().unwrap()).unwrap();
    }
    let mut host = Node {
        pair,
        home: Home::new("fm1"),
        daemon: None,
    };
    let iface = host.pair.receiver_xdp_if.clone();
    let single = Daemon::start(&host.home, Some(&host.pair.receiver), &["--iface", &iface]);
    add(&host.client(), A, true);
    add(&host.client(), B, true);
    let history: Vec<AuditEvent> = host.client().get("/v1/audit").unwrap();
    assert_eq!(host.replies(A), 0);

    // Moved while it runs: refused.
    let url = pg.node_url("fm1");
    let move_it = |home: &Home| {
        Command::new(bin("denylistd"))
            .arg("--socket")
            .arg(home.socket())
            .arg("--state-dir")
            .arg(home.state())
            .args(["--store", &url, "--move-to-fleet"])
            .output()
            .expect("run denylistd")
    };
    let refused = move_it(&host.home);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("stop it first"));
    single.stop();
    let moved = move_it(&host.home);
    assert!(
        moved.status.success(),
        "{}",
        String::from_utf8_lossy(&moved.stderr)
    );

    // The host runs on as the fleet's first node, with its history; a new
    // node starts from it.
    host.start(&pg, "fm1", &[]);
    assert_eq!(host.replies(A), 0, "still dropping");
    let after: Vec<AuditEvent> = host.client().get("/v1/audit").unwrap();
    assert_eq!(after, history, "history and audit kept");
    let new = Node::new(&pg, "fm2", &[]);
    let nodes = [host, new];
    converge(&nodes, A, 0);
    converge(&nodes, B, 0);
    let theirs: Vec<AuditEvent> = nodes[1].client().get("/v1/audit").unwrap();
    assert_eq!(theirs, history, "the new node has the moved history");
    add(&nodes[1].client(), C, true);
    converge(&nodes, C, 0);
}

#[test]
fn feeds_reports_and_drift_on_one_node_reach_the_fleet() {
    let feeds = denylist_tests::daemon::TempDir::new("fleet-feeds");
    let list = feeds.path().join("list.txt");
    std::fs::write(&list, format!("{A}\n")).unwrap();
    let feed_dir = feeds.path().to_str().unwrap().to_string();
    let extra: &[&str] = &["--feed-dir", &feed_dir];
    let (_pg, nodes) = fleet(&[("ff1", extra), ("ff2", extra)]);

    // A feed added on one node: its list is dropped on every node.
    let url = format!("file://{}", list.display());
    let r = cli(
        &nodes[0].home.socket(),
        &["feed", "add", "lists", &url, "--every", "1h"],
    );
    assert_eq!(r.code, 0, "{r}");
    converge(&nodes, A, 0);

    // Reports to the other node list an address for the whole fleet.
    let r = cli(&nodes[1].home.socket(), &["auto", "set", "--reports", "2"]);
    assert_eq!(r.code, 0, "{r}");
    for _ in 0..2 {
        let r = cli(
            &nodes[1].home.socket(),
            &["report", B, "--reason", "brute force"],
        );
        assert_eq!(r.code, 0, "{r}");
    }
    converge(&nodes, B, 0);

    // Drift planted in one node's kernel: its verify finds and repairs
    // it, and its row says so.
    let pinned = generation(&nodes[1].home).join(MAP_EXACT_V4);
    let mut map = Map::HashMap(MapData::from_pin(pinned).unwrap());
    let mut h: BpfHashMap<_, [u8; 4], ExactValue> = BpfHashMap::try_from(&mut map).unwrap();
    h.remove(&[198, 51, 100, 7]).unwrap();
    assert_eq!(nodes[1].replies(A), COUNT, "the drift lets A through");
    let v: VerifyResponse = nodes[1]
        .client()
        .post("/v1/verify", &serde_json::json!({}))
        .unwrap();
    assert_eq!(v.repaired, 1);
    assert_eq!(nodes[1].replies(A), 0, "repaired");
    let deadline = Instant::now() + CONVERGE;
    loop {
        let listed: Vec<NodeStatus> = nodes[0].client().get("/v1/nodes").unwrap();
        if listed.iter().any(|n| n.node == "ff2" && n.drift == 1) {
            assert!(listed.iter().any(|n| n.node == "ff1" && n.drift == 0));
            break;
        }
        assert!(Instant::now() < deadline, "drift never shown: {listed:?}");
        thread::sleep(Duration::from_millis(200));
    }
}

/// Imports and deploys on `node`, through the file `file`, `n` addresses
/// from `first` on, and `last`.
fn import_deploy(node: &Node, file: &std::path::Path, first: u32, n: u32, last: &str) {
    let mut text: String = (0..n)
        .map(|i| format!("{}\n", std::net::Ipv4Addr::from(first + i)))
        .collect();
    text.push_str(&format!("{last}\n"));
    std::fs::write(file, text).unwrap();
    let r = cli(
        &node.home.socket(),
        &["import", file.to_str().unwrap(), "--deploy"],
    );
    assert_eq!(r.code, 0, "{r}");
}

/// Waits for the fleet's snapshot of the last deploy, then makes every
/// log entry it holds unreadable, their sizes kept: a node that reads one
/// fails.
fn unreadable_up_to_its_snapshot(owner: &mut postgres::Client, patience: Duration) {
    let deployed: i64 = owner
        .query_one("SELECT max(seq) FROM log WHERE kind = 'deploy'", &[])
        .unwrap()
        .get(0);
    let deadline = Instant::now() + patience;
    let snapshot = loop {
        let seq: i64 = owner
            .query_one("SELECT coalesce(max(seq), 0) FROM snapshots", &[])
            .unwrap()
            .get(0);
        if seq >= deployed {
            break seq;
        }
        assert!(Instant::now() < deadline, "no snapshot of seq {deployed}");
        thread::sleep(Duration::from_millis(200));
    };
    owner
        .execute(
            "UPDATE log SET body = set_byte(body, 0, 0) WHERE seq <= $1",
            &[&snapshot],
        )
        .unwrap();
}

#[test]
fn a_node_killed_in_a_large_deploy_converges_and_new_or_far_behind_nodes_load_a_snapshot() {
    // With --long, the million entries.
    // Debug builds take minutes over a million.
    let (n, capacity, patience) = if std::env::var_os("DENYLIST_LONG").is_some() {
        (1_000_000, "2100000", Duration::from_secs(900))
    } else {
        (50_000, "200000", Duration::from_secs(30))
    };
    let big: &[&str] = &["--capacity", capacity];
    let pg = crate::store::fleet_with(&["fk1", "fk2", "fk3"]);
    let mut nodes = vec![Node::new(&pg, "fk1", big), Node::new(&pg, "fk2", big)];
    let dir = denylist_tests::daemon::TempDir::new("fleet-kill");
    let file = dir.path().join("list.txt");
    import_deploy(&nodes[0], &file, 0x0b00_0000, n, A);
    // fk2 is taking the deploy from the log: kill it mid-way.
    thread::sleep(Duration::from_millis(300));
    nodes[1].daemon.take().expect("running").kill();
    nodes[1].start(&pg, "fk2", big);
    converge_within(&nodes, A, 0, patience);
    all_in_sync(&nodes[0].client(), &["fk1", "fk2"], 1);
    let kernel = denylist_tests::daemon::kernel_exact_v4(&nodes[1].home);
    assert_eq!(kernel.len() as u32, n + 1, "kernel = revision");

    // One node snapshots the log once it stands still after the deploy. A
    // new node starts from that snapshot: the entries it holds, made
    // unreadable here, are never read; those after it (a restart's
    // records) are.
    let mut owner = pg.owner();
    unreadable_up_to_its_snapshot(&mut owner, patience);
    nodes.push(Node::new(&pg, "fk3", big));
    converge_within(&nodes, A, 0, patience);
    let kernel = denylist_tests::daemon::kernel_exact_v4(&nodes[2].home);
    assert_eq!(
        kernel.len() as u32,
        n + 1,
        "the new node's kernel = revision"
    );
    add(&nodes[2].client(), B, true);
    converge(&nodes, B, 0);

    // Two nodes with hits counted on A miss a deploy as large as the
    // first: the new node is down, and fk2 cut off from the database. On
    // their return both are far behind the fleet's next snapshot, and load
    // it (one as it starts, one as it runs) rather than replay the log,
    // made unreadable again; both keep their ids, so their hit counts.
    let hits_on_a = |n: &Node| -> u64 {
        let stats: Vec<denylist::wire::StatItem> = n.client().get("/v1/stats").unwrap();
        stats
            .iter()
            .find(|s| s.target.to_string() == A)
            .map_or(0, |s| s.packets)
    };
    let counted = [hits_on_a(&nodes[1]), hits_on_a(&nodes[2])];
    assert!(
        counted.iter().all(|&c| c >= u64::from(COUNT)),
        "A dropped on fk2 and fk3"
    );
    assert!(nodes[2].daemon.take().expect("running").stop().success());
    let mut admin = pg.admin("denylist");
    admin
        .batch_execute(
            "ALTER ROLE fk2 NOLOGIN;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'fk2'",
        )
        .unwrap();
    // As large as the first: its stage and deploy (which names the keys
    // it ships) take about 6.6 bytes of log per entry, the snapshot about
    // 10.5 per entry held, so the missed half is a third of the
    // snapshot's bytes, past the quarter that makes a node far behind.
    import_deploy(&nodes[0], &file, 0x0c00_0000, n, C);
    converge_within(&nodes[..1], C, 0, patience);
    unreadable_up_to_its_snapshot(&mut owner, patience);
    admin.batch_execute("ALTER ROLE fk2 LOGIN").unwrap();
    nodes[2].start(&pg, "fk3", big);
    converge_within(&nodes, C, 0, patience);
    let fleet_kernel = denylist_tests::daemon::kernel_exact_v4(&nodes[0].home);
    for (n, counted) in nodes[1..].iter().zip(counted) {
        let log = n.daemon.as_ref().unwrap().log_text();
        assert!(log.contains("far behind"), "{log}");
        assert!(
            denylist_tests::daemon::kernel_exact_v4(&n.home) == fleet_kernel,
            "the returning node's kernel = revision"
        );
        assert_eq!(hits_on_a(n), counted, "its hit counts kept");
    }
    all_in_sync(&nodes[0].client(), &["fk1", "fk2", "fk3"], 3);
}
