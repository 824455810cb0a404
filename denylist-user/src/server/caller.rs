//! Who sends a request: the socket's peer, and the web user it may act
//! for. A web console is one peer serving many people; members of
//! `--web-group` name the person in `Denylist-On-Behalf-Of` and their role
//! in `Denylist-Role`, and the request then runs with that person's name
//! and role, capped at `--web-max-role`. Anyone else sending either header
//! is refused, so a local user cannot pass for a web user.

use std::convert::Infallible;

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{HeaderMap, request::Parts},
};

use super::{
    auth::{Peer, Role},
    routes::PeerCred,
};
use crate::wire::{ApiError, ON_BEHALF_HEADER, ROLE_HEADER, WebRole, WebUser};

/// The peer's credentials and the on-behalf headers as sent, checked
/// when the request is authorized.
#[derive(Debug, Clone)]
pub struct Caller {
    pub(super) cred: PeerCred,
    behalf: Option<Headers>,
}

/// The two headers, raw: either may be missing or unreadable, which is a
/// 400 for a web peer and a 403 for anyone else.
#[derive(Debug, Clone)]
struct Headers {
    name: Option<Result<String, ()>>,
    role: Option<Result<String, ()>>,
}

impl Caller {
    pub(super) fn new(cred: PeerCred, headers: &HeaderMap) -> Self {
        let get = |h: &str| {
            headers
                .get(h)
                .map(|v| v.to_str().map(str::to_string).map_err(|_| ()))
        };
        let (name, role) = (get(ON_BEHALF_HEADER), get(ROLE_HEADER));
        let behalf = (name.is_some() || role.is_some()).then_some(Headers { name, role });
        Self { cred, behalf }
    }

    /// Whether the request names a web user at all.
    pub(super) fn claims_behalf(&self) -> bool {
        self.behalf.is_some()
    }

    /// The web user and role the headers name, checked.
    pub(super) fn behalf(&self) -> Result<Option<(WebUser, WebRole)>, ApiError> {
        let Some(h) = &self.behalf else {
            return Ok(None);
        };
        let both = "send both, or neither to act as the peer itself";
        let name = match &h.name {
            Some(Ok(n)) => WebUser::parse(n).map_err(|e| ApiError::invalid(e.to_string()))?,
            Some(Err(())) => {
                return Err(ApiError::invalid(format!(
                    "{ON_BEHALF_HEADER} is not readable text: give a web user name"
                )));
            }
            None => {
                return Err(ApiError::invalid(format!(
                    "{ROLE_HEADER} without {ON_BEHALF_HEADER}: {both}"
                )));
            }
        };
        let role = match &h.role {
            Some(Ok(r)) => r
                .parse::<WebRole>()
                .map_err(|e| ApiError::invalid(format!("{ROLE_HEADER}: {e}")))?,
            Some(Err(())) => {
                return Err(ApiError::invalid(format!(
                    "{ROLE_HEADER} is not readable text: use admin or viewer"
                )));
            }
            None => {
                return Err(ApiError::invalid(format!(
                    "{ON_BEHALF_HEADER} without {ROLE_HEADER}: {both}"
                )));
            }
        };
        Ok(Some((name, role)))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // Without the connection's credentials (never on the socket), the
        // peer is nobody, and authorizing it refuses it.
        let cred = parts
            .extensions
            .get::<ConnectInfo<PeerCred>>()
            .map_or(PeerCred::UNKNOWN, |c| c.0);
        Ok(Caller::new(cred, &parts.headers))
    }
}

/// The web user's peer: their name for the audit log, and the lower of the
/// role the console gives them and the daemon's cap. A web user never
/// reports.
pub(super) fn on_behalf(peer: Peer, user: &WebUser, role: WebRole, cap: WebRole) -> Peer {
    let role = match role.min(cap) {
        WebRole::Admin => Role::Admin,
        WebRole::Viewer => Role::Viewer,
    };
    Peer {
        role,
        reporter: false,
        user: user.actor(),
        ..peer
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn caller(headers: &[(&'static str, &[u8])]) -> Caller {
        let mut map = HeaderMap::new();
        for &(k, v) in headers {
            map.insert(k, HeaderValue::from_bytes(v).unwrap());
        }
        Caller::new(PeerCred::UNKNOWN, &map)
    }

    #[test]
    fn both_headers_or_neither_and_each_well_formed() {
        assert!(!caller(&[]).claims_behalf());
        assert_eq!(caller(&[]).behalf().unwrap(), None);
        let ok = caller(&[(ON_BEHALF_HEADER, b"alice"), (ROLE_HEADER, b"viewer")]);
        assert!(ok.claims_behalf());
        let (user, role) = ok.behalf().unwrap().unwrap();
        assert_eq!((user.as_str(), role), ("alice", WebRole::Viewer));
        for bad in [
            caller(&[(ON_BEHALF_HEADER, b"alice")]),
            caller(&[(ROLE_HEADER, b"admin")]),
            caller(&[(ON_BEHALF_HEADER, b"Alice"), (ROLE_HEADER, b"admin")]),
            caller(&[
                (ON_BEHALF_HEADER, b"alice (as root)"),
                (ROLE_HEADER, b"admin"),
            ]),
            caller(&[(ON_BEHALF_HEADER, b"alice"), (ROLE_HEADER, b"root")]),
            caller(&[(ON_BEHALF_HEADER, b"al\xffce"), (ROLE_HEADER, b"admin")]),
        ] {
            assert!(bad.claims_behalf());
            let e = bad.behalf().unwrap_err();
            assert_eq!(e.class, crate::wire::Class::Invalid, "{e}");
        }
    }

    #[test]
    fn the_role_is_capped_and_the_name_is_the_web_users() {
        let peer = Peer {
            uid: 990,
            pid: None,
            role: Role::None,
            reporter: true,
            web: true,
            user: "denylist-web".into(),
        };
        let alice = WebUser::parse("alice").unwrap();
        let p = on_behalf(peer.clone(), &alice, WebRole::Admin, WebRole::Admin);
        assert_eq!(
            (p.role, p.user.as_str(), p.reporter),
            (Role::Admin, "alice (web)", false)
        );
        let p = on_behalf(peer.clone(), &alice, WebRole::Admin, WebRole::Viewer);
        assert_eq!(p.role, Role::Viewer);
        let p = on_behalf(peer, &alice, WebRole::Viewer, WebRole::Admin);
        assert_eq!(p.role, Role::Viewer);
    }
}
