//! Requests the console did not make: a form posted from another origin
//! and a post without the session's CSRF token are refused; a reason that
//! is markup shows as text and runs nothing.

use std::{
    io::{Read as _, Write as _},
    net::TcpListener,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use denylist_tests::web::{ADMIN, Stack, WebOpts, http::form};

use crate::{add, csrf_token, signed_in};

/// Another site: serves one page to every request, until dropped.
struct Site {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Site {
    fn serve(page: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port for the other site");
        let port = listener.local_addr().expect("its address").port();
        // Polled, so dropping the site ends the thread.
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{page}",
                    page.len()
                );
            }
        });
        Self {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_form_from_another_origin_and_a_post_without_the_token_are_refused() {
    let s = Stack::start("wcsrf", &[ADMIN], &WebOpts::default());
    let b = signed_in(&s, &ADMIN);
    let token = csrf_token(&b);
    let before = (s.diff(), s.audit().len());

    // Another origin on the same host: the browser sends the session
    // cookie along (same site), and the page even carries the real token,
    // so only the origin check stands between it and a staged entry.
    let evil = Site::serve(format!(
        "<!doctype html><title>prize</title>\
         <form method=post action=\"{}/denylist/add\">\
         <input type=hidden name=csrf value=\"{token}\">\
         <input type=hidden name=address value=\"198.51.100.66\">\
         <button type=submit>Claim your prize</button></form>",
        s.web.origin()
    ));
    b.goto_url(&format!("http://127.0.0.1:{}/", evil.port));
    b.click("Claim your prize");
    let refused = b.wait_text("another");
    assert!(refused.contains("comes from another"), "{refused}");
    assert_eq!((s.diff(), s.audit().len()), before, "nothing staged");

    // The console's own form, its token taken out by the page's script.
    b.goto("/denylist");
    // htmx sends it in a header too, from the body's hx-headers.
    b.script(
        "document.querySelectorAll('input[name=csrf]').forEach(i => i.remove()); \
         document.body.removeAttribute('hx-headers'); return null",
    );
    b.fill("Address", "198.51.100.67");
    b.click("Add");
    let refused = b.wait_text("CSRF token");
    assert!(refused.contains("carries no CSRF token"), "{refused}");

    // The same by hand: no token, and a token that is not the session's.
    let cookie = b.cookie_header();
    let origin = s.web.origin();
    let headers = [
        ("Cookie", cookie.as_str()),
        ("Origin", origin.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    for body in [
        form(&[("address", "198.51.100.68")]),
        form(&[("address", "198.51.100.68"), ("csrf", &"0".repeat(64))]),
    ] {
        let r = s
            .web
            .request("POST", "/denylist/add", &headers, Some(&body));
        assert_eq!(r.status, 403, "{body}: {r}");
    }
    assert_eq!((s.diff(), s.audit().len()), before, "still nothing staged");

    // The control: the same request with the token is staged, so the
    // refusals above were the token's doing.
    let ok = form(&[("address", "198.51.100.68"), ("csrf", &token)]);
    let r = s.web.request("POST", "/denylist/add", &headers, Some(&ok));
    assert!(r.status == 303 || r.status == 200, "{r}\n{}", s.logs());
    assert_eq!(s.diff()["added"].as_array().map(Vec::len), Some(1));
}

#[test]
fn markup_in_a_reason_shows_as_text_and_runs_nothing() {
    let s = Stack::start("wxss", &[ADMIN], &WebOpts::default());
    let b = signed_in(&s, &ADMIN);
    let evil = "<img src=x onerror=alert(1)>";
    add(&b, "198.51.100.7", evil);
    for page in ["/denylist", "/review", "/audit"] {
        b.goto(page);
        let text = b.wait_text(evil);
        assert!(text.contains(evil), "{page} shows the reason as text");
        let imgs = b.script("return document.querySelectorAll('main img').length");
        assert_eq!(imgs, 0, "{page}: the reason made no element");
        assert_eq!(b.dialog(), None, "{page}: no dialog opened");
    }

    // Markup in the address comes back inline, as text, in the form.
    b.goto("/denylist");
    b.fill("Address", "<script>alert(2)</script>");
    b.click("Add");
    b.wait_true("return document.getElementById('add-error') !== null");
    let scripts = b
        .script("return [...document.scripts].filter(s => s.textContent.includes('alert')).length");
    assert_eq!(scripts, 0, "the address made no script");
    assert_eq!(b.dialog(), None, "no dialog opened");
    assert_eq!(
        s.diff()["added"].as_array().map(Vec::len),
        Some(1),
        "only the first entry is staged"
    );
}
