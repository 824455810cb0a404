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
    extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State, connect_info::Connected},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
    serve::IncomingStream,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tokio::net::UnixListener;

use crate::{
    auth::{self, Peer, Role},
    daemon::Core,
    entry::parse_duration,
    error::{ApiError, Class},
    proto::{
        AddRequest, AttachRequest, DeployRequest, DetachRequest, ImportParams, ModeRequest,
        RemoveRequest, RollbackRequest,
    },
    target::Target,
    verdict::List,
};

/// Requests are bounded; imports stream up to this much (a 1M-line plain
/// list is about 16 MiB).
pub const BODY_LIMIT: usize = 1 << 20;
pub const IMPORT_LIMIT: usize = 256 << 20;

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
    db: std::path::PathBuf,
}

impl AppState {
    pub fn new(core: Arc<Mutex<Core>>) -> Self {
        let (admin_group, viewer_group, db) = {
            let c = core.lock().expect("core lock");
            let config = c.config();
            (
                config.admin_group.clone(),
                config.viewer_group.clone(),
                config.state_dir.join(crate::store::DB_FILE),
            )
        };
        Self {
            core,
            admin_group,
            viewer_group,
            db,
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
            f(&mut core, &peer)
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

/// What a listing streams, and how.
struct Listing {
    draft: bool,
    list: Option<List>,
    source: Option<String>,
    matching: Option<IpAddr>,
    limit: Option<usize>,
    plain: bool,
}

/// Streams entries from the store in address order, 64 KiB at a time, from
/// a read-only connection of its own: neither side holds 1M rows, and the
/// core stays free for other requests meanwhile.
fn stream_entries(db: std::path::PathBuf, l: Listing) -> Response {
    const FLUSH: usize = 64 * 1024;
    // Checked while an error can still be the reply: once streaming, a
    // failure can only break the body.
    if let Err(e) = crate::store::refuse_links(&db) {
        return error(e.into());
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    tokio::task::spawn_blocking(move || {
        let mut buf: Vec<u8> = Vec::with_capacity(FLUSH + 1024);
        if !l.plain {
            buf.push(b'[');
        }
        let (mut sent, mut open) = (0usize, true);
        let source = l.source.as_deref();
        let result = crate::store::for_each_entry(&db, l.draft, crate::entry::now_ms(), |e| {
            let wanted = l.list.is_none_or(|x| e.list == x)
                && source
                    .is_none_or(|s| e.source == s || e.source.strip_prefix("import:") == Some(s))
                && l.matching.is_none_or(|ip| e.target.contains(ip));
            if !wanted {
                return true;
            }
            if l.limit.is_some_and(|n| sent >= n) {
                return false;
            }
            if l.plain {
                buf.extend_from_slice(e.target.to_string().as_bytes());
                buf.push(b'\n');
            } else {
                if sent > 0 {
                    buf.push(b',');
                }
                if serde_json::to_writer(&mut buf, &e).is_err() {
                    return false;
                }
            }
            sent += 1;
            if buf.len() >= FLUSH {
                open = tx
                    .blocking_send(Ok(Bytes::from(std::mem::take(&mut buf))))
                    .is_ok();
            }
            open
        });
        match result {
            Ok(()) => {
                if !l.plain {
                    buf.push(b']');
                }
                let _ = tx.blocking_send(Ok(Bytes::from(buf)));
            }
            // The status is already sent: break the body so the client
            // sees a truncated reply rather than a short list.
            Err(e) => {
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        }
    });
    let ct = if l.plain {
        "text/plain; charset=utf-8"
    } else {
        "application/json"
    };
    (
        [(header::CONTENT_TYPE, ct)],
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response()
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a ApiError,
}

fn error(e: ApiError) -> Response {
    let status =
        StatusCode::from_u16(e.class.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(ErrorBody { error: &e })).into_response()
}

/// Decodes a request body as every route does. Bodies are parsed here
/// rather than by axum's Json extractor, whose rejections use 422, the
/// status of a guardrail refusal. Parsing happens after authorization, so a
/// stranger learns nothing from a malformed body. Public for the fuzz
/// targets (fuzz/), which drive this decoder rather than a copy of it.
pub fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))
}

/// Pending changes by key: a target and its list.
pub type Keys = Vec<(Target, List)>;

/// Decodes a deploy's body: empty deploys everything pending; `only`'s
/// targets are parsed as TARGETs, with the list each names.
pub fn deploy_body(bytes: &[u8]) -> Result<(DeployRequest, Option<Keys>), ApiError> {
    let req: DeployRequest = if bytes.is_empty() {
        DeployRequest::default()
    } else {
        body(bytes)?
    };
    let only = match &req.only {
        Some(keys) => Some(
            keys.iter()
                .map(|k| {
                    Target::parse(&k.target)
                        .map(|t| (t, k.list))
                        .map_err(|e| ApiError::invalid(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    Ok((req, only))
}

/// What axum's `Query` extractor made of the query string.
pub type QueryResult<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

/// Turns a query the extractor refused into the API's 400.
pub fn query<T: DeserializeOwned>(q: QueryResult<T>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::invalid(format!("invalid query: {}", e.body_text())))
}

type Cred = ConnectInfo<PeerCred>;
type St = State<AppState>;

async fn status(State(s): St, ConnectInfo(c): Cred) -> Response {
    s.call(c, Role::Viewer, StatusCode::OK, |core, _| core.status())
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
        s.db.clone(),
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
        core.add(peer, body::<AddRequest>(&b)?)
    })
    .await
}

async fn remove(State(s): St, ConnectInfo(c): Cred, b: Bytes) -> Response {
    s.call(c, Role::Admin, StatusCode::OK, move |core, peer| {
        core.remove(peer, body::<RemoveRequest>(&b)?)
    })
    .await
}

async fn mode(State(s): St, ConnectInfo(c): Cred, b: Bytes) -> Response {
    s.call(c, Role::Admin, StatusCode::OK, move |core, peer| {
        core.mode(peer, body::<ModeRequest>(&b)?)
    })
    .await
}

async fn diff(State(s): St, ConnectInfo(c): Cred) -> Response {
    s.call(c, Role::Viewer, StatusCode::OK, |core, _| core.diff())
        .await
}

async fn deploy(State(s): St, ConnectInfo(c): Cred, b: Bytes) -> Response {
    s.call(c, Role::Admin, StatusCode::OK, move |core, peer| {
        let (req, only) = deploy_body(&b)?;
        core.deploy(
            &peer.user,
            only.as_deref(),
            req.message.as_deref(),
            req.dry_run,
        )
    })
    .await
}

async fn discard(State(s): St, ConnectInfo(c): Cred) -> Response {
    s.call(c, Role::Admin, StatusCode::OK, |core, peer| {
        core.discard(peer)
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
            Some(d) => Some(parse_duration(&d).map_err(ApiError::invalid)?.as_millis() as i64),
            None => None,
        };
        core.stats(q.top, idle)
    })
    .await
}

async fn history(State(s): St, ConnectInfo(c): Cred) -> Response {
    s.call(c, Role::Viewer, StatusCode::OK, |core, _| core.history())
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
        core.audit(query(q)?.since)
    })
    .await
}

async fn rollback(State(s): St, ConnectInfo(c): Cred, b: Bytes) -> Response {
    s.call(c, Role::Admin, StatusCode::OK, move |core, peer| {
        core.rollback(peer, body::<RollbackRequest>(&b)?)
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
        core.import(peer, query(q)?, &b)
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

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ExportFormat {
    #[default]
    Json,
    Plain,
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
        s.db.clone(),
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
        core.attach(peer, body::<AttachRequest>(&b)?)
    })
    .await
}

async fn detach(State(s): St, ConnectInfo(c): Cred, b: Bytes) -> Response {
    s.call(c, Role::Admin, StatusCode::OK, move |core, peer| {
        core.detach(peer, body::<DetachRequest>(&b)?)
    })
    .await
}

async fn verify(State(s): St, ConnectInfo(c): Cred) -> Response {
    s.call(c, Role::Admin, StatusCode::OK, |core, peer| {
        core.verify(&peer.user)
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
        Ok(Err(e)) => return error(e),
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

async fn wrong_method() -> Response {
    error(ApiError::invalid(
        "this route does not take that method: docs/api.md lists each route's method",
    ))
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
