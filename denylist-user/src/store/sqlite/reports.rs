//! Reports from applications, the offences they set off, and the policy
//! that turns them into listings.

use std::net::IpAddr;

use rusqlite::{Connection, OptionalExtension as _, params};

use super::rows::audit;
use crate::{
    model::{AutoPolicy, Millis, REOFFENCE_WINDOW_MS, Report, normal_ip},
    store::{ReportTally, StoreError},
};

/// How many distinct recent reasons a listing's reason names.
const REASONS: usize = 3;

pub(super) fn report(
    conn: &mut Connection,
    r: &Report,
    since: Millis,
) -> Result<ReportTally, StoreError> {
    let tx = conn.savepoint()?;
    let ip = r.ip.to_string();
    tx.execute(
        "INSERT INTO reports(at, ip, reason, weight, reporter) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![r.at, ip, r.reason, r.weight, r.reporter],
    )?;
    let detail = serde_json::json!({ "reason": r.reason, "weight": r.weight });
    let seq = audit(&tx, r.at, &r.reporter, "report", Some(&ip), Some(detail))?;
    let weight: i64 = tx.query_row(
        "SELECT coalesce(sum(weight), 0) FROM reports WHERE ip = ?1 AND at > ?2",
        params![ip, since],
        |row| row.get(0),
    )?;
    let mut reasons: Vec<String> = Vec::new();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT reason FROM reports WHERE ip = ?1 AND at > ?2 ORDER BY seq DESC LIMIT 100",
        )?;
        for reason in stmt.query_map(params![ip, since], |row| row.get::<_, String>(0))? {
            let reason = reason?;
            if !reasons.contains(&reason) {
                reasons.push(reason);
            }
            if reasons.len() == REASONS {
                break;
            }
        }
    }
    tx.commit()?;
    Ok(ReportTally {
        seq,
        weight: weight as u64,
        reasons,
    })
}

pub(super) fn reports(
    conn: &Connection,
    reporter: Option<&str>,
    limit: usize,
) -> Result<Vec<Report>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, at, ip, reason, weight, reporter FROM reports
         WHERE ?1 IS NULL OR reporter = ?1 ORDER BY seq DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![reporter, limit as i64], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, Millis>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, u8>(4)?,
            r.get::<_, String>(5)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, at, ip, reason, weight, reporter) = row?;
        let ip: IpAddr = ip.parse().map_err(|_| StoreError::Unreadable {
            what: "reported address",
            value: ip.clone(),
        })?;
        out.push(Report {
            seq: seq as u64,
            ip: normal_ip(ip),
            reason,
            weight,
            reporter,
            at,
        });
    }
    out.reverse();
    Ok(out)
}

pub(super) fn offence(conn: &mut Connection, ip: IpAddr, now: Millis) -> Result<u32, StoreError> {
    let tx = conn.savepoint()?;
    let ip = ip.to_string();
    let last: Option<(u32, Millis)> = tx
        .query_row(
            "SELECT count, last_at FROM offences WHERE ip = ?1",
            [&ip],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let count = match last {
        Some((n, at)) if now - at <= REOFFENCE_WINDOW_MS => n.saturating_add(1),
        _ => 1,
    };
    tx.execute(
        "INSERT OR REPLACE INTO offences(ip, count, last_at) VALUES (?1, ?2, ?3)",
        params![ip, count, now],
    )?;
    tx.commit()?;
    Ok(count)
}

pub(super) fn auto_policy(conn: &Connection) -> Result<AutoPolicy, StoreError> {
    let text: Option<String> = conn
        .query_row("SELECT value FROM settings WHERE key = 'auto'", [], |r| {
            r.get(0)
        })
        .optional()?;
    match text {
        None => Ok(AutoPolicy::default()),
        Some(t) => serde_json::from_str(&t).map_err(|_| StoreError::Unreadable {
            what: "auto policy",
            value: t,
        }),
    }
}

pub(super) fn set_auto_policy(
    conn: &mut Connection,
    p: &AutoPolicy,
    user: &str,
    action: &str,
    now: Millis,
) -> Result<u64, StoreError> {
    let tx = conn.savepoint()?;
    let value = serde_json::to_value(p).expect("the policy serializes");
    tx.execute(
        "INSERT OR REPLACE INTO settings(key, value) VALUES ('auto', ?1)",
        [value.to_string()],
    )?;
    let seq = audit(&tx, now, user, action, None, Some(value))?;
    tx.commit()?;
    Ok(seq)
}
