//! The draft: the deployed entries with the pending changes on top, and
//! staging, which writes those changes.

use std::collections::BTreeMap;

use rusqlite::{Connection, params};

use super::{
    rows::{
        ENTRY_COLS, REFRESH, as_read_back, audit, deployed_entry, draft_changed,
        drop_expired_copies, entry_from, insert_pending, meta, pending_row, pending_rows, prefixed,
        shown, sort_key,
    },
    walk,
};
use crate::{
    model::{Entry, List, Listing, MANUAL, Millis, Sources, Stored, Target},
    store::{Audit, Op, Pending, Stage, StoreError},
};

/// The deployed revision, 0 before the first deploy.
pub(super) fn revision(conn: &Connection) -> Result<u64, StoreError> {
    Ok(meta(conn, "revision")? as u64)
}

/// The deployed entries, expired ones included (the sweep removes them).
pub(super) fn deployed(conn: &Connection) -> Result<Vec<Stored>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT id, {ENTRY_COLS} FROM entries"))?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, u32>(0)?, entry_from(r, 1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (id, entry) = row?;
        out.push(Stored { id, entry: entry? });
    }
    Ok(out)
}

/// The draft's entries: live deployed ones with the pending changes
/// applied (a pending entry's expiry is set again by its deploy).
pub(super) fn draft(conn: &Connection, now: Millis) -> Result<Vec<Entry>, StoreError> {
    let mut by_key: BTreeMap<(Target, List), Entry> = deployed(conn)?
        .into_iter()
        .filter_map(|s| s.entry.live(now))
        .map(|e| ((e.target, e.list), e))
        .collect();
    for p in pending(conn)? {
        let key = p.key();
        let after = p.after.and_then(|mut e| {
            drop_expired_copies(&mut e, now);
            (!e.listings.is_empty()).then_some(e)
        });
        match after {
            Some(e) => by_key.insert(key, e),
            None => by_key.remove(&key),
        };
    }
    Ok(by_key.into_values().collect())
}

/// One key's entry in the draft, as [`draft`] has it.
pub(super) fn draft_entry(
    conn: &Connection,
    target: Target,
    list: List,
    now: Millis,
) -> Result<Option<Entry>, StoreError> {
    Ok(match pending_row(conn, target, list)? {
        Some((Op::Remove, _)) => None,
        Some((_, mut e)) => {
            drop_expired_copies(&mut e, now);
            (!e.listings.is_empty()).then(|| shown(e))
        }
        None => deployed_entry(conn, target, list)?.and_then(|s| s.entry.live(now)),
    })
}

/// The entries listed by `source`, in the draft or deployed, by key only:
/// what an import with --replace, or a feed's refresh, removes when its
/// list leaves them out. One pass in SQL, so a 1M-entry draft is not read
/// into memory for it; `listings` is only there when an entry has several.
pub(super) fn keys_from(
    conn: &Connection,
    source: &str,
    now: Millis,
    draft: bool,
) -> Result<Vec<(Target, List)>, StoreError> {
    const DEPLOYED: &str = "SELECT e.target, e.list FROM entries e
         WHERE (e.source = ?1 AND e.listings IS NULL AND (e.expires_at IS NULL OR e.expires_at > ?2)
                OR e.listings IS NOT NULL AND EXISTS (SELECT 1 FROM json_each(e.listings) j
                   WHERE j.value ->> 'source' = ?1
                     AND (j.value ->> 'expires_at' IS NULL OR j.value ->> 'expires_at' > ?2)))";
    // The deployed entries the draft keeps as they are, and the pending ones.
    let query = if draft {
        format!(
            "{DEPLOYED}
             AND NOT EXISTS (SELECT 1 FROM pending p WHERE p.sort_key = e.sort_key AND p.list = e.list)
             UNION ALL
             SELECT p.target, p.list FROM pending p WHERE p.op != 'remove'
               AND (p.source = ?1 AND p.listings IS NULL
                    OR p.listings IS NOT NULL AND EXISTS (SELECT 1 FROM json_each(p.listings) j
                       WHERE j.value ->> 'source' = ?1))"
        )
    } else {
        DEPLOYED.to_string()
    };
    let mut stmt = conn.prepare(&query)?;
    let rows = stmt.query_map(params![source, now], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    rows.map(|row| {
        let (t, l) = row?;
        Ok((StoreError::target(&t)?, StoreError::list(&l)?))
    })
    .collect()
}

pub(super) fn pending_count(conn: &Connection) -> Result<usize, StoreError> {
    pending_rows(conn)
}

/// The pending changes, sorted by target, as the store's users see them: a
/// pending entry shows no expiry, since its deploy sets one.
pub(super) fn pending(conn: &Connection) -> Result<Vec<Pending>, StoreError> {
    let mut pending = pending_marked(conn)?;
    for p in &mut pending {
        p.after = p.after.take().map(shown);
    }
    Ok(pending)
}

/// The pending changes, sorted by target, with the expiry markers a deploy
/// plans by.
fn pending_marked(conn: &Connection) -> Result<Vec<Pending>, StoreError> {
    let mut out = Vec::new();
    for_each_marked(conn, |p| {
        out.push(p);
        Ok(())
    })?;
    Ok(out)
}

/// Hands each pending change, as [`pending_marked`] lists it, to `f` in
/// the same order, one at a time: a deploy of a million never holds them
/// all.
pub(super) fn for_each_marked(
    conn: &Connection,
    mut f: impl FnMut(Pending) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    // The primary key's order, which is the targets' (`sort_key`), deny
    // before allow: (Target, List) order, read without a sort.
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT p.op, p.staged_by, p.staged_at, {p}, e.id, {e} FROM pending p
         LEFT JOIN entries e ON e.sort_key = p.sort_key AND e.list = p.list
         ORDER BY p.sort_key, p.list DESC",
        p = prefixed("p"),
        e = prefixed("e"),
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let op = Op::parse(&r.get::<_, String>(0)?)?;
        let before = match r.get::<_, Option<u32>>(13)? {
            Some(id) => Some(Stored {
                id,
                entry: entry_from(r, 14)??,
            }),
            None => None,
        };
        f(Pending {
            op,
            after: if op == Op::Remove {
                None
            } else {
                Some(entry_from(r, 3)??)
            },
            before,
            staged_by: r.get(1)?,
            staged_at: r.get(2)?,
        })?;
    }
    Ok(())
}

/// Every pending change, as [`for_each_marked`] would read them back,
/// kept by the stage that wrote them all into an empty draft: a fleet
/// node plans the deploy that comes next from these rather than reading
/// a million rows back. Only [`stage`] makes one, so it is always a whole
/// draft; whoever holds it must know nothing changed since.
pub(crate) struct KeptDraft(pub(super) Vec<Pending>);

/// What [`stage`] did: the sequence number of the last audit event, for
/// each op the pending change it left (none when the draft now equals the
/// deployed entry), and the draft when it was asked to keep it and staged
/// into an empty one.
pub(crate) struct Staged {
    pub seq: u64,
    pub left: Vec<Option<Op>>,
    pub kept: Option<KeptDraft>,
}

/// Stages `ops` as one transaction: a target that is not there to
/// remove fails the whole call and nothing is staged.
pub(super) fn stage(
    conn: &mut Connection,
    ops: &[Stage],
    user: &str,
    now: Millis,
    default_ttl: Option<u64>,
    audit_as: &Audit,
    keep: bool,
) -> Result<Staged, StoreError> {
    let tx = conn.savepoint()?;
    let staged = stage_in(&tx, ops, user, now, default_ttl, audit_as, keep)?;
    draft_changed(&tx, staged.seq)?;
    tx.commit()?;
    Ok(staged)
}

/// What [`stage`] would leave for each op, staged in a transaction that is
/// then rolled back: the same rules, so a dry run counts what a real
/// stage would, and nothing is written or audited.
pub(super) fn stage_preview(
    conn: &mut Connection,
    ops: &[Stage],
    now: Millis,
    default_ttl: Option<u64>,
) -> Result<Vec<Option<Op>>, StoreError> {
    let mut tx = conn.savepoint()?;
    let Staged { left, .. } = stage_in(&tx, ops, "dry run", now, default_ttl, &Audit::Each, false)?;
    // Rolled back to the savepoint, then released as the savepoint drops.
    tx.rollback()?;
    Ok(left)
}

fn stage_in(
    tx: &rusqlite::Savepoint<'_>,
    ops: &[Stage],
    user: &str,
    now: Millis,
    default_ttl: Option<u64>,
    audit_as: &Audit,
    keep: bool,
) -> Result<Staged, StoreError> {
    let mut seq = 0;
    let mut left = vec![None; ops.len()];
    // In the primary key's order, so a bulk import reads the deployed
    // entries in one scan and writes the B-trees in order; the sort is
    // stable, so repeats of one key keep their given order.
    let mut order: Vec<usize> = (0..ops.len()).collect();
    order.sort_by_cached_key(|&i| {
        let (target, list) = ops[i].key();
        walk::key_order(sort_key(&target), list)
    });
    let mut scan;
    let mut cursor = match order.first() {
        Some(&i) if ops.len() >= walk::WALK_MIN => {
            scan = walk::prepare(tx)?;
            Some(walk::Walk::start(&mut scan, sort_key(&ops[i].key().0))?)
        }
        _ => None,
    };
    // With no draft to start from (the usual bulk import), only a key
    // this call already staged can have a pending row: a million
    // lookups that would find nothing are skipped. The ops are sorted, so
    // a key staged already is the previous op's.
    let no_draft = pending_rows(tx)? == 0;
    let mut kept = (keep && no_draft).then(|| Vec::with_capacity(ops.len()));
    let mut previous = None;
    for i in order {
        let op = &ops[i];
        let (target, list) = op.key();
        let repeat = previous.replace((target, list)) == Some((target, list));
        let deployed = match &mut cursor {
            Some(w) => w.get(sort_key(&target), list)?,
            None => deployed_entry(tx, target, list)?,
        };
        let pending = if no_draft && !repeat {
            None
        } else {
            pending_row(tx, target, list)?
        };
        // An expired listing is absent, even before the sweep removes it.
        let draft: Option<Entry> = match &pending {
            Some((Op::Remove, _)) => None,
            Some((_, e)) => {
                let mut e = e.clone();
                drop_expired_copies(&mut e, now);
                (!e.listings.is_empty()).then_some(e)
            }
            None => deployed.as_ref().and_then(|d| d.entry.live(now)),
        };
        let existed = draft.is_some();
        let new = match op {
            Stage::Restore(e) => Some(e.clone().normalized()),
            Stage::Remove { sources, .. } => match draft {
                None => return Err(StoreError::NotFound { target, list }),
                Some(e) => match sources {
                    Sources::Only(s) if e.listing(s).is_none() => {
                        return Err(StoreError::NoListing {
                            target,
                            list,
                            source_name: s.clone(),
                            listed: e.sources,
                        });
                    }
                    _ => e.without(sources),
                },
            },
            Stage::Upsert {
                reason,
                ttl,
                monitor,
                source,
                keep_longer_ttl,
                ..
            } => {
                let fresh = |source: &str| Listing {
                    source: source.to_string(),
                    reason: reason.clone(),
                    ttl: match ttl {
                        Some(t) => t.secs(),
                        None if list == List::Deny => default_ttl,
                        None => None,
                    },
                    expires_at: None,
                    monitor: monitor.unwrap_or(false) && list == List::Deny,
                    added_by: user.to_string(),
                    added_at: now,
                };
                let change = |l: &mut Listing| {
                    if let Some(r) = reason {
                        l.reason = Some(r.clone());
                    }
                    if let Some(t) = ttl {
                        // A TTL given again counts from the next deploy:
                        // exactly (the admin said so), or never shorter
                        // (an import, where the longer expiry wins, and
                        // a permanent listing stays permanent).
                        if !*keep_longer_ttl {
                            l.ttl = t.secs();
                            l.expires_at = None;
                        } else if l.ttl.is_some() {
                            l.ttl = t.secs();
                            l.expires_at = Some(REFRESH);
                        }
                    }
                    if let Some(m) = monitor {
                        l.monitor = *m && list == List::Deny;
                    }
                };
                Some(match draft {
                    Some(mut e) => {
                        match source {
                            // No source: every listing (enforce, monitor).
                            None => e.listings.iter_mut().for_each(change),
                            Some(s) => match e.listings.iter_mut().find(|l| l.source == *s) {
                                Some(l) => change(l),
                                None => e.listings.push(fresh(s)),
                            },
                        }
                        e.merge();
                        e
                    }
                    None => Entry::new(target, list, fresh(source.as_deref().unwrap_or(MANUAL))),
                })
            }
        };
        let kind = match (&new, existed) {
            (None, _) => "remove",
            (Some(_), false) => "add",
            (Some(_), true) => "change",
        };
        if let Audit::Each = audit_as {
            // The draft's entry after the change, or for a removal the
            // list it left: enough to replay the draft from the log.
            let detail = Some(match &new {
                Some(e) => serde_json::to_value(shown(e.clone())).expect("entries serialize"),
                None => serde_json::json!({ "list": list.as_str() }),
            });
            seq = audit(
                tx,
                now,
                user,
                &format!("stage {kind}"),
                Some(&target.to_string()),
                detail,
            )?;
        }
        // The pending row is whatever makes draft = deployed + pending.
        let row = match (&deployed, new) {
            (None, None) => None,
            (Some(d), None) => Some((Op::Remove, d.entry.clone())),
            (None, Some(n)) => Some((Op::Add, n)),
            (Some(d), Some(n))
                if d.entry.same_settings(&n)
                    && d.entry.next_expiry().is_none_or(|e| e > now)
                    && !needs_deploy(&n) =>
            {
                None
            }
            (Some(_), Some(n)) => Some((Op::Change, n)),
        };
        match &row {
            // INSERT OR REPLACE: it overwrites a pending row.
            Some((op, e)) => insert_pending(tx, *op, e, user, now)?,
            None if pending.is_some() => {
                tx.prepare_cached("DELETE FROM pending WHERE sort_key = ?1 AND list = ?2")?
                    .execute(params![sort_key(&target).as_slice(), list.as_str()])?;
            }
            None => {}
        }
        left[i] = row.as_ref().map(|(op, _)| *op);
        if let Some(kept) = &mut kept {
            // The ops are sorted, so a repeat's earlier row, which this
            // one replaced or deleted, is the last one kept.
            if repeat
                && kept
                    .last()
                    .is_some_and(|p: &Pending| p.key() == (target, list))
            {
                kept.pop();
            }
            if let Some((op, e)) = row {
                kept.push(Pending {
                    op,
                    after: (op != Op::Remove).then(|| as_read_back(e)),
                    before: deployed,
                    staged_by: user.to_string(),
                    staged_at: now,
                });
            }
        }
    }
    if let Audit::Summary { kind, detail } = audit_as {
        seq = audit(tx, now, user, kind, None, Some(detail.clone()))?;
    }
    Ok(Staged {
        seq,
        left,
        // Room was made for every op: an import that changes little keeps
        // little, for as long as the draft is kept.
        kept: kept.map(|mut k| {
            k.shrink_to_fit();
            KeptDraft(k)
        }),
    })
}

/// Whether an entry's listings wait for a deploy to set their expiry: a
/// TTL given again counts from that deploy.
pub(super) fn needs_deploy(e: &Entry) -> bool {
    e.listings
        .iter()
        .any(|l| l.ttl.is_some() && matches!(l.expires_at, None | Some(REFRESH)))
}

/// Drops every pending change.
pub(super) fn discard(
    conn: &mut Connection,
    user: &str,
    now: Millis,
) -> Result<(u64, usize), StoreError> {
    let tx = conn.savepoint()?;
    let n = tx.execute("DELETE FROM pending", [])?;
    let seq = audit(
        &tx,
        now,
        user,
        "discard",
        None,
        Some(serde_json::json!({ "changes": n })),
    )?;
    draft_changed(&tx, seq)?;
    tx.commit()?;
    Ok((seq, n))
}
