//! History, the audit log and rollback, and expired entries added again.

use std::{collections::BTreeSet, thread, time::Duration};

use serde_json::Value;

use crate::common::{Env, array, assert_keys, history, set, target_set, targets, time};

#[test]
fn history_audit_and_rollback() {
    let env = Env::start("cli-rollback", &["--expiry-sweep", "1s"]);

    // Revision 1: A, and E, which expires at once.
    env.ok(&["add", "198.51.100.1", "--reason", "orig"]);
    env.ok(&["add", "198.51.100.2", "--ttl", "1s"]);
    env.ok(&["deploy", "--message", "rev one"]);
    let a = array(env.json(&["list", "--match", "198.51.100.1", "--json"]))[0].clone();
    // Revision 2: A removed, B added.
    env.ok(&["remove", "198.51.100.1"]);
    env.ok(&["add", "198.51.100.3"]);
    env.ok(&["deploy"]);

    let h = history(&env);
    assert_eq!(h.len(), 2);
    for r in &h {
        assert_keys(
            r,
            &[
                "revision",
                "deployed_at",
                "deployed_by",
                "message",
                "added",
                "removed",
                "changed",
            ],
            "a revision",
        );
        time(&r["deployed_at"]);
        assert_eq!(r["deployed_by"], "root");
    }
    assert_eq!(
        (
            h[0]["revision"].clone(),
            h[0]["message"].clone(),
            h[0]["added"].clone()
        ),
        (1.into(), "rev one".into(), 2.into())
    );
    assert_eq!(
        (
            h[1]["revision"].clone(),
            h[1]["message"].clone(),
            h[1]["added"].clone(),
            h[1]["removed"].clone(),
            h[1]["changed"].clone()
        ),
        (2.into(), Value::Null, 1.into(), 1.into(), 0.into())
    );
    let human = env.ok(&["history"]).out;
    assert!(
        human.contains("rev one") && human.contains("+2 −0 ~0"),
        "{human}"
    );

    // E expires; list never shows it, and the sweep removes it.
    thread::sleep(Duration::from_millis(2500));
    let listed = targets(&array(env.json(&["list", "--json"])));
    assert_eq!(listed, ["198.51.100.3"], "expired entries are never shown");

    // Unknown revision: not found. Pending changes: conflict.
    let r = env.expect(5, &["rollback", "99"]);
    assert!(r.err.contains("99"), "{r}");
    env.expect(5, &["rollback", "0"]);
    env.ok(&["add", "198.51.100.4"]);
    let r = env.expect(6, &["rollback", "1"]);
    assert!(
        r.err.contains("pending") && r.err.contains("--force"),
        "{r}"
    );
    assert_eq!(
        target_set(&array(env.diff()["added"].clone())),
        set(&["198.51.100.4"]),
        "a refused rollback changes nothing"
    );

    // --force overwrites them; the expired entry is left out and listed.
    let r = env.json(&["rollback", "1", "--force", "--json"]);
    assert_eq!(r["expired"], serde_json::json!(["198.51.100.2"]), "{r}");
    let d = env.diff();
    assert_eq!(targets(&array(d["added"].clone())), ["198.51.100.1"], "{d}");
    assert_eq!(
        targets(&array(d["removed"].clone())),
        ["198.51.100.3"],
        "{d}"
    );
    let back = &d["added"][0];
    assert_eq!(back["added_at"], a["added_at"], "the original added_at");
    assert_eq!(back["added_by"], a["added_by"]);
    assert_eq!(back["reason"], "orig");
    let r = env.ok(&["rollback", "1", "--force"]);
    assert!(
        r.out
            .contains("manual and import listings now equal revision 1")
            && r.out.contains("expired")
            && r.out.contains("198.51.100.2"),
        "{r}"
    );
    // --deploy: a new revision, "rollback to REV" by default.
    let r = env.ok(&["rollback", "1", "--force", "--deploy"]);
    assert!(r.out.contains("revision 3: +1 −1 ~0"), "{r}");
    let h = history(&env);
    assert_eq!(h[2]["message"], "rollback to 1");
    let listed = array(env.json(&["list", "--json"]));
    assert_eq!(targets(&listed), ["198.51.100.1"]);
    assert_eq!(
        listed[0]["added_at"], a["added_at"],
        "the original added_at"
    );
    let r = env.ok(&["rollback", "2", "--deploy", "--message", "back to two"]);
    assert!(r.out.contains("revision 4"), "{r}");
    assert_eq!(history(&env)[3]["message"], "back to two");
    assert_eq!(
        targets(&array(env.json(&["list", "--json"]))),
        ["198.51.100.3"]
    );

    // The audit log: every event, its shape, and --since.
    let audit = array(env.json(&["audit", "--json"]));
    for e in &audit {
        assert_keys(
            e,
            &["seq", "at", "user", "kind", "target", "detail"],
            "an audit event",
        );
        time(&e["at"]);
    }
    let kinds: BTreeSet<&str> = audit.iter().filter_map(|e| e["kind"].as_str()).collect();
    for k in ["stage add", "stage remove", "deploy", "rollback", "expiry"] {
        assert!(kinds.contains(k), "{k} in {kinds:?}");
    }
    assert!(
        audit.iter().any(|e| e["kind"] == "expiry"
            && e["target"] == "198.51.100.2"
            && e["user"] == "denylistd"),
        "the sweep is audited"
    );
    let seqs: Vec<u64> = audit.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let since = seqs[seqs.len() - 3];
    let tail = array(env.json(&["audit", "--since", &since.to_string(), "--json"]));
    assert_eq!(
        tail.iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        seqs[seqs.len() - 2..],
        "--since gives the events after it"
    );
    let human = env.ok(&["audit", "--since", &since.to_string()]).out;
    assert!(
        human.lines().count() >= 3,
        "a header and two events:\n{human}"
    );
    // Paging back from the end: the newest two, then the two before them.
    let seqs_of =
        |page: &[Value]| -> Vec<u64> { page.iter().map(|e| e["seq"].as_u64().unwrap()).collect() };
    let last = array(env.json(&["audit", "--limit", "2", "--json"]));
    assert_eq!(seqs_of(&last), seqs[seqs.len() - 2..]);
    let before = last[0]["seq"].to_string();
    let page = array(env.json(&["audit", "--limit", "2", "--before", &before, "--json"]));
    assert_eq!(seqs_of(&page), seqs[seqs.len() - 4..seqs.len() - 2]);
    let newest = array(env.json(&["history", "--limit", "1", "--json"]));
    let revs = history(&env);
    assert_eq!(newest, revs[revs.len() - 1..], "--limit keeps the newest");
    let older = array(env.json(&["history", "--before", "2", "--json"]));
    assert_eq!(older, revs[..1]);

    // E added again, live: a rollback to a revision where it is live does
    // not call it expired.
    env.ok(&["add", "198.51.100.2", "--deploy"]);
    let live = history(&env).len().to_string();
    assert_eq!(
        targets(&array(env.json(&["list", "--json"]))),
        ["198.51.100.2", "198.51.100.3"]
    );
    let r = env.json(&["rollback", &live, "--json"]);
    assert_eq!(
        r["expired"],
        serde_json::json!([]),
        "198.51.100.2 is live in revision {live}, yet rollback lists it as expired: {r}"
    );
    env.assert_nothing_staged("a rollback to the deployed revision");
}

/// Re-adding an entry whose TTL has run out, before the sweep has removed
/// it, makes it live again.
#[test]
fn a_re_added_expired_entry_is_live_again() {
    // A sweep that does not come during the test.
    let env = Env::start("cli-readd", &["--expiry-sweep", "1h"]);
    env.ok(&["add", "198.51.100.1", "--ttl", "1s", "--deploy"]);
    thread::sleep(Duration::from_millis(1300));
    assert!(array(env.json(&["list", "--json"])).is_empty(), "expired");
    assert!(
        array(env.json(&["list", "--draft", "--json"])).is_empty(),
        "expired"
    );
    env.ok(&["add", "198.51.100.1", "--reason", "back again", "--deploy"]);
    let listed = array(env.json(&["list", "--json"]));
    assert_eq!(
        targets(&listed),
        ["198.51.100.1"],
        "re-added and deployed, the entry must be listed"
    );
    let c = env.json(&["check", "198.51.100.1", "--json"]);
    assert_eq!(c["verdict"], "drop", "re-added and deployed, yet {c}");
}
