//! Load: sixteen admins at once against one daemon, checked against a serial
//! replay of the audit log; 10,000 entries expiring in the kernel on time
//! across a restart; a whole list replaced at full capacity.

mod admins;
mod capacity;
mod common;
mod expiry;
mod ops;
mod replay;
