//! The web console, `denylist-web`: an unprivileged HTTP server that
//! signs users in and talks to denylistd only through the daemon's socket,
//! as a client of the same JSON API as the CLI, acting on behalf of each
//! user (`Denylist-On-Behalf-Of`, `Denylist-Role`). docs/web.md describes
//! setup, both ways of signing in and the security model.
//!
//! - `app`: state, router, security headers; `auth`: sessions, sign-in,
//!   the CSRF check; `pages` and `pending`: what users see.
//! - `users`, `sessions`, `throttle`, `csrf`, `proxy`: the security parts,
//!   each testable alone.
//! - `client`: the daemon's socket; `serve`: listeners, TLS, stopping.

mod app;
mod args;
mod assets;
mod auth;
#[cfg(test)]
mod auth_tests;
mod client;
mod csrf;
mod error;
mod form;
mod man;
mod pages;
mod pending;
mod proxy;
mod render;
mod serve;
mod sessions;
#[cfg(test)]
mod testing;
mod throttle;
mod usercmd;
mod users;
mod view;

use std::{
    future::Future,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use axum::http::HeaderName;

pub use app::{App, Auth, Config, router};
pub use args::{AuthMode, Cli, Command, ServeArgs, UserCommand};
pub use error::{StartError, UserCmdError, UsersError};
pub use man::{man_page, write_man_page};
pub use serve::{Listener, bind, run, tls};
pub use usercmd::{read_password, user};
pub use users::{Account, Role, Users, Verifier, hash_password, valid_name};

/// Reads a secret file, refusing one its group or others may read.
fn secret(path: &Path) -> Result<Vec<u8>, StartError> {
    let read = |source| StartError::ReadFile {
        what: "the proxy secret file",
        path: path.to_path_buf(),
        source,
    };
    let mode = std::fs::metadata(path).map_err(read)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(StartError::FileMode {
            what: "the proxy secret file",
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut bytes = std::fs::read(path).map_err(read)?;
    // `echo secret > file` leaves a newline the proxy does not send.
    while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Err(StartError::EmptySecret {
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

/// The console's configuration from its flags, checked: the accounts file
/// loads (and is private), proxy mode has its proof, TLS files load.
pub fn config(
    args: &ServeArgs,
    users: &Path,
) -> Result<(Config, Option<tokio_rustls::TlsAcceptor>), StartError> {
    Users::load(users)?;
    let auth = match args.auth {
        AuthMode::Local => Auth::Local,
        AuthMode::Proxy => {
            let header = HeaderName::try_from(args.proxy_header.as_str()).map_err(|source| {
                StartError::ProxyHeader {
                    name: args.proxy_header.clone(),
                    source,
                }
            })?;
            let proof = match (&args.proxy_secret_file, args.listen.starts_with("unix:")) {
                (Some(file), _) => proxy::Proof::Secret(secret(file)?),
                (None, true) => proxy::Proof::UnixSocket,
                (None, false) => return Err(StartError::ProxyWithoutProof),
            };
            Auth::Proxy { header, proof }
        }
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls(cert, key)?),
        (None, None) => None,
        _ => return Err(StartError::TlsHalf),
    };
    Ok((
        Config {
            socket: args.socket.clone(),
            users: PathBuf::from(users),
            auth,
            session_max: args.session_max,
            session_idle: args.session_idle,
            tls: tls.is_some(),
        },
        tls,
    ))
}

/// The whole console: checks the configuration, binds `--listen`, calls
/// `ready` (the unit's READY=1: browsers can connect from then on), and
/// serves until `shutdown` resolves.
pub async fn serve(
    args: &ServeArgs,
    users: &Path,
    ready: impl FnOnce(),
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let (config, tls) = config(args, users)?;
    let verifier = Verifier::new()?;
    let listener = bind(&args.listen, tls, args.listen_group.as_deref()).await?;
    tracing::info!(
        "denylist-web serving on {}, denylistd at {}",
        listener.describe(),
        config.socket.display()
    );
    ready();
    run(router(App::new(config, verifier)), listener, shutdown).await;
    Ok(())
}
