//! The guardrails, which refuse with exit 3 saying why, and the warnings,
//! which must be true.

use std::net::IpAddr;

use crate::common::{Env, array, set, target_set};

#[test]
fn guardrails_refuse_with_exit_3_saying_why_and_how_many_addresses() {
    let env = Env::start("cli-guard", &[]);

    // Deny entries wider than /16 (IPv4) or /48 (IPv6).
    let r = env.expect(3, &["add", "198.50.0.0/15"]);
    assert!(
        r.err.contains("wider than /16") && r.err.contains("131072 addresses"),
        "{r}"
    );
    let r = env.expect(3, &["add", "2001:db8::/47"]);
    assert!(
        r.err.contains("wider than /48") && r.err.contains("2^81 addresses"),
        "{r}"
    );
    env.assert_nothing_staged("too wide deny entries");
    env.ok(&["add", "198.51.0.0/16", "2001:db8:1::/48"]);
    env.ok(&["discard"]);

    // Private and reserved ranges: inside them, or covering them.
    for (target, range) in [
        ("10.1.2.3", "10.0.0.0/8"),
        ("100.64.0.1", "100.64.0.0/10"),
        ("127.0.0.1", "127.0.0.0/8"),
        ("169.254.1.1", "169.254.0.0/16"),
        ("172.16.5.5", "172.16.0.0/12"),
        ("192.168.1.1", "192.168.0.0/16"),
        ("224.0.0.1", "224.0.0.0/4"),
        ("240.0.0.1", "240.0.0.0/4"),
        ("::1", "::1"),
        ("fc00::1", "fc00::/7"),
        ("fe80::1", "fe80::/10"),
        ("ff02::1", "ff00::/8"),
    ] {
        let r = env.expect(3, &["add", target]);
        assert!(
            r.err
                .contains(&format!("refusing deny entry {target} (1 address)")),
            "{r}"
        );
        assert!(
            r.err.contains(&format!("lies inside {range} (")),
            "names the range and what it is: {r}"
        );
        assert!(r.err.contains("--force"), "says what to do: {r}");
    }
    let r = env.expect(3, &["add", "169.254.0.0/16"]);
    assert!(r.err.contains("65536 addresses"), "{r}");
    let r = env.expect(3, &["add", "::/127"]);
    assert!(r.err.contains("covers ::1 (loopback)"), "{r}");
    let r = env.expect(3, &["add", "0.0.0.0/0"]);
    assert!(r.err.contains("4294967296 addresses"), "{r}");
    env.assert_nothing_staged("refused reserved ranges");
    // One refused target refuses the command.
    env.expect(3, &["add", "198.51.100.1", "10.1.2.3"]);
    env.assert_nothing_staged("a command with one refused target");

    // The documentation ranges are allowed, unless they hold this host's own
    // addresses (a test host may use 192.0.2.0/24).
    let host = denylist::policy::host_addresses().expect("host addresses");
    let mut docs = vec!["198.51.100.0/24", "203.0.113.0/24", "2001:db8:ffff::/48"];
    let test_net_1: IpAddr = "192.0.2.0".parse().unwrap();
    let on_test_net_1 = host.iter().find(|a| match (a, test_net_1) {
        (IpAddr::V4(a), IpAddr::V4(n)) => a.octets()[..3] == n.octets()[..3],
        _ => false,
    });
    if on_test_net_1.is_none() {
        docs.push("192.0.2.0/24");
    }
    let mut args = vec!["add"];
    args.extend(&docs);
    env.ok(&args);
    env.ok(&["discard"]);
    // This host's own addresses.
    if let Some(own) = on_test_net_1 {
        let own = own.to_string();
        let r = env.expect(3, &["add", &own]);
        assert!(r.err.contains("an address of this host"), "{r}");
    }

    // The allowlist: wider than /16 (IPv4) or /32 (IPv6) is refused; the
    // private-range rule does not apply to it.
    let r = env.expect(3, &["allow", "add", "198.50.0.0/15"]);
    assert!(
        r.err.contains("refusing allow entry")
            && r.err.contains("wider than /16")
            && r.err.contains("131072 addresses"),
        "{r}"
    );
    let r = env.expect(3, &["allow", "add", "2001:db8::/31"]);
    assert!(
        r.err.contains("wider than /32") && r.err.contains("2^97 addresses"),
        "{r}"
    );
    env.assert_nothing_staged("too wide allow entries");
    env.ok(&[
        "allow",
        "add",
        "10.1.0.0/16",
        "2001:db8::/32",
        "198.51.0.0/16",
    ]);
    env.ok(&["discard"]);

    // The address the admin is connected from.
    let ssh = [("SSH_CONNECTION", "198.51.100.50 5555 192.0.2.1 22")];
    for target in ["198.51.100.50", "198.51.100.0/24"] {
        let r = env.check(3, env.dl_env(&["add", target], &ssh));
        assert!(
            r.err
                .contains("198.51.100.50, the address you are connected from"),
            "{r}"
        );
    }
    let r = env.check(3, env.dl_env(&["add", "198.51.100.0/24"], &ssh));
    assert!(r.err.contains("256 addresses"), "{r}");
    env.assert_nothing_staged("refusing the admin's own address");
    env.check(0, env.dl_env(&["add", "198.51.100.51"], &ssh));
    env.check(0, env.dl_env(&["add", "198.51.100.50", "--force"], &ssh));
    env.ok(&["discard"]);

    // --force passes every rule.
    env.ok(&[
        "add",
        "198.50.0.0/15",
        "10.1.2.3",
        "::1",
        "fe80::1",
        "--force",
    ]);
    env.ok(&["allow", "add", "198.50.0.0/15", "--force"]);
    assert_eq!(
        target_set(&env.draft()),
        set(&["198.50.0.0/15", "10.1.2.3", "::1", "fe80::1"]),
        "both 198.50.0.0/15 entries (deny and allow) and the rest"
    );
    env.ok(&["discard"]);

    // Warnings need no --force: a deny entry under a deployed allow entry,
    // and an entry covering existing entries.
    env.ok(&["allow", "add", "2001:db8::/32", "--deploy"]);
    let r = env.ok(&["add", "2001:db8::5"]);
    assert!(
        r.err.contains("warning:") && r.err.contains("allow"),
        "warns that an allow entry covers it: {r}"
    );
    env.ok(&["add", "203.0.113.9", "--deploy"]);
    let r = env.ok(&["add", "203.0.113.0/24"]);
    assert!(
        r.err.contains("warning:")
            && r.err.contains("203.0.113.0/24 covers 1 existing")
            && r.err.contains("203.0.113.9"),
        "warns that it covers 203.0.113.9: {r}"
    );
    let added = target_set(&array(env.diff()["added"].clone()));
    assert_eq!(
        added,
        set(&["2001:db8::5", "203.0.113.0/24"]),
        "both staged"
    );
}

/// A warning must be true: a deny prefix that an allow entry covers only in
/// part still drops the rest, so it must not be told it never drops
/// anything. (docs/api.md words this warning as "a deny target whose first
/// address a deployed allow entry covers", which is where it goes wrong.)
#[test]
fn a_partly_allowed_deny_prefix_is_not_said_to_drop_nothing() {
    let env = Env::start("cli-warn", &[]);
    // The warning that is true still comes.
    env.ok(&["allow", "add", "198.51.100.0/25", "--deploy"]);
    let r = env.ok(&["add", "198.51.100.7"]);
    assert!(r.err.contains("warning:"), "{r}");
    // 198.51.100.128/25 is not allowed: the /24 does drop.
    let r = env.ok(&["add", "198.51.100.0/24", "--deploy"]);
    let c = env.json(&["check", "198.51.100.200", "--json"]);
    assert_eq!(c["verdict"], "drop", "{c}");
    assert!(
        !r.err.contains("never drop anything"),
        "198.51.100.0/24 is only half under allow 198.51.100.0/25 and drops \
         198.51.100.200, yet the warning says it never drops anything:\n{r}"
    );
}
