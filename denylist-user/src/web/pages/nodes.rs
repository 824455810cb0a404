//! The Nodes page: in fleet mode (docs/fleet.md), the revision each node's
//! kernel applied, its state and its heartbeat, refreshed every two
//! seconds. And the rollout panel that the page after Save and Deploy
//! shows: each node's progress to the new revision, as it happens.

use askama::Template;
use axum::{
    Extension, Router,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;

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
    Router::new()
        .route(PAGE.path, get(show))
        .route("/nodes/rollout", get(rollout))
}

#[derive(Deserialize)]
struct RolloutQuery {
    revision: u64,
}

/// One node on its way to the revision.
struct Step {
    node: String,
    /// "applied", "at revision 6 (behind)", "offline: not waited for".
    text: String,
    /// Live, and not there yet.
    waiting: bool,
}

#[derive(Template)]
#[template(path = "rollout.html")]
struct Rollout {
    revision: u64,
    /// Live nodes that applied it, of all live nodes.
    applied: usize,
    live: usize,
    /// Every live node applied it: the panel stops asking.
    done: bool,
    steps: Vec<Step>,
}

/// The rollout panel: which live nodes applied `revision`, asked again
/// every second until all did. Nothing on a single host, nor when the
/// nodes cannot be read (the page says the daemon's trouble already).
async fn rollout(
    State(app): State<App>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<RolloutQuery>,
) -> Response {
    let Ok(nodes) = app
        .daemon
        .get::<Vec<NodeStatus>>(&ctx.actor(), "/v1/nodes")
        .await
    else {
        return StatusCode::OK.into_response();
    };
    let (mut live, mut applied) = (0, 0);
    let steps: Vec<Step> = nodes
        .into_iter()
        .map(|n| {
            let is_live = n.state.is_live();
            let there = n.has_applied(q.revision);
            live += usize::from(is_live);
            applied += usize::from(is_live && there);
            let text = match (is_live, there) {
                (true, true) => "applied".to_string(),
                (true, false) => format!(
                    "at revision {} ({})",
                    n.applied_revision,
                    n.error.as_deref().unwrap_or(n.state.as_str())
                ),
                (false, _) => format!("{}: not waited for", n.state.as_str()),
            };
            Step {
                node: n.node,
                text,
                waiting: is_live && !there,
            }
        })
        .collect();
    render(
        StatusCode::OK,
        Rollout {
            revision: q.revision,
            applied,
            live,
            done: applied == live,
            steps,
        },
    )
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
    async fn the_rollout_panel_follows_a_revision_until_every_live_node_has_it() {
        let fake = FakeDaemon::start().await;
        let mut gone = node("edge3", 2, NodeState::Offline);
        gone.lag_ms = 0;
        let nodes = vec![
            node("edge1", 7, NodeState::InSync),
            node("edge2", 6, NodeState::Behind),
            gone,
        ];
        // A node whose kernel refused it has not applied it, whatever its
        // row's revision says.
        let mut failed = nodes.clone();
        let mut refused = node("edge4", 7, NodeState::Error);
        refused.error = Some("the kernel refused the update".into());
        failed.push(refused);
        fake.set(
            Method::GET,
            "/v1/nodes",
            200,
            serde_json::to_value(&failed).unwrap(),
        );
        let b = Browser::viewer(&fake).await;
        let (status, html) = b.get("/nodes/rollout?revision=7").await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(html.contains("1 of 3 live nodes applied it"), "{html}");
        assert!(html.contains("edge2: at revision 6 (behind)"), "{html}");
        assert!(
            html.contains("edge4: at revision 7 (the kernel refused the update)"),
            "{html}"
        );
        assert!(html.contains("edge3: offline: not waited for"), "{html}");
        assert!(
            html.contains(r#"hx-trigger="every 1s""#),
            "asks again: {html}"
        );

        let mut all = nodes;
        all[1].applied_revision = 7;
        all[1].state = NodeState::InSync;
        fake.set(
            Method::GET,
            "/v1/nodes",
            200,
            serde_json::to_value(&all).unwrap(),
        );
        let (_, html) = b.get("/nodes/rollout?revision=7").await;
        assert!(
            html.contains("2 of 2 live nodes applied it; every live node"),
            "{html}"
        );
        assert!(!html.contains("hx-trigger"), "stops asking: {html}");

        fake.set(
            Method::GET,
            "/v1/nodes",
            404,
            serde_json::json!({"error": {"class": "not_found", "message": "no fleet"}}),
        );
        let (status, html) = b.get("/nodes/rollout?revision=7").await;
        assert_eq!(
            (status, html.as_str()),
            (StatusCode::OK, ""),
            "a single host"
        );
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
