//! Review, then Deploy: the deploy dialog remembers the draft it showed,
//! and a change someone else stages after that makes the deploy answer
//! 409, so nothing ships that was not reviewed.

use denylist_tests::web::{ADMIN, Stack, WebOpts, http::form};
use serde_json::{Value, json};

use crate::{add, csrf_token, save_and_deploy, signed_in};

/// The deployed entries' targets.
fn deployed(s: &Stack) -> Vec<String> {
    let entries: Vec<Value> = s
        .api()
        .get("/v1/entries?draft=false")
        .expect("the deployed entries");
    entries
        .iter()
        .filter_map(|e| e["target"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn a_change_staged_after_the_review_makes_the_deploy_answer_409() {
    let s = Stack::start("wreview", &[ADMIN], &WebOpts::default());
    let b = signed_in(&s, &ADMIN);
    add(&b, "198.51.100.7", "reviewed");
    let rev = s.revision();

    // The dialog shows the diff the admin is about to ship.
    b.click("Save and Deploy");
    // The page behind lists the address too: wait for the dialog itself.
    b.wait_true("return document.querySelector('input[name=expect_seq]') !== null");
    let dialog = b.wait_text("198.51.100.7");
    assert!(!dialog.contains("198.51.100.9"), "{dialog}");
    let reviewed = b.script("return document.querySelector('input[name=expect_seq]').value");
    let reviewed = reviewed
        .as_str()
        .expect("the reviewed draft's seq")
        .to_string();

    // Someone else (root, with the CLI's API) stages after the review.
    let _: Value = s
        .api()
        .post(
            "/v1/entries",
            &json!({"entries": [{"target": "198.51.100.9", "reason": "not reviewed"}]}),
        )
        .expect("stage as root");

    b.fill("Message", "only what I saw");
    b.click("Deploy");
    let refused = b.wait_text("changed since you reviewed it");
    assert!(refused.contains("nothing was deployed"), "{refused}");
    assert_eq!(s.revision(), rev, "no revision shipped\n{}", s.logs());
    assert!(deployed(&s).is_empty(), "nothing reached the kernel's list");
    assert!(
        !s.audit().iter().any(|e| e["kind"] == "deploy"),
        "no deploy was audited"
    );

    // The same deploy by hand says 409, as the daemon does.
    let r = s.web.request(
        "POST",
        "/deploy",
        &[
            ("Cookie", &b.cookie_header()),
            ("Origin", &s.web.origin()),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        Some(&form(&[
            ("csrf", &csrf_token(&b)),
            ("expect_seq", &reviewed),
        ])),
    );
    assert_eq!(r.status, 409, "{r}");
    assert_eq!(s.revision(), rev);

    // Reviewed again, the whole draft ships.
    let shipped = save_and_deploy(&b, "both, reviewed");
    assert_eq!(shipped, s.revision());
    assert_eq!(deployed(&s), ["198.51.100.7", "198.51.100.9"]);
}
