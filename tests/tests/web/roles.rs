//! A viewer sees the lists but no control that changes them, and a change
//! crafted by hand with the viewer's own session is refused by the daemon,
//! which is told the role with every request: hiding the buttons is not
//! the protection.

use denylist_tests::web::{ADMIN, Stack, VIEWER, WebOpts, http::form};

use crate::{add, csrf_token, signed_in};

#[test]
fn a_viewer_has_no_change_controls_and_a_crafted_post_is_refused() {
    let s = Stack::start("wroles", &[ADMIN, VIEWER], &WebOpts::default());
    // Something to see, and a pending change to see the banner with.
    let admin = signed_in(&s, &ADMIN);
    add(&admin, "198.51.100.7", "scanner");
    drop(admin);

    let b = signed_in(&s, &VIEWER);
    b.goto("/denylist");
    let page = b.wait_text("198.51.100.7");
    assert!(page.contains("1 pending change"), "{page}");
    assert!(b.has("Review"), "a viewer may look at the pending changes");
    for control in [
        "Address",
        "Reason",
        "TTL",
        "Monitor only",
        "Add",
        "Remove 198.51.100.7",
        "Save and Deploy",
        "Discard",
    ] {
        assert!(!b.has(control), "a viewer sees no {control:?}");
    }
    b.goto("/allowlist");
    assert!(!b.has("Add"), "nor on the Allowlist");

    // The viewer's own session and token, in a post the page never offered.
    let before = (s.diff(), s.audit().len(), s.revision());
    let token = csrf_token(&b);
    let cookie = b.cookie_header();
    let origin = s.web.origin();
    let body = form(&[
        ("csrf", &token),
        ("address", "198.51.100.9"),
        ("reason", "viewer"),
    ]);
    let r = s.web.request(
        "POST",
        "/denylist/add",
        &[
            ("Cookie", &cookie),
            ("Origin", &origin),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        Some(&body),
    );
    assert_eq!(r.status, 403, "{r}\n{}", s.logs());
    assert!(r.body.contains("Not allowed"), "the daemon's refusal: {r}");
    let deploy = s.web.request(
        "POST",
        "/deploy",
        &[
            ("Cookie", &cookie),
            ("Origin", &origin),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        Some(&form(&[("csrf", &token)])),
    );
    assert_eq!(deploy.status, 403, "{deploy}");
    assert_eq!(
        (s.diff(), s.audit().len(), s.revision()),
        before,
        "nothing staged, nothing deployed"
    );
}
