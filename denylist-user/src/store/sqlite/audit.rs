//! The audit log, the revision history, hit totals and attachments: what
//! the store records beside the entries.

use std::collections::HashMap;

use rusqlite::{Connection, params};

use super::rows::audit;
use crate::{
    model::{AuditEvent, Millis, Revision},
    store::{HitTotal, StoreError},
};

/// Adds hit counts folded from the kernel, by entry id.
pub(super) fn add_hits(
    conn: &mut Connection,
    deltas: &[(u32, HitTotal)],
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
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
    let tx = conn.transaction()?;
    let seq = audit(&tx, now, user, kind, target, detail)?;
    tx.commit()?;
    Ok(seq)
}

pub(super) fn history(conn: &Connection) -> Result<Vec<Revision>, StoreError> {
    let mut stmt = conn.prepare("SELECT * FROM revisions ORDER BY rev")?;
    let rows = stmt.query_map([], |r| {
        Ok(Revision {
            revision: r.get::<_, i64>(0)? as u64,
            deployed_at: r.get(1)?,
            deployed_by: r.get(2)?,
            message: r.get(3)?,
            added: r.get::<_, i64>(4)? as u64,
            removed: r.get::<_, i64>(5)? as u64,
            changed: r.get::<_, i64>(6)? as u64,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn audit_since(conn: &Connection, since: u64) -> Result<Vec<AuditEvent>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT seq, at, user, kind, target, detail FROM audit WHERE seq > ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map([since as i64], |r| {
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
    let tx = conn.transaction()?;
    let kind = match mode {
        Some(m) => {
            tx.execute(
                "INSERT OR REPLACE INTO attachments VALUES (?1, ?2)",
                params![iface, m],
            )?;
            "attach"
        }
        None => {
            tx.execute("DELETE FROM attachments WHERE iface = ?1", params![iface])?;
            "detach"
        }
    };
    let seq = audit(
        &tx,
        now,
        user,
        kind,
        Some(iface),
        mode.map(|m| serde_json::json!({ "xdp_mode": m })),
    )?;
    tx.commit()?;
    Ok(seq)
}
