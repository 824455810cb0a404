//! Fleet mode's follower: a connection that LISTENs for new log entries,
//! and a poll every few seconds besides, since a notification sent while
//! the listener was away is lost (docs/fleet.md).

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use postgres::{Client, fallible_iterator::FallibleIterator as _};

use crate::{
    daemon::Core,
    store::{Connect, LOG_CHANNEL},
};

/// The longest a node goes without reading the log.
const POLL: Duration = Duration::from_secs(5);
/// How long one wait for a notification blocks: the longest a shutdown
/// waits for the follower.
const SLICE: Duration = Duration::from_millis(500);

pub(super) fn spawn(core: Arc<Mutex<Core>>, connect: Connect) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut listener = Listener {
            connect,
            client: None,
        };
        let mut healthy = true;
        loop {
            let since = Instant::now();
            let mut notified = false;
            while !notified && since.elapsed() < POLL {
                let waited = tokio::task::spawn_blocking(move || {
                    let n = listener.wait();
                    (listener, n)
                })
                .await;
                let Ok((l, n)) = waited else { return };
                listener = l;
                notified = n;
            }
            let core = core.clone();
            let followed = tokio::task::spawn_blocking(move || {
                core.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .follow_fleet()
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

/// A connection that listens on the log's channel, made anew when it
/// breaks.
struct Listener {
    connect: Connect,
    client: Option<Client>,
}

impl Listener {
    /// Waits up to [`SLICE`] for a notification; true when one came.
    fn wait(&mut self) -> bool {
        let mut client = match self.client.take().filter(|c| !c.is_closed()) {
            Some(c) => c,
            None => match self.listen() {
                Some(c) => c,
                None => {
                    std::thread::sleep(SLICE);
                    return false;
                }
            },
        };
        let first = client.notifications().timeout_iter(SLICE).next();
        let came = match first {
            Ok(Some(_)) => {
                // One read covers every entry so far: drop the others.
                while let Ok(Some(_)) = client.notifications().iter().next() {}
                true
            }
            Ok(None) => false,
            Err(_) => return false,
        };
        self.client = Some(client);
        came
    }

    fn listen(&mut self) -> Option<Client> {
        let mut client = (self.connect)().ok()?;
        client
            .batch_execute(&format!("LISTEN {LOG_CHANNEL}"))
            .ok()?;
        Some(client)
    }
}
