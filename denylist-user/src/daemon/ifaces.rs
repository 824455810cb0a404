//! The interfaces the daemon looks after: attaching, detaching, and
//! noticing interfaces that come and go.

use super::{Core, CoreError, Iface};
use crate::{
    model::{AttachMode, AttachedMode, now_ms},
    wire::{AttachRequest, DetachRequest, SeqResponse},
};

impl Core {
    /// Reads each attachment's real mode back from the kernel.
    pub(super) fn refresh_modes(&mut self) {
        for (name, iface) in self.ifaces.iter_mut() {
            if let Some((_, idx)) = iface.attached {
                let mode = self
                    .filter
                    .attached_mode(name)
                    .unwrap_or(AttachedMode::Native);
                iface.attached = Some((mode, idx));
            }
        }
    }

    /// Attaches configured interfaces that have appeared, and notices ones
    /// that went away (their links die with them) to re-attach on return.
    pub fn watch_ifaces(&mut self) {
        let names: Vec<String> = self.ifaces.keys().cloned().collect();
        for name in names {
            let idx = self.filter.ifindex(&name);
            let iface = self.ifaces[&name].clone();
            match iface.attached {
                Some((_, attached_idx)) if idx == attached_idx && idx != 0 => {}
                Some(_) => {
                    tracing::warn!(iface = %name, "interface went away; will re-attach when it returns");
                    let _ = self.filter.detach(&name);
                    self.ifaces.get_mut(&name).expect("present").attached = None;
                }
                None if idx == 0 => {}
                None => match self.attach_now(&name, iface.mode) {
                    Ok(mode) => tracing::info!(iface = %name, ?mode, "attached"),
                    Err(e) => {
                        let why = e.to_string();
                        if iface.failed.as_ref() != Some(&why) {
                            tracing::warn!(iface = %name, "cannot attach: {why}");
                        }
                        if let Some(i) = self.ifaces.get_mut(&name) {
                            i.failed = Some(why);
                        }
                    }
                },
            }
        }
    }

    fn attach_now(&mut self, iface: &str, mode: AttachMode) -> Result<AttachedMode, CoreError> {
        match self.filter.attach(iface, mode) {
            Ok(m) => {
                self.ifaces.insert(
                    iface.to_string(),
                    Iface {
                        mode,
                        attached: Some((m, self.filter.ifindex(iface))),
                        failed: None,
                    },
                );
                Ok(m)
            }
            Err(source) => Err(CoreError::Attach {
                iface: iface.to_string(),
                held_by: self.filter.holder(iface),
                source: Box::new(source),
            }),
        }
    }

    pub fn attach(&mut self, user: &str, req: AttachRequest) -> Result<SeqResponse, CoreError> {
        let mode = req.xdp_mode.unwrap_or(self.config.xdp_mode);
        if self.filter.ifindex(&req.iface) == 0 {
            return Err(CoreError::NoInterface { iface: req.iface });
        }
        let current = self.ifaces.get(&req.iface).and_then(|i| i.attached);
        let attached = match current {
            // Already filtering as asked: re-attaching would open a gap.
            Some((m, _))
                if mode == AttachMode::Auto
                    || (mode == AttachMode::Native) == (m == AttachedMode::Native) =>
            {
                m
            }
            Some(_) => {
                let _ = self.filter.detach(&req.iface);
                if let Some(i) = self.ifaces.get_mut(&req.iface) {
                    i.attached = None;
                }
                self.attach_now(&req.iface, mode)?
            }
            None => self.attach_now(&req.iface, mode)?,
        };
        let seq = self
            .store
            .set_attachment(&req.iface, Some(mode.as_str()), user, now_ms())?;
        tracing::info!(iface = %req.iface, mode = ?attached, user, "attach recorded");
        Ok(SeqResponse {
            seq,
            detail: Some(serde_json::json!({ "iface": req.iface, "xdp_mode": attached })),
        })
    }

    pub fn detach(&mut self, user: &str, req: DetachRequest) -> Result<SeqResponse, CoreError> {
        if !self.ifaces.contains_key(&req.iface) {
            return Err(CoreError::NotManaged { iface: req.iface });
        }
        self.filter.detach(&req.iface)?;
        self.ifaces.remove(&req.iface);
        tracing::info!(iface = %req.iface, user, "detached");
        let seq = self
            .store
            .set_attachment(&req.iface, None, user, now_ms())?;
        Ok(SeqResponse { seq, detail: None })
    }
}
