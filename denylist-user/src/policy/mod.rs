//! Policy: the rules that decide what may be staged, apart from any store
//! or kernel. The guardrails are pure functions of a target and what they
//! are given; `host` reads what they need from this machine; `import` reads
//! the list formats; `feed` holds the presets and the checks a fetched list
//! passes before it is deployed.

pub mod feed;
mod guard;
mod host;
pub mod import;
mod rate;

pub use guard::{GuardContext, Refusal, Warning, check, warnings};
pub use host::{MAX_FILTERED_TARGETS, host_addresses, live_peers, live_sessions};
pub use rate::{RateContext, infrastructure, rate_protection};
