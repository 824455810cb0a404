//! Fetches that succeed in the less plain ways: a conditional request
//! answered 304, a gzip body, a redirect, and lines the guardrails keep
//! out of the kernel.

use crate::{
    common::{A, B, C, Sandbox, body, gzip, public, set},
    server::Reply,
};

const LAST_MODIFIED: &str = "Wed, 01 Apr 2026 10:00:00 GMT";

#[test]
fn conditional_gzip_and_redirected_fetches_deploy_what_they_should() {
    let sb = Sandbox::start("fetch", &[]);

    // The validators of a good fetch go with the next request; a 304 is
    // a success that changes nothing.
    let v1 = [A];
    sb.server.set(
        "etag",
        Reply::Full {
            status: 200,
            headers: vec![("Last-Modified".into(), LAST_MODIFIED.into())],
            body: body(&v1).into(),
            etag: Some("\"v1\"".into()),
        },
    );
    let url = sb.server.url("etag");
    let f = sb
        .ok(&["feed", "add", "e", &url, "--every", "1h", "--json"])
        .json();
    assert_eq!(f["state"], "ok", "{f}");
    let first_success = f["last_success"].clone();
    let revision = sb.revision();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let f = sb.ok(&["feed", "refresh", "e", "--json"]).json();
    let asked = sb.server.requests("etag");
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!(asked[0].header("if-none-match"), None, "{asked:?}");
    assert_eq!(
        asked[1].header("if-none-match"),
        Some("\"v1\""),
        "{asked:?}"
    );
    assert_eq!(
        asked[1].header("if-modified-since"),
        Some(LAST_MODIFIED),
        "{asked:?}"
    );
    assert_eq!(f["state"], "ok", "a 304 is a success: {f}");
    assert_ne!(f["last_success"], first_success, "and counts as one: {f}");
    assert_eq!(f["entries"], 1, "{f}");
    assert_eq!(sb.revision(), revision, "a 304 deploys nothing");
    assert_eq!(sb.kernel(), set(&v1));
    // A new version (another ETag) is fetched in full and deployed.
    let v2 = [A, B];
    sb.server.set(
        "etag",
        Reply::Full {
            status: 200,
            headers: Vec::new(),
            body: body(&v2).into(),
            etag: Some("\"v2\"".into()),
        },
    );
    sb.ok(&["feed", "refresh", "e"]);
    assert_eq!(sb.kernel(), set(&v2), "the new version is deployed");
    assert_eq!(sb.revision(), revision + 1);

    // A gzip body is unpacked and deployed.
    let packed: Vec<String> = public(0, 200);
    let plain = body(&packed);
    sb.server.set(
        "gz",
        Reply::ok(gzip(&plain, plain.len())).header("Content-Encoding", "gzip"),
    );
    sb.ok(&["feed", "add", "z", &sb.server.url("gz"), "--every", "1h"]);
    let asked = sb.server.requests("gz");
    assert!(
        asked[0]
            .header("accept-encoding")
            .is_some_and(|e| e.contains("gzip")),
        "the fetcher asks for gzip: {asked:?}"
    );
    assert_eq!(sb.feed("z")["entries"], 200);
    let kernel = sb.kernel();
    assert!(
        packed.iter().all(|t| kernel.contains(t)),
        "every unpacked address is in the kernel"
    );

    // A redirect within http is followed.
    sb.server.set("old", Reply::redirect(301, "/new"));
    sb.server.set("new", Reply::ok(body(&[C])));
    sb.ok(&["feed", "add", "r", &sb.server.url("old"), "--every", "1h"]);
    assert_eq!(
        sb.server.requests("new").len(),
        1,
        "the redirect was followed"
    );
    assert!(sb.kernel().contains(C));
    sb.assert_dropped(C, "listed behind a redirect");
    sb.assert_dropped(B, "listed by a version after a 304");
    sb.assert_no_drift("after the fetches");
}

#[test]
fn guarded_lines_are_skipped_and_counted() {
    let sb = Sandbox::start("guard", &[]);
    let good = [A, B];
    // Private, loopback, link-local, wider than /16, and the daemon's own
    // address on the veth: none may be blocked by a feed, and none is the
    // feed's error either.
    let own = sb.pair.receiver_v4.to_string();
    let guarded = [
        "10.0.0.0/8",
        "127.0.0.1",
        "169.254.169.254",
        "44.0.0.0/15",
        own.as_str(),
    ];
    let mut lines: Vec<&str> = good.to_vec();
    lines.extend(guarded);
    sb.server.set("list", Reply::ok(body(&lines)));
    let f = sb
        .ok(&[
            "feed",
            "add",
            "g",
            &sb.server.url("list"),
            "--every",
            "1h",
            "--json",
        ])
        .json();
    assert_eq!(f["state"], "ok", "{f}");
    assert_eq!(f["entries"], good.len(), "{f}");
    assert_eq!(f["guarded_skipped"], guarded.len(), "{f}");
    assert!(f["last_error"].is_null(), "{f}");
    assert_eq!(sb.kernel(), set(&good), "only the good lines are in");
    let listed = sb.listed();
    assert_eq!(listed, set(&good), "nor in the store: {listed:?}");
    sb.assert_dropped(A, "a good line");
    sb.assert_passes(C, "an unlisted address");
}
