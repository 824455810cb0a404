//! Authorization over the socket with real users: admins change, viewers
//! read, others get nothing.

use std::process::Command;

use denylist_tests::{
    daemon::{Daemon, Home},
    require_root,
};

/// Users and groups made for one test, removed afterwards.
struct Accounts {
    users: Vec<String>,
    groups: Vec<String>,
}

impl Drop for Accounts {
    fn drop(&mut self) {
        for u in &self.users {
            let _ = Command::new("userdel").arg(u).status();
        }
        for g in &self.groups {
            let _ = Command::new("groupdel").arg(g).status();
        }
    }
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// HTTP status of a request made as `user` with curl, and its body.
fn curl_as(
    user: &str,
    socket: &std::path::Path,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    let out = Command::new("setpriv")
        .args([
            &format!("--reuid={user}"),
            &format!("--regid={user}"),
            "--init-groups",
            "--",
        ])
        .args([
            "curl",
            "-s",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "--unix-socket",
        ])
        .arg(socket)
        .args(["-X", method, "-d", body, &format!("http://denylistd{path}")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn only_admins_change_viewers_read_and_others_get_nothing() {
    require_root();
    let tag = format!("{}", std::process::id() % 100_000);
    let (admin_group, viewer_group) = (format!("dla{tag}"), format!("dlv{tag}"));
    let (admin, viewer, nobody) = (
        format!("dlua{tag}"),
        format!("dluv{tag}"),
        format!("dlun{tag}"),
    );
    let accounts = Accounts {
        users: vec![admin.clone(), viewer.clone(), nobody.clone()],
        groups: vec![admin_group.clone(), viewer_group.clone()],
    };
    for g in &accounts.groups {
        run_ok(Command::new("groupadd").arg(g));
    }
    for u in &accounts.users {
        run_ok(Command::new("useradd").args(["-M", "-U", u]));
    }
    run_ok(Command::new("usermod").args(["-aG", &admin_group, &admin]));
    run_ok(Command::new("usermod").args(["-aG", &viewer_group, &viewer]));

    let home = Home::new("auth");
    std::fs::set_permissions(
        home.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let _d = Daemon::start(
        &home,
        None,
        &[
            "--admin-group",
            &admin_group,
            "--viewer-group",
            &viewer_group,
        ],
    );
    let sock = home.socket();
    let mode = std::fs::metadata(&sock).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o666
    );
    let add = r#"{"entries":[{"target":"198.51.100.7"}]}"#;

    let routes_read = [
        "/v1/status",
        "/v1/entries",
        "/v1/diff",
        "/v1/history",
        "/v1/audit",
        "/v1/stats",
        "/v1/check/198.51.100.7",
        "/v1/export",
    ];
    for path in routes_read {
        assert_eq!(
            curl_as(&admin, &sock, "GET", path, "").0,
            200,
            "admin reads {path}"
        );
        assert_eq!(
            curl_as(&viewer, &sock, "GET", path, "").0,
            200,
            "viewer reads {path}"
        );
        let (code, body) = curl_as(&nobody, &sock, "GET", path, "");
        assert_eq!(code, 403, "nobody reads {path}");
        assert!(
            body.contains(&viewer_group),
            "names the group to join: {body}"
        );
    }
    let (code, body) = curl_as(&viewer, &sock, "POST", "/v1/entries", add);
    assert_eq!(code, 403);
    assert!(body.contains(&admin_group), "{body}");
    for path in [
        "/v1/deploy",
        "/v1/discard",
        "/v1/verify",
        "/v1/entries/remove",
        "/v1/rollback",
        "/v1/import",
        "/v1/attach",
        "/v1/detach",
        "/v1/backup",
        "/v1/entries/mode",
    ] {
        assert_eq!(
            curl_as(&viewer, &sock, "POST", path, "{}").0,
            403,
            "viewer may not POST {path}"
        );
        assert_eq!(
            curl_as(&nobody, &sock, "POST", path, "{}").0,
            403,
            "nobody may not POST {path}"
        );
    }
    assert_eq!(
        curl_as(&admin, &sock, "POST", "/v1/entries", add).0,
        201,
        "admin changes"
    );
    assert_eq!(curl_as(&admin, &sock, "POST", "/v1/deploy", "{}").0, 200);
    let audit: Vec<serde_json::Value> = home.client().get("/v1/audit?since=0").unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e["user"] == admin.as_str() && e["kind"] == "deploy"),
        "the audit names the admin"
    );

    run_ok(Command::new("gpasswd").args(["-d", &admin, &admin_group]));
    assert_eq!(
        curl_as(&admin, &sock, "POST", "/v1/discard", "{}").0,
        403,
        "removal takes effect on the next request"
    );
    drop(accounts);
}
