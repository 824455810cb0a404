//! Random and mutated frames against random tables: the real program
//! (BPF_PROG_TEST_RUN) must agree with the reference parser and verdict
//! model on every frame, and count each hit on the deciding entry.

use std::{collections::HashMap, net::IpAddr};

use denylist::{
    dataplane::Dataplane,
    model::{self, List, Rule, Target, Verdict, ip_bits, ip_from_bits},
};
use denylist_tests::{
    XDP_ABORTED, XDP_DROP, XDP_PASS, dataplane,
    frame::{ETH_P_8021AD, ETH_P_8021Q, Spec, parse_source},
    run, tai_now_ns,
};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};

/// Frames per run: 100,000 by default, 1,000,000 with `cargo xtask test --long`.
fn frame_count() -> usize {
    if std::env::var_os("DENYLIST_LONG").is_some() {
        1_000_000
    } else {
        100_000
    }
}

const V4_BASES: [&str; 3] = ["198.51.0.0", "10.20.0.0", "203.0.113.0"];
const V6_BASES: [&str; 2] = ["2001:db8::", "2001:db8:ffff::"];

fn random_addr(rng: &mut StdRng, v4: bool) -> IpAddr {
    if v4 {
        let base = ip_bits(V4_BASES.choose(rng).unwrap().parse().unwrap());
        ip_from_bits(true, base | u128::from(rng.random::<u16>()))
    } else {
        let base = ip_bits(V6_BASES.choose(rng).unwrap().parse().unwrap());
        let mid = u128::from(rng.random_range(0u16..4)) << 64;
        ip_from_bits(
            false,
            base | mid | u128::from(rng.random::<u64>() >> rng.random_range(0..64)),
        )
    }
}

fn random_rule(rng: &mut StdRng, id: u32, now_ms: u64) -> Rule {
    let v4 = rng.random_bool(0.5);
    let len = match (v4, rng.random_range(0..10)) {
        (true, 0) => rng.random_range(0..=32),
        (true, 1..=4) => 32,
        (true, _) => rng.random_range(16..32),
        (false, 0) => rng.random_range(0..=128),
        (false, 1..=4) => 128,
        (false, _) => rng.random_range(29..=64),
    };
    let net = ipnet::IpNet::new(random_addr(rng, v4), len)
        .unwrap()
        .trunc();
    Rule {
        id,
        target: Target::from(net),
        list: if rng.random_bool(0.25) {
            List::Allow
        } else {
            List::Deny
        },
        monitor: rng.random_bool(0.3),
        expires_ms: match rng.random_range(0..10) {
            0..=5 => None,
            6 | 7 => Some(now_ms - rng.random_range(1..100_000)),
            _ => Some(now_ms + 3_600_000),
        },
    }
}

fn random_frame(rng: &mut StdRng, rules: &[Rule]) -> Vec<u8> {
    let src = match rules.choose(rng) {
        Some(r) if rng.random_bool(0.7) => {
            // Inside an entry, often at its first or last address.
            let host = u32::from(r.target.width() - r.target.prefix_len());
            let span = if host >= 128 {
                u128::MAX
            } else {
                (1u128 << host) - 1
            };
            let off = *[0, span, rng.random::<u128>() & span].choose(rng).unwrap();
            ip_from_bits(r.target.is_ipv4(), r.target.bits() | off)
        }
        _ => {
            let v4 = rng.random_bool(0.5);
            random_addr(rng, v4)
        }
    };
    let src = match src {
        IpAddr::V4(a) if rng.random_bool(0.05) => IpAddr::V6(a.to_ipv6_mapped()),
        other => other,
    };
    let mut spec = Spec::new(src);
    for _ in 0..rng.random_range(0..4usize).saturating_sub(1) {
        let tpid = *[ETH_P_8021Q, ETH_P_8021AD, ETH_P_8021Q, 0x9100]
            .choose(rng)
            .unwrap();
        spec = spec.vlan(tpid, rng.random_range(0..4096));
    }
    if src.is_ipv4() && rng.random_bool(0.2) {
        spec.ipv4_option_words = rng.random_range(1..=10);
    }
    spec.payload = if rng.random_bool(0.005) {
        rng.random_range(3_000..9_000)
    } else {
        rng.random_range(0..64)
    };
    let mut f = spec.build();
    match rng.random_range(0..20) {
        0 => f.truncate(rng.random_range(14..f.len())),
        1 => {
            let i = rng.random_range(12..f.len().min(80));
            f[i] = rng.random();
        }
        2 => {
            // Bogus IHL or version in the first byte after the tags.
            let ip_off = 14 + 4 * spec.vlans.len();
            f[ip_off] = rng.random();
        }
        3 => {
            // Bogus total length: the program must not trust it.
            let ip_off = 14 + 4 * spec.vlans.len();
            f[ip_off + 2] = rng.random();
            f[ip_off + 3] = rng.random();
        }
        4 => f[12..14].copy_from_slice(&rng.random::<u16>().to_be_bytes()),
        _ => {}
    }
    f
}

fn expected(rules: &[Rule], frame: &[u8], now_ns: u64) -> (u32, Option<u32>) {
    match parse_source(frame) {
        None => (XDP_PASS, None),
        Some(ip) => {
            let d = model::decide(rules, ip, now_ns);
            let action = if d.verdict == Verdict::Drop {
                XDP_DROP
            } else {
                XDP_PASS
            };
            (action, d.rule.map(|r| r.id))
        }
    }
}

fn check_batch(
    dp: &mut Dataplane,
    rng: &mut StdRng,
    rules: &[Rule],
    frames: usize,
    expect_hits: &mut HashMap<u32, u64>,
) {
    let now = tai_now_ns();
    let mut mismatches = Vec::new();
    let mut aborted = 0;
    for _ in 0..frames {
        let f = random_frame(rng, rules);
        let (want, id) = expected(rules, &f, now);
        let got = run(dp, &f);
        if got == XDP_ABORTED {
            aborted += 1;
        }
        if got != want && mismatches.len() < 10 {
            mismatches.push(format!(
                "got {got} want {want} for {:02x?}",
                &f[..f.len().min(80)]
            ));
        }
        if let Some(id) = id {
            *expect_hits.entry(id).or_default() += 1;
        }
    }
    assert_eq!(aborted, 0, "XDP_ABORTED must never happen");
    assert!(
        mismatches.is_empty(),
        "mismatches against the model:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn random_frames_against_random_tables_match_the_model() {
    let seed = rand::random::<u64>();
    eprintln!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut dp = dataplane();
    let now_ms = tai_now_ns() / 1_000_000;
    let total = frame_count();
    let rounds = 4;
    let mut rules: Vec<Rule> = Vec::new();
    let mut next_id = 1;
    let mut expect_hits: HashMap<u32, u64> = HashMap::new();
    for _ in 0..rounds {
        // Deploy a change: remove some entries, change some, add more.
        let mut removals = Vec::new();
        rules.retain(|r| {
            let keep = rng.random_bool(0.7);
            if !keep {
                removals.push((r.target, r.list));
            }
            keep
        });
        let mut upserts = Vec::new();
        for r in rules.iter_mut() {
            if rng.random_bool(0.1) {
                r.monitor = !r.monitor && r.list == List::Deny;
                upserts.push(*r);
            }
        }
        for _ in 0..300 {
            let r = random_rule(&mut rng, next_id, now_ms);
            next_id += 1;
            let key = (r.target, r.list);
            if removals.contains(&key) || rules.iter().any(|x| (x.target, x.list) == key) {
                continue;
            }
            upserts.push(r);
            rules.push(r);
        }
        dp.apply(&upserts, &removals).unwrap();
        check_batch(&mut dp, &mut rng, &rules, total / rounds, &mut expect_hits);
    }
    let hits = dp.hits().unwrap();
    for (id, n) in &expect_hits {
        assert_eq!(
            hits.get(id).map_or(0, |h| h.packets),
            *n,
            "hits of entry {id}"
        );
    }
    let c = dp.counters().unwrap();
    assert_eq!(c.dropped_packets + c.passed_packets, total as u64);
}
