//! The tables the bench installs: random entries drawn like real lists,
//! and the program loaded with them.

use std::{
    collections::HashSet,
    net::{Ipv4Addr, Ipv6Addr},
    time::Instant,
};

use anyhow::{Context as _, Result, ensure};
use aya::{
    maps::{Array, Map, MapData},
    programs::Xdp,
};
use denylist::{
    dataplane::{Dataplane, Layout},
    model::{List, Rule, Target},
};
use denylist_common::{
    BASE_INLINE, MAP_NODES_V4, MAP_NODES_V6, MAP_ROOT_V4, MAP_ROOT_V6, MAP_SLOTS_V4, MAP_SLOTS_V6,
    Node, PREFIX_MAPS, ROOT_NODES, RootRow, SLOT_CHILD, SlotPair,
};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rand::{Rng, SeedableRng, distr::weighted::WeightedIndex, prelude::Distribution, rngs::StdRng};

use super::{
    Sizes,
    kind::{probe_entries, reserved},
};

/// Random tables drawn like real lists, from a fixed seed so every run
/// measures the same tables.
pub(crate) struct Gen {
    rng: StdRng,
    reserved: [IpNet; 4],
    v4_len: (Vec<u8>, WeightedIndex<u32>),
    v6_len: (Vec<u8>, WeightedIndex<u32>),
    /// /32 allocations that IPv6 entries cluster in, as in RIR data.
    allocations: Vec<u32>,
}

/// IPv4 prefix lengths of blocklists: mostly /24, from /16 to /31.
const V4_LENGTHS: [(u8, u32); 16] = [
    (16, 30),
    (17, 10),
    (18, 15),
    (19, 20),
    (20, 30),
    (21, 25),
    (22, 40),
    (23, 30),
    (24, 650),
    (25, 20),
    (26, 20),
    (27, 25),
    (28, 25),
    (29, 25),
    (30, 20),
    (31, 15),
];

/// IPv6 prefix lengths: mostly /32 (allocations), /48 (sites), /56 and /64.
const V6_LENGTHS: [(u8, u32); 12] = [
    (29, 20),
    (32, 200),
    (36, 20),
    (40, 30),
    (44, 30),
    (46, 20),
    (48, 380),
    (52, 30),
    (56, 150),
    (60, 30),
    (62, 10),
    (64, 80),
];

/// Where the RIRs hand out IPv6: (block, its length).
const V6_BLOCKS: [(u32, u8); 6] = [
    (0x2001_0000, 16),
    (0x2400_0000, 12),
    (0x2600_0000, 12),
    (0x2800_0000, 12),
    (0x2a00_0000, 12),
    (0x2c00_0000, 12),
];

/// How many /32 allocations the IPv6 entries cluster in.
const V6_ALLOCATIONS: usize = 3_000;

fn weights(table: &[(u8, u32)]) -> (Vec<u8>, WeightedIndex<u32>) {
    (
        table.iter().map(|w| w.0).collect(),
        WeightedIndex::new(table.iter().map(|w| w.1)).expect("positive weights"),
    )
}

impl Gen {
    pub(crate) fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let reserved = reserved();
        let mut allocations = HashSet::new();
        while allocations.len() < V6_ALLOCATIONS {
            let (block, len) = V6_BLOCKS[rng.random_range(0..V6_BLOCKS.len())];
            let a = block | (rng.random::<u32>() >> len);
            let alloc = IpNet::V6(
                Ipv6Net::new(Ipv6Addr::from(u128::from(a) << 96), 32).expect("length 32"),
            );
            if !reserved.iter().any(|r| overlap(r, &alloc)) {
                allocations.insert(a);
            }
        }
        let mut allocations: Vec<u32> = allocations.into_iter().collect();
        allocations.sort_unstable();
        Self {
            rng,
            reserved,
            v4_len: weights(&V4_LENGTHS),
            v6_len: weights(&V6_LENGTHS),
            allocations,
        }
    }

    fn v4(&mut self, len: u8) -> IpNet {
        // Unicast space, 1.0.0.0 to 223.255.255.255.
        let a = self.rng.random_range(0x0100_0000u32..0xe000_0000);
        IpNet::V4(
            Ipv4Net::new(Ipv4Addr::from(a), len)
                .expect("length ≤ 32")
                .trunc(),
        )
    }

    fn v6(&mut self, len: u8) -> IpNet {
        let alloc = self.allocations[self.rng.random_range(0..self.allocations.len())];
        let a = (u128::from(alloc) << 96)
            | u128::from(self.rng.random::<u64>()) << 32
            | u128::from(self.rng.random::<u32>());
        IpNet::V6(
            Ipv6Net::new(Ipv6Addr::from(a), len)
                .expect("length ≤ 128")
                .trunc(),
        )
    }

    /// `n` distinct entries from `draw`, none touching the reserved ranges
    /// nor anything in `taken`, which they join.
    fn distinct(
        &mut self,
        n: usize,
        taken: &mut HashSet<IpNet>,
        mut draw: impl FnMut(&mut Self) -> IpNet,
    ) -> Vec<IpNet> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let e = draw(self);
            if !self.reserved.iter().any(|r| overlap(r, &e)) && taken.insert(e) {
                out.push(e);
            }
        }
        out
    }

    pub(crate) fn hosts_v4(&mut self, n: usize, taken: &mut HashSet<IpNet>) -> Vec<IpNet> {
        self.distinct(n, taken, |g| g.v4(32))
    }

    pub(super) fn hosts_v6(&mut self, n: usize, taken: &mut HashSet<IpNet>) -> Vec<IpNet> {
        self.distinct(n, taken, |g| g.v6(128))
    }

    fn prefixes_v4(&mut self, n: usize, taken: &mut HashSet<IpNet>) -> Vec<IpNet> {
        self.distinct(n, taken, |g| {
            let len = g.v4_len.0[g.v4_len.1.sample(&mut g.rng)];
            g.v4(len)
        })
    }

    fn prefixes_v6(&mut self, n: usize, taken: &mut HashSet<IpNet>) -> Vec<IpNet> {
        self.distinct(n, taken, |g| {
            let len = g.v6_len.0[g.v6_len.1.sample(&mut g.rng)];
            g.v6(len)
        })
    }
}

fn overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(b) || b.contains(a)
}

/// A table: what goes in, as data-plane rules.
pub(crate) struct Tables {
    pub(crate) entries: Vec<(IpNet, List)>,
}

impl Tables {
    /// The large tables of `sizes`, plus the probes' entries.
    pub(crate) fn large(sizes: Sizes, gen_: &mut Gen) -> Self {
        let mut taken = HashSet::new();
        let mut entries = probe_entries();
        let deny = |v: Vec<IpNet>| v.into_iter().map(|n| (n, List::Deny));
        let allow = |v: Vec<IpNet>| v.into_iter().map(|n| (n, List::Allow));
        entries.extend(deny(gen_.hosts_v4(sizes.exact_v4, &mut taken)));
        entries.extend(deny(gen_.prefixes_v4(sizes.prefix_v4, &mut taken)));
        entries.extend(deny(gen_.hosts_v6(sizes.exact_v6, &mut taken)));
        entries.extend(deny(gen_.prefixes_v6(sizes.prefix_v6, &mut taken)));
        entries.extend(allow(gen_.prefixes_v4(sizes.allow_v4, &mut taken)));
        entries.extend(allow(gen_.prefixes_v6(sizes.allow_v6, &mut taken)));
        Self { entries }
    }

    /// `n` IPv4 deny prefixes plus the probes' entries.
    pub(super) fn prefixes(n: usize, gen_: &mut Gen) -> Self {
        let mut taken = HashSet::new();
        let mut entries = probe_entries();
        entries.extend(
            gen_.prefixes_v4(n, &mut taken)
                .into_iter()
                .map(|n| (n, List::Deny)),
        );
        Self { entries }
    }

    fn rules(&self) -> Vec<Rule> {
        self.entries
            .iter()
            .zip(1..)
            .map(|(&(net, list), id)| Rule {
                id,
                target: Target::from(net),
                list,
                monitor: false,
                expires_ms: None,
            })
            .collect()
    }

    /// A layout sized the way denylistd sizes it: the exact maps for the
    /// capacity, the prefix arrays for what these tables need (with room to
    /// grow), within the capacity's limits.
    fn layout(&self) -> Result<(Layout, NodeUse)> {
        let most = Layout::new(self.entries.len() as u64 + 1024)?;
        let needs = denylist::dataplane::needs(self.entries.iter().map(|(n, _)| Target::from(*n)));
        let layout = most.fitting(needs);
        ensure!(
            layout.holds(needs),
            "the tables need {needs:?}, beyond what the capacity allows ({most:?})"
        );
        Ok((
            layout,
            NodeUse {
                prefixes: needs.rules,
                v4: needs.nodes_v4,
                v6: needs.nodes_v6,
                pool_v4: layout.nodes_v4,
                pool_v6: layout.nodes_v6,
                kernel_v4: 0,
                kernel_v6: 0,
                slots_v4: 0,
                slots_v6: 0,
                memlock: 0,
                rules_pool: layout.prefix_rules,
            },
        ))
    }
}

/// The prefix structure of a table: its trie nodes, their runs, and the
/// kernel memory of the arrays that hold them.
#[derive(serde::Serialize)]
pub(crate) struct NodeUse {
    /// Prefix rules.
    pub(super) prefixes: u32,
    /// Nodes the tables need, per family (`trie::needs`).
    pub(super) v4: u32,
    pub(super) v6: u32,
    /// The node pools the bench loaded.
    pub(super) pool_v4: u32,
    pub(super) pool_v6: u32,
    /// Nodes in use, counted in the kernel's maps after the load.
    kernel_v4: u32,
    kernel_v6: u32,
    /// Run slots in use (blocks of size classes), per family.
    pub(super) slots_v4: u64,
    pub(super) slots_v6: u64,
    /// `memlock` of the roots, nodes, runs and rules, as loaded.
    pub(super) memlock: u64,
    /// The rules array the bench loaded.
    pub(super) rules_pool: u32,
}

/// Bytes of a node of the previous structure: 256 four-byte slots.
pub(super) const DENSE_NODE: u64 = 1024;

impl NodeUse {
    /// What the same prefixes took in 256-slot nodes of 1 KiB (the
    /// structure before runs), with pools and rules sized alike.
    pub(super) fn dense_bytes(&self) -> u64 {
        u64::from(2 * ROOT_NODES + self.pool_v4 + self.pool_v6) * DENSE_NODE + self.rules_bytes()
    }

    /// What the nodes, runs, roots and rules in use take, without the
    /// room the arrays keep to grow into.
    pub(super) fn in_use_bytes(&self) -> u64 {
        u64::from(2 * ROOT_NODES) * DENSE_NODE
            + u64::from(self.v4 + self.v6) * size_of::<Node>() as u64
            + 4 * (self.slots_v4 + self.slots_v6)
            + 24 * u64::from(self.prefixes)
    }

    fn rules_bytes(&self) -> u64 {
        24 * (u64::from(self.rules_pool) + 1)
    }
}

/// `memlock` of the program's maps named `names`, from this process's
/// fdinfo.
pub(crate) fn maps_memlock(prog: &Xdp, names: &[&str]) -> Result<u64> {
    let ids = prog
        .info()?
        .map_ids()?
        .context("the kernel lists no maps of the program")?;
    let held = crate::memory::maps(std::process::id())?;
    let maps: Vec<_> = ids
        .iter()
        .filter_map(|id| held.get(id))
        .filter(|m| names.contains(&m.name.as_str()))
        .collect();
    ensure!(
        maps.len() == names.len(),
        "found {} of the program's maps {names:?} in /proc/self/fdinfo",
        maps.len(),
    );
    Ok(maps.iter().map(|m| m.bytes).sum())
}

/// The program loaded with `tables` installed; checks the node count the
/// kernel holds against the one computed.
pub(crate) fn load(tables: &Tables, what: &str) -> Result<(Dataplane, NodeUse)> {
    let (layout, mut nodes) = tables.layout()?;
    let mut dp =
        Dataplane::load(layout).with_context(|| format!("loading the program ({what})"))?;
    let start = Instant::now();
    dp.apply(&tables.rules(), &[])
        .with_context(|| format!("installing the {what} tables"))?;
    eprintln!(
        "bench: packet: installed {} entries ({what}) in {:.2?}",
        tables.entries.len(),
        start.elapsed()
    );
    (nodes.kernel_v4, nodes.kernel_v6) = kernel_nodes(dp.program())?;
    ((_, _), (nodes.slots_v4, nodes.slots_v6)) = dp.trie_use();
    nodes.memlock = maps_memlock(dp.program(), PREFIX_MAPS)?;
    ensure!(
        (nodes.kernel_v4, nodes.kernel_v6) == (nodes.v4, nodes.v6),
        "{what}: the kernel holds {}/{} IPv4/IPv6 trie nodes, the bench computed {}/{}",
        nodes.kernel_v4,
        nodes.kernel_v6,
        nodes.v4,
        nodes.v6
    );
    Ok((dp, nodes))
}

/// Nodes reachable from the roots in the program's maps: the nodes in
/// use. (A cell written once stays written after its node is copied or
/// freed, so counting written cells would count old copies too.)
fn kernel_nodes(prog: &Xdp) -> Result<(u32, u32)> {
    let ids = prog
        .info()?
        .map_ids()?
        .context("the kernel lists no maps of the program")?;
    let mut maps = std::collections::HashMap::new();
    for id in ids {
        let data = MapData::from_id(id)?;
        let name = data.info()?.name_as_str().unwrap_or_default().to_owned();
        maps.insert(name, data);
    }
    let mut take = |name: &str| {
        maps.remove(name)
            .with_context(|| format!("the program has no {name} map"))
    };
    let mut count = |root: &str, nodes: &str, slots: &str| -> Result<u32> {
        let root: Array<MapData, RootRow> = Array::try_from(Map::from_map_data(take(root)?)?)?;
        let nodes: Array<MapData, Node> = Array::try_from(Map::from_map_data(take(nodes)?)?)?;
        let slots: Array<MapData, SlotPair> = Array::try_from(Map::from_map_data(take(slots)?)?)?;
        let mut todo = Vec::new();
        for row in 0..ROOT_NODES {
            let r = root.get(&row, 0)?;
            todo.extend(r.slots.iter().filter(|&&s| s & SLOT_CHILD != 0).copied());
        }
        let mut seen = 0;
        while let Some(child) = todo.pop() {
            seen += 1;
            let n = nodes.get(&(child & !SLOT_CHILD), 0)?;
            for k in 0..n.runs() {
                let s = if n.base == BASE_INLINE {
                    n.inline[k as usize]
                } else {
                    let i = n.base + k;
                    slots.get(&(i / 2), 0)?[(i % 2) as usize]
                };
                if s & SLOT_CHILD != 0 {
                    todo.push(s);
                }
            }
        }
        Ok(seen)
    };
    Ok((
        count(MAP_ROOT_V4, MAP_NODES_V4, MAP_SLOTS_V4)?,
        count(MAP_ROOT_V6, MAP_NODES_V6, MAP_SLOTS_V6)?,
    ))
}
