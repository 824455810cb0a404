//! Deploys: the plan (ids and expiries fixed), the revision's rows, the
//! rollback that turns an old revision into the draft, and expiry.

use std::collections::{HashMap, HashSet};

use rusqlite::{Connection, OptionalExtension as _, Savepoint, params};

use super::{
    draft::{KeptDraft, deployed, for_each_marked, needs_deploy, pending_count},
    rows::{
        ENTRY_COLS, REFRESH, audit, close_version, delete_entry, draft_changed,
        drop_expired_copies, entry_from, insert_entry, insert_pending, meta, pending_row,
        pending_rows, set_meta, sort_key,
    },
};
use crate::{
    model::{
        Entry, List, Listing, Millis, Revision, Sources, Stored, Target, is_admin_source, rfc3339,
    },
    store::{DeployRecord, Only, Op, Pending, Plan, PlanKeys, StoreError, WrittenDeploy},
};

/// Fixes ids and expiries for deploying the pending changes (only those
/// for `only`, when given): the draft `kept` by the stage that wrote them
/// when there is one, else read from the store. With `reserve`, the ids
/// are reserved durably before the kernel sees them, so no id is ever
/// handed out twice; without, it is a dry run's preview.
pub(super) fn plan(
    conn: &mut Connection,
    only: Option<Only<'_>>,
    now: Millis,
    reserve: bool,
    kept: Option<KeptDraft>,
) -> Result<Plan, StoreError> {
    let mut plan = Plan::default();
    // A deploy plans each pending change as it is read; one of some keys
    // (`only`) skips the others, and fails on a key with none.
    let mut asked: Option<HashSet<&(Target, List)>> = only.map(|o| o.keys.iter().collect());
    let sources = only.map_or(&Sources::All, |o| o.sources);
    each_pending(conn, kept, |p| {
        if let Some(asked) = &mut asked
            && !asked.remove(&p.key())
        {
            return Ok(());
        }
        plan_one(&mut plan, p, sources, now);
        Ok(())
    })?;
    if let (Some(only), Some(left)) = (only, &asked)
        && let Some(&(target, list)) = only.keys.iter().find(|k| left.contains(k))
    {
        return Err(StoreError::NotPending { target, list });
    }
    number(conn, plan, reserve)
}

/// [`plan`] of a deploy of exactly the keys pending now, shipping their
/// listings of `sources`, without reserving ids; and those keys. A
/// follower plans so ahead of a deploy that names its keys
/// (`FleetStore::plan_ahead`), and checks them once it comes.
pub(super) fn plan_pending(
    conn: &mut Connection,
    sources: &Sources,
    now: Millis,
    kept: Option<KeptDraft>,
) -> Result<(Plan, PlanKeys), StoreError> {
    let mut plan = Plan::default();
    let mut keys = PlanKeys::default();
    each_pending(conn, kept, |p| {
        keys.insert(p.key());
        plan_one(&mut plan, p, sources, now);
        Ok(())
    })?;
    Ok((number(conn, plan, false)?, keys))
}

/// Hands each pending change to `f` in target order: those `kept`, or else
/// the store's, read one at a time.
fn each_pending(
    conn: &Connection,
    kept: Option<KeptDraft>,
    f: impl FnMut(Pending) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    match kept {
        Some(kept) => kept.0.into_iter().try_for_each(f),
        None => for_each_marked(conn, f),
    }
}

/// Gives a plan's new entries the next ids, in target order; with
/// `reserve`, durably.
fn number(conn: &mut Connection, mut plan: Plan, reserve: bool) -> Result<Plan, StoreError> {
    let adds = plan.adds.len() as i64;
    let tx = conn.savepoint()?;
    let first_id = meta(&tx, "next_id")?;
    if first_id + adds > i64::from(u32::MAX) {
        return Err(StoreError::IdsExhausted);
    }
    if reserve {
        set_meta(&tx, "next_id", first_id + adds)?;
        tx.commit()?;
    }
    for (s, id) in plan.adds.iter_mut().zip(first_id as u32..) {
        s.id = id;
    }
    Ok(plan)
}

/// Adds what deploying `p`'s listings of `sources` does to `plan`; a new
/// entry's id is left for [`plan`] to give.
fn plan_one(plan: &mut Plan, p: Pending, sources: &Sources, now: Millis) {
    let Some((before, after, kept)) = shipped(p, sources, now) else {
        return;
    };
    // A draft listing whose copied expiry has passed is gone, not
    // renewed: its entry may be left with none.
    let after = after.and_then(|mut e| {
        set_expiries(before.as_ref().map(|b| &b.entry), &mut e, now).then_some(e)
    });
    if let Some((op, mut e, by, at)) = kept {
        // The shipped listings stay staged as they were deployed, with
        // their expiries: a later deploy must not count a TTL again.
        if op != Op::Remove {
            rebase(&mut e, after.as_ref(), sources);
        }
        if !e.listings.is_empty() {
            plan.kept.push((op, e, by, at));
        }
    }
    match (before, after) {
        (None, Some(e)) => plan.adds.push(Stored { id: 0, entry: e }),
        (Some(before), Some(e)) => {
            let id = before.id;
            plan.changes.push((before, Stored { id, entry: e }));
        }
        (Some(before), None) => plan.removes.push(before),
        (None, None) => {}
    }
}

/// One pending change as a deploy ships it: the deployed entry, what it
/// becomes, and the pending row left staged (op, draft entry, who staged
/// it and when).
type Shipped = (
    Option<Stored>,
    Option<Entry>,
    Option<(Op, Entry, String, Millis)>,
);

/// Makes `draft`'s listings of `sources` those of the `deployed` entry.
fn rebase(draft: &mut Entry, deployed: Option<&Entry>, sources: &Sources) {
    let shipped: Vec<Listing> = deployed
        .iter()
        .flat_map(|d| &d.listings)
        .filter(|l| sources.matches(&l.source))
        .cloned()
        .collect();
    draft.listings.retain(|l| !sources.matches(&l.source));
    draft.listings.extend(shipped);
    draft.merge();
}

/// What deploying the listings of `sources` from one pending change does
/// to its deployed entry, or `None` when nothing. The other listings'
/// changes stay staged, as the pending row they become. It takes `p` whole:
/// a full deploy moves its entries on, so a million of them are never held
/// twice.
fn shipped(p: Pending, sources: &Sources, now: Millis) -> Option<Shipped> {
    if *sources == Sources::All {
        return Some((p.before, p.after, None));
    }
    let live = p.before.as_ref().and_then(|b| b.entry.live(now));
    let mut listings: Vec<Listing> = live
        .iter()
        .flat_map(|e| &e.listings)
        .filter(|l| !sources.matches(&l.source))
        .cloned()
        .collect();
    listings.extend(
        p.after
            .iter()
            .flat_map(|e| &e.listings)
            .filter(|l| sources.matches(&l.source))
            .cloned(),
    );
    let (target, list) = p.key();
    let after = Entry::from_listings(target, list, listings);
    let unchanged = match (&live, &after) {
        (None, None) => true,
        (Some(b), Some(a)) => b.same_settings(a) && !needs_deploy(a),
        _ => false,
    };
    // What stays staged: the draft's other listings, where they differ
    // from the deployed ones (the shipped ones now equal the draft's).
    let others = |e: Option<&Entry>| -> Vec<Listing> {
        e.iter()
            .flat_map(|e| &e.listings)
            .filter(|l| !sources.matches(&l.source))
            .cloned()
            .collect()
    };
    let (drafted, deployed) = (others(p.after.as_ref()), others(live.as_ref()));
    let settled = drafted.len() == deployed.len()
        && drafted.iter().all(|l| {
            !(l.ttl.is_some() && matches!(l.expires_at, None | Some(REFRESH)))
                && deployed
                    .iter()
                    .any(|d| d.source == l.source && d.same_settings(l))
        });
    let rest = match (&after, &p.after) {
        _ if settled => None,
        (None, None) => None,
        (Some(a), None) => Some((Op::Remove, a.clone())),
        (None, Some(d)) => Some((Op::Add, d.clone())),
        (Some(_), Some(d)) => Some((Op::Change, d.clone())),
    };
    if unchanged {
        return None;
    }
    let kept = rest.map(|(op, e)| (op, e, p.staged_by, p.staged_at));
    Some((p.before, after, kept))
}

/// Fixes the expiry of each of a deployed entry's listings. A TTL counts
/// from the deploy that sets it; an unchanged TTL keeps its expiry. A
/// listing the draft copied with an expiry that has passed since is gone;
/// `false` when none is left.
fn set_expiries(before: Option<&Entry>, after: &mut Entry, now: Millis) -> bool {
    let expiry = |ttl: Option<u64>| ttl.map(|t| now + (t as i64) * 1000);
    drop_expired_copies(after, now);
    for l in &mut after.listings {
        let old = before
            .and_then(|b| b.listing(&l.source))
            .filter(|o| !o.expired_at(now));
        l.expires_at = match (l.expires_at, old) {
            (Some(REFRESH), Some(old)) => match (old.expires_at, expiry(l.ttl)) {
                (Some(old), Some(new)) => Some(old.max(new)),
                (_, new) => new,
            },
            (Some(_), Some(old)) if l.ttl == old.ttl => old.expires_at,
            _ => expiry(l.ttl),
        };
    }
    after.merge();
    !after.listings.is_empty()
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
    // The revision's manual and import listings that have not expired.
    let mut target_set: HashMap<(Target, List), Vec<Listing>> = HashMap::new();
    let mut expired = Vec::new();
    for row in stmt.query_map([rev as i64], |r| entry_from(r, 0))? {
        let e = row??;
        let admin: Vec<Listing> = e
            .listings
            .iter()
            .filter(|l| is_admin_source(&l.source))
            .cloned()
            .collect();
        if admin.is_empty() {
            continue;
        }
        let live: Vec<Listing> = admin
            .iter()
            .filter(|l| !l.expired_at(now))
            .cloned()
            .collect();
        if live.is_empty() {
            expired.push(e);
        } else {
            target_set.insert((e.target, e.list), live);
        }
    }
    drop(stmt);
    let deployed: HashMap<(Target, List), Entry> = deployed(conn)?
        .into_iter()
        .filter_map(|s| s.entry.live(now))
        .map(|e| ((e.target, e.list), e))
        .collect();
    // Feeds and detectors keep their own listings as they are now.
    let mut keys: Vec<(Target, List)> = target_set.keys().chain(deployed.keys()).copied().collect();
    keys.sort();
    keys.dedup();
    let tx = conn.savepoint()?;
    tx.execute("DELETE FROM pending", [])?;
    for key in keys {
        let now_deployed = deployed.get(&key);
        let mut listings = target_set.remove(&key).unwrap_or_default();
        listings.extend(
            now_deployed
                .iter()
                .flat_map(|d| &d.listings)
                .filter(|l| !is_admin_source(&l.source))
                .cloned(),
        );
        match (now_deployed, Entry::from_listings(key.0, key.1, listings)) {
            (Some(d), Some(e)) if d.same_settings(&e) => {}
            (Some(_), Some(e)) => insert_pending(&tx, Op::Change, &e, user, now)?,
            (None, Some(e)) => insert_pending(&tx, Op::Add, &e, user, now)?,
            (Some(d), None) => insert_pending(&tx, Op::Remove, d, user, now)?,
            (None, None) => {}
        }
    }
    let detail = serde_json::json!({
        "to_revision": rev,
        "left_out_expired": expired.iter().map(|e| e.target.to_string()).collect::<Vec<_>>(),
    });
    let seq = audit(&tx, now, user, "rollback", None, Some(detail))?;
    draft_changed(&tx, seq)?;
    tx.commit()?;
    expired.sort_by_key(|e| (e.target, e.list));
    Ok((seq, expired))
}

/// Deployed entries whose expiry has passed.
pub(super) fn expired(conn: &Connection, now: Millis) -> Result<Vec<Stored>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id, {ENTRY_COLS} FROM entries WHERE next_expiry IS NOT NULL AND next_expiry <= ?1"
    ))?;
    let rows = stmt.query_map([now], |r| Ok((r.get::<_, u32>(0)?, entry_from(r, 1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (id, entry) = row?;
        out.push(Stored { id, entry: entry? });
    }
    Ok(out)
}

/// Removes the listings whose expiry has passed from the deployed set and
/// the draft, and the entries left with none, with an `expiry` audit event
/// each; no revision.
pub(super) fn expire(
    conn: &mut Connection,
    expired: &[Stored],
    now: Millis,
) -> Result<u64, StoreError> {
    let tx = conn.savepoint()?;
    let rev = meta(&tx, "revision")?;
    let mut seq = 0;
    // Whether an expiry reached the draft's pending changes too: only then
    // has the draft an admin reviewed changed.
    let mut drafted = false;
    for s in expired {
        let (t, l) = (s.entry.target.to_string(), s.entry.list.as_str());
        if let Some(live) = s.entry.live(now) {
            drafted |= expire_listings(&tx, s, live, now)?;
            let gone: Vec<&str> = s
                .entry
                .listings
                .iter()
                .filter(|l| l.expired_at(now))
                .map(|l| l.source.as_str())
                .collect();
            let detail = serde_json::json!({ "list": l, "sources": gone });
            seq = audit(&tx, now, "denylistd", "expiry", Some(&t), Some(detail))?;
            continue;
        }
        let key = sort_key(&s.entry.target);
        // It was in the revisions up to now, and is in none after.
        close_version(&tx, &s.entry, rev + 1)?;
        tx.execute(
            "DELETE FROM entries WHERE sort_key = ?1 AND list = ?2",
            params![key.as_slice(), l],
        )?;
        // The draft loses it too, so no later deploy revives it; but what
        // the draft holds besides copies of the expired listings (a new
        // source's listing, a TTL given again) stays, as a new entry.
        let pending = pending_row(&tx, s.entry.target, s.entry.list)?;
        drafted |= pending.is_some();
        let draft = match pending {
            Some((Op::Remove, _)) | None => None,
            Some((_, mut draft)) => {
                draft.listings.retain(|d| !expired_copy(&s.entry, d, now));
                drop_expired_copies(&mut draft, now);
                draft.merge();
                (!draft.listings.is_empty()).then_some(draft)
            }
        };
        match draft {
            Some(draft) => {
                let (by, at) = staged(&tx, &key, l)?;
                insert_pending(&tx, Op::Add, &draft, &by, at)?;
            }
            None => {
                tx.execute(
                    "DELETE FROM pending WHERE sort_key = ?1 AND list = ?2",
                    params![key.as_slice(), l],
                )?;
            }
        }
        tx.execute("DELETE FROM hits WHERE id = ?1", [s.id])?;
        let detail =
            serde_json::json!({ "list": l, "expires_at": s.entry.expires_at.map(rfc3339) });
        seq = audit(&tx, now, "denylistd", "expiry", Some(&t), Some(detail))?;
    }
    if drafted {
        draft_changed(&tx, seq)?;
    }
    tx.commit()?;
    Ok(seq)
}

/// Takes an entry's expired listings out of it, deployed and draft alike,
/// leaving `live`. A draft listing that is a copy of an expired one goes
/// too, so no later deploy revives it; one given a TTL again stays.
/// Returns whether the entry had a pending change, which this rewrote.
fn expire_listings(
    tx: &Savepoint<'_>,
    s: &Stored,
    live: Entry,
    now: Millis,
) -> Result<bool, StoreError> {
    let key = sort_key(&s.entry.target);
    let from_rev: i64 = tx.query_row(
        "SELECT from_rev FROM entries WHERE sort_key = ?1 AND list = ?2",
        params![key.as_slice(), s.entry.list.as_str()],
        |r| r.get(0),
    )?;
    insert_entry(
        tx,
        &Stored {
            id: s.id,
            entry: live.clone(),
        },
        from_rev,
        true,
    )?;
    let Some((op, mut draft)) = pending_row(tx, s.entry.target, s.entry.list)? else {
        return Ok(false);
    };
    if op == Op::Remove {
        return Ok(false);
    }
    draft.listings.retain(|l| !expired_copy(&s.entry, l, now));
    draft.merge();
    let (staged_by, staged_at) = staged(tx, &key, s.entry.list.as_str())?;
    if draft.listings.is_empty() {
        insert_pending(tx, Op::Remove, &live, &staged_by, staged_at)?;
    } else if live.same_settings(&draft) && !needs_deploy(&draft) {
        tx.execute(
            "DELETE FROM pending WHERE sort_key = ?1 AND list = ?2",
            params![key.as_slice(), s.entry.list.as_str()],
        )?;
    } else {
        insert_pending(tx, Op::Change, &draft, &staged_by, staged_at)?;
    }
    Ok(true)
}

/// Whether a draft listing is a copy of one of `deployed`'s that has
/// expired: a TTL given again (no expiry yet, or the refresh marker) is
/// not.
fn expired_copy(deployed: &Entry, l: &Listing, now: Millis) -> bool {
    l.expires_at.is_some_and(|e| e != REFRESH && e <= now)
        && deployed
            .listing(&l.source)
            .is_some_and(|d| d.expired_at(now))
}

/// Who staged a key's pending row, and when.
fn staged(tx: &Savepoint<'_>, key: &[u8], list: &str) -> Result<(String, Millis), StoreError> {
    Ok(tx.query_row(
        "SELECT staged_by, staged_at FROM pending WHERE sort_key = ?1 AND list = ?2",
        params![key, list],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

/// A deploy's rows in an open transaction: committed by
/// [`WrittenDeploy::commit`], rolled back when dropped.
pub(super) struct Written<'c> {
    tx: Savepoint<'c>,
    done: (Revision, u64),
    before_commit: Option<BeforeCommit<'c>>,
}

/// Runs in a deploy's transaction just before it commits, and fails the
/// commit when it fails: fleet mode's log entry goes here.
pub(crate) type BeforeCommit<'c> = Box<dyn FnOnce(&Connection) -> Result<(), StoreError> + 'c>;

impl WrittenDeploy for Written<'_> {
    fn commit(self: Box<Self>) -> Result<(Revision, u64), StoreError> {
        if let Some(f) = self.before_commit {
            f(&self.tx)?;
        }
        self.tx.commit()?;
        Ok(self.done)
    }
}

/// Writes a deploy's rows without committing them.
pub(super) fn write<'c>(
    conn: &'c mut Connection,
    plan: &Plan,
    record: DeployRecord<'_>,
    before_commit: Option<BeforeCommit<'c>>,
) -> Result<Written<'c>, StoreError> {
    let tx = conn.savepoint()?;
    let done = write_rows(&tx, plan, record)?;
    Ok(Written {
        tx,
        done,
        before_commit,
    })
}

fn write_rows(
    tx: &Savepoint<'_>,
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
    let whole = plan.kept.is_empty() && pending_rows(tx)? == plan.len();
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
    for (op, e, staged_by, staged_at) in &plan.kept {
        insert_pending(tx, *op, e, staged_by, *staged_at)?;
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
    draft_changed(tx, seq)?;
    Ok((revision, seq))
}
