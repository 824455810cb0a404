//! Issue 5 §1: per-packet cost under BPF_PROG_TEST_RUN. denylist's program
//! with empty and with large tables, xdp-filter (IP-only and all-features
//! builds) with 10,000 exact entries per family, and the bare
//! `return XDP_DROP` floor, all on the same frames in one run. Every run of
//! every program is interleaved with the others, so drift on a shared
//! machine hits them all alike.

mod kind;
pub(crate) mod tables;
mod trie_memory;
pub(crate) mod xdp_filter;

use std::os::fd::{AsFd, BorrowedFd};

use anyhow::{Context as _, Result, ensure};
use aya::{Ebpf, programs::Xdp};
use denylist::dataplane::{DetectLevels, object};
use denylist_common::Node;
use denylist_tests::{XDP_DROP, XDP_PASS};
use serde_json::json;

use crate::{
    chart::{self, Series},
    report::{Chart, Goal, Opts, Section, Table, fmt_num},
};
use kind::{Kind, PATHS};
use tables::{Gen, NodeUse, Tables, load};
use xdp_filter::{XDP_FILTER_ENTRIES, XdpFilter, xdp_filter_entries};

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
pub(crate) struct Sizes {
    exact_v4: usize,
    prefix_v4: usize,
    exact_v6: usize,
    prefix_v6: usize,
    allow_v4: usize,
    allow_v6: usize,
}

impl Sizes {
    /// The large tables, small in a quick run.
    pub(crate) fn large(quick: bool) -> Self {
        if quick {
            Self {
                exact_v4: 10_000,
                prefix_v4: 1_000,
                exact_v6: 1_000,
                prefix_v6: 1_000,
                allow_v4: 80,
                allow_v6: 20,
            }
        } else {
            Self {
                exact_v4: 1_000_000,
                prefix_v4: 100_000,
                exact_v6: 100_000,
                prefix_v6: 100_000,
                allow_v4: 8_000,
                allow_v6: 2_000,
            }
        }
    }

    /// "1000000 exact IPv4, 100000 IPv4 prefixes, …": what the tables hold.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} exact IPv4, {} IPv4 prefixes, {} exact IPv6, {} IPv6 prefixes, {} allow prefixes",
            self.exact_v4,
            self.prefix_v4,
            self.exact_v6,
            self.prefix_v6,
            self.allow_v4 + self.allow_v6
        )
    }
}

impl Plan {
    fn new(quick: bool) -> Self {
        Self {
            runs: if quick { 3 } else { 5 },
            repeat: if quick { 10_000 } else { 1_000_000 },
            large: Sizes::large(quick),
            scaling: if quick {
                vec![1_000, 10_000]
            } else {
                vec![1_000, 10_000, 100_000, 1_000_000]
            },
        }
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
    // The same tables with the rate detector in monitor mode at its
    // default threshold, as users run it. One repeated frame crosses the
    // level once and is reported once: what is left is the counting every
    // packet pays.
    let (mut detecting, _) = load(&large_tables, "large, detector on")?;
    detecting.detector().set(DetectLevels {
        packets: 10_000,
        bytes: 0,
        events: 4096,
    });
    let detector_memlock =
        tables::maps_memlock(detecting.program(), &denylist_common::DETECTOR_MAPS)?;
    let cpus = detecting.cpus();
    let (mut empty, _) = load(
        &Tables {
            entries: Vec::new(),
        },
        "empty",
    )?;
    let large_prog = large.program().fd()?.as_fd();
    let detecting_prog = detecting.program().fd()?.as_fd();
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
            detecting_prog,
            frame.clone(),
            p.verdict(),
            format!("denylist large + detector, {}", p.name()),
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
        detecting: f64,
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
            detecting: cost(&format!("denylist large + detector, {}", p.name()))?,
            empty: cost(&format!("denylist empty, {}", p.name()))?,
            xf_ip: cost(&format!("xdp-filter IP-only, {}", peer.name()))?,
            xf_all: cost(&format!("xdp-filter all, {}", peer.name()))?,
            peer,
        });
    }
    drop(probes);
    drop(xf);
    drop(large);
    drop(detecting);
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
            "ns/packet by path, large tables ({})",
            plan.large.describe()
        ),
        columns: [
            "path",
            "denylist",
            "− floor",
            "xdp-filter IP-only",
            "− floor",
            "xdp-filter all",
            "denylist / xdp-filter IP-only",
            "with the detector",
            "detector's cost",
            "with the detector / xdp-filter IP-only",
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
                    s(r.detecting),
                    s(r.detecting - r.large),
                    format!("{:.2}", r.detecting / r.xf_ip),
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
            "The IPv4 prefix hit is in a /28, at the trie's deepest IPv4 level; the IPv4 miss walks as deep and finds nothing. The IPv6 prefix hit is in a /64, alone in its /48, so a shortcut takes the walk over the /64's chain in one compare (docs/dataplane.md); the IPv6 miss shares its walk down to the last byte, where the shortcut misses.".to_owned(),
            format!(
                "With the detector: the same tables with the rate detector in monitor mode (`--pps 10000`); it does nothing for allowed sources. Its kernel memory, fixed: {} MiB (`memlock` of its five maps, {} CPUs).",
                s(detector_memlock as f64 / 1_048_576.0),
                cpus
            ),
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
    let memory_png = "prefix-memory.png";
    let scaled: Vec<(usize, &NodeUse)> = scaling.iter().map(|(n, _, _, u)| (*n, u)).collect();
    let (nodes_table, memory_goals) =
        trie_memory::report(&large_nodes, &scaled, &opts.out_dir.join(memory_png))?;

    let mut goals: Vec<Goal> = rows
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
    for r in &rows {
        goals.push(Goal {
            name: format!(
                "{}, large tables, the rate detector's cost (monitor against off)",
                r.path.name()
            ),
            measured: r.detecting - r.large,
            limit: 10.0,
            unit: "ns".to_owned(),
        });
        goals.push(Goal {
            name: format!(
                "{}, large tables with the detector on, against xdp-filter IP-only {}",
                r.path.name(),
                r.peer.name()
            ),
            measured: r.detecting / r.xf_ip,
            limit: 1.0,
            unit: "×".to_owned(),
        });
    }

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
            "denylist_large_detector_ns": r.detecting,
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
        "detector_memlock_bytes": detector_memlock,
        "node_bytes": size_of::<Node>(),
    });
    goals.extend(memory_goals);
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
            Chart {
                file: memory_png.to_owned(),
                title: "kernel memory per prefix, by structure".to_owned(),
            },
        ],
        data,
    })
}
