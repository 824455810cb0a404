//! What both ends of the socket agree on besides the bodies: where the
//! socket is, how large a request may be, and the header that marks a
//! stale read.

/// Where denylistd serves its API and the CLI looks for it.
pub const DEFAULT_SOCKET: &str = "/run/denylist/denylist.sock";

/// Set (to `true`) on a read answered from a fleet node's local copy
/// while the fleet's database is out of reach: the answer may lag what
/// other nodes changed since.
pub const STALE_HEADER: &str = "Denylist-Stale";

/// Requests are bounded; imports stream up to this much (a 1M-line plain
/// list is about 16 MiB).
pub const BODY_LIMIT: usize = 1 << 20;
pub const IMPORT_LIMIT: usize = 256 << 20;
