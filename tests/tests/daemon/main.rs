//! denylistd end to end: a real daemon in a network namespace, real
//! traffic, restarts and crashes, and the store and kernel read back.

mod authorization;
mod capacity;
mod common;
mod deploy;
mod expiry;
mod interfaces;
mod logs;
mod notify;
mod rate;
mod repair;
mod restarts;
mod ssh;
mod stats;
