use std::collections::BTreeSet;

use super::*;

fn settings() -> FeedSettings {
    FeedSettings {
        url: "https://example.org/list.txt".into(),
        format: Format::Auto,
        every: 3600,
        stale_after: 3 * 3600,
        monitor: false,
        max_entries: 100_000,
        max_change: 50,
        max_width: None,
        allow_empty: false,
        review: false,
        header_file: None,
    }
}

fn targets(list: &[&str]) -> BTreeSet<Target> {
    list.iter().map(|t| Target::parse(t).unwrap()).collect()
}

/// Each preset's parser reads a file shaped like the real list (headers,
/// comments and metadata included) as exactly its entries.
#[test]
fn every_preset_reads_its_fixture() {
    let fixture = |name: &str| -> (&'static [u8], &'static [&'static str]) {
        match name {
            "spamhaus-drop" => (
                include_bytes!("fixtures/spamhaus-drop.json"),
                &[
                    "1.10.16.0/20",
                    "1.19.0.0/16",
                    "1.32.128.0/18",
                    "2.56.192.0/22",
                    "5.134.128.0/19",
                ],
            ),
            "spamhaus-dropv6" => (
                include_bytes!("fixtures/spamhaus-dropv6.json"),
                &["2001:678:738::/48", "2400:c8c0::/32", "2a06:5280::/29"],
            ),
            "firehol-level1" => (
                include_bytes!("fixtures/firehol_level1.netset"),
                &[
                    "1.10.16.0/20",
                    "1.19.0.0/16",
                    "2.56.192.0/22",
                    "5.134.128.0/19",
                    "31.11.43.0/24",
                    "45.135.232.0/24",
                    "185.156.73.54",
                ],
            ),
            "blocklist-de" => (
                include_bytes!("fixtures/blocklist-de-all.txt"),
                &[
                    "1.12.231.54",
                    "1.14.96.175",
                    "1.15.137.87",
                    "2.57.122.191",
                    "5.181.86.113",
                    "2a01:4f8:c17:e3d1::1",
                ],
            ),
            "feodo" => (
                include_bytes!("fixtures/feodo-ipblocklist.txt"),
                &["50.16.16.211", "162.243.103.246", "167.86.75.145"],
            ),
            "ipsum-3" => (
                include_bytes!("fixtures/ipsum-level3.txt"),
                &[
                    "2.57.122.191",
                    "45.148.10.121",
                    "80.94.95.115",
                    "92.255.85.107",
                    "218.92.0.112",
                ],
            ),
            other => panic!("preset {other} has no fixture"),
        }
    };
    for p in PRESETS {
        let (body, want) = fixture(p.name);
        let list = read(body, p.format);
        assert_eq!(list.targets, targets(want), "{}", p.name);
        assert_eq!(list.invalid, 0, "{}", p.name);
        assert!(!list.html, "{}", p.name);
        assert!(
            check(&list, &BTreeSet::new(), &settings()).is_ok(),
            "{}",
            p.name
        );
        // Auto detection reads each the same way.
        assert_eq!(read(body, Format::Auto).targets, list.targets, "{}", p.name);
        assert!(p.url.starts_with("https://"), "{}", p.name);
        assert!(p.every >= Duration::from_secs(60), "{}", p.name);
    }
    assert_eq!(preset("feodo").unwrap().every, Duration::from_secs(1800));
    assert!(preset("nonesuch").is_none());
}

#[test]
fn outage_pages_and_empty_lists_are_held() {
    let page = b"<!DOCTYPE html>\n<html><body>503 Service Unavailable</body></html>\n";
    let list = read(page, Format::Auto);
    assert!(list.html);
    let held = check(&list, &targets(&["192.0.2.1"]), &settings()).unwrap_err();
    assert!(held.reason.contains("HTML"), "{}", held.reason);
    assert!(
        !held.reason.contains("Service Unavailable"),
        "never echoes the body"
    );

    let empty = read(b"# nothing today\n", Format::Plain);
    let held = check(&empty, &targets(&["192.0.2.1"]), &settings()).unwrap_err();
    assert!(held.reason.contains("empty"), "{}", held.reason);
    assert_eq!((held.added, held.removed), (0, 1));
    let allowed = FeedSettings {
        allow_empty: true,
        ..settings()
    };
    assert!(check(&empty, &targets(&["192.0.2.1"]), &allowed).is_ok());
}

#[test]
fn more_than_one_percent_of_bad_lines_hold_the_list() {
    let mut body = String::new();
    for i in 0..95 {
        body.push_str(&format!("198.51.{}.{}\n", i / 200, i % 200 + 1));
    }
    for _ in 0..5 {
        body.push_str("not-an-address secret-token\n");
    }
    let list = read(body.as_bytes(), Format::Plain);
    assert_eq!((list.lines, list.invalid), (100, 5));
    let held = check(&list, &BTreeSet::new(), &settings()).unwrap_err();
    assert!(
        held.reason.contains("5 of its 100 lines"),
        "{}",
        held.reason
    );
    assert!(
        !held.reason.contains("secret-token"),
        "never echoes the body"
    );
    // One bad line in a hundred is within the allowance.
    let mut one_bad: String = (1..=99).map(|i| format!("198.51.100.{i}\n")).collect();
    one_bad.push_str("not-an-address\n");
    assert!(
        check(
            &read(one_bad.as_bytes(), Format::Plain),
            &BTreeSet::new(),
            &settings()
        )
        .is_ok()
    );
}

#[test]
fn big_shrinks_and_oversized_lists_are_held() {
    let all: Vec<String> = (0..200).map(|i| format!("203.0.113.{}", i % 250)).collect();
    let previous: BTreeSet<Target> = all.iter().map(|t| Target::parse(t).unwrap()).collect();
    let shrunk: String = all[..20].join("\n");
    let held = check(
        &read(shrunk.as_bytes(), Format::Plain),
        &previous,
        &settings(),
    )
    .unwrap_err();
    assert_eq!((held.added, held.removed), (0, 180));
    assert!(held.reason.contains("--max-change 50%"), "{}", held.reason);
    // Replacing the whole list is a 100% change: allowed at --max-change 100.
    let other: String = (0..200).map(|i| format!("192.0.2.{}\n", i % 250)).collect();
    let whole = FeedSettings {
        max_change: 100,
        ..settings()
    };
    assert!(check(&read(other.as_bytes(), Format::Plain), &previous, &whole).is_ok());
    assert!(
        check(
            &read(other.as_bytes(), Format::Plain),
            &previous,
            &settings()
        )
        .is_err()
    );
    // Below the floor, any change goes.
    let small: BTreeSet<Target> = previous.iter().take(50).copied().collect();
    assert!(check(&read(b"203.0.113.1\n", Format::Plain), &small, &settings()).is_ok());
    let capped = FeedSettings {
        max_entries: 10,
        ..settings()
    };
    let held = check(
        &read(shrunk.as_bytes(), Format::Plain),
        &BTreeSet::new(),
        &capped,
    )
    .unwrap_err();
    assert!(held.reason.contains("--max-entries 10"), "{}", held.reason);
}

#[test]
fn max_width_widens_the_guardrail_per_family() {
    let t = |s: &str| Target::parse(s).unwrap();
    assert!(!width_allowed(&t("10.0.0.0/8"), None));
    assert!(width_allowed(&t("10.0.0.0/12"), Some(12)));
    assert!(!width_allowed(&t("10.0.0.0/11"), Some(12)));
    assert!(width_allowed(&t("2001:db8::/44"), Some(12)));
    assert!(!width_allowed(&t("2001:db8::/43"), Some(12)));
}
