//! Entries expire in the kernel on time, and the sweep clears them from the
//! store.

use std::{collections::BTreeSet, thread, time::Duration};

use denylist::{
    model::Entry,
    wire::{AddRequest, StageItem, StageResponse},
};
use denylist_tests::daemon::Home;

use crate::common::{A, ip, item, sandbox};

/// The deployed exact deny entries, read from the store file itself.
fn store_exact(home: &Home) -> (BTreeSet<String>, i64) {
    let db = rusqlite::Connection::open_with_flags(
        home.state().join("denylist.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut stmt = db
        .prepare("SELECT target FROM entries WHERE list = 'deny'")
        .unwrap();
    let deployed = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let pending: i64 = db
        .query_row("SELECT count(*) FROM pending", [], |r| r.get(0))
        .unwrap();
    (deployed, pending)
}

#[test]
fn entries_expire_in_the_kernel_on_time_and_the_sweep_clears_the_draft() {
    let sb = sandbox("exp");
    let _d = sb.start(&[]);
    let c = sb.client();
    let req = AddRequest {
        entries: vec![StageItem {
            ttl: Some("3s".into()),
            ..item(A)
        }],
        deploy: true,
        ..AddRequest::default()
    };
    let _: StageResponse = c.post("/v1/entries", &req).unwrap();
    let entries: Vec<Entry> = c.get("/v1/entries").unwrap();
    let expires = entries[0].expires_at.expect("an expiry");
    let left = expires - denylist::model::now_ms();
    assert!(
        (2_000..=3_000).contains(&left),
        "the 3 s TTL counts from the deploy: {left} ms left"
    );
    assert_eq!(
        sb.pair.ping(ip(A), 2, 56).unwrap(),
        0,
        "blocked before its expiry"
    );
    // Probe every 100 ms: the first reply must come within 1 s of expiry.
    let flood = sb.pair.flood(ip(A), "0.1").unwrap();
    thread::sleep(Duration::from_secs(6));
    let (sent, received) = flood.finish().unwrap();
    let open_ms = denylist::model::now_ms() - expires;
    let due = (open_ms / 100) as u32;
    assert!(
        received + 11 >= due,
        "{received} of {sent} got through; {due} were due after the expiry"
    );
    assert!(
        received <= due + 1,
        "nothing passed before the expiry: {received} > {due}"
    );
    let audit: Vec<serde_json::Value> = c.get("/v1/audit?since=0").unwrap();
    let swept = audit
        .iter()
        .find(|e| e["kind"] == "expiry" && e["target"] == A)
        .expect("an expiry event");
    let at = humantime::parse_rfc3339(swept["at"].as_str().unwrap()).unwrap();
    let at = denylist::model::to_ms(at);
    assert!(
        at - expires <= 2_500,
        "swept within a sweep period (1 s) plus slack: {} ms",
        at - expires
    );
    let (deployed, pending) = store_exact(&sb.home);
    assert!(
        deployed.is_empty() && pending == 0,
        "gone from the deployed set and the draft"
    );
}
