//! The store's logical state, replayed from the audit log alone.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use denylist::{
    dataplane::tai_offset_ms,
    model::{self, AuditEvent, Entry, List, Millis, Rule, Target, Verdict},
};
use denylist_tests::tai_now_ns;

use crate::{common::target, ops::Op};

/// What a pending change is, as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Pending {
    Add(Entry),
    Change(Entry),
    Remove,
}

/// The store's logical state, replayed from the audit log alone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Model {
    pub(crate) deployed: BTreeMap<(Target, List), Entry>,
    pub(crate) pending: BTreeMap<(Target, List), Pending>,
    pub(crate) revision: u64,
}

fn ttl_secs(ttl: &str) -> Option<u64> {
    match ttl {
        "never" => None,
        d => Some(model::parse_duration(d).unwrap().as_secs()),
    }
}

/// The ops here are an admin's alone, so every entry has its one manual
/// listing: the entry's own fields, made again after a change to them.
fn single_listing(mut e: Entry) -> Entry {
    e.listings.clear();
    e.sources.clear();
    e.normalized()
}

impl Model {
    pub(crate) fn draft_entry(&self, key: &(Target, List)) -> Option<&Entry> {
        match self.pending.get(key) {
            Some(Pending::Add(e) | Pending::Change(e)) => Some(e),
            Some(Pending::Remove) => None,
            None => self.deployed.get(key),
        }
    }

    pub(crate) fn draft(&self) -> BTreeMap<(Target, List), Entry> {
        let mut d = self.deployed.clone();
        for (k, p) in &self.pending {
            match p {
                Pending::Add(e) | Pending::Change(e) => d.insert(*k, e.clone()),
                Pending::Remove => d.remove(k),
            };
        }
        d
    }

    /// The draft entry `op` must leave for `key`, given the one before.
    pub(crate) fn expected(
        op: &Op,
        key: (Target, List),
        before: Option<&Entry>,
        at: Millis,
    ) -> Entry {
        match op {
            Op::Add {
                reason,
                ttl,
                monitor,
                ..
            } => match before {
                Some(b) => {
                    let mut e = b.clone();
                    if let Some(r) = reason {
                        e.reason = Some(r.clone());
                    }
                    if let Some(t) = ttl {
                        e.ttl = ttl_secs(t);
                        e.expires_at = None;
                    }
                    if *monitor {
                        e.monitor = true;
                    }
                    single_listing(e)
                }
                None => Entry {
                    target: key.0,
                    list: key.1,
                    reason: reason.clone(),
                    ttl: ttl.as_deref().and_then(ttl_secs),
                    expires_at: None,
                    monitor: *monitor && key.1 == List::Deny,
                    source: "manual".into(),
                    added_by: "root".into(),
                    added_at: at,
                    sources: Vec::new(),
                    listings: Vec::new(),
                }
                .normalized(),
            },
            Op::Mode { monitor, .. } => {
                let mut e = before.expect("mode changes an entry").clone();
                e.monitor = *monitor;
                single_listing(e)
            }
            other => panic!("{other:?} stages no entry"),
        }
    }

    /// Applies one audit event, checking it against the state before and
    /// against the op that claims it.
    pub(crate) fn apply(&mut self, ev: &AuditEvent, op: &Op) {
        let at = ev.at;
        let ctx = format!("event {} ({}) of {:?}", ev.seq, ev.kind, op);
        match ev.kind.as_str() {
            "stage add" | "stage change" => {
                let e: Entry = serde_json::from_value(ev.detail.clone().expect("an entry"))
                    .unwrap_or_else(|err| panic!("{ctx}: {err}"));
                let key = (e.target, e.list);
                assert_eq!(ev.target.as_deref(), Some(e.target.to_string().as_str()));
                assert!(op.keys().contains(&key), "{ctx}: not a key of its op");
                let before = self.draft_entry(&key).cloned();
                assert_eq!(
                    before.is_some(),
                    ev.kind == "stage change",
                    "{ctx}: add means absent from the draft, change present"
                );
                assert_eq!(
                    e,
                    Self::expected(op, key, before.as_ref(), at),
                    "{ctx}: the draft entry is the op applied to the one before: no update lost"
                );
                let row = match self.deployed.get(&key) {
                    None => Some(Pending::Add(e)),
                    Some(d)
                        if d.same_settings(&e) && !(e.ttl.is_some() && e.expires_at.is_none()) =>
                    {
                        None
                    }
                    Some(_) => Some(Pending::Change(e)),
                };
                self.pending.remove(&key);
                if let Some(r) = row {
                    self.pending.insert(key, r);
                }
            }
            "stage remove" => {
                let detail = ev.detail.as_ref().expect("the list");
                let list: List = serde_json::from_value(detail["list"].clone()).unwrap();
                let key = (target(ev.target.as_deref().unwrap()), list);
                assert!(op.keys().contains(&key), "{ctx}: not a key of its op");
                assert!(
                    self.draft_entry(&key).is_some(),
                    "{ctx}: removed from the draft while absent"
                );
                self.pending.remove(&key);
                if self.deployed.contains_key(&key) {
                    self.pending.insert(key, Pending::Remove);
                }
            }
            "deploy" => {
                let d = ev.detail.as_ref().expect("a deploy detail");
                let keys = |v: &serde_json::Value| -> BTreeSet<(Target, List)> {
                    v.as_array()
                        .unwrap()
                        .iter()
                        .map(|k| {
                            (
                                target(k["target"].as_str().unwrap()),
                                serde_json::from_value(k["list"].clone()).unwrap(),
                            )
                        })
                        .collect()
                };
                let pending: BTreeSet<(Target, List)> = self.pending.keys().copied().collect();
                let shipped = match (d.get("only"), d.get("kept")) {
                    (Some(only), None) => keys(only),
                    (None, Some(kept)) => {
                        let kept = keys(kept);
                        assert!(kept.is_subset(&pending), "{ctx}: kept what was not pending");
                        pending.difference(&kept).copied().collect()
                    }
                    (None, None) => pending.clone(),
                    _ => panic!("{ctx}: both only and kept"),
                };
                assert!(
                    shipped.is_subset(&pending),
                    "{ctx}: shipped what was not pending"
                );
                match op {
                    Op::Deploy => assert_eq!(shipped, pending, "{ctx}: a deploy ships it all"),
                    staged => {
                        let named: BTreeSet<_> = staged.keys().into_iter().collect();
                        assert!(
                            shipped.is_subset(&named),
                            "{ctx}: --deploy ships only what it names"
                        );
                    }
                }
                let (mut added, mut removed, mut changed) = (0, 0, 0);
                for key in shipped {
                    match self.pending.remove(&key).unwrap() {
                        Pending::Add(mut e) => {
                            e.expires_at = e.ttl.map(|t| at + t as i64 * 1000);
                            self.deployed.insert(key, single_listing(e));
                            added += 1;
                        }
                        Pending::Change(mut e) => {
                            let before = &self.deployed[&key];
                            e.expires_at = match e.expires_at {
                                Some(_) if e.ttl == before.ttl => before.expires_at,
                                _ => e.ttl.map(|t| at + t as i64 * 1000),
                            };
                            self.deployed.insert(key, single_listing(e));
                            changed += 1;
                        }
                        Pending::Remove => {
                            self.deployed.remove(&key);
                            removed += 1;
                        }
                    }
                }
                self.revision += 1;
                assert_eq!(
                    (
                        d["revision"].as_u64(),
                        d["added"].as_u64(),
                        d["removed"].as_u64(),
                        d["changed"].as_u64()
                    ),
                    (
                        Some(self.revision),
                        Some(added),
                        Some(removed),
                        Some(changed)
                    ),
                    "{ctx}: the revision and its counts"
                );
            }
            other => panic!("{ctx}: no admin op makes a {other:?} event"),
        }
    }

    pub(crate) fn rules(&self) -> Vec<Rule> {
        let tai = tai_offset_ms();
        self.deployed
            .values()
            .map(|e| Rule {
                id: 1,
                target: e.target,
                list: e.list,
                monitor: e.monitor,
                expires_ms: e.expires_at.map(|x| (x + tai) as u64),
            })
            .collect()
    }

    /// What `denylist check` answers at this state.
    pub(crate) fn check(&self, ip: IpAddr) -> (Verdict, Option<String>, Option<String>) {
        let rules = self.rules();
        let d = model::decide(&rules, ip, tai_now_ns());
        let decided = d.rule.map(|r| r.target.to_string());
        match d.verdict {
            Verdict::Allowed => (Verdict::Pass, None, decided),
            v => (v, decided, None),
        }
    }
}

pub(crate) fn sorted(mut v: Vec<Entry>) -> Vec<Entry> {
    v.sort_by_key(|e| (e.target, e.list));
    v
}
