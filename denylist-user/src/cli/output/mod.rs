//! Human output: aligned tables that stream (`table`), the wording the
//! replies share (`format`) and the form of each reply (`replies`).

mod auto;
mod feeds;
mod fleet;
mod format;
mod replies;
mod table;

pub(super) use auto::{auto, reports, top};
pub(super) use feeds::feeds;
pub(super) use fleet::nodes;
pub(super) use format::plural;
pub(super) use replies::{
    audit, check, degraded, deploy, diff, entry_row, entry_table, history, import, revision,
    rollback, stage, stats, status,
};
pub(super) use table::{EachError, each};

/// What the tests of the output share: one "now", an entry, and the text
/// a writer wrote.
#[cfg(test)]
mod fixtures {
    use std::io;

    use crate::model::{Entry, List, Millis, Target};

    pub(super) const NOW: Millis = 1_795_867_200_000; // 2026-11-28T12:00:00Z

    pub(super) fn entry(target: &str) -> Entry {
        Entry {
            target: Target::parse(target).unwrap(),
            list: List::Deny,
            reason: None,
            ttl: None,
            expires_at: None,
            monitor: false,
            source: "manual".into(),
            added_by: "alice".into(),
            added_at: NOW - 60_000,
            sources: Vec::new(),
            listings: Vec::new(),
        }
        .normalized()
    }

    pub(super) fn text(f: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> String {
        let mut out = Vec::new();
        f(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }
}
