//! Memory: the kernel memory of the daemon's maps and the daemon's own
//! memory, empty and with the full list of exact IPv4 addresses deployed,
//! beside ipset's figure for the same set.

use std::{collections::BTreeMap, fs, thread, time::Duration};

use anyhow::{Context as _, Result};
use aya::maps::MapInfo;
use denylist_tests::daemon::TempDir;
use serde_json::json;

use crate::{
    deploy::{self, Denylistd, Kind},
    report::{Goal, Opts, Section, Table, fmt_num},
};

/// Time for the daemon to finish what a request left behind (freed trie
/// nodes wait 100 ms, RCU frees kernel elements) before it is measured.
pub const SETTLE: Duration = Duration::from_secs(1);

/// A process's memory from /proc/PID/status and smaps, bytes.
#[derive(Debug, Clone, Copy)]
pub struct ProcMem {
    /// VmRSS.
    pub rss: u64,
    /// RssAnon: the heap, without mapped files and the maps' pages.
    pub anon: u64,
    /// VmHWM: the peak RSS so far.
    pub hwm: u64,
    /// The resident pages of BPF maps mmapped into the process: kernel
    /// memory that RSS counts as well.
    pub mapped_maps: u64,
}

impl ProcMem {
    /// RSS without the mmapped maps, which the kernel figure holds.
    pub fn own(&self) -> u64 {
        self.rss.saturating_sub(self.mapped_maps)
    }
}

/// The resident size of the process's mmapped BPF maps, from smaps.
fn mapped_maps(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/smaps");
    let smaps = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let mut in_map = false;
    let mut total = 0;
    for line in smaps.lines() {
        // A mapping's header starts with its address range, e.g.
        // "7f4a14e94000-7f4a14e9b000 rw-s 00000000 00:10 1038   anon_inode:bpf-map".
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            in_map = line.ends_with("anon_inode:bpf-map");
        } else if in_map && let Some(kb) = line.strip_prefix("Rss:") {
            total += kb
                .trim()
                .strip_suffix("kB")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .with_context(|| format!("cannot read {line:?} in {path}"))?
                * 1024;
        }
    }
    Ok(total)
}

/// A value of /proc/PID/status in bytes, e.g. `VmRSS`. Cheap, and takes
/// no lock the process contends for: fit for sampling under load.
pub fn status_bytes(pid: u32, key: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .with_context(|| format!("no {key} in {path}"))
}

pub fn proc_mem(pid: u32) -> Result<ProcMem> {
    Ok(ProcMem {
        rss: status_bytes(pid, "VmRSS")?,
        anon: status_bytes(pid, "RssAnon")?,
        hwm: status_bytes(pid, "VmHWM")?,
        mapped_maps: mapped_maps(pid)?,
    })
}

/// One BPF map a process holds.
#[derive(Debug, Clone)]
pub struct MapMem {
    pub name: String,
    pub max_entries: u64,
    /// The kernel's `memlock` figure: what the map uses now (Linux 6.4+
    /// counts a no-prealloc hash's elements as they come and go).
    pub bytes: u64,
}

/// Every BPF map the process has a descriptor of, once each, by id.
pub fn maps(pid: u32) -> Result<BTreeMap<u32, MapMem>> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut out = BTreeMap::new();
    for e in fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        // A descriptor closed meanwhile is simply not counted.
        let Ok(info) = fs::read_to_string(e?.path()) else {
            continue;
        };
        let get = |key: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let (Some(id), Some(bytes)) = (get("map_id"), get("memlock")) else {
            continue;
        };
        let id = id as u32;
        let name = MapInfo::from_id(id)
            .ok()
            .and_then(|m| m.name_as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("map {id}"));
        out.insert(
            id,
            MapMem {
                name,
                max_entries: get("max_entries").unwrap_or(0),
                bytes,
            },
        );
    }
    anyhow::ensure!(!out.is_empty(), "process {pid} holds no BPF map");
    Ok(out)
}

/// The daemon's memory and its maps', after it settled.
struct Snapshot {
    proc: ProcMem,
    maps: BTreeMap<u32, MapMem>,
}

impl Snapshot {
    fn take(d: &Denylistd) -> Result<Self> {
        thread::sleep(SETTLE);
        let pid = d.daemon.pid();
        Ok(Self {
            proc: proc_mem(pid)?,
            maps: maps(pid)?,
        })
    }

    fn kernel(&self) -> u64 {
        self.maps.values().map(|m| m.bytes).sum()
    }
}

/// Max entries and bytes per map name: a map that grew (a new map in
/// its place) is still the same map.
fn by_name(maps: &BTreeMap<u32, MapMem>) -> BTreeMap<String, (u64, u64)> {
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for m in maps.values() {
        let e = out.entry(m.name.clone()).or_default();
        e.0 = e.0.max(m.max_entries);
        e.1 += m.bytes;
    }
    out
}

pub fn mb(b: u64) -> String {
    fmt_num(b as f64 / 1e6)
}

pub fn run(opts: &Opts) -> Result<Section> {
    deploy::binaries(opts)?;
    let n = deploy::sizes(opts).full;
    // The daemon sized exactly for the list, and one a thousandth of it.
    let (cap_small, cap_big) = ((n / 1000).max(16), n);
    let dir = TempDir::new("bench-memory");

    eprintln!("bench: memory: empty daemons, --capacity {cap_small} and {cap_big}");
    let small = Snapshot::take(&Denylistd::start("bmemsmall", cap_small))?;
    let d = Denylistd::start("bmem", cap_big);
    let empty = Snapshot::take(&d)?;

    eprintln!("bench: memory: {n} exact IPv4 addresses deployed");
    let targets: Vec<String> = (0..n).map(|i| deploy::exact_v4(i).to_string()).collect();
    let file = dir.path().join("exact.txt");
    deploy::write_list(&file, targets.iter().cloned())?;
    d.import_deploy(&file, false, u64::from(n), 0)?;
    let full = Snapshot::take(&d)?;
    drop(d);
    let ipset = deploy::ipset_load(dir.path(), &targets, Kind::Exact)?;
    let ipset_bytes = deploy::ipset_header(&ipset.ns, "Size in memory")?;
    drop(ipset);

    let per = |b: u64| b as f64 / f64::from(n);
    let marginal = |at: u64, base: u64| (at as f64 - base as f64) / f64::from(n);
    let kernel_total = per(full.kernel());
    let daemon_total = per(full.proc.own());
    let per_slot =
        (empty.proc.own() as f64 - small.proc.own() as f64) / f64::from(cap_big - cap_small);

    let state_row = |what: String, s: &Snapshot| {
        vec![
            what,
            mb(s.kernel()),
            mb(s.proc.rss),
            mb(s.proc.mapped_maps),
            mb(s.proc.own()),
            mb(s.proc.anon),
            mb(s.proc.hwm),
        ]
    };
    let states = Table {
        title: "Kernel maps and daemon memory (MB)".into(),
        columns: [
            "daemon",
            "kernel maps",
            "RSS",
            "of it, mmapped maps",
            "RSS without them",
            "anonymous",
            "peak RSS",
        ]
        .map(String::from)
        .to_vec(),
        rows: vec![
            state_row(format!("--capacity {cap_small}, empty"), &small),
            state_row(format!("--capacity {cap_big}, empty"), &empty),
            state_row(
                format!("--capacity {cap_big}, {n} exact IPv4 deployed"),
                &full,
            ),
        ],
        notes: vec![
            "kernel maps: the sum of `memlock` in /proc/PID/fdinfo over every BPF map the daemon holds. RSS, anonymous and peak: VmRSS, RssAnon and VmHWM from /proc/PID/status; all read 1 s after the daemon went idle.".into(),
            "mmapped maps: the resident `anon_inode:bpf-map` mappings in /proc/PID/smaps. They are kernel memory the daemon maps to write the prefix maps, counted in the kernel column already, so the daemon's own memory is RSS without them.".into(),
        ],
    };
    let per_entry = Table {
        title: format!("Bytes per entry, {n} exact IPv4 addresses"),
        columns: ["what", "total ÷ entries", "(deployed − empty) ÷ entries"]
            .map(String::from)
            .to_vec(),
        rows: vec![
            vec![
                "denylist: kernel maps".into(),
                fmt_num(kernel_total),
                fmt_num(marginal(full.kernel(), empty.kernel())),
            ],
            vec![
                "denylistd: RSS without the mmapped maps".into(),
                fmt_num(daemon_total),
                fmt_num(marginal(full.proc.own(), empty.proc.own())),
            ],
            vec![
                "denylistd: peak RSS (the import and deploy, mmapped maps included)".into(),
                fmt_num(per(full.proc.hwm)),
                fmt_num(marginal(full.proc.hwm, empty.proc.hwm)),
            ],
            vec![
                "ipset hash:ip: Size in memory".into(),
                fmt_num(per(ipset_bytes)),
                "—".into(),
            ],
        ],
        notes: vec![format!(
            "The daemon has --capacity {cap_big}, the list's size. ipset's set is created with hashsize {} as in the deploy runs.",
            targets.len().next_power_of_two()
        )],
    };
    let (before, after) = (by_name(&empty.maps), by_name(&full.maps));
    let map_rows = after
        .iter()
        .map(|(name, (max_entries, bytes))| {
            vec![
                name.clone(),
                max_entries.to_string(),
                mb(before.get(name).map_or(0, |m| m.1)),
                mb(*bytes),
            ]
        })
        .collect();
    let per_map = Table {
        title: format!("Kernel memory per map, --capacity {cap_big} (MB)"),
        columns: ["map", "max_entries", "empty", &format!("{n} deployed")]
            .map(String::from)
            .to_vec(),
        rows: map_rows,
        notes: Vec::new(),
    };

    let snap = |s: &Snapshot| {
        json!({
            "kernel_bytes": s.kernel(), "rss_bytes": s.proc.rss, "rss_anon_bytes": s.proc.anon,
            "mapped_maps_bytes": s.proc.mapped_maps, "peak_rss_bytes": s.proc.hwm,
            "maps": s.maps.values().map(|m| json!({
                "name": m.name, "max_entries": m.max_entries, "bytes": m.bytes,
            })).collect::<Vec<_>>(),
        })
    };
    Ok(Section {
        key: "memory",
        title: "Memory",
        tables: vec![states, per_entry, per_map],
        goals: vec![
            Goal {
                name: format!("kernel maps per exact IPv4 entry at {n} (total)"),
                measured: kernel_total,
                limit: 110.0,
                unit: "B".into(),
            },
            Goal {
                name: format!(
                    "peak daemon RSS during the import and deploy of {n} ÷ steady RSS after it"
                ),
                measured: full.proc.hwm as f64 / full.proc.rss.max(1) as f64,
                limit: 2.0,
                unit: "×".into(),
            },
            Goal {
                name: format!("daemon RSS without mmapped maps per entry at {n} (total)"),
                measured: daemon_total,
                limit: 200.0,
                unit: "B".into(),
            },
            Goal {
                name: format!(
                    "empty daemon: extra RSS (without mmapped maps) per unit of capacity ({cap_big} vs {cap_small})"
                ),
                measured: per_slot,
                limit: 10.0,
                unit: "B".into(),
            },
        ],
        charts: Vec::new(),
        data: json!({
            "entries": n,
            "capacity_small": cap_small,
            "capacity": cap_big,
            "empty_small": snap(&small),
            "empty": snap(&empty),
            "deployed": snap(&full),
            "ipset_bytes": ipset_bytes,
        }),
    })
}
