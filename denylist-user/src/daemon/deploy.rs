//! Save and Deploy, as one straight path: plan from the store, apply to the
//! filter, commit to the store. The kernel goes first, so a kernel failure
//! leaves the store as it was; a failed commit puts the kernel back with the
//! inverse of the same change list.

use std::time::Instant;

use super::{Core, CoreError};
use crate::{
    dataplane::{ChangeList, tai_offset_ms},
    model::{List, Rule, Sources, Stored, Target, now_ms},
    store::{DeployRecord, Only, Plan},
    wire::{Counts, DeployPhases, DeployResponse},
};

/// Above these sizes an operation's transient buffers are worth handing back.
pub(super) const BULK_BYTES: usize = 1 << 20;
const BULK_ENTRIES: u64 = 10_000;

impl Core {
    /// Deploys the pending changes (or `only` those). With `expect_seq`,
    /// only if the draft is still the one reviewed: its `draft_seq` then.
    pub fn deploy(
        &mut self,
        user: &str,
        only: Option<&[(Target, List)]>,
        message: Option<&str>,
        dry_run: bool,
        expect_seq: Option<u64>,
    ) -> Result<DeployResponse, CoreError> {
        if let Some(reviewed) = expect_seq {
            let current = self.store.draft_seq()?;
            if current != reviewed {
                return Err(CoreError::DraftChanged { reviewed, current });
            }
        }
        let only = only.map(|keys| Only {
            keys,
            sources: &Sources::All,
        });
        let result = self.deploy_as(user, only, message, dry_run, "deploy");
        if let Ok(r) = &result
            && r.counts.added + r.counts.removed + r.counts.changed > BULK_ENTRIES
        {
            release_heap();
        }
        result
    }

    /// The deploy, audited as `kind` (a rollback's deploy says so).
    pub(super) fn deploy_as(
        &mut self,
        user: &str,
        only: Option<Only<'_>>,
        message: Option<&str>,
        dry_run: bool,
        kind: &str,
    ) -> Result<DeployResponse, CoreError> {
        let result = self.deploy_planned(user, only, message, dry_run, kind);
        self.store.deploy_done();
        result
    }

    fn deploy_planned(
        &mut self,
        user: &str,
        only: Option<Only<'_>>,
        message: Option<&str>,
        dry_run: bool,
        kind: &str,
    ) -> Result<DeployResponse, CoreError> {
        let start = Instant::now();
        let now = now_ms();
        let plan = if dry_run {
            self.store.preview(only, now)?
        } else {
            self.store.plan(only, now)?
        };
        // In a fleet, the plan was made on top of other hosts' deploys that
        // its catch-up applied: the kernel takes those first.
        let followed = self.store.follow()?;
        self.apply_followed(followed)?;
        if !dry_run {
            self.check_fleet_capacity(&plan)?;
        }
        let mut phases = DeployPhases {
            plan: start.elapsed().as_millis() as u64,
            ..DeployPhases::default()
        };
        let counts = Counts {
            added: plan.adds.len() as u64,
            removed: plan.removes.len() as u64,
            changed: plan.changes.len() as u64,
        };
        if plan.is_empty() || dry_run {
            return Ok(DeployResponse {
                seq: None,
                revision: None,
                counts,
                dry_run,
                nothing_pending: plan.is_empty(),
                duration_ms: 0,
                phases_ms: phases,
            });
        }
        let changes = changes_of(&plan, tai_offset_ms());
        if let Err(e) = self.fit_prefixes(&changes) {
            self.ops.deploy_failures += 1;
            return Err(e);
        }
        let record = DeployRecord {
            user,
            message,
            now,
            kind,
        };
        let commit_start = Instant::now();
        // The store writes the revision while the kernel takes the changes,
        // and commits it only once the kernel has them all: a big deploy
        // costs the longer of the two, not their sum.
        let (store, filter) = (&mut self.store, &mut self.filter);
        let outcome = std::thread::scope(|scope| {
            let kernel = scope.spawn(|| {
                let kernel_start = Instant::now();
                filter
                    .apply(&changes)
                    .map(|()| kernel_start.elapsed().as_millis() as u64)
            });
            let written = store.write_deploy(&plan, record);
            match kernel.join() {
                Ok(Ok(kernel_ms)) => Ok((kernel_ms, written.and_then(|w| w.commit()))),
                // What was written is dropped uncommitted: nothing recorded.
                Ok(Err(e)) => Err(e),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        });
        let (kernel_ms, committed) = match outcome {
            Ok(done) => done,
            Err(source) => {
                self.ops.deploy_failures += 1;
                tracing::error!(
                    user,
                    kind,
                    error = %source,
                    "deploy failed; the kernel is unchanged and the changes stay staged"
                );
                return Err(CoreError::DeployFailed {
                    source: Box::new(source),
                });
            }
        };
        phases.kernel = kernel_ms;
        match committed {
            Ok((rev, seq)) => {
                phases.commit = commit_start.elapsed().as_millis() as u64;
                let ms = start.elapsed().as_millis() as u64;
                self.ops.last_deploy_ms = ms;
                self.ops.last_deploy_at = now_ms();
                tracing::info!(
                    revision = rev.revision,
                    added = counts.added,
                    removed = counts.removed,
                    changed = counts.changed,
                    user,
                    kind,
                    took_ms = ms,
                    "deployed"
                );
                Ok(DeployResponse {
                    seq: Some(seq),
                    revision: Some(rev.revision),
                    counts,
                    dry_run: false,
                    nothing_pending: false,
                    duration_ms: ms,
                    phases_ms: phases,
                })
            }
            Err(source) => {
                self.ops.deploy_failures += 1;
                tracing::error!(
                    user,
                    kind,
                    error = %source,
                    "deploy failed: the store could not record it; rolling the kernel back"
                );
                if let Err(u) = self.filter.apply(&changes.inverse()) {
                    tracing::error!(
                        "undoing the kernel after a failed commit: {u}; verify will repair it"
                    );
                    self.drift += 1;
                }
                Err(CoreError::CommitFailed {
                    source: Box::new(source),
                })
            }
        }
    }

    /// Moves the filter to larger prefix arrays when `changes` might not fit
    /// the current ones, within what `--capacity` allows. Beyond that the
    /// deploy fails as before. Hit counts are folded into the store first,
    /// since the new maps count from zero.
    pub(super) fn fit_prefixes(&mut self, changes: &ChangeList) -> Result<(), CoreError> {
        let Some(layout) = self.filter.needs_growth(changes, self.config.layout) else {
            return Ok(());
        };
        self.fold_hits()?;
        self.filter
            .relayout(layout)
            .map_err(|source| CoreError::GrowFailed {
                source: Box::new(source),
            })?;
        self.hits_seen.clear();
        Ok(())
    }
}

/// The kernel's view of a stored entry: expiry moved to CLOCK_TAI.
pub(super) fn rule_of(s: &Stored, tai_offset: i64) -> Rule {
    Rule {
        id: s.id,
        target: s.entry.target,
        list: s.entry.list,
        monitor: s.entry.monitor,
        expires_ms: s.entry.expires_at.map(|e| (e + tai_offset).max(1) as u64),
    }
}

/// The plan as the kernel takes it: each key with its rule before and after.
pub(super) fn changes_of(plan: &Plan, tai: i64) -> ChangeList {
    let rule = |s: &Stored| rule_of(s, tai);
    ChangeList::new(
        plan.adds
            .iter()
            .map(|s| (None, Some(rule(s))))
            .chain(
                plan.changes
                    .iter()
                    .map(|(before, after)| (Some(rule(before)), Some(rule(after)))),
            )
            .chain(plan.removes.iter().map(|s| (Some(rule(s)), None))),
    )
}

/// Returns the heap's free pages to the kernel. glibc keeps what a bulk
/// import or deploy freed, so without this the daemon would hold its peak
/// (about 1 KB per entry of a 1M import) for good.
pub(super) fn release_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only gives free memory back; it has no
    // preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
