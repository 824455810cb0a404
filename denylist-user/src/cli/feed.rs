//! `denylist feed`: subscriptions to reputation feeds.

use std::io::Write as _;

use super::{
    args::{FeedAddArgs, FeedCommand, FeedNameArgs, Output},
    error::Result,
    output,
    session::{Session, decode},
};
use crate::{
    model::{FeedInfo, FeedStatus},
    wire::{ApiError, Class, FeedAddRequest},
};

impl Session {
    pub(super) fn feed(&mut self, command: FeedCommand) -> Result<()> {
        match command {
            FeedCommand::Add(a) => self.feed_add(a),
            FeedCommand::List(o) => self.feed_list(o),
            FeedCommand::Refresh(a) => {
                let body = self.post_empty(&format!("/v1/feeds/{}/refresh", a.name))?;
                self.feed_shown(&body, a.output)
            }
            FeedCommand::Approve(a) => {
                let body = self.post_empty(&format!("/v1/feeds/{}/approve", a.name))?;
                self.feed_shown(&body, a.output)
            }
            FeedCommand::Remove(FeedNameArgs { name, output }) => {
                let body = self.send(
                    "DELETE",
                    &format!("/v1/feeds/{name}"),
                    None,
                    "application/json",
                )?;
                if output.json {
                    return self.raw_json(&body);
                }
                writeln!(self.out, "feed {name} removed, and its listings with it")?;
                Ok(())
            }
        }
    }

    fn feed_add(&mut self, a: FeedAddArgs) -> Result<()> {
        let req = FeedAddRequest {
            name: a.name,
            url: a.url,
            format: a.format,
            every: a.every,
            stale_after: a.stale_after,
            monitor: a.monitor,
            max_entries: a.max_entries,
            max_change: a.max_change,
            max_width: a.max_width,
            allow_empty: a.allow_empty,
            review: a.review,
            header_file: a.header_file,
        };
        let body = self.post("/v1/feeds", &req)?;
        self.feed_shown(&body, a.output)
    }

    fn feed_list(&mut self, o: Output) -> Result<()> {
        let body = self.get("/v1/feeds")?;
        if o.json {
            return self.raw_json(&body);
        }
        let feeds: Vec<FeedInfo> = decode(&body)?;
        output::feeds(&mut self.out, &feeds, self.now)?;
        Ok(())
    }

    /// Shows one feed after a fetch, and exits by its state: 1 when
    /// failing or stale, 3 (as a guardrail refusal) when held.
    fn feed_shown(&mut self, body: &[u8], o: Output) -> Result<()> {
        let feed: FeedInfo = decode(body)?;
        if o.json {
            self.raw_json(body)?;
        } else {
            output::feeds(&mut self.out, std::slice::from_ref(&feed), self.now)?;
        }
        let why = feed.last_error.as_deref().unwrap_or_default();
        let why = why.strip_prefix("held: ").unwrap_or(why);
        match feed.state {
            FeedStatus::Held => Err(ApiError::new(
                Class::Guarded,
                format!(
                    "feed {} is held: {why}; `denylist feed approve {}` deploys it",
                    feed.name, feed.name
                ),
            )
            .into()),
            FeedStatus::Failing | FeedStatus::Stale => Err(ApiError::failure(format!(
                "feed {} is {}: {why}; its last good list stays deployed",
                feed.name,
                if feed.state == FeedStatus::Stale {
                    "stale"
                } else {
                    "failing"
                }
            ))
            .into()),
            FeedStatus::Ok | FeedStatus::Review | FeedStatus::Pending => Ok(()),
        }
    }
}
