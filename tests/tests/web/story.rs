//! The seed's story: an admin types an address into the Denylist page,
//! clicks Save and Deploy, and live traffic from that address is dropped;
//! the trash icon and Save and Deploy again, and it flows. The audit log
//! names the admin as a web user.

use std::net::IpAddr;

use denylist_tests::web::{ADMIN, Stack};

use crate::{add, audited_as, save_and_deploy, signed_in};

#[test]
fn an_admin_blocks_an_address_and_unblocks_it_with_the_trash_icon() {
    let bad: IpAddr = "198.51.100.7".parse().unwrap();
    let good: IpAddr = "198.51.100.8".parse().unwrap();
    let s = Stack::with_traffic("wstory", &[bad, good], &[ADMIN]);
    assert!(!s.dropped(bad), "{bad} flows before anything is listed");
    let rev0 = s.revision();

    let b = signed_in(&s, &ADMIN);
    add(&b, "198.51.100.7", "ssh brute force");
    b.wait_text("1 pending change");
    assert!(b.has("Review") && b.has("Discard"), "the banner's controls");
    assert!(
        !s.dropped(bad),
        "a staged entry drops nothing before the deploy"
    );

    let rev1 = save_and_deploy(&b, "block the scanner");
    assert_eq!(rev1, s.revision(), "the page names the live revision");
    assert!(rev1 > rev0);
    assert!(
        s.dropped(bad),
        "{bad} is dropped once deployed\n{}",
        s.logs()
    );
    assert!(!s.dropped(good), "{good} still flows");
    assert!(!b.text().contains("pending change"), "the banner is gone");

    // The row shows what was added, by whom.
    let row = b.wait_text("ssh brute force");
    assert!(row.contains("alice (web)"), "{row}");
    b.click("Remove 198.51.100.7");
    b.wait_text("1 pending change");
    assert!(s.dropped(bad), "a staged removal changes nothing yet");
    let rev2 = save_and_deploy(&b, "unblock");
    assert!(rev2 > rev1);
    assert!(!s.dropped(bad), "{bad} flows again after the removal ships");

    b.goto("/audit");
    b.wait_text("alice (web)");
    let mine = audited_as(&s, "alice (web)");
    let kinds: Vec<&str> = mine.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        ["stage add", "deploy", "stage remove", "deploy"],
        "{mine:?}"
    );
    assert_eq!(mine[1]["detail"]["message"], "block the scanner");
    let entry_by = &mine[0]["detail"]["added_by"];
    assert_eq!(entry_by, "alice (web)");
}
