//! `denylist feed list`: one row a feed.

use std::io::{self, Write};

use super::{
    format::relative,
    table::{Align, Table},
};
use crate::model::{FeedInfo, FeedStatus, Millis};

pub(crate) fn feeds(out: &mut impl Write, feeds: &[FeedInfo], now: Millis) -> io::Result<()> {
    let mut t = Table::new(
        out,
        &[
            ("NAME", Align::Left),
            ("STATE", Align::Left),
            ("ENTRIES", Align::Right),
            ("GUARDED", Align::Right),
            ("MODE", Align::Left),
            ("EVERY", Align::Right),
            ("LAST SUCCESS", Align::Left),
            ("URL", Align::Left),
            ("DETAIL", Align::Left),
        ],
    );
    for f in feeds {
        let detail = match (&f.held, &f.last_error) {
            (Some(h), _) => format!("held (+{} −{}): {}", h.added, h.removed, h.reason),
            (None, Some(e)) => e.clone(),
            (None, None) => String::new(),
        };
        t.row(vec![
            f.name.clone(),
            state(f.state).to_string(),
            f.entries.to_string(),
            f.guarded_skipped.to_string(),
            f.mode.clone(),
            humantime::format_duration(std::time::Duration::from_secs(f.every)).to_string(),
            f.last_success
                .map_or("never".to_string(), |t| relative(t, now)),
            f.url.clone(),
            detail,
        ])?;
    }
    t.finish_or("no feeds (denylist feed add NAME [URL])")
}

fn state(s: FeedStatus) -> &'static str {
    match s {
        FeedStatus::Pending => "pending",
        FeedStatus::Ok => "ok",
        FeedStatus::Review => "review",
        FeedStatus::Held => "held",
        FeedStatus::Failing => "failing",
        FeedStatus::Stale => "stale",
    }
}
