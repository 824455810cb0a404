//! The [`Store`] calls of a fleet node: reads answer from the local copy,
//! changes go through the fleet's log (`FleetStore::write`), and a deploy
//! holds the writer lock from its plan to its commit.

use std::{collections::HashMap, net::IpAddr, path::Path, sync::Arc};

use postgres::Client;

use super::{Applied, Command, Deploying, FleetStore, KEPT_FOR, log, mismatch};
use crate::{
    model::{
        AuditEvent, AuditFilter, AutoPolicy, Entry, FeedSettings, FeedState, List, Millis,
        NodeReport, NodeStatus, Page, ProtectedSet, Report, Revision, Sources, Stored, Target,
    },
    store::{
        Announced, Audit, DeployRecord, Duty, FeedRecord, Followed, HeldList, HitTotal, Only, Op,
        Pending, Plan, Pruned, ReportTally, RevisionChanges, Snapshots, Stage, Store, StoreError,
        WrittenDeploy, sqlite::attach_kind,
    },
};

/// The writer's open transaction in a deploy's commit: committed by the
/// local store's commit, rolled back when the deploy is dropped unwritten
/// (the kernel refused it), so the lock never outlives the deploy.
struct DeployTx<'c> {
    client: &'c mut Client,
    tx_open: &'c mut bool,
}

impl DeployTx<'_> {
    fn commit(self) -> Result<(), StoreError> {
        *self.tx_open = false;
        log::commit(self.client)
    }
}

impl Drop for DeployTx<'_> {
    fn drop(&mut self) {
        if std::mem::take(self.tx_open) {
            log::rollback(self.client);
        }
    }
}

impl Store for FleetStore {
    fn revision(&self) -> Result<u64, StoreError> {
        self.local.revision()
    }

    fn deployed(&self) -> Result<Vec<Stored>, StoreError> {
        self.local.deployed()
    }

    fn draft(&self, now: Millis) -> Result<Vec<Entry>, StoreError> {
        self.local.draft(now)
    }

    fn draft_keys_from(
        &self,
        source: &str,
        now: Millis,
    ) -> Result<Vec<(Target, List)>, StoreError> {
        self.local.draft_keys_from(source, now)
    }

    fn deployed_keys_from(
        &self,
        source: &str,
        now: Millis,
    ) -> Result<Vec<(Target, List)>, StoreError> {
        self.local.deployed_keys_from(source, now)
    }

    fn draft_entry(
        &self,
        target: Target,
        list: List,
        now: Millis,
    ) -> Result<Option<Entry>, StoreError> {
        self.local.draft_entry(target, list, now)
    }

    fn deployed_entry(
        &self,
        target: Target,
        list: List,
        now: Millis,
    ) -> Result<Option<Entry>, StoreError> {
        self.local.deployed_entry(target, list, now)
    }

    fn pending_count(&self) -> Result<usize, StoreError> {
        self.local.pending_count()
    }

    fn draft_seq(&self) -> Result<u64, StoreError> {
        self.local.draft_seq()
    }

    fn pending(&self) -> Result<Vec<Pending>, StoreError> {
        self.local.pending()
    }

    fn stage(
        &mut self,
        ops: &[Stage],
        user: &str,
        now: Millis,
        default_ttl: Option<u64>,
        audit_as: &Audit,
    ) -> Result<(u64, Vec<Option<Op>>), StoreError> {
        match self.write(Command::Stage {
            ops: ops.to_vec(),
            user: user.to_string(),
            now,
            default_ttl,
            audit: audit_as.clone(),
        })? {
            Applied::Staged(seq, ops) => Ok((seq, ops)),
            _ => Err(mismatch("stage")),
        }
    }

    fn stage_preview(
        &mut self,
        ops: &[Stage],
        now: Millis,
        default_ttl: Option<u64>,
    ) -> Result<Vec<Option<Op>>, StoreError> {
        self.local.stage_preview(ops, now, default_ttl)
    }

    fn discard(&mut self, user: &str, now: Millis) -> Result<(u64, usize), StoreError> {
        match self.write(Command::Discard {
            user: user.to_string(),
            now,
        })? {
            Applied::Discarded(seq, n) => Ok((seq, n)),
            _ => Err(mismatch("discard")),
        }
    }

    fn preview(&mut self, only: Option<Only<'_>>, now: Millis) -> Result<Plan, StoreError> {
        self.local.preview(only, now)
    }

    /// Takes the writer lock and keeps it until the deploy is committed or
    /// over (`deploy_done`), an empty plan's too, which a caller may write
    /// as an empty revision as on one host: deploys from different nodes
    /// are serialized by the database, each planned from the state the one
    /// before it left.
    fn plan(&mut self, only: Option<Only<'_>>, now: Millis) -> Result<Plan, StoreError> {
        self.release();
        // Before the lock, outside any transaction: the others hear of it
        // at once. A database out of reach fails the deploy now, as the
        // lock would; otherwise the deploy goes on without it.
        let node = self.node.clone();
        let announced = Announced {
            now,
            sources: only.map_or(Sources::All, |o| o.sources.clone()),
        };
        match self.pg_afresh(|c| log::announce_deploy(c, &node, &announced)) {
            Err(e) if e.is_unreachable() => return Err(e),
            Err(e) => tracing::debug!("fleet: announcing a deploy: {e}"),
            Ok(()) => {}
        }
        let seq = self.begin()?;
        let kept = self.kept_at(seq - 1);
        match self.local.plan_kept(only, now, kept) {
            Ok(plan) => {
                self.deploying = Some(Deploying {
                    seq,
                    only: only.map(|o| (o.keys.to_vec(), o.sources.clone())),
                    now,
                });
                Ok(plan)
            }
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }

    fn write_deploy<'s>(
        &'s mut self,
        plan: &Plan,
        record: DeployRecord<'_>,
    ) -> Result<Box<dyn WrittenDeploy + 's>, StoreError> {
        let Some(d) = self.deploying.take() else {
            return Err(StoreError::NotPlanned);
        };
        let command = Command::Deploy {
            only: d.only,
            now: d.now,
            user: record.user.to_string(),
            message: record.message.map(str::to_string),
            kind: record.kind.to_string(),
        };
        let node = self.node.clone();
        let revision = self.local.revision()? + 1;
        let appended = log::encode(&command).and_then(|body| {
            self.pg(|c| log::append(c, d.seq, &node, command.kind(), &body, Some(revision)))
        });
        if let Err(e) = appended {
            self.rollback();
            return Err(e);
        }
        let Some(client) = self.client.as_mut() else {
            self.tx_open = false;
            return Err(StoreError::FleetConnectionLost);
        };
        let tx = DeployTx {
            client,
            tx_open: &mut self.tx_open,
        };
        let commit = Box::new(move || tx.commit());
        self.local.write_deploy_entry(plan, record, d.seq, commit)
    }

    fn rollback(
        &mut self,
        rev: u64,
        force: bool,
        user: &str,
        now: Millis,
    ) -> Result<(u64, Vec<Entry>), StoreError> {
        match self.write(Command::Rollback {
            rev,
            force,
            user: user.to_string(),
            now,
        })? {
            Applied::RolledBack(seq, left) => Ok((seq, left)),
            _ => Err(mismatch("rollback")),
        }
    }

    fn expired(&self, now: Millis) -> Result<Vec<Stored>, StoreError> {
        self.local.expired(now)
    }

    /// The sweep is logged as its time alone: each node finds the same
    /// expired listings in the same state, under its own entry ids.
    fn expire(&mut self, _expired: &[Stored], now: Millis) -> Result<u64, StoreError> {
        match self.write(Command::Expire { now })? {
            Applied::Expired(seq, ..) => Ok(seq),
            _ => Err(mismatch("expire")),
        }
    }

    /// Hits are this node's own: its kernel's counters, under its ids.
    fn add_hits(&mut self, deltas: &[(u32, HitTotal)]) -> Result<(), StoreError> {
        self.local.add_hits(deltas)
    }

    fn hit_totals(&self) -> Result<HashMap<u32, HitTotal>, StoreError> {
        self.local.hit_totals()
    }

    fn record(
        &mut self,
        user: &str,
        kind: &str,
        target: Option<&str>,
        detail: Option<serde_json::Value>,
        now: Millis,
    ) -> Result<u64, StoreError> {
        self.write_seq(
            Command::Record {
                user: user.to_string(),
                kind: kind.to_string(),
                target: target.map(str::to_string),
                detail,
                now,
            },
            "record",
        )
    }

    fn history(&self, page: Page) -> Result<Vec<Revision>, StoreError> {
        self.local.history(page)
    }

    fn audit(&self, page: Page, filter: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        self.local.audit(page, filter)
    }

    fn revision_changes(&self, rev: u64, limit: usize) -> Result<RevisionChanges, StoreError> {
        self.local.revision_changes(rev, limit)
    }

    fn prune(
        &mut self,
        cutoff: Millis,
        user: &str,
        now: Millis,
    ) -> Result<Option<(u64, Pruned)>, StoreError> {
        match self.write(Command::Prune {
            cutoff,
            user: user.to_string(),
            now,
        })? {
            Applied::Pruned(p) => Ok(p),
            _ => Err(mismatch("prune")),
        }
    }

    /// Interfaces are this node's own, so attachments stay local; the
    /// attach and detach go to the shared audit log as records.
    fn attachments(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.local.attachments()
    }

    fn set_attachment(
        &mut self,
        iface: &str,
        mode: Option<&str>,
        user: &str,
        now: Millis,
    ) -> Result<u64, StoreError> {
        self.local.set_local_attachment(iface, mode)?;
        let detail = serde_json::json!({ "node": self.node, "xdp_mode": mode });
        self.record(user, attach_kind(mode), Some(iface), Some(detail), now)
    }

    fn feeds(&self) -> Result<Vec<FeedRecord>, StoreError> {
        self.local.feeds()
    }

    fn add_feed(
        &mut self,
        name: &str,
        settings: &FeedSettings,
        redacted_url: &str,
        state: &FeedState,
        now: Millis,
    ) -> Result<u64, StoreError> {
        self.write_seq(
            Command::AddFeed {
                name: name.to_string(),
                settings: settings.clone(),
                redacted_url: redacted_url.to_string(),
                state: state.clone(),
                now,
            },
            "feed add",
        )
    }

    fn set_feed_state(
        &mut self,
        name: &str,
        state: &FeedState,
        held: HeldList<'_>,
    ) -> Result<(), StoreError> {
        self.write(Command::SetFeedState {
            name: name.to_string(),
            state: state.clone(),
            held: held.into(),
        })
        .map(drop)
    }

    fn held_list(&self, name: &str) -> Result<Option<Vec<Target>>, StoreError> {
        self.local.held_list(name)
    }

    fn remove_feed(&mut self, name: &str, user: &str, now: Millis) -> Result<u64, StoreError> {
        self.write_seq(
            Command::RemoveFeed {
                name: name.to_string(),
                user: user.to_string(),
                now,
            },
            "feed remove",
        )
    }

    fn report(&mut self, report: &Report, since: Millis) -> Result<ReportTally, StoreError> {
        match self.write(Command::Report {
            report: report.clone(),
            since,
        })? {
            Applied::Tally(t) => Ok(t),
            _ => Err(mismatch("report")),
        }
    }

    fn reports(&self, reporter: Option<&str>, limit: usize) -> Result<Vec<Report>, StoreError> {
        self.local.reports(reporter, limit)
    }

    fn offence(&mut self, ip: IpAddr, now: Millis) -> Result<u32, StoreError> {
        match self.write(Command::Offence { ip, now })? {
            Applied::Offences(n) => Ok(n),
            _ => Err(mismatch("offence")),
        }
    }

    fn auto_policy(&self) -> Result<AutoPolicy, StoreError> {
        self.local.auto_policy()
    }

    fn set_auto_policy(
        &mut self,
        policy: &AutoPolicy,
        user: &str,
        action: &str,
        now: Millis,
    ) -> Result<u64, StoreError> {
        self.write_seq(
            Command::SetAutoPolicy {
                policy: policy.clone(),
                user: user.to_string(),
                action: action.to_string(),
                now,
            },
            "auto set",
        )
    }

    fn backup(&self, dest: &Path) -> Result<(), StoreError> {
        self.local.backup(dest)
    }

    fn snapshots(&self) -> Arc<dyn Snapshots> {
        self.local.snapshots()
    }

    /// Mid-deploy (the writer lock held) this only hands out what the
    /// plan's catch-up applied, which the kernel must take first.
    fn follow(&mut self) -> Result<Vec<Followed>, StoreError> {
        if self.deploying.is_none() {
            self.finish_deferred()?;
            self.skip_ahead(true)?;
            self.catch_up(u64::MAX, false)?;
        }
        Ok(std::mem::take(&mut self.followed))
    }

    fn follow_round(&mut self) -> Result<Vec<Followed>, StoreError> {
        self.kept.take_if(|k| k.at.elapsed() > KEPT_FOR);
        if self.deploying.is_none() {
            self.finish_deferred()?;
            // A round at a time: the snapshot's changes go to the kernel
            // before the log past it is read.
            self.skipped = self.skip_ahead(true)?;
            if !self.skipped {
                self.catch_up(u64::MAX, true)?;
                self.plan_ahead();
            }
        }
        Ok(std::mem::take(&mut self.followed))
    }

    fn follow_done(&mut self) -> Result<bool, StoreError> {
        Ok(self.finish_deferred()? | std::mem::take(&mut self.skipped))
    }

    fn foresee_deploy(&mut self, deploy: Announced) {
        self.foreseen = Some(deploy);
    }

    fn plan_made_ahead(&mut self) -> Option<Arc<Plan>> {
        self.hand_out_ahead()
    }

    fn deploy_done(&mut self) {
        self.release();
    }

    /// A session-level advisory lock per duty, on this node's connection:
    /// whoever holds it does the duty until its connection goes, and the
    /// database then lets another node take it.
    fn holds_duty(&mut self, duty: Duty) -> bool {
        let bit = 1 << duty as u8;
        if self.duties & bit != 0 && self.client.as_ref().is_some_and(|c| !c.is_closed()) {
            return true;
        }
        let held = self.pg_afresh(|c| log::take_duty(c, duty)).unwrap_or(false);
        if held {
            self.duties |= bit;
        }
        held
    }

    fn keep_snapshot(&mut self) -> Result<(), StoreError> {
        FleetStore::keep_snapshot(self)
    }

    fn heartbeat(&mut self, report: &NodeReport) -> Result<(), StoreError> {
        let applied = self.applied_here()?;
        let node = self.node.clone();
        self.pg_afresh(|c| log::heartbeat(c, &node, applied, report))
    }

    fn fleet_protected(&mut self) -> Result<Vec<ProtectedSet>, StoreError> {
        let node = self.node.clone();
        self.pg_afresh(|c| log::protected(c, &node))
    }

    fn nodes(&mut self) -> Result<Option<Vec<NodeStatus>>, StoreError> {
        self.pg_afresh(log::nodes).map(Some)
    }

    fn forget_node(&mut self, node: &str) -> Result<(), StoreError> {
        match self.pg_afresh(|c| log::forget(c, node))? {
            Ok(()) => Ok(()),
            Err(None) => Err(StoreError::NoNode {
                node: node.to_string(),
            }),
            Err(Some(age_ms)) => Err(StoreError::NodeLive {
                node: node.to_string(),
                age_s: age_ms / 1_000,
            }),
        }
    }
}
