//! What the guardrails read from the host: its addresses and the peers of
//! its live sessions. It is read without the core: on a host under attack
//! a sock_diag dump is the slowest part of an add, and every other request
//! would wait behind it.

use std::net::IpAddr;

use super::{Core, CoreError};
use crate::{
    model::{List, Target},
    policy::{self, GuardContext},
    wire::{AddRequest, ImportParams},
};

/// Reads the host for the guardrails; cheap to clone, needs no lock.
#[derive(Debug, Clone)]
pub struct HostProbe {
    protect_ports: Vec<u16>,
}

impl HostProbe {
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

    /// If this host's addresses or its live sessions cannot be read, the
    /// checks fail closed: the request is refused until forced.
    fn read(
        &self,
        admin_addr: Option<IpAddr>,
        within: Option<&[Target]>,
    ) -> Result<GuardContext, CoreError> {
        let unreadable = |what, source| CoreError::GuardUnavailable { what, source };
        Ok(GuardContext {
            host_addrs: policy::host_addresses()
                .map_err(|e| unreadable("this host's addresses", e))?,
            live_ssh_peers: policy::live_peers(&self.protect_ports, within)
                .map_err(|e| unreadable("the live TCP sessions", e))?,
            admin_addr,
        })
    }
}

impl Core {
    pub fn host_probe(&self) -> HostProbe {
        HostProbe {
            protect_ports: self.config.protect_ports.clone(),
        }
    }
}
