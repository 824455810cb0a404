//! What the console's tests share: a temporary folder, and a fake denylistd
//! on a Unix socket that answers canned JSON, acts like the daemon on a
//! viewer's change (403) and records what it was asked.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    body::Body,
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    http::{Request, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::{
    app::{App, Auth, Config, router},
    sessions::Session,
    users::{Role, Users, Verifier},
};
use crate::{
    model::{
        AttachMode, AuditEvent, AutoPolicy, Entry, FeedInfo, FeedStatus, Format, List, Listing,
        Revision, Target, TopSource,
    },
    wire::{
        AutoStatus, Capacity, Counts, DeployPhases, DeployResponse, Diff, EntryPage, Hits,
        Interface, ListCounts, PageEntry, RollbackResponse, SeqResponse, StageResponse, Staged,
        Status, StatusCounters,
    },
};

/// A folder removed at the end of the test.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let random: u64 = rand::random();
        let path = std::env::temp_dir().join(format!("denylist-web-test-{random:x}"));
        std::fs::create_dir(&path).expect("a temporary folder");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a leftover folder in /tmp harms nothing.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One request the fake daemon saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    /// With its query.
    pub uri: String,
    pub on_behalf: Option<String>,
    pub role: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct Inner {
    answers: HashMap<(Method, String), (StatusCode, Value)>,
    seen: Vec<Seen>,
}

pub struct FakeDaemon {
    dir: TempDir,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn to_json<T: Serialize>(v: T) -> Value {
    serde_json::to_value(v).expect("wire types serialize")
}

/// An entry listed by `source` with `reason`.
pub fn entry(target: &str, list: List, source: &str, reason: &str) -> Entry {
    Entry::new(
        Target::parse(target).expect("a valid target"),
        list,
        Listing {
            source: source.to_string(),
            reason: Some(reason.to_string()),
            ttl: Some(3600),
            expires_at: Some(1_760_000_000_000),
            monitor: false,
            added_by: "root".to_string(),
            added_at: 1_750_000_000_000,
        },
    )
}

pub fn status(pending: u64) -> Status {
    Status {
        revision: 3,
        pending_changes: pending,
        interfaces: vec![Interface {
            name: "eth0".into(),
            xdp_mode: None,
            configured: AttachMode::Auto,
            attached: false,
        }],
        entries: ListCounts { deny: 2, allow: 1 },
        capacity: Capacity {
            total: 1_000_000,
            used: 3,
        },
        counters: StatusCounters::default(),
        drift: 0,
        degraded: true,
        degraded_reasons: vec!["eth0 is missing".into()],
        draft_seq: 7,
        warnings: vec![],
    }
}

fn stage() -> StageResponse {
    StageResponse {
        seq: Some(10),
        counts: Counts {
            added: 1,
            removed: 0,
            changed: 0,
        },
        targets: vec![],
        warnings: vec![],
        refused: vec![],
        deployed: None,
    }
}

fn deployed() -> DeployResponse {
    DeployResponse {
        seq: Some(11),
        revision: Some(4),
        counts: Counts::default(),
        dry_run: false,
        nothing_pending: false,
        duration_ms: 3,
        phases_ms: DeployPhases::default(),
    }
}

pub fn feed(name: &str) -> FeedInfo {
    FeedInfo {
        name: name.into(),
        url: "https://feeds.example/list.txt".into(),
        format: Format::Plain,
        every: 3600,
        stale_after: 10800,
        mode: "enforce".into(),
        entries: 12,
        guarded_skipped: 1,
        state: FeedStatus::Held,
        last_attempt: Some(1_750_000_000_000),
        last_success: Some(1_750_000_000_000),
        last_error: None,
        held: None,
        max_entries: 100_000,
        max_change: 50,
        max_width: None,
        allow_empty: false,
        review: false,
        failures_total: 0,
        added_by: "root".into(),
        added_at: 1_740_000_000_000,
    }
}

impl FakeDaemon {
    /// A fake with an answer for every route the pages read, and a
    /// success for each change an admin makes.
    pub async fn start() -> FakeDaemon {
        let dir = TempDir::new();
        let socket = dir.path().join("denylist.sock");
        let listener = tokio::net::UnixListener::bind(&socket).expect("a socket in /tmp");
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new().fallback(answer).with_state(inner.clone());
        let task = tokio::spawn(async move {
            // The test's end aborts the task; an error before is the test's.
            axum::serve(listener, app)
                .await
                .expect("the fake daemon serves");
        });
        let fake = FakeDaemon { dir, inner, task };
        let now = 1_750_000_000_000;
        let added = entry("192.0.2.0/24", List::Deny, "manual", "scanner");
        fake.set(Method::GET, "/v1/status", 200, to_json(status(1)));
        fake.set(
            Method::GET,
            "/v1/diff",
            200,
            to_json(Diff {
                added: vec![Staged {
                    item: added,
                    staged_by: "alice (web)".into(),
                    staged_at: now,
                }],
                removed: vec![],
                changed: vec![],
                draft_seq: 7,
            }),
        );
        let rows = [
            entry(
                "198.51.100.7",
                List::Deny,
                "manual",
                "<img src=x onerror=alert(1)>",
            ),
            entry("203.0.113.0/24", List::Deny, "feed:spamhaus", "drop list"),
        ];
        fake.set(
            Method::GET,
            "/v1/entries/page",
            200,
            to_json(EntryPage {
                entries: rows
                    .into_iter()
                    .map(|entry| PageEntry {
                        entry,
                        pending: None,
                        hits: Some(Hits {
                            packets: 42,
                            bytes: 2520,
                            last_hit: Some(now),
                        }),
                    })
                    .collect(),
                next: Some("opaque+cursor".into()),
            }),
        );
        fake.set(
            Method::GET,
            "/v1/history",
            200,
            to_json(vec![Revision {
                revision: 3,
                deployed_at: now,
                deployed_by: "alice (web)".into(),
                message: Some("block the scanner".into()),
                added: 1,
                removed: 0,
                changed: 0,
            }]),
        );
        fake.set(
            Method::GET,
            "/v1/audit",
            200,
            to_json(vec![AuditEvent {
                seq: 9,
                at: now,
                user: "alice (web)".into(),
                kind: "deploy".into(),
                target: None,
                detail: Some(json!({"revision": 3})),
            }]),
        );
        fake.set(
            Method::GET,
            "/v1/feeds",
            200,
            to_json(vec![feed("spamhaus")]),
        );
        fake.set(
            Method::GET,
            "/v1/auto",
            200,
            to_json(AutoStatus {
                policy: AutoPolicy::default(),
                active: 0,
                recent: Vec::new(),
                events_dropped: 0,
            }),
        );
        fake.set(
            Method::GET,
            "/v1/top",
            200,
            to_json(Vec::<TopSource>::new()),
        );
        for path in ["/v1/entries", "/v1/entries/remove", "/v1/entries/mode"] {
            fake.set(Method::POST, path, 200, to_json(stage()));
        }
        fake.set(Method::POST, "/v1/deploy", 200, to_json(deployed()));
        fake.set(
            Method::POST,
            "/v1/rollback",
            200,
            to_json(RollbackResponse {
                seq: 13,
                expired: vec![],
                deployed: None,
            }),
        );
        fake.set(
            Method::POST,
            "/v1/discard",
            200,
            to_json(SeqResponse {
                seq: 12,
                detail: None,
            }),
        );
        fake
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("denylist.sock")
    }

    /// Answers `path` (without its query) with `status` and `body`.
    pub fn set(&self, method: Method, path: &str, status: u16, body: Value) {
        let status = StatusCode::from_u16(status).expect("a valid status");
        self.inner
            .lock()
            .unwrap()
            .answers
            .insert((method, path.to_string()), (status, body));
    }

    /// Answers `path` with the daemon's error body.
    pub fn fail(&self, method: Method, path: &str, status: u16, class: &str, message: &str) {
        self.set(
            method,
            path,
            status,
            json!({"error": {"class": class, "message": message}}),
        );
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.inner.lock().unwrap().seen.clone()
    }

    /// The changes asked for, in order.
    pub fn posts(&self) -> Vec<Seen> {
        self.requests()
            .into_iter()
            .filter(|s| s.method == Method::POST)
            .collect()
    }
}

async fn answer(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap_or_default().to_string())
    };
    let seen = Seen {
        method: method.clone(),
        uri: uri.to_string(),
        on_behalf: header("denylist-on-behalf-of"),
        role: header("denylist-role"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let viewer = seen.role.as_deref() != Some("admin");
    let mut inner = inner.lock().unwrap();
    inner.seen.push(seen);
    if method == Method::POST && viewer {
        let body = json!({"error": {"class": "forbidden", "message": "viewers change nothing"}});
        return (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
    }
    match inner.answers.get(&(method, uri.path().to_string())) {
        Some((status, body)) => (*status, axum::Json(body.clone())).into_response(),
        None => {
            let body = json!({"error": {"class": "not_found", "message": "no such route"}});
            (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
        }
    }
}

/// A signed-in browser on a console that talks to a fake daemon: it sends
/// the session cookie, and with each post the CSRF token and a same-origin
/// `Origin`, as the console's own pages do.
pub struct Browser {
    pub app: App,
    pub session: Session,
    _dir: TempDir,
}

pub const HOST: &str = "console.test:8787";

/// A console on `socket` with local accounts: `alice` (admin, password
/// `alice-pw`) and `victor` (viewer, `victor-pw`).
pub fn console(socket: &Path, dir: &Path, auth: Auth) -> App {
    let users = dir.join("users.toml");
    let mut u = Users::default();
    u.add("alice", Role::Admin, Some("alice-pw"))
        .expect("a valid account");
    u.add("victor", Role::Viewer, Some("victor-pw"))
        .expect("a valid account");
    u.save(&users).expect("the accounts file is written");
    App::new(
        Config {
            socket: socket.to_path_buf(),
            users,
            auth,
            session_max: std::time::Duration::from_secs(12 * 3600),
            session_idle: std::time::Duration::from_secs(3600),
            tls: false,
        },
        Verifier::new().expect("a dummy hash"),
    )
}

/// Sends one request to the console's router.
pub async fn send(app: &App, req: Request<Body>) -> (StatusCode, HeaderMap, String) {
    let resp = router(app.clone())
        .oneshot(req)
        .await
        .expect("the router answers");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("a body");
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

impl Browser {
    async fn signed_in(fake: &FakeDaemon, user: &str, role: Role) -> Browser {
        let dir = TempDir::new();
        let app = console(&fake.socket(), dir.path(), Auth::Local);
        let users = Users::load(&app.config.users).expect("the test accounts");
        let account = users.get(user).expect("an account of the test console");
        assert_eq!(account.role, role, "{user}'s role in the test accounts");
        let session = app
            .sessions
            .create(user, account, std::time::Instant::now());
        Browser {
            app,
            session,
            _dir: dir,
        }
    }

    pub async fn admin(fake: &FakeDaemon) -> Browser {
        Browser::signed_in(fake, "alice", Role::Admin).await
    }

    pub async fn viewer(fake: &FakeDaemon) -> Browser {
        Browser::signed_in(fake, "victor", Role::Viewer).await
    }

    fn cookie(&self) -> String {
        format!("denylist_session={}", self.session.id)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, String) {
        let req = Request::get(path)
            .header(header::HOST, HOST)
            .header(header::COOKIE, self.cookie())
            .body(Body::empty())
            .expect("a request");
        let (status, _, body) = send(&self.app, req).await;
        (status, body)
    }

    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> (StatusCode, String) {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("csrf", &self.session.csrf);
        for (k, v) in fields {
            form.append_pair(k, v);
        }
        let req = Request::post(path)
            .header(header::HOST, HOST)
            .header(header::ORIGIN, format!("http://{HOST}"))
            .header(header::COOKIE, self.cookie())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form.finish()))
            .expect("a request");
        let (status, _, body) = send(&self.app, req).await;
        (status, body)
    }
}
