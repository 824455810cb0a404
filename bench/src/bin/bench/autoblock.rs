//! Issue 16: the rate detector's detection latency. The daemon guards a
//! veth in enforce mode with `--pps 500`; trafgen starts a new source at
//! 10× the threshold, and the latency runs from trafgen's start to the
//! first time the daemon's verdict for the source is drop (its
//! `auto:rate` listing deployed in the kernel).

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use denylist::{
    model::{RateMode, Verdict},
    wire::{AutoSetRequest, AutoStatus, CheckResponse},
};
use denylist_tests::{
    daemon::{Daemon, Home},
    netns::{Pair, PairConfig, Sources},
};
use serde_json::json;

use crate::{
    deploy::binaries,
    report::{Goal, Opts, Section, Table, fmt_num},
};

const PPS: u64 = 500;
/// How long a run may take before it counts as a miss.
const GIVE_UP: Duration = Duration::from_secs(10);

pub fn run(opts: &Opts) -> Result<Section> {
    binaries(opts)?;
    let runs: u8 = if opts.quick { 2 } else { 10 };
    let pair = Pair::new("bauto", PairConfig::default())?;
    let home = Home::new("bauto");
    let iface = pair.receiver_xdp_if.clone();
    let _daemon = Daemon::start(&home, Some(&pair.receiver), &["--iface", &iface]);
    let c = home.client();
    let _: AutoStatus = c
        .post(
            "/v1/auto",
            &AutoSetRequest {
                mode: Some(RateMode::Enforce),
                pps: Some(PPS),
                ..AutoSetRequest::default()
            },
        )
        .context("auto set")?;
    let mut latencies = Vec::new();
    for i in 1..=runs {
        eprintln!("bench: autoblock: run {i} of {runs}");
        let src = Ipv4Addr::new(198, 18, 9, i);
        let start = Instant::now();
        let _blast = pair.blast(Sources::One(src), 10 * PPS, 10 * PPS * GIVE_UP.as_secs())?;
        loop {
            let r: CheckResponse = c.get(&format!("/v1/check/{src}")).context("check")?;
            if r.verdict == Verdict::Drop {
                latencies.push(start.elapsed());
                break;
            }
            ensure!(
                start.elapsed() < GIVE_UP,
                "{src} at 10× the threshold was not dropped within {GIVE_UP:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    latencies.sort();
    let pct = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    let (p50, p95, max) = (pct(50), pct(95), latencies[latencies.len() - 1]);
    let ms = |d: Duration| fmt_num(d.as_secs_f64() * 1000.0);
    let table = Table {
        title: format!("Detection latency: a source at 10× --pps {PPS}, {runs} runs (ms)"),
        columns: ["p50", "p95", "max"].map(str::to_owned).to_vec(),
        rows: vec![vec![ms(p50), ms(p95), ms(max)]],
        notes: vec![
            "From trafgen's start (its first packet follows within milliseconds) to the first `GET /v1/check` that says drop, polled every 5 ms: the epoch in which the source crossed the threshold ends (at most 1 s), the daemon reads the sketches, checks the guardrails and deploys the `auto:rate` listing as a revision.".to_owned(),
            "The daemon in enforce mode guards a veth; a new source each run.".to_owned(),
        ],
    };
    Ok(Section {
        key: "autoblock",
        title: "Rate detector: detection latency",
        tables: vec![table],
        goals: vec![Goal {
            name: "rate detector: detection latency p95, 10× the threshold".to_owned(),
            measured: p95.as_secs_f64(),
            limit: 2.0,
            unit: "s".to_owned(),
        }],
        charts: vec![],
        data: json!({
            "pps_threshold": PPS,
            "latencies_ms": latencies.iter().map(|d| d.as_secs_f64() * 1000.0).collect::<Vec<_>>(),
        }),
    })
}
