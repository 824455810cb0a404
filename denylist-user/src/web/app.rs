//! The console's shared state and its router: public routes (sign-in,
//! assets), then the pages behind authentication and the CSRF check, all
//! under the security headers.

use std::{path::PathBuf, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::Request,
    http::{HeaderName, HeaderValue, Method, header},
    middleware::{self, Next},
    response::Response,
    routing::{get, post},
};

use super::{
    assets, auth, client::Daemon, pages, pending, proxy::Proof, sessions::Sessions,
    throttle::Throttle, users::Verifier,
};

/// How users sign in.
#[derive(Clone)]
pub enum Auth {
    /// A user name and password from the accounts file.
    Local,
    /// A reverse proxy names the user in `header`, with `proof` that it
    /// is the proxy; the accounts file gives the role.
    Proxy { header: HeaderName, proof: Proof },
}

/// What the console needs to know to serve.
#[derive(Clone)]
pub struct Config {
    /// denylistd's API socket.
    pub socket: PathBuf,
    /// The accounts file.
    pub users: PathBuf,
    pub auth: Auth,
    /// A session ends this long after sign-in, however busy.
    pub session_max: Duration,
    /// A session ends after this long without a request.
    pub session_idle: Duration,
    /// Served over TLS: cookies are `Secure`, and browsers are told to
    /// come back over HTTPS only.
    pub tls: bool,
}

pub struct Shared {
    pub config: Config,
    pub daemon: Daemon,
    pub sessions: Sessions,
    pub throttle: Throttle,
    pub verifier: Verifier,
}

/// The state every handler gets.
#[derive(Clone)]
pub struct App(pub Arc<Shared>);

impl std::ops::Deref for App {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl App {
    pub fn new(config: Config, verifier: Verifier) -> App {
        App(Arc::new(Shared {
            daemon: Daemon::new(&config.socket),
            sessions: Sessions::new(config.session_max, config.session_idle),
            throttle: Throttle::default(),
            verifier,
            config,
        }))
    }
}

/// The whole console.
pub fn router(app: App) -> Router {
    let signed_in = pages::routes()
        .merge(pending::routes())
        .route("/", get(auth::home))
        .route("/logout", post(auth::logout))
        // Layers run outside in: authentication first, then the CSRF
        // check, which needs the session's token.
        .route_layer(middleware::from_fn_with_state(app.clone(), auth::csrf))
        .route_layer(middleware::from_fn_with_state(
            app.clone(),
            auth::authenticate,
        ));
    Router::new()
        .route("/login", get(auth::login_page).post(auth::login))
        .merge(assets::routes())
        .merge(signed_in)
        .layer(middleware::from_fn(push_url))
        .layer(middleware::from_fn_with_state(
            app.clone(),
            security_headers,
        ))
        .with_state(app)
}

/// Tells htmx which URL a page it fetched has, so the address bar shows
/// it: a boosted form's post is followed (303) to a page whose URL the
/// script cannot see, and reloading the post's URL would be a 405.
async fn push_url(req: Request, next: Next) -> Response {
    let url = (req.method() == Method::GET && req.headers().contains_key("hx-request"))
        .then(|| HeaderValue::from_str(&req.uri().to_string()).ok())
        .flatten();
    let mut resp = next.run(req).await;
    if let Some(url) = url {
        resp.headers_mut().entry("hx-push-url").or_insert(url);
    }
    resp
}

/// What a browser must enforce for every answer: scripts, styles and
/// frames from the console only (htmx is served by it, no inline script),
/// no framing (clickjacking), no referrer to other sites, no sniffing, and
/// no caching of pages that carry a CSRF token.
async fn security_headers(
    axum::extract::State(app): axum::extract::State<App>,
    req: Request,
    next: Next,
) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    if app.config.tls {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, http::Request};

    use crate::web::testing::{Browser, FakeDaemon, send};

    #[tokio::test]
    async fn htmx_gets_the_url_of_the_page_it_fetched() {
        let fake = FakeDaemon::start().await;
        let b = Browser::viewer(&fake).await;
        let req = Request::get("/audit?kind=deploy")
            .header("cookie", format!("denylist_session={}", b.session.id))
            .header("hx-request", "true")
            .body(Body::empty())
            .unwrap();
        let (status, headers, body) = send(&b.app, req).await;
        assert_eq!(status, axum::http::StatusCode::OK, "{body}");
        assert_eq!(
            headers.get("hx-push-url").map(|v| v.to_str().unwrap()),
            Some("/audit?kind=deploy"),
            "{headers:?}"
        );
        // A page loaded whole needs no hint.
        let req = Request::get("/audit")
            .header("cookie", format!("denylist_session={}", b.session.id))
            .body(Body::empty())
            .unwrap();
        let (_, headers, _) = send(&b.app, req).await;
        assert!(!headers.contains_key("hx-push-url"));
    }
}
