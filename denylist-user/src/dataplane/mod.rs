//! The data plane: the XDP program, its maps, links and pins, and the one
//! place that writes entries into the kernel.
//!
//! Changes go in an order that keeps each packet's verdict either the old or
//! the new one (docs/dataplane.md has the argument), and a batch is all or
//! nothing: when a step fails, the steps already done are undone.

mod alloc;
mod apply;
mod attach;
mod batch;
mod change;
mod clock;
mod detect;
mod error;
#[cfg(test)]
pub(crate) mod fake;
mod filter;
mod iface;
mod layout;
mod nodes;
pub mod object;
mod pins;
mod readback;
mod region;
mod sessions;
mod stage;
pub mod sys;
pub mod trie;

use std::{
    collections::HashMap,
    net::IpAddr,
    os::fd::{AsFd, BorrowedFd},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, AtomicU64},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::Map,
    programs::{Xdp, xdp::XdpLinkId},
};
pub use change::ChangeList;
pub use clock::tai_offset_ms;
use denylist_common::{
    ExactValue, FLAG_ALLOW, FLAG_MONITOR, FLAG_PRESENT, MAP_GATE, MAP_NODES_V4, MAP_NODES_V6,
    MAP_ROOT_V4, MAP_ROOT_V6, MAP_RULES, MAP_SLOTS_V4, MAP_SLOTS_V6, NODE_SLOTS, PROGRAM_NAME,
    SLOTS_PER_PAIR, pack_word,
};
pub use detect::{DetectLevels, Detector, Epoch, Measured, key_of, target_of};
pub use error::DataplaneError;
pub use filter::{Filter, PinnedFilter, content_needs};
pub use layout::{Layout, LayoutError, MAX_CAPACITY, MIN_CAPACITY, Needs, needs};
use nodes::TrieMaps;
pub use pins::{Cleared, Pins, PinsError, PinsLock, ensure_bpffs_mounted, lock_pins, unpin_all};
use region::{NodeCell, Region, RuleCell};
pub use sessions::{DumpMark, SessionSet, SessionWatch, SessionWatchError};
use trie::Prefixes;

use crate::model::{List, Rule, Target};

/// The maps with an element per entry, which a million-entry deploy fills
/// and reads a few times over: foldhash, seeded per process, hashes a key in
/// a fraction of SipHash's time.
type PerEntry<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Exact-address values waiting for one batched write: the last value per
/// address wins, `None` deletes.
type ExactBatch = PerEntry<IpAddr, Option<ExactValue>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Installed {
    id: u32,
    word: u64,
}

/// The program, its maps, and what user space has put into them.
pub struct Dataplane {
    ebpf: Ebpf,
    prefixes: Prefixes,
    installed: PerEntry<(Target, List), Installed>,
    /// Installed targets per (is IPv4, prefix length), for `decide`.
    lengths: HashMap<(bool, u8), usize>,
    layout: Layout,
    links: HashMap<String, XdpLinkId>,
    /// The kernel's id of each pinned link, to pin it again if its pin is
    /// deleted: aya hands out no borrowed fd of a link it holds.
    link_ids: HashMap<String, u32>,
    /// Where the maps are pinned, if they are.
    pin_dir: Option<PathBuf>,
    /// Possible CPUs: the per-CPU maps' and the sketches' count.
    cpus: u32,
    detector: Detector,
    /// Entries written ahead of a deploy, and the gate that makes them live.
    gate: stage::Gate,
}

/// The packed flags and expiry of a rule, as the kernel reads them.
pub fn word_of(r: &Rule) -> u64 {
    let mut flags = FLAG_PRESENT;
    if r.monitor {
        flags |= FLAG_MONITOR;
    }
    if r.list == List::Allow {
        flags |= FLAG_ALLOW;
    }
    pack_word(flags, r.expires_ms.unwrap_or(0))
}

fn map_fd<'a>(ebpf: &'a Ebpf, name: &'static str) -> Result<BorrowedFd<'a>, DataplaneError> {
    match ebpf.map(name) {
        Some(Map::Array(d)) => Ok(d.fd().as_fd()),
        _ => Err(DataplaneError::MissingMap { name }),
    }
}

fn region<T>(ebpf: &Ebpf, name: &'static str, len: usize) -> Result<Region<T>, DataplaneError> {
    Region::mmap(map_fd(ebpf, name)?, len).map_err(|source| DataplaneError::Mmap { name, source })
}

impl Dataplane {
    /// Loads the program with fresh, unpinned maps sized for `layout`;
    /// nothing is attached.
    pub fn load(layout: Layout) -> Result<Self, DataplaneError> {
        Self::load_at(layout, None)
    }

    /// Loads the program with fresh maps, pinned under `pins` when given (a
    /// new, empty directory on bpffs) so they outlive this process.
    pub fn load_at(layout: Layout, pins: Option<&Path>) -> Result<Self, DataplaneError> {
        let mut loader = EbpfLoader::new();
        let cpus = aya::util::nr_cpus()
            .ok()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(DataplaneError::Cpus)?;
        let sizes = layout.max_entries(cpus);
        let paths: Vec<(&str, PathBuf)> = match pins {
            Some(dir) => sizes.iter().map(|(n, _)| (*n, dir.join(n))).collect(),
            None => Vec::new(),
        };
        for (name, n) in sizes {
            loader.map_max_entries(name, n);
        }
        for (name, path) in &paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(object::DENYLIST)?;
        let size = |name| {
            sizes
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(0, |(_, s)| *s as usize)
        };
        let family = |root, nodes, slots| -> Result<TrieMaps, DataplaneError> {
            Ok(TrieMaps {
                root: region::<AtomicU32>(&ebpf, root, size(root) * NODE_SLOTS)?,
                nodes: region::<NodeCell>(&ebpf, nodes, size(nodes))?,
                slots: region::<AtomicU32>(&ebpf, slots, SLOTS_PER_PAIR * size(slots))?,
            })
        };
        let prefixes = Prefixes::new(
            family(MAP_ROOT_V4, MAP_NODES_V4, MAP_SLOTS_V4)?,
            family(MAP_ROOT_V6, MAP_NODES_V6, MAP_SLOTS_V6)?,
            region::<RuleCell>(&ebpf, MAP_RULES, size(MAP_RULES))?,
        );
        program(&mut ebpf).load().map_err(DataplaneError::Program)?;
        let detector = Detector::open(&ebpf, cpus)?;
        let gate = stage::Gate::new(region::<AtomicU64>(&ebpf, MAP_GATE, 1)?);
        Ok(Self {
            ebpf,
            prefixes,
            installed: PerEntry::default(),
            lengths: HashMap::new(),
            layout,
            links: HashMap::new(),
            link_ids: HashMap::new(),
            pin_dir: pins.map(Path::to_path_buf),
            cpus,
            detector,
            gate,
        })
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The loaded program, e.g. for BPF_PROG_TEST_RUN.
    pub fn program(&mut self) -> &mut Xdp {
        program(&mut self.ebpf)
    }

    /// What the prefix tries hold: nodes below the roots and the run slots
    /// of their blocks, per family (IPv4, IPv6).
    pub fn trie_use(&self) -> ((u32, u32), (u64, u64)) {
        (self.prefixes.nodes_in_use(), self.prefixes.slots_in_use())
    }

    /// The rate detector of this generation's program.
    pub fn detector(&mut self) -> &mut Detector {
        &mut self.detector
    }

    /// Possible CPUs, as the per-CPU maps count them.
    pub fn cpus(&self) -> u32 {
        self.cpus
    }

    /// Entries in the kernel, both lists and both families.
    pub fn len(&self) -> usize {
        self.installed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.installed.is_empty()
    }
}

fn rule_of(target: Target, list: List, i: Installed) -> Rule {
    let expires = denylist_common::word_expiry_ns(i.word) / 1_000_000;
    Rule {
        id: i.id,
        target,
        list,
        monitor: i.word & FLAG_MONITOR != 0,
        expires_ms: (expires != 0).then_some(expires),
    }
}

fn program(ebpf: &mut Ebpf) -> &mut Xdp {
    ebpf.program_mut(PROGRAM_NAME)
        .and_then(|p| <&mut Xdp>::try_from(p).ok())
        .expect("the embedded object holds the XDP program `denylist`")
}
