//! An in-memory [`Filter`] for the daemon's unit tests: no kernel, no root.
//! It keeps rules as the kernel would, decides by the reference model, and
//! can be told to fail, so the core's error paths run too.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
};

use denylist_common::{Counters, Hit};

use super::{ChangeList, DataplaneError, DetectLevels, Epoch, Filter, Layout, Measured};
use crate::model::{AttachMode, AttachedMode, List, Rule, Target, Verdict, decide};

/// What the fake "kernel" holds; the test keeps a handle to it.
#[derive(Debug)]
pub struct FakeState {
    pub layout: Layout,
    pub rules: BTreeMap<(Target, List), Rule>,
    /// Interfaces that exist, by index.
    pub ifaces: HashMap<String, u32>,
    pub attached: HashMap<String, AttachedMode>,
    /// Hits the "kernel" counted, by entry id.
    pub hits: HashMap<u32, Hit>,
    /// Keys `drift` reports until `repair` fixes them.
    pub drifted: Vec<(Target, List)>,
    /// The next `apply` fails, leaving the rules as they were.
    pub fail_next_apply: bool,
    /// How many times `apply` ran.
    pub applied: usize,
    /// What `stage` was last given: not live, and gone at the next `apply`.
    pub staged: Vec<Rule>,
    /// The detector's levels, as the core set them.
    pub levels: DetectLevels,
    /// What the next detector tick reports.
    pub traffic: Vec<Measured>,
    /// Detector ticks so far.
    pub epoch: u32,
}

/// The filter the core owns, over state the test shares.
#[derive(Debug, Clone)]
pub struct FakeFilter(Arc<Mutex<FakeState>>);

impl FakeFilter {
    pub fn new(layout: Layout, rules: &[Rule]) -> Self {
        Self(Arc::new(Mutex::new(FakeState {
            layout,
            rules: rules.iter().map(|r| (r.key(), *r)).collect(),
            ifaces: HashMap::new(),
            attached: HashMap::new(),
            hits: HashMap::new(),
            drifted: Vec::new(),
            fail_next_apply: false,
            applied: 0,
            staged: Vec::new(),
            levels: DetectLevels::default(),
            traffic: Vec::new(),
            epoch: 0,
        })))
    }

    /// The state, to look at or to rig.
    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Filter for FakeFilter {
    fn layout(&self) -> Layout {
        let s = self.state();
        s.layout
    }

    fn len(&self) -> usize {
        let s = self.state();
        s.rules.len()
    }

    fn rules(&self) -> Vec<Rule> {
        let s = self.state();
        s.rules.values().copied().collect()
    }

    fn counts(&self) -> (u64, u64) {
        let s = self.state();
        super::filter::count_lists(s.rules.values().copied())
    }

    fn is_installed(&self, target: &Target, list: List) -> bool {
        let s = self.state();
        s.rules.contains_key(&(*target, list))
    }

    fn related(&self, target: &Target, list: List) -> Vec<(Target, List)> {
        let s = self.state();
        s.rules
            .keys()
            .filter(|(t, l)| {
                (*l == List::Allow && list == List::Deny && t.covers(target))
                    || (*l == list && target.covers(t))
            })
            .copied()
            .collect()
    }

    fn decide(&self, ip: IpAddr, now_tai_ns: u64) -> (Verdict, Vec<Rule>) {
        let rules: Vec<Rule> = self.state().rules.values().copied().collect();
        let d = decide(&rules, ip, now_tai_ns);
        (d.verdict, d.rule.into_iter().copied().collect())
    }

    fn counters(&self) -> Result<Counters, DataplaneError> {
        Ok(Counters::default())
    }

    fn apply(&mut self, changes: &ChangeList) -> Result<(), DataplaneError> {
        let mut s = self.state();
        s.applied += 1;
        s.staged.clear();
        if std::mem::take(&mut s.fail_next_apply) {
            return Err(DataplaneError::Capacity {
                needed: s.rules.len() + changes.upserts().len(),
                capacity: s.layout.capacity,
            });
        }
        for key in changes.removals() {
            s.rules.remove(key);
        }
        for r in changes.upserts() {
            s.rules.insert(r.key(), *r);
        }
        Ok(())
    }

    fn stage(&mut self, changes: &ChangeList) -> Result<usize, DataplaneError> {
        let mut s = self.state();
        s.staged = changes.upserts().to_vec();
        Ok(s.staged.len())
    }

    fn needs_growth(&self, _: &ChangeList, _: Layout) -> Option<Layout> {
        None
    }

    fn relayout(&mut self, layout: Layout) -> Result<(), DataplaneError> {
        let mut s = self.state();
        s.layout = layout;
        Ok(())
    }

    fn sweep_hits(&mut self) -> Result<HashMap<u32, Hit>, DataplaneError> {
        let mut s = self.state();
        let live: Vec<u32> = s.rules.values().map(|r| r.id).collect();
        s.hits.retain(|id, _| live.contains(id));
        Ok(s.hits.clone())
    }

    fn drift(&self) -> Result<Vec<(Target, List)>, DataplaneError> {
        let s = self.state();
        Ok(s.drifted.clone())
    }

    fn repair(&mut self, drift: &[(Target, List)]) -> Result<(), DataplaneError> {
        let mut s = self.state();
        s.drifted.retain(|k| !drift.contains(k));
        Ok(())
    }

    fn ifindex(&self, iface: &str) -> u32 {
        let s = self.state();
        s.ifaces.get(iface).copied().unwrap_or(0)
    }

    fn attached_mode(&self, iface: &str) -> Option<AttachedMode> {
        let s = self.state();
        s.attached.get(iface).copied()
    }

    fn holder(&self, _: &str) -> Option<String> {
        None
    }

    fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<AttachedMode, DataplaneError> {
        let mut s = self.state();
        if !s.ifaces.contains_key(iface) {
            return Err(DataplaneError::NotAttached {
                iface: iface.to_string(),
            });
        }
        let m = match mode {
            AttachMode::Skb => AttachedMode::Skb,
            AttachMode::Auto | AttachMode::Native => AttachedMode::Native,
        };
        s.attached.insert(iface.to_string(), m);
        Ok(m)
    }

    fn detach(&mut self, iface: &str) -> Result<(), DataplaneError> {
        let mut s = self.state();
        s.attached.remove(iface);
        Ok(())
    }

    fn restore_pins(&mut self, _: &[String]) -> Result<Vec<PathBuf>, DataplaneError> {
        Ok(Vec::new())
    }

    fn remove(&mut self, ifaces: &[String]) {
        let mut s = self.state();
        for iface in ifaces {
            s.attached.remove(iface);
        }
    }

    fn set_detector(&mut self, levels: DetectLevels) {
        self.state().levels = levels;
    }

    /// Reports the rigged traffic that reaches the watch level, as the
    /// kernel would, unless the detector is off.
    fn detector_tick(&mut self) -> Result<Epoch, DataplaneError> {
        let mut s = self.state();
        let number = s.epoch;
        s.epoch += 1;
        let levels = s.levels;
        let traffic = std::mem::take(&mut s.traffic);
        let sources = if levels.packets == 0 {
            Vec::new()
        } else {
            traffic
                .into_iter()
                .filter(|m| m.packets >= levels.packets / 8)
                .collect()
        };
        Ok(Epoch {
            number,
            sources,
            events_dropped: 0,
        })
    }
}
