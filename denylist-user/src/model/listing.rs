//! Listings: who listed an entry, and on what terms. An address can be on
//! the denylist because an admin typed it, an import carried it, a feed
//! lists it and the report detector caught it, all at once; each of those
//! is a listing with its own reason, TTL and mode. The entry the kernel
//! enforces is their merge.

use serde::{Deserialize, Serialize};

use super::{Entry, List, Millis, Target, time_ms};

/// The source of an admin's own listings: typed in.
pub const MANUAL: &str = "manual";

/// One source's listing of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Listing {
    /// `manual`, `import:NAME`, `feed:NAME`, `auto:rate` or `auto:reports`.
    pub source: String,
    pub reason: Option<String>,
    /// Seconds; `None` never expires (a feed's listings live while the
    /// feed lists them).
    pub ttl: Option<u64>,
    #[serde(default, with = "time_ms::opt")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<Millis>,
    pub monitor: bool,
    pub added_by: String,
    #[serde(with = "time_ms")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub added_at: Millis,
}

impl Listing {
    pub fn expired_at(&self, now: Millis) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }

    /// The fields a change can touch, for telling a change from a no-op.
    pub fn same_settings(&self, other: &Listing) -> bool {
        self.source == other.source
            && self.reason == other.reason
            && self.ttl == other.ttl
            && self.monitor == other.monitor
    }
}

/// Whether a source is an admin's own: what `denylist remove` takes away
/// and a rollback restores. Feeds and the detectors keep their listings up
/// to date themselves.
pub fn is_admin_source(source: &str) -> bool {
    source == MANUAL || source.starts_with("import:")
}

/// Which of an entry's listings an operation touches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sources {
    /// Every listing.
    All,
    /// The admin's own: `manual` and `import:*`.
    Admin,
    /// One source's.
    Only(String),
}

impl Sources {
    pub fn matches(&self, source: &str) -> bool {
        match self {
            Sources::All => true,
            Sources::Admin => is_admin_source(source),
            Sources::Only(s) => s == source,
        }
    }
}

impl Entry {
    /// An entry with one listing.
    pub fn new(target: Target, list: List, listing: Listing) -> Entry {
        let mut e = Entry {
            target,
            list,
            reason: None,
            ttl: None,
            expires_at: None,
            monitor: false,
            source: String::new(),
            added_by: String::new(),
            added_at: 0,
            sources: Vec::new(),
            listings: vec![listing],
        };
        e.merge();
        e
    }

    /// An entry made of `listings`, or none when there are none.
    pub fn from_listings(target: Target, list: List, listings: Vec<Listing>) -> Option<Entry> {
        let mut it = listings.into_iter();
        let mut e = Entry::new(target, list, it.next()?);
        e.listings.extend(it);
        e.merge();
        Some(e)
    }

    /// An entry as an older export or client gives it, without listings:
    /// its own fields become its one listing.
    pub fn normalized(mut self) -> Entry {
        if self.listings.is_empty() {
            self.listings.push(Listing {
                source: self.source.clone(),
                reason: self.reason.clone(),
                ttl: self.ttl,
                expires_at: self.expires_at,
                monitor: self.monitor,
                added_by: self.added_by.clone(),
                added_at: self.added_at,
            });
        }
        self.merge();
        self
    }

    /// Sets the entry's own fields from its listings, which is what the
    /// kernel enforces and what clients older than listings read: it
    /// enforces if any listing does, and lasts as long as the longest one.
    /// `source`, `reason` and who added it are the first listing's.
    pub fn merge(&mut self) {
        // Allow entries have no monitor mode, whoever lists them.
        if self.list == List::Allow {
            for l in &mut self.listings {
                l.monitor = false;
            }
        }
        let Some(first) = self.listings.first() else {
            return;
        };
        // clone_from reuses the fields' buffers: a row read from the store
        // already holds these values, and a million entries pass through
        // here on a bulk deploy.
        self.source.clone_from(&first.source);
        self.reason.clone_from(&first.reason);
        self.added_by.clone_from(&first.added_by);
        self.added_at = first.added_at;
        self.monitor = self.listings.iter().all(|l| l.monitor);
        let forever = self.listings.iter().any(|l| l.ttl.is_none());
        self.ttl = if forever {
            None
        } else {
            self.listings.iter().filter_map(|l| l.ttl).max()
        };
        self.expires_at = if forever || self.listings.iter().any(|l| l.expires_at.is_none()) {
            None
        } else {
            self.listings.iter().filter_map(|l| l.expires_at).max()
        };
        self.sources.resize_with(self.listings.len(), String::new);
        for (s, l) in self.sources.iter_mut().zip(&self.listings) {
            s.clone_from(&l.source);
        }
    }

    pub fn listing(&self, source: &str) -> Option<&Listing> {
        self.listings.iter().find(|l| l.source == source)
    }

    /// The entry as of `now`: without the listings that have expired, or
    /// none when all have.
    pub fn live(&self, now: Millis) -> Option<Entry> {
        if !self.listings.iter().any(|l| l.expired_at(now)) {
            return Some(self.clone());
        }
        let live = self
            .listings
            .iter()
            .filter(|l| !l.expired_at(now))
            .cloned()
            .collect();
        Entry::from_listings(self.target, self.list, live)
    }

    /// When the first of its listings expires: when the sweep next has
    /// something to do with it.
    pub fn next_expiry(&self) -> Option<Millis> {
        self.listings.iter().filter_map(|l| l.expires_at).min()
    }

    /// The listings `sources` leaves out.
    pub fn without(&self, sources: &Sources) -> Option<Entry> {
        let kept = self
            .listings
            .iter()
            .filter(|l| !sources.matches(&l.source))
            .cloned()
            .collect();
        Entry::from_listings(self.target, self.list, kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(
        source: &str,
        ttl: Option<u64>,
        expires_at: Option<Millis>,
        monitor: bool,
    ) -> Listing {
        Listing {
            source: source.into(),
            reason: Some(format!("from {source}")),
            ttl,
            expires_at,
            monitor,
            added_by: "root".into(),
            added_at: 1_000,
        }
    }

    fn entry(listings: Vec<Listing>) -> Entry {
        Entry::from_listings(Target::parse("192.0.2.1").unwrap(), List::Deny, listings).unwrap()
    }

    #[test]
    fn the_merge_enforces_if_any_listing_does_and_lasts_as_long_as_the_longest() {
        let e = entry(vec![
            listing("manual", Some(60), Some(61_000), true),
            listing("feed:a", Some(600), Some(601_000), false),
        ]);
        assert!(!e.monitor);
        assert_eq!((e.ttl, e.expires_at), (Some(600), Some(601_000)));
        assert_eq!(e.source, "manual");
        assert_eq!(e.reason.as_deref(), Some("from manual"));
        assert_eq!(e.sources, ["manual", "feed:a"]);
        assert_eq!(e.next_expiry(), Some(61_000));
        let forever = entry(vec![
            listing("manual", Some(60), Some(61_000), true),
            listing("feed:a", None, None, true),
        ]);
        assert!(forever.monitor);
        assert_eq!((forever.ttl, forever.expires_at), (None, None));
    }

    #[test]
    fn expired_listings_drop_out_and_change_the_merge() {
        let e = entry(vec![
            listing("manual", Some(60), Some(61_000), false),
            listing("feed:a", None, None, true),
        ]);
        let later = e.live(70_000).unwrap();
        assert_eq!(later.sources, ["feed:a"]);
        assert!(later.monitor, "only the monitoring listing is left");
        assert_eq!(e.live(1_000).unwrap(), e);
        let gone = entry(vec![listing("manual", Some(60), Some(61_000), false)]);
        assert_eq!(gone.live(61_000), None);
    }

    #[test]
    fn sources_select_listings() {
        let e = entry(vec![
            listing("manual", None, None, false),
            listing("import:x", None, None, false),
            listing("feed:a", None, None, false),
        ]);
        assert_eq!(e.without(&Sources::Admin).unwrap().sources, ["feed:a"]);
        assert_eq!(
            e.without(&Sources::Only("feed:a".into())).unwrap().sources,
            ["manual", "import:x"]
        );
        assert_eq!(e.without(&Sources::All), None);
    }

    #[test]
    fn an_old_entry_becomes_its_own_listing() {
        let mut e = entry(vec![listing("import:x", Some(60), Some(61_000), true)]);
        let one = e.listings[0].clone();
        e.listings.clear();
        e.sources.clear();
        let e = e.normalized();
        assert_eq!(e.listings, [one]);
        assert_eq!(e.sources, ["import:x"]);
    }
}
