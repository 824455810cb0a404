//! Fleet mode's follower: a connection that LISTENs for new log entries,
//! and a poll every few seconds besides, since a notification sent while
//! the listener was away is lost (docs/fleet.md).

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::daemon::{Core, FleetListener};

/// The longest a node goes without reading the log.
const POLL: Duration = Duration::from_secs(5);
pub(super) fn spawn(
    core: Arc<Mutex<Core>>,
    mut listener: FleetListener,
    node: String,
) -> tokio::task::JoinHandle<()> {
    let probe = core.lock().unwrap_or_else(|p| p.into_inner()).host_probe();
    tokio::spawn(async move {
        let mut healthy = true;
        loop {
            let since = Instant::now();
            let mut woken = None;
            while woken.is_none() && since.elapsed() < POLL {
                let waited = tokio::task::spawn_blocking(move || {
                    let n = listener.wait();
                    (listener, n)
                })
                .await;
                let Ok((l, n)) = waited else { return };
                listener = l;
                woken = n;
            }
            let deploying = woken.and_then(|w| w.deploying);
            let (core, probe, node) = (core.clone(), probe.clone(), node.clone());
            let followed = tokio::task::spawn_blocking(move || {
                // What this host protects, read before taking the core.
                let protected = probe
                    .protected_set(&node)
                    .inspect_err(|e| {
                        tracing::warn!("fleet: cannot publish this node's guardrails: {e}")
                    })
                    .ok();
                if let Some(deploy) = deploying {
                    core.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .foresee_deploy(deploy);
                }
                // The core's lock is taken for a round at a time, so that a
                // long run of other nodes' deploys lets requests in between.
                let mut total = 0;
                loop {
                    let round = core
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .follow_fleet(protected.clone());
                    match round.applied {
                        Ok(n) if round.more => total += n,
                        Ok(n) => break Ok(total + n),
                        Err(e) => break Err(e),
                    }
                }
            })
            .await;
            match followed {
                Ok(Ok(_)) if !healthy => {
                    tracing::info!("fleet: following the database again");
                    healthy = true;
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) if healthy => {
                    tracing::warn!(
                        "fleet: cannot follow the database, filtering goes on at the applied revision: {e}"
                    );
                    healthy = false;
                }
                Ok(Err(_)) => {}
                Err(e) => tracing::error!("fleet: the follower failed: {e}"),
            }
        }
    })
}
