//! Writing a deploy's new exact addresses into the maps ahead of the deploy,
//! not yet live, so that once it comes one store to the gate makes them all
//! live at once (docs/dataplane.md, "Written ahead").
//!
//! A follower in a fleet holds another node's deploy planned seconds before
//! its log entry comes, and the deploying node applies, then commits. What
//! the follower can write ahead without changing any packet's verdict is an
//! address that neither list holds: its word carries `FLAG_PENDING` in place
//! of `FLAG_PRESENT`, which the program reads as live only while the gate is
//! open. For a million-entry import that is the whole kernel write, which
//! then no longer waits for the entry.

use std::{
    net::IpAddr,
    sync::atomic::{AtomicU64, Ordering},
};

use denylist_common::{ExactValue, FLAG_PENDING, FLAG_PRESENT};

use super::{
    Dataplane, DataplaneError, ExactBatch, Installed, PerEntry, alloc, region::Region, word_of,
};
use crate::model::{List, Rule, Target};

/// The gate and what it governs: the addresses written ahead, and those
/// whose words still carry the pending flag under an open gate.
pub(super) struct Gate {
    word: Region<AtomicU64>,
    open: bool,
    /// Written ahead and not live: each address's one list and value.
    pending: PerEntry<IpAddr, (List, Installed)>,
    /// The deploy they were written ahead of: when it comes as it was, all
    /// of them are its, with no need to check them one by one.
    ahead_of: Option<AheadOf>,
    /// Whether every pending entry is in the kernel as recorded: false
    /// after a write or delete of them failed partway, when the next apply
    /// deletes them all rather than take any.
    whole: bool,
    /// Live through the open gate until rewritten as ordinary words.
    flagged: Vec<IpAddr>,
}

/// The changes a set of entries was written ahead of.
struct AheadOf {
    upserts: Vec<Rule>,
    removals: Vec<(Target, List)>,
}

impl Gate {
    pub(super) fn new(word: Region<AtomicU64>) -> Self {
        Self {
            word,
            open: false,
            pending: PerEntry::default(),
            ahead_of: None,
            whole: true,
            flagged: Vec::new(),
        }
    }

    /// The kernel's value as the program reads it now: a pending word is
    /// live while the gate is open.
    pub(super) fn as_read(&self, mut v: ExactValue) -> ExactValue {
        if self.open {
            for w in [&mut v.deny, &mut v.allow] {
                if *w & FLAG_PENDING != 0 {
                    *w = (*w & !FLAG_PENDING) | FLAG_PRESENT;
                }
            }
        }
        v
    }

    /// Whether `ip` is written ahead and not live: no drift, whatever the
    /// kernel holds for it.
    pub(super) fn is_pending(&self, ip: &IpAddr) -> bool {
        self.pending.contains_key(ip)
    }
}

impl Dataplane {
    /// Writes ahead, not live, the new exact addresses of `upserts` that no
    /// list holds and no other change of the deploy touches; returns how
    /// many. The next [`Dataplane::apply`] takes those it then puts in as
    /// written and deletes the rest. Nothing is written when the maps could
    /// not hold them beside what is installed.
    pub fn stage(
        &mut self,
        upserts: &[Rule],
        removals: &[(Target, List)],
    ) -> Result<usize, DataplaneError> {
        self.unstage()?;
        self.close_gate()?;
        let per_addr = super::apply::changes_per_address(upserts, removals);
        let fresh = |r: &&Rule| {
            r.target.is_exact()
                && per_addr.get(&r.target.addr()) == Some(&1)
                && !self.installed.contains_key(&(r.target, List::Deny))
                && !self.installed.contains_key(&(r.target, List::Allow))
        };
        let ahead: Vec<&Rule> = upserts.iter().filter(fresh).collect();
        let v6 = ahead.iter().filter(|r| !r.target.is_ipv4()).count();
        let held = |v4: bool, len: u8| self.lengths.get(&(v4, len)).copied().unwrap_or(0);
        if self.installed.len() + ahead.len() > self.layout.capacity as usize
            || held(false, 128) + v6 > self.layout.exact_v6 as usize
        {
            return Ok(0);
        }
        let (mut keys4, mut vals4, mut keys6, mut vals6) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut pending = PerEntry::with_capacity_and_hasher(ahead.len(), Default::default());
        for r in ahead {
            let installed = Installed {
                id: r.id,
                word: word_of(r),
            };
            let mut value = ExactValue::default();
            let word = (installed.word & !FLAG_PRESENT) | FLAG_PENDING;
            value.set(r.list == List::Allow, word, r.id);
            match r.target.addr() {
                IpAddr::V4(a) => {
                    keys4.push(a.octets());
                    vals4.push(value);
                }
                IpAddr::V6(a) => {
                    keys6.push(a.octets());
                    vals6.push(value);
                }
            }
            pending.insert(r.target.addr(), (r.list, installed));
        }
        let n = pending.len();
        self.gate.pending = pending;
        self.gate.ahead_of = Some(AheadOf {
            upserts: upserts.to_vec(),
            removals: removals.to_vec(),
        });
        if let Err(e) = self.update_exact((&keys4, &vals4), (&keys6, &vals6)) {
            // Not live, so whatever part went in changed no verdict.
            self.gate.whole = false;
            self.unstage()?;
            return Err(e);
        }
        Ok(n)
    }

    /// Deletes what was written ahead and is still pending: none of it was
    /// live. On failure it stays pending, to be deleted by the next try,
    /// never made live.
    pub fn unstage(&mut self) -> Result<(), DataplaneError> {
        if self.gate.pending.is_empty() {
            return Ok(());
        }
        let mut batch: ExactBatch = self.gate.pending.keys().map(|ip| (*ip, None)).collect();
        self.gate.ahead_of = None;
        if let Err(e) = self.flush(&mut batch) {
            self.gate.whole = false;
            return Err(e);
        }
        self.gate.pending.clear();
        self.gate.whole = true;
        Ok(())
    }

    /// The entries written ahead that `upserts` puts in as they were
    /// written, with no other change to their address; the others are
    /// deleted. An apply takes them through [`Dataplane::open_gate`].
    pub(super) fn take_pending(
        &mut self,
        upserts: &[Rule],
        removals: &[(Target, List)],
    ) -> Result<(), DataplaneError> {
        let ahead_of = self.gate.ahead_of.take();
        if !self.gate.whole {
            return self.unstage();
        }
        if self.gate.pending.is_empty()
            || ahead_of.is_some_and(|a| a.upserts == upserts && a.removals == removals)
        {
            return Ok(());
        }
        let mut seen: PerEntry<IpAddr, (u32, bool)> = PerEntry::default();
        for r in upserts.iter().filter(|r| r.target.is_exact()) {
            let ip = r.target.addr();
            if let Some(&(list, installed)) = self.gate.pending.get(&ip) {
                let same = r.list == list
                    && installed
                        == (Installed {
                            id: r.id,
                            word: word_of(r),
                        });
                let e = seen.entry(ip).or_default();
                *e = (e.0 + 1, same);
            }
        }
        for (t, _) in removals.iter().filter(|(t, _)| t.is_exact()) {
            if let Some(e) = seen.get_mut(&t.addr()) {
                e.0 += 1;
            }
        }
        let stale: Vec<IpAddr> = self
            .gate
            .pending
            .keys()
            .filter(|ip| seen.get(ip) != Some(&(1, true)))
            .copied()
            .collect();
        let mut batch: ExactBatch = stale.iter().map(|ip| (*ip, None)).collect();
        if let Err(e) = self.flush(&mut batch) {
            self.gate.whole = false;
            return Err(e);
        }
        for ip in stale {
            self.gate.pending.remove(&ip);
        }
        Ok(())
    }

    /// Whether `r` is in the maps already, written ahead, for the apply
    /// under way.
    pub(super) fn is_taken(&self, r: &Rule) -> bool {
        r.target.is_exact()
            && self
                .gate
                .pending
                .get(&r.target.addr())
                .is_some_and(|(l, _)| *l == r.list)
    }

    /// Makes every pending entry live with one store, after the batched
    /// writes ordered before them; returns their keys, which the apply
    /// undoes by taking out.
    pub(super) fn open_gate(
        &mut self,
        batch: &mut ExactBatch,
    ) -> Result<Vec<(Target, List)>, DataplaneError> {
        self.flush(batch)?;
        if self.gate.pending.is_empty() {
            return Ok(Vec::new());
        }
        self.gate.word[0].store(1, Ordering::SeqCst);
        self.gate.open = true;
        let pending = std::mem::take(&mut self.gate.pending);
        let mut keys = Vec::with_capacity(pending.len());
        self.installed.reserve(pending.len());
        self.gate.flagged.reserve(pending.len());
        let mut v4 = 0;
        for (ip, (list, installed)) in &pending {
            let t = Target::host(*ip);
            // Written ahead only where neither list held the address, and
            // nothing since could put it on one: each goes in fresh.
            self.installed.insert((t, *list), *installed);
            v4 += usize::from(ip.is_ipv4());
            self.gate.flagged.push(*ip);
            keys.push((t, *list));
        }
        for (family, n) in [((true, 32), v4), ((false, 128), pending.len() - v4)] {
            *self.lengths.entry(family).or_default() += n;
        }
        Ok(keys)
    }

    /// Closes the gate: rewrites every word still pending as an ordinary
    /// one, waits until no packet can still hold a word read before
    /// ([`alloc::synchronize`]), then stores 0.
    fn close_gate(&mut self) -> Result<(), DataplaneError> {
        if !self.gate.open {
            return Ok(());
        }
        let mut batch =
            ExactBatch::with_capacity_and_hasher(self.gate.flagged.len(), Default::default());
        for &ip in &self.gate.flagged {
            let t = Target::host(ip);
            let deny = self.installed.get(&(t, List::Deny)).copied();
            // None deletes: an entry undone whose delete failed must not
            // outlive the gate, which the next deploy opens again.
            batch.insert(ip, self.exact_value(t, List::Deny, deny));
        }
        self.flush(&mut batch)?;
        self.gate.flagged.clear();
        alloc::synchronize();
        self.gate.word[0].store(0, Ordering::SeqCst);
        self.gate.open = false;
        Ok(())
    }
}
