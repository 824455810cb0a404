//! Deploys: the plan (ids and expiries fixed), the revision's rows, the
//! rollback that turns an old revision into the draft, and expiry.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension as _, Transaction, params};

use super::{
    draft::{deployed, pending_count, pending_marked},
    rows::{
        ENTRY_COLS, REFRESH, audit, close_version, delete_entry, entry_from, insert_entry,
        insert_pending, meta, pending_rows, set_meta, sort_key,
    },
};
use crate::{
    model::{Entry, List, Millis, Revision, Stored, Target, rfc3339},
    store::{DeployRecord, Op, Pending, Plan, StoreError, WrittenDeploy},
};

/// Fixes ids and expiries for deploying the pending changes (only those
/// for `only`, when given). With `reserve`, the ids are reserved durably
/// before the kernel sees them, so no id is ever handed out twice; without,
/// it is a dry run's preview.
pub(super) fn plan(
    conn: &mut Connection,
    only: Option<&[(Target, List)]>,
    now: Millis,
    reserve: bool,
) -> Result<Plan, StoreError> {
    let mut pending = pending_marked(conn)?;
    if let Some(keys) = only {
        let staged: std::collections::HashSet<(Target, List)> =
            pending.iter().map(Pending::key).collect();
        for k in keys {
            if !staged.contains(k) {
                return Err(StoreError::NotPending {
                    target: k.0,
                    list: k.1,
                });
            }
        }
        let keys: std::collections::HashSet<&(Target, List)> = keys.iter().collect();
        pending.retain(|p| keys.contains(&p.key()));
    }
    let adds = pending.iter().filter(|p| p.op == Op::Add).count() as i64;
    let tx = conn.transaction()?;
    let first_id = meta(&tx, "next_id")?;
    if first_id + adds > i64::from(u32::MAX) {
        return Err(StoreError::IdsExhausted);
    }
    if reserve {
        set_meta(&tx, "next_id", first_id + adds)?;
        tx.commit()?;
    }
    let mut plan = Plan::default();
    let mut next = first_id as u32;
    let expiry = |ttl: Option<u64>| ttl.map(|t| now + (t as i64) * 1000);
    for p in pending {
        match (p.op, p.before, p.after) {
            (Op::Add, _, Some(mut e)) => {
                e.expires_at = expiry(e.ttl);
                plan.adds.push(Stored { id: next, entry: e });
                next += 1;
            }
            (Op::Change, Some(before), Some(mut e)) => {
                // A TTL counts from the deploy that sets it; an
                // unchanged TTL keeps its expiry, unless that has passed
                // and the entry is being put back.
                let live = !before.entry.expired_at(now);
                e.expires_at = match e.expires_at {
                    Some(REFRESH) if live => match (before.entry.expires_at, expiry(e.ttl)) {
                        (Some(old), Some(new)) => Some(old.max(new)),
                        (_, new) => new,
                    },
                    Some(_) if live && e.ttl == before.entry.ttl => before.entry.expires_at,
                    _ => expiry(e.ttl),
                };
                let id = before.id;
                plan.changes.push((before, Stored { id, entry: e }));
            }
            (Op::Remove, Some(before), _) => plan.removes.push(before),
            (op, _, _) => return Err(StoreError::MissingEntry { op: op.as_str() }),
        }
    }
    Ok(plan)
}

/// Makes the draft equal to revision `rev`, leaving out entries that
/// have expired since (returned). With pending changes and no `force`,
/// refuses with a conflict.
pub(super) fn rollback(
    conn: &mut Connection,
    rev: u64,
    force: bool,
    user: &str,
    now: Millis,
) -> Result<(u64, Vec<Entry>), StoreError> {
    // A revision pruned by the retention is gone, with the versions only
    // it needed.
    let kept = conn
        .query_row(
            "SELECT 1 FROM revisions WHERE rev = ?1",
            [rev as i64],
            |_| Ok(()),
        )
        .optional()?;
    if rev == 0 || kept.is_none() {
        return Err(StoreError::NoRevision { rev });
    }
    let pending = pending_count(conn)?;
    if pending > 0 && !force {
        return Err(StoreError::Conflict { count: pending });
    }
    let mut stmt = conn.prepare(&format!(
        "SELECT {ENTRY_COLS} FROM versions WHERE from_rev <= ?1 AND to_rev > ?1
         UNION ALL SELECT {ENTRY_COLS} FROM entries WHERE from_rev <= ?1"
    ))?;
    let mut target_set: HashMap<(Target, List), Entry> = HashMap::new();
    let mut expired = Vec::new();
    for row in stmt.query_map([rev as i64], |r| entry_from(r, 0))? {
        let e = row??;
        if e.expired_at(now) {
            expired.push(e);
        } else {
            target_set.insert((e.target, e.list), e);
        }
    }
    drop(stmt);
    let deployed: HashMap<(Target, List), Entry> = deployed(conn)?
        .into_iter()
        .map(|s| ((s.entry.target, s.entry.list), s.entry))
        .collect();
    let tx = conn.transaction()?;
    tx.execute("DELETE FROM pending", [])?;
    for (key, e) in &target_set {
        match deployed.get(key) {
            Some(d) if d.same_settings(e) => {}
            Some(_) => insert_pending(&tx, Op::Change, e, user, now)?,
            None => insert_pending(&tx, Op::Add, e, user, now)?,
        }
    }
    for (key, d) in &deployed {
        if !target_set.contains_key(key) {
            insert_pending(&tx, Op::Remove, d, user, now)?;
        }
    }
    let detail = serde_json::json!({
        "to_revision": rev,
        "left_out_expired": expired.iter().map(|e| e.target.to_string()).collect::<Vec<_>>(),
    });
    let seq = audit(&tx, now, user, "rollback", None, Some(detail))?;
    tx.commit()?;
    expired.sort_by_key(|e| (e.target, e.list));
    Ok((seq, expired))
}

/// Deployed entries whose expiry has passed.
pub(super) fn expired(conn: &Connection, now: Millis) -> Result<Vec<Stored>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id, {ENTRY_COLS} FROM entries WHERE expires_at IS NOT NULL AND expires_at <= ?1"
    ))?;
    let rows = stmt.query_map([now], |r| Ok((r.get::<_, u32>(0)?, entry_from(r, 1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (id, entry) = row?;
        out.push(Stored { id, entry: entry? });
    }
    Ok(out)
}

/// Removes entries whose expiry has passed from the deployed set and
/// the draft, with an `expiry` audit event each; no revision.
pub(super) fn expire(
    conn: &mut Connection,
    expired: &[Stored],
    now: Millis,
) -> Result<u64, StoreError> {
    let tx = conn.transaction()?;
    let rev = meta(&tx, "revision")?;
    let mut seq = 0;
    for s in expired {
        let (t, l) = (s.entry.target.to_string(), s.entry.list.as_str());
        let key = sort_key(&s.entry.target);
        // It was in the revisions up to now, and is in none after.
        close_version(&tx, &s.entry, rev + 1)?;
        tx.execute(
            "DELETE FROM entries WHERE sort_key = ?1 AND list = ?2",
            params![key.as_slice(), l],
        )?;
        // The draft loses it too, so no later deploy revives it; but a
        // re-add staged after it expired is a new entry, and stays.
        tx.execute(
            "DELETE FROM pending WHERE sort_key = ?1 AND list = ?2 AND (op = 'remove' OR staged_at < ?3)",
            params![key.as_slice(), l, s.entry.expires_at.unwrap_or(now)],
        )?;
        tx.execute(
            "UPDATE pending SET op = 'add' WHERE sort_key = ?1 AND list = ?2",
            params![key.as_slice(), l],
        )?;
        tx.execute("DELETE FROM hits WHERE id = ?1", [s.id])?;
        let detail =
            serde_json::json!({ "list": l, "expires_at": s.entry.expires_at.map(rfc3339) });
        seq = audit(&tx, now, "denylistd", "expiry", Some(&t), Some(detail))?;
    }
    tx.commit()?;
    Ok(seq)
}

/// A deploy's rows in an open transaction: committed by
/// [`WrittenDeploy::commit`], rolled back when dropped.
pub(super) struct Written<'c> {
    tx: Transaction<'c>,
    done: (Revision, u64),
}

impl WrittenDeploy for Written<'_> {
    fn commit(self: Box<Self>) -> Result<(Revision, u64), StoreError> {
        self.tx.commit()?;
        Ok(self.done)
    }
}

/// Writes a deploy's rows without committing them.
pub(super) fn write<'c>(
    conn: &'c mut Connection,
    plan: &Plan,
    record: DeployRecord<'_>,
) -> Result<Written<'c>, StoreError> {
    let tx = conn.transaction()?;
    let done = write_rows(&tx, plan, record)?;
    Ok(Written { tx, done })
}

fn write_rows(
    tx: &Transaction<'_>,
    plan: &Plan,
    record: DeployRecord<'_>,
) -> Result<(Revision, u64), StoreError> {
    let DeployRecord {
        user,
        message,
        now,
        kind,
    } = record;
    let rev = meta(tx, "revision")? + 1;
    // Every change in the plan came from its own pending row, so equal
    // counts mean the plan is the whole draft: one bulk delete then.
    let whole = pending_rows(tx)? == plan.len();
    for s in &plan.removes {
        delete_entry(tx, &s.entry, rev, whole)?;
        tx.prepare_cached("DELETE FROM hits WHERE id = ?1")?
            .execute([s.id])?;
    }
    for (before, after) in &plan.changes {
        delete_entry(tx, &before.entry, rev, whole)?;
        insert_entry(tx, after, rev, whole)?;
    }
    for s in &plan.adds {
        insert_entry(tx, s, rev, whole)?;
    }
    if whole {
        tx.execute("DELETE FROM pending", [])?;
    }
    let revision = Revision {
        revision: rev as u64,
        deployed_at: now,
        deployed_by: user.to_string(),
        message: message.map(str::to_string),
        added: plan.adds.len() as u64,
        removed: plan.removes.len() as u64,
        changed: plan.changes.len() as u64,
    };
    tx.execute(
        "INSERT INTO revisions VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            rev,
            now,
            user,
            message,
            plan.adds.len() as i64,
            plan.removes.len() as i64,
            plan.changes.len() as i64
        ],
    )?;
    set_meta(tx, "revision", rev)?;
    let mut detail = serde_json::json!({
        "revision": rev, "message": message,
        "added": revision.added, "removed": revision.removed, "changed": revision.changed,
    });
    // A partial deploy names the changes it shipped (`only`) or, when
    // fewer, those that stay pending (`kept`), so that the log alone
    // replays the draft without a row the size of a big import.
    if !whole {
        let key = |t: String, l: &str| serde_json::json!({ "target": t, "list": l });
        if pending_rows(tx)? < plan.len() {
            let mut stmt = tx.prepare("SELECT target, list FROM pending")?;
            let kept = stmt
                .query_map([], |r| Ok(key(r.get(0)?, &r.get::<_, String>(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            detail["kept"] = kept.into();
        } else {
            let shipped = plan
                .adds
                .iter()
                .chain(plan.changes.iter().map(|(_, after)| after))
                .chain(&plan.removes)
                .map(|s| key(s.entry.target.to_string(), s.entry.list.as_str()));
            detail["only"] = shipped.collect();
        }
    }
    let seq = audit(tx, now, user, kind, None, Some(detail))?;
    Ok((revision, seq))
}
