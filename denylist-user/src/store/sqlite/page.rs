//! A console's page of entries. The deployed entries are read in the
//! page's order straight from the table, after the cursor, so a page costs
//! what it holds in address order; filters that few entries pass, and the
//! orders by time, cost one pass over the table (no index: issue 15's bulk
//! deploys would pay for each on every row). The pending changes are few
//! and read whole. `contains` reads one key per prefix length.

use std::{cmp::Ordering, collections::HashSet};

use ipnet::IpNet;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter, types::Value};

use super::rows::{drop_expired_copies, entry_from, prefixed, shown, sort_key};
use crate::{
    model::{Entry, Millis, Target, normal_ip},
    store::{HitTotal, Op, PageKey, PageOrder, PageRow, PageSpec, StoreError},
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

/// Whether `a` comes before `b` in the page's direction. Ties of a value
/// go in address order either way: the table is scanned that way, so the
/// first rows of a tie are the ones a page keeps, and SQLite's sorter
/// keeps a page of a million ties (one bulk import's `added_at`) without
/// replacing a row for each.
fn before(spec: &PageSpec, a: &(i64, [u8; 18]), b: &(i64, [u8; 18])) -> bool {
    let directed = |o: Ordering| if spec.desc { o.reverse() } else { o };
    let o = match spec.order {
        PageOrder::Target => directed(a.1.cmp(&b.1)),
        _ => directed(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)),
    };
    o == Ordering::Less
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
    let (mut held, pending) = match spec.contains {
        Some(ip) => (containing(&tx, spec, normal_ip(ip), now)?, HashSet::new()),
        None if spec.draft => pending_rows(&tx, spec, now)?,
        None => (Vec::new(), HashSet::new()),
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
    merge_deployed(&tx, spec, now, held, &pending)
}

/// The deployed entries in the page's order, merged with `held` (the
/// draft's pending rows, in that order too).
fn merge_deployed(
    conn: &Connection,
    spec: &PageSpec,
    now: Millis,
    held: Vec<Candidate>,
    pending: &HashSet<[u8; 18]>,
) -> Result<Vec<PageRow>, StoreError> {
    let mut held = held.into_iter().peekable();
    let mut out = Vec::with_capacity(spec.limit);
    let mut batch = std::collections::VecDeque::new();
    let mut from = spec.after;
    let mut exhausted = false;
    while out.len() < spec.limit {
        if batch.is_empty() && !exhausted {
            let (rows, last) = deployed_batch(conn, spec, from, pending, now)?;
            exhausted = last.is_none();
            from = last.or(from);
            batch.extend(rows);
            continue;
        }
        let take_held = match (batch.front(), held.peek()) {
            (None, None) => break,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some(d), Some(h)) => before(spec, &h.key, &d.key),
        };
        let next = if take_held {
            held.next()
        } else {
            batch.pop_front()
        };
        out.extend(next.map(|c| c.row));
    }
    Ok(out)
}

/// One batch of deployed entries after `from`, in the page's order, with
/// the filters that SQL can apply; `passes` then checks each entry as of
/// now. A batch is the page's size: with LIMIT, SQLite keeps only the
/// first rows of an order no index gives, instead of sorting the list.
/// Returns the batch and the key of its last row, none when the table has
/// no more.
fn deployed_batch(
    conn: &Connection,
    spec: &PageSpec,
    from: Option<PageKey>,
    pending: &HashSet<[u8; 18]>,
    now: Millis,
) -> Result<(Vec<Candidate>, Option<PageKey>), StoreError> {
    let value = match spec.order {
        PageOrder::Target => "0",
        PageOrder::ExpiresAt => "coalesce(e.expires_at, 9223372036854775807)",
        PageOrder::AddedAt => "e.added_at",
    };
    let (dir, cmp) = if spec.desc { ("DESC", "<") } else { ("", ">") };
    // Keys first, rows after: an order no index gives is kept by SQLite's
    // sorter, which copies each row that enters the first N, and in a
    // descending order of many ties nearly every row does.
    let mut sql = format!("SELECT e.sort_key, {value} FROM entries e WHERE e.list = ?1");
    let mut args: Vec<Value> = vec![Value::Text(spec.list.as_str().into())];
    // Necessary conditions on the stored merge. Hits and pending rows are
    // looked up for the rows kept only: per row of a scan, either costs
    // as much as the scan.
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
    if let Some(a) = from {
        let key = bind(&mut args, Value::Blob(sort_key(&a.target).to_vec()));
        match spec.order {
            PageOrder::Target => sql.push_str(&format!(" AND e.sort_key {cmp} {key}")),
            _ => {
                let v = bind(&mut args, Value::Integer(a.value));
                sql.push_str(&format!(
                    " AND ({value} {cmp} {v} OR {value} = {v} AND e.sort_key > {key})"
                ));
            }
        }
    }
    match spec.order {
        PageOrder::Target => sql.push_str(&format!(" ORDER BY e.sort_key {dir}")),
        _ => sql.push_str(&format!(" ORDER BY {value} {dir}, e.sort_key")),
    }
    let n = bind(&mut args, Value::Integer(spec.limit as i64));
    sql.push_str(&format!(" LIMIT {n}"));
    let keys: Vec<(Vec<u8>, i64)> = conn
        .prepare_cached(&sql)?
        .query_map(params_from_iter(args), |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut row = conn.prepare_cached(&format!(
        "SELECT e.id, {cols}, h.packets, h.bytes, h.last_hit
         FROM entries e LEFT JOIN hits h ON h.id = e.id WHERE e.sort_key = ?1 AND e.list = ?2",
        cols = prefixed("e"),
    ))?;
    let (mut out, mut last) = (Vec::new(), None);
    for (key, value) in &keys {
        let found = row
            .query_row(params![key, spec.list.as_str()], |r| {
                Ok((entry_from(r, 1)?, hits_at(r, 11)?))
            })
            .optional()?;
        // Gone since the keys were read: the same snapshot, so never.
        let Some((stored, hits)) = found else {
            continue;
        };
        let stored = stored?;
        last = Some(PageKey {
            value: *value,
            target: stored.target,
        });
        // The draft shows a pending row instead.
        if pending.contains(key.as_slice()) {
            continue;
        }
        let Some(entry) = stored.live(now) else {
            continue;
        };
        if !spec.passes(&entry) {
            continue;
        }
        let mut c = candidate(spec, entry, None, Some(hits));
        // The stored value, as the statement ordered by it.
        c.key.0 = *value;
        c.row.key.value = *value;
        out.push(c);
    }
    Ok((out, if keys.len() < spec.limit { None } else { last }))
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

/// The draft's pending rows of the list, and the sort keys of all of
/// them: the deployed rows the draft shows otherwise, or not at all.
fn pending_rows(
    conn: &Connection,
    spec: &PageSpec,
    now: Millis,
) -> Result<(Vec<Candidate>, HashSet<[u8; 18]>), StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT p.op, {p}, e.id, {e}, h.packets, h.bytes, h.last_hit, p.sort_key {PENDING_JOINED}
         WHERE p.list = ?1",
        p = prefixed("p"),
        e = prefixed("e"),
    ))?;
    let mut rows = stmt.query([spec.list.as_str()])?;
    let (mut out, mut keys) = (Vec::new(), HashSet::new());
    while let Some(r) = rows.next()? {
        let key: Vec<u8> = r.get(25)?;
        keys.extend(<[u8; 18]>::try_from(key.as_slice()).ok());
        out.extend(pending_candidate(spec, r, now)?);
    }
    Ok((out, keys))
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
