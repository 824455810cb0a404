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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::{
        body::{Body, to_bytes},
        extract::ConnectInfo,
        http::{Method, Request},
    };
    use tower::ServiceExt as _;

    use super::super::routes::{AppState, PeerCred, router};
    use crate::{
        daemon::testing::{TempDir, core},
        wire::{ON_BEHALF_HEADER, ROLE_HEADER},
    };

    const ROOT: PeerCred = PeerCred {
        uid: Some(0),
        pid: None,
    };

    async fn ask(
        app: &axum::Router,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, serde_json::Value) {
        let mut r = Request::builder()
            .method(method)
            .uri(uri)
            .extension(ConnectInfo(ROOT));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let response = app
            .clone()
            .oneshot(r.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    #[tokio::test]
    async fn the_console_routes_answer_and_root_may_not_act_on_behalf_of_anyone() {
        let dir = TempDir::new("console-routes");
        let app = router(AppState::new(Arc::new(Mutex::new(core(&dir)))));
        let (status, page) = ask(&app, Method::GET, "/v1/entries/page?limit=5", &[], "").await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["entries"], serde_json::json!([]));
        assert_eq!(page["next"], serde_json::Value::Null);
        let (status, e) = ask(&app, Method::GET, "/v1/entries/page?limit=0", &[], "").await;
        assert_eq!(
            (status, e["error"]["class"].as_str()),
            (400, Some("invalid"))
        );
        let (status, _) = ask(&app, Method::GET, "/v1/history/3", &[], "").await;
        assert_eq!(status, 404);
        let (status, _) = ask(&app, Method::GET, "/v1/history/x", &[], "").await;
        assert_eq!(status, 400);
        let dry = r#"{"entries": [{"target": "198.18.0.9"}], "dry_run": true}"#;
        let (status, staged) = ask(&app, Method::POST, "/v1/entries", &[], dry).await;
        assert_eq!(
            (status, &staged["seq"]),
            (200, &serde_json::Value::Null),
            "{staged}"
        );
        let (status, d) = ask(&app, Method::GET, "/v1/diff", &[], "").await;
        assert_eq!(
            (status, d["added"].as_array().map(Vec::len)),
            (200, Some(0))
        );
        let stale = format!(
            r#"{{"expect_seq": {}}}"#,
            d["draft_seq"].as_u64().unwrap() + 1
        );
        let (status, e) = ask(&app, Method::POST, "/v1/deploy", &[], &stale).await;
        assert_eq!(
            (status, e["error"]["class"].as_str()),
            (409, Some("conflict"))
        );
        // Root is in no web group: either header alone, or both, is refused
        // before anything else is looked at.
        for headers in [
            vec![(ON_BEHALF_HEADER, "alice"), (ROLE_HEADER, "admin")],
            vec![(ON_BEHALF_HEADER, "alice")],
            vec![(ROLE_HEADER, "viewer")],
            vec![(ON_BEHALF_HEADER, "Not A Name"), (ROLE_HEADER, "admin")],
        ] {
            for (method, uri) in [(Method::GET, "/v1/status"), (Method::POST, "/v1/discard")] {
                let (status, e) = ask(&app, method.clone(), uri, &headers, "").await;
                assert_eq!(status, 403, "{method} {uri} {headers:?}: {e}");
                let message = e["error"]["message"].as_str().unwrap_or_default();
                assert!(message.contains("denylist-web"), "{message}");
            }
        }
    }
}
