//! One exit code per error class, with a real user in neither group.

use std::process::{Command, Stdio};

use denylist_tests::daemon::bin;

use crate::common::{Env, history};

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
