//! The console's defences, tested through its router as a browser would
//! meet them: sign-in and its throttle, sessions, sign-out, the CSRF
//! check, proxy sign-in and the security headers.

use std::time::{Duration, Instant};

use axum::{
    body::Body,
    http::{HeaderMap, Request, StatusCode, header},
};

use super::{
    app::Auth,
    proxy::Proof,
    testing::{Browser, FakeDaemon, HOST, TempDir, console, send},
    users::{Role, Users},
};

fn login_request(user: &str, password: &str) -> Request<Body> {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("username", user);
    form.append_pair("password", password);
    Request::post("/login")
        .header(header::HOST, HOST)
        .header(header::ORIGIN, format!("http://{HOST}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form.finish()))
        .unwrap()
}

fn cookie_of(headers: &HeaderMap) -> String {
    let set = headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    set.split(';').next().unwrap().to_string()
}

fn get(path: &str, cookie: &str) -> Request<Body> {
    Request::get(path)
        .header(header::HOST, HOST)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_cookie_and_sign_out_kills_it() {
    let fake = FakeDaemon::start().await;
    let dir = TempDir::new();
    let app = console(&fake.socket(), dir.path(), Auth::Local);
    let (status, _, html) = send(&app, Request::get("/login").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    for name in [
        r#"<label for="username">Username</label>"#,
        r#"<label for="password">Password</label>"#,
        ">Sign in<",
    ] {
        assert!(html.contains(name), "{name} missing from {html}");
    }
    let (status, headers, _) = send(&app, login_request("alice", "alice-pw")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let set = headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "no TLS, no Secure: {set}");
    let cookie = cookie_of(&headers);

    let (status, _, html) = send(&app, get("/denylist", &cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("alice (admin)"), "{html}");
    // The daemon was asked on alice's behalf.
    let seen = fake.requests();
    assert!(
        seen.iter()
            .all(|s| s.on_behalf.as_deref() == Some("alice") && s.role.as_deref() == Some("admin"))
    );

    let csrf = html
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let logout = Request::post("/logout")
        .header(header::HOST, HOST)
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("csrf={csrf}")))
        .unwrap();
    let (status, headers, _) = send(&app, logout).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/login");
    // The old cookie is worth nothing now, even if the browser kept it.
    let (status, headers, _) = send(&app, get("/denylist", &cookie)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/login");
}

#[tokio::test]
async fn a_wrong_user_and_a_wrong_password_get_the_same_answer_and_the_sixth_try_429() {
    let fake = FakeDaemon::start().await;
    let dir = TempDir::new();
    let app = console(&fake.socket(), dir.path(), Auth::Local);
    let (s1, _, wrong_pw) = send(&app, login_request("alice", "nope")).await;
    let (s2, _, wrong_user) = send(&app, login_request("mallory", "nope")).await;
    assert_eq!(
        (s1, s2),
        (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED)
    );
    let strip = |html: &str, name: &str| html.replace(name, "NAME");
    assert_eq!(strip(&wrong_pw, "alice"), strip(&wrong_user, "mallory"));
    for _ in 0..4 {
        send(&app, login_request("alice", "nope")).await;
        send(&app, login_request("mallory", "nope")).await;
    }
    // Five failures each: the right password no longer helps, for 15 min.
    let (status, _, html) = send(&app, login_request("alice", "alice-pw")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{html}");
    let (status, _, _) = send(&app, login_request("mallory", "x")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // Another name is not affected.
    let (status, _, _) = send(&app, login_request("victor", "victor-pw")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn an_idle_session_is_signed_out() {
    let fake = FakeDaemon::start().await;
    let b = Browser::admin(&fake).await;
    let later = Instant::now() + Duration::from_secs(3601);
    assert!(b.app.sessions.get(&b.session.id, later).is_none());
    let (status, _) = b.get("/denylist").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_removed_account_or_a_new_password_or_role_ends_its_sessions() {
    let fake = FakeDaemon::start().await;
    type Edit = fn(&mut Users);
    let edits: [(&str, Edit); 3] = [
        ("removed", |u| u.remove("alice").unwrap()),
        ("new password", |u| {
            u.set_password("alice", Some("another-pw")).unwrap()
        }),
        ("demoted", |u| {
            u.remove("alice").unwrap();
            u.add("alice", Role::Viewer, Some("alice-pw")).unwrap();
        }),
    ];
    for (what, edit) in edits {
        let b = Browser::admin(&fake).await;
        let (status, _) = b.get("/denylist").await;
        assert_eq!(status, StatusCode::OK, "{what}: signed in");
        let mut users = Users::load(&b.app.config.users).unwrap();
        edit(&mut users);
        users.save(&b.app.config.users).unwrap();
        let (status, _) = b.get("/denylist").await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{what}: sent to sign in");
        assert!(
            b.app.sessions.get(&b.session.id, Instant::now()).is_none(),
            "{what}: the session is gone on the server"
        );
    }
}

#[tokio::test]
async fn posts_without_the_token_or_from_another_origin_are_refused() {
    let fake = FakeDaemon::start().await;
    let b = Browser::admin(&fake).await;
    let cookie = format!("denylist_session={}", b.session.id);
    let post = |origin: Option<&str>, site: Option<&str>, body: String| {
        let mut r = Request::post("/discard")
            .header(header::HOST, HOST)
            .header(header::COOKIE, &cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(o) = origin {
            r = r.header(header::ORIGIN, o);
        }
        if let Some(s) = site {
            r = r.header("sec-fetch-site", s);
        }
        r.body(Body::from(body)).unwrap()
    };
    let token = format!("csrf={}", b.session.csrf);
    for (req, why) in [
        (
            post(Some("http://console.test:8787"), None, String::new()),
            "no token",
        ),
        (post(None, None, "csrf=0000".into()), "wrong token"),
        (
            post(Some("https://evil.example"), None, token.clone()),
            "other origin",
        ),
        (post(None, Some("cross-site"), token.clone()), "cross-site"),
    ] {
        let (status, _, body) = send(&b.app, req).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{why}: {body}");
    }
    assert!(fake.posts().is_empty(), "a refused post reached the daemon");
    // The token in the header, as htmx sends it, passes.
    let req = Request::post("/discard")
        .header(header::HOST, HOST)
        .header(header::COOKIE, &cookie)
        .header("x-csrf-token", &b.session.csrf)
        .body(Body::empty())
        .unwrap();
    let (status, _, _) = send(&b.app, req).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(fake.posts().len(), 1);
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let fake = FakeDaemon::start().await;
    let b = Browser::viewer(&fake).await;
    for path in [
        "/login",
        "/denylist",
        "/assets/htmx.min.js",
        "/assets/console.css",
        "/assets/console.js",
        "/assets/favicon.svg",
    ] {
        let req = Request::get(path)
            .header(header::COOKIE, format!("denylist_session={}", b.session.id))
            .body(Body::empty())
            .unwrap();
        let (status, h, _) = send(&b.app, req).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.starts_with("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(h.contains_key(header::REFERRER_POLICY));
    }
    // No inline script or style anywhere a page could carry one.
    let (_, html) = b.get("/denylist").await;
    assert!(!html.contains("<script>") && !html.contains("style=") && !html.contains("onclick"));
    assert!(html.contains(r#""includeIndicatorStyles":false"#));
}

#[tokio::test]
async fn behind_a_proxy_the_header_counts_only_with_the_secret() {
    let fake = FakeDaemon::start().await;
    let dir = TempDir::new();
    let app = console(
        &fake.socket(),
        dir.path(),
        Auth::Proxy {
            header: header::HeaderName::from_static("x-remote-user"),
            proof: Proof::Secret(b"proxy-secret".to_vec()),
        },
    );
    let req = |secret: Option<&str>, user: &str| {
        let mut r = Request::get("/denylist")
            .header(header::HOST, HOST)
            .header("x-remote-user", user);
        if let Some(s) = secret {
            r = r.header("x-proxy-secret", s);
        }
        r.body(Body::empty()).unwrap()
    };
    let (status, _, _) = send(&app, req(None, "alice")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = send(&app, req(Some("guess"), "alice")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        fake.requests().is_empty(),
        "a forged header reached the daemon"
    );
    // An account is needed, even with the proof.
    let (status, _, _) = send(&app, req(Some("proxy-secret"), "mallory")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, headers, html) = send(&app, req(Some("proxy-secret"), "victor")).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("victor (viewer)"));
    assert!(
        headers.contains_key(header::SET_COOKIE),
        "a session for the CSRF token"
    );
    assert_eq!(
        fake.requests()[0].role.as_deref(),
        Some(Role::Viewer.as_str())
    );
}
