//! The input rules: targets shown in normal form, an invalid one staging
//! nothing.

use crate::common::{Env, array, set, target_set, targets};

#[test]
fn targets_are_shown_in_normal_form_and_an_invalid_one_stages_nothing() {
    let env = Env::start("cli-input", &[]);

    // Normal forms: x/32 is x, IPv6 in RFC 5952, IPv4-mapped is IPv4.
    let r = env.json(&[
        "add",
        "198.51.100.7/32",
        "2001:DB8:0:0:0:0:0:1/128",
        "::ffff:198.51.100.9",
        "2001:db8:0:0:1:0:0:1",
        "--json",
    ]);
    assert_eq!(
        r["targets"],
        serde_json::json!([
            "198.51.100.7",
            "2001:db8::1",
            "198.51.100.9",
            "2001:db8::1:0:0:1"
        ]),
        "{r}"
    );
    let listed = array(env.json(&["list", "--draft", "--json"]));
    assert_eq!(
        targets(&listed),
        [
            "198.51.100.7",
            "198.51.100.9",
            "2001:db8::1",
            "2001:db8::1:0:0:1"
        ],
        "normal forms, sorted by address"
    );
    // x/32 is the same entry as x: re-adding it changes that entry.
    env.ok(&["add", "198.51.100.7", "--reason", "same entry"]);
    let d = env.diff();
    assert_eq!(d["added"].as_array().unwrap().len(), 4, "{d}");
    assert_eq!(
        env.draft_entry("198.51.100.7", "deny").unwrap()["reason"],
        "same entry"
    );
    let human = env.ok(&["list", "--draft"]).out;
    assert!(
        human.contains("198.51.100.7 ") && !human.contains("/32") && !human.contains("/128"),
        "single addresses have no prefix length:\n{human}"
    );
    assert!(human.contains("2001:db8::1:0:0:1"), "{human}");
    env.ok(&["discard"]);

    // ::ffff:10.0.0.0/104 is 10.0.0.0/8: refused as such, and forced in as such.
    let r = env.expect(3, &["add", "::ffff:10.0.0.0/104"]);
    assert!(r.err.contains("10.0.0.0/8"), "{r}");
    env.assert_nothing_staged("a refused mapped prefix");
    let r = env.json(&["add", "::ffff:10.0.0.0/104", "--force", "--json"]);
    assert_eq!(r["targets"], serde_json::json!(["10.0.0.0/8"]), "{r}");
    assert!(env.draft_entry("10.0.0.0/8", "deny").is_some());
    env.ok(&["discard"]);

    // Host bits set: refused as a guardrail refuses (exit 3, since --force
    // passes it), with both readings, and normalized with --force.
    let r = env.expect(3, &["add", "203.0.113.77/24"]);
    assert!(
        r.err
            .contains("did you mean 203.0.113.77 or 203.0.113.0/24?"),
        "{r}"
    );
    env.assert_nothing_staged("a prefix with host bits");
    let r = env.expect(3, &["add", "2001:db8::1/64"]);
    assert!(
        r.err.contains("did you mean 2001:db8::1 or 2001:db8::/64?"),
        "{r}"
    );
    let r = env.ok(&["add", "203.0.113.77/24", "--force"]);
    assert!(
        r.err.contains("203.0.113.77/24 → 203.0.113.0/24"),
        "the normal form is printed: {r}"
    );
    let r = env.json(&["add", "2001:db8::1/64", "--force", "--json"]);
    assert_eq!(r["targets"], serde_json::json!(["2001:db8::/64"]), "{r}");
    assert_eq!(
        target_set(&env.draft()),
        set(&["203.0.113.0/24", "2001:db8::/64"])
    );
    env.ok(&["discard"]);

    // Invalid forms, each with its reason; one invalid target rejects the
    // whole command.
    for (bad, reason) in [
        ("01.2.3.4", "leading zeros"),
        ("fe80::1%eth0", "zone id"),
        ("1.2.3", "short form"),
        ("256.1.1.1", "out of range"),
        ("198.51.100.0/33", "out of range"),
        ("2001:db8::/129", "out of range"),
    ] {
        let r = env.expect(2, &["add", "198.51.100.20", bad, "203.0.113.20"]);
        assert!(r.err.contains(bad), "the message names {bad}: {r}");
        assert!(r.err.contains(reason), "the reason for {bad}: {r}");
        env.assert_nothing_staged(&format!("add … {bad} …"));
        let r = env.expect(2, &["allow", "add", bad]);
        assert!(r.err.contains(reason), "{r}");
    }
    let r = env.expect(2, &["add", "01.2.3.4", "198.51.100.20", "1.2.3"]);
    assert!(
        r.err.contains("01.2.3.4") && r.err.contains("1.2.3\""),
        "every invalid target is named: {r}"
    );
    env.assert_nothing_staged("two invalid targets");

    // The same rules for the other commands that take targets or addresses.
    env.ok(&["add", "198.51.100.7", "--deploy"]);
    env.expect(2, &["remove", "198.51.100.7", "01.2.3.4"]);
    env.expect(2, &["monitor", "198.51.100.7", "fe80::1%eth0"]);
    env.expect(2, &["enforce", "198.51.100.7/33"]);
    env.expect(2, &["remove", "198.51.100.7/24"]);
    env.assert_nothing_staged("remove/monitor/enforce with an invalid target");
    env.expect(2, &["check", "1.2.3"]);
    env.expect(2, &["check", "198.51.100.0/24"]);
    env.expect(2, &["list", "--match", "01.2.3.4"]);
    let c = env.json(&["check", "::ffff:198.51.100.7", "--json"]);
    assert_eq!(c["ip"], "198.51.100.7", "{c}");
    assert_eq!(c["verdict"], "drop", "{c}");
    let m = array(env.json(&["list", "--match", "::ffff:198.51.100.7", "--json"]));
    assert_eq!(targets(&m), ["198.51.100.7"]);
    // x/32 names the same entry for removal too.
    env.ok(&["remove", "198.51.100.7/32"]);
    assert_eq!(
        targets(&array(env.diff()["removed"].clone())),
        ["198.51.100.7"]
    );
}
