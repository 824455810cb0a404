//! Decoding requests at the edge, as every route does: the body's JSON and
//! the query string. Public for the fuzz targets (fuzz/), which drive these
//! decoders rather than copies of them.

use axum::extract::Query;
use serde::de::DeserializeOwned;

use crate::{
    model::{List, Target},
    wire::{ApiError, DeployRequest},
};

/// Decodes a request body as every route does. Bodies are parsed here
/// rather than by axum's Json extractor, whose rejections use 422, the
/// status of a guardrail refusal. Parsing happens after authorization, so a
/// stranger learns nothing from a malformed body. Public for the fuzz
/// targets.
pub fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde reads a struct from a JSON array too, by position: `[]` would
    // be a deploy of everything pending. Every body is an object.
    let first = bytes
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(&b'{') {
        return Err(ApiError::invalid(
            "invalid request body: it must be a JSON object, {...}",
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))
}

/// Pending changes by key: a target and its list.
pub type Keys = Vec<(Target, List)>;

/// Decodes a deploy's body: empty deploys everything pending; `only`
/// names pending changes by target and list.
pub fn deploy_body(bytes: &[u8]) -> Result<(DeployRequest, Option<Keys>), ApiError> {
    let req: DeployRequest = if bytes.is_empty() {
        DeployRequest::default()
    } else {
        body(bytes)?
    };
    let only = req
        .only
        .as_ref()
        .map(|keys| keys.iter().map(|k| (k.target, k.list)).collect());
    Ok((req, only))
}

/// What axum's `Query` extractor made of the query string.
pub type QueryResult<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

/// Turns a query the extractor refused into the API's 400.
pub fn query<T: DeserializeOwned>(q: QueryResult<T>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::invalid(format!("invalid query: {}", e.body_text())))
}
