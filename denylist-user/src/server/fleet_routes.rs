//! Fleet mode's routes: the nodes and what each has applied.

use axum::{extract::State, http::StatusCode, response::Response};

use super::{
    auth::Role,
    openapi::Fleet,
    routes::{Cred, St},
};
use crate::model::NodeStatus;

/// Every node of the fleet: the revision it applied and whether it keeps
/// up; `not_found` on a single host, `unavailable` while the fleet's
/// database is.
#[utoipa::path(get, path = "/v1/nodes", tag = "viewer",
    responses((status = 200, body = Vec<NodeStatus>), Fleet))]
pub(super) async fn nodes(State(s): St, c: Cred) -> Response {
    s.call(c, Role::Viewer, StatusCode::OK, move |core, _| {
        Ok(core.nodes()?)
    })
    .await
}
