//! The routes a console pages through: entries a page at a time, and what
//! one revision changed.

use axum::{
    extract::{Path, State, rejection::PathRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
};

use super::{
    auth::Role,
    decode::{QueryResult, query},
    openapi::{Finding, Querying},
    routes::{Cred, St, error},
};
use crate::{
    daemon::entry_page as page_of,
    wire::{
        ApiError, EntryPage, EntryPageQuery, REVISION_DIFF_DEFAULT, RevisionDiff, RevisionQuery,
    },
};

/// One page of one list, filtered and sorted, with what is pending for
/// each entry and its hits; `next` goes on.
#[utoipa::path(get, path = "/v1/entries/page", tag = "viewer", params(EntryPageQuery),
    responses((status = 200, body = EntryPage), Querying))]
pub(super) async fn entry_page(State(s): St, c: Cred, q: QueryResult<EntryPageQuery>) -> Response {
    if let Err(e) = s.authorize(&c, Role::Viewer) {
        return error(e);
    }
    let q = match query(q) {
        Ok(q) => q,
        Err(e) => return error(e),
    };
    // On a snapshot of its own, off the async threads and without the
    // core: a page waits for no deploy.
    let snapshots = s.snapshots.clone();
    let paged = tokio::task::spawn_blocking(move || page_of(snapshots.as_ref(), &q)).await;
    match paged {
        Ok(Ok(page)) => (StatusCode::OK, axum::Json(page)).into_response(),
        Ok(Err(e)) => error(ApiError::from(e)),
        Err(e) => error(ApiError::failure(format!(
            "the page failed inside denylistd: {e}"
        ))),
    }
}

/// What deploying one revision added, removed and changed.
#[utoipa::path(get, path = "/v1/history/{rev}", tag = "viewer", params(
        ("rev" = u64, Path, description = "a revision number, as `GET /v1/history` lists them"),
        RevisionQuery),
    responses((status = 200, body = RevisionDiff), Finding))]
pub(super) async fn revision(
    State(s): St,
    c: Cred,
    rev: Result<Path<u64>, PathRejection>,
    q: QueryResult<RevisionQuery>,
) -> Response {
    s.call(c, Role::Viewer, StatusCode::OK, move |core, _| {
        let limit = query(q)?.limit.unwrap_or(REVISION_DIFF_DEFAULT);
        let Path(rev) = rev.map_err(|e| {
            ApiError::invalid(format!(
                "invalid revision in the path: {}; give a number, as denylist history lists them",
                e.body_text()
            ))
        })?;
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        Ok(core.revision_diff(rev, limit)?)
    })
    .await
}
