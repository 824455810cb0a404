//! The packaged console: its user, its accounts file and its unit, run as
//! the unit says (its user, no capability), signing in over HTTP and
//! reading the daemon through its socket on behalf of the signed-in user.

use std::{
    fs,
    io::Write as _,
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::Path,
    process::{Command, Stdio},
};

use denylist_tests::web::free_port;

use super::{mode, ok, run, text};
use crate::unit::{Service, Unit};

pub const WEB_UNIT: &str = "/usr/lib/systemd/system/denylist-web.service";
const USERS: &str = "/etc/denylist/web-users.toml";
const PASSWORD: &str = "correct horse battery staple";

/// The uid and gid of the console's system user.
fn web_user() -> (u32, u32) {
    let line = ok("getent", &["passwd", "denylist-web"]);
    let fields: Vec<&str> = line.trim().split(':').collect();
    (fields[2].parse().unwrap(), fields[3].parse().unwrap())
}

/// What `dpkg -i` put in place for the console, before anything runs.
pub fn check_installed() {
    assert!(Path::new("/usr/bin/denylist-web").is_file());
    assert!(Path::new(WEB_UNIT).is_file());
    let (uid, gid) = web_user();
    ok("getent", &["group", "denylist-web"]);
    let users = fs::metadata(USERS).expect("the accounts file, made by tmpfiles.d");
    assert_eq!((users.uid(), users.gid()), (uid, gid), "the console's own");
    assert_eq!(mode(USERS), 0o600);
    assert!(
        !Path::new("/etc/systemd/system/multi-user.target.wants/denylist-web.service").exists(),
        "the console's unit stays disabled until it has an account"
    );
    let verify = run("systemd-analyze", &["verify", WEB_UNIT]);
    let said = text(&verify);
    assert!(verify.status.success(), "systemd-analyze verify: {said}");
    assert!(
        !said.contains("denylist-web.service"),
        "no complaint: {said}"
    );
    let page = super::gunzip("/usr/share/man/man8/denylist-web.8.gz");
    assert!(
        page.contains(".SH \"EXIT STATUS\"") && page.contains("\\-\\-proxy\\-secret\\-file"),
        "{page}"
    );
    let unit = Unit::read(Path::new(WEB_UNIT));
    assert_eq!(unit.user, "denylist-web");
    assert!(
        unit.bounding.is_empty() && unit.ambient.is_empty(),
        "no capability"
    );
    assert!(unit.no_new_privileges);
}

/// An account made with the packaged binary, as the docs say: run as
/// root, the file stays the console's, mode 0600.
fn add_account() {
    let mut child = Command::new("/usr/bin/denylist-web")
        .args(["user", "add", "alice", "--role", "admin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("denylist-web user add");
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let (uid, gid) = web_user();
    let users = fs::metadata(USERS).unwrap();
    assert_eq!(
        (users.uid(), users.gid()),
        (uid, gid),
        "still the console's"
    );
    assert_eq!(mode(USERS), 0o600);
    let list = ok("/usr/bin/denylist-web", &["user", "list"]);
    assert!(list.contains("alice") && list.contains("admin"), "{list}");
}

/// The unit's console signs alice in and shows the daemon's entries:
/// `blocked` was deployed by the test before.
pub fn serves(dir: &Path, blocked: &str) {
    add_account();
    // Its own notify socket and log, beside the daemon's, in a folder the
    // console's user may reach, as it may reach systemd's.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o711)).unwrap();
    let dir = dir.join("web");
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let dir = dir.as_path();
    let mut unit = Unit::read(Path::new(WEB_UNIT));
    let listen = format!("127.0.0.1:{}", free_port());
    // Not the default port, which something on this machine may hold.
    unit.environment
        .push(("DENYLIST_WEB_LISTEN".into(), listen.clone()));
    let service = Service::start(&unit, dir);
    let jar = dir.join("cookies");
    let jar = jar.to_str().unwrap();
    let status = ok(
        "curl",
        &[
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-c",
            jar,
            "--data-urlencode",
            "username=alice",
            "--data-urlencode",
            &format!("password={PASSWORD}"),
            &format!("http://{listen}/login"),
        ],
    );
    assert_eq!(status.trim(), "303", "signed in:\n{}", service.log_text());
    let page = ok(
        "curl",
        &["-sS", "-b", jar, &format!("http://{listen}/denylist")],
    );
    assert!(
        page.contains(blocked),
        "the console reads the daemon as alice: {page}\n{}",
        service.log_text()
    );
    service.stop();
}
