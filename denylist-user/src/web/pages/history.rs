//! The History page: deployed revisions with who, why and how much, each
//! with its diff; Rollback stages an old revision for review (it deploys
//! nothing by itself).

use askama::Template;
use axum::{
    Extension, Router,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde::Deserialize;

use super::PageDef;
use crate::{
    model::{Entry, Revision},
    web::{
        app::App,
        auth::Ctx,
        render::{Layout, failure, render},
        view,
    },
    wire::{RevisionDiff, RollbackRequest, RollbackResponse},
};

pub const PAGE: PageDef = PageDef {
    path: "/history",
    title: "History",
    routes,
};

fn routes() -> Router<App> {
    Router::new()
        .route(PAGE.path, get(list))
        .route("/history/{rev}", get(one))
        .route("/history/{rev}/rollback", post(rollback))
}

/// Revisions a page shows.
const PER_PAGE: u64 = 50;

#[derive(Deserialize)]
struct HistoryQuery {
    before: Option<u64>,
}

struct Rev {
    revision: u64,
    at: String,
    by: String,
    message: String,
    added: u64,
    removed: u64,
    changed: u64,
}

fn rev(r: &Revision) -> Rev {
    Rev {
        revision: r.revision,
        at: view::time(r.deployed_at),
        by: r.deployed_by.clone(),
        message: r.message.clone().unwrap_or_default(),
        added: r.added,
        removed: r.removed,
        changed: r.changed,
    }
}

#[derive(Template)]
#[template(path = "history.html")]
struct HistoryPage {
    layout: Layout,
    revisions: Vec<Rev>,
    older: Option<u64>,
}

async fn list(
    State(app): State<App>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    let layout = Layout::new(&app, &ctx, PAGE.path).await;
    let mut path = format!("/v1/history?limit={PER_PAGE}");
    if let Some(b) = q.before {
        path.push_str(&format!("&before={b}"));
    }
    match app.daemon.get::<Vec<Revision>>(&ctx.actor(), &path).await {
        Ok(revs) => {
            // The daemon answers oldest first; the page reads newest first.
            let older = revs
                .first()
                .filter(|_| revs.len() as u64 == PER_PAGE)
                .map(|r| r.revision);
            render(
                StatusCode::OK,
                HistoryPage {
                    layout,
                    revisions: revs.iter().rev().map(rev).collect(),
                    older,
                },
            )
        }
        Err(e) => failure(layout, &e),
    }
}

/// An entry of a revision's diff, as a line.
struct Item {
    target: String,
    detail: String,
}

fn item(e: &Entry) -> Item {
    let mut detail = e.sources.join(", ");
    if let Some(r) = &e.reason {
        detail.push_str(&format!(" · {r}"));
    }
    if e.monitor {
        detail.push_str(" · monitor");
    }
    Item {
        target: e.target.to_string(),
        detail,
    }
}

#[derive(Template)]
#[template(path = "revision.html")]
struct RevisionPage {
    layout: Layout,
    rev: Rev,
    added: Vec<Item>,
    removed: Vec<Item>,
    changed: Vec<(Item, Item)>,
    truncated: bool,
}

async fn one(
    State(app): State<App>,
    Extension(ctx): Extension<Ctx>,
    Path(revision): Path<u64>,
) -> Response {
    let layout = Layout::new(&app, &ctx, PAGE.path).await;
    match app
        .daemon
        .get::<RevisionDiff>(&ctx.actor(), &format!("/v1/history/{revision}"))
        .await
    {
        Ok(d) => render(
            StatusCode::OK,
            RevisionPage {
                layout,
                rev: rev(&d.revision),
                added: d.added.iter().map(item).collect(),
                removed: d.removed.iter().map(item).collect(),
                changed: d
                    .changed
                    .iter()
                    .map(|c| (item(&c.before), item(&c.after)))
                    .collect(),
                truncated: d.truncated,
            },
        ),
        Err(e) => failure(layout, &e),
    }
}

async fn rollback(
    State(app): State<App>,
    Extension(ctx): Extension<Ctx>,
    Path(revision): Path<u64>,
) -> Response {
    let req = RollbackRequest {
        revision,
        force: false,
        deploy: false,
        message: None,
    };
    match app
        .daemon
        .post::<_, RollbackResponse>(&ctx.actor(), "/v1/rollback", &req)
        .await
    {
        Ok(r) => {
            let mut msg = format!("Staged revision {revision}: review it, then deploy.");
            if !r.expired.is_empty() {
                msg.push_str(&format!(
                    " {} of its entries have expired since and were left out.",
                    r.expired.len()
                ));
            }
            app.sessions.flash(&ctx.session.id, msg);
            Redirect::to("/review").into_response()
        }
        Err(e) => failure(Layout::new(&app, &ctx, PAGE.path).await, &e),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};
    use serde_json::json;

    use crate::web::testing::{Browser, FakeDaemon, entry};

    #[tokio::test]
    async fn history_lists_revisions_and_a_revision_shows_its_diff() {
        let fake = FakeDaemon::start().await;
        let b = Browser::admin(&fake).await;
        let (status, html) = b.get("/history").await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(
            html.contains("block the scanner") && html.contains("alice (web)"),
            "{html}"
        );
        assert!(html.contains(r#"href="/history/3""#), "{html}");

        fake.set(
            Method::GET,
            "/v1/history/3",
            200,
            json!({"revision": {"revision": 3, "deployed_at": "2025-06-15T15:06:40Z",
                "deployed_by": "alice (web)", "message": null, "added": 1, "removed": 0, "changed": 0},
                "added": [entry("192.0.2.0/24", crate::model::List::Deny, "manual", "scan")],
                "removed": [], "changed": [], "truncated": false}),
        );
        let (status, html) = b.get("/history/3").await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(html.contains("192.0.2.0/24"), "{html}");
        assert!(html.contains(">Rollback<"), "{html}");

        let (status, _) = b.post("/history/3/rollback", &[]).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let sent = fake.posts().pop().unwrap();
        assert_eq!(sent.uri, "/v1/rollback");
        assert_eq!(sent.body["revision"], 3);
        assert_eq!(sent.body["deploy"], false);
    }
}
