//! `--auth proxy`: a reverse proxy (oauth2-proxy, Authelia behind nginx)
//! signs users in and names them in a header. A header is only as good as
//! the proof that the proxy sent it: on 127.0.0.1 any local user can send
//! any header, so a request must also carry the proxy's shared secret, or
//! come over the Unix socket that only the proxy's group may reach.

use axum::http::{HeaderMap, HeaderName};
use subtle::ConstantTimeEq as _;

use super::users::valid_name;

/// The header that carries the proxy's secret.
pub const SECRET_HEADER: &str = "x-proxy-secret";

/// How the proxy proves a request is its own.
#[derive(Clone)]
pub enum Proof {
    /// The proxy sends this secret in `X-Proxy-Secret`.
    Secret(Vec<u8>),
    /// The console listens on a Unix socket only the proxy may connect to.
    UnixSocket,
}

/// How a request reached the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Unix,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyRefusal {
    #[error("the request does not come from the sign-in proxy")]
    NoProof,
    #[error("the sign-in proxy named no user")]
    NoUser,
    #[error("the sign-in proxy named an invalid user name")]
    InvalidUser,
}

/// The user the proxy names, once the request has shown the proxy's proof.
/// The secret is checked first, so a request without it learns nothing.
pub fn proxy_user(
    headers: &HeaderMap,
    transport: Transport,
    proof: &Proof,
    user_header: &HeaderName,
) -> Result<String, ProxyRefusal> {
    let proven = match proof {
        Proof::Secret(secret) => headers
            .get(SECRET_HEADER)
            .is_some_and(|sent| bool::from(sent.as_bytes().ct_eq(secret))),
        Proof::UnixSocket => transport == Transport::Unix,
    };
    if !proven {
        return Err(ProxyRefusal::NoProof);
    }
    let name = headers.get(user_header).ok_or(ProxyRefusal::NoUser)?;
    let name = name.to_str().map_err(|_| ProxyRefusal::InvalidUser)?;
    if !valid_name(name) {
        return Err(ProxyRefusal::InvalidUser);
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn user_header() -> HeaderName {
        HeaderName::from_static("x-remote-user")
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn the_header_counts_only_with_the_secret() {
        let proof = Proof::Secret(b"s3cret".to_vec());
        let ok = headers(&[("x-remote-user", "alice"), ("x-proxy-secret", "s3cret")]);
        assert_eq!(
            proxy_user(&ok, Transport::Tcp, &proof, &user_header()).as_deref(),
            Ok("alice")
        );
        for forged in [
            headers(&[("x-remote-user", "alice")]),
            headers(&[("x-remote-user", "alice"), ("x-proxy-secret", "s3cre")]),
            headers(&[("x-remote-user", "alice"), ("x-proxy-secret", "s3cret2")]),
        ] {
            assert_eq!(
                proxy_user(&forged, Transport::Tcp, &proof, &user_header()),
                Err(ProxyRefusal::NoProof)
            );
        }
        // The socket does not stand in for the secret.
        assert!(proxy_user(&forged_only(), Transport::Unix, &proof, &user_header()).is_err());
    }

    fn forged_only() -> HeaderMap {
        headers(&[("x-remote-user", "alice")])
    }

    #[test]
    fn over_the_unix_socket_the_socket_is_the_proof() {
        let proof = Proof::UnixSocket;
        assert_eq!(
            proxy_user(&forged_only(), Transport::Unix, &proof, &user_header()).as_deref(),
            Ok("alice")
        );
        assert_eq!(
            proxy_user(&forged_only(), Transport::Tcp, &proof, &user_header()),
            Err(ProxyRefusal::NoProof)
        );
    }

    #[test]
    fn the_named_user_must_be_a_valid_name() {
        let proof = Proof::UnixSocket;
        assert_eq!(
            proxy_user(&HeaderMap::new(), Transport::Unix, &proof, &user_header()),
            Err(ProxyRefusal::NoUser)
        );
        let bad = headers(&[("x-remote-user", "Alice Smith")]);
        assert_eq!(
            proxy_user(&bad, Transport::Unix, &proof, &user_header()),
            Err(ProxyRefusal::InvalidUser)
        );
    }
}
