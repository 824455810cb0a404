//! UDP frames from trafgen (netsniff-ng) on a pair's sender, at a set rate
//! and from a set of IPv4 sources: the traffic the rate detector's tests
//! judge. trafgen builds the frames itself, so no source needs an address
//! on the sender.

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    process::{Child, Output},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use anyhow::{Context, Result, ensure};

use super::Pair;

/// What trafgen said it did, from its last line.
#[derive(Debug, Clone, Copy)]
pub struct TrafgenReport {
    pub sent: u64,
    pub took: Duration,
    pub cpu: usize,
}

impl TrafgenReport {
    /// Reads a finished trafgen's output; fails if trafgen did.
    pub fn read(out: &Output) -> Result<Self> {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(out.status.success(), "trafgen failed: {text}");
        // "  7 sec, 335 usec on CPU0 (35000 packets)"
        let line = text
            .lines()
            .find(|l| l.contains("usec on CPU"))
            .with_context(|| format!("no timing line in trafgen's output: {text}"))?;
        let n: Vec<u64> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|w| w.parse().ok())
            .collect();
        let [secs, usecs, cpu, sent] = n[..] else {
            anyhow::bail!("cannot read trafgen's line {line:?}");
        };
        Ok(Self {
            sent,
            took: Duration::from_secs(secs) + Duration::from_micros(usecs),
            cpu: cpu as usize,
        })
    }
}

/// Where a blast's frames come from.
#[derive(Debug, Clone, Copy)]
pub enum Sources {
    One(Ipv4Addr),
    /// `base` with its last byte from 1 to `n`, in turn.
    Cycle {
        base: Ipv4Addr,
        n: u8,
    },
    /// The first byte of `base`, the other three random for each frame:
    /// about as many distinct sources as frames, up to millions.
    Random {
        base: Ipv4Addr,
    },
}

/// A trafgen left running; dropped, it is killed and its config removed.
pub struct Blast(Option<Child>, PathBuf);

impl Drop for Blast {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.1);
    }
}

impl Blast {
    /// Waits for trafgen to send its count; returns the rate it achieved,
    /// in frames a second.
    pub fn finish(mut self) -> Result<u64> {
        let child = self.0.take().context("the blast is running")?;
        let out = child.wait_with_output().context("waiting for trafgen")?;
        let report = TrafgenReport::read(&out)?;
        Ok(report.sent * 1_000_000 / report.took.as_micros().max(1) as u64)
    }
}

impl Pair {
    /// Starts sending `count` frames from `sources` at up to `pps` frames a
    /// second, evenly spread (0: as fast as one CPU can), to the receiver.
    pub fn blast(&self, sources: Sources, pps: u64, count: u64) -> Result<Blast> {
        // `ip -br link`: name, state, MAC.
        let mac = |ns: &super::Netns, iface: &str| -> Result<String> {
            let out = ns.run(&["ip", "-br", "link", "show", "dev", iface])?;
            out.split_whitespace()
                .nth(2)
                .map(str::to_owned)
                .with_context(|| format!("no MAC for {iface} in {out:?}"))
        };
        let saddr = match sources {
            Sources::One(a) => format!("saddr={a}"),
            Sources::Cycle { base, n } => format!("saddr={base}, saddr[3]=dinc(1, {n})"),
            Sources::Random { base } => {
                format!("saddr={base}, saddr[1]=drnd(), saddr[2]=drnd(), saddr[3]=drnd()")
            }
        };
        let conf = format!(
            "{{\n  eth(da={}, sa={}),\n  ipv4({saddr}, daddr={}, ttl=64),\n  udp(sp=4000, dp=9),\n  fill(0, 18),\n}}\n",
            mac(&self.receiver, &self.receiver_if)?,
            mac(&self.sender, &self.sender_if)?,
            self.receiver_v4
        );
        // A file per blast: trafgen reads it once started, by which time a
        // second blast must not have overwritten it.
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "denylist-blast-{}-{}.trafgen",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, conf).context("writing the trafgen config")?;
        let mut cmd = self.sender.cmd("trafgen");
        cmd.args(["--dev", &self.sender_if, "--conf"])
            .arg(&path)
            .args(["--num", &count.to_string(), "--cpus", "1", "--no-sock-mem"]);
        // A gap between frames rather than `--rate`: on a veth whose peer
        // runs XDP, trafgen's rate control sends in bursts and then idles,
        // so one second may carry half again the rate asked. With a gap the
        // frames are spread evenly, at a little under `pps`.
        if let Some(gap) = 1_000_000_000u64.checked_div(pps) {
            cmd.args(["--gap", &format!("{gap}ns")]);
        }
        let child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("running trafgen (Debian package netsniff-ng)")?;
        Ok(Blast(Some(child), path))
    }
}
