//! Fleet mode's routes: the nodes and what each has applied.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::Response,
};

use super::{
    auth::Role,
    openapi::{Fleet, Forgetting},
    routes::{Cred, St},
};
use crate::{model::NodeStatus, wire::SeqResponse};

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

/// Forgets a retired node, once it has been offline for 5 minutes;
/// `conflict` while it is not.
#[utoipa::path(delete, path = "/v1/nodes/{name}", tag = "admin",
    params(("name" = String, Path)), responses((status = 200, body = SeqResponse), Forgetting))]
pub(super) async fn forget_node(State(s): St, c: Cred, Path(name): Path<String>) -> Response {
    s.call(c, Role::Admin, StatusCode::OK, move |core, peer| {
        let seq = core.forget_node(&peer.user, &name)?;
        Ok(SeqResponse { seq, detail: None })
    })
    .await
}
