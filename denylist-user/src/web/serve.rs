//! Listening and serving: TCP (plain or TLS) or a Unix socket for a proxy
//! in front, one task per connection, and a graceful stop. Like
//! mini-redis, `run` takes a bound listener and a shutdown future, so
//! tests bind port 0 and stop the console when they are done.

use std::{
    future::Future,
    os::unix::fs::{FileTypeExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use axum::{Extension, Router};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, UnixListener},
};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{self, ServerConfig},
};

use super::{error::StartError, proxy::Transport};

/// A TLS handshake or a request's head slower than this is dropped, so a
/// client that opens connections and sends nothing cannot hold them.
const SLOW_CLIENT: Duration = Duration::from_secs(10);
/// How long a stop waits for requests under way.
const DRAIN: Duration = Duration::from_secs(10);

/// Where the console listens.
pub enum Listener {
    Tcp {
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
    },
    /// For a proxy on the same host: the socket file is removed at the end.
    Unix {
        listener: UnixListener,
        path: PathBuf,
    },
}

impl Listener {
    pub fn transport(&self) -> Transport {
        match self {
            Listener::Tcp { .. } => Transport::Tcp,
            Listener::Unix { .. } => Transport::Unix,
        }
    }

    /// What `--listen` says, e.g. for the log.
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp { listener, tls } => {
                let scheme = if tls.is_some() { "https" } else { "http" };
                match listener.local_addr() {
                    Ok(a) => format!("{scheme}://{a}"),
                    Err(_) => scheme.to_string(),
                }
            }
            Listener::Unix { path, .. } => format!("unix:{}", path.display()),
        }
    }
}

/// The rustls server configuration of `--tls-cert` and `--tls-key`
/// (PEM: the chain, then the key).
pub fn tls(cert: &Path, key: &Path) -> Result<TlsAcceptor, StartError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| StartError::TlsPem { source })?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|source| StartError::TlsPem { source })?;
    let config = ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
    .map_err(|source| StartError::Tls { source })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Binds `--listen`: `HOST:PORT`, or `unix:PATH` (mode 0660, in `group`
/// if given, so only the proxy's group may connect).
pub async fn bind(
    listen: &str,
    tls: Option<TlsAcceptor>,
    group: Option<&str>,
) -> Result<Listener, StartError> {
    let bind_err = |source| StartError::Bind {
        addr: listen.to_string(),
        source,
    };
    if let Some(path) = listen.strip_prefix("unix:") {
        let path = PathBuf::from(path);
        if path.as_os_str().is_empty() {
            return Err(StartError::Listen {
                value: listen.to_string(),
            });
        }
        // A socket left by a console that did not stop cleanly; anything
        // else at that path is not ours to remove.
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_socket()) {
            std::fs::remove_file(&path).map_err(bind_err)?;
        }
        let listener = UnixListener::bind(&path).map_err(bind_err)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))
            .map_err(bind_err)?;
        if let Some(group) = group {
            let gid = nix::unistd::Group::from_name(group)
                .ok()
                .flatten()
                .ok_or_else(|| StartError::NoGroup {
                    name: group.to_string(),
                })?
                .gid;
            std::os::unix::fs::chown(&path, None, Some(gid.as_raw())).map_err(|source| {
                StartError::Chown {
                    path: path.clone(),
                    group: group.to_string(),
                    source,
                }
            })?;
        }
        return Ok(Listener::Unix { listener, path });
    }
    if !listen.contains(':') {
        return Err(StartError::Listen {
            value: listen.to_string(),
        });
    }
    let listener = TcpListener::bind(listen).await.map_err(bind_err)?;
    Ok(Listener::Tcp { listener, tls })
}

/// Serves `router` on `listener` until `shutdown` resolves, then waits a
/// while for the requests under way.
pub async fn run(router: Router, listener: Listener, shutdown: impl Future<Output = ()>) {
    let router = router.layer(Extension(listener.transport()));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&listener) => match accepted {
                Ok(Accepted::Plain(io)) => serve_conn(io, router.clone(), &graceful),
                Ok(Accepted::Tcp(stream, acceptor)) => {
                    let router = router.clone();
                    let watcher = graceful.watcher();
                    tokio::spawn(async move {
                        match tokio::time::timeout(SLOW_CLIENT, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => {
                                let conn = builder().serve_connection(
                                    TokioIo::new(tls),
                                    TowerToHyperService::new(router),
                                );
                                // A client that goes away is no fault of ours.
                                let _ = watcher.watch(conn).await;
                            }
                            Ok(Err(e)) => tracing::debug!("TLS handshake failed: {e}"),
                            Err(_) => tracing::debug!("TLS handshake timed out"),
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather
                    // than spin.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    if let Listener::Unix { path, .. } = &listener {
        // Best effort: the next start removes a stale socket anyway.
        let _ = std::fs::remove_file(path);
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("stopped with requests still under way");
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

enum Accepted {
    Plain(Box<dyn Io>),
    Tcp(tokio::net::TcpStream, TlsAcceptor),
}

async fn accept(listener: &Listener) -> std::io::Result<Accepted> {
    match listener {
        Listener::Tcp { listener, tls } => {
            let (stream, _) = listener.accept().await?;
            Ok(match tls {
                Some(acceptor) => Accepted::Tcp(stream, acceptor.clone()),
                None => Accepted::Plain(Box::new(stream)),
            })
        }
        Listener::Unix { listener, .. } => {
            let (stream, _) = listener.accept().await?;
            Ok(Accepted::Plain(Box::new(stream)))
        }
    }
}

fn builder() -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new()).header_read_timeout(SLOW_CLIENT);
    b
}

fn serve_conn(io: Box<dyn Io>, router: Router, graceful: &GracefulShutdown) {
    let conn = builder().serve_connection(TokioIo::new(io), TowerToHyperService::new(router));
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        // A client that goes away is no fault of ours.
        let _ = conn.await;
    });
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;
    use crate::web::{
        app::{Auth, router},
        proxy::Proof,
        testing::{FakeDaemon, TempDir, console},
    };

    async fn ask(mut io: impl AsyncRead + AsyncWrite + Unpin, head: &str) -> String {
        io.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        io.read_to_end(&mut answer).await.unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn serves_tcp_until_told_to_stop() {
        let fake = FakeDaemon::start().await;
        let dir = TempDir::new();
        let app = console(&fake.socket(), dir.path(), Auth::Local);
        let listener = bind("127.0.0.1:0", None, None).await.unwrap();
        let Listener::Tcp { listener: tcp, .. } = &listener else {
            panic!("a TCP listener");
        };
        let addr = tcp.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(run(router(app), listener, async {
            let _ = stopped.await;
        }));
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let answer = ask(
            stream,
            "GET /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("Sign in"));
        stop.send(()).unwrap();
        server.await.unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn over_its_unix_socket_a_proxy_needs_no_secret() {
        let fake = FakeDaemon::start().await;
        let dir = TempDir::new();
        let app = console(
            &fake.socket(),
            dir.path(),
            Auth::Proxy {
                header: axum::http::HeaderName::from_static("x-remote-user"),
                proof: Proof::UnixSocket,
            },
        );
        let path = dir.path().join("web.sock");
        let listen = format!("unix:{}", path.display());
        let listener = bind(&listen, None, None).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(run(router(app), listener, async {
            let _ = stopped.await;
        }));
        let stream = tokio::net::UnixStream::connect(&path).await.unwrap();
        let answer = ask(
            stream,
            "GET /status HTTP/1.1\r\nHost: x\r\nX-Remote-User: alice\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("alice (admin)"), "{answer}");
        stop.send(()).unwrap();
        server.await.unwrap();
        assert!(!path.exists(), "the socket is removed at the end");
    }

    #[tokio::test]
    async fn serves_tls_with_secure_cookies() {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web/testdata");
        let acceptor = tls(&data.join("tls-cert.pem"), &data.join("tls-key.pem")).unwrap();
        let fake = FakeDaemon::start().await;
        let dir = TempDir::new();
        let mut app = console(&fake.socket(), dir.path(), Auth::Local);
        Arc::get_mut(&mut app.0).unwrap().config.tls = true;
        let listener = bind("127.0.0.1:0", Some(acceptor), None).await.unwrap();
        assert!(listener.describe().starts_with("https://127.0.0.1:"));
        let Listener::Tcp { listener: tcp, .. } = &listener else {
            panic!("a TCP listener");
        };
        let addr = tcp.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(run(router(app), listener, async {
            let _ = stopped.await;
        }));

        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(data.join("tls-ca.pem")).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let tls = connector.connect(name, tcp).await.unwrap();
        let form = "username=alice&password=alice-pw";
        let answer = ask(
            tls,
            &format!(
                "POST /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
                form.len()
            ),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 303"), "{answer}");
        let lower = answer.to_lowercase();
        assert!(lower.contains("; secure"), "{answer}");
        assert!(lower.contains("strict-transport-security"), "{answer}");
        stop.send(()).unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn listen_takes_host_port_or_unix_path() {
        assert!(matches!(
            bind("localhost", None, None).await,
            Err(StartError::Listen { .. })
        ));
        assert!(matches!(
            bind("unix:", None, None).await,
            Err(StartError::Listen { .. })
        ));
    }
}
