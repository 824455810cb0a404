//! Every page in the test browser, with data on it, saved as PNG: into a
//! temporary directory on every run (so a page that fails to render fails
//! here), and into docs/img/ as well with DENYLIST_SCREENSHOTS=1, which is
//! how the pictures in the docs are made.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
};

use denylist_tests::{
    daemon::TempDir,
    netns::Sources,
    web::{ADMIN, Stack, browser::Browser},
};
use serde_json::{Value, json};

use crate::{
    add,
    autoblock::{REPORTED, feed_dir, report, subscribe},
    signed_in,
};

/// The source over the detector's threshold.
const HEAVY: &str = "198.18.0.30";

/// Stages `entries` from `source` as root and deploys them with `message`.
fn deploy(s: &Stack, entries: Value, source: &str, message: &str) {
    let _: Value = s
        .api()
        .post(
            "/v1/entries",
            &json!({ "entries": entries, "source": source }),
        )
        .unwrap_or_else(|e| panic!("stage: {e}\n{}", s.logs()));
    let _: Value = s
        .api()
        .post("/v1/deploy", &json!({ "message": message }))
        .unwrap_or_else(|e| panic!("deploy: {e}\n{}", s.logs()));
}

/// Saves the viewport as `dir/web-NAME.png` after checking the page
/// shows `expect`, and that the picture is more than a blank page's
/// (`blank` bytes: an empty viewport compresses to almost nothing).
pub(crate) fn shot(b: &Browser, dir: &Path, name: &str, expect: &str, blank: usize) -> PathBuf {
    b.wait_text(expect);
    let path = dir.join(format!("web-{name}.png"));
    b.screenshot(&path);
    let png = std::fs::read(&path).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{name} is a PNG");
    assert!(
        png.len() > 2 * blank,
        "{name} looks blank: {} bytes, a blank page {blank}",
        png.len()
    );
    path
}

#[test]
fn every_page_renders_and_is_photographed() {
    // A guarded interface and real drops, so Status and the hit counts
    // show what a live console shows.
    let scanner: IpAddr = "198.51.100.7".parse().unwrap();
    let (feeds, flag) = feed_dir("wshots-feeds");
    let s = Stack::with_traffic_and("wshots", &[scanner], &[ADMIN], &[&flag]);
    // Feeds and Reports with something on them: a healthy feed, a held
    // one, and an address listed from reports.
    subscribe(&s, feeds.path());
    report(&s);
    deploy(
        &s,
        json!([
            {"target": "203.0.113.0/24", "reason": "scanner subnet", "ttl": "7d"},
            {"target": "198.51.100.7", "reason": "ssh brute force"},
            {"target": "198.51.100.23", "reason": "credential stuffing", "ttl": "24h"},
            {"target": "2001:db8:bad::/48", "reason": "IPv6 scanner", "monitor": true},
            {"target": "198.51.100.10", "list": "allow", "reason": "office uplink"},
        ]),
        "manual",
        "Initial list",
    );
    deploy(
        &s,
        json!([
            {"target": "198.51.100.99", "reason": "spam relay"},
            {"target": "203.0.113.77", "reason": "spam relay"},
        ]),
        "import:fail2ban",
        "fail2ban bans",
    );
    assert!(s.dropped(scanner), "{scanner} is dropped\n{}", s.logs());
    // Top sources and Auto-blocking with the detector in monitor mode: one
    // source over the threshold, eight under it, for the rest of the test.
    s.cli(0, &["auto", "set", "--pps", "500"]);
    let pair = s.pair.as_ref().expect("a veth pair");
    let minute = |pps: u64| (pps, pps * 60);
    let (pps, count) = minute(2_000);
    let _heavy = pair
        .blast(Sources::One(HEAVY.parse().unwrap()), pps, count)
        .expect("trafgen");
    let (pps, count) = minute(800);
    let light = Sources::Cycle {
        base: Ipv4Addr::new(198, 18, 1, 0),
        n: 8,
    };
    let _light = pair.blast(light, pps, count).expect("trafgen");
    let dir = TempDir::new("screenshots");
    let blank = blank_size(&s.web.origin(), dir.path());
    let b = Browser::start(&s.web.origin());
    b.goto("/login");
    let mut shots = vec![shot(&b, dir.path(), "login", "Sign in", blank)];
    drop(b);

    let b = signed_in(&s, &ADMIN);
    add(&b, "45.155.205.12", "web login brute force");
    b.click("Remove 198.51.100.23");
    b.wait_text("2 pending changes");
    let pages = [
        ("denylist", "/denylist", "2 pending changes"),
        ("review", "/review", "Pending changes"),
        ("allowlist", "/allowlist", "office uplink"),
        ("check", "/check?address=203.0.113.7", "203.0.113.0/24"),
        ("history", "/history", "fail2ban bans"),
        ("audit", "/audit", "alice (web)"),
        ("feeds", "/feeds", "Approve"),
        ("reports", "/reports", REPORTED),
        ("status", "/status", "Status"),
    ];
    for (name, path, expect) in pages {
        b.goto(path);
        shots.push(shot(&b, dir.path(), name, expect, blank));
    }
    // Both pages come in with the flood's first epochs.
    b.revisit("/top", |b| b.text().contains(HEAVY));
    shots.push(shot(&b, dir.path(), "top", HEAVY, blank));
    b.revisit("/auto", |b| b.text().contains("would block"));
    shots.push(shot(&b, dir.path(), "auto", "would block", blank));

    publish(&shots);
}

/// The size of a blank page's screenshot, made in `dir` by a browser on
/// the console at `origin`.
pub(crate) fn blank_size(origin: &str, dir: &Path) -> usize {
    let b = Browser::start(origin);
    b.goto_url("about:blank");
    let blank_png = dir.join("blank.png");
    b.screenshot(&blank_png);
    std::fs::read(&blank_png).expect("the blank shot").len()
}

/// Copies `shots` into docs/img with DENYLIST_SCREENSHOTS=1.
pub(crate) fn publish(shots: &[PathBuf]) {
    if std::env::var_os("DENYLIST_SCREENSHOTS").is_some_and(|v| v == "1") {
        let img = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/img");
        for p in shots {
            let to = img.join(p.file_name().expect("a file name"));
            std::fs::copy(p, &to).unwrap_or_else(|e| panic!("copy to {}: {e}", to.display()));
        }
    }
}
