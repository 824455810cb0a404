//! Who is on the other end of the socket, and what they may do.
//!
//! The socket is mode 0666, like Docker's: any local user can connect, and
//! every request is authorized from the peer's SO_PEERCRED credentials.
//! Group membership is looked up on every request (getgrouplist), so taking
//! a user out of a group takes effect on their next request.

use std::ffi::CString;

use nix::unistd::{Gid, Group, Uid, User, getgrouplist};

/// What a peer may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// May not even read.
    None,
    /// May only report abusive addresses, and read its own reports.
    Reporter,
    /// May read.
    Viewer,
    /// May read and change.
    Admin,
}

/// The peer of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub pid: Option<i32>,
    pub role: Role,
    /// A member of the reporter group, whatever its role: viewers may not
    /// report unless they are also reporters.
    pub reporter: bool,
    /// A member of the web group: it may act on behalf of web users.
    /// Looked up only for a request that names a web user.
    pub web: bool,
    /// For the audit log: `alice`, or `alice (as root)` under sudo.
    pub user: String,
}

/// The groups that give roles.
#[derive(Debug, Clone)]
pub struct Groups {
    pub admin: String,
    pub viewer: String,
    pub reporter: String,
    /// Members may act on behalf of web users.
    pub web: String,
}

/// The user name of `uid`, or the number when it has none.
pub fn user_name(uid: u32) -> String {
    passwd(uid).map_or_else(|| uid.to_string(), |(name, _)| name)
}

// nix grows its buffers until the entry fits (up to 1 MiB): a group of
// thousands of members, as LDAP or SSSD serve them, does not fit the 16 KiB
// a fixed buffer gives, and would deny every non-root user.
fn passwd(uid: u32) -> Option<(String, u32)> {
    let user = User::from_uid(Uid::from_raw(uid)).ok()??;
    Some((user.name, user.gid.as_raw()))
}

fn group_id(name: &str) -> Option<u32> {
    Some(Group::from_name(name).ok()??.gid.as_raw())
}

/// The groups of `user` (primary `gid` included), read afresh from the
/// group database.
fn groups(user: &str, gid: u32) -> Vec<u32> {
    let Ok(c) = CString::new(user) else {
        return vec![gid];
    };
    match getgrouplist(&c, Gid::from_raw(gid)) {
        Ok(groups) => groups.into_iter().map(Gid::as_raw).collect(),
        Err(e) => {
            tracing::warn!(%user, "cannot read the groups of {user}: {e}; only its primary group counts");
            vec![gid]
        }
    }
}

/// The login uid of a process (`/proc/PID/loginuid`): who logged in, even
/// through sudo. Unset is 4294967295.
fn login_uid(pid: i32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/loginuid")).ok()?;
    let uid: u32 = s.trim().parse().ok()?;
    (uid != u32::MAX).then_some(uid)
}

/// Authorizes a peer: uid 0 and members of the admin group are admins,
/// members of the viewer group viewers, members of the reporter group
/// reporters, anyone else nothing. Membership of the web group gives no
/// role of its own; it is read only when the request names a web user
/// (`behalf`), and root's groups only then, since root is an admin anyway.
pub fn authorize(uid: u32, pid: Option<i32>, g: &Groups, behalf: bool) -> Peer {
    let (name, gid) = passwd(uid).unwrap_or_else(|| (uid.to_string(), u32::MAX));
    let mine = if uid != 0 || behalf {
        groups(&name, gid)
    } else {
        Vec::new()
    };
    let member = |g: &str| group_id(g).is_some_and(|g| mine.contains(&g));
    let web = behalf && member(&g.web);
    let (role, reporter) = if uid == 0 {
        (Role::Admin, false)
    } else {
        let reporter = member(&g.reporter);
        let role = if member(&g.admin) {
            Role::Admin
        } else if member(&g.viewer) {
            Role::Viewer
        } else if reporter {
            Role::Reporter
        } else {
            Role::None
        };
        (role, reporter)
    };
    let user = match pid.and_then(login_uid) {
        Some(login) if login != uid => format!("{} (as {name})", user_name(login)),
        _ => name,
    };
    Peer {
        uid,
        pid,
        role,
        reporter,
        web,
        user,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups() -> Groups {
        Groups {
            admin: "denylist-admin".into(),
            viewer: "denylist".into(),
            reporter: "denylist-reporter".into(),
            web: "denylist-web".into(),
        }
    }

    #[test]
    fn root_is_admin_and_named() {
        let p = authorize(0, None, &groups(), false);
        assert_eq!(p.role, Role::Admin);
        assert_eq!(p.user, "root");
    }

    #[test]
    fn unknown_users_get_nothing() {
        let p = authorize(4_000_000, None, &groups(), false);
        assert_eq!(p.role, Role::None);
        assert_eq!(p.user, "4000000");
    }

    #[test]
    fn sudo_records_the_login_user() {
        // Our own process: its loginuid, when set and not ours, shows up.
        let me = std::process::id() as i32;
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        let p = authorize(uid, Some(me), &groups(), false);
        match login_uid(me) {
            Some(login) if login != uid => assert!(p.user.contains(" (as "), "{}", p.user),
            _ => assert_eq!(p.user, user_name(uid)),
        }
    }
}
