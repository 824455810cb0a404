//! The deployed entries read in primary-key order beside a bulk stage whose
//! keys come in the same order: one scan of `entries` where a lookup per key
//! cost a B-tree descent each (1M lookups took 0.7 s into an empty table and
//! 1.8 s into a table of 1M, against a scan of about 0.3 s).

use std::cmp::{Ordering, Reverse};

use rusqlite::{Rows, Savepoint, Statement};

use super::rows::{ENTRY_COLS, entry_from};
use crate::{
    model::{List, Stored},
    store::StoreError,
};

/// Below this many keys, a lookup each reads less than a scan could.
pub(super) const WALK_MIN: usize = 256;

/// The order of `entries`' primary key, `(sort_key, list DESC)`: the order
/// the keys given to [`Walk::get`] must come in.
pub(super) fn key_order(sort_key: [u8; 18], list: List) -> ([u8; 18], Reverse<&'static str>) {
    (sort_key, Reverse(list.as_str()))
}

pub(super) fn prepare<'c>(tx: &'c Savepoint<'_>) -> Result<Statement<'c>, StoreError> {
    Ok(tx.prepare(&format!(
        "SELECT sort_key, id, {ENTRY_COLS} FROM entries WHERE sort_key >= ?1 \
         ORDER BY sort_key, list DESC"
    ))?)
}

/// A cursor over `entries` from a first key on. Rows it passes without a
/// key asking for them are never decoded.
pub(super) struct Walk<'s> {
    rows: Rows<'s>,
    /// The row the cursor stopped at, decoded: the next key may ask for it.
    head: Option<([u8; 18], List, Stored)>,
    done: bool,
}

impl<'s> Walk<'s> {
    pub(super) fn start(stmt: &'s mut Statement<'_>, first: [u8; 18]) -> Result<Self, StoreError> {
        Ok(Self {
            rows: stmt.query([first.as_slice()])?,
            head: None,
            done: false,
        })
    }

    /// The deployed entry at `(sort_key, list)`. Keys must come in
    /// [`key_order`]; a key may repeat.
    pub(super) fn get(
        &mut self,
        sort_key: [u8; 18],
        list: List,
    ) -> Result<Option<Stored>, StoreError> {
        let want = key_order(sort_key, list);
        loop {
            if let Some((k, l, s)) = &self.head {
                match key_order(*k, *l).cmp(&want) {
                    Ordering::Less => self.head = None,
                    Ordering::Equal => return Ok(Some(s.clone())),
                    Ordering::Greater => return Ok(None),
                }
            }
            if self.done {
                return Ok(None);
            }
            let Some(row) = self.rows.next()? else {
                self.done = true;
                return Ok(None);
            };
            let k: [u8; 18] = row.get(0)?;
            let l = StoreError::list(&row.get::<_, String>(3)?)?;
            if key_order(k, l) < want {
                continue;
            }
            let id: u32 = row.get(1)?;
            self.head = Some((
                k,
                l,
                Stored {
                    id,
                    entry: entry_from(row, 2)??,
                },
            ));
        }
    }
}
