//! The console's client of denylistd: HTTP/1.1 over the daemon's Unix
//! socket, one request per connection like the CLI's, async so a slow
//! answer holds no thread. Every request names the web user it is made
//! for, and the daemon decides what that user may do.

use std::path::{Path, PathBuf};

use axum::http::{Method, Request, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::{Serialize, de::DeserializeOwned};
use tokio::net::UnixStream;

use super::users::Role;
use crate::wire::{ApiError, Class, ON_BEHALF_HEADER, ROLE_HEADER};

/// The most of a reply the console reads: a page of entries or a diff is
/// far smaller; a reply past it is a fault, not something to show.
const REPLY_LIMIT: usize = 64 << 20;

/// Who a request is made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Clone)]
pub struct Daemon {
    socket: PathBuf,
}

impl Daemon {
    pub fn new(socket: impl AsRef<Path>) -> Daemon {
        Daemon {
            socket: socket.as_ref().to_path_buf(),
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, actor: &Actor, path: &str) -> Result<T, ApiError> {
        let (status, body) = self.request(actor, Method::GET, path, None).await?;
        decode(status, &body)
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        actor: &Actor,
        path: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        let json = serde_json::to_vec(body)
            .map_err(|e| ApiError::failure(format!("cannot encode the request: {e}")))?;
        let (status, body) = self.request(actor, Method::POST, path, Some(json)).await?;
        decode(status, &body)
    }

    async fn request(
        &self,
        actor: &Actor,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Bytes), ApiError> {
        let unreachable = |e: &dyn std::fmt::Display| {
            ApiError::new(
                Class::Unavailable,
                format!(
                    "cannot reach denylistd at {}: {e}: is it running?",
                    self.socket.display()
                ),
            )
        };
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| unreachable(&e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(&e))?;
        // The connection's driver ends with the request; its error, if
        // any, shows as the request's.
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "denylistd")
            .header(header::CONTENT_TYPE, "application/json")
            .header(ON_BEHALF_HEADER, &actor.name)
            .header(ROLE_HEADER, actor.role.as_str())
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ApiError::failure(format!("cannot build the request for {path}: {e}")))?;
        let reply = sender
            .send_request(req)
            .await
            .map_err(|e| ApiError::failure(format!("denylistd did not answer {path}: {e}")))?;
        let status = reply.status().as_u16();
        let body = Limited::new(reply.into_body(), REPLY_LIMIT)
            .collect()
            .await
            .map_err(|e| ApiError::failure(format!("reading denylistd's reply to {path}: {e}")))?
            .to_bytes();
        Ok((status, body))
    }
}

/// The body as `T`, or the API error it carries.
fn decode<T: DeserializeOwned>(status: u16, body: &[u8]) -> Result<T, ApiError> {
    if (200..300).contains(&status) {
        return serde_json::from_slice(body).map_err(|e| {
            ApiError::failure(format!(
                "denylistd sent a reply the console cannot read: {e}"
            ))
        });
    }
    #[derive(serde::Deserialize)]
    struct Wrapped {
        error: ApiError,
    }
    match serde_json::from_slice::<Wrapped>(body) {
        Ok(w) => Err(w.error),
        Err(_) => Err(ApiError::new(
            Class::from_status(status),
            format!(
                "denylistd answered {status}: {}",
                String::from_utf8_lossy(body).trim()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::testing::FakeDaemon;

    #[tokio::test]
    async fn requests_name_the_web_user_and_errors_come_back_classed() {
        let fake = FakeDaemon::start().await;
        let d = Daemon::new(fake.socket());
        let alice = Actor {
            name: "alice".into(),
            role: Role::Viewer,
        };
        let status: serde_json::Value = d.get(&alice, "/v1/status").await.unwrap();
        assert_eq!(status["revision"], 3);
        let seen = fake.requests();
        let last = seen.last().unwrap();
        assert_eq!(last.on_behalf.as_deref(), Some("alice"));
        assert_eq!(last.role.as_deref(), Some("viewer"));

        let e = d
            .post::<_, serde_json::Value>(&alice, "/v1/discard", &serde_json::json!({}))
            .await
            .unwrap_err();
        assert_eq!(e.class, Class::Forbidden);
    }

    #[tokio::test]
    async fn a_missing_daemon_is_unavailable() {
        let d = Daemon::new("/nonexistent/denylist.sock");
        let actor = Actor {
            name: "a".into(),
            role: Role::Admin,
        };
        let e = d
            .get::<serde_json::Value>(&actor, "/v1/status")
            .await
            .unwrap_err();
        assert_eq!(e.class, Class::Unavailable);
    }
}
