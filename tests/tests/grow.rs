//! The maps sized by their contents (prefix arrays, EXACT_V6) start small
//! and grow with the deployed entries: a deploy that needs more rules, trie
//! nodes or exact IPv6 room moves the filter to larger maps first, under
//! traffic, without letting a denied packet through.

use std::{net::IpAddr, process::Command, thread, time::Duration};

use denylist::model::List;
use denylist::wire::{AddRequest, StageItem, StageResponse, Status};
use denylist_tests::{
    daemon::{Daemon, Home, bin},
    netns::{Pair, PairConfig, assert_no_gap},
    require_root,
};

const A: &str = "198.51.100.7";
const B: &str = "198.51.100.8";
const FREE: &str = "198.51.100.20";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn generations(home: &Home) -> usize {
    std::fs::read_dir(&home.bpffs)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("gen-")
        })
        .count()
}

fn add(home: &Home, target: &str) -> StageResponse {
    let req = AddRequest {
        entries: vec![StageItem {
            target: target.into(),
            list: List::Deny,
            reason: None,
            ttl: None,
            monitor: None,
        }],
        deploy: true,
        ..AddRequest::default()
    };
    home.client().post("/v1/entries", &req).expect("add")
}

#[test]
fn prefix_maps_grow_under_traffic_without_a_gap() {
    require_root();
    let pair = Pair::new("grow", PairConfig::default()).expect("veth pair");
    for s in [A, B, FREE] {
        pair.add_sender_source(ip(s)).unwrap();
    }
    let home = Home::new("grow");
    let iface = pair.receiver_xdp_if.clone();
    let args = ["--iface", iface.as_str(), "--capacity", "100000"];
    let mut d = Daemon::start(&home, Some(&pair.receiver), &args);
    add(&home, A);
    let denied = pair.flood(ip(A), "0.005").unwrap();
    let allowed = pair.flood(ip(FREE), "0.02").unwrap();

    // 3,000 IPv4 /24s need more prefix rules than the 1,024 a small list
    // starts with; 600 scattered IPv6 /56s need about 3,000 trie nodes;
    // 2,000 exact IPv6 addresses more than EXACT_V6's first 1,024.
    let mut list = String::new();
    for i in 0..3000u32 {
        list.push_str(&format!("20.{}.{}.0/24\n", i / 256, i % 256));
    }
    for i in 0..600u32 {
        list.push_str(&format!(
            "2a02:{:x}:{:x}:{:x}00::/56\n",
            0x100 + i,
            i * 7,
            i % 256
        ));
    }
    for i in 0..2000u32 {
        list.push_str(&format!("2a03:{:x}::1\n", i + 1));
    }
    let file = home.dir.path().join("prefixes.txt");
    std::fs::write(&file, list).unwrap();
    let out = Command::new(bin("denylist"))
        .env("DENYLIST_SOCKET", home.socket())
        .args(["import", "--deploy", "--json"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "import --deploy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        d.log_text().contains("moved to larger maps"),
        "the deploy grew the maps:\n{}",
        d.log_text()
    );
    assert_eq!(generations(&home), 1, "the old generation is unpinned");

    // The grown maps filter prefixes: a /31 over B blocks it.
    assert!(pair.ping(ip(B), 3, 56).unwrap() > 0, "B flows before");
    add(&home, "198.51.100.8/31");
    assert_eq!(pair.ping(ip(B), 3, 56).unwrap(), 0, "the /31 drops B");

    // A restart sizes the maps for what is deployed and keeps filtering.
    assert!(d.stop().success());
    d = Daemon::start(&home, Some(&pair.receiver), &args);
    assert_eq!(pair.ping(ip(B), 3, 56).unwrap(), 0, "B stays blocked");
    let st: Status = home.client().get("/v1/status").unwrap();
    assert_eq!(st.revision, 3);
    assert_eq!(generations(&home), 1);

    thread::sleep(Duration::from_millis(300));
    assert_no_gap(denied, allowed);
    drop(d);
}
