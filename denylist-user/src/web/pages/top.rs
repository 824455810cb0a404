//! The Top sources page: the heaviest sources the rate detector sees, with
//! the kernel's verdict for each, and for admins "Block 1h" and "Allow",
//! staged for review like any other change.

use askama::Template;
use axum::{
    Extension, Router,
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};

use super::PageDef;
use crate::{
    model::{List, TopSource, Verdict},
    web::{
        app::App,
        auth::Ctx,
        form::Fields,
        render::{Layout, failure, render},
    },
    wire::{AddRequest, ApiError, Class, StageItem, StageResponse},
};

pub const PAGE: PageDef = PageDef {
    path: "/top",
    title: "Top sources",
    routes,
};

fn routes() -> Router<App> {
    Router::new()
        .route(PAGE.path, get(show))
        .route("/top/block", post(block))
        .route("/top/allow", post(allow))
}

/// Sources the page lists.
const SHOWN: usize = 50;
/// What "Block" stages.
const BLOCK_TTL: &str = "1h";
const REASON: &str = "from top sources";

struct Row {
    source: String,
    pps: u64,
    bps: u64,
    verdict: &'static str,
    listed_by: String,
    /// Offered only for a source that is neither dropped nor allowed.
    actions: bool,
}

#[derive(Template)]
#[template(path = "top.html")]
struct TopPage {
    layout: Layout,
    /// Why there is nothing to show: the detector is off.
    off: Option<String>,
    rows: Vec<Row>,
}

async fn show(State(app): State<App>, Extension(ctx): Extension<Ctx>) -> Response {
    let layout = Layout::new(&app, &ctx, PAGE.path).await;
    let top = app
        .daemon
        .get::<Vec<TopSource>>(&ctx.actor(), &format!("/v1/top?limit={SHOWN}"))
        .await;
    let (off, top) = match top {
        Ok(t) => (None, t),
        Err(e) if e.class == Class::Conflict => (Some(e.message), Vec::new()),
        Err(e) => return failure(layout, &e),
    };
    let rows = top
        .into_iter()
        .map(|s| Row {
            source: s.source.to_string(),
            pps: s.pps,
            bps: s.bps,
            verdict: s.verdict.as_str(),
            listed_by: s.sources.join(", "),
            actions: !matches!(s.verdict, Verdict::Drop | Verdict::Allowed),
        })
        .collect();
    render(StatusCode::OK, TopPage { layout, off, rows })
}

async fn block(State(app): State<App>, Extension(ctx): Extension<Ctx>, body: Bytes) -> Response {
    stage(&app, &ctx, &Fields::parse(&body), List::Deny).await
}

async fn allow(State(app): State<App>, Extension(ctx): Extension<Ctx>, body: Bytes) -> Response {
    stage(&app, &ctx, &Fields::parse(&body), List::Allow).await
}

/// Stages the source on `list`: a deny entry for an hour, or an allow
/// entry for good; the guardrails answer as for any add.
async fn stage(app: &App, ctx: &Ctx, f: &Fields, list: List) -> Response {
    let Some(target) = f.text("target") else {
        let layout = Layout::new(app, ctx, PAGE.path).await;
        return failure(layout, &ApiError::invalid("no source given"));
    };
    let req = AddRequest {
        entries: vec![StageItem {
            target: target.clone(),
            list,
            reason: Some(REASON.to_string()),
            ttl: Some(
                if list == List::Deny {
                    BLOCK_TTL
                } else {
                    "never"
                }
                .to_string(),
            ),
            monitor: None,
        }],
        ..AddRequest::default()
    };
    match app
        .daemon
        .post::<_, StageResponse>(&ctx.actor(), "/v1/entries", &req)
        .await
    {
        Ok(_) => {
            let what = match list {
                List::Deny => format!("{target} blocked for {BLOCK_TTL}"),
                List::Allow => format!("{target} allowed"),
            };
            app.sessions.flash(
                &ctx.session.id,
                format!("Staged: {what}. Deploy to put it into effect."),
            );
            Redirect::to(PAGE.path).into_response()
        }
        Err(e) => failure(Layout::new(app, ctx, PAGE.path).await, &e),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};

    use crate::{
        model::{Target, TopSource, Verdict},
        web::testing::{Browser, FakeDaemon},
    };

    #[tokio::test]
    async fn top_lists_sources_and_block_stages_an_hour() {
        let fake = FakeDaemon::start().await;
        let top = vec![
            TopSource {
                source: Target::parse("198.18.0.10").unwrap(),
                pps: 25_000,
                bps: 12_000_000,
                verdict: Verdict::Pass,
                listed: false,
                sources: vec![],
            },
            TopSource {
                source: Target::parse("198.18.0.11").unwrap(),
                pps: 9_000,
                bps: 4_000_000,
                verdict: Verdict::Drop,
                listed: true,
                sources: vec!["auto:rate".into()],
            },
        ];
        fake.set(
            Method::GET,
            "/v1/top",
            200,
            serde_json::to_value(top).unwrap(),
        );
        let b = Browser::admin(&fake).await;
        let (status, html) = b.get("/top").await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(html.contains("25000"), "{html}");
        assert!(
            html.contains(r#"aria-label="Block 198.18.0.10 for 1h""#),
            "{html}"
        );
        assert!(
            !html.contains(r#"aria-label="Block 198.18.0.11"#),
            "dropped already: {html}"
        );
        assert!(html.contains("auto:rate"), "{html}");
        let (status, _) = b.post("/top/block", &[("target", "198.18.0.10")]).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let posts = fake.posts();
        let staged = &posts[posts.len() - 1].body["entries"][0];
        assert_eq!(staged["list"], "deny");
        assert_eq!(staged["ttl"], "1h");
        assert_eq!(staged["reason"], "from top sources");
        let (status, _) = b.post("/top/allow", &[("target", "198.18.0.10")]).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(
            fake.posts().last().unwrap().body["entries"][0]["list"],
            "allow"
        );
    }

    #[tokio::test]
    async fn top_says_when_the_detector_is_off() {
        let fake = FakeDaemon::start().await;
        fake.set(
            Method::GET,
            "/v1/top",
            409,
            serde_json::json!({"error": {"class": "conflict", "message": "the rate detector is off"}}),
        );
        let b = Browser::admin(&fake).await;
        let (status, html) = b.get("/top").await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(html.contains("the rate detector is off"), "{html}");
    }
}
