//! The rate detector end to end: trafgen floods the receiver's veth at set
//! rates, with `--pps 500` (veth carries about 0.6 Mpps here), and the
//! daemon lists, spares and reports what the kernel counted.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use denylist::{
    cli::Client,
    model::{AUTO_RATE, Entry, List, RateAction, RateMode, TopSource, Verdict},
    wire::{AddRequest, AutoSetRequest, AutoStatus, CheckResponse, RemoveRequest, StatItem},
};
use denylist_tests::netns::Sources;

use super::common::{Sandbox, add, item, sandbox};

const PPS: u64 = 500;

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn auto(c: &Client) -> AutoStatus {
    c.get("/v1/auto").expect("auto")
}

fn set(c: &Client, req: AutoSetRequest) -> AutoStatus {
    c.post("/v1/auto", &req).expect("auto set")
}

fn enforce(c: &Client, max_per_minute: Option<u32>) -> AutoStatus {
    set(
        c,
        AutoSetRequest {
            mode: Some(RateMode::Enforce),
            pps: Some(PPS),
            max_per_minute,
            ..AutoSetRequest::default()
        },
    )
}

fn verdict(c: &Client, ip: &str) -> Verdict {
    let r: CheckResponse = c.get(&format!("/v1/check/{ip}")).expect("check");
    r.verdict
}

fn actions(c: &Client, source: &str) -> Vec<RateAction> {
    auto(c)
        .recent
        .iter()
        .filter(|d| d.source.to_string() == source)
        .map(|d| d.action)
        .collect()
}

/// Polls `ok` every 100 ms for up to `within`; true once it holds.
fn eventually(within: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    ok()
}

fn rate_ttl(c: &Client, target: &str) -> Option<u64> {
    let entries: Vec<Entry> = c.get("/v1/entries").expect("entries");
    entries
        .iter()
        .find(|e| e.target.to_string() == target && e.list == List::Deny)?
        .listing(AUTO_RATE)?
        .ttl
}

fn unblock(c: &Client, target: &str) {
    let req = RemoveRequest {
        targets: vec![target.parse().unwrap()],
        list: List::Deny,
        deploy: true,
        message: None,
        source: Some(AUTO_RATE.into()),
    };
    let _: serde_json::Value = c.post("/v1/entries/remove", &req).expect("remove");
}

fn gateway(sb: &Sandbox, via: &str) {
    sb.pair
        .receiver
        .run(&[
            "ip",
            "route",
            "replace",
            "default",
            "via",
            via,
            "dev",
            &sb.pair.receiver_if,
            "onlink",
        ])
        .expect("a default route");
}

#[test]
fn enforce_blocks_an_offender_and_spares_the_slow_and_the_protected() {
    let sb = sandbox("rateenf");
    gateway(&sb, "198.18.0.1");
    let _d = sb.start(&[]);
    let c = sb.client();
    let allow = AddRequest {
        entries: vec![denylist::wire::StageItem {
            list: List::Allow,
            ..item("45.9.9.9")
        }],
        deploy: true,
        ..AddRequest::default()
    };
    let _: serde_json::Value = c.post("/v1/entries", &allow).expect("allow");
    enforce(&c, None);
    // 100 sources at half the threshold each, for 20 s (1,000 with
    // DENYLIST_LONG, in four blasts of 250: trafgen's counter turns one
    // byte).
    let (groups, per_group): (u8, u8) = if super::common::long() {
        (4, 250)
    } else {
        (1, 100)
    };
    let slow: Vec<_> = (0..groups)
        .map(|g| {
            let rate = u64::from(per_group) * PPS / 2;
            sb.pair
                .blast(
                    Sources::Cycle {
                        base: Ipv4Addr::new(198, 18, 10 + g, 0),
                        n: per_group,
                    },
                    rate,
                    rate * 20,
                )
                .unwrap()
        })
        .collect();
    // The allowlisted, a private and the gateway's address at 100×.
    let protected: Vec<_> = ["45.9.9.9", "10.7.7.7", "198.18.0.1"]
        .iter()
        .map(|s| {
            sb.pair
                .blast(Sources::One(v4(s)), 100 * PPS, 100 * PPS * 5)
                .unwrap()
        })
        .collect();
    let offender = sb
        .pair
        .blast(Sources::One(v4("198.18.0.10")), 10 * PPS, 10 * PPS * 8)
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || verdict(&c, "198.18.0.10")
            == Verdict::Drop),
        "the offender at 10× the threshold is dropped within 10 s: {:?}",
        auto(&c)
    );
    assert_eq!(rate_ttl(&c, "198.18.0.10"), Some(600));
    for p in protected {
        p.finish().unwrap();
    }
    for b in slow {
        b.finish().unwrap();
    }
    offender.finish().unwrap();
    std::thread::sleep(Duration::from_millis(1_500));
    let status = auto(&c);
    assert_eq!(status.active, 1, "{status:?}");
    let listed: Vec<String> = status
        .recent
        .iter()
        .filter(|d| d.action == RateAction::Listed)
        .map(|d| d.source.to_string())
        .collect();
    assert_eq!(listed, ["198.18.0.10"], "{status:?}");
    for s in ["10.7.7.7", "198.18.0.1"] {
        assert_eq!(actions(&c, s), [RateAction::Protected], "{s}: {status:?}");
        assert_eq!(verdict(&c, s), Verdict::Pass, "{s}");
    }
    let gw = status
        .recent
        .iter()
        .find(|d| d.source.to_string() == "198.18.0.1")
        .unwrap();
    assert!(gw.why.as_deref().unwrap().contains("gateway"), "{gw:?}");
    assert!(actions(&c, "45.9.9.9").is_empty(), "allowed: never counted");
    assert_eq!(verdict(&c, "198.18.10.7"), Verdict::Pass);
    // Unblocked, and offending again: four times the TTL.
    unblock(&c, "198.18.0.10");
    assert_eq!(verdict(&c, "198.18.0.10"), Verdict::Pass);
    let again = sb
        .pair
        .blast(Sources::One(v4("198.18.0.10")), 10 * PPS, 10 * PPS * 5)
        .unwrap();
    assert!(eventually(Duration::from_secs(10), || rate_ttl(
        &c,
        "198.18.0.10"
    )
    .is_some()));
    assert_eq!(rate_ttl(&c, "198.18.0.10"), Some(2_400));
    again.finish().unwrap();
}

#[test]
fn a_spoofed_flood_of_a_million_sources_lists_nothing() {
    let sb = sandbox("ratespoof");
    let d = sb.start(&[]);
    let c = sb.client();
    add(&c, &["198.18.5.5"], true);
    enforce(&c, None);
    let before = detector_memlock(&sb);
    let manual = sb
        .pair
        .blast(Sources::One(v4("198.18.5.5")), 1_000, 2_000)
        .unwrap();
    // Paced, not flat out: without a gap trafgen sends through its
    // TX_RING, whose flush fails with EAGAIN now and then on a loaded veth.
    sb.pair
        .blast(
            Sources::Random {
                base: v4("45.0.0.0"),
            },
            500_000,
            1_000_000,
        )
        .unwrap()
        .finish()
        .unwrap();
    manual.finish().unwrap();
    std::thread::sleep(Duration::from_millis(2_500));
    let status = auto(&c);
    assert_eq!(status.active, 0, "{status:?}");
    assert!(
        status.recent.iter().all(|r| r.action != RateAction::Listed),
        "{status:?}"
    );
    assert_eq!(
        detector_memlock(&sb),
        before,
        "the detector's memory is fixed"
    );
    assert_eq!(verdict(&c, "198.18.5.5"), Verdict::Drop);
    let stats: Vec<StatItem> = c.get("/v1/stats").unwrap();
    let hits = stats
        .iter()
        .find(|s| s.target.to_string() == "198.18.5.5")
        .map_or(0, |s| s.packets);
    assert_eq!(hits, 2_000, "the manual entry's counter: {stats:?}");
    drop(d);
}

#[test]
fn top_shows_the_heaviest_and_the_breaker_trips_for_good() {
    let sb = sandbox("ratebreak");
    let d = sb.start(&[]);
    let c = sb.client();
    set(
        &c,
        AutoSetRequest {
            pps: Some(PPS),
            ..AutoSetRequest::default()
        },
    );
    // Monitor, the default: a flood at 10× and 20 sources at a fifth.
    // `top` averages a source's last 5 epochs, read here after 6, against
    // the rate trafgen achieved over its whole run.
    let heavy = sb
        .pair
        .blast(Sources::One(v4("198.18.0.20")), 10 * PPS, 10 * PPS * 8)
        .unwrap();
    let light = sb
        .pair
        .blast(
            Sources::Cycle {
                base: v4("198.18.2.0"),
                n: 20,
            },
            20 * PPS / 5,
            20 * PPS / 5 * 8,
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(6_000));
    let top: Vec<TopSource> = c.get("/v1/top?limit=5").unwrap();
    let sent = heavy.finish().unwrap();
    assert_eq!(top[0].source.to_string(), "198.18.0.20", "{top:?}");
    assert!(
        top[0].pps * 10 >= sent * 7 && top[0].pps * 10 <= sent * 13,
        "{} pps estimated for {sent} pps sent",
        top[0].pps
    );
    assert_eq!(top.len(), 5, "the light sources too: {top:?}");
    assert_eq!(actions(&c, "198.18.0.20")[0], RateAction::WouldBlock);
    assert_eq!(verdict(&c, "198.18.0.20"), Verdict::Pass);
    light.finish().unwrap();
    // Enforce with room for 2 listings a minute; 5 offenders.
    enforce(&c, Some(2));
    let five = sb
        .pair
        .blast(
            Sources::Cycle {
                base: v4("198.18.3.0"),
                n: 5,
            },
            5 * 10 * PPS,
            5 * 10 * PPS * 4,
        )
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || auto(&c).policy.tripped),
        "{:?}",
        auto(&c)
    );
    five.finish().unwrap();
    let status = auto(&c);
    assert_eq!(status.policy.mode, RateMode::Monitor);
    assert_eq!(status.active, 2, "{status:?}");
    assert!(
        status
            .recent
            .iter()
            .any(|r| r.action == RateAction::Suppressed)
    );
    d.stop();
    let _d = sb.start(&[]);
    let status = auto(&c);
    assert!(status.policy.tripped, "tripped across a restart");
    assert_eq!(status.policy.mode, RateMode::Monitor);
    assert!(
        !enforce(&c, None).policy.tripped,
        "an admin's enforce resets it"
    );
}

/// `memlock` of the detector's pinned maps, from this process's fdinfo.
fn detector_memlock(sb: &Sandbox) -> u64 {
    use std::os::fd::{AsFd, AsRawFd};
    let gens: Vec<_> = std::fs::read_dir(&sb.home.bpffs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("gen-"))
        .collect();
    assert_eq!(gens.len(), 1, "{gens:?}");
    denylist_common::DETECTOR_MAPS
        .iter()
        .map(|name| {
            let map = aya::maps::MapData::from_pin(gens[0].join(name)).unwrap();
            let fd = map.fd().as_fd().as_raw_fd();
            let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
            info.lines()
                .find_map(|l| l.strip_prefix("memlock:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap()
        })
        .sum()
}
