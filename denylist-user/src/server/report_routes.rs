//! Reports from applications, the rate detector's heaviest sources, and
//! the policy that turns both into listings. Reporters
//! (`--reporter-group`) and admins may report; a reporter reads only its
//! own reports.

use axum::{body::Bytes, extract::State, http::StatusCode, response::Response};
use serde::Deserialize;

use super::{
    auth::Role,
    decode::{QueryResult, body, query},
    openapi::{Changing, Detecting, Plain, Reporting},
    routes::{Cred, St, error},
};
use crate::{
    model::{Report, TopSource},
    wire::{ApiError, AutoSetRequest, AutoStatus, Class, ReportRequest, ReportResponse},
};

/// Sources `top` lists unless asked for another number.
const TOP_DEFAULT: usize = 20;
/// The most it lists.
const TOP_MAX: usize = 1000;

/// Reports an abusive address; at the policy's threshold it is listed.
#[utoipa::path(post, path = "/v1/reports", tag = "reporter", request_body = ReportRequest,
    responses((status = 201, body = ReportResponse), Reporting))]
pub(super) async fn report(State(s): St, c: Cred, b: Bytes) -> Response {
    if let Some(uid) = c.cred.uid
        && !s.reports.take(uid)
    {
        return error(ApiError::new(
            Class::RateLimited,
            "too many reports from this peer: at most 60 a minute; report each address once, with a weight",
        ));
    }
    s.call_prepared(
        c,
        Role::Reporter,
        StatusCode::CREATED,
        move |host| {
            let req = body::<ReportRequest>(&b)?;
            let ctx = host.for_report(req.ip);
            Ok((req, ctx))
        },
        |core, peer, (req, ctx)| Ok(core.report(&peer.user, req, ctx)?),
    )
    .await
}

/// The latest reports: a reporter's own, or everyone's for an admin.
#[utoipa::path(get, path = "/v1/reports", tag = "reporter",
    responses((status = 200, body = Vec<Report>), Plain))]
pub(super) async fn report_list(State(s): St, c: Cred) -> Response {
    s.call(c, Role::Reporter, StatusCode::OK, |core, peer| {
        let only = (peer.role != Role::Admin).then_some(peer.user.as_str());
        Ok(core.reports(only)?)
    })
    .await
}

/// The automatic blocking policy, and what the rate detector decided.
#[utoipa::path(get, path = "/v1/auto", tag = "viewer",
    responses((status = 200, body = AutoStatus), Plain))]
pub(super) async fn auto_get(State(s): St, c: Cred) -> Response {
    s.call(c, Role::Viewer, StatusCode::OK, |core, _| {
        Ok(core.auto_status()?)
    })
    .await
}

/// Changes the automatic blocking policy (the fields given), audited.
#[utoipa::path(post, path = "/v1/auto", tag = "admin", request_body = AutoSetRequest,
    responses((status = 200, body = AutoStatus), Changing))]
pub(super) async fn auto_set(State(s): St, c: Cred, b: Bytes) -> Response {
    s.call(c, Role::Admin, StatusCode::OK, move |core, peer| {
        let req = body::<AutoSetRequest>(&b)?;
        core.set_auto(&peer.user, req)?;
        Ok(core.auto_status()?)
    })
    .await
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct TopQuery {
    /// How many sources, heaviest first [default: 20, at most 1000].
    limit: Option<usize>,
}

/// The heaviest sources of the last epochs, from the rate detector;
/// `conflict` while it is off.
#[utoipa::path(get, path = "/v1/top", tag = "viewer", params(TopQuery),
    responses((status = 200, body = Vec<TopSource>), Detecting))]
pub(super) async fn top(State(s): St, c: Cred, q: QueryResult<TopQuery>) -> Response {
    s.call(c, Role::Viewer, StatusCode::OK, move |core, _| {
        let limit = query(q)?.limit.unwrap_or(TOP_DEFAULT).min(TOP_MAX);
        Ok(core.top(limit)?)
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

    use super::super::{
        ratelimit::REPORT_BURST,
        routes::{AppState, PeerCred, router},
    };
    use crate::daemon::testing::{TempDir, core};

    /// Root reports past its burst: the next report is refused with 429,
    /// class `rate_limited`, and recorded nowhere.
    #[tokio::test]
    async fn a_peer_past_its_burst_is_rate_limited() {
        let dir = TempDir::new("ratelimit");
        let app = router(AppState::new(Arc::new(Mutex::new(core(&dir)))));
        let report = |i: u32| {
            Request::builder()
                .method(Method::POST)
                .uri("/v1/reports")
                .extension(ConnectInfo(PeerCred {
                    uid: Some(0),
                    pid: None,
                }))
                .body(Body::from(format!(
                    r#"{{"ip": "198.51.100.{}", "reason": "matrix"}}"#,
                    i % 250 + 1
                )))
                .unwrap()
        };
        for i in 0..REPORT_BURST {
            let r = app.clone().oneshot(report(i)).await.unwrap();
            assert_eq!(r.status().as_u16(), 201, "report {i}");
        }
        let r = app.clone().oneshot(report(0)).await.unwrap();
        assert_eq!(r.status().as_u16(), 429);
        let body = to_bytes(r.into_body(), usize::MAX).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["class"], "rate_limited", "{body}");
    }
}
