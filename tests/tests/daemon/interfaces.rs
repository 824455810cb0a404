//! Interfaces that come late or come back are attached; other programs are
//! not replaced.

use std::{thread, time::Duration};

use denylist::cli::Client;

use crate::common::{sandbox, status};

fn xdp_prog_name(ns: &denylist_tests::netns::Netns, iface: &str) -> Option<String> {
    let out = ns
        .run(&["ip", "-j", "-d", "link", "show", "dev", iface])
        .ok()?;
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    v[0]["xdp"]["prog"]["name"].as_str().map(str::to_string)
}

#[test]
fn late_and_returning_interfaces_are_attached_and_others_programs_are_not_replaced() {
    let sb = sandbox("ifc");
    let ns = &sb.pair.receiver;
    let _d = sb.start(&["--iface", "dl-late"]);
    let c = sb.client();
    let st = status(&c);
    assert!(st.degraded, "a configured interface is missing");
    let late = st.interfaces.iter().find(|i| i.name == "dl-late").unwrap();
    assert!(!late.attached);

    ns.run(&[
        "ip",
        "link",
        "add",
        "dl-late",
        "type",
        "veth",
        "peer",
        "name",
        "dl-late-p",
    ])
    .unwrap();
    ns.run(&["ip", "link", "set", "dl-late", "up"]).unwrap();
    let attached = |c: &Client| {
        status(c)
            .interfaces
            .iter()
            .any(|i| i.name == "dl-late" && i.attached)
    };
    let wait = |want: bool| {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < until && attached(&c) != want {
            thread::sleep(Duration::from_millis(200));
        }
        attached(&c) == want
    };
    assert!(wait(true), "attached once it appeared");
    assert_eq!(xdp_prog_name(ns, "dl-late").as_deref(), Some("denylist"));
    assert!(!status(&c).degraded);

    ns.run(&["ip", "link", "del", "dl-late"]).unwrap();
    assert!(wait(false), "noticed it went away");
    ns.run(&[
        "ip",
        "link",
        "add",
        "dl-late",
        "type",
        "veth",
        "peer",
        "name",
        "dl-late-p",
    ])
    .unwrap();
    assert!(wait(true), "re-attached when it came back");
    assert_eq!(xdp_prog_name(ns, "dl-late").as_deref(), Some("denylist"));

    // Another tool's XDP program: a clear error naming it, and it stays.
    ns.run(&[
        "ip",
        "link",
        "add",
        "dl-other",
        "type",
        "veth",
        "peer",
        "name",
        "dl-other-p",
    ])
    .unwrap();
    ns.run(&[
        "xdp-filter",
        "load",
        "dl-other",
        "-m",
        "skb",
        "-f",
        "ipv4,ipv6",
    ])
    .unwrap();
    let before = xdp_prog_name(ns, "dl-other").expect("xdp-filter loaded");
    let e = c
        .post::<_, serde_json::Value>("/v1/attach", &serde_json::json!({ "iface": "dl-other" }))
        .unwrap_err();
    assert!(
        e.message.contains("already carries XDP program") && e.message.contains(&before),
        "{}",
        e.message
    );
    assert_eq!(
        xdp_prog_name(ns, "dl-other"),
        Some(before),
        "nothing was replaced"
    );
    let _ = ns.run(&["xdp-filter", "unload", "dl-other", "--all"]);
}
