//! The Nodes page: in fleet mode (docs/fleet.md), the revision each node's
//! kernel applied, its state and its heartbeat, refreshed every two
//! seconds, so that after Save and Deploy each node's progress to the new
//! revision shows as it happens.

use askama::Template;
use axum::{Extension, Router, extract::State, http::StatusCode, response::Response, routing::get};

use super::PageDef;
use crate::{
    model::{NodeState, NodeStatus},
    web::{
        app::App,
        auth::Ctx,
        render::{Layout, failure, render},
        view::time,
    },
    wire::Class,
};

pub const PAGE: PageDef = PageDef {
    path: "/nodes",
    title: "Nodes",
    routes,
};

fn routes() -> Router<App> {
    Router::new().route(PAGE.path, get(show))
}

struct Row {
    node: String,
    revision: u64,
    state: &'static str,
    /// Not in sync: the row stands out.
    lagging: bool,
    heartbeat: String,
    lag_ms: u64,
    drift: u64,
    capacity: u64,
    error: String,
}

#[derive(Template)]
#[template(path = "nodes.html")]
struct NodesPage {
    layout: Layout,
    /// Why there is nothing to show: this daemon has no fleet.
    single: Option<String>,
    /// The highest revision any node applied.
    head: u64,
    rows: Vec<Row>,
}

async fn show(State(app): State<App>, Extension(ctx): Extension<Ctx>) -> Response {
    let layout = Layout::new(&app, &ctx, PAGE.path).await;
    let nodes = app
        .daemon
        .get::<Vec<NodeStatus>>(&ctx.actor(), "/v1/nodes")
        .await;
    let (single, nodes) = match nodes {
        Ok(n) => (None, n),
        Err(e) if e.class == Class::NotFound => (Some(e.message), Vec::new()),
        Err(e) => return failure(layout, &e),
    };
    let head = nodes.iter().map(|n| n.applied_revision).max().unwrap_or(0);
    let rows = nodes
        .into_iter()
        .map(|n| Row {
            lagging: n.state != NodeState::InSync,
            node: n.node,
            revision: n.applied_revision,
            state: n.state.as_str(),
            heartbeat: time(n.heartbeat_at),
            lag_ms: n.lag_ms,
            drift: n.drift,
            capacity: n.capacity,
            error: n.error.unwrap_or_default(),
        })
        .collect();
    render(
        StatusCode::OK,
        NodesPage {
            layout,
            single,
            head,
            rows,
        },
    )
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};

    use crate::{
        model::{NodeState, NodeStatus},
        web::testing::{Browser, FakeDaemon},
    };

    fn node(name: &str, revision: u64, state: NodeState) -> NodeStatus {
        NodeStatus {
            node: name.into(),
            applied_revision: revision,
            state,
            heartbeat_at: 1_800_000_000_000,
            lag_ms: if state == NodeState::Behind { 1_500 } else { 0 },
            drift: 0,
            error: None,
            capacity: 131_072,
        }
    }

    #[tokio::test]
    async fn nodes_lists_each_node_s_revision_and_state_and_refreshes() {
        let fake = FakeDaemon::start().await;
        let nodes = vec![
            node("edge1", 7, NodeState::InSync),
            node("edge2", 6, NodeState::Behind),
        ];
        fake.set(
            Method::GET,
            "/v1/nodes",
            200,
            serde_json::to_value(nodes).unwrap(),
        );
        let b = Browser::viewer(&fake).await;
        let (status, html) = b.get("/nodes").await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(html.contains(r#"aria-label="Nodes""#), "{html}");
        assert!(html.contains("edge2") && html.contains("behind"), "{html}");
        assert!(html.contains("1500 ms"), "{html}");
        assert!(html.contains("revision 7"), "the head: {html}");
        assert!(html.contains(r#"hx-trigger="every 2s""#), "{html}");
    }

    #[tokio::test]
    async fn nodes_says_when_there_is_no_fleet() {
        let fake = FakeDaemon::start().await;
        fake.set(
            Method::GET,
            "/v1/nodes",
            404,
            serde_json::json!({"error": {"class": "not_found", "message": "this denylistd keeps its own store and has no fleet"}}),
        );
        let b = Browser::viewer(&fake).await;
        let (status, html) = b.get("/nodes").await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(html.contains("has no fleet"), "{html}");
    }
}
