//! Writing a change into the maps, in an order that keeps each packet's
//! verdict either the old or the new one (docs/dataplane.md), all or
//! nothing.

use std::{
    collections::HashSet,
    net::IpAddr,
    os::fd::{AsFd, BorrowedFd},
};

use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, Map, MapData, MapError},
};
use denylist_common::{ExactValue, MAP_EXACT_V4, MAP_EXACT_V6};

use super::{Dataplane, DataplaneError, ExactBatch, Installed, PerEntry, batch, word_of};
use crate::model::{List, Rule, Target};

/// One change in its place in the order: rank, key, and the new state.
type Op = (u16, Target, List, Option<Installed>);

impl Dataplane {
    /// Puts `upserts` in (new entries, or new fields for existing ones) and
    /// takes `removals` out, all or nothing.
    ///
    /// Order: allow additions; deny additions, most specific first; changes
    /// in place; deny removals, least specific first; allow removals. An
    /// exact removal that no other change in the batch can affect decides
    /// its packets alone, so it goes first: the maps then never hold both a
    /// replaced list and its successor, which would not fit when the list
    /// is more than half the capacity. Entries written ahead
    /// ([`Dataplane::stage`]) that `upserts` puts in as written become live
    /// together at their place in that order.
    pub fn apply(
        &mut self,
        upserts: &[Rule],
        removals: &[(Target, List)],
    ) -> Result<(), DataplaneError> {
        if let Some(&(target, list)) = removals.iter().find(|k| !self.installed.contains_key(k)) {
            return Err(DataplaneError::NotInstalled { target, list });
        }
        let mut seen: HashSet<_, foldhash::fast::RandomState> =
            HashSet::with_capacity_and_hasher(upserts.len() + removals.len(), Default::default());
        let keys = upserts
            .iter()
            .map(|r| (r.target, r.list))
            .chain(removals.iter().copied());
        for (target, list) in keys {
            if !seen.insert((target, list)) {
                return Err(DataplaneError::Duplicate { target, list });
            }
        }
        let added = upserts
            .iter()
            .filter(|r| !self.installed.contains_key(&(r.target, r.list)))
            .count();
        let needed = (self.installed.len() + added).saturating_sub(removals.len());
        if needed > self.layout.capacity as usize {
            return Err(DataplaneError::Capacity {
                needed,
                capacity: self.layout.capacity,
            });
        }
        // Grown once, not by doubling through a million inserts.
        self.installed.reserve(added);
        self.take_pending(upserts, removals)?;
        let alone = lone_exact_removals(upserts, removals);
        let mut ops: Vec<Op> = upserts
            .iter()
            .filter(|r| !self.is_taken(r))
            .map(|r| {
                let rank = match (self.installed.contains_key(&(r.target, r.list)), r.list) {
                    (true, _) => 600,
                    (false, List::Allow) => 1,
                    (false, List::Deny) => 300 - u16::from(r.target.prefix_len()),
                };
                let new = Installed {
                    id: r.id,
                    word: word_of(r),
                };
                (rank, r.target, r.list, Some(new))
            })
            .chain(removals.iter().map(|&(t, l)| {
                let rank = match l {
                    _ if alone.contains(&(t, l)) => 0,
                    List::Deny => 700 + u16::from(t.prefix_len()),
                    List::Allow => 900,
                };
                (rank, t, l, None)
            }))
            .collect();
        ops.sort_by_key(|op| op.0);
        // What was written ahead is exact additions: an allow's place is
        // among the allow additions, a deny's first among the deny
        // additions (an exact address is its family's most specific), so
        // the gate opens between the two.
        let gate_at = ops.partition_point(|op| op.0 <= 1);
        let mut undo = Vec::with_capacity(ops.len());
        let exact = upserts.iter().filter(|r| r.target.is_exact()).count();
        let mut batch =
            ExactBatch::with_capacity_and_hasher(exact + removals.len(), Default::default());
        let mut ops = ops.into_iter();
        let mut done = self.set_all(ops.by_ref().take(gate_at), &mut batch, &mut undo);
        if done.is_ok() {
            done = self
                .open_gate(&mut batch)
                .map(|keys| undo.extend(keys.into_iter().map(|(t, l)| (t, l, None))));
        }
        if done.is_ok() {
            done = self.set_all(ops, &mut batch, &mut undo);
        }
        if done.is_ok() {
            done = self.flush(&mut batch);
        }
        if let Err(e) = done {
            batch.clear();
            for (t, l, prev) in undo.into_iter().rev() {
                if let Err(u) = self.set(t, l, prev, None) {
                    // What user space believes must stay what the store
                    // holds; `drift` then shows the kernel's difference and
                    // verify rewrites it.
                    tracing::error!("undoing {t} ({l:?}) after a failed change: {u}");
                    self.record_installed(t, l, prev);
                }
            }
            if let Err(u) = self.unstage() {
                tracing::error!("deleting entries written ahead after a failed change: {u}");
            }
            return Err(e);
        }
        Ok(())
    }

    /// Sets each of `ops` in turn, recording in `undo` what it was.
    fn set_all(
        &mut self,
        ops: impl Iterator<Item = Op>,
        batch: &mut ExactBatch,
        undo: &mut Vec<(Target, List, Option<Installed>)>,
    ) -> Result<(), DataplaneError> {
        for (_, t, l, new) in ops {
            // Exact writes wait in the batch; a prefix change must not
            // overtake the exact ones ordered before it.
            if !t.is_exact() {
                self.flush(batch)?;
            }
            let prev = self.set(t, l, new, Some(batch))?;
            undo.push((t, l, prev));
        }
        Ok(())
    }

    /// Records `new` as what the kernel holds for (t, l), and keeps the
    /// per-length counts `decide` probes by.
    fn record_installed(&mut self, t: Target, l: List, new: Option<Installed>) {
        let prev = match new {
            Some(n) => self.installed.insert((t, l), n),
            None => self.installed.remove(&(t, l)),
        };
        let key = (t.is_ipv4(), t.prefix_len());
        match (prev, new) {
            (None, Some(_)) => *self.lengths.entry(key).or_default() += 1,
            (Some(_), None) => {
                if let Some(n) = self.lengths.get_mut(&key) {
                    *n -= 1;
                }
            }
            _ => {}
        }
    }

    /// Writes the batched exact-address changes with one bpf() call per
    /// map and kind (BPF_MAP_UPDATE_BATCH, BPF_MAP_DELETE_BATCH).
    pub(super) fn flush(&mut self, batch: &mut ExactBatch) -> Result<(), DataplaneError> {
        if batch.is_empty() {
            return Ok(());
        }
        let (mut up4, mut vals4, mut del4) = (Vec::new(), Vec::new(), Vec::new());
        let (mut up6, mut vals6, mut del6) = (Vec::new(), Vec::new(), Vec::new());
        for (ip, v) in batch.drain() {
            match (ip, v) {
                (IpAddr::V4(a), Some(v)) => {
                    up4.push(a.octets());
                    vals4.push(v);
                }
                (IpAddr::V4(a), None) => del4.push(a.octets()),
                (IpAddr::V6(a), Some(v)) => {
                    up6.push(a.octets());
                    vals6.push(v);
                }
                (IpAddr::V6(a), None) => del6.push(a.octets()),
            }
        }
        // Deletes first, so the hash maps peak at the larger of the old and
        // the new size. Each packet reads one exact key, so the order among
        // the keys of one batch never mixes two verdicts for it.
        // A batch delete stops at the first missing key; one by one, a
        // missing key (deleted behind our back) is simply already done.
        let v4_done = batch::delete(exact_fd(&self.ebpf, MAP_EXACT_V4)?, &del4).is_ok();
        let v6_done = batch::delete(exact_fd(&self.ebpf, MAP_EXACT_V6)?, &del6).is_ok();
        let retry4 = (!v4_done)
            .then_some(del4)
            .into_iter()
            .flatten()
            .map(IpAddr::from);
        let retry6 = (!v6_done)
            .then_some(del6)
            .into_iter()
            .flatten()
            .map(IpAddr::from);
        let retry: Vec<IpAddr> = retry4.chain(retry6).collect();
        for ip in retry {
            self.write_exact(ip, None)?;
        }
        self.update_exact((&up4, &vals4), (&up6, &vals6))
    }

    /// Writes exact values in batches, IPv4's then IPv6's.
    pub(super) fn update_exact(
        &self,
        (keys4, vals4): (&[[u8; 4]], &[ExactValue]),
        (keys6, vals6): (&[[u8; 16]], &[ExactValue]),
    ) -> Result<(), DataplaneError> {
        let err = |name: &'static str| {
            move |source| DataplaneError::Batch {
                op: "update",
                name,
                source,
            }
        };
        batch::update(exact_fd(&self.ebpf, MAP_EXACT_V4)?, keys4, vals4)
            .map_err(err(MAP_EXACT_V4))?;
        batch::update(exact_fd(&self.ebpf, MAP_EXACT_V6)?, keys6, vals6).map_err(err(MAP_EXACT_V6))
    }

    /// Sets one entry's kernel state, returning what it was. An exact
    /// address's new value goes into `batch` when given, else straight in.
    fn set(
        &mut self,
        t: Target,
        l: List,
        new: Option<Installed>,
        batch: Option<&mut ExactBatch>,
    ) -> Result<Option<Installed>, DataplaneError> {
        let prev = self.installed.get(&(t, l)).copied();
        if prev == new {
            return Ok(prev);
        }
        if t.is_exact() {
            let value = self.exact_value(t, l, new);
            match batch {
                Some(b) => {
                    b.insert(t.addr(), value);
                }
                None => self.write_exact(t.addr(), value)?,
            }
        } else {
            match (prev, new) {
                (None, Some(n)) => self.prefixes.insert(&t, l, n.id, n.word)?,
                (Some(_), Some(n)) => self.prefixes.update(&t, l, n.id, n.word)?,
                (Some(_), None) => self.prefixes.remove(&t, l)?,
                (None, None) => {}
            }
        }
        self.record_installed(t, l, new);
        Ok(prev)
    }

    /// The kernel's value for exact address `t`: both lists' installed
    /// state, with `l`'s taken to be `new`; none when neither list holds it.
    pub(super) fn exact_value(
        &self,
        t: Target,
        l: List,
        new: Option<Installed>,
    ) -> Option<ExactValue> {
        let mut value = ExactValue::default();
        let mut any = false;
        for list in [List::Deny, List::Allow] {
            let i = if list == l {
                new
            } else {
                self.installed.get(&(t, list)).copied()
            };
            if let Some(i) = i {
                value.set(list == List::Allow, i.word, i.id);
                any = true;
            }
        }
        any.then_some(value)
    }

    pub(super) fn write_exact(
        &mut self,
        ip: IpAddr,
        value: Option<ExactValue>,
    ) -> Result<(), DataplaneError> {
        fn write<K: aya::Pod>(
            map: &mut Map,
            name: &'static str,
            key: K,
            value: Option<ExactValue>,
        ) -> Result<(), DataplaneError> {
            let err = |source| DataplaneError::Map { name, source };
            let mut h: BpfHashMap<&mut MapData, K, ExactValue> =
                BpfHashMap::try_from(map).map_err(err)?;
            match value {
                Some(v) => h.insert(key, v, 0).map_err(err),
                // Already gone is what a delete wants: an undo may delete
                // what a failed batch never wrote. aya 0.14's `remove`
                // gives ENOENT as a syscall error, not KeyNotFound.
                None => match h.remove(&key) {
                    Err(MapError::KeyNotFound) => Ok(()),
                    Err(MapError::SyscallError(e))
                        if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
                    {
                        Ok(())
                    }
                    r => r.map_err(err),
                },
            }
        }
        let name = if ip.is_ipv4() {
            MAP_EXACT_V4
        } else {
            MAP_EXACT_V6
        };
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(DataplaneError::MissingMap { name })?;
        match ip {
            IpAddr::V4(a) => write(map, name, a.octets(), value),
            IpAddr::V6(a) => write(map, name, a.octets(), value),
        }
    }
}

/// The fd of exact-address map `name`.
fn exact_fd<'a>(ebpf: &'a Ebpf, name: &'static str) -> Result<BorrowedFd<'a>, DataplaneError> {
    match ebpf.map(name) {
        Some(Map::HashMap(d)) => Ok(d.fd().as_fd()),
        _ => Err(DataplaneError::MissingMap { name }),
    }
}

/// How many changes of a deploy touch each exact address, on either list.
pub(super) fn changes_per_address(
    upserts: &[Rule],
    removals: &[(Target, List)],
) -> PerEntry<IpAddr, u32> {
    let mut per_addr = PerEntry::with_capacity_and_hasher(upserts.len(), Default::default());
    let keys = upserts
        .iter()
        .map(|r| r.target)
        .chain(removals.iter().map(|(t, _)| *t));
    for t in keys.filter(Target::is_exact) {
        *per_addr.entry(t.addr()).or_default() += 1;
    }
    per_addr
}

/// Exact removals that no other change of the batch can affect: no other
/// change to the same address (on either list), and none to a prefix that
/// covers it. Removing one of these at any point moves its packets straight
/// from the old verdict to the new one.
fn lone_exact_removals(upserts: &[Rule], removals: &[(Target, List)]) -> HashSet<(Target, List)> {
    if !removals.iter().any(|(t, _)| t.is_exact()) {
        return HashSet::new();
    }
    let per_addr = changes_per_address(upserts, removals);
    let keys = upserts
        .iter()
        .map(|r| r.target)
        .chain(removals.iter().map(|(t, _)| *t));
    let prefixes: HashSet<Target> = keys.filter(|t| !t.is_exact()).collect();
    let lengths: HashSet<(bool, u8)> = prefixes
        .iter()
        .map(|t| (t.is_ipv4(), t.prefix_len()))
        .collect();
    removals
        .iter()
        .filter(|(t, _)| t.is_exact() && per_addr.get(&t.addr()) == Some(&1))
        .filter(|(t, _)| {
            !lengths.iter().any(|&(v4, len)| {
                v4 == t.is_ipv4()
                    && prefixes.contains(&Target::from(
                        ipnet::IpNet::new(t.addr(), len)
                            .expect("length within the family")
                            .trunc(),
                    ))
            })
        })
        .copied()
        .collect()
}
