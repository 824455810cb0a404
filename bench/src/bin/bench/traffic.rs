//! Under traffic (informational): trafgen sends a fixed count of minimal
//! UDP frames from denied sources over a veth pair, and the filter on the
//! receiving end drops them: denylist in native XDP, an nftables
//! netdev-ingress set, and iptables' raw PREROUTING with an ipset match,
//! beside a bare XDP_DROP and no filter at all. Each holds the same list.
//!
//! veth is not a NIC: the sender's transmit and the receiver's NAPI run on
//! the same CPU, so the figures say what each filter costs relative to the
//! others, not what a NIC would sustain.

use std::{fs, net::Ipv4Addr, process::Command};

use anyhow::{Context as _, Result, bail, ensure};
use aya::{
    Ebpf,
    programs::{Xdp, XdpMode},
    sys::{Stats, enable_stats},
};
use denylist::{
    dataplane::{Dataplane, Layout, object},
    model::{AttachMode, AttachedMode, List, Rule, Target},
};
use denylist_tests::{
    daemon::TempDir,
    netns::{Pair, PairConfig},
};
use serde_json::{Value, json};

use crate::{
    deploy,
    report::{Opts, Section, Table, fmt_num, median},
    trafgen::{Blast, Sender, mac},
};

/// The denied sources trafgen cycles through, one exact entry each.
const SOURCES: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 0);

/// What sits on the receiving veth during a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filter {
    None,
    Floor,
    Denylist,
    Nft,
    Iptables,
}

const FILTERS: [Filter; 5] = [
    Filter::None,
    Filter::Floor,
    Filter::Denylist,
    Filter::Nft,
    Filter::Iptables,
];

impl Filter {
    fn name(self) -> &'static str {
        match self {
            Filter::None => "no filter (the stack drops it: no socket)",
            Filter::Floor => "bare XDP_DROP (native), the floor",
            Filter::Denylist => "denylist (XDP native)",
            Filter::Nft => "nftables netdev ingress, set lookup",
            Filter::Iptables => "iptables raw PREROUTING, ipset hash:ip match",
        }
    }
}

const IPTABLES_RULE: [&str; 9] = [
    "PREROUTING",
    "-m",
    "set",
    "--match-set",
    "deny",
    "src",
    "-j",
    "DROP",
    "-w",
];

/// Every filter loaded with the list once; each is hooked in only for its
/// runs, so the rounds can take turns.
struct Filters<'a> {
    pair: &'a Pair,
    iface: String,
    /// Moved into the receiver's namespace to attach, and back.
    floor: Option<Ebpf>,
    floor_link: Option<aya::programs::xdp::XdpLinkId>,
    dp: Option<Dataplane>,
    /// The denylist's drop counter when it was hooked in.
    dropped_before: u64,
}

impl Filters<'_> {
    fn dp(&mut self) -> Result<&mut Dataplane> {
        self.dp.as_mut().context("the dataplane is in use")
    }

    fn floor(&mut self) -> Result<&mut Xdp> {
        Ok(self
            .floor
            .as_mut()
            .context("the floor is in use")?
            .program_mut("floor")
            .context("no floor program")?
            .try_into()?)
    }

    fn receiver(&self, args: &[&str]) -> Result<String> {
        self.pair.receiver.run(args)
    }

    fn hook(&mut self, f: Filter) -> Result<()> {
        let iface = self.iface.clone();
        match f {
            Filter::None => {}
            Filter::Floor => {
                let mut obj = self.floor.take().context("the floor is in use")?;
                let (obj, link) = self.pair.receiver.enter(move || -> Result<_> {
                    let prog: &mut Xdp = obj
                        .program_mut("floor")
                        .context("no floor program")?
                        .try_into()?;
                    let link = prog
                        .attach(&iface, XdpMode::Driver)
                        .context("attaching the floor in native mode")?;
                    Ok((obj, link))
                })??;
                self.floor = Some(obj);
                self.floor_link = Some(link);
            }
            Filter::Denylist => {
                let mut dp = self.dp.take().context("the dataplane is in use")?;
                let (dp, mode) = self.pair.receiver.enter(move || -> Result<_> {
                    let mode = dp.attach(&iface, AttachMode::Native)?;
                    Ok((dp, mode))
                })??;
                self.dp = Some(dp);
                ensure!(
                    mode == AttachedMode::Native,
                    "veth took XDP in {mode:?} mode"
                );
                self.dropped_before = self.dp()?.counters()?.dropped_packets;
            }
            Filter::Nft => {
                self.receiver(&[
                    "nft",
                    "add",
                    "chain",
                    "netdev",
                    "bench",
                    "ingress",
                    &format!(
                        "{{ type filter hook ingress device {iface} priority -500; policy accept; }}"
                    ),
                ])?;
                self.receiver(&[
                    "nft", "add", "rule", "netdev", "bench", "ingress", "ip", "saddr", "@deny",
                    "counter", "drop",
                ])?;
            }
            Filter::Iptables => {
                let mut args = vec!["iptables", "-t", "raw", "-A"];
                args.extend(IPTABLES_RULE);
                self.receiver(&args)
                    .context("iptables is missing: run `cargo xtask setup`")?;
            }
        }
        Ok(())
    }

    /// Packets the filter counted as dropped since it was hooked in.
    fn dropped(&mut self, f: Filter) -> Result<Option<u64>> {
        Ok(match f {
            Filter::None | Filter::Floor => None,
            Filter::Denylist => {
                let before = self.dropped_before;
                Some(self.dp()?.counters()?.dropped_packets - before)
            }
            Filter::Nft => {
                Some(nft_counter(&self.receiver(&[
                    "nft", "-j", "list", "chain", "netdev", "bench", "ingress",
                ])?)?)
            }
            Filter::Iptables => Some(iptables_counter(&self.receiver(&[
                "iptables",
                "-t",
                "raw",
                "-L",
                "PREROUTING",
                "-v",
                "-x",
                "-n",
                "-w",
            ])?)?),
        })
    }

    fn unhook(&mut self, f: Filter) -> Result<()> {
        match f {
            Filter::None => {}
            Filter::Floor => {
                let link = self
                    .floor_link
                    .take()
                    .context("the floor is not attached")?;
                self.floor()?.detach(link)?;
            }
            Filter::Denylist => {
                let iface = self.iface.clone();
                self.dp()?.detach(&iface)?;
            }
            Filter::Nft => {
                self.receiver(&["nft", "flush", "chain", "netdev", "bench", "ingress"])?;
                self.receiver(&["nft", "delete", "chain", "netdev", "bench", "ingress"])?;
            }
            Filter::Iptables => {
                let mut args = vec!["iptables", "-t", "raw", "-D"];
                args.extend(IPTABLES_RULE);
                self.receiver(&args)?;
            }
        }
        Ok(())
    }
}

/// The packet counter of the rule in `nft -j list chain` output.
fn nft_counter(out: &str) -> Result<u64> {
    let v: Value = serde_json::from_str(out)?;
    v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["rule"]["expr"].as_array())
        .flatten()
        .find_map(|e| e["counter"]["packets"].as_u64())
        .with_context(|| format!("no counter in {out}"))
}

/// The packet count of the one rule in `iptables -L -v -x -n` output.
fn iptables_counter(out: &str) -> Result<u64> {
    out.lines()
        .find(|l| l.contains("match-set"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no match-set rule in {out}"))
}

fn tool_version(program: &str, arg: &str) -> String {
    Command::new(program)
        .arg(arg)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

pub fn run(opts: &Opts) -> Result<Section> {
    let n = deploy::sizes(opts).full;
    // Rounds take turns through the filters, so a slow spell of a shared
    // machine does not land on one filter alone; each filter's figure is
    // the median of its runs.
    let (count, rounds): (u64, usize) = if opts.quick {
        (10_000, 2)
    } else {
        (1_000_000, 3)
    };
    let dir = TempDir::new("bench-traffic");
    let pair = Pair::new("btraf", PairConfig::default())?;

    // The list: the generated addresses plus the 256 sources trafgen uses.
    let sources: Vec<Ipv4Addr> = (0..=255u8)
        .map(|i| Ipv4Addr::from(u32::from(SOURCES) | u32::from(i)))
        .collect();
    let targets: Vec<String> = (0..n)
        .map(|i| deploy::exact_v4(i).to_string())
        .chain(sources.iter().map(ToString::to_string))
        .collect();

    eprintln!(
        "bench: traffic: loading {} entries into each filter",
        targets.len()
    );
    let mut floor = Ebpf::load(object::FLOOR).context("loading the floor program")?;
    let prog: &mut Xdp = floor
        .program_mut("floor")
        .context("no floor program")?
        .try_into()?;
    prog.load()?;
    let rules: Vec<Rule> = targets
        .iter()
        .zip(1..)
        .map(|(t, id)| {
            Ok(Rule {
                id,
                target: Target::parse(t)?,
                list: List::Deny,
                monitor: false,
                expires_ms: None,
            })
        })
        .collect::<Result<_>>()?;
    let mut dp = Dataplane::load(Layout::new(u64::from(deploy::capacity(n)) + 256)?)?;
    dp.apply(&rules, &[])?;
    drop(rules);
    let nft_file = dir.path().join("deny.nft");
    let mut nft =
        String::from("table netdev bench {\n\tset deny {\n\t\ttype ipv4_addr\n\t\telements = {\n");
    let ipset_file = dir.path().join("deny.ipset");
    let mut ipset = format!(
        "create deny hash:ip family inet hashsize {} maxelem {}\n",
        targets.len().next_power_of_two(),
        targets.len().max(65_536)
    );
    for t in &targets {
        nft.push_str("\t\t\t");
        nft.push_str(t);
        nft.push_str(",\n");
        ipset.push_str("add deny ");
        ipset.push_str(t);
        ipset.push('\n');
    }
    nft.push_str("\t\t}\n\t}\n}\n");
    fs::write(&nft_file, nft)?;
    fs::write(&ipset_file, ipset)?;
    pair.receiver
        .run(&["nft", "-f", nft_file.to_str().context("UTF-8 path")?])?;
    pair.receiver.run(&[
        "ipset",
        "restore",
        "-f",
        ipset_file.to_str().context("UTF-8 path")?,
    ])?;
    let mut filters = Filters {
        pair: &pair,
        iface: pair.receiver_xdp_if.clone(),
        floor: Some(floor),
        floor_link: None,
        dp: Some(dp),
        dropped_before: 0,
    };

    let conf = dir.path().join("udp.trafgen");
    fs::write(
        &conf,
        format!(
            "{{\n  eth(da={}, sa={}),\n  ipv4(saddr={SOURCES}, saddr[3]=dinc(), daddr={}, ttl=64),\n  udp(sp=4000, dp=9),\n  fill(0, 18),\n}}\n",
            mac(&pair.receiver, &pair.receiver_if)?,
            mac(&pair.sender, &pair.sender_if)?,
            pair.receiver_v4
        ),
    )?;
    let sender = Sender::new(&pair)?;
    // Warm-up: neighbour and route caches, trafgen's first start.
    sender.blast(&conf, count.min(10_000))?;

    let mut runs: Vec<(Filter, Blast, Option<u64>)> = Vec::new();
    for round in 1..=rounds {
        eprintln!("bench: traffic: round {round} of {rounds}");
        for f in FILTERS {
            filters.hook(f)?;
            let blast = sender.blast(&conf, count);
            let dropped = filters.dropped(f);
            filters.unhook(f)?;
            runs.push((f, blast?, dropped?));
        }
    }

    eprintln!("bench: traffic: denylist with BPF run-time statistics");
    // Its own run: the statistics cost two clock reads a packet. The
    // descriptor turns them off again when dropped, as
    // kernel.bpf_stats_enabled=0 would.
    filters.hook(Filter::Denylist)?;
    let stats = enable_stats(Stats::RunTime).context("BPF_ENABLE_STATS")?;
    let info0 = filters.dp()?.program().info()?;
    let stats_blast = sender.blast(&conf, count);
    let info1 = filters.dp()?.program().info()?;
    drop(stats);
    filters.unhook(Filter::Denylist)?;
    let stats_blast = stats_blast?;
    let run_cnt = info1.run_count() - info0.run_count();
    let run_ns = (info1.run_time() - info0.run_time()).as_nanos() as f64;
    ensure!(
        run_cnt > 0,
        "the program never ran for {} packets",
        stats_blast.sent
    );
    let prog_ns = run_ns / run_cnt as f64;
    // The namespaces go with the pair, and the rules and sets with them.
    drop(filters);
    drop(pair);

    struct Row {
        filter: Filter,
        pps: f64,
        cpu_ns: f64,
        dropped: Option<f64>,
    }
    let mut rows = Vec::new();
    for f in FILTERS {
        let mine: Vec<_> = runs.iter().filter(|r| r.0 == f).collect();
        let sent: u64 = mine.iter().map(|r| r.1.sent).sum();
        let dropped = match mine.iter().map(|r| r.2).sum::<Option<u64>>() {
            Some(0) => bail!("{}: nothing was dropped", f.name()),
            d => d.map(|d| d as f64 / sent as f64),
        };
        rows.push(Row {
            filter: f,
            pps: median(mine.iter().map(|r| r.1.pps()).collect()),
            cpu_ns: median(mine.iter().map(|r| r.1.cpu_ns()).collect()),
            dropped,
        });
    }
    let floor_ns = rows
        .iter()
        .find(|r| r.filter == Filter::Floor)
        .map_or(0.0, |r| r.cpu_ns);
    let table = Table {
        title: format!(
            "Under traffic: UDP frames from denied sources, {} entries listed",
            targets.len()
        ),
        columns: [
            "filter",
            "dropped ÷ sent",
            "sent (Mpps)",
            "CPU ns / packet",
            "− bare XDP_DROP",
        ]
        .map(String::from)
        .to_vec(),
        rows: rows
            .iter()
            .map(|r| {
                vec![
                    r.filter.name().to_owned(),
                    r.dropped
                        .map_or_else(|| "—".into(), |d| format!("{}%", fmt_num(100.0 * d))),
                    fmt_num(r.pps / 1e6),
                    fmt_num(r.cpu_ns),
                    fmt_num(r.cpu_ns - floor_ns),
                ]
            })
            .collect(),
        notes: vec![
            "Informational: veth is not a NIC. The sender's transmit and the receiver's NAPI poll run on the same CPU, so CPU per packet includes trafgen's own sending cost (the same in every row), and the rate is what one CPU sustains for both ends. Native XDP on veth first turns each skb into an XDP buffer, copying the frame when the skb lacks XDP's headroom or is not linear; nftables and iptables see the skb as it is and skip that cost, so the bare XDP_DROP row is the floor of the XDP rows only, and nftables or iptables can come out near or below it here where on a NIC they would not.".into(),
            format!(
                "{rounds} rounds of {count} frames per filter, the filters taking turns; sent and CPU are the median run's. Frames: 60 bytes on the veth (64 on a wire with the FCS), UDP from 198.51.100.0–255 to port 9, sent by trafgen on one CPU; every source is on the list, among {n} other addresses."
            ),
            "CPU ns / packet: trafgen's user and system time (getrusage of the reaped child; the kernel charges the softirq work its sends raise, the receiver's NAPI poll and the filter, to it) plus its CPU's ksoftirqd time over the run, ÷ frames sent. Run it on a quiet machine: the accounting is by ticks, and a busy sibling CPU slows every row unevenly.".into(),
            "dropped ÷ sent: the filter's own drop counter over all its runs; below 100% means frames were lost before the filter (veth's receive ring overflowed).".into(),
            format!(
                "denylist's own run time under this traffic, with BPF run-time statistics on (as with kernel.bpf_stats_enabled=1): {} ns per packet (run_time_ns ÷ run_cnt over {run_cnt} runs).",
                fmt_num(prog_ns)
            ),
            format!(
                "Versions: {}; {}.",
                tool_version("nft", "--version"),
                tool_version("iptables", "--version")
            ),
        ],
    };
    Ok(Section {
        key: "traffic",
        title: "Under traffic (informational)",
        tables: vec![table],
        goals: Vec::new(),
        charts: Vec::new(),
        data: json!({
            "frames_per_run": count,
            "rounds": rounds,
            "entries": targets.len(),
            "runs": runs.iter().map(|(f, b, d)| json!({
                "filter": f.name(), "sent": b.sent, "seconds": b.took.as_secs_f64(),
                "cpu_seconds": b.cpu.as_secs_f64(), "dropped": d,
            })).collect::<Vec<_>>(),
            "denylist_run_time_ns_per_run": prog_ns,
            "denylist_run_cnt": run_cnt,
        }),
    })
}
