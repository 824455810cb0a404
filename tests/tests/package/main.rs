//! The Debian package on this machine: `dpkg -i` of the .deb that `cargo
//! xtask package` built, the installed unit run as systemd would run it,
//! a block through the installed CLI, the console's unit signing a user in
//! and showing that block, then `dpkg -r` (the filter must go
//! with the package) and `dpkg -P` (nothing left but the groups).
//!
//! It installs into the real system paths, so `cargo xtask test` runs it
//! on its own after the package step; a Drop guard purges the package and
//! deletes the veth pair even when a check fails.

mod unit;
mod web;

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use denylist_tests::{daemon::TempDir, require_root};
use unit::{Service, UNIT, Unit};

const CONFIG: &str = "/etc/denylist/denylistd.toml";
const PINS: &str = "/sys/fs/bpf/denylist";
const GROUPS: [&str; 3] = ["denylist-admin", "denylist", "denylist-reporter"];
/// Present while this test may have the package installed: in /run, so a
/// reboot, which ends any run, clears it.
const MARK: &str = "/run/denylist-package-test";
const BLOCKED: &str = "198.51.100.7";

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Runs a command that must succeed; returns its stdout and stderr.
fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        out.status,
        text(&out)
    );
    text(&out)
}

/// dpkg's state of the package: `installed`, `config-files`, or `None`
/// when dpkg knows nothing of it.
fn dpkg_status() -> Option<String> {
    let out = run("dpkg-query", &["-W", "-f=${db:Status-Status}", "denylist"]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| s != "not-installed")
}

/// The .deb of this version: `DENYLIST_DEB`, or target/debian beside the
/// target directory this test was built in.
fn deb() -> PathBuf {
    if let Some(path) = std::env::var_os("DENYLIST_DEB") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test's path");
    // target/PROFILE/deps/package-HASH
    let target = exe.ancestors().nth(3).expect("the target directory");
    let arch = ok("dpkg", &["--print-architecture"]);
    let path = target.join("debian").join(format!(
        "denylist_{}-1_{}.deb",
        env!("CARGO_PKG_VERSION"),
        arch.trim()
    ));
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask package` first",
        path.display()
    );
    path
}

/// The XDP program on `iface`, by name, as rtnetlink reports it.
fn xdp_prog(iface: &str) -> Option<String> {
    let json = ok("ip", &["-j", "-d", "link", "show", "dev", iface]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("ip -j");
    v[0]["xdp"]["prog"]["name"].as_str().map(String::from)
}

/// Purges the package and deletes the veth pair, also after a failure.
struct Sandbox {
    veth: String,
}

impl Sandbox {
    fn new() -> Sandbox {
        // A run killed before its guard ran leaves the package installed,
        // and its mark. Without the mark, the package is a real install,
        // whose store a purge would delete: refuse.
        if dpkg_status().is_some() {
            assert!(
                Path::new(MARK).exists(),
                "the denylist package is installed, and not by this test: remove it (dpkg -r denylist) or run the package test on another machine"
            );
            let _ = run("dpkg", &["-P", "denylist"]);
        }
        std::fs::write(MARK, "").expect("writing the test's mark in /run");
        let veth = format!("dlpk{}", std::process::id());
        let _ = run("ip", &["link", "del", &veth]);
        let sandbox = Sandbox { veth };
        let peer = sandbox.peer();
        ok(
            "ip",
            &[
                "link",
                "add",
                &sandbox.veth,
                "type",
                "veth",
                "peer",
                "name",
                &peer,
            ],
        );
        for end in [sandbox.veth.as_str(), &peer] {
            ok("ip", &["link", "set", end, "up"]);
        }
        sandbox
    }

    fn peer(&self) -> String {
        format!("{}p", self.veth)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let purged = run("dpkg", &["-P", "denylist"]).status.success();
        if purged && dpkg_status().is_none() {
            let _ = std::fs::remove_file(MARK);
        }
        let _ = run("ip", &["link", "del", &self.veth]);
    }
}

/// Every CLI man page the package must carry: denylist.1 and one per
/// visible command, nested ones as denylist-allow-add.1.
fn cli_pages() -> Vec<String> {
    fn walk(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
        out.push(format!("{prefix}.1.gz"));
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub, &format!("{prefix}-{}", sub.get_name()), out);
        }
    }
    let mut out = Vec::new();
    walk(&denylist::cli::command(), "denylist", &mut out);
    out
}

fn gunzip(path: &str) -> String {
    ok("gzip", &["-dc", path])
}

fn mode(path: &str) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .permissions()
        .mode()
        & 0o7777
}

/// What `dpkg -i` put in place, before anything runs.
fn check_installed() {
    for path in [
        "/usr/bin/denylistd",
        "/usr/bin/denylist",
        UNIT,
        CONFIG,
        "/usr/lib/sysusers.d/denylist.conf",
        "/usr/lib/tmpfiles.d/denylist.conf",
        "/usr/share/bash-completion/completions/denylist",
        "/usr/share/zsh/vendor-completions/_denylist",
        "/usr/share/fish/vendor_completions.d/denylist.fish",
    ] {
        assert!(Path::new(path).is_file(), "{path} installed");
    }
    for path in [
        "/usr/share/bash-completion/completions/denylist",
        "/usr/share/zsh/vendor-completions/_denylist",
        "/usr/share/fish/vendor_completions.d/denylist.fish",
    ] {
        let script = fs::read_to_string(path).unwrap();
        assert!(
            script.contains("rollback") && script.contains("skip-guarded"),
            "{path} completes the commands and flags"
        );
    }
    let pages = cli_pages();
    assert!(pages.contains(&"denylist-allow-add.1.gz".to_string()));
    for page in &pages {
        let page = format!("/usr/share/man/man1/{page}");
        assert!(gunzip(&page).contains(".SH \"EXIT STATUS\""), "{page}");
    }
    let daemon = gunzip("/usr/share/man/man8/denylistd.8.gz");
    assert!(daemon.contains(".SH \"EXIT STATUS\"") && daemon.contains("\\-\\-unpin"));
    let config = gunzip("/usr/share/man/man5/denylistd.toml.5.gz");
    assert!(config.contains("\\fBprotect\\-port\\fR = ["), "{config}");
    // Every key of the shipped file is documented.
    for line in fs::read_to_string(CONFIG).unwrap().lines() {
        if let Some((key, _)) = line.strip_prefix("# ").and_then(|l| l.split_once(" = ")) {
            let key = key.replace('-', "\\-");
            assert!(config.contains(&format!("\\fB{key}\\fR")), "{key}");
        }
    }
    let conffiles = ok("dpkg-query", &["-W", "-f=${Conffiles}", "denylist"]);
    assert!(conffiles.contains(CONFIG), "a conffile: {conffiles}");
    for group in GROUPS {
        ok("getent", &["group", group]);
    }
    assert_eq!(mode("/run/denylist"), 0o755);
    assert_eq!(mode("/var/lib/denylist"), 0o700);
    assert!(
        Path::new("/etc/systemd/system/multi-user.target.wants/denylistd.service").exists(),
        "the unit is enabled"
    );
    web::check_installed();
    let verify = run("systemd-analyze", &["verify", UNIT]);
    let said = text(&verify);
    assert!(verify.status.success(), "systemd-analyze verify: {said}");
    assert!(!said.contains("denylistd.service"), "no complaint: {said}");
}

#[test]
fn the_package_installs_runs_as_its_unit_and_leaves_nothing_behind() {
    require_root();
    let deb = deb();
    let sandbox = Sandbox::new();
    let dir = TempDir::new("package");
    // The install must create the groups, so they go first; Debian keeps
    // system groups on purge, so an earlier run left them. A group with
    // members is someone's: it stays, and the install must keep it.
    for group in GROUPS {
        let entry = run("getent", &["group", group]);
        let line = String::from_utf8_lossy(&entry.stdout).trim().to_string();
        if entry.status.success() && line.ends_with(':') {
            ok("groupdel", &[group]);
        }
    }

    // Likewise the console's user, whose group goes with it.
    if run("getent", &["passwd", "denylist-web"]).status.success() {
        ok("userdel", &["denylist-web"]);
    }

    ok("dpkg", &["-i", deb.to_str().unwrap()]);
    assert_eq!(dpkg_status().as_deref(), Some("installed"));
    let files: Vec<String> = ok("dpkg", &["-L", "denylist"])
        .lines()
        .filter(|p| Path::new(p).is_file())
        .map(String::from)
        .collect();
    check_installed();
    let unit = Unit::read(Path::new(UNIT));
    assert_eq!(
        unit.exec_start,
        ["/usr/bin/denylistd", "--config", CONFIG],
        "the unit runs the packaged daemon with the packaged config"
    );

    // As shipped: starts, attaches nothing, and says so.
    let service = Service::start(&unit, dir.path());
    let status = run("/usr/bin/denylist", &["status"]);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    assert!(
        text(&status).contains("warning: no interface configured"),
        "{}",
        text(&status)
    );
    service.stop();

    // Named in the config, the veth is attached by the time of READY=1.
    let shipped = fs::read_to_string(CONFIG).unwrap();
    let named = shipped.replace("# iface = []", &format!("iface = [\"{}\"]", sandbox.veth));
    assert_ne!(named, shipped, "the shipped file has an iface line");
    fs::write(CONFIG, named).unwrap();
    let service = Service::start(&unit, dir.path());
    assert_eq!(xdp_prog(&sandbox.veth).as_deref(), Some("denylist"));
    ok("/usr/bin/denylist", &["add", BLOCKED, "--deploy"]);
    let check = ok("/usr/bin/denylist", &["check", BLOCKED]);
    assert!(check.contains("drop"), "{check}");
    web::serves(dir.path(), BLOCKED);
    // No unpinning under a running daemon.
    let refused = run("/usr/bin/denylistd", &["--unpin", "--config", CONFIG]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(text(&refused).contains("answers on"), "{}", text(&refused));
    // Nor when it is told of another socket: the daemon's claim on its pin
    // directory says it runs.
    let elsewhere = Command::new("/usr/bin/denylistd")
        .args(["--unpin", "--config", CONFIG])
        .env("DENYLIST_SOCKET", "/nonexistent/denylist.sock")
        .output()
        .unwrap();
    assert_eq!(elsewhere.status.code(), Some(1), "{}", text(&elsewhere));
    assert!(
        text(&elsewhere).contains("another denylistd holds"),
        "{}",
        text(&elsewhere)
    );
    let link = Path::new(PINS).join(format!("link-{}", sandbox.veth));
    assert!(link.exists(), "{}", service.log_text());
    service.stop();
    // Stopped, the daemon leaves the filter filtering.
    assert_eq!(xdp_prog(&sandbox.veth).as_deref(), Some("denylist"));
    assert!(link.exists());

    // Removed, the package takes the filter with it.
    let removed = ok("dpkg", &["-r", "denylist"]);
    assert!(
        removed.contains(&format!("detached {}", sandbox.veth)),
        "prerm names the interface: {removed}"
    );
    assert_eq!(xdp_prog(&sandbox.veth), None, "detached on removal");
    assert!(!Path::new(PINS).exists(), "no pins after removal");
    assert_eq!(dpkg_status().as_deref(), Some("config-files"));
    assert!(Path::new(CONFIG).exists(), "the conffile stays until purge");
    assert!(!Path::new("/usr/bin/denylistd").exists());

    // Purged: nothing left but the groups and the console's user.
    ok("dpkg", &["-P", "denylist"]);
    assert_eq!(dpkg_status(), None);
    let s = run("dpkg", &["-s", "denylist"]);
    assert!(!s.status.success(), "{}", text(&s));
    assert!(text(&s).contains("is not installed"), "{}", text(&s));
    for path in files.iter().map(String::as_str).chain([
        "/etc/denylist",
        "/var/lib/denylist",
        "/run/denylist",
        PINS,
        "/etc/systemd/system/multi-user.target.wants/denylistd.service",
        "/etc/systemd/system/denylistd.service",
        "/etc/systemd/system/denylist-web.service",
    ]) {
        assert!(
            fs::symlink_metadata(path).is_err(),
            "{path} is left after purge"
        );
    }
    assert!(files.iter().any(|f| f == "/usr/bin/denylist"), "{files:?}");
    for group in GROUPS {
        ok("getent", &["group", group]);
    }
}
