//! The console's errors: the accounts file's, and what stops it starting.
//! A daemon's refusal is a `wire::ApiError`, rendered as a page.

use std::path::PathBuf;

use tokio_rustls::rustls;

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("cannot read the accounts file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the accounts file {} has mode {mode:04o}: its group or others may read or write it; \
         run chmod 600 on it",
        path.display()
    )]
    Mode { path: PathBuf, mode: u32 },
    #[error("the accounts file {} is not valid: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("cannot write the accounts file {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the accounts: {source}")]
    Serialize {
        #[source]
        source: toml::ser::Error,
    },
    #[error("{name:?} is not a valid user name: use [a-z_][a-z0-9_.-]{{0,31}}")]
    InvalidName { name: String },
    #[error("there is already an account {name:?}")]
    Exists { name: String },
    #[error("there is no account {name:?}")]
    Unknown { name: String },
    #[error("cannot hash the password: {message}")]
    Hash { message: String },
}

/// Why `denylist-web` cannot start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Users(#[from] UsersError),
    #[error("cannot read {what} {}: {source}", path.display())]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {} has mode {mode:04o}: its group or others may read it; run chmod 600 on it", path.display())]
    FileMode {
        what: &'static str,
        path: PathBuf,
        mode: u32,
    },
    #[error("the proxy secret in {} is empty", path.display())]
    EmptySecret { path: PathBuf },
    #[error(
        "--auth proxy over TCP needs --proxy-secret-file: without a secret any local user \
         could send the user header; or listen on unix:PATH"
    )]
    ProxyWithoutProof,
    #[error("invalid --proxy-header {name:?}: {source}")]
    ProxyHeader {
        name: String,
        #[source]
        source: axum::http::header::InvalidHeaderName,
    },
    #[error("--tls-cert and --tls-key go together")]
    TlsHalf,
    #[error("cannot load the TLS certificate or key: {source}")]
    TlsPem {
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("the TLS certificate and key do not make a server configuration: {source}")]
    Tls {
        #[source]
        source: rustls::Error,
    },
    #[error("invalid --listen {value:?}: use HOST:PORT or unix:PATH")]
    Listen { value: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("there is no group {name:?}")]
    NoGroup { name: String },
    #[error("cannot give {} to group {group}: {source}", path.display())]
    Chown {
        path: PathBuf,
        group: String,
        #[source]
        source: std::io::Error,
    },
}

/// Why a `denylist-web user` command failed.
#[derive(Debug, thiserror::Error)]
pub enum UserCmdError {
    #[error(transparent)]
    Users(#[from] UsersError),
    #[error("cannot read the password: {source}")]
    Password {
        #[source]
        source: std::io::Error,
    },
    #[error("the passwords do not match")]
    Mismatch,
    #[error("the password is empty: give one, or use --no-password for a proxy-only account")]
    Empty,
}
