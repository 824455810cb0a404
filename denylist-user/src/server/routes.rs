//! The control API: JSON over HTTP on a Unix socket (docs/api.md), so
//! `curl --unix-socket` works. Every request is authorized from the peer's
//! SO_PEERCRED credentials; errors carry one HTTP status per class.

use std::{
    net::IpAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{ConnectInfo, DefaultBodyLimit, Path, State, connect_info::Connected},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
    serve::IncomingStream,
};
use serde::{Deserialize, Serialize};
use tokio::net::UnixListener;

use super::{
    auth::{self, Peer, Role},
    decode::{QueryResult, body, deploy_body, query},
    stream::{Listing, stream_entries},
};
use crate::{
    daemon::{Core, Snapshots},
    model::{ExportFormat, List, parse_duration},
    wire::{
        AddRequest, ApiError, AttachRequest, BODY_LIMIT, Class, DetachRequest, IMPORT_LIMIT,
        ImportParams, ModeRequest, RemoveRequest, RollbackRequest,
    },
};

/// The peer's credentials, read once per connection.
#[derive(Debug, Clone, Copy)]
pub struct PeerCred {
    uid: Option<u32>,
    pid: Option<i32>,
}

impl Connected<IncomingStream<'_, UnixListener>> for PeerCred {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        match stream.io().peer_cred() {
            Ok(c) => Self {
                uid: Some(c.uid()),
                pid: c.pid(),
            },
            Err(_) => Self {
                uid: None,
                pid: None,
            },
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub core: Arc<Mutex<Core>>,
    admin_group: String,
    viewer_group: String,
    snapshots: Arc<dyn Snapshots>,
}

impl AppState {
    pub fn new(core: Arc<Mutex<Core>>) -> Self {
        let (admin_group, viewer_group, snapshots) = {
            let c = core.lock().expect("core lock");
            let config = c.config();
            (
                config.admin_group.clone(),
                config.viewer_group.clone(),
                c.snapshots(),
            )
        };
        Self {
            core,
            admin_group,
            viewer_group,
            snapshots,
        }
    }

    /// The peer, if it may do what `need` asks; otherwise the 403 to send.
    fn authorize(&self, cred: PeerCred, need: Role) -> Result<Peer, ApiError> {
        let Some(uid) = cred.uid else {
            return Err(ApiError::new(
                Class::Forbidden,
                "cannot read the peer's credentials",
            ));
        };
        let peer = auth::authorize(uid, cred.pid, &self.admin_group, &self.viewer_group);
        if peer.role >= need {
            return Ok(peer);
        }
        let group = match need {
            Role::Admin => &self.admin_group,
            _ => &self.viewer_group,
        };
        let what = if need == Role::Admin {
            "change the denylist"
        } else {
            "read the denylist"
        };
        Err(ApiError::new(
            Class::Forbidden,
            format!(
                "permission denied: {} may not {what}; add yourself to group {group}",
                peer.user
            ),
        ))
    }

    /// Authorizes, then runs `f` on the blocking pool with the core locked.
    async fn call<T: Serialize + Send + 'static>(
        &self,
        cred: PeerCred,
        need: Role,
        ok: StatusCode,
        f: impl FnOnce(&mut Core, &Peer) -> Result<T, ApiError> + Send + 'static,
    ) -> Response {
        let peer = match self.authorize(cred, need) {
            Ok(p) => p,
            Err(e) => return error(e),
        };
        let core = self.core.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let mut core = core.lock().unwrap_or_else(|p| p.into_inner());
            let result = f(&mut core, &peer);
            if need == Role::Admin && result.is_ok() {
                super::notify::status(&core);
            }
            result
        })
        .await;
        match joined {
            Ok(Ok(v)) => (ok, axum::Json(v)).into_response(),
            Ok(Err(e)) => error(e),
            Err(e) => error(ApiError::failure(format!(
                "the request failed inside denylistd: {e}"
            ))),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a ApiError,
}

pub(super) fn error(e: ApiError) -> Response {
    let status =
        StatusCode::from_u16(e.class.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(ErrorBody { error: &e })).into_response()
}

type Cred = ConnectInfo<PeerCred>;
type St = State<AppState>;

async fn status(State(s): St, ConnectInfo(c): Cred) -> Response {
    s.call(
        c,
        Role::Viewer,
        StatusCode::OK,
        |core, _| Ok(core.status()?),
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntriesQuery {
    #[serde(default)]
    draft: bool,
    list: Option<List>,
    source: Option<String>,
    #[serde(rename = "match")]
    matching: Option<IpAddr>,
    limit: Option<usize>,
}

async fn entries(State(s): St, ConnectInfo(c): Cred, q: QueryResult<EntriesQuery>) -> Response {
    if let Err(e) = s.authorize(c, Role::Viewer) {
        return error(e);
    }
    let q = match query(q) {
        Ok(q) => q,
        Err(e) => return error(e),
    };
    stream_entries(
        &s.snapshots,
        Listing {
            draft: q.draft,
            list: q.list,
            source: q.source,
            matching: q.matching,
            limit: q.limit,
            plain: false,
        },
    )
}

async fn add(State(s): St, ConnectInfo(c): Cred, b: Bytes) -> Response {
    s.call(c, Role::Admin, StatusCode::CREATED, move |core, peer| {
        Ok(core.add(&peer.user, body::<AddRequest>(&b)?)?)
    })
    .await
}

async fn remove(State(s): St, ConnectInfo(c): Cred, b: Bytes) -> Response {
    s.call(c, Role::Admin, StatusCode::OK, move |core, peer| {
        Ok(core.remove(&peer.user, body::<RemoveRequest>(&b)?)?)
    })
    .await
}

async fn mode(State(s): St, ConnectInfo(c): Cred, b: Bytes) -> Response {
    s.call(c, Role::Admin, StatusCode::OK, move |core, peer| {
        Ok(core.mode(&peer.user, body::<ModeRequest>(&b)?)?)
    })
    .await
}

async fn diff(State(s): St, ConnectInfo(c): Cred) -> Response {
    s.call(c, Role::Viewer, StatusCode::OK, |core, _| Ok(core.diff()?))
        .await
}

async fn deploy(State(s): St, ConnectInfo(c): Cred, b: Bytes) -> Response {
    s.call(c, Role::Admin, StatusCode::OK, move |core, peer| {
        let (req, only) = deploy_body(&b)?;
        let message = req.message.as_deref();
        Ok(core.deploy(&peer.user, only.as_deref(), message, req.dry_run)?)
    })
    .await
}

async fn discard(State(s): St, ConnectInfo(c): Cred) -> Response {
    s.call(c, Role::Admin, StatusCode::OK, |core, peer| {
        Ok(core.discard(&peer.user)?)
    })
    .await
}

async fn check(
    State(s): St,
    ConnectInfo(c): Cred,
    ip: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Response {
    s.call(c, Role::Viewer, StatusCode::OK, move |core, _| {
        let Path(ip) = ip.map_err(|e| {
            ApiError::invalid(format!("invalid address in the path: {}", e.body_text()))
        })?;
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| ApiError::invalid(format!("{ip:?} is not an IP address")))?;
        Ok(core.check(ip))
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatsQuery {
    top: Option<usize>,
    idle: Option<String>,
}

async fn stats(State(s): St, ConnectInfo(c): Cred, q: QueryResult<StatsQuery>) -> Response {
    s.call(c, Role::Viewer, StatusCode::OK, move |core, _| {
        let q = query(q)?;
        let idle = match q.idle {
            Some(d) => Some(
                parse_duration(&d)
                    .map_err(|e| ApiError::invalid(e.to_string()))?
                    .as_millis() as i64,
            ),
            None => None,
        };
        Ok(core.stats(q.top, idle)?)
    })
    .await
}

async fn history(State(s): St, ConnectInfo(c): Cred) -> Response {
    s.call(c, Role::Viewer, StatusCode::OK, |core, _| {
        Ok(core.history()?)
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    #[serde(default)]
    since: u64,
}

async fn audit(State(s): St, ConnectInfo(c): Cred, q: QueryResult<AuditQuery>) -> Response {
    s.call(c, Role::Viewer, StatusCode::OK, move |core, _| {
        Ok(core.audit(query(q)?.since)?)
    })
    .await
}

async fn rollback(State(s): St, ConnectInfo(c): Cred, b: Bytes) -> Response {
    s.call(c, Role::Admin, StatusCode::OK, move |core, peer| {
        Ok(core.rollback(&peer.user, body::<RollbackRequest>(&b)?)?)
    })
    .await
}

async fn import(
    State(s): St,
    ConnectInfo(c): Cred,
    q: QueryResult<ImportParams>,
    b: Bytes,
) -> Response {
    s.call(c, Role::Admin, StatusCode::OK, move |core, peer| {
        Ok(core.import(&peer.user, query(q)?, &b)?)
    })
    .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    #[serde(default)]
    draft: bool,
    list: Option<List>,
    #[serde(default)]
    format: ExportFormat,
}

async fn export(State(s): St, ConnectInfo(c): Cred, q: QueryResult<ExportQuery>) -> Response {
    if let Err(e) = s.authorize(c, Role::Viewer) {
        return error(e);
    }
    let q = match query(q) {
        Ok(q) => q,
        Err(e) => return error(e),
    };
    let plain = matches!(q.format, ExportFormat::Plain);
    // Plain text cannot say which list a line is on, so a plain export is
    // one list: deny unless asked otherwise.
    let list = match (plain, q.list) {
        (true, None) => Some(List::Deny),
        (_, l) => l,
    };
    stream_entries(
        &s.snapshots,
        Listing {
            draft: q.draft,
            list,
            source: None,
            matching: None,
            limit: None,
            plain,
        },
    )
}

async fn attach(State(s): St, ConnectInfo(c): Cred, b: Bytes) -> Response {
    s.call(c, Role::Admin, StatusCode::OK, move |core, peer| {
        Ok(core.attach(&peer.user, body::<AttachRequest>(&b)?)?)
    })
    .await
}

async fn detach(State(s): St, ConnectInfo(c): Cred, b: Bytes) -> Response {
    s.call(c, Role::Admin, StatusCode::OK, move |core, peer| {
        Ok(core.detach(&peer.user, body::<DetachRequest>(&b)?)?)
    })
    .await
}

async fn verify(State(s): St, ConnectInfo(c): Cred) -> Response {
    s.call(c, Role::Admin, StatusCode::OK, |core, peer| {
        Ok(core.verify(&peer.user)?)
    })
    .await
}

async fn backup(State(s): St, ConnectInfo(c): Cred) -> Response {
    let peer = match s.authorize(c, Role::Admin) {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    let core = s.core.clone();
    let made = tokio::task::spawn_blocking(move || {
        core.lock()
            .unwrap_or_else(|p| p.into_inner())
            .backup(&peer.user)
    })
    .await;
    let path = match made {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return error(e.into()),
        Err(e) => {
            return error(ApiError::failure(format!(
                "the backup failed inside denylistd: {e}"
            )));
        }
    };
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) => return error(ApiError::failure(format!("reading the backup: {e}"))),
    };
    // Unlinked now, the copy lives only as long as this open file.
    let _ = std::fs::remove_file(&path);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    tokio::task::spawn_blocking(move || {
        use std::io::Read as _;
        let mut file = file;
        loop {
            let mut chunk = vec![0u8; 256 * 1024];
            match file.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    chunk.truncate(n);
                    if tx.blocking_send(Ok(Bytes::from(chunk))).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    (
        [(header::CONTENT_TYPE, "application/vnd.sqlite3")],
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response()
}

async fn not_found() -> Response {
    error(ApiError::new(
        Class::NotFound,
        "no such route: docs/api.md lists them, all under /v1",
    ))
}

/// 405, with the `Allow` header that axum's method router adds to this
/// fallback's answer; the class is `invalid`, like any malformed request.
async fn wrong_method() -> Response {
    let e = ApiError::invalid(
        "this route does not take that method: the Allow header names the ones it takes",
    );
    (
        StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(ErrorBody { error: &e }),
    )
        .into_response()
}

/// Refuses a peer before its body is read: on a 0666 socket, a stranger
/// must not make the daemon buffer a 256 MiB import. Reading routes need
/// the viewer role, the others the admin role; handlers check again, with
/// the peer they record.
async fn gate(
    State(s): St,
    ConnectInfo(c): Cred,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let need = if req.method() == axum::http::Method::GET {
        Role::Viewer
    } else {
        Role::Admin
    };
    match s.authorize(c, need) {
        Ok(_) => next.run(req).await,
        Err(e) => error(e),
    }
}

/// Every route of docs/api.md.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/entries", get(entries).post(add))
        .route("/v1/entries/remove", post(remove))
        .route("/v1/entries/mode", post(mode))
        .route("/v1/diff", get(diff))
        .route("/v1/deploy", post(deploy))
        .route("/v1/discard", post(discard))
        .route("/v1/check/{ip}", get(check))
        .route("/v1/stats", get(stats))
        .route("/v1/history", get(history))
        .route("/v1/audit", get(audit))
        .route("/v1/rollback", post(rollback))
        .route(
            "/v1/import",
            post(import).layer(DefaultBodyLimit::max(IMPORT_LIMIT)),
        )
        .route("/v1/export", get(export))
        .route("/v1/attach", post(attach))
        .route("/v1/detach", post(detach))
        .route("/v1/verify", post(verify))
        .route("/v1/backup", post(backup))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), gate))
        .fallback(not_found)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}
