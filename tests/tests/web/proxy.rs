//! `--auth proxy`: the user named in `X-Remote-User` is honoured only with
//! the proxy's proof (its shared secret). The header without it is refused,
//! whoever sends it: here root, and another local user, as anyone on the
//! host could.

use denylist_tests::web::{Auth, Login, Stack, SystemUser, WebOpts, http::form};

const SSO: Login<'static> = Login {
    name: "sso_admin",
    role: "admin",
    password: None,
};
const SECRET: &str = "9f4c1e0b7d2a46e8b3c5a1f0e7d9c2b4";

/// A GET from another local user without the secret, as a forger on the
/// same host would send it: the status the console answers.
fn forged_by(user: &SystemUser, port: u16, extra: &str) -> u16 {
    let script = format!(
        "import socket\n\
         s = socket.create_connection(('127.0.0.1', {port}))\n\
         s.sendall(b'GET /denylist HTTP/1.1\\r\\nHost: 127.0.0.1:{port}\\r\\n\
         X-Remote-User: sso_admin\\r\\n{extra}Connection: close\\r\\n\\r\\n')\n\
         print(s.recv(64).split(b' ')[1].decode())\n"
    );
    let out = user
        .command(std::path::Path::new("/usr/bin/python3"))
        .args(["-c", &script])
        .output()
        .expect("python3 as another user");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a status")
}

#[test]
fn the_proxy_header_counts_only_with_the_proxy_secret() {
    let opts = WebOpts {
        auth: Auth::Proxy {
            secret: SECRET.into(),
        },
        ..WebOpts::default()
    };
    let s = Stack::start("wproxy", &[SSO], &opts);
    let w = &s.web;

    let proxied = w.request(
        "GET",
        "/denylist",
        &[("X-Remote-User", "sso_admin"), ("X-Proxy-Secret", SECRET)],
        None,
    );
    assert_eq!(proxied.status, 200, "{proxied}\n{}", s.logs());
    assert!(proxied.body.contains("sso_admin (admin)"), "{proxied}");

    for (what, headers) in [
        ("no secret", vec![("X-Remote-User", "sso_admin")]),
        (
            "a wrong secret",
            vec![("X-Remote-User", "sso_admin"), ("X-Proxy-Secret", "guess")],
        ),
        (
            "a name with no account",
            vec![("X-Remote-User", "mallory"), ("X-Proxy-Secret", SECRET)],
        ),
    ] {
        let r = w.request("GET", "/denylist", &headers, None);
        assert_eq!(r.status, 403, "{what}: {r}");
        assert!(!r.body.contains("sso_admin (admin)"), "{what}: {r}");
    }

    // Another local user, with no privilege at all, forging the header.
    let forger = SystemUser::new("dlfrg", false);
    assert_eq!(forged_by(&forger, w.port, ""), 403);
    assert_eq!(
        forged_by(&forger, w.port, "X-Proxy-Secret: guess\\r\\n"),
        403
    );
    // The same script with the secret gets in: the refusals above are the
    // secret's doing, not the script's.
    let with_secret = format!("X-Proxy-Secret: {SECRET}\\r\\n");
    assert_eq!(forged_by(&forger, w.port, &with_secret), 200);

    // A change through the proxy is the proxy user's, audited as a web user.
    let cookie = proxied
        .set_cookies()
        .first()
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string();
    let token = proxied
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF token on the page")
        .to_string();
    let r = w.request(
        "POST",
        "/denylist/add",
        &[
            ("X-Remote-User", "sso_admin"),
            ("X-Proxy-Secret", SECRET),
            ("Cookie", &cookie),
            ("Origin", &w.origin()),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        Some(&form(&[("csrf", &token), ("address", "198.51.100.7")])),
    );
    assert_eq!(r.status, 303, "{r}\n{}", s.logs());
    let staged = crate::audited_as(&s, "sso_admin (web)");
    assert_eq!(staged.len(), 1, "{staged:?}");
    assert_eq!(staged[0]["kind"], "stage add");
}
