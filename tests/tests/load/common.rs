//! The sandbox, waiting, and the live filter read back from the kernel.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    os::fd::AsFd,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use aya::{
    maps::{HashMap as BpfHashMap, Map, MapData, MapInfo},
    programs::{
        ProgramFd,
        links::{FdLink, PinnedLink},
        loaded_programs,
    },
};
use denylist::model::Target;
use denylist_common::{ExactValue, MAP_EXACT_V4, MAP_EXACT_V6};
use denylist_tests::{
    daemon::Home,
    netns::{Pair, PairConfig},
    require_root,
};

pub(crate) fn long() -> bool {
    std::env::var_os("DENYLIST_LONG").is_some()
}

pub(crate) fn target(s: &str) -> Target {
    Target::parse(s).unwrap()
}

/// The program a pinned link runs now, for BPF_PROG_TEST_RUN, with its
/// exact IPv4 map: the live filter itself, not a copy.
pub(crate) struct Live {
    pub(crate) prog_id: u32,
    pub(crate) prog: ProgramFd,
    pub(crate) exact_v4: Map,
}

pub(crate) fn linked_program_id(link: &Path) -> u32 {
    let fd = FdLink::from(PinnedLink::from_pin(link).expect("the pinned link"));
    fd.info().expect("link info").program_id()
}

impl Live {
    pub(crate) fn open(link: &Path) -> Self {
        let prog_id = linked_program_id(link);
        let info = loaded_programs()
            .filter_map(Result::ok)
            .find(|p| p.id() == prog_id)
            .expect("the linked program is loaded");
        let map_ids = info
            .map_ids()
            .expect("map ids")
            .expect("the program's maps");
        let exact_v4 = map_ids
            .into_iter()
            .find(|&id| MapInfo::from_id(id).is_ok_and(|m| m.name_as_str() == Some(MAP_EXACT_V4)))
            .map(|id| Map::HashMap(MapData::from_id(id).expect("the exact map")))
            .expect("the program uses EXACT_V4");
        let prog = info.fd().expect("the program's fd");
        Self {
            prog_id,
            prog,
            exact_v4,
        }
    }

    /// One BPF_PROG_TEST_RUN of `frame`: a raw call on the program's fd,
    /// since aya makes an `Xdp` of a loaded program only with a type from
    /// aya-obj, which the tests do not depend on.
    pub(crate) fn run(&self, frame: &[u8]) -> u32 {
        denylist_tests::test_run_fd(self.prog.as_fd(), frame, 1)
            .expect("BPF_PROG_TEST_RUN")
            .0
    }

    /// The kernel word of an exact IPv4 deny entry in this program's map.
    pub(crate) fn deny_word(&self, ip: Ipv4Addr) -> Option<u64> {
        let h: BpfHashMap<_, [u8; 4], ExactValue> =
            BpfHashMap::try_from(&self.exact_v4).expect("a hash map");
        h.get(&ip.octets(), 0)
            .ok()
            .map(|v| v.deny)
            .filter(|&w| w != 0)
    }
}

/// The live generation's exact maps, read from their pins: both families,
/// every key with its value.
pub(crate) fn pinned_exact(home: &Home) -> BTreeMap<IpAddr, ExactValue> {
    let gen_dir = std::fs::read_dir(&home.bpffs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("gen-"))
        .expect("a generation");
    let mut out = BTreeMap::new();
    let v4 = Map::HashMap(MapData::from_pin(gen_dir.join(MAP_EXACT_V4)).unwrap());
    let h: BpfHashMap<_, [u8; 4], ExactValue> = BpfHashMap::try_from(&v4).unwrap();
    for kv in h.iter() {
        let (k, v) = kv.unwrap();
        out.insert(IpAddr::from(k), v);
    }
    let v6 = Map::HashMap(MapData::from_pin(gen_dir.join(MAP_EXACT_V6)).unwrap());
    let h: BpfHashMap<_, [u8; 16], ExactValue> = BpfHashMap::try_from(&v6).unwrap();
    for kv in h.iter() {
        let (k, v) = kv.unwrap();
        out.insert(IpAddr::from(k), v);
    }
    out
}

pub(crate) fn sandbox(tag: &str) -> (Pair, Home) {
    require_root();
    (
        Pair::new(tag, PairConfig::default()).expect("veth pair"),
        Home::new(tag),
    )
}

pub(crate) fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}
