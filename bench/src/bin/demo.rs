//! `cargo xtask demo`: the admin's story with live traffic. Two network
//! namespaces joined by a veth pair; denylistd on the inside end; every
//! `denylist` command printed before it runs. Everything is removed when it
//! ends, also after Ctrl-C.

use std::{
    net::IpAddr,
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use denylist_tests::{
    daemon::{Daemon, Home, bin},
    netns::{Pair, PairConfig},
    require_root,
};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C also reaches ping and the CLI (same process group), which then
/// return; the demo stops at its next step and its Drop guards remove the
/// daemon, the pins and the namespaces.
fn catch_interrupt() {
    let handler: extern "C" fn(libc::c_int) = on_interrupt;
    // SAFETY: the handler only stores to an atomic, which is signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
    }
}

const ATTACKER: &str = "198.51.100.7";
const NAT: &str = "203.0.113.9";
const NEIGHBOUR: &str = "203.0.113.10";
const WATCHED: &str = "198.51.100.8";
const BRIEF: &str = "198.51.100.9";

struct Demo {
    pair: Pair,
    home: Home,
}

impl Demo {
    fn step(&self, n: u32, text: &str) -> Result<()> {
        if INTERRUPTED.load(Ordering::SeqCst) {
            bail!("interrupted: cleaning up");
        }
        println!("\n── {n}. {text}");
        Ok(())
    }

    /// Prints and runs one CLI command; returns its exit code.
    fn denylist(&self, args: &[&str]) -> Result<i32> {
        let shown: Vec<String> = args
            .iter()
            .map(|a| {
                if a.contains(' ') {
                    format!("'{a}'")
                } else {
                    a.to_string()
                }
            })
            .collect();
        println!("$ denylist {}", shown.join(" "));
        let out = Command::new(bin("denylist"))
            .args(args)
            .env("DENYLIST_SOCKET", self.home.socket())
            .output()
            .context("running denylist")?;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            println!("  {line}");
        }
        for line in String::from_utf8_lossy(&out.stderr).lines() {
            println!("  {line}");
        }
        let code = out.status.code().unwrap_or(-1);
        if code != 0 {
            println!("  (exit code {code})");
        }
        Ok(code)
    }

    fn traffic(&self, src: &str) -> Result<()> {
        let ip: IpAddr = src.parse()?;
        let got = self.pair.ping(ip, 10, 56)?;
        let what = match got {
            0 => "dropped",
            10 => "flowing",
            _ => "partly through",
        };
        println!("  traffic from {src:<13} {got:>2}/10 replies: {what}");
        Ok(())
    }
}

fn main() -> Result<()> {
    require_root();
    catch_interrupt();
    println!("A sandbox: two network namespaces joined by a veth pair. The client side");
    println!("sends from documentation addresses; denylistd guards the inside end.");
    let pair = Pair::new("demo", PairConfig::default()).context("building the sandbox")?;
    for src in [ATTACKER, NAT, NEIGHBOUR, WATCHED, BRIEF] {
        pair.add_sender_source(src.parse()?)?;
    }
    let home = Home::new("demo");
    let iface = pair.receiver_xdp_if.clone();
    let _daemon = Daemon::start(
        &home,
        Some(&pair.receiver),
        &["--iface", &iface, "--expiry-sweep", "2s"],
    );
    let demo = Demo { pair, home };

    demo.step(
        1,
        "Add an address. Nothing changes in production until Save and Deploy.",
    )?;
    demo.traffic(ATTACKER)?;
    demo.denylist(&["add", ATTACKER, "--reason", "credential stuffing"])?;
    demo.traffic(ATTACKER)?;

    demo.step(
        2,
        "Review the pending change, then deploy: the traffic stops.",
    )?;
    demo.denylist(&["diff"])?;
    demo.denylist(&["deploy", "--message", "block the stuffing bot"])?;
    demo.traffic(ATTACKER)?;
    demo.denylist(&["status"])?;

    demo.step(3, "Why is it blocked, and what does the entry hit?")?;
    demo.denylist(&["check", ATTACKER])?;
    demo.denylist(&["stats"])?;

    demo.step(
        4,
        "Remove it: blocked until the next deploy, then flowing again.",
    )?;
    demo.denylist(&["remove", ATTACKER])?;
    demo.traffic(ATTACKER)?;
    demo.denylist(&["deploy"])?;
    demo.traffic(ATTACKER)?;

    demo.step(
        5,
        "Block a /24, but allow the shared NAT address inside it.",
    )?;
    demo.denylist(&["add", "203.0.113.0/24", "--reason", "abusive hosting range"])?;
    demo.denylist(&["allow", "add", NAT, "--reason", "customer office NAT"])?;
    demo.denylist(&["deploy"])?;
    demo.traffic(NAT)?;
    demo.traffic(NEIGHBOUR)?;
    demo.denylist(&["check", NAT])?;

    demo.step(6, "Watch an entry in monitor mode before enforcing it.")?;
    demo.denylist(&["add", WATCHED, "--monitor", "--deploy"])?;
    demo.traffic(WATCHED)?;
    demo.denylist(&["stats", "--top", "3"])?;
    demo.denylist(&["enforce", WATCHED, "--deploy"])?;
    demo.traffic(WATCHED)?;

    demo.step(7, "A block with a short TTL expires by itself.")?;
    demo.denylist(&["add", BRIEF, "--ttl", "5s", "--deploy"])?;
    demo.traffic(BRIEF)?;
    println!("  (waiting 6 s)");
    thread::sleep(Duration::from_secs(6));
    demo.traffic(BRIEF)?;
    demo.denylist(&["list"])?;

    demo.step(8, "Guardrails: a private range is refused, unless forced.")?;
    demo.denylist(&["add", "10.20.0.0/16"])?;
    demo.denylist(&["add", "10.20.0.0/16", "--force"])?;
    demo.denylist(&["discard"])?;
    demo.denylist(&["history"])?;

    println!("\nDone. The daemon, its pins and the sandbox are removed on exit.");
    Ok(())
}
