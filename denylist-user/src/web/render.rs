//! What every page shares: the layout (navigation from the page list, the
//! signed-in user, the pending-changes banner) and how a template or a
//! daemon's refusal becomes a response.

use askama::Template;
use axum::{
    http::StatusCode,
    response::{Html, IntoResponse, Response},
};

use super::{
    app::App,
    auth::Ctx,
    pages::{PAGES, PageDef},
};
use crate::wire::{ApiError, Class, Status};

/// The frame of every signed-in page.
pub struct Layout {
    pub user: String,
    pub role: &'static str,
    pub admin: bool,
    /// The session's CSRF token, for the forms and htmx's header.
    pub csrf: String,
    /// The path of the page, to mark it in the navigation.
    pub current: &'static str,
    /// Pending changes; the banner shows while there are any.
    pub pending: u64,
    pub revision: u64,
    pub degraded: bool,
    pub notice: Option<String>,
    /// The revision just deployed: the page follows it to the fleet's
    /// nodes (nothing shows on a single host).
    pub rollout: Option<u64>,
    /// Why the daemon could not be asked for its status.
    pub daemon_error: Option<String>,
}

impl Layout {
    /// Asks the daemon for the banner's counts; a page still renders when
    /// that fails, saying why.
    pub async fn new(app: &App, ctx: &Ctx, current: &'static str) -> Layout {
        let status = app.daemon.get::<Status>(&ctx.actor(), "/v1/status").await;
        Layout::with_status(app, ctx, current, status.as_ref())
    }

    /// The layout from a status the page asked for itself (the Status
    /// page), so the daemon is asked once.
    pub fn with_status(
        app: &App,
        ctx: &Ctx,
        current: &'static str,
        status: Result<&Status, &ApiError>,
    ) -> Layout {
        let (pending, revision, degraded, daemon_error) = match status {
            Ok(s) => (s.pending_changes, s.revision, s.degraded, None),
            Err(e) => (0, 0, false, Some(e.message.clone())),
        };
        Layout {
            user: ctx.session.user.clone(),
            role: ctx.session.role().as_str(),
            admin: ctx.admin(),
            csrf: ctx.session.csrf.clone(),
            current,
            pending,
            revision,
            degraded,
            notice: app.sessions.take_flash(&ctx.session.id),
            rollout: app.sessions.take_deployed(&ctx.session.id),
            daemon_error,
        }
    }

    pub fn nav(&self) -> &'static [PageDef] {
        PAGES
    }

    /// "1 pending change", "3 pending changes".
    pub fn pending_text(&self) -> String {
        let s = if self.pending == 1 { "" } else { "s" };
        format!("{} pending change{s}", self.pending)
    }
}

/// A template as an HTML response.
pub fn render(status: StatusCode, t: impl Template) -> Response {
    match t.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!("rendering a page: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page failed to render",
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    layout: Layout,
    title: &'static str,
    message: String,
}

/// The page for a refusal or a failure: its class says the status.
pub fn failure(mut layout: Layout, e: &ApiError) -> Response {
    // The page says it already: once is enough.
    if e.class == Class::Unavailable {
        layout.daemon_error = None;
    }
    let title = match e.class {
        Class::Forbidden => "Not allowed",
        Class::NotFound => "Not found",
        Class::Invalid | Class::TooLarge => "Invalid request",
        Class::Guarded => "Refused by a guardrail",
        Class::Conflict => "Conflict",
        Class::RateLimited => "Too many requests",
        Class::Unavailable => "denylistd is unavailable",
        Class::Failure => "Failure",
    };
    let status =
        StatusCode::from_u16(e.class.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    render(
        status,
        ErrorPage {
            layout,
            title,
            message: e.message.clone(),
        },
    )
}
