//! The audit log, the revision history, hit totals and attachments: what
//! the store records beside the entries.

use std::collections::HashMap;

use rusqlite::{Connection, params};

use super::rows::{audit, meta};
use crate::{
    model::{AuditEvent, AuditFilter, Millis, Page, Revision, rfc3339},
    store::{HitTotal, Pruned, StoreError},
};

/// Adds hit counts folded from the kernel, by entry id.
pub(super) fn add_hits(
    conn: &mut Connection,
    deltas: &[(u32, HitTotal)],
) -> Result<(), StoreError> {
    let tx = conn.savepoint()?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO hits VALUES (?1, ?2, ?3, ?4) ON CONFLICT(id) DO UPDATE SET
             packets = packets + excluded.packets, bytes = bytes + excluded.bytes,
             last_hit = CASE WHEN last_hit IS NULL THEN excluded.last_hit
                             WHEN excluded.last_hit IS NULL THEN last_hit
                             ELSE max(last_hit, excluded.last_hit) END",
        )?;
        for (id, h) in deltas {
            stmt.execute(params![id, h.packets as i64, h.bytes as i64, h.last_hit])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Folded hit totals by entry id.
pub(super) fn hit_totals(conn: &Connection) -> Result<HashMap<u32, HitTotal>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT id, packets, bytes, last_hit FROM hits")?;
    let rows = stmt.query_map([], |r| {
        let total = HitTotal {
            packets: r.get::<_, i64>(1)? as u64,
            bytes: r.get::<_, i64>(2)? as u64,
            last_hit: r.get(3)?,
        };
        Ok((r.get::<_, u32>(0)?, total))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Records an event that changed nothing in the store itself.
pub(super) fn record(
    conn: &mut Connection,
    user: &str,
    kind: &str,
    target: Option<&str>,
    detail: Option<serde_json::Value>,
    now: Millis,
) -> Result<u64, StoreError> {
    let tx = conn.savepoint()?;
    let seq = audit(&tx, now, user, kind, target, detail)?;
    tx.commit()?;
    Ok(seq)
}

/// A page's bounds as SQL parameters: no `before` is past every number,
/// and no `limit` is SQLite's -1, no limit.
fn bounds(page: Page) -> (i64, i64, i64) {
    let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    (
        clamp(page.since),
        page.before.map_or(i64::MAX, clamp),
        page.limit.map_or(-1, clamp),
    )
}

pub(super) fn history(conn: &Connection, page: Page) -> Result<Vec<Revision>, StoreError> {
    // The newest `limit` of the window, then oldest first.
    let mut stmt = conn.prepare_cached(
        "SELECT * FROM (SELECT * FROM revisions WHERE rev > ?1 AND rev < ?2
         ORDER BY rev DESC LIMIT ?3) ORDER BY rev",
    )?;
    let (since, before, limit) = bounds(page);
    let rows = stmt.query_map(params![since, before, limit], revision_from)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A row of `revisions`, its columns in table order.
pub(super) fn revision_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<Revision> {
    Ok(Revision {
        revision: r.get::<_, i64>(0)? as u64,
        deployed_at: r.get(1)?,
        deployed_by: r.get(2)?,
        message: r.get(3)?,
        added: r.get::<_, i64>(4)? as u64,
        removed: r.get::<_, i64>(5)? as u64,
        changed: r.get::<_, i64>(6)? as u64,
    })
}

/// The events of `page` that pass `filter`. The filters need no index:
/// newest first, a rare actor costs one pass over the log, and an index
/// would cost every event of a bulk stage a second write.
pub(super) fn audit_page(
    conn: &Connection,
    page: Page,
    filter: &AuditFilter,
) -> Result<Vec<AuditEvent>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT * FROM (SELECT seq, at, user, kind, target, detail FROM audit
         WHERE seq > ?1 AND seq < ?2
           AND (?4 IS NULL OR user = ?4)
           AND (?5 IS NULL OR kind = ?5 OR substr(kind, 1, length(?5) + 1) = ?5 || ' ')
           AND (?6 IS NULL OR at >= ?6) AND (?7 IS NULL OR at < ?7)
         ORDER BY seq DESC LIMIT ?3) ORDER BY seq",
    )?;
    let (since, before, limit) = bounds(page);
    let f = filter;
    let params = params![since, before, limit, f.actor, f.kind, f.from, f.to];
    let rows = stmt.query_map(params, |r| {
        let detail: Option<String> = r.get(5)?;
        Ok(AuditEvent {
            seq: r.get::<_, i64>(0)? as u64,
            at: r.get(1)?,
            user: r.get(2)?,
            kind: r.get(3)?,
            target: r.get(4)?,
            detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Deletes audit events and revisions from before `cutoff`, but never the
/// deployed revision, and with every revision kept, the versions a
/// rollback to it reads: a version is needed by the revisions it spans,
/// `from_rev <= R < to_rev`, so those ending at or before the oldest kept
/// revision go. Records a `prune` event when anything went.
pub(super) fn prune(
    conn: &mut Connection,
    cutoff: Millis,
    user: &str,
    now: Millis,
) -> Result<Option<(u64, Pruned)>, StoreError> {
    let tx = conn.savepoint()?;
    let current = meta(&tx, "revision")?;
    let audit_events = tx.execute("DELETE FROM audit WHERE at < ?1", [cutoff])? as u64;
    // Reports go with their audit events: older ones fall outside any
    // window, and the retention is what the admin set for the record.
    tx.execute("DELETE FROM reports WHERE at < ?1", [cutoff])?;
    let revisions = tx.execute(
        "DELETE FROM revisions WHERE deployed_at < ?1 AND rev < ?2",
        params![cutoff, current],
    )? as u64;
    let oldest: Option<i64> = tx.query_row("SELECT min(rev) FROM revisions", [], |r| r.get(0))?;
    let versions = match oldest {
        Some(oldest) => tx.execute("DELETE FROM versions WHERE to_rev <= ?1", [oldest])? as u64,
        None => 0,
    };
    let pruned = Pruned {
        audit_events,
        revisions,
        versions,
    };
    if pruned == Pruned::default() {
        return Ok(None);
    }
    let detail = serde_json::json!({
        "before": rfc3339(cutoff),
        "audit_events": audit_events,
        "revisions": revisions,
        "versions": versions,
        "oldest_revision": oldest,
    });
    let seq = audit(&tx, now, user, "prune", None, Some(detail))?;
    tx.commit()?;
    Ok(Some((seq, pruned)))
}

pub(super) fn attachments(conn: &Connection) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = conn.prepare("SELECT iface, mode FROM attachments ORDER BY iface")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn set_attachment(
    conn: &mut Connection,
    iface: &str,
    mode: Option<&str>,
    user: &str,
    now: Millis,
) -> Result<u64, StoreError> {
    let tx = conn.savepoint()?;
    write_attachment(&tx, iface, mode)?;
    let seq = audit(
        &tx,
        now,
        user,
        attach_kind(mode),
        Some(iface),
        mode.map(|m| serde_json::json!({ "xdp_mode": m })),
    )?;
    tx.commit()?;
    Ok(seq)
}

/// The audit event's kind of an attach (`Some(mode)`) or a detach.
pub(crate) fn attach_kind(mode: Option<&str>) -> &'static str {
    if mode.is_some() { "attach" } else { "detach" }
}

/// Records an attach or a detach in the attachments table alone.
pub(super) fn write_attachment(
    conn: &Connection,
    iface: &str,
    mode: Option<&str>,
) -> Result<(), StoreError> {
    match mode {
        Some(m) => conn.execute(
            "INSERT OR REPLACE INTO attachments VALUES (?1, ?2)",
            params![iface, m],
        )?,
        None => conn.execute("DELETE FROM attachments WHERE iface = ?1", params![iface])?,
    };
    Ok(())
}
