//! The Top sources and Auto-blocking pages with the rate detector behind
//! them: trafgen floods the daemon's veth, the heaviest source shows on
//! Top sources and "Block 1h" stages it; in enforce mode a flood becomes an
//! `auto:rate` listing that Auto-blocking shows and "Unblock and allow"
//! turns into an allow entry.

use std::{net::Ipv4Addr, time::Duration};

use denylist_tests::{
    netns::Sources,
    web::{ADMIN, Stack},
};

use crate::{save_and_deploy, signed_in};

const HEAVY: &str = "198.18.0.30";
const ENFORCED: &str = "198.18.0.31";

fn verdict(s: &Stack, ip: &str) -> String {
    s.get(&format!("/v1/check/{ip}"))["verdict"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn top_sources_block_and_auto_blocking_unblock_in_the_browser() {
    let s = Stack::with_traffic("webrate", &[], &[ADMIN]);
    let pair = s.pair.as_ref().expect("a veth pair");
    s.cli(0, &["auto", "set", "--pps", "500"]);
    let flood = |src: &str| {
        pair.blast(
            Sources::One(src.parse::<Ipv4Addr>().unwrap()),
            5_000,
            5_000 * 20,
        )
        .expect("trafgen")
    };
    let heavy = flood(HEAVY);
    let b = signed_in(&s, &ADMIN);
    // The page is drawn when asked: come back until the detector has seen
    // an epoch of the flood.
    b.revisit("/top", |b| b.has(&format!("Block {HEAVY} for 1h")));
    b.click(&format!("Block {HEAVY} for 1h"));
    b.wait_text(&format!("Staged: {HEAVY} blocked for 1h"));
    save_and_deploy(&b, "block the heaviest source");
    assert_eq!(verdict(&s, HEAVY), "drop", "{}", s.logs());
    drop(heavy);

    s.cli(0, &["auto", "set", "--mode", "enforce"]);
    let enforced = flood(ENFORCED);
    for _ in 0..40 {
        if verdict(&s, ENFORCED) == "drop" {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        verdict(&s, ENFORCED),
        "drop",
        "listed by auto:rate\n{}",
        s.logs()
    );
    drop(enforced);
    b.goto("/auto");
    b.wait_text("pps over 500 pps");
    b.wait_text("listed");
    b.click(&format!("Unblock and allow {ENFORCED}"));
    b.wait_text(&format!("Staged: {ENFORCED} allowed instead of blocked"));
    save_and_deploy(&b, "allow the rate offender");
    assert_eq!(verdict(&s, ENFORCED), "pass", "{}", s.logs());
}
