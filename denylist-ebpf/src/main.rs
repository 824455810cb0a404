//! The `denylist` XDP program: finds a frame's source address and applies the
//! verdict function (docs/dataplane.md):
//!
//! 1. an expired entry is absent; the next most specific covering entry decides;
//! 2. any live allow entry covering the source: pass, counted as allowed;
//! 3. else the most specific live deny entry: drop, or monitor (passes);
//! 4. else pass.
//!
//! Exact addresses (/32, /128) live in hash maps; shorter prefixes in a
//! multibit trie (8 bits a level, the root covering /0–/16, the levels below
//! stored as runs) whose slots name the most specific prefix covering them.
//! Nothing here logs per packet.
//!
//! The rate detector counts every source the verdict does not allow in
//! per-CPU count-min sketches (docs/autoblock.md), with no clock read: the
//! daemon advances an epoch number once a second.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_F_NO_PREALLOC, BPF_NOEXIST, xdp_action},
    helpers::generated::{bpf_get_smp_processor_id, bpf_ktime_get_tai_ns, bpf_xdp_get_buff_len},
    macros::{map, xdp},
    maps::{Array, HashMap, LruPerCpuHashMap, PerCpuArray, RingBuf},
    programs::XdpContext,
};
use denylist_common::{
    BASE_INLINE, Cell, Counters, DETECT_RING_BYTES, DetectConfig, DetectEvent, DetectStats,
    ExactValue, FLAG_ALLOW, FLAG_MONITOR, FLAG_PENDING, FLAG_PRESENT, HIT_SLOTS, Hit, HitSlot,
    MAX_FALLBACK, Node, ROOT_NODES, RULE_NONE, RootRow, Rule, SEEN_WORDS, SKIP_BYTES, SKIP_ENDS,
    SKIP_KEY, SKIP_MASK, SLOT_CHILD, SlotPair, inline_index, run_index, seen_bit, sketch_cell,
    source_key_v4, source_key_v6_high, word_expiry_ns,
};

// Sizes here are placeholders: the loader sets every max_entries from the
// configured capacity (denylist-user's layout module).
#[map(name = "EXACT_V4")]
static EXACT_V4: HashMap<[u8; 4], ExactValue> = HashMap::with_max_entries(1, BPF_F_NO_PREALLOC);
#[map(name = "EXACT_V6")]
static EXACT_V6: HashMap<[u8; 16], ExactValue> = HashMap::with_max_entries(1, BPF_F_NO_PREALLOC);
#[map(name = "ROOT_V4")]
static ROOT_V4: Array<RootRow> = Array::with_max_entries(ROOT_NODES, BPF_F_MMAPABLE);
#[map(name = "ROOT_V6")]
static ROOT_V6: Array<RootRow> = Array::with_max_entries(ROOT_NODES, BPF_F_MMAPABLE);
#[map(name = "NODES_V4")]
static NODES_V4: Array<Node> = Array::with_max_entries(1, BPF_F_MMAPABLE);
#[map(name = "NODES_V6")]
static NODES_V6: Array<Node> = Array::with_max_entries(1, BPF_F_MMAPABLE);
#[map(name = "SLOTS_V4")]
static SLOTS_V4: Array<SlotPair> = Array::with_max_entries(1, BPF_F_MMAPABLE);
#[map(name = "SLOTS_V6")]
static SLOTS_V6: Array<SlotPair> = Array::with_max_entries(1, BPF_F_MMAPABLE);
#[map(name = "RULES")]
static RULES: Array<Rule> = Array::with_max_entries(1, BPF_F_MMAPABLE);
#[map(name = "COUNTERS")]
static COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(1, 0);
#[map(name = "HIT_SLOTS")]
static HIT_SLOT_TABLE: PerCpuArray<HitSlot> = PerCpuArray::with_max_entries(HIT_SLOTS, 0);
#[map(name = "HITS")]
static HITS: LruPerCpuHashMap<u32, Hit> = LruPerCpuHashMap::with_max_entries(1, 0);
#[map(name = "DETECT")]
static DETECT: Array<DetectConfig> = Array::with_max_entries(1, BPF_F_MMAPABLE);
#[map(name = "SKETCH")]
static SKETCH: Array<Cell> = Array::with_max_entries(1, BPF_F_MMAPABLE);
#[map(name = "DETECT_EVENTS")]
static DETECT_EVENTS: RingBuf = RingBuf::with_byte_size(DETECT_RING_BYTES, 0);
#[map(name = "DETECT_STATS")]
static DETECT_STATS: PerCpuArray<DetectStats> = PerCpuArray::with_max_entries(1, 0);
#[map(name = "DETECT_SEEN")]
static DETECT_SEEN: Array<u64> = Array::with_max_entries(SEEN_WORDS, BPF_F_MMAPABLE);
#[map(name = "GATE")]
static GATE: Array<u64> = Array::with_max_entries(1, BPF_F_MMAPABLE);

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
const VLAN_HLEN: usize = 4;
const IPV4_MIN_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
/// The longest frame that fits one buffer of a standard 1500-byte MTU:
/// the payload under an Ethernet header and two VLAN tags.
const STANDARD_FRAME: usize = ETH_HLEN + 2 * VLAN_HLEN + 1500;

#[derive(Clone, Copy)]
enum Verdict {
    Pass,
    Drop,
    Monitor,
    Allowed,
    Unparsable,
}

/// CLOCK_TAI, read at most once per packet and only when an entry needs it.
struct Now(u64);

impl Now {
    #[inline(always)]
    fn get(&mut self) -> u64 {
        if self.0 == 0 {
            // SAFETY: a helper without arguments.
            self.0 = unsafe { bpf_ktime_get_tai_ns() };
        }
        self.0
    }

    #[inline(always)]
    fn live(&mut self, word: u64) -> bool {
        word & FLAG_PRESENT != 0 && self.unexpired(word)
    }

    /// A word of an exact entry: also live when it is pending (written
    /// ahead of its deploy) and `gate` says the gate was open.
    #[inline(always)]
    fn live_exact(&mut self, word: u64, gate: bool) -> bool {
        (word & FLAG_PRESENT != 0 || (gate && word & FLAG_PENDING != 0)) && self.unexpired(word)
    }

    #[inline(always)]
    fn unexpired(&mut self, word: u64) -> bool {
        let expires = word_expiry_ns(word);
        expires == 0 || self.get() < expires
    }
}

/// Whether the pending words of `exact` are live for this packet. Read
/// right after the exact lookup and before the trie walk: the deploy that
/// opens the gate published its allow prefixes before, so a packet that
/// finds the gate open then finds them too, and never a pending deny
/// without the allow prefix of the same deploy over it. Only an entry
/// with a pending word costs the read.
#[inline(always)]
fn gate_for(exact: Option<&ExactValue>) -> bool {
    exact.is_some_and(|e| (e.deny | e.allow) & FLAG_PENDING != 0)
        && GATE.get(0).is_some_and(|g| *g != 0)
}

// The body is inlined into the function the macro wraps it in: as a
// BPF-to-BPF call it cost 7–9 ns a packet here, a quarter of the program's
// own work (the JIT returns through the return thunk, SRSO's safe RET on
// this AMD CPU).
#[xdp(frags)]
#[inline(always)]
pub fn denylist(ctx: XdpContext) -> u32 {
    let mut now = Now(0);
    let Classified {
        verdict,
        id,
        key,
        claimed,
    } = classify(&ctx, &mut now);
    let len = frame_len(&ctx, claimed);
    count(verdict, len);
    if id != 0 {
        hit(id, len);
    }
    // Allowed sources are not counted: allow entries are never blocked.
    if matches!(verdict, Verdict::Pass | Verdict::Drop | Verdict::Monitor) {
        detect(key, len);
    }
    match verdict {
        Verdict::Drop => xdp_action::XDP_DROP,
        _ => xdp_action::XDP_PASS,
    }
}

/// What [`classify`] makes of a frame.
struct Classified {
    verdict: Verdict,
    /// The deciding entry's id, 0 for none.
    id: u32,
    /// The detector's key of the source.
    key: u64,
    /// Where the frame ends by its IP header's length field, counted from
    /// its start; 0 when it has no IP header.
    claimed: usize,
}

impl Classified {
    #[inline(always)]
    fn new((verdict, id): (Verdict, u32), key: u64, claimed: usize) -> Self {
        Self {
            verdict,
            id,
            key,
            claimed,
        }
    }

    const UNPARSABLE: Self = Self {
        verdict: Verdict::Unparsable,
        id: 0,
        key: 0,
        claimed: 0,
    };
}

/// The frame's whole length, its fragments included.
///
/// `bpf_xdp_get_buff_len` cost 10 ns a packet here, as much as a hash
/// lookup (a helper call, whose return goes through SRSO's safe RET), so
/// only a frame that may have fragments asks it:
/// - one whose first buffer is longer than a standard frame: a multi-buffer
///   driver fills its first buffer before it adds fragments, and most
///   drivers' first buffers hold 2 KiB or more;
/// - one whose first buffer is shorter than its IP header says, for drivers
///   with smaller first buffers (virtio_net's mergeable buffers can hold as
///   little as GOOD_PACKET_LEN, 1,518 bytes).
///
/// Every other frame is its first buffer, `data_end − data`: a subtraction
/// of two packet pointers, which the verifier allows with CAP_PERFMON
/// (allow_ptr_leaks, in adjust_reg_min_max_vals).
///
/// What this misses: a frame with fragments behind a first buffer no longer
/// than a standard frame, whose IP header understates its length. It counts
/// as its first buffer: the lie lowers only its own source's bytes, and no
/// packet count.
#[inline(always)]
fn frame_len(ctx: &XdpContext, claimed: usize) -> u64 {
    let linear = ctx.data_end() - ctx.data();
    if linear > STANDARD_FRAME || claimed > linear {
        // SAFETY: ctx.ctx is the xdp_md the kernel passed in.
        unsafe { bpf_xdp_get_buff_len(ctx.ctx) }
    } else {
        linear as u64
    }
}

#[inline(always)]
fn classify(ctx: &XdpContext, now: &mut Now) -> Classified {
    let start = ctx.data();
    let end = ctx.data_end();
    let mut off = ETH_HLEN;
    if start + off > end {
        return Classified::UNPARSABLE;
    }
    // SAFETY: bounds checked above; every read below checks its own bounds.
    let mut proto = u16::from_be(unsafe { *((start + 12) as *const u16) });
    // Up to two tags, 802.1Q or 802.1ad in either order: switches disagree
    // on which TPID a QinQ outer tag carries.
    for _ in 0..2 {
        if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
            break;
        }
        if start + off + VLAN_HLEN > end {
            return Classified::UNPARSABLE;
        }
        // SAFETY: bounds checked just above.
        proto = u16::from_be(unsafe { *((start + off + 2) as *const u16) });
        off += VLAN_HLEN;
    }
    match proto {
        ETH_P_IP => {
            if start + off + IPV4_MIN_HLEN > end {
                return Classified::UNPARSABLE;
            }
            // SAFETY: bounds checked just above.
            let vihl = unsafe { *((start + off) as *const u8) };
            let ihl = (vihl & 0x0f) as usize * 4;
            if vihl >> 4 != 4 || ihl < IPV4_MIN_HLEN || start + off + ihl > end {
                return Classified::UNPARSABLE;
            }
            // SAFETY: the 20-byte header is in bounds.
            let claimed = off + usize::from(unsafe { be16(start + off + 2) });
            // SAFETY: as above.
            unsafe { v4(start + off + 12, claimed, now) }
        }
        ETH_P_IPV6 => {
            if start + off + IPV6_HLEN > end {
                return Classified::UNPARSABLE;
            }
            // SAFETY: bounds checked just above.
            let version = unsafe { *((start + off) as *const u8) } >> 4;
            if version != 6 {
                return Classified::UNPARSABLE;
            }
            // SAFETY: the 40-byte header is in bounds.
            let claimed = off + IPV6_HLEN + usize::from(unsafe { be16(start + off + 4) });
            let at = start + off + 8;
            // SAFETY: as above.
            let (hi, lo) = unsafe { (be64(at), be64(at + 8)) };
            // Entries hold IPv4-mapped addresses as IPv4 (::ffff:a.b.c.d is
            // a.b.c.d), so a mapped source is looked up as IPv4.
            if hi == 0 && lo >> 32 == 0xffff {
                // SAFETY: the address's last four bytes, in bounds.
                unsafe { v4(at + 12, claimed, now) }
            } else {
                // SAFETY: the address, in bounds.
                let src = unsafe { &*(at as *const [u8; 16]) };
                Classified::new(decide_v6(src, hi, lo, now), source_key_v6_high(hi), claimed)
            }
        }
        _ => Classified::UNPARSABLE,
    }
}

/// Decides on the IPv4 source at packet address `at`, which the caller
/// has bounds-checked for four bytes.
///
/// The source is read once as a word, and the exact lookup hashes it where
/// it lies: the verifier takes a packet pointer as a map key
/// (check_helper_mem_access accepts PTR_TO_PACKET; loaded here on 6.18),
/// which saves copying it to the stack byte by byte.
#[inline(always)]
unsafe fn v4(at: usize, claimed: usize, now: &mut Now) -> Classified {
    // SAFETY: in bounds, as the caller checked.
    let (src, a) = unsafe { (&*(at as *const [u8; 4]), be32(at)) };
    Classified::new(
        decide_v4(src, a, now),
        source_key_v4(a.to_be_bytes()),
        claimed,
    )
}

/// The big-endian half-word at packet address `p`, bounds-checked by the
/// caller.
#[inline(always)]
unsafe fn be16(p: usize) -> u16 {
    // SAFETY: in bounds, as the caller checked.
    u16::from_be(unsafe { core::ptr::read_unaligned(p as *const u16) })
}

/// The big-endian word at packet address `p`, bounds-checked by the caller.
/// Packet data has no alignment (an IPv6 source sits at offset 22); the
/// verifier allows unaligned packet reads where the CPU does.
#[inline(always)]
unsafe fn be32(p: usize) -> u32 {
    // SAFETY: in bounds, as the caller checked.
    u32::from_be(unsafe { core::ptr::read_unaligned(p as *const u32) })
}

/// As [`be32`], for eight bytes.
#[inline(always)]
unsafe fn be64(p: usize) -> u64 {
    // SAFETY: in bounds, as the caller checked.
    u64::from_be(unsafe { core::ptr::read_unaligned(p as *const u64) })
}

/// `src` is the address in the packet, `a` the same as a word.
#[inline(always)]
fn decide_v4(src: &[u8; 4], a: u32, now: &mut Now) -> (Verdict, u32) {
    // SAFETY: NO_PREALLOC hash elements are freed through RCU, so the value
    // stays valid for this program run even if user space replaces it.
    let exact = unsafe { EXACT_V4.get(src) };
    let gate = gate_for(exact);
    let rule = trie_v4(a);
    decide(exact, gate, rule, now)
}

/// `src` is the address in the packet, `hi` and `lo` its two halves.
#[inline(always)]
fn decide_v6(src: &[u8; 16], hi: u64, lo: u64, now: &mut Now) -> (Verdict, u32) {
    // SAFETY: as in decide_v4.
    let exact = unsafe { EXACT_V6.get(src) };
    let gate = gate_for(exact);
    let rule = trie_v6(hi, lo);
    decide(exact, gate, rule, now)
}

/// Allow anywhere beats deny; an exact deny beats any prefix deny.
#[inline(always)]
fn decide(exact: Option<&ExactValue>, gate: bool, rule: u32, now: &mut Now) -> (Verdict, u32) {
    if let Some(e) = exact
        && now.live_exact(e.allow, gate)
    {
        return (Verdict::Allowed, e.allow_id);
    }
    if let Some(a) = live_prefix(rule, true, now) {
        return (Verdict::Allowed, a.id);
    }
    if let Some(e) = exact
        && now.live_exact(e.deny, gate)
    {
        return deny_verdict(e.deny, e.deny_id);
    }
    if let Some(d) = live_prefix(rule, false, now) {
        return deny_verdict(d.word, d.id);
    }
    (Verdict::Pass, 0)
}

#[inline(always)]
fn deny_verdict(word: u64, id: u32) -> (Verdict, u32) {
    if word & FLAG_MONITOR != 0 {
        (Verdict::Monitor, id)
    } else {
        (Verdict::Drop, id)
    }
}

/// The most specific live prefix of one list covering the address whose most
/// specific prefix of either list is `rule`.
#[inline(always)]
fn live_prefix(rule: u32, allow: bool, now: &mut Now) -> Option<&'static Rule> {
    if rule == RULE_NONE {
        return None;
    }
    let r = RULES.get(rule)?;
    let mut idx = if (r.word & FLAG_ALLOW != 0) == allow {
        rule
    } else if allow {
        r.up_allow
    } else {
        r.up_deny
    };
    for _ in 0..MAX_FALLBACK {
        if idx == RULE_NONE {
            return None;
        }
        let r = RULES.get(idx)?;
        if now.live(r.word) {
            return Some(r);
        }
        idx = if allow { r.up_allow } else { r.up_deny };
    }
    None
}

/// The root slot of the address's first two bytes.
#[inline(always)]
fn root(rows: &Array<RootRow>, a0: u8, a1: u8) -> u32 {
    match rows.get(u32::from(a0)) {
        Some(r) => r.slots[a1 as usize],
        None => RULE_NONE,
    }
}

/// Slot `byte` of the compressed node a child slot points at.
#[inline(always)]
fn slot(nodes: &Array<Node>, slots: &Array<SlotPair>, child: u32, byte: u8) -> u32 {
    match nodes.get(child & !SLOT_CHILD) {
        Some(n) => slot_of(n, slots, byte),
        None => RULE_NONE,
    }
}

/// Slot `byte` of node `n`.
#[inline(always)]
fn slot_of(n: &Node, slots: &Array<SlotPair>, byte: u8) -> u32 {
    if n.base == BASE_INLINE {
        return match n.inline.get(inline_index(n, byte) as usize) {
            Some(s) => *s,
            None => RULE_NONE,
        };
    }
    let run = if n.plain != 0 {
        u32::from(byte)
    } else {
        run_index(n, byte)
    };
    let i = n.base.wrapping_add(run);
    match slots.get(i >> 1) {
        Some(p) => p[(i & 1) as usize],
        None => RULE_NONE,
    }
}

/// Byte `i` of a big-endian word, from the left.
#[inline(always)]
fn byte(w: u64, i: u32) -> u8 {
    (w >> (56 - 8 * i)) as u8
}

#[inline(always)]
fn trie_v4(a: u32) -> u32 {
    let [a0, a1, a2, a3] = a.to_be_bytes();
    let mut s = root(&ROOT_V4, a0, a1);
    if s & SLOT_CHILD != 0 {
        s = slot(&NODES_V4, &SLOTS_V4, s, a2);
        if s & SLOT_CHILD != 0 {
            s = slot(&NODES_V4, &SLOTS_V4, s, a3);
        }
    }
    // A child below the last byte cannot exist; treat a corrupt slot as none.
    if s & SLOT_CHILD != 0 { RULE_NONE } else { s }
}

/// The address's bytes come out of its two halves by shifts, in
/// registers: no byte loads. A node with a shortcut
/// ([`denylist_common::Skip`]) takes the walk down several levels at once,
/// or ends it, with one compare of the next bytes, all in the half the
/// walk is in.
#[inline(always)]
fn trie_v6(hi: u64, lo: u64) -> u32 {
    let mut s = root(&ROOT_V6, byte(hi, 0), byte(hi, 1));
    let mut i: u32 = 2;
    // Each round consumes at least one of the 14 bytes below the root.
    for _ in 2..16 {
        if s & SLOT_CHILD == 0 || i >= 16 {
            break;
        }
        let Some(n) = NODES_V6.get(s & !SLOT_CHILD) else {
            return RULE_NONE;
        };
        // The address from byte i on, left-aligned, within its half.
        let next = if i < 8 {
            hi.wrapping_shl(8 * i)
        } else {
            lo.wrapping_shl(8 * (i - 8))
        };
        if n.base == BASE_INLINE && n.bits[SKIP_BYTES] != 0 {
            let ends = n.bits[SKIP_ENDS];
            if (next ^ n.bits[SKIP_KEY]) & n.bits[SKIP_MASK] != 0 {
                s = (ends >> 32) as u32;
                break;
            }
            s = ends as u32;
            i += n.bits[SKIP_BYTES] as u32;
        } else {
            s = slot_of(n, &SLOTS_V6, (next >> 56) as u8);
            i += 1;
        }
    }
    if s & SLOT_CHILD != 0 { RULE_NONE } else { s }
}

#[inline(always)]
fn count(verdict: Verdict, len: u64) {
    let Some(c) = COUNTERS.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: a per-CPU value, written only by this CPU, so no atomics.
    let c = unsafe { &mut *c };
    match verdict {
        Verdict::Drop => {
            c.dropped_packets += 1;
            c.dropped_bytes += len;
            return;
        }
        Verdict::Pass => {}
        Verdict::Monitor => {
            c.monitored_packets += 1;
            c.monitored_bytes += len;
        }
        Verdict::Allowed => {
            c.allowed_packets += 1;
            c.allowed_bytes += len;
        }
        Verdict::Unparsable => {
            c.unparsable_packets += 1;
            c.unparsable_bytes += len;
        }
    }
    c.passed_packets += 1;
    c.passed_bytes += len;
}

#[inline(always)]
fn hit(id: u32, len: u64) {
    if let Some(s) = HIT_SLOT_TABLE.get_ptr_mut(id & (HIT_SLOTS - 1)) {
        // SAFETY: a per-CPU value, written only by this CPU, so no atomics.
        let s = unsafe { &mut *s };
        if s.id == id || s.id == 0 {
            s.id = id;
            s.hit.packets += 1;
            s.hit.bytes += len;
            return;
        }
    }
    if let Some(h) = HITS.get_ptr_mut(id) {
        // SAFETY: a per-CPU value, written only by this CPU.
        let h = unsafe { &mut *h };
        h.packets += 1;
        h.bytes += len;
    } else {
        // A failed insert (the LRU evicting under pressure) loses one
        // packet's count, never the verdict.
        let _ = HITS.insert(
            id,
            Hit {
                packets: 1,
                bytes: len,
            },
            BPF_NOEXIST as u64,
        );
    }
}

/// Counts a packet of `key` in this CPU's sketch for the current epoch,
/// and reports the source when its estimate crosses a level. Two lookups
/// in an array the verifier inlines, no clock, no per-source state: the
/// memory is fixed whatever the number of sources.
#[inline(always)]
fn detect(key: u64, len: u64) {
    let Some(cfg) = DETECT.get(0) else {
        return;
    };
    if cfg.block == 0 {
        return;
    }
    // SAFETY: a helper without arguments; the verifier inlines it.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let half = cfg.epoch & 1;
    let (Some(a), Some(b)) = (
        SKETCH.get_ptr_mut(sketch_cell(cpu, half, 0, key)),
        SKETCH.get_ptr_mut(sketch_cell(cpu, half, 1, key)),
    ) else {
        return;
    };
    // SAFETY: this CPU's own cells: another CPU never writes them, and the
    // daemon only zeroes the half of the other parity.
    let (a, b) = unsafe { (&mut *a, &mut *b) };
    let len = len as u32;
    let bytes_before = a.bytes.min(b.bytes);
    a.packets = a.packets.wrapping_add(1);
    b.packets = b.packets.wrapping_add(1);
    a.bytes = a.bytes.wrapping_add(len);
    b.bytes = b.bytes.wrapping_add(len);
    // Each of the source's packets adds one to both its cells, so its
    // estimate passes through every count: one crossing per level, CPU
    // and epoch.
    let packets = a.packets.min(b.packets);
    let bytes_crossed = cfg.block_bytes != 0
        && bytes_before < cfg.block_bytes
        && bytes_before.saturating_add(len) >= cfg.block_bytes;
    if packets == cfg.block || bytes_crossed {
        report(cfg, key, packets, true);
    } else if packets == cfg.watch {
        report(cfg, key, packets, false);
    }
}

/// A source's bit in the reported-set of this epoch and level
/// ([`seen_bit`]): its word and mask.
///
/// A source that RSS spreads over the CPUs crosses each CPU's share on
/// every one of them, but the daemon sums all of its cells from one
/// report, so the others would only spend the cap. The word is read and
/// written without an atomic: two CPUs racing on it at worst both report
/// (a duplicate the daemon folds) or clear each other's fresh bit (a
/// second report). An atomic fetch-or would need the v3 instruction set
/// for the whole program.
struct Seen {
    word: *mut u64,
    mask: u64,
}

impl Seen {
    #[inline(always)]
    fn of(cfg: &DetectConfig, key: u64, block: bool) -> Option<Self> {
        let bit = seen_bit(cfg.epoch, block, key);
        let word = DETECT_SEEN.get_ptr_mut(bit >> 6)?;
        Some(Self {
            word,
            mask: 1 << (bit & 63),
        })
    }

    #[inline(always)]
    fn get(&self) -> bool {
        // SAFETY: a word of an array map, valid for the program's run;
        // other CPUs may write it at the same time, as said above.
        unsafe { core::ptr::read_volatile(self.word) & self.mask != 0 }
    }

    #[inline(always)]
    fn set(&self) {
        // SAFETY: as in get.
        unsafe {
            core::ptr::write_volatile(self.word, core::ptr::read_volatile(self.word) | self.mask)
        }
    }
}

#[inline(always)]
fn report(cfg: &DetectConfig, key: u64, packets: u32, block: bool) {
    let seen = Seen::of(cfg, key, block);
    if seen.as_ref().is_some_and(Seen::get) {
        return;
    }
    let Some(s) = DETECT_STATS.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: a per-CPU value, written only by this CPU.
    let s = unsafe { &mut *s };
    if s.epoch != cfg.epoch {
        s.epoch = cfg.epoch;
        s.sent = 0;
        s.watched = 0;
    }
    let (used, cap) = if block {
        (&mut s.sent, cfg.events)
    } else {
        (&mut s.watched, cfg.watch_events)
    };
    if *used >= cap {
        s.dropped += 1;
        return;
    }
    let event = DetectEvent {
        key,
        epoch: cfg.epoch,
        block: u32::from(block),
        packets,
        _pad: 0,
    };
    if DETECT_EVENTS.output::<DetectEvent>(event, 0).is_ok() {
        *used += 1;
        // Only once sent: a CPU over its cap leaves the source to the
        // others.
        if let Some(seen) = seen {
            seen.set();
        }
    } else {
        s.dropped += 1;
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
