//! What the guardrails read from the host: its addresses and the peers of
//! its live sessions. It is read without the core: on a host under attack
//! the sessions are the slowest part of an add, and every other request
//! would wait behind them.
//!
//! The sessions come from the sessions program (`SessionWatch`), which the
//! kernel tells of each session on a protected port as it starts and ends,
//! so a check costs a lookup, however many connections the host has. Where
//! that program cannot run, each check asks sock_diag instead, which walks
//! every TCP socket of the host.

use std::{
    net::IpAddr,
    sync::{Arc, Mutex, MutexGuard, Weak},
    time::{Duration, Instant},
};

use super::{Core, CoreError};
use crate::{
    dataplane::SessionWatch,
    model::{List, ProtectedSet, Target},
    policy::{self, GuardContext, RateContext},
    wire::{AddRequest, ImportParams},
};

/// How often the watch's reports are taken in, so its ring buffer (26,214
/// reports at a time) does not fill between two checks.
const DRAIN_EVERY: Duration = Duration::from_millis(50);
/// How often sessions whose end no report will tell (those older than the
/// watch, or after lost reports) are looked for in a dump again.
const DUMP_EVERY: Duration = Duration::from_secs(30);

/// Reads the host for the guardrails; cheap to clone, needs no core lock.
#[derive(Clone)]
pub struct HostProbe {
    protect_ports: Vec<u16>,
    watch: Option<Arc<Mutex<SessionWatch>>>,
    /// In a fleet, what the other nodes protect, as of the last follow
    /// (every few seconds); empty on a single host.
    fleet: Arc<Mutex<Vec<ProtectedSet>>>,
}

impl std::fmt::Debug for HostProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostProbe")
            .field("protect_ports", &self.protect_ports)
            .field("watched", &self.watch.is_some())
            .finish()
    }
}

fn lock(w: &Mutex<SessionWatch>) -> MutexGuard<'_, SessionWatch> {
    w.lock().unwrap_or_else(|p| p.into_inner())
}

impl HostProbe {
    /// Watches the sessions on `ports`; if the sessions program cannot run
    /// here, warns and asks sock_diag on each check.
    pub fn start(ports: Vec<u16>) -> Self {
        Self::watching(ports.clone()).unwrap_or_else(|e| {
            tracing::warn!(
                "the SSH guardrail will walk every socket of the host on each check: {e}"
            );
            Self::asking(ports)
        })
    }

    /// Watches the sessions on `ports`, or says why it cannot.
    pub fn watching(ports: Vec<u16>) -> Result<Self, CoreError> {
        Ok(Self {
            watch: Some(Self::watch(&ports)?),
            protect_ports: ports,
            fleet: Arc::default(),
        })
    }

    /// Asks sock_diag on each check, with no program: for a core whose
    /// data plane is not the kernel's.
    pub fn asking(ports: Vec<u16>) -> Self {
        Self {
            protect_ports: ports,
            watch: None,
            fleet: Arc::default(),
        }
    }

    /// Whether the sessions program keeps the sessions.
    pub fn is_watching(&self) -> bool {
        self.watch.is_some()
    }

    fn watch(ports: &[u16]) -> Result<Arc<Mutex<SessionWatch>>, CoreError> {
        // The program first, then the dump: a session starting in between
        // is in one or the other, and the cookie makes it one session.
        let mut watch = SessionWatch::start(ports).map_err(|e| CoreError::GuardUnavailable {
            what: "the sessions program",
            source: std::io::Error::other(e),
        })?;
        let mark = watch.begin_dump();
        let dump = policy::live_sessions(ports).map_err(|source| CoreError::GuardUnavailable {
            what: "the live TCP sessions",
            source,
        })?;
        watch.drain();
        watch.complete_with(&dump, mark);
        let watch = Arc::new(Mutex::new(watch));
        let weak = Arc::downgrade(&watch);
        let ports = ports.to_vec();
        std::thread::Builder::new()
            .name("denylist-sessions".into())
            .spawn(move || keep(&weak, &ports))
            .map_err(|source| CoreError::GuardUnavailable {
                what: "a thread for the sessions program",
                source,
            })?;
        Ok(watch)
    }

    /// The context for an add: the live sessions of its deny targets only
    /// (none is read when it is forced, or has no deny target).
    pub fn for_add(&self, req: &AddRequest) -> Result<GuardContext, CoreError> {
        if req.force {
            return Ok(GuardContext::default());
        }
        // A target that does not parse is refused by the add itself.
        let deny: Vec<Target> = req
            .entries
            .iter()
            .filter(|e| e.list == List::Deny)
            .filter_map(|e| Target::parse(&e.target).ok())
            .collect();
        if deny.is_empty() {
            return Ok(GuardContext {
                admin_addr: req.admin_addr,
                ..GuardContext::default()
            });
        }
        self.read(req.admin_addr, Some(&deny))
    }

    /// The context for an import: every live session on the protected
    /// ports, since the targets are known only once the body is parsed.
    pub fn for_import(&self, p: &ImportParams) -> Result<GuardContext, CoreError> {
        if p.force {
            return Ok(GuardContext::default());
        }
        self.read(p.admin_addr, None)
    }

    /// The context for a feed's list: every live session on the protected
    /// ports. A feed is never forced, and has no admin address.
    pub fn for_feed(&self) -> Result<GuardContext, CoreError> {
        self.read(None, None)
    }

    /// The context for a report's address.
    pub fn for_report(&self, ip: IpAddr) -> Result<GuardContext, CoreError> {
        self.read(None, Some(&[Target::host(ip)]))
    }

    /// The context for the rate detector's offenders, with this host's
    /// gateways and nameservers: three files the detector reads each epoch
    /// it has offenders, so not under the core's lock either.
    pub fn for_rate(&self, sources: &[Target]) -> Result<RateContext, CoreError> {
        let guard = self.read(None, Some(sources)).map_err(|e| match e {
            CoreError::GuardUnavailable { what, source } => {
                CoreError::RateHostUnreadable { what, source }
            }
            other => other,
        })?;
        let infrastructure =
            policy::infrastructure().map_err(|source| CoreError::RateHostUnreadable {
                what: "this host's gateways and nameservers",
                source,
            })?;
        Ok(RateContext {
            guard,
            infrastructure,
        })
    }

    /// What this host protects, for the other nodes of its fleet: its
    /// addresses, every live session's peer, its gateways and nameservers.
    pub fn protected_set(&self, node: &str) -> Result<ProtectedSet, CoreError> {
        let ctx = self.read(None, None)?;
        let infrastructure =
            policy::infrastructure().map_err(|source| CoreError::GuardUnavailable {
                what: "this host's gateways and nameservers",
                source,
            })?;
        Ok(ProtectedSet {
            node: node.to_string(),
            addrs: ctx.host_addrs,
            ssh_peers: ctx.live_ssh_peers,
            infrastructure,
        })
    }

    /// Takes in what the fleet's other nodes protect.
    pub(super) fn set_fleet(&self, sets: Vec<ProtectedSet>) {
        *self.fleet.lock().unwrap_or_else(|p| p.into_inner()) = sets;
    }

    /// If this host's addresses or its live sessions cannot be read, the
    /// checks fail closed: the request is refused until forced.
    fn read(
        &self,
        admin_addr: Option<IpAddr>,
        within: Option<&[Target]>,
    ) -> Result<GuardContext, CoreError> {
        let unreadable = |what, source| CoreError::GuardUnavailable { what, source };
        let live = match &self.watch {
            Some(w) => self.watched(w, within),
            None => policy::live_peers(&self.protect_ports, within),
        };
        Ok(GuardContext {
            host_addrs: policy::host_addresses()
                .map_err(|e| unreadable("this host's addresses", e))?,
            live_ssh_peers: live.map_err(|e| unreadable("the live TCP sessions", e))?,
            admin_addr,
            fleet: self.fleet.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        })
    }

    fn watched(
        &self,
        w: &Mutex<SessionWatch>,
        within: Option<&[Target]>,
    ) -> std::io::Result<Vec<IpAddr>> {
        let mut watch = lock(w);
        // Reports were lost, or an import wants the sessions that may have
        // ended unseen settled: only a dump tells what is live.
        if watch.drain() || (within.is_none() && watch.sessions().needs_dumps()) {
            let mark = watch.begin_dump();
            let dump = policy::live_sessions(&self.protect_ports)?;
            watch.drain();
            watch.complete_with(&dump, mark);
        }
        let Some(targets) = within else {
            return Ok(watch.sessions().peers());
        };
        let found = watch.sessions().peers_within(targets);
        if !watch.sessions().any_unconfirmed(&found) {
            return Ok(found);
        }
        // A session only a dump vouches for may have ended unseen: before
        // refusing on its account, ask the kernel about these targets, and
        // keep the sessions whose end would have been reported.
        let mut live = watch.sessions().reported_peers_within(targets);
        drop(watch);
        live.extend(policy::live_peers(&self.protect_ports, within)?);
        live.sort_unstable();
        live.dedup();
        Ok(live)
    }
}

/// Takes in the watch's reports while any probe holds it, and dumps when
/// some session's end would otherwise go unseen.
fn keep(watch: &Weak<Mutex<SessionWatch>>, ports: &[u16]) {
    let mut last_dump = Instant::now();
    loop {
        std::thread::sleep(DRAIN_EVERY);
        let Some(w) = watch.upgrade() else {
            return;
        };
        let mark = {
            let mut g = lock(&w);
            let incomplete = g.drain();
            let due =
                incomplete || (g.sessions().needs_dumps() && last_dump.elapsed() >= DUMP_EVERY);
            if !due {
                continue;
            }
            g.begin_dump()
        };
        // The dump without the lock, which checks would wait behind: while
        // the set is incomplete they make their own. A session that ends
        // between this dump and its taking in stays until the next dump:
        // the guardrail errs on the side of refusing.
        last_dump = Instant::now();
        match policy::live_sessions(ports) {
            Ok(dump) => {
                let mut g = lock(&w);
                g.drain();
                g.complete_with(&dump, mark);
            }
            Err(e) => tracing::warn!("reading the live TCP sessions: {e}"),
        }
    }
}

impl Core {
    pub fn host_probe(&self) -> HostProbe {
        self.host.clone()
    }
}
