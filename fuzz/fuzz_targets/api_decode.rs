//! The control API's request decoder (`denylist::server::decode`): the JSON bodies of
//! every POST route and the query of `POST /v1/import`, decoded by the very
//! functions the daemon's handlers call. The first byte picks the route
//! (`'0'` to `'7'`, see `route`); the rest is the body or query.
//!
//! Besides never panicking, a decoded request must survive the trip back:
//! encoded as the CLI's client sends it, it decodes to the same request.

#![no_main]

use axum::{extract::Query, http::Uri};
use denylist::{
    cli::query,
    model::{Target, parse_duration},
    server::decode as api,
    wire::{
        AddRequest, AttachRequest, Class, DetachRequest, ImportParams, ModeRequest, RemoveRequest,
        RollbackRequest,
    },
};
use libfuzzer_sys::fuzz_target;
use serde::{Serialize, de::DeserializeOwned};

fuzz_target!(|data: &[u8]| {
    let Some((&route, rest)) = data.split_first() else {
        return;
    };
    route_input(route, rest);
});

/// `b'0' % 8 == 0`, so the seeds' digits name the routes.
fn route_input(route: u8, input: &[u8]) {
    match route % 8 {
        0 => {
            if let Some(req) = decode::<AddRequest>(input) {
                for item in &req.entries {
                    target(&item.target, req.force);
                    ttl(item.ttl.as_deref());
                }
            }
        }
        1 => {
            if let Some(req) = decode::<RemoveRequest>(input) {
                req.targets.iter().for_each(normal_form);
            }
        }
        2 => {
            if let Some(req) = decode::<ModeRequest>(input) {
                req.targets.iter().for_each(normal_form);
            }
        }
        3 => deploy(input),
        4 => {
            decode::<RollbackRequest>(input);
        }
        5 => {
            decode::<AttachRequest>(input);
        }
        6 => {
            decode::<DetachRequest>(input);
        }
        _ => import_query(input),
    }
}

/// Decodes a body as the route's handler does; a request it accepts
/// round-trips through the client's encoding.
fn decode<T: Serialize + DeserializeOwned>(body: &[u8]) -> Option<T> {
    match api::body::<T>(body) {
        Ok(req) => {
            assert_eq!(body.trim_ascii_start().first(), Some(&b'{'), "only objects");
            let sent = serde_json::to_vec(&req).expect("requests serialize");
            let again: T = api::body(&sent)
                .unwrap_or_else(|e| panic!("{} is refused: {e}", String::from_utf8_lossy(&sent)));
            let resent = serde_json::to_vec(&again).expect("requests serialize");
            assert_eq!(
                String::from_utf8_lossy(&resent),
                String::from_utf8_lossy(&sent),
                "the request changed on its way back"
            );
            Some(req)
        }
        Err(e) => {
            assert_eq!(e.class, Class::Invalid, "{e}");
            assert!(e.message.starts_with("invalid request body: "), "{e}");
            None
        }
    }
}

fn deploy(body: &[u8]) {
    match api::deploy_body(body) {
        Ok((req, only)) => {
            if body.is_empty() {
                assert!(!req.dry_run && req.message.is_none() && req.only.is_none());
            } else {
                decode::<denylist::wire::DeployRequest>(body).expect("accepted once");
            }
            let keys = req.only.unwrap_or_default();
            let only = only.unwrap_or_default();
            assert_eq!(keys.len(), only.len());
            for (key, (target, list)) in keys.iter().zip(&only) {
                assert_eq!(key.target, *target);
                normal_form(target);
                assert_eq!(key.list, *list);
            }
        }
        Err(e) => assert_eq!(e.class, Class::Invalid, "{e}"),
    }
}

/// The query of `POST /v1/import`, as axum's `Query` extractor reads it
/// for the handler; what decodes, the CLI encodes back to the same.
fn import_query(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let Ok(uri) = Uri::try_from(format!("/v1/import?{text}")) else {
        return;
    };
    let params = match api::query(Query::<ImportParams>::try_from_uri(&uri)) {
        Ok(params) => params,
        Err(e) => {
            assert_eq!(e.class, Class::Invalid, "{e}");
            assert!(e.message.starts_with("invalid query: "), "{e}");
            return;
        }
    };
    let sent = query::encode(&params);
    let uri = Uri::try_from(format!("/v1/import{sent}"))
        .unwrap_or_else(|e| panic!("the CLI sends {sent:?}, not a URI: {e}"));
    let again = api::query(Query::<ImportParams>::try_from_uri(&uri))
        .unwrap_or_else(|e| panic!("the CLI sends {sent:?}, which is refused: {e}"));
    assert_eq!(
        query::encode(&again),
        sent,
        "the query changed on its way back"
    );
    ttl(params.ttl.as_deref());
}

/// A target as the daemon reads one from a request.
fn target(text: &str, force: bool) {
    let parsed = if force {
        Target::parse_forced(text)
    } else {
        Target::parse(text)
    };
    if let Ok(t) = parsed {
        assert_eq!(Target::parse(&t.to_string()), Ok(t));
    }
}

/// A target decoded from a body shows in a normal form that parses back to
/// the same target.
fn normal_form(t: &Target) {
    assert_eq!(Target::parse(&t.to_string()), Ok(*t));
}

/// A TTL as the daemon reads one: `never` or a duration, which must not
/// panic however long or odd.
fn ttl(ttl: Option<&str>) {
    if let Some(text) = ttl.filter(|t| *t != "never") {
        let _ = parse_duration(text);
    }
}
