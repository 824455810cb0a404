//! The web console under test, as it runs in production: a real denylistd
//! (the daemon harness), an unprivileged system user in the daemon's web
//! group, and `denylist-web` running as that user without a capability,
//! reaching the daemon only through its socket. Everything made here (the
//! user, the group, the files, the processes) goes on drop, also when the
//! test panics.

pub mod browser;
pub mod http;

use std::{
    io::Write as _,
    net::{IpAddr, TcpListener},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use denylist::cli::Client;
use serde_json::Value;

use crate::{
    daemon::{Daemon, Home, TempDir, bin},
    netns::{Pair, PairConfig},
    require_root,
};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call, short enough for useradd's 32
/// characters with a prefix.
fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A system user with its own primary group, plus a group of its own to
/// be put in (the daemon's `--web-group`). Both are deleted on drop.
pub struct SystemUser {
    pub name: String,
    /// The supplementary group the user is in, e.g. the web group.
    pub group: Option<String>,
}

impl SystemUser {
    /// `prefix` is at most 8 characters, so the name stays under 32.
    pub fn new(prefix: &str, with_group: bool) -> Self {
        let name = unique(prefix);
        let group = with_group.then(|| format!("{name}g"));
        // Left behind only by a killed run whose pid came round again.
        let _ = Command::new("userdel").arg(&name).output();
        let _ = Command::new("groupdel").arg(&name).output();
        if let Some(g) = &group {
            let _ = Command::new("groupdel").arg(g).output();
            run_ok(Command::new("groupadd").args(["--system", g]));
        }
        // The guard exists before useradd, so a failure there still
        // removes the group.
        let user = Self { name, group };
        let mut cmd = Command::new("useradd");
        cmd.args(["--system", "-M", "-U", "-s", "/usr/sbin/nologin"]);
        if let Some(g) = &user.group {
            cmd.args(["-G", g]);
        }
        run_ok(cmd.arg(&user.name));
        user
    }

    /// `program` run as this user with no capability at all: no bounding
    /// set to regain one from, none inheritable, no setuid gain.
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", self.name))
            .arg(format!("--regid={}", self.name))
            .arg("--init-groups")
            .args([
                "--bounding-set=-all",
                "--inh-caps=-all",
                "--no-new-privs",
                "--",
            ])
            .arg(program);
        c
    }

    fn chown(&self, path: &Path) {
        run_ok(
            Command::new("chown")
                .arg(format!("{0}:{0}", self.name))
                .arg(path),
        );
    }
}

impl Drop for SystemUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).output();
        let _ = Command::new("groupdel").arg(&self.name).output();
        if let Some(g) = &self.group {
            let _ = Command::new("groupdel").arg(g).output();
        }
    }
}

/// A free TCP port on 127.0.0.1. The listener is closed before the port
/// is used, so another process could take it in between; the kernel hands
/// out ephemeral ports in turn rather than the one just freed, so that
/// window is small, and a taken port fails the start loudly.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free local port")
        .port()
}

/// A console account.
#[derive(Clone, Copy)]
pub struct Login<'a> {
    pub name: &'a str,
    pub role: &'a str,
    /// None: an account for proxy mode, which signs in without one.
    pub password: Option<&'a str>,
}

/// How the console authenticates.
pub enum Auth {
    Local,
    /// `--auth proxy` with this shared secret in `--proxy-secret-file`.
    Proxy {
        secret: String,
    },
}

/// What `denylist-web` is started with beyond the harness's own flags.
pub struct WebOpts {
    pub auth: Auth,
    /// `--session-idle`, e.g. "2s" to see a session expire in a test.
    pub session_idle: Option<String>,
}

impl Default for WebOpts {
    fn default() -> Self {
        Self {
            auth: Auth::Local,
            session_idle: None,
        }
    }
}

/// A running `denylist-web`, killed on drop.
pub struct Web {
    child: Option<Child>,
    pub port: u16,
    pub log: PathBuf,
    pub users_file: PathBuf,
    _dir: TempDir,
}

impl Web {
    /// Writes the accounts file as `user` (so it is theirs, mode 0600) with
    /// `denylist-web user add`, then starts the console as `user` on a free
    /// port, pointed at `socket`, and waits until it answers.
    pub fn start(user: &SystemUser, socket: &Path, logins: &[Login<'_>], opts: &WebOpts) -> Self {
        let dir = TempDir::new("web");
        // The console's files belong to its user, as in the packaged setup.
        user.chown(dir.path());
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod the web dir");
        let users_file = dir.path().join("web-users.toml");
        for l in logins {
            add_user(user, &users_file, l);
        }
        let port = free_port();
        let log = dir.path().join("denylist-web.log");
        let out = std::fs::File::create(&log).expect("the web log");
        let mut cmd = user.command(&bin("denylist-web"));
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--socket")
            .arg(socket)
            .arg("--users")
            .arg(&users_file);
        if let Auth::Proxy { secret } = &opts.auth {
            let f = dir.path().join("proxy-secret");
            std::fs::write(&f, secret).expect("the proxy secret");
            user.chown(&f);
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600))
                .expect("chmod the proxy secret");
            cmd.args(["--auth", "proxy", "--proxy-secret-file"]).arg(&f);
        }
        if let Some(idle) = &opts.session_idle {
            cmd.args(["--session-idle", idle]);
        }
        let child = cmd
            .env_remove("DENYLIST_SOCKET")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log fd"))
            .stderr(out)
            .spawn()
            .expect("spawn denylist-web");
        let mut web = Self {
            child: Some(child),
            port,
            log,
            users_file,
            _dir: dir,
        };
        web.wait_ready();
        web
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            // A console that could not bind its port exits: whatever
            // answers there then is not it.
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("denylist-web exited ({status}):\n{}", self.log_text());
            }
            if http::request(self.port, "GET", "/login", &[], None).is_ok() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("denylist-web did not come up:\n{}", self.log_text());
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    /// What the browser sends as `Origin` for the console's own pages.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One raw request to the console (see [`http::request`]).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> http::Response {
        http::request(self.port, method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log_text()))
    }
}

impl Drop for Web {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `denylist-web user add` as the console's user, the password on stdin.
fn add_user(user: &SystemUser, file: &Path, l: &Login<'_>) {
    let mut cmd = user.command(&bin("denylist-web"));
    cmd.args(["user", "add", l.name, "--role", l.role, "--users"])
        .arg(file);
    if l.password.is_none() {
        cmd.arg("--no-password");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run denylist-web user add");
    if let Some(p) = l.password {
        writeln!(child.stdin.take().expect("stdin"), "{p}").expect("the password");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("denylist-web user add");
    assert!(
        out.status.success(),
        "denylist-web user add {}: {}{}",
        l.name,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The whole console: optionally a veth pair whose receiver the daemon
/// guards, the daemon, the console's system user in the web group, and
/// the console. Fields drop in order: the console, the daemon, its home
/// (unpinning detaches the filter), the user, the pair.
pub struct Stack {
    pub web: Web,
    pub daemon: Daemon,
    pub home: Home,
    pub user: SystemUser,
    pub pair: Option<Pair>,
}

/// The accounts most tests sign in with.
pub const ADMIN: Login<'static> = Login {
    name: "alice",
    role: "admin",
    password: Some("correct horse battery"),
};
pub const VIEWER: Login<'static> = Login {
    name: "victor",
    role: "viewer",
    password: Some("viewer staple battery"),
};

/// Pings per traffic check: a dropped source costs ping's one-second
/// wait, so a few are enough to tell all from none.
const PINGS: u32 = 3;

impl Stack {
    /// A console on a daemon with no interface: for everything but traffic.
    pub fn start(tag: &str, logins: &[Login<'_>], opts: &WebOpts) -> Self {
        Self::start_and(tag, logins, opts, &[])
    }

    /// [`Stack::start`] with `extra` daemon flags after the harness's own.
    pub fn start_and(tag: &str, logins: &[Login<'_>], opts: &WebOpts, extra: &[&str]) -> Self {
        Self::build(tag, None, logins, opts, extra)
    }

    /// A console on a daemon that guards the receiver of a veth pair, so
    /// a deploy from the console drops real packets.
    pub fn with_traffic(tag: &str, sources: &[IpAddr], logins: &[Login<'_>]) -> Self {
        Self::with_traffic_and(tag, sources, logins, &[])
    }

    /// [`Stack::with_traffic`] with `extra` daemon flags after the
    /// harness's own, e.g. a `--feed-dir` for feeds.
    pub fn with_traffic_and(
        tag: &str,
        sources: &[IpAddr],
        logins: &[Login<'_>],
        extra: &[&str],
    ) -> Self {
        require_root();
        let pair = Pair::new(tag, PairConfig::default()).expect("veth pair");
        for s in sources {
            pair.add_sender_source(*s).expect("a sender source");
        }
        Self::build(tag, Some(pair), logins, &WebOpts::default(), extra)
    }

    fn build(
        tag: &str,
        pair: Option<Pair>,
        logins: &[Login<'_>],
        opts: &WebOpts,
        extra: &[&str],
    ) -> Self {
        require_root();
        let user = SystemUser::new("dlweb", true);
        let group = user.group.clone().expect("the web group");
        let home = Home::new(tag);
        let mut args = vec!["--capacity", "4096", "--web-group", &group];
        let iface;
        if let Some(p) = &pair {
            iface = p.receiver_xdp_if.clone();
            args.extend(["--iface", &iface]);
        }
        args.extend(extra);
        let daemon = Daemon::start(&home, pair.as_ref().map(|p| &p.receiver), &args);
        let web = Web::start(&user, &home.socket(), logins, opts);
        Self {
            web,
            daemon,
            home,
            user,
            pair,
        }
    }

    /// The daemon's API, as root.
    pub fn api(&self) -> Client {
        self.home.client()
    }

    /// `denylist ARGS` as root against this daemon; panics unless it
    /// exits `code`, and returns its stdout.
    #[track_caller]
    pub fn cli(&self, code: i32, args: &[&str]) -> String {
        let run = crate::daemon::cli(&self.home.socket(), args);
        assert_eq!(run.code, code, "{run}\n{}", self.logs());
        run.out
    }

    /// [`Stack::cli`] with `--json` added, exiting `code`.
    #[track_caller]
    pub fn cli_json(&self, code: i32, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        let out = self.cli(code, &args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
    }

    #[track_caller]
    pub fn get(&self, path: &str) -> Value {
        self.api()
            .get(path)
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", self.logs()))
    }

    /// Both logs, for a failure message.
    pub fn logs(&self) -> String {
        format!(
            "--- denylist-web log\n{}--- denylistd log\n{}",
            self.web.log_text(),
            self.daemon.log_text()
        )
    }

    /// Whether real packets from `src` are dropped on the veth: all
    /// answered is false, none is true, anything else a failed test.
    #[track_caller]
    pub fn dropped(&self, src: IpAddr) -> bool {
        let pair = self.pair.as_ref().expect("a stack with traffic");
        let got = pair.ping(src, PINGS, 56).expect("ping");
        assert!(
            got == 0 || got == PINGS,
            "{src}: {got} of {PINGS} pings answered, neither all nor none"
        );
        got == 0
    }

    /// The deployed revision.
    #[track_caller]
    pub fn revision(&self) -> u64 {
        self.get("/v1/status")["revision"]
            .as_u64()
            .expect("a revision number")
    }

    /// The audit log, oldest first.
    #[track_caller]
    pub fn audit(&self) -> Vec<Value> {
        match self.get("/v1/audit") {
            Value::Array(a) => a,
            other => panic!("the audit log is not an array: {other}"),
        }
    }

    /// The pending changes as `GET /v1/diff` shows them.
    #[track_caller]
    pub fn diff(&self) -> Value {
        self.get("/v1/diff")
    }
}
