//! The web console's routes by role, and acting on behalf of a web user:
//! only a member of the web group may name one, its role is the one it
//! names, and the audit log says who the person was.

use std::{path::Path, process::Command};

use denylist_tests::{daemon::Daemon, require_root};
use serde_json::Value;

use crate::common::{
    A, Accounts, EVERYONE, FORBIDDEN, Users, Who, audit, cli, iface_netns, open_home, state,
};

/// One raw request as `user` (root when None), with `headers`: the status
/// and the JSON body.
fn curl(
    user: Option<&str>,
    socket: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, Value) {
    let mut cmd = match user {
        None => Command::new("curl"),
        Some(u) => {
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={u}"),
                &format!("--regid={u}"),
                "--init-groups",
                "--bounding-set=-all",
                "--inh-caps=-all",
                "--",
                "curl",
            ]);
            c
        }
    };
    cmd.args(["-s", "-w", "\n%{http_code}", "--unix-socket"])
        .arg(socket)
        .args(["-X", method]);
    for (k, v) in headers {
        cmd.args(["-H", &format!("{k}: {v}")]);
    }
    if let Some(b) = body {
        cmd.args(["--data", b]);
    }
    let out = cmd
        .arg(format!("http://denylistd{path}"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let (json, status) = text.rsplit_once('\n').expect("curl wrote the status");
    (
        status.trim().parse().expect("a status"),
        serde_json::from_str(json).unwrap_or(Value::Null),
    )
}

#[test]
fn the_console_routes_follow_the_roles_and_only_the_web_group_acts_on_behalf() {
    require_root();
    let users = Users::new();
    let mut acc = Accounts::new();
    let web_group = acc.group("w");
    let web = acc.user("w", &[&web_group]);
    let ns = iface_netns("secw");
    let home = open_home("secw");
    let mut args = users.daemon_args().to_vec();
    args.extend(["--web-group", &web_group]);
    let _d = Daemon::start(&home, Some(&ns), &args);
    let sock = home.socket();
    let c = home.client();
    let r = cli(None, None, &sock, &["add", A, "--deploy"]);
    assert_eq!(r.code, 0, "revision 1: {}", r.stderr);

    // The console's reads are a viewer's, its dry run an admin's; none of
    // them changes anything, allowed or not.
    let reads: [(&[&str], bool); 5] = [
        (&["list", "--page", "--sort", "added_at", "--desc"], false),
        (&["list", "--match", A, "--mode", "enforce"], false),
        (&["history", "1"], false),
        (&["audit", "--kind", "stage", "--actor", "root"], false),
        (&["add", "198.51.100.60", "--dry-run"], true),
    ];
    for (args, admin) in reads {
        for who in EVERYONE {
            let allowed = matches!(
                (admin, who),
                (_, Who::Admin | Who::Root) | (false, Who::Viewer)
            );
            let before = state(&c);
            let r = cli(users.name(who), None, &sock, args);
            let what = format!("{who:?} runs `denylist {}`", args.join(" "));
            assert_eq!(
                r.code,
                if allowed { 0 } else { FORBIDDEN },
                "{what}: {}{}",
                r.stdout,
                r.stderr
            );
            assert_eq!(state(&c), before, "{what}: nothing changes");
        }
    }
    // A deploy of the reviewed draft: a stale review ships nothing.
    for who in EVERYONE {
        let r = cli(None, None, &sock, &["add", "198.51.100.62"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let seq = c.get::<Value>("/v1/diff").unwrap()["draft_seq"]
            .as_u64()
            .unwrap();
        let what = format!("{who:?} deploys the reviewed draft");
        let stale = (seq - 1).to_string();
        let r = cli(
            users.name(who),
            None,
            &sock,
            &["deploy", "--expect-seq", &stale],
        );
        let allowed = matches!(who, Who::Admin | Who::Root);
        assert_eq!(
            r.code,
            if allowed { 6 } else { FORBIDDEN },
            "{what}: {}",
            r.stderr
        );
        let r = cli(
            users.name(who),
            None,
            &sock,
            &["deploy", "--expect-seq", &seq.to_string()],
        );
        assert_eq!(
            r.code,
            if allowed { 0 } else { FORBIDDEN },
            "{what}: {}",
            r.stderr
        );
        cli(None, None, &sock, &["remove", "198.51.100.62", "--deploy"]);
    }

    // On behalf of a web user: the web peer's own role is none, the
    // headers' is what counts, and the audit names the person.
    let alice = [
        ("Denylist-On-Behalf-Of", "alice"),
        ("Denylist-Role", "admin"),
    ];
    let vera = [
        ("Denylist-On-Behalf-Of", "vera"),
        ("Denylist-Role", "viewer"),
    ];
    let add = r#"{"entries": [{"target": "198.51.100.61", "reason": "web"}]}"#;
    let (status, e) = curl(Some(&web), &sock, "GET", "/v1/status", &[], None);
    assert_eq!(status, 403, "the web peer itself has no role: {e}");
    let (status, staged) = curl(Some(&web), &sock, "POST", "/v1/entries", &alice, Some(add));
    assert_eq!(status, 201, "{staged}");
    let events = audit(&c);
    let last = events.last().unwrap();
    assert_eq!(last["user"], "alice (web)", "{last}");
    assert_eq!(last["detail"]["added_by"], "alice (web)", "{last}");
    let (status, page) = curl(Some(&web), &sock, "GET", "/v1/entries/page", &vera, None);
    assert_eq!(status, 200, "{page}");
    assert!(page["entries"].as_array().unwrap().len() >= 2, "{page}");
    let before = state(&c);
    for (path, body) in [
        ("/v1/entries", Some(add)),
        ("/v1/discard", None),
        ("/v1/deploy", None),
    ] {
        let (status, e) = curl(Some(&web), &sock, "POST", path, &vera, body);
        assert_eq!(
            status, 403,
            "a viewer on behalf changes nothing: {path}: {e}"
        );
    }
    assert_eq!(state(&c), before);
    let bad = [
        ("Denylist-On-Behalf-Of", "Alice Smith"),
        ("Denylist-Role", "admin"),
    ];
    let (status, e) = curl(Some(&web), &sock, "GET", "/v1/status", &bad, None);
    assert_eq!(status, 400, "{e}");
    let (status, e) = curl(Some(&web), &sock, "GET", "/v1/status", &alice[..1], None);
    assert_eq!(status, 400, "one header alone: {e}");
    // Anyone outside the web group is refused for sending the headers,
    // whatever its own role, root included.
    for who in [Who::Root, Who::Admin, Who::Viewer, Who::Nobody] {
        for headers in [&alice[..], &alice[..1], &vera[1..]] {
            let (status, e) = curl(users.name(who), &sock, "GET", "/v1/status", headers, None);
            assert_eq!(status, 403, "{who:?} with {headers:?}: {e}");
            let message = e["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(&web_group), "{who:?}: {message}");
        }
    }
    assert_eq!(state(&c), before, "no refusal changed anything");
}
