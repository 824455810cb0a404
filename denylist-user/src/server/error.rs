//! The core's errors as the API reports them: one class each (and with it
//! one HTTP status and one CLI exit code), the message, and per-item details
//! where there are items.

use serde_json::{Value, json};

use crate::{
    daemon::{CoreError, StoreError},
    model::TargetError,
    wire::{ApiError, Class},
};

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        use CoreError as E;
        let class = match &e {
            // `force` passes it, as it passes a guardrail.
            E::Target(TargetError::HostBits { .. }) => Class::Guarded,
            E::NoTargets
            | E::Target(_)
            | E::Duration(_)
            | E::TtlZero
            | E::TtlTooLong
            | E::MonitorOnAllow
            | E::ForceAndSkipGuarded
            | E::DryRunAndDeploy
            | E::PageLimit { .. }
            | E::BadCursor { .. }
            | E::CursorOrder { .. }
            | E::ListWithJson
            | E::InvalidLines { .. }
            | E::BadSource { .. }
            | E::BadAddSource { .. }
            | E::FeedNeedsUrl { .. }
            | E::FeedTooOften
            | E::FeedMaxChange
            | E::FeedMaxWidth
            | E::FeedHeaderFile { .. }
            | E::Fetch(_)
            | E::ReportWeight { .. }
            | E::ReportReason
            | E::BadAutoPolicy { .. } => Class::Invalid,
            E::FeedNotHeld { .. }
            | E::DraftChanged { .. }
            | E::DetectorOff
            | E::FleetCapacity { .. } => Class::Conflict,
            E::Refused { .. } | E::GuardUnavailable { .. } | E::GuardedLines { .. } => {
                Class::Guarded
            }
            E::NotOnDenyList { .. }
            | E::NoInterface { .. }
            | E::NotManaged { .. }
            | E::NotFleet => Class::NotFound,
            E::Store(s) => store_class(s),
            E::DeployFailed { .. }
            | E::CommitFailed { .. }
            | E::GrowFailed { .. }
            | E::Attach { .. }
            | E::Backup { .. }
            | E::RateHostUnreadable { .. }
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
        | StoreError::NoListing { .. }
        | StoreError::NotPending { .. }
        | StoreError::NoRevision { .. }
        | StoreError::NoFeed { .. }
        | StoreError::NoNode { .. } => Class::NotFound,
        StoreError::Conflict { .. }
        | StoreError::FeedExists { .. }
        | StoreError::NodeLive { .. } => Class::Conflict,
        // The daemon answers; the fleet's database does not.
        StoreError::FleetUnavailable { .. }
        | StoreError::FleetUntrusted { .. }
        | StoreError::FleetConnectionLost => Class::Unavailable,
        _ => Class::Failure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Target;

    fn class(e: CoreError) -> Class {
        ApiError::from(e).class
    }

    #[test]
    fn host_bits_are_refused_as_force_passes_them_and_other_bad_targets_are_invalid() {
        let host_bits = Target::parse("203.0.113.77/24").unwrap_err();
        let e = ApiError::from(CoreError::Target(host_bits));
        assert_eq!((e.class, e.class.http_status()), (Class::Guarded, 422));
        assert!(e.message.contains("did you mean"), "{}", e.message);
        let bad = Target::parse("01.2.3.4").unwrap_err();
        assert_eq!(class(CoreError::Target(bad)), Class::Invalid);
    }

    #[test]
    fn store_errors_keep_their_class_and_an_unreadable_host_fails_closed() {
        let missing = StoreError::NoRevision { rev: 9 };
        assert_eq!(class(missing.into()), Class::NotFound);
        let conflict = StoreError::Conflict { count: 2 };
        assert_eq!(class(conflict.into()), Class::Conflict);
        let unreadable = CoreError::GuardUnavailable {
            what: "the live TCP sessions",
            source: std::io::Error::from_raw_os_error(libc::EACCES),
        };
        assert_eq!(class(unreadable), Class::Guarded);
    }
}
