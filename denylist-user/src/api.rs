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
        AddRequest, AttachRequest, BackupRequest, DeployRequest, DetachRequest, ImportParams,
        ModeRequest, RemoveRequest, RollbackRequest,
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
}

impl AppState {
    pub fn new(core: Arc<Mutex<Core>>) -> Self {
        let (admin_group, viewer_group) = {
            let c = core.lock().expect("core lock");
            (
                c.config().admin_group.clone(),
                c.config().viewer_group.clone(),
            )
        };
        Self {
            core,
            admin_group,
            viewer_group,
        }
    }

    /// Authorizes, then runs `f` on the blocking pool with the core locked.
    async fn call<T: Serialize + Send + 'static>(
        &self,
        cred: PeerCred,
        need: Role,
        ok: StatusCode,
        f: impl FnOnce(&mut Core, &Peer) -> Result<T, ApiError> + Send + 'static,
    ) -> Response {
        let Some(uid) = cred.uid else {
            return error(ApiError::new(
                Class::Forbidden,
                "cannot read the peer's credentials",
            ));
        };
        let peer = auth::authorize(uid, cred.pid, &self.admin_group, &self.viewer_group);
        if peer.role < need {
            let group = match need {
                Role::Admin => &self.admin_group,
                _ => &self.viewer_group,
            };
            let what = if need == Role::Admin {
                "change the denylist"
            } else {
                "read the denylist"
            };
            return error(ApiError::new(
                Class::Forbidden,
                format!(
                    "permission denied: {} may not {what}; add yourself to group {group}",
                    peer.user
                ),
            ));
        }
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

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a ApiError,
}

fn error(e: ApiError) -> Response {
    let status =
        StatusCode::from_u16(e.class.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(ErrorBody { error: &e })).into_response()
}

/// Bodies are parsed here rather than by axum's Json extractor, whose
/// rejections use 422, the status of a guardrail refusal.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))
}

fn query<T: DeserializeOwned>(
    q: Result<Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::invalid(format!("invalid query: {}", e.body_text())))
}

macro_rules! try_or_respond {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return error(e),
        }
    };
}

type Cred = ConnectInfo<PeerCred>;

async fn status(State(s): State<AppState>, ConnectInfo(c): Cred) -> Response {
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

async fn entries(
    State(s): State<AppState>,
    ConnectInfo(c): Cred,
    q: Result<Query<EntriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = try_or_respond!(query(q));
    s.call(c, Role::Viewer, StatusCode::OK, move |core, _| {
        core.entries(q.draft, q.list, q.source.as_deref(), q.matching, q.limit)
    })
    .await
}

async fn add(State(s): State<AppState>, ConnectInfo(c): Cred, b: Bytes) -> Response {
    let req: AddRequest = try_or_respond!(body(&b));
    s.call(c, Role::Admin, StatusCode::CREATED, move |core, peer| {
        core.add(peer, req)
    })
    .await
}

async fn remove(State(s): State<AppState>, ConnectInfo(c): Cred, b: Bytes) -> Response {
    let req: RemoveRequest = try_or_respond!(body(&b));
    s.call(c, Role::Admin, StatusCode::OK, move |core, peer| {
        core.remove(peer, req)
    })
    .await
}

async fn mode(State(s): State<AppState>, ConnectInfo(c): Cred, b: Bytes) -> Response {
    let req: ModeRequest = try_or_respond!(body(&b));
    s.call(c, Role::Admin, StatusCode::OK, move |core, peer| {
        core.mode(peer, req)
    })
    .await
}

async fn diff(State(s): State<AppState>, ConnectInfo(c): Cred) -> Response {
    s.call(c, Role::Viewer, StatusCode::OK, |core, _| core.diff())
        .await
}

async fn deploy(State(s): State<AppState>, ConnectInfo(c): Cred, b: Bytes) -> Response {
    let req: DeployRequest = if b.is_empty() {
        DeployRequest::default()
    } else {
        try_or_respond!(body(&b))
    };
    let only = match req.only {
        Some(keys) => Some(try_or_respond!(
            keys.iter()
                .map(|k| Target::parse(&k.target)
                    .map(|t| (t, k.list))
                    .map_err(|e| ApiError::invalid(e.to_string())))
                .collect::<Result<Vec<_>, _>>()
        )),
        None => None,
    };
    s.call(c, Role::Admin, StatusCode::OK, move |core, peer| {
        core.deploy(
            &peer.user,
            only.as_deref(),
            req.message.as_deref(),
            req.dry_run,
        )
    })
    .await
}

async fn discard(State(s): State<AppState>, ConnectInfo(c): Cred) -> Response {
    s.call(c, Role::Admin, StatusCode::OK, |core, peer| {
        core.discard(peer)
    })
    .await
}

async fn check(
    State(s): State<AppState>,
    ConnectInfo(c): Cred,
    Path(ip): Path<String>,
) -> Response {
    let ip: IpAddr = try_or_respond!(
        ip.parse()
            .map_err(|_| ApiError::invalid(format!("{ip:?} is not an IP address")))
    );
    s.call(c, Role::Viewer, StatusCode::OK, move |core, _| {
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

async fn stats(
    State(s): State<AppState>,
    ConnectInfo(c): Cred,
    q: Result<Query<StatsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = try_or_respond!(query(q));
    let idle = match q.idle {
        Some(d) => {
            Some(try_or_respond!(parse_duration(&d).map_err(ApiError::invalid)).as_millis() as i64)
        }
        None => None,
    };
    s.call(c, Role::Viewer, StatusCode::OK, move |core, _| {
        core.stats(q.top, idle)
    })
    .await
}

async fn history(State(s): State<AppState>, ConnectInfo(c): Cred) -> Response {
    s.call(c, Role::Viewer, StatusCode::OK, |core, _| core.history())
        .await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    #[serde(default)]
    since: u64,
}

async fn audit(
    State(s): State<AppState>,
    ConnectInfo(c): Cred,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = try_or_respond!(query(q));
    s.call(c, Role::Viewer, StatusCode::OK, move |core, _| {
        core.audit(q.since)
    })
    .await
}

async fn rollback(State(s): State<AppState>, ConnectInfo(c): Cred, b: Bytes) -> Response {
    let req: RollbackRequest = try_or_respond!(body(&b));
    s.call(c, Role::Admin, StatusCode::OK, move |core, peer| {
        core.rollback(peer, req)
    })
    .await
}

async fn import(
    State(s): State<AppState>,
    ConnectInfo(c): Cred,
    q: Result<Query<ImportParams>, axum::extract::rejection::QueryRejection>,
    b: Bytes,
) -> Response {
    let q = try_or_respond!(query(q));
    s.call(c, Role::Admin, StatusCode::OK, move |core, peer| {
        core.import(peer, q, &b)
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

async fn export(
    State(s): State<AppState>,
    ConnectInfo(c): Cred,
    q: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = try_or_respond!(query(q));
    let format = q.format;
    let core = s.clone();
    let resp = core
        .call(c, Role::Viewer, StatusCode::OK, move |core, _| {
            core.entries(q.draft, q.list, None, None, None)
        })
        .await;
    match format {
        ExportFormat::Json => resp,
        ExportFormat::Plain if resp.status().is_success() => {
            let bytes = match axum::body::to_bytes(resp.into_body(), usize::MAX).await {
                Ok(b) => b,
                Err(e) => return error(ApiError::failure(e.to_string())),
            };
            let entries: Vec<crate::entry::Entry> = try_or_respond!(body(&bytes));
            let mut text = String::with_capacity(entries.len() * 16);
            for e in entries {
                text.push_str(&e.target.to_string());
                text.push('\n');
            }
            (
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                Body::from(text),
            )
                .into_response()
        }
        ExportFormat::Plain => resp,
    }
}

async fn attach(State(s): State<AppState>, ConnectInfo(c): Cred, b: Bytes) -> Response {
    let req: AttachRequest = try_or_respond!(body(&b));
    s.call(c, Role::Admin, StatusCode::OK, move |core, peer| {
        core.attach(peer, req)
    })
    .await
}

async fn detach(State(s): State<AppState>, ConnectInfo(c): Cred, b: Bytes) -> Response {
    let req: DetachRequest = try_or_respond!(body(&b));
    s.call(c, Role::Admin, StatusCode::OK, move |core, peer| {
        core.detach(peer, req)
    })
    .await
}

async fn verify(State(s): State<AppState>, ConnectInfo(c): Cred) -> Response {
    s.call(c, Role::Admin, StatusCode::OK, |core, peer| {
        core.verify(&peer.user)
    })
    .await
}

async fn backup(State(s): State<AppState>, ConnectInfo(c): Cred, b: Bytes) -> Response {
    let req: BackupRequest = try_or_respond!(body(&b));
    s.call(c, Role::Admin, StatusCode::OK, move |core, _| {
        core.backup(&req.path)
    })
    .await
}

async fn not_found() -> Response {
    error(ApiError::new(
        Class::NotFound,
        "no such route: docs/api.md lists them, all under /v1",
    ))
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
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}
