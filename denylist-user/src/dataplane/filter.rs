//! The filter as the daemon sees it: the current generation of maps with
//! the program, its pinned links, and the pins that let both outlive the
//! daemon. [`Filter`] is the seam the daemon's unit tests replace with an
//! in-memory fake; [`PinnedFilter`] is the real one.
//!
//! A generation is a directory of pinned maps. A new one is complete before
//! any link moves to it with BPF_LINK_UPDATE, so no packet goes unfiltered
//! at a start or when the prefix arrays grow; then the older ones are
//! unpinned.

use std::{collections::HashMap, net::IpAddr, path::Path, path::PathBuf};

use denylist_common::{Counters, Hit};

use super::{
    ChangeList, Dataplane, DataplaneError, DetectLevels, Epoch, Layout, Pins, iface, layout::needs,
};
use crate::model::{AttachMode, AttachedMode, List, Rule, Target, Verdict};

/// What the daemon needs of the kernel side.
pub trait Filter: Send {
    fn layout(&self) -> Layout;

    /// Entries installed, both lists.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every installed rule, as the kernel holds it.
    fn rules(&self) -> Vec<Rule>;

    /// Installed entries per list: (deny, allow).
    fn counts(&self) -> (u64, u64);

    fn is_installed(&self, target: &Target, list: List) -> bool;

    /// Installed entries that matter to the guardrails' warnings about
    /// `target` on `list`: allow entries covering it, and entries of its own
    /// list that it covers.
    fn related(&self, target: &Target, list: List) -> Vec<(Target, List)>;

    /// The verdict the kernel would give `ip` now, with the rules deciding.
    fn decide(&self, ip: IpAddr, now_tai_ns: u64) -> (Verdict, Vec<Rule>);

    fn counters(&self) -> Result<Counters, DataplaneError>;

    /// Puts `changes` into the kernel, all or nothing.
    fn apply(&mut self, changes: &ChangeList) -> Result<(), DataplaneError>;

    /// Writes ahead of a deploy, not live, the new entries of `changes`
    /// it can; the next `apply` makes those it puts in as written live at
    /// once and drops the rest. Returns how many it wrote.
    fn stage(&mut self, changes: &ChangeList) -> Result<usize, DataplaneError>;

    /// A larger layout when `changes`' prefixes may not fit the current
    /// one, sized for what they need with room to double, within `ceiling`.
    fn needs_growth(&self, changes: &ChangeList, ceiling: Layout) -> Option<Layout>;

    /// Moves the filter to fresh maps of `layout` holding what the kernel
    /// holds now. Hit counters start from zero there.
    fn relayout(&mut self, layout: Layout) -> Result<(), DataplaneError>;

    /// Per-entry hits so far, freeing what removed entries still hold.
    fn sweep_hits(&mut self) -> Result<HashMap<u32, Hit>, DataplaneError>;

    /// Keys where the kernel's maps differ from what was installed.
    fn drift(&self) -> Result<Vec<(Target, List)>, DataplaneError>;

    fn repair(&mut self, drift: &[(Target, List)]) -> Result<(), DataplaneError>;

    /// The interface's index, 0 while it does not exist.
    fn ifindex(&self, iface: &str) -> u32;

    /// The mode the kernel reports for the XDP program on `iface`.
    fn attached_mode(&self, iface: &str) -> Option<AttachedMode>;

    /// Another tool's XDP program holding `iface`, named for an error.
    fn holder(&self, iface: &str) -> Option<String>;

    /// Attaches through a pinned link, replacing our own old one.
    fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<AttachedMode, DataplaneError>;

    /// Detaches and unpins the link.
    fn detach(&mut self, iface: &str) -> Result<(), DataplaneError>;

    /// Pins again whatever lost its pin (the generation's maps, and the links
    /// of `ifaces`); returns the pins it made.
    fn restore_pins(&mut self, ifaces: &[String]) -> Result<Vec<PathBuf>, DataplaneError>;

    /// Detaches `ifaces` and unpins every generation: the filter ends with
    /// this process.
    fn remove(&mut self, ifaces: &[String]);

    /// Sets the rate detector's levels, kept across new generations.
    fn set_detector(&mut self, levels: DetectLevels);

    /// Ends the rate detector's epoch: the sources it reported in it, with
    /// their counts over every CPU ([`super::Detector::tick`]).
    fn detector_tick(&mut self) -> Result<Epoch, DataplaneError>;
}

/// The filter on bpffs: a generation of pinned maps, the program, and the
/// pinned links.
pub struct PinnedFilter {
    dp: Dataplane,
    pins: Pins,
    levels: DetectLevels,
}

impl PinnedFilter {
    /// Builds a new generation of `layout` holding `rules` under `bpffs`,
    /// moves every pinned link to it without a gap, and unpins the older
    /// generations. Returns the filter and the interfaces whose links moved.
    pub fn start(
        bpffs: &Path,
        layout: Layout,
        rules: &[Rule],
    ) -> Result<(Self, Vec<String>), DataplaneError> {
        let pins = Pins::open(bpffs)?;
        let (generation, mut dp) = build_generation(&pins, layout, rules)?;
        tracing::info!(
            generation,
            entries = rules.len(),
            "built the maps from the store"
        );
        let mut adopted = Vec::new();
        for iface in pins.links()? {
            match dp.adopt(&iface, &pins.link(&iface)) {
                Ok(()) => {
                    tracing::info!(%iface, "moved the pinned link to the new program");
                    adopted.push(iface);
                }
                Err(e) => {
                    tracing::warn!(%iface, "dropping a pinned link that no longer works: {e}");
                    let _ = pins.remove_link(&iface);
                }
            }
        }
        unpin_older(&pins, generation);
        let levels = DetectLevels::default();
        Ok((Self { dp, pins, levels }, adopted))
    }

    /// The program and its maps, for what only the real kernel side has.
    pub fn dataplane(&self) -> &Dataplane {
        &self.dp
    }
}

impl Filter for PinnedFilter {
    fn layout(&self) -> Layout {
        self.dp.layout()
    }

    fn len(&self) -> usize {
        self.dp.len()
    }

    fn rules(&self) -> Vec<Rule> {
        self.dp.rules().collect()
    }

    fn counts(&self) -> (u64, u64) {
        count_lists(self.dp.rules())
    }

    fn is_installed(&self, target: &Target, list: List) -> bool {
        self.dp.is_installed(target, list)
    }

    fn related(&self, target: &Target, list: List) -> Vec<(Target, List)> {
        self.dp.related(target, list)
    }

    fn decide(&self, ip: IpAddr, now_tai_ns: u64) -> (Verdict, Vec<Rule>) {
        self.dp.decide(ip, now_tai_ns)
    }

    fn counters(&self) -> Result<Counters, DataplaneError> {
        self.dp.counters()
    }

    fn apply(&mut self, changes: &ChangeList) -> Result<(), DataplaneError> {
        self.dp.apply(changes.upserts(), changes.removals())
    }

    fn stage(&mut self, changes: &ChangeList) -> Result<usize, DataplaneError> {
        self.dp.stage(changes.upserts(), changes.removals())
    }

    fn needs_growth(&self, changes: &ChangeList, ceiling: Layout) -> Option<Layout> {
        let upserts = changes.upserts();
        if self.dp.fits(upserts) {
            return None;
        }
        let needs = self.dp.content_needs(upserts);
        let now = self.dp.layout();
        if now.holds(needs) {
            return None;
        }
        let grown = now.grown_to(ceiling.fitting(needs));
        (grown != now).then_some(grown)
    }

    fn relayout(&mut self, layout: Layout) -> Result<(), DataplaneError> {
        let start = std::time::Instant::now();
        let rules: Vec<Rule> = self.dp.rules().collect();
        let (generation, mut dp) = build_generation(&self.pins, layout, &rules)?;
        dp.detector().set(self.levels);
        for iface in self.pins.links()? {
            if let Err(e) = dp.adopt(&iface, &self.pins.link(&iface)) {
                tracing::error!(%iface, "moving the pinned link to the larger maps: {e}");
            }
        }
        let old = std::mem::replace(&mut self.dp, dp);
        unpin_older(&self.pins, generation);
        drop(old);
        tracing::info!(
            generation,
            exact_v6 = layout.exact_v6,
            prefix_rules = layout.prefix_rules,
            nodes_v4 = layout.nodes_v4,
            nodes_v6 = layout.nodes_v6,
            slots_v4 = layout.slots_v4,
            slots_v6 = layout.slots_v6,
            took_ms = start.elapsed().as_millis() as u64,
            "moved to larger maps"
        );
        Ok(())
    }

    fn sweep_hits(&mut self) -> Result<HashMap<u32, Hit>, DataplaneError> {
        self.dp.sweep_hits()
    }

    fn drift(&self) -> Result<Vec<(Target, List)>, DataplaneError> {
        self.dp.drift()
    }

    fn repair(&mut self, drift: &[(Target, List)]) -> Result<(), DataplaneError> {
        self.dp.repair(drift)
    }

    fn ifindex(&self, iface: &str) -> u32 {
        iface::ifindex(iface)
    }

    fn attached_mode(&self, iface: &str) -> Option<AttachedMode> {
        iface::xdp_mode_of(iface)
    }

    fn holder(&self, iface: &str) -> Option<String> {
        iface::xdp_holder(iface)
    }

    fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<AttachedMode, DataplaneError> {
        let link = self.pins.link(iface);
        let _ = self.pins.remove_link(iface);
        self.dp.attach_pinned(iface, mode, &link)
    }

    fn detach(&mut self, iface: &str) -> Result<(), DataplaneError> {
        // Not attached by this process (e.g. its interface went away) is
        // fine: the pin is what keeps a link alive.
        let _ = self.dp.detach(iface);
        Ok(self.pins.remove_link(iface)?)
    }

    fn restore_pins(&mut self, ifaces: &[String]) -> Result<Vec<PathBuf>, DataplaneError> {
        self.pins.ensure_dir()?;
        let links: Vec<(String, PathBuf)> = ifaces
            .iter()
            .map(|name| (name.clone(), self.pins.link(name)))
            .collect();
        self.dp.restore_pins(&links)
    }

    fn remove(&mut self, ifaces: &[String]) {
        for iface in ifaces {
            let _ = self.detach(iface);
        }
        if let Ok(generations) = self.pins.generations() {
            for g in generations {
                let _ = self.pins.remove_generation(g);
            }
        }
    }

    fn set_detector(&mut self, levels: DetectLevels) {
        self.levels = levels;
        self.dp.detector().set(levels);
    }

    fn detector_tick(&mut self) -> Result<Epoch, DataplaneError> {
        self.dp.detector().tick()
    }
}

/// Rules per list: (deny, allow).
pub(super) fn count_lists(rules: impl Iterator<Item = Rule>) -> (u64, u64) {
    rules.fold((0, 0), |(deny, allow), r| match r.list {
        List::Deny => (deny + 1, allow),
        List::Allow => (deny, allow + 1),
    })
}

/// What `rules` need of the maps sized by contents: a start sizes them by
/// it.
pub fn content_needs(rules: &[Rule]) -> super::Needs {
    needs(rules.iter().map(|r| r.target))
}

/// A new generation of maps of `layout`, pinned, holding `rules`: complete
/// before any link moves to it. On failure its pins go again, and the
/// running filter is untouched.
fn build_generation(
    pins: &Pins,
    layout: Layout,
    rules: &[Rule],
) -> Result<(u64, Dataplane), DataplaneError> {
    let (generation, dir) = pins.new_generation()?;
    let built = Dataplane::load_at(layout, Some(&dir)).and_then(|mut dp| {
        dp.apply(rules, &[])?;
        Ok(dp)
    });
    match built {
        Ok(dp) => Ok((generation, dp)),
        Err(e) => {
            let _ = pins.remove_generation(generation);
            Err(e)
        }
    }
}

/// Unpins every generation before `current`, once the links have moved.
fn unpin_older(pins: &Pins, current: u64) {
    let generations = match pins.generations() {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!("could not list the old generations to unpin: {e}");
            return;
        }
    };
    for g in generations.into_iter().filter(|&g| g != current) {
        if let Err(e) = pins.remove_generation(g) {
            tracing::warn!(generation = g, "could not unpin an old generation: {e}");
        }
    }
}
