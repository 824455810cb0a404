//! The contract between the XDP program and user space: map names, the
//! `#[repr(C)]` values stored in them, and the bit layouts both sides read.
//!
//! Every type here has explicit padding fields, so its size and field offsets
//! are the same for `bpfel-unknown-none` and the host, and no byte of a map
//! value is left uninitialised.
#![no_std]

/// Exact IPv4 entries: key `[u8; 4]` (network order), value [`ExactValue`].
pub const MAP_EXACT_V4: &str = "EXACT_V4";
/// Exact IPv6 entries: key `[u8; 16]` (network order), value [`ExactValue`].
pub const MAP_EXACT_V6: &str = "EXACT_V6";
/// IPv4 prefix trie nodes, [`Node`]s in an mmapable array.
pub const MAP_NODES_V4: &str = "NODES_V4";
/// IPv6 prefix trie nodes, [`Node`]s in an mmapable array.
pub const MAP_NODES_V6: &str = "NODES_V6";
/// Prefix rules of both families, [`Rule`]s in an mmapable array.
pub const MAP_RULES: &str = "RULES";
/// Global counters, one [`Counters`] per CPU.
pub const MAP_COUNTERS: &str = "COUNTERS";
/// Per-entry hit counters, direct-mapped: per-CPU array of [`HitSlot`]s,
/// slot `id % HIT_SLOTS`, claimed by the first entry hit there.
pub const MAP_HIT_SLOTS: &str = "HIT_SLOTS";
/// Hit counters of entries whose slot another entry holds: LRU per-CPU
/// hash, key entry id (`u32`), value [`Hit`].
pub const MAP_HITS: &str = "HITS";
/// The XDP program's name in the object.
pub const PROGRAM_NAME: &str = "denylist";

/// Every map of the object: the loader sizes each one.
pub const ALL_MAPS: [&str; 8] = [
    MAP_EXACT_V4,
    MAP_EXACT_V6,
    MAP_NODES_V4,
    MAP_NODES_V6,
    MAP_RULES,
    MAP_COUNTERS,
    MAP_HIT_SLOTS,
    MAP_HITS,
];

/// Slots of the direct-mapped hit table (a power of two). A per-CPU array
/// lookup is inlined by the verifier, where an LRU hash lookup costs about
/// 50 ns a packet here, so busy entries count through this table.
pub const HIT_SLOTS: u32 = 16_384;

/// `Slot::word` / `Rule::word` flag: this slot holds an entry.
pub const FLAG_PRESENT: u64 = 1;
/// The entry is a deny entry in monitor mode (would drop, passes).
pub const FLAG_MONITOR: u64 = 1 << 1;
/// The entry belongs to the allow list.
pub const FLAG_ALLOW: u64 = 1 << 2;
/// The low byte of a word holds flags; the rest is the expiry.
pub const EXPIRY_SHIFT: u32 = 8;

/// Packs flags and an expiry into one 64-bit word.
///
/// `expires_ms` is milliseconds of CLOCK_TAI, 0 for never. Flags and expiry
/// share one aligned word so that user space changes both with a single
/// atomic store: a packet never sees a new mode with an old expiry.
pub const fn pack_word(flags: u64, expires_ms: u64) -> u64 {
    (expires_ms << EXPIRY_SHIFT) | (flags & 0xff)
}

/// The expiry of a word in CLOCK_TAI nanoseconds, 0 for never.
#[inline(always)]
pub const fn word_expiry_ns(word: u64) -> u64 {
    (word >> EXPIRY_SHIFT) * 1_000_000
}

/// One list's half of an exact entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    /// [`pack_word`] of the flags and expiry; 0 when the list has no entry.
    pub word: u64,
    /// The entry id whose [`Hit`] counters go up.
    pub id: u32,
    pub _pad: u32,
}

/// The value of an exact-address map: one address can be on both lists.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExactValue {
    pub deny: Slot,
    pub allow: Slot,
}

/// A trie slot with this bit set points at a child node; otherwise it is a
/// rule index, and 0 means no prefix covers the address.
pub const SLOT_CHILD: u32 = 1 << 31;
/// Slots per trie node: each level consumes one byte of the address.
pub const NODE_SLOTS: usize = 256;
/// The first 256 nodes of each family form the root, indexed by the first
/// address byte; the second byte picks the slot. So the root covers /0–/16.
pub const ROOT_NODES: u32 = 256;

/// One level of the multibit prefix trie.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Node {
    pub slots: [u32; NODE_SLOTS],
}

/// Index 0 of the rules array is never used, so a zero slot means "none".
pub const RULE_NONE: u32 = 0;
/// How many expired ancestors the kernel skips to find a live covering
/// prefix. Deeper fallbacks wait for the daemon's expiry sweep.
pub const MAX_FALLBACK: u32 = 8;

/// A prefix entry (any length below /32 or /128) and its place in the
/// containment tree of its family's prefixes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    /// [`pack_word`] of the flags and expiry.
    pub word: u64,
    /// The entry id whose [`Hit`] counters go up.
    pub id: u32,
    /// The nearest deny prefix strictly covering this one, or [`RULE_NONE`].
    pub up_deny: u32,
    /// The nearest allow prefix strictly covering this one, or [`RULE_NONE`].
    pub up_allow: u32,
    pub _pad: u32,
}

/// Global counters; `passed` counts everything not dropped, so monitored,
/// allowed and unparsable packets are also in `passed`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
    pub passed_packets: u64,
    pub passed_bytes: u64,
    pub monitored_packets: u64,
    pub monitored_bytes: u64,
    pub allowed_packets: u64,
    pub allowed_bytes: u64,
    pub unparsable_packets: u64,
    pub unparsable_bytes: u64,
}

/// Per-entry, per-CPU hit counters. No timestamp: reading a clock on every
/// hit cost 14 ns a packet (BPF_PROG_TEST_RUN, Linux 6.18), a fifth of the
/// whole program, so user space dates hits when it folds the counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hit {
    pub packets: u64,
    pub bytes: u64,
}

/// One slot of the direct-mapped hit table: the entry id holding it (0 for
/// free) and that entry's counters on this CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HitSlot {
    pub id: u32,
    pub _pad: u32,
    pub hit: Hit,
}

/// The session watch (a sock_ops program, object `sessions`): the local
/// ports whose established TCP sessions are reported, as keys (u16, host
/// order) with value 1.
pub const MAP_SESSION_PORTS: &str = "SESSION_PORTS";
/// Ring buffer of [`SessionEvent`]s.
pub const MAP_SESSION_EVENTS: &str = "SESSION_EVENTS";
/// One u64: events the ring buffer had no room for.
pub const MAP_SESSION_LOST: &str = "SESSION_LOST";
pub const SESSION_PROGRAM: &str = "sessions";
/// The global holding the network namespace cookie of the sessions to
/// report (SO_NETNS_COOKIE of a socket of the daemon's).
pub const SESSION_NETNS_GLOBAL: &str = "NETNS_COOKIE";
/// Ports the watch can be given at once.
pub const SESSION_MAX_PORTS: u32 = 64;
/// The ring buffer's size: 26,214 events between two reads (each takes 40
/// bytes: 32 and the ring's 8-byte header).
pub const SESSION_RING_BYTES: u32 = 1024 * 1024;

/// A TCP session on a watched port became established (`up` = 1), or left
/// ESTABLISHED (`up` = 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionEvent {
    /// The socket's cookie, as sock_diag reports it too.
    pub cookie: u64,
    /// The peer's address: the first 4 bytes for AF_INET.
    pub addr: [u8; 16],
    /// The local port, host order.
    pub port: u16,
    /// 4 for IPv4, 6 for IPv6.
    pub family: u8,
    pub up: u8,
    pub _pad: u32,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: each type is #[repr(C)], made only of integers, with explicit
    // padding fields, so every bit pattern is valid and no byte is undefined.
    unsafe impl aya::Pod for super::Slot {}
    unsafe impl aya::Pod for super::ExactValue {}
    unsafe impl aya::Pod for super::Node {}
    unsafe impl aya::Pod for super::Rule {}
    unsafe impl aya::Pod for super::Counters {}
    unsafe impl aya::Pod for super::Hit {}
    unsafe impl aya::Pod for super::HitSlot {}
    unsafe impl aya::Pod for super::SessionEvent {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, size_of};

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<Slot>(), 16);
        assert_eq!(size_of::<ExactValue>(), 32);
        assert_eq!(size_of::<Rule>(), 24);
        assert_eq!(align_of::<Rule>(), 8);
        assert_eq!(size_of::<Node>(), 1024);
        assert_eq!(size_of::<Counters>(), 80);
        assert_eq!(size_of::<Hit>(), 16);
        assert_eq!(size_of::<HitSlot>(), 24);
        assert_eq!(size_of::<SessionEvent>(), 32);
        assert!(HIT_SLOTS.is_power_of_two());
    }

    #[test]
    fn word_round_trips_flags_and_expiry() {
        let w = pack_word(FLAG_PRESENT | FLAG_MONITOR, 1_700_000_000_123);
        assert_eq!(w & 0xff, FLAG_PRESENT | FLAG_MONITOR);
        assert_eq!(word_expiry_ns(w), 1_700_000_000_123 * 1_000_000);
        assert_eq!(word_expiry_ns(pack_word(FLAG_PRESENT, 0)), 0);
    }
}
