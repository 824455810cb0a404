//! Map sizes from the configured capacity, and the memory they reserve.
//!
//! Capacity counts entries across both lists and both families. Exact
//! addresses live in hash maps created with BPF_F_NO_PREALLOC, so their
//! memory grows with the entries, not the capacity. Prefixes take a rule
//! each (counted against the capacity) plus trie nodes from a per-family
//! pool; docs/dataplane.md explains the formula below.

use denylist_common::{
    ALL_MAPS, Counters, HIT_SLOTS, Hit, HitSlot, MAP_COUNTERS, MAP_EXACT_V4, MAP_EXACT_V6,
    MAP_HIT_SLOTS, MAP_HITS, MAP_NODES_V4, MAP_NODES_V6, MAP_RULES, Node, ROOT_NODES, Rule,
};

/// The smallest useful capacity; also keeps the pools non-empty.
pub const MIN_CAPACITY: u32 = 16;
/// The largest capacity: trie slots address rules with 31 bits.
pub const MAX_CAPACITY: u32 = 1 << 30;
/// Hit counters are kept for at most this many busy entries at once.
pub const MAX_HIT_ENTRIES: u32 = 65_536;

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error(
        "capacity {capacity} is out of range: choose between {MIN_CAPACITY} and {MAX_CAPACITY}"
    )]
    Capacity { capacity: u64 },
}

/// The max_entries of every map for one capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub capacity: u32,
    /// Trie nodes per family beyond the 256 root nodes.
    pub prefix_nodes: u32,
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
            // A /24 or shorter IPv4 prefix needs at most one node below the
            // root and most prefixes share theirs; one node for 16 entries
            // holds 100k real-world prefixes at a 1M capacity.
            prefix_nodes: (capacity / 16).max(1024),
            hit_entries: capacity.clamp(1024, MAX_HIT_ENTRIES),
        })
    }

    /// max_entries for each map, by name.
    pub fn max_entries(&self) -> [(&'static str, u32); ALL_MAPS.len()] {
        let nodes = ROOT_NODES + self.prefix_nodes;
        [
            (MAP_EXACT_V4, self.capacity),
            (MAP_EXACT_V6, self.capacity),
            (MAP_NODES_V4, nodes),
            (MAP_NODES_V6, nodes),
            // Rule 0 means "none", so one more than the capacity.
            (MAP_RULES, self.capacity + 1),
            (MAP_COUNTERS, 1),
            (MAP_HIT_SLOTS, HIT_SLOTS),
            (MAP_HITS, self.hit_entries),
        ]
    }

    /// Kernel memory reserved up front, before any entry, on `cpus` CPUs.
    ///
    /// Hash buckets are 16 bytes, one per max_entries rounded up to a power
    /// of two; arrays are value-size × max_entries; the LRU per-CPU hash
    /// preallocates its elements (about 64 bytes each) plus a 24-byte value
    /// per CPU; the direct-mapped hit table is 16,384 32-byte slots per CPU;
    /// the counters are one 80-byte value per CPU.
    pub fn reserved_bytes(&self, cpus: u64) -> u64 {
        let buckets = 2 * 16 * u64::from(self.capacity).next_power_of_two();
        let nodes =
            2 * size(std::mem::size_of::<Node>()) * u64::from(ROOT_NODES + self.prefix_nodes);
        let rules = size(std::mem::size_of::<Rule>()) * (u64::from(self.capacity) + 1);
        let hits = u64::from(self.hit_entries) * (64 + cpus * size(std::mem::size_of::<Hit>()));
        let slots = cpus * u64::from(HIT_SLOTS) * size(std::mem::size_of::<HitSlot>());
        let counters = cpus * size(std::mem::size_of::<Counters>());
        buckets + nodes + rules + hits + slots + counters
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
        let sizes = l.max_entries();
        assert!(sizes.contains(&(MAP_EXACT_V4, 1_000_000)));
        assert!(sizes.contains(&(MAP_RULES, 1_000_001)));
        assert!(sizes.contains(&(MAP_NODES_V4, 256 + 62_500)));
        assert!(sizes.contains(&(MAP_HITS, MAX_HIT_ENTRIES)));
        assert_eq!(Layout::new(100).unwrap().prefix_nodes, 1024);
    }

    #[test]
    fn reserved_memory_formula() {
        let l = Layout::new(1 << 20).unwrap();
        let cpus = 64;
        let expect = 2 * 16 * (1 << 20)
            + 2 * 1024 * (256 + (1 << 16))
            + 24 * ((1 << 20) + 1)
            + 65_536 * (64 + cpus * 24)
            + cpus * 16_384 * 32
            + cpus * 80;
        assert_eq!(l.reserved_bytes(cpus), expect);
    }
}
