//! Fleet mode's options (`--store`, `--store-password-file`, `--node`) and
//! the database connections they make (docs/fleet.md).

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    str::FromStr as _,
    sync::Arc,
};

use postgres::{Client, config::SslMode, fallible_iterator::FallibleIterator as _};
use rustls_platform_verifier::BuilderVerifierExt as _;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::{Announced, Connect, FleetStore, LOG_CHANNEL, StoreError, deploy_announced};

/// How long one wait for a notification blocks: the longest a shutdown
/// waits for the follower.
const SLICE: std::time::Duration = std::time::Duration::from_millis(500);

/// How long a connection to the database may take to open.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long data sent to the database may go unacknowledged before the
/// connection counts as broken (`TCP_USER_TIMEOUT`).
const UNACKED_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
/// How long an idle connection (the listener's) waits before probing that
/// the database is still there.
const KEEPALIVE_IDLE: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("--store {url:?} is not a postgres:// or postgresql:// URL")]
    NotPostgres { url: String },
    #[error("--store {url:?} cannot be read: {source}")]
    BadUrl {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "--store carries a password, which would show in process listings and logs: put it in a file of mode 0600 and name it with --store-password-file (or in PGPASSFILE)"
    )]
    PasswordInUrl,
    #[error(
        "--store asks for sslmode={mode:?}: use disable, prefer, require, verify-ca or verify-full (docs/fleet.md recommends verify-full)"
    )]
    SslMode { mode: String },
    #[error("cannot read the password file {path}: {source}")]
    PasswordFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the password file {path} has mode {mode:04o}: others may read it, so it is refused; chmod 0600 it"
    )]
    PasswordFileOpen { path: PathBuf, mode: u32 },
    #[error("cannot read the CA certificates in {path} (sslrootcert): {detail}")]
    RootCert { path: PathBuf, detail: String },
    #[error("cannot set up TLS to the fleet database: {0}")]
    Tls(#[source] rustls::Error),
    #[error("cannot read this host's name for --node; give one: {0}")]
    HostName(#[source] std::io::Error),
    #[error("--node {node:?} is not a node name: use 1 to 63 letters, digits, '-', '_' or '.'")]
    NodeName { node: String },
    #[error(
        "a denylistd answers on {socket}: stop it first (systemctl stop denylistd), or it would go on writing to the store being moved"
    )]
    DaemonRunning { socket: PathBuf },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where the fleet's database is and who this node is in it.
#[derive(Clone)]
pub struct FleetConfig {
    /// The URL as given (it holds no password), for messages.
    pub url: String,
    pub node: String,
    pg: postgres::Config,
    password_file: Option<PathBuf>,
    /// libpq's password file, when no `--store-password-file` is given.
    passfile: Option<PathBuf>,
    /// None for sslmode=disable.
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for FleetConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetConfig")
            .field("url", &self.url)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl FleetConfig {
    /// Reads the options. The password file is read at each connection,
    /// so a rotated password needs no restart; [`FleetConfig::check`]
    /// tries it once at the start.
    pub fn new(
        url: &str,
        password_file: Option<&Path>,
        node: Option<String>,
    ) -> Result<Self, FleetError> {
        let bad = |source: Box<dyn std::error::Error + Send + Sync>| FleetError::BadUrl {
            url: url.to_string(),
            source,
        };
        let mut parsed = url::Url::parse(url).map_err(|e| bad(Box::new(e)))?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(FleetError::NotPostgres {
                url: url.to_string(),
            });
        }
        if parsed.password().is_some() {
            return Err(FleetError::PasswordInUrl);
        }
        // libpq's TLS keys are ours to apply: rust-postgres knows neither
        // verify-full nor sslrootcert.
        let (mut sslmode, mut rootcert) = ("prefer".to_string(), None);
        let kept: Vec<(String, String)> = parsed
            .query_pairs()
            .filter_map(|(k, v)| match &*k {
                "sslmode" => {
                    sslmode = v.into_owned();
                    None
                }
                "sslrootcert" => {
                    rootcert = Some(PathBuf::from(&*v));
                    None
                }
                _ => Some((k.into_owned(), v.into_owned())),
            })
            .collect();
        parsed.set_query(None);
        if !kept.is_empty() {
            parsed.query_pairs_mut().extend_pairs(kept);
        }
        let mut pg = postgres::Config::from_str(parsed.as_str()).map_err(|e| bad(Box::new(e)))?;
        // Every TLS connection verifies the server's chain and its name
        // (rustls offers no weaker check), so require, verify-ca and
        // verify-full all get verify-full's check.
        let mode = match sslmode.as_str() {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" | "verify-ca" | "verify-full" => SslMode::Require,
            _ => return Err(FleetError::SslMode { mode: sslmode }),
        };
        pg.ssl_mode(mode);
        // A database host that vanished (rather than one that refuses)
        // must not hold a change, and the daemon's lock behind it, for the
        // kernel's minutes of TCP retries: the change fails as
        // unavailable instead, and reads go on from the local copy. The
        // URL's own `connect_timeout` stands.
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(CONNECT_TIMEOUT);
        }
        pg.tcp_user_timeout(UNACKED_TIMEOUT);
        pg.keepalives_idle(KEEPALIVE_IDLE);
        let tls = match mode {
            SslMode::Disable => None,
            _ => Some(Arc::new(tls_config(rootcert.as_deref())?)),
        };
        let node = match node {
            Some(n) => n,
            None => nix::unistd::gethostname()
                .map_err(|e| FleetError::HostName(e.into()))?
                .to_string_lossy()
                .into_owned(),
        };
        if node.is_empty()
            || node.len() > 63
            || !node
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(FleetError::NodeName { node });
        }
        Ok(FleetConfig {
            url: url.to_string(),
            node,
            pg,
            password_file: password_file.map(Path::to_path_buf),
            passfile: None,
            tls,
        })
    }

    /// Takes the password from libpq's password file `path` (the one
    /// `PGPASSFILE` names, else `~/.pgpass`) when no password file was
    /// given.
    pub fn with_passfile(mut self, path: Option<PathBuf>) -> Self {
        if self.password_file.is_none() {
            self.passfile = path;
        }
        self
    }

    /// Refuses a password file that cannot be read, or that others may.
    pub fn check(&self) -> Result<(), FleetError> {
        match (&self.password_file, &self.passfile) {
            (Some(path), _) => read_password(path).map(drop),
            (None, Some(path)) => read_private(path).map(drop),
            (None, None) => Ok(()),
        }
    }

    /// Creates the fleet's tables, or checks those the database has
    /// (`denylistd --init-fleet`, as the database's owner).
    pub fn init(&self) -> Result<(), StoreError> {
        let mut client = (self.connector())()?;
        crate::store::migrate(&mut client)
    }

    /// Moves this host's store under `state_dir` into the empty fleet
    /// (`denylistd --move-to-fleet`); returns the snapshot's size. The
    /// daemon must be stopped: one serving `socket` would go on writing
    /// to the store the fleet no longer follows.
    pub fn move_into(&self, state_dir: &Path, socket: &Path) -> Result<u64, FleetError> {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Err(FleetError::DaemonRunning {
                socket: socket.to_path_buf(),
            });
        }
        Ok(FleetStore::move_into(state_dir, self.connector())?)
    }

    /// A connection of its own that waits for new log entries.
    pub fn listener(&self) -> FleetListener {
        FleetListener {
            connect: self.connector(),
            client: None,
            node: self.node.clone(),
        }
    }

    /// Opens connections to the database, each with the password as the
    /// file holds it then.
    pub fn connector(&self) -> Connect {
        let (pg, file, passfile, tls) = (
            self.pg.clone(),
            self.password_file.clone(),
            self.passfile.clone(),
            self.tls.clone(),
        );
        Box::new(move || {
            let mut pg = pg.clone();
            // Checked at the start; a file made unreadable since fails the
            // connection, and the node goes on from its copy.
            let password = match (&file, &passfile) {
                (Some(path), _) => read_password(path).ok(),
                (None, Some(path)) => read_private(path)
                    .ok()
                    .and_then(|text| super::pgpass::lookup(&text, &pg)),
                (None, None) => None,
            };
            if let Some(p) = password {
                pg.password(p);
            }
            match &tls {
                Some(tls) => pg.connect(MakeRustlsConnect::new((**tls).clone())),
                None => pg.connect(postgres::NoTls),
            }
        })
    }
}

/// A connection that listens on the fleet log's channel, made anew when it
/// breaks.
pub struct FleetListener {
    connect: Connect,
    client: Option<Client>,
    /// This node's name: its own announcements are not for it.
    node: String,
}

/// What woke a [`FleetListener`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Woken {
    /// The latest deploy another node announced.
    pub deploying: Option<Announced>,
}

impl Woken {
    fn note(&mut self, payload: &str, node: &str) {
        if let Some((by, deploy)) = deploy_announced(payload)
            && by != node
        {
            self.deploying = Some(deploy);
        }
    }
}

impl FleetListener {
    /// Waits up to [`SLICE`] for notifications, and takes every one that
    /// came: None when none did. Listening anew wakes at once: whatever was
    /// notified while the listener was away is lost, so the log is read
    /// now rather than at the next poll, up to 5 s after the database
    /// came back.
    pub fn wait(&mut self) -> Option<Woken> {
        let mut client = match self.client.take().filter(|c| !c.is_closed()) {
            Some(c) => c,
            None => {
                match self.listen() {
                    Some(c) => self.client = Some(c),
                    None => std::thread::sleep(SLICE),
                }
                return self.client.is_some().then(Woken::default);
            }
        };
        let first = client.notifications().timeout_iter(SLICE).next();
        let woken = match first {
            Ok(Some(n)) => {
                // One read covers every entry so far: what matters of the
                // others is a deploy announced.
                let mut w = Woken::default();
                w.note(n.payload(), &self.node);
                while let Ok(Some(n)) = client.notifications().iter().next() {
                    w.note(n.payload(), &self.node);
                }
                Some(w)
            }
            Ok(None) => None,
            Err(_) => return None,
        };
        self.client = Some(client);
        woken
    }

    fn listen(&mut self) -> Option<Client> {
        let mut client = (self.connect)().ok()?;
        client
            .batch_execute(&format!("LISTEN {LOG_CHANNEL}"))
            .ok()?;
        Some(client)
    }
}

/// The password in `path`, which only its owner may read.
fn read_password(path: &Path) -> Result<String, FleetError> {
    let text = read_private(path)?;
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

/// The text of `path`, which only its owner may read: libpq ignores a
/// password file others may read, and this refuses it, saying so.
fn read_private(path: &Path) -> Result<String, FleetError> {
    let err = |source| FleetError::PasswordFile {
        path: path.to_path_buf(),
        source,
    };
    let mode = fs::metadata(path).map_err(err)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(FleetError::PasswordFileOpen {
            path: path.to_path_buf(),
            mode: mode & 0o7777,
        });
    }
    fs::read_to_string(path).map_err(err)
}

/// TLS that verifies the server against `rootcert`'s CAs when given, else
/// against the host's own roots.
fn tls_config(rootcert: Option<&Path>) -> Result<rustls::ClientConfig, FleetError> {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(FleetError::Tls)?;
    let Some(path) = rootcert else {
        return Ok(builder
            .with_platform_verifier()
            .map_err(FleetError::Tls)?
            .with_no_client_auth());
    };
    use rustls_pki_types::{CertificateDer, pem::PemObject as _};
    let bad = |detail: String| FleetError::RootCert {
        path: path.to_path_buf(),
        detail,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
        roots
            .add(cert.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in it".into()));
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_file(mode: u32, text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("denylist-pw-{:016x}", rand::random::<u64>()));
        fs::write(&p, text).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn a_password_in_the_url_is_refused() {
        let err = FleetConfig::new("postgres://node:secret@db/denylist", None, Some("a".into()));
        assert!(matches!(err, Err(FleetError::PasswordInUrl)), "{err:?}");
    }

    #[test]
    fn only_postgres_urls_are_taken() {
        for url in ["mysql://db/denylist", "/var/lib/denylist"] {
            let err = FleetConfig::new(url, None, Some("a".into()));
            assert!(
                matches!(
                    err,
                    Err(FleetError::NotPostgres { .. } | FleetError::BadUrl { .. })
                ),
                "{url}: {err:?}"
            );
        }
    }

    #[test]
    fn sslmodes_map_to_verified_tls_or_none() {
        let c = FleetConfig::new(
            "postgres://node@db/denylist?sslmode=verify-full&application_name=d",
            None,
            Some("a".into()),
        )
        .unwrap();
        assert_eq!(c.pg.get_ssl_mode(), SslMode::Require);
        assert!(c.tls.is_some());
        assert_eq!(c.pg.get_application_name(), Some("d"));
        let c = FleetConfig::new(
            "postgres://node@db/d?sslmode=disable",
            None,
            Some("a".into()),
        )
        .unwrap();
        assert_eq!(c.pg.get_ssl_mode(), SslMode::Disable);
        assert!(c.tls.is_none());
        let c = FleetConfig::new("postgres://node@db/d", None, Some("a".into())).unwrap();
        assert_eq!(c.pg.get_ssl_mode(), SslMode::Prefer, "libpq's default");
        let err = FleetConfig::new("postgres://node@db/d?sslmode=allow", None, Some("a".into()));
        assert!(matches!(err, Err(FleetError::SslMode { .. })), "{err:?}");
    }

    #[test]
    fn the_password_file_must_be_private() {
        let open = tmp_file(0o644, "secret\n");
        let err = FleetConfig::new("postgres://node@db/d", Some(&open), Some("a".into()))
            .unwrap()
            .check();
        assert!(
            matches!(err, Err(FleetError::PasswordFileOpen { mode: 0o644, .. })),
            "{err:?}"
        );
        let private = tmp_file(0o600, "secret\n");
        let c = FleetConfig::new("postgres://node@db/d", Some(&private), Some("a".into())).unwrap();
        c.check().unwrap();
        assert_eq!(read_password(&private).unwrap(), "secret");
        let _ = fs::remove_file(open);
        let _ = fs::remove_file(private);
    }

    #[test]
    fn libpq_s_password_file_serves_when_no_password_file_is_given() {
        let open = tmp_file(0o644, "*:*:*:node:secret\n");
        let c = FleetConfig::new("postgres://node@db/d", None, Some("a".into()))
            .unwrap()
            .with_passfile(Some(open.clone()));
        assert!(
            matches!(c.check(), Err(FleetError::PasswordFileOpen { .. })),
            "others may read it"
        );
        let private = tmp_file(0o600, "secret\n");
        let c = FleetConfig::new("postgres://node@db/d", Some(&private), Some("a".into()))
            .unwrap()
            .with_passfile(Some(open.clone()));
        c.check().expect("--store-password-file comes first");
        let _ = fs::remove_file(open);
        let _ = fs::remove_file(private);
    }

    #[test]
    fn node_names_are_plain() {
        for bad in ["", "a b", "a/b", &"x".repeat(64)] {
            let err = FleetConfig::new("postgres://node@db/d", None, Some(bad.into()));
            assert!(
                matches!(err, Err(FleetError::NodeName { .. })),
                "{bad:?}: {err:?}"
            );
        }
        let c = FleetConfig::new("postgres://node@db/d", None, None).unwrap();
        assert!(!c.node.is_empty(), "the host name");
    }
}
