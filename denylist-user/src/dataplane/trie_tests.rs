//! The prefix tries against the verdict model, and their arrays' sizing.

use std::net::IpAddr;

use denylist_common::{FLAG_ALLOW, FLAG_MONITOR, FLAG_PRESENT, MAX_FALLBACK, word_expiry_ns};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};

use super::*;
use crate::dataplane::Layout;
use crate::{
    dataplane::word_of,
    model::{self as verdict, Rule, Verdict, ip_bits, ip_from_bits},
};

const NODES: usize = 4096;

fn prefixes(rules: usize) -> Prefixes {
    Prefixes::new(
        TrieMaps::heap(NODES, 4 * NODES),
        TrieMaps::heap(NODES, 4 * NODES),
        Region::heap(rules + 1),
    )
}

/// The slot the XDP program's walk ends at, shortcuts and all
/// (denylist-ebpf's `trie_v6`; IPv4 has none), and how many nodes below
/// the root it reads.
fn kernel_walk(fam: &Family, bits: u128) -> (u32, u32) {
    let mut s = fam.nodes.published(fam.top16(bits));
    let (mut i, mut reads) = (2, 0);
    while s & SLOT_CHILD != 0 && i < u32::from(fam.width) / 8 {
        let node = s & !SLOT_CHILD;
        reads += 1;
        let half = if fam.width == 32 {
            (bits as u64) << 32
        } else if i < 8 {
            (bits >> 64) as u64
        } else {
            bits as u64
        };
        let next = half << (8 * (i % 8));
        match fam.nodes.skip(node).filter(|_| fam.width == 128) {
            Some(k) => {
                if (next ^ k.key) >> (64 - 8 * k.bytes) != 0 {
                    s = k.miss;
                    break;
                }
                s = k.to;
                i += k.bytes;
            }
            None => {
                s = fam
                    .nodes
                    .published(node as usize * NODE_SLOTS + (next >> 56) as usize);
                i += 1;
            }
        }
    }
    (if s & SLOT_CHILD != 0 { RULE_NONE } else { s }, reads)
}

/// What the XDP program does with the trie, in user space.
fn kernel_lookup(p: &Prefixes, ip: IpAddr, now: u64) -> (Verdict, u32) {
    let fam = if ip.is_ipv4() { &p.v4 } else { &p.v6 };
    let bits = ip_bits(ip);
    let (s, _) = kernel_walk(fam, bits);
    assert_eq!(
        s,
        fam.lookup(bits),
        "{ip}: the shortcuts' walk ends where the levels' does"
    );
    let live =
        |w: u64| w & FLAG_PRESENT != 0 && (word_expiry_ns(w) == 0 || now < word_expiry_ns(w));
    let find = |allow: bool| -> Option<u32> {
        if s == RULE_NONE {
            return None;
        }
        let c = &p.rules[s as usize];
        let is_allow = c.word.load(Relaxed) & FLAG_ALLOW != 0;
        let pick = |c: &RuleCell| {
            if allow {
                c.up_allow.load(Relaxed)
            } else {
                c.up_deny.load(Relaxed)
            }
        };
        let mut idx = if is_allow == allow { s } else { pick(c) };
        for _ in 0..MAX_FALLBACK {
            if idx == RULE_NONE {
                return None;
            }
            let c = &p.rules[idx as usize];
            if live(c.word.load(Relaxed)) {
                return Some(idx);
            }
            idx = pick(c);
        }
        None
    };
    if let Some(a) = find(true) {
        return (Verdict::Allowed, p.rules[a as usize].id.load(Relaxed));
    }
    match find(false) {
        Some(d) => {
            let c = &p.rules[d as usize];
            let v = if c.word.load(Relaxed) & FLAG_MONITOR != 0 {
                Verdict::Monitor
            } else {
                Verdict::Drop
            };
            (v, c.id.load(Relaxed))
        }
        None => (Verdict::Pass, 0),
    }
}

fn random_rule(rng: &mut StdRng, id: u32, v4: bool) -> Rule {
    // A small address space, so prefixes nest, overlap and share nodes.
    let (bits, len) = if v4 {
        let base = ip_bits("198.51.0.0".parse().unwrap());
        (
            base | u128::from(rng.random::<u16>()),
            rng.random_range(8..32),
        )
    } else {
        let base = ip_bits("2001:db8::".parse().unwrap());
        let mid = u128::from(rng.random::<u16>()) << 64;
        (
            base | mid | u128::from(rng.random::<u64>()),
            rng.random_range(16..128),
        )
    };
    let net = ipnet::IpNet::new(ip_from_bits(v4, bits), len).unwrap();
    Rule {
        id,
        target: net.into(),
        list: if rng.random_bool(0.3) {
            List::Allow
        } else {
            List::Deny
        },
        monitor: rng.random_bool(0.3),
        expires_ms: rng.random_bool(0.3).then(|| rng.random_range(1..100)),
    }
}

#[test]
fn random_inserts_and_removes_match_the_verdict_model() {
    let mut rng = StdRng::seed_from_u64(7);
    for round in 0..20 {
        let mut p = prefixes(400);
        let mut live: Vec<Rule> = Vec::new();
        for step in 0..300u32 {
            let remove = !live.is_empty() && rng.random_bool(0.35);
            if remove {
                let i = rng.random_range(0..live.len());
                let r = live.swap_remove(i);
                p.remove(&r.target, r.list).unwrap();
            } else {
                let v4 = rng.random_bool(0.5);
                let r = random_rule(&mut rng, round * 1000 + step + 1, v4);
                if r.target.is_exact()
                    || live
                        .iter()
                        .any(|x| x.target == r.target && x.list == r.list)
                {
                    continue;
                }
                p.insert(&r.target, r.list, r.id, word_of(&r)).unwrap();
                live.push(r);
            }
            for _ in 0..20 {
                let probe = if rng.random_bool(0.7) && !live.is_empty() {
                    let r = live.choose(&mut rng).unwrap();
                    let host = u32::from(r.target.width() - r.target.prefix_len());
                    let off = if host >= 128 {
                        rng.random()
                    } else {
                        rng.random::<u128>() & ((1u128 << host) - 1)
                    };
                    ip_from_bits(r.target.is_ipv4(), r.target.bits() | off)
                } else {
                    let v4 = rng.random_bool(0.5);
                    random_rule(&mut rng, 0, v4).target.addr()
                };
                let now = rng.random_range(0..120) * 1_000_000;
                let want = verdict::decide(&live, probe, now);
                let got = kernel_lookup(&p, probe, now);
                assert_eq!(
                    (want.verdict, want.rule.map_or(0, |r| r.id)),
                    got,
                    "round {round} step {step}: {probe} at {now}"
                );
            }
        }
        for r in live.drain(..) {
            p.remove(&r.target, r.list).unwrap();
        }
        assert_eq!(p.nodes_in_use(), (0, 0), "every node collapses once empty");
        assert_eq!(p.slots_in_use(), (0, 0), "and its runs are freed");
        assert!(p.is_empty());
        let slots = p.v4.nodes.root().iter().chain(p.v6.nodes.root());
        assert!(
            slots.into_iter().all(|s| s.load(Relaxed) == RULE_NONE),
            "the root is empty again"
        );
    }
}

#[test]
fn a_chain_of_single_path_levels_is_skipped_and_kept_true_through_changes() {
    let mut p = prefixes(10);
    let t = |s: &str| Target::parse(s).unwrap();
    let bits = |s: &str| ip_bits(s.parse().unwrap());
    let probes = [
        "2001:2:0:7::20",
        "2001:2:0:7:ffff::",
        "2001:2:0:8::1",
        "2001:2:0:6::1",
        "2001:2::1:1",
        "2001:3:0:7::",
        "2001:2:0:7:1::",
        "2001:2:0:7:1:2:3:4",
        "2001:2:0:7:1:2:3:5",
        "2001:2:0:7:1:2:4:4",
    ];
    // Checks every probe, and gives how many nodes the walk to the /64
    // and to its neighbour just past it read.
    let check = |p: &Prefixes, step: &str| {
        for a in probes {
            let (s, _) = kernel_walk(&p.v6, bits(a));
            assert_eq!(s, p.v6.lookup(bits(a)), "{step}: {a}");
        }
        let reads = |a| kernel_walk(&p.v6, bits(a)).1;
        (reads("2001:2:0:7::20"), reads("2001:2:0:8::1"))
    };
    p.insert(&t("2001:2:0:7::/64"), List::Deny, 1, 1).unwrap();
    assert_eq!(check(&p, "one /64"), (1, 1), "six levels in one read");
    // A covering /48 is every other slot's rule from byte 6 on: two chains.
    p.insert(&t("2001:2::/48"), List::Allow, 2, 1).unwrap();
    assert_eq!(check(&p, "under a /48"), (2, 2));
    // A second /64 branches at the last byte.
    p.insert(&t("2001:2:0:8::/64"), List::Deny, 3, 1).unwrap();
    assert_eq!(check(&p, "two /64s"), (3, 3));
    // A prefix deep in the low half: a chain there too.
    p.insert(&t("2001:2:0:7:1:2:3:4/127"), List::Deny, 4, 1)
        .unwrap();
    check(&p, "a /127");
    p.remove(&t("2001:2:0:8::/64"), List::Deny).unwrap();
    check(&p, "one /64 again");
    p.remove(&t("2001:2::/48"), List::Allow).unwrap();
    check(&p, "without the /48");
    p.remove(&t("2001:2:0:7:1:2:3:4/127"), List::Deny).unwrap();
    assert_eq!(check(&p, "the first /64 alone"), (1, 1));
    p.remove(&t("2001:2:0:7::/64"), List::Deny).unwrap();
    check(&p, "empty");
    assert_eq!(p.nodes_in_use(), (0, 0));
}

#[test]
fn needs_counts_exactly_the_rules_and_nodes_the_trie_builds() {
    let mut rng = StdRng::seed_from_u64(11);
    let mut p = prefixes(2000);
    let mut live: Vec<Rule> = Vec::new();
    let mut id = 0;
    while live.len() < 800 {
        id += 1;
        let v4 = rng.random_bool(0.5);
        let r = random_rule(&mut rng, id, v4);
        if r.target.is_exact()
            || live
                .iter()
                .any(|x| (x.target, x.list) == (r.target, r.list))
        {
            continue;
        }
        p.insert(&r.target, r.list, r.id, word_of(&r)).unwrap();
        live.push(r);
        let (nodes_v4, nodes_v6) = p.nodes_in_use();
        let (slots_v4, slots_v6) = p.slots_in_use();
        let n = needs(live.iter().map(|r| r.target));
        let at = live.len();
        assert_eq!(
            (n.rules, n.nodes_v4, n.nodes_v6),
            (p.len() as u32, nodes_v4, nodes_v6),
            "after {at} prefixes"
        );
        assert!(
            slots_v4 <= n.slots_v4 && slots_v6 <= n.slots_v6,
            "after {at} prefixes: runs {slots_v4}, {slots_v6} within {n:?}"
        );
    }
}

#[test]
fn full_pools_are_reported_and_change_nothing() {
    let mut p = prefixes(2);
    let t = |s: &str| Target::parse(s).unwrap();
    p.insert(&t("203.0.113.0/24"), List::Deny, 1, 1).unwrap();
    p.insert(&t("203.0.113.0/25"), List::Deny, 2, 1).unwrap();
    let e = p
        .insert(&t("198.51.100.0/24"), List::Deny, 3, 1)
        .unwrap_err();
    assert_eq!(e, TrieError::RulesFull { rules: 2 });
    assert!(e.to_string().contains("raise --capacity"));
    assert_eq!(p.len(), 2);
    assert_eq!(
        p.remove(&t("198.51.100.0/24"), List::Deny),
        Err(TrieError::NotFound {
            target: t("198.51.100.0/24"),
            list: List::Deny
        })
    );
}

#[test]
fn plain_nodes_change_as_nodes_of_runs_do() {
    let mut p = prefixes(400);
    let mut live: Vec<Rule> = Vec::new();
    let t = |s: String| Target::parse(&s).unwrap();
    let rule = |id: u32, target: Target, list: List| Rule {
        id,
        target,
        list,
        monitor: false,
        expires_ms: None,
    };
    let check = |p: &Prefixes, live: &[Rule], step: &str| {
        for x in 0..=255u32 {
            for host in [1, 17, 200] {
                let probe: IpAddr = format!("198.51.{x}.{host}").parse().unwrap();
                let want = verdict::decide(live, probe, 0);
                assert_eq!(
                    (want.verdict, want.rule.map_or(0, |r| r.id)),
                    kernel_lookup(p, probe, 0),
                    "{step}: {probe}"
                );
            }
        }
    };
    // 200 /24s: 201 runs below 198.51/16, so the node keeps every slot.
    for x in 0..200 {
        let r = rule(x + 1, t(format!("198.51.{x}.0/24")), List::Deny);
        p.insert(&r.target, r.list, r.id, word_of(&r)).unwrap();
        live.push(r);
    }
    check(&p, &live, "plain");
    let runs = |p: &Prefixes| {
        let s = p.v4.nodes.published(198 * NODE_SLOTS + 51);
        p.v4.nodes.runs(s & !SLOT_CHILD)
    };
    assert_eq!(runs(&p), NODE_SLOTS as u32, "every slot kept");
    // Children below a plain node, moved as it is copied.
    for (id, net) in [(300, "198.51.7.0/28"), (301, "198.51.7.16/28")] {
        let r = rule(id, t(net.to_string()), List::Allow);
        p.insert(&r.target, r.list, r.id, word_of(&r)).unwrap();
        live.push(r);
    }
    check(&p, &live, "with children");
    // Down to 100 runs: the node keeps runs again; then up once more.
    for r in live.extract_if(.., |r| (100..200).contains(&(r.id - 1))) {
        p.remove(&r.target, r.list).unwrap();
    }
    check(&p, &live, "runs again");
    assert_eq!(runs(&p), 101);
    for x in 150..250 {
        let r = rule(x + 1, t(format!("198.51.{x}.0/24")), List::Deny);
        p.insert(&r.target, r.list, r.id, word_of(&r)).unwrap();
        live.push(r);
    }
    check(&p, &live, "plain again");
    assert_eq!(runs(&p), NODE_SLOTS as u32);
    for r in live.drain(..) {
        p.remove(&r.target, r.list).unwrap();
    }
    assert_eq!(p.nodes_in_use(), (0, 0));
    assert_eq!(p.slots_in_use(), (0, 0), "the 256-slot blocks are freed");
}

#[test]
fn a_removal_finds_room_for_its_copy_when_inserts_no_longer_do() {
    use crate::dataplane::alloc::MIN_SLOTS;
    let mut p = Prefixes::new(
        TrieMaps::heap(2, MIN_SLOTS as usize),
        TrieMaps::heap(1, MIN_SLOTS as usize),
        Region::heap(4),
    );
    let t = |s: &str| Target::parse(s).unwrap();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    p.insert(&t("10.0.0.0/24"), List::Deny, 1, FLAG_PRESENT)
        .unwrap();
    p.insert(&t("10.0.1.0/24"), List::Deny, 2, FLAG_PRESENT)
        .unwrap();
    // A new node and the spare: one short.
    let e = p.insert(&t("10.1.0.0/24"), List::Deny, 3, FLAG_PRESENT);
    assert!(matches!(e, Err(TrieError::NodesFull { .. })), "{e:?}");
    // The removal copies the node with the spare, and frees the rule.
    p.remove(&t("10.0.1.0/24"), List::Deny).unwrap();
    assert_eq!(kernel_lookup(&p, ip("10.0.1.1"), 0), (Verdict::Pass, 0));
    assert_eq!(kernel_lookup(&p, ip("10.0.0.1"), 0), (Verdict::Drop, 1));
    p.insert(&t("10.0.2.0/24"), List::Deny, 4, FLAG_PRESENT)
        .unwrap();
    assert_eq!(kernel_lookup(&p, ip("10.0.2.1"), 0), (Verdict::Drop, 4));
}

#[test]
fn freed_rules_and_nodes_are_reused_after_their_quarantine() {
    use crate::dataplane::alloc::MIN_SLOTS;
    let mut p = Prefixes::new(
        TrieMaps::heap(3, MIN_SLOTS as usize),
        TrieMaps::heap(1, MIN_SLOTS as usize),
        Region::heap(2),
    );
    let t = |s: &str| Target::parse(s).unwrap();
    // Two nodes, the spare for copies, and one rule: every insert and
    // remove reuses what the one before freed.
    for round in 0..20 {
        p.insert(&t("203.0.113.0/28"), List::Deny, round, 1)
            .unwrap();
        p.remove(&t("203.0.113.0/28"), List::Deny).unwrap();
    }
    assert_eq!(p.nodes_in_use(), (0, 0));
}

/// Deny prefixes inserted in order into arrays sized the way denylistd
/// sizes them for those prefixes.
fn load_as_sized(targets: &[Target]) -> Prefixes {
    let l = Layout::new(100_000)
        .unwrap()
        .fitting(needs(targets.iter().copied()));
    let mut p = Prefixes::new(
        TrieMaps::heap(l.nodes_v4 as usize, l.slots_v4 as usize),
        TrieMaps::heap(l.nodes_v6 as usize, l.slots_v6 as usize),
        Region::heap(l.prefix_rules as usize + 1),
    );
    for (i, t) in targets.iter().enumerate() {
        p.insert(t, List::Deny, i as u32 + 1, 1)
            .unwrap_or_else(|e| panic!("prefix {i} of {}: {e} ({l:?})", targets.len()));
    }
    p
}

/// Prefixes under one node with hundreds of children copy that node,
/// one run larger, on every insert: the arrays `needs` sizes must hold
/// every copy without splintering.
#[test]
fn the_arrays_needs_sizes_hold_a_node_copied_as_it_grows() {
    let targets: Vec<Target> = (0..600u32)
        .map(|i| {
            let net = format!("2a02:{:x}:{:x}:{:x}00::/56", 0x100 + i, i * 7, i % 256);
            Target::parse(&net).unwrap()
        })
        .collect();
    let mut p = load_as_sized(&targets);
    for t in &targets {
        p.remove(t, List::Deny).unwrap();
    }
    assert_eq!(p.slots_in_use(), (0, 0));
}

/// IPv6 prefixes the way RIR data clusters them: 3,000 /32 allocations,
/// lengths /29–/64, loaded in the order a deploy applies them (most specific
/// first). Nodes grow through the block classes as they fill; the arrays
/// `needs` sizes must hold the load all the same.
#[test]
fn the_arrays_needs_sizes_hold_a_clustered_bulk_load() {
    let mut rng = StdRng::seed_from_u64(3);
    let allocations: Vec<u128> = (0..3000)
        .map(|_| (0x2000u128 << 112) | (u128::from(rng.random::<u32>() & 0x1fff_ffff) << 96))
        .collect();
    let lengths = [29u8, 32, 36, 40, 44, 48, 48, 48, 52, 56, 56, 60, 64, 64, 64];
    let mut set = std::collections::BTreeSet::new();
    while set.len() < 30_000 {
        let base = allocations[rng.random_range(0..allocations.len())];
        let len = lengths[rng.random_range(0..lengths.len())];
        let bits = mask(base | (u128::from(rng.random::<u64>()) << 32), len, 128);
        set.insert((len, bits));
    }
    let mut targets: Vec<Target> = set
        .iter()
        .map(|&(len, bits)| {
            Target::from(ipnet::IpNet::new(ip_from_bits(false, bits), len).unwrap())
        })
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.prefix_len()));
    let p = load_as_sized(&targets);
    let n = needs(targets.iter().copied());
    assert_eq!(p.nodes_in_use().1, n.nodes_v6);
    assert!(p.slots_in_use().1 <= n.slots_v6);
}
