//! Real traffic through veth pairs in network namespaces: the program on
//! the receiving veth drops a denied source's packets, lets others through,
//! and lets the source through again once its entry is removed.

use std::net::IpAddr;

use denylist::{
    dataplane::Dataplane,
    model::{AttachMode, AttachedMode, List, Rule, Target},
};
use denylist_tests::{
    dataplane,
    netns::{Pair, PairConfig},
};

const COUNT: u32 = 5;

fn deny(id: u32, t: &str) -> Rule {
    Rule {
        id,
        target: Target::parse(t).unwrap(),
        list: List::Deny,
        monitor: false,
        expires_ms: None,
    }
}

/// Attaches `dp` to the receiver's veth from inside its namespace.
fn attach(pair: &Pair, dp: Dataplane, mode: AttachMode) -> (Dataplane, AttachedMode) {
    let iface = pair.receiver_xdp_if.clone();
    pair.receiver
        .enter(move || {
            let mut dp = dp;
            let m = dp.attach(&iface, mode).expect("attach XDP");
            (dp, m)
        })
        .expect("enter the receiver namespace")
}

/// Denied sources (one per family) stop; others flow; removal restores them.
fn block_and_unblock(tag: &str, cfg: PairConfig, size: u32) {
    let pair = Pair::new(tag, cfg).expect("build the veth pair");
    let denied: [IpAddr; 2] = [
        "198.51.100.7".parse().unwrap(),
        "2001:db8:1::7".parse().unwrap(),
    ];
    let allowed: [IpAddr; 2] = [
        "198.51.100.8".parse().unwrap(),
        "2001:db8:1::8".parse().unwrap(),
    ];
    for a in denied.iter().chain(&allowed) {
        pair.add_sender_source(*a).unwrap();
    }
    let (mut dp, mode) = attach(&pair, dataplane(), AttachMode::Native);
    assert_eq!(mode, AttachedMode::Native, "veth supports native XDP");

    for a in denied.iter().chain(&allowed) {
        assert_eq!(
            pair.ping(*a, COUNT, size).unwrap(),
            COUNT,
            "{a} before any entry"
        );
    }
    let entries = [deny(1, "198.51.100.7"), deny(2, "2001:db8:1::7/128")];
    dp.apply(&entries, &[]).unwrap();
    let before = dp.counters().unwrap();
    for a in denied {
        assert_eq!(pair.ping(a, COUNT, size).unwrap(), 0, "{a} is denied");
    }
    for a in allowed {
        assert_eq!(
            pair.ping(a, COUNT, size).unwrap(),
            COUNT,
            "{a} is not denied"
        );
    }
    let after = dp.counters().unwrap();
    assert_eq!(
        after.dropped_packets - before.dropped_packets,
        2 * u64::from(COUNT)
    );
    assert!(
        after.dropped_bytes - before.dropped_bytes >= 2 * u64::from(COUNT) * u64::from(size),
        "byte counters use the whole frame"
    );
    assert_eq!(
        after.unparsable_packets, before.unparsable_packets,
        "every frame, tagged or not, was parsed"
    );
    let hits = dp.hits().unwrap();
    assert_eq!(hits[&1].packets, u64::from(COUNT));
    assert_eq!(hits[&2].packets, u64::from(COUNT));

    let keys: Vec<_> = entries.iter().map(|r| (r.target, r.list)).collect();
    dp.apply(&[], &keys).unwrap();
    for a in denied {
        assert_eq!(
            pair.ping(a, COUNT, size).unwrap(),
            COUNT,
            "{a} after removal"
        );
    }
}

#[test]
fn plain_veth() {
    block_and_unblock("pl", PairConfig::default(), 56);
}

#[test]
fn vlan_tagged_frames_are_parsed() {
    // With txvlan off on the sender, the 802.1Q tag is in the frame bytes
    // the receiver's XDP program sees: a drop proves the tag was parsed, as
    // an unparsed tag would make the frame unparsable, and those pass.
    block_and_unblock(
        "vl",
        PairConfig {
            vlan: Some(100),
            ..PairConfig::default()
        },
        56,
    );
}

#[test]
fn jumbo_mtu_9000() {
    // Native XDP on an MTU-9000 veth accepts only frags-aware programs.
    block_and_unblock(
        "jm",
        PairConfig {
            mtu: 9000,
            vlan: None,
        },
        8_000,
    );
}
