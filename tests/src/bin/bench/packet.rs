//! Issue 5 §1: per-packet cost under BPF_PROG_TEST_RUN. denylist's program
//! with empty and with large tables, xdp-filter (IP-only and all-features
//! builds) with 10,000 exact entries per family, and the bare
//! `return XDP_DROP` floor, all on the same frames in one run. Every run of
//! every program is interleaved with the others, so drift on a shared
//! machine hits them all alike.

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsFd, BorrowedFd},
    path::Path,
    time::Instant,
};

use anyhow::{Context as _, Result, bail, ensure};
use aya::{
    Ebpf,
    maps::{Array, Map, MapData, PerCpuHashMap, PerCpuValues},
    programs::{ProgramFd, ProgramInfo, Xdp},
};
use denylist::{
    dataplane::Dataplane,
    layout::Layout,
    object,
    target::Target,
    trie,
    verdict::{List, Rule},
};
use denylist_common::{MAP_NODES_V4, MAP_NODES_V6, Node, ROOT_NODES};
use denylist_tests::{
    XDP_DROP, XDP_PASS,
    frame::{ETH_P_8021Q, Spec},
    netns::Netns,
};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rand::{Rng, SeedableRng, distr::weighted::WeightedIndex, prelude::Distribution, rngs::StdRng};
use serde_json::json;

use crate::{
    chart::{self, Series},
    report::{Chart, Goal, Opts, Section, Table, fmt_num},
};

/// How hard to measure and how big the tables are.
struct Plan {
    runs: usize,
    repeat: u32,
    large: Sizes,
    /// Prefix counts of the scaling series.
    scaling: Vec<usize>,
}

/// Entries of the large tables.
#[derive(Clone, Copy, serde::Serialize)]
struct Sizes {
    exact_v4: usize,
    prefix_v4: usize,
    exact_v6: usize,
    prefix_v6: usize,
    allow_v4: usize,
    allow_v6: usize,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                runs: 3,
                repeat: 10_000,
                large: Sizes {
                    exact_v4: 10_000,
                    prefix_v4: 1_000,
                    exact_v6: 1_000,
                    prefix_v6: 1_000,
                    allow_v4: 80,
                    allow_v6: 20,
                },
                scaling: vec![1_000, 10_000],
            }
        } else {
            Self {
                runs: 5,
                repeat: 1_000_000,
                large: Sizes {
                    exact_v4: 1_000_000,
                    prefix_v4: 100_000,
                    exact_v6: 100_000,
                    prefix_v6: 100_000,
                    allow_v4: 8_000,
                    allow_v6: 2_000,
                },
                scaling: vec![1_000, 10_000, 100_000, 1_000_000],
            }
        }
    }
}

/// xdp-filter's maps hold at most this many entries each.
const XDP_FILTER_ENTRIES: usize = 10_000;
const XDP_FILTER_PINS: &str = "/sys/fs/bpf/xdp-filter";

// The probes live in the benchmarking ranges (RFC 2544 198.18.0.0/15,
// RFC 5180 2001:2::/48), which the random tables never touch, so each probe
// takes exactly the path it is named after.
const V4_EXACT: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
/// Inside DENY_V4_DEEP: a prefix longer than /24 sits at the trie's
/// deepest IPv4 level, the most reads a prefix hit costs.
const V4_PREFIX: Ipv4Addr = Ipv4Addr::new(198, 18, 7, 20);
/// Beside DENY_V4_DEEP in the same /24: the walk goes as deep as a hit's
/// and finds nothing, the dearest miss.
const V4_MISS: Ipv4Addr = Ipv4Addr::new(198, 18, 7, 100);
/// Inside DENY_V4_ALLOWED and ALLOW_V4.
const V4_ALLOWED: Ipv4Addr = Ipv4Addr::new(198, 18, 9, 130);
const V6_EXACT: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 1, 1);
/// Inside the /64 DENY_V6_DEEP: seven reads, the longest common length.
const V6_PREFIX: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 7, 0, 0, 0, 0x20);
/// Shares DENY_V6_DEEP's walk down to its last byte.
const V6_MISS: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 8, 0, 0, 0, 1);

fn net(s: &str) -> IpNet {
    s.parse().expect("a valid prefix")
}

/// The probes' own entries: (prefix, list).
fn probe_entries() -> Vec<(IpNet, List)> {
    vec![
        (IpNet::from(IpAddr::from(V4_EXACT)), List::Deny),
        (net("198.18.7.16/28"), List::Deny),
        (net("198.18.9.0/24"), List::Deny),
        (net("198.18.9.128/25"), List::Allow),
        (IpNet::from(IpAddr::from(V6_EXACT)), List::Deny),
        (net("2001:2:0:7::/64"), List::Deny),
    ]
}

/// Ranges the random tables keep out of: the probes', and the frames'
/// destinations.
fn reserved() -> [IpNet; 4] {
    [
        net("198.18.0.0/15"),
        net("192.0.2.0/24"),
        net("2001:2::/48"),
        net("2001:db8::/32"),
    ]
}

/// The kinds of packet the bench sends, each with its frame.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    V4Miss,
    V4Exact,
    V4Prefix,
    V4Allowed,
    V6Miss,
    V6Exact,
    V6Prefix,
    VlanV4,
}

const PATHS: [Kind; 8] = [
    Kind::V4Miss,
    Kind::V4Exact,
    Kind::V4Prefix,
    Kind::V4Allowed,
    Kind::V6Miss,
    Kind::V6Exact,
    Kind::V6Prefix,
    Kind::VlanV4,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::V4Miss => "IPv4 miss",
            Kind::V4Exact => "IPv4 exact hit",
            Kind::V4Prefix => "IPv4 prefix hit",
            Kind::V4Allowed => "IPv4 allowed",
            Kind::V6Miss => "IPv6 miss",
            Kind::V6Exact => "IPv6 exact hit",
            Kind::V6Prefix => "IPv6 prefix hit",
            Kind::VlanV4 => "VLAN IPv4 exact hit",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Kind::V4Miss => "v4 miss",
            Kind::V4Exact => "v4 exact",
            Kind::V4Prefix => "v4 prefix",
            Kind::V4Allowed => "v4 allowed",
            Kind::V6Miss => "v6 miss",
            Kind::V6Exact => "v6 exact",
            Kind::V6Prefix => "v6 prefix",
            Kind::VlanV4 => "VLAN v4",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Kind::V4Miss => "v4_miss",
            Kind::V4Exact => "v4_exact",
            Kind::V4Prefix => "v4_prefix",
            Kind::V4Allowed => "v4_allowed",
            Kind::V6Miss => "v6_miss",
            Kind::V6Exact => "v6_exact",
            Kind::V6Prefix => "v6_prefix",
            Kind::VlanV4 => "vlan_v4",
        }
    }

    fn spec(self) -> Spec {
        let src = |a: Ipv4Addr| Spec::new(a.into());
        match self {
            Kind::V4Miss => src(V4_MISS),
            Kind::V4Exact => src(V4_EXACT),
            Kind::V4Prefix => src(V4_PREFIX),
            Kind::V4Allowed => src(V4_ALLOWED),
            Kind::V6Miss => Spec::new(V6_MISS.into()),
            Kind::V6Exact => Spec::new(V6_EXACT.into()),
            Kind::V6Prefix => Spec::new(V6_PREFIX.into()),
            Kind::VlanV4 => src(V4_EXACT).vlan(ETH_P_8021Q, 100),
        }
    }

    /// denylist's verdict with the large tables.
    fn verdict(self) -> u32 {
        match self {
            Kind::V4Miss | Kind::V4Allowed | Kind::V6Miss => XDP_PASS,
            _ => XDP_DROP,
        }
    }

    /// The path of xdp-filter's this one is held against: an exact list
    /// has no prefixes and no allow entries, so those compare with its
    /// exact hit.
    fn xdp_filter_peer(self) -> Kind {
        match self {
            Kind::V4Prefix | Kind::V4Allowed => Kind::V4Exact,
            Kind::V6Prefix => Kind::V6Exact,
            p => p,
        }
    }

    /// Paths xdp-filter can take with the same frame.
    fn xdp_filter_has(self) -> bool {
        self.xdp_filter_peer() == self
    }
}

/// One program on one frame, measured `runs` times.
struct Probe<'a> {
    prog: BorrowedFd<'a>,
    frame: Vec<u8>,
    want: u32,
    what: String,
    times: Vec<f64>,
}

impl<'a> Probe<'a> {
    fn new(prog: BorrowedFd<'a>, frame: Vec<u8>, want: u32, what: String) -> Self {
        Self {
            prog,
            frame,
            want,
            what,
            times: Vec::new(),
        }
    }

    fn median(&self) -> f64 {
        let mut t = self.times.clone();
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    }
}

/// Runs every probe `runs` times, interleaved, checking each verdict; the
/// kernel reports the mean time per repeat of each run.
fn measure(probes: &mut [Probe<'_>], plan: &Plan) -> Result<()> {
    for _ in 0..plan.runs {
        for p in probes.iter_mut() {
            let (verdict, ns) = denylist_tests::test_run_fd(p.prog, &p.frame, plan.repeat)
                .with_context(|| format!("BPF_PROG_TEST_RUN of {}", p.what))?;
            ensure!(
                verdict == p.want,
                "{}: verdict {verdict} instead of {}",
                p.what,
                p.want
            );
            p.times.push(f64::from(ns));
        }
    }
    Ok(())
}

/// Random tables drawn like real lists, from a fixed seed so every run
/// measures the same tables.
struct Gen {
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
    fn new(seed: u64) -> Self {
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

    fn hosts_v4(&mut self, n: usize, taken: &mut HashSet<IpNet>) -> Vec<IpNet> {
        self.distinct(n, taken, |g| g.v4(32))
    }

    fn hosts_v6(&mut self, n: usize, taken: &mut HashSet<IpNet>) -> Vec<IpNet> {
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
struct Tables {
    entries: Vec<(IpNet, List)>,
}

impl Tables {
    /// The large tables of `sizes`, plus the probes' entries.
    fn large(sizes: Sizes, gen_: &mut Gen) -> Self {
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
    fn prefixes(n: usize, gen_: &mut Gen) -> Self {
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
        let needs = trie::needs(self.entries.iter().map(|(n, _)| Target::from(*n)));
        let layout = most.fitting(needs);
        ensure!(
            layout.holds(needs),
            "the tables need {needs:?}, beyond what the capacity allows ({most:?})"
        );
        Ok((
            layout,
            NodeUse {
                v4: needs.nodes_v4,
                v6: needs.nodes_v6,
                pool_v4: layout.nodes_v4,
                pool_v6: layout.nodes_v6,
                kernel_v4: 0,
                kernel_v6: 0,
            },
        ))
    }
}

/// Trie nodes of a table, and the pools that hold them.
#[derive(serde::Serialize)]
struct NodeUse {
    /// Nodes the tables need, per family (`trie::needs`).
    v4: u32,
    v6: u32,
    /// The pools the bench loaded.
    pool_v4: u32,
    pool_v6: u32,
    /// Nodes in use, counted in the kernel's maps after the load.
    kernel_v4: u32,
    kernel_v6: u32,
}

impl NodeUse {
    /// Both families' node arrays, whose size is fixed at load.
    fn bytes(&self) -> u64 {
        u64::from(2 * ROOT_NODES + self.pool_v4 + self.pool_v6) * std::mem::size_of::<Node>() as u64
    }
}

/// The program loaded with `tables` installed; checks the node count the
/// kernel holds against the one computed.
fn load(tables: &Tables, what: &str) -> Result<(Dataplane, NodeUse)> {
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

/// Non-empty nodes below the roots in the program's node arrays: on fresh
/// maps, the nodes in use.
fn kernel_nodes(prog: &Xdp) -> Result<(u32, u32)> {
    let ids = prog
        .info()?
        .map_ids()?
        .context("the kernel lists no maps of the program")?;
    let mut counts = (None, None);
    for id in ids {
        let data = MapData::from_id(id)?;
        let name = data.info()?.name_as_str().unwrap_or_default().to_owned();
        let slot = match name.as_str() {
            MAP_NODES_V4 => &mut counts.0,
            MAP_NODES_V6 => &mut counts.1,
            _ => continue,
        };
        let nodes: Array<MapData, Node> = Array::try_from(Map::from_map_data(data)?)
            .with_context(|| format!("map {name} is not an array of nodes"))?;
        let mut used = 0;
        for i in ROOT_NODES..nodes.len() {
            if nodes.get(&i, 0)?.slots.iter().any(|&s| s != 0) {
                used += 1;
            }
        }
        *slot = Some(used);
    }
    match counts {
        (Some(v4), Some(v6)) => Ok((v4, v6)),
        _ => bail!("the program has no {MAP_NODES_V4} and {MAP_NODES_V6} maps"),
    }
}

/// xdp-filter loaded twice in a throwaway namespace, IP-only on one veth
/// end and all-features on the other, sharing its pinned maps. Dropping it
/// unloads both, which removes the pins; the namespace goes with them.
struct XdpFilter {
    ns: Netns,
    ip_only: ProgramFd,
    all: ProgramFd,
}

const XF_IP_IFACE: &str = "xf0";
const XF_ALL_IFACE: &str = "xf1";

impl XdpFilter {
    fn load(v4: &[Ipv4Addr], v6: &[Ipv6Addr]) -> Result<Self> {
        let pins = Path::new(XDP_FILTER_PINS);
        if pins.exists() {
            let users: Vec<String> = std::fs::read_dir(pins.join("programs"))
                .map(|d| {
                    d.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                        .collect()
                })
                .unwrap_or_default();
            bail!(
                "xdp-filter is already loaded here (on {}): the bench needs its pinned maps in \
                 {XDP_FILTER_PINS} to itself; run `xdp-filter unload --all` in the namespace \
                 that holds it, or remove {XDP_FILTER_PINS} if those interfaces are gone",
                if users.is_empty() {
                    "no interface".to_owned()
                } else {
                    users.join(", ")
                }
            );
        }
        let ns = Netns::new("benchxf")?;
        ns.run(&[
            "ip",
            "link",
            "add",
            XF_IP_IFACE,
            "type",
            "veth",
            "peer",
            "name",
            XF_ALL_IFACE,
        ])?;
        for iface in [XF_IP_IFACE, XF_ALL_IFACE] {
            ns.run(&["ip", "link", "set", iface, "up"])?;
        }
        ns.run(&[
            "xdp-filter",
            "load",
            XF_IP_IFACE,
            "-m",
            "skb",
            "-f",
            "ipv4,ipv6",
        ])
        .context("loading xdp-filter IP-only: is xdp-tools installed (`cargo xtask setup`)?")?;
        let guard = Unload(&ns);
        ns.run(&["xdp-filter", "load", XF_ALL_IFACE, "-m", "skb"])?;
        let ip_only = pinned_program(XF_IP_IFACE)?;
        let all = pinned_program(XF_ALL_IFACE)?;
        fill(&ns, v4, v6)?;
        std::mem::forget(guard);
        Ok(Self { ns, ip_only, all })
    }
}

/// Unloads xdp-filter if loading the rest fails half-way.
struct Unload<'a>(&'a Netns);

impl Drop for Unload<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["xdp-filter", "unload", "--all"]);
    }
}

impl Drop for XdpFilter {
    fn drop(&mut self) {
        drop(Unload(&self.ns));
    }
}

/// The one program xdp-filter pinned for `iface`: its inner filter, not a
/// dispatcher, since skb mode attaches it alone.
fn pinned_program(iface: &str) -> Result<ProgramFd> {
    let dir = Path::new(XDP_FILTER_PINS).join("programs").join(iface);
    let entries: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    let [entry] = entries.as_slice() else {
        bail!(
            "{} holds {} programs instead of one",
            dir.display(),
            entries.len()
        );
    };
    let info = ProgramInfo::from_pin(entry.path())
        .with_context(|| format!("opening {}", entry.path().display()))?;
    Ok(info.fd()?)
}

/// Puts `v4` and `v6` into xdp-filter's source maps. The first address of
/// each goes in through `xdp-filter ip ADDR -m src`; the rest are written
/// straight into the pinned maps with the value that command wrote, since
/// ten thousand processes would take minutes.
fn fill(ns: &Netns, v4: &[Ipv4Addr], v6: &[Ipv6Addr]) -> Result<()> {
    let (first_v4, rest_v4) = v4.split_first().context("no IPv4 entries for xdp-filter")?;
    let (first_v6, rest_v6) = v6.split_first().context("no IPv6 entries for xdp-filter")?;
    for a in [IpAddr::from(*first_v4), IpAddr::from(*first_v6)] {
        ns.run(&["xdp-filter", "ip", &a.to_string(), "-m", "src"])?;
    }
    let pins = Path::new(XDP_FILTER_PINS);
    let mut m4: PerCpuHashMap<MapData, [u8; 4], u64> = PerCpuHashMap::try_from(
        Map::from_map_data(MapData::from_pin(pins.join("filter_ipv4"))?)?,
    )?;
    let mut m6: PerCpuHashMap<MapData, [u8; 16], u64> = PerCpuHashMap::try_from(
        Map::from_map_data(MapData::from_pin(pins.join("filter_ipv6"))?)?,
    )?;
    let value = m4.get(&first_v4.octets(), 0)?;
    ensure!(
        m6.get(&first_v6.octets(), 0)?.iter().eq(value.iter()),
        "xdp-filter wrote different values for IPv4 and IPv6 source entries"
    );
    let same = |v: &PerCpuValues<u64>| PerCpuValues::try_from(v.to_vec());
    for a in rest_v4 {
        m4.insert(a.octets(), same(&value)?, 0)
            .with_context(|| format!("adding {a} to xdp-filter's IPv4 map"))?;
    }
    for a in rest_v6 {
        m6.insert(a.octets(), same(&value)?, 0)
            .with_context(|| format!("adding {a} to xdp-filter's IPv6 map"))?;
    }
    ensure!(
        m4.keys().count() == v4.len() && m6.keys().count() == v6.len(),
        "xdp-filter's maps do not hold the {} + {} entries written",
        v4.len(),
        v6.len()
    );
    Ok(())
}

/// xdp-filter's entries: the probes' exact addresses first, then random
/// hosts up to its limit.
fn xdp_filter_entries(gen_: &mut Gen) -> (Vec<Ipv4Addr>, Vec<Ipv6Addr>) {
    let mut taken = HashSet::new();
    let v4 = std::iter::once(V4_EXACT)
        .chain(
            gen_.hosts_v4(XDP_FILTER_ENTRIES - 1, &mut taken)
                .iter()
                .map(|n| match n.addr() {
                    IpAddr::V4(a) => a,
                    IpAddr::V6(_) => unreachable!("hosts_v4 draws IPv4"),
                }),
        )
        .collect();
    let v6 = std::iter::once(V6_EXACT)
        .chain(
            gen_.hosts_v6(XDP_FILTER_ENTRIES - 1, &mut taken)
                .iter()
                .map(|n| match n.addr() {
                    IpAddr::V6(a) => a,
                    IpAddr::V4(_) => unreachable!("hosts_v6 draws IPv6"),
                }),
        )
        .collect();
    (v4, v6)
}

fn floor_program() -> Result<Ebpf> {
    let mut obj = Ebpf::load(object::FLOOR).context("loading the floor program")?;
    let floor: &mut Xdp = obj
        .program_mut("floor")
        .context("the floor object has no program `floor`")?
        .try_into()?;
    floor.load()?;
    Ok(obj)
}

fn floor(obj: &Ebpf) -> Result<&Xdp> {
    Ok(obj
        .program("floor")
        .context("the floor object has no program `floor`")?
        .try_into()?)
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", fmt_num(bytes as f64 / f64::from(1 << 20)))
}

pub fn run(opts: &Opts) -> Result<Section> {
    let plan = Plan::new(opts.quick);
    let mut gen_ = Gen::new(5);
    let floor_obj = floor_program()?;
    let floor = floor(&floor_obj)?;

    // Per-path costs: the floor, xdp-filter, denylist empty and large.
    // xdp-filter first: it is the part that can find its maps taken.
    let (xf_v4, xf_v6) = xdp_filter_entries(&mut gen_);
    let xf = XdpFilter::load(&xf_v4, &xf_v6)?;
    let large_tables = Tables::large(plan.large, &mut gen_);
    let (mut large, large_nodes) = load(&large_tables, "large")?;
    let (mut empty, _) = load(
        &Tables {
            entries: Vec::new(),
        },
        "empty",
    )?;
    let large_prog = large.program().fd()?.as_fd();
    let empty_prog = empty.program().fd()?.as_fd();

    let mut probes = vec![Probe::new(
        floor.fd()?.as_fd(),
        Kind::V4Miss.spec().build(),
        XDP_DROP,
        "floor".to_owned(),
    )];
    for p in PATHS {
        let frame = p.spec().build();
        probes.push(Probe::new(
            large_prog,
            frame.clone(),
            p.verdict(),
            format!("denylist large, {}", p.name()),
        ));
        probes.push(Probe::new(
            empty_prog,
            frame.clone(),
            XDP_PASS,
            format!("denylist empty, {}", p.name()),
        ));
        if p.xdp_filter_has() {
            let want = p.verdict();
            probes.push(Probe::new(
                xf.ip_only.as_fd(),
                frame.clone(),
                want,
                format!("xdp-filter IP-only, {}", p.name()),
            ));
            probes.push(Probe::new(
                xf.all.as_fd(),
                frame,
                want,
                format!("xdp-filter all, {}", p.name()),
            ));
        }
    }
    eprintln!(
        "bench: packet: {} probes × {} runs × {} repeats",
        probes.len(),
        plan.runs,
        plan.repeat
    );
    measure(&mut probes, &plan)?;
    let cost = |what: &str| -> Result<f64> {
        probes
            .iter()
            .find(|p| p.what == what)
            .map(Probe::median)
            .with_context(|| format!("no measurement of {what}"))
    };
    let floor_ns = cost("floor")?;

    struct Row {
        path: Kind,
        large: f64,
        empty: f64,
        xf_ip: f64,
        xf_all: f64,
        peer: Kind,
    }
    let mut rows = Vec::new();
    for p in PATHS {
        let peer = p.xdp_filter_peer();
        rows.push(Row {
            path: p,
            large: cost(&format!("denylist large, {}", p.name()))?,
            empty: cost(&format!("denylist empty, {}", p.name()))?,
            xf_ip: cost(&format!("xdp-filter IP-only, {}", peer.name()))?,
            xf_all: cost(&format!("xdp-filter all, {}", peer.name()))?,
            peer,
        });
    }
    drop(probes);
    drop(xf);
    drop(large);
    drop(empty);

    // Scaling: IPv4 prefixes only, a fresh program for each size.
    let mut scaling = Vec::new();
    for &n in &plan.scaling {
        let tables = Tables::prefixes(n, &mut gen_);
        let (mut dp, nodes) = load(&tables, &format!("{n} prefixes"))?;
        let prog = dp.program().fd()?.as_fd();
        let mut probes = vec![
            Probe::new(
                prog,
                Kind::V4Prefix.spec().build(),
                XDP_DROP,
                "hit".to_owned(),
            ),
            Probe::new(
                prog,
                Kind::V4Miss.spec().build(),
                XDP_PASS,
                "miss".to_owned(),
            ),
        ];
        measure(&mut probes, &plan)?;
        scaling.push((n, probes[0].median(), probes[1].median(), nodes));
    }

    let s = |v: f64| fmt_num(v);
    let per_path = Table {
        title: format!(
            "ns/packet by path, large tables ({} exact IPv4, {} IPv4 prefixes, {} exact IPv6, {} IPv6 prefixes, {} allow prefixes)",
            plan.large.exact_v4,
            plan.large.prefix_v4,
            plan.large.exact_v6,
            plan.large.prefix_v6,
            plan.large.allow_v4 + plan.large.allow_v6
        ),
        columns: [
            "path",
            "denylist",
            "− floor",
            "xdp-filter IP-only",
            "− floor",
            "xdp-filter all",
            "denylist / xdp-filter IP-only",
        ]
        .map(str::to_owned)
        .to_vec(),
        rows: rows
            .iter()
            .map(|r| {
                let peer = if r.peer == r.path {
                    String::new()
                } else {
                    format!(" ({})", r.peer.short())
                };
                vec![
                    r.path.name().to_owned(),
                    s(r.large),
                    s(r.large - floor_ns),
                    format!("{}{peer}", s(r.xf_ip)),
                    s(r.xf_ip - floor_ns),
                    format!("{}{peer}", s(r.xf_all)),
                    format!("{:.2}", r.large / r.xf_ip),
                ]
            })
            .collect(),
        notes: vec![
            format!("Floor (a bare `return XDP_DROP`): {} ns.", s(floor_ns)),
            format!(
                "Median of {} runs of {} repeats each; the kernel reports each run's mean. All programs' runs are interleaved.",
                plan.runs, plan.repeat
            ),
            format!(
                "xdp-filter holds {XDP_FILTER_ENTRIES} exact entries per family (its limit), loaded with `-m skb -f ipv4,ipv6` (IP-only) and with all features; it has no prefixes and no allow entries, so a prefix hit and the allowed path are held against its exact hit (shown in brackets)."
            ),
            "The IPv4 prefix hit is in a /28, at the trie's deepest IPv4 level; the IPv4 miss walks as deep and finds nothing. The IPv6 prefix hit is in a /64, the IPv6 miss shares its walk down to the last byte.".to_owned(),
        ],
    };
    let empty_table = Table {
        title: "ns/packet by frame, empty tables (every packet passes)".to_owned(),
        columns: ["frame", "denylist", "− floor"].map(str::to_owned).to_vec(),
        rows: rows
            .iter()
            .map(|r| vec![r.path.name().to_owned(), s(r.empty), s(r.empty - floor_ns)])
            .collect(),
        notes: vec![],
    };
    let scaling_table = Table {
        title: "ns/packet against the number of IPv4 prefixes".to_owned(),
        columns: ["prefixes", "prefix hit", "miss", "trie nodes (IPv4)"]
            .map(str::to_owned)
            .to_vec(),
        rows: scaling
            .iter()
            .map(|(n, hit, miss, nodes)| {
                vec![n.to_string(), s(*hit), s(*miss), nodes.v4.to_string()]
            })
            .collect(),
        notes: vec!["Lengths drawn like real lists: /16–/31, mostly /24.".to_owned()],
    };
    let node_row = |what: String, n: &NodeUse| {
        vec![
            what,
            n.v4.to_string(),
            n.v6.to_string(),
            format!("{} / {}", n.pool_v4, n.pool_v6),
            mib(n.bytes()),
        ]
    };
    let mut node_rows = vec![node_row("large".to_owned(), &large_nodes)];
    node_rows.extend(
        scaling
            .iter()
            .map(|(n, _, _, nodes)| node_row(format!("{n} IPv4 prefixes"), nodes)),
    );
    let nodes_table = Table {
        title: "Trie nodes".to_owned(),
        columns: [
            "tables",
            "IPv4 nodes",
            "IPv6 nodes",
            "pools loaded, IPv4 / IPv6",
            "node memory, both families",
        ]
        .map(str::to_owned)
        .to_vec(),
        rows: node_rows,
        notes: vec![
            "Nodes below the 256 roots of each family, counted in the kernel's maps after the load (and equal to the count the bench computes from the prefixes). A node is 1 KiB; both families' arrays have the pool's size and are allocated at load.".to_owned(),
            "IPv6 prefixes cluster in 3,000 /32 allocations inside 2000::/3, as in RIR data; lengths /29–/64, mostly /32, /48, /56 and /64.".to_owned(),
        ],
    };

    let goals: Vec<Goal> = rows
        .iter()
        .map(|r| Goal {
            name: format!(
                "{}, large tables, against xdp-filter IP-only {}",
                r.path.name(),
                r.peer.name()
            ),
            measured: r.large / r.xf_ip,
            limit: 1.0,
            unit: "×".to_owned(),
        })
        .collect();

    let paths_png = "packet-paths.png";
    let groups: Vec<String> = rows.iter().map(|r| r.path.short().to_owned()).collect();
    let by_path = |f: &dyn Fn(&Row) -> Option<f64>| -> Vec<(f64, f64)> {
        rows.iter()
            .enumerate()
            .filter_map(|(i, r)| f(r).map(|v| (i as f64, v)))
            .collect()
    };
    chart::bars(
        &opts.out_dir.join(paths_png),
        "Per-packet cost (BPF_PROG_TEST_RUN), large tables",
        "ns/packet",
        &groups,
        &[
            Series {
                name: "denylist".to_owned(),
                points: by_path(&|r| Some(r.large)),
            },
            Series {
                name: "xdp-filter IP-only".to_owned(),
                points: by_path(&|r| (r.peer == r.path).then_some(r.xf_ip)),
            },
            Series {
                name: "xdp-filter all features".to_owned(),
                points: by_path(&|r| (r.peer == r.path).then_some(r.xf_all)),
            },
            Series {
                name: "floor (return XDP_DROP)".to_owned(),
                points: by_path(&|_| Some(floor_ns)),
            },
        ],
    )?;
    let scaling_png = "packet-scaling.png";
    let xs = |f: &dyn Fn(f64) -> f64| -> Vec<(f64, f64)> {
        scaling
            .iter()
            .map(|(n, ..)| (*n as f64, f(*n as f64)))
            .collect()
    };
    let v4_exact_xf = rows
        .iter()
        .find(|r| r.path == Kind::V4Exact)
        .map(|r| r.xf_ip)
        .context("no IPv4 exact hit row")?;
    chart::lines(
        &opts.out_dir.join(scaling_png),
        "Per-packet cost against the number of IPv4 prefixes",
        "IPv4 prefixes",
        "ns/packet",
        true,
        &[
            Series {
                name: "denylist prefix hit".to_owned(),
                points: scaling
                    .iter()
                    .map(|(n, hit, ..)| (*n as f64, *hit))
                    .collect(),
            },
            Series {
                name: "denylist miss".to_owned(),
                points: scaling
                    .iter()
                    .map(|(n, _, miss, _)| (*n as f64, *miss))
                    .collect(),
            },
            Series {
                name: "xdp-filter IP-only exact hit (10k)".to_owned(),
                points: xs(&|_| v4_exact_xf),
            },
            Series {
                name: "floor".to_owned(),
                points: xs(&|_| floor_ns),
            },
        ],
    )?;

    let data = json!({
        "runs": plan.runs,
        "repeat": plan.repeat,
        "sizes": plan.large,
        "xdp_filter_entries_per_family": XDP_FILTER_ENTRIES,
        "floor_ns": floor_ns,
        "paths": rows.iter().map(|r| json!({
            "path": r.path.key(),
            "denylist_large_ns": r.large,
            "denylist_empty_ns": r.empty,
            "xdp_filter_peer": r.peer.key(),
            "xdp_filter_ip_only_ns": r.xf_ip,
            "xdp_filter_all_ns": r.xf_all,
            "ratio_to_xdp_filter_ip_only": r.large / r.xf_ip,
        })).collect::<Vec<_>>(),
        "scaling": scaling.iter().map(|(n, hit, miss, nodes)| json!({
            "prefixes": n,
            "prefix_hit_ns": hit,
            "miss_ns": miss,
            "nodes": nodes,
        })).collect::<Vec<_>>(),
        "large_nodes": large_nodes,
        "node_bytes": std::mem::size_of::<Node>(),
    });
    Ok(Section {
        key: "packet",
        title: "Per-packet cost (BPF_PROG_TEST_RUN)",
        tables: vec![per_path, empty_table, scaling_table, nodes_table],
        goals,
        charts: vec![
            Chart {
                file: paths_png.to_owned(),
                title: "ns/packet per path: denylist, xdp-filter and the floor".to_owned(),
            },
            Chart {
                file: scaling_png.to_owned(),
                title: "ns/packet against the number of prefixes".to_owned(),
            },
        ],
        data,
    })
}
