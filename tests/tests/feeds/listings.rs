//! One address listed by several sources at once: it stays in the kernel
//! while any listing is live, and each way of removing a listing takes
//! only its own.

use serde_json::Value;

use crate::{
    common::{A, B, C, Sandbox, body, public, set, strings, targets},
    server::Reply,
};

/// `check IP --json`: the verdict, and the deciding entry's sources.
#[track_caller]
fn check(sb: &Sandbox, ip: &str) -> (String, Value) {
    let c = sb.json(&["check", ip, "--json"]);
    (
        c["verdict"].as_str().expect("a verdict").to_string(),
        c["sources"].clone(),
    )
}

/// Blocked for the kernel, the packets and `check`, by exactly `sources`.
#[track_caller]
fn assert_blocked_by(sb: &Sandbox, ip: &str, sources: &[&str], when: &str) {
    let (verdict, got) = check(sb, ip);
    assert_eq!(verdict, "drop", "{when}: check says {ip} is dropped");
    assert_eq!(strings(&got), set(sources), "{when}: the sources of {ip}");
    assert!(sb.kernel().contains(ip), "{when}: the kernel holds {ip}");
    sb.assert_dropped(ip, when);
}

#[track_caller]
fn assert_unblocked(sb: &Sandbox, ip: &str, when: &str) {
    let (verdict, sources) = check(sb, ip);
    assert_eq!(verdict, "pass", "{when}: check says {ip} passes");
    assert!(
        sources.is_null() || sources == serde_json::json!([]),
        "{when}: no entry decides {ip}: {sources}"
    );
    assert!(!sb.kernel().contains(ip), "{when}: the kernel lacks {ip}");
    sb.assert_passes(ip, when);
}

/// The entry for `ip` in `list --json`.
#[track_caller]
fn entry(sb: &Sandbox, ip: &str) -> Value {
    let all = sb.json(&["list", "--json"]);
    all.as_array()
        .expect("an array")
        .iter()
        .find(|e| e["target"] == ip)
        .cloned()
        .unwrap_or_else(|| panic!("{ip} is not listed: {all}"))
}

#[test]
fn an_address_stays_blocked_until_its_last_listing_goes() {
    let sb = Sandbox::start("lst", &[]);
    // Two feeds of two kinds (a file and a download) list A and B; an
    // admin and an import tool list A as well.
    let file_url = sb.feed_file("a.txt", &body(&[A, B]));
    sb.server.set("b.txt", Reply::ok(body(&[A, B])));
    sb.ok(&["feed", "add", "a", &file_url, "--every", "1h"]);
    sb.ok(&["feed", "add", "b", &sb.server.url("b.txt"), "--every", "1h"]);
    sb.ok(&["add", A, "--reason", "seen in the logs", "--deploy"]);
    sb.ok(&["add", A, "--source", "import:tool", "--deploy"]);

    let all = ["feed:a", "feed:b", "import:tool", "manual"];
    assert_blocked_by(&sb, A, &all, "four listings");
    assert_blocked_by(&sb, B, &["feed:a", "feed:b"], "two feeds");
    let e = entry(&sb, A);
    assert_eq!(strings(&e["sources"]), set(&all), "{e}");
    let listings = e["listings"].as_array().expect("listings");
    assert_eq!(listings.len(), 4, "one listing per source: {e}");
    let manual = listings
        .iter()
        .find(|l| l["source"] == "manual")
        .expect("the manual listing");
    assert_eq!(
        manual["reason"], "seen in the logs",
        "each keeps its reason"
    );
    let feed_a = listings.iter().find(|l| l["source"] == "feed:a").unwrap();
    assert_eq!(feed_a["added_by"], "feed:a", "{e}");
    assert!(
        e["source"].is_string() && all.contains(&e["source"].as_str().unwrap()),
        "source is one of the listings': {e}"
    );
    assert_eq!(
        targets(&sb.json(&["list", "--source", "feed:a", "--json"])),
        set(&[A, B]),
        "filtered by a listing's source"
    );
    assert_eq!(
        targets(&sb.json(&["list", "--source", "import:tool", "--json"])),
        set(&[A])
    );

    // One feed's listing goes; three remain, and the admin is told so.
    let r = sb.ok(&["remove", A, "--source", "feed:a", "--deploy"]);
    for other in ["feed:b", "manual", "import:tool"] {
        assert!(r.err.contains(other), "the warning names {other}: {r}");
    }
    assert_blocked_by(
        &sb,
        A,
        &["feed:b", "import:tool", "manual"],
        "after remove --source feed:a",
    );

    // A plain remove takes the admin's listings, manual and import, and
    // leaves the feed's.
    let r = sb.ok(&["remove", A, "--deploy"]);
    assert!(r.err.contains("feed:b"), "the warning names feed:b: {r}");
    assert_blocked_by(&sb, A, &["feed:b"], "after a plain remove");

    // The last listing goes, and with it the entry.
    let r = sb.ok(&["remove", A, "--source", "feed:b", "--deploy"]);
    assert!(!r.err.contains("stays"), "nothing is left to warn of: {r}");
    assert_unblocked(&sb, A, "after the last listing went");
    assert_blocked_by(&sb, B, &["feed:a", "feed:b"], "B is untouched");

    // A refresh deploys only the feed's own changes: a manual change
    // staged meanwhile stays staged, out of the kernel.
    sb.ok(&["add", C, "--reason", "staged, not deployed"]);
    let d = public(0, 1)[0].clone();
    sb.server.set("b.txt", Reply::ok(body(&[B, d.as_str()])));
    let before = sb.revision();
    sb.ok(&["feed", "refresh", "b"]);
    let history = sb.json(&["history", "--json"]);
    let newest = history
        .as_array()
        .and_then(|h| h.last())
        .expect("a revision")
        .clone();
    assert_eq!(newest["revision"], before + 1, "one revision: {history}");
    assert_eq!(newest["deployed_by"], "feed:b", "{newest}");
    assert_eq!(
        (&newest["added"], &newest["removed"]),
        (&serde_json::json!(1), &serde_json::json!(0)),
        "just the feed's new address: {newest}"
    );
    let diff = sb.json(&["diff", "--json"]);
    assert_eq!(
        targets(&diff["added"]),
        set(&[C]),
        "the manual add is still staged: {diff}"
    );
    assert!(sb.kernel().contains(&d), "the feed's new address is in");
    assert!(!sb.kernel().contains(C), "the staged address is not");
    sb.assert_passes(C, "a staged entry filters nothing");
    sb.ok(&["discard"]);

    // Ending a subscription takes its listings; the other feed's keep B.
    sb.ok(&["feed", "remove", "a"]);
    assert_blocked_by(&sb, B, &["feed:b"], "after feed remove a");
    sb.ok(&["feed", "remove", "b"]);
    assert_unblocked(&sb, B, "after feed remove b");
    assert_eq!(sb.kernel(), set::<&str>(&[]), "nothing is left");
    sb.assert_no_drift("at the end");
}
