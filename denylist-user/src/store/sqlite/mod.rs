//! The single host's store: one SQLite database under `--state-dir`,
//! written with `synchronous=FULL` and read back by listings through
//! connections of their own. Opening never repairs, wipes or recreates a
//! database: a damaged one is reported and left byte for byte as it was.

mod audit;
mod backup;
mod deploy;
mod draft;
mod feeds;
mod fleet;
#[cfg(test)]
mod listing_tests;
mod open;
mod page;
mod reports;
mod revision;
mod rows;
mod scan;
mod schema;
#[cfg(test)]
mod tests;
mod walk;

use std::{
    collections::HashMap,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use rusqlite::Connection;

pub(crate) use audit::attach_kind;
pub(crate) use draft::KeptDraft;
pub(crate) use fleet::{remove_stale_snapshots, snapshot};
pub(crate) use schema::SCHEMA_VERSION;

use super::{
    Audit, DeployRecord, FeedRecord, HeldList, HitTotal, Only, Op, Pending, Plan, Pruned,
    ReportTally, RevisionChanges, Snapshots, Stage, Store, StoreError, WrittenDeploy,
};
use crate::model::{
    AuditEvent, AuditFilter, AutoPolicy, Entry, FeedSettings, FeedState, List, Millis, Page,
    Report, Revision, Stored, Target,
};

/// The database's file name in the state directory.
pub const DB_FILE: &str = "denylist.db";

pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    checkpointer: open::Checkpointer,
}

impl Store for SqliteStore {
    fn revision(&self) -> Result<u64, StoreError> {
        draft::revision(&self.conn)
    }

    fn deployed(&self) -> Result<Vec<Stored>, StoreError> {
        draft::deployed(&self.conn)
    }

    fn draft(&self, now: Millis) -> Result<Vec<Entry>, StoreError> {
        draft::draft(&self.conn, now)
    }

    fn draft_keys_from(
        &self,
        source: &str,
        now: Millis,
    ) -> Result<Vec<(Target, List)>, StoreError> {
        draft::keys_from(&self.conn, source, now, true)
    }

    fn deployed_keys_from(
        &self,
        source: &str,
        now: Millis,
    ) -> Result<Vec<(Target, List)>, StoreError> {
        draft::keys_from(&self.conn, source, now, false)
    }

    fn draft_entry(
        &self,
        target: Target,
        list: List,
        now: Millis,
    ) -> Result<Option<Entry>, StoreError> {
        draft::draft_entry(&self.conn, target, list, now)
    }

    fn deployed_entry(
        &self,
        target: Target,
        list: List,
        now: Millis,
    ) -> Result<Option<Entry>, StoreError> {
        Ok(rows::deployed_entry(&self.conn, target, list)?.and_then(|s| s.entry.live(now)))
    }

    fn pending_count(&self) -> Result<usize, StoreError> {
        draft::pending_count(&self.conn)
    }

    fn draft_seq(&self) -> Result<u64, StoreError> {
        rows::draft_seq(&self.conn)
    }

    fn pending(&self) -> Result<Vec<Pending>, StoreError> {
        draft::pending(&self.conn)
    }

    fn stage(
        &mut self,
        ops: &[Stage],
        user: &str,
        now: Millis,
        default_ttl: Option<u64>,
        audit_as: &Audit,
    ) -> Result<(u64, Vec<Option<Op>>), StoreError> {
        let staged = draft::stage(&mut self.conn, ops, user, now, default_ttl, audit_as, false)?;
        Ok((staged.seq, staged.left))
    }

    fn stage_preview(
        &mut self,
        ops: &[Stage],
        now: Millis,
        default_ttl: Option<u64>,
    ) -> Result<Vec<Option<Op>>, StoreError> {
        draft::stage_preview(&mut self.conn, ops, now, default_ttl)
    }

    fn discard(&mut self, user: &str, now: Millis) -> Result<(u64, usize), StoreError> {
        draft::discard(&mut self.conn, user, now)
    }

    fn preview(&mut self, only: Option<Only<'_>>, now: Millis) -> Result<Plan, StoreError> {
        deploy::plan(&mut self.conn, only, now, false, None)
    }

    fn plan(&mut self, only: Option<Only<'_>>, now: Millis) -> Result<Plan, StoreError> {
        deploy::plan(&mut self.conn, only, now, true, None)
    }

    fn write_deploy<'s>(
        &'s mut self,
        plan: &Plan,
        record: DeployRecord<'_>,
    ) -> Result<Box<dyn WrittenDeploy + 's>, StoreError> {
        Ok(Box::new(deploy::write(&mut self.conn, plan, record, None)?))
    }

    fn rollback(
        &mut self,
        rev: u64,
        force: bool,
        user: &str,
        now: Millis,
    ) -> Result<(u64, Vec<Entry>), StoreError> {
        deploy::rollback(&mut self.conn, rev, force, user, now)
    }

    fn expired(&self, now: Millis) -> Result<Vec<Stored>, StoreError> {
        deploy::expired(&self.conn, now)
    }

    fn expire(&mut self, expired: &[Stored], now: Millis) -> Result<u64, StoreError> {
        deploy::expire(&mut self.conn, expired, now)
    }

    fn add_hits(&mut self, deltas: &[(u32, HitTotal)]) -> Result<(), StoreError> {
        audit::add_hits(&mut self.conn, deltas)
    }

    fn hit_totals(&self) -> Result<HashMap<u32, HitTotal>, StoreError> {
        audit::hit_totals(&self.conn)
    }

    fn record(
        &mut self,
        user: &str,
        kind: &str,
        target: Option<&str>,
        detail: Option<serde_json::Value>,
        now: Millis,
    ) -> Result<u64, StoreError> {
        audit::record(&mut self.conn, user, kind, target, detail, now)
    }

    fn history(&self, page: Page) -> Result<Vec<Revision>, StoreError> {
        audit::history(&self.conn, page)
    }

    fn audit(&self, page: Page, filter: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        audit::audit_page(&self.conn, page, filter)
    }

    fn revision_changes(&self, rev: u64, limit: usize) -> Result<RevisionChanges, StoreError> {
        revision::changes(&self.conn, rev, limit)
    }

    fn prune(
        &mut self,
        cutoff: Millis,
        user: &str,
        now: Millis,
    ) -> Result<Option<(u64, Pruned)>, StoreError> {
        audit::prune(&mut self.conn, cutoff, user, now)
    }

    fn attachments(&self) -> Result<Vec<(String, String)>, StoreError> {
        audit::attachments(&self.conn)
    }

    fn set_attachment(
        &mut self,
        iface: &str,
        mode: Option<&str>,
        user: &str,
        now: Millis,
    ) -> Result<u64, StoreError> {
        audit::set_attachment(&mut self.conn, iface, mode, user, now)
    }

    fn feeds(&self) -> Result<Vec<FeedRecord>, StoreError> {
        feeds::feeds(&self.conn)
    }

    fn add_feed(
        &mut self,
        name: &str,
        settings: &FeedSettings,
        redacted_url: &str,
        state: &FeedState,
        now: Millis,
    ) -> Result<u64, StoreError> {
        feeds::add_feed(&mut self.conn, name, settings, redacted_url, state, now)
    }

    fn set_feed_state(
        &mut self,
        name: &str,
        state: &FeedState,
        held: HeldList<'_>,
    ) -> Result<(), StoreError> {
        feeds::set_feed_state(&mut self.conn, name, state, held)
    }

    fn held_list(&self, name: &str) -> Result<Option<Vec<Target>>, StoreError> {
        feeds::held_list(&self.conn, name)
    }

    fn remove_feed(&mut self, name: &str, user: &str, now: Millis) -> Result<u64, StoreError> {
        feeds::remove_feed(&mut self.conn, name, user, now)
    }

    fn report(&mut self, report: &Report, since: Millis) -> Result<ReportTally, StoreError> {
        reports::report(&mut self.conn, report, since)
    }

    fn reports(&self, reporter: Option<&str>, limit: usize) -> Result<Vec<Report>, StoreError> {
        reports::reports(&self.conn, reporter, limit)
    }

    fn offence(&mut self, ip: IpAddr, now: Millis) -> Result<u32, StoreError> {
        reports::offence(&mut self.conn, ip, now)
    }

    fn auto_policy(&self) -> Result<AutoPolicy, StoreError> {
        reports::auto_policy(&self.conn)
    }

    fn set_auto_policy(
        &mut self,
        policy: &AutoPolicy,
        user: &str,
        action: &str,
        now: Millis,
    ) -> Result<u64, StoreError> {
        reports::set_auto_policy(&mut self.conn, policy, user, action, now)
    }

    fn backup(&self, dest: &Path) -> Result<(), StoreError> {
        backup::backup(&self.conn, dest)
    }

    fn snapshots(&self) -> Arc<dyn Snapshots> {
        Arc::new(scan::SqliteSnapshots {
            db: self.path.clone(),
        })
    }
}
