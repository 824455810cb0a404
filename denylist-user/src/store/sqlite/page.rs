//! A console's page of entries. The deployed entries are read in the
//! page's order straight from the table, after the cursor, so a page costs
//! what it holds in address order; filters that few entries pass, and the
//! orders by time, cost one pass over the table (no index: issue 15's bulk
//! deploys would pay for each on every row). The pending changes are few
//! and read whole. `contains` reads one key per prefix length.

use std::cmp::Ordering;

use ipnet::IpNet;
use rusqlite::{Connection, Row, params, params_from_iter, types::Value};

use super::rows::{drop_expired_copies, entry_from, prefixed, shown, sort_key};
use crate::{
    model::{Entry, Millis, Target, normal_ip},
    store::{HitTotal, Op, PageOrder, PageRow, PageSpec, StoreError},
};

/// A row with the key it sorts by: the order's value, then the sort key.
struct Candidate {
    key: (i64, [u8; 18]),
    row: PageRow,
}

fn candidate(
    spec: &PageSpec,
    entry: Entry,
    pending: Option<Op>,
    hits: Option<HitTotal>,
) -> Candidate {
    let key = spec.key_of(&entry);
    Candidate {
        key: (key.value, sort_key(&key.target)),
        row: PageRow {
            entry,
            pending,
            hits,
            key,
        },
    }
}

/// Whether `a` comes before `b` in the page's direction.
fn before(spec: &PageSpec, a: &(i64, [u8; 18]), b: &(i64, [u8; 18])) -> bool {
    let o = a.cmp(b);
    if spec.desc {
        o == Ordering::Greater
    } else {
        o == Ordering::Less
    }
}

fn after_cursor(spec: &PageSpec, key: &(i64, [u8; 18])) -> bool {
    spec.after
        .is_none_or(|a| before(spec, &(a.value, sort_key(&a.target)), key))
}

fn hits_at(r: &Row<'_>, at: usize) -> rusqlite::Result<HitTotal> {
    Ok(HitTotal {
        packets: r.get::<_, Option<i64>>(at)?.unwrap_or(0) as u64,
        bytes: r.get::<_, Option<i64>>(at + 1)?.unwrap_or(0) as u64,
        last_hit: r.get(at + 2)?,
    })
}

pub(super) fn page(
    conn: &Connection,
    spec: &PageSpec,
    now: Millis,
) -> Result<Vec<PageRow>, StoreError> {
    // One read transaction: both arms see the same snapshot.
    let tx = conn.unchecked_transaction()?;
    let mut held = match spec.contains {
        Some(ip) => containing(&tx, spec, normal_ip(ip), now)?,
        None if spec.draft => pending_rows(&tx, spec, now)?,
        None => Vec::new(),
    };
    held.retain(|c| after_cursor(spec, &c.key) && spec.passes(&c.row.entry));
    held.sort_by(|a, b| {
        if before(spec, &a.key, &b.key) {
            Ordering::Less
        } else {
            Ordering::Greater
        }
    });
    if spec.contains.is_some() {
        held.truncate(spec.limit);
        return Ok(held.into_iter().map(|c| c.row).collect());
    }
    merge_deployed(&tx, spec, now, held)
}

/// The deployed entries in the page's order, merged with `held` (the
/// draft's pending rows, in that order too).
fn merge_deployed(
    conn: &Connection,
    spec: &PageSpec,
    now: Millis,
    held: Vec<Candidate>,
) -> Result<Vec<PageRow>, StoreError> {
    let value = match spec.order {
        PageOrder::Target => "0",
        PageOrder::ExpiresAt => "coalesce(e.expires_at, 9223372036854775807)",
        PageOrder::AddedAt => "e.added_at",
    };
    let (dir, cmp) = if spec.desc { ("DESC", "<") } else { ("", ">") };
    let mut sql = format!(
        "SELECT e.id, {cols}, {value}, h.packets, h.bytes, h.last_hit
         FROM entries e LEFT JOIN hits h ON h.id = e.id WHERE e.list = ?1",
        cols = prefixed("e"),
    );
    let mut args: Vec<Value> = vec![Value::Text(spec.list.as_str().into())];
    // Necessary conditions on the stored merge; `passes` then checks the
    // entry as of now.
    if let Some(m) = spec.monitor {
        let n = bind(&mut args, Value::Integer(m.into()));
        sql.push_str(&format!(" AND e.monitor = {n}"));
    }
    match spec.expiring {
        Some(true) => sql.push_str(" AND e.expires_at IS NOT NULL"),
        Some(false) => sql.push_str(" AND e.expires_at IS NULL"),
        None => {}
    }
    if let Some(r) = &spec.reason {
        let n = bind(&mut args, Value::Text(r.clone()));
        sql.push_str(&format!(" AND e.reason = {n}"));
    }
    if let Some(s) = &spec.source {
        // Several listings are JSON: `passes` reads their sources.
        let n = bind(&mut args, Value::Text(s.clone()));
        sql.push_str(&format!(
            " AND (e.listings IS NOT NULL OR e.source = {n} OR e.source = 'import:' || {n})"
        ));
    }
    if spec.draft && has_pending(conn, spec)? {
        sql.push_str(
            " AND NOT EXISTS (SELECT 1 FROM pending p WHERE p.sort_key = e.sort_key AND p.list = e.list)",
        );
    }
    if let Some(a) = spec.after {
        let key = bind(&mut args, Value::Blob(sort_key(&a.target).to_vec()));
        match spec.order {
            PageOrder::Target => sql.push_str(&format!(" AND e.sort_key {cmp} {key}")),
            _ => {
                let v = bind(&mut args, Value::Integer(a.value));
                sql.push_str(&format!(" AND ({value}, e.sort_key) {cmp} ({v}, {key})"));
            }
        }
    }
    match spec.order {
        PageOrder::Target => sql.push_str(&format!(" ORDER BY e.sort_key {dir}")),
        _ => sql.push_str(&format!(" ORDER BY {value} {dir}, e.sort_key {dir}")),
    }
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(params_from_iter(args))?;
    let mut held = held.into_iter().peekable();
    let mut out = Vec::with_capacity(spec.limit);
    let mut next_deployed = || -> Result<Option<Candidate>, StoreError> {
        while let Some(r) = rows.next()? {
            let Some(entry) = entry_from(r, 1)??.live(now) else {
                continue;
            };
            if !spec.passes(&entry) {
                continue;
            }
            let hits = hits_at(r, 12)?;
            let mut c = candidate(spec, entry, None, Some(hits));
            // The stored value, as the statement ordered by it.
            c.key.0 = r.get(11)?;
            c.row.key.value = c.key.0;
            return Ok(Some(c));
        }
        Ok(None)
    };
    let mut deployed = next_deployed()?;
    while out.len() < spec.limit {
        let take_held = match (&deployed, held.peek()) {
            (None, None) => break,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some(d), Some(h)) => before(spec, &h.key, &d.key),
        };
        if take_held {
            out.extend(held.next().map(|c| c.row));
        } else {
            out.extend(deployed.take().map(|c| c.row));
            deployed = next_deployed()?;
        }
    }
    Ok(out)
}

fn has_pending(conn: &Connection, spec: &PageSpec) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM pending WHERE list = ?1)")?
        .query_row([spec.list.as_str()], |r| r.get(0))?)
}

const PENDING_JOINED: &str = "FROM pending p
     LEFT JOIN entries e ON e.sort_key = p.sort_key AND e.list = p.list
     LEFT JOIN hits h ON h.id = e.id";

/// The draft's view of one pending row: its entry as shown (a removal
/// shows the deployed entry), or none when the draft has no such entry.
fn pending_candidate(
    spec: &PageSpec,
    r: &Row<'_>,
    now: Millis,
) -> Result<Option<Candidate>, StoreError> {
    let op = Op::parse(&r.get::<_, String>(0)?)?;
    let id: Option<u32> = r.get(11)?;
    let hits = match id {
        Some(_) => Some(hits_at(r, 22)?),
        None => None,
    };
    let entry = if op == Op::Remove {
        match id {
            Some(_) => entry_from(r, 12)??.live(now),
            None => None,
        }
    } else {
        let mut e = entry_from(r, 1)??;
        drop_expired_copies(&mut e, now);
        (!e.listings.is_empty()).then(|| shown(e))
    };
    Ok(entry.map(|e| candidate(spec, e, Some(op), hits)))
}

fn pending_rows(
    conn: &Connection,
    spec: &PageSpec,
    now: Millis,
) -> Result<Vec<Candidate>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT p.op, {p}, e.id, {e}, h.packets, h.bytes, h.last_hit {PENDING_JOINED}
         WHERE p.list = ?1",
        p = prefixed("p"),
        e = prefixed("e"),
    ))?;
    let mut rows = stmt.query([spec.list.as_str()])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.extend(pending_candidate(spec, r, now)?);
    }
    Ok(out)
}

/// The entries whose target contains `ip`: one primary-key lookup per
/// prefix length, in each table.
fn containing(
    conn: &Connection,
    spec: &PageSpec,
    ip: std::net::IpAddr,
    now: Millis,
) -> Result<Vec<Candidate>, StoreError> {
    let mut deployed = conn.prepare_cached(&format!(
        "SELECT e.id, {e}, 0, h.packets, h.bytes, h.last_hit
         FROM entries e LEFT JOIN hits h ON h.id = e.id WHERE e.sort_key = ?1 AND e.list = ?2",
        e = prefixed("e"),
    ))?;
    let mut pending = conn.prepare_cached(&format!(
        "SELECT p.op, {p}, e.id, {e}, h.packets, h.bytes, h.last_hit {PENDING_JOINED}
         WHERE p.sort_key = ?1 AND p.list = ?2",
        p = prefixed("p"),
        e = prefixed("e"),
    ))?;
    let host = Target::host(ip);
    let mut out = Vec::new();
    for len in 0..=host.width() {
        let Ok(net) = IpNet::new(ip, len) else {
            continue;
        };
        let key = sort_key(&Target::from(net.trunc()));
        let list = spec.list.as_str();
        if spec.draft {
            let mut rows = pending.query(params![key.as_slice(), list])?;
            if let Some(r) = rows.next()? {
                out.extend(pending_candidate(spec, r, now)?);
                continue;
            }
        }
        let mut rows = deployed.query(params![key.as_slice(), list])?;
        if let Some(r) = rows.next()?
            && let Some(entry) = entry_from(r, 1)??.live(now)
        {
            let hits = hits_at(r, 12)?;
            out.push(candidate(spec, entry, None, Some(hits)));
        }
    }
    Ok(out)
}

/// Adds a parameter; returns how the statement names it.
fn bind(args: &mut Vec<Value>, v: Value) -> String {
    args.push(v);
    format!("?{}", args.len())
}
