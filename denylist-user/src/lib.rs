//! denylist's user space: everything behind the `denylistd` daemon and the
//! `denylist` CLI, which stay thin.

pub mod dataplane;
pub mod layout;
pub mod object;
pub mod region;
pub mod target;
pub mod trie;
pub mod verdict;
