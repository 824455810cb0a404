//! The core's automatic blocking against the fake filter: listings from
//! several sources, feed refreshes (fed their bodies directly, as the
//! fetcher would hand them over), and reports.

use super::{
    Core,
    testing::{self, TempDir},
};
use crate::{
    daemon::fetch::Validators,
    model::{FeedStatus, List, Target, Verdict},
    policy::GuardContext,
    wire::{AddRequest, AutoSetRequest, FeedAddRequest, RemoveRequest, ReportRequest, StageItem},
};

fn core(dir: &TempDir) -> Core {
    testing::core(dir)
}

fn verdict(core: &Core, ip: &str) -> Verdict {
    core.check(ip.parse().unwrap()).verdict
}

fn sources(core: &Core, ip: &str) -> Vec<String> {
    core.check(ip.parse().unwrap()).sources
}

fn add(core: &mut Core, target: &str, ttl: Option<&str>, deploy: bool) {
    let req = AddRequest {
        entries: vec![StageItem {
            target: target.into(),
            list: List::Deny,
            reason: Some("typed".into()),
            ttl: ttl.map(String::from),
            monitor: None,
        }],
        deploy,
        ..AddRequest::default()
    };
    core.add("alice", req).unwrap();
}

fn remove(core: &mut Core, target: &str, source: Option<&str>) -> Vec<String> {
    let req = RemoveRequest {
        targets: vec![Target::parse(target).unwrap()],
        list: List::Deny,
        deploy: true,
        message: None,
        source: source.map(String::from),
    };
    core.remove("alice", req).unwrap().warnings
}

fn feed(core: &mut Core, name: &str, monitor: bool, review: bool) {
    let req = FeedAddRequest {
        name: name.into(),
        url: Some(format!("https://feeds.example.org/{name}.txt")),
        monitor,
        review,
        ..FeedAddRequest::default()
    };
    core.feed_add("alice", req).unwrap();
}

fn serve(core: &mut Core, name: &str, body: &str) -> FeedStatus {
    core.feed_fetched(
        name,
        Some(body.as_bytes()),
        Validators::default(),
        &GuardContext::default(),
    )
    .unwrap();
    core.feed(name).unwrap().state
}

#[test]
fn an_address_stays_blocked_until_every_source_lets_go() {
    let dir = TempDir::new("listings");
    let mut c = core(&dir);
    feed(&mut c, "a", false, false);
    feed(&mut c, "b", false, false);
    add(&mut c, "192.0.2.1", None, true);
    assert_eq!(serve(&mut c, "a", "192.0.2.1\n192.0.2.2\n"), FeedStatus::Ok);
    assert_eq!(serve(&mut c, "b", "192.0.2.1\n"), FeedStatus::Ok);
    assert_eq!(sources(&c, "192.0.2.1"), ["manual", "feed:a", "feed:b"]);
    assert_eq!(
        c.status().unwrap().pending_changes,
        0,
        "every deploy shipped whole"
    );
    // Each refresh was its own revision, by its feed.
    let history = c.history(crate::model::Page::default()).unwrap();
    let by: Vec<&str> = history.iter().map(|r| r.deployed_by.as_str()).collect();
    assert_eq!(by, ["alice", "feed:a", "feed:b"]);

    let warnings = remove(&mut c, "192.0.2.1", None);
    assert!(warnings[0].contains("feed:a, feed:b"), "{warnings:?}");
    assert_eq!(verdict(&c, "192.0.2.1"), Verdict::Drop);
    remove(&mut c, "192.0.2.1", Some("feed:a"));
    assert_eq!(verdict(&c, "192.0.2.1"), Verdict::Drop);
    assert_eq!(sources(&c, "192.0.2.1"), ["feed:b"]);
    // The feed's next list leaves it out: nothing lists it any more.
    assert_eq!(serve(&mut c, "b", "198.51.100.1\n"), FeedStatus::Ok);
    assert_eq!(verdict(&c, "192.0.2.1"), Verdict::Pass);
    assert_eq!(verdict(&c, "198.51.100.1"), Verdict::Drop);
}

#[test]
fn a_feed_deploys_its_own_listings_and_leaves_an_admins_pending_change_staged() {
    let dir = TempDir::new("partial");
    let mut c = core(&dir);
    feed(&mut c, "a", false, false);
    add(&mut c, "192.0.2.1", None, true);
    // Staged, not deployed: a new reason for the manual listing.
    let req = AddRequest {
        entries: vec![StageItem {
            target: "192.0.2.1".into(),
            list: List::Deny,
            reason: Some("changed my mind".into()),
            ttl: None,
            monitor: None,
        }],
        ..AddRequest::default()
    };
    c.add("alice", req).unwrap();
    serve(&mut c, "a", "192.0.2.1\n");
    let diff = c.diff().unwrap();
    assert_eq!(diff.changed.len(), 1, "the admin's change is still pending");
    let change = &diff.changed[0].item;
    assert_eq!(
        change.before.sources,
        ["manual", "feed:a"],
        "the feed's is deployed"
    );
    assert_eq!(change.before.reason.as_deref(), Some("typed"));
    assert_eq!(change.after.reason.as_deref(), Some("changed my mind"));
    c.deploy("alice", None, None, false, None).unwrap();
    assert_eq!(sources(&c, "192.0.2.1"), ["manual", "feed:a"]);
}

#[test]
fn when_the_enforcing_listing_expires_the_monitoring_one_is_left() {
    let dir = TempDir::new("expiry");
    let mut c = core(&dir);
    feed(&mut c, "watch", true, false);
    serve(&mut c, "watch", "192.0.2.1\n");
    assert_eq!(verdict(&c, "192.0.2.1"), Verdict::Monitor);
    add(&mut c, "192.0.2.1", Some("1s"), true);
    assert_eq!(verdict(&c, "192.0.2.1"), Verdict::Drop);
    assert_eq!(
        c.status().unwrap().pending_changes,
        0,
        "the add shipped whole"
    );
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    c.sweep().unwrap();
    assert_eq!(verdict(&c, "192.0.2.1"), Verdict::Monitor);
    assert_eq!(sources(&c, "192.0.2.1"), ["feed:watch"]);
}

#[test]
fn rollback_restores_the_admins_listings_and_keeps_the_feeds() {
    let dir = TempDir::new("rollback");
    let mut c = core(&dir);
    feed(&mut c, "a", false, false);
    add(&mut c, "192.0.2.1", None, true);
    let rev = c.status().unwrap().revision;
    remove(&mut c, "192.0.2.1", None);
    serve(&mut c, "a", "192.0.2.1\n192.0.2.9\n");
    let req = crate::wire::RollbackRequest {
        revision: rev,
        force: false,
        deploy: true,
        message: None,
    };
    c.rollback("alice", req).unwrap();
    assert_eq!(sources(&c, "192.0.2.1"), ["manual", "feed:a"]);
    assert_eq!(
        sources(&c, "192.0.2.9"),
        ["feed:a"],
        "not in that revision, kept"
    );
}

#[test]
fn a_big_shrink_is_held_until_approved_and_review_stages_only() {
    let dir = TempDir::new("held");
    let mut c = core(&dir);
    feed(&mut c, "big", false, false);
    let all: String = (1..=200).map(|i| format!("198.51.100.{i}\n")).collect();
    assert_eq!(serve(&mut c, "big", &all), FeedStatus::Ok);
    let shrunk: String = (1..=20).map(|i| format!("198.51.100.{i}\n")).collect();
    assert_eq!(serve(&mut c, "big", &shrunk), FeedStatus::Held);
    let info = c.feed("big").unwrap();
    let held = info.held.unwrap();
    assert_eq!((held.added, held.removed), (0, 180));
    assert!(info.last_error.unwrap().contains("--max-change"));
    assert_eq!(
        verdict(&c, "198.51.100.150"),
        Verdict::Drop,
        "the last good list stays"
    );
    let approved = c
        .feed_approve("alice", "big", &GuardContext::default())
        .unwrap();
    assert_eq!((approved.state, approved.entries), (FeedStatus::Ok, 20));
    assert_eq!(verdict(&c, "198.51.100.150"), Verdict::Pass);

    feed(&mut c, "slow", false, true);
    assert_eq!(serve(&mut c, "slow", "203.0.113.5\n"), FeedStatus::Review);
    assert_eq!(
        verdict(&c, "203.0.113.5"),
        Verdict::Pass,
        "staged, not deployed"
    );
    assert_eq!(c.diff().unwrap().added.len(), 1);
    c.deploy("alice", None, None, false, None).unwrap();
    assert_eq!(verdict(&c, "203.0.113.5"), Verdict::Drop);
    assert_eq!(c.feed("slow").unwrap().state, FeedStatus::Ok);
}

#[test]
fn a_feeds_credentials_stay_out_of_its_listing_and_the_audit_log() {
    let dir = TempDir::new("redact");
    let mut c = core(&dir);
    let req = FeedAddRequest {
        name: "private".into(),
        url: Some("https://reader:hunter2@feeds.example.org/list?token=s3cret".into()),
        ..FeedAddRequest::default()
    };
    c.feed_add("alice", req).unwrap();
    let shown = c.feed("private").unwrap().url;
    assert!(
        !shown.contains("hunter2") && !shown.contains("s3cret"),
        "{shown}"
    );
    let log = serde_json::to_string(
        &c.audit(crate::model::Page::default(), &Default::default())
            .unwrap(),
    )
    .unwrap();
    assert!(log.contains("feed add"), "{log}");
    assert!(!log.contains("hunter2") && !log.contains("s3cret"), "{log}");
}

#[test]
fn guarded_lines_are_skipped_and_counted_and_failures_change_nothing() {
    let dir = TempDir::new("guarded");
    let mut c = core(&dir);
    feed(&mut c, "g", false, false);
    serve(&mut c, "g", "10.0.0.0/8\n127.0.0.1\n192.0.2.1\n0.0.0.0/0\n");
    let info = c.feed("g").unwrap();
    assert_eq!((info.entries, info.guarded_skipped), (1, 3));
    c.feed_failed("g", "the server answered HTTP 500").unwrap();
    let info = c.feed("g").unwrap();
    assert_eq!(info.state, FeedStatus::Failing);
    assert_eq!(
        info.last_error.as_deref(),
        Some("the server answered HTTP 500")
    );
    assert_eq!(verdict(&c, "192.0.2.1"), Verdict::Drop);
    // A 304 is a success that changes nothing.
    c.feed_fetched("g", None, Validators::default(), &GuardContext::default())
        .unwrap();
    assert_eq!(c.feed("g").unwrap().state, FeedStatus::Ok);
    assert_eq!(c.feed_remove("alice", "g").map(|_| ()).ok(), Some(()));
    assert_eq!(
        verdict(&c, "192.0.2.1"),
        Verdict::Pass,
        "its listings went with it"
    );
}

fn report(c: &mut Core, ip: &str, weight: u8) -> crate::wire::ReportResponse {
    let req = ReportRequest {
        ip: ip.parse().unwrap(),
        reason: format!("weight {weight}"),
        weight,
    };
    c.report("app", req, Ok(GuardContext::default())).unwrap()
}

#[test]
fn reports_list_at_the_threshold_and_escalate_on_reoffence() {
    let dir = TempDir::new("reports");
    let mut c = core(&dir);
    assert_eq!(
        report(&mut c, "198.51.100.7", 5).blocked,
        None,
        "no policy yet"
    );
    let policy = AutoSetRequest {
        reports: Some(8),
        within: Some("10m".into()),
        ..AutoSetRequest::default()
    };
    c.set_auto("alice", policy).unwrap();
    let r = report(&mut c, "198.51.100.7", 2);
    assert_eq!((r.weight, r.blocked), (7, None));
    let r = report(&mut c, "198.51.100.7", 1);
    assert_eq!(r.ttl, Some(600));
    assert_eq!(verdict(&c, "198.51.100.7"), Verdict::Drop);
    assert_eq!(sources(&c, "198.51.100.7"), ["auto:reports"]);
    let last = c.history(crate::model::Page::default()).unwrap();
    assert_eq!(last.last().unwrap().deployed_by, "auto");
    // The listing is lifted; the next offence within 30 days lasts 4× as long.
    remove(&mut c, "198.51.100.7", Some("auto:reports"));
    assert_eq!(report(&mut c, "198.51.100.7", 1).ttl, Some(2_400));
    let e = c
        .report(
            "app",
            ReportRequest {
                ip: "198.51.100.8".parse().unwrap(),
                reason: "x".into(),
                weight: 11,
            },
            Ok(GuardContext::default()),
        )
        .unwrap_err();
    assert!(e.to_string().contains("1 to 10"), "{e}");
    // Reports older than the window no longer count.
    let short = AutoSetRequest {
        reports: Some(3),
        within: Some("1s".into()),
        ..AutoSetRequest::default()
    };
    c.set_auto("alice", short).unwrap();
    assert_eq!(report(&mut c, "198.51.100.9", 2).weight, 2);
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let r = report(&mut c, "198.51.100.9", 2);
    assert_eq!(
        (r.weight, r.blocked),
        (2, None),
        "the first fell out of the window"
    );
    // Guardrails apply and are never forced.
    let r = report(&mut c, "10.1.2.3", 10);
    assert!(r.refused.unwrap().contains("10.0.0.0/8"));
    assert_eq!(verdict(&c, "10.1.2.3"), Verdict::Pass);
}
