//! The loaded XDP program and its maps: the one place that writes entries
//! into the kernel.
//!
//! Changes go in an order that keeps each packet's verdict either the old or
//! the new one (docs/dataplane.md has the argument), and a batch is all or
//! nothing: when a step fails, the steps already done are undone.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    os::fd::{AsFd, BorrowedFd},
    path::{Path, PathBuf},
    sync::atomic::AtomicU32,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap as BpfHashMap, Map, MapData, MapError, PerCpuArray, PerCpuHashMap},
    pin::PinError,
    programs::{
        ProgramError, Xdp, XdpMode,
        links::{FdLink, LinkError, PinnedLink},
        xdp::{XdpLink, XdpLinkId},
    },
};
use denylist_common::{
    Counters, ExactValue, FLAG_ALLOW, FLAG_MONITOR, FLAG_PRESENT, HIT_SLOTS, Hit, HitSlot,
    MAP_COUNTERS, MAP_EXACT_V4, MAP_EXACT_V6, MAP_HIT_SLOTS, MAP_HITS, MAP_NODES_V4, MAP_NODES_V6,
    MAP_RULES, NODE_SLOTS, PROGRAM_NAME, Slot, pack_word,
};

use crate::{
    batch,
    layout::Layout,
    object,
    region::{Region, RuleCell},
    target::Target,
    trie::{Prefixes, TrieError},
    verdict::{List, Rule},
};

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error(
        "loading the XDP program failed: {0} (run as root, on a kernel with BTF, 6.1 or newer)"
    )]
    Load(#[from] aya::EbpfError),
    #[error("the XDP program was rejected: {0}")]
    Program(#[source] ProgramError),
    #[error("the object has no map {name}: rebuild denylist")]
    MissingMap { name: &'static str },
    #[error("mapping {name} into memory failed: {source}")]
    Mmap {
        name: &'static str,
        source: std::io::Error,
    },
    #[error("kernel map {name}: {source}")]
    Map {
        name: &'static str,
        source: MapError,
    },
    #[error(
        "{needed} entries would exceed the capacity of {capacity}: restart denylistd with a larger --capacity"
    )]
    Capacity { needed: usize, capacity: u32 },
    #[error(transparent)]
    Prefix(#[from] TrieError),
    #[error("{target} is not on the {list:?} list in the kernel")]
    NotInstalled { target: Target, list: List },
    #[error("{target} ({list:?}) appears more than once in one change")]
    Duplicate { target: Target, list: List },
    #[error("cannot attach to {iface}: {source}")]
    Attach { iface: String, source: ProgramError },
    #[error("{iface} is not attached")]
    NotAttached { iface: String },
    #[error("batch {op} of kernel map {name}: {source}")]
    Batch {
        op: &'static str,
        name: &'static str,
        source: std::io::Error,
    },
    #[error("pinning {path}: {source}")]
    Pin { path: PathBuf, source: PinError },
    #[error("creating the pin directory {path}: {source}")]
    PinDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the pinned link {path} cannot be used: {detail}")]
    Link { path: PathBuf, detail: String },
}

/// How to attach: `Auto` tries native (driver) mode, then generic (skb).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    Auto,
    Native,
    Skb,
}

/// The mode an attachment ended up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachedMode {
    Native,
    Skb,
}

/// Exact-address values waiting for one batched write: the last value per
/// address wins, `None` deletes.
type ExactBatch = HashMap<IpAddr, Option<ExactValue>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Installed {
    id: u32,
    word: u64,
}

/// The program, its maps, and what user space has put into them.
pub struct Dataplane {
    ebpf: Ebpf,
    prefixes: Prefixes,
    installed: HashMap<(Target, List), Installed>,
    /// Installed targets per (is IPv4, prefix length), for `decide`.
    lengths: HashMap<(bool, u8), usize>,
    layout: Layout,
    links: HashMap<String, XdpLinkId>,
    /// The kernel's id of each pinned link, to pin it again if its pin is
    /// deleted: aya hands out no borrowed fd of a link it holds.
    link_ids: HashMap<String, u32>,
    /// Where the maps are pinned, if they are.
    pin_dir: Option<PathBuf>,
}

/// The packed flags and expiry of a rule, as the kernel reads them.
pub fn word_of(r: &Rule) -> u64 {
    let mut flags = FLAG_PRESENT;
    if r.monitor {
        flags |= FLAG_MONITOR;
    }
    if r.list == List::Allow {
        flags |= FLAG_ALLOW;
    }
    pack_word(flags, r.expires_ms.unwrap_or(0))
}

fn map_fd<'a>(ebpf: &'a Ebpf, name: &'static str) -> Result<BorrowedFd<'a>, DataplaneError> {
    match ebpf.map(name) {
        Some(Map::Array(d)) => Ok(d.fd().as_fd()),
        _ => Err(DataplaneError::MissingMap { name }),
    }
}

fn region<T>(ebpf: &Ebpf, name: &'static str, len: usize) -> Result<Region<T>, DataplaneError> {
    Region::mmap(map_fd(ebpf, name)?, len).map_err(|source| DataplaneError::Mmap { name, source })
}

impl Dataplane {
    /// Loads the program with fresh, unpinned maps sized for `layout`;
    /// nothing is attached.
    pub fn load(layout: Layout) -> Result<Self, DataplaneError> {
        Self::load_at(layout, None)
    }

    /// Loads the program with fresh maps, pinned under `pins` when given (a
    /// new, empty directory on bpffs) so they outlive this process.
    pub fn load_at(layout: Layout, pins: Option<&Path>) -> Result<Self, DataplaneError> {
        let mut loader = EbpfLoader::new();
        let sizes = layout.max_entries();
        let paths: Vec<(&str, PathBuf)> = match pins {
            Some(dir) => sizes.iter().map(|(n, _)| (*n, dir.join(n))).collect(),
            None => Vec::new(),
        };
        for (name, n) in sizes {
            loader.map_max_entries(name, n);
        }
        for (name, path) in &paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader.load(object::DENYLIST)?;
        let size = |name| {
            sizes
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(0, |(_, s)| *s as usize)
        };
        let prefixes = Prefixes::new(
            region::<AtomicU32>(&ebpf, MAP_NODES_V4, size(MAP_NODES_V4) * NODE_SLOTS)?,
            region::<AtomicU32>(&ebpf, MAP_NODES_V6, size(MAP_NODES_V6) * NODE_SLOTS)?,
            region::<RuleCell>(&ebpf, MAP_RULES, size(MAP_RULES))?,
        );
        program(&mut ebpf).load().map_err(DataplaneError::Program)?;
        Ok(Self {
            ebpf,
            prefixes,
            installed: HashMap::new(),
            lengths: HashMap::new(),
            layout,
            links: HashMap::new(),
            link_ids: HashMap::new(),
            pin_dir: pins.map(Path::to_path_buf),
        })
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The loaded program, e.g. for BPF_PROG_TEST_RUN.
    pub fn program(&mut self) -> &mut Xdp {
        program(&mut self.ebpf)
    }

    /// Entries in the kernel, both lists and both families.
    pub fn len(&self) -> usize {
        self.installed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.installed.is_empty()
    }

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
            for (name, _) in self.layout.max_entries() {
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
            crate::pins::pin_link(id, path).map_err(|source| DataplaneError::Link {
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

    /// Puts `upserts` in (new entries, or new fields for existing ones) and
    /// takes `removals` out, all or nothing.
    ///
    /// Order: allow additions; deny additions, most specific first; changes
    /// in place; deny removals, least specific first; allow removals. An
    /// exact removal that no other change in the batch can affect decides
    /// its packets alone, so it goes first: the maps then never hold both a
    /// replaced list and its successor, which would not fit when the list
    /// is more than half the capacity.
    pub fn apply(
        &mut self,
        upserts: &[Rule],
        removals: &[(Target, List)],
    ) -> Result<(), DataplaneError> {
        if let Some(&(target, list)) = removals.iter().find(|k| !self.installed.contains_key(k)) {
            return Err(DataplaneError::NotInstalled { target, list });
        }
        let mut seen = std::collections::HashSet::with_capacity(upserts.len() + removals.len());
        let keys = upserts
            .iter()
            .map(|r| (r.target, r.list))
            .chain(removals.iter().copied());
        for (target, list) in keys {
            if !seen.insert((target, list)) {
                return Err(DataplaneError::Duplicate { target, list });
            }
        }
        let added = upserts
            .iter()
            .filter(|r| !self.installed.contains_key(&(r.target, r.list)))
            .count();
        let needed = (self.installed.len() + added).saturating_sub(removals.len());
        if needed > self.layout.capacity as usize {
            return Err(DataplaneError::Capacity {
                needed,
                capacity: self.layout.capacity,
            });
        }
        let alone = lone_exact_removals(upserts, removals);
        let mut ops: Vec<(u16, Target, List, Option<Installed>)> = upserts
            .iter()
            .map(|r| {
                let rank = match (self.installed.contains_key(&(r.target, r.list)), r.list) {
                    (true, _) => 600,
                    (false, List::Allow) => 1,
                    (false, List::Deny) => 300 - u16::from(r.target.prefix_len()),
                };
                let new = Installed {
                    id: r.id,
                    word: word_of(r),
                };
                (rank, r.target, r.list, Some(new))
            })
            .chain(removals.iter().map(|&(t, l)| {
                let rank = match l {
                    _ if alone.contains(&(t, l)) => 0,
                    List::Deny => 700 + u16::from(t.prefix_len()),
                    List::Allow => 900,
                };
                (rank, t, l, None)
            }))
            .collect();
        ops.sort_by_key(|op| op.0);
        let mut undo = Vec::with_capacity(ops.len());
        let mut batch = ExactBatch::new();
        let mut done = Ok(());
        for (_, t, l, new) in ops {
            // Exact writes wait in the batch; a prefix change must not
            // overtake the exact ones ordered before it.
            if !t.is_exact()
                && let Err(e) = self.flush(&mut batch)
            {
                done = Err(e);
                break;
            }
            match self.set(t, l, new, Some(&mut batch)) {
                Ok(prev) => undo.push((t, l, prev)),
                Err(e) => {
                    done = Err(e);
                    break;
                }
            }
        }
        if done.is_ok() {
            done = self.flush(&mut batch);
        }
        if let Err(e) = done {
            batch.clear();
            for (t, l, prev) in undo.into_iter().rev() {
                if let Err(u) = self.set(t, l, prev, None) {
                    // What user space believes must stay what the store
                    // holds; `drift` then shows the kernel's difference and
                    // verify rewrites it.
                    tracing::error!("undoing {t} ({l:?}) after a failed change: {u}");
                    self.record_installed(t, l, prev);
                }
            }
            return Err(e);
        }
        Ok(())
    }

    /// Records `new` as what the kernel holds for (t, l), and keeps the
    /// per-length counts `decide` probes by.
    fn record_installed(&mut self, t: Target, l: List, new: Option<Installed>) {
        let prev = match new {
            Some(n) => self.installed.insert((t, l), n),
            None => self.installed.remove(&(t, l)),
        };
        let key = (t.is_ipv4(), t.prefix_len());
        match (prev, new) {
            (None, Some(_)) => *self.lengths.entry(key).or_default() += 1,
            (Some(_), None) => {
                if let Some(n) = self.lengths.get_mut(&key) {
                    *n -= 1;
                }
            }
            _ => {}
        }
    }

    /// Writes the batched exact-address changes with one bpf() call per
    /// map and kind (BPF_MAP_UPDATE_BATCH, BPF_MAP_DELETE_BATCH).
    fn flush(&mut self, batch: &mut ExactBatch) -> Result<(), DataplaneError> {
        if batch.is_empty() {
            return Ok(());
        }
        let (mut up4, mut vals4, mut del4) = (Vec::new(), Vec::new(), Vec::new());
        let (mut up6, mut vals6, mut del6) = (Vec::new(), Vec::new(), Vec::new());
        for (ip, v) in batch.drain() {
            match (ip, v) {
                (IpAddr::V4(a), Some(v)) => {
                    up4.push(a.octets());
                    vals4.push(v);
                }
                (IpAddr::V4(a), None) => del4.push(a.octets()),
                (IpAddr::V6(a), Some(v)) => {
                    up6.push(a.octets());
                    vals6.push(v);
                }
                (IpAddr::V6(a), None) => del6.push(a.octets()),
            }
        }
        let fd = |name: &'static str| -> Result<BorrowedFd<'_>, DataplaneError> {
            match self.ebpf.map(name) {
                Some(Map::HashMap(d)) => Ok(d.fd().as_fd()),
                _ => Err(DataplaneError::MissingMap { name }),
            }
        };
        let err = |name: &'static str| {
            move |source| DataplaneError::Batch {
                op: "update",
                name,
                source,
            }
        };
        // Deletes first, so the hash maps peak at the larger of the old and
        // the new size. Each packet reads one exact key, so the order among
        // the keys of one batch never mixes two verdicts for it.
        // A batch delete stops at the first missing key; one by one, a
        // missing key (deleted behind our back) is simply already done.
        let v4_done = batch::delete(fd(MAP_EXACT_V4)?, &del4).is_ok();
        let v6_done = batch::delete(fd(MAP_EXACT_V6)?, &del6).is_ok();
        let retry4 = (!v4_done)
            .then_some(del4)
            .into_iter()
            .flatten()
            .map(IpAddr::from);
        let retry6 = (!v6_done)
            .then_some(del6)
            .into_iter()
            .flatten()
            .map(IpAddr::from);
        let retry: Vec<IpAddr> = retry4.chain(retry6).collect();
        for ip in retry {
            self.write_exact(ip, None)?;
        }
        let fd = |name: &'static str| -> Result<BorrowedFd<'_>, DataplaneError> {
            match self.ebpf.map(name) {
                Some(Map::HashMap(d)) => Ok(d.fd().as_fd()),
                _ => Err(DataplaneError::MissingMap { name }),
            }
        };
        batch::update(fd(MAP_EXACT_V4)?, &up4, &vals4).map_err(err(MAP_EXACT_V4))?;
        batch::update(fd(MAP_EXACT_V6)?, &up6, &vals6).map_err(err(MAP_EXACT_V6))?;
        Ok(())
    }

    /// Sets one entry's kernel state, returning what it was. An exact
    /// address's new value goes into `batch` when given, else straight in.
    fn set(
        &mut self,
        t: Target,
        l: List,
        new: Option<Installed>,
        batch: Option<&mut ExactBatch>,
    ) -> Result<Option<Installed>, DataplaneError> {
        let prev = self.installed.get(&(t, l)).copied();
        if prev == new {
            return Ok(prev);
        }
        if t.is_exact() {
            let other = match l {
                List::Deny => List::Allow,
                List::Allow => List::Deny,
            };
            let slot = |i: Option<Installed>| {
                i.map_or(Slot::default(), |i| Slot {
                    word: i.word,
                    id: i.id,
                    _pad: 0,
                })
            };
            let (mine, theirs) = (slot(new), slot(self.installed.get(&(t, other)).copied()));
            let value = match l {
                List::Deny => ExactValue {
                    deny: mine,
                    allow: theirs,
                },
                List::Allow => ExactValue {
                    deny: theirs,
                    allow: mine,
                },
            };
            let value = (new.is_some() || theirs.word != 0).then_some(value);
            match batch {
                Some(b) => {
                    b.insert(t.addr(), value);
                }
                None => self.write_exact(t.addr(), value)?,
            }
        } else {
            match (prev, new) {
                (None, Some(n)) => self.prefixes.insert(&t, l, n.id, n.word)?,
                (Some(_), Some(n)) => self.prefixes.update(&t, l, n.id, n.word)?,
                (Some(_), None) => self.prefixes.remove(&t, l)?,
                (None, None) => {}
            }
        }
        self.record_installed(t, l, new);
        Ok(prev)
    }

    fn write_exact(&mut self, ip: IpAddr, value: Option<ExactValue>) -> Result<(), DataplaneError> {
        fn write<K: aya::Pod>(
            map: &mut Map,
            name: &'static str,
            key: K,
            value: Option<ExactValue>,
        ) -> Result<(), DataplaneError> {
            let err = |source| DataplaneError::Map { name, source };
            let mut h: BpfHashMap<&mut MapData, K, ExactValue> =
                BpfHashMap::try_from(map).map_err(err)?;
            match value {
                Some(v) => h.insert(key, v, 0).map_err(err),
                // Already gone is what a delete wants: an undo may delete
                // what a failed batch never wrote.
                None => match h.remove(&key) {
                    Err(MapError::KeyNotFound) => Ok(()),
                    r => r.map_err(err),
                },
            }
        }
        let name = if ip.is_ipv4() {
            MAP_EXACT_V4
        } else {
            MAP_EXACT_V6
        };
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(DataplaneError::MissingMap { name })?;
        match ip {
            IpAddr::V4(a) => write(map, name, a.octets(), value),
            IpAddr::V6(a) => write(map, name, a.octets(), value),
        }
    }

    /// The verdict the kernel gives `ip` at `now_tai_ns`, from what user
    /// space installed: the deciding rule and the allow rule protecting it.
    /// Probes only the prefix lengths in use, so it stays fast at 1M entries.
    pub fn decide(&self, ip: IpAddr, now_tai_ns: u64) -> (crate::verdict::Verdict, Vec<Rule>) {
        let ip = crate::target::normal_ip(ip);
        let width = if ip.is_ipv4() { 32 } else { 128 };
        let mut covering = Vec::new();
        for len in (0..=width).rev() {
            if self.lengths.get(&(ip.is_ipv4(), len)).copied().unwrap_or(0) == 0 {
                continue;
            }
            let net = ipnet::IpNet::new(ip, len)
                .expect("length within the family")
                .trunc();
            let t = Target::from(net);
            for list in [List::Deny, List::Allow] {
                if let Some(i) = self.installed.get(&(t, list)) {
                    covering.push(rule_of(t, list, *i));
                }
            }
        }
        let d = crate::verdict::decide(&covering, ip, now_tai_ns);
        let verdict = d.verdict;
        let decided: Vec<Rule> = d.rule.into_iter().cloned().collect();
        (verdict, decided)
    }

    /// Compares the exact-address maps and prefix rules with what user
    /// space installed, returning the targets that differ.
    pub fn drift(&self) -> Result<Vec<(Target, List)>, DataplaneError> {
        let mut want: HashMap<IpAddr, ExactValue> = HashMap::new();
        for ((t, l), i) in &self.installed {
            if !t.is_exact() {
                continue;
            }
            let v = want.entry(t.addr()).or_default();
            let slot = Slot {
                word: i.word,
                id: i.id,
                _pad: 0,
            };
            match l {
                List::Deny => v.deny = slot,
                List::Allow => v.allow = slot,
            }
        }
        let mut drift = HashSet::new();
        let mut seen = HashSet::new();
        for (name, v4) in [(MAP_EXACT_V4, true), (MAP_EXACT_V6, false)] {
            let fd = match self.ebpf.map(name) {
                Some(Map::HashMap(d)) => d.fd().as_fd(),
                _ => return Err(DataplaneError::MissingMap { name }),
            };
            let read = |source| DataplaneError::Batch {
                op: "read",
                name,
                source,
            };
            let got: Vec<(IpAddr, ExactValue)> = if v4 {
                crate::batch::lookup_all::<[u8; 4], ExactValue>(fd)
                    .map_err(read)?
                    .into_iter()
                    .map(|(k, v)| (IpAddr::from(k), v))
                    .collect()
            } else {
                crate::batch::lookup_all::<[u8; 16], ExactValue>(fd)
                    .map_err(read)?
                    .into_iter()
                    .map(|(k, v)| (IpAddr::from(k), v))
                    .collect()
            };
            for (ip, v) in got {
                seen.insert(ip);
                let w = want.get(&ip).copied().unwrap_or_default();
                let t = Target::host(ip);
                if w.deny != v.deny {
                    drift.insert((t, List::Deny));
                }
                if w.allow != v.allow {
                    drift.insert((t, List::Allow));
                }
            }
        }
        for (ip, w) in &want {
            if !seen.contains(ip) {
                let t = Target::host(*ip);
                if w.deny.word != 0 {
                    drift.insert((t, List::Deny));
                }
                if w.allow.word != 0 {
                    drift.insert((t, List::Allow));
                }
            }
        }
        for ((t, l), i) in &self.installed {
            if !t.is_exact() && !self.prefixes.matches(t, *l, i.id, i.word) {
                drift.insert((*t, *l));
            }
        }
        let mut out: Vec<_> = drift.into_iter().collect();
        out.sort();
        Ok(out)
    }

    /// Rewrites the kernel's view of `targets` (both lists for an exact
    /// address) from what user space installed.
    pub fn repair(&mut self, targets: &[(Target, List)]) -> Result<(), DataplaneError> {
        for &(t, l) in targets {
            if t.is_exact() {
                let value = |l| {
                    self.installed.get(&(t, l)).map(|i| Slot {
                        word: i.word,
                        id: i.id,
                        _pad: 0,
                    })
                };
                let (deny, allow) = (value(List::Deny), value(List::Allow));
                let v = ExactValue {
                    deny: deny.unwrap_or_default(),
                    allow: allow.unwrap_or_default(),
                };
                self.write_exact(t.addr(), (deny.is_some() || allow.is_some()).then_some(v))?;
            } else if let Some(i) = self.installed.get(&(t, l)).copied() {
                self.prefixes.update(&t, l, i.id, i.word)?;
            }
        }
        Ok(())
    }

    /// Whether the prefix arrays surely hold the installed entries plus
    /// `upserts`: a quick test that needs no walk over the installed
    /// entries, counting the most nodes a new prefix could take.
    pub fn prefixes_fit(&self, upserts: &[Rule]) -> bool {
        let new = self.new_prefixes(upserts).count() as u64;
        // A prefix takes at most one node a level below the root: 14 in IPv6.
        let (v4, v6) = self.prefixes.nodes_in_use();
        self.prefixes.len() as u64 + new <= u64::from(self.layout.prefix_rules)
            && u64::from(v4) + 2 * new <= u64::from(self.layout.nodes_v4)
            && u64::from(v6) + 14 * new <= u64::from(self.layout.nodes_v6)
    }

    /// Prefix rules and trie nodes ([`crate::trie::needs`]) the installed
    /// entries plus `upserts` take. Entries a batch replaces or removes are
    /// counted too: the maps hold both while it applies.
    pub fn prefix_needs(&self, upserts: &[Rule]) -> crate::layout::Needs {
        let installed = self
            .installed
            .keys()
            .filter(|(t, _)| !t.is_exact())
            .map(|(t, _)| *t);
        let new = self.new_prefixes(upserts).map(|r| r.target);
        crate::trie::needs(installed.chain(new))
    }

    /// The prefixes among `upserts` that are not installed yet.
    fn new_prefixes<'a>(&'a self, upserts: &'a [Rule]) -> impl Iterator<Item = &'a Rule> {
        upserts
            .iter()
            .filter(|r| !r.target.is_exact() && !self.installed.contains_key(&(r.target, r.list)))
    }

    /// Installed entries that bear on staging `t` on `list`: allow entries
    /// covering it (for a deny entry), and entries of the same list inside
    /// it. Covering entries are probed by the prefix lengths in use, so a
    /// single address costs a few lookups even at 1M entries; only a prefix
    /// scans for the entries inside it.
    pub fn related(&self, t: &Target, list: List) -> Vec<(Target, List)> {
        let mut out = Vec::new();
        if list == List::Deny {
            for len in 0..=t.prefix_len() {
                if self.lengths.get(&(t.is_ipv4(), len)).copied().unwrap_or(0) == 0 {
                    continue;
                }
                let net = ipnet::IpNet::new(t.addr(), len)
                    .expect("length within the family")
                    .trunc();
                let key = (Target::from(net), List::Allow);
                if self.installed.contains_key(&key) {
                    out.push(key);
                }
            }
        }
        if t.is_exact() {
            if self.installed.contains_key(&(*t, list)) {
                out.push((*t, list));
            }
        } else {
            out.extend(
                self.installed
                    .keys()
                    .filter(|(r, l)| *l == list && t.covers(r))
                    .copied(),
            );
        }
        out
    }

    /// Every installed entry, as the kernel reads it.
    pub fn rules(&self) -> impl Iterator<Item = Rule> + '_ {
        self.installed.iter().map(|((t, l), i)| rule_of(*t, *l, *i))
    }

    /// The global counters, summed over CPUs.
    pub fn counters(&self) -> Result<Counters, DataplaneError> {
        let name = MAP_COUNTERS;
        let err = |source| DataplaneError::Map { name, source };
        let map = self
            .ebpf
            .map(name)
            .ok_or(DataplaneError::MissingMap { name })?;
        let a: PerCpuArray<&MapData, Counters> = PerCpuArray::try_from(map).map_err(err)?;
        let mut sum = Counters::default();
        for c in a.get(&0, 0).map_err(err)?.iter() {
            sum.dropped_packets += c.dropped_packets;
            sum.dropped_bytes += c.dropped_bytes;
            sum.passed_packets += c.passed_packets;
            sum.passed_bytes += c.passed_bytes;
            sum.monitored_packets += c.monitored_packets;
            sum.monitored_bytes += c.monitored_bytes;
            sum.allowed_packets += c.allowed_packets;
            sum.allowed_bytes += c.allowed_bytes;
            sum.unparsable_packets += c.unparsable_packets;
            sum.unparsable_bytes += c.unparsable_bytes;
        }
        Ok(sum)
    }

    /// Per-entry hits summed over CPUs and over both hit tables, with the
    /// latest hit time; only entries that were hit (and not evicted from
    /// the LRU) appear.
    pub fn hits(&self) -> Result<HashMap<u32, Hit>, DataplaneError> {
        let mut out = HashMap::new();
        for (_, per_cpu) in self.hit_slots()? {
            for s in per_cpu.iter().filter(|s| s.id != 0) {
                add_hit(&mut out, s.id, &s.hit);
            }
        }
        for (id, per_cpu) in self.hit_overflow()? {
            for v in &per_cpu {
                add_hit(&mut out, id, v);
            }
        }
        Ok(out)
    }

    /// [`Self::hits`] for installed entries, freeing what removed entries
    /// still hold: their direct-mapped slots and LRU elements. Clearing a
    /// slot rewrites its index on every CPU, so an increment racing on
    /// another CPU for a live entry at that index may be lost.
    pub fn sweep_hits(&mut self) -> Result<HashMap<u32, Hit>, DataplaneError> {
        let live: HashSet<u32> = self.installed.values().map(|i| i.id).collect();
        let mut out = HashMap::new();
        let mut stale_slots = Vec::new();
        for (index, mut per_cpu) in self.hit_slots()? {
            let mut stale = false;
            for s in per_cpu.iter_mut().filter(|s| s.id != 0) {
                if live.contains(&s.id) {
                    add_hit(&mut out, s.id, &s.hit);
                } else {
                    *s = HitSlot::default();
                    stale = true;
                }
            }
            if stale {
                stale_slots.push((index, per_cpu));
            }
        }
        let mut stale_ids = Vec::new();
        for (id, per_cpu) in self.hit_overflow()? {
            if live.contains(&id) {
                for v in &per_cpu {
                    add_hit(&mut out, id, v);
                }
            } else {
                stale_ids.push(id);
            }
        }
        let name = MAP_HIT_SLOTS;
        let err = |source| DataplaneError::Map { name, source };
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(DataplaneError::MissingMap { name })?;
        let mut slots: PerCpuArray<&mut MapData, HitSlot> =
            PerCpuArray::try_from(map).map_err(err)?;
        for (index, per_cpu) in stale_slots {
            let values = aya::maps::PerCpuValues::try_from(per_cpu).map_err(|e| {
                err(MapError::SyscallError(aya::sys::SyscallError {
                    call: "per-CPU values",
                    io_error: e,
                }))
            })?;
            slots.set(index, values, 0).map_err(err)?;
        }
        let name = MAP_HITS;
        let err = |source| DataplaneError::Map { name, source };
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(DataplaneError::MissingMap { name })?;
        let mut lru: PerCpuHashMap<&mut MapData, u32, Hit> =
            PerCpuHashMap::try_from(map).map_err(err)?;
        for id in stale_ids {
            // Already evicted is as good as removed.
            let _ = lru.remove(&id);
        }
        Ok(out)
    }

    /// Every slot of the direct-mapped table, per CPU.
    fn hit_slots(&self) -> Result<Vec<(u32, Vec<HitSlot>)>, DataplaneError> {
        let name = MAP_HIT_SLOTS;
        let err = |source| DataplaneError::Map { name, source };
        let map = self
            .ebpf
            .map(name)
            .ok_or(DataplaneError::MissingMap { name })?;
        let slots: PerCpuArray<&MapData, HitSlot> = PerCpuArray::try_from(map).map_err(err)?;
        (0..HIT_SLOTS)
            .map(|i| Ok((i, slots.get(&i, 0).map_err(err)?.iter().copied().collect())))
            .collect()
    }

    /// Every element of the LRU overflow table, per CPU.
    fn hit_overflow(&self) -> Result<Vec<(u32, Vec<Hit>)>, DataplaneError> {
        let name = MAP_HITS;
        let err = |source| DataplaneError::Map { name, source };
        let map = self
            .ebpf
            .map(name)
            .ok_or(DataplaneError::MissingMap { name })?;
        let lru: PerCpuHashMap<&MapData, u32, Hit> = PerCpuHashMap::try_from(map).map_err(err)?;
        lru.iter()
            .map(|item| {
                let (id, per_cpu) = item.map_err(err)?;
                Ok((id, per_cpu.iter().copied().collect()))
            })
            .collect()
    }
}

/// Exact removals that no other change of the batch can affect: no other
/// change to the same address (on either list), and none to a prefix that
/// covers it. Removing one of these at any point moves its packets straight
/// from the old verdict to the new one.
fn lone_exact_removals(upserts: &[Rule], removals: &[(Target, List)]) -> HashSet<(Target, List)> {
    if !removals.iter().any(|(t, _)| t.is_exact()) {
        return HashSet::new();
    }
    let keys = upserts
        .iter()
        .map(|r| (r.target, r.list))
        .chain(removals.iter().copied());
    let mut per_addr: HashMap<IpAddr, u32> = HashMap::new();
    let mut prefixes = HashSet::new();
    let mut lengths = HashSet::new();
    for (t, _) in keys {
        if t.is_exact() {
            *per_addr.entry(t.addr()).or_default() += 1;
        } else {
            prefixes.insert(t);
            lengths.insert((t.is_ipv4(), t.prefix_len()));
        }
    }
    removals
        .iter()
        .filter(|(t, _)| t.is_exact() && per_addr.get(&t.addr()) == Some(&1))
        .filter(|(t, _)| {
            !lengths.iter().any(|&(v4, len)| {
                v4 == t.is_ipv4()
                    && prefixes.contains(&Target::from(
                        ipnet::IpNet::new(t.addr(), len)
                            .expect("length within the family")
                            .trunc(),
                    ))
            })
        })
        .copied()
        .collect()
}

fn add_hit(out: &mut HashMap<u32, Hit>, id: u32, v: &Hit) {
    let sum = out.entry(id).or_default();
    sum.packets += v.packets;
    sum.bytes += v.bytes;
}

impl AttachMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachMode::Auto => "auto",
            AttachMode::Native => "native",
            AttachMode::Skb => "skb",
        }
    }
}

impl std::str::FromStr for AttachMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(AttachMode::Auto),
            "native" => Ok(AttachMode::Native),
            "skb" => Ok(AttachMode::Skb),
            other => Err(format!(
                "unknown XDP mode {other:?}: use auto, native or skb"
            )),
        }
    }
}

fn rule_of(target: Target, list: List, i: Installed) -> Rule {
    let expires = denylist_common::word_expiry_ns(i.word) / 1_000_000;
    Rule {
        id: i.id,
        target,
        list,
        monitor: i.word & FLAG_MONITOR != 0,
        expires_ms: (expires != 0).then_some(expires),
    }
}

fn program(ebpf: &mut Ebpf) -> &mut Xdp {
    ebpf.program_mut(PROGRAM_NAME)
        .and_then(|p| <&mut Xdp>::try_from(p).ok())
        .expect("the embedded object holds the XDP program `denylist`")
}
