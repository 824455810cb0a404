//! The `denylist` CLI end to end: the real binary against a real denylistd
//! (no interface), one daemon per test, every command and flag of the
//! contract with its exit code, the input rules, the guardrails, the JSON
//! shapes and every import format.
//!
//! Exit codes: 0 success, 1 failure, 2 invalid, 3 guarded, 4 permission
//! denied, 5 not found, 6 conflict.

use std::{
    collections::BTreeSet,
    io::Write as _,
    net::IpAddr,
    path::PathBuf,
    process::{Command, Stdio},
    thread,
    time::{Duration, SystemTime},
};

use denylist_tests::{
    daemon::{Daemon, Home, bin},
    require_root,
};
use serde_json::Value;

/// The fields of an entry in `list --json`, `export` and the diff.
const ENTRY_KEYS: [&str; 9] = [
    "target",
    "list",
    "reason",
    "ttl",
    "expires_at",
    "monitor",
    "source",
    "added_by",
    "added_at",
];

/// One run of the CLI.
struct Run {
    what: String,
    code: i32,
    out: String,
    err: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.out)
            .unwrap_or_else(|e| panic!("{}: stdout is not JSON ({e}):\n{}", self.what, self.out))
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` exited {}\n--- stdout\n{}--- stderr\n{}",
            self.what, self.code, self.out, self.err
        )
    }
}

/// A daemon of its own for one test; the daemon goes first on drop, then
/// its directories.
struct Env {
    daemon: Daemon,
    home: Home,
}

impl Env {
    fn start(tag: &str, extra: &[&str]) -> Self {
        require_root();
        let home = Home::new(tag);
        let mut args = vec!["--capacity", "4096"];
        args.extend_from_slice(extra);
        let daemon = Daemon::start(&home, None, &args);
        Self { daemon, home }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("denylist"));
        c.arg("--socket")
            .arg(self.home.socket())
            .args(args)
            .current_dir(self.home.dir.path())
            // The guardrails read where the admin is connected from: only
            // the tests that mean to set it do.
            .env_remove("SSH_CONNECTION")
            .env_remove("SSH_CLIENT")
            .env_remove("DENYLIST_SOCKET");
        c
    }

    fn exec(&self, mut c: Command, what: String, stdin: Option<&[u8]>) -> Run {
        c.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = c.spawn().expect("run denylist");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(input).expect("write stdin");
        }
        let out = child.wait_with_output().expect("wait for denylist");
        Run {
            what,
            code: out.status.code().unwrap_or(-1),
            out: String::from_utf8_lossy(&out.stdout).into_owned(),
            err: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn dl(&self, args: &[&str]) -> Run {
        self.exec(self.command(args), args.join(" "), None)
    }

    fn dl_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut c = self.command(args);
        c.envs(env.iter().copied());
        self.exec(c, args.join(" "), None)
    }

    fn dl_stdin(&self, args: &[&str], input: &[u8]) -> Run {
        self.exec(
            self.command(args),
            format!("{} < input", args.join(" ")),
            Some(input),
        )
    }

    /// Runs and checks the exit code.
    #[track_caller]
    fn expect(&self, code: i32, args: &[&str]) -> Run {
        let r = self.dl(args);
        self.check(code, r)
    }

    #[track_caller]
    fn check(&self, code: i32, r: Run) -> Run {
        assert_eq!(
            r.code,
            code,
            "{r}--- denylistd log\n{}",
            self.daemon.log_text()
        );
        r
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> Run {
        self.expect(0, args)
    }

    #[track_caller]
    fn json(&self, args: &[&str]) -> Value {
        self.ok(args).json()
    }

    /// The pending changes, as `diff --json` shows them.
    #[track_caller]
    fn diff(&self) -> Value {
        self.json(&["diff", "--json"])
    }

    #[track_caller]
    fn assert_nothing_staged(&self, after: &str) {
        let d = self.diff();
        assert_eq!(
            d,
            serde_json::json!({"added": [], "removed": [], "changed": []}),
            "nothing may be staged after {after}"
        );
    }

    /// The draft's entries of both lists.
    #[track_caller]
    fn draft(&self) -> Vec<Value> {
        array(self.json(&["export", "--draft", "--format", "json"]))
    }

    /// The draft's entry for `target` on `list`.
    #[track_caller]
    fn draft_entry(&self, target: &str, list: &str) -> Option<Value> {
        self.draft()
            .into_iter()
            .find(|e| e["target"] == target && e["list"] == list)
    }

    fn file(&self, name: &str, content: &[u8]) -> PathBuf {
        let p = self.home.dir.path().join(name);
        std::fs::write(&p, content).expect("write a test file");
        p
    }

    fn path(&self, name: &str) -> String {
        self.home.dir.path().join(name).display().to_string()
    }
}

#[track_caller]
fn array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items,
        other => panic!("not a JSON array: {other}"),
    }
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not a JSON object: {v}"))
        .keys()
        .cloned()
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[track_caller]
fn assert_keys(v: &Value, want: &[&str], what: &str) {
    assert_eq!(keys(v), set(want), "the keys of {what}: {v}");
}

#[track_caller]
fn assert_entry_shape(e: &Value) {
    assert_keys(e, &ENTRY_KEYS, "an entry");
    assert!(e["target"].is_string(), "{e}");
    assert!(e["list"] == "deny" || e["list"] == "allow", "{e}");
    assert!(e["reason"].is_string() || e["reason"].is_null(), "{e}");
    assert!(
        e["ttl"].is_u64() || e["ttl"].is_null(),
        "ttl in seconds: {e}"
    );
    assert!(e["monitor"].is_boolean(), "{e}");
    assert!(e["source"].is_string() && e["added_by"].is_string(), "{e}");
    time(&e["added_at"]);
    if !e["expires_at"].is_null() {
        time(&e["expires_at"]);
    }
}

/// An RFC 3339 time of the API.
#[track_caller]
fn time(v: &Value) -> SystemTime {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("a time must be a string: {v}"));
    humantime::parse_rfc3339(s).unwrap_or_else(|e| panic!("{s:?} is not RFC 3339: {e}"))
}

fn targets(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["target"].as_str().expect("target").to_string())
        .collect()
}

fn target_set(entries: &[Value]) -> BTreeSet<String> {
    targets(entries).into_iter().collect()
}

/// The revisions, as `history --json` shows them.
#[track_caller]
fn history(env: &Env) -> Vec<Value> {
    array(env.json(&["history", "--json"]))
}

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

    // Host bits set: refused with both readings, normalized with --force.
    let r = env.expect(2, &["add", "203.0.113.77/24"]);
    assert!(
        r.err
            .contains("did you mean 203.0.113.77 or 203.0.113.0/24?"),
        "{r}"
    );
    env.assert_nothing_staged("a prefix with host bits");
    let r = env.expect(2, &["add", "2001:db8::1/64"]);
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
    let host = denylist::guard::host_addresses().expect("host addresses");
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
    assert_keys(&d, &["added", "removed", "changed"], "the diff");
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
    assert_keys(&c, &["ip", "verdict", "entry", "allowed_by"], "check");
    assert_eq!(
        c,
        serde_json::json!({"ip": "198.51.100.7", "verdict": "drop", "entry": "198.51.100.7", "allowed_by": null})
    );
    let c = env.json(&["check", "198.51.100.8", "--json"]);
    assert_eq!(c["verdict"], "monitor", "{c}");
    assert_eq!(c["entry"], "198.51.100.8", "{c}");
    let c = env.json(&["check", "203.0.113.250", "--json"]);
    assert_eq!(
        c,
        serde_json::json!({"ip": "203.0.113.250", "verdict": "pass", "entry": null, "allowed_by": null})
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
        serde_json::json!({"ip": "198.51.100.65", "verdict": "pass", "entry": null, "allowed_by": "198.51.100.64/26"})
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
        r.out.contains("the draft now equals revision 1")
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
        r.err.contains("degraded") && r.err.contains("denylist attach dl-missing"),
        "says why and what to do: {r}"
    );
    let r = env.expect(1, &["status", "--json"]);
    let s = r.json();
    // The spec's keys, plus `drift` and `degraded` (documented on Status).
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
    let r = env.ok(&["status"]);
    assert!(r.out.contains("revision    0"), "{r}");

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

#[test]
fn errors_have_one_exit_code_per_class() {
    let env = Env::start("cli-errors", &[]);

    // Daemon unreachable: 1.
    let missing = env.path("no-such.sock");
    for args in [&["status"][..], &["add", "198.51.100.1"], &["list"]] {
        let mut c = Command::new(bin("denylist"));
        c.arg("--socket").arg(&missing).args(args);
        let r = env.exec(c, format!("--socket {missing} {}", args.join(" ")), None);
        assert_eq!(r.code, 1, "{r}");
        assert!(
            r.err.contains("cannot reach denylistd") && r.err.contains("is it running?"),
            "{r}"
        );
        assert!(r.err.contains(&missing), "names the socket: {r}");
    }

    // Invalid: 2, guarded: 3, not found: 5, conflict: 6.
    env.expect(2, &["add", "1.2.3"]);
    env.expect(2, &["add", "198.51.100.1", "--ttl", "soon"]);
    env.expect(2, &["add", "198.51.100.1", "--ttl", "0s"]);
    env.expect(2, &["no-such-command"]);
    env.expect(2, &["add"]);
    env.expect(3, &["add", "10.0.0.1"]);
    env.expect(5, &["remove", "198.51.100.1"]);
    env.expect(5, &["rollback", "1"]);
    env.ok(&["add", "198.51.100.1", "--deploy"]);
    env.ok(&["add", "198.51.100.2"]);
    env.expect(6, &["rollback", "1"]);
    env.ok(&["discard"]);

    // Permission denied: 4, for a user in neither group.
    let user = format!("dlcli{}", std::process::id() % 100_000);
    let account = Account::create(&user);
    std::fs::set_permissions(
        env.home.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("let the user reach the socket");
    let as_user = |args: &[&str], stdin: Option<&[u8]>| {
        let mut c = Command::new("setpriv");
        c.args([
            &format!("--reuid={user}"),
            &format!("--regid={user}"),
            "--init-groups",
            "--",
        ])
        .arg(bin("denylist"))
        .arg("--socket")
        .arg(env.home.socket())
        .args(args)
        .current_dir("/")
        .env_remove("SSH_CONNECTION")
        .env_remove("SSH_CLIENT");
        env.exec(c, format!("(as {user}) {}", args.join(" ")), stdin)
    };
    for args in [
        &["status"][..],
        &["list"],
        &["diff"],
        &["check", "198.51.100.1"],
    ] {
        let r = as_user(args, None);
        assert_eq!(r.code, 4, "{r}");
        assert!(
            r.err.contains("permission denied") && r.err.contains("add yourself to group denylist"),
            "{r}"
        );
    }
    for args in [
        &["add", "198.51.100.9"][..],
        &["remove", "198.51.100.1"],
        &["deploy"],
        &["discard"],
        &["rollback", "1", "--force"],
    ] {
        let r = as_user(args, None);
        assert_eq!(r.code, 4, "{r}");
        assert!(r.err.contains("denylist-admin"), "names the group: {r}");
    }
    let r = as_user(&["import", "-"], Some(b"198.51.100.9\n"));
    assert_eq!(r.code, 4, "{r}");
    drop(account);
    env.assert_nothing_staged("refused requests");
    assert_eq!(history(&env).len(), 1);
}

/// A user made for one test, removed afterwards, even when it fails.
struct Account(String);

impl Account {
    fn create(name: &str) -> Self {
        quietly(Command::new("userdel").arg(name));
        quietly(Command::new("groupdel").arg(name));
        let out = Command::new("useradd")
            .args(["-M", "-U", name])
            .output()
            .expect("useradd");
        assert!(
            out.status.success(),
            "useradd {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(name.to_string())
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        quietly(Command::new("userdel").arg(&self.0));
        // useradd -U made the group; userdel usually removes it with the user.
        quietly(Command::new("groupdel").arg(&self.0));
    }
}

/// Runs a clean-up command whose failure (nothing to clean) does not matter.
fn quietly(c: &mut Command) {
    let _ = c.stdout(Stdio::null()).stderr(Stdio::null()).status();
}

/// A plain list with a UTF-8 BOM, CRLF line ends, `#` and `;` comments and
/// blank lines.
const PLAIN: &[u8] = b"\xEF\xBB\xBF# blocked scanners\r\n198.51.100.101\r\n; a semicolon comment\r\n\r\n  198.51.100.102 # trailing comment\r\n203.0.113.64/26\r\n2001:DB8:0:0::10\r\n";

const SPAMHAUS: &[u8] = b"; Spamhaus DROP List 2026/11/28 - (c) 2026 The Spamhaus Project SLU
; https://www.spamhaus.org/drop/drop.txt
; Last-Modified: Sat, 28 Nov 2026 10:00:00 GMT
198.51.100.128/25 ; SBL000111
203.0.113.16/28 ; SBL000222
";

/// drop_v4.json style: one record a line, and the metadata record last.
const SPAMHAUS_JSON: &[u8] = br#"{"cidr":"198.51.100.96/27","sblid":"SBL000333","rir":"arin"}
{"cidr":"2001:db8:5::/48","sblid":"SBL000444","rir":"ripencc"}
{"type":"metadata","timestamp":1795867200,"size":2,"records":2,"copyright":"(c) 2026 The Spamhaus Project SLU","terms":"https://www.spamhaus.org/drop/terms/"}
"#;

const FIREHOL: &[u8] = b"#
# firehol_level1
#
# ipv4 hash:net ipset
#
# A firewall blacklist composed from IP lists, providing
# maximum protection with minimum false positives.
#
# Maintainer      : FireHOL
#
198.51.100.200
203.0.113.200/30
";

const OUR_JSON: &[u8] = br#"[
  {"target": "198.51.100.77", "list": "deny", "reason": "from elsewhere", "ttl": 3600,
   "expires_at": null, "monitor": true, "source": "import:partner", "added_by": "alice",
   "added_at": "2026-01-02T03:04:05.000Z"},
  {"target": "2001:db8:77::/48", "list": "allow", "reason": null, "ttl": null,
   "expires_at": null, "monitor": false, "source": "manual", "added_by": "bob",
   "added_at": "2026-01-02T03:04:06.000Z"}
]
"#;

/// A file name, its content, its format, the draft's targets after the
/// import, and the reasons by target.
type FormatCase = (
    &'static str,
    &'static [u8],
    &'static str,
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
);

#[test]
fn import_reads_every_format_and_detects_it() {
    let env = Env::start("cli-import", &[]);

    let cases: [FormatCase; 4] = [
        (
            "plain.txt",
            PLAIN,
            "plain",
            &[
                "198.51.100.101",
                "198.51.100.102",
                "203.0.113.64/26",
                "2001:db8::10",
            ],
            &[],
        ),
        (
            "drop.txt",
            SPAMHAUS,
            "spamhaus",
            &["198.51.100.128/25", "203.0.113.16/28"],
            &[
                ("198.51.100.128/25", "SBL000111"),
                ("203.0.113.16/28", "SBL000222"),
            ],
        ),
        (
            "drop_v4.json",
            SPAMHAUS_JSON,
            "spamhaus-json",
            &["198.51.100.96/27", "2001:db8:5::/48"],
            &[
                ("198.51.100.96/27", "SBL000333"),
                ("2001:db8:5::/48", "SBL000444"),
            ],
        ),
        (
            "level1.netset",
            FIREHOL,
            "firehol",
            &["198.51.100.200", "203.0.113.200/30"],
            &[],
        ),
    ];
    for (name, content, format, want, reasons) in cases {
        let file = env.file(name, content);
        let file = file.to_str().unwrap();
        for given in ["auto", format] {
            let r = env.json(&["import", file, "--format", given, "--json"]);
            assert_eq!(r["format"], format, "{name} with --format {given}: {r}");
            assert_eq!(r["source"], name, "the source is the file name: {r}");
            assert_eq!(r["entries"], want.len(), "{r}");
            assert_eq!(r["added"], want.len(), "{r}");
            assert_eq!(
                (r["skipped_invalid"].clone(), r["skipped_guarded"].clone()),
                (0.into(), serde_json::json!([]))
            );
            let draft = env.draft();
            assert_eq!(
                target_set(&draft),
                set(want),
                "{name} with --format {given}"
            );
            for e in &draft {
                assert_eq!(e["source"], format!("import:{name}"), "{e}");
                assert_eq!(e["list"], "deny", "{e}");
                let reason = reasons
                    .iter()
                    .find(|(t, _)| e["target"] == *t)
                    .map(|(_, r)| Value::from(*r))
                    .unwrap_or(Value::Null);
                assert_eq!(e["reason"], reason, "{name}: {e}");
            }
            env.ok(&["discard"]);
        }
    }

    // The human summary.
    let file = env.path("drop.txt");
    let r = env.ok(&["import", &file]);
    assert!(
        r.out
            .contains("staged: +2 −0 ~0 from 2 entries (format spamhaus, source drop.txt)"),
        "{r}"
    );
    env.ok(&["discard"]);
    // --reason replaces the SBL id; --source names the import.
    env.ok(&[
        "import",
        &file,
        "--reason",
        "spamhaus drop",
        "--source",
        "sh-drop",
    ]);
    for e in env.draft() {
        assert_eq!(e["reason"], "spamhaus drop", "{e}");
        assert_eq!(e["source"], "import:sh-drop", "{e}");
    }
    assert_eq!(
        array(env.json(&["list", "--draft", "--source", "sh-drop", "--json"])).len(),
        2,
        "list --source takes the import's name"
    );
    env.ok(&["discard"]);
    // A Spamhaus file without its header is still recognized by its SBL ids.
    let bare = env.file("bare.txt", b"198.51.100.128/25 ; SBL000111\n");
    let r = env.json(&["import", bare.to_str().unwrap(), "--json"]);
    assert_eq!(r["format"], "spamhaus", "{r}");
    env.ok(&["discard"]);

    // Our own JSON: both lists, every field kept.
    let file = env.file("exported.json", OUR_JSON);
    for given in ["auto", "json"] {
        let r = env.json(&[
            "import",
            file.to_str().unwrap(),
            "--format",
            given,
            "--json",
        ]);
        assert_eq!(r["format"], "json", "{r}");
        assert_eq!(r["entries"], 2, "{r}");
        let draft = env.draft();
        let want: Vec<Value> = array(serde_json::from_slice(OUR_JSON).unwrap());
        assert_eq!(draft, want, "every field of both entries, as exported");
        env.ok(&["discard"]);
    }

    // Standard input: `-`, source stdin.
    let r = env.check(0, env.dl_stdin(&["import", "-", "--json"], PLAIN));
    let r = r.json();
    assert_eq!(
        (r["format"].clone(), r["source"].clone()),
        ("plain".into(), "stdin".into()),
        "{r}"
    );
    for e in env.draft() {
        assert_eq!(e["source"], "import:stdin", "{e}");
    }
    env.ok(&["discard"]);
    let r = env.check(
        0,
        env.dl_stdin(
            &[
                "import",
                "-",
                "--format",
                "spamhaus-json",
                "--source",
                "feed",
            ],
            SPAMHAUS_JSON,
        ),
    );
    assert!(r.out.contains("source feed"), "{r}");
    env.ok(&["discard"]);

    env.expect(2, &["import", "plain.txt", "--format", "csv"]);
    let r = env.expect(2, &["import", "/no/such/file"]);
    assert!(r.err.contains("/no/such/file"), "{r}");
    let plain = env.path("plain.txt");
    env.expect(2, &["import", &plain, "--source", "two words"]);
    env.assert_nothing_staged("refused imports");
}

#[test]
fn import_rejects_invalid_and_guarded_lines_unless_told_otherwise() {
    let env = Env::start("cli-import-bad", &[]);

    // Three bad lines: all listed with number and text, nothing staged.
    let bad = env.file(
        "bad.txt",
        b"198.51.100.1\nbogus\n01.2.3.4\n198.51.100.2\n1.2.3\n",
    );
    let bad = bad.to_str().unwrap();
    let r = env.expect(2, &["import", bad]);
    for line in ["line 2: 'bogus'", "line 3: '01.2.3.4'", "line 5: '1.2.3'"] {
        assert!(r.err.contains(line), "{line}: {r}");
    }
    assert!(
        r.err.contains("leading zeros") && r.err.contains("short form"),
        "why: {r}"
    );
    assert!(
        r.err.contains("3 invalid lines") && r.err.contains("--skip-invalid"),
        "{r}"
    );
    env.assert_nothing_staged("an import with invalid lines");
    let r = env.json(&["import", bad, "--skip-invalid", "--json"]);
    assert_eq!(
        (r["skipped_invalid"].clone(), r["entries"].clone()),
        (3.into(), 2.into()),
        "{r}"
    );
    assert_eq!(
        target_set(&env.draft()),
        set(&["198.51.100.1", "198.51.100.2"])
    );
    let r = env.ok(&["import", bad, "--skip-invalid"]);
    assert!(r.out.contains("skipped 3 invalid lines"), "{r}");
    env.ok(&["discard"]);
    // Line numbers count past a BOM and CRLF; the text has no \r.
    let crlf = env.file("crlf.txt", b"\xEF\xBB\xBF198.51.100.3\r\n\r\nnope\r\n");
    let r = env.expect(2, &["import", crlf.to_str().unwrap()]);
    assert!(r.err.contains("line 3: 'nope'"), "{r}");
    // The JSON format names the bad element.
    let json = env.file(
        "bad.json",
        br#"[{"target": "198.51.100.3"}, {"target": "198.51.100.3/24"}, {"tgt": "x"}]"#,
    );
    let r = env.expect(2, &["import", json.to_str().unwrap()]);
    assert!(r.err.contains("line 2") && r.err.contains("line 3"), "{r}");
    env.assert_nothing_staged("invalid JSON entries");

    // Guarded lines: listed, and the import refused...
    let level1 =
        b"#\n# FireHOL level1 test\n#\n198.51.100.210\n10.0.0.0/8\n192.168.0.0/16\n203.0.113.210\n";
    let fh = env.file("level1.netset", level1);
    let fh = fh.to_str().unwrap();
    let r = env.expect(3, &["import", fh]);
    assert!(
        r.err.contains("line 5:") && r.err.contains("10.0.0.0/8"),
        "{r}"
    );
    assert!(
        r.err.contains("line 6:") && r.err.contains("192.168.0.0/16"),
        "{r}"
    );
    assert!(
        r.err.contains("--force") && r.err.contains("--skip-guarded"),
        "{r}"
    );
    assert!(r.err.contains("16777216 addresses"), "how many: {r}");
    env.assert_nothing_staged("an import with guarded lines");
    // ...unless left out...
    let r = env.json(&["import", fh, "--skip-guarded", "--json"]);
    assert_eq!(
        r["skipped_guarded"],
        serde_json::json!(["10.0.0.0/8", "192.168.0.0/16"]),
        "{r}"
    );
    assert_eq!(
        target_set(&env.draft()),
        set(&["198.51.100.210", "203.0.113.210"])
    );
    let r = env.ok(&["import", fh, "--skip-guarded"]);
    assert!(
        r.out.contains("10.0.0.0/8") && r.out.contains("192.168.0.0/16"),
        "listed: {r}"
    );
    env.ok(&["discard"]);
    // ...or let in.
    env.ok(&["import", fh, "--force"]);
    assert_eq!(
        target_set(&env.draft()),
        set(&[
            "198.51.100.210",
            "10.0.0.0/8",
            "192.168.0.0/16",
            "203.0.113.210"
        ])
    );
    env.ok(&["discard"]);
    env.expect(2, &["import", fh, "--force", "--skip-guarded"]);
    // Both at once: invalid lines are reported first.
    let both = env.file("both.txt", b"10.0.0.0/8\nbogus\n198.51.100.5\n");
    let both = both.to_str().unwrap();
    env.expect(2, &["import", both]);
    env.expect(3, &["import", both, "--skip-invalid"]);
    let r = env.json(&["import", both, "--skip-invalid", "--skip-guarded", "--json"]);
    assert_eq!(r["entries"], 1, "{r}");
    env.ok(&["discard"]);

    // The admin's own address, from SSH_CONNECTION.
    let ssh = [("SSH_CONNECTION", "198.51.100.50 5555 192.0.2.1 22")];
    let mine = env.file("mine.txt", b"198.51.100.0/24\n");
    let r = env.check(3, env.dl_env(&["import", mine.to_str().unwrap()], &ssh));
    assert!(r.err.contains("the address you are connected from"), "{r}");
    env.assert_nothing_staged("an import of the admin's address");
    // The guardrails of the allowlist apply to allow entries of a JSON import.
    let wide_allow = serde_json::json!([
        full_entry("198.50.0.0/15", "allow"),
        full_entry("10.1.0.0/16", "allow"),
    ]);
    let wide_allow = env.file("allow.json", wide_allow.to_string().as_bytes());
    let r = env.expect(3, &["import", wide_allow.to_str().unwrap()]);
    assert!(
        r.err.contains("198.50.0.0/15") && !r.err.contains("10.1.0.0/16"),
        "{r}"
    );
    env.assert_nothing_staged("a JSON import of a too wide allow entry");

    // A JSON entry with only some fields: the parser takes it as an entry
    // (only "target" is required), so either it is staged, or it is an
    // invalid line like any other, numbered, that --skip-invalid leaves out.
    let partial = serde_json::json!([
        {"target": "198.51.100.3", "list": "allow"},
        full_entry("198.51.100.4", "deny"),
    ]);
    let partial = env.file("partial.json", partial.to_string().as_bytes());
    let partial = partial.to_str().unwrap();
    let r = env.dl(&["import", partial]);
    match r.code {
        0 => assert_eq!(
            target_set(&env.draft()),
            set(&["198.51.100.3", "198.51.100.4"]),
            "{r}"
        ),
        2 => {
            assert!(
                r.err.contains("line 1"),
                "the partial entry is an invalid line, and says which: {r}"
            );
            env.assert_nothing_staged("an import with an invalid JSON entry");
            let r = env.dl(&["import", partial, "--skip-invalid"]);
            assert_eq!(
                r.code, 0,
                "--skip-invalid leaves out the partial entry: {r}"
            );
            assert_eq!(target_set(&env.draft()), set(&["198.51.100.4"]), "{r}");
        }
        _ => panic!("{r}"),
    }
}

/// An entry of our JSON export with every field.
fn full_entry(target: &str, list: &str) -> Value {
    serde_json::json!({
        "target": target, "list": list, "reason": null, "ttl": null,
        "expires_at": null, "monitor": false, "source": "manual",
        "added_by": "root", "added_at": "2026-01-02T03:04:05.000Z",
    })
}

#[test]
fn import_replace_merge_ttl_and_the_export_round_trip() {
    let env = Env::start("cli-roundtrip", &[]);

    // Entries of both lists with every kind of field.
    env.ok(&[
        "add",
        "198.51.100.80",
        "--reason",
        "round trip",
        "--ttl",
        "7d",
        "--monitor",
    ]);
    env.ok(&[
        "add",
        "2001:db8:80::/48",
        "--reason",
        "v6 block",
        "--ttl",
        "never",
    ]);
    env.ok(&["add", "203.0.113.96/27"]);
    env.ok(&[
        "allow",
        "add",
        "203.0.113.80",
        "--reason",
        "partner",
        "--ttl",
        "30m",
    ]);
    env.ok(&["allow", "add", "2001:db8:81::/48", "--reason", "v6 partner"]);
    env.ok(&["deploy"]);

    // export: plain is one list, deny unless asked; json both, or one.
    let plain = env.ok(&["export", "--format", "plain"]).out;
    assert_eq!(plain, "198.51.100.80\n203.0.113.96/27\n2001:db8:80::/48\n");
    let plain = env
        .ok(&["export", "--format", "plain", "--list", "deny"])
        .out;
    assert_eq!(plain, "198.51.100.80\n203.0.113.96/27\n2001:db8:80::/48\n");
    let plain = env
        .ok(&["export", "--format", "plain", "--list", "allow"])
        .out;
    assert_eq!(plain, "203.0.113.80\n2001:db8:81::/48\n");
    assert_eq!(array(env.json(&["export", "--list", "allow"])).len(), 2);
    assert_eq!(
        array(env.json(&["export", "--list", "deny", "--format", "json"])).len(),
        3
    );
    env.ok(&["add", "198.51.100.81"]);
    assert_eq!(array(env.json(&["export"])).len(), 5);
    assert_eq!(array(env.json(&["export", "--draft"])).len(), 6);
    env.ok(&["discard"]);

    let exported = env.ok(&["export", "--format", "json"]).out;
    let before = array(serde_json::from_str(&exported).unwrap());
    assert_eq!(before.len(), 5);
    for e in &before {
        assert_entry_shape(e);
    }
    let file = env.file("export.json", exported.as_bytes());
    // Everything goes away...
    env.ok(&[
        "remove",
        "198.51.100.80",
        "2001:db8:80::/48",
        "203.0.113.96/27",
    ]);
    env.ok(&["allow", "remove", "203.0.113.80", "2001:db8:81::/48"]);
    env.ok(&["deploy"]);
    assert!(array(env.json(&["export"])).is_empty());
    // ...and comes back from the export.
    let r = env.json(&["import", file.to_str().unwrap(), "--json"]);
    assert_eq!(
        (r["format"].clone(), r["added"].clone()),
        ("json".into(), 5.into()),
        "{r}"
    );
    env.ok(&["deploy"]);
    let after = array(env.json(&["export"]));
    assert_eq!(targets(&after), targets(&before));
    for (b, a) in before.iter().zip(&after) {
        // Every field round-trips except expires_at: an expiry counts from
        // the deploy that puts the entry into effect, so it restarts.
        for k in ENTRY_KEYS.iter().filter(|k| **k != "expires_at") {
            assert_eq!(a[k], b[k], "{k} of {}", b["target"]);
        }
        assert_eq!(a["expires_at"].is_null(), b["ttl"].is_null(), "{a}");
        if !b["expires_at"].is_null() {
            assert!(
                time(&a["expires_at"]) >= time(&b["expires_at"]),
                "{b} → {a}"
            );
        }
    }

    // --replace syncs a feed: its entries become exactly the file's.
    let r = env.dl_stdin(
        &["import", "-", "--source", "feed", "--deploy"],
        b"198.51.100.151\n198.51.100.152\n",
    );
    let r = env.check(0, r);
    assert!(r.out.contains("revision"), "--deploy: {r}");
    env.ok(&["add", "198.51.100.160", "--reason", "by hand", "--deploy"]);
    env.check(
        0,
        env.dl_stdin(
            &["import", "-", "--source", "other", "--deploy"],
            b"198.51.100.170\n",
        ),
    );
    let r = env.dl_stdin(
        &["import", "-", "--source", "feed", "--replace", "--json"],
        b"198.51.100.152\n198.51.100.153\n",
    );
    let r = env.check(0, r).json();
    assert_eq!(
        (
            r["added"].clone(),
            r["removed"].clone(),
            r["changed"].clone()
        ),
        (1.into(), 1.into(), 0.into()),
        "{r}"
    );
    let feed = array(env.json(&["list", "--draft", "--source", "feed", "--json"]));
    assert_eq!(targets(&feed), ["198.51.100.152", "198.51.100.153"]);
    let d = env.diff();
    assert_eq!(
        targets(&array(d["removed"].clone())),
        ["198.51.100.151"],
        "{d}"
    );
    assert_eq!(
        targets(&array(d["added"].clone())),
        ["198.51.100.153"],
        "{d}"
    );
    assert!(
        d["changed"].as_array().unwrap().is_empty(),
        "others untouched: {d}"
    );
    let draft = target_set(&env.draft());
    assert!(
        draft.contains("198.51.100.160") && draft.contains("198.51.100.170"),
        "{draft:?}"
    );
    env.ok(&["deploy"]);

    // Duplicates within a file merge.
    let r = env.dl_stdin(
        &["import", "-", "--json"],
        b"198.51.100.40\n198.51.100.40/32\n::ffff:198.51.100.40\n",
    );
    let r = env.check(0, r).json();
    assert_eq!(
        (r["entries"].clone(), r["added"].clone()),
        (1.into(), 1.into()),
        "{r}"
    );
    let r = env.dl_stdin(
        &["import", "-", "--json"],
        b"; Spamhaus DROP\n198.51.100.44/30 ; SBL1\n198.51.100.44/30 ; SBL2\n",
    );
    let r = env.check(0, r).json();
    assert_eq!(r["entries"], 1, "{r}");
    assert_eq!(
        env.draft_entry("198.51.100.44/30", "deny").unwrap()["reason"],
        "SBL2",
        "the later line wins"
    );
    env.ok(&["discard"]);

    // Against existing entries given fields replace, the TTL too, except
    // that never (the longest) stays; the deploy keeps the later expiry.
    env.ok(&["add", "198.51.100.171", "--ttl", "7d"]);
    env.ok(&["add", "198.51.100.172", "--ttl", "1h"]);
    env.ok(&["add", "198.51.100.173", "--ttl", "never"]);
    env.ok(&[
        "add",
        "198.51.100.174",
        "--ttl",
        "1h",
        "--reason",
        "old",
        "--deploy",
    ]);
    let lines = b"198.51.100.171\n198.51.100.172\n198.51.100.173\n198.51.100.174\n198.51.100.175\n";
    let r = env.dl_stdin(
        &["import", "-", "--ttl", "1d", "--reason", "batch", "--json"],
        lines,
    );
    let r = env.check(0, r).json();
    assert_eq!(r["entries"], 5, "{r}");
    for (target, ttl) in [
        ("198.51.100.171", Value::from(86_400)),
        ("198.51.100.172", Value::from(86_400)),
        ("198.51.100.173", Value::Null),
        ("198.51.100.174", Value::from(86_400)),
        ("198.51.100.175", Value::from(86_400)),
    ] {
        let e = env.draft_entry(target, "deny").unwrap();
        assert_eq!(e["ttl"], ttl, "{e}");
        assert_eq!(e["reason"], "batch", "{e}");
        assert_eq!(e["source"], "import:stdin", "{e}");
    }
    // No --ttl keeps the TTL; never is the longest.
    env.check(0, env.dl_stdin(&["import", "-"], b"198.51.100.171\n"));
    assert_eq!(
        env.draft_entry("198.51.100.171", "deny").unwrap()["ttl"],
        86_400
    );
    env.check(
        0,
        env.dl_stdin(&["import", "-", "--ttl", "never"], b"198.51.100.172\n"),
    );
    assert!(env.draft_entry("198.51.100.172", "deny").unwrap()["ttl"].is_null());
}
