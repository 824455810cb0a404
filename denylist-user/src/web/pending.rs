//! The pending changes behind the banner on every page: Review (the diff),
//! Save and Deploy (the dialog with its message, then the deploy), and
//! Discard. The dialog remembers which draft was reviewed (`draft_seq`),
//! and the daemon refuses the deploy (409) if the draft changed since, so
//! nothing ships that was not on the screen.

use askama::Template;
use axum::{
    Extension, Router,
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};

use super::{
    app::App,
    auth::Ctx,
    form::Fields,
    pages::PAGES,
    render::{Layout, failure, render},
    view,
};
use crate::{
    model::Entry,
    wire::{Class, DeployRequest, DeployResponse, Diff, SeqResponse, Staged},
};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/review", get(review))
        .route("/deploy", get(dialog).post(deploy))
        .route("/discard", post(discard))
}

/// One staged change as a line of the diff.
struct Item {
    target: String,
    list: &'static str,
    detail: String,
    staged_by: String,
    staged_at: String,
}

fn detail(e: &Entry) -> String {
    let mut parts = vec![e.sources.join(", ")];
    if let Some(r) = &e.reason {
        parts.push(r.clone());
    }
    if let Some(ttl) = e.ttl {
        parts.push(format!("TTL {}", view::duration(ttl)));
    }
    if e.monitor {
        parts.push("monitor".into());
    }
    parts.join(" · ")
}

fn item(s: &Staged<Entry>) -> Item {
    Item {
        target: s.item.target.to_string(),
        list: s.item.list.as_str(),
        detail: detail(&s.item),
        staged_by: s.staged_by.clone(),
        staged_at: view::time(s.staged_at),
    }
}

/// The diff as the Review page and the deploy dialog show it.
struct Changes {
    added: Vec<Item>,
    removed: Vec<Item>,
    changed: Vec<Item>,
    draft_seq: u64,
}

impl Changes {
    fn new(d: &Diff) -> Changes {
        Changes {
            added: d.added.iter().map(item).collect(),
            removed: d.removed.iter().map(item).collect(),
            changed: d
                .changed
                .iter()
                .map(|c| Item {
                    target: c.item.after.target.to_string(),
                    list: c.item.after.list.as_str(),
                    detail: format!("{} → {}", detail(&c.item.before), detail(&c.item.after)),
                    staged_by: c.staged_by.clone(),
                    staged_at: view::time(c.staged_at),
                })
                .collect(),
            draft_seq: d.draft_seq,
        }
    }

    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

#[derive(Template)]
#[template(path = "review.html")]
struct ReviewPage {
    layout: Layout,
    changes: Changes,
    /// The deploy dialog: the diff with the message field and Deploy.
    dialog: bool,
    message: String,
    error: Option<String>,
}

async fn page(
    app: &App,
    ctx: &Ctx,
    dialog: bool,
    message: String,
    error: Option<String>,
) -> Response {
    let layout = Layout::new(app, ctx, "/review").await;
    match app.daemon.get::<Diff>(&ctx.actor(), "/v1/diff").await {
        Ok(d) => {
            let status = if error.is_some() {
                StatusCode::CONFLICT
            } else {
                StatusCode::OK
            };
            render(
                status,
                ReviewPage {
                    layout,
                    changes: Changes::new(&d),
                    dialog,
                    message,
                    error,
                },
            )
        }
        Err(e) => failure(layout, &e),
    }
}

async fn review(State(app): State<App>, Extension(ctx): Extension<Ctx>) -> Response {
    page(&app, &ctx, false, String::new(), None).await
}

async fn dialog(State(app): State<App>, Extension(ctx): Extension<Ctx>) -> Response {
    page(&app, &ctx, true, String::new(), None).await
}

async fn deploy(State(app): State<App>, Extension(ctx): Extension<Ctx>, body: Bytes) -> Response {
    let f = Fields::parse(&body);
    let message = f.text("message");
    // Without the reviewed seq (a hand-made post) the daemon deploys what
    // is pending, as the CLI's plain `deploy` does.
    let expect_seq = f.get("expect_seq").and_then(|s| s.parse().ok());
    let req = DeployRequest {
        message: message.clone(),
        expect_seq,
        ..DeployRequest::default()
    };
    match app
        .daemon
        .post::<_, DeployResponse>(&ctx.actor(), "/v1/deploy", &req)
        .await
    {
        Ok(r) => {
            let msg = match r.revision {
                Some(rev) => {
                    app.sessions.deployed(&ctx.session.id, rev);
                    format!(
                        "Deployed revision {rev}: {} added, {} removed, {} changed.",
                        r.counts.added, r.counts.removed, r.counts.changed
                    )
                }
                None => "Nothing was pending: nothing deployed.".to_string(),
            };
            app.sessions.flash(&ctx.session.id, msg);
            Redirect::to(PAGES[0].path).into_response()
        }
        Err(e) if e.class == Class::Conflict => {
            let why = format!(
                "The draft changed since you reviewed it, so nothing was deployed: review it again. ({})",
                e.message
            );
            page(&app, &ctx, true, message.unwrap_or_default(), Some(why)).await
        }
        Err(e) => failure(Layout::new(&app, &ctx, "/review").await, &e),
    }
}

async fn discard(State(app): State<App>, Extension(ctx): Extension<Ctx>) -> Response {
    match app
        .daemon
        .post::<_, SeqResponse>(&ctx.actor(), "/v1/discard", &serde_json::json!({}))
        .await
    {
        Ok(r) => {
            let n = r
                .detail
                .as_ref()
                .and_then(|d| d.get("discarded"))
                .and_then(|n| n.as_u64())
                .unwrap_or(0);
            app.sessions
                .flash(&ctx.session.id, format!("Discarded {n} pending change(s)."));
            Redirect::to(PAGES[0].path).into_response()
        }
        Err(e) => failure(Layout::new(&app, &ctx, "/review").await, &e),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};

    use crate::web::testing::{Browser, FakeDaemon};

    #[tokio::test]
    async fn review_shows_the_diff_and_deploy_sends_the_reviewed_seq() {
        let fake = FakeDaemon::start().await;
        let b = Browser::admin(&fake).await;
        let (status, html) = b.get("/review").await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(
            html.contains("192.0.2.0/24") && html.contains("alice (web)"),
            "{html}"
        );

        let (status, html) = b.get("/deploy").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            html.contains(r#"<label for="message">Message</label>"#),
            "{html}"
        );
        assert!(html.contains(r#"name="expect_seq" value="7""#), "{html}");
        assert!(html.contains(">Deploy<"), "{html}");

        let (status, _) = b
            .post(
                "/deploy",
                &[("message", "block the scanner"), ("expect_seq", "7")],
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let sent = fake.posts().pop().unwrap();
        assert_eq!(sent.uri, "/v1/deploy");
        assert_eq!(sent.body["expect_seq"], 7);
        assert_eq!(sent.body["message"], "block the scanner");
        // The next page says what was deployed.
        let (_, html) = b.get("/denylist").await;
        assert!(html.contains("Deployed revision 4"), "{html}");
        // And follows it to the fleet's nodes, once.
        assert!(
            html.contains(r#"hx-get="/nodes/rollout?revision=4""#),
            "{html}"
        );
        let (_, html) = b.get("/denylist").await;
        assert!(!html.contains("/nodes/rollout"), "{html}");
    }

    #[tokio::test]
    async fn a_draft_changed_since_the_review_is_not_deployed() {
        let fake = FakeDaemon::start().await;
        fake.fail(
            Method::POST,
            "/v1/deploy",
            409,
            "conflict",
            "the draft changed since you reviewed it",
        );
        let b = Browser::admin(&fake).await;
        let (status, html) = b.post("/deploy", &[("expect_seq", "6")]).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(html.contains("review it again"), "{html}");
        // The dialog shows the draft as it is now, with its new seq.
        assert!(html.contains(r#"name="expect_seq" value="7""#), "{html}");
    }

    #[tokio::test]
    async fn discard_drops_the_draft() {
        let fake = FakeDaemon::start().await;
        let b = Browser::admin(&fake).await;
        let (status, _) = b.post("/discard", &[]).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(fake.posts().pop().unwrap().uri, "/v1/discard");
    }
}
