//! Looking after the filter while it runs, and answering questions about
//! it: status, check, hit counts, the periodic verify and expiry sweep,
//! pins deleted behind our back, and backups.

use std::{collections::HashMap, net::IpAddr, path::PathBuf, sync::Arc};

use denylist_common::Counters;

use super::{Core, CoreError, deploy::rule_of};
use crate::{
    dataplane::{ChangeList, tai_offset_ms},
    model::{Millis, Stored, Verdict, normal_ip, now_ms},
    store::{Duty, HitTotal, Snapshots},
    wire::{
        Capacity, CheckResponse, Interface, ListCounts, StatItem, Status, StatusCounters,
        VerifyResponse,
    },
};

/// A one-line view of the daemon, e.g. for systemd's status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// The deployed revision; `None` if the store cannot be read just now.
    pub revision: Option<u64>,
    /// Entries in the kernel, both lists.
    pub entries: usize,
    pub interfaces: usize,
    pub attached: usize,
}

impl Core {
    pub fn status(&self) -> Result<Status, CoreError> {
        let c = self.filter.counters()?;
        let (deny, allow) = self.filter.counts();
        let interfaces: Vec<Interface> = self
            .ifaces
            .iter()
            .map(|(name, i)| Interface {
                name: name.clone(),
                xdp_mode: i.attached.map(|(m, _)| m),
                configured: i.mode,
                attached: i.attached.is_some(),
            })
            .collect();
        let degraded_reasons = self.degraded_reasons();
        let degraded = !degraded_reasons.is_empty();
        let mut warnings = Vec::new();
        if interfaces.is_empty() {
            warnings.push(
                "no interface configured: nothing is filtered until one is attached (denylist attach IFACE, or iface in denylistd.toml)".to_string(),
            );
        }
        Ok(Status {
            revision: self.store.revision()?,
            pending_changes: self.store.pending_count()? as u64,
            interfaces,
            entries: ListCounts { deny, allow },
            capacity: Capacity {
                total: u64::from(self.filter.layout().capacity),
                used: self.filter.len() as u64,
            },
            counters: StatusCounters {
                dropped_packets: c.dropped_packets,
                dropped_bytes: c.dropped_bytes,
                passed_packets: c.passed_packets,
                passed_bytes: c.passed_bytes,
                monitored_packets: c.monitored_packets,
                allowed_packets: c.allowed_packets,
                unparsable_packets: c.unparsable_packets,
            },
            drift: self.drift as u64,
            degraded,
            degraded_reasons,
            draft_seq: self.store.draft_seq()?,
            warnings,
        })
    }

    /// One sentence per cause of `degraded`, each saying what to do: an
    /// interface not attached (and why), drift not repaired.
    fn degraded_reasons(&self) -> Vec<String> {
        let mut why = Vec::new();
        for (name, i) in &self.ifaces {
            if i.attached.is_some() {
                continue;
            }
            why.push(match (&i.failed, self.filter.ifindex(name)) {
                (_, 0) => format!(
                    "interface {name} is not attached: it does not exist on this host; \
                     denylistd attaches it when it appears (or: denylist detach {name})"
                ),
                (Some(failed), _) => format!(
                    "interface {name} is not attached: {failed}; denylistd retries every second"
                ),
                (None, _) => format!(
                    "interface {name} is not attached: denylistd retries every second \
                     (denylist attach {name} shows why it fails)"
                ),
            });
        }
        if self.drift > 0 {
            why.push(format!(
                "{} {} in the kernel differ from the deployed revision: run denylist verify",
                self.drift,
                if self.drift == 1 { "entry" } else { "entries" }
            ));
        }
        why
    }

    /// What the daemon is serving, cheaply: no kernel counters are read.
    pub fn summary(&self) -> Summary {
        Summary {
            revision: self.store.revision().ok(),
            entries: self.filter.len(),
            interfaces: self.ifaces.len(),
            attached: self
                .ifaces
                .values()
                .filter(|i| i.attached.is_some())
                .count(),
        }
    }

    /// The kernel's global counters, for /metrics.
    pub fn counters(&self) -> Result<Counters, CoreError> {
        Ok(self.filter.counters()?)
    }

    pub fn check(&self, ip: IpAddr) -> CheckResponse {
        let now_tai = (now_ms() + tai_offset_ms()).max(0) as u64 * 1_000_000;
        let (verdict, decided) = self.filter.decide(ip, now_tai);
        let entry = decided.first().map(|r| r.target);
        let allowed = verdict == Verdict::Allowed;
        // Who listed it is the store's to say; a store that cannot answer
        // must not stop the kernel's verdict from being told.
        let sources = decided.first().map_or_else(Vec::new, |r| {
            match self.store.deployed_entry(r.target, r.list, now_ms()) {
                Ok(e) => e.map(|e| e.sources).unwrap_or_default(),
                Err(e) => {
                    tracing::warn!("reading the sources of {}: {e}", r.target);
                    Vec::new()
                }
            }
        });
        CheckResponse {
            ip: normal_ip(ip),
            verdict: if allowed { Verdict::Pass } else { verdict },
            allowed_by: if allowed { entry } else { None },
            entry: if allowed { None } else { entry },
            sources,
        }
    }

    /// Folds the kernel's per-entry counters into the store's totals, and
    /// frees the counters removed entries still hold in the kernel. An entry
    /// with new hits was last hit by now: the kernel keeps no time (see
    /// `denylist_common::Hit`), so a last hit is dated to within the time
    /// between folds, at most the sweep period.
    pub fn fold_hits(&mut self) -> Result<(), CoreError> {
        let kernel = self.filter.sweep_hits()?;
        let now = now_ms();
        let mut deltas = Vec::new();
        for (id, h) in &kernel {
            let seen = self.hits_seen.get(id).copied().unwrap_or_default();
            // Fewer than last time: the LRU evicted and restarted it.
            let (p, b) = if h.packets >= seen.packets {
                (h.packets - seen.packets, h.bytes.saturating_sub(seen.bytes))
            } else {
                (h.packets, h.bytes)
            };
            if p > 0 {
                deltas.push((
                    *id,
                    HitTotal {
                        packets: p,
                        bytes: b,
                        last_hit: Some(now),
                    },
                ));
            }
        }
        if !deltas.is_empty() {
            self.store.add_hits(&deltas)?;
        }
        self.hits_seen = kernel;
        Ok(())
    }

    /// Per-entry hits, busiest first; with `idle_ms`, only entries without a
    /// hit for that long.
    pub fn stats(
        &mut self,
        top: Option<usize>,
        idle_ms: Option<Millis>,
    ) -> Result<Vec<StatItem>, CoreError> {
        self.fold_hits()?;
        let totals: HashMap<u32, HitTotal> = self.store.hit_totals()?;
        let now = now_ms();
        let mut out: Vec<StatItem> = self
            .store
            .deployed()?
            .into_iter()
            .filter(|s| !s.entry.expired_at(now))
            .map(|s| {
                let t = totals.get(&s.id).copied().unwrap_or_default();
                StatItem {
                    target: s.entry.target,
                    list: s.entry.list,
                    packets: t.packets,
                    bytes: t.bytes,
                    last_hit: t.last_hit,
                }
            })
            .collect();
        if let Some(idle) = idle_ms {
            out.retain(|s| s.last_hit.is_none_or(|t| now - t >= idle));
        }
        // Ties in the order of the targets' text, as the listing shows them.
        out.sort_by_cached_key(|s| (std::cmp::Reverse(s.packets), s.target.to_string()));
        if let Some(n) = top {
            out.truncate(n);
        }
        Ok(out)
    }

    /// Where listings get consistent views of the entries, to stream them
    /// without holding the core.
    pub fn snapshots(&self) -> Arc<dyn Snapshots> {
        self.store.snapshots()
    }

    /// Pins again whatever was deleted from `--bpffs` behind our back, and
    /// then reads the kernel back against the deployed revision. Filtering
    /// never stopped, since this process holds the maps and the links; but
    /// without their pins the next start could not move the links, and the
    /// filter would go with this process.
    pub fn watch_pins(&mut self) {
        match self.restore_pins() {
            Ok(0) => {}
            Ok(_) => {
                if let Err(e) = self.verify("denylistd") {
                    tracing::error!("verify after restoring the pins: {e}");
                }
            }
            Err(e) => tracing::error!("restoring the pins: {e}"),
        }
    }

    /// Pins again what lost its pin, with a `pins restored` audit event;
    /// returns how many pins it made.
    fn restore_pins(&mut self) -> Result<usize, CoreError> {
        let attached: Vec<String> = self
            .ifaces
            .iter()
            .filter(|(_, i)| i.attached.is_some())
            .map(|(name, _)| name.clone())
            .collect();
        let restored = self.filter.restore_pins(&attached)?;
        if restored.is_empty() {
            return Ok(0);
        }
        let paths: Vec<String> = restored.iter().map(|p| p.display().to_string()).collect();
        tracing::warn!(
            pins = ?paths,
            "pins were deleted behind our back; pinned the live maps and links again"
        );
        let detail = serde_json::json!({ "pins": paths });
        self.store
            .record("denylistd", "pins restored", None, Some(detail), now_ms())?;
        Ok(restored.len())
    }

    /// Reads the kernel back, repairs any drift, and records each repair;
    /// first pins again whatever lost its pin.
    pub fn verify(&mut self, user: &str) -> Result<VerifyResponse, CoreError> {
        // The maps can be read back even when they cannot be pinned.
        if let Err(e) = self.restore_pins() {
            tracing::error!("restoring the pins: {e}");
        }
        let drift = self.filter.drift()?;
        self.ops.last_drift_found = drift.len() as u64;
        if drift.is_empty() {
            self.drift = 0;
            return Ok(VerifyResponse {
                seq: None,
                drift: Vec::new(),
                repaired: 0,
            });
        }
        tracing::warn!(
            count = drift.len(),
            "drift between the kernel and the deployed revision"
        );
        self.filter.repair(&drift)?;
        let left = self.filter.drift()?.len();
        self.drift = left;
        let repaired = drift.len().saturating_sub(left) as u64;
        self.ops.verify_repairs += repaired;
        let mut seq = None;
        for (t, l) in &drift {
            let detail = serde_json::json!({ "list": l.as_str() });
            seq = Some(self.store.record(
                user,
                "verify repair",
                Some(&t.to_string()),
                Some(detail),
                now_ms(),
            )?);
        }
        Ok(VerifyResponse {
            seq,
            drift: drift.iter().map(|(t, _)| *t).collect(),
            repaired,
        })
    }

    /// A consistent copy of the store in a new private file in the state
    /// directory, for the API to stream to the client and then delete. The
    /// client writes it with its own rights: the daemon writes nowhere a
    /// client names, since it runs as root.
    pub fn backup(&mut self, user: &str) -> Result<PathBuf, CoreError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = &self.config.state_dir;
        let path = dir.join(format!(".backup-{}-{nanos}.db", std::process::id()));
        if let Err(source) = self.store.backup(&path) {
            let _ = std::fs::remove_file(&path);
            return Err(CoreError::Backup {
                dir: dir.display().to_string(),
                source: Box::new(source),
            });
        }
        self.store.record(user, "backup", None, None, now_ms())?;
        Ok(path)
    }

    /// Removes expired entries from the maps, the deployed set and the
    /// draft. They are already dead in the kernel; this keeps a later
    /// deploy from reviving them.
    pub fn sweep(&mut self) -> Result<usize, CoreError> {
        // Counting is secondary: a failed fold must not stop expiry.
        if let Err(e) = self.fold_hits() {
            tracing::warn!("folding hit counters: {e}");
        }
        // In a fleet one node sweeps, and the others take its sweep from
        // the log; their kernels drop expired entries on time regardless.
        if !self.store.holds_duty(Duty::Sweep) {
            return Ok(0);
        }
        let now = now_ms();
        let expired = self.store.expired(now)?;
        if expired.is_empty() {
            return Ok(0);
        }
        let changes = self.expiry_changes(&expired, now);
        self.filter.apply(&changes)?;
        self.store.expire(&expired, now)?;
        tracing::info!(count = expired.len(), "swept expired entries");
        Ok(expired.len())
    }

    /// What the kernel loses when `expired` expire at `now`. Only what it
    /// still holds: after a failed store write, a later sweep must not trip
    /// over entries already taken out. An entry that other listings keep
    /// changes instead: an enforcing listing that expired may leave only
    /// monitoring ones.
    pub(super) fn expiry_changes(&self, expired: &[Stored], now: Millis) -> ChangeList {
        let tai = tai_offset_ms();
        ChangeList::new(
            expired
                .iter()
                .filter(|s| self.filter.is_installed(&s.entry.target, s.entry.list))
                .map(|s| {
                    let after = s.entry.live(now).map(|entry| Stored { id: s.id, entry });
                    (Some(rule_of(s, tai)), after.map(|a| rule_of(&a, tai)))
                }),
        )
    }
}
