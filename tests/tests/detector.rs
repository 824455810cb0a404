//! The rate detector in the real compiled program, through
//! BPF_PROG_TEST_RUN on one pinned CPU: what it counts per source (an
//! IPv6 source by its /64), what it skips (allowed sources, everything
//! while off), its epochs, its event cap, one report of a source spread
//! over two CPUs, and a spoofed flood of distinct
//! sources that reaches no level and leaves its memory as it was.

use std::net::{IpAddr, Ipv4Addr};

use denylist::{
    dataplane::{Dataplane, DetectLevels, Epoch},
    model::{List, Rule, Target},
};
use denylist_tests::{dataplane, frame::Spec, run};

/// Runs the test thread on CPU 0 only: the sketches are per CPU, and the
/// levels are split over the CPUs.
fn pin_to_cpu0() {
    pin_to(0);
}

/// Runs the test thread on CPU `cpu` only, where the kernel's test runs
/// then count.
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET and sched_setaffinity
    // get valid pointers to it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set),
            0,
            "pinning the test to CPU {cpu}"
        );
    }
}

fn send(dp: &mut Dataplane, src: &str, n: u64) {
    let frame = Spec::new(src.parse().unwrap()).build();
    for _ in 0..n {
        run(dp, &frame);
    }
}

fn counts(e: &Epoch) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = e
        .sources
        .iter()
        .map(|m| (m.source.to_string(), m.packets))
        .collect();
    v.sort();
    v
}

/// The kernel memory of the program's maps: `memlock` in this process's
/// fdinfo of each map the program uses.
fn memlock(dp: &mut Dataplane) -> u64 {
    let ids = dp.program().info().unwrap().map_ids().unwrap().unwrap();
    let mut total = 0;
    for e in std::fs::read_dir("/proc/self/fdinfo").unwrap() {
        let Ok(text) = std::fs::read_to_string(e.unwrap().path()) else {
            continue;
        };
        let field = |name: &str| -> Option<u64> {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
        };
        if let (Some(id), Some(bytes)) = (field("map_id:"), field("memlock:"))
            && ids.contains(&(id as u32))
        {
            total += bytes;
        }
    }
    total
}

fn levels(packets: u64, events: u32) -> DetectLevels {
    DetectLevels {
        packets,
        bytes: 0,
        events,
    }
}

#[test]
fn counts_each_source_per_epoch_and_skips_allowed_ones() {
    pin_to_cpu0();
    let mut dp = dataplane();
    let cpus = u64::from(dp.cpus());
    dp.detector().set(levels(80 * cpus, 4096));
    let allow = Rule {
        id: 1,
        target: Target::parse("45.9.9.9").unwrap(),
        list: List::Allow,
        monitor: false,
        expires_ms: None,
    };
    dp.apply(&[allow], &[]).unwrap();
    send(&mut dp, "45.1.2.3", 150);
    send(&mut dp, "45.1.2.4", 30);
    send(&mut dp, "45.1.2.5", 5);
    send(&mut dp, "45.9.9.9", 500);
    send(&mut dp, "2a01:4f8:1:2::1", 60);
    send(&mut dp, "2a01:4f8:1:2::2", 60);
    let e = dp.detector().tick().unwrap();
    // The watch level is an eighth of the threshold: 45.1.2.5 is below it,
    // and the allowed source is never counted.
    assert_eq!(
        counts(&e),
        [
            ("2a01:4f8:1:2::/64".to_string(), 120),
            ("45.1.2.3".to_string(), 150),
            ("45.1.2.4".to_string(), 30),
        ]
    );
    let bytes = e.sources.iter().find(|m| m.packets == 150).unwrap().bytes;
    let frame_len = Spec::new("45.1.2.3".parse().unwrap()).build().len() as u64;
    assert_eq!(bytes, 150 * frame_len);
    // The next epoch counts from zero, in the other half.
    send(&mut dp, "45.1.2.3", 40);
    let e = dp.detector().tick().unwrap();
    assert_eq!(counts(&e), [("45.1.2.3".to_string(), 40)]);
    assert_eq!(e.number + 1, dp.detector().epoch());
    // Off: nothing is counted.
    dp.detector().set(DetectLevels::default());
    send(&mut dp, "45.1.2.3", 200);
    assert!(dp.detector().tick().unwrap().sources.is_empty());
}

#[test]
fn events_past_the_cap_are_counted_as_dropped() {
    pin_to_cpu0();
    let mut dp = dataplane();
    let cpus = dp.cpus();
    // One event an epoch per CPU at each level.
    dp.detector().set(levels(16 * u64::from(cpus), cpus));
    for i in 1..=5 {
        send(&mut dp, &format!("45.2.0.{i}"), 20);
    }
    let e = dp.detector().tick().unwrap();
    assert_eq!(e.sources.len(), 1, "the first source's two events");
    // Each source crossed both levels: 10 crossings, 2 sent.
    assert_eq!(e.events_dropped, 8);
}

#[test]
fn a_source_on_two_cpus_is_reported_once_an_epoch() {
    pin_to_cpu0();
    let mut dp = dataplane();
    let cpus = dp.cpus();
    if cpus < 2 {
        eprintln!("one CPU: nothing to spread a source over");
        return;
    }
    // One event an epoch per CPU at each level, as above.
    dp.detector().set(levels(16 * u64::from(cpus), cpus));
    send(&mut dp, "45.4.0.1", 20);
    // The same source crosses both levels on CPU 1 too, but CPU 0 has
    // reported it: CPU 1 keeps its events for the next source.
    pin_to(1);
    send(&mut dp, "45.4.0.1", 20);
    send(&mut dp, "45.4.0.2", 20);
    let e = dp.detector().tick().unwrap();
    assert_eq!(
        counts(&e),
        [("45.4.0.1".to_string(), 40), ("45.4.0.2".to_string(), 20)],
        "the first source summed over both CPUs, and the second"
    );
    assert_eq!(e.events_dropped, 0);
    // The next epoch reports it again.
    send(&mut dp, "45.4.0.1", 20);
    let e = dp.detector().tick().unwrap();
    assert_eq!(counts(&e), [("45.4.0.1".to_string(), 20)]);
}

#[test]
fn a_spoofed_flood_of_distinct_sources_reaches_no_level() {
    pin_to_cpu0();
    let mut dp = dataplane();
    let cpus = u64::from(dp.cpus());
    dp.detector().set(levels(500 * cpus, 4096));
    let manual = Rule {
        id: 7,
        target: Target::parse("45.3.0.1").unwrap(),
        list: List::Deny,
        monitor: false,
        expires_ms: None,
    };
    dp.apply(&[manual], &[]).unwrap();
    let before = memlock(&mut dp);
    // 200,000 sources, one packet each: the sketch's rows have 32,768
    // cells, so about 6 sources share each, far below the watch level of
    // 62. The root veth test sends a million.
    for i in 0..200_000u32 {
        let src = Ipv4Addr::from(0x2d00_0000 | i);
        let frame = Spec::new(IpAddr::V4(src)).build();
        run(&mut dp, &frame);
    }
    let e = dp.detector().tick().unwrap();
    assert!(
        e.sources.is_empty(),
        "{:?}",
        &e.sources[..e.sources.len().min(5)]
    );
    assert_eq!(e.events_dropped, 0);
    assert_eq!(memlock(&mut dp), before, "fixed memory");
    send(&mut dp, "45.3.0.1", 3);
    assert_eq!(
        run(&mut dp, &Spec::new("45.3.0.1".parse().unwrap()).build()),
        denylist_tests::XDP_DROP,
        "the manual entry still drops"
    );
}
