//! Planning another node's deploy ahead of its log entry.
//!
//! A deploy's plan is a function of the draft, the deployed entries, the
//! deploy's `now` and what it ships, all of which a follower holds before
//! the entry comes: the writer announces the `now` and the sources as it
//! begins, then plans, puts the plan into its kernel and writes its store
//! before it commits. A follower that plans meanwhile has only its kernel
//! left to do once the entry comes, where it would otherwise start
//! planning then: for a million entries, seconds.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use super::{FleetStore, command::Command};
use crate::{
    model::{List, Sources, Target},
    store::{Announced, Plan, PlanKeys, StoreError},
};

/// How long a plan made ahead waits for its deploy: a writer whose deploy
/// failed never sends it, and the plan of a large draft is large.
const AHEAD_KEPT: Duration = Duration::from_secs(300);

/// The plan of a deploy announced, made on this node's store at log entry
/// `after`, of the `keys` pending then.
pub(super) struct Ahead {
    after: u64,
    deploy: Announced,
    keys: PlanKeys,
    plan: Arc<Plan>,
    made: Instant,
    /// Handed to the kernel to write ahead already.
    handed: bool,
}

impl FleetStore {
    /// Plans the deploy announced, once the store is at the log's head
    /// with no deploy read but not written. A plan that cannot be made now
    /// is left to the deploy's entry, which makes it again and says why.
    pub(super) fn plan_ahead(&mut self) {
        if self
            .ahead
            .as_ref()
            .is_some_and(|a| a.made.elapsed() > AHEAD_KEPT)
        {
            self.ahead = None;
        }
        let Some(deploy) = self.foreseen.take() else {
            return;
        };
        // A deploy read already is the one announced, or came after it.
        if self.deferred.is_some() {
            return;
        }
        self.ahead = None;
        let made = self.local.log_seq().and_then(|after| {
            let kept = self.kept_at(after);
            let (plan, keys) = self.local.plan_pending(&deploy.sources, deploy.now, kept)?;
            Ok(Ahead {
                after,
                deploy,
                keys,
                plan: Arc::new(plan),
                made: Instant::now(),
                handed: false,
            })
        });
        match made {
            Ok(a) => self.ahead = Some(a),
            Err(e) => tracing::debug!("fleet: planning an announced deploy ahead: {e}"),
        }
    }

    /// The plan made ahead for the deploy at entry `seq`, when it is the
    /// deploy announced and the store took no entry since: the same `now`
    /// and sources, of the keys pending (all of them, or those it names).
    /// Its new entries' ids are reserved as a plan made now would reserve
    /// them. Any other entry drops it.
    pub(super) fn planned_ahead(
        &mut self,
        seq: u64,
        command: &Command,
    ) -> Result<Option<Arc<Plan>>, StoreError> {
        let Some(a) = self.ahead.take() else {
            return Ok(None);
        };
        let Command::Deploy { only, now, .. } = command else {
            return Ok(None);
        };
        let Ahead {
            after,
            deploy,
            mut keys,
            plan,
            ..
        } = a;
        let same = after + 1 == seq
            && deploy.now == *now
            && match only {
                None => deploy.sources == Sources::All,
                Some((named, sources)) => *sources == deploy.sources && same_keys(named, &mut keys),
            };
        if !same || !self.local.reserve_planned(&plan)? {
            return Ok(None);
        }
        Ok(Some(plan))
    }

    /// The plan made ahead in the last round, once, for the kernel to
    /// write ahead what it can.
    pub(super) fn hand_out_ahead(&mut self) -> Option<Arc<Plan>> {
        let a = self.ahead.as_mut().filter(|a| !a.handed)?;
        a.handed = true;
        Some(a.plan.clone())
    }
}

/// Whether the keys `named` (repeats aside) are `keys`; empties `keys`,
/// which nothing needs after.
fn same_keys(named: &[(Target, List)], keys: &mut PlanKeys) -> bool {
    if !named.iter().all(|k| keys.contains(k)) {
        return false;
    }
    // Each named key is one of `keys`: they are the same once none is left.
    for k in named {
        keys.remove(k);
    }
    keys.is_empty()
}
