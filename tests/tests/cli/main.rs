//! The `denylist` CLI end to end: the real binary against a real denylistd
//! (no interface), one daemon per test, every command and flag of the
//! contract with its exit code, the input rules, the guardrails, the JSON
//! shapes and every import format.
//!
//! Exit codes: 0 success, 1 failure, 2 invalid, 3 guarded, 4 permission
//! denied, 5 not found, 6 conflict.

mod common;
mod errors;
mod fail2ban;
mod guardrails;
mod history;
mod import;
mod input;
mod ops;
mod staging;
