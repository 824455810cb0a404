//! Sessions end when they should: Sign out kills the session on the
//! server (the old cookie opens nothing), an idle session expires, and the
//! sixth wrong password for a name within 15 minutes is throttled.

use std::{thread, time::Duration};

use denylist_tests::web::{ADMIN, Stack, VIEWER, WebOpts, http::form};

use crate::signed_in;

/// GET `path` with `cookie`: 200, or where the console sends the browser.
fn open_with(s: &Stack, path: &str, cookie: &str) -> (u16, Option<String>) {
    let r = s.web.request("GET", path, &[("Cookie", cookie)], None);
    (r.status, r.header("location").map(str::to_string))
}

const TO_LOGIN: (u16, Option<&str>) = (303, Some("/login"));

fn is_login(got: &(u16, Option<String>)) -> bool {
    (got.0, got.1.as_deref()) == TO_LOGIN
}

#[test]
fn sign_out_kills_the_session_on_the_server() {
    let s = Stack::start("wlogout", &[ADMIN], &WebOpts::default());
    let b = signed_in(&s, &ADMIN);
    let cookies = b.cookies();
    let session = cookies
        .iter()
        .find(|c| c.0 == "denylist_session")
        .unwrap_or_else(|| panic!("a session cookie: {cookies:?}"));
    assert!(session.1, "the session cookie is HttpOnly");
    assert_eq!(session.2, "Strict", "and SameSite=Strict");

    let cookie = b.cookie_header();
    assert_eq!(open_with(&s, "/denylist", &cookie).0, 200, "signed in");
    b.click("Sign out");
    b.wait_true("return location.pathname === '/login'");
    assert!(b.has("Sign in"));
    let after = open_with(&s, "/denylist", &cookie);
    assert!(is_login(&after), "the old cookie opens nothing: {after:?}");
    b.goto("/denylist");
    assert_eq!(b.path(), "/login", "nor does the browser get back in");
}

#[test]
fn an_idle_session_expires() {
    let opts = WebOpts {
        session_idle: Some("3s".into()),
        ..WebOpts::default()
    };
    let s = Stack::start("widle", &[ADMIN], &opts);
    let b = signed_in(&s, &ADMIN);
    let cookie = b.cookie_header();
    // Requests within the idle time keep the session alive past it.
    for _ in 0..3 {
        thread::sleep(Duration::from_millis(1500));
        assert_eq!(open_with(&s, "/status", &cookie).0, 200, "still active");
    }
    thread::sleep(Duration::from_secs(4));
    let after = open_with(&s, "/status", &cookie);
    assert!(is_login(&after), "idle past 3s: {after:?}");
    b.goto("/status");
    assert_eq!(b.path(), "/login");
}

/// One sign-in by hand: the status and the error the page shows.
fn login(s: &Stack, user: &str, password: &str) -> (u16, String) {
    let r = s.web.request(
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(&form(&[("username", user), ("password", password)])),
    );
    let error = r
        .body
        .split("role=\"alert\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap_or_default()
        .to_string();
    (r.status, error)
}

#[test]
fn the_sixth_wrong_password_within_15_minutes_is_throttled() {
    let s = Stack::start("wthrottle", &[ADMIN, VIEWER], &WebOpts::default());
    let password = ADMIN.password.unwrap();
    let b = denylist_tests::web::browser::Browser::start(&s.web.origin());
    for i in 1..=5 {
        b.sign_in(ADMIN.name, "not the password");
        let text = b.wait_text("Wrong user name or password.");
        assert!(!text.contains("Sign out"), "attempt {i} signs nobody in");
    }
    // The sixth, even with the right password, is refused.
    b.sign_in(ADMIN.name, password);
    b.wait_text("Too many failed sign-ins");
    assert_eq!(b.path(), "/login");
    assert_eq!(login(&s, ADMIN.name, password).0, 429);

    // An unknown name gets the very answer a known name's wrong password
    // gets, and is throttled the same.
    let wrong_password = login(&s, VIEWER.name, "not the password");
    assert_eq!(wrong_password.0, 401);
    for _ in 1..=5 {
        assert_eq!(login(&s, "mallory", "guess"), wrong_password);
    }
    assert_eq!(login(&s, "mallory", "guess").0, 429);
    // The throttle is per name: the viewer still signs in.
    assert_eq!(login(&s, VIEWER.name, VIEWER.password.unwrap()).0, 303);
}
