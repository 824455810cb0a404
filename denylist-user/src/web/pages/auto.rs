//! The Auto-blocking page: the rate detector's policy and mode, its
//! circuit breaker, its recent decisions, and the live `auto:rate`
//! listings, each with "Unblock and allow".

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
    model::AUTO_RATE,
    web::{
        app::App,
        auth::Ctx,
        form::Fields,
        render::{Layout, failure, render},
        view,
    },
    wire::AutoStatus,
};

pub const PAGE: PageDef = PageDef {
    path: "/auto",
    title: "Auto-blocking",
    routes,
};

fn routes() -> Router<App> {
    Router::new()
        .route(PAGE.path, get(show))
        .route("/auto/unblock", post(unblock))
}

struct Decision {
    at: String,
    source: String,
    pps: u64,
    bps: u64,
    action: &'static str,
    why: String,
}

#[derive(Template)]
#[template(path = "auto.html")]
struct AutoPage {
    layout: Layout,
    policy: Vec<(&'static str, String)>,
    tripped: bool,
    recent: Vec<Decision>,
    rows: Vec<Row>,
    listings: Listings,
}

fn policy(s: &AutoStatus) -> Vec<(&'static str, String)> {
    let p = &s.policy;
    let protect: Vec<String> = p.protect.iter().map(ToString::to_string).collect();
    vec![
        ("Mode", p.mode.as_str().to_string()),
        (
            "Threshold",
            match p.bps {
                Some(b) => format!("{} packets/s or {b} bits/s from one source", p.pps),
                None => format!("{} packets/s from one source", p.pps),
            },
        ),
        ("First listing", view::duration(p.ttl)),
        (
            "Each re-offence within 30 days",
            format!("TTL × {}", p.escalate),
        ),
        ("Longest TTL", view::duration(p.max_ttl)),
        (
            "Circuit breaker",
            format!("more than {} listings a minute", p.max_per_minute),
        ),
        (
            "Protected",
            if protect.is_empty() {
                "the guardrails' ranges, documentation ranges, gateways and nameservers".to_string()
            } else {
                protect.join(", ")
            },
        ),
        ("Live rate listings", s.active.to_string()),
        ("Detector events dropped", s.events_dropped.to_string()),
    ]
}

async fn show(State(app): State<App>, Extension(ctx): Extension<Ctx>) -> Response {
    let layout = Layout::new(&app, &ctx, PAGE.path).await;
    let actor = ctx.actor();
    let status = match app.daemon.get::<AutoStatus>(&actor, "/v1/auto").await {
        Ok(s) => s,
        Err(e) => return failure(layout, &e),
    };
    let rows = match entries::latest_from(&app, &ctx, AUTO_RATE).await {
        Ok(r) => r,
        Err(e) => return failure(layout, &e),
    };
    let recent = status
        .recent
        .iter()
        .map(|d| Decision {
            at: view::time(d.at),
            source: d.source.to_string(),
            pps: d.pps,
            bps: d.bps,
            action: d.action.label(),
            why: d.why.clone().unwrap_or_default(),
        })
        .collect();
    render(
        StatusCode::OK,
        AutoPage {
            layout,
            policy: policy(&status),
            tripped: status.policy.tripped,
            recent,
            rows,
            listings: Listings {
                source: AUTO_RATE,
                page: PAGE.path,
                empty: "No address is listed by the rate detector.",
            },
        },
    )
}

/// Unblock and allow: the `auto:rate` listing goes, an allow entry comes,
/// both staged for review.
async fn unblock(State(app): State<App>, Extension(ctx): Extension<Ctx>, body: Bytes) -> Response {
    entries::allow_instead(&app, &ctx, &Fields::parse(&body), PAGE.path).await
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};

    use crate::{
        model::{AutoPolicy, List, RateAction, RateDecision, RateMode, Target},
        web::testing::{Browser, FakeDaemon, entry},
        wire::{AutoStatus, EntryPage, PageEntry},
    };

    #[tokio::test]
    async fn auto_shows_the_breaker_the_decisions_and_unblocks() {
        let fake = FakeDaemon::start().await;
        let status = AutoStatus {
            policy: AutoPolicy {
                mode: RateMode::Monitor,
                tripped: true,
                ..AutoPolicy::default()
            },
            active: 1,
            recent: vec![RateDecision {
                source: Target::parse("198.18.0.10").unwrap(),
                pps: 25_000,
                bps: 12_000_000,
                at: 1_796_000_000_000,
                action: RateAction::Suppressed,
                why: Some("the circuit breaker tripped".into()),
            }],
            events_dropped: 3,
        };
        fake.set(
            Method::GET,
            "/v1/auto",
            200,
            serde_json::to_value(status).unwrap(),
        );
        let listed = entry(
            "198.18.0.9",
            List::Deny,
            "auto:rate",
            "rate 25000 pps over 10000 pps",
        );
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
        let (status, html) = b.get("/auto").await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(html.contains("tripped"), "{html}");
        assert!(html.contains("suppressed"), "{html}");
        assert!(html.contains("rate 25000 pps over 10000 pps"), "{html}");
        assert!(
            html.contains(r#"aria-label="Unblock and allow 198.18.0.9""#),
            "{html}"
        );
        let (status, _) = b
            .post(
                "/auto/unblock",
                &[
                    ("target", "198.18.0.9"),
                    ("source", "auto:rate"),
                    ("back", "/auto"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let posts = fake.posts();
        assert_eq!(posts[posts.len() - 2].body["entries"][0]["list"], "allow");
        assert_eq!(posts[posts.len() - 1].body["source"], "auto:rate");
    }
}
