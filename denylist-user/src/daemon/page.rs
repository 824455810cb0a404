//! The console's page of entries: the API's query in, the store's page
//! out, with the cursor that goes on. It runs on a snapshot of the store,
//! without the core: a page never waits for a deploy, nor holds one up.

use super::CoreError;
use crate::{
    model::{Target, now_ms},
    store::{HitTotal, Op, PageKey, PageOrder, PageSpec, Snapshots},
    wire::{
        EntryMode, EntryPage, EntryPageQuery, Hits, PAGE_DEFAULT, PAGE_MAX, PageEntry, PageSort,
        Pending,
    },
};

/// One page of entries, and the cursor of the next when there is one.
pub fn entry_page(snapshots: &dyn Snapshots, q: &EntryPageQuery) -> Result<EntryPage, CoreError> {
    let limit = q.limit.unwrap_or(PAGE_DEFAULT);
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(CoreError::PageLimit { limit });
    }
    let order = match q.sort {
        PageSort::Target => PageOrder::Target,
        PageSort::ExpiresAt => PageOrder::ExpiresAt,
        PageSort::AddedAt => PageOrder::AddedAt,
    };
    let after = match &q.cursor {
        Some(c) => Some(decode(c, order, q.desc)?),
        None => None,
    };
    let spec = PageSpec {
        list: q.list,
        draft: q.draft,
        after,
        // One more than the page: whether another follows.
        limit: limit as usize + 1,
        source: q.source.clone(),
        monitor: q.mode.map(|m| m == EntryMode::Monitor),
        expiring: q.expiring,
        reason: q.reason.clone(),
        contains: q.contains,
        order,
        desc: q.desc,
    };
    let mut rows = snapshots.open()?.page(&spec, now_ms())?;
    let next = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|r| encode(r.key, order, q.desc))
    } else {
        None
    };
    let entries = rows
        .into_iter()
        .map(|r| PageEntry {
            entry: r.entry,
            pending: r.pending.map(|op| match op {
                Op::Add => Pending::Add,
                Op::Change => Pending::Change,
                Op::Remove => Pending::Remove,
            }),
            hits: r.hits.map(|h: HitTotal| Hits {
                packets: h.packets,
                bytes: h.bytes,
                last_hit: h.last_hit,
            }),
        })
        .collect();
    Ok(EntryPage { entries, next })
}

fn order_tag(order: PageOrder, desc: bool) -> &'static str {
    match (order, desc) {
        (PageOrder::Target, false) => "t+",
        (PageOrder::Target, true) => "t-",
        (PageOrder::ExpiresAt, false) => "e+",
        (PageOrder::ExpiresAt, true) => "e-",
        (PageOrder::AddedAt, false) => "a+",
        (PageOrder::AddedAt, true) => "a-",
    }
}

/// A cursor: the order it was made for, the last row's sort value and its
/// target, e.g. `e+:1800000000000:203.0.113.0/24`. Opaque to clients,
/// but plain, so a log shows where a page started.
fn encode(key: PageKey, order: PageOrder, desc: bool) -> String {
    format!("{}:{}:{}", order_tag(order, desc), key.value, key.target)
}

fn decode(cursor: &str, order: PageOrder, desc: bool) -> Result<PageKey, CoreError> {
    let bad = || CoreError::BadCursor {
        cursor: cursor.to_string(),
    };
    // The target goes last: an IPv6 one holds colons.
    let mut parts = cursor.splitn(3, ':');
    let (Some(tag), Some(value), Some(target)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    if tag != order_tag(order, desc) {
        return Err(CoreError::CursorOrder {
            cursor: cursor.to_string(),
        });
    }
    Ok(PageKey {
        value: value.parse().map_err(|_| bad())?,
        target: Target::parse(target).map_err(|_| bad())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_belong_to_their_order() {
        let key = PageKey {
            value: 1_800_000_000_000,
            target: Target::parse("2001:db8::/32").unwrap(),
        };
        let c = encode(key, PageOrder::ExpiresAt, true);
        assert_eq!(decode(&c, PageOrder::ExpiresAt, true).unwrap(), key);
        assert!(matches!(
            decode(&c, PageOrder::ExpiresAt, false),
            Err(CoreError::CursorOrder { .. })
        ));
        for bad in ["", "t+", "t+:x:192.0.2.1", "t+:0:192.0.2.1/33", "t+:0"] {
            assert!(
                matches!(
                    decode(bad, PageOrder::Target, false),
                    Err(CoreError::BadCursor { .. })
                ),
                "{bad}"
            );
        }
    }
}
