//! What a command fails with: an API error, or output that cannot be
//! written; and an API error's details as the lines printed under it.

use std::io;

use serde_json::Value;

use super::output;
use crate::wire::ApiError;

#[derive(Debug, thiserror::Error)]
pub(super) enum Error {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("cannot write the output: {0}")]
    Output(#[from] io::Error),
}

impl From<output::EachError> for Error {
    fn from(e: output::EachError) -> Self {
        match e {
            output::EachError::Output(e) => Error::Output(e),
            reply @ output::EachError::Reply(_) => Error::Api(ApiError::failure(reply.to_string())),
        }
    }
}

pub(super) type Result<T, E = Error> = std::result::Result<T, E>;

/// The lines of an error's details: each refused target, each bad line.
pub(super) fn detail_lines(details: &Value) -> Vec<String> {
    let Value::Array(items) = details else {
        return vec![details.to_string()];
    };
    items.iter().map(detail_line).collect()
}

fn detail_line(item: &Value) -> String {
    let field = |k: &str| item.get(k).and_then(Value::as_str);
    let line = item.get("line").and_then(Value::as_u64);
    match (
        line,
        field("text"),
        field("error"),
        field("target"),
        field("reason"),
    ) {
        (Some(n), Some(text), Some(error), _, _) => format!("line {n}: '{text}': {error}"),
        (Some(n), _, _, _, Some(reason)) => format!("line {n}: {reason}"),
        (None, _, _, Some(target), Some(reason)) if !reason.contains(target) => {
            format!("{target}: {reason}")
        }
        (None, _, _, _, Some(reason)) => reason.to_string(),
        _ => match item {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn error_details_are_one_line_each() {
        let import = json!([
            { "line": 12, "text": "xyz", "error": "not an IPv4 or IPv6 address" },
            { "line": 13, "target": "10.0.0.0/8", "reason": "refusing deny entry 10.0.0.0/8: private" },
        ]);
        assert_eq!(
            detail_lines(&import),
            [
                "line 12: 'xyz': not an IPv4 or IPv6 address",
                "line 13: refusing deny entry 10.0.0.0/8: private",
            ]
        );
        let refused = json!([
            { "target": "10.0.0.1", "reason": "refusing deny entry 10.0.0.1: private" },
            { "target": "10.0.0.2", "reason": "lies inside 10.0.0.0/8" },
        ]);
        assert_eq!(
            detail_lines(&refused),
            [
                "refusing deny entry 10.0.0.1: private",
                "10.0.0.2: lies inside 10.0.0.0/8",
            ]
        );
        assert_eq!(detail_lines(&json!({"n": 1})), [r#"{"n":1}"#]);
        assert_eq!(detail_lines(&json!(["plain"])), ["plain"]);
    }
}
