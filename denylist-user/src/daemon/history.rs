//! The revision history and the audit log: read a page at a time, and
//! pruned to `--audit-retention`.

use super::{Core, CoreError};
use crate::{
    model::{AuditEvent, AuditFilter, Millis, Page, Revision, now_ms},
    wire::{Change, RevisionDiff},
};

/// Who the audit log names for a prune: the daemon, on its own schedule.
const PRUNER: &str = "denylistd";

impl Core {
    pub fn history(&self, page: Page) -> Result<Vec<Revision>, CoreError> {
        Ok(self.store.history(page)?)
    }

    /// What revision `rev`'s deploy added, removed and changed, at most
    /// `limit` of each.
    pub fn revision_diff(&self, rev: u64, limit: usize) -> Result<RevisionDiff, CoreError> {
        let c = self.store.revision_changes(rev, limit)?;
        Ok(RevisionDiff {
            revision: c.revision,
            added: c.added,
            removed: c.removed,
            changed: c
                .changed
                .into_iter()
                .map(|(before, after)| Change { before, after })
                .collect(),
            truncated: c.truncated,
        })
    }

    pub fn audit(&self, page: Page, filter: &AuditFilter) -> Result<Vec<AuditEvent>, CoreError> {
        Ok(self.store.audit(page, filter)?)
    }

    /// Deletes what is older than the retention: after the start, then daily.
    pub fn prune(&mut self) -> Result<(), CoreError> {
        self.prune_at(now_ms())
    }

    pub(super) fn prune_at(&mut self, now: Millis) -> Result<(), CoreError> {
        let retention =
            Millis::try_from(self.config().audit_retention.as_millis()).unwrap_or(Millis::MAX);
        let cutoff = now.saturating_sub(retention);
        if let Some((seq, p)) = self.store.prune(cutoff, PRUNER, now)? {
            tracing::info!(
                seq,
                audit_events = p.audit_events,
                revisions = p.revisions,
                versions = p.versions,
                retention = %humantime::format_duration(self.config().audit_retention),
                "pruned the audit log and history"
            );
        }
        Ok(())
    }
}
