//! The sandbox itself: traffic through every link shape, cleanup, and
//! the tag in the bytes XDP sees.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;
use std::process::Command;

use anyhow::Result;

use super::pair::{RECEIVER_IF, SENDER_V4, parse_received};
use super::{Netns, Pair, PairConfig, bpf, ifindex, run_checked};

const V4_SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
const V6_SRC: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 7));

/// Shared body for each link shape: traffic flows both families with no
/// XDP attached, and drop leaves nothing behind.
fn check_pair(tag: &str, cfg: PairConfig, sizes: &[u32]) {
    let pair = Pair::new(tag, cfg).expect("pair");
    let paths = [pair.sender.path(), pair.receiver.path()];
    for p in &paths {
        assert!(p.exists(), "{} should exist", p.display());
    }
    for src in [V4_SRC, V6_SRC] {
        pair.add_sender_source(src).unwrap();
        // Idempotent, so tests can re-add freely.
        pair.add_sender_source(src).unwrap();
        for &size in sizes {
            assert_eq!(
                pair.ping(src, 5, size).unwrap(),
                5,
                "{tag}: ping from {src} size {size}"
            );
        }
    }
    drop(pair);
    for p in &paths {
        assert!(!p.exists(), "{} should be gone after drop", p.display());
    }
    let list = run_checked(Command::new("ip").args(["netns", "list"])).unwrap();
    for p in &paths {
        let name = p.file_name().unwrap().to_str().unwrap();
        assert!(
            !list
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "{name} still listed"
        );
    }
}

#[test]
fn plain_pair_passes_traffic() {
    crate::require_root();
    check_pair("plain", PairConfig::default(), &[56, 1400]);
}

#[test]
fn vlan_pair_passes_traffic() {
    crate::require_root();
    check_pair(
        "vlan",
        PairConfig {
            vlan: Some(100),
            ..Default::default()
        },
        &[56, 1400],
    );
}

#[test]
fn jumbo_pair_passes_traffic() {
    crate::require_root();
    // 8000 fits one 9000 frame. 12000 checks that fragments come back.
    check_pair(
        "jumbo",
        PairConfig {
            mtu: 9000,
            vlan: None,
        },
        &[56, 8000, 12000],
    );
}

#[test]
fn running_twice_works() {
    crate::require_root();
    for _ in 0..2 {
        let pair = Pair::new("twice", PairConfig::default()).unwrap();
        pair.add_sender_source(V4_SRC).unwrap();
        assert_eq!(pair.ping(V4_SRC, 2, 56).unwrap(), 2);
    }
}

#[test]
fn source_inside_onlink_subnet_routes_back() {
    crate::require_root();
    let pair = Pair::new("onlink", PairConfig::default()).unwrap();
    for src in [
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 77)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x77)),
        IpAddr::V4(SENDER_V4),
    ] {
        pair.add_sender_source(src).unwrap();
        assert_eq!(pair.ping(src, 3, 56).unwrap(), 3, "from {src}");
    }
}

#[test]
fn enter_runs_in_the_namespace() {
    crate::require_root();
    let pair = Pair::new("enter", PairConfig::default()).unwrap();
    let r = pair
        .receiver
        .enter(|| ifindex(RECEIVER_IF).is_ok())
        .unwrap();
    let s = pair.sender.enter(|| ifindex(RECEIVER_IF).is_ok()).unwrap();
    assert!(r && !s);
    // The calling thread stays where it was.
    assert!(ifindex(RECEIVER_IF).is_err());
}

#[test]
fn enter_propagates_panics() {
    crate::require_root();
    let ns = Netns::new("panic").unwrap();
    let path = ns.path();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ns.enter(|| panic!("boom"))));
    assert!(r.is_err());
    drop(ns);
    assert!(!path.exists());
}

/// XDP probe: drop every frame whose ethertype at offset 12 is 0x8100,
/// pass everything else. Marked frags-aware so it also attaches natively
/// at MTU 9000.
fn attach_tag_probe(pair: &Pair, xdp_flags: u32) -> OwnedFd {
    use bpf::*;
    let insns = vec![
        Insn::new(0x61, 2, 1, 0, 0),                            // r2 = ctx->data
        Insn::new(0x61, 3, 1, 4, 0),                            // r3 = ctx->data_end
        Insn::new(0xbf, 4, 2, 0, 0),                            // r4 = r2
        Insn::new(0x07, 4, 0, 0, 14),                           // r4 += 14
        Insn::mov64_imm(0, 2),                                  // r0 = XDP_PASS
        Insn::new(0x2d, 4, 3, 3, 0),                            // if r4 > r3 goto exit
        Insn::new(0x69, 5, 2, 12, 0),                           // r5 = *(u16 *)(r2 + 12)
        Insn::new(0x55, 5, 0, 1, i32::from(0x8100u16.to_be())), // if r5 != 0x8100 goto exit
        Insn::mov64_imm(0, 1),                                  // r0 = XDP_DROP
        Insn::exit(),
    ];
    let ifname = pair.receiver_xdp_if.clone();
    pair.receiver
        .enter(move || -> Result<OwnedFd> {
            let prog = prog_load(PROG_TYPE_XDP, ATTACH_XDP, 1 << 5, &insns, "dl_tag_probe")?;
            link_create(&prog, ifindex(&ifname)?, ATTACH_XDP, xdp_flags)
        })
        .unwrap()
        .unwrap()
}

const XDP_FLAGS_SKB_MODE: u32 = 2;
const XDP_FLAGS_DRV_MODE: u32 = 4;

/// The reason VLAN mode exists: the tag must be in the bytes XDP sees,
/// in both native and generic mode, at both MTUs.
#[test]
fn vlan_tag_is_visible_to_xdp() {
    crate::require_root();
    for mtu in [1500, 9000] {
        for mode in [XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE] {
            let tagged = Pair::new(
                "tag",
                PairConfig {
                    mtu,
                    vlan: Some(100),
                },
            )
            .unwrap();
            let plain = Pair::new("untag", PairConfig { mtu, vlan: None }).unwrap();
            for pair in [&tagged, &plain] {
                for src in [V4_SRC, V6_SRC] {
                    pair.add_sender_source(src).unwrap();
                }
            }
            let _l1 = attach_tag_probe(&tagged, mode);
            let _l2 = attach_tag_probe(&plain, mode);
            for src in [V4_SRC, V6_SRC] {
                assert_eq!(
                    tagged.ping(src, 3, 56).unwrap(),
                    0,
                    "tag not seen: mtu {mtu} mode {mode} {src}"
                );
                assert_eq!(
                    plain.ping(src, 3, 56).unwrap(),
                    3,
                    "probe broke plain: mtu {mtu} mode {mode} {src}"
                );
            }
        }
    }
}

#[test]
fn parse_received_variants() {
    let ok = "PING x\n\n--- 192.0.2.1 ping statistics ---\n5 packets transmitted, 5 received, 0% packet loss, time 41ms\nrtt min/avg/max/mdev = 0.1/0.1/0.1/0.0 ms\n";
    assert_eq!(parse_received(ok), Some(5));
    let none = "--- 192.0.2.1 ping statistics ---\n3 packets transmitted, 0 received, 100% packet loss, time 20ms\n";
    assert_eq!(parse_received(none), Some(0));
    let errs = "4 packets transmitted, 1 received, +3 errors, 75% packet loss, time 30ms\n";
    assert_eq!(parse_received(errs), Some(1));
    assert_eq!(parse_received("garbage"), None);
}

#[test]
fn netns_rejects_bad_tags() {
    assert!(Netns::new("").is_err());
    assert!(Netns::new("a/b").is_err());
    assert!(Netns::new("waytoolongtagname").is_err());
}
