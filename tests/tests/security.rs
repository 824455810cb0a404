//! Security: who may run which command, what the socket and the state
//! directory let others see or redirect, what the audit log records and
//! whether it can be rewritten, which capabilities the daemon really needs
//! (run with exactly the systemd unit's set), and another tool's XDP program
//! left alone and working.
//!
//! Users and groups are real (useradd/groupadd, removed on drop), and every
//! command goes through the `denylist` binary as that user, without any
//! capabilities.

use std::{
    collections::BTreeSet,
    fs,
    net::IpAddr,
    os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use denylist::{client::Client, entry::now_ms, error::Class};
use denylist_common::{ExactValue, MAP_EXACT_V4};
use denylist_tests::{
    daemon::{Daemon, Home, TempDir, bin, kernel_exact_v4},
    netns::{Netns, Pair, PairConfig},
    require_root,
};
use serde_json::Value;

const A: &str = "198.51.100.7";
const B: &str = "198.51.100.8";
const FREE: &str = "198.51.100.20";
const COUNT: u32 = 5;
/// The interface attach and detach use, inside the daemon's namespace.
const IFACE: &str = "dlsx0";
/// The documented exit code of a permission refusal (docs/api.md).
const FORBIDDEN: i32 = 4;

static NEXT: AtomicU32 = AtomicU32::new(0);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

/// Users and groups made for one test, removed on drop even when the test
/// fails. Names carry the pid and a counter, so runs and tests never meet.
struct Accounts {
    tag: String,
    users: Vec<String>,
    groups: Vec<String>,
}

impl Accounts {
    fn new() -> Self {
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

    fn group(&mut self, role: &str) -> String {
        let name = format!("dlsg{role}{}", self.tag);
        // Left behind only by a killed run whose pid came round again.
        let _ = Command::new("groupdel").arg(&name).output();
        run_ok(Command::new("groupadd").arg(&name));
        self.groups.push(name.clone());
        name
    }

    /// A user with its own primary group, in `groups` as well.
    fn user(&mut self, role: &str, groups: &[&str]) -> String {
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

/// The four kinds of caller, with the groups the daemon is told about.
struct Users {
    admin_group: String,
    viewer_group: String,
    admin: String,
    viewer: String,
    nobody: String,
    _accounts: Accounts,
}

impl Users {
    fn new() -> Self {
        let mut acc = Accounts::new();
        let admin_group = acc.group("a");
        let viewer_group = acc.group("v");
        let admin = acc.user("a", &[&admin_group]);
        let viewer = acc.user("v", &[&viewer_group]);
        let nobody = acc.user("n", &[]);
        Self {
            admin_group,
            viewer_group,
            admin,
            viewer,
            nobody,
            _accounts: acc,
        }
    }

    fn daemon_args(&self) -> [&str; 4] {
        [
            "--admin-group",
            &self.admin_group,
            "--viewer-group",
            &self.viewer_group,
        ]
    }

    fn name(&self, who: Who) -> Option<&str> {
        match who {
            Who::Root => None,
            Who::Admin => Some(&self.admin),
            Who::Viewer => Some(&self.viewer),
            Who::Nobody => Some(&self.nobody),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Root,
    Admin,
    Viewer,
    Nobody,
}

const EVERYONE: [Who; 4] = [Who::Nobody, Who::Viewer, Who::Admin, Who::Root];

/// One run of the CLI.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `denylist --socket SOCKET ARGS` as `user` (root when None). A user runs
/// it without a single capability; `groups`, when given, fixes its
/// supplementary groups as a login made earlier would have them, instead of
/// reading them afresh.
fn cli(user: Option<&str>, groups: Option<&str>, socket: &Path, args: &[&str]) -> Run {
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

fn audit(c: &Client) -> Vec<Value> {
    c.get("/v1/audit").expect("audit")
}

fn history(c: &Client) -> Vec<Value> {
    c.get("/v1/history").expect("history")
}

/// What a refused command must leave as it was.
fn state(c: &Client) -> (Vec<Value>, Value, Vec<Value>) {
    (
        audit(c),
        c.get("/v1/diff").expect("diff"),
        c.get("/v1/entries?draft=true").expect("entries"),
    )
}

/// Who may run a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    Admin,
    Viewer,
    /// Runs locally and never reaches the daemon.
    Nothing,
}

/// One row of the matrix: the command (as `denylist` spells it), who may
/// run it, its arguments (`{import}`, `{backup}` and `{iface}` are filled
/// in), and what root runs first so that an allowed run can succeed.
struct Case {
    command: &'static str,
    needs: Needs,
    args: &'static [&'static str],
    setup: &'static [&'static [&'static str]],
}

const fn case(
    command: &'static str,
    needs: Needs,
    args: &'static [&'static str],
    setup: &'static [&'static [&'static str]],
) -> Case {
    Case {
        command,
        needs,
        args,
        setup,
    }
}

const CASES: &[Case] = &[
    case(
        "add",
        Needs::Admin,
        &["add", "198.51.100.30", "--reason", "matrix"],
        &[],
    ),
    case(
        "remove",
        Needs::Admin,
        &["remove", "198.51.100.31"],
        &[&["add", "198.51.100.31", "--deploy"]],
    ),
    case(
        "enforce",
        Needs::Admin,
        &["enforce", "198.51.100.32"],
        &[&["add", "198.51.100.32", "--monitor"]],
    ),
    case(
        "monitor",
        Needs::Admin,
        &["monitor", "198.51.100.32"],
        &[&["add", "198.51.100.32"]],
    ),
    case("list", Needs::Viewer, &["list", "--draft"], &[]),
    case("diff", Needs::Viewer, &["diff"], &[]),
    case(
        "deploy",
        Needs::Admin,
        &["deploy", "--message", "matrix"],
        &[&["add", "198.51.100.33"]],
    ),
    case(
        "discard",
        Needs::Admin,
        &["discard"],
        &[&["add", "198.51.100.34"]],
    ),
    case("check", Needs::Viewer, &["check", A], &[]),
    case("status", Needs::Viewer, &["status"], &[]),
    case("stats", Needs::Viewer, &["stats"], &[]),
    case("history", Needs::Viewer, &["history"], &[]),
    case("audit", Needs::Viewer, &["audit"], &[]),
    case("rollback", Needs::Admin, &["rollback", "1", "--force"], &[]),
    case(
        "import",
        Needs::Admin,
        &["import", "{import}", "--source", "matrix"],
        &[],
    ),
    case("export", Needs::Viewer, &["export"], &[]),
    case(
        "allow add",
        Needs::Admin,
        &["allow", "add", "198.51.100.35"],
        &[],
    ),
    case(
        "allow remove",
        Needs::Admin,
        &["allow", "remove", "198.51.100.36"],
        &[&["allow", "add", "198.51.100.36"]],
    ),
    case(
        "allow list",
        Needs::Viewer,
        &["allow", "list", "--draft"],
        &[],
    ),
    case(
        "attach",
        Needs::Admin,
        &["attach", "{iface}", "--xdp-mode", "skb"],
        &[&["detach", "{iface}"]],
    ),
    case(
        "detach",
        Needs::Admin,
        &["detach", "{iface}"],
        &[&["attach", "{iface}", "--xdp-mode", "skb"]],
    ),
    case("verify", Needs::Admin, &["verify"], &[]),
    case("backup", Needs::Admin, &["backup", "{backup}"], &[]),
    case("completions", Needs::Nothing, &["completions", "bash"], &[]),
    case("man", Needs::Nothing, &["man"], &[]),
];

/// Every command the CLI defines, `allow add` style, read from its clap
/// definition: a new command cannot be left out of the matrix unnoticed.
fn cli_commands() -> Vec<String> {
    let mut out = Vec::new();
    for sub in denylist::cli::command().get_subcommands() {
        if !sub.has_subcommands() {
            out.push(sub.get_name().to_string());
            continue;
        }
        for leaf in sub.get_subcommands() {
            assert!(
                !leaf.has_subcommands(),
                "{} {} nests deeper: walk it here",
                sub.get_name(),
                leaf.get_name()
            );
            out.push(format!("{} {}", sub.get_name(), leaf.get_name()));
        }
    }
    out
}

/// A network namespace holding the interface attach and detach work on.
fn iface_netns(tag: &str) -> Netns {
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
fn open_home(tag: &str) -> Home {
    let home = Home::new(tag);
    chmod(home.dir.path(), 0o755);
    home
}

#[test]
fn every_cli_command_is_authorized_by_group_and_a_group_change_counts_at_once() {
    require_root();
    let users = Users::new();
    let ns = iface_netns("secm");
    let home = open_home("secm");
    let _d = Daemon::start(&home, Some(&ns), &users.daemon_args());
    let sock = home.socket();
    let c = home.client();
    // Files any user may read (the import) and create (the backups).
    let files = TempDir::new("secmf");
    chmod(files.path(), 0o1777);
    let import = files.path().join("feed.txt");
    fs::write(&import, "198.51.100.40\n198.51.100.41\n").unwrap();
    chmod(&import, 0o644);
    let r = cli(None, None, &sock, &["add", A, "--deploy"]);
    assert_eq!(r.code, 0, "revision 1, for rollback: {}", r.stderr);

    let commands = cli_commands();
    let missing: Vec<&String> = commands
        .iter()
        .filter(|name| !CASES.iter().any(|c| c.command == name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "no case in the matrix for {missing:?}: add one to CASES"
    );
    let stale: Vec<&str> = CASES
        .iter()
        .map(|c| c.command)
        .filter(|c| !commands.iter().any(|name| name == c))
        .collect();
    assert!(stale.is_empty(), "CASES names unknown commands {stale:?}");

    assert_eq!(
        Class::Forbidden.exit_code(),
        FORBIDDEN,
        "as docs/api.md says"
    );
    let mut runs = 0;
    for name in &commands {
        let case = CASES.iter().find(|c| c.command == name.as_str()).unwrap();
        for who in EVERYONE {
            let backup = files.path().join(format!("{who:?}.db"));
            let fill = |a: &&str| match *a {
                "{import}" => import.display().to_string(),
                "{backup}" => backup.display().to_string(),
                "{iface}" => IFACE.to_string(),
                other => other.to_string(),
            };
            let allowed = match case.needs {
                Needs::Nothing => true,
                Needs::Viewer => who != Who::Nobody,
                Needs::Admin => matches!(who, Who::Admin | Who::Root),
            };
            // A step may find its work done (detaching a detached
            // interface); only the run itself is checked.
            if allowed {
                for step in case.setup {
                    let step: Vec<String> = step.iter().map(fill).collect();
                    let step: Vec<&str> = step.iter().map(String::as_str).collect();
                    cli(None, None, &sock, &step);
                }
            }
            let args: Vec<String> = case.args.iter().map(fill).collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let before = state(&c);
            let r = cli(users.name(who), None, &sock, &args);
            runs += 1;
            let what = format!("{who:?} runs `denylist {}`", args.join(" "));
            if allowed {
                assert_eq!(r.code, 0, "{what}: {}{}", r.stdout, r.stderr);
                continue;
            }
            let group = match case.needs {
                Needs::Admin => &users.admin_group,
                _ => &users.viewer_group,
            };
            assert_eq!(r.code, FORBIDDEN, "{what}: {}", r.stderr);
            assert!(
                r.stderr.contains("permission denied") && r.stderr.contains(group.as_str()),
                "{what}: the refusal names group {group}: {}",
                r.stderr
            );
            assert!(r.stdout.is_empty(), "{what}: printed {}", r.stdout);
            assert_eq!(state(&c), before, "{what}: a refusal changes nothing");
            assert!(!backup.exists(), "{what}: no backup file is left");
        }
    }
    assert_eq!(runs, commands.len() * EVERYONE.len());
    eprintln!(
        "authorization matrix: {} commands x {} users = {runs} runs",
        commands.len(),
        EVERYONE.len()
    );

    // A user's processes keep the groups of their login; the daemon reads
    // the group database on every request instead.
    let gid = |g: &str| {
        run_ok(Command::new("getent").args(["group", g]))
            .split(':')
            .nth(2)
            .unwrap()
            .to_string()
    };
    let admin_login = format!("{},{}", gid(&users.admin), gid(&users.admin_group));
    run_ok(Command::new("gpasswd").args(["-d", &users.admin, &users.admin_group]));
    let r = cli(Some(&users.admin), Some(&admin_login), &sock, &["discard"]);
    assert_eq!(
        r.code, FORBIDDEN,
        "removed from the admin group: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains(users.admin_group.as_str()),
        "{}",
        r.stderr
    );
    let r = cli(Some(&users.admin), Some(&admin_login), &sock, &["status"]);
    assert_eq!(r.code, FORBIDDEN, "in no group now, not even a viewer");
    assert!(
        r.stderr.contains(users.viewer_group.as_str()),
        "{}",
        r.stderr
    );

    let viewer_login = format!("{},{}", gid(&users.viewer), gid(&users.viewer_group));
    run_ok(Command::new("gpasswd").args(["-a", &users.viewer, &users.admin_group]));
    let r = cli(
        Some(&users.viewer),
        Some(&viewer_login),
        &sock,
        &["discard"],
    );
    assert_eq!(r.code, 0, "added to the admin group: {}", r.stderr);
    run_ok(Command::new("gpasswd").args(["-d", &users.viewer, &users.admin_group]));
    run_ok(Command::new("gpasswd").args(["-d", &users.viewer, &users.viewer_group]));
    let r = cli(Some(&users.viewer), Some(&viewer_login), &sock, &["list"]);
    assert_eq!(r.code, FORBIDDEN, "removed from both groups: {}", r.stderr);
}

/// A denylistd started some other way than the harness's: under a wrapper
/// (a umask, a mount namespace, a capability set), on any socket and state
/// directory. Killed on drop.
struct Proc {
    child: Option<Child>,
    socket: PathBuf,
    log: PathBuf,
}

struct Spawn<'a> {
    netns: Option<&'a Netns>,
    wrapper: Vec<String>,
    socket: PathBuf,
    state: PathBuf,
    bpffs: PathBuf,
    log: PathBuf,
}

impl Spawn<'_> {
    fn plain(home: &Home) -> Spawn<'_> {
        Spawn {
            netns: None,
            wrapper: Vec::new(),
            socket: home.socket(),
            state: home.state(),
            bpffs: home.bpffs.clone(),
            log: home.dir.path().join("denylistd.log"),
        }
    }

    fn spawn(&self, extra: &[&str]) -> Proc {
        let mut argv: Vec<String> = self.wrapper.clone();
        argv.push(bin("denylistd").display().to_string());
        for (flag, path) in [
            ("--socket", &self.socket),
            ("--state-dir", &self.state),
            ("--bpffs", &self.bpffs),
        ] {
            argv.push(flag.into());
            argv.push(path.display().to_string());
        }
        argv.extend(extra.iter().map(|s| s.to_string()));
        let mut cmd = match self.netns {
            Some(ns) => ns.cmd(&argv[0]),
            None => Command::new(&argv[0]),
        };
        let _ = fs::remove_file(&self.log);
        let out = fs::File::create(&self.log).expect("log file");
        // Every wrapper execs, so the child's pid ends up the daemon's.
        let child = cmd
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn denylistd");
        Proc {
            child: Some(child),
            socket: self.socket.clone(),
            log: self.log.clone(),
        }
    }

    fn start(&self, extra: &[&str]) -> Proc {
        let p = self.spawn(extra);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if Client::new(&p.socket).get::<Value>("/v1/status").is_ok() {
                return p;
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("denylistd did not come up:\n{}", p.log_text());
    }

    /// Starts a daemon that must refuse: exit 1, a log naming `needle`.
    fn refused(&self, extra: &[&str], needle: &str) {
        let mut p = self.spawn(extra);
        let code = p.wait_exit(Duration::from_secs(30));
        let log = p.log_text();
        assert_eq!(code, Some(1), "denylistd must refuse to start:\n{log}");
        assert!(log.contains(needle), "the error names {needle}:\n{log}");
    }
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// SIGTERM and wait: exits 0, leaving the filter in place.
    fn stop(mut self) {
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.pid() as i32, libc::SIGTERM) };
        let code = self.wait_exit(Duration::from_secs(30));
        assert_eq!(code, Some(0), "a clean stop:\n{}", self.log_text());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A file outside the state directory that a planted link points to: its
/// bytes, mode and mtime, to see that nothing wrote through the link.
fn snapshot(path: &Path) -> Option<(Vec<u8>, u32, i64)> {
    let meta = fs::metadata(path).ok()?;
    Some((fs::read(path).unwrap(), meta.mode(), meta.mtime_nsec()))
}

#[test]
fn the_socket_and_the_state_are_private_and_no_planted_link_is_followed() {
    require_root();
    let home = open_home("secf");
    let outside = TempDir::new("secout");
    let state = home.state();
    // The socket's directories do not exist yet, and the umask is the
    // unit's: they must still come out as documented.
    let mut sp = Spawn::plain(&home);
    sp.socket = home.dir.path().join("run/denylist/denylist.sock");
    sp.wrapper = ["sh", "-c", "umask 077 && exec \"$0\" \"$@\""]
        .map(String::from)
        .to_vec();
    let d = sp.start(&[]);
    let sock = sp.socket.clone();
    let meta = fs::symlink_metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.mode() & 0o7777, 0o666, "the socket is mode 0666");
    assert_eq!((meta.uid(), meta.gid()), (0, 0), "owned by root:root");
    for dir in [
        sock.parent().unwrap(),
        sock.parent().unwrap().parent().unwrap(),
    ] {
        assert_eq!(mode_of(dir), 0o755, "{} is created 0755", dir.display());
    }
    let r = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(bin("denylist"))
        .arg("--socket")
        .arg(&sock)
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(
        r.status.code(),
        Some(FORBIDDEN),
        "any user reaches the socket, and the daemon refuses: {}",
        String::from_utf8_lossy(&r.stderr)
    );

    // Everything that writes to the state directory.
    let feed = outside.path().join("feed.txt");
    fs::write(&feed, "198.51.100.50\n").unwrap();
    let backup = outside.path().join("copy.db");
    for args in [
        vec!["add", A, "--deploy"],
        vec!["import", feed.to_str().unwrap(), "--deploy"],
        vec!["backup", backup.to_str().unwrap()],
        vec!["verify"],
        vec!["list"],
        vec!["export"],
    ] {
        let r = cli(None, None, &sock, &args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    }
    assert_eq!(mode_of(&backup), 0o600, "the CLI writes a backup 0600");
    assert_eq!(mode_of(&state), 0o700, "the state directory is 0700");
    assert_eq!(mode_of(&state.join("denylist.db")), 0o600);
    let mut names = BTreeSet::new();
    for e in fs::read_dir(&state).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let meta = fs::symlink_metadata(e.path()).unwrap();
        assert!(meta.is_file(), "{name} is a plain file");
        assert_eq!(
            meta.mode() & 0o077,
            0,
            "{name} is {:o}: not readable by group or others",
            meta.mode() & 0o7777
        );
        names.insert(name);
    }
    assert!(
        names
            .iter()
            .all(|n| ["denylist.db", "denylist.db-wal", "denylist.db-shm"].contains(&n.as_str())),
        "only the store, and no backup copy left behind: {names:?}"
    );

    // The CLI's own backup file: a planted link is an existing file.
    let kept = outside.path().join("kept");
    fs::write(&kept, "keep me\n").unwrap();
    chmod(&kept, 0o600);
    let link = outside.path().join("link.db");
    std::os::unix::fs::symlink(&kept, &link).unwrap();
    let before = snapshot(&kept);
    let r = cli(None, None, &sock, &["backup", link.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("exists"), "{}", r.stderr);
    assert_eq!(snapshot(&kept), before, "nothing written through the link");

    // While the daemon runs: a link where SQLite would put a rollback
    // journal. Changes go through the open store; a listing, which opens
    // the store afresh, is refused with the link named.
    let journal = state.join("denylist.db-journal");
    let target = outside.path().join("journal-target");
    fs::write(&target, "outside\n").unwrap();
    let before = snapshot(&target);
    std::os::unix::fs::symlink(&target, &journal).unwrap();
    let live_backup = outside.path().join("live.db");
    for (args, code) in [
        (vec!["add", B, "--deploy"], 0),
        (vec!["list"], 1),
        (vec!["export"], 1),
        (vec!["verify"], 0),
        (vec!["backup", live_backup.to_str().unwrap()], 0),
        (vec!["remove", B, "--deploy"], 0),
    ] {
        let r = cli(None, None, &sock, &args);
        assert_eq!(
            r.code, code,
            "{args:?} with a planted journal link: {}",
            r.stderr
        );
        if code != 0 {
            let named = format!("{} is a symbolic link", journal.display());
            assert!(r.stderr.contains(&named), "{args:?}: {}", r.stderr);
        }
    }
    assert_eq!(
        snapshot(&target),
        before,
        "the journal link was not followed"
    );
    fs::remove_file(&journal).unwrap();
    d.stop();

    // At start: a link in place of each file SQLite writes beside the
    // store, pointing at an existing file and at a missing one.
    let sp = Spawn::plain(&home);
    let mut planted = 0;
    for name in ["denylist.db-wal", "denylist.db-shm", "denylist.db-journal"] {
        for existing in [true, false] {
            let target = outside.path().join(format!("{name}-{existing}"));
            if existing {
                fs::write(&target, "outside\n").unwrap();
            }
            let before = snapshot(&target);
            let link = state.join(name);
            std::os::unix::fs::symlink(&target, &link).unwrap();
            let db = fs::read(state.join("denylist.db")).unwrap();
            sp.refused(&[], &format!("{} is a symbolic link", link.display()));
            assert_eq!(snapshot(&target), before, "{name}: not written through");
            assert_eq!(
                fs::read(state.join("denylist.db")).unwrap(),
                db,
                "{name}: the store is untouched"
            );
            assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
            fs::remove_file(&link).unwrap();
            planted += 1;
        }
    }

    // The store itself, the state directory and the socket as links.
    let db = state.join("denylist.db");
    let real = outside.path().join("real.db");
    fs::rename(&db, &real).unwrap();
    std::os::unix::fs::symlink(&real, &db).unwrap();
    let before = snapshot(&real);
    sp.refused(&[], &format!("{} is a symbolic link", db.display()));
    assert_eq!(snapshot(&real), before, "the linked store is untouched");
    fs::remove_file(&db).unwrap();
    fs::rename(&real, &db).unwrap();
    planted += 1;

    let elsewhere = outside.path().join("state-elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    let state_link = home.dir.path().join("state-link");
    std::os::unix::fs::symlink(&elsewhere, &state_link).unwrap();
    let mut linked = Spawn::plain(&home);
    linked.state = state_link.clone();
    linked.refused(&[], &format!("{} is a symbolic link", state_link.display()));
    assert_eq!(
        fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "nothing made there"
    );
    planted += 1;

    let sock_target = outside.path().join("not-a-socket");
    fs::write(&sock_target, "outside\n").unwrap();
    chmod(&sock_target, 0o600);
    let before = snapshot(&sock_target);
    let sock_link = home.dir.path().join("sock-link");
    std::os::unix::fs::symlink(&sock_target, &sock_link).unwrap();
    let mut linked = Spawn::plain(&home);
    linked.socket = sock_link;
    linked.refused(&[], "not a socket is in the way");
    assert_eq!(snapshot(&sock_target), before, "not chmodded, not replaced");
    planted += 1;

    // None of it cost anything: the store starts as it was left.
    let d = sp.start(&[]);
    let entries: Vec<Value> = home.client().get("/v1/entries").unwrap();
    let targets: BTreeSet<&str> = entries
        .iter()
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets, BTreeSet::from([A, "198.51.100.50"]));
    d.stop();
    eprintln!("planted links refused: {planted}");
}

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
    denylist::entry::to_ms(humantime::parse_rfc3339(at).unwrap())
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

/// The values of one `Key=` line of the systemd unit.
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    let lines: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .collect();
    assert_eq!(lines.len(), 1, "one {key}= line in the unit");
    lines[0].split_whitespace().map(String::from).collect()
}

fn unit_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/denylistd.service");
    fs::read_to_string(path).expect("packaging/denylistd.service")
}

/// CAP_* names as capability bits.
fn cap_bit(name: &str) -> u32 {
    match name {
        "CAP_NET_ADMIN" => 12,
        "CAP_SYS_ADMIN" => 21,
        "CAP_PERFMON" => 38,
        "CAP_BPF" => 39,
        other => panic!("{other}: add its bit here"),
    }
}

/// A hex capability set from /proc/PID/status.
fn proc_caps(pid: u32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let v = status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap();
    u64::from_str_radix(v.trim(), 16).unwrap()
}

/// How the unit runs the daemon, as close as a test can come without
/// systemd: exactly its capability bounding set, no new privileges, its
/// umask, and a private mount namespace (slave, like ProtectSystem=) in
/// which the whole file system is read-only but for the home directory.
fn as_the_unit(home: &Home, caps: &[String]) -> Vec<String> {
    let bounding = std::iter::once("-all".to_string())
        .chain(
            caps.iter()
                .map(|c| format!("+{}", c.strip_prefix("CAP_").unwrap().to_ascii_lowercase())),
        )
        .collect::<Vec<_>>()
        .join(",");
    [
        "unshare",
        "--mount",
        "--propagation",
        "slave",
        "--",
        "sh",
        "-c",
        "mount --bind \"$1\" \"$1\" && mount -o remount,bind,ro / && umask 077 && shift && exec \"$@\"",
        "sh",
        home.dir.path().to_str().unwrap(),
        "setpriv",
        "--no-new-privs",
        &format!("--bounding-set={bounding}"),
        "--inh-caps=-all",
        "--",
    ]
    .map(String::from)
    .to_vec()
}

/// The unit's capabilities, checked against what it documents.
fn unit_caps() -> Vec<String> {
    let unit = unit_text();
    let mut caps = unit_values(&unit, "CapabilityBoundingSet");
    caps.sort();
    let mut ambient = unit_values(&unit, "AmbientCapabilities");
    ambient.sort();
    assert_eq!(caps, ambient, "the unit grants what it bounds");
    assert_eq!(caps, ["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"]);
    caps
}

#[test]
fn the_units_capabilities_and_hardening_suffice_and_the_cli_needs_none() {
    require_root();
    let unit = unit_text();
    for line in ["NoNewPrivileges=yes", "ProtectSystem=strict", "UMask=0077"] {
        assert!(unit.lines().any(|l| l == line), "the unit sets {line}");
    }
    let caps = unit_caps();
    // systemd-analyze checks the unit as it would load it; the binary it
    // names must exist, so point it at the one under test.
    let dir = TempDir::new("secunit");
    let copy = dir.path().join("denylistd.service");
    fs::write(
        &copy,
        unit.replace(
            "/usr/local/bin/denylistd",
            bin("denylistd").to_str().unwrap(),
        ),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze (apt-get install systemd)");
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "systemd-analyze verify: {said}");
    assert!(!said.contains("denylistd.service"), "no complaint: {said}");

    let mut acc = Accounts::new();
    let admin_group = acc.group("a");
    let admin = acc.user("a", &[&admin_group]);
    let pair = Pair::new("secc", PairConfig::default()).expect("veth pair");
    for s in [A, FREE] {
        pair.add_sender_source(ip(s)).unwrap();
    }
    let home = open_home("secc");
    let mut sp = Spawn::plain(&home);
    sp.netns = Some(&pair.receiver);
    sp.wrapper = as_the_unit(&home, &caps);
    let daemon_args = [
        "--iface",
        pair.receiver_xdp_if.as_str(),
        "--admin-group",
        admin_group.as_str(),
    ];
    let d = sp.start(&daemon_args);
    let want: u64 = caps.iter().map(|c| 1u64 << cap_bit(c)).sum();
    let pid = d.pid();
    assert_eq!(proc_caps(pid, "CapEff"), want, "exactly the unit's set");
    assert_eq!(proc_caps(pid, "CapBnd"), want);
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.lines().any(|l| l == "NoNewPrivs:\t1"), "{status}");
    assert_ne!(
        fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap(),
        fs::read_link("/proc/self/ns/mnt").unwrap(),
        "a mount namespace of its own"
    );
    let mounts = fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let root = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .unwrap();
    assert!(
        root.split_whitespace()
            .nth(5)
            .unwrap()
            .split(',')
            .any(|o| o == "ro"),
        "its / is read-only: {root}"
    );

    let sock = home.socket();
    let r = cli(Some(&admin), None, &sock, &["add", A, "--deploy"]);
    assert_eq!(
        r.code, 0,
        "an admin without capabilities deploys: {}",
        r.stderr
    );
    let r = cli(Some(&admin), None, &sock, &["status"]);
    assert_eq!(r.code, 0, "attached and healthy: {}{}", r.stdout, r.stderr);
    assert_eq!(pair.ping(ip(A), COUNT, 56).unwrap(), 0, "A is dropped");
    assert_eq!(
        pair.ping(ip(FREE), COUNT, 56).unwrap(),
        COUNT,
        "others flow"
    );
    assert!(
        kernel_exact_v4(&home).contains(A),
        "the pins are on the host's bpffs"
    );

    // The pins outlive the daemon and its namespace, and the next start
    // under the same limits takes them over.
    d.stop();
    assert_eq!(pair.ping(ip(A), COUNT, 56).unwrap(), 0, "still dropped");
    let d = sp.start(&daemon_args);
    let r = cli(Some(&admin), None, &sock, &["status"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(pair.ping(ip(A), COUNT, 56).unwrap(), 0);
    assert_eq!(pair.ping(ip(FREE), COUNT, 56).unwrap(), COUNT);
    let r = cli(Some(&admin), None, &sock, &["remove", A, "--deploy"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(pair.ping(ip(A), COUNT, 56).unwrap(), COUNT, "and unblocks");
    d.stop();

    // Each of the three is needed: without it the daemon says which.
    for drop in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != drop).cloned().collect();
        let other = Home::new("seccx");
        let mut sp = Spawn::plain(&other);
        sp.wrapper = as_the_unit(&other, &fewer);
        sp.refused(&[], &format!("lacks {drop}"));
    }
}

/// Runs `f` on a thread whose effective capabilities are only `caps`.
fn with_only<R: Send + 'static>(caps: &[&str], f: impl FnOnce() -> R + Send + 'static) -> R {
    let mask: u64 = caps.iter().map(|c| 1u64 << cap_bit(c)).sum();
    thread::spawn(move || {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy, Default)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let mut header = Header {
            version: 0x2008_0522,
            pid: 0,
        };
        let mut data = [Data::default(); 2];
        // SAFETY: capget/capset v3 with a header and two data words; they
        // change only this thread's capabilities.
        unsafe {
            assert_eq!(
                libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()),
                0
            );
            data[0].effective = mask as u32 & data[0].permitted;
            data[1].effective = (mask >> 32) as u32 & data[1].permitted;
            assert_eq!(
                libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()),
                0
            );
        }
        f()
    })
    .join()
    .unwrap()
}

/// What the kernel itself asks, apart from the daemon's own check.
#[test]
fn the_kernel_loads_the_program_with_the_three_capabilities_and_not_without_one() {
    require_root();
    const THREE: [&str; 3] = ["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"];
    let load = || {
        denylist::dataplane::Dataplane::load(denylist::layout::Layout::new(4096).unwrap())
            .map(drop)
            .map_err(|e| e.to_string())
    };
    let loaded = with_only(&THREE, load);
    assert!(loaded.is_ok(), "no CAP_SYS_ADMIN needed: {loaded:?}");
    for missing in THREE {
        let fewer: Vec<&'static str> = THREE.into_iter().filter(|c| *c != missing).collect();
        let refused = with_only(&fewer, load);
        let e = refused.expect_err(missing);
        eprintln!(
            "without {missing}: {}",
            e.lines().next().unwrap_or_default()
        );
        if missing == "CAP_PERFMON" {
            assert!(e.contains("rejected"), "the verifier refuses: {e}");
        }
    }
}

/// Unloads xdp-filter from an interface on drop, also when the test fails.
struct XdpFilter<'a> {
    ns: &'a Netns,
    iface: String,
}

impl Drop for XdpFilter<'_> {
    fn drop(&mut self) {
        let _ = self.ns.run(&["xdp-filter", "unload", &self.iface, "--all"]);
    }
}

fn xdp_prog_id(ns: &Netns, iface: &str) -> Option<u64> {
    let out = ns
        .run(&["ip", "-j", "-d", "link", "show", "dev", iface])
        .ok()?;
    let v: Value = serde_json::from_str(&out).ok()?;
    v[0]["xdp"]["prog"]["id"].as_u64()
}

#[test]
fn another_tools_xdp_program_is_left_in_place_and_keeps_filtering() {
    require_root();
    let caps = unit_caps();
    let pair = Pair::new("seco", PairConfig::default()).expect("veth pair");
    for s in [A, B, FREE] {
        pair.add_sender_source(ip(s)).unwrap();
    }
    let ns = &pair.receiver;
    let iface = pair.receiver_xdp_if.clone();
    ns.run(&["xdp-filter", "load", &iface, "-m", "skb"])
        .unwrap();
    let filter = XdpFilter {
        ns,
        iface: iface.clone(),
    };
    ns.run(&["xdp-filter", "ip", A, "-m", "src"]).unwrap();
    let held_by = xdp_prog_id(ns, &iface).expect("xdp-filter attached");
    assert_eq!(
        pair.ping(ip(A), COUNT, 56).unwrap(),
        0,
        "xdp-filter drops A"
    );
    assert_eq!(pair.ping(ip(B), COUNT, 56).unwrap(), COUNT);

    // The daemon as the unit runs it, looking after the same interface.
    let home = Home::new("seco");
    let mut sp = Spawn::plain(&home);
    sp.netns = Some(ns);
    sp.wrapper = as_the_unit(&home, &caps);
    let d = sp.start(&["--iface", &iface]);
    let sock = home.socket();
    let r = cli(None, None, &sock, &["add", B, "--deploy"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = cli(None, None, &sock, &["attach", &iface]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("already carries XDP program id {held_by}"))
            && r.stderr
                .contains(&format!("bpftool prog show id {held_by}"))
            && r.stderr.contains("nothing was replaced"),
        "a clear error naming the program: {}",
        r.stderr
    );
    let r = cli(None, None, &sock, &["status"]);
    assert_eq!(
        r.code, 1,
        "degraded while the interface is held: {}",
        r.stdout
    );
    // The daemon retries every second; give it a few tries.
    thread::sleep(Duration::from_secs(3));
    assert_eq!(
        xdp_prog_id(ns, &iface),
        Some(held_by),
        "nothing was replaced"
    );
    assert_eq!(
        pair.ping(ip(A), COUNT, 56).unwrap(),
        0,
        "xdp-filter still drops A"
    );
    assert_eq!(
        pair.ping(ip(B), COUNT, 56).unwrap(),
        COUNT,
        "denylist is not in the way"
    );
    assert_eq!(pair.ping(ip(FREE), COUNT, 56).unwrap(), COUNT);

    // Once the other tool lets go, the looked-after interface is attached.
    drop(filter);
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until && cli(None, None, &sock, &["status"]).code != 0 {
        thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(cli(None, None, &sock, &["status"]).code, 0, "attached");
    assert_eq!(pair.ping(ip(B), COUNT, 56).unwrap(), 0, "denylist drops B");
    assert_eq!(pair.ping(ip(A), COUNT, 56).unwrap(), COUNT);
    d.stop();
}
