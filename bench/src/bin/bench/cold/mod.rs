//! Cache-cold per-packet cost: real traffic from many distinct sources,
//! which a lookup cannot keep in its caches, through denylist, xdp-filter
//! IP-only and the bare XDP_DROP, each program's own run time read from the
//! kernel's BPF run-time statistics. BPF_PROG_TEST_RUN repeats one frame
//! with hot caches; this is the figure a filter on a busy host pays.
//!
//! veth is not a NIC: its XDP runs in the sender's CPU, right after
//! trafgen's transmit, so the caches are shared with trafgen and with the
//! stack's handling of what passes, as on a busy host.

mod flows;
mod subject;

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{Context as _, Result, ensure};
use aya::sys::{Stats, enable_stats};
use denylist::{dataplane::DetectLevels, model::List};
use denylist_tests::{
    XDP_DROP, XDP_PASS,
    daemon::TempDir,
    netns::{Pair, PairConfig},
};
use ipnet::IpNet;
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use serde_json::json;

use crate::{
    deploy,
    packet::{
        Sizes,
        tables::{self, Gen, Tables},
        xdp_filter::{XDP_FILTER_ENTRIES, xdp_filter_entries},
    },
    report::{Goal, Opts, Section, Table, fmt_num, median},
};
use flows::{Cover, Ends, Flow};
use subject::{Subject, Turn};

/// Seeds the tables, the sources and their order: every run sends the same
/// traffic at the same tables.
const SEED: u64 = 15;

struct Plan {
    /// Distinct sources of the miss flow, and of the hit flows where the
    /// tables list that many.
    sources: usize,
    /// Frames per turn.
    frames: u64,
    rounds: usize,
    /// Repeats of each BPF_PROG_TEST_RUN.
    repeat: u32,
    large: Sizes,
    /// Exact IPv4 entries of the biggest table.
    huge: u32,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                sources: 4_096,
                frames: 16_384,
                rounds: 1,
                repeat: 10_000,
                large: Sizes::large(true),
                huge: 1_000,
            }
        } else {
            Self {
                sources: 65_536,
                // One cycle of the miss flow's sources. Short turns, many
                // rounds: the caches (L3 above all) are shared with the
                // host's other guests, and a turn of eight cycles, a second
                // long, moved by ±40% from one second to the next (five
                // rounds gave the detector a cost of −31 ns on one flow and
                // +35 ns on the other). Turns a fifth of a second apart
                // pair up far better.
                frames: 65_536,
                rounds: 25,
                repeat: 1_000_000,
                large: Sizes::large(false),
                huge: 10_000_000,
            }
        }
    }
}

/// The programs, in the order they take their turns.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Who {
    Floor,
    XdpFilter,
    Small,
    /// The small tables with the rate detector in monitor mode.
    SmallDetecting,
    Large,
    Huge,
}

const WHO: [Who; 6] = [
    Who::Floor,
    Who::XdpFilter,
    Who::Small,
    Who::SmallDetecting,
    Who::Large,
    Who::Huge,
];

/// The flows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Miss,
    HitSmall,
    HitLarge,
    HitHuge,
}

/// Each program with each of its flows. The floor drops whatever comes, so
/// its two flows show that its cost is the same for any source.
const CASES: [(Who, Path); 12] = [
    (Who::Floor, Path::Miss),
    (Who::Floor, Path::HitSmall),
    (Who::XdpFilter, Path::Miss),
    (Who::XdpFilter, Path::HitSmall),
    (Who::Small, Path::Miss),
    (Who::Small, Path::HitSmall),
    (Who::SmallDetecting, Path::Miss),
    (Who::SmallDetecting, Path::HitSmall),
    (Who::Large, Path::Miss),
    (Who::Large, Path::HitLarge),
    (Who::Huge, Path::Miss),
    (Who::Huge, Path::HitHuge),
];

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::Miss => "IPv4 miss",
            _ => "IPv4 exact hit",
        }
    }
}

/// One program on one flow, and every round's figures.
struct Case {
    who: Who,
    path: Path,
    want: u32,
    turns: Vec<Turn>,
    /// test_run under the statistics, ns.
    hot: Vec<f64>,
    /// test_run's own timer with the statistics off, ns.
    own: Vec<f64>,
}

impl Case {
    fn cold(&self) -> f64 {
        median(self.turns.iter().map(|t| t.ns).collect())
    }

    fn hot(&self) -> f64 {
        median(self.hot.clone())
    }

    /// The median over rounds of `f` of this case's turn and `other`'s in
    /// the same round: what moves the machine from one round to the next
    /// moves both.
    fn paired(&self, other: &Case, f: impl Fn(f64, f64) -> f64) -> f64 {
        median(
            self.turns
                .iter()
                .zip(&other.turns)
                .map(|(a, b)| f(a.ns, b.ns))
                .collect(),
        )
    }

    fn own(&self) -> f64 {
        median(self.own.clone())
    }

    /// Fails unless the program dropped what it must: all of a hit flow
    /// (or all, for the floor), none of a miss. A stray frame of the
    /// namespaces' own (IPv6 neighbour discovery) may slip into a turn.
    fn check(&self, t: &Turn, name: &str) -> Result<()> {
        let ok = if self.want == XDP_DROP {
            t.dropped * 100 >= t.runs * 99
        } else {
            t.dropped * 100 <= t.runs
        };
        ensure!(
            ok,
            "{name}, {}: dropped {} of {} frames, verdict {} expected",
            self.path.name(),
            t.dropped,
            t.runs,
            self.want
        );
        Ok(())
    }
}

fn v4(net: &IpNet) -> Option<Ipv4Addr> {
    match net.addr() {
        IpAddr::V4(a) if net.prefix_len() == 32 => Some(a),
        _ => None,
    }
}

fn exact(a: IpAddr) -> (IpNet, List) {
    (IpNet::from(a), List::Deny)
}

pub fn run(opts: &Opts) -> Result<Section> {
    let plan = Plan::new(opts.quick);
    let dir = TempDir::new("bench-cold");
    let mut gen_ = Gen::new(SEED);
    let mut rng = StdRng::seed_from_u64(SEED);

    // The tables: xdp-filter's limit of exact entries per family, held by
    // both; the large tables; and the biggest list of exact IPv4 entries.
    let (xf_v4, xf_v6) = xdp_filter_entries(&mut gen_);
    let small = Tables {
        entries: xf_v4
            .iter()
            .map(|&a| exact(a.into()))
            .chain(xf_v6.iter().map(|&a| exact(a.into())))
            .collect(),
    };
    let large = Tables::large(plan.large, &mut gen_);
    let huge = Tables {
        entries: (0..plan.huge)
            .map(|i| exact(deploy::exact_v4(i).into()))
            .collect(),
    };

    // The sources: one miss flow that no table covers, and the listed
    // sources of each table. xdp-filter lists at most 10,000 IPv4
    // addresses, so its hit flow has that many sources at most.
    let (miss, hit_large) = {
        let covers = [
            Cover::new(&small.entries),
            Cover::new(&large.entries),
            Cover::new(&huge.entries),
        ];
        let miss = flows::misses(&mut gen_, plan.sources, &covers.each_ref());
        let mut hits: Vec<Ipv4Addr> = large
            .entries
            .iter()
            .filter(|(_, l)| *l == List::Deny)
            .filter_map(|(n, _)| v4(n))
            .filter(|&a| !covers[1].allows(a))
            .collect();
        hits.shuffle(&mut rng);
        hits.truncate(plan.sources);
        (miss, hits)
    };
    let hit_small: Vec<Ipv4Addr> = xf_v4.iter().copied().take(plan.sources).collect();
    let hit_huge: Vec<Ipv4Addr> = rand::seq::index::sample(
        &mut rng,
        plan.huge as usize,
        plan.sources.min(plan.huge as usize),
    )
    .iter()
    .map(|i| deploy::exact_v4(i as u32))
    .collect();

    eprintln!("bench: cold: loading the tables");
    let small_name = format!("{XDP_FILTER_ENTRIES} exact per family");
    let (dp_small, _) = tables::load(&small, &small_name)?;
    let (mut dp_detecting, _) = tables::load(&small, &small_name)?;
    // Monitor mode at the default threshold: the sources of these flows
    // send far below it, so the detector only counts, as in production.
    dp_detecting.detector().set(DetectLevels {
        packets: 10_000,
        bytes: 0,
        events: 4096,
    });
    drop(small);
    let (dp_large, _) = tables::load(&large, "large")?;
    drop(large);
    let (dp_huge, _) = tables::load(&huge, &format!("{} exact IPv4", plan.huge))?;
    drop(huge);

    // One pair per program, all alike.
    let pairs: Vec<Pair> = (0..WHO.len())
        .map(|i| Pair::new(&format!("bcold{i}"), PairConfig::default()))
        .collect::<Result<_>>()?;
    let ends = Ends::of(&pairs[0])?;
    for p in &pairs {
        ensure!(
            Ends::of(p)? == ends,
            "the veth pairs differ in their addresses"
        );
    }
    let flows = [
        Flow::write(dir.path(), "miss", miss, &ends, &mut rng)?,
        Flow::write(dir.path(), "hit_small", hit_small, &ends, &mut rng)?,
        Flow::write(dir.path(), "hit_large", hit_large, &ends, &mut rng)?,
        Flow::write(dir.path(), "hit_huge", hit_huge, &ends, &mut rng)?,
    ];
    let flow = |p: Path| &flows[p as usize];

    let huge_name = format!("denylist, {} exact IPv4", plan.huge);
    let subjects = [
        Subject::floor("bare XDP_DROP", &pairs[0])?,
        Subject::xdp_filter("xdp-filter IP-only", &pairs[1], &xf_v4, &xf_v6)?,
        Subject::denylist(&format!("denylist, {small_name}"), &pairs[2], dp_small)?,
        Subject::denylist(
            &format!("denylist with the rate detector, {small_name}"),
            &pairs[3],
            dp_detecting,
        )?,
        Subject::denylist("denylist, large tables", &pairs[4], dp_large)?,
        Subject::denylist(&huge_name, &pairs[5], dp_huge)?,
    ];
    let subject = |w: Who| &subjects[w as usize];

    let mut cases: Vec<Case> = CASES
        .iter()
        .map(|&(who, path)| Case {
            who,
            path,
            want: if who == Who::Floor || path != Path::Miss {
                XDP_DROP
            } else {
                XDP_PASS
            },
            turns: Vec::new(),
            hot: Vec::new(),
            own: Vec::new(),
        })
        .collect();
    for round in 1..=plan.rounds {
        eprintln!("bench: cold: round {round} of {}", plan.rounds);
        {
            // The descriptor turns the statistics off again when dropped.
            let _stats = enable_stats(Stats::RunTime).context("BPF_ENABLE_STATS")?;
            for c in &mut cases {
                let (s, f) = (subject(c.who), flow(c.path));
                let checked = || -> Result<Turn> {
                    let turn = s.turn(f, plan.frames)?;
                    c.check(&turn, &s.name)?;
                    Ok(turn)
                };
                // A turn shares the veth pair with the namespaces' own
                // traffic and trafgen's start: one that fails its check
                // runs again, and only a second failure fails the section,
                // each said in the log.
                let turn = checked().or_else(|e| {
                    eprintln!("bench: cold: {e:#}; running the turn again");
                    checked()
                })?;
                c.turns.push(turn);
                let hot = s.test_run(f, plan.repeat, c.want)?;
                c.hot
                    .push(hot.stats_ns.context("test_run ran without statistics")?);
            }
        }
        // test_run's own timer as the packet section reads it: with the
        // statistics on, their clock reads would be in it.
        for c in &mut cases {
            let run = subject(c.who).test_run(flow(c.path), plan.repeat, c.want)?;
            c.own.push(run.own_ns);
        }
    }
    report(&plan, &cases, &subjects, &flows)
}

fn report(
    plan: &Plan,
    cases: &[Case],
    subjects: &[Subject<'_>],
    flows: &[Flow],
) -> Result<Section> {
    let find = |who: Who, path: Path| -> &Case {
        cases
            .iter()
            .find(|c| c.who == who && c.path == path)
            .expect("every case ran")
    };
    let flow = |p: Path| &flows[p as usize];
    let path_label = |p: Path| format!("{} ({} sources)", p.name(), flow(p).sources);
    let s = fmt_num;

    let compared = [Path::Miss, Path::HitSmall];
    let comparison = Table {
        title: format!(
            "Cache-cold ns/packet under traffic, {XDP_FILTER_ENTRIES} exact entries per family on both sides"
        ),
        columns: [
            "path",
            "denylist",
            "xdp-filter IP-only",
            "bare XDP_DROP",
            "denylist − floor",
            "xdp-filter − floor",
            "denylist / xdp-filter IP-only",
            "denylist with the detector",
            "detector's cost",
            "with the detector / xdp-filter IP-only",
        ]
        .map(str::to_owned)
        .to_vec(),
        rows: compared
            .iter()
            .map(|&p| {
                let (dl, xf, fl, det) = (
                    find(Who::Small, p),
                    find(Who::XdpFilter, p),
                    find(Who::Floor, p),
                    find(Who::SmallDetecting, p),
                );
                vec![
                    path_label(p),
                    s(dl.cold()),
                    s(xf.cold()),
                    s(fl.cold()),
                    s(dl.paired(fl, |a, b| a - b)),
                    s(xf.paired(fl, |a, b| a - b)),
                    format!("{:.2}", dl.paired(xf, |a, b| a / b)),
                    s(det.cold()),
                    s(det.paired(dl, |a, b| a - b)),
                    format!("{:.2}", det.paired(xf, |a, b| a / b)),
                ]
            })
            .collect(),
        notes: vec![
            format!(
                "Each figure is the program's own run time under traffic, run_time_ns ÷ run_cnt with BPF run-time statistics on (as with kernel.bpf_stats_enabled=1), median over {} rounds, every program taking its turn on each of its flows in every round. A turn is {} frames sent by trafgen on one CPU.",
                plan.rounds, plan.frames
            ),
            "Differences and ratios (the − floor columns, the ratios, the detector's cost) are medians over the rounds of each round's pair of turns, which ran a fraction of a second apart: the caches are shared with the host's other guests, and one program's figure moves by tens of percent from one second to the next, which pairing cancels where the medians of the two columns would not.".to_owned(),
            format!(
                "Sources: the miss flow comes from {} random unicast IPv4 addresses that no table covers; the hit flow from the listed IPv4 addresses themselves, {} of them: xdp-filter holds at most {XDP_FILTER_ENTRIES} per family, so the hit path cannot have as many distinct sources as the miss path. Both programs also hold {XDP_FILTER_ENTRIES} exact IPv6 entries.",
                flow(Path::Miss).sources,
                flow(Path::HitSmall).sources
            ),
            "Frames: a trafgen config with one 60-byte UDP frame per source, in a random order (a seeded shuffle), sent round robin: every source once a cycle, none again before all the others. A counter (dinc) would walk the addresses in order, and random bytes (drnd) would leave the listed set.".to_owned(),
            format!(
                "Each program sits alone in native XDP on the receiving end of its own veth pair. xdp-filter is loaded with `xdp-filter load IFACE -m native -f ipv4,ipv6` and LIBXDP_SKIP_DISPATCHER=1; the bench checks that the interface runs xdp-filter's own program in native mode ({}, by prog id and name in `ip -d link`), not libxdp's dispatcher, so the statistics are its alone.",
                subjects[Who::XdpFilter as usize].prog_name
            ),
            "The statistics wrap each run in two sched_clock() reads, part of which lands in every figure: the bare XDP_DROP is that floor, and the − floor columns take it out.".to_owned(),
            "With the detector: the same tables in a second program with the rate detector in monitor mode at `--pps 10000`, on its own veth pair; every source sends far below the threshold, so it counts and never reports. Its cost is the difference from denylist without it.".to_owned(),
        ],
    };

    let floor = find(Who::Floor, Path::Miss);
    let hot_table = Table {
        title: "Cache-cold (traffic) against hot (BPF_PROG_TEST_RUN), ns/packet".to_owned(),
        columns: [
            "program",
            "path",
            "under traffic",
            "− floor",
            "test_run, statistics",
            "traffic / test_run",
            "test_run, own timer",
        ]
        .map(str::to_owned)
        .to_vec(),
        rows: cases
            .iter()
            .map(|c| {
                vec![
                    subjects[c.who as usize].name.clone(),
                    path_label(c.path),
                    s(c.cold()),
                    s(c.paired(floor, |a, b| a - b)),
                    s(c.hot()),
                    format!("{:.2}", c.cold() / c.hot()),
                    s(c.own()),
                ]
            })
            .collect(),
        notes: hot_notes(plan, cases, flows),
    };

    let goals = compared
        .iter()
        .flat_map(|&p| {
            let xf = find(Who::XdpFilter, p);
            [
                Goal {
                    name: format!(
                        "cache-cold {}, {XDP_FILTER_ENTRIES} exact entries per family, against xdp-filter IP-only",
                        p.name()
                    ),
                    measured: find(Who::Small, p).paired(xf, |a, b| a / b),
                    limit: 1.0,
                    unit: "×".to_owned(),
                },
                Goal {
                    name: format!(
                        "cache-cold {} with the rate detector on, {XDP_FILTER_ENTRIES} exact entries per family, against xdp-filter IP-only",
                        p.name()
                    ),
                    measured: find(Who::SmallDetecting, p).paired(xf, |a, b| a / b),
                    limit: 1.0,
                    unit: "×".to_owned(),
                },
            ]
        })
        .collect();

    let data = json!({
        "rounds": plan.rounds,
        "frames_per_turn": plan.frames,
        "test_run_repeat": plan.repeat,
        "large_sizes": plan.large,
        "huge_exact_v4": plan.huge,
        "flows": flows.iter().map(|f| json!({"flow": f.key, "sources": f.sources})).collect::<Vec<_>>(),
        "programs": subjects.iter().map(|s| json!({"name": s.name, "attached": s.prog_name})).collect::<Vec<_>>(),
        "cases": cases.iter().map(|c| json!({
            "program": subjects[c.who as usize].name,
            "flow": flow(c.path).key,
            "verdict": c.want,
            "cold_ns": c.cold(),
            "test_run_stats_ns": c.hot(),
            "test_run_own_ns": c.own(),
            "turns": c.turns,
            "test_run_stats_ns_per_round": c.hot,
            "test_run_own_ns_per_round": c.own,
        })).collect::<Vec<_>>(),
    });
    Ok(Section {
        key: "cold",
        title: "Per-packet cost under traffic, cache-cold",
        tables: vec![comparison, hot_table],
        goals,
        charts: Vec::new(),
        data,
    })
}

/// How much hotter test_run is, said plainly.
fn hot_notes(plan: &Plan, cases: &[Case], flows: &[Flow]) -> Vec<String> {
    let ratios: Vec<f64> = cases
        .iter()
        .filter(|c| c.who != Who::Floor)
        .map(|c| c.cold() / c.hot())
        .collect();
    let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ratios.iter().copied().fold(0.0, f64::max);
    let miss = cases
        .iter()
        .find(|c| c.who == Who::Small && c.path == Path::Miss)
        .expect("every case ran");
    vec![
        format!(
            "test_run is hotter than traffic: it repeats one frame {} times, so the lookup's cache lines and branches stay warm. Read with the same statistics, the filters cost {}× to {}× as much per packet under this traffic as under test_run; denylist's IPv4 miss with {XDP_FILTER_ENTRIES} entries per family takes {} ns under traffic against {} ns under test_run.",
            plan.repeat,
            fmt_num(lo),
            fmt_num(hi),
            fmt_num(miss.cold()),
            fmt_num(miss.hot()),
        ),
        "− floor: less the bare XDP_DROP under traffic on the miss flow, paired by round. test_run, own timer: its mean per repeat with the statistics off, as the per-packet section measures; the statistics' clock reads make the other test_run column higher.".to_owned(),
        format!(
            "Large tables: {}. The biggest table holds {} exact IPv4 addresses; every denylist program is loaded as denylistd loads it, for a capacity of its entries plus 1,024. The hit flows of these two come from {} and {} of their listed exact IPv4 addresses (none inside an allow prefix).",
            plan.large.describe(),
            plan.huge,
            flows[Path::HitLarge as usize].sources,
            flows[Path::HitHuge as usize].sources
        ),
    ]
}
