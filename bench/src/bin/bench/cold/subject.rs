//! The programs under test. Each sits alone in native XDP on the receiving
//! end of its own veth pair for the whole section, so taking turns costs no
//! attach or detach, and nothing else runs where it is counted.

use std::{os::fd::AsFd as _, time::Duration};

use anyhow::{Context as _, Result, ensure};
use aya::{
    Ebpf,
    programs::{ProgramFd, ProgramInfo, Xdp, XdpMode, loaded_programs},
};
use denylist::{
    dataplane::{Dataplane, object},
    model::{AttachMode, AttachedMode},
};
use denylist_common::PROGRAM_NAME;
use denylist_tests::netns::Pair;
use serde_json::Value;

use super::flows::Flow;
use crate::{packet::xdp_filter, trafgen::Sender};

/// What keeps a program loaded and attached, held only to be dropped
/// last: dropping it detaches.
enum Loaded<'a> {
    Floor { _obj: Ebpf },
    Denylist { _dp: Box<Dataplane> },
    XdpFilter { _xf: xdp_filter::Native<'a> },
}

pub(super) struct Subject<'a> {
    pub(super) name: String,
    /// The attached program's name, as `ip -d link` and bpftool show it.
    pub(super) prog_name: String,
    pair: &'a Pair,
    sender: Sender<'a>,
    /// The attached program's id, checked against the interface's.
    id: u32,
    /// The same program, for BPF_PROG_TEST_RUN.
    fd: ProgramFd,
    _loaded: Loaded<'a>,
}

/// One turn under traffic.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(super) struct Turn {
    /// Frames trafgen sent.
    pub(super) sent: u64,
    /// Runs of the program the kernel counted.
    pub(super) runs: u64,
    /// Frames the program dropped (veth's XDP drop counter).
    pub(super) dropped: u64,
    /// run_time_ns ÷ run_cnt.
    pub(super) ns: f64,
}

/// One BPF_PROG_TEST_RUN.
#[derive(Debug, Clone, Copy)]
pub(super) struct TestRun {
    /// test_run's own timer: the mean of the repeats.
    pub(super) own_ns: f64,
    /// run_time_ns ÷ run_cnt over the repeats; none when the statistics
    /// are off.
    pub(super) stats_ns: Option<f64>,
}

/// What `ip -d link` says is attached to the interface: (prog id, name,
/// mode), mode 1 being native (XDP_ATTACHED_DRV).
fn attached(pair: &Pair) -> Result<(u32, String, u64)> {
    let out = pair.receiver.run(&[
        "ip",
        "-j",
        "-d",
        "link",
        "show",
        "dev",
        &pair.receiver_xdp_if,
    ])?;
    let v: Value = serde_json::from_str(&out)?;
    let xdp = &v[0]["xdp"];
    let id = xdp["prog"]["id"]
        .as_u64()
        .and_then(|i| u32::try_from(i).ok());
    match (id, xdp["prog"]["name"].as_str(), xdp["mode"].as_u64()) {
        (Some(id), Some(name), Some(mode)) => Ok((id, name.to_owned(), mode)),
        _ => anyhow::bail!("no XDP program on {}: {out}", pair.receiver_xdp_if),
    }
}

/// The kernel's current record of program `id`, with its run statistics.
fn info(id: u32) -> Result<ProgramInfo> {
    for p in loaded_programs() {
        let p = p?;
        if p.id() == id {
            return Ok(p);
        }
    }
    anyhow::bail!("program {id} is gone")
}

impl<'a> Subject<'a> {
    /// The bare `return XDP_DROP`.
    pub(super) fn floor(name: &str, pair: &'a Pair) -> Result<Self> {
        let iface = pair.receiver_xdp_if.clone();
        let (obj, id) = pair.receiver.enter(move || -> Result<_> {
            let mut obj = Ebpf::load(object::FLOOR).context("loading the floor program")?;
            let prog: &mut Xdp = obj
                .program_mut("floor")
                .context("no floor program")?
                .try_into()?;
            prog.load()?;
            prog.attach(&iface, XdpMode::Driver)
                .context("attaching the floor in native mode")?;
            let id = prog.info()?.id();
            Ok((obj, id))
        })??;
        Self::new(name, pair, Loaded::Floor { _obj: obj }, id, "floor")
    }

    /// denylist's program, loaded with its tables.
    pub(super) fn denylist(name: &str, pair: &'a Pair, mut dp: Dataplane) -> Result<Self> {
        let iface = pair.receiver_xdp_if.clone();
        let (mut dp, mode) = pair.receiver.enter(move || -> Result<_> {
            let mode = dp.attach(&iface, AttachMode::Native)?;
            Ok((dp, mode))
        })??;
        ensure!(
            mode == AttachedMode::Native,
            "veth took XDP in {mode:?} mode"
        );
        let id = dp.program().info()?.id();
        Self::new(
            name,
            pair,
            Loaded::Denylist { _dp: Box::new(dp) },
            id,
            PROGRAM_NAME,
        )
    }

    /// xdp-filter IP-only, holding `v4` and `v6`.
    pub(super) fn xdp_filter(
        name: &str,
        pair: &'a Pair,
        v4: &[std::net::Ipv4Addr],
        v6: &[std::net::Ipv6Addr],
    ) -> Result<Self> {
        let xf = xdp_filter::Native::load(&pair.receiver, &pair.receiver_xdp_if, v4, v6)?;
        let id = xf.prog.id();
        let prog_name = xf
            .prog
            .name_as_str()
            .context("xdp-filter's program has no name")?
            .to_owned();
        // Its programs are all named xdpfilt_*; libxdp's dispatcher is
        // xdp_dispatcher.
        ensure!(
            prog_name.starts_with("xdpfilt_"),
            "xdp-filter pinned {prog_name}, not one of its own programs"
        );
        Self::new(name, pair, Loaded::XdpFilter { _xf: xf }, id, &prog_name)
    }

    /// Checks that the interface runs program `id`, named `prog_name`, in
    /// native mode: the program whose statistics the section reads.
    fn new(
        name: &str,
        pair: &'a Pair,
        loaded: Loaded<'a>,
        id: u32,
        prog_name: &str,
    ) -> Result<Self> {
        let (on_iface, on_name, mode) = attached(pair)?;
        ensure!(
            on_iface == id && on_name == prog_name && mode == 1,
            "{name}: {} runs program {on_iface} ({on_name}) in mode {mode}, not program {id} \
             ({prog_name}) in native mode",
            pair.receiver_xdp_if
        );
        Ok(Self {
            name: name.to_owned(),
            prog_name: on_name,
            pair,
            sender: Sender::new(pair)?,
            id,
            fd: info(id)?.fd()?,
            _loaded: loaded,
        })
    }

    fn stats(&self) -> Result<(u64, Duration)> {
        let i = info(self.id)?;
        Ok((i.run_count(), i.run_time()))
    }

    /// XDP drops on the receiving veth, all queues.
    fn xdp_drops(&self) -> Result<u64> {
        let out = self
            .pair
            .receiver
            .run(&["ethtool", "-S", &self.pair.receiver_xdp_if])?;
        let drops: Vec<u64> = out
            .lines()
            .filter_map(|l| l.trim().split_once(':'))
            .filter(|(k, _)| k.ends_with("_xdp_drops"))
            .filter_map(|(_, v)| v.trim().parse().ok())
            .collect();
        ensure!(!drops.is_empty(), "no xdp_drops in ethtool -S: {out}");
        Ok(drops.iter().sum())
    }

    /// `count` frames of `flow` through the program, with the statistics
    /// on.
    pub(super) fn turn(&self, flow: &Flow, count: u64) -> Result<Turn> {
        let (cnt0, time0) = self.stats()?;
        let drops0 = self.xdp_drops()?;
        let blast = self.sender.blast(&flow.conf, count)?;
        let (cnt1, time1) = self.stats()?;
        let runs = cnt1 - cnt0;
        ensure!(
            runs > 0,
            "{}: the program never ran for {} frames of {}: are BPF statistics on?",
            self.name,
            blast.sent,
            flow.key
        );
        Ok(Turn {
            sent: blast.sent,
            runs,
            dropped: self.xdp_drops()? - drops0,
            ns: (time1 - time0).as_nanos() as f64 / runs as f64,
        })
    }

    /// BPF_PROG_TEST_RUN of `flow`'s first frame, `repeat` times, checking
    /// the verdict.
    pub(super) fn test_run(&self, flow: &Flow, repeat: u32, want: u32) -> Result<TestRun> {
        let (cnt0, time0) = self.stats()?;
        let (verdict, ns) = denylist_tests::test_run_fd(self.fd.as_fd(), &flow.frame, repeat)
            .with_context(|| format!("BPF_PROG_TEST_RUN of {} on {}", self.name, flow.key))?;
        let (cnt1, time1) = self.stats()?;
        ensure!(
            verdict == want,
            "{} on {}: verdict {verdict} instead of {want}",
            self.name,
            flow.key
        );
        let runs = cnt1 - cnt0;
        Ok(TestRun {
            own_ns: f64::from(ns),
            stats_ns: (runs > 0).then(|| (time1 - time0).as_nanos() as f64 / runs as f64),
        })
    }
}
