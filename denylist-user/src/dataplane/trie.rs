//! The prefix structure the XDP program walks, kept by user space.
//!
//! Each family has a multibit trie of 256-slot nodes. Nodes 0–255 are the
//! root: the first address byte picks the node, the second the slot, so the
//! root answers /0–/16 in one read. Every further level consumes one byte.
//! A slot holds the most specific prefix rule covering its whole range
//! (leaf pushing), or points at a child node when a longer prefix lies
//! inside. So a lookup is one read per level, at most 3 for IPv4.
//!
//! Rules form the containment tree of all prefixes: each knows the nearest
//! deny and the nearest allow prefix strictly covering it, which is how the
//! kernel finds the allow entry that overrides a deny, and falls back when a
//! prefix has expired. At equal length an allow rule counts as more specific
//! than the deny rule of the same prefix, so the order is total.
//!
//! Writes keep every packet's verdict either the old or the new one: a new
//! child node is filled before the slot that points at it, a new rule is
//! complete before any slot names it, and freed nodes and rules are reused
//! only after [`GRACE`], when no running program can still hold them.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    ops::Range,
    sync::atomic::{AtomicU32, Ordering::*},
    thread,
    time::{Duration, Instant},
};

use denylist_common::{NODE_SLOTS, ROOT_NODES, RULE_NONE, SLOT_CHILD};

use super::region::{Region, RuleCell};
use crate::model::{List, Target};

/// How long a freed node or rule stays unused. An XDP program run lasts
/// microseconds; this leaves orders of magnitude to spare.
pub const GRACE: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrieError {
    #[error("no room for another prefix: all {rules} prefix rules are in use; raise --capacity")]
    RulesFull { rules: u32 },
    #[error("the {family} prefix trie is full ({nodes} nodes in use); raise --capacity")]
    NodesFull { family: &'static str, nodes: u32 },
    #[error("{target} is not in the {list:?} prefix table")]
    NotFound { target: Target, list: List },
}

/// Indices handed out once and returned after a grace period.
struct Pool {
    next: u32,
    limit: u32,
    free: Vec<u32>,
    quarantine: VecDeque<(Instant, u32)>,
}

impl Pool {
    fn new(first: u32, limit: u32) -> Self {
        Self {
            next: first,
            limit,
            free: Vec::new(),
            quarantine: VecDeque::new(),
        }
    }

    fn available(&self) -> u64 {
        u64::from(self.limit - self.next) + self.free.len() as u64 + self.quarantine.len() as u64
    }

    fn in_use(&self, first: u32) -> u32 {
        self.next - first - (self.free.len() + self.quarantine.len()) as u32
    }

    fn alloc(&mut self) -> Option<u32> {
        self.reclaim();
        if let Some(i) = self.free.pop() {
            return Some(i);
        }
        if self.next < self.limit {
            self.next += 1;
            return Some(self.next - 1);
        }
        // Only quarantined indices are left: wait out the oldest one.
        let &(freed, i) = self.quarantine.front()?;
        thread::sleep(GRACE.saturating_sub(freed.elapsed()));
        self.quarantine.pop_front();
        Some(i)
    }

    fn release(&mut self, i: u32) {
        self.quarantine.push_back((Instant::now(), i));
    }

    fn reclaim(&mut self) {
        while let Some(&(freed, i)) = self.quarantine.front() {
            if freed.elapsed() < GRACE {
                break;
            }
            self.quarantine.pop_front();
            self.free.push(i);
        }
    }
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
    nodes: Region<AtomicU32>,
    pool: Pool,
    /// The global slot index that points at each non-root node.
    parent: HashMap<u32, usize>,
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

impl Family {
    fn new(name: &'static str, width: u8, nodes: Region<AtomicU32>) -> Self {
        let limit = (nodes.len() / NODE_SLOTS) as u32;
        Self {
            name,
            width,
            nodes,
            pool: Pool::new(ROOT_NODES, limit),
            parent: HashMap::new(),
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

    /// Nodes that inserting a prefix of `len` at `bits` would create.
    fn nodes_needed(&self, bits: u128, len: u8) -> u64 {
        let mut idx = self.top16(bits);
        for k in 1..=depth(len) {
            let s = self.nodes[idx].load(Acquire);
            if s & SLOT_CHILD == 0 {
                return u64::from(depth(len) - k + 1);
            }
            idx = (s & !SLOT_CHILD) as usize * NODE_SLOTS + self.byte(bits, k + 1);
        }
        0
    }

    /// The global slot indices a prefix occupies, creating the path to its
    /// level when `create` is set.
    fn slots(&mut self, bits: u128, len: u8, create: bool) -> Option<(u32, Range<usize>)> {
        let d = depth(len);
        if d == 0 {
            let span = 1usize << (16 - len);
            let first = self.top16(bits) & !(span - 1);
            return Some((0, first..first + span));
        }
        let mut idx = self.top16(bits);
        let mut node = 0;
        for k in 1..=d {
            let s = self.nodes[idx].load(Acquire);
            node = if s & SLOT_CHILD != 0 {
                s & !SLOT_CHILD
            } else if create {
                let c = self.pool.alloc()?;
                let base = c as usize * NODE_SLOTS;
                for slot in &self.nodes[base..base + NODE_SLOTS] {
                    slot.store(s, Relaxed);
                }
                self.nodes[idx].store(c | SLOT_CHILD, Release);
                self.parent.insert(c, idx);
                c
            } else {
                return None;
            };
            idx = node as usize * NODE_SLOTS + self.byte(bits, k + 1);
        }
        let span = 1usize << (16 + 8 * d - u32::from(len));
        let first = node as usize * NODE_SLOTS + (self.byte(bits, d + 1) & !(span - 1));
        Some((node, first..first + span))
    }

    fn push(&self, idx: usize, r: u32, spec: u16, meta: &HashMap<u32, Meta>) {
        let cur = self.nodes[idx].load(Relaxed);
        if cur & SLOT_CHILD != 0 {
            let base = (cur & !SLOT_CHILD) as usize * NODE_SLOTS;
            for i in base..base + NODE_SLOTS {
                self.push(i, r, spec, meta);
            }
        } else if cur == RULE_NONE || meta[&cur].spec() < spec {
            self.nodes[idx].store(r, Release);
        }
    }

    fn replace(&mut self, idx: usize, r: u32, with: u32) {
        let cur = self.nodes[idx].load(Relaxed);
        if cur & SLOT_CHILD != 0 {
            let child = cur & !SLOT_CHILD;
            let base = child as usize * NODE_SLOTS;
            for i in base..base + NODE_SLOTS {
                self.replace(i, r, with);
            }
            self.collapse(child);
        } else if cur == r {
            self.nodes[idx].store(with, Release);
        }
    }

    /// Folds a node whose slots all name the same rule into its parent slot.
    fn collapse(&mut self, node: u32) -> bool {
        if node < ROOT_NODES {
            return false;
        }
        let base = node as usize * NODE_SLOTS;
        let first = self.nodes[base].load(Relaxed);
        if first & SLOT_CHILD != 0
            || self.nodes[base..base + NODE_SLOTS]
                .iter()
                .any(|s| s.load(Relaxed) != first)
        {
            return false;
        }
        let up = self
            .parent
            .remove(&node)
            .expect("every non-root node has a parent");
        self.nodes[up].store(first, Release);
        self.pool.release(node);
        true
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

/// What holding `entries` (one item per entry, any list) takes: prefix
/// rules, and trie nodes beyond the root per family. A node stands for one
/// distinct path below the root, the first 2, 3, … address bytes of the
/// prefixes longer than that path, which is exactly the set of nodes the
/// trie builds. Exact entries need neither.
pub fn needs(entries: impl IntoIterator<Item = Target>) -> crate::dataplane::layout::Needs {
    let mut rules = 0u32;
    let mut paths: std::collections::HashSet<(bool, usize, [u8; 16])> =
        std::collections::HashSet::new();
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
        // The root covers 2 bytes; a prefix longer than 8n bits needs the
        // node its first n bytes name.
        let mut n = 2;
        while usize::from(t.prefix_len()) > 8 * n {
            let mut path = [0u8; 16];
            path[..n].copy_from_slice(&octets[..n]);
            paths.insert((v4, n, path));
            n += 1;
        }
    }
    let nodes_v4 = paths.iter().filter(|(v4, _, _)| *v4).count() as u32;
    crate::dataplane::layout::Needs {
        rules,
        nodes_v4,
        nodes_v6: paths.len() as u32 - nodes_v4,
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
    /// `nodes_v4`/`nodes_v6` hold whole nodes (a multiple of 256 slots, at
    /// least the root); rule 0 of `rules` is never used.
    pub fn new(
        nodes_v4: Region<AtomicU32>,
        nodes_v6: Region<AtomicU32>,
        rules: Region<RuleCell>,
    ) -> Self {
        let limit = rules.len() as u32;
        Self {
            v4: Family::new("IPv4", 32, nodes_v4),
            v6: Family::new("IPv6", 128, nodes_v6),
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

    /// Trie nodes in use beyond the root, per family (IPv4, IPv6).
    pub fn nodes_in_use(&self) -> (u32, u32) {
        (
            self.v4.pool.in_use(ROOT_NODES),
            self.v6.pool.in_use(ROOT_NODES),
        )
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
                rules: self.rule_pool.limit - 1,
            });
        }
        if fam.nodes_needed(bits, len) > fam.pool.available() {
            return Err(TrieError::NodesFull {
                family: fam.name,
                nodes: fam.pool.in_use(ROOT_NODES),
            });
        }
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
        Ok(())
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
        let bits = t.bits();
        let mut s = fam.nodes[fam.top16(bits)].load(Relaxed);
        let mut k = 2;
        while s & SLOT_CHILD != 0 && k < u32::from(fam.width) / 8 {
            let node = (s & !SLOT_CHILD) as usize;
            if node >= fam.nodes.len() / NODE_SLOTS {
                return false;
            }
            s = fam.nodes[node * NODE_SLOTS + fam.byte(bits, k)].load(Relaxed);
            k += 1;
        }
        let own = Meta {
            len: t.prefix_len(),
            list,
        }
        .spec();
        s != RULE_NONE && s & SLOT_CHILD == 0 && self.meta.get(&s).is_some_and(|m| m.spec() >= own)
    }

    pub fn remove(&mut self, t: &Target, list: List) -> Result<(), TrieError> {
        let (bits, len) = (t.bits(), t.prefix_len());
        let fam = if t.is_ipv4() {
            &mut self.v4
        } else {
            &mut self.v6
        };
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
            let up = fam.parent[&node] / NODE_SLOTS;
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
        self.meta.remove(&r);
        self.rule_pool.release(r);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use denylist_common::{FLAG_ALLOW, FLAG_MONITOR, FLAG_PRESENT, MAX_FALLBACK, word_expiry_ns};
    use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};

    use super::*;
    use crate::{
        dataplane::word_of,
        model::{self as verdict, Rule, Verdict, ip_bits, ip_from_bits},
    };

    const NODES: usize = ROOT_NODES as usize + 4096;

    fn prefixes(rules: usize) -> Prefixes {
        Prefixes::new(
            Region::heap(NODES * NODE_SLOTS),
            Region::heap(NODES * NODE_SLOTS),
            Region::heap(rules + 1),
        )
    }

    /// What the XDP program does with the trie, in user space.
    fn kernel_lookup(p: &Prefixes, ip: IpAddr, now: u64) -> (Verdict, u32) {
        let fam = if ip.is_ipv4() { &p.v4 } else { &p.v6 };
        let bits = ip_bits(ip);
        let mut s = fam.nodes[fam.top16(bits)].load(Relaxed);
        let mut k = 2;
        while s & SLOT_CHILD != 0 {
            s = fam.nodes[(s & !SLOT_CHILD) as usize * NODE_SLOTS + fam.byte(bits, k)]
                .load(Relaxed);
            k += 1;
        }
        let live =
            |w: u64| w & FLAG_PRESENT != 0 && (word_expiry_ns(w) == 0 || now < word_expiry_ns(w));
        let find = |allow: bool| -> Option<u32> {
            if s == RULE_NONE {
                return None;
            }
            let c = &p.rules[s as usize];
            let is_allow = c.word.load(Relaxed) & FLAG_ALLOW != 0;
            let pick = |c: &RuleCell| {
                if allow {
                    c.up_allow.load(Relaxed)
                } else {
                    c.up_deny.load(Relaxed)
                }
            };
            let mut idx = if is_allow == allow { s } else { pick(c) };
            for _ in 0..MAX_FALLBACK {
                if idx == RULE_NONE {
                    return None;
                }
                let c = &p.rules[idx as usize];
                if live(c.word.load(Relaxed)) {
                    return Some(idx);
                }
                idx = pick(c);
            }
            None
        };
        if let Some(a) = find(true) {
            return (Verdict::Allowed, p.rules[a as usize].id.load(Relaxed));
        }
        match find(false) {
            Some(d) => {
                let c = &p.rules[d as usize];
                let v = if c.word.load(Relaxed) & FLAG_MONITOR != 0 {
                    Verdict::Monitor
                } else {
                    Verdict::Drop
                };
                (v, c.id.load(Relaxed))
            }
            None => (Verdict::Pass, 0),
        }
    }

    fn random_rule(rng: &mut StdRng, id: u32, v4: bool) -> Rule {
        // A small address space, so prefixes nest, overlap and share nodes.
        let (bits, len) = if v4 {
            let base = ip_bits("198.51.0.0".parse().unwrap());
            (
                base | u128::from(rng.random::<u16>()),
                rng.random_range(8..32),
            )
        } else {
            let base = ip_bits("2001:db8::".parse().unwrap());
            let mid = u128::from(rng.random::<u16>()) << 64;
            (
                base | mid | u128::from(rng.random::<u64>()),
                rng.random_range(16..128),
            )
        };
        let net = ipnet::IpNet::new(ip_from_bits(v4, bits), len).unwrap();
        Rule {
            id,
            target: net.into(),
            list: if rng.random_bool(0.3) {
                List::Allow
            } else {
                List::Deny
            },
            monitor: rng.random_bool(0.3),
            expires_ms: rng.random_bool(0.3).then(|| rng.random_range(1..100)),
        }
    }

    #[test]
    fn random_inserts_and_removes_match_the_verdict_model() {
        let mut rng = StdRng::seed_from_u64(7);
        for round in 0..20 {
            let mut p = prefixes(400);
            let mut live: Vec<Rule> = Vec::new();
            for step in 0..300u32 {
                let remove = !live.is_empty() && rng.random_bool(0.35);
                if remove {
                    let i = rng.random_range(0..live.len());
                    let r = live.swap_remove(i);
                    p.remove(&r.target, r.list).unwrap();
                } else {
                    let v4 = rng.random_bool(0.5);
                    let r = random_rule(&mut rng, round * 1000 + step + 1, v4);
                    if r.target.is_exact()
                        || live
                            .iter()
                            .any(|x| x.target == r.target && x.list == r.list)
                    {
                        continue;
                    }
                    p.insert(&r.target, r.list, r.id, word_of(&r)).unwrap();
                    live.push(r);
                }
                for _ in 0..20 {
                    let probe = if rng.random_bool(0.7) && !live.is_empty() {
                        let r = live.choose(&mut rng).unwrap();
                        let host = u32::from(r.target.width() - r.target.prefix_len());
                        let off = if host >= 128 {
                            rng.random()
                        } else {
                            rng.random::<u128>() & ((1u128 << host) - 1)
                        };
                        ip_from_bits(r.target.is_ipv4(), r.target.bits() | off)
                    } else {
                        let v4 = rng.random_bool(0.5);
                        random_rule(&mut rng, 0, v4).target.addr()
                    };
                    let now = rng.random_range(0..120) * 1_000_000;
                    let want = verdict::decide(&live, probe, now);
                    let got = kernel_lookup(&p, probe, now);
                    assert_eq!(
                        (want.verdict, want.rule.map_or(0, |r| r.id)),
                        got,
                        "round {round} step {step}: {probe} at {now}"
                    );
                }
            }
            for r in live.drain(..) {
                p.remove(&r.target, r.list).unwrap();
            }
            assert_eq!(p.nodes_in_use(), (0, 0), "every node collapses once empty");
            assert!(p.is_empty());
            let root = ROOT_NODES as usize * NODE_SLOTS;
            let slots = p.v4.nodes[..root].iter().chain(p.v6.nodes[..root].iter());
            assert!(
                slots.into_iter().all(|s| s.load(Relaxed) == RULE_NONE),
                "the root is empty again"
            );
        }
    }

    #[test]
    fn needs_counts_exactly_the_rules_and_nodes_the_trie_builds() {
        let mut rng = StdRng::seed_from_u64(11);
        let mut p = prefixes(2000);
        let mut live: Vec<Rule> = Vec::new();
        let mut id = 0;
        while live.len() < 800 {
            id += 1;
            let v4 = rng.random_bool(0.5);
            let r = random_rule(&mut rng, id, v4);
            if r.target.is_exact()
                || live
                    .iter()
                    .any(|x| (x.target, x.list) == (r.target, r.list))
            {
                continue;
            }
            p.insert(&r.target, r.list, r.id, word_of(&r)).unwrap();
            live.push(r);
            let (nodes_v4, nodes_v6) = p.nodes_in_use();
            assert_eq!(
                needs(live.iter().map(|r| r.target)),
                crate::dataplane::layout::Needs {
                    rules: p.len() as u32,
                    nodes_v4,
                    nodes_v6
                },
                "after {} prefixes",
                live.len()
            );
        }
    }

    #[test]
    fn full_pools_are_reported_and_change_nothing() {
        let mut p = prefixes(2);
        let t = |s: &str| Target::parse(s).unwrap();
        p.insert(&t("203.0.113.0/24"), List::Deny, 1, 1).unwrap();
        p.insert(&t("203.0.113.0/25"), List::Deny, 2, 1).unwrap();
        let e = p
            .insert(&t("198.51.100.0/24"), List::Deny, 3, 1)
            .unwrap_err();
        assert_eq!(e, TrieError::RulesFull { rules: 2 });
        assert!(e.to_string().contains("raise --capacity"));
        assert_eq!(p.len(), 2);
        assert_eq!(
            p.remove(&t("198.51.100.0/24"), List::Deny),
            Err(TrieError::NotFound {
                target: t("198.51.100.0/24"),
                list: List::Deny
            })
        );
    }

    #[test]
    fn freed_rules_are_reused_only_after_the_grace_period() {
        let mut p = prefixes(1);
        let t = Target::parse("203.0.113.0/24").unwrap();
        p.insert(&t, List::Deny, 1, 1).unwrap();
        p.remove(&t, List::Deny).unwrap();
        let start = Instant::now();
        p.insert(&t, List::Allow, 2, 1).unwrap();
        assert!(start.elapsed() >= GRACE - Duration::from_millis(5));
    }
}
