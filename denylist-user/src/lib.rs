//! denylist's user space: everything behind the `denylistd` daemon and the
//! `denylist` CLI, which stay thin.

pub mod api;
pub mod auth;
pub mod batch;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod entry;
pub mod error;
pub mod guard;
pub mod import;
pub mod layout;
pub mod metrics;
pub mod object;
pub mod pins;
pub mod proto;
pub mod region;
pub mod server;
pub mod store;
pub mod target;
pub mod trie;
pub mod verdict;
