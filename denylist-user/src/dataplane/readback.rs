//! Reading the kernel back: verdicts, drift against what user space
//! installed, counters and per-entry hits.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    os::fd::AsFd,
};

use aya::maps::{Map, MapData, MapError, PerCpuArray, PerCpuHashMap};
use denylist_common::{
    Counters, ExactValue, HIT_SLOTS, Hit, HitSlot, MAP_COUNTERS, MAP_EXACT_V4, MAP_EXACT_V6,
    MAP_HIT_SLOTS, MAP_HITS,
};

use super::{Dataplane, DataplaneError, rule_of};
use crate::model::{List, Rule, Target};

impl Dataplane {
    /// The verdict the kernel gives `ip` at `now_tai_ns`, from what user
    /// space installed: the deciding rule and the allow rule protecting it.
    /// Probes only the prefix lengths in use, so it stays fast at 1M entries.
    pub fn decide(&self, ip: IpAddr, now_tai_ns: u64) -> (crate::model::Verdict, Vec<Rule>) {
        let ip = crate::model::normal_ip(ip);
        let width = if ip.is_ipv4() { 32 } else { 128 };
        let mut covering = Vec::new();
        for len in (0..=width).rev() {
            if self.lengths.get(&(ip.is_ipv4(), len)).copied().unwrap_or(0) == 0 {
                continue;
            }
            let net = ipnet::IpNet::new(ip, len)
                .expect("length within the family")
                .trunc();
            let t = Target::from(net);
            for list in [List::Deny, List::Allow] {
                if let Some(i) = self.installed.get(&(t, list)) {
                    covering.push(rule_of(t, list, *i));
                }
            }
        }
        let d = crate::model::decide(&covering, ip, now_tai_ns);
        let verdict = d.verdict;
        let decided: Vec<Rule> = d.rule.into_iter().cloned().collect();
        (verdict, decided)
    }

    /// Compares the exact-address maps and prefix rules with what user
    /// space installed, returning the targets that differ.
    pub fn drift(&self) -> Result<Vec<(Target, List)>, DataplaneError> {
        let mut want: HashMap<IpAddr, ExactValue> = HashMap::new();
        for ((t, l), i) in &self.installed {
            if !t.is_exact() {
                continue;
            }
            want.entry(t.addr())
                .or_default()
                .set(*l == List::Allow, i.word, i.id);
        }
        let mut drift = HashSet::new();
        let mut seen = HashSet::new();
        for (name, v4) in [(MAP_EXACT_V4, true), (MAP_EXACT_V6, false)] {
            let fd = match self.ebpf.map(name) {
                Some(Map::HashMap(d)) => d.fd().as_fd(),
                _ => return Err(DataplaneError::MissingMap { name }),
            };
            let read = |source| DataplaneError::Batch {
                op: "read",
                name,
                source,
            };
            let got: Vec<(IpAddr, ExactValue)> = if v4 {
                crate::dataplane::batch::lookup_all::<[u8; 4], ExactValue>(fd)
                    .map_err(read)?
                    .into_iter()
                    .map(|(k, v)| (IpAddr::from(k), v))
                    .collect()
            } else {
                crate::dataplane::batch::lookup_all::<[u8; 16], ExactValue>(fd)
                    .map_err(read)?
                    .into_iter()
                    .map(|(k, v)| (IpAddr::from(k), v))
                    .collect()
            };
            for (ip, v) in got {
                // Written ahead of a deploy and not live: no verdict reads it.
                if self.gate.is_pending(&ip) {
                    continue;
                }
                seen.insert(ip);
                let v = self.gate.as_read(v);
                let w = want.get(&ip).copied().unwrap_or_default();
                let t = Target::host(ip);
                for l in [List::Deny, List::Allow] {
                    let allow = l == List::Allow;
                    if w.get(allow) != v.get(allow) {
                        drift.insert((t, l));
                    }
                }
            }
        }
        for (ip, w) in &want {
            if !seen.contains(ip) {
                let t = Target::host(*ip);
                if w.deny != 0 {
                    drift.insert((t, List::Deny));
                }
                if w.allow != 0 {
                    drift.insert((t, List::Allow));
                }
            }
        }
        for ((t, l), i) in &self.installed {
            if !t.is_exact() && !self.prefixes.matches(t, *l, i.id, i.word) {
                drift.insert((*t, *l));
            }
        }
        let mut out: Vec<_> = drift.into_iter().collect();
        out.sort();
        Ok(out)
    }

    /// Rewrites the kernel's view of `targets` (both lists for an exact
    /// address) from what user space installed.
    pub fn repair(&mut self, targets: &[(Target, List)]) -> Result<(), DataplaneError> {
        for &(t, l) in targets {
            if t.is_exact() {
                let v = self.exact_value(t, l, self.installed.get(&(t, l)).copied());
                self.write_exact(t.addr(), v)?;
            } else if let Some(i) = self.installed.get(&(t, l)).copied() {
                self.prefixes.update(&t, l, i.id, i.word)?;
            }
        }
        Ok(())
    }

    /// Whether the maps sized by contents surely hold the installed entries
    /// plus `upserts`: a quick test that needs no walk over the installed
    /// entries, counting the most nodes a new prefix could take.
    pub fn fits(&self, upserts: &[Rule]) -> bool {
        // One pass over the new entries: new prefixes, new exact IPv6
        // addresses, and all of them.
        let (mut new, mut new_v6, mut new_entries) = (0u64, 0u64, 0u64);
        for r in self.new_entries(upserts) {
            new_entries += 1;
            match (r.target.is_exact(), r.target.is_ipv4()) {
                (false, _) => new += 1,
                (true, false) => new_v6 += 1,
                (true, true) => {}
            }
        }
        // A prefix takes at most one node a level below the root, 14 in
        // IPv6, each with at most 3 runs, and adds 2 runs where it ends,
        // in blocks a third larger; blocks come in pages of one size each,
        // so a page a size spare.
        let (v4, v6) = self.prefixes.nodes_in_use();
        let (s4, s6) = self.prefixes.slots_in_use();
        let l = &self.layout;
        use crate::dataplane::layout::{MAX_HIT_ENTRIES, MIN_SLOTS};
        let spare = u64::from(MIN_SLOTS);
        let exact_v6 = self.lengths.get(&(false, 128)).copied().unwrap_or(0) as u64;
        let entries = self.installed.len() as u64 + new_entries;
        let hits = entries.min(u64::from(MAX_HIT_ENTRIES)) / 2;
        hits <= u64::from(l.hit_entries)
            && exact_v6 + new_v6 <= u64::from(l.exact_v6)
            && self.prefixes.len() as u64 + new <= u64::from(l.prefix_rules)
            && u64::from(v4) + 2 * new < u64::from(l.nodes_v4)
            && u64::from(v6) + 14 * new < u64::from(l.nodes_v6)
            && s4 + 12 * new + spare <= u64::from(l.slots_v4)
            && s6 + 60 * new + spare <= u64::from(l.slots_v6)
    }

    /// What the installed entries plus `upserts` take of the maps sized by
    /// contents ([`crate::dataplane::layout::needs`]). Entries a batch
    /// replaces or removes are counted too: the maps hold both while it
    /// applies.
    pub fn content_needs(&self, upserts: &[Rule]) -> crate::dataplane::layout::Needs {
        let installed = self.installed.keys().map(|(t, _)| *t);
        let new = self.new_entries(upserts).map(|r| r.target);
        crate::dataplane::layout::needs(installed.chain(new))
    }

    /// The entries among `upserts` that are not installed yet.
    fn new_entries<'a>(&'a self, upserts: &'a [Rule]) -> impl Iterator<Item = &'a Rule> {
        upserts
            .iter()
            .filter(|r| !self.installed.contains_key(&(r.target, r.list)))
    }

    /// Installed entries that bear on staging `t` on `list`: allow entries
    /// covering it (for a deny entry), and entries of the same list inside
    /// it. Covering entries are probed by the prefix lengths in use, so a
    /// single address costs a few lookups even at 1M entries; only a prefix
    /// scans for the entries inside it.
    pub fn related(&self, t: &Target, list: List) -> Vec<(Target, List)> {
        let mut out = Vec::new();
        if list == List::Deny {
            for len in 0..=t.prefix_len() {
                if self.lengths.get(&(t.is_ipv4(), len)).copied().unwrap_or(0) == 0 {
                    continue;
                }
                let net = ipnet::IpNet::new(t.addr(), len)
                    .expect("length within the family")
                    .trunc();
                let key = (Target::from(net), List::Allow);
                if self.installed.contains_key(&key) {
                    out.push(key);
                }
            }
        }
        if t.is_exact() {
            if self.installed.contains_key(&(*t, list)) {
                out.push((*t, list));
            }
        } else {
            out.extend(
                self.installed
                    .keys()
                    .filter(|(r, l)| *l == list && t.covers(r))
                    .copied(),
            );
        }
        out
    }

    /// Every installed entry, as the kernel reads it.
    pub fn rules(&self) -> impl Iterator<Item = Rule> + '_ {
        self.installed.iter().map(|((t, l), i)| rule_of(*t, *l, *i))
    }

    /// The global counters, summed over CPUs.
    pub fn counters(&self) -> Result<Counters, DataplaneError> {
        let name = MAP_COUNTERS;
        let err = |source| DataplaneError::Map { name, source };
        let map = self
            .ebpf
            .map(name)
            .ok_or(DataplaneError::MissingMap { name })?;
        let a: PerCpuArray<&MapData, Counters> = PerCpuArray::try_from(map).map_err(err)?;
        let mut sum = Counters::default();
        for c in a.get(&0, 0).map_err(err)?.iter() {
            sum.dropped_packets += c.dropped_packets;
            sum.dropped_bytes += c.dropped_bytes;
            sum.passed_packets += c.passed_packets;
            sum.passed_bytes += c.passed_bytes;
            sum.monitored_packets += c.monitored_packets;
            sum.monitored_bytes += c.monitored_bytes;
            sum.allowed_packets += c.allowed_packets;
            sum.allowed_bytes += c.allowed_bytes;
            sum.unparsable_packets += c.unparsable_packets;
            sum.unparsable_bytes += c.unparsable_bytes;
        }
        Ok(sum)
    }

    /// Per-entry hits summed over CPUs and over both hit tables, with the
    /// latest hit time; only entries that were hit (and not evicted from
    /// the LRU) appear.
    pub fn hits(&self) -> Result<HashMap<u32, Hit>, DataplaneError> {
        let mut out = HashMap::new();
        for (_, per_cpu) in self.hit_slots()? {
            for s in per_cpu.iter().filter(|s| s.id != 0) {
                add_hit(&mut out, s.id, &s.hit);
            }
        }
        for (id, per_cpu) in self.hit_overflow()? {
            for v in &per_cpu {
                add_hit(&mut out, id, v);
            }
        }
        Ok(out)
    }

    /// [`Self::hits`] for installed entries, freeing what removed entries
    /// still hold: their direct-mapped slots and LRU elements. Clearing a
    /// slot rewrites its index on every CPU, so an increment racing on
    /// another CPU for a live entry at that index may be lost.
    pub fn sweep_hits(&mut self) -> Result<HashMap<u32, Hit>, DataplaneError> {
        let live: HashSet<u32> = self.installed.values().map(|i| i.id).collect();
        let mut out = HashMap::new();
        let mut stale_slots = Vec::new();
        for (index, mut per_cpu) in self.hit_slots()? {
            let mut stale = false;
            for s in per_cpu.iter_mut().filter(|s| s.id != 0) {
                if live.contains(&s.id) {
                    add_hit(&mut out, s.id, &s.hit);
                } else {
                    *s = HitSlot::default();
                    stale = true;
                }
            }
            if stale {
                stale_slots.push((index, per_cpu));
            }
        }
        let mut stale_ids = Vec::new();
        for (id, per_cpu) in self.hit_overflow()? {
            if live.contains(&id) {
                for v in &per_cpu {
                    add_hit(&mut out, id, v);
                }
            } else {
                stale_ids.push(id);
            }
        }
        let name = MAP_HIT_SLOTS;
        let err = |source| DataplaneError::Map { name, source };
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(DataplaneError::MissingMap { name })?;
        let mut slots: PerCpuArray<&mut MapData, HitSlot> =
            PerCpuArray::try_from(map).map_err(err)?;
        for (index, per_cpu) in stale_slots {
            let values = aya::maps::PerCpuValues::try_from(per_cpu).map_err(|e| {
                err(MapError::SyscallError(aya::sys::SyscallError {
                    call: "per-CPU values",
                    io_error: e,
                }))
            })?;
            slots.set(index, values, 0).map_err(err)?;
        }
        let name = MAP_HITS;
        let err = |source| DataplaneError::Map { name, source };
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(DataplaneError::MissingMap { name })?;
        let mut lru: PerCpuHashMap<&mut MapData, u32, Hit> =
            PerCpuHashMap::try_from(map).map_err(err)?;
        for id in stale_ids {
            // Already evicted is as good as removed.
            let _ = lru.remove(&id);
        }
        Ok(out)
    }

    /// Every slot of the direct-mapped table, per CPU.
    fn hit_slots(&self) -> Result<Vec<(u32, Vec<HitSlot>)>, DataplaneError> {
        let name = MAP_HIT_SLOTS;
        let err = |source| DataplaneError::Map { name, source };
        let map = self
            .ebpf
            .map(name)
            .ok_or(DataplaneError::MissingMap { name })?;
        let slots: PerCpuArray<&MapData, HitSlot> = PerCpuArray::try_from(map).map_err(err)?;
        (0..HIT_SLOTS)
            .map(|i| Ok((i, slots.get(&i, 0).map_err(err)?.iter().copied().collect())))
            .collect()
    }

    /// Every element of the LRU overflow table, per CPU.
    fn hit_overflow(&self) -> Result<Vec<(u32, Vec<Hit>)>, DataplaneError> {
        let name = MAP_HITS;
        let err = |source| DataplaneError::Map { name, source };
        let map = self
            .ebpf
            .map(name)
            .ok_or(DataplaneError::MissingMap { name })?;
        let lru: PerCpuHashMap<&MapData, u32, Hit> = PerCpuHashMap::try_from(map).map_err(err)?;
        lru.iter()
            .map(|item| {
                let (id, per_cpu) = item.map_err(err)?;
                Ok((id, per_cpu.iter().copied().collect()))
            })
            .collect()
    }
}

fn add_hit(out: &mut HashMap<u32, Hit>, id: u32, v: &Hit) {
    let sum = out.entry(id).or_default();
    sum.packets += v.packets;
    sum.bytes += v.bytes;
}
