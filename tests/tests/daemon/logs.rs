//! The log as journald reads it: a syslog priority on every line, no
//! colours, no timestamp of its own; and a warning about an interface
//! another program holds said once, not every second.

use std::{ffi::OsStr, thread, time::Duration};

use denylist_tests::daemon::Daemon;

use crate::common::{A, add, sandbox};

/// Unloads xdp-filter on drop, also when the test fails.
struct XdpFilter<'a>(&'a denylist_tests::netns::Netns, String);

impl Drop for XdpFilter<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["xdp-filter", "unload", &self.1, "--all"]);
    }
}

#[test]
fn under_journald_every_line_has_its_priority_and_a_held_interface_is_warned_about_once() {
    let sb = sandbox("log");
    let ns = &sb.pair.receiver;
    let iface = sb.pair.receiver_xdp_if.clone();
    // A second interface that another program holds.
    ns.run(&[
        "ip",
        "link",
        "add",
        "dl-held",
        "type",
        "veth",
        "peer",
        "name",
        "dl-held-p",
    ])
    .unwrap();
    ns.run(&["ip", "link", "set", "dl-held", "up"]).unwrap();
    ns.run(&["xdp-filter", "load", "dl-held", "-m", "skb"])
        .unwrap();
    let _filter = XdpFilter(ns, "dl-held".into());

    let d = Daemon::spawn_with_env(
        &sb.home,
        Some(ns),
        &["--iface", &iface, "--iface", "dl-held"],
        &[("JOURNAL_STREAM", OsStr::new("8:12345"))],
    );
    let c = sb.client();
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while c.get::<serde_json::Value>("/v1/status").is_err() {
        assert!(std::time::Instant::now() < until, "{}", d.log_text());
        thread::sleep(Duration::from_millis(50));
    }
    add(&c, &[A], true);
    // The held interface is retried every second meanwhile.
    thread::sleep(Duration::from_millis(3500));
    assert!(d.stop().success());

    let log = std::fs::read_to_string(sb.home.dir.path().join("denylistd.log")).unwrap();
    assert!(!log.contains('\x1b'), "no colours: {log}");
    for line in log.lines().filter(|l| !l.is_empty()) {
        let (prefix, rest) = line.split_at(3.min(line.len()));
        assert!(
            matches!(prefix.as_bytes(), [b'<', b'0'..=b'7', b'>']),
            "every line starts with its priority: {line:?}"
        );
        // The journal keeps the time: the line starts with what happened.
        assert!(
            !rest.starts_with(|ch: char| ch.is_ascii_digit()),
            "no timestamp: {line:?}"
        );
    }
    let held: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("dl-held") && l.contains("cannot attach"))
        .collect();
    assert_eq!(held.len(), 1, "warned about once: {log}");
    assert!(held[0].starts_with("<4>"), "a warning: {}", held[0]);
    assert!(
        log.lines()
            .any(|l| l.starts_with("<6>") && l.contains("serving the API")),
        "{log}"
    );
}
