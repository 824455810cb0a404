//! What both ends of the socket agree on besides the bodies: where the
//! socket is and how large a request may be.

/// Where denylistd serves its API and the CLI looks for it.
pub const DEFAULT_SOCKET: &str = "/run/denylist/denylist.sock";

/// Requests are bounded; imports stream up to this much (a 1M-line plain
/// list is about 16 MiB).
pub const BODY_LIMIT: usize = 1 << 20;
pub const IMPORT_LIMIT: usize = 256 << 20;
