//! Security: who may run which command, who may act on behalf of a web
//! console's users, what the socket and the state
//! directory let others see or redirect, what the audit log records and
//! whether it can be rewritten, which capabilities the daemon really needs
//! (run with exactly the systemd unit's set), and another tool's XDP program
//! left alone and working.
//!
//! Users and groups are real (useradd/groupadd, removed on drop), and every
//! command goes through the `denylist` binary as that user, without any
//! capabilities.

mod audit;
mod authorization;
mod behalf;
mod capabilities;
mod common;
mod files;
mod foreign_xdp;
mod spawn;
mod unit;
