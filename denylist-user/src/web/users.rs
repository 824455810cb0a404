//! The accounts file (`--users`, default /etc/denylist/web-users.toml):
//! each account's role and its argon2id password hash, or no password for
//! an account that signs in through a proxy. It holds hashes that are
//! worth cracking offline, so it is read only while no one but its owner
//! may read or write it.

use std::{
    collections::BTreeMap,
    fs::{self, OpenOptions},
    io::Write as _,
    os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use argon2::{
    Argon2, PasswordHash, PasswordHasher as _, PasswordVerifier as _, password_hash::SaltString,
};
use serde::{Deserialize, Serialize};

use super::error::UsersError;
/// What a web user may do. The daemon is told it with every request
/// (`Denylist-Role`) and enforces it; the console only hides controls.
pub use crate::wire::WebRole as Role;
use crate::wire::web_user_name_ok;

/// Where the accounts live unless `--users` says otherwise.
pub const DEFAULT_USERS: &str = "/etc/denylist/web-users.toml";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub role: Role,
    /// An argon2id PHC string; absent for an account that only a proxy
    /// may sign in (`--auth proxy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// The accounts, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Users {
    #[serde(default)]
    pub users: BTreeMap<String, Account>,
}

/// Whether `name` is a user name the daemon takes on behalf of a web user:
/// `[a-z_][a-z0-9_.-]{0,31}`, so it is safe in a header and an audit line.
pub fn valid_name(name: &str) -> bool {
    web_user_name_ok(name)
}

impl Users {
    /// Reads the file, refusing one that its group or others may read or
    /// write.
    pub fn load(path: &Path) -> Result<Users, UsersError> {
        let meta = fs::metadata(path).map_err(|source| UsersError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(UsersError::Mode {
                path: path.to_path_buf(),
                mode,
            });
        }
        let text = fs::read_to_string(path).map_err(|source| UsersError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let users: Users = toml::from_str(&text).map_err(|source| UsersError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        if let Some(bad) = users.users.keys().find(|n| !valid_name(n)) {
            return Err(UsersError::InvalidName { name: bad.clone() });
        }
        Ok(users)
    }

    /// Reads the file, or starts an empty one if there is none yet (the
    /// first `user add`).
    pub fn load_or_empty(path: &Path) -> Result<Users, UsersError> {
        match fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Users::default()),
            _ => Users::load(path),
        }
    }

    /// Writes the file whole through a temporary file in the same folder,
    /// so a reader sees the old file or the new one. The new file is mode
    /// 0600 and keeps the old one's owner, so root editing the web user's
    /// file does not lock the web user out of it.
    pub fn save(&self, path: &Path) -> Result<(), UsersError> {
        let write = |source| UsersError::Write {
            path: path.to_path_buf(),
            source,
        };
        let text = toml::to_string(self).map_err(|source| UsersError::Serialize { source })?;
        let tmp = temp_path(path);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(write)?;
        let written = (|| {
            file.write_all(b"# denylist-web accounts: manage them with `denylist-web user`.\n\n")?;
            file.write_all(text.as_bytes())?;
            if let Ok(old) = fs::metadata(path) {
                let new = file.metadata()?;
                if (old.uid(), old.gid()) != (new.uid(), new.gid()) {
                    std::os::unix::fs::fchown(&file, Some(old.uid()), Some(old.gid()))?;
                }
            }
            file.sync_all()?;
            fs::rename(&tmp, path)
        })();
        if let Err(e) = written {
            // Best effort: the error that matters is the write's.
            let _ = fs::remove_file(&tmp);
            return Err(write(e));
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Account> {
        self.users.get(name)
    }

    /// Adds an account; `password` is `None` for a proxy-only account.
    pub fn add(
        &mut self,
        name: &str,
        role: Role,
        password: Option<&str>,
    ) -> Result<(), UsersError> {
        if !valid_name(name) {
            return Err(UsersError::InvalidName {
                name: name.to_string(),
            });
        }
        if self.users.contains_key(name) {
            return Err(UsersError::Exists {
                name: name.to_string(),
            });
        }
        let password = password.map(hash_password).transpose()?;
        self.users
            .insert(name.to_string(), Account { role, password });
        Ok(())
    }

    pub fn set_password(&mut self, name: &str, password: Option<&str>) -> Result<(), UsersError> {
        let hash = password.map(hash_password).transpose()?;
        let account = self
            .users
            .get_mut(name)
            .ok_or_else(|| UsersError::Unknown {
                name: name.to_string(),
            })?;
        account.password = hash;
        Ok(())
    }

    pub fn remove(&mut self, name: &str) -> Result<(), UsersError> {
        self.users
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| UsersError::Unknown {
                name: name.to_string(),
            })
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

/// An argon2id hash with the crate's defaults (19 MiB, 2 passes), the
/// OWASP recommendation, and a random salt.
pub fn hash_password(password: &str) -> Result<String, UsersError> {
    let random: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&random).map_err(|e| UsersError::Hash {
        message: e.to_string(),
    })?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UsersError::Hash {
            message: e.to_string(),
        })
}

/// Checks passwords so that a wrong user name costs as much time as a
/// wrong password: an unknown name, or an account without a password, is
/// checked against a hash of a random password made at startup.
pub struct Verifier {
    dummy: String,
}

impl Verifier {
    pub fn new() -> Result<Verifier, UsersError> {
        let random: [u8; 16] = rand::random();
        let dummy = hash_password(&String::from_utf8_lossy(&random))?;
        Ok(Verifier { dummy })
    }

    /// The account's role if `password` is its password.
    pub fn verify(&self, account: Option<&Account>, password: &str) -> Option<Role> {
        let (hash, role) = match account {
            Some(Account {
                role,
                password: Some(hash),
            }) => (hash.as_str(), Some(*role)),
            _ => (self.dummy.as_str(), None),
        };
        let ok = PasswordHash::new(hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false);
        if ok { role } else { None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::testing::TempDir;

    #[test]
    fn names_follow_the_daemons_rule() {
        for good in ["alice", "_svc", "a.b-c_9", &"a".repeat(32)] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [
            "",
            "Alice",
            "9lives",
            "-x",
            "a b",
            "a:b",
            "é",
            &"a".repeat(33),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn saved_accounts_load_back_with_mode_0600_and_verify() {
        let d = TempDir::new();
        let path = d.path().join("users.toml");
        let mut users = Users::load_or_empty(&path).unwrap();
        users.add("alice", Role::Admin, Some("s3cret")).unwrap();
        users.add("sso", Role::Viewer, None).unwrap();
        assert!(matches!(
            users.add("alice", Role::Viewer, None),
            Err(UsersError::Exists { .. })
        ));
        users.save(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = Users::load(&path).unwrap();
        assert_eq!(back, users);
        let hash = back.get("alice").unwrap().password.clone().unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");

        let v = Verifier::new().unwrap();
        assert_eq!(v.verify(back.get("alice"), "s3cret"), Some(Role::Admin));
        assert_eq!(v.verify(back.get("alice"), "wrong"), None);
        // No password: no sign-in with any password, the empty one included.
        assert_eq!(v.verify(back.get("sso"), ""), None);
        assert_eq!(v.verify(None, "s3cret"), None);
    }

    #[test]
    fn a_file_others_may_read_is_refused() {
        let d = TempDir::new();
        let path = d.path().join("users.toml");
        Users::default().save(&path).unwrap();
        for mode in [0o640, 0o604, 0o620] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let e = Users::load(&path).unwrap_err();
            assert!(
                matches!(e, UsersError::Mode { mode: m, .. } if m == mode),
                "{e}"
            );
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        Users::load(&path).unwrap();
    }

    #[test]
    fn passwd_and_remove_need_an_existing_account() {
        let mut users = Users::default();
        assert!(matches!(
            users.set_password("bob", Some("x")),
            Err(UsersError::Unknown { .. })
        ));
        assert!(matches!(
            users.remove("bob"),
            Err(UsersError::Unknown { .. })
        ));
        assert!(matches!(
            users.add("Bob", Role::Admin, None),
            Err(UsersError::InvalidName { .. })
        ));
        users.add("bob", Role::Admin, None).unwrap();
        users.set_password("bob", Some("pw")).unwrap();
        assert!(users.get("bob").unwrap().password.is_some());
        users.remove("bob").unwrap();
        assert!(users.get("bob").is_none());
    }
}
