//! Who is on the other end of the socket, and what they may do.
//!
//! The socket is mode 0666, like Docker's: any local user can connect, and
//! every request is authorized from the peer's SO_PEERCRED credentials.
//! Group membership is looked up on every request (getgrouplist), so taking
//! a user out of a group takes effect on their next request.

use std::ffi::{CStr, CString};

/// What a peer may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// May not even read.
    None,
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
    /// For the audit log: `alice`, or `alice (as root)` under sudo.
    pub user: String,
}

/// The user name of `uid`, or the number when it has none.
pub fn user_name(uid: u32) -> String {
    passwd(uid).map_or_else(|| uid.to_string(), |(name, _)| name)
}

fn passwd(uid: u32) -> Option<(String, u32)> {
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: zeroed passwd is a valid out-struct; buf outlives the call.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer refers to a live local; buf's length is passed.
    let rc =
        unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() {
        return None;
    }
    // SAFETY: pw_name points into buf, NUL-terminated by libc.
    let name = unsafe { CStr::from_ptr(pw.pw_name) }
        .to_string_lossy()
        .into_owned();
    Some((name, pw.pw_gid))
}

fn group_id(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: as in passwd.
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in passwd.
    let rc = unsafe {
        libc::getgrnam_r(
            c.as_ptr(),
            &mut gr,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut out,
        )
    };
    (rc == 0 && !out.is_null()).then_some(gr.gr_gid)
}

/// The groups of `user` (primary `gid` included), read afresh from the
/// group database.
fn groups(user: &str, gid: u32) -> Vec<u32> {
    let Ok(c) = CString::new(user) else {
        return vec![gid];
    };
    let mut n: libc::c_int = 64;
    loop {
        let mut groups = vec![0 as libc::gid_t; n as usize];
        // SAFETY: groups has room for n entries; n is updated on return.
        let rc = unsafe { libc::getgrouplist(c.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
        if rc >= 0 {
            groups.truncate(n as usize);
            return groups;
        }
        if n as usize <= groups.len() {
            n *= 2;
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

/// Authorizes a peer: uid 0 and members of `admin_group` are admins,
/// members of `viewer_group` viewers, anyone else nothing.
pub fn authorize(uid: u32, pid: Option<i32>, admin_group: &str, viewer_group: &str) -> Peer {
    let (name, gid) = passwd(uid).unwrap_or_else(|| (uid.to_string(), u32::MAX));
    let role = if uid == 0 {
        Role::Admin
    } else {
        let mine = groups(&name, gid);
        let member = |g: &str| group_id(g).is_some_and(|g| mine.contains(&g));
        if member(admin_group) {
            Role::Admin
        } else if member(viewer_group) {
            Role::Viewer
        } else {
            Role::None
        }
    };
    let user = match pid.and_then(login_uid) {
        Some(login) if login != uid => format!("{} (as {name})", user_name(login)),
        _ => name,
    };
    Peer {
        uid,
        pid,
        role,
        user,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_admin_and_named() {
        let p = authorize(0, None, "denylist-admin", "denylist");
        assert_eq!(p.role, Role::Admin);
        assert_eq!(p.user, "root");
    }

    #[test]
    fn unknown_users_get_nothing() {
        let p = authorize(4_000_000, None, "denylist-admin", "denylist");
        assert_eq!(p.role, Role::None);
        assert_eq!(p.user, "4000000");
    }

    #[test]
    fn sudo_records_the_login_user() {
        // Our own process: its loginuid, when set and not ours, shows up.
        let me = std::process::id() as i32;
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        let p = authorize(uid, Some(me), "denylist-admin", "denylist");
        match login_uid(me) {
            Some(login) if login != uid => assert!(p.user.contains(" (as "), "{}", p.user),
            _ => assert_eq!(p.user, user_name(uid)),
        }
    }
}
