//! The deploy invariant: while a deploy changes the maps, every packet gets
//! either its verdict in the old revision or its verdict in the new one.
//! A second thread runs the live program through BPF_PROG_TEST_RUN in a
//! tight loop on frames from 1,000 sources, against the same maps, while
//! the main thread deploys random changes that add, remove and nest
//! prefixes, toggle monitor mode, and add and remove allow entries; and
//! while it writes a deploy's new addresses ahead of it, as a fleet's
//! follower does, every packet keeps its old verdict.

use std::{
    net::IpAddr,
    os::fd::{AsFd, OwnedFd},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
};

use denylist::model::{self, List, Rule, Target, Verdict, ip_bits, ip_from_bits};
use denylist_tests::{XDP_DROP, XDP_PASS, dataplane, frame::Spec};
use rand::{Rng, SeedableRng, rngs::StdRng};

const SOURCES: usize = 1_000;

/// One run of `frame`, on a program fd, so the runner thread needs no
/// `&mut` of the dataplane the main thread is changing.
fn test_run(prog: &OwnedFd, frame: &[u8]) -> u32 {
    denylist_tests::test_run_fd(prog.as_fd(), frame, 1)
        .expect("BPF_PROG_TEST_RUN")
        .0
}

fn action(rules: &[Rule], ip: IpAddr) -> u32 {
    match model::decide(rules, ip, 0).verdict {
        Verdict::Drop => XDP_DROP,
        _ => XDP_PASS,
    }
}

fn random_rule(rng: &mut StdRng, id: u32, sources: &[IpAddr]) -> Rule {
    let src = sources[rng.random_range(0..sources.len())];
    let v4 = src.is_ipv4();
    let len = if v4 {
        *[20u8, 21, 22, 23, 24, 26, 28, 32]
            .get(rng.random_range(0..8))
            .unwrap()
    } else {
        *[56u8, 62, 63, 64, 100, 116, 120, 128]
            .get(rng.random_range(0..8))
            .unwrap()
    };
    let net = ipnet::IpNet::new(src, len).unwrap().trunc();
    let list = if rng.random_bool(0.2) {
        List::Allow
    } else {
        List::Deny
    };
    Rule {
        id,
        target: Target::from(net),
        list,
        monitor: list == List::Deny && rng.random_bool(0.3),
        expires_ms: None,
    }
}

#[test]
fn every_packet_gets_its_old_or_its_new_verdict_during_a_deploy() {
    let mut dp = dataplane();
    let seed = rand::random::<u64>();
    eprintln!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    // Sources clustered in a few networks, so entries nest and overlap.
    let sources: Vec<IpAddr> = (0..SOURCES)
        .map(|i| {
            if i % 2 == 0 {
                let base = ip_bits("198.51.96.0".parse().unwrap());
                ip_from_bits(true, base | u128::from(rng.random::<u16>() & 0x0fff))
            } else {
                let base = ip_bits("2001:db8::".parse().unwrap());
                ip_from_bits(
                    false,
                    base | (u128::from(rng.random::<u8>() & 3) << 64)
                        | u128::from(rng.random::<u16>() & 0x0fff),
                )
            }
        })
        .collect();
    let frames: Arc<Vec<Vec<u8>>> =
        Arc::new(sources.iter().map(|s| Spec::new(*s).build()).collect());
    let prog = dp
        .program()
        .fd()
        .unwrap()
        .as_fd()
        .try_clone_to_owned()
        .unwrap();

    // The runner records what it saw per source while `deploying` is set.
    let deploying = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<[bool; 2]>>> = Arc::new(Mutex::new(vec![[false; 2]; SOURCES]));
    let runs = Arc::new(AtomicUsize::new(0));
    let runner = {
        let (frames, deploying, stop, seen, runs) = (
            frames.clone(),
            deploying.clone(),
            stop.clone(),
            seen.clone(),
            runs.clone(),
        );
        thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let got = test_run(&prog, &frames[i]);
                assert!(got == XDP_DROP || got == XDP_PASS, "action {got}");
                if deploying.load(Ordering::Acquire) {
                    seen.lock().unwrap()[i][usize::from(got == XDP_DROP)] = true;
                    runs.fetch_add(1, Ordering::Relaxed);
                }
                i = (i + 1) % frames.len();
            }
        })
    };

    let deploys = if std::env::var_os("DENYLIST_LONG").is_some() {
        100
    } else {
        20
    };
    let mut rules: Vec<Rule> = Vec::new();
    let mut next_id = 1;
    let mut violations = Vec::new();
    let mut written_ahead = 0;
    for round in 0..deploys {
        let old: Vec<u32> = sources.iter().map(|s| action(&rules, *s)).collect();
        let mut removals = Vec::new();
        rules.retain(|r| {
            let keep = rng.random_bool(0.75);
            if !keep {
                removals.push((r.target, r.list));
            }
            keep
        });
        let mut upserts = Vec::new();
        for r in rules.iter_mut() {
            if r.list == List::Deny && rng.random_bool(0.15) {
                r.monitor = !r.monitor;
                upserts.push(*r);
            }
        }
        for _ in 0..rng.random_range(100..400) {
            let r = random_rule(&mut rng, next_id, &sources);
            next_id += 1;
            let key = (r.target, r.list);
            if removals.contains(&key) || rules.iter().any(|x| (x.target, x.list) == key) {
                continue;
            }
            upserts.push(r);
            rules.push(r);
        }
        let new: Vec<u32> = sources.iter().map(|s| action(&rules, *s)).collect();
        // Every other round, as a fleet's follower does, the new exact
        // addresses are written ahead first, which changes no verdict; every
        // fourth, what is written ahead is not quite what comes (one entry's
        // mode differs, one is never deployed), and the apply must drop it.
        let ahead = round % 2 == 1;
        if ahead {
            let mut staged = upserts.clone();
            if round % 4 == 3 {
                if let Some(r) = staged
                    .iter_mut()
                    .find(|r| r.target.is_exact() && r.list == List::Deny)
                {
                    r.monitor = !r.monitor;
                }
                let stray = sources
                    .iter()
                    .map(|s| Target::host(*s))
                    .find(|t| rules.iter().chain(&staged).all(|r| r.target != *t))
                    .expect("a source no entry names");
                staged.push(Rule {
                    id: next_id,
                    target: stray,
                    list: List::Deny,
                    monitor: false,
                    expires_ms: None,
                });
                next_id += 1;
            }
            *seen.lock().unwrap() = vec![[false; 2]; SOURCES];
            deploying.store(true, Ordering::Release);
            let written = dp.stage(&staged, &removals).unwrap();
            deploying.store(false, Ordering::Release);
            written_ahead += written;
            // Written ahead is not live: every source keeps its old verdict.
            for (i, f) in frames.iter().enumerate() {
                let got = denylist_tests::run(&mut dp, f);
                assert_eq!(got, old[i], "round {round}: {} written ahead", sources[i]);
            }
            for (i, saw) in seen.lock().unwrap().iter().enumerate() {
                for (action, was_seen) in [(XDP_PASS, saw[0]), (XDP_DROP, saw[1])] {
                    if was_seen && action != old[i] {
                        violations.push(format!(
                            "round {round}: {} got {action} while written ahead, old {}",
                            sources[i], old[i]
                        ));
                    }
                }
            }
        }
        *seen.lock().unwrap() = vec![[false; 2]; SOURCES];
        deploying.store(true, Ordering::Release);
        dp.apply(&upserts, &removals).unwrap();
        deploying.store(false, Ordering::Release);
        for (i, saw) in seen.lock().unwrap().iter().enumerate() {
            for (action, was_seen) in [(XDP_PASS, saw[0]), (XDP_DROP, saw[1])] {
                if was_seen && action != old[i] && action != new[i] {
                    violations.push(format!(
                        "round {round}: {} got {action}, old {} new {}",
                        sources[i], old[i], new[i]
                    ));
                }
            }
        }
        // After the deploy, every source has exactly its new verdict.
        if round % 5 == 0 || ahead {
            for (i, f) in frames.iter().enumerate() {
                let got = denylist_tests::run(&mut dp, f);
                assert_eq!(
                    got, new[i],
                    "round {round}: {} after the deploy",
                    sources[i]
                );
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    runner.join().unwrap();
    let runs = runs.load(Ordering::Relaxed);
    eprintln!("{runs} packets ran during {deploys} deploys; {written_ahead} entries written ahead");
    assert!(runs > 0, "the runner ran during deploys");
    assert!(written_ahead > 0, "some deploys had entries written ahead");
    assert!(
        violations.is_empty(),
        "{} violations:\n{}",
        violations.len(),
        violations.join("\n")
    );
}

/// A targeted case of the invariant, where a wrong order would show at
/// once: a wide enforcing deny arrives and leaves together with narrower
/// monitor entries and an allow entry inside it. The probed source passes
/// before, after, and (if the order is right) at every moment between.
#[test]
fn a_wide_deny_never_overtakes_the_entries_inside_it() {
    let mut dp = dataplane();
    let prog = dp
        .program()
        .fd()
        .unwrap()
        .as_fd()
        .try_clone_to_owned()
        .unwrap();
    let probes: Vec<Vec<u8>> = ["198.51.100.7", "198.51.101.9", "2001:db8:0:1::9"]
        .iter()
        .map(|s| Spec::new(s.parse().unwrap()).build())
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let drops = Arc::new(AtomicUsize::new(0));
    let runs = Arc::new(AtomicUsize::new(0));
    let runner = {
        let (stop, drops, runs) = (stop.clone(), drops.clone(), runs.clone());
        thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                if test_run(&prog, &probes[i % probes.len()]) == XDP_DROP {
                    drops.fetch_add(1, Ordering::Relaxed);
                }
                runs.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        })
    };
    let rule = |t: &str, list: List, monitor: bool, id: u32| Rule {
        id,
        target: Target::parse(t).unwrap(),
        list,
        monitor,
        expires_ms: None,
    };
    let mut rules = vec![
        rule("198.51.0.0/16", List::Deny, false, 1),
        rule("198.51.100.7", List::Allow, false, 2),
        rule("2001:db8::/32", List::Deny, false, 3),
        rule("2001:db8:0:1::/64", List::Deny, true, 4),
    ];
    for i in 0..50u32 {
        rules.push(rule(
            &format!("198.51.{}.0/24", 80 + i),
            List::Deny,
            true,
            10 + i,
        ));
    }
    let keys: Vec<_> = rules.iter().map(|r| (r.target, r.list)).collect();
    let cycles = if std::env::var_os("DENYLIST_LONG").is_some() {
        1_000
    } else {
        200
    };
    for _ in 0..cycles {
        dp.apply(&rules, &[]).unwrap();
        dp.apply(&[], &keys).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    runner.join().unwrap();
    assert!(runs.load(Ordering::Relaxed) > 10_000, "the runner kept up");
    assert_eq!(
        drops.load(Ordering::Relaxed),
        0,
        "a probe was dropped mid-deploy"
    );
}
