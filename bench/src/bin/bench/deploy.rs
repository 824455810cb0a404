//! Deploy speed, end to end: the `denylist` CLI → denylistd → its store →
//! the kernel maps, beside `nft -f` into a set and `ipset restore` of the
//! same lists. nft and ipset run in a throwaway network namespace each:
//! their state is per namespace and goes with it.
//!
//! The daemon and CLI are the binaries next to this one, so `cargo xtask
//! bench` (a release build) measures the release binaries.

use std::{
    fs::File,
    io::{BufWriter, Write as _},
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use denylist_tests::{
    daemon::{Daemon, Home, TempDir, bin},
    netns::Netns,
};
use ipnet::Ipv4Net;
use serde_json::{Value, json};

use crate::{
    chart::{self, Series},
    report::{Chart, Goal, Opts, Section, Table, fmt_num},
};

/// Every bench import uses this source, so `--replace` replaces it.
const SOURCE: &str = "bench";

/// How many entries each measurement uses.
pub struct Sizes {
    /// The full list: 1M exact IPv4 addresses.
    pub full: u32,
    /// Deploy time against list size, ending with `full`.
    pub series: Vec<u32>,
    /// IPv4 prefixes.
    pub prefixes: u32,
    /// Single adds timed for the incremental median.
    pub incremental: usize,
}

pub fn sizes(opts: &Opts) -> Sizes {
    if opts.quick {
        Sizes {
            full: 10_000,
            series: vec![1_000, 10_000],
            prefixes: 500,
            incremental: 5,
        }
    } else {
        Sizes {
            full: 1_000_000,
            series: vec![10_000, 100_000, 1_000_000],
            prefixes: 100_000,
            incremental: 20,
        }
    }
}

/// The daemon's capacity for a list of `n`: room for the incremental adds
/// on top. A replace needs none: the kernel takes removals out first.
pub fn capacity(n: u32) -> u32 {
    n + n / 10
}

/// The `i`-th address of the generated lists (i < 2^28). An odd multiplier
/// permutes the 2^28 addresses from 20.0.0.0 to 35.255.255.255: distinct,
/// scattered as a real list's are, and in public space no guardrail
/// refuses.
pub fn exact_v4(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x1400_0000 + (i.wrapping_mul(2_654_435_761) & 0x0fff_ffff))
}

/// The `i`-th prefix (i < 2^17): each in its own /21 of 40.0.0.0 to
/// 55.255.255.255, so none overlaps another (an nft interval set refuses
/// overlaps), with lengths from /21 to /28, mostly /24 as in real lists.
pub fn prefix_v4(i: u32) -> Ipv4Net {
    const LENGTHS: [u8; 10] = [21, 22, 23, 24, 24, 24, 24, 24, 26, 28];
    let slot = i.wrapping_mul(2_654_435_761) & 0x1_ffff;
    let addr = Ipv4Addr::from(0x2800_0000 + (slot << 11));
    Ipv4Net::new(addr, LENGTHS[(i % 10) as usize]).expect("lengths are at most 32")
}

/// One target a line.
pub fn write_list(path: &Path, targets: impl Iterator<Item = String>) -> Result<()> {
    let mut w =
        BufWriter::new(File::create(path).with_context(|| format!("creating {}", path.display()))?);
    for t in targets {
        writeln!(w, "{t}")?;
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `cmd`, failing with its stderr unless it succeeds; returns the
/// output and the wall time, process start included.
fn timed(cmd: &mut Command, what: &str) -> Result<(Output, Duration)> {
    let start = Instant::now();
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    let took = start.elapsed();
    ensure!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok((out, took))
}

/// Where the measured denylistd and denylist are: next to this binary
/// (DENYLIST_BIN_DIR overrides), so a full run must be a release build, or
/// it would time debug binaries.
pub fn binaries(opts: &Opts) -> Result<PathBuf> {
    ensure!(
        opts.quick || !cfg!(debug_assertions) || std::env::var_os("DENYLIST_BIN_DIR").is_some(),
        "a full bench of a debug build would time the debug binaries: run `cargo xtask bench`, which builds them in release"
    );
    let dir = bin("denylistd")
        .parent()
        .context("the binary's directory")?
        .to_path_buf();
    // bin() stops with how to build it when the CLI is missing too.
    bin("denylist");
    Ok(dir)
}

/// A denylistd of the workspace with its own state, socket and pins; it
/// is killed and everything it pinned removed on drop.
pub struct Denylistd {
    // First, so the daemon stops before its home goes.
    pub daemon: Daemon,
    pub home: Home,
}

/// One import and deploy, seconds. The phases are the daemon's own
/// figures (docs/api.md); they need not add up to the total.
#[derive(Debug, Clone, Copy)]
pub struct Deployed {
    /// The import's `parse_ms`: reading the file, checking every line
    /// and the guardrails.
    pub parse: f64,
    /// The import's `stage_ms` plus the deploy's `plan`: the store's
    /// work before the kernel's.
    pub store: f64,
    /// The deploy's `kernel`: writing the maps.
    pub kernel: f64,
    /// The deploy's `commit`: recording the revision, which may run
    /// alongside `kernel`.
    pub commit: f64,
    /// Both CLI commands' wall time, process starts included.
    pub total: f64,
    pub added: u64,
    pub removed: u64,
}

impl Deployed {
    pub fn json(&self) -> Value {
        json!({
            "parse_s": self.parse, "store_s": self.store, "kernel_s": self.kernel,
            "commit_s": self.commit, "total_s": self.total, "added": self.added, "removed": self.removed,
        })
    }
}

fn field(v: &Value, path: &[&str]) -> Result<u64> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_u64)
        .with_context(|| format!("no {} in the reply {v}", path.join(".")))
}

impl Denylistd {
    pub fn start(tag: &str, capacity: u32) -> Self {
        let home = Home::new(tag);
        let daemon = Daemon::start(&home, None, &["--capacity", &capacity.to_string()]);
        Self { daemon, home }
    }

    /// `denylist ARGS --json` against this daemon: the reply and the wall
    /// time, the CLI's process start included.
    pub fn cli(&self, args: &[&str]) -> Result<(Value, Duration)> {
        let what = format!("denylist {}", args.join(" "));
        let (out, took) = timed(
            Command::new(bin("denylist"))
                .args(args)
                .arg("--socket")
                .arg(self.home.socket())
                .arg("--json"),
            &what,
        )?;
        let v = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("{what} printed no JSON"))?;
        Ok((v, took))
    }

    /// `denylist import FILE` (with `--replace` when asked), then `denylist
    /// deploy`; checks that the deploy changed `added` and `removed`.
    pub fn import_deploy(
        &self,
        file: &Path,
        replace: bool,
        added: u64,
        removed: u64,
    ) -> Result<Deployed> {
        let path = file.to_str().context("a UTF-8 list path")?;
        let mut args = vec!["import", path, "--source", SOURCE];
        if replace {
            args.push("--replace");
        }
        let (import, import_took) = self.cli(&args)?;
        let (deploy, deploy_took) = self.cli(&["deploy"])?;
        let got = (field(&deploy, &["added"])?, field(&deploy, &["removed"])?);
        ensure!(
            got == (added, removed),
            "the deploy added {} and removed {} entries instead of {added} and {removed}: {deploy}",
            got.0,
            got.1
        );
        let ms = |v: &Value, p: &[&str]| field(v, p).map(|ms| ms as f64 / 1000.0);
        Ok(Deployed {
            parse: ms(&import, &["parse_ms"])?,
            store: ms(&import, &["stage_ms"])? + ms(&deploy, &["phases_ms", "plan"])?,
            kernel: ms(&deploy, &["phases_ms", "kernel"])?,
            commit: ms(&deploy, &["phases_ms", "commit"])?,
            total: secs(import_took + deploy_took),
            added,
            removed,
        })
    }

    /// A fresh daemon with `file`'s `n` entries deployed.
    pub fn loaded(tag: &str, capacity: u32, file: &Path, n: u32) -> Result<(Self, Deployed)> {
        let d = Self::start(tag, capacity);
        let took = d.import_deploy(file, false, u64::from(n), 0)?;
        Ok((d, took))
    }
}

/// How nft and ipset hold a list.
#[derive(Clone, Copy)]
pub enum Kind {
    Exact,
    Prefix,
}

/// A set loaded with `nft -f` in its own namespace, kept for as long as
/// this lives.
pub struct NftSet {
    pub ns: Netns,
    pub load: Duration,
}

pub fn nft_load(dir: &Path, targets: &[String], kind: Kind) -> Result<NftSet> {
    let ns = Netns::new("bnft")?;
    let file = dir.join("set.nft");
    let mut w = BufWriter::new(File::create(&file)?);
    writeln!(w, "table ip bench {{\n\tset deny {{\n\t\ttype ipv4_addr")?;
    if let Kind::Prefix = kind {
        writeln!(w, "\t\tflags interval")?;
    }
    writeln!(w, "\t\telements = {{")?;
    for t in targets {
        writeln!(w, "\t\t\t{t},")?;
    }
    writeln!(w, "\t\t}}\n\t}}\n}}")?;
    w.flush()?;
    drop(w);
    let (_, load) = timed(
        ns.cmd("nft").arg("-f").arg(&file),
        &format!("nft -f with {} elements", targets.len()),
    )?;
    // One element read back: the set is really there.
    ns.run(&[
        "nft",
        "get",
        "element",
        "ip",
        "bench",
        "deny",
        &format!("{{ {} }}", targets[0]),
    ])?;
    Ok(NftSet { ns, load })
}

/// `ipset restore` of a `hash:ip` or `hash:net` set in its own namespace,
/// sized up front (hashsize ≥ the entries) so no resize rehashes it midway.
pub struct Ipset {
    pub ns: Netns,
    pub load: Duration,
}

pub fn ipset_load(dir: &Path, targets: &[String], kind: Kind) -> Result<Ipset> {
    let ns = Netns::new("bipset")?;
    let file = dir.join("set.ipset");
    let n = targets.len();
    let hashsize = n.next_power_of_two().max(1024);
    let ty = match kind {
        Kind::Exact => "hash:ip",
        Kind::Prefix => "hash:net",
    };
    let mut w = BufWriter::new(File::create(&file)?);
    writeln!(
        w,
        "create deny {ty} family inet hashsize {hashsize} maxelem {}",
        n.max(65_536)
    )?;
    for t in targets {
        writeln!(w, "add deny {t}")?;
    }
    w.flush()?;
    drop(w);
    let (_, load) = timed(
        ns.cmd("ipset").arg("restore").arg("-f").arg(&file),
        &format!("ipset restore of {n} entries"),
    )?;
    let held = ipset_header(&ns, "Number of entries")?;
    ensure!(
        held == n as u64,
        "ipset holds {held} entries instead of {n}"
    );
    Ok(Ipset { ns, load })
}

/// A number from `ipset list -t deny`, e.g. "Size in memory".
pub fn ipset_header(ns: &Netns, key: &str) -> Result<u64> {
    let out = ns.run(&["ipset", "list", "-t", "deny"])?;
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no {key:?} in `ipset list -t`:\n{out}"))
}

/// One-address changes on top of the full list, wall times in ms: the
/// goal's two commands, and the steps `add --deploy` is made of, each
/// measured on its own so that the table can say where its time goes.
struct Incremental {
    /// `denylist add ADDR --deploy`.
    add: Vec<f64>,
    /// `nft add element` into a set of the same size.
    nft: Vec<f64>,
    /// `denylist --version`: the CLI's process start and exit alone.
    version: Vec<f64>,
    /// `denylist check ADDR` for an address on no list: a process, a
    /// connection and one request answered from memory. (`status`
    /// would not do: it counts the installed entries, milliseconds at 1M.)
    check: Vec<f64>,
    /// `denylist add ADDR`: staging one entry (one store transaction).
    stage: Vec<f64>,
    /// `denylist deploy` of that one staged entry.
    deploy: Vec<f64>,
    /// The daemon's own phases of each `add --deploy`'s deploy (its reply's
    /// `deployed.phases_ms`, whole milliseconds): plan, kernel, commit.
    phases: Vec<[f64; 3]>,
}

fn incremental(d: &Denylistd, nft: &NftSet, full: u32, runs: usize) -> Result<Incremental> {
    let mut m = Incremental {
        add: Vec::with_capacity(runs),
        nft: Vec::with_capacity(runs),
        version: Vec::with_capacity(runs),
        check: Vec::with_capacity(runs),
        stage: Vec::with_capacity(runs),
        deploy: Vec::with_capacity(runs),
        phases: Vec::with_capacity(runs),
    };
    let ms = |took: Duration| secs(took) * 1000.0;
    // Addresses in neither the list nor its replacement.
    let fresh = full + full / 5;
    for k in 0..runs as u32 {
        let a = exact_v4(fresh + k).to_string();
        let (reply, took) = d.cli(&["add", &a, "--deploy"])?;
        ensure!(
            field(&reply, &["deployed", "added"])? == 1,
            "denylist add {a} --deploy did not deploy one entry: {reply}"
        );
        m.add.push(ms(took));
        let phase = |p: &str| field(&reply, &["deployed", "phases_ms", p]).map(|v| v as f64);
        m.phases
            .push([phase("plan")?, phase("kernel")?, phase("commit")?]);
        let b = exact_v4(fresh + 1000 + k).to_string();
        let (_, took) = timed(
            nft.ns
                .cmd("nft")
                .args(["add", "element", "ip", "bench", "deny"])
                .arg(format!("{{ {b} }}")),
            "nft add element",
        )?;
        m.nft.push(ms(took));
        let (_, took) = timed(
            Command::new(bin("denylist")).arg("--version"),
            "denylist --version",
        )?;
        m.version.push(ms(took));
        let off = exact_v4(fresh + 3000 + k).to_string();
        let (_, took) = d.cli(&["check", &off])?;
        m.check.push(ms(took));
        let c = exact_v4(fresh + 2000 + k).to_string();
        let (reply, took) = d.cli(&["add", &c])?;
        ensure!(
            field(&reply, &["added"])? == 1,
            "denylist add {c} did not stage one entry: {reply}"
        );
        m.stage.push(ms(took));
        let (reply, took) = d.cli(&["deploy"])?;
        ensure!(
            field(&reply, &["added"])? == 1,
            "denylist deploy did not deploy the one staged entry: {reply}"
        );
        m.deploy.push(ms(took));
    }
    Ok(m)
}

impl Incremental {
    /// The note that says where `add --deploy`'s median goes, from the
    /// steps measured beside it.
    fn spent(&self, add_med: f64) -> String {
        let med = |v: &[f64]| median(v.to_vec());
        let (version, check) = (med(&self.version), med(&self.check));
        let (stage, deploy) = (med(&self.stage), med(&self.deploy));
        let phase = |i: usize| median(self.phases.iter().map(|p| p[i]).collect());
        format!(
            "Where the {} ms of `add ADDR --deploy` go, from the other rows of this run (medians): \
             starting and ending the CLI process {} ms (`--version`); connecting and one request on top {} ms \
             (`check` − `--version`); staging the entry {} ms (`add` without `--deploy` − `check`); \
             deploying it {} ms (`deploy` − `check`); the daemon's own figures for the add's deploy (its reply's \
             phases, in whole milliseconds, so 0 is under 1 ms): plan {}, kernel {}, commit {}. \
             In the daemon an `add --deploy` commits three SQLite transactions (the stage, the reservation of \
             the entry's id before the kernel sees it, and the revision), each ending in an fsync of the WAL \
             (`synchronous=FULL`), plus a fourth fsync when the WAL restarts after the checkpointer emptied it; \
             it starts a thread for the kernel's write, which is one BPF_MAP_UPDATE_BATCH of one element \
             (counted with `strace -f` on the daemon, one-off measurement on 2026-12-05: 4 fsyncs of 0.2–0.8 ms each).",
            s(add_med),
            s(version),
            s(check - version),
            s(stage - check),
            s(deploy - check),
            s(phase(0)),
            s(phase(1)),
            s(phase(2)),
        )
    }

    fn json(&self) -> Value {
        json!({
            "denylist": self.add, "nft": self.nft, "version": self.version,
            "check": self.check, "stage": self.stage, "deploy": self.deploy,
            "phases_ms": self.phases,
        })
    }
}

fn exact_list(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| exact_v4(i).to_string()).collect()
}

fn s(v: f64) -> String {
    fmt_num(v)
}

pub fn run(opts: &Opts) -> Result<Section> {
    let sz = sizes(opts);
    let dir = TempDir::new("bench-deploy");
    let full = sz.full;
    let bins = binaries(opts)?;

    // Deploy time against list size; the largest stays loaded for the
    // incremental and replace runs.
    let mut series: [Vec<(f64, f64)>; 3] = Default::default();
    let mut kept = None;
    let mut full_row = None;
    for &n in &sz.series {
        eprintln!("bench: deploy: {n} exact IPv4 addresses");
        let targets = exact_list(0..n);
        let file = dir.path().join(format!("exact-{n}.txt"));
        write_list(&file, targets.iter().cloned())?;
        // The others first: an idle daemon with the list would still run
        // its periodic read-back of the maps beside them.
        let nft = nft_load(dir.path(), &targets, Kind::Exact)?;
        let ipset = secs(ipset_load(dir.path(), &targets, Kind::Exact)?.load);
        let (d, ours) = Denylistd::loaded("bdeploy", capacity(n), &file, n)?;
        let x = f64::from(n);
        series[0].push((x, ours.total));
        series[1].push((x, secs(nft.load)));
        series[2].push((x, ipset));
        if n == full {
            full_row = Some((ours, secs(nft.load), ipset));
            kept = Some((d, nft));
        }
    }
    let (ours, nft_full, ipset_full) = full_row.context("the series ends with the full size")?;
    let (d, nft) = kept.context("the full size was loaded")?;

    eprintln!("bench: deploy: {} single adds", sz.incremental);
    let incr = incremental(&d, &nft, full, sz.incremental)?;
    drop(nft);

    eprintln!("bench: deploy: replace with a list that differs by 10%");
    let tenth = full / 10;
    let file = dir.path().join("replace.txt");
    write_list(
        &file,
        (tenth..full + tenth).map(|i| exact_v4(i).to_string()),
    )?;
    let replace = d.import_deploy(&file, true, u64::from(tenth), u64::from(tenth))?;
    drop(d);

    eprintln!("bench: deploy: {} IPv4 prefixes", sz.prefixes);
    let prefixes: Vec<String> = (0..sz.prefixes).map(|i| prefix_v4(i).to_string()).collect();
    let file = dir.path().join("prefixes.txt");
    write_list(&file, prefixes.iter().cloned())?;
    // A prefix takes trie nodes besides its slot of the capacity, and the
    // node pool is bounded by the capacity: the prefixes get the daemon the
    // full list has, as an operator's would be sized.
    let (pd, pours) = Denylistd::loaded("bprefix", capacity(full), &file, sz.prefixes)?;
    drop(pd);
    let pnft = secs(nft_load(dir.path(), &prefixes, Kind::Prefix)?.load);
    let pipset = secs(ipset_load(dir.path(), &prefixes, Kind::Prefix)?.load);

    let chart_file = "deploy.png";
    chart::lines(
        &opts.out_dir.join(chart_file),
        "Deploy time against list size (exact IPv4 addresses)",
        "entries",
        "seconds",
        true,
        &[
            Series {
                name: "denylist import + deploy".into(),
                points: series[0].clone(),
            },
            Series {
                name: "nft -f".into(),
                points: series[1].clone(),
            },
            Series {
                name: "ipset restore".into(),
                points: series[2].clone(),
            },
        ],
    )?;

    let ours_row = |list: String, o: &Deployed, nft: f64| {
        vec![
            list,
            "denylist import + deploy".into(),
            s(o.parse),
            s(o.store),
            s(o.kernel),
            s(o.commit),
            s(o.total),
            s(o.total / nft),
        ]
    };
    let other_row = |list: String, tool: &str, t: f64, nft: f64| {
        vec![
            list,
            tool.into(),
            "—".into(),
            "—".into(),
            "—".into(),
            "—".into(),
            s(t),
            s(t / nft),
        ]
    };
    let exact_name = format!("{full} exact IPv4");
    let prefix_name = format!("{} IPv4 prefixes", sz.prefixes);
    let full_table = Table {
        title: "Full deploy".into(),
        columns: [
            "list",
            "tool",
            "parse (s)",
            "store (s)",
            "kernel (s)",
            "commit (s)",
            "total (s)",
            "÷ nft",
        ]
        .map(String::from)
        .to_vec(),
        rows: vec![
            ours_row(exact_name.clone(), &ours, nft_full),
            other_row(exact_name.clone(), "nft -f (set)", nft_full, nft_full),
            other_row(exact_name, "ipset restore (hash:ip)", ipset_full, nft_full),
            ours_row(prefix_name.clone(), &pours, pnft),
            other_row(prefix_name.clone(), "nft -f (interval set)", pnft, pnft),
            other_row(prefix_name, "ipset restore (hash:net)", pipset, pnft),
        ],
        notes: vec![
            format!(
                "denylist: `denylist import FILE` then `denylist deploy` against a fresh denylistd (--capacity {}) with the binaries in {}.",
                capacity(full),
                bins.display()
            ),
            "The phases are the daemon's own figures: parse is the import's `parse_ms` (reading the file, checking every line and the guardrails); store is the import's `stage_ms` plus the deploy's `plan`; kernel is the deploy's `kernel` (writing the maps); commit is the deploy's `commit` (recording the revision, which may run alongside the kernel's writes, so the phases need not add up). total: wall time of both CLI commands, process starts and the file's transfer included.".into(),
            "nft and ipset: wall time of `nft -f` / `ipset restore -f` of the same list, each in a fresh network namespace; ipset's hashsize is set to the list's size so it never resizes midway.".into(),
            "Prefixes: /21 to /28, mostly /24, none overlapping.".into(),
        ],
    };
    let sizes_table = Table {
        title: "Deploy time against list size (exact IPv4, seconds)".into(),
        columns: [
            "entries",
            "denylist import + deploy",
            "nft -f",
            "ipset restore",
        ]
        .map(String::from)
        .to_vec(),
        rows: (0..sz.series.len())
            .map(|i| {
                vec![
                    sz.series[i].to_string(),
                    s(series[0][i].1),
                    s(series[1][i].1),
                    s(series[2][i].1),
                ]
            })
            .collect(),
        notes: Vec::new(),
    };
    let stats = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        (median(v.clone()), v[0], v[v.len() - 1])
    };
    let row = |command: &str, v: &[f64]| {
        let (med, min, max) = stats(v);
        vec![command.into(), s(med), s(min), s(max), v.len().to_string()]
    };
    let add_med = median(incr.add.clone());
    let nft_med = median(incr.nft.clone());
    let incr_table = Table {
        title: format!("Incremental: one address added to {full} deployed"),
        columns: ["command", "median (ms)", "min (ms)", "max (ms)", "runs"]
            .map(String::from)
            .to_vec(),
        rows: vec![
            row("denylist add ADDR --deploy", &incr.add),
            row("nft add element (set of the same size)", &incr.nft),
            row("denylist --version (process start and exit)", &incr.version),
            row("denylist check ADDR (one read-only request)", &incr.check),
            row("denylist add ADDR (staging only)", &incr.stage),
            row("denylist deploy (one staged entry)", &incr.deploy),
        ],
        notes: vec![
            "Wall time per command, process start included; nft runs through nsenter into its namespace. The commands take turns, one of each per round.".into(),
            incr.spent(add_med),
        ],
    };
    let replace_table = Table {
        title: "Replace: a new list that differs by 10%".into(),
        columns: [
            "run",
            "added",
            "removed",
            "parse (s)",
            "store (s)",
            "kernel (s)",
            "commit (s)",
            "total (s)",
            "÷ full",
        ]
        .map(String::from)
        .to_vec(),
        rows: vec![
            vec![
                "full (into an empty daemon)".into(),
                ours.added.to_string(),
                ours.removed.to_string(),
                s(ours.parse),
                s(ours.store),
                s(ours.kernel),
                s(ours.commit),
                s(ours.total),
                "1".into(),
            ],
            vec![
                "`denylist import --replace` + deploy".into(),
                replace.added.to_string(),
                replace.removed.to_string(),
                s(replace.parse),
                s(replace.store),
                s(replace.kernel),
                s(replace.commit),
                s(replace.total),
                s(replace.total / ours.total),
            ],
        ],
        notes: vec![format!(
            "The new list keeps {} of the {full} addresses and brings {tenth} new ones.",
            full - tenth
        )],
    };

    Ok(Section {
        key: "deploy",
        title: "Deploy speed",
        tables: vec![full_table, sizes_table, incr_table, replace_table],
        goals: vec![
            Goal {
                name: format!("full deploy of {full} IPv4 ÷ nft -f"),
                measured: ours.total / nft_full,
                limit: 1.0,
                unit: "×".into(),
            },
            Goal {
                name: format!("add ADDR --deploy on {full}, median ÷ nft add element, median"),
                measured: add_med / nft_med,
                limit: 1.0,
                unit: "×".into(),
            },
            Goal {
                name: format!(
                    "import --replace + deploy of a {full} list differing by 10% ÷ nft -f of the full list"
                ),
                measured: replace.total / nft_full,
                limit: 0.3,
                unit: "×".into(),
            },
        ],
        charts: vec![Chart {
            file: chart_file.into(),
            title: "Deploy time against list size".into(),
        }],
        data: json!({
            "binaries": bins,
            "full": { "entries": full, "denylist": ours.json(), "nft_s": nft_full, "ipset_s": ipset_full },
            "prefixes": { "entries": sz.prefixes, "denylist": pours.json(), "nft_s": pnft, "ipset_s": pipset },
            "series": sz.series.iter().enumerate().map(|(i, n)| json!({
                "entries": n, "denylist_s": series[0][i].1, "nft_s": series[1][i].1, "ipset_s": series[2][i].1,
            })).collect::<Vec<_>>(),
            "incremental_ms": incr.json(),
            "replace": replace.json(),
        }),
    })
}
