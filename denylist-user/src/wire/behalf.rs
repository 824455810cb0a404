//! Acting on behalf of a web user: the web console is one peer of the
//! socket that serves many people, so it names the person and their role
//! in two headers, and the daemon audits the person instead of the
//! console's own Unix user (docs/api.md, "On behalf of a web user").

use serde::{Deserialize, Serialize};

/// The web user a request acts for; sent together with [`ROLE_HEADER`].
pub const ON_BEHALF_HEADER: &str = "Denylist-On-Behalf-Of";

/// The web user's role, `admin` or `viewer`; the daemon caps it at its
/// `--web-max-role`.
pub const ROLE_HEADER: &str = "Denylist-Role";

/// The longest web user name: what `useradd` takes, so a name can be an
/// account's name on the host too.
pub const WEB_USER_MAX: usize = 32;

/// A web user's role.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum WebRole {
    /// May read only.
    Viewer,
    /// May read and change.
    Admin,
}

impl WebRole {
    /// The header's value.
    pub fn as_str(self) -> &'static str {
        match self {
            WebRole::Viewer => "viewer",
            WebRole::Admin => "admin",
        }
    }
}

impl std::fmt::Display for WebRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid role {value:?}: use admin or viewer")]
pub struct WebRoleError {
    pub value: String,
}

impl std::str::FromStr for WebRole {
    type Err = WebRoleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(WebRole::Admin),
            "viewer" => Ok(WebRole::Viewer),
            _ => Err(WebRoleError { value: s.into() }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid web user name {name:?}: use 1 to 32 characters of a-z, 0-9, _, . and -, \
     starting with a letter or _"
)]
pub struct WebUserError {
    pub name: String,
}

/// A web user's name, `[a-z_][a-z0-9_.-]{0,31}`: it goes into the audit
/// log as `NAME (web)`, so it may not hold what would let it pass for
/// another actor (spaces, parentheses, look-alike letters).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WebUser(String);

impl WebUser {
    pub fn parse(name: &str) -> Result<Self, WebUserError> {
        if web_user_name_ok(name) {
            Ok(Self(name.to_string()))
        } else {
            Err(WebUserError { name: name.into() })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Who the audit log and `added_by` name: `NAME (web)`.
    pub fn actor(&self) -> String {
        format!("{} (web)", self.0)
    }
}

impl std::fmt::Display for WebUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for WebUser {
    type Error = WebUserError;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        Self::parse(&name)
    }
}

impl From<WebUser> for String {
    fn from(u: WebUser) -> Self {
        u.0
    }
}

impl std::str::FromStr for WebUser {
    type Err = WebUserError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Whether `name` matches `[a-z_][a-z0-9_.-]{0,31}`.
pub fn web_user_name_ok(name: &str) -> bool {
    let mut bytes = name.bytes();
    let Some(first) = bytes.next() else {
        return false;
    };
    name.len() <= WEB_USER_MAX
        && (first.is_ascii_lowercase() || first == b'_')
        && bytes.all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_pattern_and_nothing_else() {
        let longest = "a".repeat(32);
        for ok in ["alice", "_svc", "a", "bob.smith-2", "x_1", &longest] {
            assert!(web_user_name_ok(ok), "{ok}");
        }
        let too_long = "a".repeat(33);
        for bad in [
            "",
            "Alice",
            "1alice",
            "-alice",
            ".alice",
            "al ice",
            "alice (web)",
            "root\n",
            "ålice",
            &too_long,
        ] {
            assert!(!web_user_name_ok(bad), "{bad:?}");
            assert!(WebUser::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(WebUser::parse("alice").unwrap().actor(), "alice (web)");
    }

    #[test]
    fn roles_parse_order_and_serialize_as_the_header_says() {
        assert_eq!("admin".parse::<WebRole>(), Ok(WebRole::Admin));
        assert_eq!("viewer".parse::<WebRole>(), Ok(WebRole::Viewer));
        assert!("Admin".parse::<WebRole>().is_err());
        assert_eq!(WebRole::Admin.min(WebRole::Viewer), WebRole::Viewer);
        assert_eq!(serde_json::to_value(WebRole::Viewer).unwrap(), "viewer");
        let u: WebUser = serde_json::from_value("bob".into()).unwrap();
        assert_eq!(u.as_str(), "bob");
        assert!(serde_json::from_value::<WebUser>("Bob".into()).is_err());
    }
}
