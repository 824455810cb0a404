//! The console on a node of a fleet (issue 17): after Save and Deploy the
//! page follows the new revision to every node, and the Nodes page lists
//! them, in the browser, against real daemons sharing one PostgreSQL.

use std::time::{Duration, Instant};

use denylist::model::{NodeState, NodeStatus};
use denylist_tests::{
    daemon::{Daemon, Home, TempDir},
    postgres::Postgres,
    web::{ADMIN, Stack, WebOpts},
};

use crate::{
    add, save_and_deploy,
    screenshots::{blank_size, publish, shot},
    signed_in,
};

#[test]
fn save_and_deploy_follows_the_revision_to_every_node() {
    let pg = Postgres::fleet(&["wf1", "wf2"]);
    let first = pg.node_url("wf1");
    let s = Stack::start_and(
        "wf1",
        &[ADMIN],
        &WebOpts::default(),
        &["--store", &first, "--node", "wf1"],
    );
    let home = Home::new("wf2");
    let _second = Daemon::start(
        &home,
        None,
        &["--store", &pg.node_url("wf2"), "--node", "wf2"],
    );
    // Both nodes have reported before the deploy, so both are waited for.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let nodes: Vec<NodeStatus> = s.api().get("/v1/nodes").expect("nodes");
        if nodes.len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{nodes:?}\n{}", s.logs());
        std::thread::sleep(Duration::from_millis(200));
    }

    let dir = TempDir::new("fleet-shots");
    let blank = blank_size(&s.web.origin(), dir.path());
    let b = signed_in(&s, &ADMIN);
    add(&b, "198.51.100.7", "ssh brute force");
    let rev = save_and_deploy(&b, "block the scanner on every edge");
    let done =
        format!("Revision {rev}: 2 of 2 live nodes applied it; every live node filters by it");
    let mut shots = vec![shot(&b, dir.path(), "rollout", &done, blank)];
    let text = b.text();
    assert!(
        text.contains("wf1: applied") && text.contains("wf2: applied"),
        "{text}"
    );

    b.goto("/nodes");
    shots.push(shot(&b, dir.path(), "nodes", "wf2", blank));
    let rows: Vec<NodeStatus> = s.api().get("/v1/nodes").expect("nodes");
    assert!(
        rows.iter()
            .all(|n| n.state == NodeState::InSync && n.applied_revision == rev),
        "{rows:?}"
    );
    let text = b.text();
    assert_eq!(text.matches("in_sync").count(), 2, "{text}");
    publish(&shots);
}
