//! Reading the kernel's maps back (verify's drift check) sees every element,
//! across the many chunks of a batched read of a big map, and only real drift.

use std::net::{IpAddr, Ipv4Addr};

use aya::maps::{HashMap as BpfHashMap, MapData};
use denylist::{
    dataplane::{Dataplane, Layout},
    model::{List, Rule, Target},
};
use denylist_common::{ExactValue, MAP_EXACT_V4};
use denylist_tests::{daemon::Home, require_root};

#[test]
fn drift_reads_back_every_element_of_a_big_map() {
    require_root();
    let home = Home::new("readback");
    let dir = home.bpffs.join("gen");
    std::fs::create_dir_all(&dir).unwrap();
    let n = 40_000u32;
    let mut dp = Dataplane::load_at(Layout::new(u64::from(n) + 16).unwrap(), Some(&dir)).unwrap();
    let addr = |i: u32| Ipv4Addr::from(0x1400_0000 + i);
    let rules: Vec<Rule> = (0..n)
        .map(|i| Rule {
            id: i + 1,
            target: Target::host(addr(i).into()),
            list: List::Deny,
            monitor: false,
            expires_ms: None,
        })
        .collect();
    dp.apply(&rules, &[]).unwrap();
    assert_eq!(
        dp.drift().unwrap(),
        [],
        "{n} entries read back as installed"
    );

    // Behind the data plane's back: one entry gone, one changed, one added.
    let mut map: BpfHashMap<MapData, [u8; 4], ExactValue> = BpfHashMap::try_from(
        aya::maps::Map::HashMap(MapData::from_pin(dir.join(MAP_EXACT_V4)).unwrap()),
    )
    .unwrap();
    map.remove(&addr(7).octets()).unwrap();
    let mut changed = map.get(&addr(30_000).octets(), 0).unwrap();
    changed.deny_id = 999_999;
    map.insert(addr(30_000).octets(), changed, 0).unwrap();
    let stranger = Ipv4Addr::new(203, 0, 113, 9);
    map.insert(stranger.octets(), changed, 0).unwrap();
    let host = |a: Ipv4Addr| (Target::host(IpAddr::V4(a)), List::Deny);
    let mut want = vec![host(addr(7)), host(addr(30_000)), host(stranger)];
    want.sort();
    assert_eq!(dp.drift().unwrap(), want);
}
