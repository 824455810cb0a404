//! The Feeds and Reports pages with real autoblock data behind them: a
//! healthy feed, a feed whose latest list is held, and an address listed
//! from reports. The screenshots use the same setup, so the pictures in
//! the docs show these pages with something on them.

use std::path::Path;

use denylist_tests::{
    daemon::TempDir,
    web::{ADMIN, Stack, WebOpts},
};
use serde_json::Value;

use crate::{save_and_deploy, signed_in};

/// The feed whose latest list is held, and what that list adds. Feeds
/// and reports list IPv6 documentation addresses, which sort after the
/// IPv4 entries the screenshot of the Denylist page is about.
pub(crate) const HELD: &str = "scanners";
const HELD_ADDS: [&str; 3] = ["2001:db8:5ca::24", "2001:db8:5ca::25", "2001:db8:5ca::26"];
/// The address reports list.
pub(crate) const REPORTED: &str = "2001:db8:ab::25";

/// A feed directory for the daemon, and the flag that names it: file://
/// feeds must live under `--feed-dir`.
pub(crate) fn feed_dir(tag: &str) -> (TempDir, String) {
    let dir = TempDir::new(tag);
    let flag = format!("--feed-dir={}", dir.path().display());
    (dir, flag)
}

/// Writes `targets` as a plain list into `dir/name.txt`; its file:// URL.
fn list(dir: &Path, name: &str, targets: &[&str]) -> String {
    let path = dir.join(format!("{name}.txt"));
    let body: String = targets.iter().map(|t| format!("{t}\n")).collect();
    std::fs::write(&path, body).expect("write a feed list");
    format!("file://{}", path.display())
}

/// The feed as `feed list --json` shows it.
#[track_caller]
pub(crate) fn feed(s: &Stack, name: &str) -> Value {
    let all = s.cli_json(0, &["feed", "list"]);
    all.as_array()
        .and_then(|a| a.iter().find(|f| f["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no feed {name} in {all}"))
}

/// Subscribes the daemon to two feeds from `dir`: `botnet-c2`, healthy
/// with four entries, and [`HELD`], whose second list grows past its
/// `--max-entries` and so is held until an admin approves it.
pub(crate) fn subscribe(s: &Stack, dir: &Path) {
    let url = list(
        dir,
        "botnet-c2",
        &[
            "2001:db8:c2::10",
            "2001:db8:c2::11",
            "2001:db8:c2::12",
            "2001:db8:c2:1::/64",
        ],
    );
    s.cli(0, &["feed", "add", "botnet-c2", &url, "--every", "1h"]);
    let first = [
        "2001:db8:5ca::20",
        "2001:db8:5ca::21",
        "2001:db8:5ca::22",
        "2001:db8:5ca::23",
    ];
    let url = list(dir, HELD, &first);
    s.cli(
        0,
        &[
            "feed",
            "add",
            HELD,
            &url,
            "--every",
            "1h",
            "--max-entries",
            "5",
        ],
    );
    let grown: Vec<&str> = first.iter().chain(&HELD_ADDS).copied().collect();
    list(dir, HELD, &grown);
    // Exit 3: the refresh was held, the first list stays deployed.
    let f = s.cli_json(3, &["feed", "refresh", HELD]);
    assert_eq!(f["state"], "held", "{f}");
    assert_eq!(f["entries"], 4, "{f}");
}

/// A policy that lists at a weight of 3, and one report that reaches it:
/// [`REPORTED`] becomes a deployed `auto:reports` listing.
pub(crate) fn report(s: &Stack) {
    s.cli(
        0,
        &[
            "auto",
            "set",
            "--reports",
            "3",
            "--within",
            "10m",
            "--ttl",
            "1h",
        ],
    );
    s.cli(
        0,
        &[
            "report",
            REPORTED,
            "--reason",
            "ssh brute force",
            "--weight",
            "3",
        ],
    );
    assert!(
        deployed(s, REPORTED, "deny").is_some_and(|e| e["source"] == "auto:reports"),
        "{REPORTED} is listed from reports\n{}",
        s.logs()
    );
}

/// The deployed entry for `target` on `list` ("deny" or "allow").
fn deployed(s: &Stack, target: &str, list: &str) -> Option<Value> {
    let entries: Vec<Value> = s
        .api()
        .get("/v1/entries?draft=false")
        .expect("the deployed entries");
    entries
        .into_iter()
        .find(|e| e["target"] == target && e["list"] == list)
}

/// The rows of the Review page's table: change, target, list.
fn review_rows(b: &denylist_tests::web::browser::Browser) -> Vec<Vec<String>> {
    b.goto("/review");
    b.wait_text("Pending changes");
    let rows = b.script(
        "return Array.from(document.querySelectorAll('table[aria-label=\"Pending changes\"] tbody tr'))
           .map(r => Array.from(r.cells).slice(0, 3).map(c => c.innerText.trim()))",
    );
    serde_json::from_value(rows.clone()).unwrap_or_else(|e| panic!("{e}: {rows}"))
}

#[test]
fn a_held_feed_is_approved_and_a_reported_address_allowed_from_the_browser() {
    let (dir, flag) = feed_dir("wauto-feeds");
    let s = Stack::start_and("wauto", &[ADMIN], &WebOpts::default(), &[&flag]);
    subscribe(&s, dir.path());
    report(&s);
    let b = signed_in(&s, &ADMIN);

    // Approve deploys the held list as one revision, and only that.
    b.goto("/feeds");
    b.wait_text("botnet-c2");
    let before = s.revision();
    b.click(&format!("Approve {HELD}"));
    b.wait_text(&format!("Approved feed {HELD}: its held list is deployed."));
    let f = feed(&s, HELD);
    assert_eq!(
        (&f["state"], &f["entries"]),
        (&"ok".into(), &7.into()),
        "{f}"
    );
    assert!(f["held"].is_null(), "{f}");
    assert_eq!(s.revision(), before + 1, "one revision\n{}", s.logs());
    for t in HELD_ADDS {
        assert!(
            deployed(&s, t, "deny").is_some_and(|e| e["source"] == format!("feed:{HELD}")),
            "{t} is deployed from feed:{HELD}"
        );
    }
    assert!(
        !b.has(&format!("Approve {HELD}")),
        "nothing is held any more"
    );
    assert_eq!(
        feed(&s, "botnet-c2")["state"],
        "ok",
        "the other feed is untouched"
    );
    // The feed's name links to its listings on the Denylist page.
    b.goto(&format!("/denylist?source=feed%3A{HELD}"));
    b.wait_text(HELD_ADDS[2]);

    // Unblock and allow stages two changes and deploys neither.
    b.goto("/reports");
    b.wait_text(REPORTED);
    let before = s.revision();
    b.click(&format!("Unblock and allow {REPORTED}"));
    b.wait_text(&format!("Staged: {REPORTED} allowed instead of blocked"));
    assert_eq!(
        review_rows(&b),
        [["add", REPORTED, "allow"], ["remove", REPORTED, "deny"]],
        "Review shows the allow entry and the listing's removal"
    );
    let diff = s.diff();
    let removed = &diff["removed"][0];
    assert_eq!(
        (&removed["target"], &removed["source"]),
        (&REPORTED.into(), &"auto:reports".into()),
        "the auto:reports listing is what goes: {diff}"
    );
    assert_eq!(s.revision(), before, "nothing deployed yet");
    assert!(deployed(&s, REPORTED, "deny").is_some(), "still listed");
    assert!(deployed(&s, REPORTED, "allow").is_none(), "not yet allowed");

    save_and_deploy(&b, "allow the reported address");
    assert!(
        deployed(&s, REPORTED, "deny").is_none(),
        "the listing is gone"
    );
    let allow = deployed(&s, REPORTED, "allow").expect("the allow entry is deployed");
    assert_eq!(
        allow["expires_at"],
        Value::Null,
        "allowed for good: {allow}"
    );
}
