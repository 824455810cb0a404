//! Restarts and crashes, also in the middle of a big deploy: no denied
//! packet gets through, and kernel and store stay equal.

use std::{
    collections::BTreeSet,
    thread,
    time::{Duration, Instant},
};

use denylist::wire::{DeployRequest, DeployResponse};
use denylist_tests::{
    daemon::{Daemon, Home, kernel_exact_v4},
    netns::assert_no_gap,
    require_root,
};

use crate::common::{A, FREE, add, deploy, ip, long, sandbox, status};

#[test]
fn restarts_and_crashes_never_let_a_denied_packet_through() {
    let sb = sandbox("rst");
    let mut d = sb.start(&[]);
    add(&sb.client(), &[A], true);
    let denied = sb.pair.flood(ip(A), "0.005").unwrap();
    let allowed = sb.pair.flood(ip(FREE), "0.02").unwrap();
    let rounds = if long() { 10 } else { 3 };
    for i in 0..rounds {
        assert!(d.stop().success(), "SIGTERM {i}");
        thread::sleep(Duration::from_millis(100));
        d = sb.start(&[]);
    }
    for _ in 0..rounds {
        d.kill();
        thread::sleep(Duration::from_millis(100));
        d = sb.start(&[]);
    }
    thread::sleep(Duration::from_millis(300));
    assert_no_gap(denied, allowed);
    let st = status(&sb.client());
    assert_eq!(st.revision, 1);
    assert!(!st.degraded);
    assert_eq!(
        std::fs::read_dir(&sb.home.bpffs)
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("gen-"))
            .count(),
        1,
        "old generations are unpinned"
    );
    drop(d);
}

/// The store file itself: the deployed exact deny entries, the pending
/// adds and removes, and the revision.
struct StoreFile {
    deployed: BTreeSet<String>,
    adds: BTreeSet<String>,
    removes: BTreeSet<String>,
    revision: u64,
}

fn store_file(home: &Home) -> StoreFile {
    let db = rusqlite::Connection::open_with_flags(
        home.state().join("denylist.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let targets = |sql: &str| -> BTreeSet<String> {
        let mut stmt = db.prepare(sql).unwrap();
        stmt.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    let deployed = targets("SELECT target FROM entries WHERE list = 'deny'");
    let adds = targets("SELECT target FROM pending WHERE op = 'add'");
    let removes = targets("SELECT target FROM pending WHERE op = 'remove'");
    let other: i64 = db
        .query_row(
            "SELECT count(*) FROM pending WHERE op NOT IN ('add', 'remove')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(other, 0, "a replace stages only adds and removes");
    let revision: i64 = db
        .query_row("SELECT value FROM meta WHERE key = 'revision'", [], |r| {
            r.get(0)
        })
        .unwrap();
    StoreFile {
        deployed,
        adds,
        removes,
        revision: revision as u64,
    }
}

/// `n` addresses of their own for each round, staged with `import
/// --replace`: the draft becomes exactly these.
fn stage_round(home: &Home, round: u32, n: u32) -> BTreeSet<String> {
    let base = 0x0A00_0000u32 + (round << 19); // 10.0.0.0 + round * 2^19
    let addrs: Vec<String> = (0..n)
        .map(|i| std::net::Ipv4Addr::from(base + 2 * i + 1).to_string())
        .collect();
    let body: String = addrs.iter().map(|a| format!("{a}\n")).collect();
    let reply = home
        .client()
        .request(
            "POST",
            "/v1/import?format=plain&source=crash&replace=true&force=true",
            Some(body.as_bytes()),
            "text/plain",
        )
        .unwrap();
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    addrs.into_iter().collect()
}

#[test]
fn a_crash_during_a_big_deploy_leaves_kernel_and_store_equal() {
    require_root();
    let home = Home::new("crash");
    let (n, crashes) = if long() { (200_000, 20) } else { (50_000, 2) };
    // The capacity is the list's size: a deploy that replaces the whole
    // list must fit as well.
    let capacity = n.to_string();
    let args = ["--capacity", capacity.as_str()];
    let mut d = Daemon::start(&home, None, &args);
    let mut want = stage_round(&home, 0, n);
    // An uncrashed deploy first: how long one takes bounds the kill times.
    let t = Instant::now();
    deploy(&home.client(), None);
    let mut deploy_ms = t.elapsed().as_millis() as u64;
    let mut deployed = want.clone();
    let mut killed_during = 0;
    for round in 1..=crashes {
        let t = Instant::now();
        want = stage_round(&home, round, n);
        let stage_ms = t.elapsed().as_millis();
        let client = home.client();
        let deployer = thread::spawn(move || {
            client.post::<_, DeployResponse>("/v1/deploy", &DeployRequest::default())
        });
        let kill_at = rand::random_range(0..deploy_ms * 11 / 10 + 1);
        thread::sleep(Duration::from_millis(kill_at));
        d.kill();
        let finished = deployer.join().unwrap().is_ok();
        let t = Instant::now();
        d = Daemon::start(&home, None, &args);
        let restart_ms = t.elapsed().as_millis();
        let kernel = kernel_exact_v4(&home);
        let s = store_file(&home);
        assert_eq!(
            kernel, s.deployed,
            "round {round}: the kernel maps equal the deployed revision"
        );
        let committed = s.deployed == want;
        if committed {
            assert!(
                s.adds.is_empty() && s.removes.is_empty(),
                "round {round}: the deploy committed and left nothing pending"
            );
        } else {
            assert!(!finished, "round {round}: an answered deploy was lost");
            assert_eq!(
                s.deployed, deployed,
                "round {round}: an uncommitted deploy left the last revision"
            );
            assert_eq!(
                (&s.adds, &s.removes),
                (&want, &deployed),
                "round {round}: the draft is intact"
            );
            killed_during += 1;
        }
        let st = status(&home.client());
        assert_eq!(
            (
                st.capacity.used as usize,
                st.revision,
                st.pending_changes as usize
            ),
            (s.deployed.len(), s.revision, s.adds.len() + s.removes.len()),
            "round {round}: status tells the truth"
        );
        assert!(!st.degraded, "round {round}: {st:?}");
        if !committed {
            let t = Instant::now();
            let r = deploy(&home.client(), None);
            deploy_ms = t.elapsed().as_millis() as u64;
            assert_eq!(
                (r.counts.added, r.counts.removed),
                (u64::from(n), u64::from(n)),
                "round {round}: the staged replace deploys whole after the restart"
            );
            assert_eq!(kernel_exact_v4(&home), want, "round {round}");
        }
        deployed = want.clone();
        eprintln!(
            "round {round}: staged {n} in {stage_ms} ms, killed at {kill_at} ms ({}), restarted in {restart_ms} ms, deploy {deploy_ms} ms",
            if committed {
                "after the commit"
            } else {
                "before the commit"
            }
        );
    }
    eprintln!("{killed_during} of {crashes} kills landed before the commit");
    drop(d);
}
