//! Feed subscriptions: a reputation list the daemon fetches on a schedule,
//! what it was told to do with it, and how its last attempts went.

use serde::{Deserialize, Serialize};

use super::{Format, Millis, time_ms};

/// What `denylist feed add` sets; fixed for the life of the feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FeedSettings {
    /// `https://…`, `http://…`, or `file://…` under the daemon's
    /// `--feed-dir`. Shown with credentials redacted.
    pub url: String,
    pub format: Format,
    /// Seconds between refreshes (at least 60).
    pub every: u64,
    /// Seconds without a success before the feed is `stale`.
    pub stale_after: u64,
    /// Its listings count matches without dropping them.
    pub monitor: bool,
    pub max_entries: u64,
    /// Percent of the feed's entries one refresh may change (once it has
    /// at least [`CHANGE_FLOOR`]).
    pub max_change: u8,
    /// The widest prefix it may list, as an IPv4 prefix length (IPv6 gets
    /// the same width against its /48 guardrail: BITS + 32); `None` keeps
    /// the guardrails' /16 and /48.
    pub max_width: Option<u8>,
    pub allow_empty: bool,
    /// Stage each refresh's changes for an admin instead of deploying them.
    pub review: bool,
    /// Request headers (credentials), one `Name: value` a line, from a file
    /// under `--feed-dir`; the values are never shown.
    pub header_file: Option<String>,
}

/// Below this many entries, any change is allowed: a feed of 3 that
/// gains 2 is not an outage page.
pub const CHANGE_FLOOR: u64 = 100;

/// Why a fetched list was held back instead of deployed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Held {
    /// What deploying it would add and remove.
    pub added: u64,
    pub removed: u64,
    pub reason: String,
}

/// How the feed's attempts went: kept by the store across restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedState {
    pub added_by: String,
    pub added_at: Millis,
    pub last_attempt: Option<Millis>,
    pub last_success: Option<Millis>,
    pub last_error: Option<String>,
    /// Failed attempts since the last success.
    pub failures: u64,
    /// Failed attempts ever, for the metric.
    pub failures_total: u64,
    /// Entries the last good list gave the feed, and the lines the
    /// guardrails kept out of it.
    pub entries: u64,
    pub guarded_skipped: u64,
    pub held: Option<Held>,
    /// The validators of the last good fetch, for a conditional request.
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// When the next attempt is due.
    pub next_at: Millis,
}

/// A feed's state as `feed list` shows it. Held outranks stale, and stale
/// outranks failing: each says more about what is deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum FeedStatus {
    /// No attempt yet.
    Pending,
    Ok,
    /// Changes staged, waiting for an admin to deploy them.
    Review,
    /// The last fetch failed validation; the last good list stays.
    Held,
    /// The last attempt failed.
    Failing,
    /// No success for `stale_after`; its listings stay deployed.
    Stale,
}

impl FeedState {
    /// The state at `now`, given whether changes wait for review.
    pub fn status(&self, settings: &FeedSettings, review_waiting: bool, now: Millis) -> FeedStatus {
        let since = self.last_success.unwrap_or(self.added_at);
        let stale = now - since > (settings.stale_after as i64) * 1000;
        if self.held.is_some() {
            FeedStatus::Held
        } else if self.last_attempt.is_none() {
            FeedStatus::Pending
        } else if stale {
            FeedStatus::Stale
        } else if self.last_error.is_some() {
            FeedStatus::Failing
        } else if review_waiting {
            FeedStatus::Review
        } else {
            FeedStatus::Ok
        }
    }
}

/// One feed in `feed list --json` and the API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeedInfo {
    pub name: String,
    /// Credentials redacted.
    pub url: String,
    pub format: Format,
    /// Seconds.
    pub every: u64,
    pub stale_after: u64,
    /// `enforce` or `monitor`.
    pub mode: String,
    pub entries: u64,
    pub guarded_skipped: u64,
    pub state: FeedStatus,
    #[serde(with = "time_ms::opt")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub last_attempt: Option<Millis>,
    #[serde(with = "time_ms::opt")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub last_success: Option<Millis>,
    pub last_error: Option<String>,
    pub held: Option<Held>,
    pub max_entries: u64,
    pub max_change: u8,
    pub max_width: Option<u8>,
    pub allow_empty: bool,
    pub review: bool,
    pub failures_total: u64,
    pub added_by: String,
    #[serde(with = "time_ms")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub added_at: Millis,
}

/// The source of a feed's listings.
pub fn feed_source(name: &str) -> String {
    format!("feed:{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> FeedSettings {
        FeedSettings {
            url: "https://feeds.example.org/list.txt".into(),
            format: Format::Plain,
            every: 3600,
            stale_after: 3 * 3600,
            monitor: false,
            max_entries: 100_000,
            max_change: 50,
            max_width: None,
            allow_empty: false,
            review: false,
            header_file: None,
        }
    }

    /// Held outranks stale, stale outranks failing: each says more about
    /// what is deployed.
    #[test]
    fn states_take_precedence_in_order() {
        let hour = 3_600_000;
        let s = settings();
        let mut st = FeedState {
            added_at: 0,
            ..FeedState::default()
        };
        assert_eq!(st.status(&s, false, hour), FeedStatus::Pending);
        st.last_attempt = Some(hour);
        st.last_success = Some(hour);
        assert_eq!(st.status(&s, false, hour), FeedStatus::Ok);
        assert_eq!(st.status(&s, true, hour), FeedStatus::Review);
        st.last_error = Some("HTTP 500".into());
        assert_eq!(st.status(&s, true, 2 * hour), FeedStatus::Failing);
        assert_eq!(st.status(&s, false, 5 * hour), FeedStatus::Stale);
        st.held = Some(Held {
            added: 0,
            removed: 9,
            reason: "empty".into(),
        });
        assert_eq!(st.status(&s, false, 5 * hour), FeedStatus::Held);
        // A feed that never succeeded is stale once its stale-after passes
        // since it was added.
        let never = FeedState {
            last_attempt: Some(hour),
            last_error: Some("refused".into()),
            ..FeedState::default()
        };
        assert_eq!(never.status(&s, false, 2 * hour), FeedStatus::Failing);
        assert_eq!(never.status(&s, false, 4 * hour), FeedStatus::Stale);
    }
}
