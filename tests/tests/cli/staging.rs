//! Staging, diff, deploy, discard, list, check and the modes.

use std::time::Duration;

use crate::common::{
    ENTRY_KEYS, Env, array, assert_entry_shape, assert_keys, history, set, target_set, targets,
    time,
};

#[test]
fn staging_diff_deploy_discard_list_check_and_modes() {
    let env = Env::start("cli-stage", &[]);

    // add with every flag; TTLs count from the deploy.
    let r = env.ok(&["add", "198.51.100.7", "--reason", "scanner", "--ttl", "90s"]);
    assert!(r.out.contains("staged: +1 −0 ~0"), "{r}");
    env.ok(&["add", "198.51.100.8", "--monitor", "--ttl", "never"]);
    env.ok(&[
        "add",
        "2001:db8::20",
        "--reason",
        "v6 scanner",
        "--ttl",
        "7d",
    ]);
    let d = env.diff();
    assert_keys(
        &d,
        &["added", "removed", "changed", "draft_seq"],
        "the diff",
    );
    assert!(
        d["draft_seq"].as_u64().unwrap() > 0,
        "the adds changed the draft: {d}"
    );
    let added = array(d["added"].clone());
    assert_eq!(added.len(), 3, "{d}");
    for a in &added {
        let mut want = ENTRY_KEYS.to_vec();
        want.extend(["staged_by", "staged_at"]);
        assert_keys(a, &want, "an added item");
        assert_eq!(a["staged_by"], "root", "{a}");
        time(&a["staged_at"]);
        assert!(
            a["expires_at"].is_null(),
            "a draft entry has no expiry yet: {a}"
        );
    }
    let seven = added
        .iter()
        .find(|a| a["target"] == "198.51.100.7")
        .unwrap();
    assert_eq!(seven["ttl"], 90);
    assert_eq!(seven["reason"], "scanner");
    assert_eq!(seven["monitor"], false);
    assert_eq!(seven["source"], "manual");
    assert_eq!(seven["added_by"], "root");
    let eight = added
        .iter()
        .find(|a| a["target"] == "198.51.100.8")
        .unwrap();
    assert_eq!(eight["monitor"], true);
    assert!(
        eight["ttl"].is_null() && eight["reason"].is_null(),
        "{eight}"
    );
    let human = env.ok(&["diff"]).out;
    assert!(
        human.contains("STAGED BY") && human.contains("198.51.100.7") && human.contains("root"),
        "{human}"
    );
    // Nothing deployed yet: list is empty, the draft has all three.
    assert!(array(env.json(&["list", "--json"])).is_empty());
    assert_eq!(array(env.json(&["list", "--draft", "--json"])).len(), 3);
    assert_eq!(env.ok(&["list"]).out.trim(), "no entries");

    // add --deploy ships just its own change; the rest stays staged.
    let r = env.ok(&["add", "203.0.113.10", "--reason", "urgent", "--deploy"]);
    assert!(r.out.contains("revision 1: +1 −0 ~0"), "{r}");
    assert_eq!(
        targets(&array(env.json(&["list", "--json"]))),
        ["203.0.113.10"]
    );
    assert_eq!(env.diff()["added"].as_array().unwrap().len(), 3);

    // deploy --dry-run changes nothing; deploy --message ships the rest.
    let r = env.ok(&["deploy", "--dry-run"]);
    assert!(r.out.contains("dry run: would deploy +3 −0 ~0"), "{r}");
    assert_eq!(env.diff()["added"].as_array().unwrap().len(), 3);
    assert_eq!(history(&env).len(), 1, "a dry run makes no revision");
    let r = env.ok(&["deploy", "--message", "first batch"]);
    assert!(r.out.contains("revision 2: +3 −0 ~0"), "{r}");
    let r = env.ok(&["deploy"]);
    assert!(r.out.contains("nothing to deploy"), "{r}");
    assert_eq!(history(&env).len(), 2, "no revision for nothing");
    let rev2 = history(&env)[1].clone();
    assert_eq!(rev2["message"], "first batch");

    // list: JSON shape, the expiry counted from the deploy.
    let listed = array(env.json(&["list", "--json"]));
    assert_eq!(
        targets(&listed),
        [
            "198.51.100.7",
            "198.51.100.8",
            "203.0.113.10",
            "2001:db8::20"
        ],
        "sorted by address"
    );
    for e in &listed {
        assert_entry_shape(e);
    }
    let seven = &listed[0];
    let deployed_at = time(&rev2["deployed_at"]);
    assert_eq!(
        time(&seven["expires_at"])
            .duration_since(deployed_at)
            .unwrap(),
        Duration::from_secs(90),
        "the TTL counts from the deploy: {seven} {rev2}"
    );
    assert!(listed[1]["expires_at"].is_null() && listed[1]["ttl"].is_null());
    assert_eq!(listed[3]["ttl"], 7 * 86_400);
    let human = env.ok(&["list"]).out;
    let row = human
        .lines()
        .find(|l| l.starts_with("198.51.100.7 "))
        .unwrap_or_else(|| panic!("{human}"));
    assert!(
        row.contains("in 1m") && row.contains("Z)") && row.contains("scanner"),
        "expiry relative and absolute, and the reason: {row}"
    );
    for column in [
        "TARGET", "EXPIRES", "MONITOR", "SOURCE", "ADDED BY", "ADDED AT", "REASON",
    ] {
        assert!(human.contains(column), "{column} in\n{human}");
    }
    // --source, --match, --limit.
    assert_eq!(
        array(env.json(&["list", "--source", "manual", "--json"])).len(),
        4
    );
    assert!(array(env.json(&["list", "--source", "feed", "--json"])).is_empty());
    assert_eq!(
        targets(&array(env.json(&[
            "list",
            "--match",
            "2001:db8::20",
            "--json"
        ]))),
        ["2001:db8::20"]
    );
    assert_eq!(
        targets(&array(env.json(&["list", "--limit", "2", "--json"]))),
        ["198.51.100.7", "198.51.100.8"]
    );
    let r = env.ok(&["list", "--match", "198.51.100.8", "--limit", "1"]);
    assert!(
        r.out.contains("198.51.100.8") && !r.out.contains("198.51.100.7"),
        "{r}"
    );

    // Re-adding changes only the fields given and shows as changed; the
    // expiry stays unless --ttl says otherwise.
    env.ok(&["add", "198.51.100.7", "--reason", "scanner, confirmed"]);
    let d = env.diff();
    let changed = array(d["changed"].clone());
    assert_eq!(changed.len(), 1, "{d}");
    let c = &changed[0];
    assert_keys(
        c,
        &["before", "after", "staged_by", "staged_at"],
        "a change",
    );
    assert_entry_shape(&c["before"]);
    assert_entry_shape(&c["after"]);
    assert_eq!(c["before"]["reason"], "scanner");
    assert_eq!(c["after"]["reason"], "scanner, confirmed");
    assert_eq!(c["after"]["ttl"], 90, "the TTL is kept");
    assert_eq!(c["after"]["added_at"], c["before"]["added_at"]);
    time(&c["staged_at"]);
    env.ok(&["deploy"]);
    let after = array(env.json(&["list", "--match", "198.51.100.7", "--json"]));
    assert_eq!(
        after[0]["expires_at"], seven["expires_at"],
        "a re-add without --ttl keeps the expiry"
    );
    env.ok(&["add", "198.51.100.7", "--ttl", "1h"]);
    env.ok(&["deploy"]);
    let after = array(env.json(&["list", "--match", "198.51.100.7", "--json"]));
    assert_eq!(after[0]["ttl"], 3600);
    assert_eq!(after[0]["reason"], "scanner, confirmed");
    assert!(time(&after[0]["expires_at"]) > time(&seven["expires_at"]));

    // check: drop, monitor, pass, and protected by an allow entry.
    let c = env.json(&["check", "198.51.100.7", "--json"]);
    assert_keys(
        &c,
        &["ip", "verdict", "entry", "allowed_by", "sources"],
        "check",
    );
    assert_eq!(
        c,
        serde_json::json!({"ip": "198.51.100.7", "verdict": "drop", "entry": "198.51.100.7", "allowed_by": null, "sources": ["manual"]})
    );
    let c = env.json(&["check", "198.51.100.8", "--json"]);
    assert_eq!(c["verdict"], "monitor", "{c}");
    assert_eq!(c["entry"], "198.51.100.8", "{c}");
    let c = env.json(&["check", "203.0.113.250", "--json"]);
    assert_eq!(
        c,
        serde_json::json!({"ip": "203.0.113.250", "verdict": "pass", "entry": null, "allowed_by": null, "sources": []})
    );
    let r = env.ok(&["check", "198.51.100.7"]);
    assert!(
        r.out.contains("drop") && r.out.contains("198.51.100.7"),
        "{r}"
    );
    let r = env.ok(&["check", "198.51.100.8"]);
    assert!(r.out.contains("monitor"), "{r}");
    let r = env.ok(&["check", "203.0.113.250"]);
    assert!(r.out.contains("pass"), "{r}");

    // enforce and monitor switch existing entries; monitor --deploy ships.
    env.ok(&["enforce", "198.51.100.8"]);
    let d = env.diff();
    let c = &d["changed"][0];
    assert_eq!(
        (
            c["before"]["monitor"].clone(),
            c["after"]["monitor"].clone()
        ),
        (true.into(), false.into()),
        "{d}"
    );
    env.ok(&["deploy"]);
    assert_eq!(
        env.json(&["check", "198.51.100.8", "--json"])["verdict"],
        "drop"
    );
    env.ok(&["add", "198.51.100.9"]);
    let r = env.ok(&["monitor", "198.51.100.8", "--deploy"]);
    assert!(r.out.contains("~1") && r.out.contains("revision"), "{r}");
    assert_eq!(
        env.json(&["check", "198.51.100.8", "--json"])["verdict"],
        "monitor"
    );
    assert_eq!(
        target_set(&array(env.diff()["added"].clone())),
        set(&["198.51.100.9"]),
        "monitor --deploy leaves other changes staged"
    );
    let r = env.expect(5, &["enforce", "198.51.100.99"]);
    assert!(r.err.contains("198.51.100.99"), "{r}");
    env.expect(5, &["monitor", "198.51.100.99", "--deploy"]);

    // The allowlist: add, list, check, remove; --monitor is refused.
    let r = env.expect(2, &["allow", "add", "198.51.100.64/26", "--monitor"]);
    assert!(r.err.contains("--monitor"), "{r}");
    env.ok(&[
        "allow",
        "add",
        "198.51.100.64/26",
        "--reason",
        "partner",
        "--ttl",
        "30m",
        "--deploy",
    ]);
    let allowed = array(env.json(&["allow", "list", "--json"]));
    assert_eq!(targets(&allowed), ["198.51.100.64/26"]);
    assert_entry_shape(&allowed[0]);
    assert_eq!(allowed[0]["list"], "allow");
    assert_eq!(allowed[0]["ttl"], 1800);
    assert_eq!(allowed[0]["monitor"], false);
    assert!(
        !targets(&array(env.json(&["list", "--json"]))).contains(&"198.51.100.64/26".to_string()),
        "list shows the deny list only"
    );
    let c = env.json(&["check", "198.51.100.65", "--json"]);
    assert_eq!(
        c,
        serde_json::json!({"ip": "198.51.100.65", "verdict": "pass", "entry": null, "allowed_by": "198.51.100.64/26", "sources": ["manual"]})
    );
    let r = env.ok(&["check", "198.51.100.65"]);
    assert!(
        r.out.contains("198.51.100.64/26"),
        "names the allow entry: {r}"
    );
    assert_eq!(
        array(env.json(&[
            "allow",
            "list",
            "--match",
            "198.51.100.70",
            "--limit",
            "1",
            "--source",
            "manual",
            "--json"
        ]))
        .len(),
        1
    );
    assert!(env.ok(&["allow", "list"]).out.contains("partner"));
    env.ok(&["allow", "add", "203.0.113.0/28"]);
    assert_eq!(
        array(env.json(&["allow", "list", "--draft", "--json"])).len(),
        2
    );
    env.expect(5, &["allow", "remove", "203.0.113.128/28"]);
    env.ok(&["allow", "remove", "198.51.100.64/26", "--deploy"]);
    assert!(array(env.json(&["allow", "list", "--json"])).is_empty());

    // remove: not found names the target and stages nothing.
    env.ok(&["discard"]);
    let r = env.expect(5, &["remove", "198.51.100.99"]);
    assert!(
        r.err.contains("198.51.100.99") && r.err.contains("not on the deny list"),
        "{r}"
    );
    let r = env.expect(5, &["remove", "198.51.100.7", "198.51.100.99"]);
    assert!(r.err.contains("198.51.100.99"), "{r}");
    env.assert_nothing_staged("a remove naming one absent target");
    env.ok(&["remove", "2001:db8::20"]);
    let r = env.ok(&["remove", "198.51.100.7", "--deploy"]);
    assert!(r.out.contains("−1"), "{r}");
    let listed = targets(&array(env.json(&["list", "--json"])));
    assert!(!listed.contains(&"198.51.100.7".to_string()), "{listed:?}");
    assert!(
        listed.contains(&"2001:db8::20".to_string()),
        "still staged only"
    );
    let removed = array(env.diff()["removed"].clone());
    assert_eq!(targets(&removed), ["2001:db8::20"]);
    let mut want = ENTRY_KEYS.to_vec();
    want.extend(["staged_by", "staged_at"]);
    assert_keys(&removed[0], &want, "a removed item");

    // discard drops every pending change.
    env.ok(&["add", "198.51.100.30"]);
    let r = env.ok(&["discard"]);
    assert!(r.out.contains("discarded 2 pending changes"), "{r}");
    env.assert_nothing_staged("discard");
    let r = env.ok(&["diff"]);
    assert!(r.out.contains("no pending changes"), "{r}");
}
