//! Attaching the program to interfaces: through pinned links, so that a
//! link outlives the daemon and a new program can take it over in place.

use std::path::{Path, PathBuf};

use aya::programs::{
    Xdp, XdpMode,
    links::{FdLink, LinkError, PinnedLink},
    xdp::XdpLink,
};

use super::{Dataplane, DataplaneError, program};
use crate::model::{AttachMode, AttachedMode, List, Target};

impl Dataplane {
    pub fn attach(
        &mut self,
        iface: &str,
        mode: AttachMode,
    ) -> Result<AttachedMode, DataplaneError> {
        let attempt = |prog: &mut Xdp, m| prog.attach(iface, m);
        let prog = program(&mut self.ebpf);
        let (id, mode) = match mode {
            AttachMode::Native => (attempt(prog, XdpMode::Driver), AttachedMode::Native),
            AttachMode::Skb => (attempt(prog, XdpMode::Skb), AttachedMode::Skb),
            AttachMode::Auto => match attempt(prog, XdpMode::Driver) {
                Ok(id) => (Ok(id), AttachedMode::Native),
                Err(e) => {
                    tracing::warn!("{iface}: native XDP failed ({e}); falling back to skb mode");
                    (attempt(prog, XdpMode::Skb), AttachedMode::Skb)
                }
            },
        };
        let id = id.map_err(|source| DataplaneError::Attach {
            iface: iface.to_string(),
            source,
        })?;
        self.links.insert(iface.to_string(), id);
        Ok(mode)
    }

    /// Attaches and pins the link at `link`, so the filter outlives this
    /// process: the kernel keeps a pinned link attached until it is unpinned.
    pub fn attach_pinned(
        &mut self,
        iface: &str,
        mode: AttachMode,
        link: &Path,
    ) -> Result<AttachedMode, DataplaneError> {
        let attached = self.attach(iface, mode)?;
        let id = self.links.remove(iface).expect("just attached");
        let pin_err = |detail: String| DataplaneError::Link {
            path: link.to_path_buf(),
            detail,
        };
        let taken = program(&mut self.ebpf)
            .take_link(id)
            .map_err(|e| pin_err(e.to_string()))?;
        let fd = FdLink::try_from(taken).map_err(|e| {
            pin_err(format!(
                "{e}: the kernel attached {iface} through netlink, which cannot be pinned; \
                 XDP links need Linux 5.9"
            ))
        })?;
        let kernel_id = fd.info().map_err(|e| pin_err(e.to_string()))?.id();
        let pinned = fd.pin(link).map_err(|source| DataplaneError::Pin {
            path: link.to_path_buf(),
            source,
        })?;
        // Keep attached through the pin, and through our own fd as well.
        let fd = FdLink::from(pinned);
        let id = program(&mut self.ebpf)
            .attach_to_link(XdpLink::try_from(fd).map_err(|e| pin_err(e.to_string()))?)
            .map_err(|e| pin_err(e.to_string()))?;
        self.links.insert(iface.to_string(), id);
        self.link_ids.insert(iface.to_string(), kernel_id);
        Ok(attached)
    }

    /// Moves the pinned link at `link` over to this program with one
    /// BPF_LINK_UPDATE: packets go from the old program to the new one with
    /// no moment in which neither runs.
    pub fn adopt(&mut self, iface: &str, link: &Path) -> Result<(), DataplaneError> {
        let err = |detail: String| DataplaneError::Link {
            path: link.to_path_buf(),
            detail,
        };
        let pinned = PinnedLink::from_pin(link).map_err(|e: LinkError| err(e.to_string()))?;
        let fd = FdLink::from(pinned);
        let kernel_id = fd.info().map_err(|e| err(e.to_string()))?.id();
        let xdp = XdpLink::try_from(fd).map_err(|e| err(e.to_string()))?;
        let id = program(&mut self.ebpf)
            .attach_to_link(xdp)
            .map_err(|e| err(e.to_string()))?;
        self.links.insert(iface.to_string(), id);
        self.link_ids.insert(iface.to_string(), kernel_id);
        Ok(())
    }

    /// Pins again whatever of ours has lost its pin (deleted behind our
    /// back): each map of this generation, and the link of each interface
    /// named in `links`, returning what was pinned. The program keeps the
    /// maps and our fds keep the links, so filtering never stopped; but
    /// without the pins the next start could neither find the links to
    /// move nor leave the filter running once this process exits.
    pub fn restore_pins(
        &self,
        links: &[(String, PathBuf)],
    ) -> Result<Vec<PathBuf>, DataplaneError> {
        let mut restored = Vec::new();
        let missing = |p: &Path| std::fs::symlink_metadata(p).is_err();
        if let Some(dir) = &self.pin_dir {
            for (name, _) in self.layout.max_entries(self.cpus) {
                let path = dir.join(name);
                if !missing(&path) {
                    continue;
                }
                if missing(dir) {
                    std::fs::create_dir(dir).map_err(|source| DataplaneError::PinDir {
                        path: dir.clone(),
                        source,
                    })?;
                }
                let map = self
                    .ebpf
                    .map(name)
                    .ok_or(DataplaneError::MissingMap { name })?;
                map.pin(&path).map_err(|source| DataplaneError::Pin {
                    path: path.clone(),
                    source,
                })?;
                restored.push(path);
            }
        }
        for (iface, path) in links {
            let Some(&id) = self.link_ids.get(iface) else {
                continue;
            };
            if !missing(path) {
                continue;
            }
            crate::dataplane::pins::pin_link(id, path).map_err(|source| DataplaneError::Link {
                path: path.clone(),
                detail: source.to_string(),
            })?;
            restored.push(path.clone());
        }
        Ok(restored)
    }

    /// Is this entry in the kernel?
    pub fn is_installed(&self, t: &Target, l: List) -> bool {
        self.installed.contains_key(&(*t, l))
    }

    pub fn detach(&mut self, iface: &str) -> Result<(), DataplaneError> {
        self.link_ids.remove(iface);
        let id = self
            .links
            .remove(iface)
            .ok_or_else(|| DataplaneError::NotAttached {
                iface: iface.to_string(),
            })?;
        program(&mut self.ebpf)
            .detach(id)
            .map_err(|source| DataplaneError::Attach {
                iface: iface.to_string(),
                source,
            })
    }
}
