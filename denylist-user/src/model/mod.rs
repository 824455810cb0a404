//! The model: what an entry, a target, a list and a verdict are, with no
//! I/O. Every other layer builds on it; it depends on nothing but
//! `denylist-common` (the kernel's bound on fallback depth).

mod attach;
mod auto;
mod entry;
mod feed;
mod fleet;
mod format;
mod history;
mod listing;
mod target;
mod verdict;

pub use attach::{AttachMode, AttachedMode};
pub use auto::{
    AUTO_ACTOR, AUTO_RATE, AUTO_REPORTS, AutoPolicy, MAX_REPORT_WEIGHT, RECENT_DECISIONS,
    REOFFENCE_WINDOW_MS, RateAction, RateDecision, RateMode, Report, TopSource,
};
pub use entry::{
    DurationError, Entry, Millis, Stored, Ttl, from_ms, now_ms, parse_duration, rfc3339, time_ms,
    to_ms,
};
pub use feed::{CHANGE_FLOOR, FeedInfo, FeedSettings, FeedState, FeedStatus, Held, feed_source};
pub use fleet::{LIVE_MS, NodeReport, NodeState, NodeStatus, OFFLINE_MS, ProtectedSet};
pub use format::{ExportFormat, Format, UnknownFormat};
pub use history::{AuditEvent, AuditFilter, Page, Revision};
pub use listing::{Listing, MANUAL, Sources, is_admin_source};
pub use target::{Target, TargetError, ip_bits, ip_from_bits, normal_ip};
pub use verdict::{Decision, List, Rule, Verdict, decide};
