//! An entry of either list, as the store keeps it and the API shows it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{List, Listing, Target};

/// Milliseconds since the Unix epoch, UTC: how the store keeps times.
pub type Millis = i64;

pub fn now_ms() -> Millis {
    to_ms(SystemTime::now())
}

pub fn to_ms(t: SystemTime) -> Millis {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as Millis,
        Err(e) => -(e.duration().as_millis() as Millis),
    }
}

pub fn from_ms(ms: Millis) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

/// RFC 3339 in UTC with milliseconds, e.g. `2026-11-28T11:50:58.123Z`.
pub fn rfc3339(ms: Millis) -> String {
    // humantime cannot show times before 1970, and no entry has one.
    humantime::format_rfc3339_millis(from_ms(ms.max(0))).to_string()
}

#[derive(Debug, thiserror::Error)]
#[error("invalid duration {input:?}: {source} (use e.g. 90s, 30m, 24h, 7d)")]
pub struct DurationError {
    pub input: String,
    #[source]
    pub source: humantime::DurationError,
}

/// Parses a human duration: `90s`, `30m`, `24h`, `7d`, or combinations.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    humantime::parse_duration(s.trim()).map_err(|source| DurationError {
        input: s.to_string(),
        source,
    })
}

/// Serde for RFC 3339 times kept as [`Millis`].
pub mod time_ms {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    use super::Millis;

    pub fn serialize<S: Serializer>(ms: &Millis, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339(*ms))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Millis, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        humantime::parse_rfc3339_weak(&s)
            .map(super::to_ms)
            .map_err(|e| D::Error::custom(format!("invalid time {s:?}: {e}")))
    }

    /// The same for optional times (`null` for none).
    pub mod opt {
        use serde::{Deserialize, Deserializer, Serializer};

        use super::Millis;

        pub fn serialize<S: Serializer>(ms: &Option<Millis>, s: S) -> Result<S::Ok, S::Error> {
            match ms {
                Some(ms) => super::serialize(ms, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Millis>, D::Error> {
            #[derive(Deserialize)]
            struct Wrap(#[serde(with = "super")] Millis);
            Ok(Option::<Wrap>::deserialize(d)?.map(|Wrap(ms)| ms))
        }
    }
}

/// A TTL as a client gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ttl {
    /// The entry never expires.
    Never,
    /// The entry expires this many seconds after the deploy that sets it.
    Secs(u64),
}

impl Ttl {
    /// The entry's `ttl` field: seconds, `None` for never.
    pub fn secs(self) -> Option<u64> {
        match self {
            Ttl::Never => None,
            Ttl::Secs(s) => Some(s),
        }
    }
}

/// One entry, with every field the API documents (docs/api.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub target: Target,
    pub list: List,
    pub reason: Option<String>,
    /// Seconds; `None` never expires.
    pub ttl: Option<u64>,
    /// Set by the deploy that puts the entry into effect.
    #[serde(default, with = "time_ms::opt")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<Millis>,
    pub monitor: bool,
    /// The first listing's source, for clients older than listings.
    pub source: String,
    pub added_by: String,
    #[serde(with = "time_ms")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub added_at: Millis,
    /// Every listing's source, in the order they were added.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Who listed the entry, each with its own terms: the fields above are
    /// their merge (`Entry::merge`). An older export has none, and its
    /// fields are then its one listing (`Entry::normalized`).
    #[serde(default)]
    pub listings: Vec<Listing>,
}

impl Entry {
    pub fn expired_at(&self, now: Millis) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }

    /// The fields a change can touch, for telling a change from a no-op:
    /// the same listings, with the same settings each.
    pub fn same_settings(&self, other: &Entry) -> bool {
        self.listings.len() == other.listings.len()
            && self
                .listings
                .iter()
                .all(|l| other.listing(&l.source).is_some_and(|o| o.same_settings(l)))
    }
}

/// An entry with the id its hit counters are kept under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub id: u32,
    pub entry: Entry,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_through_json() {
        let e = Entry {
            target: Target::parse("203.0.113.0/24").unwrap(),
            list: List::Deny,
            reason: Some("scanner".into()),
            ttl: Some(3600),
            expires_at: Some(1_800_000_000_123),
            monitor: true,
            source: "manual".into(),
            added_by: "alice (as root)".into(),
            added_at: 1_700_000_000_000,
            sources: Vec::new(),
            listings: Vec::new(),
        }
        .normalized();
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["target"], "203.0.113.0/24");
        assert_eq!(json["list"], "deny");
        assert_eq!(json["expires_at"], "2027-01-15T08:00:00.123Z");
        assert_eq!(json["added_at"], "2023-11-14T22:13:20.000Z");
        assert_eq!(json["sources"], serde_json::json!(["manual"]));
        assert_eq!(json["listings"][0]["reason"], "scanner");
        assert_eq!(serde_json::from_value::<Entry>(json).unwrap(), e);
        let mut no_expiry = serde_json::to_value(&e).unwrap();
        no_expiry["expires_at"] = serde_json::Value::Null;
        assert_eq!(
            serde_json::from_value::<Entry>(no_expiry)
                .unwrap()
                .expires_at,
            None
        );
    }

    #[test]
    fn unknown_fields_and_bad_targets_are_refused() {
        let mut json = serde_json::json!({
            "target": "198.51.100.7", "list": "deny", "reason": null, "ttl": null,
            "expires_at": null, "monitor": false, "source": "manual",
            "added_by": "root", "added_at": "2026-01-01T00:00:00Z"
        });
        assert!(serde_json::from_value::<Entry>(json.clone()).is_ok());
        json["colour"] = "red".into();
        assert!(serde_json::from_value::<Entry>(json.clone()).is_err());
        json.as_object_mut().unwrap().remove("colour");
        json["target"] = "203.0.113.77/24".into();
        let e = serde_json::from_value::<Entry>(json)
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean"), "{e}");
    }

    #[test]
    fn durations_are_human() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .to_string()
                .contains("use e.g.")
        );
    }
}
