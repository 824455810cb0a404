//! The core's logic without root: a real SQLite store in a temporary
//! directory, and the in-memory filter in place of the kernel.

use std::{collections::HashMap, path::Path, sync::Arc};

use super::{
    Core, CoreError,
    testing::{self, TempDir},
};
use crate::{
    dataplane::fake::FakeFilter,
    model::{
        AuditEvent, AuditFilter, AutoPolicy, Entry, FeedSettings, FeedState, List, Millis, Page,
        Report, Revision, Stored, Target, Verdict,
    },
    store::{
        Audit, DeployRecord, FeedRecord, HeldList, HitTotal, Only, Op, Pending, Plan, Pruned,
        ReportTally, RevisionChanges, Snapshots, SqliteStore, Stage, Store, StoreError,
        WrittenDeploy,
    },
    wire::{
        AddRequest, AttachRequest, DetachRequest, ImportParams, ModeRequest, RemoveRequest,
        StageItem,
    },
};

/// The core over `store` and a fake filter with interface `veth-test`,
/// and a handle on the fake to look at or rig.
fn core_with(dir: &Path, store: Box<dyn Store>) -> (Core, FakeFilter) {
    let config = testing::config(dir);
    let filter = FakeFilter::new(config.layout, &[]);
    filter.state().ifaces.insert("veth-test".into(), 7);
    let core = Core::assemble(config, store, Box::new(filter.clone()), &[]).unwrap();
    (core, filter)
}

fn core(dir: &Path) -> (Core, FakeFilter) {
    let store = SqliteStore::open(&dir.join("state")).unwrap();
    core_with(dir, Box::new(store))
}

fn item(target: &str) -> StageItem {
    StageItem {
        target: target.into(),
        list: List::Deny,
        reason: Some("test".into()),
        ttl: None,
        monitor: None,
    }
}

fn add(core: &mut Core, targets: &[&str], deploy: bool) -> Result<u64, CoreError> {
    let req = AddRequest {
        entries: targets.iter().map(|t| item(t)).collect(),
        deploy,
        ..AddRequest::default()
    };
    core.add("alice", req)
        .map(|r| r.seq.expect("a real add has a seq"))
}

fn t(s: &str) -> Target {
    Target::parse(s).unwrap()
}

fn verdict(core: &Core, ip: &str) -> Verdict {
    core.check(ip.parse().unwrap()).verdict
}

#[test]
fn save_and_deploy_puts_entries_in_the_kernel_and_unblocks_on_removal() {
    let dir = TempDir::new("core");
    let (mut c, _) = core(&dir.0);
    add(&mut c, &["198.51.100.7", "203.0.113.0/24"], false).unwrap();
    assert_eq!(c.diff().unwrap().added.len(), 2);
    assert_eq!(verdict(&c, "198.51.100.7"), Verdict::Pass, "staged only");
    let d = c.deploy("alice", None, Some("block"), false, None).unwrap();
    assert_eq!((d.revision, d.counts.added), (Some(1), 2));
    assert_eq!(verdict(&c, "198.51.100.7"), Verdict::Drop);
    assert_eq!(verdict(&c, "203.0.113.9"), Verdict::Drop);
    let s = c.status().unwrap();
    assert_eq!((s.revision, s.pending_changes, s.entries.deny), (1, 0, 2));
    // A fresh install attaches to nothing: no fault, but worth saying.
    assert!(!s.degraded);
    assert!(
        s.warnings[0].starts_with("no interface configured"),
        "{s:?}"
    );
    let req = RemoveRequest {
        targets: vec![t("198.51.100.7")],
        list: List::Deny,
        deploy: true,
        message: None,
        source: None,
    };
    c.remove("alice", req).unwrap();
    assert_eq!(verdict(&c, "198.51.100.7"), Verdict::Pass);
    assert_eq!(verdict(&c, "203.0.113.9"), Verdict::Drop);
    assert_eq!(c.history(Page::default()).unwrap().len(), 2);
}

#[test]
fn pruning_follows_the_retention_and_keeps_the_deployed_revision() {
    let dir = TempDir::new("core");
    let (mut c, _) = core(&dir.0);
    add(&mut c, &["198.51.100.7"], true).unwrap();
    add(&mut c, &["198.51.100.8"], true).unwrap();
    let now = crate::model::now_ms();
    let day: Millis = 86_400_000;
    c.prune_at(now + 399 * day).unwrap();
    assert_eq!(c.history(Page::default()).unwrap().len(), 2, "within 400d");
    c.prune_at(now + 401 * day).unwrap();
    let h = c.history(Page::default()).unwrap();
    assert_eq!(h.iter().map(|r| r.revision).collect::<Vec<_>>(), [2]);
    let audit = c.audit(Page::default(), &AuditFilter::default()).unwrap();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(
        (audit[0].kind.as_str(), audit[0].user.as_str()),
        ("prune", "denylistd")
    );
    assert_eq!(verdict(&c, "198.51.100.7"), Verdict::Drop);
}

#[test]
fn a_failed_kernel_write_leaves_the_store_and_the_draft_as_they_were() {
    let dir = TempDir::new("core");
    let (mut c, fake) = core(&dir.0);
    add(&mut c, &["198.51.100.7"], false).unwrap();
    fake.state().fail_next_apply = true;
    let e = c.deploy("alice", None, None, false, None).unwrap_err();
    assert!(matches!(e, CoreError::DeployFailed { .. }), "{e:?}");
    assert!(e.to_string().contains("the kernel is unchanged"), "{e}");
    assert_eq!(c.ops.deploy_failures, 1);
    let s = c.status().unwrap();
    assert_eq!((s.revision, s.pending_changes, s.entries.deny), (0, 1, 0));
    // The same deploy goes through once the kernel takes it.
    c.deploy("alice", None, None, false, None).unwrap();
    assert_eq!(verdict(&c, "198.51.100.7"), Verdict::Drop);
}

#[test]
fn a_failed_commit_puts_the_kernel_back_with_the_inverse_change_list() {
    let dir = TempDir::new("core");
    let store = SqliteStore::open(&dir.0.join("state")).unwrap();
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (mut c, fake) = core_with(
        &dir.0,
        Box::new(FailingCommits {
            inner: store,
            fail: fail.clone(),
        }),
    );
    add(&mut c, &["198.51.100.7", "198.51.100.8"], true).unwrap();
    // A change, a removal and an add in one deploy, all to be undone.
    let req = ModeRequest {
        targets: vec![t("198.51.100.7")],
        monitor: true,
        deploy: false,
        message: None,
    };
    c.mode("alice", req).unwrap();
    let req = RemoveRequest {
        targets: vec![t("198.51.100.8")],
        list: List::Deny,
        deploy: false,
        message: None,
        source: None,
    };
    c.remove("alice", req).unwrap();
    add(&mut c, &["198.51.100.9"], false).unwrap();
    let before = fake.state().rules.clone();
    fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let e = c.deploy("alice", None, None, false, None).unwrap_err();
    assert!(matches!(e, CoreError::CommitFailed { .. }), "{e:?}");
    assert!(e.to_string().contains("the kernel was rolled back"), "{e}");
    assert_eq!(fake.state().rules, before, "the kernel is as it was");
    assert_eq!(c.status().unwrap().pending_changes, 3, "still staged");
    assert_eq!(c.status().unwrap().revision, 1);
    assert_eq!(verdict(&c, "198.51.100.7"), Verdict::Drop);
    assert_eq!(verdict(&c, "198.51.100.8"), Verdict::Drop);
    assert_eq!(verdict(&c, "198.51.100.9"), Verdict::Pass);
}

#[test]
fn guardrails_refuse_without_force_and_stage_nothing() {
    let dir = TempDir::new("core");
    let (mut c, _) = core(&dir.0);
    let e = add(&mut c, &["10.1.2.3", "198.51.100.7", "0.0.0.0/8"], false).unwrap_err();
    let CoreError::Refused { refusals } = &e else {
        panic!("{e:?}");
    };
    assert_eq!(refusals[0].0, t("10.1.2.3"));
    assert!(e.to_string().starts_with("refused: "), "{e}");
    assert!(e.to_string().contains("more refusals"), "{e}");
    assert_eq!(c.status().unwrap().pending_changes, 0);
    let req = AddRequest {
        entries: vec![item("10.1.2.3")],
        force: true,
        ..AddRequest::default()
    };
    c.add("alice", req).unwrap();
    assert_eq!(c.status().unwrap().pending_changes, 1);
}

#[test]
fn bad_input_is_refused_before_anything_is_staged() {
    let dir = TempDir::new("core");
    let (mut c, _) = core(&dir.0);
    assert!(matches!(add(&mut c, &[], false), Err(CoreError::NoTargets)));
    assert!(matches!(
        add(&mut c, &["203.0.113.77/24"], false),
        Err(CoreError::Target(_))
    ));
    let mut with_ttl = item("198.51.100.7");
    with_ttl.ttl = Some("0s".into());
    let req = AddRequest {
        entries: vec![with_ttl],
        ..AddRequest::default()
    };
    assert!(matches!(c.add("alice", req), Err(CoreError::TtlZero)));
    let mut monitored_allow = item("198.51.100.7");
    monitored_allow.list = List::Allow;
    monitored_allow.monitor = Some(true);
    let req = AddRequest {
        entries: vec![monitored_allow],
        ..AddRequest::default()
    };
    assert!(matches!(
        c.add("alice", req),
        Err(CoreError::MonitorOnAllow)
    ));
    let req = ModeRequest {
        targets: vec![t("198.51.100.7")],
        monitor: true,
        deploy: false,
        message: None,
    };
    assert!(matches!(
        c.mode("alice", req),
        Err(CoreError::NotOnDenyList { .. })
    ));
    assert_eq!(c.status().unwrap().pending_changes, 0);
}

#[test]
fn an_import_with_invalid_or_guarded_lines_stages_nothing_unless_told_to_skip() {
    let dir = TempDir::new("core");
    let (mut c, _) = core(&dir.0);
    let file = b"198.51.100.7\nnot-an-address\n10.0.0.1\n";
    let params = || ImportParams {
        source: Some("feed".into()),
        ..ImportParams::default()
    };
    let e = c.import("alice", params(), file).unwrap_err();
    let CoreError::InvalidLines { lines } = &e else {
        panic!("{e:?}");
    };
    assert_eq!(lines[0].line, 2);
    let e = c
        .import(
            "alice",
            ImportParams {
                skip_invalid: true,
                ..params()
            },
            file,
        )
        .unwrap_err();
    assert!(
        matches!(&e, CoreError::GuardedLines { lines } if lines[0].line == 3),
        "{e:?}"
    );
    assert_eq!(c.status().unwrap().pending_changes, 0);
    let r = c
        .import(
            "alice",
            ImportParams {
                skip_invalid: true,
                skip_guarded: true,
                deploy: true,
                ..params()
            },
            file,
        )
        .unwrap();
    assert_eq!((r.entries, r.skipped_invalid), (1, 1));
    assert_eq!(r.skipped_guarded, [t("10.0.0.1")]);
    assert_eq!(verdict(&c, "198.51.100.7"), Verdict::Drop);
}

#[test]
fn interfaces_attach_and_detach_through_the_filter() {
    let dir = TempDir::new("core");
    let (mut c, fake) = core(&dir.0);
    let e = c
        .attach(
            "alice",
            AttachRequest {
                iface: "missing0".into(),
                xdp_mode: None,
            },
        )
        .unwrap_err();
    assert!(matches!(e, CoreError::NoInterface { .. }), "{e:?}");
    c.attach(
        "alice",
        AttachRequest {
            iface: "veth-test".into(),
            xdp_mode: None,
        },
    )
    .unwrap();
    let s = c.status().unwrap();
    assert!(s.interfaces[0].attached && !s.degraded, "{s:?}");
    assert!(s.warnings.is_empty(), "{s:?}");
    assert!(fake.state().attached.contains_key("veth-test"));
    // The interface goes away: noticed, and attached again on return.
    fake.state().ifaces.remove("veth-test");
    c.watch_ifaces();
    assert!(c.status().unwrap().degraded);
    fake.state().ifaces.insert("veth-test".into(), 8);
    c.watch_ifaces();
    assert!(!c.status().unwrap().degraded);
    c.detach(
        "alice",
        DetachRequest {
            iface: "veth-test".into(),
        },
    )
    .unwrap();
    assert!(fake.state().attached.is_empty());
    let e = c
        .detach(
            "alice",
            DetachRequest {
                iface: "veth-test".into(),
            },
        )
        .unwrap_err();
    assert!(matches!(e, CoreError::NotManaged { .. }), "{e:?}");
}

#[test]
fn drift_is_repaired_and_audited_and_expired_entries_are_swept() {
    let dir = TempDir::new("core");
    let (mut c, fake) = core(&dir.0);
    let mut short = item("198.51.100.7");
    short.ttl = Some("1s".into());
    let req = AddRequest {
        entries: vec![short, item("198.51.100.8")],
        deploy: true,
        ..AddRequest::default()
    };
    c.add("alice", req).unwrap();
    fake.state().drifted = vec![(t("198.51.100.8"), List::Deny)];
    let v = c.verify("alice").unwrap();
    assert_eq!((v.drift.len(), v.repaired), (1, 1));
    assert_eq!(
        c.audit(Page::default(), &AuditFilter::default())
            .unwrap()
            .last()
            .unwrap()
            .kind,
        "verify repair"
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(c.sweep().unwrap(), 1);
    assert!(
        !fake
            .state()
            .rules
            .contains_key(&(t("198.51.100.7"), List::Deny))
    );
    assert_eq!(c.status().unwrap().entries.deny, 1);
}

#[test]
fn hits_fold_into_the_store_and_survive_in_stats() {
    let dir = TempDir::new("core");
    let (mut c, fake) = core(&dir.0);
    add(&mut c, &["198.51.100.7", "198.51.100.8"], true).unwrap();
    let id = fake.state().rules[&(t("198.51.100.8"), List::Deny)].id;
    let hit = denylist_common::Hit {
        packets: 5,
        bytes: 300,
    };
    fake.state().hits.insert(id, hit);
    let stats = c.stats(None, None).unwrap();
    assert_eq!(stats[0].target, t("198.51.100.8"));
    assert_eq!((stats[0].packets, stats[0].bytes), (5, 300));
    assert!(stats[0].last_hit.is_some());
    // Folding again adds nothing new.
    assert_eq!(c.stats(Some(1), None).unwrap()[0].packets, 5);
}

/// A store whose deploy commits fail on demand, like a full disk.
struct FailingCommits {
    inner: SqliteStore,
    fail: Arc<std::sync::atomic::AtomicBool>,
}

struct Refused;

impl WrittenDeploy for Refused {
    fn commit(self: Box<Self>) -> Result<(Revision, u64), StoreError> {
        Err(StoreError::Io {
            path: "denylist.db".into(),
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        })
    }
}

impl Store for FailingCommits {
    fn revision(&self) -> Result<u64, StoreError> {
        self.inner.revision()
    }
    fn deployed(&self) -> Result<Vec<Stored>, StoreError> {
        self.inner.deployed()
    }
    fn draft(&self, now: Millis) -> Result<Vec<Entry>, StoreError> {
        self.inner.draft(now)
    }
    fn draft_keys_from(
        &self,
        source: &str,
        now: Millis,
    ) -> Result<Vec<(Target, List)>, StoreError> {
        self.inner.draft_keys_from(source, now)
    }
    fn deployed_keys_from(
        &self,
        source: &str,
        now: Millis,
    ) -> Result<Vec<(Target, List)>, StoreError> {
        self.inner.deployed_keys_from(source, now)
    }
    fn draft_entry(
        &self,
        target: Target,
        list: List,
        now: Millis,
    ) -> Result<Option<Entry>, StoreError> {
        self.inner.draft_entry(target, list, now)
    }
    fn deployed_entry(
        &self,
        target: Target,
        list: List,
        now: Millis,
    ) -> Result<Option<Entry>, StoreError> {
        self.inner.deployed_entry(target, list, now)
    }
    fn pending_count(&self) -> Result<usize, StoreError> {
        self.inner.pending_count()
    }
    fn draft_seq(&self) -> Result<u64, StoreError> {
        self.inner.draft_seq()
    }
    fn pending(&self) -> Result<Vec<Pending>, StoreError> {
        self.inner.pending()
    }
    fn stage(
        &mut self,
        ops: &[Stage],
        user: &str,
        now: Millis,
        default_ttl: Option<u64>,
        audit_as: &Audit,
    ) -> Result<(u64, Vec<Option<Op>>), StoreError> {
        self.inner.stage(ops, user, now, default_ttl, audit_as)
    }
    fn stage_preview(
        &mut self,
        ops: &[Stage],
        now: Millis,
        default_ttl: Option<u64>,
    ) -> Result<Vec<Option<Op>>, StoreError> {
        self.inner.stage_preview(ops, now, default_ttl)
    }
    fn discard(&mut self, user: &str, now: Millis) -> Result<(u64, usize), StoreError> {
        self.inner.discard(user, now)
    }
    fn preview(&mut self, only: Option<Only<'_>>, now: Millis) -> Result<Plan, StoreError> {
        self.inner.preview(only, now)
    }
    fn plan(&mut self, only: Option<Only<'_>>, now: Millis) -> Result<Plan, StoreError> {
        self.inner.plan(only, now)
    }
    fn write_deploy<'s>(
        &'s mut self,
        plan: &Plan,
        record: DeployRecord<'_>,
    ) -> Result<Box<dyn WrittenDeploy + 's>, StoreError> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(Box::new(Refused));
        }
        self.inner.write_deploy(plan, record)
    }
    fn rollback(
        &mut self,
        rev: u64,
        force: bool,
        user: &str,
        now: Millis,
    ) -> Result<(u64, Vec<Entry>), StoreError> {
        self.inner.rollback(rev, force, user, now)
    }
    fn feeds(&self) -> Result<Vec<FeedRecord>, StoreError> {
        self.inner.feeds()
    }
    fn add_feed(
        &mut self,
        name: &str,
        settings: &FeedSettings,
        redacted_url: &str,
        state: &FeedState,
        now: Millis,
    ) -> Result<u64, StoreError> {
        self.inner
            .add_feed(name, settings, redacted_url, state, now)
    }
    fn set_feed_state(
        &mut self,
        name: &str,
        state: &FeedState,
        held: HeldList<'_>,
    ) -> Result<(), StoreError> {
        self.inner.set_feed_state(name, state, held)
    }
    fn held_list(&self, name: &str) -> Result<Option<Vec<Target>>, StoreError> {
        self.inner.held_list(name)
    }
    fn remove_feed(&mut self, name: &str, user: &str, now: Millis) -> Result<u64, StoreError> {
        self.inner.remove_feed(name, user, now)
    }
    fn report(&mut self, report: &Report, since: Millis) -> Result<ReportTally, StoreError> {
        self.inner.report(report, since)
    }
    fn reports(&self, reporter: Option<&str>, limit: usize) -> Result<Vec<Report>, StoreError> {
        self.inner.reports(reporter, limit)
    }
    fn offence(&mut self, ip: std::net::IpAddr, now: Millis) -> Result<u32, StoreError> {
        self.inner.offence(ip, now)
    }
    fn auto_policy(&self) -> Result<AutoPolicy, StoreError> {
        self.inner.auto_policy()
    }
    fn set_auto_policy(
        &mut self,
        policy: &AutoPolicy,
        user: &str,
        action: &str,
        now: Millis,
    ) -> Result<u64, StoreError> {
        self.inner.set_auto_policy(policy, user, action, now)
    }
    fn expired(&self, now: Millis) -> Result<Vec<Stored>, StoreError> {
        self.inner.expired(now)
    }
    fn expire(&mut self, expired: &[Stored], now: Millis) -> Result<u64, StoreError> {
        self.inner.expire(expired, now)
    }
    fn add_hits(&mut self, deltas: &[(u32, HitTotal)]) -> Result<(), StoreError> {
        self.inner.add_hits(deltas)
    }
    fn hit_totals(&self) -> Result<HashMap<u32, HitTotal>, StoreError> {
        self.inner.hit_totals()
    }
    fn record(
        &mut self,
        user: &str,
        kind: &str,
        target: Option<&str>,
        detail: Option<serde_json::Value>,
        now: Millis,
    ) -> Result<u64, StoreError> {
        self.inner.record(user, kind, target, detail, now)
    }
    fn history(&self, page: Page) -> Result<Vec<Revision>, StoreError> {
        self.inner.history(page)
    }
    fn audit(&self, page: Page, filter: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        self.inner.audit(page, filter)
    }
    fn revision_changes(&self, rev: u64, limit: usize) -> Result<RevisionChanges, StoreError> {
        self.inner.revision_changes(rev, limit)
    }
    fn prune(
        &mut self,
        cutoff: Millis,
        user: &str,
        now: Millis,
    ) -> Result<Option<(u64, Pruned)>, StoreError> {
        self.inner.prune(cutoff, user, now)
    }
    fn attachments(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.inner.attachments()
    }
    fn set_attachment(
        &mut self,
        iface: &str,
        mode: Option<&str>,
        user: &str,
        now: Millis,
    ) -> Result<u64, StoreError> {
        self.inner.set_attachment(iface, mode, user, now)
    }
    fn backup(&self, dest: &Path) -> Result<(), StoreError> {
        self.inner.backup(dest)
    }
    fn snapshots(&self) -> Arc<dyn Snapshots> {
        self.inner.snapshots()
    }
}
