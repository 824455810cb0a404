//! The core's errors as the API reports them: one class each (and with it
//! one HTTP status and one CLI exit code), the message, and per-item details
//! where there are items.

use serde_json::{Value, json};

use crate::{
    daemon::{CoreError, StoreError},
    wire::{ApiError, Class},
};

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        use CoreError as E;
        let class = match &e {
            E::NoTargets
            | E::Target(_)
            | E::Duration(_)
            | E::TtlZero
            | E::TtlTooLong
            | E::MonitorOnAllow
            | E::ForceAndSkipGuarded
            | E::ListWithJson
            | E::InvalidLines { .. }
            | E::BadSource { .. } => Class::Invalid,
            E::Refused { .. } | E::GuardUnavailable { .. } | E::GuardedLines { .. } => {
                Class::Guarded
            }
            E::NotOnDenyList { .. } | E::NoInterface { .. } | E::NotManaged { .. } => {
                Class::NotFound
            }
            E::Store(s) => store_class(s),
            E::DeployFailed { .. }
            | E::CommitFailed { .. }
            | E::GrowFailed { .. }
            | E::Attach { .. }
            | E::Backup { .. }
            | E::Dataplane(_) => Class::Failure,
        };
        let details = match &e {
            E::Refused { refusals } => Some(Value::Array(
                refusals
                    .iter()
                    .map(|(t, r)| json!({ "target": t.to_string(), "reason": r.to_string() }))
                    .collect(),
            )),
            E::InvalidLines { lines } => Some(Value::Array(
                lines
                    .iter()
                    .map(|i| json!({ "line": i.line, "text": i.text, "error": i.error }))
                    .collect(),
            )),
            E::GuardedLines { lines } => Some(Value::Array(
                lines
                    .iter()
                    .map(|g| {
                        json!({
                            "line": g.line,
                            "target": g.target.to_string(),
                            "reason": g.refusal.to_string(),
                        })
                    })
                    .collect(),
            )),
            _ => None,
        };
        let error = ApiError::new(class, e.to_string());
        match details {
            Some(d) => error.with_details(d),
            None => error,
        }
    }
}

fn store_class(e: &StoreError) -> Class {
    match e {
        StoreError::NotFound { .. }
        | StoreError::NotPending { .. }
        | StoreError::NoRevision { .. } => Class::NotFound,
        StoreError::Conflict { .. } => Class::Conflict,
        _ => Class::Failure,
    }
}
