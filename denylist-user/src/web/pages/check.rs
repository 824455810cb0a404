//! The Check page: "why is this IP blocked?" An address gives its verdict
//! now, the entry that decided it, every source listing that entry, and
//! the entry's hits.

use std::net::IpAddr;

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
    model::Verdict,
    web::{
        app::App,
        auth::Ctx,
        render::{Layout, failure, render},
        view,
    },
    wire::{CheckResponse, EntryPage},
};

pub const PAGE: PageDef = PageDef {
    path: "/check",
    title: "Check",
    routes,
};

fn routes() -> Router<App> {
    Router::new().route(PAGE.path, get(show))
}

#[derive(Deserialize)]
struct CheckQuery {
    address: Option<String>,
}

/// What the page says of one address.
struct Answer {
    ip: String,
    verdict: &'static str,
    entry: Option<String>,
    allowed_by: Option<String>,
    sources: Vec<String>,
    hits: Option<String>,
}

#[derive(Template)]
#[template(path = "check.html")]
struct CheckPage {
    layout: Layout,
    address: String,
    error: Option<String>,
    answer: Option<Answer>,
}

fn verdict(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass: no entry covers it",
        Verdict::Drop => "drop",
        Verdict::Monitor => "monitor: counted as would-drop, passed",
        Verdict::Allowed => "allowed",
    }
}

async fn show(
    State(app): State<App>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<CheckQuery>,
) -> Response {
    let layout = Layout::new(&app, &ctx, PAGE.path).await;
    let address = q.address.unwrap_or_default().trim().to_string();
    let mut page = CheckPage {
        layout,
        address: address.clone(),
        error: None,
        answer: None,
    };
    if address.is_empty() {
        return render(StatusCode::OK, page);
    }
    let Ok(ip) = address.parse::<IpAddr>() else {
        page.error = Some(format!("{address:?} is not an IP address."));
        return render(StatusCode::BAD_REQUEST, page);
    };
    let actor = ctx.actor();
    let checked = match app
        .daemon
        .get::<CheckResponse>(&actor, &format!("/v1/check/{ip}"))
        .await
    {
        Ok(c) => c,
        Err(e) => return failure(page.layout, &e),
    };
    // The hits are the deployed deciding entry's: the page of deployed
    // entries containing the address holds it.
    let decided = checked.entry.or(checked.allowed_by);
    let list = if checked.entry.is_some() {
        "deny"
    } else {
        "allow"
    };
    let hits = match decided {
        Some(target) => app
            .daemon
            .get::<EntryPage>(
                &actor,
                &format!("/v1/entries/page?list={list}&draft=false&contains={ip}&limit=500"),
            )
            .await
            .ok()
            .and_then(|p| p.entries.into_iter().find(|e| e.entry.target == target))
            .and_then(|e| e.hits)
            .map(|h| {
                format!(
                    "{} packets, {}; last {}",
                    h.packets,
                    view::bytes(h.bytes),
                    view::opt_time(h.last_hit)
                )
            }),
        None => None,
    };
    page.answer = Some(Answer {
        ip: checked.ip.to_string(),
        verdict: verdict(checked.verdict),
        entry: checked.entry.map(|t| t.to_string()),
        allowed_by: checked.allowed_by.map(|t| t.to_string()),
        sources: checked.sources,
        hits,
    });
    render(StatusCode::OK, page)
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};
    use serde_json::json;

    use crate::web::testing::{Browser, FakeDaemon};

    #[tokio::test]
    async fn check_gives_the_verdict_the_entry_its_sources_and_hits() {
        let fake = FakeDaemon::start().await;
        fake.set(
            Method::GET,
            "/v1/check/198.51.100.7",
            200,
            json!({"ip": "198.51.100.7", "verdict": "drop", "entry": "198.51.100.7/32",
                "allowed_by": null, "sources": ["manual", "feed:spamhaus"]}),
        );
        let b = Browser::viewer(&fake).await;
        let (status, html) = b.get("/check?address=198.51.100.7").await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(html.contains("drop"), "{html}");
        assert!(html.contains("feed:spamhaus"), "{html}");
        assert!(html.contains("42 packets"), "{html}");
        let (status, html) = b.get("/check?address=nope").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(html.contains("not an IP address"), "{html}");
    }
}
