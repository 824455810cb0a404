//! The Feeds page: each subscription's state, last success, errors,
//! guarded lines skipped and held changes, with Approve for a held list.

use askama::Template;
use axum::{
    Extension, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};

use super::PageDef;
use crate::{
    model::{FeedInfo, FeedStatus},
    web::{
        app::App,
        auth::Ctx,
        render::{Layout, failure, render},
        view,
    },
};

pub const PAGE: PageDef = PageDef {
    path: "/feeds",
    title: "Feeds",
    routes,
};

fn routes() -> Router<App> {
    Router::new()
        .route(PAGE.path, get(show))
        .route("/feeds/{name}/approve", post(approve))
}

struct Feed {
    name: String,
    url: String,
    state: &'static str,
    mode: String,
    entries: u64,
    every: String,
    last_success: String,
    last_error: String,
    guarded_skipped: u64,
    held: Option<String>,
}

fn state(s: FeedStatus) -> &'static str {
    match s {
        FeedStatus::Pending => "pending",
        FeedStatus::Ok => "ok",
        FeedStatus::Review => "review",
        FeedStatus::Held => "held",
        FeedStatus::Failing => "failing",
        FeedStatus::Stale => "stale",
    }
}

fn feed(f: &FeedInfo) -> Feed {
    Feed {
        name: f.name.clone(),
        url: f.url.clone(),
        state: state(f.state),
        mode: f.mode.clone(),
        entries: f.entries,
        every: view::duration(f.every),
        last_success: view::opt_time(f.last_success),
        last_error: f.last_error.clone().unwrap_or_default(),
        guarded_skipped: f.guarded_skipped,
        held: f
            .held
            .as_ref()
            .map(|h| format!("+{} −{} held: {}", h.added, h.removed, h.reason)),
    }
}

#[derive(Template)]
#[template(path = "feeds.html")]
struct FeedsPage {
    layout: Layout,
    feeds: Vec<Feed>,
}

async fn show(State(app): State<App>, Extension(ctx): Extension<Ctx>) -> Response {
    let layout = Layout::new(&app, &ctx, PAGE.path).await;
    match app
        .daemon
        .get::<Vec<FeedInfo>>(&ctx.actor(), "/v1/feeds")
        .await
    {
        Ok(feeds) => render(
            StatusCode::OK,
            FeedsPage {
                layout,
                feeds: feeds.iter().map(feed).collect(),
            },
        ),
        Err(e) => failure(layout, &e),
    }
}

async fn approve(
    State(app): State<App>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
) -> Response {
    let path: String = form_urlencoded::byte_serialize(name.as_bytes()).collect();
    match app
        .daemon
        .post::<_, FeedInfo>(
            &ctx.actor(),
            &format!("/v1/feeds/{path}/approve"),
            &serde_json::json!({}),
        )
        .await
    {
        Ok(f) => {
            app.sessions.flash(
                &ctx.session.id,
                format!("Approved feed {}: its held list is deployed.", f.name),
            );
            Redirect::to(PAGE.path).into_response()
        }
        Err(e) => failure(Layout::new(&app, &ctx, PAGE.path).await, &e),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};

    use crate::{
        model::Held,
        web::testing::{Browser, FakeDaemon, feed},
    };

    #[tokio::test]
    async fn feeds_show_their_state_and_a_held_list_can_be_approved() {
        let fake = FakeDaemon::start().await;
        let mut held = feed("spamhaus");
        held.held = Some(Held {
            added: 5000,
            removed: 2,
            reason: "the list grew by 80%".into(),
        });
        fake.set(
            Method::GET,
            "/v1/feeds",
            200,
            serde_json::to_value(vec![held.clone()]).unwrap(),
        );
        fake.set(
            Method::POST,
            "/v1/feeds/spamhaus/approve",
            200,
            serde_json::to_value(held).unwrap(),
        );
        let b = Browser::admin(&fake).await;
        let (status, html) = b.get("/feeds").await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(
            html.contains("the list grew by 80%") && html.contains("held"),
            "{html}"
        );
        assert!(html.contains(r#"aria-label="Approve spamhaus""#), "{html}");
        let (status, _) = b.post("/feeds/spamhaus/approve", &[]).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(
            fake.posts().pop().unwrap().uri,
            "/v1/feeds/spamhaus/approve"
        );
    }
}
