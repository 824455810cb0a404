//! Error classes: one class, one CLI exit code, one HTTP status.
//!
//! | class | CLI exit | HTTP |
//! |---|---|---|
//! | failure | 1 | 500 (the client's "cannot reach denylistd" is class unavailable, 503) |
//! | invalid input or usage | 2 | 400 (413 if too large) |
//! | refused by a guardrail | 3 | 422 |
//! | permission denied | 4 | 403 |
//! | not found | 5 | 404 |
//! | conflict | 6 | 409 |
//! | rate limited | 7 | 429 |

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Failure,
    Unavailable,
    Invalid,
    TooLarge,
    Guarded,
    Forbidden,
    NotFound,
    Conflict,
    RateLimited,
}

impl Class {
    /// Every class, for tables and the tests that check them.
    pub const ALL: [Class; 9] = [
        Class::Failure,
        Class::Unavailable,
        Class::Invalid,
        Class::TooLarge,
        Class::Guarded,
        Class::Forbidden,
        Class::NotFound,
        Class::Conflict,
        Class::RateLimited,
    ];

    pub fn http_status(self) -> u16 {
        match self {
            Class::Failure => 500,
            Class::Unavailable => 503,
            Class::Invalid => 400,
            Class::TooLarge => 413,
            Class::Guarded => 422,
            Class::Forbidden => 403,
            Class::NotFound => 404,
            Class::Conflict => 409,
            Class::RateLimited => 429,
        }
    }

    pub fn exit_code(self) -> i32 {
        match self {
            Class::Failure | Class::Unavailable => 1,
            Class::Invalid | Class::TooLarge => 2,
            Class::Guarded => 3,
            Class::Forbidden => 4,
            Class::NotFound => 5,
            Class::Conflict => 6,
            Class::RateLimited => 7,
        }
    }

    pub fn from_status(status: u16) -> Self {
        match status {
            400 => Class::Invalid,
            413 => Class::TooLarge,
            422 => Class::Guarded,
            403 => Class::Forbidden,
            404 => Class::NotFound,
            409 => Class::Conflict,
            429 => Class::RateLimited,
            503 => Class::Unavailable,
            _ => Class::Failure,
        }
    }
}

/// An error as the API returns it: `{"error": {"class", "message", "details"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[error("{message}")]
pub struct ApiError {
    pub class: Class,
    pub message: String,
    /// Per-item reasons, e.g. each refused target or invalid line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(class: Class, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Class::Invalid, message)
    }

    pub fn failure(message: impl Into<String>) -> Self {
        Self::new(Class::Failure, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_maps_to_one_status_and_back() {
        for c in Class::ALL {
            assert_eq!(Class::from_status(c.http_status()), c);
        }
        assert_eq!(Class::Guarded.exit_code(), 3);
        assert_eq!(Class::Conflict.exit_code(), 6);
    }
}
