//! The web console in a real headless Chromium (issue 14, "Tests and
//! figures"): a daemon, `denylist-web` as an unprivileged user in the
//! daemon's web group, and the browser clicking controls found by their
//! accessible names. Needs root (users, netns, XDP) and chromium with
//! chromium-driver (`cargo xtask setup`). Run one at a time:
//! `cargo test -p denylist-tests --test web -- --test-threads=1`.

mod autoblock;
mod fleet;
mod forgery;
mod proxy;
mod rate;
mod review;
mod roles;
mod screenshots;
mod sessions;
mod story;

use denylist_tests::web::{Login, Stack, browser::Browser};

/// A fresh browser signed in to `stack`'s console as `who`, on the
/// Denylist page.
#[track_caller]
pub(crate) fn signed_in(stack: &Stack, who: &Login<'_>) -> Browser {
    let b = Browser::start(&stack.web.origin());
    b.sign_in(who.name, who.password.expect("an account with a password"));
    // Every page names who is signed in next to Sign out.
    b.wait_text(&format!("{} ({})", who.name, who.role));
    assert!(b.has("Sign out"), "{}", stack.logs());
    b
}

/// The page's CSRF token, as a form of the console carries it.
#[track_caller]
pub(crate) fn csrf_token(b: &Browser) -> String {
    b.script("const i = document.querySelector('input[name=csrf]'); return i ? i.value : null")
        .as_str()
        .unwrap_or_else(|| panic!("no CSRF token on {}", b.path()))
        .to_string()
}

/// Stages `address` with the add form of the Denylist page and waits for
/// the console to say so.
#[track_caller]
pub(crate) fn add(b: &Browser, address: &str, reason: &str) {
    b.goto("/denylist");
    b.fill("Address", address);
    b.fill("Reason", reason);
    b.click("Add");
    b.wait_text(&format!("Staged {address}"));
}

/// Save and Deploy from the banner, with `message`; returns the revision
/// the console says it deployed.
#[track_caller]
pub(crate) fn save_and_deploy(b: &Browser, message: &str) -> u64 {
    b.click("Save and Deploy");
    b.fill("Message", message);
    b.click("Deploy");
    let text = b.wait_text("Deployed revision ");
    text.split("Deployed revision ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no revision number in:\n{text}"))
}

/// The events of the audit log whose user is `who`.
pub(crate) fn audited_as(stack: &Stack, who: &str) -> Vec<serde_json::Value> {
    stack
        .audit()
        .into_iter()
        .filter(|e| e["user"] == who)
        .collect()
}
