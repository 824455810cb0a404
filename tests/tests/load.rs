//! Load: sixteen admins at once against one daemon, checked against a serial
//! replay of the audit log; 10,000 entries expiring in the kernel on time
//! across a restart; a whole list replaced at full capacity.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::{IpAddr, Ipv4Addr},
    os::fd::AsFd,
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use aya::{
    maps::{HashMap as BpfHashMap, Map, MapData, MapInfo},
    programs::{
        ProgramFd,
        links::{FdLink, PinnedLink},
        loaded_programs,
    },
};
use denylist::{
    dataplane::Dataplane,
    entry::{Entry, Millis, now_ms, tai_offset_ms},
    layout::Layout,
    proto::{CheckResponse, DeployResponse, ImportResponse, StageResponse, Status, VerifyResponse},
    store::AuditEvent,
    target::Target,
    verdict::{self, List, Rule, Verdict},
};
use denylist_common::{
    ExactValue, FLAG_ALLOW, FLAG_MONITOR, FLAG_PRESENT, MAP_EXACT_V4, MAP_EXACT_V6, word_expiry_ns,
};
use denylist_tests::{
    XDP_DROP, XDP_PASS,
    daemon::{Daemon, Home, bin},
    frame::Spec,
    netns::{Pair, PairConfig},
    require_root, run, tai_now_ns,
};
use rand::{Rng, SeedableRng, rngs::StdRng};

fn long() -> bool {
    std::env::var_os("DENYLIST_LONG").is_some()
}

fn target(s: &str) -> Target {
    Target::parse(s).unwrap()
}

/// The program a pinned link runs now, for BPF_PROG_TEST_RUN, with its
/// exact IPv4 map: the live filter itself, not a copy.
struct Live {
    prog_id: u32,
    prog: ProgramFd,
    exact_v4: Map,
}

fn linked_program_id(link: &Path) -> u32 {
    let fd = FdLink::from(PinnedLink::from_pin(link).expect("the pinned link"));
    fd.info().expect("link info").program_id()
}

impl Live {
    fn open(link: &Path) -> Self {
        let prog_id = linked_program_id(link);
        let info = loaded_programs()
            .filter_map(Result::ok)
            .find(|p| p.id() == prog_id)
            .expect("the linked program is loaded");
        let map_ids = info
            .map_ids()
            .expect("map ids")
            .expect("the program's maps");
        let exact_v4 = map_ids
            .into_iter()
            .find(|&id| MapInfo::from_id(id).is_ok_and(|m| m.name_as_str() == Some(MAP_EXACT_V4)))
            .map(|id| Map::HashMap(MapData::from_id(id).expect("the exact map")))
            .expect("the program uses EXACT_V4");
        let prog = info.fd().expect("the program's fd");
        Self {
            prog_id,
            prog,
            exact_v4,
        }
    }

    /// One BPF_PROG_TEST_RUN of `frame`: a raw call on the program's fd,
    /// since aya makes an `Xdp` of a loaded program only with a type from
    /// aya-obj, which the tests do not depend on.
    fn run(&self, frame: &[u8]) -> u32 {
        denylist_tests::test_run_fd(self.prog.as_fd(), frame, 1)
            .expect("BPF_PROG_TEST_RUN")
            .0
    }

    /// The kernel word of an exact IPv4 deny entry in this program's map.
    fn deny_word(&self, ip: Ipv4Addr) -> Option<u64> {
        let h: BpfHashMap<_, [u8; 4], ExactValue> =
            BpfHashMap::try_from(&self.exact_v4).expect("a hash map");
        h.get(&ip.octets(), 0)
            .ok()
            .map(|v| v.deny.word)
            .filter(|&w| w != 0)
    }
}

/// The live generation's exact maps, read from their pins: both families,
/// every key with its value.
fn pinned_exact(home: &Home) -> BTreeMap<IpAddr, ExactValue> {
    let gen_dir = std::fs::read_dir(&home.bpffs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("gen-"))
        .expect("a generation");
    let mut out = BTreeMap::new();
    let v4 = Map::HashMap(MapData::from_pin(gen_dir.join(MAP_EXACT_V4)).unwrap());
    let h: BpfHashMap<_, [u8; 4], ExactValue> = BpfHashMap::try_from(&v4).unwrap();
    for kv in h.iter() {
        let (k, v) = kv.unwrap();
        out.insert(IpAddr::from(k), v);
    }
    let v6 = Map::HashMap(MapData::from_pin(gen_dir.join(MAP_EXACT_V6)).unwrap());
    let h: BpfHashMap<_, [u8; 16], ExactValue> = BpfHashMap::try_from(&v6).unwrap();
    for kv in h.iter() {
        let (k, v) = kv.unwrap();
        out.insert(IpAddr::from(k), v);
    }
    out
}

fn sandbox(tag: &str) -> (Pair, Home) {
    require_root();
    (
        Pair::new(tag, PairConfig::default()).expect("veth pair"),
        Home::new(tag),
    )
}

fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// Concurrent admins
// ---------------------------------------------------------------------------

const CLIENTS: usize = 16;

/// A small pool, so that the admins keep running into each other: hosts
/// inside prefixes, an allow entry on a denied host, both families; none
/// of the sandbox's own addresses, which the guardrails protect.
const DENY_POOL: &[&str] = &[
    "203.0.113.1",
    "203.0.113.2",
    "203.0.113.3",
    "203.0.113.4",
    "203.0.113.5",
    "203.0.113.6",
    "203.0.113.17",
    "203.0.113.18",
    "198.51.100.66",
    "198.51.100.130",
    "203.0.113.0/28",
    "203.0.113.16/28",
    "198.51.100.0/24",
    "198.51.100.64/26",
    "2001:db8:5::1",
    "2001:db8:5::2",
    "2001:db8:6::9",
    "2001:db8:6::/48",
    "2001:db8:5::/64",
];
const ALLOW_POOL: &[&str] = &[
    "203.0.113.5",
    "198.51.100.70",
    "2001:db8:5::2",
    "198.51.100.128/25",
];
/// Where `check` and the kernel probes look: every pool address, and
/// addresses inside and just outside the prefixes.
const PROBES: &[&str] = &[
    "203.0.113.1",
    "203.0.113.2",
    "203.0.113.3",
    "203.0.113.4",
    "203.0.113.5",
    "203.0.113.6",
    "203.0.113.9",
    "203.0.113.15",
    "203.0.113.17",
    "203.0.113.18",
    "203.0.113.31",
    "203.0.113.32",
    "198.51.100.1",
    "198.51.100.66",
    "198.51.100.70",
    "198.51.100.127",
    "198.51.100.130",
    "198.51.100.200",
    "198.51.101.1",
    "2001:db8:5::1",
    "2001:db8:5::2",
    "2001:db8:5::77",
    "2001:db8:6::9",
    "2001:db8:6:2::3",
    "2001:db8:7::1",
];

#[derive(Debug, Clone)]
enum Op {
    Add {
        list: List,
        targets: Vec<String>,
        reason: Option<String>,
        /// As typed: `1h` or `never`.
        ttl: Option<String>,
        monitor: bool,
        deploy: bool,
    },
    Remove {
        list: List,
        targets: Vec<String>,
        deploy: bool,
    },
    Mode {
        target: String,
        monitor: bool,
        deploy: bool,
    },
    Deploy,
    List {
        draft: bool,
    },
    Check {
        ip: IpAddr,
    },
}

impl Op {
    fn random(rng: &mut StdRng, client: usize, n: usize) -> Op {
        let pick =
            |rng: &mut StdRng, pool: &[&str]| pool[rng.random_range(0..pool.len())].to_string();
        let deploy = rng.random_bool(0.2);
        match rng.random_range(0..100) {
            0..30 => {
                let mut targets = vec![pick(rng, DENY_POOL)];
                if rng.random_bool(0.25) {
                    let other = pick(rng, DENY_POOL);
                    if !targets.contains(&other) {
                        targets.push(other);
                    }
                }
                let ttl = match rng.random_range(0..10) {
                    0 | 1 => Some("1h".to_string()),
                    2 => Some("never".to_string()),
                    _ => None,
                };
                Op::Add {
                    list: List::Deny,
                    targets,
                    reason: rng.random_bool(0.5).then(|| format!("c{client}-{n}")),
                    ttl,
                    monitor: rng.random_bool(0.15),
                    deploy,
                }
            }
            30..38 => Op::Add {
                list: List::Allow,
                targets: vec![pick(rng, ALLOW_POOL)],
                reason: rng.random_bool(0.5).then(|| format!("c{client}-{n}")),
                ttl: None,
                monitor: false,
                deploy,
            },
            38..55 => {
                let mut targets = vec![pick(rng, DENY_POOL)];
                if rng.random_bool(0.15) {
                    let other = pick(rng, DENY_POOL);
                    if !targets.contains(&other) {
                        targets.push(other);
                    }
                }
                Op::Remove {
                    list: List::Deny,
                    targets,
                    deploy,
                }
            }
            55..60 => Op::Remove {
                list: List::Allow,
                targets: vec![pick(rng, ALLOW_POOL)],
                deploy,
            },
            60..66 => Op::Mode {
                target: pick(rng, DENY_POOL),
                monitor: rng.random_bool(0.5),
                deploy,
            },
            66..76 => Op::Deploy,
            76..88 => Op::Check {
                ip: pick(rng, PROBES).parse().unwrap(),
            },
            _ => Op::List {
                draft: rng.random_bool(0.5),
            },
        }
    }

    fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let list_cmd = |a: &mut Vec<String>, list: List, cmd: &str| {
            if list == List::Allow {
                a.push("allow".into());
            }
            a.push(cmd.into());
        };
        match self {
            Op::Add {
                list,
                targets,
                reason,
                ttl,
                monitor,
                deploy,
            } => {
                list_cmd(&mut a, *list, "add");
                a.extend(targets.iter().cloned());
                if let Some(r) = reason {
                    a.extend(["--reason".into(), r.clone()]);
                }
                if let Some(t) = ttl {
                    a.extend(["--ttl".into(), t.clone()]);
                }
                if *monitor {
                    a.push("--monitor".into());
                }
                if *deploy {
                    a.push("--deploy".into());
                }
            }
            Op::Remove {
                list,
                targets,
                deploy,
            } => {
                list_cmd(&mut a, *list, "remove");
                a.extend(targets.iter().cloned());
                if *deploy {
                    a.push("--deploy".into());
                }
            }
            Op::Mode {
                target,
                monitor,
                deploy,
            } => {
                a.push(if *monitor { "monitor" } else { "enforce" }.into());
                a.push(target.clone());
                if *deploy {
                    a.push("--deploy".into());
                }
            }
            Op::Deploy => a.push("deploy".into()),
            Op::List { draft } => {
                a.push("list".into());
                if *draft {
                    a.push("--draft".into());
                }
            }
            Op::Check { ip } => a.extend(["check".into(), ip.to_string()]),
        }
        a.push("--json".into());
        a
    }

    /// The keys a staging op names.
    fn keys(&self) -> Vec<(Target, List)> {
        match self {
            Op::Add { list, targets, .. } | Op::Remove { list, targets, .. } => {
                targets.iter().map(|t| (target(t), *list)).collect()
            }
            Op::Mode { target: t, .. } => vec![(target(t), List::Deny)],
            _ => Vec::new(),
        }
    }

    /// Whether the daemon runs it with the core locked, in one piece with
    /// the changes; a listing reads its own snapshot of the store instead.
    fn locked(&self) -> bool {
        !matches!(self, Op::List { .. })
    }
}

/// One CLI run: what was asked, when (wall clock, bracketing the daemon's
/// work), and what came back.
struct Done {
    op: Op,
    start: Millis,
    end: Millis,
    code: i32,
    stdout: String,
    stderr: String,
}

impl Done {
    fn what(&self) -> String {
        format!(
            "`denylist {}` ({} ms to {} ms) exited {}: {}{}",
            self.op.args().join(" "),
            self.start,
            self.end,
            self.code,
            self.stdout.trim(),
            self.stderr.trim()
        )
    }
}

/// What a pending change is, as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
enum Pending {
    Add(Entry),
    Change(Entry),
    Remove,
}

/// The store's logical state, replayed from the audit log alone.
#[derive(Debug, Clone, Default)]
struct Model {
    deployed: BTreeMap<(Target, List), Entry>,
    pending: BTreeMap<(Target, List), Pending>,
    revision: u64,
}

fn ttl_secs(ttl: &str) -> Option<u64> {
    match ttl {
        "never" => None,
        d => Some(denylist::entry::parse_duration(d).unwrap().as_secs()),
    }
}

impl Model {
    fn draft_entry(&self, key: &(Target, List)) -> Option<&Entry> {
        match self.pending.get(key) {
            Some(Pending::Add(e) | Pending::Change(e)) => Some(e),
            Some(Pending::Remove) => None,
            None => self.deployed.get(key),
        }
    }

    fn draft(&self) -> BTreeMap<(Target, List), Entry> {
        let mut d = self.deployed.clone();
        for (k, p) in &self.pending {
            match p {
                Pending::Add(e) | Pending::Change(e) => d.insert(*k, e.clone()),
                Pending::Remove => d.remove(k),
            };
        }
        d
    }

    /// The draft entry `op` must leave for `key`, given the one before.
    fn expected(op: &Op, key: (Target, List), before: Option<&Entry>, at: Millis) -> Entry {
        match op {
            Op::Add {
                reason,
                ttl,
                monitor,
                ..
            } => match before {
                Some(b) => {
                    let mut e = b.clone();
                    if let Some(r) = reason {
                        e.reason = Some(r.clone());
                    }
                    if let Some(t) = ttl {
                        e.ttl = ttl_secs(t);
                        e.expires_at = None;
                    }
                    if *monitor {
                        e.monitor = true;
                    }
                    e
                }
                None => Entry {
                    target: key.0,
                    list: key.1,
                    reason: reason.clone(),
                    ttl: ttl.as_deref().and_then(ttl_secs),
                    expires_at: None,
                    monitor: *monitor && key.1 == List::Deny,
                    source: "manual".into(),
                    added_by: "root".into(),
                    added_at: at,
                },
            },
            Op::Mode { monitor, .. } => {
                let mut e = before.expect("mode changes an entry").clone();
                e.monitor = *monitor;
                e
            }
            other => panic!("{other:?} stages no entry"),
        }
    }

    /// Applies one audit event, checking it against the state before and
    /// against the op that claims it.
    fn apply(&mut self, ev: &AuditEvent, op: &Op) {
        let at = ev.at;
        let ctx = format!("event {} ({}) of {:?}", ev.seq, ev.kind, op);
        match ev.kind.as_str() {
            "stage add" | "stage change" => {
                let e: Entry = serde_json::from_value(ev.detail.clone().expect("an entry"))
                    .unwrap_or_else(|err| panic!("{ctx}: {err}"));
                let key = (e.target, e.list);
                assert_eq!(ev.target.as_deref(), Some(e.target.to_string().as_str()));
                assert!(op.keys().contains(&key), "{ctx}: not a key of its op");
                let before = self.draft_entry(&key).cloned();
                assert_eq!(
                    before.is_some(),
                    ev.kind == "stage change",
                    "{ctx}: add means absent from the draft, change present"
                );
                assert_eq!(
                    e,
                    Self::expected(op, key, before.as_ref(), at),
                    "{ctx}: the draft entry is the op applied to the one before: no update lost"
                );
                let row = match self.deployed.get(&key) {
                    None => Some(Pending::Add(e)),
                    Some(d)
                        if d.same_settings(&e) && !(e.ttl.is_some() && e.expires_at.is_none()) =>
                    {
                        None
                    }
                    Some(_) => Some(Pending::Change(e)),
                };
                self.pending.remove(&key);
                if let Some(r) = row {
                    self.pending.insert(key, r);
                }
            }
            "stage remove" => {
                let detail = ev.detail.as_ref().expect("the list");
                let list: List = serde_json::from_value(detail["list"].clone()).unwrap();
                let key = (target(ev.target.as_deref().unwrap()), list);
                assert!(op.keys().contains(&key), "{ctx}: not a key of its op");
                assert!(
                    self.draft_entry(&key).is_some(),
                    "{ctx}: removed from the draft while absent"
                );
                self.pending.remove(&key);
                if self.deployed.contains_key(&key) {
                    self.pending.insert(key, Pending::Remove);
                }
            }
            "deploy" => {
                let d = ev.detail.as_ref().expect("a deploy detail");
                let keys = |v: &serde_json::Value| -> BTreeSet<(Target, List)> {
                    v.as_array()
                        .unwrap()
                        .iter()
                        .map(|k| {
                            (
                                target(k["target"].as_str().unwrap()),
                                serde_json::from_value(k["list"].clone()).unwrap(),
                            )
                        })
                        .collect()
                };
                let pending: BTreeSet<(Target, List)> = self.pending.keys().copied().collect();
                let shipped = match (d.get("only"), d.get("kept")) {
                    (Some(only), None) => keys(only),
                    (None, Some(kept)) => {
                        let kept = keys(kept);
                        assert!(kept.is_subset(&pending), "{ctx}: kept what was not pending");
                        pending.difference(&kept).copied().collect()
                    }
                    (None, None) => pending.clone(),
                    _ => panic!("{ctx}: both only and kept"),
                };
                assert!(
                    shipped.is_subset(&pending),
                    "{ctx}: shipped what was not pending"
                );
                match op {
                    Op::Deploy => assert_eq!(shipped, pending, "{ctx}: a deploy ships it all"),
                    staged => {
                        let named: BTreeSet<_> = staged.keys().into_iter().collect();
                        assert!(
                            shipped.is_subset(&named),
                            "{ctx}: --deploy ships only what it names"
                        );
                    }
                }
                let (mut added, mut removed, mut changed) = (0, 0, 0);
                for key in shipped {
                    match self.pending.remove(&key).unwrap() {
                        Pending::Add(mut e) => {
                            e.expires_at = e.ttl.map(|t| at + t as i64 * 1000);
                            self.deployed.insert(key, e);
                            added += 1;
                        }
                        Pending::Change(mut e) => {
                            let before = &self.deployed[&key];
                            e.expires_at = match e.expires_at {
                                Some(_) if e.ttl == before.ttl => before.expires_at,
                                _ => e.ttl.map(|t| at + t as i64 * 1000),
                            };
                            self.deployed.insert(key, e);
                            changed += 1;
                        }
                        Pending::Remove => {
                            self.deployed.remove(&key);
                            removed += 1;
                        }
                    }
                }
                self.revision += 1;
                assert_eq!(
                    (
                        d["revision"].as_u64(),
                        d["added"].as_u64(),
                        d["removed"].as_u64(),
                        d["changed"].as_u64()
                    ),
                    (
                        Some(self.revision),
                        Some(added),
                        Some(removed),
                        Some(changed)
                    ),
                    "{ctx}: the revision and its counts"
                );
            }
            other => panic!("{ctx}: no admin op makes a {other:?} event"),
        }
    }

    fn rules(&self) -> Vec<Rule> {
        let tai = tai_offset_ms();
        self.deployed
            .values()
            .map(|e| Rule {
                id: 1,
                target: e.target,
                list: e.list,
                monitor: e.monitor,
                expires_ms: e.expires_at.map(|x| (x + tai) as u64),
            })
            .collect()
    }

    /// What `denylist check` answers at this state.
    fn check(&self, ip: IpAddr) -> (Verdict, Option<String>, Option<String>) {
        let rules = self.rules();
        let d = verdict::decide(&rules, ip, tai_now_ns());
        let decided = d.rule.map(|r| r.target.to_string());
        match d.verdict {
            Verdict::Allowed => (Verdict::Pass, None, decided),
            v => (v, decided, None),
        }
    }
}

fn sorted(mut v: Vec<Entry>) -> Vec<Entry> {
    v.sort_by_key(|e| (e.target, e.list));
    v
}

#[test]
fn sixteen_admins_at_once_equal_a_serial_replay_of_the_audit_log() {
    let (pair, home) = sandbox("admins");
    let iface = pair.receiver_xdp_if.clone();
    let _d = Daemon::start(&home, Some(&pair.receiver), &["--iface", &iface]);
    let link = home.bpffs.join(format!("link-{iface}"));
    wait_for("the attachment", Duration::from_secs(10), || link.exists());
    let total = if long() { 10_000 } else { 2_000 };
    let seed: u64 = rand::random();
    eprintln!("seed {seed}");
    let cli = bin("denylist");
    let socket = home.socket();
    let started = Instant::now();
    let done: Vec<Done> = thread::scope(|s| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (cli, socket) = (&cli, &socket);
                s.spawn(move || {
                    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(c as u64));
                    (0..total / CLIENTS)
                        .map(|n| {
                            let op = Op::random(&mut rng, c, n);
                            let start = now_ms();
                            let out = Command::new(cli)
                                .arg("--socket")
                                .arg(socket)
                                .args(op.args())
                                .output()
                                .expect("run denylist");
                            let end = now_ms();
                            Done {
                                op,
                                start,
                                end,
                                code: out.status.code().unwrap_or(-1),
                                stdout: String::from_utf8_lossy(&out.stdout).into(),
                                stderr: String::from_utf8_lossy(&out.stderr).into(),
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let elapsed = started.elapsed();
    let c = home.client();
    let audit: Vec<AuditEvent> = c.get("/v1/audit?since=0").unwrap();

    // Every event belongs to exactly one acknowledged op, and every
    // acknowledged change has its events: nothing lost, nothing extra.
    let pos: HashMap<u64, usize> = audit
        .iter()
        .enumerate()
        .map(|(i, e)| (e.seq, i + 1))
        .collect();
    let mut owner: Vec<Option<usize>> = vec![None; audit.len() + 1];
    let mut claimed: Vec<Vec<usize>> = vec![Vec::new(); done.len()];
    let mut claim = |i: usize, seq: u64, ctx: &Done| {
        let p = *pos
            .get(&seq)
            .unwrap_or_else(|| panic!("seq {seq} is not in the audit log: {}", ctx.what()));
        assert!(
            owner[p].is_none(),
            "event {seq} claimed twice: {}",
            ctx.what()
        );
        owner[p] = Some(i);
        claimed[i].push(p);
    };
    let mut failures = 0;
    for (i, d) in done.iter().enumerate() {
        if d.code != 0 {
            failures += 1;
            continue;
        }
        let deployed = match &d.op {
            Op::Add { .. } | Op::Remove { .. } | Op::Mode { .. } => {
                let r: StageResponse =
                    serde_json::from_str(&d.stdout).unwrap_or_else(|e| panic!("{e}: {}", d.what()));
                let staged = d.op.keys().len();
                let last = pos[&r.seq];
                for p in last + 1 - staged..=last {
                    claim(i, audit[p - 1].seq, d);
                }
                r.deployed
            }
            Op::Deploy => Some(
                serde_json::from_str::<DeployResponse>(&d.stdout)
                    .unwrap_or_else(|e| panic!("{e}: {}", d.what())),
            ),
            Op::List { .. } | Op::Check { .. } => None,
        };
        if let Some(seq) = deployed.and_then(|r| r.seq) {
            claim(i, seq, d);
        }
    }
    for (p, o) in owner.iter().enumerate().skip(1) {
        assert!(
            o.is_some(),
            "audit event {:?} belongs to no acknowledged op",
            audit[p - 1]
        );
    }

    // The serial replay, in sequence order, with the state after each event.
    let mut model = Model::default();
    let mut states = vec![model.clone()];
    for (p, ev) in audit.iter().enumerate() {
        let op = &done[owner[p + 1].unwrap()].op;
        model.apply(ev, op);
        states.push(model.clone());
    }

    // Each op ran at one point of that sequence: after every event known
    // to come before it, and before every event known to come after it.
    let ats: Vec<Millis> = audit.iter().map(|e| e.at).collect();
    let mut explained = BTreeMap::<&str, usize>::new();
    for (i, d) in done.iter().enumerate() {
        let mut lo = 0;
        let mut hi = audit.len();
        for (p, &at) in ats.iter().enumerate() {
            let p = p + 1;
            // Its now was read under the lock before this op began.
            if d.op.locked() && at < d.start {
                lo = lo.max(p);
            }
            // Its now was read after this op had ended.
            if at > d.end {
                hi = hi.min(p - 1);
            }
        }
        for (j, other) in done.iter().enumerate() {
            if other.end < d.start {
                lo = lo.max(claimed[j].iter().copied().max().unwrap_or(0));
            }
            if other.start > d.end
                && let Some(&first) = claimed[j].iter().min()
            {
                hi = hi.min(first - 1);
            }
        }
        assert!(
            lo <= hi,
            "the audit order contradicts real time: {}",
            d.what()
        );
        if let (Some(&first), Some(&last)) = (claimed[i].iter().min(), claimed[i].iter().max()) {
            assert!(
                first > lo && last <= hi && last + 1 - first == claimed[i].len(),
                "its events are one run inside its window ({lo}..{hi}): {}",
                d.what()
            );
        }
        let window = &states[lo..=hi];
        let any = |f: &dyn Fn(&Model) -> bool| window.iter().any(f);
        match (&d.op, d.code) {
            (Op::Remove { .. } | Op::Mode { .. }, 5) => {
                let keys = d.op.keys();
                assert!(
                    any(&|m| keys.iter().any(|k| m.draft_entry(k).is_none())),
                    "not found, yet every target was in the draft throughout: {}",
                    d.what()
                );
                *explained
                    .entry("not found: absent from the draft at a point of its window")
                    .or_default() += 1;
            }
            (_, 0) => {}
            _ => panic!("an unexplained error: {}", d.what()),
        }
        if d.code != 0 {
            continue;
        }
        match &d.op {
            Op::Deploy => {
                let r: DeployResponse = serde_json::from_str(&d.stdout).unwrap();
                if r.nothing_pending {
                    assert!(
                        any(&|m| m.pending.is_empty()),
                        "nothing pending, yet there always was: {}",
                        d.what()
                    );
                }
            }
            Op::Check { ip } => {
                let r: CheckResponse = serde_json::from_str(&d.stdout).unwrap();
                let got = (r.verdict, r.entry, r.allowed_by);
                assert!(
                    any(&|m| m.check(*ip) == got),
                    "no deployed state of its window gives {got:?}: {}",
                    d.what()
                );
            }
            Op::List { draft } => {
                let got = sorted(serde_json::from_str(&d.stdout).unwrap());
                assert!(
                    any(&|m| {
                        let entries = if *draft {
                            m.draft()
                        } else {
                            m.deployed.clone()
                        };
                        let want: Vec<Entry> = entries
                            .into_values()
                            .filter(|e| e.list == List::Deny)
                            .collect();
                        sorted(want) == got
                    }),
                    "no state of its window lists as it did: {}",
                    d.what()
                );
            }
            _ => {}
        }
    }

    // The final state is the replay's last one: the API, the store file,
    // the kernel maps and the live program.
    let deployed: Vec<Entry> = c.get("/v1/entries").unwrap();
    assert_eq!(
        sorted(deployed),
        model.deployed.values().cloned().collect::<Vec<_>>(),
        "deployed entries"
    );
    let draft: Vec<Entry> = c.get("/v1/entries?draft=true").unwrap();
    assert_eq!(
        sorted(draft),
        model.draft().into_values().collect::<Vec<_>>(),
        "the draft"
    );
    let diff: serde_json::Value = c.get("/v1/diff").unwrap();
    let mut pending = BTreeMap::new();
    for (kind, op) in [
        ("added", "add"),
        ("removed", "remove"),
        ("changed", "change"),
    ] {
        for item in diff[kind].as_array().unwrap() {
            let e = if kind == "changed" {
                &item["after"]
            } else {
                item
            };
            let list: List = serde_json::from_value(e["list"].clone()).unwrap();
            pending.insert((target(e["target"].as_str().unwrap()), list), op);
        }
    }
    let want_pending: BTreeMap<_, _> = model
        .pending
        .iter()
        .map(|(k, p)| {
            let op = match p {
                Pending::Add(_) => "add",
                Pending::Change(_) => "change",
                Pending::Remove => "remove",
            };
            (*k, op)
        })
        .collect();
    assert_eq!(pending, want_pending, "pending changes");
    let st: Status = c.get("/v1/status").unwrap();
    assert_eq!(
        (
            st.revision,
            st.pending_changes as usize,
            st.capacity.used as usize
        ),
        (model.revision, model.pending.len(), model.deployed.len()),
        "status"
    );

    // Kernel: the exact maps hold exactly the deployed exact entries, with
    // their flags, expiry and the store's ids.
    let db = rusqlite::Connection::open_with_flags(
        home.state().join("denylist.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let ids: HashMap<(Target, List), u32> = db
        .prepare("SELECT target, list, id FROM entries")
        .unwrap()
        .query_map([], |r| {
            Ok((
                target(&r.get::<_, String>(0)?),
                r.get::<_, String>(1)?.parse::<List>().unwrap(),
                r.get::<_, u32>(2)?,
            ))
        })
        .unwrap()
        .map(|r| r.unwrap())
        .map(|(t, l, id)| ((t, l), id))
        .collect();
    let kernel = pinned_exact(&home);
    let exact: BTreeSet<IpAddr> = model
        .deployed
        .keys()
        .filter(|(t, _)| t.is_exact())
        .map(|(t, _)| t.addr())
        .collect();
    assert_eq!(
        kernel.keys().copied().collect::<BTreeSet<_>>(),
        exact,
        "the exact maps hold the deployed exact addresses"
    );
    let tai = tai_offset_ms();
    for (&ip, v) in &kernel {
        for (list, slot) in [(List::Deny, v.deny), (List::Allow, v.allow)] {
            let key = (Target::host(ip), list);
            let Some(e) = model.deployed.get(&key) else {
                assert_eq!(slot.word, 0, "{ip} is on no {list:?} list");
                continue;
            };
            let mut flags = FLAG_PRESENT;
            if e.monitor {
                flags |= FLAG_MONITOR;
            }
            if list == List::Allow {
                flags |= FLAG_ALLOW;
            }
            assert_eq!(slot.word & 0xff, flags, "{ip} {list:?}: flags");
            let expiry_ms = (word_expiry_ns(slot.word) / 1_000_000) as i64;
            match e.expires_at {
                None => assert_eq!(expiry_ms, 0, "{ip} {list:?}: never expires"),
                Some(x) => assert!(
                    (expiry_ms - (x + tai)).abs() <= 2,
                    "{ip} {list:?}: kernel expiry {expiry_ms} for {x} + {tai}"
                ),
            }
            assert_eq!(
                Some(&slot.id),
                ids.get(&key),
                "{ip} {list:?}: the store's id"
            );
        }
    }
    // The live program, prefixes included, gives the replay's verdicts.
    let live = Live::open(&link);
    let rules = model.rules();
    for probe in PROBES {
        let ip: IpAddr = probe.parse().unwrap();
        let want = match verdict::decide(&rules, ip, tai_now_ns()).verdict {
            Verdict::Drop => XDP_DROP,
            _ => XDP_PASS,
        };
        assert_eq!(
            live.run(&Spec::new(ip).build()),
            want,
            "the kernel's verdict for {ip}"
        );
    }
    let v: VerifyResponse = c.post("/v1/verify", &serde_json::json!({})).unwrap();
    assert!(v.drift.is_empty(), "the daemon reads no drift back: {v:?}");

    let counts = done
        .iter()
        .fold(BTreeMap::<String, usize>::new(), |mut m, d| {
            let name = d.op.args()[0].clone();
            let name = if name == "allow" {
                format!("allow {}", d.op.args()[1])
            } else {
                name
            };
            *m.entry(name).or_default() += 1;
            m
        });
    eprintln!(
        "{} ops from {CLIENTS} clients in {:.1} s: {counts:?}; {} audit events, {} revisions, {} deployed, {} pending; errors: {failures}, explained: {explained:?}",
        done.len(),
        elapsed.as_secs_f64(),
        audit.len(),
        model.revision,
        model.deployed.len(),
        model.pending.len()
    );
}

// ---------------------------------------------------------------------------
// Expiry
// ---------------------------------------------------------------------------

/// What the probes saw of one source.
#[derive(Debug, Clone, Default)]
struct Seen {
    /// CLOCK_TAI ns when the latest probe that dropped began.
    last_drop: Option<u64>,
    /// CLOCK_TAI ns when the first probe that passed ended.
    first_pass: Option<u64>,
    /// The entry's kernel word in the probed program's own map right after
    /// that first pass: still there means the kernel's expiry check passed
    /// it, not the sweep.
    word_at_first_pass: Option<u64>,
}

#[test]
fn ten_thousand_entries_expire_in_the_kernel_on_time_across_a_restart() {
    let (pair, home) = sandbox("expk");
    let iface = pair.receiver_xdp_if.clone();
    let args = [
        "--iface",
        iface.as_str(),
        "--expiry-sweep",
        "1s",
        "--capacity",
        "16384",
    ];
    let d = Daemon::start(&home, Some(&pair.receiver), &args);
    let link = home.bpffs.join(format!("link-{iface}"));
    wait_for("the attachment", Duration::from_secs(10), || link.exists());
    let n: u32 = 10_000;
    let sources: Vec<Ipv4Addr> = (0..n).map(|i| Ipv4Addr::from(0xC612_0000 + i)).collect(); // 198.18.0.0/15
    let body = serde_json::Value::Array(
        sources
            .iter()
            .enumerate()
            .map(|(i, s)| serde_json::json!({ "target": s.to_string(), "ttl": 1 + i % 10 }))
            .collect(),
    );
    let frames: Vec<Vec<u8>> = sources
        .iter()
        .map(|&s| Spec::new(IpAddr::V4(s)).build())
        .collect();
    let reply = home
        .client()
        .request(
            "POST",
            "/v1/import?format=json&force=true&deploy=true",
            Some(body.to_string().as_bytes()),
            "application/json",
        )
        .unwrap();
    let probing_from = tai_now_ns();
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let imported: ImportResponse = reply.json().unwrap();
    assert_eq!(
        imported.deployed.map(|r| r.counts.added),
        Some(u64::from(n))
    );

    // Probe the live program until every entry is 1.5 s past its expiry,
    // restarting the daemon in the middle.
    let mut seen = vec![Seen::default(); n as usize];
    let mut passes = 0;
    let restart_at = Instant::now() + Duration::from_millis(5_500);
    let end = probing_from + 11_500_000_000;
    let (down, up, _d, rebuilt) = thread::scope(|s| {
        let restarter = s.spawn(|| {
            thread::sleep(restart_at.saturating_duration_since(Instant::now()));
            let down = now_ms();
            assert!(d.stop().success());
            let d = Daemon::start(&home, Some(&pair.receiver), &args);
            let rebuilt = pinned_exact(&home);
            (down, now_ms(), d, rebuilt)
        });
        let mut live = Live::open(&link);
        let mut aborted = Vec::new();
        while tai_now_ns() < end {
            if linked_program_id(&link) != live.prog_id {
                live = Live::open(&link);
            }
            for (i, frame) in frames.iter().enumerate() {
                let s = &mut seen[i];
                if s.first_pass
                    .is_some_and(|t| t + 1_500_000_000 < tai_now_ns())
                {
                    continue;
                }
                let t0 = tai_now_ns();
                let v = live.run(frame);
                let t1 = tai_now_ns();
                match v {
                    XDP_DROP => s.last_drop = Some(s.last_drop.map_or(t0, |d| d.max(t0))),
                    XDP_PASS if s.first_pass.is_none() => {
                        s.first_pass = Some(t1);
                        s.word_at_first_pass = live.deny_word(sources[i]);
                    }
                    XDP_PASS => {}
                    other => aborted.push((sources[i], other)),
                }
            }
            passes += 1;
        }
        assert!(aborted.is_empty(), "unexpected XDP actions: {aborted:?}");
        restarter.join().unwrap()
    });

    // Each entry's expiry, from the store's deployed record of it (the
    // import's deploy) and as the kernel had it.
    let audit: Vec<AuditEvent> = home.client().get("/v1/audit?since=0").unwrap();
    let deploy_at = audit
        .iter()
        .find(|e| e.kind == "deploy")
        .expect("the import's deploy")
        .at;
    let tai = tai_offset_ms();
    let expires = |i: usize| deploy_at + (1 + i as i64 % 10) * 1000;
    let expires_tai_ns = |i: usize| ((expires(i) + tai) * 1_000_000) as u64;

    // The restart kept every expiry: the new generation holds each entry
    // the store had not swept yet, with the same expiry in its word.
    let index: HashMap<Ipv4Addr, usize> =
        sources.iter().enumerate().map(|(i, &s)| (s, i)).collect();
    for (ip, v) in &rebuilt {
        let IpAddr::V4(src) = ip else {
            panic!("{ip} was never added")
        };
        let e = expires_tai_ns(index[src]) as i64;
        assert!(
            (word_expiry_ns(v.deny.word) as i64 - e).abs() <= 2_000_000,
            "{src}: the restart changed its expiry"
        );
    }

    let mut late = Vec::new();
    let mut early = Vec::new();
    let mut never_dropped = Vec::new();
    let mut max_lag_ms = 0i64;
    let mut max_detect_ms = 0i64;
    let mut conclusive = [0u32; 10];
    for (i, s) in seen.iter().enumerate() {
        let e = expires_tai_ns(i);
        let src = sources[i];
        match s.first_pass {
            Some(p) if p + 2_000_000 < e => early.push((src, (e - p) / 1_000_000)),
            Some(p) => max_detect_ms = max_detect_ms.max((p as i64 - e as i64) / 1_000_000),
            None => late.push((src, "never passed".to_string())),
        }
        match s.last_drop {
            Some(t) if t > e + 1_000_000_000 => late.push((
                src,
                format!("dropped {} ms after expiry", (t - e) / 1_000_000),
            )),
            Some(t) => max_lag_ms = max_lag_ms.max((t as i64 - e as i64) / 1_000_000),
            None if e > probing_from + 100_000_000 => never_dropped.push(src),
            None => {}
        }
        if let Some(w) = s.word_at_first_pass {
            let kernel_expiry = word_expiry_ns(w) as i64;
            assert!(
                (kernel_expiry - e as i64).abs() <= 2_000_000,
                "{src}: the kernel's expiry is the store's"
            );
            conclusive[i % 10] += 1;
        }
    }
    assert!(early.is_empty(), "passed before their expiry: {early:?}");
    assert!(
        late.is_empty(),
        "still matched more than 1 s after expiry: {:?}",
        &late[..late.len().min(10)]
    );
    assert!(
        never_dropped.is_empty(),
        "never dropped while live: {:?}",
        &never_dropped[..never_dropped.len().min(10)]
    );
    // The sweep runs once a second, so most first passes come while the
    // entry is still in the kernel's map: the kernel itself let them pass.
    let groups = conclusive.iter().filter(|&&c| c > 0).count();
    assert!(
        groups >= 5,
        "the kernel's own expiry check is seen in {groups} of 10 TTL groups: {conclusive:?}"
    );

    // The sweep takes each from the store and the draft within a period of
    // its expiry, or of the restart for those that expired meanwhile.
    let swept = |audit: &[AuditEvent]| audit.iter().filter(|e| e.kind == "expiry").count();
    let mut audit = audit;
    wait_for("the sweep", Duration::from_secs(10), || {
        audit = home.client().get("/v1/audit?since=0").unwrap();
        swept(&audit) >= n as usize
    });
    let mut worst_sweep_ms = 0;
    let mut seen_swept = BTreeSet::new();
    for e in audit.iter().filter(|e| e.kind == "expiry") {
        let src: Ipv4Addr = e.target.as_deref().unwrap().parse().unwrap();
        assert!(seen_swept.insert(src), "{src} swept twice");
        let x = expires(index[&src]);
        assert!(e.at >= x, "{src} swept before its expiry");
        assert_eq!(
            rebuilt.contains_key(&IpAddr::V4(src)),
            e.at > up,
            "{src}: the restart kept exactly what had not expired by its start"
        );
        // Due while no daemon ran: the start sweeps it.
        let due = if x + 1_000 > down && x < up { up } else { x };
        let after = e.at - due;
        worst_sweep_ms = worst_sweep_ms.max(after);
        assert!(
            after <= 2_500,
            "{src}: swept {after} ms after {} (a 1 s sweep period plus slack)",
            if due == up {
                "the restart"
            } else {
                "its expiry"
            }
        );
    }
    let deployed: Vec<Entry> = home.client().get("/v1/entries").unwrap();
    let draft: Vec<Entry> = home.client().get("/v1/entries?draft=true").unwrap();
    assert!(
        deployed.is_empty() && draft.is_empty(),
        "gone from the store and the draft"
    );
    assert!(pinned_exact(&home).is_empty(), "and from the kernel maps");
    eprintln!(
        "{n} entries, {passes} probe passes: first pass at most {max_detect_ms} ms after expiry, last drop at most {max_lag_ms} ms after it; kernel-decided first passes per TTL group {conclusive:?}; swept at most {worst_sweep_ms} ms after due; restart down {down}..{up} ({} ms)",
        up - down
    );
}

// ---------------------------------------------------------------------------
// Capacity
// ---------------------------------------------------------------------------

#[test]
fn a_whole_list_replaced_at_full_capacity_fits() {
    require_root();
    let capacity = 256u32;
    let mut dp =
        Dataplane::load(Layout::new(u64::from(capacity)).unwrap()).expect("load the program");
    let hosts = |base: u32, count: u32, first_id: u32| -> Vec<Rule> {
        (0..count)
            .map(|i| Rule {
                id: first_id + i,
                target: Target::host(IpAddr::V4(Ipv4Addr::from(base + i))),
                list: List::Deny,
                monitor: false,
                expires_ms: None,
            })
            .collect()
    };
    let keys = |rules: &[Rule]| -> Vec<(Target, List)> {
        rules.iter().map(|r| (r.target, r.list)).collect()
    };
    let old = hosts(0xC612_0000, capacity, 1);
    dp.apply(&old, &[]).expect("a full list");
    // Every address replaced in one change: the maps never hold both.
    let new = hosts(0xC612_1000, capacity, 1_000);
    dp.apply(&new, &keys(&old))
        .expect("a replaced list of the capacity's size fits");
    // Again with a prefix in the same change, which splits the batch.
    let mut newer = hosts(0xC612_2000, capacity - 1, 2_000);
    newer.push(Rule {
        id: 3_000,
        target: target("203.0.113.0/24"),
        list: List::Deny,
        monitor: false,
        expires_ms: None,
    });
    dp.apply(&newer, &keys(&new))
        .expect("a replaced list with a prefix fits");
    assert_eq!(dp.len(), capacity as usize);
    assert!(dp.drift().unwrap().is_empty());
    let verdict = |dp: &mut Dataplane, ip: &str| run(dp, &Spec::new(ip.parse().unwrap()).build());
    assert_eq!(verdict(&mut dp, "198.18.32.5"), XDP_DROP, "the newest list");
    assert_eq!(verdict(&mut dp, "203.0.113.9"), XDP_DROP, "its prefix");
    assert_eq!(
        verdict(&mut dp, "198.18.16.5"),
        XDP_PASS,
        "not the one before"
    );
    assert_eq!(verdict(&mut dp, "198.18.0.5"), XDP_PASS, "nor the first");
    let over = hosts(0xC612_3000, 1, 4_000);
    assert!(
        dp.apply(&over, &[]).is_err(),
        "one more than the capacity is still refused"
    );
}
