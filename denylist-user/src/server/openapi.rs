//! The API's OpenAPI 3 document, served at `GET /v1/openapi.json`. It comes
//! from the same definitions as the router: `routes::api` registers each
//! handler with its `#[utoipa::path]` through utoipa-axum, so a route
//! cannot be served without being described. docs/api.md stays the full
//! description; this is its machine-readable outline.

use std::{collections::BTreeMap, sync::LazyLock};

use axum::{
    http::header,
    response::{IntoResponse, Response},
};
use utoipa::{
    Modify, OpenApi,
    openapi::{
        self, Content, RefOr, ResponseBuilder,
        schema::{ObjectBuilder, Ref, Schema, Type},
    },
};

use super::routes::{self, ErrorBody, error};
use crate::wire::{ApiError, Class, DeployRequest};

/// The classes the daemon answers with; `unavailable` only in fleet mode,
/// and also the CLI's own, for a socket it cannot reach.
const ANSWERED: [Class; 9] = [
    Class::Unavailable,
    Class::Invalid,
    Class::Forbidden,
    Class::NotFound,
    Class::Conflict,
    Class::RateLimited,
    Class::TooLarge,
    Class::Guarded,
    Class::Failure,
];

/// The class's name in JSON, which also names its response component.
fn class_name(class: Class) -> String {
    match serde_json::to_value(class) {
        Ok(serde_json::Value::String(s)) => s,
        other => unreachable!("a class serializes as a string, not {other:?}"),
    }
}

fn meaning(class: Class) -> &'static str {
    match class {
        Class::Failure => "class `failure`: the kernel, the store or an attachment failed",
        Class::Unavailable => {
            "class `unavailable`: in fleet mode, the fleet's database cannot be reached, so \
             nothing was changed (the CLI also uses it when it cannot reach the socket)"
        }
        Class::Invalid => {
            "class `invalid`: a malformed body, query or path, a bad target or duration"
        }
        Class::TooLarge => {
            "the body is over the limit (docs/api.md, Requests); the HTTP layer answers \
             this with plain text, not the JSON error body"
        }
        Class::Guarded => "class `guarded`: refused by a guardrail; `force` passes",
        Class::Forbidden => "class `forbidden`: the peer's role does not allow the route",
        Class::NotFound => "class `not_found`: no such entry, revision or interface",
        Class::Conflict => "class `conflict`: the change would overwrite pending changes",
        Class::RateLimited => "class `rate_limited`: the peer sent too many reports; wait a second",
    }
}

/// One response component per class the daemon answers with, so that
/// each operation refers to them instead of repeating them.
struct ErrorResponses;

impl Modify for ErrorResponses {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        for class in ANSWERED {
            let content = if class == Class::TooLarge {
                let text = ObjectBuilder::new().schema_type(Type::String);
                ("text/plain", Content::new(Some(text)))
            } else {
                let body = Ref::from_schema_name("ErrorBody");
                ("application/json", Content::new(Some(body)))
            };
            let response = ResponseBuilder::new()
                .description(meaning(class))
                .content(content.0, content.1)
                .build();
            components
                .responses
                .insert(class_name(class), RefOr::T(response));
        }
    }
}

/// serde ignores `deny_unknown_fields` on a flattened struct, and the
/// fields around it are not its own: an `allOf` member that forbids other
/// properties (an `Entry` inside a diff item) would refuse every instance.
/// Run on the whole document, as the routes add their schemas after the
/// base's modifiers ran.
fn open_flattened(doc: &mut openapi::OpenApi) {
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    for schema in components.schemas.values_mut() {
        if let RefOr::T(Schema::AllOf(all)) = schema {
            for item in &mut all.items {
                if let RefOr::T(Schema::Object(o)) = item {
                    o.additional_properties = None;
                }
            }
        }
    }
}

/// The error answers of one kind of route, as references to the response
/// components: `responses((status = 200, ...), Changing)` in a handler's
/// `#[utoipa::path]`. Every route answers 403 to a peer without the role.
macro_rules! errors {
    ($($(#[$doc:meta])* $name:ident: $($class:ident),+;)+) => {$(
        $(#[$doc])*
        pub(super) struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<openapi::Response>> {
                [$(Class::$class),+]
                    .into_iter()
                    .map(|c| {
                        let r = Ref::from_response_name(class_name(c));
                        (c.http_status().to_string(), RefOr::Ref(r))
                    })
                    .collect()
            }
        }
    )+};
}

errors! {
    /// Routes that take neither a body nor a query.
    Plain: Forbidden, Failure;
    /// Routes that read a query or a path parameter.
    Querying: Invalid, Forbidden, Failure;
    /// `GET /v1/top`, refused while the rate detector is off.
    Detecting: Invalid, Forbidden, Conflict, Failure;
    /// Routes that read one thing by its path, which may be missing.
    Finding: Invalid, Forbidden, NotFound, Failure;
    /// `POST /v1/deploy`, refused when the draft changed since its review.
    Deploying: Invalid, Forbidden, NotFound, Conflict, TooLarge, Failure;
    /// Routes whose body names staged or deployed things.
    Changing: Invalid, Forbidden, NotFound, TooLarge, Failure;
    /// Routes that stage entries, through the guardrails, and may deploy.
    Staging: Invalid, Forbidden, NotFound, TooLarge, Guarded, Failure;
    /// The feed routes: a feed may be missing, or exist already.
    Feeds: Invalid, Forbidden, NotFound, Conflict, TooLarge, Failure;
    /// `POST /v1/reports`, limited per peer.
    Reporting: Invalid, Forbidden, RateLimited, TooLarge, Failure;
    /// `POST /v1/rollback`, which may overwrite pending changes.
    RollingBack: Invalid, Forbidden, NotFound, Conflict, TooLarge, Failure;
    /// `GET /v1/nodes`: no fleet on a single host; its database may be away.
    Fleet: Forbidden, NotFound, Unavailable, Failure;
    /// `DELETE /v1/nodes/{name}`: the node may be missing, or still live.
    Forgetting: Invalid, Forbidden, NotFound, Conflict, Unavailable, Failure;
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "denylist",
        version = env!("CARGO_PKG_VERSION"),
        description = "The control API of denylistd: JSON over HTTP/1.1 on a Unix socket, \
            by default /run/denylist/denylist.sock. docs/api.md describes every route and \
            field in full; this document is its machine-readable outline.\n\n\
            Each request is authorized from the peer's SO_PEERCRED credentials: routes tagged \
            `viewer` need the viewer group, the admin group or uid 0; routes tagged `admin` \
            the admin group or uid 0. Members of the web group may act on behalf of a web \
            user, naming it in the `Denylist-On-Behalf-Of` and `Denylist-Role` headers; \
            anyone else sending them is refused. Every error is `{\"error\": {\"class\", \"message\", \
            \"details\"}}`, one HTTP status per class. A known path with another method \
            answers 405 with an `Allow` header (class `invalid`); an unknown path 404 \
            (class `not_found`). Request bodies and queries refuse unknown fields.",
    ),
    servers((
        url = "http://denylist",
        description = "the host name is ignored: connect to the Unix socket, e.g. \
            `curl --unix-socket /run/denylist/denylist.sock`",
    )),
    tags(
        (name = "viewer", description = "reads: the viewer group, the admin group or uid 0"),
        (name = "admin", description = "changes: the admin group or uid 0"),
    ),
    components(schemas(ErrorBody, ApiError, DeployRequest)),
    modifiers(&ErrorResponses),
)]
struct ApiDoc;

/// The document every route adds its path to.
pub(super) fn base() -> openapi::OpenApi {
    ApiDoc::openapi()
}

/// The whole document, as `GET /v1/openapi.json` serves it.
pub fn document() -> openapi::OpenApi {
    let mut doc = routes::api().into_openapi();
    open_flattened(&mut doc);
    doc
}

/// Rendered once: the document only changes with the binary.
static RENDERED: LazyLock<Result<String, String>> =
    LazyLock::new(|| document().to_json().map_err(|e| e.to_string()));

/// This document: the routes, their parameters, bodies and answers.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "viewer",
    responses(
        (status = 200, description = "an OpenAPI 3 document", body = serde_json::Value),
        Plain,
    ),
)]
pub(super) async fn spec() -> Response {
    match &*RENDERED {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json.as_str()).into_response(),
        Err(e) => error(ApiError::failure(format!(
            "rendering the OpenAPI document: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::BTreeSet,
        sync::{Arc, Mutex},
    };

    use axum::{
        Router,
        body::{Body, to_bytes},
        extract::ConnectInfo,
        http::{HeaderMap, Method, Request, StatusCode},
    };
    use serde_json::Value;
    use tower::ServiceExt as _;

    use super::{
        routes::{AppState, PeerCred, router},
        *,
    };
    use crate::daemon::testing::{TempDir, core};

    const ROOT: PeerCred = PeerCred {
        uid: Some(0),
        pid: None,
    };
    /// A uid without a passwd entry, so in no group: it may do nothing.
    const STRANGER: PeerCred = PeerCred {
        uid: Some(4_000_000),
        pid: None,
    };

    fn doc() -> Value {
        serde_json::from_str(RENDERED.as_ref().expect("the document renders"))
            .expect("the document is JSON")
    }

    type Operations = BTreeSet<(Method, String)>;

    /// Every (method, path) the document describes.
    fn operations(doc: &Value) -> Operations {
        let paths = doc["paths"].as_object().expect("paths is an object");
        let mut ops = Operations::new();
        for (path, item) in paths {
            for method in item.as_object().expect("a path item is an object").keys() {
                let method = Method::from_bytes(method.to_uppercase().as_bytes())
                    .unwrap_or_else(|e| panic!("{path}: {method} is no method: {e}"));
                ops.insert((method, path.clone()));
            }
        }
        ops
    }

    /// The route table of docs/api.md: rows such as
    /// "| [`GET /v1/status`](#get-v1status) | viewer |".
    fn api_md_routes() -> Operations {
        include_str!("../../../docs/api.md")
            .lines()
            .filter_map(|line| line.strip_prefix("| [`"))
            .filter_map(|row| row.split_once('`'))
            .map(|(route, _)| {
                let (method, path) = route.split_once(' ').expect("METHOD /path");
                (Method::from_bytes(method.as_bytes()).unwrap(), path.into())
            })
            .collect()
    }

    /// `path` with each `{param}` segment filled in, as a client sends it.
    fn concrete(path: &str) -> String {
        path.split('/')
            .map(|s| if s.starts_with('{') { "192.0.2.1" } else { s })
            .collect::<Vec<_>>()
            .join("/")
    }

    async fn ask(
        app: &Router,
        peer: PeerCred,
        method: Method,
        uri: &str,
    ) -> (StatusCode, HeaderMap, Vec<u8>) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .extension(ConnectInfo(peer))
            .body(Body::empty())
            .expect("a valid request");
        let response = app.clone().oneshot(request).await.expect("infallible");
        let (parts, body) = response.into_parts();
        let body = to_bytes(body, usize::MAX).await.expect("a complete body");
        (parts.status, parts.headers, body.to_vec())
    }

    fn app(dir: &TempDir) -> Router {
        router(AppState::new(Arc::new(Mutex::new(core(dir)))))
    }

    #[test]
    fn the_document_is_openapi_3_and_names_the_daemon_and_its_version() {
        let doc = doc();
        let version = doc["openapi"].as_str().expect("an openapi field");
        assert!(version.starts_with("3."), "openapi {version}");
        assert_eq!(doc["info"]["title"], "denylist");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        let description = doc["info"]["description"].as_str().unwrap_or_default();
        assert!(description.contains("docs/api.md"), "{description}");
    }

    #[test]
    fn the_document_lists_the_routes_of_api_md_each_with_its_role_and_errors() {
        let doc = doc();
        let listed = operations(&doc);
        let table = api_md_routes();
        assert!(
            table.len() > 10,
            "the route table of docs/api.md: {table:?}"
        );
        assert_eq!(
            listed, table,
            "the document against docs/api.md's route table"
        );
        for (method, path) in &listed {
            let op = &doc["paths"][path][method.as_str().to_lowercase()];
            // The gate lets reporters report, viewers read and admins
            // change: GET is a read.
            let role = if path.starts_with("/v1/reports") {
                "reporter"
            } else if method == Method::GET {
                "viewer"
            } else {
                "admin"
            };
            assert_eq!(op["tags"], serde_json::json!([role]), "{method} {path}");
            let responses = op["responses"].as_object().expect("responses");
            assert!(responses.contains_key("403"), "{method} {path}: no 403");
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{method} {path}: no success answer"
            );
        }
    }

    #[test]
    fn every_reference_resolves_to_a_component() {
        fn refs<'a>(v: &'a Value, found: &mut Vec<&'a str>) {
            match v {
                Value::Object(o) => {
                    if let Some(Value::String(r)) = o.get("$ref") {
                        found.push(r);
                    }
                    o.values().for_each(|v| refs(v, found));
                }
                Value::Array(a) => a.iter().for_each(|v| refs(v, found)),
                _ => {}
            }
        }
        let doc = doc();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        for wanted in [
            "#/components/schemas/Entry",
            "#/components/responses/forbidden",
        ] {
            assert!(found.contains(&wanted), "no reference to {wanted}");
        }
        for r in found {
            let pointer = r
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("{r} is not local"));
            assert!(pointer.starts_with("/components/"), "{r}");
            assert!(doc.pointer(pointer).is_some(), "{r} resolves to nothing");
        }
    }

    #[test]
    fn a_flattened_entry_does_not_forbid_the_fields_around_it() {
        let doc = doc();
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        let mut checked = 0;
        for (name, schema) in schemas {
            for member in schema["allOf"].as_array().into_iter().flatten() {
                let open = member.get("additionalProperties") != Some(&Value::Bool(false));
                assert!(open, "{name}: an allOf member forbids other properties");
                checked += 1;
            }
        }
        // A diff item is an entry flattened beside who staged it.
        assert!(checked > 0, "no allOf in {:?}", schemas.keys());
        assert_eq!(schemas["Entry"]["additionalProperties"], Value::Bool(false));
    }

    #[tokio::test]
    async fn the_router_serves_each_documented_route_behind_the_gate_and_refuses_other_methods() {
        let dir = TempDir::new("openapi");
        let app = app(&dir);
        let doc = doc();
        let listed = operations(&doc);
        // The control: an unknown path is not refused by the gate, so a 403
        // below shows that the router matched the route.
        let (status, _, _) = ask(&app, STRANGER, Method::GET, "/v1/no-such-route").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        for (method, path) in &listed {
            let (status, _, body) = ask(&app, STRANGER, method.clone(), &concrete(path)).await;
            let body = String::from_utf8_lossy(&body);
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
        }
        let paths: BTreeSet<&String> = listed.iter().map(|(_, p)| p).collect();
        for path in paths {
            let served: Vec<&Method> = listed
                .iter()
                .filter(|(_, p)| p == path)
                .map(|(m, _)| m)
                .collect();
            for method in [
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::DELETE,
                Method::PATCH,
            ] {
                if served.contains(&&method) {
                    continue;
                }
                let (status, headers, _) = ask(&app, ROOT, method.clone(), &concrete(path)).await;
                assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                let allow = headers
                    .get("allow")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                for m in &served {
                    assert!(
                        allow.contains(m.as_str()),
                        "{method} {path}: Allow {allow:?}"
                    );
                }
            }
        }
    }

    #[tokio::test]
    async fn each_documented_query_parameter_is_one_the_route_reads() {
        let dir = TempDir::new("openapi");
        let app = app(&dir);
        let doc = doc();
        let mut probed = 0;
        for (method, path) in operations(&doc) {
            let op = &doc["paths"][&path][method.as_str().to_lowercase()];
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let names: Vec<&str> = params
                .iter()
                .filter(|p| p["in"] == "query")
                .filter_map(|p| p["name"].as_str())
                .collect();
            if names.is_empty() {
                continue;
            }
            // A route that reads a query refuses a parameter it does not know.
            let uri = format!("{}?no_such_parameter=x", concrete(&path));
            let (status, _, body) = ask(&app, ROOT, method.clone(), &uri).await;
            let body = String::from_utf8_lossy(&body);
            assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {uri}: {body}");
            assert!(body.contains("unknown field"), "{method} {uri}: {body}");
            // A value the route cannot use may be refused, but never as
            // an unknown field.
            for name in names {
                let uri = format!("{}?{name}=x", concrete(&path));
                let (_, _, body) = ask(&app, ROOT, method.clone(), &uri).await;
                let body = String::from_utf8_lossy(&body);
                assert!(!body.contains("unknown field"), "{method} {uri}: {body}");
                probed += 1;
            }
        }
        assert!(probed > 10, "only {probed} query parameters documented");
    }

    #[tokio::test]
    async fn the_router_serves_this_document_to_a_reader() {
        let dir = TempDir::new("openapi");
        let app = app(&dir);
        let (status, headers, body) = ask(&app, ROOT, Method::GET, "/v1/openapi.json").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "application/json");
        let served: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(served, doc());
    }
}
