//! The fail2ban action (`packaging/fail2ban/action.d/denylist.conf`): its
//! commands read from the file as fail2ban reads it (an INI file with
//! continuation lines, `%(name)s` interpolation and `<tag>` substitution),
//! run with `sh -c` as fail2ban runs them, against a real daemon with the
//! freshly built `denylist` on PATH.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant, SystemTime},
};

use denylist_tests::daemon::{bin, kernel_exact_v4};
use serde_json::Value;

use crate::common::{Env, Run, array, set, time};

const SOURCE: &str = "import:fail2ban";

/// The shipped action file.
fn action_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/fail2ban/action.d/denylist.conf")
}

/// An INI file as Python's configparser reads it with fail2ban's settings:
/// `#` and `;` start comment lines, `;` after whitespace starts an inline
/// comment, a line indented deeper than its key continues the value
/// (joined with newlines), `=` or `:` separates key and value.
fn parse_ini(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut sections: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut section: Option<String> = None;
    // The open option and the indentation of its key line.
    let mut option: Option<(String, usize)> = None;
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        let trimmed = line.trim_start();
        let comment = trimmed.starts_with('#') || trimmed.starts_with(';');
        let mut end = line.len();
        if comment {
            end = 0;
        } else if let Some(i) = line
            .char_indices()
            .find(|&(i, c)| c == ';' && i > 0 && line[..i].ends_with([' ', '\t']))
            .map(|(i, _)| i)
        {
            end = i;
        }
        let value = line[..end].trim();
        if value.is_empty() {
            // A blank line inside a value stays in it (trailing ones are
            // trimmed at the end); a comment line is skipped.
            if !comment && let (Some(s), Some((o, _))) = (&section, &option) {
                sections
                    .get_mut(s)
                    .and_then(|sec| sec.get_mut(o))
                    .expect("the open option")
                    .push(String::new());
            }
            continue;
        }
        let indent = line.len() - trimmed.len();
        if let (Some(s), Some((o, key_indent))) = (&section, &option)
            && indent > *key_indent
        {
            sections
                .get_mut(s)
                .and_then(|sec| sec.get_mut(o))
                .expect("the open option")
                .push(value.to_string());
            continue;
        }
        if let Some(name) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
            assert!(
                !sections.contains_key(name),
                "line {n}: section [{name}] twice"
            );
            sections.insert(name.to_string(), BTreeMap::new());
            section = Some(name.to_string());
            option = None;
            continue;
        }
        let s = section
            .as_ref()
            .unwrap_or_else(|| panic!("line {n}: an option before any section: {line:?}"));
        let at = value
            .find(['=', ':'])
            .unwrap_or_else(|| panic!("line {n}: neither a section nor `key = value`: {line:?}"));
        let key = value[..at].trim().to_lowercase();
        let first = value[at + 1..].trim().to_string();
        let sec = sections.get_mut(s).expect("the open section");
        assert!(!sec.contains_key(&key), "line {n}: {key} twice in [{s}]");
        sec.insert(key.clone(), vec![first]);
        option = Some((key, indent));
    }
    sections
        .into_iter()
        .map(|(s, opts)| {
            let opts = opts
                .into_iter()
                .map(|(k, v)| (k, v.join("\n").trim_end().to_string()))
                .collect();
            (s, opts)
        })
        .collect()
}

/// configparser's basic interpolation within one section: `%%` is `%`,
/// `%(name)s` the (interpolated) value of `name`.
fn interpolate(section: &BTreeMap<String, String>, value: &str, depth: u32) -> String {
    assert!(depth < 10, "interpolation too deep at {value:?}");
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('%') {
            out.push('%');
            rest = r;
        } else if let Some(r) = rest.strip_prefix('(') {
            let close = r
                .find(")s")
                .unwrap_or_else(|| panic!("a bad interpolation in {value:?}"));
            let name = &r[..close];
            let v = section
                .get(name)
                .unwrap_or_else(|| panic!("%({name})s names no option"));
            out.push_str(&interpolate(section, v, depth + 1));
            rest = &r[close + 2..];
        } else {
            panic!("a lone % in {value:?}: configparser refuses it (write %%)");
        }
    }
    out.push_str(rest);
    out
}

/// Replaces each `<tag>` (no spaces, `<` or `>` inside) that `tags` knows,
/// again and again, as fail2ban does; unknown tags stay.
fn substitute(cmd: &str, tags: &BTreeMap<String, String>) -> String {
    let mut cur = cmd.to_string();
    for _ in 0..20 {
        let mut out = String::new();
        let mut rest = cur.as_str();
        while let Some(i) = rest.find('<') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let end = after.find(|c: char| c == '<' || c == '>' || c.is_whitespace());
            match end {
                Some(e) if after[e..].starts_with('>') && e > 0 => {
                    let name = &after[..e];
                    match tags.get(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push('<');
                            out.push_str(name);
                            out.push('>');
                        }
                    }
                    rest = &after[e + 1..];
                }
                _ => {
                    out.push('<');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        if out == cur {
            return out;
        }
        cur = out;
    }
    panic!("tags still expanding after 20 rounds: {cur}")
}

/// The action as fail2ban loads it: [Definition] and [Init] become the
/// action's properties, the jail's `denylist[key=value]` options override
/// [Init].
struct Action {
    props: BTreeMap<String, String>,
}

impl Action {
    fn load(options: &[(&str, &str)]) -> Self {
        let path = action_file();
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let ini = parse_ini(&text);
        let mut props = BTreeMap::new();
        for name in ["Definition", "Init"] {
            let section = ini
                .get(name)
                .unwrap_or_else(|| panic!("no [{name}] in {}", path.display()));
            for (k, v) in section {
                props.insert(k.clone(), interpolate(section, v, 0));
            }
        }
        for (k, v) in options {
            assert!(
                props.contains_key(*k),
                "{k} is no option of the action: {props:?}"
            );
            props.insert(k.to_string(), v.to_string());
        }
        Self { props }
    }

    /// The operation with every tag substituted: the jail's name and the
    /// ticket's tags beside the properties.
    fn render(&self, op: &str, ticket: &[(&str, &str)]) -> String {
        let mut tags = self.props.clone();
        tags.insert("name".into(), "sshd-test".into());
        tags.insert("actname".into(), "denylist".into());
        for (k, v) in ticket {
            tags.insert(k.to_string(), v.to_string());
        }
        let cmd = self
            .props
            .get(op)
            .unwrap_or_else(|| panic!("the action has no {op}"));
        let out = substitute(cmd, &tags);
        // Anything still looking like a tag is a typo in the file.
        let mut rest = out.as_str();
        while let Some(i) = rest.find('<') {
            let after = &rest[i + 1..];
            let word: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                .collect();
            assert!(
                word.is_empty() || !after[word.len()..].starts_with('>'),
                "{op} keeps the unknown tag <{word}>: {out}"
            );
            rest = after;
        }
        out
    }
}

/// Where the action's commands find `denylist`, and which socket the
/// environment names.
struct Shell<'a> {
    env: &'a Env,
    /// Put the built `denylist` first on PATH.
    on_path: bool,
    /// DENYLIST_SOCKET for the command, or none at all.
    env_socket: Option<PathBuf>,
}

impl Shell<'_> {
    /// Runs an operation of `action` with `sh -c`, as fail2ban does.
    fn run(&self, action: &Action, op: &str, ticket: &[(&str, &str)]) -> Run {
        let cmd = action.render(op, ticket);
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(&cmd)
            .current_dir(self.env.home.dir.path())
            .env_remove("SSH_CONNECTION")
            .env_remove("SSH_CLIENT")
            .env_remove("DENYLIST_SOCKET");
        let system =
            std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into());
        if self.on_path {
            let dir = bin("denylist").parent().expect("a directory").to_path_buf();
            c.env("PATH", format!("{}:{system}", dir.display()));
        } else {
            c.env("PATH", system);
        }
        if let Some(s) = &self.env_socket {
            c.env("DENYLIST_SOCKET", s);
        }
        self.env.exec(c, format!("{op}: {cmd}"), None)
    }

    #[track_caller]
    fn ok(&self, action: &Action, op: &str, ticket: &[(&str, &str)]) -> Run {
        let r = self.run(action, op, ticket);
        self.env.check(0, r)
    }

    #[track_caller]
    fn ban(&self, action: &Action, ip: &str, bantime: &str) -> Run {
        self.ok(
            action,
            "actionban",
            &[("ip", ip), ("failures", "5"), ("bantime", bantime)],
        )
    }

    #[track_caller]
    fn unban(&self, action: &Action, ip: &str) -> Run {
        self.ok(
            action,
            "actionunban",
            &[("ip", ip), ("failures", "5"), ("bantime", "600")],
        )
    }
}

/// The deployed entry of `ip`, if any.
fn deployed(env: &Env, ip: &str) -> Option<Value> {
    array(env.json(&["list", "--json"]))
        .into_iter()
        .find(|e| e["target"] == ip)
}

/// fail2ban's listing of the deployed entry of `ip`.
#[track_caller]
fn f2b_listing(env: &Env, ip: &str) -> Value {
    let e = deployed(env, ip).unwrap_or_else(|| panic!("{ip} is not deployed"));
    array(e["listings"].clone())
        .into_iter()
        .find(|l| l["source"] == SOURCE)
        .unwrap_or_else(|| panic!("{ip} has no {SOURCE} listing: {e}"))
}

#[track_caller]
fn assert_blocked(env: &Env, ip: &str, sources: &[&str]) {
    let c = env.json(&["check", ip, "--json"]);
    assert_eq!(c["verdict"], "drop", "{ip}: {c}");
    assert_eq!(c["entry"], ip, "{c}");
    let got: BTreeSet<String> = array(c["sources"].clone())
        .iter()
        .map(|s| s.as_str().expect("a source").to_string())
        .collect();
    assert_eq!(got, set(sources), "{ip}: {c}");
    assert!(
        kernel_exact_v4(&env.home).contains(ip),
        "{ip} must be in the kernel's map"
    );
}

#[track_caller]
fn assert_unblocked(env: &Env, ip: &str) {
    let c = env.json(&["check", ip, "--json"]);
    assert_eq!(c["verdict"], "pass", "{ip}: {c}");
    assert!(
        !kernel_exact_v4(&env.home).contains(ip),
        "{ip} must be gone from the kernel's map"
    );
    assert!(deployed(env, ip).is_none(), "{ip} is still listed");
}

#[test]
fn fail2ban_action_file_never_forces_and_keeps_bans_at_stop() {
    let action = Action::load(&[]);
    for op in [
        "actionstart",
        "actionstop",
        "actionflush",
        "actioncheck",
        "actionban",
        "actionprolong",
        "actionunban",
    ] {
        let cmd = action.render(
            op,
            &[("ip", "198.51.100.1"), ("failures", "3"), ("bantime", "60")],
        );
        assert!(!cmd.contains("--force"), "{op} must never force: {cmd}");
    }
    // Stopping fail2ban must not unban: nothing at start and stop, and a
    // flush (run at stop instead of each unban) that does nothing.
    assert_eq!(action.props["actionstart"], "");
    assert_eq!(action.props["actionstop"], "");
    assert_eq!(action.props["actionflush"], "true");
    // The defaults: the CLI on PATH, its own default socket.
    assert_eq!(action.props["denylist"], "denylist");
    assert_eq!(action.props["socket"], "");
    // A prolonged ban is banned again with its new bantime.
    assert_eq!(action.props["actionprolong"], action.props["actionban"]);
}

#[test]
fn fail2ban_ban_lists_for_the_bantime_and_never_for_a_permanent_ban() {
    // No sweep during the test: an expired listing stays in the store.
    let env = Env::start("cli-f2b-ban", &["--expiry-sweep", "1h"]);
    let action = Action::load(&[]);
    // The defaults: `denylist` found on PATH, the socket from the
    // environment.
    let sh = Shell {
        env: &env,
        on_path: true,
        env_socket: Some(env.home.socket()),
    };

    sh.ok(&action, "actioncheck", &[]);

    // bantime 600: deployed at once with a TTL of 600 s and fail2ban's
    // reason.
    let before = SystemTime::now();
    sh.ban(&action, "198.51.100.20", "600");
    assert_blocked(&env, "198.51.100.20", &[SOURCE]);
    let l = f2b_listing(&env, "198.51.100.20");
    assert_eq!(l["ttl"], 600, "{l}");
    assert_eq!(l["reason"], "fail2ban sshd-test: 5 failures", "{l}");
    assert_eq!(l["monitor"], false, "{l}");
    let expires = time(&l["expires_at"]);
    let left = expires
        .duration_since(before)
        .expect("expires in the future");
    assert!(
        left >= Duration::from_secs(599) && left <= Duration::from_secs(620),
        "expires 600 s after the ban: {l}"
    );
    env.assert_nothing_staged("a ban");

    // bantime -1 (permanent): never expires.
    sh.ban(&action, "203.0.113.21", "-1");
    assert_blocked(&env, "203.0.113.21", &[SOURCE]);
    let l = f2b_listing(&env, "203.0.113.21");
    assert!(l["ttl"].is_null(), "a permanent ban never expires: {l}");
    assert!(l["expires_at"].is_null(), "{l}");

    // A ban again (fail2ban restarting restores its bans) or prolonged
    // (bantime.increment) lists it again with the new bantime.
    sh.ban(&action, "198.51.100.20", "600");
    sh.ok(
        &action,
        "actionprolong",
        &[
            ("ip", "198.51.100.20"),
            ("failures", "7"),
            ("bantime", "1200"),
        ],
    );
    let l = f2b_listing(&env, "198.51.100.20");
    assert_eq!(l["ttl"], 1200, "{l}");
    assert_eq!(l["reason"], "fail2ban sshd-test: 7 failures", "{l}");
    env.assert_nothing_staged("a ban again");

    // Stopping the jail or fail2ban unbans nothing.
    sh.ok(&action, "actionflush", &[]);
    sh.ok(&action, "actionstop", &[]);
    sh.ok(&action, "actionstart", &[]);
    assert_blocked(&env, "198.51.100.20", &[SOURCE]);
    assert_blocked(&env, "203.0.113.21", &[SOURCE]);

    // The unban lifts it.
    sh.unban(&action, "198.51.100.20");
    assert_unblocked(&env, "198.51.100.20");
    sh.unban(&action, "203.0.113.21");
    assert_unblocked(&env, "203.0.113.21");
    env.assert_nothing_staged("the unbans");

    // fail2ban unbans when the bantime ends, as the listing expires: the
    // expired listing, not yet swept, is gone for the unban too.
    const SHORT: &str = "203.0.113.22";
    sh.ban(&action, SHORT, "1");
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.json(&["check", SHORT, "--json"])["verdict"] != "pass" {
        assert!(Instant::now() < deadline, "{SHORT} never expired");
        thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !env.daemon.log_text().contains("swept expired entries"),
        "no sweep yet"
    );
    sh.unban(&action, SHORT);
    assert!(deployed(&env, SHORT).is_none(), "{SHORT} is still listed");
    env.assert_nothing_staged("the unban of an expired listing");
}

#[test]
fn fail2ban_unban_removes_only_its_own_listing_and_tolerates_a_gone_one() {
    // A short sweep, so that an expired listing is gone soon.
    let env = Env::start("cli-f2b-unban", &["--expiry-sweep", "1s"]);
    let cli = bin("denylist").display().to_string();
    let socket = env.home.socket().display().to_string();
    // The options: the CLI by its path (not on PATH), and the socket given
    // to it, which must win over a wrong DENYLIST_SOCKET.
    let action = Action::load(&[("denylist", &cli), ("socket", &socket)]);
    let sh = Shell {
        env: &env,
        on_path: false,
        env_socket: Some(env.home.dir.path().join("no-such.sock")),
    };
    sh.ok(&action, "actioncheck", &[]);
    // The check fails without a daemon behind the socket.
    let gone = env.home.dir.path().join("gone.sock").display().to_string();
    let broken = Action::load(&[("denylist", &cli), ("socket", &gone)]);
    let r = sh.run(&broken, "actioncheck", &[]);
    assert_ne!(r.code, 0, "{r}");

    // An admin's own listing of the same address survives the unban.
    const IP: &str = "198.51.100.30";
    sh.ban(&action, IP, "600");
    env.ok(&["add", IP, "--deploy"]);
    assert_blocked(&env, IP, &["manual", SOURCE]);
    let r = sh.unban(&action, IP);
    assert!(r.err.contains("stays on the deny list"), "warns: {r}");
    assert_blocked(&env, IP, &["manual"]);
    let e = deployed(&env, IP).expect("still deployed");
    assert_eq!(e["sources"], serde_json::json!(["manual"]), "{e}");
    env.assert_nothing_staged("the unban");

    // Gone because an admin removed it: the CLI says not found (5), the
    // action succeeds.
    sh.ban(&action, IP, "600");
    env.ok(&["remove", IP, "--deploy"]);
    assert_unblocked(&env, IP);
    env.expect(5, &["remove", IP, "--source", SOURCE, "--deploy"]);
    sh.unban(&action, IP);
    assert_unblocked(&env, IP);
    env.assert_nothing_staged("the unban of a removed listing");

    // Gone because its TTL ran out (bantime 1 s) and the sweep took it.
    const SHORT: &str = "203.0.113.31";
    sh.ban(&action, SHORT, "1");
    assert_eq!(f2b_listing(&env, SHORT)["ttl"], 1);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !env.daemon.log_text().contains("swept expired entries") {
        assert!(
            Instant::now() < deadline,
            "the listing was never swept:\n{}",
            env.daemon.log_text()
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert_unblocked(&env, SHORT);
    sh.unban(&action, SHORT);
    assert_unblocked(&env, SHORT);
    env.assert_nothing_staged("the unban of an expired listing");
    // Any other failure still fails the unban.
    let r = sh.run(&broken, "actionunban", &[("ip", SHORT)]);
    assert_ne!(r.code, 0, "no daemon: {r}");
}

#[test]
fn fail2ban_ban_of_a_guarded_address_fails_and_lists_nothing() {
    let env = Env::start("cli-f2b-guard", &[]);
    let action = Action::load(&[]);
    let sh = Shell {
        env: &env,
        on_path: true,
        env_socket: Some(env.home.socket()),
    };
    for ip in ["10.1.2.3", "127.0.0.1"] {
        for bantime in ["600", "-1"] {
            let r = sh.run(
                &action,
                "actionban",
                &[("ip", ip), ("failures", "5"), ("bantime", bantime)],
            );
            assert_eq!(r.code, 3, "refused by a guardrail, never forced: {r}");
            assert!(r.err.contains(&format!("refusing deny entry {ip}")), "{r}");
        }
    }
    assert!(
        array(env.json(&["list", "--json"])).is_empty(),
        "nothing listed"
    );
    assert!(
        array(env.json(&["list", "--draft", "--json"])).is_empty(),
        "nothing in the draft"
    );
    env.assert_nothing_staged("refused bans");
    assert!(kernel_exact_v4(&env.home).is_empty());
}
