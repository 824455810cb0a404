//! The Audit page: the log, newest first, filtered by actor, kind and
//! time, a page at a time. Changes made here show as `NAME (web)`.

use askama::Template;
use axum::{
    Extension, Router,
    extract::{Query, State},
    http::StatusCode,
    response::Response,
    routing::get,
};
use serde::Deserialize;

use super::PageDef;
use crate::{
    model::AuditEvent,
    web::{
        app::App,
        auth::Ctx,
        render::{Layout, failure, render},
        view,
    },
};

pub const PAGE: PageDef = PageDef {
    path: "/audit",
    title: "Audit",
    routes,
};

fn routes() -> Router<App> {
    Router::new().route(PAGE.path, get(show))
}

const PER_PAGE: u64 = 50;

#[derive(Debug, Default, Deserialize)]
struct AuditFilters {
    actor: Option<String>,
    kind: Option<String>,
    from: Option<String>,
    to: Option<String>,
    before: Option<u64>,
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// A time as typed: RFC 3339, or a date and time without a zone (what a
/// browser's datetime field sends), taken as UTC.
fn time(field: &str, v: &str) -> Result<String, String> {
    let candidates = [v.to_string(), format!("{v}:00Z"), format!("{v}Z")];
    candidates
        .iter()
        .find(|c| humantime::parse_rfc3339_weak(c).is_ok())
        .map(|c| {
            if c.ends_with('Z') || c.contains('+') {
                c.clone()
            } else {
                format!("{c}Z")
            }
        })
        .ok_or_else(|| format!("{field}: {v:?} is not a time; use e.g. 2026-12-05T16:00:00Z."))
}

impl AuditFilters {
    fn query(&self) -> Result<String, String> {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("limit", &PER_PAGE.to_string());
        if let Some(b) = self.before {
            q.append_pair("before", &b.to_string());
        }
        if let Some(a) = given(&self.actor) {
            q.append_pair("actor", a);
        }
        if let Some(k) = given(&self.kind) {
            q.append_pair("kind", k);
        }
        if let Some(f) = given(&self.from) {
            q.append_pair("from", &time("From", f)?);
        }
        if let Some(t) = given(&self.to) {
            q.append_pair("to", &time("To", t)?);
        }
        Ok(q.finish())
    }

    /// The link to the page of older events, with the same filters.
    fn older(&self, before: u64) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("actor", &self.actor),
            ("kind", &self.kind),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if let Some(v) = given(v) {
                q.append_pair(k, v);
            }
        }
        q.append_pair("before", &before.to_string());
        format!("/audit?{}", q.finish())
    }
}

struct Event {
    seq: u64,
    at: String,
    user: String,
    kind: String,
    target: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    layout: Layout,
    actor: String,
    kind: String,
    from: String,
    to: String,
    error: Option<String>,
    events: Vec<Event>,
    older: Option<String>,
}

async fn show(
    State(app): State<App>,
    Extension(ctx): Extension<Ctx>,
    Query(f): Query<AuditFilters>,
) -> Response {
    let layout = Layout::new(&app, &ctx, PAGE.path).await;
    let mut page = AuditPage {
        layout,
        actor: f.actor.clone().unwrap_or_default(),
        kind: f.kind.clone().unwrap_or_default(),
        from: f.from.clone().unwrap_or_default(),
        to: f.to.clone().unwrap_or_default(),
        error: None,
        events: Vec::new(),
        older: None,
    };
    let q = match f.query() {
        Ok(q) => q,
        Err(e) => {
            page.error = Some(e);
            return render(StatusCode::BAD_REQUEST, page);
        }
    };
    match app
        .daemon
        .get::<Vec<AuditEvent>>(&ctx.actor(), &format!("/v1/audit?{q}"))
        .await
    {
        Ok(events) => {
            page.older = events
                .first()
                .filter(|_| events.len() as u64 == PER_PAGE)
                .map(|e| f.older(e.seq));
            page.events = events
                .iter()
                .rev()
                .map(|e| Event {
                    seq: e.seq,
                    at: view::time(e.at),
                    user: e.user.clone(),
                    kind: e.kind.clone(),
                    target: e.target.clone().unwrap_or_default(),
                    detail: e.detail.as_ref().map(|d| d.to_string()).unwrap_or_default(),
                })
                .collect();
            render(StatusCode::OK, page)
        }
        Err(e) => failure(page.layout, &e),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use crate::web::testing::{Browser, FakeDaemon};

    #[tokio::test]
    async fn audit_filters_reach_the_daemon_and_events_show() {
        let fake = FakeDaemon::start().await;
        let b = Browser::viewer(&fake).await;
        let (status, html) = b
            .get("/audit?actor=alice+%28web%29&kind=deploy&from=2026-12-05T10%3A00")
            .await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(
            html.contains("alice (web)") && html.contains("deploy"),
            "{html}"
        );
        let asked = fake
            .requests()
            .into_iter()
            .rfind(|s| s.uri.starts_with("/v1/audit"))
            .unwrap();
        for part in [
            "actor=alice+%28web%29",
            "kind=deploy",
            "from=2026-12-05T10%3A00%3A00Z",
            "limit=50",
        ] {
            assert!(asked.uri.contains(part), "{part} not in {}", asked.uri);
        }
        let (status, html) = b.get("/audit?to=yesterday").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(html.contains("is not a time"), "{html}");
    }
}
