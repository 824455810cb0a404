//! Reading the kernel's maps back (verify's drift check) sees every element,
//! across the many chunks of a batched read of a big map, and only real drift.

use std::net::{IpAddr, Ipv4Addr};

use aya::maps::{HashMap as BpfHashMap, MapData};
use denylist::{
    dataplane::{Dataplane, Layout},
    model::{List, Rule, Target},
};
use denylist_common::{ExactValue, FLAG_PENDING, FLAG_PRESENT, MAP_EXACT_V4};
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

/// Entries written ahead of a deploy sit in the map with the pending flag,
/// which is no drift; the deploy that brings them as written makes them live
/// through the gate without writing them again, and the next write ahead
/// rewrites them as ordinary entries before it closes the gate.
#[test]
fn entries_written_ahead_are_taken_as_written() {
    require_root();
    let home = Home::new("ahead");
    let dir = home.bpffs.join("gen");
    std::fs::create_dir_all(&dir).unwrap();
    let mut dp = Dataplane::load_at(Layout::new(4_096).unwrap(), Some(&dir)).unwrap();
    let addr = |i: u32| Ipv4Addr::from(0x1400_0000 + i);
    let rule = |i: u32| Rule {
        id: i + 1,
        target: Target::host(addr(i).into()),
        list: List::Deny,
        monitor: false,
        expires_ms: None,
    };
    let map = || -> BpfHashMap<MapData, [u8; 4], ExactValue> {
        BpfHashMap::try_from(aya::maps::Map::HashMap(
            MapData::from_pin(dir.join(MAP_EXACT_V4)).unwrap(),
        ))
        .unwrap()
    };
    let word = |i: u32| map().get(&addr(i).octets(), 0).unwrap().deny;
    let first: Vec<Rule> = (0..1_000).map(rule).collect();
    assert_eq!(dp.stage(&first, &[]).unwrap(), 1_000);
    assert_eq!(word(5) & (FLAG_PRESENT | FLAG_PENDING), FLAG_PENDING);
    assert_eq!(dp.drift().unwrap(), [], "written ahead is no drift");

    dp.apply(&first, &[]).unwrap();
    assert_eq!(
        word(5) & (FLAG_PRESENT | FLAG_PENDING),
        FLAG_PENDING,
        "live through the gate, not written again"
    );
    assert_eq!(dp.drift().unwrap(), []);
    assert_eq!(dp.len(), 1_000);

    let second: Vec<Rule> = (1_000..1_010).map(rule).collect();
    assert_eq!(dp.stage(&second, &[]).unwrap(), 10);
    assert_eq!(
        word(5) & (FLAG_PRESENT | FLAG_PENDING),
        FLAG_PRESENT,
        "made ordinary before the gate closed"
    );
    // Behind the data plane's back, a pending word where nothing is
    // pending: the gate would make it live, so it is drift.
    let mut m = map();
    let mut forged = m.get(&addr(5).octets(), 0).unwrap();
    forged.deny = FLAG_PENDING;
    m.insert(addr(3_000).octets(), forged, 0).unwrap();
    assert_eq!(
        dp.drift().unwrap(),
        [(Target::host(addr(3_000).into()), List::Deny)]
    );
}
