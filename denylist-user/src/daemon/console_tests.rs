//! The console's API in the core: pages of entries, a revision's diff,
//! the audit filters, dry runs, and deploys that must match a review.

use super::{
    Args, Config, Core, CoreError, entry_page,
    testing::{self, TempDir},
};
use crate::{
    dataplane::fake::FakeFilter,
    model::{AuditFilter, List, Page, Target},
    store::SqliteStore,
    wire::{
        AddRequest, EntryMode, EntryPage, EntryPageQuery, PageSort, Pending, RemoveRequest,
        StageItem,
    },
};

fn item(target: &str, reason: &str, ttl: Option<&str>) -> StageItem {
    StageItem {
        target: target.into(),
        list: List::Deny,
        reason: Some(reason.into()),
        ttl: ttl.map(str::to_string),
        monitor: None,
    }
}

fn add(c: &mut Core, items: Vec<StageItem>, deploy: bool) {
    let req = AddRequest {
        entries: items,
        deploy,
        ..AddRequest::default()
    };
    c.add("alice", req).unwrap();
}

fn remove(c: &mut Core, target: &str) {
    let req = RemoveRequest {
        targets: vec![Target::parse(target).unwrap()],
        list: List::Deny,
        deploy: false,
        message: None,
        source: None,
    };
    c.remove("bob", req).unwrap();
}

fn page(c: &Core, q: EntryPageQuery) -> EntryPage {
    entry_page(c.snapshots().as_ref(), &q).unwrap()
}

fn targets(p: &EntryPage) -> Vec<String> {
    p.entries
        .iter()
        .map(|e| e.entry.target.to_string())
        .collect()
}

/// Deployed: .1 (scan, 1h), .2 (ssh), .3 (scan, monitor); staged: .4
/// added, .2 removed, .3 changed to a new reason.
fn seeded(dir: &TempDir) -> Core {
    let mut c = testing::core(dir);
    add(
        &mut c,
        vec![
            item("198.18.0.1", "scan", Some("1h")),
            item("198.18.0.2", "ssh", None),
            StageItem {
                monitor: Some(true),
                ..item("198.18.0.3", "scan", None)
            },
        ],
        true,
    );
    add(&mut c, vec![item("198.18.0.4", "new", None)], false);
    remove(&mut c, "198.18.0.2");
    add(&mut c, vec![item("198.18.0.3", "rescan", None)], false);
    c
}

#[test]
fn a_page_marks_the_draft_and_shows_hits_only_for_deployed_entries() {
    let dir = TempDir::new("page");
    let c = seeded(&dir);
    let draft = page(&c, EntryPageQuery::default());
    assert_eq!(
        targets(&draft),
        ["198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.4"]
    );
    let pending: Vec<Option<Pending>> = draft.entries.iter().map(|e| e.pending).collect();
    assert_eq!(
        pending,
        [
            None,
            Some(Pending::Remove),
            Some(Pending::Change),
            Some(Pending::Add)
        ]
    );
    assert_eq!(draft.entries[2].entry.reason.as_deref(), Some("rescan"));
    assert!(draft.entries[0].hits.is_some() && draft.entries[3].hits.is_none());
    assert_eq!(draft.next, None);
    let deployed = page(
        &c,
        EntryPageQuery {
            draft: false,
            ..EntryPageQuery::default()
        },
    );
    assert_eq!(
        targets(&deployed),
        ["198.18.0.1", "198.18.0.2", "198.18.0.3"]
    );
    assert!(deployed.entries.iter().all(|e| e.pending.is_none()));
    assert_eq!(deployed.entries[2].entry.reason.as_deref(), Some("scan"));
}

#[test]
fn filters_apply_to_the_entry_as_the_page_shows_it() {
    let dir = TempDir::new("page");
    let c = seeded(&dir);
    let q = |f: fn(&mut EntryPageQuery)| {
        let mut q = EntryPageQuery::default();
        f(&mut q);
        targets(&page(&c, q))
    };
    // The staged change's new reason counts, its old one no longer.
    assert_eq!(q(|q| q.reason = Some("scan".into())), ["198.18.0.1"]);
    assert_eq!(q(|q| q.reason = Some("rescan".into())), ["198.18.0.3"]);
    assert_eq!(q(|q| q.expiring = Some(true)), ["198.18.0.1"]);
    assert_eq!(q(|q| q.mode = Some(EntryMode::Monitor)), ["198.18.0.3"]);
    assert_eq!(q(|q| q.source = Some("manual".into())).len(), 4);
    assert!(q(|q| q.source = Some("feed:x".into())).is_empty());
    assert_eq!(q(|q| q.list = List::Allow), Vec::<String>::new());
}

#[test]
fn contains_finds_the_prefixes_that_cover_an_address() {
    let dir = TempDir::new("page");
    let mut c = testing::core(&dir);
    add(
        &mut c,
        vec![
            item("203.0.113.0/24", "net", None),
            item("203.0.0.0/16", "wider", None),
            item("203.0.113.8", "other host", None),
        ],
        true,
    );
    let found = page(
        &c,
        EntryPageQuery {
            contains: Some("203.0.113.7".parse().unwrap()),
            ..EntryPageQuery::default()
        },
    );
    assert_eq!(targets(&found), ["203.0.0.0/16", "203.0.113.0/24"]);
}

#[test]
fn cursors_walk_every_order_without_a_gap_or_a_repeat() {
    let dir = TempDir::new("page");
    let mut c = testing::core(&dir);
    let items: Vec<StageItem> = (1..=9)
        .map(|i| {
            let ttl = (i % 3 != 0).then(|| format!("{}h", 10 - i));
            item(&format!("198.51.100.{i}"), "r", ttl.as_deref())
        })
        .collect();
    add(&mut c, items, true);
    add(&mut c, vec![item("198.51.100.20", "staged", None)], false);
    for sort in [PageSort::Target, PageSort::ExpiresAt, PageSort::AddedAt] {
        for desc in [false, true] {
            let all = targets(&page(
                &c,
                EntryPageQuery {
                    sort,
                    desc,
                    limit: Some(500),
                    ..EntryPageQuery::default()
                },
            ));
            assert_eq!(all.len(), 10);
            let mut walked = Vec::new();
            let mut cursor = None;
            loop {
                let p = page(
                    &c,
                    EntryPageQuery {
                        sort,
                        desc,
                        limit: Some(3),
                        cursor: cursor.clone(),
                        ..EntryPageQuery::default()
                    },
                );
                walked.extend(targets(&p));
                cursor = p.next;
                if cursor.is_none() {
                    break;
                }
            }
            assert_eq!(walked, all, "{sort:?} desc {desc}");
        }
    }
    // Soonest expiry first: .8 (2h), then the rest, never-expiring last.
    let by_expiry = targets(&page(
        &c,
        EntryPageQuery {
            sort: PageSort::ExpiresAt,
            ..EntryPageQuery::default()
        },
    ));
    assert_eq!(by_expiry[0], "198.51.100.8");
    assert_eq!(by_expiry[9], "198.51.100.20");
    let bad = |cursor: &str, sort| {
        entry_page(
            c.snapshots().as_ref(),
            &EntryPageQuery {
                cursor: Some(cursor.into()),
                sort,
                ..EntryPageQuery::default()
            },
        )
    };
    assert!(matches!(
        bad("e+:0:198.51.100.1", PageSort::Target),
        Err(CoreError::CursorOrder { .. })
    ));
    assert!(matches!(
        bad("nonsense", PageSort::Target),
        Err(CoreError::BadCursor { .. })
    ));
    let over = EntryPageQuery {
        limit: Some(501),
        ..EntryPageQuery::default()
    };
    assert!(matches!(
        entry_page(c.snapshots().as_ref(), &over),
        Err(CoreError::PageLimit { limit: 501 })
    ));
}

#[test]
fn a_revisions_diff_names_what_its_deploy_changed() {
    let dir = TempDir::new("revision");
    let mut c = testing::core(&dir);
    add(
        &mut c,
        vec![item("198.18.0.1", "a", None), item("198.18.0.2", "b", None)],
        true,
    );
    remove(&mut c, "198.18.0.1");
    add(
        &mut c,
        vec![
            item("198.18.0.2", "b2", None),
            item("198.18.0.3", "c", None),
        ],
        false,
    );
    c.deploy("bob", None, None, false, None).unwrap();
    let first = c.revision_diff(1, 1000).unwrap();
    assert_eq!(first.added.len(), 2);
    assert!(first.removed.is_empty() && first.changed.is_empty() && !first.truncated);
    let second = c.revision_diff(2, 1000).unwrap();
    assert_eq!(second.revision.deployed_by, "bob");
    assert_eq!(second.added[0].target.to_string(), "198.18.0.3");
    assert_eq!(second.removed[0].target.to_string(), "198.18.0.1");
    assert_eq!(second.changed[0].before.reason.as_deref(), Some("b"));
    assert_eq!(second.changed[0].after.reason.as_deref(), Some("b2"));
    let capped = c.revision_diff(1, 1).unwrap();
    assert_eq!((capped.added.len(), capped.truncated), (1, true));
    let e = c.revision_diff(9, 1000).unwrap_err();
    assert!(e.to_string().contains('9'), "{e}");
}

#[test]
fn the_audit_log_filters_by_actor_kind_and_time() {
    let dir = TempDir::new("audit");
    let mut c = testing::core(&dir);
    add(&mut c, vec![item("198.18.0.1", "a", None)], true);
    remove(&mut c, "198.18.0.1");
    let all = c.audit(Page::default(), &AuditFilter::default()).unwrap();
    let by = |f: AuditFilter| c.audit(Page::default(), &f).unwrap();
    let bob = by(AuditFilter {
        actor: Some("bob".into()),
        ..AuditFilter::default()
    });
    assert_eq!(bob.len(), 1);
    assert_eq!(bob[0].kind, "stage remove");
    let stages = by(AuditFilter {
        kind: Some("stage".into()),
        ..AuditFilter::default()
    });
    assert_eq!(stages.len(), 2, "stage add and stage remove");
    assert!(
        by(AuditFilter {
            kind: Some("stag".into()),
            ..AuditFilter::default()
        })
        .is_empty(),
        "a first word, not any prefix"
    );
    let last = all.last().unwrap().at;
    let later = by(AuditFilter {
        from: Some(last + 1),
        ..AuditFilter::default()
    });
    assert!(later.is_empty());
    let before = by(AuditFilter {
        to: Some(last + 1),
        ..AuditFilter::default()
    });
    assert_eq!(before.len(), all.len());
}

#[test]
fn a_dry_run_counts_and_lists_refusals_and_stages_nothing() {
    let dir = TempDir::new("dry");
    let mut c = testing::core(&dir);
    let seq = c.status().unwrap().draft_seq;
    let events = c
        .audit(Page::default(), &AuditFilter::default())
        .unwrap()
        .len();
    let req = AddRequest {
        entries: vec![
            item("198.18.0.1", "a", None),
            item("10.1.2.3", "private", None),
        ],
        dry_run: true,
        ..AddRequest::default()
    };
    let r = c.add("alice", req.clone()).unwrap();
    assert_eq!((r.seq, r.counts.added), (None, 1));
    assert_eq!(r.targets, [Target::parse("198.18.0.1").unwrap()]);
    assert_eq!(r.refused.len(), 1);
    assert_eq!(r.refused[0].target.to_string(), "10.1.2.3");
    assert_eq!(c.status().unwrap().pending_changes, 0);
    assert_eq!(c.status().unwrap().draft_seq, seq);
    let after = c.audit(Page::default(), &AuditFilter::default()).unwrap();
    assert_eq!(after.len(), events);
    let both = AddRequest {
        deploy: true,
        ..req
    };
    assert!(matches!(
        c.add("alice", both),
        Err(CoreError::DryRunAndDeploy)
    ));
}

#[test]
fn a_deploy_of_a_reviewed_draft_ships_only_if_nothing_changed_since() {
    let dir = TempDir::new("expect");
    let mut c = testing::core(&dir);
    add(&mut c, vec![item("198.18.0.1", "a", None)], false);
    let reviewed = c.diff().unwrap().draft_seq;
    assert!(reviewed > 0);
    assert_eq!(c.status().unwrap().draft_seq, reviewed);
    add(&mut c, vec![item("198.18.0.2", "b", None)], false);
    let e = c
        .deploy("alice", None, None, false, Some(reviewed))
        .unwrap_err();
    assert!(matches!(e, CoreError::DraftChanged { .. }), "{e}");
    assert_eq!(c.status().unwrap().revision, 0, "nothing deployed");
    let now = c.diff().unwrap().draft_seq;
    let d = c.deploy("alice", None, None, false, Some(now)).unwrap();
    assert_eq!(d.revision, Some(1));
    assert!(
        c.diff().unwrap().draft_seq > now,
        "the deploy changed the draft"
    );
}

#[test]
fn a_missing_interface_says_why_the_daemon_is_degraded() {
    let dir = TempDir::new("degraded");
    let config = Config::from_args(Args {
        iface: vec!["ghost0".into()],
        ..testing::args(&dir.0)
    })
    .unwrap();
    let store = SqliteStore::open(&config.state_dir).unwrap();
    let filter = FakeFilter::new(config.layout, &[]);
    let c = Core::assemble(config, Box::new(store), Box::new(filter), &[]).unwrap();
    let s = c.status().unwrap();
    assert!(s.degraded);
    assert_eq!(s.degraded_reasons.len(), 1);
    assert!(
        s.degraded_reasons[0].starts_with("interface ghost0 is not attached: it does not exist"),
        "{:?}",
        s.degraded_reasons
    );
    let fine = testing::core(&TempDir::new("degraded"));
    assert!(fine.status().unwrap().degraded_reasons.is_empty());
}
