//! Fleet mode's follower: the kernel takes the deploys and expiry sweeps
//! of other hosts, which the store applied from the fleet's log.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use super::{Core, CoreError, deploy::changes_of};
use crate::{
    dataplane::tai_offset_ms,
    model::{NodeReport, NodeStatus, ProtectedSet, now_ms},
    store::{Announced, Followed, Plan},
};

/// What one round of [`Core::follow_fleet`] did.
pub struct FollowRound {
    /// The deploys and sweeps put into the kernel.
    pub applied: Result<usize, CoreError>,
    /// The log may hold more: call again.
    pub more: bool,
}

impl Core {
    /// One round of following the fleet: called on each notification of
    /// a new log entry and every few seconds besides, and again while a
    /// round says there is more. A single host's store has nothing to
    /// follow. `protected` is what this host protects, read without the
    /// core's lock; None when it could not be read.
    ///
    /// Another host's deploy reaches the kernel before this host's store
    /// writes it, and the heartbeat between says so: the node's row shows
    /// the revision as soon as the kernel filters by it. Each such deploy
    /// ends a round.
    pub fn follow_fleet(&mut self, protected: Option<ProtectedSet>) -> FollowRound {
        let mut result = self
            .store
            .follow_round()
            .map_err(CoreError::from)
            .and_then(|followed| self.apply_followed(followed));
        if result.is_ok() {
            self.write_ahead();
        }
        match &result {
            Ok(_) => self.fleet_error = None,
            // The database out of reach is no failure of this node's.
            Err(CoreError::Store(e)) if e.is_unreachable() => {}
            Err(e) => self.fleet_error = Some(e.to_string()),
        }
        self.heartbeat(protected.clone());
        // Written whether or not the kernel took it: the store follows the
        // log, and a kernel behind it is drift, which verify repairs. A
        // write that fails is this node's failure, and its row says so.
        let more = match self.store.follow_done() {
            Ok(more) => more,
            Err(e) => {
                let e = CoreError::from(e);
                if !matches!(&e, CoreError::Store(s) if s.is_unreachable()) {
                    self.fleet_error = Some(e.to_string());
                    self.heartbeat(protected);
                }
                if result.is_ok() {
                    result = Err(e);
                }
                false
            }
        };
        // Once per pass, on its last round: neither changes with the
        // deploys a catch-up goes through.
        if !more {
            if let Err(e) = self.store.keep_snapshot() {
                tracing::warn!("fleet: taking a snapshot for new nodes: {e}");
            }
            // The other nodes' guardrails, for the next checks here; a
            // database out of reach leaves the last ones known.
            if let Ok(sets) = self.store.fleet_protected() {
                self.host.set_fleet(sets);
            }
        }
        FollowRound {
            applied: result,
            more,
        }
    }

    /// Another node is about to plan a deploy: the next round plans it
    /// here too, so that once its entry comes only the kernel is left to
    /// do.
    pub fn foresee_deploy(&mut self, deploy: Announced) {
        self.store.foresee_deploy(deploy);
    }

    /// Writes into the kernel, not live, what another node's deploy that
    /// this round planned ahead adds, so that once its entry comes the
    /// kernel has little left to do. A failure costs only that head start:
    /// the entry then writes it all.
    fn write_ahead(&mut self) {
        let Some(plan) = self.store.plan_made_ahead() else {
            return;
        };
        let changes = changes_of(&plan, tai_offset_ms());
        // Larger maps, if the deploy needs them, now rather than on its
        // entry, which would otherwise move to them past what this writes.
        if let Err(e) = self.fit_prefixes(&changes) {
            tracing::warn!("growing the maps ahead of another node's deploy: {e}");
            return;
        }
        match self.filter.stage(&changes) {
            Ok(n) => {
                self.ops.written_ahead += n as u64;
                tracing::debug!(entries = n, "wrote another node's deploy ahead");
            }
            Err(e) => tracing::warn!("writing another node's deploy ahead: {e}"),
        }
    }

    /// Writes this node's row: what it applied, its drift and last error,
    /// and what it protects.
    fn heartbeat(&mut self, protected: Option<ProtectedSet>) {
        let report = NodeReport {
            drift: self.ops.last_drift_found.max(self.drift as u64),
            error: self.fleet_error.clone(),
            capacity: u64::from(self.config.layout.capacity),
            protected,
        };
        let beat = self.store.heartbeat(&report);
        if let Err(e) = &beat {
            tracing::debug!("fleet heartbeat: {e}");
        }
        self.fleet_database_up = Some(beat.is_ok());
        self.stale.store(beat.is_err(), Ordering::Relaxed);
    }

    /// Whether the last heartbeat reached the fleet's database, and why
    /// the last apply of the fleet's changes failed; None on a single
    /// host, or before the first heartbeat.
    pub fn fleet_health(&self) -> Option<(bool, Option<&str>)> {
        self.fleet_database_up
            .map(|up| (up, self.fleet_error.as_deref()))
    }

    /// Set while reads come from this node's copy with the fleet's
    /// database out of reach.
    pub fn stale_flag(&self) -> Arc<AtomicBool> {
        self.stale.clone()
    }

    /// The fleet's nodes, as `denylist nodes` lists them.
    pub fn nodes(&mut self) -> Result<Vec<NodeStatus>, CoreError> {
        self.store.nodes()?.ok_or(CoreError::NotFleet)
    }

    /// Forgets a retired node (offline for 5 minutes), audited.
    pub fn forget_node(&mut self, user: &str, node: &str) -> Result<u64, CoreError> {
        if self.store.nodes()?.is_none() {
            return Err(CoreError::NotFleet);
        }
        self.store.forget_node(node)?;
        Ok(self
            .store
            .record(user, "node remove", Some(node), None, now_ms())?)
    }

    /// In a fleet, refuses a deploy that would leave more entries than the
    /// smallest live node holds, before anything changes: every node must
    /// take every revision.
    pub(super) fn check_fleet_capacity(&mut self, plan: &Plan) -> Result<(), CoreError> {
        let Some(nodes) = self.store.nodes()? else {
            return Ok(());
        };
        let entries =
            (self.filter.len() + plan.adds.len()).saturating_sub(plan.removes.len()) as u64;
        match nodes
            .into_iter()
            .filter(|n| n.state.is_live())
            .min_by_key(|n| n.capacity)
        {
            Some(n) if entries > n.capacity => Err(CoreError::FleetCapacity {
                entries,
                node: n.node,
                capacity: n.capacity,
            }),
            _ => Ok(()),
        }
    }

    /// Puts what the store followed into the kernel, in the log's order;
    /// returns how many deploys and sweeps that was.
    pub(super) fn apply_followed(&mut self, followed: Vec<Followed>) -> Result<usize, CoreError> {
        let n = followed.len();
        for f in followed {
            let changes = match &f {
                Followed::Deployed { plan, .. } => changes_of(plan, tai_offset_ms()),
                Followed::Expired { expired, now } => self.expiry_changes(expired, *now),
            };
            if changes.is_empty() {
                continue;
            }
            self.fit_prefixes(&changes)?;
            if let Err(source) = self.filter.apply(&changes) {
                // The store holds the revision already: the kernel is
                // behind it until the next start rebuilds it.
                self.drift += 1;
                self.ops.deploy_failures += 1;
                tracing::error!(error = %source, "applying another host's change to the kernel failed");
                return Err(CoreError::DeployFailed {
                    source: Box::new(source),
                });
            }
            if let Followed::Deployed {
                plan,
                revision,
                ahead,
            } = &f
            {
                if *ahead {
                    self.ops.followed_ahead += 1;
                } else {
                    self.ops.followed_on_entry += 1;
                }
                tracing::info!(
                    revision,
                    added = plan.adds.len(),
                    removed = plan.removes.len(),
                    changed = plan.changes.len(),
                    planned_ahead = ahead,
                    "applied a deploy from the fleet"
                );
            }
        }
        Ok(n)
    }
}
