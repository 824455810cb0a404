//! Fleet mode's follower: the kernel takes the deploys and expiry sweeps
//! of other hosts, which the store applied from the fleet's log.

use super::{Core, CoreError, deploy::changes_of};
use crate::{
    dataplane::tai_offset_ms,
    model::{NodeReport, NodeStatus},
    store::Followed,
};

impl Core {
    /// Brings this host to the fleet's head: called on each notification
    /// of a new log entry and every few seconds besides. A single host's
    /// store has nothing to follow.
    pub fn follow_fleet(&mut self) -> Result<usize, CoreError> {
        let result = self
            .store
            .follow()
            .map_err(CoreError::from)
            .and_then(|followed| self.apply_followed(followed));
        match &result {
            Ok(_) => self.fleet_error = None,
            // The database out of reach is no failure of this node's.
            Err(CoreError::Store(e)) if e.is_unreachable() => {}
            Err(e) => self.fleet_error = Some(e.to_string()),
        }
        let report = NodeReport {
            drift: self.drift as u64,
            error: self.fleet_error.clone(),
            capacity: u64::from(self.config.layout.capacity),
        };
        if let Err(e) = self.store.heartbeat(&report) {
            tracing::debug!("fleet heartbeat: {e}");
        }
        result
    }

    /// The fleet's nodes, as `denylist nodes` lists them.
    pub fn nodes(&mut self) -> Result<Vec<NodeStatus>, CoreError> {
        self.store.nodes()?.ok_or(CoreError::NotFleet)
    }

    /// Puts what the store followed into the kernel, in the log's order;
    /// returns how many deploys and sweeps that was.
    pub(super) fn apply_followed(&mut self, followed: Vec<Followed>) -> Result<usize, CoreError> {
        let n = followed.len();
        for f in followed {
            let changes = match &f {
                Followed::Deployed(plan) => changes_of(plan, tai_offset_ms()),
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
            if let Followed::Deployed(plan) = &f {
                tracing::info!(
                    revision = self.store.revision().unwrap_or_default(),
                    added = plan.adds.len(),
                    removed = plan.removes.len(),
                    changed = plan.changes.len(),
                    "applied a deploy from the fleet"
                );
            }
        }
        Ok(n)
    }
}
