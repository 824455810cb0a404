//! `denylist-web user add|passwd|remove|list`: edits the accounts file.
//! Run as root, it keeps the file's owner: the file is rewritten through a
//! temporary file beside it, in /etc/denylist, which only root may write
//! (docs/web.md).

use std::{
    io::{BufRead, IsTerminal as _},
    path::Path,
};

use super::{args::UserCommand, error::UserCmdError, users::Users};

/// Where a password comes from: a prompt on a terminal (asked twice), or
/// the first line of stdin for scripts.
pub fn read_password() -> Result<String, UserCmdError> {
    let io = |source| UserCmdError::Password { source };
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").map_err(io)?;
        let again = rpassword::prompt_password("Again: ").map_err(io)?;
        if first != again {
            return Err(UserCmdError::Mismatch);
        }
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(io)?;
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }
}

/// Runs a `user` command on the file at `path`; the answer is what to
/// print. `password` is asked only when the command sets one.
pub fn user(
    cmd: &UserCommand,
    path: &Path,
    password: impl FnOnce() -> Result<String, UserCmdError>,
) -> Result<String, UserCmdError> {
    let ask = |no_password: bool| -> Result<Option<String>, UserCmdError> {
        if no_password {
            return Ok(None);
        }
        let p = password()?;
        if p.is_empty() {
            return Err(UserCmdError::Empty);
        }
        Ok(Some(p))
    };
    match cmd {
        UserCommand::Add {
            name,
            role,
            no_password,
        } => {
            let mut users = Users::load_or_empty(path)?;
            // The name is checked before a password is asked for.
            if users.get(name).is_some() {
                return Err(super::error::UsersError::Exists { name: name.clone() }.into());
            }
            let pw = ask(*no_password)?;
            users.add(name, *role, pw.as_deref())?;
            users.save(path)?;
            Ok(format!("added {name} ({role})"))
        }
        UserCommand::Passwd { name, no_password } => {
            let mut users = Users::load(path)?;
            if users.get(name).is_none() {
                return Err(super::error::UsersError::Unknown { name: name.clone() }.into());
            }
            let pw = ask(*no_password)?;
            users.set_password(name, pw.as_deref())?;
            users.save(path)?;
            Ok(format!("changed the password of {name}"))
        }
        UserCommand::Remove { name } => {
            let mut users = Users::load(path)?;
            users.remove(name)?;
            users.save(path)?;
            Ok(format!("removed {name}"))
        }
        UserCommand::List => {
            let users = Users::load(path)?;
            let lines: Vec<String> = users
                .users
                .iter()
                .map(|(name, a)| {
                    let how = if a.password.is_some() {
                        "password"
                    } else {
                        "proxy only"
                    };
                    format!("{name}\t{}\t{how}", a.role)
                })
                .collect();
            Ok(lines.join("\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::{testing::TempDir, users::Role};

    #[test]
    fn add_passwd_list_remove() {
        let d = TempDir::new();
        let path = d.path().join("web-users.toml");
        let add = |name: &str, role, no_password| UserCommand::Add {
            name: name.into(),
            role,
            no_password,
        };
        user(&add("alice", Role::Admin, false), &path, || Ok("pw".into())).unwrap();
        user(&add("sso", Role::Viewer, true), &path, || {
            panic!("no password asked")
        })
        .unwrap();
        let e = user(&add("alice", Role::Viewer, false), &path, || {
            panic!("asked")
        })
        .unwrap_err();
        assert!(e.to_string().contains("already"), "{e}");
        let e = user(
            &add("bob", Role::Viewer, false),
            &path,
            || Ok(String::new()),
        )
        .unwrap_err();
        assert!(matches!(e, UserCmdError::Empty));

        let listed = user(&UserCommand::List, &path, || panic!("asked")).unwrap();
        assert_eq!(listed, "alice\tadmin\tpassword\nsso\tviewer\tproxy only");

        let passwd = UserCommand::Passwd {
            name: "sso".into(),
            no_password: false,
        };
        user(&passwd, &path, || Ok("new".into())).unwrap();
        let users = Users::load(&path).unwrap();
        assert!(users.get("sso").unwrap().password.is_some());

        user(
            &UserCommand::Remove {
                name: "alice".into(),
            },
            &path,
            || panic!("asked"),
        )
        .unwrap();
        let listed = user(&UserCommand::List, &path, || panic!("asked")).unwrap();
        assert_eq!(listed, "sso\tviewer\tpassword");
    }
}
