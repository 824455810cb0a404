//! denylistd's core: the one owner of the store and the kernel maps.
//!
//! Every operation runs with the core locked, so the store and the kernel
//! change together, one request at a time. Operations are synchronous (SQLite
//! and bpf() calls block); the API runs them on tokio's blocking pool.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::IpAddr,
    path::PathBuf,
    time::Instant,
};

use crate::{
    auth::Peer,
    config::Config,
    dataplane::{AttachMode, AttachedMode, Dataplane},
    entry::{Entry, Millis, Stored, now_ms, parse_duration, tai_offset_ms},
    error::{ApiError, Class},
    guard::{self, GuardContext},
    import,
    layout::Layout,
    pins::{Pins, PinsError},
    proto::{
        AddRequest, AttachRequest, Capacity, Change, CheckResponse, Counts, DeployPhases,
        DeployResponse, DetachRequest, Diff, ImportParams, ImportResponse, Interface, ListCounts,
        ModeRequest, RemoveRequest, RollbackRequest, RollbackResponse, SeqResponse, StageItem,
        StageResponse, Staged, StatItem, Status, StatusCounters, VerifyResponse,
    },
    store::{Audit, HitTotal, Op, Plan, Stage, Store, StoreError},
    target::Target,
    verdict::{List, Rule, Verdict},
};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pins(#[from] PinsError),
    #[error(transparent)]
    Dataplane(#[from] crate::dataplane::DataplaneError),
    #[error(
        "the deployed revision holds {entries} entries, more than --capacity {capacity}: start with a larger --capacity (the old filter keeps running meanwhile)"
    )]
    TooSmall { entries: usize, capacity: u32 },
}

/// One configured interface.
#[derive(Debug, Clone)]
struct Iface {
    mode: AttachMode,
    /// The mode and ifindex while attached.
    attached: Option<(AttachedMode, u32)>,
}

/// Operational counters for /metrics.
#[derive(Debug, Default, Clone)]
pub struct OpsCounters {
    pub deploy_failures: u64,
    pub verify_repairs: u64,
    pub last_deploy_ms: u64,
}

pub struct Core {
    config: Config,
    store: Store,
    dp: Dataplane,
    pins: Pins,
    ifaces: BTreeMap<String, Iface>,
    /// Drift found by the last verify and not repaired.
    drift: usize,
    /// Kernel hit counters as of the last fold into the store; the kernel
    /// counts from zero in each generation.
    hits_seen: HashMap<u32, denylist_common::Hit>,
    pub ops: OpsCounters,
}

fn ifindex(iface: &str) -> u32 {
    let Ok(c) = std::ffi::CString::new(iface) else {
        return 0;
    };
    // SAFETY: a valid C string.
    unsafe { libc::if_nametoindex(c.as_ptr()) }
}

/// The XDP program another tool attached to `iface`, as `ip` reports it.
fn xdp_holder(iface: &str) -> Option<String> {
    let xdp = ip_xdp(iface)?;
    let prog = xdp.get("prog")?;
    let id = prog.get("id").and_then(|i| i.as_u64()).unwrap_or(0);
    // `ip` names a program only with CAP_SYS_ADMIN (BPF_PROG_GET_FD_BY_ID),
    // which the systemd unit does not grant; the id is always there.
    Some(match prog.get("name").and_then(|n| n.as_str()) {
        Some(name) => format!("program {name} (id {id})"),
        None => format!("program id {id} (`bpftool prog show id {id}` names it)"),
    })
}

/// The `xdp` object `ip -j -d link show` reports for an interface: aya
/// cannot say which program a foreign tool attached, nor in which mode.
fn ip_xdp(iface: &str) -> Option<serde_json::Value> {
    let out = std::process::Command::new("ip")
        .args(["-j", "-d", "link", "show", "dev", iface])
        .output()
        .ok()?;
    let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(v.get_mut(0)?.get_mut("xdp")?.take())
}

/// The kernel's view of a stored entry: expiry moved to CLOCK_TAI.
fn kernel_rule(s: &Stored, tai_offset: i64) -> Rule {
    Rule {
        id: s.id,
        target: s.entry.target,
        list: s.entry.list,
        monitor: s.entry.monitor,
        expires_ms: s.entry.expires_at.map(|e| (e + tai_offset).max(1) as u64),
    }
}

fn parse_target(s: &str, force: bool) -> Result<Target, ApiError> {
    let parsed = if force {
        Target::parse_forced(s)
    } else {
        Target::parse(s)
    };
    parsed.map_err(|e| ApiError::invalid(e.to_string()))
}

/// `Some(None)` for never, `Some(Some(secs))` for a duration.
fn parse_ttl(ttl: &Option<String>) -> Result<Option<Option<u64>>, ApiError> {
    match ttl.as_deref() {
        None => Ok(None),
        Some("never") => Ok(Some(None)),
        Some(d) => {
            let d = parse_duration(d).map_err(ApiError::invalid)?;
            check_ttl(d.as_secs()).map(|t| Some(Some(t)))
        }
    }
}

/// The longest TTL: beyond it, `never` says what is meant, and expiry
/// times stay far inside the kernel word's 56 bits of milliseconds.
pub const MAX_TTL_SECS: u64 = 100 * 365 * 86_400;

fn check_ttl(secs: u64) -> Result<u64, ApiError> {
    if secs == 0 {
        return Err(ApiError::invalid("a TTL must be at least 1s"));
    }
    if secs > MAX_TTL_SECS {
        return Err(ApiError::invalid(
            "a TTL must be at most 100 years: use never for a permanent entry",
        ));
    }
    Ok(secs)
}

impl Core {
    /// Opens the store, builds a new generation of maps from the deployed
    /// revision, and moves every pinned link to it without a gap.
    pub fn start(config: Config) -> Result<Self, StartError> {
        // The store first: a damaged one stops us before the kernel is
        // touched, so the pinned filter keeps running.
        let store = Store::open(&config.state_dir)?;
        let pins = Pins::open(&config.bpffs)?;
        let deployed = store.deployed()?;
        if deployed.len() > config.layout.capacity as usize {
            return Err(StartError::TooSmall {
                entries: deployed.len(),
                capacity: config.layout.capacity,
            });
        }
        // The prefix arrays are allocated whole, so they are sized for the
        // prefixes deployed, and grow when deploys need more.
        let layout = config
            .layout
            .fitting(crate::trie::needs(deployed.iter().map(|s| s.entry.target)));
        let tai = tai_offset_ms();
        let rules: Vec<Rule> = deployed.iter().map(|s| kernel_rule(s, tai)).collect();
        let (generation, mut dp) = build_generation(&pins, layout, &rules)?;
        drop(rules);
        tracing::info!(
            generation,
            entries = deployed.len(),
            "built the maps from the store"
        );
        drop(deployed);
        release_heap();
        let mut ifaces: BTreeMap<String, Iface> = BTreeMap::new();
        for (iface, mode) in store.attachments()? {
            let mode = mode.parse().unwrap_or(AttachMode::Auto);
            ifaces.insert(
                iface,
                Iface {
                    mode,
                    attached: None,
                },
            );
        }
        for iface in &config.ifaces {
            ifaces.entry(iface.clone()).or_insert(Iface {
                mode: config.xdp_mode,
                attached: None,
            });
        }
        for iface in pins.links()? {
            let link = pins.link(&iface);
            match dp.adopt(&iface, &link) {
                Ok(()) => {
                    tracing::info!(%iface, "moved the pinned link to the new program");
                    let entry = ifaces.entry(iface.clone()).or_insert(Iface {
                        mode: config.xdp_mode,
                        attached: None,
                    });
                    entry.attached = Some((AttachedMode::Native, ifindex(&iface)));
                }
                Err(e) => {
                    tracing::warn!(%iface, "dropping a pinned link that no longer works: {e}");
                    let _ = pins.remove_link(&iface);
                }
            }
        }
        let mut core = Self {
            config,
            store,
            dp,
            pins,
            ifaces,
            drift: 0,
            hits_seen: HashMap::new(),
            ops: OpsCounters::default(),
        };
        core.refresh_modes();
        unpin_older(&core.pins, generation);
        core.watch_ifaces();
        // What expired while no daemon ran leaves the store now, not a
        // sweep period after the start.
        if let Err(e) = core.sweep() {
            tracing::error!("expiry sweep at start: {}", e.message);
        }
        Ok(core)
    }

    /// Reads each attachment's real mode back from the kernel.
    fn refresh_modes(&mut self) {
        for (name, iface) in self.ifaces.iter_mut() {
            if let Some((_, idx)) = iface.attached {
                let mode = xdp_mode_of(name).unwrap_or(AttachedMode::Native);
                iface.attached = Some((mode, idx));
            }
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Attaches configured interfaces that have appeared, and notices ones
    /// that went away (their links die with them) to re-attach on return.
    pub fn watch_ifaces(&mut self) {
        let names: Vec<String> = self.ifaces.keys().cloned().collect();
        for name in names {
            let idx = ifindex(&name);
            let iface = self.ifaces[&name].clone();
            match iface.attached {
                Some((_, attached_idx)) if idx == attached_idx && idx != 0 => {}
                Some(_) => {
                    tracing::warn!(iface = %name, "interface went away; will re-attach when it returns");
                    let _ = self.dp.detach(&name);
                    let _ = self.pins.remove_link(&name);
                    self.ifaces.get_mut(&name).expect("present").attached = None;
                }
                None if idx == 0 => {}
                None => match self.attach_now(&name, iface.mode) {
                    Ok(mode) => tracing::info!(iface = %name, ?mode, "attached"),
                    Err(e) => tracing::warn!(iface = %name, "cannot attach: {}", e.message),
                },
            }
        }
    }

    fn attach_now(&mut self, iface: &str, mode: AttachMode) -> Result<AttachedMode, ApiError> {
        let link = self.pins.link(iface);
        let _ = self.pins.remove_link(iface);
        match self.dp.attach_pinned(iface, mode, &link) {
            Ok(m) => {
                self.ifaces.insert(
                    iface.to_string(),
                    Iface {
                        mode,
                        attached: Some((m, ifindex(iface))),
                    },
                );
                Ok(m)
            }
            Err(e) => {
                let held = xdp_holder(iface)
                    .map(|p| format!(": {iface} already carries XDP {p}; detach it first, nothing was replaced"))
                    .unwrap_or_default();
                Err(ApiError::new(Class::Failure, format!("{e}{held}")))
            }
        }
    }

    pub fn status(&self) -> Result<Status, ApiError> {
        let c = self.dp.counters()?;
        let (mut deny, mut allow) = (0, 0);
        for r in self.dp.rules() {
            match r.list {
                List::Deny => deny += 1,
                List::Allow => allow += 1,
            }
        }
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
        let degraded = interfaces.iter().any(|i| !i.attached) || self.drift > 0;
        Ok(Status {
            revision: self.store.revision()?,
            pending_changes: self.store.pending_count()? as u64,
            interfaces,
            entries: ListCounts { deny, allow },
            capacity: Capacity {
                total: u64::from(self.dp.layout().capacity),
                used: self.dp.len() as u64,
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
        })
    }

    /// What the guardrails check against. If this host's addresses or its
    /// live sessions cannot be read, the checks fail closed: the request is
    /// refused until forced.
    fn guard_context(&self, admin_addr: Option<IpAddr>) -> Result<GuardContext, ApiError> {
        let unreadable = |what: &str, e: std::io::Error| {
            ApiError::new(
                Class::Guarded,
                format!(
                    "cannot read {what} ({e}), so the guardrails cannot run: use --force to add without them"
                ),
            )
        };
        Ok(GuardContext {
            host_addrs: guard::host_addresses()
                .map_err(|e| unreadable("this host's addresses", e))?,
            live_ssh_peers: guard::live_peers(&self.config.protect_ports)
                .map_err(|e| unreadable("the live TCP sessions", e))?,
            admin_addr,
        })
    }

    /// Stages adds and changes; with `deploy`, deploys just these.
    pub fn add(&mut self, peer: &Peer, req: AddRequest) -> Result<StageResponse, ApiError> {
        if req.entries.is_empty() {
            return Err(ApiError::invalid("no targets given"));
        }
        let ctx = if req.force {
            GuardContext::default()
        } else {
            self.guard_context(req.admin_addr)?
        };
        let mut ops = Vec::with_capacity(req.entries.len());
        let mut refused = Vec::new();
        let mut warnings = Vec::new();
        for StageItem {
            target,
            list,
            reason,
            ttl,
            monitor,
        } in &req.entries
        {
            let t = parse_target(target, req.force)?;
            if *list == List::Allow && monitor.is_some() {
                return Err(ApiError::invalid(
                    "monitor mode is for deny entries; the allowlist has none",
                ));
            }
            let ttl = parse_ttl(ttl)?;
            if !req.force {
                for r in guard::check(&t, *list, &ctx) {
                    refused.push(
                        serde_json::json!({ "target": t.to_string(), "reason": r.to_string() }),
                    );
                }
            }
            warnings.extend(self.warnings(&t, *list));
            ops.push(Stage::Upsert {
                target: t,
                list: *list,
                reason: reason.clone(),
                ttl,
                monitor: *monitor,
                source: None,
                keep_longer_ttl: false,
            });
        }
        if !refused.is_empty() {
            let first = refused[0]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let more = if refused.len() > 1 {
                format!(" (and {} more refusals)", refused.len() - 1)
            } else {
                String::new()
            };
            return Err(
                ApiError::new(Class::Guarded, format!("refused: {first}{more}"))
                    .with_details(serde_json::Value::Array(refused)),
            );
        }
        self.stage_and_maybe_deploy(peer, ops, warnings, req.deploy, req.message.as_deref())
    }

    /// Warnings that need no force: a deny entry an allow entry covers,
    /// and an entry covering existing ones. One pass over the installed
    /// entries keeps only those that matter to `guard::warnings`.
    fn warnings(&self, t: &Target, list: List) -> Vec<String> {
        guard::warnings(t, list, &self.dp.related(t, list))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn stage_and_maybe_deploy(
        &mut self,
        peer: &Peer,
        ops: Vec<Stage>,
        warnings: Vec<String>,
        deploy: bool,
        message: Option<&str>,
    ) -> Result<StageResponse, ApiError> {
        self.stage_audited(peer, ops, warnings, deploy, message, &Audit::Each)
    }

    fn stage_audited(
        &mut self,
        peer: &Peer,
        ops: Vec<Stage>,
        warnings: Vec<String>,
        deploy: bool,
        message: Option<&str>,
        audit_as: &Audit,
    ) -> Result<StageResponse, ApiError> {
        let default_ttl = self.config.default_ttl.map(|d| d.as_secs());
        let (seq, left) = self
            .store
            .stage(&ops, &peer.user, now_ms(), default_ttl, audit_as)?;
        let keys: Vec<(Target, List)> = ops.iter().map(Stage::key).collect();
        let mut counts = Counts::default();
        for op in left.iter().flatten() {
            match op {
                Op::Add => counts.added += 1,
                Op::Change => counts.changed += 1,
                Op::Remove => counts.removed += 1,
            }
        }
        let deployed = if deploy {
            let only: Vec<(Target, List)> = keys
                .iter()
                .zip(&left)
                .filter(|(_, op)| op.is_some())
                .map(|(k, _)| *k)
                .collect();
            Some(self.deploy(&peer.user, Some(&only), message, false)?)
        } else {
            None
        };
        Ok(StageResponse {
            seq,
            counts,
            targets: keys.iter().map(|(t, _)| t.to_string()).collect(),
            warnings,
            deployed,
        })
    }

    /// Bulk staging from a file, all or nothing (one transaction).
    pub fn import(
        &mut self,
        peer: &Peer,
        p: ImportParams,
        body: &[u8],
    ) -> Result<ImportResponse, ApiError> {
        let result = self.import_inner(peer, p, body);
        if body.len() > BULK_BYTES {
            release_heap();
        }
        result
    }

    fn import_inner(
        &mut self,
        peer: &Peer,
        p: ImportParams,
        body: &[u8],
    ) -> Result<ImportResponse, ApiError> {
        if p.force && p.skip_guarded {
            return Err(ApiError::invalid(
                "force lets guarded lines in and skip_guarded leaves them out: choose one",
            ));
        }
        let parse_start = Instant::now();
        let mut parsed = import::parse(body, p.format, p.force);
        if parsed.format == import::Format::Json && p.list.is_some() {
            return Err(ApiError::invalid(
                "a json import carries each entry's list: leave out list",
            ));
        }
        let now = now_ms();
        // Our own export carries whole entries; fields it leaves out get
        // the values a new entry would get. A bad one is an invalid line.
        let mut restored: Vec<Option<Entry>> = Vec::with_capacity(parsed.json_entries.len());
        for (i, v) in parsed.json_entries.iter().enumerate() {
            let read = serde_json::from_value::<ImportedEntry>(v.clone())
                .map_err(|e| e.to_string())
                .and_then(|e| e.into_entry(&peer.user, now).map_err(|e| e.message));
            match read {
                Ok(e) => restored.push(Some(e)),
                Err(e) => {
                    restored.push(None);
                    let text: String = v.to_string().chars().take(200).collect();
                    parsed.invalid.push(import::Invalid {
                        line: parsed.entries[i].line,
                        text,
                        error: e,
                    });
                }
            }
        }
        parsed.invalid.sort_by_key(|i| i.line);
        if !parsed.invalid.is_empty() && !p.skip_invalid {
            let lines: Vec<serde_json::Value> = parsed
                .invalid
                .iter()
                .map(|i| serde_json::json!({ "line": i.line, "text": i.text, "error": i.error }))
                .collect();
            let first = &parsed.invalid[0];
            return Err(ApiError::invalid(format!(
                "{} invalid {}, e.g. line {}: {:?}: {}; nothing was staged (fix them, or pass --skip-invalid)",
                lines.len(),
                if lines.len() == 1 { "line" } else { "lines" },
                first.line,
                first.text,
                first.error
            ))
            .with_details(serde_json::Value::Array(lines)));
        }
        let source_name = p.source.clone().unwrap_or_else(|| "stdin".into());
        if source_name.is_empty() || source_name.contains(char::is_whitespace) {
            return Err(ApiError::invalid(format!(
                "{source_name:?} cannot name a source: it must be non-empty and without spaces; pass --source NAME"
            )));
        }
        let source = format!("import:{source_name}");
        let ttl = parse_ttl(&p.ttl)?;
        let list = p.list.unwrap_or(List::Deny);
        let ctx = if p.force {
            GuardContext::default()
        } else {
            self.guard_context(p.admin_addr)?
        };
        let mut ops: Vec<Stage> = Vec::with_capacity(parsed.entries.len());
        let mut index: HashMap<(Target, List), usize> =
            HashMap::with_capacity(parsed.entries.len());
        let mut guarded = Vec::new();
        for (i, line) in parsed.entries.iter().enumerate() {
            let op = if parsed.format == import::Format::Json {
                let Some(mut e) = restored[i].take() else {
                    continue;
                };
                if let Some(r) = &p.reason {
                    e.reason = Some(r.clone());
                }
                if let Some(t) = ttl {
                    e.ttl = t;
                }
                e.expires_at = None;
                Stage::Restore(e)
            } else {
                Stage::Upsert {
                    target: line.target,
                    list,
                    reason: p.reason.clone().or_else(|| line.reason.clone()),
                    ttl,
                    monitor: None,
                    source: Some(source.clone()),
                    keep_longer_ttl: true,
                }
            };
            let key = op.key();
            if !p.force {
                let refusals = guard::check(&key.0, key.1, &ctx);
                if let Some(r) = refusals.first() {
                    guarded.push(serde_json::json!({ "line": line.line, "target": key.0.to_string(), "reason": r.to_string() }));
                    continue;
                }
            }
            // Duplicates within the file merge: the later line's fields win.
            match index.get(&key) {
                Some(&at) => ops[at] = op,
                None => {
                    index.insert(key, ops.len());
                    ops.push(op);
                }
            }
        }
        if !guarded.is_empty() && !p.skip_guarded {
            let first = guarded[0]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            return Err(ApiError::new(
                Class::Guarded,
                format!(
                    "{} lines are refused by the guardrails, e.g. {first}; nothing was staged (pass --force to let them in, or --skip-guarded to leave them out)",
                    guarded.len()
                ),
            )
            .with_details(serde_json::Value::Array(guarded)));
        }
        if p.replace {
            for (target, list) in self.store.draft_keys_from(&source, now_ms())? {
                if !index.contains_key(&(target, list)) {
                    ops.push(Stage::Remove { target, list });
                }
            }
        }
        let entries = index.len() as u64;
        let detail = serde_json::json!({
            "source": source, "format": parsed.format, "entries": entries, "replace": p.replace,
            "skipped_invalid": parsed.invalid.len(), "skipped_guarded": guarded.len(),
        });
        let parse_ms = parse_start.elapsed().as_millis() as u64;
        let stage_start = Instant::now();
        let audit_as = Audit::Summary {
            kind: "import".into(),
            detail,
        };
        let staged = self.stage_audited(peer, ops, Vec::new(), p.deploy, None, &audit_as)?;
        Ok(ImportResponse {
            seq: staged.seq,
            format: parsed.format,
            source: source_name,
            entries,
            counts: staged.counts,
            skipped_invalid: parsed.invalid.len() as u64,
            parse_ms,
            stage_ms: stage_start.elapsed().as_millis() as u64,
            skipped_guarded: guarded
                .iter()
                .filter_map(|g| g["target"].as_str().map(str::to_string))
                .collect(),
            deployed: staged.deployed,
        })
    }

    pub fn remove(&mut self, peer: &Peer, req: RemoveRequest) -> Result<StageResponse, ApiError> {
        if req.targets.is_empty() {
            return Err(ApiError::invalid("no targets given"));
        }
        let ops = req
            .targets
            .iter()
            .map(|t| {
                parse_target(t, false).map(|target| Stage::Remove {
                    target,
                    list: req.list,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.stage_and_maybe_deploy(peer, ops, Vec::new(), req.deploy, req.message.as_deref())
    }

    /// Enforce or monitor: only existing deny entries.
    pub fn mode(&mut self, peer: &Peer, req: ModeRequest) -> Result<StageResponse, ApiError> {
        let draft: HashSet<(Target, List)> = self
            .store
            .draft(now_ms())?
            .iter()
            .map(|e| (e.target, e.list))
            .collect();
        let mut ops = Vec::new();
        for t in &req.targets {
            let target = parse_target(t, false)?;
            if !draft.contains(&(target, List::Deny)) {
                return Err(ApiError::new(
                    Class::NotFound,
                    format!("{target} is not on the deny list: nothing was staged"),
                ));
            }
            ops.push(Stage::Upsert {
                target,
                list: List::Deny,
                reason: None,
                ttl: None,
                monitor: Some(req.monitor),
                source: None,
                keep_longer_ttl: false,
            });
        }
        if ops.is_empty() {
            return Err(ApiError::invalid("no targets given"));
        }
        self.stage_and_maybe_deploy(peer, ops, Vec::new(), req.deploy, req.message.as_deref())
    }

    pub fn diff(&self) -> Result<Diff, ApiError> {
        let mut d = Diff {
            added: Vec::new(),
            removed: Vec::new(),
            changed: Vec::new(),
        };
        for mut p in self.store.pending()? {
            // The deploy sets a pending entry's expiry; the marker that says
            // how is not shown.
            if let Some(after) = p.after.as_mut()
                && after.expires_at == Some(crate::store::REFRESH)
            {
                after.expires_at = None;
            }
            let (by, at) = (p.staged_by, p.staged_at);
            match (p.op, p.before, p.after) {
                (Op::Add, _, Some(after)) => d.added.push(Staged {
                    item: after,
                    staged_by: by,
                    staged_at: at,
                }),
                (Op::Remove, Some(before), _) => d.removed.push(Staged {
                    item: before.entry,
                    staged_by: by,
                    staged_at: at,
                }),
                (Op::Change, Some(before), Some(after)) => d.changed.push(Staged {
                    item: Change {
                        before: before.entry,
                        after,
                    },
                    staged_by: by,
                    staged_at: at,
                }),
                _ => {
                    return Err(ApiError::failure(
                        "the store holds a pending change without its entry: restore a backup",
                    ));
                }
            }
        }
        Ok(d)
    }

    /// Save and Deploy: applies the pending changes (or `only` those) to
    /// the kernel, then records the revision. Kernel first, so a failure
    /// leaves the store as it was; a store failure undoes the kernel.
    pub fn deploy(
        &mut self,
        user: &str,
        only: Option<&[(Target, List)]>,
        message: Option<&str>,
        dry_run: bool,
    ) -> Result<DeployResponse, ApiError> {
        let result = self.deploy_as(user, only, message, dry_run, "deploy");
        if let Ok(r) = &result
            && r.counts.added + r.counts.removed + r.counts.changed > BULK_ENTRIES
        {
            release_heap();
        }
        result
    }

    fn deploy_as(
        &mut self,
        user: &str,
        only: Option<&[(Target, List)]>,
        message: Option<&str>,
        dry_run: bool,
        kind: &str,
    ) -> Result<DeployResponse, ApiError> {
        let start = Instant::now();
        let now = now_ms();
        let plan = if dry_run {
            self.store.preview(only, now)?
        } else {
            self.store.plan(only, now)?
        };
        let mut phases = DeployPhases {
            plan: start.elapsed().as_millis() as u64,
            ..DeployPhases::default()
        };
        let counts = Counts {
            added: plan.adds.len() as u64,
            removed: plan.removes.len() as u64,
            changed: plan.changes.len() as u64,
        };
        if plan.is_empty() || dry_run {
            return Ok(DeployResponse {
                seq: None,
                revision: None,
                counts,
                dry_run,
                nothing_pending: plan.is_empty(),
                duration_ms: 0,
                phases_ms: phases,
            });
        }
        let tai = tai_offset_ms();
        let (upserts, removals) = kernel_changes(&plan, tai);
        if let Err(e) = self.fit_prefixes(&upserts) {
            self.ops.deploy_failures += 1;
            return Err(e);
        }
        // The store writes the revision while the kernel takes the changes,
        // and commits it only once the kernel has them all.
        let dp = &mut self.dp;
        let commit_start = Instant::now();
        let applied = self
            .store
            .commit_alongside(&plan, user, message, now, kind, || {
                let kernel_start = Instant::now();
                dp.apply(&upserts, &removals)
                    .map(|()| kernel_start.elapsed().as_millis() as u64)
            });
        let recorded = match applied {
            Ok((kernel_ms, recorded)) => {
                phases.kernel = kernel_ms;
                recorded
            }
            Err(e) => {
                self.ops.deploy_failures += 1;
                return Err(ApiError::failure(format!(
                    "deploy failed, the kernel is unchanged and the changes stay staged: {e}"
                )));
            }
        };
        match recorded {
            Ok((rev, seq)) => {
                phases.commit = commit_start.elapsed().as_millis() as u64;
                let ms = start.elapsed().as_millis() as u64;
                self.ops.last_deploy_ms = ms;
                Ok(DeployResponse {
                    seq: Some(seq),
                    revision: Some(rev.revision),
                    counts,
                    dry_run: false,
                    nothing_pending: false,
                    duration_ms: ms,
                    phases_ms: phases,
                })
            }
            Err(e) => {
                self.ops.deploy_failures += 1;
                let (up, rm) = undo_changes(&plan, tai);
                if let Err(u) = self.dp.apply(&up, &rm) {
                    tracing::error!(
                        "undoing the kernel after a failed commit: {u}; verify will repair it"
                    );
                    self.drift += 1;
                }
                Err(ApiError::failure(format!(
                    "deploy failed: the store could not record it ({e}); the kernel was rolled back and the changes stay staged"
                )))
            }
        }
    }

    /// Moves to larger prefix arrays when `upserts` might not fit the
    /// current ones, sized for what they need with room to double, within
    /// what `--capacity` allows. Beyond that the deploy fails as before.
    fn fit_prefixes(&mut self, upserts: &[Rule]) -> Result<(), ApiError> {
        if self.dp.prefixes_fit(upserts) {
            return Ok(());
        }
        let needs = self.dp.prefix_needs(upserts);
        let now = self.dp.layout();
        if now.holds(needs) {
            return Ok(());
        }
        let want = self.config.layout.fitting(needs);
        let grown = Layout {
            prefix_rules: want.prefix_rules.max(now.prefix_rules),
            nodes_v4: want.nodes_v4.max(now.nodes_v4),
            nodes_v6: want.nodes_v6.max(now.nodes_v6),
            ..now
        };
        if grown == now {
            return Ok(());
        }
        self.relayout(grown)
    }

    /// Moves the filter to fresh maps of `layout` holding what the kernel
    /// holds now. As at a start, the new generation is complete before any
    /// pinned link moves to it with BPF_LINK_UPDATE, so no packet goes
    /// unfiltered; then the old generation is unpinned. Hit counts are
    /// folded into the store first, since the new maps count from zero.
    fn relayout(&mut self, layout: Layout) -> Result<(), ApiError> {
        let start = Instant::now();
        let failed = |e: &dyn std::fmt::Display| {
            ApiError::failure(format!(
                "moving to larger prefix maps failed ({e}); nothing changed and the filter goes on"
            ))
        };
        self.fold_hits()?;
        let rules: Vec<Rule> = self.dp.rules().collect();
        let (generation, mut dp) =
            build_generation(&self.pins, layout, &rules).map_err(|e| failed(&e))?;
        for iface in self.pins.links().map_err(|e| failed(&e))? {
            if let Err(e) = dp.adopt(&iface, &self.pins.link(&iface)) {
                tracing::error!(%iface, "moving the pinned link to the larger maps: {e}");
            }
        }
        let old = std::mem::replace(&mut self.dp, dp);
        self.hits_seen.clear();
        unpin_older(&self.pins, generation);
        drop(old);
        tracing::info!(
            generation,
            prefix_rules = layout.prefix_rules,
            nodes_v4 = layout.nodes_v4,
            nodes_v6 = layout.nodes_v6,
            took_ms = start.elapsed().as_millis() as u64,
            "moved to larger prefix maps"
        );
        Ok(())
    }

    pub fn discard(&mut self, peer: &Peer) -> Result<SeqResponse, ApiError> {
        let (seq, n) = self.store.discard(&peer.user, now_ms())?;
        Ok(SeqResponse {
            seq,
            detail: Some(serde_json::json!({ "discarded": n })),
        })
    }

    pub fn check(&self, ip: IpAddr) -> CheckResponse {
        let now_tai = (now_ms() + tai_offset_ms()).max(0) as u64 * 1_000_000;
        let (verdict, decided) = self.dp.decide(ip, now_tai);
        let entry = decided.first().map(|r| r.target.to_string());
        CheckResponse {
            ip: crate::target::normal_ip(ip),
            verdict: match verdict {
                Verdict::Allowed => Verdict::Pass,
                v => v,
            },
            allowed_by: if verdict == Verdict::Allowed {
                entry.clone()
            } else {
                None
            },
            entry: if verdict == Verdict::Allowed {
                None
            } else {
                entry
            },
        }
    }

    /// Folds the kernel's per-entry counters into the store's totals, and
    /// frees the counters removed entries still hold in the kernel. An entry
    /// with new hits was last hit by now: the kernel keeps no time (see
    /// `denylist_common::Hit`), so a last hit is dated to within the time
    /// between folds, at most the sweep period.
    pub fn fold_hits(&mut self) -> Result<(), ApiError> {
        let kernel = self.dp.sweep_hits()?;
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
    ) -> Result<Vec<StatItem>, ApiError> {
        self.fold_hits()?;
        let totals = self.store.hit_totals()?;
        let now = now_ms();
        let mut out: Vec<StatItem> = self
            .store
            .deployed()?
            .into_iter()
            .filter(|s| !s.entry.expired_at(now))
            .map(|s| {
                let t = totals.get(&s.id).copied().unwrap_or_default();
                StatItem {
                    target: s.entry.target.to_string(),
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
        out.sort_by(|a, b| b.packets.cmp(&a.packets).then(a.target.cmp(&b.target)));
        if let Some(n) = top {
            out.truncate(n);
        }
        Ok(out)
    }

    pub fn history(&self) -> Result<Vec<crate::store::Revision>, ApiError> {
        Ok(self.store.history()?)
    }

    pub fn audit(&self, since: u64) -> Result<Vec<crate::store::AuditEvent>, ApiError> {
        Ok(self.store.audit_since(since)?)
    }

    pub fn rollback(
        &mut self,
        peer: &Peer,
        req: RollbackRequest,
    ) -> Result<RollbackResponse, ApiError> {
        let (seq, expired) = self
            .store
            .rollback(req.revision, req.force, &peer.user, now_ms())?;
        let deployed = if req.deploy {
            let msg = req
                .message
                .clone()
                .unwrap_or_else(|| format!("rollback to {}", req.revision));
            Some(self.deploy_as(&peer.user, None, Some(&msg), false, "rollback")?)
        } else {
            None
        };
        Ok(RollbackResponse {
            seq,
            expired: expired.iter().map(|e| e.target.to_string()).collect(),
            deployed,
        })
    }

    pub fn attach(&mut self, peer: &Peer, req: AttachRequest) -> Result<SeqResponse, ApiError> {
        let mode = req.xdp_mode.unwrap_or(self.config.xdp_mode);
        if ifindex(&req.iface) == 0 {
            return Err(ApiError::new(
                Class::NotFound,
                format!("there is no interface {}", req.iface),
            ));
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
                let _ = self.dp.detach(&req.iface);
                let _ = self.pins.remove_link(&req.iface);
                if let Some(i) = self.ifaces.get_mut(&req.iface) {
                    i.attached = None;
                }
                self.attach_now(&req.iface, mode)?
            }
            None => self.attach_now(&req.iface, mode)?,
        };
        let seq =
            self.store
                .set_attachment(&req.iface, Some(mode.as_str()), &peer.user, now_ms())?;
        Ok(SeqResponse {
            seq,
            detail: Some(serde_json::json!({ "iface": req.iface, "xdp_mode": attached })),
        })
    }

    pub fn detach(&mut self, peer: &Peer, req: DetachRequest) -> Result<SeqResponse, ApiError> {
        if !self.ifaces.contains_key(&req.iface) {
            return Err(ApiError::new(
                Class::NotFound,
                format!(
                    "denylistd does not look after {}: `denylist status` lists the interfaces it does",
                    req.iface
                ),
            ));
        }
        let _ = self.dp.detach(&req.iface);
        self.pins
            .remove_link(&req.iface)
            .map_err(|e| ApiError::failure(e.to_string()))?;
        self.ifaces.remove(&req.iface);
        let seq = self
            .store
            .set_attachment(&req.iface, None, &peer.user, now_ms())?;
        Ok(SeqResponse { seq, detail: None })
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
                    tracing::error!("verify after restoring the pins: {}", e.message);
                }
            }
            Err(e) => tracing::error!("restoring the pins: {}", e.message),
        }
    }

    /// Pins again what lost its pin, with a `pins restored` audit event;
    /// returns how many pins it made.
    fn restore_pins(&mut self) -> Result<usize, ApiError> {
        self.pins
            .ensure_dir()
            .map_err(|e| ApiError::failure(e.to_string()))?;
        let links: Vec<(String, PathBuf)> = self
            .ifaces
            .iter()
            .filter(|(_, i)| i.attached.is_some())
            .map(|(name, _)| (name.clone(), self.pins.link(name)))
            .collect();
        let restored = self.dp.restore_pins(&links)?;
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
    pub fn verify(&mut self, user: &str) -> Result<VerifyResponse, ApiError> {
        // The maps can be read back even when they cannot be pinned.
        if let Err(e) = self.restore_pins() {
            tracing::error!("restoring the pins: {}", e.message);
        }
        let drift = self.dp.drift()?;
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
        self.dp.repair(&drift)?;
        let left = self.dp.drift()?.len();
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
            drift: drift.iter().map(|(t, _)| t.to_string()).collect(),
            repaired,
        })
    }

    /// A consistent copy of the store in a new private file in the state
    /// directory, for the API to stream to the client and then delete. The
    /// client writes it with its own rights: the daemon writes nowhere a
    /// client names, since it runs as root.
    pub fn backup(&mut self, user: &str) -> Result<PathBuf, ApiError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = self
            .config
            .state_dir
            .join(format!(".backup-{}-{nanos}.db", std::process::id()));
        if let Err(e) = self.store.backup(&path) {
            let _ = std::fs::remove_file(&path);
            return Err(ApiError::failure(format!(
                "backup failed: {e}; check the free space in {}",
                self.config.state_dir.display()
            )));
        }
        self.store.record(user, "backup", None, None, now_ms())?;
        Ok(path)
    }

    /// Removes expired entries from the maps, the deployed set and the
    /// draft. They are already dead in the kernel; this keeps a later
    /// deploy from reviving them.
    pub fn sweep(&mut self) -> Result<usize, ApiError> {
        // Counting is secondary: a failed fold must not stop expiry.
        if let Err(e) = self.fold_hits() {
            tracing::warn!("folding hit counters: {}", e.message);
        }
        let now = now_ms();
        let expired = self.store.expired(now)?;
        if expired.is_empty() {
            return Ok(0);
        }
        // Only what the kernel still holds: after a failed store write, a
        // later sweep must not trip over entries already taken out.
        let keys: Vec<(Target, List)> = expired
            .iter()
            .map(|s| (s.entry.target, s.entry.list))
            .filter(|(t, l)| self.dp.is_installed(t, *l))
            .collect();
        self.dp.apply(&[], &keys)?;
        self.store.expire(&expired, now)?;
        tracing::info!(count = expired.len(), "swept expired entries");
        Ok(expired.len())
    }

    /// Leaves filtering in place (the default), or detaches everything.
    pub fn shutdown(mut self) {
        if let Err(e) = self.fold_hits() {
            tracing::warn!("could not save the last hit counts: {}", e.message);
        }
        if self.config.detach_on_exit {
            let names: Vec<String> = self.ifaces.keys().cloned().collect();
            for iface in names {
                let _ = self.dp.detach(&iface);
                let _ = self.pins.remove_link(&iface);
            }
            if let Ok(gens) = self.pins.generations() {
                for g in gens {
                    let _ = self.pins.remove_generation(g);
                }
            }
            tracing::info!("detached on exit");
        }
    }

    pub fn dataplane(&self) -> &Dataplane {
        &self.dp
    }
}

/// An entry of our JSON export, as an import reads it: every field but
/// the target may be left out.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportedEntry {
    target: Target,
    #[serde(default)]
    list: Option<List>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    ttl: Option<u64>,
    /// Ignored: the expiry is set again by the deploy, from the TTL.
    #[serde(default, rename = "expires_at")]
    _expires_at: Option<serde_json::Value>,
    #[serde(default)]
    monitor: Option<bool>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    added_by: Option<String>,
    #[serde(default, with = "crate::entry::time_ms::opt")]
    added_at: Option<Millis>,
}

impl ImportedEntry {
    fn into_entry(self, user: &str, now: Millis) -> Result<Entry, ApiError> {
        if let Some(t) = self.ttl {
            check_ttl(t)?;
        }
        let list = self.list.unwrap_or(List::Deny);
        Ok(Entry {
            target: self.target,
            list,
            reason: self.reason,
            ttl: self.ttl,
            expires_at: None,
            monitor: self.monitor.unwrap_or(false) && list == List::Deny,
            source: self.source.unwrap_or_else(|| "manual".into()),
            added_by: self.added_by.unwrap_or_else(|| user.to_string()),
            added_at: self.added_at.unwrap_or(now),
        })
    }
}

/// The mode `ip` reports for an interface's XDP program.
fn xdp_mode_of(iface: &str) -> Option<AttachedMode> {
    match ip_xdp(iface)?.get("mode")?.as_u64()? {
        2 => Some(AttachedMode::Skb),
        _ => Some(AttachedMode::Native),
    }
}

/// A new generation of maps of `layout`, pinned, holding `rules`: complete
/// before any link moves to it. On failure its pins go again, and the
/// running filter is untouched.
fn build_generation(
    pins: &Pins,
    layout: Layout,
    rules: &[Rule],
) -> Result<(u64, Dataplane), StartError> {
    let (generation, dir) = pins.new_generation()?;
    let built = Dataplane::load_at(layout, Some(&dir)).and_then(|mut dp| {
        dp.apply(rules, &[])?;
        Ok(dp)
    });
    match built {
        Ok(dp) => Ok((generation, dp)),
        Err(e) => {
            let _ = pins.remove_generation(generation);
            Err(e.into())
        }
    }
}

/// Unpins every generation before `current`, once the links have moved.
fn unpin_older(pins: &Pins, current: u64) {
    let generations = match pins.generations() {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!("could not list the old generations to unpin: {e}");
            return;
        }
    };
    for g in generations.into_iter().filter(|&g| g != current) {
        if let Err(e) = pins.remove_generation(g) {
            tracing::warn!(generation = g, "could not unpin an old generation: {e}");
        }
    }
}

/// Above these sizes an operation's transient buffers are worth handing back.
const BULK_BYTES: usize = 1 << 20;
const BULK_ENTRIES: u64 = 10_000;

/// Returns the heap's free pages to the kernel. glibc keeps what a bulk
/// import or deploy freed, so without this the daemon would hold its peak
/// (about 1 KB per entry of a 1M import) for good.
fn release_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only gives free memory back; it has no
    // preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn kernel_changes(plan: &Plan, tai: i64) -> (Vec<Rule>, Vec<(Target, List)>) {
    let upserts = plan
        .adds
        .iter()
        .chain(plan.changes.iter().map(|(_, after)| after))
        .map(|s| kernel_rule(s, tai))
        .collect();
    let removals = plan
        .removes
        .iter()
        .map(|s| (s.entry.target, s.entry.list))
        .collect();
    (upserts, removals)
}

fn undo_changes(plan: &Plan, tai: i64) -> (Vec<Rule>, Vec<(Target, List)>) {
    let upserts = plan
        .removes
        .iter()
        .chain(plan.changes.iter().map(|(before, _)| before))
        .map(|s| kernel_rule(s, tai))
        .collect();
    let removals = plan
        .adds
        .iter()
        .map(|s| (s.entry.target, s.entry.list))
        .collect();
    (upserts, removals)
}
