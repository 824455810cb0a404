//! The audit log: every kind of change recorded with its user and time,
//! and no route that rewrites it.

use std::{
    collections::BTreeSet,
    fs, thread,
    time::{Duration, Instant},
};

use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use denylist::model::now_ms;
use denylist_common::{ExactValue, MAP_EXACT_V4};
use denylist_tests::{
    daemon::{Daemon, Home, TempDir},
    require_root,
};
use serde_json::Value;

use crate::common::{A, B, FREE, IFACE, Users, audit, chmod, cli, history, iface_netns, open_home};

/// The pinned map of the live generation, to make drift behind the
/// daemon's back.
fn remove_from_kernel(home: &Home, addr: [u8; 4]) {
    let gen_dir = fs::read_dir(&home.bpffs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("gen-"))
        .expect("a generation");
    let mut map = Map::HashMap(MapData::from_pin(gen_dir.join(MAP_EXACT_V4)).unwrap());
    let mut h: BpfHashMap<_, [u8; 4], ExactValue> = BpfHashMap::try_from(&mut map).unwrap();
    h.remove(&addr).unwrap();
}

fn at_ms(event: &Value, field: &str) -> i64 {
    let at = event[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field}: {event}"));
    denylist::model::to_ms(humantime::parse_rfc3339(at).unwrap())
}

#[test]
fn every_change_is_audited_with_user_and_time_and_the_log_cannot_be_rewritten() {
    require_root();
    let users = Users::new();
    let ns = iface_netns("seca");
    let home = open_home("seca");
    let mut args = users.daemon_args().to_vec();
    args.extend(["--expiry-sweep", "1s"]);
    let _d = Daemon::start(&home, Some(&ns), &args);
    let sock = home.socket();
    let c = home.client();
    let files = TempDir::new("secaf");
    chmod(files.path(), 0o1777);
    let import = files.path().join("feed.txt");
    fs::write(&import, "198.51.100.60\n198.51.100.61\n").unwrap();
    chmod(&import, 0o644);
    let backup = files.path().join("copy.db");
    let admin = users.admin.clone();
    // Under sudo the log says `login (as user)`.
    let by_admin = |u: &str| u == admin || u.ends_with(&format!("(as {admin})"));

    let t0 = now_ms();
    let mut log = audit(&c);
    let mut seen = BTreeSet::new();
    let mut check = |what: &str, start: i64, want: &[(&str, &str)]| {
        let now = audit(&c);
        assert!(
            now.starts_with(&log),
            "{what}: the log only grows, nothing before changes"
        );
        let new = &now[log.len()..];
        let end = now_ms();
        for (kind, user) in want {
            let e = new
                .iter()
                .find(|e| e["kind"] == *kind)
                .unwrap_or_else(|| panic!("{what}: no {kind} event in {new:?}"));
            let u = e["user"].as_str().unwrap();
            match *user {
                "admin" => assert!(by_admin(u), "{what}: {kind} by {u}, not {admin}"),
                other => assert_eq!(u, other, "{what}: {kind}"),
            }
            let at = at_ms(e, "at");
            assert!(
                (start - 1..=end).contains(&at),
                "{what}: {kind} at {at}, outside {start}..={end}"
            );
            seen.insert(kind.to_string());
        }
        log = now;
    };
    // Each step: a command line, and the (kind, user) audit events it adds.
    type Step<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);
    let steps: &[Step] = &[
        (&["add", A, "--reason", "audit"], &[("stage add", "admin")]),
        (&["monitor", A], &[("stage change", "admin")]),
        (&["deploy", "--message", "first"], &[("deploy", "admin")]),
        (&["remove", A], &[("stage remove", "admin")]),
        (&["discard"], &[("discard", "admin")]),
        (
            &["import", "{import}", "--source", "feed"],
            &[("import", "admin")],
        ),
        (&["deploy"], &[("deploy", "admin")]),
        (
            &["rollback", "1", "--force", "--deploy"],
            &[("rollback", "admin")],
        ),
        (&["allow", "add", B], &[("stage add", "admin")]),
        (&["allow", "remove", B], &[("stage remove", "admin")]),
        (
            &["attach", IFACE, "--xdp-mode", "skb"],
            &[("attach", "admin")],
        ),
        (&["detach", IFACE], &[("detach", "admin")]),
        (&["backup", "{backup}"], &[("backup", "admin")]),
    ];
    for (args, want) in steps {
        let args: Vec<String> = args
            .iter()
            .map(|a| match *a {
                "{import}" => import.display().to_string(),
                "{backup}" => backup.display().to_string(),
                other => other.to_string(),
            })
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let start = now_ms();
        let r = cli(Some(&users.admin), None, &sock, &args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        check(&args.join(" "), start, want);
    }

    // The expiry sweep is the daemon's own change.
    let start = now_ms();
    let r = cli(
        Some(&users.admin),
        None,
        &sock,
        &["add", FREE, "--ttl", "1s", "--deploy"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < until && !audit(&c).iter().any(|e| e["kind"] == "expiry") {
        thread::sleep(Duration::from_millis(200));
    }
    check(
        "expiry",
        start,
        &[("deploy", "admin"), ("expiry", "denylistd")],
    );

    // Drift behind the daemon's back, repaired by the admin's verify.
    let start = now_ms();
    let r = cli(
        Some(&users.admin),
        None,
        &sock,
        &["add", "198.51.100.62", "--deploy"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    check("add --deploy", start, &[("deploy", "admin")]);
    remove_from_kernel(&home, [198, 51, 100, 62]);
    let start = now_ms();
    let r = cli(Some(&users.admin), None, &sock, &["verify"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    check("verify", start, &[("verify repair", "admin")]);

    let kinds = [
        "stage add",
        "stage change",
        "stage remove",
        "deploy",
        "discard",
        "import",
        "rollback",
        "expiry",
        "attach",
        "detach",
        "verify repair",
        "backup",
    ];
    let seen_kinds: BTreeSet<&str> = seen.iter().map(String::as_str).collect();
    assert_eq!(seen_kinds, BTreeSet::from(kinds), "every kind of change");

    // What a viewer reads: the same events with user and time, and each
    // revision with who deployed it and when.
    let r = cli(Some(&users.viewer), None, &sock, &["audit"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for k in kinds {
        assert!(r.stdout.contains(k), "`denylist audit` shows {k}");
    }
    assert!(r.stdout.contains(&admin) && r.stdout.contains("denylistd"));
    let r = cli(Some(&users.viewer), None, &sock, &["history", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let revisions: Vec<Value> = serde_json::from_str(&r.stdout).unwrap();
    assert!(revisions.len() >= 4, "{revisions:?}");
    for rev in &revisions {
        assert!(by_admin(rev["deployed_by"].as_str().unwrap()), "{rev}");
        let at = at_ms(rev, "deployed_at");
        assert!(
            (t0..=now_ms()).contains(&at),
            "deployed during the test: {rev}"
        );
    }

    // No route rewrites the log or the history: every method the API does
    // not document on a route, and paths that look like a way in.
    let before = (audit(&c), history(&c));
    let forged = serde_json::json!({
        "seq": 1, "at": "2020-01-01T00:00:00Z", "user": "mallory", "kind": "deploy",
        "revision": 1, "deployed_by": "mallory", "since": 0
    })
    .to_string();
    let documented: &[(&str, &[&str])] = &[
        ("/v1/status", &["GET"]),
        ("/v1/entries", &["GET", "POST"]),
        ("/v1/entries/remove", &["POST"]),
        ("/v1/entries/mode", &["POST"]),
        ("/v1/diff", &["GET"]),
        ("/v1/deploy", &["POST"]),
        ("/v1/discard", &["POST"]),
        ("/v1/check/198.51.100.7", &["GET"]),
        ("/v1/stats", &["GET"]),
        ("/v1/history", &["GET"]),
        ("/v1/audit", &["GET"]),
        ("/v1/rollback", &["POST"]),
        ("/v1/import", &["POST"]),
        ("/v1/export", &["GET"]),
        ("/v1/attach", &["POST"]),
        ("/v1/detach", &["POST"]),
        ("/v1/verify", &["POST"]),
        ("/v1/backup", &["POST"]),
        ("/v1/audit?since=0", &["GET"]),
        ("/v1/audit/1", &[]),
        ("/v1/history/1", &[]),
        ("/v1/revisions/1", &[]),
        ("/v1/audit/clear", &[]),
        ("/v1/history/truncate", &[]),
        ("/v1", &[]),
        ("/", &[]),
    ];
    let mut attempts = 0;
    for (path, allowed) in documented {
        for method in ["PUT", "POST", "DELETE", "PATCH"] {
            if allowed.contains(&method) {
                continue;
            }
            let reply = c
                .request(method, path, Some(forged.as_bytes()), "application/json")
                .unwrap();
            attempts += 1;
            assert!(
                [400, 404, 405].contains(&reply.status),
                "{method} {path} answered {}: {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            );
            let err: Value = serde_json::from_slice(&reply.body).unwrap();
            assert!(err["error"]["message"].is_string(), "{method} {path}");
        }
    }
    assert_eq!(
        (audit(&c), history(&c)),
        before,
        "{attempts} attempts changed nothing"
    );
    eprintln!(
        "audit: {} kinds seen; {attempts} rewrite attempts refused",
        kinds.len()
    );
}
