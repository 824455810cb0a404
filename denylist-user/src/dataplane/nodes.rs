//! One family's trie storage: the dense root, and the nodes below it as
//! runs (`denylist_common::Node`), read and written by slot.
//!
//! The trie's logic sees 256 slots a node and addresses a slot globally as
//! `node × 256 + byte`; ids below `ROOT_NODES` are root rows. A compressed
//! node cannot change in place (its bitmap, base and runs would tear), so a
//! change copies it: writes go to a decompressed copy, and [`Nodes::publish`]
//! writes each changed node afresh, deepest first, then swings the one slot
//! that points at it. A packet thus reads every node either whole before a
//! change or whole after it; the old copy is freed through quarantine.
//!
//! In the IPv6 trie, the first node of a chain of single-path levels also
//! carries a shortcut to the chain's end (`denylist_common::Skip`). It
//! depends on every node of the chain, so a change anywhere in a chain
//! copies the chain's nodes above it too, and they are published with it.

use std::{
    collections::{HashMap, HashSet},
    sync::atomic::{AtomicU32, Ordering::*},
};

use denylist_common::{
    BASE_INLINE, INLINE_RUNS, NO_START, NODE_SLOTS, Node, PLAIN_ABOVE, ROOT_NODES, SKIP_ENDS,
    SLOT_CHILD, Skip, inline_index, run_index,
};

use super::{
    alloc::{Blocks, Pool},
    region::{NodeCell, Region},
};

/// One family's three arrays.
pub struct TrieMaps {
    /// `ROOT_NODES × NODE_SLOTS` slots.
    pub root: Region<AtomicU32>,
    /// Indexed by node id; ids below `ROOT_NODES` are unused.
    pub nodes: Region<NodeCell>,
    pub slots: Region<AtomicU32>,
}

impl TrieMaps {
    /// Heap arrays for `nodes` nodes and `slots` slots, for tests.
    #[cfg(test)]
    pub fn heap(nodes: usize, slots: usize) -> Self {
        Self {
            root: Region::heap(ROOT_NODES as usize * NODE_SLOTS),
            nodes: Region::heap(ROOT_NODES as usize + nodes),
            slots: Region::heap(slots),
        }
    }
}

/// What a change could not get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    Nodes,
    Slots,
}

type Slots = Box<[u32; NODE_SLOTS]>;

struct Dirty {
    slots: Slots,
    /// Created by this change: written where it is, not copied.
    fresh: bool,
}

pub struct Nodes {
    maps: TrieMaps,
    /// Whether chains get shortcuts: in the IPv6 trie, where the program
    /// follows them.
    shortcuts: bool,
    pool: Pool,
    blocks: Blocks,
    /// The global slot that points at each node below the root.
    parent: HashMap<u32, usize>,
    dirty: HashMap<u32, Dirty>,
    root_writes: HashMap<usize, u32>,
    /// Freed by this change, released once it is published.
    freed: Vec<(u32, Option<(u32, u32)>)>,
}

/// Node bits, `before` (for the node's kind: inline when the runs fit)
/// and the runs of 256 slots; all 256 slots for a plain node, one of more
/// than `PLAIN_ABOVE` runs.
fn compress(slots: &[u32; NODE_SLOTS]) -> ([u64; 4], [u8; 4], Vec<u32>) {
    let mut bits = [0u64; 4];
    let mut counts = [0u8; 4];
    let mut starts = [NO_START; 4];
    let mut runs = Vec::new();
    for (b, &s) in slots.iter().enumerate() {
        if b % 64 == 0 {
            // At most 192 runs start before the last word.
            counts[b / 64] = runs.len() as u8;
        }
        if b == 0 || s != slots[b - 1] {
            bits[b / 64] |= 1 << (b % 64);
            if let Some(start) = runs.len().checked_sub(1).and_then(|i| starts.get_mut(i)) {
                // Run k ≥ 1 starts at b ≥ 1.
                *start = (b - 1) as u8;
            }
            runs.push(s);
        }
    }
    if runs.len() > PLAIN_ABOVE {
        return ([0; 4], [0; 4], slots.to_vec());
    }
    let before = if runs.len() <= INLINE_RUNS {
        starts
    } else {
        counts
    };
    (bits, before, runs)
}

/// `(byte, value, other)` for an inline node whose slots all hold `other`,
/// a rule, but slot `byte`, which holds `value`: a level of a chain.
fn single_path(before: [u8; 4], runs: &[u32]) -> Option<(u8, u32, u32)> {
    let (b, v, m) = match *runs {
        // Runs start at 0 and at before[0] + 1.
        [v, m] if before[0] == 0 => (0, v, m),
        [m, v] if before[0] == 254 => (255, v, m),
        [m, v, m2] if m == m2 && before[1] == before[0].wrapping_add(1) => {
            (before[0].wrapping_add(1), v, m)
        }
        _ => return None,
    };
    (m & SLOT_CHILD == 0).then_some((b, v, m))
}

/// Slot `byte`'s place in the runs of a node of either kind.
fn index(n: &Node, byte: u8) -> u32 {
    if n.plain != 0 {
        u32::from(byte)
    } else if n.base == BASE_INLINE {
        inline_index(n, byte)
    } else {
        run_index(n, byte)
    }
}

impl Nodes {
    pub fn new(maps: TrieMaps, shortcuts: bool) -> Self {
        let pool = Pool::new(ROOT_NODES, maps.nodes.len() as u32);
        let blocks = Blocks::new(maps.slots.len() as u32);
        Self {
            maps,
            shortcuts,
            pool,
            blocks,
            parent: HashMap::new(),
            dirty: HashMap::new(),
            root_writes: HashMap::new(),
            freed: Vec::new(),
        }
    }

    /// Nodes below the root in use.
    pub fn in_use(&self) -> u32 {
        self.pool.in_use()
    }

    /// Run slots in use.
    pub fn slots_in_use(&self) -> u64 {
        self.blocks.in_use()
    }

    /// Whether `nodes` more nodes and `slots` more run slots fit.
    pub fn has_room(&self, nodes: u64, slots: u64) -> Result<(), Full> {
        if nodes > self.pool.available() {
            return Err(Full::Nodes);
        }
        if slots > self.blocks.available() {
            return Err(Full::Slots);
        }
        Ok(())
    }

    fn node(&self, id: u32) -> Node {
        let c = &self.maps.nodes[id as usize];
        Node {
            bits: [0, 1, 2, 3].map(|w| c.bits[w].load(Acquire)),
            base: c.base.load(Acquire),
            before: c.before.load(Acquire).to_le_bytes(),
            inline: [0; INLINE_RUNS],
            plain: c.plain.load(Acquire),
        }
    }

    /// Runs of a published node.
    pub fn runs(&self, id: u32) -> u32 {
        self.node(id).runs()
    }

    /// The shortcut a published node carries.
    pub fn skip(&self, id: u32) -> Option<Skip> {
        Skip::of(&self.node(id))
    }

    /// [`single_path`] of a node as this change leaves it.
    fn single(&self, id: u32) -> Option<(u8, u32, u32)> {
        if let Some(d) = self.dirty.get(&id) {
            let (_, before, runs) = compress(&d.slots);
            return (runs.len() <= INLINE_RUNS)
                .then(|| single_path(before, &runs))
                .flatten();
        }
        let n = self.node(id);
        if n.base != BASE_INLINE {
            return None;
        }
        let runs: Vec<u32> = self.run_values(id).collect();
        single_path(n.before, &runs)
    }

    /// The shortcut for a node at byte `at` of the address (2 for a node a
    /// root slot points at) whose runs are `runs`, with its children as
    /// this change leaves them: over the chain below it, within the
    /// address's half, if it saves a level.
    fn shortcut(&self, at: u32, before: [u8; 4], runs: &[u32]) -> Option<Skip> {
        let (b, mut to, miss) = single_path(before, runs)?;
        let end = if at < 8 { 8 } else { 16 };
        let (mut key, mut bytes) = (u64::from(b) << 56, 1);
        while at + bytes < end && to & SLOT_CHILD != 0 {
            match self.single(to & !SLOT_CHILD) {
                Some((b, v, m)) if m == miss => {
                    key |= u64::from(b) << (56 - 8 * bytes);
                    bytes += 1;
                    to = v;
                }
                _ => break,
            }
        }
        (bytes >= 2).then_some(Skip {
            key,
            bytes,
            to,
            miss,
        })
    }

    /// Copies, into this change, every node above a changed one whose
    /// shortcut may pass through it: those that are a chain's level now
    /// or carry a shortcut. A node that is neither ends every chain above
    /// it, and keeps its id unless it changed itself.
    fn dirty_chains(&mut self) {
        let mut seen = HashSet::new();
        let changed: Vec<u32> = self.dirty.keys().copied().collect();
        for mut id in changed {
            loop {
                let up = (self.parent[&id] / NODE_SLOTS) as u32;
                if up < ROOT_NODES || !seen.insert(up) {
                    break;
                }
                if !self.dirty.contains_key(&up) {
                    if self.skip(up).is_none() && self.single(up).is_none() {
                        break;
                    }
                    self.copy(up);
                }
                id = up;
            }
        }
    }

    /// Where run `k` of a published node is: in the node, or in `SLOTS`.
    fn run(&self, id: u32, base: u32, k: u32) -> Option<&AtomicU32> {
        if base == BASE_INLINE {
            self.maps.nodes[id as usize].inline.get(k as usize)
        } else {
            self.maps.slots.get(base.wrapping_add(k) as usize)
        }
    }

    /// The run block a published node has in `SLOTS`, if any.
    fn block(&self, id: u32) -> Option<(u32, u32)> {
        let base = self.node(id).base;
        (base != BASE_INLINE).then(|| (base, self.runs(id)))
    }

    /// The values of a published node's runs (every child it points at is
    /// among them).
    pub fn run_values(&self, id: u32) -> impl Iterator<Item = u32> + '_ {
        let base = self.node(id).base;
        (0..self.runs(id)).filter_map(move |k| self.run(id, base, k).map(|s| s.load(Acquire)))
    }

    /// The kernel's value of a slot of a published node: what the XDP
    /// program reads.
    pub fn published(&self, idx: usize) -> u32 {
        let (node, byte) = ((idx / NODE_SLOTS) as u32, (idx % NODE_SLOTS) as u8);
        if node < ROOT_NODES {
            return self.maps.root[idx].load(Acquire);
        }
        let n = self.node(node);
        self.run(node, n.base, index(&n, byte))
            .map_or(0, |s| s.load(Acquire))
    }

    /// Whether a node id is one the kernel's arrays can hold.
    pub fn valid(&self, id: u32) -> bool {
        (ROOT_NODES..self.pool.limit()).contains(&id)
    }

    pub fn get(&self, idx: usize) -> u32 {
        let node = (idx / NODE_SLOTS) as u32;
        if node < ROOT_NODES {
            if let Some(&v) = self.root_writes.get(&idx) {
                return v;
            }
        } else if let Some(d) = self.dirty.get(&node) {
            return d.slots[idx % NODE_SLOTS];
        }
        self.published(idx)
    }

    pub fn set(&mut self, idx: usize, v: u32) {
        let node = (idx / NODE_SLOTS) as u32;
        if node < ROOT_NODES {
            self.root_writes.insert(idx, v);
            return;
        }
        self.copy(node);
        let d = self.dirty.get_mut(&node).expect("just made dirty");
        d.slots[idx % NODE_SLOTS] = v;
    }

    /// Takes published node `id` into this change, as a copy to write.
    fn copy(&mut self, id: u32) {
        if self.dirty.contains_key(&id) {
            return;
        }
        let n = self.node(id);
        let mut slots: Slots = Box::new([0; NODE_SLOTS]);
        for (b, s) in slots.iter_mut().enumerate() {
            *s = self
                .run(id, n.base, index(&n, b as u8))
                .map_or(0, |s| s.load(Acquire));
        }
        self.dirty.insert(
            id,
            Dirty {
                slots,
                fresh: false,
            },
        );
    }

    /// A new node below slot `parent`, every slot `fill`; the caller points
    /// the parent slot at it.
    pub fn create(&mut self, parent: usize, fill: u32) -> Option<u32> {
        let id = self.pool.alloc()?;
        let dirty = Dirty {
            slots: Box::new([fill; NODE_SLOTS]),
            fresh: true,
        };
        self.dirty.insert(id, dirty);
        self.parent.insert(id, parent);
        Some(id)
    }

    /// The slot pointing at node `id`.
    pub fn parent(&self, id: u32) -> usize {
        self.parent[&id]
    }

    /// Drops node `id`; the caller has already pointed its parent slot
    /// elsewhere.
    pub fn free(&mut self, id: u32) {
        let fresh = self.dirty.remove(&id).is_some_and(|d| d.fresh);
        let block = if fresh { None } else { self.block(id) };
        self.parent.remove(&id);
        self.freed.push((id, block));
    }

    /// Depth below the root: 1 for a node a root slot points at.
    fn depth(&self, mut id: u32) -> u32 {
        let mut d = 1;
        while let Some(&up) = self.parent.get(&id) {
            let node = (up / NODE_SLOTS) as u32;
            if node < ROOT_NODES {
                break;
            }
            d += 1;
            id = node;
        }
        d
    }

    /// Points slot `idx` at a node just written. When the slot pointed at
    /// a published copy of it (`moved`), the published slot moves too, so
    /// that copy is unreachable; a new node is reached only once its parent
    /// is published.
    fn point(&mut self, idx: usize, v: u32, moved: bool) {
        let node = (idx / NODE_SLOTS) as u32;
        if node < ROOT_NODES {
            self.root_writes.remove(&idx);
            self.maps.root[idx].store(v, Release);
            return;
        }
        if let Some(d) = self.dirty.get_mut(&node) {
            d.slots[idx % NODE_SLOTS] = v;
        }
        if moved {
            // A child slot is a run of its own (its neighbours hold other
            // values), so one store in the published node moves it.
            let n = self.node(node);
            let k = index(&n, (idx % NODE_SLOTS) as u8);
            self.run(node, n.base, k)
                .expect("a published child slot has its run")
                .store(v, Release);
        }
    }

    /// Points the published shortcuts above slot `slot` that lead to node
    /// `old` at its copy `new`, before `old` is freed. Those nodes are
    /// copied in this change too, but published after it, being shallower:
    /// until then packets still take their shortcuts. One store each, as
    /// [`Nodes::point`] moves a slot: a packet reads the old copy or the
    /// new, and the old one stays intact through its quarantine.
    fn repoint_skips(&self, mut slot: usize, old: u32, new: u32) {
        loop {
            let node = (slot / NODE_SLOTS) as u32;
            if node < ROOT_NODES {
                return;
            }
            if let Some(k) = self.skip(node).filter(|k| k.to == old | SLOT_CHILD) {
                let ends = Skip {
                    to: new | SLOT_CHILD,
                    ..k
                }
                .to_bits()[SKIP_ENDS];
                self.maps.nodes[node as usize].bits[SKIP_ENDS].store(ends, Release);
            }
            match self.parent.get(&node) {
                Some(&up) => slot = up,
                None => return,
            }
        }
    }

    /// The root slot above global slot `idx`.
    #[cfg(test)]
    fn root_slot(&self, mut idx: usize) -> std::ops::Range<usize> {
        while let Some(&up) = self.parent.get(&((idx / NODE_SLOTS) as u32)) {
            idx = up;
        }
        idx..idx + 1
    }

    /// Node ids the published trie reaches from the root slots `from`, by
    /// slots and by shortcuts.
    #[cfg(test)]
    fn reachable(&self, from: std::ops::Range<usize>) -> HashSet<u32> {
        let mut todo: Vec<u32> = self.maps.root[from]
            .iter()
            .map(|s| s.load(Acquire))
            .filter(|s| s & SLOT_CHILD != 0)
            .collect();
        let mut seen = HashSet::new();
        while let Some(s) = todo.pop() {
            let id = s & !SLOT_CHILD;
            if !seen.insert(id) {
                continue;
            }
            todo.extend(self.run_values(id).filter(|s| s & SLOT_CHILD != 0));
            if self.shortcuts {
                todo.extend(self.skip(id).map(|k| k.to).filter(|s| s & SLOT_CHILD != 0));
            }
        }
        seen
    }

    /// Writes every changed node into the kernel's arrays, children before
    /// the nodes that point at them, then the root's slots, then releases
    /// what the change freed. A copied node's old copy is released as soon
    /// as nothing published points at it, so a change needs room for one
    /// copy at a time beyond the nodes it creates.
    pub fn publish(&mut self) -> Result<(), Full> {
        if self.shortcuts {
            self.dirty_chains();
        }
        let mut order: Vec<(u32, u32)> =
            self.dirty.keys().map(|&id| (self.depth(id), id)).collect();
        order.sort_unstable_by(|a, b| b.cmp(a));
        for (depth, id) in order {
            let d = self.dirty.remove(&id).expect("listed above");
            let (mut bits, before, runs) = compress(&d.slots);
            if runs.len() <= INLINE_RUNS {
                // Inline nodes need no run bitmap; the bits hold the
                // shortcut. Children are written already (deepest first),
                // so it names their new copies.
                bits = self
                    .shortcuts
                    .then(|| self.shortcut(depth + 1, before, &runs))
                    .flatten()
                    .map_or([0; 4], Skip::to_bits);
            }
            let at = if d.fresh {
                id
            } else {
                self.pool.alloc().ok_or(Full::Nodes)?
            };
            let cell = &self.maps.nodes[at as usize];
            let base = if runs.len() <= INLINE_RUNS {
                for (c, &v) in cell.inline.iter().zip(&runs) {
                    c.store(v, Relaxed);
                }
                BASE_INLINE
            } else {
                let base = self.blocks.alloc(runs.len() as u32).ok_or(Full::Slots)?;
                for (c, &v) in self.maps.slots[base as usize..].iter().zip(&runs) {
                    c.store(v, Relaxed);
                }
                base
            };
            for (w, &b) in cell.bits.iter().zip(&bits) {
                w.store(b, Relaxed);
            }
            cell.base.store(base, Relaxed);
            cell.plain
                .store(u32::from(runs.len() == NODE_SLOTS), Relaxed);
            cell.before.store(u32::from_le_bytes(before), Release);
            let old = (!d.fresh).then(|| self.block(id));
            let up = self.parent.remove(&id).expect("every node has a parent");
            self.parent.insert(at, up);
            for (b, &s) in d.slots.iter().enumerate() {
                if s & SLOT_CHILD != 0 {
                    self.parent
                        .insert(s & !SLOT_CHILD, at as usize * NODE_SLOTS + b);
                }
            }
            self.point(up, at | SLOT_CHILD, !d.fresh);
            if let Some(block) = old {
                if self.shortcuts {
                    self.repoint_skips(up, id, at);
                }
                #[cfg(test)]
                assert!(
                    !self.reachable(self.root_slot(up)).contains(&id),
                    "node {id} is freed while the published trie still reaches it"
                );
                self.pool.release(id);
                if let Some((start, len)) = block {
                    self.blocks.release(start, len);
                }
            }
        }
        for (idx, v) in self.root_writes.drain() {
            self.maps.root[idx].store(v, Release);
        }
        #[cfg(test)]
        if !self.freed.is_empty() {
            let reached = self.reachable(0..self.maps.root.len());
            for (id, _) in &self.freed {
                assert!(!reached.contains(id), "node {id} is freed while reached");
            }
        }
        for (id, block) in self.freed.drain(..) {
            self.pool.release(id);
            if let Some((start, len)) = block {
                self.blocks.release(start, len);
            }
        }
        Ok(())
    }

    /// The root's slots as the kernel holds them, for tests.
    #[cfg(test)]
    pub fn root(&self) -> &[AtomicU32] {
        &self.maps.root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compresses `slots` and checks that every slot reads back through
    /// the index of the node's kind.
    fn round_trip(slots: &[u32; NODE_SLOTS]) -> ([u8; 4], Vec<u32>) {
        let (bits, before, runs) = compress(slots);
        let inline = runs.len() <= INLINE_RUNS;
        let node = Node {
            bits,
            base: if inline { BASE_INLINE } else { 0 },
            before,
            plain: u32::from(runs.len() == NODE_SLOTS),
            ..Node::default()
        };
        for (b, &want) in slots.iter().enumerate() {
            assert_eq!(runs[index(&node, b as u8) as usize], want, "slot {b}");
        }
        (before, runs)
    }

    #[test]
    fn compress_keeps_one_value_a_run_inline_or_counted() {
        let mut slots = [5u32; NODE_SLOTS];
        slots[100] = 9;
        slots[200..].fill(7);
        let (before, runs) = round_trip(&slots);
        assert_eq!(runs, vec![5, 9, 5, 7]);
        assert_eq!(
            before,
            [99, 100, 199, NO_START],
            "inline: where runs 1–3 start, less one"
        );
        slots[0] = 1;
        slots[255] = 2;
        let (before, runs) = round_trip(&slots);
        assert_eq!(runs, vec![1, 5, 9, 5, 7, 2]);
        assert_eq!(before, [0, 2, 4, 4], "counted: the runs before each word");
        // Past PLAIN_ABOVE runs, the node keeps every slot.
        let runs_of = |distinct: u32| {
            let mut slots = [999u32; NODE_SLOTS];
            for (b, s) in slots.iter_mut().enumerate().take(distinct as usize - 1) {
                *s = b as u32;
            }
            round_trip(&slots).1
        };
        assert_eq!(runs_of(PLAIN_ABOVE as u32).len(), PLAIN_ABOVE, "runs");
        let dense = runs_of(PLAIN_ABOVE as u32 + 1);
        assert_eq!(dense.len(), NODE_SLOTS, "plain: every slot");
        assert_eq!(dense[PLAIN_ABOVE..], [999; NODE_SLOTS - PLAIN_ABOVE]);
    }
}
