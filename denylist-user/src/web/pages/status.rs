//! The Status page: interfaces and their XDP modes, the revision, counts,
//! capacity, drift, and why the daemon is degraded.

use askama::Template;
use axum::{Extension, Router, extract::State, http::StatusCode, response::Response, routing::get};

use super::PageDef;
use crate::{
    model::AttachedMode,
    web::{
        app::App,
        auth::Ctx,
        render::{Layout, failure, render},
        view,
    },
    wire::Status,
};

pub const PAGE: PageDef = PageDef {
    path: "/status",
    title: "Status",
    routes,
};

fn routes() -> Router<App> {
    Router::new().route(PAGE.path, get(show))
}

struct Iface {
    name: String,
    configured: &'static str,
    mode: &'static str,
    attached: bool,
}

#[derive(Template)]
#[template(path = "status.html")]
struct StatusPage {
    layout: Layout,
    status: Status,
    interfaces: Vec<Iface>,
    counters: Vec<(&'static str, String)>,
}

async fn show(State(app): State<App>, Extension(ctx): Extension<Ctx>) -> Response {
    let status = app.daemon.get::<Status>(&ctx.actor(), "/v1/status").await;
    let layout = Layout::with_status(&app, &ctx, PAGE.path, status.as_ref());
    let status = match status {
        Ok(s) => s,
        Err(e) => return failure(layout, &e),
    };
    let interfaces = status
        .interfaces
        .iter()
        .map(|i| Iface {
            name: i.name.clone(),
            configured: i.configured.as_str(),
            mode: match i.xdp_mode {
                Some(AttachedMode::Native) => "native",
                Some(AttachedMode::Skb) => "skb",
                None => "missing",
            },
            attached: i.attached,
        })
        .collect();
    let c = &status.counters;
    let counters = vec![
        (
            "Dropped",
            format!(
                "{} packets, {}",
                c.dropped_packets,
                view::bytes(c.dropped_bytes)
            ),
        ),
        (
            "Passed",
            format!(
                "{} packets, {}",
                c.passed_packets,
                view::bytes(c.passed_bytes)
            ),
        ),
        ("Monitored (would drop)", c.monitored_packets.to_string()),
        ("Allowed", c.allowed_packets.to_string()),
        ("Unparsable", c.unparsable_packets.to_string()),
    ];
    render(
        StatusCode::OK,
        StatusPage {
            layout,
            status,
            interfaces,
            counters,
        },
    )
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};

    use crate::web::testing::{Browser, FakeDaemon, status};

    #[tokio::test]
    async fn status_shows_interfaces_counts_and_why_degraded() {
        let fake = FakeDaemon::start().await;
        let mut s = status(0);
        s.degraded_reasons = vec!["eth0 is not attached: it does not exist".into()];
        fake.set(
            Method::GET,
            "/v1/status",
            200,
            serde_json::to_value(s).unwrap(),
        );
        let b = Browser::viewer(&fake).await;
        let (status, html) = b.get("/status").await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(html.contains("eth0") && html.contains("missing"), "{html}");
        assert!(
            html.contains("eth0 is not attached: it does not exist"),
            "{html}"
        );
        assert!(html.contains("1000000"), "{html}");
        // Nothing pending: no banner.
        assert!(!html.contains("pending change"), "{html}");
    }
}
