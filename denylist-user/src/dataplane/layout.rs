//! Map sizes from the configured capacity, and the memory they reserve.
//!
//! Capacity counts entries across both lists and both families. Exact
//! addresses live in hash maps created with BPF_F_NO_PREALLOC, so their
//! memory grows with the entries, not the capacity. Prefixes take a rule
//! each (counted against the capacity) plus trie nodes and their run slots
//! from per-family arrays. Those are allocated whole when the maps are created, so the
//! daemon sizes them for the prefixes it holds ([`Layout::fitting`]) and
//! moves to larger maps when they fill up, up to what the capacity allows;
//! docs/dataplane.md explains the formulas below.

use crate::model::Target;
use denylist_common::{
    ALL_MAPS, Cell, Counters, DETECT_RING_BYTES, DetectConfig, DetectStats, HIT_SLOTS, Hit,
    HitSlot, MAP_COUNTERS, MAP_DETECT, MAP_DETECT_EVENTS, MAP_DETECT_SEEN, MAP_DETECT_STATS,
    MAP_EXACT_V4, MAP_EXACT_V6, MAP_GATE, MAP_HIT_SLOTS, MAP_HITS, MAP_NODES_V4, MAP_NODES_V6,
    MAP_ROOT_V4, MAP_ROOT_V6, MAP_RULES, MAP_SKETCH, MAP_SLOTS_V4, MAP_SLOTS_V6, Node, ROOT_NODES,
    RootRow, Rule, SEEN_WORDS, SKETCH_CELLS, SLOTS_PER_PAIR,
};

/// Run slots an element of a `SLOTS` array holds, for `div_ceil`.
const PAIR: u32 = SLOTS_PER_PAIR as u32;

/// The smallest useful capacity; also keeps the pools non-empty.
pub const MIN_CAPACITY: u32 = 16;
/// The largest capacity: trie slots address rules with 31 bits.
pub const MAX_CAPACITY: u32 = 1 << 30;
/// The fewest prefix rules and trie nodes per family a layout holds.
pub const MIN_POOL: u32 = 1024;
/// The most trie nodes per family.
pub const MAX_NODES: u32 = 1 << 24;
/// The most run slots per family: every node of [`MAX_NODES`] at its most.
pub const MAX_SLOTS: u32 = 1 << 31;

/// The fewest run slots per family: a page of each block size
/// (`alloc::MIN_SLOTS`), rounded up to [`MIN_POOL`].
pub const MIN_SLOTS: u32 = super::alloc::MIN_SLOTS.div_ceil(MIN_POOL) * MIN_POOL;

/// What a set of entries takes of the maps sized by their contents
/// ([`needs`]): the prefix arrays (`trie::needs`), the exact IPv6 map and
/// the hit counters' overflow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// Entries of any kind.
    pub entries: u32,
    /// Exact IPv6 addresses.
    pub exact_v6: u32,
    pub rules: u32,
    pub nodes_v4: u32,
    pub nodes_v6: u32,
    pub slots_v4: u64,
    pub slots_v6: u64,
}
/// Busy entries whose hit counters the overflow LRU keeps at once, beyond
/// the [`HIT_SLOTS`] of the direct-mapped table. An LRU per-CPU hash is
/// preallocated (about 64 bytes plus 16 a CPU an element); at 65,536 it took
/// 7 bytes an entry at a million entries on 2 CPUs, where the kernel budget
/// is 110. Entries beyond lose hit counts, never verdicts.
pub const MAX_HIT_ENTRIES: u32 = 16_384;

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error(
        "capacity {capacity} is out of range: choose between {MIN_CAPACITY} and {MAX_CAPACITY}"
    )]
    Capacity { capacity: u64 },
}

/// What holding `entries` (one item per entry, any list) takes of the maps
/// sized by their contents.
pub fn needs(entries: impl IntoIterator<Item = Target>) -> Needs {
    let (mut all, mut exact_v6) = (0u32, 0u32);
    let prefixes = entries.into_iter().filter(|t| {
        all += 1;
        if t.is_exact() && !t.is_ipv4() {
            exact_v6 += 1;
        }
        !t.is_exact()
    });
    let prefix = super::trie::needs(prefixes);
    Needs {
        entries: all,
        exact_v6,
        ..prefix
    }
}

/// The max_entries of every map for one capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub capacity: u32,
    /// Exact IPv6 addresses (`EXACT_V6`'s max_entries): sized by contents,
    /// since a hash map's buckets take 16 bytes each of max_entries.
    pub exact_v6: u32,
    /// Prefix rules (one per prefix entry, both families).
    pub prefix_rules: u32,
    /// IPv4 trie nodes beyond the 256 root nodes.
    pub nodes_v4: u32,
    /// IPv6 trie nodes beyond the 256 root nodes.
    pub nodes_v6: u32,
    /// Run slots of the IPv4 nodes.
    pub slots_v4: u32,
    /// Run slots of the IPv6 nodes.
    pub slots_v6: u32,
    /// Entries whose hit counters are kept at once (LRU).
    pub hit_entries: u32,
}

impl Layout {
    pub fn new(capacity: u64) -> Result<Self, LayoutError> {
        if !(u64::from(MIN_CAPACITY)..=u64::from(MAX_CAPACITY)).contains(&capacity) {
            return Err(LayoutError::Capacity { capacity });
        }
        let capacity = capacity as u32;
        Ok(Self {
            capacity,
            exact_v6: capacity,
            prefix_rules: capacity,
            // Limits only: the pools are sized for what the prefixes take
            // (`fitting`). An IPv4 prefix takes at most 2 nodes of its own,
            // so that limit never binds; an IPv6 one up to 14, but a /48 at
            // most 4, and real lists share most of theirs.
            nodes_v4: capacity.saturating_mul(2).clamp(MIN_POOL, MAX_NODES),
            nodes_v6: capacity.saturating_mul(4).clamp(MIN_POOL, MAX_NODES),
            // A node has at most 256 runs; real ones a few (`trie::needs`).
            slots_v4: capacity.saturating_mul(8).clamp(MIN_SLOTS, MAX_SLOTS),
            slots_v6: capacity.saturating_mul(16).clamp(MIN_SLOTS, MAX_SLOTS),
            hit_entries: capacity.clamp(MIN_POOL, MAX_HIT_ENTRIES),
        })
    }

    /// A layout within this one (the largest allowed) whose maps sized by
    /// contents hold `needs` with a quarter more to grow into: each size a
    /// multiple of [`MIN_POOL`], at least that, at most this layout's.
    /// Growth beyond costs a move to new maps; a quarter keeps those moves
    /// rare (each one at least a quarter more entries) and the arrays,
    /// allocated whole, near what they hold: at a million IPv4 prefixes,
    /// half as much again took 66 MiB where the budget is 64.
    pub fn fitting(&self, needs: Needs) -> Self {
        // Run blocks come in pages of one size class, and a node climbs
        // through the classes as it fills, copied each time; the pages of
        // the classes nodes left empty only slowly. A bulk load of 30,000
        // clustered IPv6 prefixes
        // (`the_arrays_needs_sizes_hold_a_clustered_bulk_load`) needed 2.25
        // times the runs in use, so runs get 2.5 times their bound.
        let runs = |need: u64| need.saturating_mul(2);
        let size = |need: u64, most: u32| {
            let need = u32::try_from(need).unwrap_or(u32::MAX);
            need.saturating_add(need / 4)
                .max(1)
                .div_ceil(MIN_POOL)
                .saturating_mul(MIN_POOL)
                .min(most)
        };
        Self {
            exact_v6: size(needs.exact_v6.into(), self.exact_v6),
            hit_entries: size(needs.entries.into(), self.hit_entries),
            prefix_rules: size(needs.rules.into(), self.prefix_rules),
            nodes_v4: size(needs.nodes_v4.into(), self.nodes_v4),
            nodes_v6: size(needs.nodes_v6.into(), self.nodes_v6),
            slots_v4: size(runs(needs.slots_v4), self.slots_v4).max(MIN_SLOTS),
            slots_v6: size(runs(needs.slots_v6), self.slots_v6).max(MIN_SLOTS),
            ..*self
        }
    }

    /// This layout with each map sized by contents at least as large as in
    /// `want`: maps only grow, so a move never shrinks one that holds more.
    pub fn grown_to(&self, want: Self) -> Self {
        Self {
            exact_v6: want.exact_v6.max(self.exact_v6),
            hit_entries: want.hit_entries.max(self.hit_entries),
            prefix_rules: want.prefix_rules.max(self.prefix_rules),
            nodes_v4: want.nodes_v4.max(self.nodes_v4),
            nodes_v6: want.nodes_v6.max(self.nodes_v6),
            slots_v4: want.slots_v4.max(self.slots_v4),
            slots_v6: want.slots_v6.max(self.slots_v6),
            ..*self
        }
    }

    /// Whether the maps sized by contents hold `needs`. The hit counters'
    /// overflow holds them while it has at least half the entries (up to
    /// its largest): it only loses counts, so it grows rarely, but a daemon
    /// started empty still grows it as its list does. Each trie keeps a
    /// node spare beyond its needs, for copies (`trie::COPY_ROOM`).
    pub fn holds(&self, needs: Needs) -> bool {
        let hits = needs.entries.min(MAX_HIT_ENTRIES) / 2;
        hits <= self.hit_entries
            && needs.exact_v6 <= self.exact_v6
            && needs.rules <= self.prefix_rules
            && needs.nodes_v4 < self.nodes_v4
            && needs.nodes_v6 < self.nodes_v6
            && needs.slots_v4 <= u64::from(self.slots_v4)
            && needs.slots_v6 <= u64::from(self.slots_v6)
    }

    /// max_entries for each map, by name, on a host of `cpus` possible
    /// CPUs.
    pub fn max_entries(&self, cpus: u32) -> [(&'static str, u32); ALL_MAPS.len()] {
        [
            (MAP_EXACT_V4, self.capacity),
            (MAP_EXACT_V6, self.exact_v6),
            (MAP_ROOT_V4, ROOT_NODES),
            (MAP_ROOT_V6, ROOT_NODES),
            // Ids below ROOT_NODES name root rows: 10 KiB unused, one
            // subtraction a level saved.
            (MAP_NODES_V4, ROOT_NODES + self.nodes_v4),
            (MAP_NODES_V6, ROOT_NODES + self.nodes_v6),
            (MAP_SLOTS_V4, self.slots_v4.div_ceil(PAIR)),
            (MAP_SLOTS_V6, self.slots_v6.div_ceil(PAIR)),
            // Rule 0 means "none", so one more.
            (MAP_RULES, self.prefix_rules + 1),
            (MAP_COUNTERS, 1),
            (MAP_HIT_SLOTS, HIT_SLOTS),
            (MAP_HITS, self.hit_entries),
            (MAP_DETECT, 1),
            // The detector's memory is fixed: it depends on neither the
            // capacity nor the traffic.
            (MAP_SKETCH, cpus * SKETCH_CELLS),
            (MAP_DETECT_EVENTS, DETECT_RING_BYTES),
            (MAP_DETECT_STATS, 1),
            (MAP_DETECT_SEEN, SEEN_WORDS),
            (MAP_GATE, 1),
        ]
    }

    /// Kernel memory reserved up front, before any entry, on `cpus` CPUs.
    ///
    /// Hash buckets are 16 bytes, one per max_entries rounded up to a power
    /// of two; arrays are value-size × max_entries (the trie's roots 1 KiB a
    /// row, its nodes 40 bytes, their runs 4 bytes a slot); the LRU per-CPU hash
    /// preallocates its elements (about 64 bytes each) plus a 16-byte value
    /// per CPU; the direct-mapped hit table is 16,384 24-byte slots per CPU;
    /// the counters are one 80-byte value per CPU; the rate detector's
    /// sketches are 8-byte cells, 131,072 per CPU, beside its ring buffer
    /// and its 128 KiB of reported-sets; the gate of entries written ahead
    /// is one word.
    pub fn reserved_bytes(&self, cpus: u64) -> u64 {
        let buckets = 16
            * (u64::from(self.capacity).next_power_of_two()
                + u64::from(self.exact_v6).next_power_of_two());
        let nodes = 2 * size(size_of::<RootRow>()) * u64::from(ROOT_NODES)
            + size(size_of::<Node>())
                * (u64::from(ROOT_NODES + self.nodes_v4) + u64::from(ROOT_NODES + self.nodes_v6))
            + 4 * (u64::from(self.slots_v4) + u64::from(self.slots_v6));
        let rules = size(size_of::<Rule>()) * (u64::from(self.prefix_rules) + 1);
        let hits = u64::from(self.hit_entries) * (64 + cpus * size(size_of::<Hit>()));
        let slots = cpus * u64::from(HIT_SLOTS) * size(size_of::<HitSlot>());
        let counters = cpus * size(size_of::<Counters>());
        let detector = cpus * u64::from(SKETCH_CELLS) * size(size_of::<Cell>())
            + u64::from(DETECT_RING_BYTES)
            + size(size_of::<DetectConfig>())
            + cpus * size(size_of::<DetectStats>())
            + 8 * u64::from(SEEN_WORDS);
        let gate = 8;
        buckets + nodes + rules + hits + slots + counters + detector + gate
    }
}

fn size(bytes: usize) -> u64 {
    bytes as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_bounds() {
        assert!(Layout::new(0).is_err());
        assert!(Layout::new(u64::from(MAX_CAPACITY) + 1).is_err());
        let msg = Layout::new(1).unwrap_err().to_string();
        assert!(msg.contains("choose between 16"), "{msg}");
    }

    #[test]
    fn sizes_follow_capacity() {
        let l = Layout::new(1_000_000).unwrap();
        let sizes = l.max_entries(2);
        assert!(sizes.contains(&(MAP_EXACT_V4, 1_000_000)));
        assert!(sizes.contains(&(MAP_RULES, 1_000_001)));
        assert!(sizes.contains(&(MAP_NODES_V4, 256 + 2_000_000)));
        assert!(sizes.contains(&(MAP_NODES_V6, 256 + 4_000_000)));
        assert!(sizes.contains(&(MAP_HITS, MAX_HIT_ENTRIES)));
        assert!(sizes.contains(&(MAP_SKETCH, 2 * 131_072)));
        assert_eq!(Layout::new(100).unwrap().nodes_v6, 1024);
        assert_eq!(Layout::new(1 << 30).unwrap().nodes_v4, MAX_NODES);
    }

    #[test]
    fn fitting_layouts_leave_room_and_stay_within_the_largest() {
        let most = Layout::new(1_000_000).unwrap();
        let needs = |rules, nodes_v4, nodes_v6| Needs {
            rules,
            nodes_v4,
            nodes_v6,
            slots_v4: 3 * u64::from(nodes_v4),
            slots_v6: 3 * u64::from(nodes_v6),
            ..Needs::default()
        };
        let empty = most.fitting(Needs::default());
        let sizes = |l: Layout| (l.prefix_rules, l.nodes_v4, l.nodes_v6);
        assert_eq!(sizes(empty), (1024, 1024, 1024));
        assert_eq!((empty.slots_v4, empty.slots_v6), (MIN_SLOTS, MIN_SLOTS));
        assert_eq!(empty.capacity, 1_000_000, "EXACT_V4 keeps the capacity");
        assert_eq!((empty.exact_v6, empty.hit_entries), (1024, 1024));
        let v6 = Needs {
            entries: 5000,
            exact_v6: 3000,
            ..Needs::default()
        };
        assert_eq!(
            most.fitting(v6).exact_v6,
            4096,
            "EXACT_V6 is sized by contents"
        );
        assert!(!most.fitting(Needs::default()).holds(v6));
        let many = Needs {
            entries: 1_000_000,
            ..Needs::default()
        };
        assert!(!empty.holds(many), "a short hit overflow grows");
        assert_eq!(most.fitting(many).hit_entries, MAX_HIT_ENTRIES);
        assert!(most.fitting(many).holds(many));
        let some = most.fitting(needs(3000, 700, 5000));
        assert_eq!(sizes(some), (4096, 1024, 7168));
        assert_eq!((some.slots_v4, some.slots_v6), (MIN_SLOTS, 37888));
        assert!(some.holds(needs(3000, 700, 5000)));
        assert!(!some.holds(needs(3000, 700, 7169)));
        assert!(
            !some.holds(Needs {
                slots_v4: u64::from(MIN_SLOTS) + 1,
                ..needs(3000, 700, 5000)
            }),
            "runs count too"
        );
        let all = most.fitting(needs(900_000, 3_000_000, 10));
        assert_eq!(sizes(all), (1_000_000, 2_000_000, 1024));
        let huge = Needs {
            entries: u32::MAX,
            exact_v6: u32::MAX,
            slots_v4: u64::MAX,
            slots_v6: u64::MAX,
            ..needs(u32::MAX, u32::MAX, u32::MAX)
        };
        assert_eq!(most.fitting(huge), most);
        assert!(empty.reserved_bytes(2) < most.reserved_bytes(2) / 5);
    }

    #[test]
    fn reserved_memory_formula() {
        let l = Layout::new(1 << 20).unwrap();
        let cpus = 64;
        let expect = 2 * 16 * (1 << 20)
            + 2 * 1024 * 256
            + 64 * (256 + (1 << 21) + 256 + (1 << 22))
            + 4 * ((8 << 20) + (16 << 20))
            + 24 * ((1 << 20) + 1)
            + 16_384 * (64 + cpus * 16)
            + cpus * 16_384 * 24
            + cpus * 80
            + cpus * 131_072 * 8
            + 512 * 1024
            + 24
            + cpus * 24
            + 128 * 1024
            + 8;
        assert_eq!(l.reserved_bytes(cpus), expect);
    }
}
