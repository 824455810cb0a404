//! Cross-site request forgery: every state-changing request must come
//! from the console's own pages. Two checks, both required: the browser's
//! own word on where the request comes from (`Sec-Fetch-Site`, `Origin`),
//! and the session's token, which another site cannot read.

use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq as _;

/// The form field that carries the token in a plain form post.
pub const FIELD: &str = "csrf";
/// The header that carries it in a request from script (htmx).
pub const HEADER: &str = "x-csrf-token";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the request comes from another site ({site})")]
    CrossSite { site: String },
    #[error("the request comes from another origin ({origin})")]
    Origin { origin: String },
    #[error("the request carries no CSRF token: reload the page and try again")]
    NoToken,
    #[error("the request's CSRF token is not this session's: reload the page and try again")]
    WrongToken,
}

/// Refuses a request the browser says comes from elsewhere. A browser
/// that sends neither header (an old one, or curl) passes this check and
/// still needs the token.
pub fn same_origin(headers: &HeaderMap) -> Result<(), Refusal> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = String::from_utf8_lossy(site.as_bytes()).into_owned();
        // `none`: typed in the address bar or a bookmark, by the user.
        if site != "same-origin" && site != "none" {
            return Err(Refusal::CrossSite { site });
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
    // The host the browser sent the request to; a proxy in front must pass
    // it on unchanged (docs/web.md).
    let host = headers
        .get(header::HOST)
        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned());
    let authority = origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'));
    match (authority, host) {
        (Some(a), Some(h)) if a.eq_ignore_ascii_case(&h) => Ok(()),
        _ => Err(Refusal::Origin { origin }),
    }
}

/// Compares the token sent with the session's in constant time.
pub fn token_matches(expected: &str, sent: Option<&str>) -> Result<(), Refusal> {
    let sent = sent.ok_or(Refusal::NoToken)?;
    if bool::from(expected.as_bytes().ct_eq(sent.as_bytes())) {
        Ok(())
    } else {
        Err(Refusal::WrongToken)
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn a_post_from_another_site_is_refused() {
        let e = same_origin(&headers(&[
            ("host", "console.example:8787"),
            ("sec-fetch-site", "cross-site"),
        ]));
        assert!(matches!(e, Err(Refusal::CrossSite { .. })));
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-site")])).is_err());
        let e = same_origin(&headers(&[
            ("host", "console.example:8787"),
            ("origin", "http://evil.example"),
        ]));
        assert!(matches!(e, Err(Refusal::Origin { .. })));
        assert!(same_origin(&headers(&[("host", "a"), ("origin", "null")])).is_err());
    }

    #[test]
    fn a_post_from_the_console_passes() {
        same_origin(&headers(&[
            ("host", "console.example:8787"),
            ("origin", "https://console.example:8787"),
            ("sec-fetch-site", "same-origin"),
        ]))
        .unwrap();
        same_origin(&headers(&[("host", "127.0.0.1:8787")])).unwrap();
    }

    #[test]
    fn only_the_sessions_token_passes() {
        let token = "ab".repeat(32);
        token_matches(&token, Some(&token)).unwrap();
        assert_eq!(token_matches(&token, None), Err(Refusal::NoToken));
        assert_eq!(
            token_matches(&token, Some(&"ab".repeat(31))),
            Err(Refusal::WrongToken)
        );
        assert_eq!(token_matches(&token, Some("")), Err(Refusal::WrongToken));
    }
}
