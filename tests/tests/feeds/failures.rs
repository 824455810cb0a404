//! Fetches that fail: whatever goes wrong between the daemon and the
//! feed's server, nothing changes in the kernel, and the feed's state
//! says what happened.

use std::time::{Duration, Instant};

use crate::{
    common::{A, B, C, Sandbox, body, gzip, public, set},
    server::{Reply, Server},
};

/// 32 MiB, the fetcher's cap, as its error message spells it.
const CAP: &str = "larger than the limit of 33554432 bytes";

/// One refresh that must fail: exit 1, state `failing` with `says` in
/// `last_error`, and the kernel, the revision and the traffic exactly as
/// before.
#[track_caller]
fn assert_fails(sb: &Sandbox, feed: &str, what: &str, says: &str, kept: &Kept) {
    let t = Instant::now();
    let r = sb.expect(1, &["feed", "refresh", feed, "--json"]);
    // The whole fetch has one deadline (--feed-timeout 2s): whatever the
    // server does, a refresh is not held up much longer.
    let took = t.elapsed();
    assert!(took < Duration::from_secs(5), "{what}: took {took:?}");
    let f = r.json();
    assert_eq!(f["state"], "failing", "{what}: {f}");
    let error = f["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains(says),
        "{what}: last_error says {says:?}: {f}"
    );
    assert!(
        r.err.contains("last good list stays deployed"),
        "{what}: the CLI says nothing changed: {r}"
    );
    assert_eq!(
        f["entries"], kept.entries,
        "{what}: the feed still counts its good list"
    );
    assert_eq!(sb.kernel(), kept.kernel, "{what}: the kernel is unchanged");
    assert_eq!(sb.revision(), kept.revision, "{what}: no revision");
    sb.assert_dropped(kept.probe, what);
}

/// What a failed refresh must leave as it was.
struct Kept {
    kernel: std::collections::BTreeSet<String>,
    revision: u64,
    entries: u64,
    probe: &'static str,
}

#[test]
fn failed_fetches_leave_the_last_good_list_deployed() {
    let sb = Sandbox::start("fail", &[]);
    let good: Vec<String> = [A, B]
        .iter()
        .map(|s| s.to_string())
        .chain(public(0, 118))
        .collect();
    let good_body = body(&good);
    sb.server.set("list", Reply::ok(good_body.clone()));
    let url = sb.server.url("list");
    sb.ok(&["feed", "add", "f", &url, "--every", "1h"]);
    assert_eq!(sb.kernel(), set(&good), "the good list is deployed");
    let mut kept = Kept {
        kernel: set(&good),
        revision: sb.revision(),
        entries: good.len() as u64,
        probe: A,
    };
    sb.assert_dropped(A, "the good list");

    let port = sb.server.port();
    sb.server.set("loop", Reply::redirect(302, "/loop"));
    // Half the list, sent as if it were all of it: taken for the list, it
    // would pass every check (it removes just 50%).
    let half = good_body.len() / 2;
    let cases = [
        (
            "HTTP 500",
            Reply::status(500, "internal error\n"),
            "HTTP 500",
        ),
        ("HTTP 404", Reply::status(404, "not found\n"), "HTTP 404"),
        ("a server that never answers", Reply::Hang, "within 2s"),
        (
            "a body cut short",
            Reply::Truncated {
                declared: good_body.len(),
                body: good_body[..half].to_vec(),
            },
            "closed after",
        ),
        (
            "a redirect to TLS on a port that does not speak it",
            Reply::redirect(302, &format!("https://127.0.0.1:{port}/list")),
            "TLS",
        ),
        (
            "a redirect loop",
            Reply::redirect(302, "/loop"),
            "redirected more than 5 times",
        ),
        (
            "a 100 MB body, chunked",
            Reply::Stream {
                total: 100 << 20,
                line: format!("{A}\n").into_bytes(),
                declared: false,
            },
            CAP,
        ),
        (
            "a 100 MB body with its Content-Length",
            Reply::Stream {
                total: 100 << 20,
                line: format!("{B}\n").into_bytes(),
                declared: true,
            },
            CAP,
        ),
        (
            "a gzip body of 40 MiB unpacked",
            Reply::ok(gzip(format!("{B}\n").as_bytes(), 40 << 20))
                .header("Content-Encoding", "gzip"),
            CAP,
        ),
    ];
    for (i, (what, reply, says)) in cases.into_iter().enumerate() {
        let streamed = matches!(reply, Reply::Stream { .. });
        let sent_before = sb.server.body_bytes();
        sb.server.set("list", reply);
        kept.probe = if i % 2 == 0 { A } else { B };
        assert_fails(&sb, "f", what, says, &kept);
        if streamed {
            let sent = sb.server.body_bytes() - sent_before;
            assert!(
                sent < 64 << 20,
                "the daemon stopped reading soon after the cap, not at the end ({sent} bytes sent)"
            );
        }
    }
    assert!(
        !sb.server.requests("<tls>").is_empty(),
        "the TLS redirect was followed to a handshake"
    );

    // A refused connection: a server that was there and is gone.
    let gone = Server::start(&sb.pair.receiver);
    gone.set("c", Reply::ok(body(&[C])));
    sb.ok(&["feed", "add", "g", &gone.url("c"), "--every", "1h"]);
    drop(gone);
    kept.kernel = sb.kernel();
    assert!(kept.kernel.contains(C), "g's list is deployed");
    kept.revision = sb.revision();
    kept.entries = 1;
    kept.probe = C;
    assert_fails(
        &sb,
        "g",
        "a refused connection",
        "refused the connection",
        &kept,
    );

    // Each failure was counted, and the next good fetch clears the state.
    let f = sb.feed("f");
    assert_eq!(f["failures_total"], 9, "one per fault: {f}");
    sb.server.set("list", Reply::ok(good_body));
    let f = sb.json(&["feed", "refresh", "f", "--json"]);
    assert_eq!(f["state"], "ok", "{f}");
    assert!(f["last_error"].is_null(), "{f}");
    assert_eq!(sb.revision(), kept.revision, "the same list: no revision");
    sb.assert_no_drift("after the failures");
}
