//! The store's behaviour through the [`Store`] trait, the same for every
//! backend: SQLite's unit tests run it on SQLite stores, and the fleet's
//! tests run it on `FleetStore` nodes over a real PostgreSQL
//! (`tests/tests/fleet/suite.rs`). Each test opens the stores it needs,
//! empty, through `open`. The tests of listings are in [`listings`].

pub mod listings;

use crate::{
    model::{AuditFilter, List, Millis, Page, Revision, Sources, Target, Ttl},
    store::{Audit, DeployRecord, Op, Plan, Stage, Store, StoreError},
};

/// Opens a new, empty store of the backend under test.
pub type Open<'a> = &'a mut dyn FnMut() -> Box<dyn Store>;

/// One test of the suite.
pub type Test = fn(Open<'_>);

/// Every test of the suite, by name.
pub const ALL: &[(&str, Test)] = &[
    (
        "draft_keys_from_a_source_follow_the_draft",
        draft_keys_from_a_source_follow_the_draft,
    ),
    (
        "staging_deploying_and_the_draft",
        staging_deploying_and_the_draft,
    ),
    (
        "rollback_restores_a_revision_and_leaves_out_expired_entries",
        rollback_restores_a_revision_and_leaves_out_expired_entries,
    ),
    (
        "history_and_audit_page_back_and_pruning_keeps_what_a_rollback_needs",
        history_and_audit_page_back_and_pruning_keeps_what_a_rollback_needs,
    ),
    (
        "listings_stream_in_address_order_and_merge_the_draft",
        listings_stream_in_address_order_and_merge_the_draft,
    ),
    (
        "given_ttls_restart_at_the_deploy_and_imports_never_shorten",
        given_ttls_restart_at_the_deploy_and_imports_never_shorten,
    ),
    (
        "an_admins_deploy_keeps_the_expiry_a_partial_deploy_gave_a_listing",
        listings::an_admins_deploy_keeps_the_expiry_a_partial_deploy_gave_a_listing,
    ),
    (
        "a_listing_shipped_by_a_partial_deploy_stays_gone_once_expired",
        listings::a_listing_shipped_by_a_partial_deploy_stays_gone_once_expired,
    ),
    (
        "an_imports_refreshed_expiry_is_not_extended_by_the_next_deploy",
        listings::an_imports_refreshed_expiry_is_not_extended_by_the_next_deploy,
    ),
    (
        "the_expiry_of_an_entrys_last_listing_keeps_another_sources_staged_listing",
        listings::the_expiry_of_an_entrys_last_listing_keeps_another_sources_staged_listing,
    ),
    (
        "a_ttl_given_again_survives_expiry_whether_or_not_another_listing_is_left",
        listings::a_ttl_given_again_survives_expiry_whether_or_not_another_listing_is_left,
    ),
    (
        "an_expired_listing_copied_into_the_draft_is_not_revived_by_a_deploy",
        listings::an_expired_listing_copied_into_the_draft_is_not_revived_by_a_deploy,
    ),
    (
        "a_feeds_removal_survives_an_admins_pending_change",
        listings::a_feeds_removal_survives_an_admins_pending_change,
    ),
    (
        "an_admins_staged_removal_stays_staged_under_a_feeds_deploy",
        listings::an_admins_staged_removal_stays_staged_under_a_feeds_deploy,
    ),
    (
        "source_keys_read_the_listings_json",
        listings::source_keys_read_the_listings_json,
    ),
    (
        "the_sweep_drops_a_copied_listing_and_a_pending_row_left_with_nothing",
        listings::the_sweep_drops_a_copied_listing_and_a_pending_row_left_with_nothing,
    ),
];

pub fn t(s: &str) -> Target {
    Target::parse(s).unwrap()
}

pub fn add(s: &str) -> Stage {
    Stage::Upsert {
        target: t(s),
        list: List::Deny,
        reason: Some("test".into()),
        ttl: None,
        monitor: None,
        source: None,
        keep_longer_ttl: false,
    }
}

pub fn deploy(store: &mut dyn Store, now: Millis) -> Revision {
    let plan = store.plan(None, now).unwrap();
    commit_deploy(store, &plan, now)
}

fn commit_deploy(store: &mut dyn Store, plan: &Plan, now: Millis) -> Revision {
    let record = DeployRecord {
        user: "root",
        message: None,
        now,
        kind: "deploy",
    };
    store
        .write_deploy(plan, record)
        .unwrap()
        .commit()
        .unwrap()
        .0
}

pub fn draft_keys_from_a_source_follow_the_draft(open: Open<'_>) {
    let mut s = open();
    let from = |target: &str, source: &str, ttl: Option<u64>| Stage::Upsert {
        target: t(target),
        list: List::Deny,
        reason: None,
        ttl: Some(ttl.map_or(Ttl::Never, Ttl::Secs)),
        monitor: None,
        source: Some(source.into()),
        keep_longer_ttl: false,
    };
    let ops = [
        from("192.0.2.1", "import:a", None),
        from("192.0.2.2", "import:a", None),
        from("192.0.2.3", "import:a", Some(1)),
        from("192.0.2.4", "import:b", None),
    ];
    s.stage(&ops, "alice", 0, None, &Audit::Each).unwrap();
    deploy(&mut *s, 0);
    let remove = Stage::Remove {
        target: t("192.0.2.1"),
        list: List::Deny,
        sources: Sources::Admin,
    };
    let ops = [remove, from("192.0.2.5", "import:a", None)];
    s.stage(&ops, "alice", 1, None, &Audit::Each).unwrap();
    let mut keys = s.draft_keys_from("import:a", 5_000).unwrap();
    keys.sort();
    let want: Vec<(Target, List)> = ["192.0.2.2", "192.0.2.5"]
        .iter()
        .map(|a| (t(a), List::Deny))
        .collect();
    assert_eq!(keys, want, "removed, expired and other sources left out");
}

pub fn staging_deploying_and_the_draft(open: Open<'_>) {
    let mut s = open();
    assert_eq!(s.revision().unwrap(), 0);
    s.stage(
        &[add("198.51.100.7"), add("203.0.113.0/24")],
        "alice",
        1_000,
        None,
        &Audit::Each,
    )
    .unwrap();
    assert_eq!(s.pending_count().unwrap(), 2);
    assert!(s.deployed().unwrap().is_empty());
    let rev = deploy(&mut *s, 2_000);
    assert_eq!(
        (rev.revision, rev.added, rev.removed, rev.changed),
        (1, 2, 0, 0)
    );
    assert_eq!(s.pending_count().unwrap(), 0);
    let ids: Vec<u32> = s.deployed().unwrap().iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 2);

    // A re-add with the same fields is no change; a new reason is.
    s.stage(&[add("198.51.100.7")], "bob", 3_000, None, &Audit::Each)
        .unwrap();
    assert_eq!(s.pending_count().unwrap(), 0);
    let change = Stage::Upsert {
        target: t("198.51.100.7"),
        list: List::Deny,
        reason: Some("other".into()),
        ttl: Some(Ttl::Secs(60)),
        monitor: Some(true),
        source: None,
        keep_longer_ttl: false,
    };
    s.stage(&[change], "bob", 3_000, None, &Audit::Each)
        .unwrap();
    let p = s.pending().unwrap();
    assert_eq!(p[0].op, Op::Change);
    assert_eq!(
        p[0].after.as_ref().unwrap().added_by,
        "alice",
        "a change keeps who added it"
    );
    assert_eq!(p[0].staged_by, "bob");

    // Removing something absent rejects the whole call.
    let err = s
        .stage(
            &[
                Stage::Remove {
                    target: t("203.0.113.0/24"),
                    list: List::Deny,
                    sources: Sources::Admin,
                },
                Stage::Remove {
                    target: t("192.0.2.1"),
                    list: List::Deny,
                    sources: Sources::Admin,
                },
            ],
            "bob",
            4_000,
            None,
            &Audit::Each,
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    assert_eq!(s.pending_count().unwrap(), 1);

    let rev = deploy(&mut *s, 10_000);
    assert_eq!((rev.revision, rev.changed), (2, 1));
    let e = s
        .deployed()
        .unwrap()
        .into_iter()
        .find(|e| e.entry.target == t("198.51.100.7"))
        .unwrap();
    assert_eq!(
        e.entry.expires_at,
        Some(70_000),
        "the TTL counts from the deploy"
    );
    assert!(e.entry.monitor);
    assert!(ids.contains(&e.id), "a change keeps the id");
}

pub fn rollback_restores_a_revision_and_leaves_out_expired_entries(open: Open<'_>) {
    let mut s = open();
    let short = Stage::Upsert {
        target: t("198.51.100.9"),
        list: List::Deny,
        reason: None,
        ttl: Some(Ttl::Secs(1)),
        monitor: None,
        source: None,
        keep_longer_ttl: false,
    };
    s.stage(
        &[add("198.51.100.7"), short],
        "alice",
        0,
        None,
        &Audit::Each,
    )
    .unwrap();
    deploy(&mut *s, 0);
    s.stage(
        &[
            Stage::Remove {
                target: t("198.51.100.7"),
                list: List::Deny,
                sources: Sources::Admin,
            },
            add("192.0.2.5"),
        ],
        "bob",
        1,
        None,
        &Audit::Each,
    )
    .unwrap();
    deploy(&mut *s, 1);
    s.stage(&[add("192.0.2.6")], "bob", 2, None, &Audit::Each)
        .unwrap();
    assert!(matches!(
        s.rollback(1, false, "carol", 5_000),
        Err(StoreError::Conflict { count: 1 })
    ));
    assert!(matches!(
        s.rollback(9, true, "carol", 5_000),
        Err(StoreError::NoRevision { rev: 9 })
    ));
    let (_, expired) = s.rollback(1, true, "carol", 5_000).unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].target, t("198.51.100.9"));
    let draft: Vec<String> = s
        .draft(5_000)
        .unwrap()
        .iter()
        .map(|e| e.target.to_string())
        .collect();
    assert_eq!(draft, ["198.51.100.7"]);
    let restored = s.draft(5_000).unwrap().remove(0);
    assert_eq!(
        (restored.added_by.as_str(), restored.added_at),
        ("alice", 0)
    );
}

pub fn remove(s: &str) -> Stage {
    Stage::Remove {
        target: t(s),
        list: List::Deny,
        sources: Sources::Admin,
    }
}

fn revs(s: &dyn Store, page: Page) -> Vec<u64> {
    s.history(page)
        .unwrap()
        .iter()
        .map(|r| r.revision)
        .collect()
}

pub fn history_and_audit_page_back_and_pruning_keeps_what_a_rollback_needs(open: Open<'_>) {
    const DAY: Millis = 86_400_000;
    let mut s = open();
    let steps: [(&[Stage], Millis); 4] = [
        (&[add("198.51.100.7")], 0),
        (&[remove("198.51.100.7"), add("192.0.2.5")], 10 * DAY),
        (&[add("192.0.2.6")], 20 * DAY),
        (&[remove("192.0.2.5")], 30 * DAY),
    ];
    for (ops, at) in steps {
        s.stage(ops, "alice", at, None, &Audit::Each).unwrap();
        deploy(&mut *s, at);
    }
    let page = |since, before, limit| Page {
        since,
        before,
        limit,
    };
    assert_eq!(revs(&*s, Page::default()), [1, 2, 3, 4]);
    assert_eq!(revs(&*s, page(0, None, Some(2))), [3, 4]);
    assert_eq!(revs(&*s, page(0, Some(3), Some(5))), [1, 2]);
    assert_eq!(revs(&*s, page(1, Some(4), None)), [2, 3]);
    assert!(revs(&*s, page(0, None, Some(0))).is_empty());
    let all = s.audit(Page::default(), &AuditFilter::default()).unwrap();
    let last = all.last().unwrap().seq;
    let newest = s
        .audit(page(0, None, Some(1)), &AuditFilter::default())
        .unwrap();
    assert_eq!(newest, all[all.len() - 1..]);
    let before = s
        .audit(page(0, Some(last), Some(2)), &AuditFilter::default())
        .unwrap();
    assert_eq!(before, all[all.len() - 3..all.len() - 1]);

    // Revisions 1 and 2 are older than the cutoff. The version of
    // 192.0.2.5 from revision 2 stays: revision 3 still has it.
    let (seq, pruned) = s.prune(15 * DAY, "denylistd", 40 * DAY).unwrap().unwrap();
    assert_eq!((pruned.revisions, pruned.versions), (2, 1));
    let left = s.audit(Page::default(), &AuditFilter::default()).unwrap();
    assert!(left.iter().all(|e| e.at >= 15 * DAY || e.kind == "prune"));
    assert_eq!(pruned.audit_events as usize, all.len() + 1 - left.len());
    let event = left.last().unwrap();
    assert_eq!((event.seq, event.kind.as_str()), (seq, "prune"));
    assert_eq!(event.detail.as_ref().unwrap()["oldest_revision"], 3);
    assert_eq!(revs(&*s, Page::default()), [3, 4]);
    assert!(matches!(
        s.rollback(2, true, "bob", 40 * DAY),
        Err(StoreError::NoRevision { rev: 2 })
    ));
    s.rollback(3, true, "bob", 40 * DAY).unwrap();
    let mut draft: Vec<String> = s
        .draft(40 * DAY)
        .unwrap()
        .iter()
        .map(|e| e.target.to_string())
        .collect();
    draft.sort();
    assert_eq!(draft, ["192.0.2.5", "192.0.2.6"]);
    assert!(s.prune(15 * DAY, "denylistd", 40 * DAY).unwrap().is_none());

    // However old, the deployed revision stays, and so does a rollback to it.
    s.discard("bob", 40 * DAY).unwrap();
    s.prune(100 * DAY, "denylistd", 100 * DAY).unwrap().unwrap();
    assert_eq!(revs(&*s, Page::default()), [4]);
    s.rollback(4, false, "bob", 100 * DAY).unwrap();
    assert_eq!(s.pending_count().unwrap(), 0);
}

pub fn listings_stream_in_address_order_and_merge_the_draft(open: Open<'_>) {
    let mut s = open();
    let allow = |x: &str| Stage::Upsert {
        target: t(x),
        list: List::Allow,
        reason: None,
        ttl: None,
        monitor: None,
        source: None,
        keep_longer_ttl: false,
    };
    s.stage(
        &[
            add("2001:db8::1"),
            add("198.51.100.9"),
            add("10.0.0.0/24"),
            add("198.51.100.10"),
            allow("198.51.100.9"),
        ],
        "alice",
        0,
        None,
        &Audit::Each,
    )
    .unwrap();
    deploy(&mut *s, 0);
    let remove = Stage::Remove {
        target: t("198.51.100.10"),
        list: List::Deny,
        sources: Sources::Admin,
    };
    s.stage(&[remove, add("198.51.100.2")], "bob", 1, None, &Audit::Each)
        .unwrap();
    let collect = |draft: bool| {
        let mut out = Vec::new();
        s.snapshots()
            .open()
            .unwrap()
            .for_each_entry(draft, 5, &mut |e| {
                out.push(format!("{} {}", e.target, e.list.as_str()));
                true
            })
            .unwrap();
        out
    };
    assert_eq!(
        collect(false),
        [
            "10.0.0.0/24 deny",
            "198.51.100.9 deny",
            "198.51.100.9 allow",
            "198.51.100.10 deny",
            "2001:db8::1 deny"
        ]
    );
    assert_eq!(
        collect(true),
        [
            "10.0.0.0/24 deny",
            "198.51.100.2 deny",
            "198.51.100.9 deny",
            "198.51.100.9 allow",
            "2001:db8::1 deny"
        ]
    );
    let mut first = Vec::new();
    s.snapshots()
        .open()
        .unwrap()
        .for_each_entry(true, 5, &mut |e| {
            first.push(e.target);
            first.len() < 2
        })
        .unwrap();
    assert_eq!(first.len(), 2, "stops when asked");
}

pub fn given_ttls_restart_at_the_deploy_and_imports_never_shorten(open: Open<'_>) {
    let mut s = open();
    let with_ttl = |ttl: u64, import: bool| Stage::Upsert {
        target: t("198.51.100.7"),
        list: List::Deny,
        reason: None,
        ttl: Some(Ttl::Secs(ttl)),
        monitor: None,
        source: None,
        keep_longer_ttl: import,
    };
    let expires = |s: &dyn Store| s.deployed().unwrap()[0].entry.expires_at;
    s.stage(&[with_ttl(100, false)], "a", 0, None, &Audit::Each)
        .unwrap();
    deploy(&mut *s, 0);
    assert_eq!(expires(&*s), Some(100_000));
    // A feed re-lists it with the same TTL a minute later: extended.
    s.stage(&[with_ttl(100, true)], "feed", 60_000, None, &Audit::Each)
        .unwrap();
    assert_eq!(s.pending_count().unwrap(), 1, "a refresh is a change");
    deploy(&mut *s, 60_000);
    assert_eq!(expires(&*s), Some(160_000));
    // A feed with a shorter TTL never shortens it.
    s.stage(&[with_ttl(10, true)], "feed", 70_000, None, &Audit::Each)
        .unwrap();
    deploy(&mut *s, 70_000);
    assert_eq!(expires(&*s), Some(160_000));
    // An admin's --ttl says exactly when.
    s.stage(&[with_ttl(10, false)], "a", 80_000, None, &Audit::Each)
        .unwrap();
    deploy(&mut *s, 80_000);
    assert_eq!(expires(&*s), Some(90_000));
    // A re-add without a TTL changes only what it gives, and keeps
    // the expiry.
    s.stage(&[add("198.51.100.7")], "a", 85_000, None, &Audit::Each)
        .unwrap();
    deploy(&mut *s, 85_000);
    assert_eq!(expires(&*s), Some(90_000));
    assert_eq!(
        s.deployed().unwrap()[0].entry.reason.as_deref(),
        Some("test")
    );
}
