//! What every area shares: real users and groups, the CLI run as one of
//! them, and the daemon's state as a refused command must leave it.

use std::{
    fs,
    net::IpAddr,
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::Path,
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

use denylist::cli::Client;
use denylist_tests::{
    daemon::{Home, bin},
    netns::Netns,
};
use serde_json::Value;

pub(crate) const A: &str = "198.51.100.7";
pub(crate) const B: &str = "198.51.100.8";
pub(crate) const FREE: &str = "198.51.100.20";
pub(crate) const COUNT: u32 = 5;
/// The interface attach and detach use, inside the daemon's namespace.
pub(crate) const IFACE: &str = "dlsx0";
/// The documented exit code of a permission refusal (docs/api.md).
pub(crate) const FORBIDDEN: i32 = 4;

static NEXT: AtomicU32 = AtomicU32::new(0);

pub(crate) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub(crate) fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

pub(crate) fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

/// Users and groups made for one test, removed on drop even when the test
/// fails. Names carry the pid and a counter, so runs and tests never meet.
pub(crate) struct Accounts {
    pub(crate) tag: String,
    pub(crate) users: Vec<String>,
    pub(crate) groups: Vec<String>,
}

impl Accounts {
    pub(crate) fn new() -> Self {
        Self {
            tag: format!(
                "{}x{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ),
            users: Vec::new(),
            groups: Vec::new(),
        }
    }

    pub(crate) fn group(&mut self, role: &str) -> String {
        let name = format!("dlsg{role}{}", self.tag);
        // Left behind only by a killed run whose pid came round again.
        let _ = Command::new("groupdel").arg(&name).output();
        run_ok(Command::new("groupadd").arg(&name));
        self.groups.push(name.clone());
        name
    }

    /// A user with its own primary group, in `groups` as well.
    pub(crate) fn user(&mut self, role: &str, groups: &[&str]) -> String {
        let name = format!("dlsu{role}{}", self.tag);
        let _ = Command::new("userdel").arg(&name).output();
        let _ = Command::new("groupdel").arg(&name).output();
        let mut cmd = Command::new("useradd");
        cmd.args(["-M", "-U", "-s", "/usr/sbin/nologin"]);
        if !groups.is_empty() {
            cmd.args(["-G", &groups.join(",")]);
        }
        run_ok(cmd.arg(&name));
        self.users.push(name.clone());
        name
    }
}

impl Drop for Accounts {
    fn drop(&mut self) {
        for u in &self.users {
            let _ = Command::new("userdel").arg(u).output();
            let _ = Command::new("groupdel").arg(u).output();
        }
        for g in &self.groups {
            let _ = Command::new("groupdel").arg(g).output();
        }
    }
}

/// The five kinds of caller, with the groups the daemon is told about.
pub(crate) struct Users {
    pub(crate) admin_group: String,
    pub(crate) viewer_group: String,
    pub(crate) reporter_group: String,
    pub(crate) admin: String,
    pub(crate) viewer: String,
    pub(crate) reporter: String,
    pub(crate) nobody: String,
    pub(crate) _accounts: Accounts,
}

impl Users {
    pub(crate) fn new() -> Self {
        let mut acc = Accounts::new();
        let admin_group = acc.group("a");
        let viewer_group = acc.group("v");
        let reporter_group = acc.group("r");
        let admin = acc.user("a", &[&admin_group]);
        let viewer = acc.user("v", &[&viewer_group]);
        let reporter = acc.user("r", &[&reporter_group]);
        let nobody = acc.user("n", &[]);
        Self {
            admin_group,
            viewer_group,
            reporter_group,
            admin,
            viewer,
            reporter,
            nobody,
            _accounts: acc,
        }
    }

    pub(crate) fn daemon_args(&self) -> [&str; 6] {
        [
            "--admin-group",
            &self.admin_group,
            "--viewer-group",
            &self.viewer_group,
            "--reporter-group",
            &self.reporter_group,
        ]
    }

    pub(crate) fn name(&self, who: Who) -> Option<&str> {
        match who {
            Who::Root => None,
            Who::Admin => Some(&self.admin),
            Who::Viewer => Some(&self.viewer),
            Who::Reporter => Some(&self.reporter),
            Who::Nobody => Some(&self.nobody),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Who {
    Root,
    Admin,
    Viewer,
    /// May only report.
    Reporter,
    Nobody,
}

pub(crate) const EVERYONE: [Who; 5] = [
    Who::Nobody,
    Who::Reporter,
    Who::Viewer,
    Who::Admin,
    Who::Root,
];

/// One run of the CLI.
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// `denylist --socket SOCKET ARGS` as `user` (root when None). A user runs
/// it without a single capability; `groups`, when given, fixes its
/// supplementary groups as a login made earlier would have them, instead of
/// reading them afresh.
pub(crate) fn cli(user: Option<&str>, groups: Option<&str>, socket: &Path, args: &[&str]) -> Run {
    let mut cmd = match user {
        None => Command::new(bin("denylist")),
        Some(u) => {
            let mut c = Command::new("setpriv");
            c.args([&format!("--reuid={u}"), &format!("--regid={u}")]);
            match groups {
                Some(g) => c.arg(format!("--groups={g}")),
                None => c.arg("--init-groups"),
            };
            c.args(["--bounding-set=-all", "--inh-caps=-all", "--"])
                .arg(bin("denylist"));
            c
        }
    };
    let out = cmd
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run denylist");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub(crate) fn audit(c: &Client) -> Vec<Value> {
    c.get("/v1/audit").expect("audit")
}

pub(crate) fn history(c: &Client) -> Vec<Value> {
    c.get("/v1/history").expect("history")
}

/// What a refused command must leave as it was.
pub(crate) fn state(c: &Client) -> (Vec<Value>, Value, Vec<Value>) {
    (
        audit(c),
        c.get("/v1/diff").expect("diff"),
        c.get("/v1/entries?draft=true").expect("entries"),
    )
}

/// A network namespace holding the interface attach and detach work on.
pub(crate) fn iface_netns(tag: &str) -> Netns {
    let ns = Netns::new(tag).expect("netns");
    ns.run(&[
        "ip", "link", "add", IFACE, "type", "veth", "peer", "name", "dlsx1",
    ])
    .unwrap();
    ns.run(&["ip", "link", "set", IFACE, "up"]).unwrap();
    ns.run(&["ip", "link", "set", "dlsx1", "up"]).unwrap();
    ns
}

/// A home whose socket other users can reach.
pub(crate) fn open_home(tag: &str) -> Home {
    let home = Home::new(tag);
    chmod(home.dir.path(), 0o755);
    home
}
