//! Reputation feeds and listings end to end: a real denylistd in a network
//! namespace with the filter on a veth, feeds fetched from a scripted HTTP
//! server in that namespace (and from files), real packets across the
//! veth, and the kernel's maps read back after every fault.

mod common;
mod failures;
mod fetches;
mod held;
mod listings;
mod private;
mod restarts;
mod server;
