//! Lists that arrive but look wrong are held: the last good list stays
//! deployed until an admin approves the new one. A feed under review
//! stages every change for an admin instead of deploying it.

use serde_json::Value;

use crate::{
    common::{A, B, C, Sandbox, body, public, set, targets},
    server::Reply,
};

/// One refresh that must be held: exit 3, state `held`, the reason in
/// `held` and `last_error`, and nothing changed in the kernel.
#[track_caller]
fn assert_held(
    sb: &Sandbox,
    what: &str,
    says: &str,
    kernel: &std::collections::BTreeSet<String>,
) -> Value {
    let revision = sb.revision();
    let r = sb.expect(3, &["feed", "refresh", "f", "--json"]);
    let f = r.json();
    assert_eq!(f["state"], "held", "{what}: {f}");
    let reason = f["held"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(says),
        "{what}: the reason says {says:?}: {f}"
    );
    assert_eq!(
        f["last_error"].as_str(),
        Some(format!("held: {reason}").as_str()),
        "{what}: {f}"
    );
    assert!(
        r.err.contains("feed approve f"),
        "{what}: says how to approve: {r}"
    );
    assert_eq!(&sb.kernel(), kernel, "{what}: the kernel is unchanged");
    assert_eq!(sb.revision(), revision, "{what}: no revision");
    f
}

/// The good list again: the feed is back to `ok`, with nothing deployed.
#[track_caller]
fn recover(sb: &Sandbox, good: &[u8], what: &str) {
    let revision = sb.revision();
    sb.server.set("list", Reply::ok(good.to_vec()));
    let f = sb.json(&["feed", "refresh", "f", "--json"]);
    assert_eq!(f["state"], "ok", "after {what}: {f}");
    assert!(f["held"].is_null() && f["last_error"].is_null(), "{f}");
    assert_eq!(sb.revision(), revision, "after {what}: the same list");
}

#[test]
fn suspicious_lists_are_held_until_approved() {
    let sb = Sandbox::start("held", &[]);
    // 120 entries: past the 100 below which any change is allowed.
    let good: Vec<String> = [A, B]
        .iter()
        .map(|s| s.to_string())
        .chain(public(0, 118))
        .collect();
    let good_body = body(&good);
    sb.server.set("list", Reply::ok(good_body.clone()));
    let url = sb.server.url("list");
    sb.ok(&[
        "feed",
        "add",
        "f",
        &url,
        "--every",
        "1h",
        "--max-entries",
        "150",
    ]);
    let kernel = set(&good);
    assert_eq!(sb.kernel(), kernel, "the good list is deployed");

    let mut invalid = good_body.clone();
    for i in 0..7 {
        invalid.extend_from_slice(format!("not-an-address-{i}\n").as_bytes());
    }
    let longer: Vec<String> = good.iter().cloned().chain(public(1000, 40)).collect();
    let cases = [
        (
            "an HTML error page",
            b"<!DOCTYPE html>\n<html><head><title>503</title></head><body>Service Unavailable</body></html>\n"
                .to_vec(),
            "HTML",
        ),
        ("an empty body", Vec::new(), "empty"),
        ("7 bad lines in 127 (5%)", invalid, "are not addresses"),
        ("160 entries", body(&longer), "--max-entries 150"),
    ];
    for (i, (what, served, says)) in cases.into_iter().enumerate() {
        sb.server.set("list", Reply::ok(served));
        assert_held(&sb, what, says, &kernel);
        sb.assert_dropped(if i % 2 == 0 { A } else { B }, what);
        recover(&sb, &good_body, what);
    }

    // One bad line in 121 is under 1%: the list goes in without it.
    let mut one_bad = body(&good[1..]);
    one_bad.extend_from_slice(b"not-an-address\n");
    sb.server.set("list", Reply::ok(one_bad));
    let f = sb.json(&["feed", "refresh", "f", "--json"]);
    assert_eq!(
        (&f["state"], &f["entries"]),
        (&"ok".into(), &119.into()),
        "{f}"
    );
    assert_eq!(sb.kernel(), set(&good[1..]), "deployed without A");
    sb.server.set("list", Reply::ok(good_body.clone()));
    sb.ok(&["feed", "refresh", "f"]);
    assert_eq!(sb.kernel(), kernel, "A is back");

    // A 90% shrink is held with what it would do, and deployed only once
    // an admin approves it.
    let shrunk: Vec<String> = std::iter::once(A.to_string())
        .chain(public(0, 11))
        .collect();
    sb.server.set("list", Reply::ok(body(&shrunk)));
    let f = assert_held(&sb, "a 90% shrink", "--max-change 50%", &kernel);
    assert_eq!(
        (&f["held"]["added"], &f["held"]["removed"]),
        (&0.into(), &108.into()),
        "{f}"
    );
    assert_eq!(f["entries"], 120, "the feed still counts its good list");
    sb.assert_dropped(B, "while the shrink is held");
    let before = sb.revision();
    let f = sb.json(&["feed", "approve", "f", "--json"]);
    assert_eq!(f["state"], "ok", "{f}");
    assert!(f["held"].is_null(), "{f}");
    assert_eq!(f["entries"], 12, "{f}");
    assert_eq!(sb.kernel(), set(&shrunk), "the approved list is deployed");
    assert_eq!(sb.revision(), before + 1, "as one revision");
    let history = sb.json(&["history", "--json"]);
    let newest = history
        .as_array()
        .and_then(|h| h.last())
        .expect("a revision");
    assert_eq!(newest["deployed_by"], "feed:f", "{newest}");
    assert_eq!(newest["removed"], 108, "{newest}");
    sb.assert_passes(B, "after the shrink was approved");
    sb.assert_dropped(A, "A is in the shrunk list");
    let r = sb.dl(&["feed", "approve", "f"]);
    assert_ne!(r.code, 0, "nothing is held any more: {r}");
    assert_eq!(
        sb.revision(),
        before + 1,
        "a second approve changes nothing"
    );
    sb.assert_no_drift("after the approval");
}

#[test]
fn a_feed_under_review_stages_its_changes_for_an_admin() {
    let sb = Sandbox::start("review", &[]);
    let first = [A, B];
    sb.server.set("list", Reply::ok(body(&first)));
    let url = sb.server.url("list");
    let f = sb
        .ok(&[
            "feed", "add", "f", &url, "--every", "1h", "--review", "--json",
        ])
        .json();
    assert_eq!(f["state"], "review", "{f}");
    assert_eq!(f["review"], true, "{f}");
    let diff = sb.json(&["diff", "--json"]);
    assert_eq!(targets(&diff["added"]), set(&first), "staged: {diff}");
    assert!(
        diff["added"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["source"] == "feed:f"),
        "staged as the feed's listings: {diff}"
    );
    assert!(sb.kernel().is_empty(), "nothing deployed");
    assert_eq!(sb.revision(), 0, "no revision");
    sb.assert_passes(A, "a list under review filters nothing");

    // The admin deploys what was staged, and the feed is ok.
    sb.ok(&["deploy", "--message", "reviewed feed f"]);
    assert_eq!(sb.kernel(), set(&first));
    assert_eq!(sb.feed("f")["state"], "ok");
    sb.assert_dropped(A, "after the admin's deploy");

    // The next change waits for review as well: C comes, A goes.
    let second = [B, C];
    sb.server.set("list", Reply::ok(body(&second)));
    let f = sb.ok(&["feed", "refresh", "f", "--json"]).json();
    assert_eq!(f["state"], "review", "{f}");
    let diff = sb.json(&["diff", "--json"]);
    assert_eq!(targets(&diff["added"]), set(&[C]), "{diff}");
    assert_eq!(targets(&diff["removed"]), set(&[A]), "{diff}");
    assert_eq!(
        sb.kernel(),
        set(&first),
        "the kernel keeps the reviewed list"
    );
    sb.assert_dropped(A, "the removal is only staged");
    sb.assert_passes(C, "the addition is only staged");
    sb.ok(&["deploy"]);
    assert_eq!(sb.kernel(), set(&second));
    assert_eq!(sb.feed("f")["state"], "ok");
    sb.assert_no_drift("after the review");
}
