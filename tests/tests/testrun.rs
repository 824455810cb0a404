//! Every rule of the verdict function, on the real compiled program through
//! BPF_PROG_TEST_RUN: IPv4 and IPv6, with no, one and two VLAN tags.

use std::{net::IpAddr, thread, time::Duration};

use denylist::{
    dataplane::Dataplane,
    model::{List, Rule, Target, ip_bits, ip_from_bits},
};
use denylist_tests::{
    XDP_DROP, XDP_PASS, dataplane,
    frame::{ETH_P_8021AD, ETH_P_8021Q, Spec, header_boundaries, parse_source},
    run, tai_now_ns,
};

const ETH_HLEN: usize = 14;

fn stacks() -> [Vec<(u16, u16)>; 3] {
    [
        vec![],
        vec![(ETH_P_8021Q, 100)],
        vec![(ETH_P_8021AD, 7), (ETH_P_8021Q, 100)],
    ]
}

fn frame(src: IpAddr, vlans: &[(u16, u16)]) -> Vec<u8> {
    Spec {
        vlans: vlans.to_vec(),
        ..Spec::new(src)
    }
    .build()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn rule(id: u32, t: &str, list: List) -> Rule {
    Rule {
        id,
        target: Target::parse(t).unwrap(),
        list,
        monitor: false,
        expires_ms: None,
    }
}

fn verdicts(dp: &mut Dataplane, ips: &[&str], vlans: &[(u16, u16)]) -> Vec<u32> {
    ips.iter().map(|s| run(dp, &frame(ip(s), vlans))).collect()
}

#[test]
fn prefix_edges_on_every_length_class() {
    let mut dp = dataplane();
    let cases: [(&str, &[u8]); 2] = [
        (
            "203.0.113.77",
            &[0, 1, 7, 8, 9, 15, 16, 17, 23, 24, 25, 30, 31, 32],
        ),
        (
            "2001:db8:1234:5678:9abc:def0:1234:5678",
            &[0, 1, 16, 29, 32, 47, 48, 56, 63, 64, 65, 96, 120, 127, 128],
        ),
    ];
    for (base, lens) in cases {
        let base = ip(base);
        let v4 = base.is_ipv4();
        let width: u32 = if v4 { 32 } else { 128 };
        for &len in lens {
            let net = ipnet::IpNet::new(base, len).unwrap().trunc();
            let t = Target::from(net);
            let first = ip_bits(net.network());
            let host = width - u32::from(len);
            let span_mask = if host >= 128 {
                u128::MAX
            } else {
                (1u128 << host) - 1
            };
            let last = first | span_mask;
            let max = if v4 { u128::from(u32::MAX) } else { u128::MAX };
            let r = Rule {
                id: 1,
                target: t,
                list: List::Deny,
                monitor: false,
                expires_ms: None,
            };
            dp.apply(std::slice::from_ref(&r), &[]).unwrap();
            for vlans in stacks() {
                for inside in [first, last] {
                    let a = ip_from_bits(v4, inside);
                    assert_eq!(
                        run(&mut dp, &frame(a, &vlans)),
                        XDP_DROP,
                        "{a} inside {t}, vlans {vlans:?}"
                    );
                }
                if first > 0 {
                    let a = ip_from_bits(v4, first - 1);
                    assert_eq!(run(&mut dp, &frame(a, &vlans)), XDP_PASS, "{a} before {t}");
                }
                if last < max {
                    let a = ip_from_bits(v4, last + 1);
                    assert_eq!(run(&mut dp, &frame(a, &vlans)), XDP_PASS, "{a} after {t}");
                }
            }
            dp.apply(&[], &[(t, List::Deny)]).unwrap();
            for inside in [first, last] {
                let a = ip_from_bits(v4, inside);
                assert_eq!(
                    run(&mut dp, &frame(a, &[])),
                    XDP_PASS,
                    "{a} after removing {t}"
                );
            }
        }
    }
}

/// A node of more than 192 runs keeps its 256 slots (plain), and in the
/// IPv6 trie a chain of single-path levels is skipped in one compare: the
/// program must decide through both as through the nodes they stand for.
#[test]
fn dense_nodes_and_skipped_chains_decide_as_their_levels_would() {
    let mut dp = dataplane();
    // 250 /24s under one /16 in each family: 251 runs in the node below
    // the root.
    let dense: Vec<Rule> = (0..250u32)
        .flat_map(|x| {
            [
                rule(1 + x, &format!("198.51.{x}.0/24"), List::Deny),
                rule(1001 + x, &format!("2001:{x:02x}00::/24"), List::Deny),
            ]
        })
        .collect();
    // A chain beside them: the /64 skips bytes 3 to 7 in one read, the
    // /127 bytes 8 to 14; and one right under the root, from byte 2.
    let chain = [
        rule(2000, "2001:fa00:0:7::/64", List::Deny),
        rule(2001, "2001:fa00:0:7:1:2:3:4/127", List::Allow),
        rule(2002, "2a02:1:2:3::/64", List::Deny),
    ];
    dp.apply(&dense, &[]).unwrap();
    dp.apply(&chain, &[]).unwrap();
    let probes = [
        ("198.51.3.1", XDP_DROP),
        ("198.51.249.255", XDP_DROP),
        ("198.51.250.1", XDP_PASS),
        ("2001:f900::1", XDP_DROP),
        ("2001:fa00::1", XDP_PASS),
        ("2001:fa00:0:7::1", XDP_DROP),
        ("2001:fa00:0:7:1:2:3:5", XDP_PASS),
        ("2001:fa00:0:7:1:2:3:6", XDP_DROP),
        ("2001:fa00:0:8::1", XDP_PASS),
        ("2001:fa00:1:7::1", XDP_PASS),
        ("2a02:1:2:3::9", XDP_DROP),
        ("2a02:1:2:4::9", XDP_PASS),
        ("2a02:1:3:3::9", XDP_PASS),
    ];
    for vlans in stacks() {
        for (a, want) in probes {
            assert_eq!(
                run(&mut dp, &frame(ip(a), &vlans)),
                want,
                "{a}, vlans {vlans:?}"
            );
        }
    }
    // Those from 100 on gone: the nodes keep runs again, and with the
    // chain's /127 gone the skip ends at the /64.
    let gone: Vec<(Target, List)> = dense
        .iter()
        .filter(|r| (r.id - 1) % 1000 >= 100)
        .map(|r| (r.target, r.list))
        .chain([(chain[1].target, List::Allow)])
        .collect();
    dp.apply(&[], &gone).unwrap();
    let probes = [
        ("198.51.3.1", XDP_DROP),
        ("198.51.99.255", XDP_DROP),
        ("198.51.100.1", XDP_PASS),
        ("2001:6300::1", XDP_DROP),
        ("2001:6400::1", XDP_PASS),
        ("2001:fa00:0:7:1:2:3:5", XDP_DROP),
        ("2001:fa00:0:8::1", XDP_PASS),
    ];
    for (a, want) in probes {
        assert_eq!(run(&mut dp, &frame(ip(a), &[])), want, "{a} after removals");
    }
}

#[test]
fn allow_overrides_monitor_watches_and_the_most_specific_deny_decides() {
    let mut dp = dataplane();
    let mut watched = rule(3, "198.51.100.128/25", List::Deny);
    watched.monitor = true;
    let mut watched6 = rule(13, "2001:db8:1:2::/64", List::Deny);
    watched6.monitor = true;
    let rules = [
        rule(1, "198.51.0.0/16", List::Deny),
        rule(2, "198.51.100.0/24", List::Allow),
        watched,
        rule(4, "198.51.100.200", List::Deny),
        rule(5, "198.51.100.201", List::Allow),
        rule(6, "198.51.7.0/24", List::Deny),
        rule(7, "198.51.7.9", List::Deny),
        rule(7_7, "198.51.7.9", List::Allow),
        rule(11, "2001:db8:1::/48", List::Deny),
        rule(12, "2001:db8:1:1::/64", List::Allow),
        watched6,
        rule(14, "2001:db8:1:2::9", List::Deny),
    ];
    dp.apply(&rules, &[]).unwrap();
    for vlans in stacks() {
        assert_eq!(
            verdicts(
                &mut dp,
                &[
                    "198.51.1.1",
                    "198.51.100.1",
                    "198.51.100.130",
                    "198.51.100.201",
                    "198.51.7.1",
                    "198.51.7.9"
                ],
                &vlans
            ),
            [XDP_DROP, XDP_PASS, XDP_PASS, XDP_PASS, XDP_DROP, XDP_PASS],
            "IPv4, vlans {vlans:?}"
        );
        assert_eq!(
            verdicts(
                &mut dp,
                &[
                    "2001:db8:1::1",
                    "2001:db8:1:1::1",
                    "2001:db8:1:2::1",
                    "2001:db8:1:2::9",
                    "2001:db8:2::1"
                ],
                &vlans
            ),
            [XDP_DROP, XDP_PASS, XDP_PASS, XDP_DROP, XDP_PASS],
            "IPv6, vlans {vlans:?}"
        );
    }
    // Without the allow /24, the watched /25 reports and the exact deny drops.
    dp.apply(
        &[],
        &[(Target::parse("198.51.100.0/24").unwrap(), List::Allow)],
    )
    .unwrap();
    let before = dp.counters().unwrap();
    assert_eq!(
        verdicts(
            &mut dp,
            &["198.51.100.130", "198.51.100.200", "198.51.100.1"],
            &[]
        ),
        [XDP_PASS, XDP_DROP, XDP_DROP]
    );
    let after = dp.counters().unwrap();
    assert_eq!(after.monitored_packets - before.monitored_packets, 1);
    assert_eq!(after.dropped_packets - before.dropped_packets, 2);
    assert_eq!(
        after.passed_packets - before.passed_packets,
        1,
        "monitored packets pass"
    );

    // The deciding entry's counters go up, and only its.
    let hits = dp.hits().unwrap();
    let packets = |id: u32| hits.get(&id).map_or(0, |h| h.packets);
    assert_eq!(packets(3), 1, "the monitor entry");
    assert_eq!(packets(4), 1, "the exact deny");
    assert_eq!(
        packets(2),
        6,
        "the allow /24 decided .1 and .130 for each stack"
    );
    assert_eq!(packets(5), 3, "the exact allow beats the covering allow");
    assert_eq!(
        packets(7_7),
        3,
        "allow beats the exact deny of the same address"
    );
    assert_eq!(packets(7), 0, "an overridden deny is never counted");
    assert_eq!(packets(13), 3);
}

#[test]
fn expiry_is_enforced_in_the_kernel_with_fallback_to_a_covering_prefix() {
    let mut dp = dataplane();
    let now_ms = tai_now_ns() / 1_000_000;
    let mut monitor_net = rule(1, "203.0.113.0/24", List::Deny);
    monitor_net.monitor = true;
    let mut soon = rule(2, "203.0.113.9", List::Deny);
    soon.expires_ms = Some(now_ms + 1_500);
    let mut gone = rule(3, "203.0.113.10", List::Deny);
    gone.expires_ms = Some(now_ms - 1);
    let mut allow_gone = rule(4, "203.0.113.11", List::Allow);
    allow_gone.expires_ms = Some(now_ms - 1);
    let net6 = rule(11, "2001:db8:5::/48", List::Deny);
    let mut soon6 = rule(12, "2001:db8:5::9", List::Allow);
    soon6.expires_ms = Some(now_ms + 1_500);
    let mut inner6 = rule(13, "2001:db8:5:1::/64", List::Allow);
    inner6.expires_ms = Some(now_ms - 1);
    dp.apply(
        &[monitor_net, soon, gone, allow_gone, net6, soon6, inner6],
        &[],
    )
    .unwrap();

    let probe = |dp: &mut Dataplane| {
        let before = dp.counters().unwrap();
        let v = verdicts(
            dp,
            &[
                "203.0.113.9",
                "203.0.113.10",
                "203.0.113.11",
                "2001:db8:5::9",
                "2001:db8:5:1::1",
            ],
            &[],
        );
        let after = dp.counters().unwrap();
        (v, after.monitored_packets - before.monitored_packets)
    };
    // .10 and .11 fell back to the monitor /24 already; the /64 allow is gone.
    assert_eq!(
        probe(&mut dp),
        (vec![XDP_DROP, XDP_PASS, XDP_PASS, XDP_PASS, XDP_DROP], 2)
    );
    thread::sleep(Duration::from_millis(1_700));
    // No user-space change: the kernel clock alone retired the exact entries.
    assert_eq!(
        probe(&mut dp),
        (vec![XDP_PASS, XDP_PASS, XDP_PASS, XDP_DROP, XDP_DROP], 3)
    );
}

#[test]
fn unparsable_frames_pass_untouched_and_are_counted() {
    let mut dp = dataplane();
    dp.apply(
        &[
            rule(1, "0.0.0.0/0", List::Deny),
            rule(2, "::/0", List::Deny),
        ],
        &[],
    )
    .unwrap();
    for src in ["198.51.100.7", "2001:db8::7"] {
        for vlans in stacks() {
            let mut spec = Spec {
                vlans: vlans.clone(),
                ..Spec::new(ip(src))
            };
            if src.contains('.') {
                spec.ipv4_option_words = 2;
            }
            let full = spec.build();
            let parsed_from = *header_boundaries(&spec).last().unwrap();
            // BPF_PROG_TEST_RUN refuses XDP input shorter than an Ethernet
            // header (bpf_prog_test_run_xdp → bpf_test_init, EINVAL), and
            // drivers drop such runts before XDP, so cuts start there.
            for cut in ETH_HLEN..full.len() {
                let before = dp.counters().unwrap();
                let action = run(&mut dp, &full[..cut]);
                let after = dp.counters().unwrap();
                let parsable = parse_source(&full[..cut]).is_some();
                assert_eq!(parsable, cut >= parsed_from, "{src} {vlans:?} cut at {cut}");
                if parsable {
                    assert_eq!(action, XDP_DROP, "{src} {vlans:?} cut at {cut}");
                } else {
                    assert_eq!(action, XDP_PASS, "{src} {vlans:?} cut at {cut}");
                    assert_eq!(after.unparsable_packets - before.unparsable_packets, 1);
                    assert_eq!(after.unparsable_bytes - before.unparsable_bytes, cut as u64);
                }
            }
        }
    }
    let base = Spec::new(ip("198.51.100.7")).build();
    let mut arp = base.clone();
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    let mut ihl4 = base.clone();
    ihl4[14] = 0x44;
    let mut version6_in_ipv4 = base.clone();
    version6_in_ipv4[14] = 0x65;
    let three_tags = Spec::new(ip("198.51.100.7"))
        .vlan(ETH_P_8021Q, 1)
        .vlan(ETH_P_8021Q, 2)
        .vlan(ETH_P_8021Q, 3)
        .build();
    let mut long_ihl = base.clone();
    long_ihl[14] = 0x4f;
    long_ihl.truncate(14 + 40);
    for (what, f) in [
        ("ARP", arp),
        ("IHL 4", ihl4),
        ("version 6 in an IPv4 ethertype", version6_in_ipv4),
        ("three VLAN tags", three_tags),
        ("IHL beyond the frame", long_ihl),
    ] {
        assert_eq!(parse_source(&f), None, "{what}");
        assert_eq!(run(&mut dp, &f), XDP_PASS, "{what}");
    }
}

/// Byte counts are the whole frame, its fragments included, whatever its
/// IP header says (docs/dataplane.md): test_run puts what passes a page in
/// fragments, so the jumbo frames here have them.
#[test]
fn frames_count_their_whole_length() {
    let mut dp = dataplane();
    dp.apply(
        &[
            rule(1, "198.51.100.7", List::Deny),
            rule(2, "2001:db8::7", List::Deny),
        ],
        &[],
    )
    .unwrap();
    // With where the IP header's length field lies: IPv4's total length,
    // IPv6's payload length.
    for (id, src, field) in [(1, "198.51.100.7", 14 + 2), (2, "2001:db8::7", 14 + 4)] {
        for (what, payload, claim) in [
            ("a standard frame", 1_400, None),
            ("a jumbo frame", 8_900, None),
            (
                "a jumbo frame whose header says 100 bytes",
                8_900,
                Some(100u16),
            ),
            ("a frame shorter than its header says", 100, Some(1_400)),
        ] {
            let mut f = Spec {
                payload,
                ..Spec::new(ip(src))
            }
            .build();
            if let Some(claim) = claim {
                f[field..field + 2].copy_from_slice(&claim.to_be_bytes());
            }
            let counted = dp.counters().unwrap().dropped_bytes;
            let hit = dp.hits().unwrap().get(&id).map_or(0, |h| h.bytes);
            assert_eq!(run(&mut dp, &f), XDP_DROP, "{src}: {what}");
            let what = format!("{src}: {what} of {} bytes", f.len());
            assert_eq!(
                dp.counters().unwrap().dropped_bytes - counted,
                f.len() as u64,
                "{what}"
            );
            assert_eq!(
                dp.hits().unwrap()[&id].bytes - hit,
                f.len() as u64,
                "{what}"
            );
        }
    }
}

#[test]
fn mapped_ipv6_sources_match_ipv4_entries() {
    let mut dp = dataplane();
    dp.apply(&[rule(1, "198.51.100.0/24", List::Deny)], &[])
        .unwrap();
    assert_eq!(
        run(&mut dp, &frame(ip("::ffff:198.51.100.3"), &[])),
        XDP_DROP
    );
    assert_eq!(
        run(&mut dp, &frame(ip("::ffff:198.51.101.3"), &[])),
        XDP_PASS
    );
}

/// A deploy's new addresses written ahead (a fleet's follower) pass as if
/// absent, an allow's and a deny's alike, and become live together when the
/// deploy puts them in as written; one the deploy does not bring is gone.
/// The next write ahead closes the gate again, and the entries it opened
/// stay live.
#[test]
fn entries_written_ahead_are_inert_until_their_deploy() {
    let mut dp = dataplane();
    let wide = rule(1, "198.51.100.0/24", List::Deny);
    dp.apply(&[wide], &[]).unwrap();
    let deny = rule(2, "192.0.2.1", List::Deny);
    let deny6 = rule(3, "2001:db8::1", List::Deny);
    let allow = rule(4, "198.51.100.9", List::Allow);
    let stray = rule(5, "192.0.2.2", List::Deny);
    let ips = ["192.0.2.1", "2001:db8::1", "198.51.100.9", "192.0.2.2"];
    let written = dp.stage(&[deny, deny6, allow, stray], &[]).unwrap();
    assert_eq!(written, 4);
    for vlans in &stacks() {
        assert_eq!(
            verdicts(&mut dp, &ips, vlans),
            [XDP_PASS, XDP_PASS, XDP_DROP, XDP_PASS],
            "written ahead, nothing changed"
        );
    }
    assert_eq!(dp.drift().unwrap(), [], "written ahead is no drift");
    dp.apply(&[deny, deny6, allow], &[]).unwrap();
    assert_eq!(
        verdicts(&mut dp, &ips, &[]),
        [XDP_DROP, XDP_DROP, XDP_PASS, XDP_PASS]
    );
    assert_eq!(dp.drift().unwrap(), [], "live through the gate is no drift");
    let next = rule(6, "192.0.2.3", List::Deny);
    assert_eq!(dp.stage(&[next], &[]).unwrap(), 1);
    assert_eq!(
        verdicts(&mut dp, &[ips[0], ips[1], ips[2], "192.0.2.3"], &[]),
        [XDP_DROP, XDP_DROP, XDP_PASS, XDP_PASS],
        "the gate closed behind entries made ordinary"
    );
    assert_eq!(dp.drift().unwrap(), []);
    dp.unstage().unwrap();
    dp.apply(&[next], &[]).unwrap();
    assert_eq!(run(&mut dp, &frame(ip("192.0.2.3"), &[])), XDP_DROP);
}
