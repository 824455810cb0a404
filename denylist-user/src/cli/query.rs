//! Query strings, in the form the daemon's `Query` extractor
//! (`application/x-www-form-urlencoded`) decodes.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

/// `?k=v&…` from the fields of `params`, a struct of scalars; absent
/// (`null`) fields are left out so the daemon applies its defaults. Empty
/// when there is nothing to send.
pub fn encode(params: &impl Serialize) -> String {
    let Ok(Value::Object(fields)) = serde_json::to_value(params) else {
        return String::new();
    };
    let pairs: Vec<String> = fields
        .into_iter()
        .filter_map(|(k, v)| {
            let v = match v {
                Value::Null => return None,
                Value::String(s) => s,
                other => other.to_string(),
            };
            Some(format!("{}={}", percent(&k), percent(&v)))
        })
        .collect();
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

/// Every byte but RFC 3986's unreserved characters is escaped: the form
/// decoding reads `+` as a space, and `&`, `=`, `#` would split the query.
pub fn percent(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::{Format, List},
        wire::ImportParams,
    };

    #[test]
    fn values_are_percent_encoded() {
        assert_eq!(percent("a b+c&d=e/ü#"), "a%20b%2Bc%26d%3De%2F%C3%BC%23");
        assert_eq!(percent("drop_v4.json~-"), "drop_v4.json~-");
    }

    #[test]
    fn import_params_become_a_query_without_absent_fields() {
        let p = ImportParams {
            format: Format::SpamhausJson,
            source: Some("feed one".into()),
            list: Some(List::Deny),
            reason: Some("SBL 1&2".into()),
            ttl: Some("7d".into()),
            skip_invalid: true,
            admin_addr: Some("2001:db8::1".parse().unwrap()),
            ..ImportParams::default()
        };
        let q = encode(&p);
        assert!(q.starts_with('?'), "{q}");
        let pairs: Vec<&str> = q[1..].split('&').collect();
        for want in [
            "format=spamhaus-json",
            "source=feed%20one",
            "list=deny",
            "reason=SBL%201%262",
            "ttl=7d",
            "skip_invalid=true",
            "replace=false",
            "admin_addr=2001%3Adb8%3A%3A1",
        ] {
            assert!(pairs.contains(&want), "{want} missing from {q}");
        }
        assert!(!q.contains("deploy=true"), "{q}");
    }

    #[test]
    fn nothing_to_send_is_an_empty_query() {
        #[derive(Serialize)]
        struct Q {
            limit: Option<usize>,
        }
        assert_eq!(encode(&Q { limit: None }), "");
        assert_eq!(encode(&Q { limit: Some(5) }), "?limit=5");
    }
}
