//! xdp-filter, the program held against denylist: loaded in a throwaway
//! namespace, or natively on a veth of the cold section's, and filled with
//! its limit of exact entries.

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use anyhow::{Context as _, Result, bail, ensure};
use aya::{
    maps::{Map, MapData, PerCpuHashMap, PerCpuValues},
    programs::{ProgramFd, ProgramInfo},
};
use denylist_tests::netns::Netns;

use super::{
    kind::{V4_EXACT, V6_EXACT},
    tables::Gen,
};

/// xdp-filter's maps hold at most this many entries each.
pub(crate) const XDP_FILTER_ENTRIES: usize = 10_000;
const XDP_FILTER_PINS: &str = "/sys/fs/bpf/xdp-filter";

/// xdp-filter loaded twice in a throwaway namespace, IP-only on one veth
/// end and all-features on the other, sharing its pinned maps. Dropping it
/// unloads both, which removes the pins; the namespace goes with them.
pub(super) struct XdpFilter {
    ns: Netns,
    pub(super) ip_only: ProgramFd,
    pub(super) all: ProgramFd,
}

const XF_IP_IFACE: &str = "xf0";
const XF_ALL_IFACE: &str = "xf1";

impl XdpFilter {
    pub(super) fn load(v4: &[Ipv4Addr], v6: &[Ipv6Addr]) -> Result<Self> {
        ensure_unloaded()?;
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

/// Fails unless xdp-filter is loaded nowhere: its pinned maps in
/// XDP_FILTER_PINS are one set for the whole host, and the bench needs them
/// to itself.
fn ensure_unloaded() -> Result<()> {
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
    Ok(())
}

/// Unloads xdp-filter when dropped: when done, or when loading the rest
/// fails half-way.
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

/// xdp-filter IP-only attached natively to `iface` in `ns`, alone:
/// LIBXDP_SKIP_DISPATCHER=1 keeps libxdp from putting its dispatcher in
/// front, so xdp-filter's own program is the one that runs and that BPF
/// run-time statistics count. Dropping it unloads xdp-filter, which
/// removes the pins.
pub(crate) struct Native<'a> {
    _unload: Unload<'a>,
    /// The program xdp-filter pinned for `iface`.
    pub(crate) prog: ProgramInfo,
}

impl<'a> Native<'a> {
    pub(crate) fn load(
        ns: &'a Netns,
        iface: &str,
        v4: &[Ipv4Addr],
        v6: &[Ipv6Addr],
    ) -> Result<Self> {
        ensure_unloaded()?;
        ns.run(&[
            "env",
            "LIBXDP_SKIP_DISPATCHER=1",
            "xdp-filter",
            "load",
            iface,
            "-m",
            "native",
            "-f",
            "ipv4,ipv6",
        ])
        .context("loading xdp-filter IP-only in native mode: is xdp-tools installed (`cargo xtask setup`)?")?;
        let unload = Unload(ns);
        let prog = pinned_info(iface)?;
        fill(ns, v4, v6)?;
        Ok(Self {
            _unload: unload,
            prog,
        })
    }
}

/// The one program xdp-filter pinned for `iface`: its inner filter, not a
/// dispatcher, since skb mode attaches it alone.
fn pinned_program(iface: &str) -> Result<ProgramFd> {
    Ok(pinned_info(iface)?.fd()?)
}

/// What the kernel says of the one program xdp-filter pinned for `iface`.
fn pinned_info(iface: &str) -> Result<ProgramInfo> {
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
    ProgramInfo::from_pin(entry.path())
        .with_context(|| format!("opening {}", entry.path().display()))
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
pub(crate) fn xdp_filter_entries(gen_: &mut Gen) -> (Vec<Ipv4Addr>, Vec<Ipv6Addr>) {
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
