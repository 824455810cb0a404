//! The control API: JSON over HTTP on a Unix socket (docs/api.md), so
//! `curl --unix-socket` works. Every request is authorized from the peer's
//! SO_PEERCRED credentials; errors carry one HTTP status per class.

use std::{
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{DefaultBodyLimit, Path, State, connect_info::Connected},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    serve::IncomingStream,
};
use serde::{Deserialize, Serialize};
use tokio::net::UnixListener;
use utoipa_axum::{router::OpenApiRouter, router::UtoipaMethodRouterExt as _, routes};

use super::{
    auth::{self, Groups, Peer, Role},
    caller::{self, Caller},
    decode::{QueryResult, body, deploy_body, query},
    feed_routes,
    feeds::FeedRunner,
    fleet_routes,
    openapi::{self, Changing, Deploying, Plain, Querying, RollingBack, Staging},
    page_routes,
    ratelimit::RateLimit,
    report_routes,
    stream::{Listing, stream_entries},
};
use crate::{
    daemon::{Core, HostProbe, Snapshots},
    model::{AuditEvent, Entry, ExportFormat, List, Revision, parse_duration},
    wire::{
        AddRequest, ApiError, AttachRequest, AuditQuery, BODY_LIMIT, CheckResponse, Class,
        DeployResponse, DetachRequest, Diff, IMPORT_LIMIT, ImportParams, ImportResponse,
        ModeRequest, ON_BEHALF_HEADER, PageQuery, ROLE_HEADER, RemoveRequest, RollbackRequest,
        RollbackResponse, STALE_HEADER, SeqResponse, StageResponse, StatItem, Status,
        VerifyResponse, WebRole,
    },
};

/// The peer's credentials, read once per connection.
#[derive(Debug, Clone, Copy)]
pub struct PeerCred {
    pub(super) uid: Option<u32>,
    pub(super) pid: Option<i32>,
}

impl PeerCred {
    /// No credentials: a peer that is refused everything.
    pub(super) const UNKNOWN: PeerCred = PeerCred {
        uid: None,
        pid: None,
    };
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
    groups: Groups,
    /// The highest role a web user gets (`--web-max-role`).
    web_max_role: WebRole,
    pub(super) snapshots: Arc<dyn Snapshots>,
    pub(super) host: HostProbe,
    pub(super) feeds: FeedRunner,
    /// Reports allowed per peer, so that one application cannot flood the
    /// store or the audit log.
    pub(super) reports: RateLimit,
    /// Set while this fleet node answers reads from its copy alone.
    stale: Arc<AtomicBool>,
}

impl AppState {
    pub fn new(core: Arc<Mutex<Core>>) -> Self {
        let (groups, web_max_role, snapshots, host, stale) = {
            let c = core.lock().expect("core lock");
            let config = c.config();
            let groups = Groups {
                admin: config.admin_group.clone(),
                viewer: config.viewer_group.clone(),
                reporter: config.reporter_group.clone(),
                web: config.web_group.clone(),
            };
            (
                groups,
                config.web_max_role,
                c.snapshots(),
                c.host_probe(),
                c.stale_flag(),
            )
        };
        Self {
            feeds: FeedRunner::new(core.clone()),
            core,
            groups,
            web_max_role,
            reports: RateLimit::default(),
            snapshots,
            host,
            stale,
        }
    }

    /// The peer, or the web user it acts for, if it may do what `need`
    /// asks; otherwise the 403 to send (or the 400, for a web peer's
    /// malformed headers).
    pub(super) fn authorize(&self, caller: &Caller, need: Role) -> Result<Peer, ApiError> {
        let Some(uid) = caller.cred.uid else {
            return Err(ApiError::new(
                Class::Forbidden,
                "cannot read the peer's credentials",
            ));
        };
        let mut peer = auth::authorize(uid, caller.cred.pid, &self.groups, caller.claims_behalf());
        if caller.claims_behalf() {
            // Checked before the headers themselves: a stranger learns
            // nothing from a malformed one.
            if !peer.web {
                return Err(ApiError::new(
                    Class::Forbidden,
                    format!(
                        "permission denied: {} may not act on behalf of web users; only members \
                         of group {} may send {ON_BEHALF_HEADER} and {ROLE_HEADER}",
                        peer.user, self.groups.web
                    ),
                ));
            }
            if let Some((user, role)) = caller.behalf()? {
                peer = caller::on_behalf(peer, &user, role, self.web_max_role);
            }
        }
        // Reporting is for reporters and admins: a viewer reads, nothing
        // more, unless it is a reporter too.
        let allowed = match need {
            Role::Reporter => peer.role == Role::Admin || peer.reporter,
            _ => peer.role >= need,
        };
        if allowed {
            return Ok(peer);
        }
        let (group, what) = match need {
            Role::Admin => (&self.groups.admin, "change the denylist"),
            Role::Reporter => (&self.groups.reporter, "report addresses"),
            _ => (&self.groups.viewer, "read the denylist"),
        };
        if caller.claims_behalf() {
            return Err(ApiError::new(
                Class::Forbidden,
                format!(
                    "permission denied: {} may not {what}; give the web user a higher role \
                     (the daemon allows at most {})",
                    peer.user, self.web_max_role
                ),
            ));
        }
        Err(ApiError::new(
            Class::Forbidden,
            format!(
                "permission denied: {} may not {what}; add yourself to group {group}",
                peer.user
            ),
        ))
    }

    /// Authorizes, then runs `f` on the blocking pool with the core locked.
    pub(super) async fn call<T: Serialize + Send + 'static>(
        &self,
        caller: Caller,
        need: Role,
        ok: StatusCode,
        f: impl FnOnce(&mut Core, &Peer) -> Result<T, ApiError> + Send + 'static,
    ) -> Response {
        self.call_prepared(caller, need, ok, |_| Ok(()), |core, peer, ()| f(core, peer))
            .await
    }

    /// Like [`AppState::call`], but runs `prepare` first, on the same
    /// thread without the core: what reads the host for the guardrails
    /// must not hold up every other request.
    pub(super) async fn call_prepared<P, T: Serialize + Send + 'static>(
        &self,
        caller: Caller,
        need: Role,
        ok: StatusCode,
        prepare: impl FnOnce(&HostProbe) -> Result<P, ApiError> + Send + 'static,
        f: impl FnOnce(&mut Core, &Peer, P) -> Result<T, ApiError> + Send + 'static,
    ) -> Response {
        let peer = match self.authorize(&caller, need) {
            Ok(p) => p,
            Err(e) => return error(e),
        };
        let core = self.core.clone();
        let host = self.host.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let prepared = prepare(&host)?;
            let mut core = core.lock().unwrap_or_else(|p| p.into_inner());
            let result = f(&mut core, &peer, prepared);
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

/// Every error the API answers with JSON.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ErrorBody<'a> {
    error: &'a ApiError,
}

pub(super) fn error(e: ApiError) -> Response {
    let status =
        StatusCode::from_u16(e.class.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(ErrorBody { error: &e })).into_response()
}

pub(super) type Cred = Caller;
pub(super) type St = State<AppState>;

/// The daemon's state: revision, interfaces, counts, counters, health.
#[utoipa::path(get, path = "/v1/status", tag = "viewer",
    responses((status = 200, body = Status), Plain))]
async fn status(State(s): St, c: Cred) -> Response {
    s.call(
        c,
        Role::Viewer,
        StatusCode::OK,
        |core, _| Ok(core.status()?),
    )
    .await
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct EntriesQuery {
    /// The draft (deployed entries with the pending changes applied).
    #[serde(default)]
    draft: bool,
    /// One list; both when absent.
    #[param(inline)]
    list: Option<List>,
    /// Entries whose source is this, or `import:` followed by this.
    source: Option<String>,
    /// Entries whose target contains this address.
    #[serde(rename = "match")]
    #[param(value_type = Option<String>)]
    matching: Option<IpAddr>,
    /// At most this many, after sorting.
    limit: Option<usize>,
}

/// The deployed entries, or the draft, in address order; unexpired only.
#[utoipa::path(get, path = "/v1/entries", tag = "viewer", params(EntriesQuery),
    responses((status = 200, body = Vec<Entry>, description = "streamed in chunks from a \
        snapshot; a failure after the first chunk breaks the connection"), Querying))]
async fn entries(State(s): St, c: Cred, q: QueryResult<EntriesQuery>) -> Response {
    if let Err(e) = s.authorize(&c, Role::Viewer) {
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

/// Stages new entries, or changes existing ones; `deploy` ships them.
/// With `dry_run`, stages nothing and lists what the guardrails refuse.
#[utoipa::path(post, path = "/v1/entries", tag = "admin", request_body = AddRequest,
    responses((status = 201, body = StageResponse),
        (status = 200, body = StageResponse, description = "a dry run: nothing staged"),
        Staging))]
async fn add(State(s): St, c: Cred, b: Bytes) -> Response {
    // The gate has let only admins this far, so the body may be read now.
    let req = match body::<AddRequest>(&b) {
        Ok(r) => r,
        Err(e) => return error(e),
    };
    let ok = if req.dry_run {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    s.call_prepared(
        c,
        Role::Admin,
        ok,
        move |host| {
            let ctx = host.for_add(&req)?;
            Ok((req, ctx))
        },
        |core, peer, (req, ctx)| Ok(core.add_checked(&peer.user, req, &ctx)?),
    )
    .await
}

/// Stages removals.
#[utoipa::path(post, path = "/v1/entries/remove", tag = "admin", request_body = RemoveRequest,
    responses((status = 200, body = StageResponse), Changing))]
async fn remove(State(s): St, c: Cred, b: Bytes) -> Response {
    s.call(c, Role::Admin, StatusCode::OK, move |core, peer| {
        Ok(core.remove(&peer.user, body::<RemoveRequest>(&b)?)?)
    })
    .await
}

/// Switches deny entries between enforcing and monitor mode.
#[utoipa::path(post, path = "/v1/entries/mode", tag = "admin", request_body = ModeRequest,
    responses((status = 200, body = StageResponse), Changing))]
async fn mode(State(s): St, c: Cred, b: Bytes) -> Response {
    s.call(c, Role::Admin, StatusCode::OK, move |core, peer| {
        Ok(core.mode(&peer.user, body::<ModeRequest>(&b)?)?)
    })
    .await
}

/// The pending changes: the draft against the deployed revision.
#[utoipa::path(get, path = "/v1/diff", tag = "viewer",
    responses((status = 200, body = Diff), Plain))]
async fn diff(State(s): St, c: Cred) -> Response {
    s.call(c, Role::Viewer, StatusCode::OK, |core, _| Ok(core.diff()?))
        .await
}

/// Save and Deploy: the pending changes into the kernel, as a new revision.
#[utoipa::path(post, path = "/v1/deploy", tag = "admin",
    // By reference: `Option<DeployRequest>` would say that `null` is
    // taken, while it is the absent body that is.
    request_body(content = ref("#/components/schemas/DeployRequest"),
        description = "optional: no body at all deploys everything pending"),
    responses((status = 200, body = DeployResponse), Deploying))]
async fn deploy(State(s): St, c: Cred, b: Bytes) -> Response {
    s.call(c, Role::Admin, StatusCode::OK, move |core, peer| {
        let (req, only) = deploy_body(&b)?;
        let message = req.message.as_deref();
        let reviewed = req.expect_seq;
        Ok(core.deploy(&peer.user, only.as_deref(), message, req.dry_run, reviewed)?)
    })
    .await
}

/// Drops every pending change; `detail.discarded` counts them.
#[utoipa::path(post, path = "/v1/discard", tag = "admin",
    responses((status = 200, body = SeqResponse), Plain))]
async fn discard(State(s): St, c: Cred) -> Response {
    s.call(c, Role::Admin, StatusCode::OK, |core, peer| {
        Ok(core.discard(&peer.user)?)
    })
    .await
}

/// The verdict for one source address now, and the entry behind it.
#[utoipa::path(get, path = "/v1/check/{ip}", tag = "viewer",
    params(("ip" = String, Path, description = "an IPv4 or IPv6 address")),
    responses((status = 200, body = CheckResponse), Querying))]
async fn check(
    State(s): St,
    c: Cred,
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

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct StatsQuery {
    /// The first N, after `idle`.
    top: Option<usize>,
    /// A duration: only entries without a hit for at least this long.
    idle: Option<String>,
}

/// Per-entry hits of the deployed, unexpired entries, busiest first.
#[utoipa::path(get, path = "/v1/stats", tag = "viewer", params(StatsQuery),
    responses((status = 200, body = Vec<StatItem>), Querying))]
async fn stats(State(s): St, c: Cred, q: QueryResult<StatsQuery>) -> Response {
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

/// Deployed revisions, oldest first.
#[utoipa::path(get, path = "/v1/history", tag = "viewer", params(PageQuery),
    responses((status = 200, body = Vec<Revision>), Querying))]
async fn history(State(s): St, c: Cred, q: QueryResult<PageQuery>) -> Response {
    s.call(c, Role::Viewer, StatusCode::OK, move |core, _| {
        Ok(core.history(query(q)?.into())?)
    })
    .await
}

/// Audit events, oldest first; the filters narrow the window.
#[utoipa::path(get, path = "/v1/audit", tag = "viewer", params(AuditQuery),
    responses((status = 200, body = Vec<AuditEvent>), Querying))]
async fn audit(State(s): St, c: Cred, q: QueryResult<AuditQuery>) -> Response {
    s.call(c, Role::Viewer, StatusCode::OK, move |core, _| {
        let q = query(q)?;
        Ok(core.audit(q.page(), &q.filter())?)
    })
    .await
}

/// Makes the draft equal to an earlier revision; `deploy` ships it.
#[utoipa::path(post, path = "/v1/rollback", tag = "admin", request_body = RollbackRequest,
    responses((status = 200, body = RollbackResponse), RollingBack))]
async fn rollback(State(s): St, c: Cred, b: Bytes) -> Response {
    s.call(c, Role::Admin, StatusCode::OK, move |core, peer| {
        Ok(core.rollback(&peer.user, body::<RollbackRequest>(&b)?)?)
    })
    .await
}

/// Stages a list file in bulk, all or nothing: the body is the file.
#[utoipa::path(post, path = "/v1/import", tag = "admin", params(ImportParams),
    request_body(content = String, content_type = "text/plain",
        description = "the file, up to 256 MiB, in the format of `format`; \
            the Content-Type header is not checked"),
    responses((status = 200, body = ImportResponse), Staging))]
async fn import(State(s): St, c: Cred, q: QueryResult<ImportParams>, b: Bytes) -> Response {
    s.call_prepared(
        c,
        Role::Admin,
        StatusCode::OK,
        move |host| {
            let p = query(q)?;
            let ctx = host.for_import(&p)?;
            Ok((p, ctx))
        },
        move |core, peer, (p, ctx)| Ok(core.import_checked(&peer.user, p, &b, &ctx)?),
    )
    .await
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    /// The draft instead of the deployed entries.
    #[serde(default)]
    draft: bool,
    /// One list; both for `json`, `deny` for `plain` when absent.
    #[param(inline)]
    list: Option<List>,
    #[serde(default)]
    #[param(inline)]
    format: ExportFormat,
}

/// The entries, for backup or a later `json` import, in address order.
#[utoipa::path(get, path = "/v1/export", tag = "viewer", params(ExportQuery),
    responses((status = 200, description = "streamed as `GET /v1/entries` streams", content(
        (Vec<Entry> = "application/json"),
        (String = "text/plain", example = "198.51.100.7\n203.0.113.0/24\n"),
    )), Querying))]
async fn export(State(s): St, c: Cred, q: QueryResult<ExportQuery>) -> Response {
    if let Err(e) = s.authorize(&c, Role::Viewer) {
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

/// Attaches the XDP program to an interface, and remembers it.
#[utoipa::path(post, path = "/v1/attach", tag = "admin", request_body = AttachRequest,
    responses((status = 200, body = SeqResponse), Changing))]
async fn attach(State(s): St, c: Cred, b: Bytes) -> Response {
    s.call(c, Role::Admin, StatusCode::OK, move |core, peer| {
        Ok(core.attach(&peer.user, body::<AttachRequest>(&b)?)?)
    })
    .await
}

/// Detaches the program from an interface, and forgets it.
#[utoipa::path(post, path = "/v1/detach", tag = "admin", request_body = DetachRequest,
    responses((status = 200, body = SeqResponse), Changing))]
async fn detach(State(s): St, c: Cred, b: Bytes) -> Response {
    s.call(c, Role::Admin, StatusCode::OK, move |core, peer| {
        Ok(core.detach(&peer.user, body::<DetachRequest>(&b)?)?)
    })
    .await
}

/// Reads the kernel's maps back and repairs what differs from the store.
#[utoipa::path(post, path = "/v1/verify", tag = "admin",
    responses((status = 200, body = VerifyResponse), Plain))]
async fn verify(State(s): St, c: Cred) -> Response {
    s.call(c, Role::Admin, StatusCode::OK, |core, peer| {
        Ok(core.verify(&peer.user)?)
    })
    .await
}

/// A consistent copy of the store, streamed as an SQLite database file.
#[utoipa::path(post, path = "/v1/backup", tag = "admin",
    responses((status = 200, description = "an SQLite database file",
        content(("application/vnd.sqlite3"))), Plain))]

async fn backup(State(s): St, c: Cred) -> Response {
    let peer = match s.authorize(&c, Role::Admin) {
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
    c: Cred,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let read = req.method() == axum::http::Method::GET;
    let need = if req.uri().path().starts_with("/v1/reports") {
        Role::Reporter
    } else if read {
        Role::Viewer
    } else {
        Role::Admin
    };
    match s.authorize(&c, need) {
        Ok(_) => {
            let mut reply = next.run(req).await;
            if read && s.stale.load(Ordering::Relaxed) {
                reply
                    .headers_mut()
                    .insert(STALE_HEADER, axum::http::HeaderValue::from_static("true"));
            }
            reply
        }
        Err(e) => error(e),
    }
}

/// Every route of docs/api.md, each with its `#[utoipa::path]`: the router
/// and the OpenAPI document are both made from this one list.
pub(super) fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(status))
        .routes(routes!(entries, add))
        .routes(routes!(remove))
        .routes(routes!(mode))
        .routes(routes!(diff))
        .routes(routes!(deploy))
        .routes(routes!(discard))
        .routes(routes!(check))
        .routes(routes!(stats))
        .routes(routes!(history))
        .routes(routes!(page_routes::revision))
        .routes(routes!(page_routes::entry_page))
        .routes(routes!(audit))
        .routes(routes!(rollback))
        .routes(routes!(import).layer(DefaultBodyLimit::max(IMPORT_LIMIT)))
        .routes(routes!(export))
        .routes(routes!(attach))
        .routes(routes!(detach))
        .routes(routes!(verify))
        .routes(routes!(backup))
        .routes(routes!(feed_routes::feed_list, feed_routes::feed_add))
        .routes(routes!(feed_routes::feed_remove))
        .routes(routes!(feed_routes::feed_refresh))
        .routes(routes!(feed_routes::feed_approve))
        .routes(routes!(report_routes::report_list, report_routes::report))
        .routes(routes!(report_routes::auto_get, report_routes::auto_set))
        .routes(routes!(report_routes::top))
        .routes(routes!(fleet_routes::nodes))
        .routes(routes!(fleet_routes::forget_node))
        .routes(routes!(openapi::spec))
}

/// The API's router. Routes are added in `api` only, never here, so that
/// the document lists each of them.
pub fn router(state: AppState) -> Router {
    let (routes, _) = api().split_for_parts();
    routes
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), gate))
        .fallback(not_found)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}
