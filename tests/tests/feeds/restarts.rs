//! Feeds across restarts: a clean restart keeps each feed's state and
//! schedule, and a kill -9 in the middle of a big refresh leaves the
//! kernel equal to the store, with no gap in filtering.

use std::{
    collections::BTreeSet,
    thread,
    time::{Duration, Instant},
};

use denylist_tests::netns::{Flood, assert_no_gap};

use crate::{
    common::{A, B, C, FREE, Sandbox, body, cli, ip, public, set},
    server::Reply,
};

#[test]
fn a_restart_keeps_each_feed_its_state_and_its_schedule() {
    let mut sb = Sandbox::start("restart", &[]);
    sb.server.set("good", Reply::ok(body(&[A, B])));
    sb.server.set("bad", Reply::status(500, "down\n"));
    sb.ok(&[
        "feed",
        "add",
        "good",
        &sb.server.url("good"),
        "--every",
        "1m",
    ]);
    sb.expect(
        1,
        &["feed", "add", "bad", &sb.server.url("bad"), "--every", "1m"],
    );
    // A third feed holds back a 90% shrink of its 120 entries.
    let long: Vec<String> = std::iter::once(C.to_string())
        .chain(public(0, 119))
        .collect();
    sb.server.set("held", Reply::ok(body(&long)));
    sb.ok(&[
        "feed",
        "add",
        "held",
        &sb.server.url("held"),
        "--every",
        "1m",
    ]);
    sb.server.set("held", Reply::ok(body(&long[..12])));
    sb.expect(3, &["feed", "refresh", "held"]);
    let good = sb.feed("good");
    let bad = sb.feed("bad");
    let held = sb.feed("held");
    assert_eq!(bad["state"], "failing", "{bad}");
    assert_eq!(held["state"], "held", "{held}");
    let asked = (
        sb.server.requests("good").len(),
        sb.server.requests("bad").len(),
        sb.server.requests("held").len(),
    );
    let mut kernel = set(&[A, B]);
    kernel.extend(long.iter().cloned());

    sb.restart();
    assert_eq!(sb.feed("good"), good, "the good feed is as it was");
    assert_eq!(sb.feed("bad"), bad, "the failing feed is as it was");
    assert_eq!(sb.feed("held"), held, "the held feed is as it was");
    assert_eq!(sb.kernel(), kernel, "every feed's last good list");
    sb.assert_dropped(A, "after the restart");
    // The schedule ticks every second: a feed the restart made due would
    // be fetched by now. Neither is due for a minute.
    thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        (
            sb.server.requests("good").len(),
            sb.server.requests("bad").len(),
            sb.server.requests("held").len(),
        ),
        asked,
        "no feed is fetched again before its time"
    );
    assert_eq!(sb.feed("good")["last_attempt"], good["last_attempt"]);

    // The held list was kept with the feed: approving it now deploys it.
    sb.ok(&["feed", "approve", "held"]);
    let mut kernel = set(&[A, B]);
    kernel.extend(long[..12].iter().cloned());
    assert_eq!(
        sb.kernel(),
        kernel,
        "the held list, approved after a restart"
    );
    sb.assert_dropped(C, "C is in the approved list");
}

/// The floods of the crash test, stopped even when it fails: a ping left
/// behind would run for ever, holding whatever it inherited.
struct Floods {
    denied: Option<Flood>,
    allowed: Option<Flood>,
}

impl Drop for Floods {
    fn drop(&mut self) {
        for f in [self.denied.take(), self.allowed.take()]
            .into_iter()
            .flatten()
        {
            let _ = f.finish();
        }
    }
}

/// The deployed deny entries, as `export --format plain` writes them:
/// cheaper than `list --json` at 50,000 entries.
#[track_caller]
fn deployed(sb: &Sandbox) -> BTreeSet<String> {
    let r = sb.ok(&["export", "--format", "plain"]);
    r.out
        .lines()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches("/32").to_string())
        .collect()
}

/// A feed of `n` entries: `own` first, then 50,000-odd public addresses
/// from `from`.
fn big_list(own: &[&str], from: u32, n: u32) -> Vec<String> {
    own.iter()
        .map(|s| s.to_string())
        .chain(public(from, n - own.len() as u32))
        .collect()
}

#[test]
fn a_crash_during_a_big_refresh_leaves_kernel_and_store_equal() {
    let n = 50_000;
    // Two lists that share B and three quarters of their entries: each
    // refresh adds and removes about 12,500, a change of half the feed,
    // which the feed's --max-change 100 lets through.
    let lists = [big_list(&[A, B], 0, n), big_list(&[B, C], n / 4, n)];
    let mut sb = Sandbox::start("crash", &["--capacity", "131072"]);
    sb.server.set("big", Reply::ok(body(&lists[0])));
    let url = sb.server.url("big");
    let t = Instant::now();
    sb.ok(&[
        "feed",
        "add",
        "big",
        &url,
        "--every",
        "1h",
        "--max-change",
        "100",
    ]);
    let refresh_ms = t.elapsed().as_millis() as u64;
    assert_eq!(sb.kernel(), set(&lists[0]), "the first list is deployed");

    // B is in both lists: not one of its packets may pass, through the
    // crashes and restarts; FREE is in neither and must keep flowing.
    let mut floods = Floods {
        denied: Some(sb.pair.flood(ip(B), "0.005").expect("flood B")),
        allowed: Some(sb.pair.flood(ip(FREE), "0.02").expect("flood FREE")),
    };
    let mut current = 0;
    // Each round kills at a random point, before or after the commit;
    // DENYLIST_LONG asks for more of them, as in the other crash tests.
    let rounds = if std::env::var_os("DENYLIST_LONG").is_some() {
        10
    } else {
        3
    };
    for round in 1..=rounds {
        let next = 1 - current;
        sb.server.set("big", Reply::ok(body(&lists[next])));
        let served = sb.server.completed();
        let socket = sb.home.socket();
        let refresher = thread::spawn(move || cli(&socket, &["feed", "refresh", "big"]));
        // Once the body is all sent, the daemon parses, checks and deploys
        // it: kill it somewhere in there.
        let deadline = Instant::now() + Duration::from_secs(20);
        while sb.server.completed() == served {
            assert!(
                Instant::now() < deadline,
                "round {round}: the fetch never came"
            );
            thread::sleep(Duration::from_millis(2));
        }
        let kill_at = rand::random_range(0..refresh_ms + 1);
        thread::sleep(Duration::from_millis(kill_at));
        sb.crash_and_restart();
        let answered = refresher.join().expect("the refresh's CLI");

        let kernel = sb.kernel();
        assert_eq!(
            kernel,
            deployed(&sb),
            "round {round} (killed {kill_at} ms in): the kernel equals the store"
        );
        sb.assert_no_drift(&format!("round {round}"));
        let committed = kernel == set(&lists[next]);
        assert!(
            committed || kernel == set(&lists[current]),
            "round {round}: the kernel holds one whole list or the other, not {} entries",
            kernel.len()
        );
        eprintln!(
            "round {round}: killed {kill_at} ms after the body (a whole refresh took {refresh_ms} ms); the refresh {}",
            if committed {
                "had committed"
            } else {
                "had not committed"
            }
        );
        if answered.code == 0 {
            assert!(
                committed,
                "round {round}: an answered refresh was lost: {answered}"
            );
        }
        // The next refresh finishes what the crash cut short.
        let f = sb.ok(&["feed", "refresh", "big", "--json"]).json();
        assert_eq!(f["state"], "ok", "round {round}: {f}");
        assert_eq!(f["entries"], n, "round {round}: {f}");
        assert_eq!(
            sb.kernel(),
            set(&lists[next]),
            "round {round}: the new list"
        );
        assert_eq!(deployed(&sb), set(&lists[next]), "round {round}: the store");
        // A is only in the first list, C only in the second.
        let (gone, came) = if next == 1 { (A, C) } else { (C, A) };
        sb.assert_passes(gone, &format!("round {round}: {gone} left"));
        sb.assert_dropped(came, &format!("round {round}: {came} came"));
        current = next;
    }
    thread::sleep(Duration::from_millis(300));
    assert_no_gap(
        floods.denied.take().expect("the denied flood"),
        floods.allowed.take().expect("the allowed flood"),
    );
    sb.assert_no_drift("at the end");
}
