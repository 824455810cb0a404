//! The prefix structure the XDP program walks, kept by user space.
//!
//! Each family has a multibit trie of 256-slot nodes. The root is 256 rows:
//! the first address byte picks the row, the second the slot, so the root
//! answers /0–/16 in one read. Every further level consumes one byte. A
//! slot holds the most specific prefix rule covering its whole range (leaf
//! pushing), or points at a child node when a longer prefix lies inside.
//! Below the root, nodes are stored as runs of equal slots
//! (`super::nodes`), which leaf pushing makes few.
//!
//! Rules form the containment tree of all prefixes: each knows the nearest
//! deny and the nearest allow prefix strictly covering it, which is how the
//! kernel finds the allow entry that overrides a deny, and falls back when a
//! prefix has expired. At equal length an allow rule counts as more specific
//! than the deny rule of the same prefix, so the order is total.
//!
//! Writes keep every packet's verdict either the old or the new one: a
//! changed node is published whole before the slot that points at it, a new
//! rule is complete before any slot names it, and freed nodes and rules are
//! reused only after quarantine (`super::alloc`), when no running program
//! can still hold them.

use std::{
    collections::{BTreeMap, HashMap, hash_map::Entry},
    sync::atomic::Ordering::*,
};

use denylist_common::{INLINE_RUNS, NODE_SLOTS, ROOT_NODES, RULE_NONE, SLOT_CHILD};

use super::{
    alloc::{Blocks, Pool},
    nodes::{Full, Nodes, TrieMaps},
    region::{Region, RuleCell},
};
use crate::model::{List, Target};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrieError {
    #[error("no room for another prefix: all {rules} prefix rules are in use; raise --capacity")]
    RulesFull { rules: u32 },
    #[error("the {family} prefix trie is full ({nodes} nodes in use); raise --capacity")]
    NodesFull { family: &'static str, nodes: u32 },
    #[error("the {family} prefix trie's runs are full ({slots} slots in use); raise --capacity")]
    SlotsFull { family: &'static str, slots: u64 },
    #[error("{target} is not in the {list:?} prefix table")]
    NotFound { target: Target, list: List },
}

#[derive(Clone, Copy, Debug)]
struct Meta {
    len: u8,
    list: List,
}

impl Meta {
    fn spec(self) -> u16 {
        u16::from(self.len) * 2 + u16::from(self.list == List::Allow)
    }
}

type Key = (u128, u8, List);

/// One family's trie nodes and the prefixes stored in them.
struct Family {
    name: &'static str,
    width: u8,
    nodes: Nodes,
    keys: BTreeMap<Key, u32>,
    /// How many prefixes of each length exist, to probe only those.
    lengths: [u32; 129],
}

fn mask(bits: u128, len: u8, width: u8) -> u128 {
    let host = u32::from(width - len);
    if host >= 128 {
        0
    } else {
        (bits >> host) << host
    }
}

fn depth(len: u8) -> u32 {
    if len <= 16 {
        0
    } else {
        u32::from(len - 16).div_ceil(8)
    }
}

/// Nodes a change needs beyond those it creates: room for one copy at a
/// time, always. An insert that copies nothing keeps it spare for the
/// removals after it, which copy a node at a time and have no room check
/// (they must work when the arrays are full).
const COPY_ROOM: u64 = 1;

/// The most run slots a node of `runs` runs may take after one change:
/// each rule's span adds at most two run boundaries.
fn grown(runs: u32) -> u64 {
    u64::from(Blocks::size((2 * runs + 2).min(NODE_SLOTS as u32)))
}

impl Family {
    fn new(name: &'static str, width: u8, maps: TrieMaps) -> Self {
        Self {
            name,
            width,
            nodes: Nodes::new(maps, width == 128),
            keys: BTreeMap::new(),
            lengths: [0; 129],
        }
    }

    fn byte(&self, bits: u128, i: u32) -> usize {
        ((bits >> (u32::from(self.width) - 8 * (i + 1))) & 0xff) as usize
    }

    fn top16(&self, bits: u128) -> usize {
        (bits >> (self.width - 16)) as usize
    }

    /// The room adding a prefix of `len` at `bits` needs, in nodes and run
    /// slots: the path's missing nodes, and one copy at a time of the
    /// largest node it may change, on its path or below its span.
    fn cost(&self, bits: u128, len: u8) -> (u64, u64) {
        let mut copy = 0;
        let mut idx = self.top16(bits);
        let d = depth(len);
        for k in 1..=d {
            let s = self.nodes.get(idx);
            if s & SLOT_CHILD == 0 {
                // A new node holds at most 3 runs: inline, no run slots.
                let missing = u64::from(d - k + 1);
                return (missing + COPY_ROOM, copy);
            }
            let node = s & !SLOT_CHILD;
            copy = copy.max(grown(self.nodes.runs(node)));
            idx = node as usize * NODE_SLOTS + self.byte(bits, k + 1);
        }
        let (_, span) = self.span(bits, len, idx);
        let mut below: Vec<u32> = span
            .map(|i| self.nodes.get(i))
            .filter(|s| s & SLOT_CHILD != 0)
            .map(|s| s & !SLOT_CHILD)
            .collect();
        while let Some(node) = below.pop() {
            copy = copy.max(grown(self.nodes.runs(node)));
            below.extend(
                self.nodes
                    .run_values(node)
                    .filter(|s| s & SLOT_CHILD != 0)
                    .map(|s| s & !SLOT_CHILD),
            );
        }
        (COPY_ROOM, copy)
    }

    /// The node and global slots a prefix of `len` covers, given the global
    /// slot `idx` its path ends at.
    fn span(&self, bits: u128, len: u8, idx: usize) -> (u32, std::ops::Range<usize>) {
        let d = depth(len);
        if d == 0 {
            let span = 1usize << (16 - len);
            let first = self.top16(bits) & !(span - 1);
            return (0, first..first + span);
        }
        let node = idx / NODE_SLOTS;
        let span = 1usize << (16 + 8 * d - u32::from(len));
        let first = node * NODE_SLOTS + (self.byte(bits, d + 1) & !(span - 1));
        (node as u32, first..first + span)
    }

    fn check_room(&self, bits: u128, len: u8) -> Result<(), TrieError> {
        let (nodes, slots) = self.cost(bits, len);
        self.nodes.has_room(nodes, slots).map_err(|f| self.full(f))
    }

    fn full(&self, f: Full) -> TrieError {
        match f {
            Full::Nodes => TrieError::NodesFull {
                family: self.name,
                nodes: self.nodes.in_use(),
            },
            Full::Slots => TrieError::SlotsFull {
                family: self.name,
                slots: self.nodes.slots_in_use(),
            },
        }
    }

    /// The global slot indices a prefix occupies, creating the path to its
    /// level when `create` is set.
    fn slots(
        &mut self,
        bits: u128,
        len: u8,
        create: bool,
    ) -> Option<(u32, std::ops::Range<usize>)> {
        let mut idx = self.top16(bits);
        for k in 1..=depth(len) {
            let s = self.nodes.get(idx);
            let node = if s & SLOT_CHILD != 0 {
                s & !SLOT_CHILD
            } else if create {
                let c = self.nodes.create(idx, s)?;
                self.nodes.set(idx, c | SLOT_CHILD);
                c
            } else {
                return None;
            };
            idx = node as usize * NODE_SLOTS + self.byte(bits, k + 1);
        }
        Some(self.span(bits, len, idx))
    }

    fn push(&mut self, idx: usize, r: u32, spec: u16, meta: &HashMap<u32, Meta>) {
        let cur = self.nodes.get(idx);
        if cur & SLOT_CHILD != 0 {
            let base = (cur & !SLOT_CHILD) as usize * NODE_SLOTS;
            for i in base..base + NODE_SLOTS {
                self.push(i, r, spec, meta);
            }
        } else if cur == RULE_NONE || meta[&cur].spec() < spec {
            self.nodes.set(idx, r);
        }
    }

    fn replace(&mut self, idx: usize, r: u32, with: u32) {
        let cur = self.nodes.get(idx);
        if cur & SLOT_CHILD != 0 {
            let child = cur & !SLOT_CHILD;
            let base = child as usize * NODE_SLOTS;
            for i in base..base + NODE_SLOTS {
                self.replace(i, r, with);
            }
            self.collapse(child);
        } else if cur == r {
            self.nodes.set(idx, with);
        }
    }

    /// Folds a node whose slots all name the same rule into its parent slot.
    fn collapse(&mut self, node: u32) -> bool {
        if node < ROOT_NODES {
            return false;
        }
        let base = node as usize * NODE_SLOTS;
        let first = self.nodes.get(base);
        if first & SLOT_CHILD != 0 || (base..base + NODE_SLOTS).any(|i| self.nodes.get(i) != first)
        {
            return false;
        }
        let up = self.nodes.parent(node);
        self.nodes.set(up, first);
        self.nodes.free(node);
        true
    }

    fn publish(&mut self) -> Result<(), TrieError> {
        self.nodes.publish().map_err(|f| self.full(f))
    }
    /// Rules strictly inside the prefix (bits, len, list), longer first.
    fn inside(&self, bits: u128, len: u8, list: List) -> Vec<u32> {
        let host = u32::from(self.width - len);
        let last = if host >= 128 {
            u128::MAX
        } else {
            bits | ((1u128 << host) - 1)
        };
        let spec = Meta { len, list }.spec();
        self.keys
            .range((bits, 0, List::Deny)..=(last, u8::MAX, List::Allow))
            .filter(|((_, l, li), _)| Meta { len: *l, list: *li }.spec() > spec)
            .map(|(_, &r)| r)
            .collect()
    }

    /// The nearest rule of `kind` strictly covering (bits, len, list).
    fn up(&self, bits: u128, len: u8, list: List, kind: List) -> u32 {
        if kind == List::Deny
            && list == List::Allow
            && let Some(&r) = self.keys.get(&(bits, len, List::Deny))
        {
            return r;
        }
        (0..len)
            .rev()
            .filter(|&l| self.lengths[usize::from(l)] > 0)
            .find_map(|l| {
                self.keys
                    .get(&(mask(bits, l, self.width), l, kind))
                    .copied()
            })
            .unwrap_or(RULE_NONE)
    }
}

/// What holding `entries` (one item per entry, any list) takes of the
/// prefix arrays (`layout::needs` adds the rest): prefix rules, and per
/// family the trie nodes below the root and the most run slots they can
/// hold. A node stands for one distinct path below the root, the first 2,
/// 3, … address bytes of the prefixes longer than that path, which is
/// exactly the set of nodes the trie builds. A node's runs start at slot 0
/// and at both ends of each prefix that ends in it and of each child, so it
/// has at most 1 + 2 × those; a node with at most `INLINE_RUNS` keeps them
/// in itself, the others take a block of their size class in `SLOTS`.
/// Exact entries need neither.
pub fn needs(entries: impl IntoIterator<Item = Target>) -> crate::dataplane::layout::Needs {
    // Per node (family, depth in bytes, path): prefixes ending in it and
    // children.
    let mut nodes: HashMap<(bool, usize, [u8; 16]), u32> = HashMap::new();
    let mut rules = 0u32;
    for t in entries {
        if t.is_exact() {
            continue;
        }
        rules += 1;
        let (v4, octets) = match t.addr() {
            std::net::IpAddr::V4(a) => {
                let mut o = [0u8; 16];
                o[..4].copy_from_slice(&a.octets());
                (true, o)
            }
            std::net::IpAddr::V6(a) => (false, a.octets()),
        };
        let len = usize::from(t.prefix_len());
        // The root covers 2 bytes; a prefix longer than 8n bits needs the
        // node its first n bytes name, and ends in the deepest one.
        let mut n = 2;
        while len > 8 * n {
            let mut path = [0u8; 16];
            path[..n].copy_from_slice(&octets[..n]);
            let node = nodes.entry((v4, n, path));
            let new = matches!(node, Entry::Vacant(_));
            *node.or_default() += u32::from(len <= 8 * (n + 1));
            if new && n > 2 {
                let mut up = path;
                up[n - 1] = 0;
                *nodes.entry((v4, n - 1, up)).or_default() += 1;
            }
            n += 1;
        }
    }
    let (mut count, mut slots) = ([0u32; 2], [0u64; 2]);
    for (&(v4, _, _), &c) in &nodes {
        let runs = (1 + 2 * c).min(NODE_SLOTS as u32);
        count[usize::from(v4)] += 1;
        if runs as usize > INLINE_RUNS {
            slots[usize::from(v4)] += u64::from(Blocks::size(runs));
        }
    }
    crate::dataplane::layout::Needs {
        rules,
        nodes_v4: count[1],
        nodes_v6: count[0],
        slots_v4: slots[1],
        slots_v6: slots[0],
        ..Default::default()
    }
}

/// Both families' tries and the rules they share.
pub struct Prefixes {
    v4: Family,
    v6: Family,
    rules: Region<RuleCell>,
    rule_pool: Pool,
    meta: HashMap<u32, Meta>,
}

impl Prefixes {
    /// Rule 0 of `rules` is never used.
    pub fn new(v4: TrieMaps, v6: TrieMaps, rules: Region<RuleCell>) -> Self {
        let limit = rules.len() as u32;
        Self {
            v4: Family::new("IPv4", 32, v4),
            v6: Family::new("IPv6", 128, v6),
            rules,
            rule_pool: Pool::new(1, limit),
            meta: HashMap::new(),
        }
    }

    /// Prefix rules in use.
    pub fn len(&self) -> usize {
        self.meta.len()
    }

    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    /// Trie nodes in use below the root, per family (IPv4, IPv6).
    pub fn nodes_in_use(&self) -> (u32, u32) {
        (self.v4.nodes.in_use(), self.v6.nodes.in_use())
    }

    /// Run slots in use, per family (IPv4, IPv6).
    pub fn slots_in_use(&self) -> (u64, u64) {
        (self.v4.nodes.slots_in_use(), self.v6.nodes.slots_in_use())
    }

    /// Adds a prefix (shorter than /32 or /128) with its packed word.
    pub fn insert(&mut self, t: &Target, list: List, id: u32, word: u64) -> Result<(), TrieError> {
        let (bits, len) = (t.bits(), t.prefix_len());
        let fam = if t.is_ipv4() {
            &mut self.v4
        } else {
            &mut self.v6
        };
        if self.rule_pool.available() == 0 {
            return Err(TrieError::RulesFull {
                rules: self.rule_pool.limit() - 1,
            });
        }
        fam.check_room(bits, len)?;
        let r = self.rule_pool.alloc().expect("availability checked");
        let m = Meta { len, list };
        self.meta.insert(r, m);
        let cell = &self.rules[r as usize];
        cell.id.store(id, Relaxed);
        cell.up_deny
            .store(fam.up(bits, len, list, List::Deny), Relaxed);
        cell.up_allow
            .store(fam.up(bits, len, list, List::Allow), Relaxed);
        cell.word.store(word, Release);
        for q in fam.inside(bits, len, list) {
            let qc = &self.rules[q as usize];
            let up = match list {
                List::Deny => &qc.up_deny,
                List::Allow => &qc.up_allow,
            };
            let cur = up.load(Relaxed);
            if cur == RULE_NONE || self.meta[&cur].spec() < m.spec() {
                up.store(r, Release);
            }
        }
        fam.keys.insert((bits, len, list), r);
        fam.lengths[usize::from(len)] += 1;
        let (_, slots) = fam
            .slots(bits, len, true)
            .expect("node availability checked");
        for idx in slots {
            fam.push(idx, r, m.spec(), &self.meta);
        }
        fam.publish()
    }

    /// Changes a prefix's id and word in place, each one atomic store.
    pub fn update(&mut self, t: &Target, list: List, id: u32, word: u64) -> Result<(), TrieError> {
        let fam = if t.is_ipv4() { &self.v4 } else { &self.v6 };
        let r = *fam
            .keys
            .get(&(t.bits(), t.prefix_len(), list))
            .ok_or(TrieError::NotFound { target: *t, list })?;
        let cell = &self.rules[r as usize];
        cell.id.store(id, Release);
        cell.word.store(word, Release);
        Ok(())
    }

    /// Does the kernel's rule for this prefix hold `id` and `word`, and does
    /// the trie slot at the prefix's first address lead to it or to a more
    /// specific rule inside it?
    pub fn matches(&self, t: &Target, list: List, id: u32, word: u64) -> bool {
        let fam = if t.is_ipv4() { &self.v4 } else { &self.v6 };
        let Some(&r) = fam.keys.get(&(t.bits(), t.prefix_len(), list)) else {
            return false;
        };
        let c = &self.rules[r as usize];
        if c.id.load(Relaxed) != id || c.word.load(Relaxed) != word {
            return false;
        }
        let s = fam.lookup(t.bits());
        let own = Meta {
            len: t.prefix_len(),
            list,
        }
        .spec();
        s != RULE_NONE && self.meta.get(&s).is_some_and(|m| m.spec() >= own)
    }

    pub fn remove(&mut self, t: &Target, list: List) -> Result<(), TrieError> {
        let (bits, len) = (t.bits(), t.prefix_len());
        let fam = if t.is_ipv4() {
            &mut self.v4
        } else {
            &mut self.v6
        };
        // No room check: a removal copies one node at a time and frees as
        // it goes, and must work when the arrays are full.
        let r = fam
            .keys
            .remove(&(bits, len, list))
            .ok_or(TrieError::NotFound { target: *t, list })?;
        fam.lengths[usize::from(len)] -= 1;
        let cell = &self.rules[r as usize];
        let (up_deny, up_allow) = (cell.up_deny.load(Relaxed), cell.up_allow.load(Relaxed));
        let spec = |x: u32| self.meta.get(&x).map_or(0, |m| m.spec() + 1);
        let fallback = if spec(up_deny) >= spec(up_allow) {
            up_deny
        } else {
            up_allow
        };
        let (node, slots) = fam
            .slots(bits, len, false)
            .expect("a stored prefix has its path");
        for idx in slots {
            fam.replace(idx, r, fallback);
        }
        let mut node = node;
        while node >= ROOT_NODES {
            let up = fam.nodes.parent(node) / NODE_SLOTS;
            if !fam.collapse(node) {
                break;
            }
            node = up as u32;
        }
        let own_up = match list {
            List::Deny => up_deny,
            List::Allow => up_allow,
        };
        for q in fam.inside(bits, len, list) {
            let qc = &self.rules[q as usize];
            let up = match list {
                List::Deny => &qc.up_deny,
                List::Allow => &qc.up_allow,
            };
            if up.load(Relaxed) == r {
                up.store(own_up, Release);
            }
        }
        // Only once published does no slot name the rule; a change that
        // failed midway may leave one that does, so the rule stays taken.
        fam.publish()?;
        self.meta.remove(&r);
        self.rule_pool.release(r);
        Ok(())
    }
}

impl Family {
    /// The slot the kernel's walk for an address ends at: a rule, or none.
    fn lookup(&self, bits: u128) -> u32 {
        let mut s = self.nodes.published(self.top16(bits));
        let mut k = 2;
        while s & SLOT_CHILD != 0 && k < u32::from(self.width) / 8 {
            let node = s & !SLOT_CHILD;
            if !self.nodes.valid(node) {
                return RULE_NONE;
            }
            s = self
                .nodes
                .published(node as usize * NODE_SLOTS + self.byte(bits, k));
            k += 1;
        }
        if s & SLOT_CHILD != 0 { RULE_NONE } else { s }
    }
}

#[cfg(test)]
#[path = "trie_tests.rs"]
mod tests;
