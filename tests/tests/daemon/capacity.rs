//! Capacity: a new one migrates the maps under traffic, a deploy beyond it
//! is refused and changes nothing.

use std::{thread, time::Duration};

use denylist::wire::{Class, DeployRequest, DeployResponse};
use denylist_tests::daemon::kernel_exact_v4;

use crate::common::{A, FREE, add, ip, sandbox, status};

#[test]
fn a_new_capacity_migrates_the_maps_under_traffic() {
    let sb = sandbox("cap");
    let d = sb.start(&["--capacity", "4096"]);
    add(&sb.client(), &[A, "203.0.113.0/24"], true);
    let denied = sb.pair.flood(ip(A), "0.005").unwrap();
    let allowed = sb.pair.flood(ip(FREE), "0.02").unwrap();
    assert!(d.stop().success());
    let d = sb.start(&["--capacity", "8192"]);
    thread::sleep(Duration::from_millis(300));
    let (sent, received) = denied.finish().unwrap();
    let (_, free_received) = allowed.finish().unwrap();
    assert_eq!(
        received, 0,
        "{received} of {sent} denied packets passed during the migration"
    );
    assert!(free_received > 0);
    let st = status(&sb.client());
    assert_eq!(st.capacity.total, 8192);
    assert_eq!(st.entries.deny, 2, "nothing was lost");
    drop(d);
}

#[test]
fn a_deploy_beyond_capacity_is_refused_and_changes_nothing() {
    let sb = sandbox("full");
    let _d = sb.start(&["--capacity", "16"]);
    let c = sb.client();
    let targets: Vec<String> = (1..=20)
        .map(|i| format!("198.51.100.{}", 100 + i))
        .collect();
    let refs: Vec<&str> = targets.iter().map(String::as_str).collect();
    add(&c, &refs, false);
    let e = c
        .post::<_, DeployResponse>("/v1/deploy", &DeployRequest::default())
        .unwrap_err();
    assert_eq!(e.class, Class::Failure);
    assert!(
        e.message.contains("--capacity"),
        "says how to raise it: {}",
        e.message
    );
    let st = status(&c);
    assert_eq!(
        (st.capacity.used, st.revision, st.pending_changes),
        (0, 0, 20),
        "kernel unchanged, draft intact"
    );
    assert!(kernel_exact_v4(&sb.home).is_empty());
}
