//! One daemon per test and the CLI run against it, with the checks of
//! its JSON shapes that every area shares.

use std::{
    collections::BTreeSet,
    io::Write as _,
    path::PathBuf,
    process::{Command, Stdio},
    time::SystemTime,
};

use denylist_tests::{
    daemon::{Daemon, Home, bin},
    require_root,
};
use serde_json::Value;

/// The fields of an entry in `list --json`, `export` and the diff.
pub(crate) const ENTRY_KEYS: [&str; 11] = [
    "target",
    "list",
    "reason",
    "ttl",
    "expires_at",
    "monitor",
    "source",
    "added_by",
    "added_at",
    "sources",
    "listings",
];

/// One run of the CLI.
pub(crate) struct Run {
    pub(crate) what: String,
    pub(crate) code: i32,
    pub(crate) out: String,
    pub(crate) err: String,
}

impl Run {
    pub(crate) fn json(&self) -> Value {
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
pub(crate) struct Env {
    pub(crate) daemon: Daemon,
    pub(crate) home: Home,
}

impl Env {
    pub(crate) fn start(tag: &str, extra: &[&str]) -> Self {
        require_root();
        let home = Home::new(tag);
        let mut args = vec!["--capacity", "4096"];
        args.extend_from_slice(extra);
        let daemon = Daemon::start(&home, None, &args);
        Self { daemon, home }
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
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

    pub(crate) fn exec(&self, mut c: Command, what: String, stdin: Option<&[u8]>) -> Run {
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

    pub(crate) fn dl(&self, args: &[&str]) -> Run {
        self.exec(self.command(args), args.join(" "), None)
    }

    pub(crate) fn dl_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut c = self.command(args);
        c.envs(env.iter().copied());
        self.exec(c, args.join(" "), None)
    }

    pub(crate) fn dl_stdin(&self, args: &[&str], input: &[u8]) -> Run {
        self.exec(
            self.command(args),
            format!("{} < input", args.join(" ")),
            Some(input),
        )
    }

    /// Runs and checks the exit code.
    #[track_caller]
    pub(crate) fn expect(&self, code: i32, args: &[&str]) -> Run {
        let r = self.dl(args);
        self.check(code, r)
    }

    #[track_caller]
    pub(crate) fn check(&self, code: i32, r: Run) -> Run {
        assert_eq!(
            r.code,
            code,
            "{r}--- denylistd log\n{}",
            self.daemon.log_text()
        );
        r
    }

    #[track_caller]
    pub(crate) fn ok(&self, args: &[&str]) -> Run {
        self.expect(0, args)
    }

    #[track_caller]
    pub(crate) fn json(&self, args: &[&str]) -> Value {
        self.ok(args).json()
    }

    /// The pending changes, as `diff --json` shows them.
    #[track_caller]
    pub(crate) fn diff(&self) -> Value {
        self.json(&["diff", "--json"])
    }

    #[track_caller]
    pub(crate) fn assert_nothing_staged(&self, after: &str) {
        let mut d = self.diff();
        // Which event last changed the draft is no pending change.
        let seq = d.as_object_mut().and_then(|o| o.remove("draft_seq"));
        assert!(seq.is_some_and(|s| s.is_u64()), "the diff has a draft_seq");
        assert_eq!(
            d,
            serde_json::json!({"added": [], "removed": [], "changed": []}),
            "nothing may be staged after {after}"
        );
    }

    /// The draft's entries of both lists.
    #[track_caller]
    pub(crate) fn draft(&self) -> Vec<Value> {
        array(self.json(&["export", "--draft", "--format", "json"]))
    }

    /// The draft's entry for `target` on `list`.
    #[track_caller]
    pub(crate) fn draft_entry(&self, target: &str, list: &str) -> Option<Value> {
        self.draft()
            .into_iter()
            .find(|e| e["target"] == target && e["list"] == list)
    }

    pub(crate) fn file(&self, name: &str, content: &[u8]) -> PathBuf {
        let p = self.home.dir.path().join(name);
        std::fs::write(&p, content).expect("write a test file");
        p
    }

    pub(crate) fn path(&self, name: &str) -> String {
        self.home.dir.path().join(name).display().to_string()
    }
}

#[track_caller]
pub(crate) fn array(v: Value) -> Vec<Value> {
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

pub(crate) fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[track_caller]
pub(crate) fn assert_keys(v: &Value, want: &[&str], what: &str) {
    assert_eq!(keys(v), set(want), "the keys of {what}: {v}");
}

#[track_caller]
pub(crate) fn assert_entry_shape(e: &Value) {
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
pub(crate) fn time(v: &Value) -> SystemTime {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("a time must be a string: {v}"));
    humantime::parse_rfc3339(s).unwrap_or_else(|e| panic!("{s:?} is not RFC 3339: {e}"))
}

pub(crate) fn targets(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["target"].as_str().expect("target").to_string())
        .collect()
}

pub(crate) fn target_set(entries: &[Value]) -> BTreeSet<String> {
    targets(entries).into_iter().collect()
}

/// The revisions, as `history --json` shows them.
#[track_caller]
pub(crate) fn history(env: &Env) -> Vec<Value> {
    array(env.json(&["history", "--json"]))
}
