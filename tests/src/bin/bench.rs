//! `cargo xtask bench`: per-packet cost under BPF_PROG_TEST_RUN, each figure
//! beside the bare `return XDP_DROP` floor measured in the same run.

use std::{net::Ipv4Addr, time::Duration};

use anyhow::{Context as _, Result};
use aya::{
    Ebpf,
    programs::{TestRun, TestRunOptions, Xdp},
};
use denylist::{
    dataplane::Dataplane,
    layout::Layout,
    object,
    target::Target,
    verdict::{List, Rule},
};
use denylist_tests::{XDP_DROP, XDP_PASS, frame::Spec, require_root};

struct Plan {
    runs: usize,
    repeat: u32,
    exact_v4: u32,
}

/// The median over `runs` of the kernel's mean time per repeat.
fn cost(prog: &mut Xdp, frame: &[u8], want: u32, plan: &Plan) -> Result<Duration> {
    let mut times = Vec::with_capacity(plan.runs);
    for _ in 0..plan.runs {
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                repeat: plan.repeat,
                ..TestRunOptions::new()
            })
            .context("BPF_PROG_TEST_RUN")?;
        anyhow::ensure!(
            r.return_value == want,
            "verdict {} instead of {want}",
            r.return_value
        );
        times.push(r.duration);
    }
    times.sort();
    Ok(times[times.len() / 2])
}

fn exact(i: u32) -> Ipv4Addr {
    // Spread over 10.0.0.0/8 and beyond so the hash sees varied keys.
    Ipv4Addr::from(0x0a00_0000u32.wrapping_add(i.wrapping_mul(2_654_435_761)))
}

fn main() -> Result<()> {
    require_root();
    let quick = std::env::args().any(|a| a == "--quick");
    let plan = if quick {
        Plan {
            runs: 3,
            repeat: 10_000,
            exact_v4: 10_000,
        }
    } else {
        Plan {
            runs: 5,
            repeat: 1_000_000,
            exact_v4: 1_000_000,
        }
    };

    let mut floor_obj = Ebpf::load(object::FLOOR).context("loading the floor program")?;
    let floor: &mut Xdp = floor_obj
        .program_mut("floor")
        .context("no floor program")?
        .try_into()?;
    floor.load()?;

    let mut dp = Dataplane::load(Layout::new(u64::from(plan.exact_v4) + 1024)?)?;
    let rules: Vec<Rule> = (0..plan.exact_v4)
        .map(|i| Rule {
            id: i + 1,
            target: Target::host(exact(i).into()),
            list: List::Deny,
            monitor: false,
            expires_ms: None,
        })
        .collect();
    let start = std::time::Instant::now();
    dp.apply(&rules, &[])?;
    eprintln!(
        "loaded {} exact IPv4 entries in {:.2?}",
        plan.exact_v4,
        start.elapsed()
    );

    let hit = Spec::new(exact(plan.exact_v4 / 2).into()).build();
    let miss = Spec::new(Ipv4Addr::new(192, 0, 2, 200).into()).build();
    let floor_ns = cost(floor, &miss, XDP_DROP, &plan)?;
    let miss_ns = cost(dp.program(), &miss, XDP_PASS, &plan)?;
    let hit_ns = cost(dp.program(), &hit, XDP_DROP, &plan)?;
    println!("| path | ns/packet | − floor |");
    println!("|---|---|---|");
    println!("| floor (return XDP_DROP) | {} | 0 |", floor_ns.as_nanos());
    for (name, t) in [("IPv4 miss", miss_ns), ("IPv4 exact hit", hit_ns)] {
        println!(
            "| {name}, {} exact IPv4 | {} | {} |",
            plan.exact_v4,
            t.as_nanos(),
            t.as_nanos().saturating_sub(floor_ns.as_nanos())
        );
    }
    Ok(())
}
