//! `cargo xtask demo`: the data plane in a sandbox of two network
//! namespaces, dropping and passing live traffic. Everything it creates is
//! removed when it ends, also after Ctrl-C.

use std::{
    net::IpAddr,
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{Context as _, Result, bail};
use denylist::{
    dataplane::{AttachMode, Dataplane},
    layout::Layout,
    target::Target,
    verdict::{List, Rule},
};
use denylist_tests::{
    netns::{Pair, PairConfig},
    require_root,
};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C also reaches ping (same process group), which then returns; the
/// demo stops at the next step and its Drop guards remove the namespaces.
fn catch_interrupt() {
    let handler: extern "C" fn(libc::c_int) = on_interrupt;
    // SAFETY: the handler only stores to an atomic, which is signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
    }
}

struct Demo {
    pair: Pair,
    dp: Dataplane,
    next_id: u32,
}

impl Demo {
    fn step(&self, text: &str) -> Result<()> {
        if INTERRUPTED.load(Ordering::SeqCst) {
            bail!("interrupted: cleaning up");
        }
        println!("\n== {text}");
        Ok(())
    }

    fn ping(&self, src: &str) -> Result<()> {
        let ip: IpAddr = src.parse()?;
        let got = self.pair.ping(ip, 10, 56)?;
        let what = match got {
            0 => "all dropped",
            10 => "all through",
            _ => "some through",
        };
        println!("   ping from {src:<15} → {got}/10 replies ({what})");
        Ok(())
    }

    fn rule(&mut self, t: &str, list: List, monitor: bool) -> Result<Rule> {
        self.next_id += 1;
        Ok(Rule {
            id: self.next_id,
            target: Target::parse(t)?,
            list,
            monitor,
            expires_ms: None,
        })
    }

    fn apply(&mut self, add: &[Rule], remove: &[Rule]) -> Result<()> {
        for r in add {
            let mode = if r.monitor { " (monitor)" } else { "" };
            println!("   + {:?} {}{mode}", r.list, r.target);
        }
        for r in remove {
            println!("   - {:?} {}", r.list, r.target);
        }
        let keys: Vec<_> = remove.iter().map(|r| (r.target, r.list)).collect();
        self.dp.apply(add, &keys)?;
        Ok(())
    }

    fn counters(&self) -> Result<()> {
        let c = self.dp.counters()?;
        println!(
            "   counters: dropped {} · passed {} · monitored {} · allowed {} · unparsable {}",
            c.dropped_packets,
            c.passed_packets,
            c.monitored_packets,
            c.allowed_packets,
            c.unparsable_packets
        );
        Ok(())
    }
}

fn main() -> Result<()> {
    require_root();
    catch_interrupt();
    println!("Building a sandbox: two network namespaces joined by a veth pair.");
    let pair = Pair::new("demo", PairConfig::default()).context("building the sandbox")?;
    for src in [
        "198.51.100.7",
        "198.51.100.8",
        "203.0.113.9",
        "203.0.113.10",
        "2001:db8:1::7",
    ] {
        pair.add_sender_source(src.parse()?)?;
    }
    let iface = pair.receiver_xdp_if.clone();
    let dp = pair.receiver.enter(move || -> Result<Dataplane> {
        let mut dp = Dataplane::load(Layout::new(65_536)?)?;
        let mode = dp.attach(&iface, AttachMode::Auto)?;
        println!("XDP program `denylist` attached to {iface} ({mode:?} mode).");
        Ok(dp)
    })??;
    let mut demo = Demo {
        pair,
        dp,
        next_id: 0,
    };

    demo.step("No entries: everything flows")?;
    demo.ping("198.51.100.7")?;
    demo.ping("2001:db8:1::7")?;

    demo.step("Deny one IPv4 and one IPv6 address")?;
    let v4 = demo.rule("198.51.100.7", List::Deny, false)?;
    let v6 = demo.rule("2001:db8:1::7", List::Deny, false)?;
    demo.apply(&[v4.clone(), v6.clone()], &[])?;
    demo.ping("198.51.100.7")?;
    demo.ping("2001:db8:1::7")?;
    demo.ping("198.51.100.8")?;
    demo.counters()?;

    demo.step("Remove them: traffic flows again")?;
    demo.apply(&[], &[v4, v6])?;
    demo.ping("198.51.100.7")?;
    demo.ping("2001:db8:1::7")?;

    demo.step("Deny a /24 with an allow exception for a shared address")?;
    let net = demo.rule("203.0.113.0/24", List::Deny, false)?;
    let allow = demo.rule("203.0.113.9", List::Allow, false)?;
    demo.apply(&[net.clone(), allow.clone()], &[])?;
    demo.ping("203.0.113.9")?;
    demo.ping("203.0.113.10")?;

    demo.step("Watch an address in monitor mode before enforcing it")?;
    let watched = demo.rule("198.51.100.8", List::Deny, true)?;
    demo.apply(std::slice::from_ref(&watched), &[])?;
    demo.ping("198.51.100.8")?;
    demo.counters()?;
    let enforced = Rule {
        monitor: false,
        ..watched
    };
    println!("   enforce {}", enforced.target);
    demo.dp.apply(&[enforced], &[])?;
    demo.ping("198.51.100.8")?;
    demo.counters()?;

    let hits = demo.dp.hits()?;
    demo.step("Hits per entry")?;
    for r in [&net, &allow] {
        let n = hits.get(&r.id).map_or(0, |h| h.packets);
        println!("   {:?} {:<16} {n} packets", r.list, r.target.to_string());
    }
    println!("\nDone: the sandbox is removed on exit.");
    Ok(())
}
