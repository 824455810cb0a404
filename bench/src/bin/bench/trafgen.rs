//! trafgen (netsniff-ng) on one CPU of a veth pair's sender, with the CPU
//! time its sends cost: the traffic that the `traffic` and `cold` sections
//! put through the filters.

use std::{collections::BTreeMap, fs, path::Path, time::Duration};

use anyhow::{Context as _, Result, ensure};
use denylist_tests::netns::{Netns, Pair, TrafgenReport};
use serde_json::Value;

/// One trafgen run.
#[derive(Debug, Clone, Copy)]
pub struct Blast {
    pub sent: u64,
    /// trafgen's own sending time.
    pub took: Duration,
    /// trafgen's CPU time, with the receiver's softirq work in it, plus
    /// what its CPU's ksoftirqd did meanwhile.
    pub cpu: Duration,
}

impl Blast {
    pub fn pps(&self) -> f64 {
        self.sent as f64 / self.took.as_secs_f64()
    }

    pub fn cpu_ns(&self) -> f64 {
        self.cpu.as_nanos() as f64 / self.sent as f64
    }
}

fn ticks(t: u64) -> Duration {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(t * 1_000_000_000 / hz)
}

/// User and system time of every child reaped so far. This kernel
/// accounts CPU time by ticks and charges softirq work to the task it
/// interrupted, so trafgen's time includes the receiver's NAPI poll that
/// its sends raise.
fn children_cpu() -> Duration {
    // SAFETY: an all-zero rusage is valid, and getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: ru is a valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// User and system time of a thread, from /proc/PID/stat.
fn thread_cpu(pid: u32) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // After "(comm)": state is field 0, utime 11 and stime 12.
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| -> Result<u64> {
        f.get(i)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("cannot read {path}: {stat}"))
    };
    Ok(ticks(field(11)? + field(12)?))
}

/// The pid of each CPU's ksoftirqd, by CPU: softirq work the kernel
/// defers runs there instead of in the sender.
fn ksoftirqds() -> Result<BTreeMap<usize, u32>> {
    let mut pids = BTreeMap::new();
    for e in fs::read_dir("/proc").context("reading /proc")? {
        let e = e?;
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if let Some(cpu) = comm.trim().strip_prefix("ksoftirqd/")
            && let Ok(cpu) = cpu.parse::<usize>()
        {
            pids.insert(cpu, pid);
        }
    }
    ensure!(!pids.is_empty(), "no ksoftirqd thread in /proc");
    Ok(pids)
}

/// A MAC address as `ip` reports it in the namespace.
pub fn mac(ns: &Netns, iface: &str) -> Result<String> {
    let out = ns.run(&["ip", "-j", "link", "show", "dev", iface])?;
    let v: Value = serde_json::from_str(&out)?;
    v[0]["address"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no address for {iface} in {out}"))
}

/// trafgen on a pair's sending end.
pub struct Sender<'a> {
    pair: &'a Pair,
    ksoftirqd: BTreeMap<usize, u32>,
}

impl<'a> Sender<'a> {
    pub fn new(pair: &'a Pair) -> Result<Self> {
        Ok(Self {
            pair,
            ksoftirqd: ksoftirqds()?,
        })
    }

    /// Sends `count` frames of the trafgen config `conf` from one CPU and
    /// reads that CPU's busy time around it; trafgen says which CPU it
    /// was.
    pub fn blast(&self, conf: &Path, count: u64) -> Result<Blast> {
        let softirq_before: BTreeMap<usize, Duration> = self
            .ksoftirqd
            .iter()
            .map(|(&cpu, &p)| Ok((cpu, thread_cpu(p)?)))
            .collect::<Result<_>>()?;
        let before = children_cpu();
        let out = self
            .pair
            .sender
            .cmd("trafgen")
            .args(["--dev", &self.pair.sender_if, "--conf"])
            .arg(conf)
            .args(["--num", &count.to_string(), "--cpus", "1", "--no-sock-mem"])
            .output()
            .context("running trafgen (Debian package netsniff-ng)")?;
        let sender = children_cpu().saturating_sub(before);
        let report = TrafgenReport::read(&out)?;
        let (sent, cpu) = (report.sent, report.cpu);
        ensure!(
            sent == count && self.ksoftirqd.contains_key(&cpu),
            "trafgen sent {sent} of {count} packets on CPU {cpu}"
        );
        let deferred = thread_cpu(self.ksoftirqd[&cpu])?.saturating_sub(softirq_before[&cpu]);
        Ok(Blast {
            sent,
            took: report.took,
            cpu: sender + deferred,
        })
    }
}
