//! A whole list replaced at full capacity.

use std::net::{IpAddr, Ipv4Addr};

use denylist::{
    dataplane::{Dataplane, Layout},
    model::{List, Rule, Target},
};
use denylist_tests::{XDP_DROP, XDP_PASS, frame::Spec, require_root, run};

use crate::common::target;

#[test]
fn a_whole_list_replaced_at_full_capacity_fits() {
    require_root();
    let capacity = 256u32;
    let mut dp =
        Dataplane::load(Layout::new(u64::from(capacity)).unwrap()).expect("load the program");
    let hosts = |base: u32, count: u32, first_id: u32| -> Vec<Rule> {
        (0..count)
            .map(|i| Rule {
                id: first_id + i,
                target: Target::host(IpAddr::V4(Ipv4Addr::from(base + i))),
                list: List::Deny,
                monitor: false,
                expires_ms: None,
            })
            .collect()
    };
    let keys = |rules: &[Rule]| -> Vec<(Target, List)> {
        rules.iter().map(|r| (r.target, r.list)).collect()
    };
    let old = hosts(0xC612_0000, capacity, 1);
    dp.apply(&old, &[]).expect("a full list");
    // Every address replaced in one change: the maps never hold both.
    let new = hosts(0xC612_1000, capacity, 1_000);
    dp.apply(&new, &keys(&old))
        .expect("a replaced list of the capacity's size fits");
    // Again with a prefix in the same change, which splits the batch.
    let mut newer = hosts(0xC612_2000, capacity - 1, 2_000);
    newer.push(Rule {
        id: 3_000,
        target: target("203.0.113.0/24"),
        list: List::Deny,
        monitor: false,
        expires_ms: None,
    });
    dp.apply(&newer, &keys(&new))
        .expect("a replaced list with a prefix fits");
    assert_eq!(dp.len(), capacity as usize);
    assert!(dp.drift().unwrap().is_empty());
    let verdict = |dp: &mut Dataplane, ip: &str| run(dp, &Spec::new(ip.parse().unwrap()).build());
    assert_eq!(verdict(&mut dp, "198.18.32.5"), XDP_DROP, "the newest list");
    assert_eq!(verdict(&mut dp, "203.0.113.9"), XDP_DROP, "its prefix");
    assert_eq!(
        verdict(&mut dp, "198.18.16.5"),
        XDP_PASS,
        "not the one before"
    );
    assert_eq!(verdict(&mut dp, "198.18.0.5"), XDP_PASS, "nor the first");
    let over = hosts(0xC612_3000, 1, 4_000);
    assert!(
        dp.apply(&over, &[]).is_err(),
        "one more than the capacity is still refused"
    );
}
