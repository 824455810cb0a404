//! denylistd's core: the one owner of the store and the filter.
//!
//! Every operation runs with the core locked, so the store and the kernel
//! change together, one request at a time. Operations are synchronous (the
//! store and bpf() calls block); the server runs them on tokio's blocking
//! pool. The core reaches the store through [`Store`] and the kernel through
//! [`Filter`], so its logic is tested without root against an in-memory
//! filter.

#[cfg(test)]
mod auto_tests;
mod config;
#[cfg(test)]
mod console_tests;
mod deploy;
mod edit;
mod error;
pub mod feeds;
pub mod fetch;
mod fleet;
mod follow;
mod health;
mod history;
mod ifaces;
mod import;
mod man;
mod page;
mod pgpass;
mod probe;
mod rate;
#[cfg(test)]
mod rate_tests;
mod reports;
#[cfg(test)]
pub mod testing;
#[cfg(test)]
mod tests;

mod unpin;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, atomic::AtomicBool},
};

pub use config::{Args, Config, ConfigError, DEFAULT_BPFFS, DEFAULT_CAPACITY, DEFAULT_STATE_DIR};
use denylist_common::Hit;
pub use error::{CoreError, GuardedLine, StartError};
pub use fleet::{FleetConfig, FleetError, FleetListener, Woken};
pub use follow::FollowRound;
pub use health::Summary;
pub use man::{config_page, daemon_page, write_man_pages};
pub use page::entry_page;
pub use probe::HostProbe;
pub use rate::{EPOCH as RATE_EPOCH, Offender};
pub use unpin::{UnpinError, Unpinned, unpin};

// The core's interface hands out these: its errors carry store errors, and
// listings stream from the store's snapshots.
pub use crate::store::{Snapshot, Snapshots, StoreError};
use crate::{
    dataplane::{Filter, PinnedFilter, content_needs, tai_offset_ms},
    model::{AttachMode, AttachedMode, Millis, Rule},
    store::{FleetStore, SqliteStore, Store},
};

/// The longest TTL: beyond it, `never` says what is meant, and expiry
/// times stay far inside the kernel word's 56 bits of milliseconds.
pub const MAX_TTL_SECS: u64 = 100 * 365 * 86_400;

/// One configured interface.
#[derive(Debug, Clone)]
struct Iface {
    mode: AttachMode,
    /// The mode and ifindex while attached.
    attached: Option<(AttachedMode, u32)>,
    /// Why the last attempt to attach failed, logged once until it changes:
    /// an interface another program holds is retried every second.
    failed: Option<String>,
}

/// Operational counters for /metrics.
#[derive(Debug, Default, Clone)]
pub struct OpsCounters {
    pub deploy_failures: u64,
    pub verify_repairs: u64,
    pub last_deploy_ms: u64,
    /// When the last deploy since the start succeeded; 0 before the first.
    pub last_deploy_at: Millis,
    /// Entries the last verify found differing from the revision, before
    /// it repaired them: what a fleet node's row shows.
    pub last_drift_found: u64,
    /// Other nodes' deploys this node's kernel took, planned before their
    /// log entry came (announced), or once it came.
    pub followed_ahead: u64,
    pub followed_on_entry: u64,
    /// Entries of other nodes' deploys written into the kernel ahead of
    /// their log entry, not live until it came.
    pub written_ahead: u64,
}

pub struct Core {
    config: Config,
    /// What the guardrails read from the host.
    host: HostProbe,
    store: Box<dyn Store>,
    filter: Box<dyn Filter>,
    ifaces: BTreeMap<String, Iface>,
    /// Drift found by the last verify and not repaired.
    drift: usize,
    /// Kernel hit counters as of the last fold into the store; the kernel
    /// counts from zero in each generation.
    hits_seen: HashMap<u32, Hit>,
    pub ops: OpsCounters,
    rate: rate::RateState,
    /// Why the last apply of the fleet's changes failed, for the node's
    /// row; None once one succeeds.
    fleet_error: Option<String>,
    /// Whether the last heartbeat reached the fleet's database; None on a
    /// single host.
    fleet_database_up: Option<bool>,
    /// Set while it did not: reads then come from this node's copy, which
    /// may lag the fleet. Shared with the API, which says so without the
    /// core's lock.
    stale: Arc<AtomicBool>,
}

impl Core {
    /// Opens the store, builds a new generation of maps from the deployed
    /// revision, and moves every pinned link to it without a gap.
    pub fn start(config: Config) -> Result<Self, StartError> {
        // The store first: a damaged one stops us before the kernel is
        // touched, so the pinned filter keeps running.
        let store: Box<dyn Store> = match &config.fleet {
            None => Box::new(SqliteStore::open(&config.state_dir)?),
            Some(fleet) => {
                fleet.check()?;
                let connect = fleet.connector();
                Box::new(FleetStore::open(
                    &config.state_dir,
                    connect,
                    &fleet.url,
                    &fleet.node,
                )?)
            }
        };
        let deployed = store.deployed()?;
        if deployed.len() > config.layout.capacity as usize {
            return Err(StartError::TooSmall {
                entries: deployed.len(),
                capacity: config.layout.capacity,
            });
        }
        let tai = tai_offset_ms();
        let rules: Vec<Rule> = deployed.iter().map(|s| deploy::rule_of(s, tai)).collect();
        drop(deployed);
        // The prefix arrays are allocated whole, so they are sized for the
        // prefixes deployed, and grow when deploys need more.
        let layout = config.layout.fitting(content_needs(&rules));
        let (filter, adopted) = PinnedFilter::start(&config.bpffs, layout, &rules)?;
        drop(rules);
        deploy::release_heap();
        let mut core = Self::assemble(config, store, Box::new(filter), &adopted)?;
        core.host = HostProbe::start(core.config.protect_ports.clone());
        Ok(core)
    }

    /// The core over any store and filter; `adopted` are the interfaces
    /// whose pinned links the filter already carries.
    fn assemble(
        config: Config,
        store: Box<dyn Store>,
        filter: Box<dyn Filter>,
        adopted: &[String],
    ) -> Result<Self, StartError> {
        let mut ifaces: BTreeMap<String, Iface> = BTreeMap::new();
        for (iface, mode) in store.attachments()? {
            let mode = mode.parse().unwrap_or(AttachMode::Auto);
            ifaces.insert(
                iface,
                Iface {
                    mode,
                    attached: None,
                    failed: None,
                },
            );
        }
        for iface in config.ifaces.iter().chain(adopted) {
            ifaces.entry(iface.clone()).or_insert(Iface {
                mode: config.xdp_mode,
                attached: None,
                failed: None,
            });
        }
        for iface in adopted {
            let index = filter.ifindex(iface);
            if let Some(i) = ifaces.get_mut(iface) {
                i.attached = Some((AttachedMode::Native, index));
            }
        }
        let mut core = Self {
            host: HostProbe::asking(config.protect_ports.clone()),
            config,
            store,
            filter,
            ifaces,
            drift: 0,
            hits_seen: HashMap::new(),
            ops: OpsCounters::default(),
            rate: rate::RateState::default(),
            fleet_error: None,
            fleet_database_up: None,
            stale: Arc::default(),
        };
        let policy = core.store.auto_policy()?;
        core.filter.set_detector(rate::levels(&policy));
        core.refresh_modes();
        core.watch_ifaces();
        // What expired while no daemon ran leaves the store now, not a
        // sweep period after the start.
        if let Err(e) = core.sweep() {
            tracing::error!("expiry sweep at start: {e}");
        }
        Ok(core)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Leaves filtering in place (the default), or detaches everything.
    pub fn shutdown(mut self) {
        if let Err(e) = self.fold_hits() {
            tracing::warn!("could not save the last hit counts: {e}");
        }
        if self.config.detach_on_exit {
            let names: Vec<String> = self.ifaces.keys().cloned().collect();
            self.filter.remove(&names);
            tracing::info!("detached on exit");
        }
    }
}
