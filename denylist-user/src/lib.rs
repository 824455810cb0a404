//! denylist's user space: everything behind the `denylistd` daemon and the
//! `denylist` CLI, which stay thin.
//!
//! One folder per layer, and imports point down only (docs/architecture.md
//! has the picture; `cargo xtask test` checks every `crate::` path):
//!
//! ```text
//! cli ──────────────► wire ──► model
//! web ──────────────► wire ──► model
//! server ──► daemon ──► policy, store, dataplane ──► model, denylist-common
//! ```
//!
//! - `model`: targets, entries, lists, the verdict function. No I/O.
//! - `wire`: the API's request and response bodies, its errors and limits.
//! - `policy`: guardrails, what they read from this host, import parsers.
//! - `store`: the durable draft, revisions and audit log, behind a trait.
//! - `dataplane`: the XDP program, its maps, pins and links.
//! - `daemon`: the core that owns the store and the filter.
//! - `server`: the HTTP API on the Unix socket, metrics, authorization.
//! - `cli`: the admin CLI and its client.
//! - `web`: the web console `denylist-web`, a client of the API like the CLI.
//!
//! Without the default `daemon` feature only model, wire and cli are built:
//! that is the CLI alone, which needs stable Rust and no kernel libraries.

pub mod cli;
pub mod model;
pub mod wire;

#[cfg(feature = "daemon")]
pub mod daemon;
#[cfg(feature = "daemon")]
pub mod dataplane;
#[cfg(feature = "daemon")]
pub mod policy;
#[cfg(feature = "daemon")]
pub mod server;
#[cfg(feature = "daemon")]
pub mod store;
#[cfg(feature = "web")]
pub mod web;
