//! Runs the daemon: the API on its socket, the periodic tasks (expiry sweep,
//! interface and pin watch, drift check) and the metrics endpoint, until
//! `shutdown`.
//! Tests inject both the listener and the shutdown signal.

use std::{
    future::Future,
    io,
    os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt},
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::net::{TcpListener, UnixListener};

mod auth;
mod caller;
pub mod decode;
mod detector;
mod error;
mod feed_routes;
mod feeds;
mod fleet;
mod fleet_routes;
pub mod logging;
mod metrics;
mod notify;
mod openapi;
mod page_routes;
mod ratelimit;
mod report_routes;
mod routes;

mod stream;

use routes::{AppState, PeerCred};

use crate::daemon::Core;

/// How often configured interfaces and the pins are looked for.
const IFACE_POLL: Duration = Duration::from_secs(1);
/// How often the kernel is read back for drift.
const VERIFY_EVERY: Duration = Duration::from_secs(60);
/// How often the audit log and history are pruned to the retention: daily,
/// so the log holds one `prune` event a day, not one an hour.
const PRUNE_EVERY: Duration = Duration::from_secs(86_400);

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("another denylistd is already serving {path}: stop it first")]
    InUse { path: String },
    #[error("cannot serve on {path}: {source}")]
    Io { path: String, source: io::Error },
}

/// Binds the API socket, mode 0666: any local user may connect, and every
/// request is authorized from its credentials. A stale socket left by a
/// crash is replaced; a live one is not.
pub fn bind_socket(path: &Path) -> Result<UnixListener, SocketError> {
    let err = |source| SocketError::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
        for d in missing.into_iter().rev() {
            std::fs::DirBuilder::new()
                .mode(0o755)
                .create(d)
                .map_err(err)?;
            // Set again: a umask such as the unit's 0077 would otherwise
            // keep every other user from reaching the socket.
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).map_err(err)?;
        }
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            )));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(SocketError::InUse {
                path: path.display().to_string(),
            });
        }
        std::fs::remove_file(path).map_err(err)?;
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).map_err(err)?;
    Ok(listener)
}

fn every(
    core: &Arc<Mutex<Core>>,
    period: Duration,
    name: &'static str,
    f: fn(&mut Core),
) -> tokio::task::JoinHandle<()> {
    let core = core.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let core = core.clone();
            let done = tokio::task::spawn_blocking(move || {
                let mut c = core.lock().unwrap_or_else(|p| p.into_inner());
                f(&mut c);
            })
            .await;
            if let Err(e) = done {
                tracing::error!("periodic {name} failed: {e}");
            }
        }
    })
}

/// The audit log and history pruned to the retention, now and daily.
fn prune(core: &mut Core) {
    if let Err(e) = core.prune() {
        tracing::error!("pruning the audit log: {e}");
    }
}

/// Serves until `shutdown` completes, then leaves the filter in place (or
/// detaches it, with `--detach-on-exit`).
pub async fn run(
    core: Core,
    listener: UnixListener,
    metrics_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let sweep = core.config().expiry_sweep;
    let core = Arc::new(Mutex::new(core));
    let mut tasks = vec![
        every(&core, sweep, "expiry sweep", |c| {
            if let Err(e) = c.sweep() {
                tracing::error!("expiry sweep: {e}");
            }
        }),
        every(&core, IFACE_POLL, "interface watch", Core::watch_ifaces),
        every(&core, IFACE_POLL, "pin watch", Core::watch_pins),
        every(&core, PRUNE_EVERY, "audit prune", prune),
        every(&core, VERIFY_EVERY, "verify", |c| {
            if let Err(e) = c.verify("denylistd") {
                tracing::error!("verify: {e}");
            }
        }),
    ];
    // WATCHDOG=1 once the core could be locked: a core stuck behind its
    // lock stops the pings, and systemd restarts the daemon (the pinned
    // filter keeps filtering meanwhile). A store that cannot be read is no
    // reason: a restart would not mend it, and the running daemon still
    // reports it. The first ping comes a period after READY=1.
    if let Some(period) = notify::watchdog_period() {
        tasks.push(every(&core, period, "watchdog", |_| notify::watchdog()));
    }
    if let Some(l) = metrics_listener {
        let app = metrics::router(core.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(l, app).await {
                tracing::error!("metrics endpoint stopped: {e}");
            }
        }));
    }
    tasks.push(detector::spawn(core.clone()));
    let fleet = core
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .config()
        .fleet
        .as_ref()
        .map(|f| (f.listener(), f.node.clone()));
    if let Some((listener, node)) = fleet {
        tasks.push(fleet::spawn(core.clone(), listener, node));
    }
    let state = AppState::new(core.clone());
    tasks.push(tokio::spawn(state.feeds.clone().schedule()));
    let app = routes::router(state);
    tracing::info!("serving the API");
    // The start attached every configured interface that exists, or
    // recorded why it could not: systemd may start what comes after us.
    notify::ready(&core.lock().unwrap_or_else(|p| p.into_inner()));
    // The first prune after READY=1, off the async threads: on a store that
    // grew for years before retention came, it may take a while.
    let first = core.clone();
    tasks.push(tokio::task::spawn_blocking(move || {
        prune(&mut first.lock().unwrap_or_else(|p| p.into_inner()));
    }));
    let shutdown = async {
        shutdown.await;
        notify::stopping();
    };
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<PeerCred>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        let _ = t.await;
    }
    // Nothing else holds the core now; a poisoned lock still shuts down.
    let core = match Arc::try_unwrap(core) {
        Ok(m) => m.into_inner().unwrap_or_else(|p| p.into_inner()),
        Err(_) => {
            tracing::warn!("a request still holds the core; leaving the filter as it is");
            return served;
        }
    };
    tokio::task::spawn_blocking(move || core.shutdown())
        .await
        .map_err(io::Error::other)?;
    served
}
