//! The rate detector's policy against the fake filter, whose detector
//! reports the traffic a test rigs: modes, protection, listings and their
//! escalation, the circuit breaker, and `top`.

use super::{
    Core, CoreError,
    testing::{self, TempDir},
};
use crate::{
    dataplane::{Measured, fake::FakeFilter},
    model::{AUTO_RATE, AutoPolicy, List, RateAction, RateMode, Target, Verdict},
    policy::{GuardContext, RateContext},
    store::SqliteStore,
    wire::{AddRequest, AutoSetRequest, RemoveRequest, StageItem},
};

fn core(dir: &TempDir) -> (Core, FakeFilter) {
    let config = testing::config(&dir.0);
    let store = SqliteStore::open(&config.state_dir).expect("opening the test store");
    let fake = FakeFilter::new(config.layout, &[]);
    let core = Core::assemble(config, Box::new(store), Box::new(fake.clone()), &[])
        .expect("assembling the core");
    (core, fake)
}

fn t(s: &str) -> Target {
    Target::parse(s).unwrap()
}

/// One epoch in which each source sent `pps` packets of 100 bytes.
fn epoch(c: &mut Core, fake: &FakeFilter, sources: &[(&str, u64)]) {
    fake.state().traffic = sources
        .iter()
        .map(|&(s, pps)| Measured {
            source: t(s),
            packets: pps,
            bytes: pps * 100,
        })
        .collect();
    let offenders = c.rate_measure().unwrap();
    c.rate_decide(&offenders, Ok(RateContext::default()))
        .unwrap();
}

fn set(c: &mut Core, req: AutoSetRequest) -> AutoPolicy {
    c.set_auto("alice", req).unwrap()
}

fn enforce(c: &mut Core, pps: u64) {
    set(
        c,
        AutoSetRequest {
            mode: Some(RateMode::Enforce),
            pps: Some(pps),
            ..AutoSetRequest::default()
        },
    );
}

fn verdict(c: &Core, ip: &str) -> Verdict {
    c.check(ip.parse().unwrap()).verdict
}

fn actions(c: &Core) -> Vec<(String, RateAction)> {
    let s = c.auto_status().unwrap();
    s.recent
        .iter()
        .map(|d| (d.source.to_string(), d.action))
        .collect()
}

#[test]
fn monitor_records_offenders_and_lists_nothing() {
    let dir = TempDir::new("rate-monitor");
    let (mut c, fake) = core(&dir);
    assert_eq!(
        c.auto_policy().unwrap().mode,
        RateMode::Monitor,
        "the default"
    );
    assert_eq!(fake.state().levels.packets, 10_000, "armed at the start");
    set(
        &mut c,
        AutoSetRequest {
            pps: Some(500),
            ..AutoSetRequest::default()
        },
    );
    epoch(&mut c, &fake, &[("45.1.2.3", 5_000_000)]);
    assert_eq!(actions(&c), [("45.1.2.3".into(), RateAction::WouldBlock)]);
    assert_eq!(verdict(&c, "45.1.2.3"), Verdict::Pass);
    assert_eq!(c.auto_status().unwrap().active, 0);
}

#[test]
fn enforce_lists_offenders_deploys_them_and_escalates_a_reoffence() {
    let dir = TempDir::new("rate-enforce");
    let (mut c, fake) = core(&dir);
    enforce(&mut c, 500);
    // A slow source is only watched; a heavy one is listed and dropped.
    epoch(&mut c, &fake, &[("45.1.2.3", 5_000_000), ("45.1.2.4", 100)]);
    assert_eq!(verdict(&c, "45.1.2.3"), Verdict::Drop);
    assert_eq!(verdict(&c, "45.1.2.4"), Verdict::Pass);
    let entry = c
        .store
        .deployed_entry(t("45.1.2.3"), List::Deny, crate::model::now_ms())
        .unwrap()
        .unwrap();
    let listing = entry.listing(AUTO_RATE).expect("listed by auto:rate");
    assert_eq!(listing.ttl, Some(600));
    assert!(
        listing
            .reason
            .as_deref()
            .unwrap()
            .contains("pps over 500 pps"),
        "{listing:?}"
    );
    let history = c.history(crate::model::Page::default()).unwrap();
    assert_eq!(history.last().unwrap().deployed_by, "auto");
    let status = c.auto_status().unwrap();
    assert_eq!(status.active, 1);
    assert_eq!(status.recent[0].action, RateAction::Listed);
    // Still flooding while listed: never listed again.
    let revisions = history.len();
    epoch(&mut c, &fake, &[("45.1.2.3", 5_000_000)]);
    assert_eq!(
        c.history(crate::model::Page::default()).unwrap().len(),
        revisions
    );
    // Lifted, then offending again within 30 days: four times as long.
    let req = RemoveRequest {
        targets: vec![t("45.1.2.3")],
        list: List::Deny,
        deploy: true,
        message: None,
        source: Some(AUTO_RATE.into()),
    };
    c.remove("alice", req).unwrap();
    assert_eq!(verdict(&c, "45.1.2.3"), Verdict::Pass);
    epoch(&mut c, &fake, &[("45.1.2.3", 5_000_000)]);
    let entry = c
        .store
        .deployed_entry(t("45.1.2.3"), List::Deny, crate::model::now_ms())
        .unwrap()
        .unwrap();
    assert_eq!(entry.listing(AUTO_RATE).unwrap().ttl, Some(2_400));
    // An IPv6 source is judged, and listed, by its /64.
    epoch(&mut c, &fake, &[("2a01:4f8:1:2::/64", 5_000_000)]);
    assert_eq!(verdict(&c, "2a01:4f8:1:2::99"), Verdict::Drop);
}

#[test]
fn protected_sources_are_never_listed() {
    let dir = TempDir::new("rate-protect");
    let (mut c, fake) = core(&dir);
    enforce(&mut c, 500);
    set(
        &mut c,
        AutoSetRequest {
            protect: Some(vec!["45.9.0.0/16".into()]),
            ..AutoSetRequest::default()
        },
    );
    let allow = AddRequest {
        entries: vec![StageItem {
            target: "45.1.1.1".into(),
            list: List::Allow,
            reason: Some("partner".into()),
            ttl: None,
            monitor: None,
        }],
        deploy: true,
        ..AddRequest::default()
    };
    c.add("alice", allow).unwrap();
    let flood = 50_000_000;
    let sources = [
        ("45.1.1.1", flood),
        ("10.0.0.1", flood),
        ("100.64.3.4", flood),
        ("192.0.2.1", flood),
        ("45.9.8.7", flood),
    ];
    epoch(&mut c, &fake, &sources);
    for (s, _) in sources {
        assert_ne!(verdict(&c, s), Verdict::Drop, "{s}");
    }
    let recent = actions(&c);
    assert_eq!(recent.len(), 5, "{recent:?}");
    assert!(
        recent.iter().all(|(_, a)| *a == RateAction::Protected),
        "{recent:?}"
    );
    // A host the guardrails read as one of ours, or an SSH peer, neither.
    // A gateway or nameserver of this host, neither.
    let ctx = RateContext {
        guard: GuardContext {
            host_addrs: vec!["45.2.2.2".parse().unwrap()],
            live_ssh_peers: vec!["45.3.3.3".parse().unwrap()],
            admin_addr: None,
            ..GuardContext::default()
        },
        infrastructure: vec!["45.5.5.5".parse().unwrap()],
    };
    fake.state().traffic = ["45.2.2.2", "45.3.3.3", "45.5.5.5"]
        .iter()
        .map(|s| Measured {
            source: t(s),
            packets: flood,
            bytes: flood,
        })
        .collect();
    let offenders = c.rate_measure().unwrap();
    assert_eq!(offenders.len(), 3);
    c.rate_decide(&offenders, Ok(ctx)).unwrap();
    for s in ["45.2.2.2", "45.3.3.3", "45.5.5.5"] {
        assert_eq!(verdict(&c, s), Verdict::Pass, "{s}");
    }
    // The guardrails unreadable: nothing is listed.
    fake.state().traffic = vec![Measured {
        source: t("45.4.4.4"),
        packets: flood,
        bytes: flood,
    }];
    let offenders = c.rate_measure().unwrap();
    let unreadable = Err(CoreError::DetectorOff);
    c.rate_decide(&offenders, unreadable).unwrap();
    assert_eq!(verdict(&c, "45.4.4.4"), Verdict::Pass);
}

#[test]
fn the_circuit_breaker_trips_to_monitor_and_stays_tripped() {
    let dir = TempDir::new("rate-breaker");
    let (mut c, fake) = core(&dir);
    enforce(&mut c, 500);
    set(
        &mut c,
        AutoSetRequest {
            max_per_minute: Some(2),
            ..AutoSetRequest::default()
        },
    );
    let flood = 50_000_000;
    epoch(
        &mut c,
        &fake,
        &[
            ("45.1.0.1", flood),
            ("45.1.0.2", flood),
            ("45.1.0.3", flood),
        ],
    );
    let s = c.auto_status().unwrap();
    assert!(s.policy.tripped);
    assert_eq!(s.policy.mode, RateMode::Monitor);
    assert_eq!(s.active, 2);
    assert_eq!(s.recent[0].action, RateAction::Suppressed);
    assert_eq!(c.rate_trips(), 1);
    assert_eq!(verdict(&c, "45.1.0.3"), Verdict::Pass);
    // Durable: what a restart reads.
    let store = SqliteStore::open(&testing::config(&dir.0).state_dir).unwrap();
    let stored = crate::store::Store::auto_policy(&store).unwrap();
    assert!(stored.tripped && stored.mode == RateMode::Monitor);
    // Audited as the breaker's own event.
    let events = c
        .audit(
            crate::model::Page::default(),
            &crate::model::AuditFilter::default(),
        )
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "auto tripped" && e.user == "auto"),
        "{events:?}"
    );
    // Only an admin's enforce resets it.
    enforce(&mut c, 500);
    assert!(!c.auto_status().unwrap().policy.tripped);
}

#[test]
fn top_lists_the_heaviest_first_and_says_when_the_detector_is_off() {
    let dir = TempDir::new("rate-top");
    let (mut c, fake) = core(&dir);
    set(
        &mut c,
        AutoSetRequest {
            pps: Some(1_000_000_000),
            ..AutoSetRequest::default()
        },
    );
    c.add(
        "alice",
        AddRequest {
            entries: vec![StageItem {
                target: "45.5.5.5".into(),
                list: List::Deny,
                reason: None,
                ttl: None,
                monitor: None,
            }],
            deploy: true,
            ..AddRequest::default()
        },
    )
    .unwrap();
    epoch(
        &mut c,
        &fake,
        &[("45.5.5.6", 200_000_000), ("45.5.5.5", 400_000_000)],
    );
    let top = c.top(10).unwrap();
    let order: Vec<String> = top.iter().map(|s| s.source.to_string()).collect();
    assert_eq!(order, ["45.5.5.5", "45.5.5.6"]);
    assert!(top[0].pps > top[1].pps);
    assert_eq!(top[0].verdict, Verdict::Drop);
    assert!(top[0].listed);
    assert_eq!(top[0].sources, ["manual"]);
    assert!(!top[1].listed);
    assert_eq!(c.top(1).unwrap().len(), 1);
    set(
        &mut c,
        AutoSetRequest {
            mode: Some(RateMode::Off),
            ..AutoSetRequest::default()
        },
    );
    assert_eq!(fake.state().levels.packets, 0, "the kernel counts nothing");
    assert!(matches!(c.top(10), Err(CoreError::DetectorOff)));
}
