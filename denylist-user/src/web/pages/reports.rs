//! The Reports page: the policy that turns applications' reports into
//! `auto:reports` listings, and the latest of those listings, each with
//! "Unblock and allow".

use askama::Template;
use axum::{
    Extension, Router,
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::Response,
    routing::{get, post},
};

use super::{
    PageDef,
    entries::{self, Listings, Row},
};
use crate::{
    model::{AUTO_REPORTS, AutoPolicy},
    web::{
        app::App,
        auth::Ctx,
        form::Fields,
        render::{Layout, failure, render},
        view,
    },
};

pub const PAGE: PageDef = PageDef {
    path: "/reports",
    title: "Reports",
    routes,
};

fn routes() -> Router<App> {
    Router::new()
        .route(PAGE.path, get(show))
        .route("/reports/unblock", post(unblock))
}

#[derive(Template)]
#[template(path = "reports.html")]
struct ReportsPage {
    layout: Layout,
    policy: Vec<(&'static str, String)>,
    rows: Vec<Row>,
    listings: Listings,
}

fn policy(p: &AutoPolicy) -> Vec<(&'static str, String)> {
    vec![
        (
            "Threshold",
            match p.reports {
                Some(n) => format!("report weight {n} within {}", view::duration(p.within)),
                None => "off: reports are recorded, nothing is listed".to_string(),
            },
        ),
        ("First listing", view::duration(p.ttl)),
        (
            "Each re-offence within 30 days",
            format!("TTL × {}", p.escalate),
        ),
        ("Longest TTL", view::duration(p.max_ttl)),
    ]
}

async fn show(State(app): State<App>, Extension(ctx): Extension<Ctx>) -> Response {
    let layout = Layout::new(&app, &ctx, PAGE.path).await;
    let actor = ctx.actor();
    let auto = match app.daemon.get::<AutoPolicy>(&actor, "/v1/auto").await {
        Ok(p) => p,
        Err(e) => return failure(layout, &e),
    };
    let rows = match entries::latest_from(&app, &ctx, AUTO_REPORTS).await {
        Ok(r) => r,
        Err(e) => return failure(layout, &e),
    };
    render(
        StatusCode::OK,
        ReportsPage {
            layout,
            policy: policy(&auto),
            rows,
            listings: Listings {
                source: AUTO_REPORTS,
                page: PAGE.path,
                empty: "No address is listed from reports.",
            },
        },
    )
}

/// Unblock and allow: the `auto:reports` listing goes, an allow entry
/// comes, both staged for review.
async fn unblock(State(app): State<App>, Extension(ctx): Extension<Ctx>, body: Bytes) -> Response {
    entries::allow_instead(&app, &ctx, &Fields::parse(&body), PAGE.path).await
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};

    use crate::{
        model::List,
        web::testing::{Browser, FakeDaemon, entry},
        wire::{EntryPage, PageEntry},
    };

    #[tokio::test]
    async fn reports_show_the_policy_and_unblock_and_allow_stages_both() {
        let fake = FakeDaemon::start().await;
        let listed = entry("192.0.2.99", List::Deny, "auto:reports", "ssh brute force");
        fake.set(
            Method::GET,
            "/v1/entries/page",
            200,
            serde_json::to_value(EntryPage {
                entries: vec![PageEntry {
                    entry: listed,
                    pending: None,
                    hits: None,
                }],
                next: None,
            })
            .unwrap(),
        );
        let b = Browser::admin(&fake).await;
        let (status, html) = b.get("/reports").await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(html.contains("off: reports are recorded"), "{html}");
        assert!(html.contains("ssh brute force"), "{html}");
        assert!(
            html.contains(r#"aria-label="Unblock and allow 192.0.2.99""#),
            "{html}"
        );
        let asked = fake
            .requests()
            .into_iter()
            .rfind(|s| s.uri.starts_with("/v1/entries/page"))
            .unwrap();
        assert!(asked.uri.contains("source=auto%3Areports"), "{}", asked.uri);

        let (status, _) = b
            .post(
                "/reports/unblock",
                &[
                    ("target", "192.0.2.99"),
                    ("source", "auto:reports"),
                    ("back", "/reports"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let posts = fake.posts();
        assert_eq!(posts[posts.len() - 2].body["entries"][0]["list"], "allow");
        assert_eq!(posts[posts.len() - 1].body["source"], "auto:reports");
    }
}
