//! The wording shared by the replies: time spans, relative and absolute
//! times, expiry, plurals, change counts and the API's names.

use crate::{
    model::{Entry, Millis, from_ms},
    wire::Counts,
};

/// The two largest units: `45s`, `59m59s`, `23h59m`, `6d23h`.
fn span(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) if s == 0 => format!("{m}m"),
        (0, 0, _) => format!("{m}m{s}s"),
        (0, _, 0) => format!("{h}h"),
        (0, _, _) => format!("{h}h{m}m"),
        (_, 0, _) => format!("{d}d"),
        _ => format!("{d}d{h}h"),
    }
}

/// `in 23h59m` or `5m ago`, truncated to whole seconds.
pub(super) fn relative(at: Millis, now: Millis) -> String {
    let secs = (at - now).unsigned_abs() / 1000;
    if secs == 0 {
        "now".to_string()
    } else if at > now {
        format!("in {}", span(secs))
    } else {
        format!("{} ago", span(secs))
    }
}

/// RFC 3339 to the second: the milliseconds the API keeps are noise here.
pub(super) fn absolute(at: Millis) -> String {
    humantime::format_rfc3339_seconds(from_ms(at)).to_string()
}

/// When an entry expires: relative and absolute once deployed; a draft
/// entry's TTL only starts counting at its deploy.
pub(super) fn expiry(e: &Entry, now: Millis) -> String {
    match (e.expires_at, e.ttl) {
        (Some(at), _) => format!("{} ({})", relative(at, now), absolute(at)),
        (None, Some(ttl)) => format!("{} after deploy", span(ttl)),
        (None, None) => "never".to_string(),
    }
}

/// `1 entry`, `2 entries`.
pub(crate) fn plural(n: impl Into<u64>, one: &str, many: &str) -> String {
    match n.into() {
        1 => format!("1 {one}"),
        n => format!("{n} {many}"),
    }
}

pub(super) fn ttl(ttl: Option<u64>) -> String {
    ttl.map_or_else(|| "never".to_string(), span)
}

pub(super) fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// `+A −R ~C`: added, removed, changed.
pub(super) fn counts(c: &Counts) -> String {
    format!("+{} −{} ~{}", c.added, c.removed, c.changed)
}

/// The lowercase name an enum has in the API's JSON.
pub(super) fn name(v: &impl serde::Serialize) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "?".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{NOW, entry};
    use super::*;

    #[test]
    fn spans_keep_the_two_largest_units() {
        assert_eq!(span(0), "0s");
        assert_eq!(span(45), "45s");
        assert_eq!(span(90), "1m30s");
        assert_eq!(span(1800), "30m");
        assert_eq!(span(86_399), "23h59m");
        assert_eq!(span(3600), "1h");
        assert_eq!(span(86_400), "1d");
        assert_eq!(span(7 * 86_400 - 1), "6d23h");
        assert_eq!(span(2 * 86_400 + 59), "2d");
    }

    #[test]
    fn times_are_relative_and_absolute() {
        assert_eq!(relative(NOW + 86_399_999, NOW), "in 23h59m");
        assert_eq!(relative(NOW - 300_000, NOW), "5m ago");
        assert_eq!(relative(NOW + 400, NOW), "now");
        assert_eq!(absolute(NOW + 86_400_000), "2026-11-29T12:00:00Z");
    }

    #[test]
    fn expiry_shows_both_forms_never_or_the_ttl_to_come() {
        let mut e = entry("198.51.100.7");
        assert_eq!(expiry(&e, NOW), "never");
        e.ttl = Some(86_400);
        assert_eq!(expiry(&e, NOW), "1d after deploy");
        e.expires_at = Some(NOW + 86_399_000);
        assert_eq!(expiry(&e, NOW), "in 23h59m (2026-11-29T11:59:59Z)");
    }
}
