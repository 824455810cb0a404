//! Who is asking, and whether a change really comes from them: sign-in
//! and sign-out, the session cookie, proxy sign-in, and the CSRF check
//! every state-changing request passes.

use std::time::Instant;

use askama::Template;
use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use http_body_util::BodyExt as _;

use super::{
    app::{App, Auth},
    client::Actor,
    csrf,
    form::Fields,
    proxy::{Transport, proxy_user},
    render::render,
    sessions::Session,
    throttle,
    users::Users,
};

/// The session cookie's name.
pub const COOKIE: &str = "denylist_session";
/// The largest form the console takes: a bulk add of 10,000 IPv6 prefixes
/// with a reason fits well within it.
pub const FORM_LIMIT: usize = 2 << 20;

/// The signed-in user of a request, put there by [`authenticate`].
#[derive(Debug, Clone)]
pub struct Ctx {
    pub session: Session,
}

impl Ctx {
    pub fn actor(&self) -> Actor {
        Actor {
            name: self.session.user.clone(),
            role: self.session.role(),
        }
    }

    pub fn admin(&self) -> bool {
        self.session.role() == super::users::Role::Admin
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

/// `Set-Cookie` for a session id; an empty id clears the cookie. No
/// `Max-Age`: the browser forgets it at exit, and the server's limits
/// decide anyway.
fn set_cookie(app: &App, id: &str) -> HeaderValue {
    let secure = if app.config.tls { "; Secure" } else { "" };
    let clear = if id.is_empty() { "; Max-Age=0" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{secure}{clear}"
    ))
    .expect("a session id is hex")
}

fn plain(status: StatusCode, message: impl ToString) -> Response {
    (status, message.to_string()).into_response()
}

/// Puts the signed-in user into the request, or sends the browser to sign
/// in. Behind a proxy, the proxy's word (with its proof) is the sign-in,
/// and a session is made for it so the CSRF check has a token.
pub async fn authenticate(State(app): State<App>, mut req: Request, next: Next) -> Response {
    let now = Instant::now();
    let existing = session_cookie(req.headers()).and_then(|id| app.sessions.get(&id, now));
    let proxy = matches!(app.config.auth, Auth::Proxy { .. });
    // The accounts file, read once for the request: a session goes on only
    // while it still grants what it did, and behind a proxy it names the
    // account the proxy signs in. Without either, nothing needs it.
    let users = if existing.is_some() || proxy {
        match Users::load(&app.config.users) {
            Ok(users) => users,
            Err(e) => {
                tracing::error!("{e}");
                return plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "cannot read the accounts",
                );
            }
        }
    } else {
        Users::default()
    };
    let existing = existing.and_then(|s| still_granted(&app, &users, s));
    match &app.config.auth {
        Auth::Local => match existing {
            Some(session) => {
                req.extensions_mut().insert(Ctx { session });
                next.run(req).await
            }
            None => {
                let mut resp = Redirect::to("/login").into_response();
                resp.headers_mut()
                    .insert(header::SET_COOKIE, set_cookie(&app, ""));
                resp
            }
        },
        Auth::Proxy { header, proof } => {
            let transport = req
                .extensions()
                .get::<Transport>()
                .copied()
                .unwrap_or(Transport::Tcp);
            let user = match proxy_user(req.headers(), transport, proof, header) {
                Ok(user) => user,
                Err(e) => return plain(StatusCode::FORBIDDEN, e),
            };
            if let Some(session) = existing.filter(|s| s.user == user) {
                req.extensions_mut().insert(Ctx { session });
                return next.run(req).await;
            }
            let Some(account) = users.get(&user) else {
                return plain(
                    StatusCode::FORBIDDEN,
                    format!("{user} has no account on this console"),
                );
            };
            let session = app.sessions.create(&user, account, now);
            let cookie = set_cookie(&app, &session.id);
            req.extensions_mut().insert(Ctx { session });
            let mut resp = next.run(req).await;
            resp.headers_mut().append(header::SET_COOKIE, cookie);
            resp
        }
    }
}

/// The session, if the accounts file (read on every request: it is small,
/// and an admin who removes an account, or changes its role or password,
/// expects that to take effect at once) still has its account as it was at
/// sign-in; otherwise the session ends.
fn still_granted(app: &App, users: &Users, session: Session) -> Option<Session> {
    if users.get(&session.user) == Some(&session.account) {
        return Some(session);
    }
    app.sessions.remove(&session.id);
    None
}

/// Refuses a state-changing request that does not come from the console's
/// own pages: the browser must not call it cross-site, and it must carry
/// the session's token in the `csrf` field or the `X-CSRF-Token` header.
/// The form is read here, so no handler can forget the check; the handler
/// gets the same bytes.
pub async fn csrf(req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    if let Err(e) = csrf::same_origin(req.headers()) {
        return plain(StatusCode::FORBIDDEN, e);
    }
    let Some(ctx) = req.extensions().get::<Ctx>().cloned() else {
        return plain(StatusCode::FORBIDDEN, "not signed in");
    };
    let (parts, body) = req.into_parts();
    let bytes = match http_body_util::Limited::new(body, FORM_LIMIT)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => return plain(StatusCode::PAYLOAD_TOO_LARGE, "the form is too large"),
    };
    let sent = parts
        .headers
        .get(csrf::HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| Fields::parse(&bytes).get(csrf::FIELD).map(str::to_string));
    if let Err(e) = csrf::token_matches(&ctx.session.csrf, sent.as_deref()) {
        return plain(StatusCode::FORBIDDEN, e);
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// `/`: the first page.
pub async fn home() -> Redirect {
    Redirect::to(super::pages::PAGES[0].path)
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    proxy: bool,
    error: Option<String>,
    username: String,
}

pub async fn login_page(State(app): State<App>) -> Response {
    render(
        StatusCode::OK,
        LoginPage {
            proxy: matches!(app.config.auth, Auth::Proxy { .. }),
            error: None,
            username: String::new(),
        },
    )
}

/// The one answer to a failed sign-in, whatever failed: the name or the
/// password.
const FAILED: &str = "Wrong user name or password.";

/// Sign-in: throttled per user name, the same answer (and about the same
/// time) for an unknown name and a wrong password.
pub async fn login(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if matches!(app.config.auth, Auth::Proxy { .. }) {
        return plain(StatusCode::NOT_FOUND, "sign in through the proxy");
    }
    // No session yet, so no token: the browser's word on the origin, and
    // SameSite on the cookie it gets, keep other sites from signing a
    // browser in.
    if let Err(e) = csrf::same_origin(&headers) {
        return plain(StatusCode::FORBIDDEN, e);
    }
    let form = Fields::parse(&body);
    let username = form.get("username").unwrap_or_default().trim().to_string();
    let password = form.get("password").unwrap_or_default().to_string();
    let page = |status, error: &str| {
        render(
            status,
            LoginPage {
                proxy: false,
                error: Some(error.to_string()),
                username: username.clone(),
            },
        )
    };
    let now = Instant::now();
    if app.throttle.blocked(&username, now) {
        return page(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "Too many failed sign-ins for this name: wait up to {} minutes.",
                throttle::WINDOW.as_secs() / 60
            ),
        );
    }
    let users = match Users::load(&app.config.users) {
        Ok(users) => users,
        Err(e) => {
            tracing::error!("{e}");
            return page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The console cannot read its accounts: see its log.",
            );
        }
    };
    let account = users.get(&username).cloned();
    let checked = account.clone();
    let checker = app.clone();
    // Hashing takes tens of milliseconds of CPU: off the async threads.
    let role =
        tokio::task::spawn_blocking(move || checker.verifier.verify(checked.as_ref(), &password))
            .await
            .unwrap_or(None);
    // A role comes only from an account's own hash, so both are there.
    let (Some(_), Some(account)) = (role, account) else {
        app.throttle.fail(&username, now);
        return page(StatusCode::UNAUTHORIZED, FAILED);
    };
    app.throttle.succeed(&username);
    let session = app.sessions.create(&username, &account, now);
    let mut resp = Redirect::to("/").into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, set_cookie(&app, &session.id));
    resp
}

/// Sign-out ends the session on the server, not only in the browser.
pub async fn logout(
    State(app): State<App>,
    axum::Extension(ctx): axum::Extension<Ctx>,
) -> Response {
    app.sessions.remove(&ctx.session.id);
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, set_cookie(&app, ""));
    resp
}
