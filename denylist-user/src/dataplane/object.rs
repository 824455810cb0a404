//! The compiled eBPF objects, embedded so the two binaries are all an
//! operator installs.

/// The denylist program and its maps.
pub static DENYLIST: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/denylist"));

/// A bare `return XDP_DROP`, the floor every benchmark figure stands beside.
pub static FLOOR: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/floor"));

/// The sock_ops program that reports the SSH guardrail's live sessions.
pub static SESSIONS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sessions"));
