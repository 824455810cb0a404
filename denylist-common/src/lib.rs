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
/// The IPv4 prefix trie's root: 256 [`RootRow`]s in an mmapable array.
pub const MAP_ROOT_V4: &str = "ROOT_V4";
/// The IPv6 prefix trie's root: 256 [`RootRow`]s in an mmapable array.
pub const MAP_ROOT_V6: &str = "ROOT_V6";
/// IPv4 trie nodes below the root, compressed [`Node`]s in an mmapable
/// array, indexed by node id (ids below [`ROOT_NODES`] are the root rows).
pub const MAP_NODES_V4: &str = "NODES_V4";
/// IPv6 trie nodes below the root, as [`MAP_NODES_V4`].
pub const MAP_NODES_V6: &str = "NODES_V6";
/// The slot values of the IPv4 nodes' runs, in an mmapable array of
/// [`SlotPair`]s: slot `i` is `SLOTS[i / 2][i % 2]`. An array's elements
/// are 8-byte aligned (round_up(value_size, 8), kernel/bpf/arraymap.c), so
/// single `u32`s would take 8 bytes each.
pub const MAP_SLOTS_V4: &str = "SLOTS_V4";
/// The slot values of the IPv6 nodes' runs, as [`MAP_SLOTS_V4`].
pub const MAP_SLOTS_V6: &str = "SLOTS_V6";
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
/// Whether words marked [`FLAG_PENDING`] are live: one `u64` in an
/// mmapable array, 0 (closed) or 1 (open).
pub const MAP_GATE: &str = "GATE";
/// The XDP program's name in the object.
pub const PROGRAM_NAME: &str = "denylist";

/// Every map of the object: the loader sizes each one.
pub const ALL_MAPS: [&str; 18] = [
    MAP_EXACT_V4,
    MAP_EXACT_V6,
    MAP_ROOT_V4,
    MAP_ROOT_V6,
    MAP_NODES_V4,
    MAP_NODES_V6,
    MAP_SLOTS_V4,
    MAP_SLOTS_V6,
    MAP_RULES,
    MAP_COUNTERS,
    MAP_HIT_SLOTS,
    MAP_HITS,
    MAP_DETECT,
    MAP_SKETCH,
    MAP_DETECT_EVENTS,
    MAP_DETECT_STATS,
    MAP_DETECT_SEEN,
    MAP_GATE,
];

/// The rate detector's maps: its memory, fixed whatever the traffic.
pub const DETECTOR_MAPS: [&str; 5] = [
    MAP_DETECT,
    MAP_SKETCH,
    MAP_DETECT_EVENTS,
    MAP_DETECT_STATS,
    MAP_DETECT_SEEN,
];

/// The maps of the prefix structure, `ALL_MAPS[2..9]`: the tries of both
/// families and the rules their slots name.
pub const PREFIX_MAPS: &[&str] = ALL_MAPS.split_at(2).1.split_at(7).0;

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
/// The entry is written ahead of its deploy: live only while the gate
/// ([`MAP_GATE`]) is open, and [`FLAG_PRESENT`] is then clear. One store to
/// the gate makes a whole set of such entries live at once.
pub const FLAG_PENDING: u64 = 1 << 3;
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

/// The value of an exact-address map: one address can be on both lists.
///
/// 24 bytes, the words first so nothing pads: a hash element is a 48-byte
/// header, the key padded to 8 bytes and this value, and each byte of it
/// counts a million times at a million entries.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExactValue {
    /// [`pack_word`] of the deny entry's flags and expiry; 0 for none.
    pub deny: u64,
    /// [`pack_word`] of the allow entry's flags and expiry; 0 for none.
    pub allow: u64,
    /// The deny entry's id, whose [`Hit`] counters go up.
    pub deny_id: u32,
    /// The allow entry's id.
    pub allow_id: u32,
}

impl ExactValue {
    /// One list's word and id, `(0, 0)` when the address is not on it.
    pub fn get(&self, allow: bool) -> (u64, u32) {
        if allow {
            (self.allow, self.allow_id)
        } else {
            (self.deny, self.deny_id)
        }
    }

    /// Sets one list's word and id; `(0, 0)` takes the address off it.
    pub fn set(&mut self, allow: bool, word: u64, id: u32) {
        if allow {
            (self.allow, self.allow_id) = (word, id);
        } else {
            (self.deny, self.deny_id) = (word, id);
        }
    }
}

/// A trie slot with this bit set points at a child node; otherwise it is a
/// rule index, and 0 means no prefix covers the address.
pub const SLOT_CHILD: u32 = 1 << 31;
/// Slots per trie node: each level consumes one byte of the address.
pub const NODE_SLOTS: usize = 256;
/// The root is 256 rows of 256 slots, indexed by the first address byte and
/// then the second, so it covers /0–/16 in one read. Node ids below this
/// name root rows; ids from it on name compressed [`Node`]s.
pub const ROOT_NODES: u32 = 256;

/// Two run slots: one element of a `SLOTS` array.
pub type SlotPair = [u32; 2];

/// Run slots in one element of a `SLOTS` array.
pub const SLOTS_PER_PAIR: usize = core::mem::size_of::<SlotPair>() / core::mem::size_of::<u32>();

/// One row of the root: uncompressed, because every lookup reads it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RootRow {
    pub slots: [u32; NODE_SLOTS],
}

/// Runs a [`Node`] holds in itself; a node with more keeps them in its
/// family's `SLOTS` array.
pub const INLINE_RUNS: usize = 5;
/// [`Node::base`] of a node whose runs are in [`Node::inline`].
pub const BASE_INLINE: u32 = u32::MAX;
/// [`Node::before`] of an inline node where it has fewer runs: above every
/// slot.
pub const NO_START: u8 = u8::MAX;

/// A trie node below the root: 256 logical slots stored as runs.
///
/// Slots hold the most specific rule covering them (leaf pushing), so
/// neighbours mostly agree: a node holding one /24 has three runs: the
/// idea of Poptrie (Asai & Ohara, SIGCOMM 2015), at 8 bits a level. A plain
/// node of 256 slots took 1 KiB; this one is 64 bytes, one cache line.
///
/// Up to [`INLINE_RUNS`] runs sit in `inline`, and `before` holds where
/// runs 1 to 4 start, less one ([`NO_START`] for runs the node lacks): slot
/// `b` is run `#{i: before[i] < b}`, four independent compares
/// ([`inline_index`]). Most nodes are of this kind. Their `bits` hold a
/// shortcut instead ([`Skip`]), or zeros.
///
/// A node with more runs keeps them in `SLOTS[base..]`. Bit `b` of `bits`
/// is set where slot `b` starts a run (its value differs from slot
/// `b − 1`'s; bit 0 is always set), `before[w]` counts the runs starting
/// in the words before word `w`, and slot `b` is run
/// `before[b / 64] + popcount(bits[b / 64] & mask(0..=b % 64)) − 1`
/// ([`run_index`]).
///
/// A node of more than [`PLAIN_ABOVE`] runs takes a block of 256 slots
/// anyway (the largest class of blocks), so it keeps all 256 slots there,
/// `plain` is 1, and slot `b` is `SLOTS[base + b]`: no popcount. Dense
/// nodes are few, and every walk through them gets cheaper.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Node {
    pub bits: [u64; 4],
    /// Index in the family's `SLOTS` array of the node's first run, or
    /// [`BASE_INLINE`].
    pub base: u32,
    pub before: [u8; 4],
    pub inline: [u32; INLINE_RUNS],
    pub plain: u32,
}

/// The most runs a node keeps as runs; one with more keeps its 256 slots.
pub const PLAIN_ABOVE: usize = 192;

impl Node {
    /// How many runs the node has, of either kind.
    pub fn runs(&self) -> u32 {
        if self.plain != 0 {
            NODE_SLOTS as u32
        } else if self.base == BASE_INLINE {
            1 + self.before.iter().filter(|&&b| b != NO_START).count() as u32
        } else {
            self.bits.iter().map(|w| w.count_ones()).sum()
        }
    }
}

/// Where an inline IPv6 node keeps its shortcut, as indices of
/// [`Node::bits`]: the bytes to match, left-aligned; their mask; the slot
/// reached (low half) and the rule on a mismatch (high half); and how many
/// bytes it consumes, 0 for none.
pub const SKIP_KEY: usize = 0;
pub const SKIP_MASK: usize = 1;
pub const SKIP_ENDS: usize = 2;
pub const SKIP_BYTES: usize = 3;

/// A shortcut over a chain of IPv6 trie levels.
///
/// Random IPv6 prefixes are sparse: under the root, a /64 usually sits at
/// the end of a chain of six nodes, each with one child slot and every
/// other slot holding one rule (the covering prefix, or none). The walk
/// would read all six. Path compression, as in PATRICIA (Morrison, JACM
/// 1968), lets the chain's first node say: the next `bytes` address bytes
/// must equal `key`; then the walk goes on at slot `to`, bytes further
/// down, and otherwise it ends at `miss`, the one rule all the chain's
/// other slots hold. The chain's nodes stay in place, so a skip is only a
/// faster way to the slot the walk reaches anyway. A skip stays within one
/// 64-bit half of the address, where the program holds the bytes in one
/// register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Skip {
    pub key: u64,
    pub bytes: u32,
    pub to: u32,
    pub miss: u32,
}

impl Skip {
    /// The node's `bits` that hold this skip.
    pub fn to_bits(self) -> [u64; 4] {
        let mut w = [0; 4];
        w[SKIP_KEY] = self.key;
        w[SKIP_MASK] = u64::MAX << (64 - 8 * self.bytes);
        w[SKIP_ENDS] = u64::from(self.to) | u64::from(self.miss) << 32;
        w[SKIP_BYTES] = u64::from(self.bytes);
        w
    }

    /// The skip an inline node's `bits` hold, if any.
    pub fn of(node: &Node) -> Option<Self> {
        let w = node.bits;
        (node.base == BASE_INLINE && w[SKIP_BYTES] != 0).then_some(Self {
            key: w[SKIP_KEY],
            bytes: w[SKIP_BYTES] as u32,
            to: w[SKIP_ENDS] as u32,
            miss: (w[SKIP_ENDS] >> 32) as u32,
        })
    }
}

/// Slot `byte`'s place in its node's runs, from 0, for a node whose runs
/// are in `SLOTS`.
#[inline(always)]
pub fn run_index(node: &Node, byte: u8) -> u32 {
    let w = usize::from(byte >> 6);
    let below = node.bits[w] & (u64::MAX >> (63 - (byte & 63)));
    // eBPF has no popcount instruction; LLVM expands this into the
    // shift-and-mask sum, a dozen dependent ALU instructions.
    (u32::from(node.before[w]) + below.count_ones()).wrapping_sub(1)
}

/// Slot `byte`'s place in an inline node's runs: how many of runs 1–4
/// start at or before it. The compares are arithmetic (the sign of a
/// difference), since eBPF has no set-on-compare, and independent, so they
/// take a few cycles where the popcount's chain takes a dozen.
#[inline(always)]
pub fn inline_index(node: &Node, byte: u8) -> u32 {
    let b = i32::from(byte);
    let below = |s: u8| (((i32::from(s) - b) >> 31) & 1) as u32;
    below(node.before[0]) + below(node.before[1]) + below(node.before[2]) + below(node.before[3])
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

/// The rate detector's settings: one [`DetectConfig`] in an mmapable
/// array, written by the daemon.
pub const MAP_DETECT: &str = "DETECT";
/// The rate detector's count-min sketches: an mmapable array of
/// [`Cell`]s, [`SKETCH_CELLS`] per CPU ([`sketch_cell`]).
pub const MAP_SKETCH: &str = "SKETCH";
/// Ring buffer of [`DetectEvent`]s: sources whose count crossed a level.
pub const MAP_DETECT_EVENTS: &str = "DETECT_EVENTS";
/// One [`DetectStats`] per CPU.
pub const MAP_DETECT_STATS: &str = "DETECT_STATS";
/// Which sources were reported this epoch, over every CPU: an mmapable
/// array of [`SEEN_WORDS`] bit words ([`seen_bit`]).
pub const MAP_DETECT_SEEN: &str = "DETECT_SEEN";

/// Rows of a sketch: independent hashes, the estimate is the least.
pub const SKETCH_ROWS: u32 = 2;
/// log2 of the cells in a row.
pub const SKETCH_BITS: u32 = 15;
/// Cells in a row.
pub const SKETCH_WIDTH: u32 = 1 << SKETCH_BITS;
/// Cells per CPU: two halves (even and odd epochs) of [`SKETCH_ROWS`]
/// rows, so that the epoch just ended stays whole while the next fills.
pub const SKETCH_CELLS: u32 = 2 * SKETCH_ROWS * SKETCH_WIDTH;
/// The ring buffer's size: 16,384 events of 24 bytes and the ring's
/// 8-byte header between two reads.
pub const DETECT_RING_BYTES: u32 = 512 * 1024;

/// Odd multipliers of the rows' multiply-shift hashes (Dietzfelbinger
/// et al. 1997): the top [`SKETCH_BITS`] bits of `key × A` are a
/// universal hash of a 64-bit key.
const SKETCH_MULTIPLIERS: [u64; SKETCH_ROWS as usize] =
    [0x9e37_79b9_7f4a_7c15, 0xc2b2_ae3d_27d4_eb4f];

/// log2 of the bits of one reported-set: there is one per epoch parity
/// and level. Sixty-four times the 4,096 events a level may send in an
/// epoch keeps a source's chance of sharing its bit with one reported
/// before it (and so of waiting for the next epoch) under 1/64 at that
/// cap, and under 1/5,000 with fifty reports; the salt changes with the
/// epoch, so no two sources share a bit epoch after epoch.
pub const SEEN_BITS: u32 = 18;
/// Words of [`MAP_DETECT_SEEN`]: four sets (two parities, two levels).
pub const SEEN_WORDS: u32 = 4 << (SEEN_BITS - 6);
/// Words of one parity's two sets, which the daemon zeroes together.
pub const SEEN_HALF_WORDS: u32 = SEEN_WORDS / 2;

/// The bit in [`MAP_DETECT_SEEN`] that says `key` was reported at the
/// blocking level (`block`) or the watch level in `epoch`: a
/// multiply-shift hash of the key salted by the epoch, in the set of the
/// epoch's parity and the level.
#[inline(always)]
pub const fn seen_bit(epoch: u32, block: bool, key: u64) -> u32 {
    let salted = key ^ (epoch as u64).wrapping_mul(SKETCH_MULTIPLIERS[1]);
    let bit = (salted.wrapping_mul(SKETCH_MULTIPLIERS[0]) >> (64 - SEEN_BITS)) as u32;
    (((epoch & 1) * 2 + block as u32) << SEEN_BITS) | bit
}

/// The detector's key of an IPv4 source: its address under a tag no
/// IPv6 source carries (ffff:ffff::/32 is multicast, never a source).
#[inline(always)]
pub const fn source_key_v4(addr: [u8; 4]) -> u64 {
    0xffff_ffff_0000_0000 | u32::from_be_bytes(addr) as u64
}

/// The detector's key of an IPv6 source: its /64, since one host holds
/// a whole /64 and would otherwise spread its count over 2^64 keys.
#[inline(always)]
pub const fn source_key_v6(addr: &[u8; 16]) -> u64 {
    source_key_v6_high(u64::from_be_bytes([
        addr[0], addr[1], addr[2], addr[3], addr[4], addr[5], addr[6], addr[7],
    ]))
}

/// [`source_key_v6`] of an address whose first eight bytes, big-endian,
/// are `high`: the XDP program has them in a register.
#[inline(always)]
pub const fn source_key_v6_high(high: u64) -> u64 {
    high
}

/// The index in [`MAP_SKETCH`] of `key`'s cell in row `row` of CPU
/// `cpu`'s sketch for epochs of parity `half`.
#[inline(always)]
pub const fn sketch_cell(cpu: u32, half: u32, row: u32, key: u64) -> u32 {
    let column = (key.wrapping_mul(SKETCH_MULTIPLIERS[row as usize]) >> (64 - SKETCH_BITS)) as u32;
    cpu * SKETCH_CELLS + (half * SKETCH_ROWS + row) * SKETCH_WIDTH + column
}

/// The detector's settings. Levels are per CPU and per epoch: a source
/// whose least cell reaches one is reported. 0 turns a level off; a zero
/// `block` turns the detector off.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DetectConfig {
    /// Counts from 0, one a second; its low bit picks the sketch half.
    pub epoch: u32,
    /// Packets: the blocking threshold ÷ CPUs.
    pub block: u32,
    /// Packets: a lower level, so that `top` sees sources below the
    /// threshold.
    pub watch: u32,
    /// Events each CPU may send in an epoch at the watch level; crossings
    /// of the blocking levels have [`DetectConfig::events`] of their own,
    /// so a flood of watched sources cannot hide an offender.
    pub watch_events: u32,
    /// Events each CPU may send in an epoch at the blocking levels.
    pub events: u32,
    /// Bytes: the bits-per-second threshold ÷ 8 ÷ CPUs, 0 for none.
    pub block_bytes: u32,
}

/// One sketch cell: what the sources hashed to it sent in an epoch, on
/// one CPU. Bytes wrap at 4 GiB, 34 Gbit/s through one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cell {
    pub packets: u32,
    pub bytes: u32,
}

/// A source crossed a level on one CPU: the daemon sums its cells over
/// every CPU before it decides.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DetectEvent {
    pub key: u64,
    pub epoch: u32,
    /// 1 for a blocking level, 0 for the watch level.
    pub block: u32,
    /// The source's estimate on this CPU when it crossed.
    pub packets: u32,
    pub _pad: u32,
}

/// Per-CPU bookkeeping of the detector's events.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DetectStats {
    /// The epoch `sent` and `watched` count in.
    pub epoch: u32,
    pub sent: u32,
    pub watched: u32,
    pub _pad: u32,
    /// Events over a cap or with no room in the ring buffer.
    pub dropped: u64,
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
    unsafe impl aya::Pod for super::ExactValue {}
    unsafe impl aya::Pod for super::RootRow {}
    unsafe impl aya::Pod for super::Node {}
    unsafe impl aya::Pod for super::Rule {}
    unsafe impl aya::Pod for super::Counters {}
    unsafe impl aya::Pod for super::Hit {}
    unsafe impl aya::Pod for super::HitSlot {}
    unsafe impl aya::Pod for super::SessionEvent {}
    unsafe impl aya::Pod for super::DetectConfig {}
    unsafe impl aya::Pod for super::Cell {}
    unsafe impl aya::Pod for super::DetectEvent {}
    unsafe impl aya::Pod for super::DetectStats {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, size_of};

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<ExactValue>(), 24);
        assert_eq!(size_of::<Rule>(), 24);
        assert_eq!(align_of::<Rule>(), 8);
        assert_eq!(size_of::<RootRow>(), 1024);
        assert_eq!(size_of::<Node>(), 64, "one cache line");
        assert_eq!(align_of::<Node>(), 8);
        assert_eq!(size_of::<Counters>(), 80);
        assert_eq!(size_of::<Hit>(), 16);
        assert_eq!(size_of::<HitSlot>(), 24);
        assert_eq!(size_of::<SessionEvent>(), 32);
        assert_eq!(size_of::<DetectConfig>(), 24);
        assert_eq!(size_of::<Cell>(), 8);
        assert_eq!(size_of::<DetectEvent>(), 24);
        assert_eq!(size_of::<DetectStats>(), 24);
        assert!(HIT_SLOTS.is_power_of_two());
    }

    #[test]
    fn run_index_counts_the_runs_started_at_or_before_a_slot() {
        // Runs start at slots 0, 63, 64, 200 and 255.
        let node = Node {
            bits: [1 | 1 << 63, 1, 0, 1 << (200 - 192) | 1 << 63],
            base: 7,
            before: [0, 2, 3, 3],
            inline: [0; INLINE_RUNS],
            plain: 0,
        };
        let runs: [(u8, u32); 9] = [
            (0, 0),
            (62, 0),
            (63, 1),
            (64, 2),
            (130, 2),
            (199, 2),
            (200, 3),
            (254, 3),
            (255, 4),
        ];
        for (byte, run) in runs {
            assert_eq!(run_index(&node, byte), run, "slot {byte}");
        }
    }

    #[test]
    fn a_skip_reads_back_from_the_bits_it_writes() {
        let skip = Skip {
            key: 0x0002_0000_0007 << 16,
            bytes: 6,
            to: 9,
            miss: 4,
        };
        let node = Node {
            bits: skip.to_bits(),
            base: BASE_INLINE,
            before: [1, 2, NO_START, NO_START],
            ..Node::default()
        };
        assert_eq!(Skip::of(&node), Some(skip));
        assert_eq!(node.bits[SKIP_MASK], 0xffff_ffff_ffff_0000);
        assert_eq!(node.runs(), 3);
        let plain = Node {
            base: BASE_INLINE,
            before: [1, 2, NO_START, NO_START],
            ..Node::default()
        };
        assert_eq!(Skip::of(&plain), None);
    }

    #[test]
    fn inline_index_counts_the_runs_started_at_or_before_a_slot() {
        // Runs start at slots 0, 1, 200 and 255: `before` holds 0, 199
        // and 254, and no fourth.
        let node = Node {
            base: BASE_INLINE,
            before: [0, 199, 254, NO_START],
            ..Node::default()
        };
        let runs: [(u8, u32); 7] = [
            (0, 0),
            (1, 1),
            (2, 1),
            (199, 1),
            (200, 2),
            (254, 2),
            (255, 3),
        ];
        for (byte, run) in runs {
            assert_eq!(inline_index(&node, byte), run, "slot {byte}");
        }
    }

    #[test]
    fn seen_bits_stay_in_their_parity_and_level() {
        for epoch in [0, 1, 2, 7, u32::MAX] {
            for block in [false, true] {
                for key in [0, u64::MAX, source_key_v4([192, 0, 2, 1])] {
                    let set = ((epoch & 1) * 2 + u32::from(block)) << SEEN_BITS;
                    let bit = seen_bit(epoch, block, key);
                    assert!((set..set + (1 << SEEN_BITS)).contains(&bit));
                    assert!(bit >> 6 < SEEN_WORDS);
                }
            }
        }
        // The salt moves a source's bit from one epoch to the next.
        let key = source_key_v4([192, 0, 2, 1]);
        assert_ne!(
            seen_bit(2, true, key) & ((1 << SEEN_BITS) - 1),
            seen_bit(4, true, key) & ((1 << SEEN_BITS) - 1)
        );
    }

    #[test]
    fn sketch_cells_stay_in_their_cpu_half_and_row() {
        for key in [0, 1, u64::MAX, source_key_v4([192, 0, 2, 1])] {
            for row in 0..SKETCH_ROWS {
                let c = sketch_cell(3, 1, row, key);
                let start = 3 * SKETCH_CELLS + (SKETCH_ROWS + row) * SKETCH_WIDTH;
                assert!(
                    (start..start + SKETCH_WIDTH).contains(&c),
                    "key {key} row {row}"
                );
            }
        }
        assert_ne!(
            sketch_cell(0, 0, 0, source_key_v4([192, 0, 2, 1])),
            sketch_cell(0, 0, 0, source_key_v4([192, 0, 2, 2])),
        );
        assert_eq!(
            source_key_v6(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 1, 9, 9, 9, 9, 9, 9, 9, 9]),
            0x2001_0db8_0000_0001
        );
    }

    #[test]
    fn word_round_trips_flags_and_expiry() {
        let w = pack_word(FLAG_PRESENT | FLAG_MONITOR, 1_700_000_000_123);
        assert_eq!(w & 0xff, FLAG_PRESENT | FLAG_MONITOR);
        assert_eq!(word_expiry_ns(w), 1_700_000_000_123 * 1_000_000);
        assert_eq!(word_expiry_ns(pack_word(FLAG_PRESENT, 0)), 0);
    }
}
