//! The rate detector's epoch, once a second: the core measures what the
//! kernel reported, the guardrails read the host for the offenders without
//! the core lock (live sessions take a netlink dump), and the core decides.

use std::sync::{Arc, Mutex};

use crate::{
    daemon::{Core, RATE_EPOCH},
    model::Target,
};

pub(super) fn spawn(core: Arc<Mutex<Core>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RATE_EPOCH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let core = core.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || epoch(&core)).await {
                tracing::error!("the rate detector's epoch failed: {e}");
            }
        }
    })
}

fn epoch(core: &Mutex<Core>) {
    let lock = || core.lock().unwrap_or_else(|p| p.into_inner());
    let (offenders, host) = {
        let mut c = lock();
        match c.rate_measure() {
            Ok(o) => (o, c.host_probe()),
            Err(e) => {
                tracing::error!("reading the rate detector: {e}");
                return;
            }
        }
    };
    if offenders.is_empty() {
        return;
    }
    let sources: Vec<Target> = offenders.iter().map(|o| o.source).collect();
    let ctx = host.for_rate(&sources);
    if let Err(e) = lock().rate_decide(&offenders, ctx) {
        tracing::error!("deciding on the rate detector's offenders: {e}");
    }
}
