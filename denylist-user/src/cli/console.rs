//! The CLI's side of the console's API: one page of entries, and one
//! revision's diff.

use std::io::Write as _;

use super::{
    args::{HistoryArgs, ListArgs},
    error::Result,
    output, query,
    session::Session,
};
use crate::{
    model::List,
    wire::{EntryPage, EntryPageQuery, RevisionDiff, RevisionQuery},
};

impl Session {
    /// `denylist list --page` and its options: one page from
    /// `GET /v1/entries/page`; the cursor of the next goes to stderr, so
    /// the table stays a table.
    pub(super) fn list_page(&mut self, list: List, a: ListArgs) -> Result<()> {
        let q = EntryPageQuery {
            list,
            draft: a.draft,
            cursor: a.cursor.clone(),
            limit: a.limit.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            source: a.source.clone(),
            mode: a.mode,
            expiring: a.expiring.then_some(true),
            reason: a.reason.clone(),
            contains: a.matching,
            sort: a.sort.unwrap_or_default(),
            desc: a.desc,
        };
        let body = self.get(&format!("/v1/entries/page{}", query::encode(&q)))?;
        if a.output.json {
            return self.raw_json(&body);
        }
        let page: EntryPage = super::session::decode(&body)?;
        let now = self.now;
        let mut table = output::entry_table(&mut self.out);
        for e in &page.entries {
            table.row(output::entry_row(&e.entry, now))?;
        }
        table.finish_or("no entries")?;
        if let Some(next) = &page.next {
            self.out.flush()?;
            eprintln!("more: the next page is --cursor {next}");
        }
        Ok(())
    }

    /// `denylist history REV`: what one revision's deploy changed.
    pub(super) fn revision(&mut self, rev: u64, a: HistoryArgs) -> Result<()> {
        let q = query::encode(&RevisionQuery { limit: a.limit });
        let body = self.get(&format!("/v1/history/{rev}{q}"))?;
        if a.output.json {
            return self.raw_json(&body);
        }
        let d: RevisionDiff = super::session::decode(&body)?;
        output::revision(&mut self.out, &d)?;
        Ok(())
    }
}
