//! The feed routes: subscriptions, refreshes, approvals. Adding and
//! refreshing wait for the fetch, which runs without the core.

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};

use super::{
    auth::Role,
    decode::body,
    openapi::{Feeds, Plain},
    routes::{AppState, Cred, St, error},
};
use crate::{
    model::FeedInfo,
    wire::{ApiError, FeedAddRequest, SeqResponse},
};

/// The feed subscriptions, with their state.
#[utoipa::path(get, path = "/v1/feeds", tag = "viewer",
    responses((status = 200, body = Vec<FeedInfo>), Plain))]
pub(super) async fn feed_list(State(s): St, c: Cred) -> Response {
    s.call(c, Role::Viewer, StatusCode::OK, |core, _| Ok(core.feeds()?))
        .await
}

/// Subscribes to a feed and waits for its first fetch; the feed's state
/// says how that went.
#[utoipa::path(post, path = "/v1/feeds", tag = "admin", request_body = FeedAddRequest,
    responses((status = 201, body = FeedInfo), Feeds))]
pub(super) async fn feed_add(State(s): St, c: Cred, b: Bytes) -> Response {
    let peer = match s.authorize(&c, Role::Admin) {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    let req = match body::<FeedAddRequest>(&b) {
        Ok(r) => r,
        Err(e) => return error(e),
    };
    let name = req.name.trim().to_string();
    let core = s.core.clone();
    let added = tokio::task::spawn_blocking(move || {
        core.lock()
            .unwrap_or_else(|p| p.into_inner())
            .feed_add(&peer.user, req)
    })
    .await;
    match added {
        Ok(Ok(())) => refreshed(&s, &name, StatusCode::CREATED).await,
        Ok(Err(e)) => error(e.into()),
        Err(e) => error(ApiError::failure(format!(
            "adding the feed failed inside denylistd: {e}"
        ))),
    }
}

/// Fetches a feed now, whatever its schedule says.
#[utoipa::path(post, path = "/v1/feeds/{name}/refresh", tag = "admin",
    params(("name" = String, Path)), responses((status = 200, body = FeedInfo), Feeds))]
pub(super) async fn feed_refresh(State(s): St, c: Cred, Path(name): Path<String>) -> Response {
    if let Err(e) = s.authorize(&c, Role::Admin) {
        return error(e);
    }
    refreshed(&s, &name, StatusCode::OK).await
}

async fn refreshed(s: &AppState, name: &str, ok: StatusCode) -> Response {
    if let Err(e) = s.feeds.refresh(name).await {
        return error(e.into());
    }
    let core = s.core.clone();
    let name = name.to_string();
    let info = tokio::task::spawn_blocking(move || {
        core.lock().unwrap_or_else(|p| p.into_inner()).feed(&name)
    })
    .await;
    match info {
        Ok(Ok(info)) => (ok, axum::Json(info)).into_response(),
        Ok(Err(e)) => error(e.into()),
        Err(e) => error(ApiError::failure(format!(
            "reading the feed failed inside denylistd: {e}"
        ))),
    }
}

/// Deploys the list a feed's last fetch held back.
#[utoipa::path(post, path = "/v1/feeds/{name}/approve", tag = "admin",
    params(("name" = String, Path)), responses((status = 200, body = FeedInfo), Feeds))]
pub(super) async fn feed_approve(State(s): St, c: Cred, Path(name): Path<String>) -> Response {
    s.call_prepared(
        c,
        Role::Admin,
        StatusCode::OK,
        |host| Ok(host.for_feed()?),
        move |core, peer, ctx| Ok(core.feed_approve(&peer.user, &name, &ctx)?),
    )
    .await
}

/// Ends a subscription; its listings go with it, deployed at once.
#[utoipa::path(delete, path = "/v1/feeds/{name}", tag = "admin",
    params(("name" = String, Path)), responses((status = 200, body = SeqResponse), Feeds))]
pub(super) async fn feed_remove(State(s): St, c: Cred, Path(name): Path<String>) -> Response {
    s.call(c, Role::Admin, StatusCode::OK, move |core, peer| {
        let seq = core.feed_remove(&peer.user, &name)?;
        Ok(SeqResponse { seq, detail: None })
    })
    .await
}
