//! The operator commands: status, stats, verify, backup, attach, detach
//! and completions.

use crate::common::{Env, array, assert_keys, set, target_set};

#[test]
fn ops_status_stats_verify_backup_attach_detach_completions() {
    let env = Env::start("cli-ops", &["--iface", "dl-missing"]);

    // Degraded: a configured interface is not attached.
    let r = env.expect(1, &["status"]);
    assert!(
        r.out.contains("dl-missing") && r.out.contains("NOT ATTACHED"),
        "{r}"
    );
    assert!(
        r.err.contains("degraded")
            && r.err
                .contains("interface dl-missing is not attached: it does not exist")
            && r.err.contains("denylist detach dl-missing"),
        "says why and what to do: {r}"
    );
    let r = env.expect(1, &["status", "--json"]);
    let s = r.json();
    // The spec's keys, plus `drift`, `degraded`, `degraded_reasons`,
    // `draft_seq` and `warnings` (documented on Status).
    assert_keys(
        &s,
        &[
            "revision",
            "pending_changes",
            "interfaces",
            "entries",
            "capacity",
            "counters",
            "drift",
            "degraded",
            "degraded_reasons",
            "draft_seq",
            "warnings",
        ],
        "status",
    );
    assert_eq!(s["degraded"], true);
    let ifaces = array(s["interfaces"].clone());
    assert_eq!(ifaces.len(), 1);
    // The spec's {name, xdp_mode}, plus `configured` and `attached`.
    assert_keys(
        &ifaces[0],
        &["name", "xdp_mode", "configured", "attached"],
        "an interface",
    );
    assert_eq!(ifaces[0]["name"], "dl-missing");
    assert!(ifaces[0]["xdp_mode"].is_null());

    // attach/detach: unknown interfaces are not found.
    let r = env.expect(5, &["attach", "dl-nonexistent"]);
    assert!(r.err.contains("dl-nonexistent"), "{r}");
    env.expect(5, &["attach", "dl-nonexistent", "--xdp-mode", "skb"]);
    env.expect(2, &["attach", "lo", "--xdp-mode", "turbo"]);
    let r = env.expect(5, &["detach", "dl-unknown"]);
    assert!(r.err.contains("dl-unknown"), "{r}");
    env.ok(&["detach", "dl-missing"]);
    // No interface at all is a fresh install's state: no fault, a warning.
    let r = env.ok(&["status"]);
    assert!(r.out.contains("revision    0"), "{r}");
    assert!(r.err.contains("warning: no interface configured"), "{r}");

    // Entries to count.
    env.ok(&["add", "198.51.100.7", "203.0.113.0/24", "--deploy"]);
    env.ok(&["allow", "add", "198.51.100.200"]);
    let s = env.json(&["status", "--json"]);
    assert_eq!(s["degraded"], false);
    assert_eq!(s["revision"], 1);
    assert_eq!(s["pending_changes"], 1);
    assert!(s["interfaces"].as_array().unwrap().is_empty());
    assert_keys(&s["entries"], &["deny", "allow"], "status.entries");
    assert_eq!(s["entries"], serde_json::json!({"deny": 2, "allow": 0}));
    assert_keys(&s["capacity"], &["total", "used"], "status.capacity");
    assert_eq!(s["capacity"], serde_json::json!({"total": 4096, "used": 2}));
    assert_keys(
        &s["counters"],
        &[
            "dropped_packets",
            "dropped_bytes",
            "passed_packets",
            "passed_bytes",
            "monitored_packets",
            "allowed_packets",
            "unparsable_packets",
        ],
        "status.counters",
    );
    let r = env.ok(&["status"]);
    for label in [
        "revision",
        "interfaces",
        "entries",
        "capacity",
        "dropped",
        "passed",
    ] {
        assert!(r.out.contains(label), "{label}: {r}");
    }
    assert!(r.out.contains("1 pending change"), "{r}");

    // stats: per entry, busiest first; --top, --idle.
    let st = array(env.json(&["stats", "--json"]));
    assert_eq!(target_set(&st), set(&["198.51.100.7", "203.0.113.0/24"]));
    for i in &st {
        // The spec's {target, packets, bytes, last_hit}, plus `list`.
        assert_keys(
            i,
            &["target", "list", "packets", "bytes", "last_hit"],
            "a stats item",
        );
        assert_eq!(i["packets"], 0);
        assert!(i["last_hit"].is_null(), "never hit: {i}");
    }
    assert_eq!(array(env.json(&["stats", "--top", "1", "--json"])).len(), 1);
    assert_eq!(
        array(env.json(&["stats", "--idle", "30d", "--json"])).len(),
        2,
        "never hit is idle"
    );
    let r = env.ok(&["stats", "--top", "5", "--idle", "1h"]);
    assert!(r.out.contains("PACKETS") && r.out.contains("never"), "{r}");
    env.expect(2, &["stats", "--idle", "a while"]);

    // verify: no drift.
    let r = env.ok(&["verify"]);
    assert!(r.out.contains("no drift"), "{r}");
    let v = env.json(&["verify", "--json"]);
    assert_keys(&v, &["seq", "drift", "repaired"], "verify");
    assert_eq!(v["drift"], serde_json::json!([]));

    // backup: an absolute path, or one relative to where the CLI runs.
    let file = env.path("backup.db");
    let r = env.ok(&["backup", &file]);
    assert!(r.out.contains(&file), "{r}");
    let head = std::fs::read(&file).expect("the backup exists");
    assert!(head.starts_with(b"SQLite format 3\0"), "an SQLite database");
    let r = env.expect(2, &["backup", &file]);
    assert!(r.err.contains("exists"), "{r}");
    env.ok(&["backup", "relative.db"]);
    assert!(std::path::Path::new(&env.path("relative.db")).exists());

    // completions for three shells.
    for shell in ["bash", "zsh", "fish"] {
        let r = env.ok(&["completions", shell]);
        assert!(
            r.out.len() > 1000 && r.out.contains("denylist") && r.out.contains("rollback"),
            "{shell}: {} bytes",
            r.out.len()
        );
    }
    env.expect(2, &["completions", "powershell"]);
}
