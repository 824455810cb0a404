//! The live TCP sessions on the SSH guardrail's ports, kept as they change.
//!
//! Asking sock_diag for them makes the kernel walk every TCP socket of the
//! host, about 17 ms per walk at 100,000 sockets here: on a host under
//! attack that would be every add. The `sessions` sock_ops program instead
//! reports each session on a watched port as it becomes established and as
//! it ends; [`SessionSet`] keeps them, so a check is a range lookup.
//! Sessions older than the watch are not reported; the daemon seeds them
//! from one sock_diag dump, and drops those that have ended by comparing
//! with later dumps while any remain ([`SessionSet::reconcile`]).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fs::File,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener, TcpStream},
    os::fd::AsRawFd as _,
    path::PathBuf,
    time::{Duration, Instant},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::{CgroupAttachMode, SockOps},
};
use denylist_common::{
    MAP_SESSION_EVENTS, MAP_SESSION_LOST, MAP_SESSION_PORTS, SESSION_NETNS_GLOBAL, SESSION_PROGRAM,
    SessionEvent,
};

use super::object;
use crate::model::{Target, normal_ip};

/// One session: its peer; whether only a dump vouches for it (its end may
/// go unseen: it is older than the watch, or reports were lost since it
/// was reported); whether it was reported (then its socket will report its
/// end); the dump generation it came in; and how many dumps in a row have
/// lacked it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Session {
    peer: IpAddr,
    from_dump: bool,
    reported: bool,
    since: u64,
    missed: u8,
}

/// A dump must lack a session this many times in a row before it counts as
/// ended: a dump is no snapshot, and under churn the kernel can skip a
/// socket when it resumes a bucket between two batches.
const MISSES_TO_END: u8 = 2;

/// The live sessions by socket cookie; how many each peer has, and how
/// many of those only a dump vouches for.
#[derive(Debug, Default)]
pub struct SessionSet {
    by_cookie: HashMap<u64, Session>,
    peers: BTreeMap<IpAddr, u32>,
    dumped: BTreeMap<IpAddr, u32>,
    /// Bumped as each dump begins ([`SessionSet::begin_dump`]).
    generation: u64,
}

fn count(map: &mut BTreeMap<IpAddr, u32>, peer: IpAddr, up: bool) {
    if up {
        *map.entry(peer).or_default() += 1;
    } else if let Some(n) = map.get_mut(&peer) {
        *n -= 1;
        if *n == 0 {
            map.remove(&peer);
        }
    }
}

impl SessionSet {
    fn insert(&mut self, cookie: u64, session: Session) {
        self.remove(cookie);
        self.by_cookie.insert(cookie, session);
        count(&mut self.peers, session.peer, true);
        if session.from_dump {
            count(&mut self.dumped, session.peer, true);
        }
    }

    fn remove(&mut self, cookie: u64) {
        if let Some(old) = self.by_cookie.remove(&cookie) {
            count(&mut self.peers, old.peer, false);
            if old.from_dump {
                count(&mut self.dumped, old.peer, false);
            }
        }
    }

    fn set_from_dump(&mut self, cookie: u64, from_dump: bool) {
        if let Some(s) = self.by_cookie.get_mut(&cookie)
            && s.from_dump != from_dump
        {
            s.from_dump = from_dump;
            count(&mut self.dumped, s.peer, from_dump);
        }
    }

    /// A session the program reported.
    pub fn apply(&mut self, e: &SessionEvent) {
        if e.up == 0 {
            self.remove(e.cookie);
            return;
        }
        let peer = if e.family == 4 {
            IpAddr::V4(Ipv4Addr::new(e.addr[0], e.addr[1], e.addr[2], e.addr[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(e.addr))
        };
        self.insert(
            e.cookie,
            Session {
                peer: normal_ip(peer),
                from_dump: false,
                reported: true,
                since: self.generation,
                missed: 0,
            },
        );
    }

    /// Marks the start of a dump: give the mark to [`SessionSet::reconcile`].
    pub fn begin_dump(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    /// Takes in a dump of every live session, begun at `mark`: those not
    /// known yet are added. A session only a dump vouches for, known
    /// before the dump began, that this dump and the one before lack has
    /// ended; one that came after the mark may simply be newer than the
    /// dump. With `after_losses` (no report was lost since the mark), a
    /// reported session the dump shows is trusted again: it is live, and
    /// its socket will report its end.
    pub fn reconcile(&mut self, dump: &[(u64, IpAddr)], mark: u64, after_losses: bool) {
        let live: HashSet<u64> = dump.iter().map(|(c, _)| *c).collect();
        let mut ended = Vec::new();
        let mut trusted = Vec::new();
        for (cookie, s) in &mut self.by_cookie {
            if live.contains(cookie) {
                s.missed = 0;
                if s.from_dump && s.reported && after_losses {
                    trusted.push(*cookie);
                }
            } else if s.from_dump && s.since < mark {
                s.missed += 1;
                if s.missed >= MISSES_TO_END {
                    ended.push(*cookie);
                }
            }
        }
        for c in ended {
            self.remove(c);
        }
        for c in trusted {
            self.set_from_dump(c, false);
        }
        for (cookie, peer) in dump {
            if !self.by_cookie.contains_key(cookie) {
                self.insert(
                    *cookie,
                    Session {
                        peer: normal_ip(*peer),
                        from_dump: true,
                        reported: false,
                        since: mark,
                        missed: 0,
                    },
                );
            }
        }
    }

    /// After reports were lost, no session can be trusted to report its
    /// end: each waits for a dump to confirm it.
    pub fn distrust(&mut self) {
        let cookies: Vec<u64> = self.by_cookie.keys().copied().collect();
        for c in cookies {
            self.set_from_dump(c, true);
        }
    }

    /// Whether one of `peers` has a session only a dump vouches for, which
    /// may have ended unseen: a refusal on its account asks the kernel
    /// first.
    pub fn any_unconfirmed(&self, peers: &[IpAddr]) -> bool {
        peers.iter().any(|p| self.dumped.contains_key(p))
    }

    /// Whether some session can end unseen, so dumps are still needed.
    pub fn needs_dumps(&self) -> bool {
        self.by_cookie.values().any(|s| s.from_dump)
    }

    /// The peers inside `targets`, each once, in order.
    pub fn peers_within(&self, targets: &[Target]) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = targets
            .iter()
            .flat_map(|t| {
                let (first, last) = t.range();
                self.peers.range(first..=last).map(|(p, _)| *p)
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The peers inside `targets` of sessions whose end will be reported:
    /// what a check keeps when it asks the kernel about the rest.
    pub fn reported_peers_within(&self, targets: &[Target]) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = self
            .by_cookie
            .values()
            .filter(|s| !s.from_dump && targets.iter().any(|t| t.contains(s.peer)))
            .map(|s| s.peer)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Every peer, in order.
    pub fn peers(&self) -> Vec<IpAddr> {
        self.peers.keys().copied().collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionWatchError {
    #[error("loading the sessions program: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("the sessions program: {0}")]
    Program(#[from] aya::programs::ProgramError),
    #[error("the embedded object has no program {SESSION_PROGRAM}: rebuild denylist")]
    MissingProgram,
    #[error("the sessions program's map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error(
        "no cgroup2 file system with the host's whole hierarchy is mounted to attach the sessions program to"
    )]
    NoCgroup2,
    #[error(
        "denylistd runs in a cgroup namespace of its own, where the sessions program would see only its own cgroup's sockets, not sshd's"
    )]
    CgroupNamespace,
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: io::Error,
    },
    #[error(
        "a test session was not reported within {0:?}: the kernel does not run sock_ops programs for this host's sockets"
    )]
    SelfTest(Duration),
}

/// The object's map `name`, typed.
fn take_map<M>(ebpf: &mut Ebpf, name: &'static str) -> Result<M, SessionWatchError>
where
    M: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(SessionWatchError::Map {
        name,
        source: aya::maps::MapError::InvalidName { name: name.into() },
    })?;
    M::try_from(map).map_err(|source| SessionWatchError::Map { name, source })
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> SessionWatchError {
    move |source| SessionWatchError::Io { what, source }
}

/// Taken as a dump begins: which sessions it can speak for, and how many
/// reports had been lost by then.
#[derive(Debug, Clone, Copy)]
pub struct DumpMark {
    generation: u64,
    losses: u64,
}

/// The loaded and attached program, and the sessions it reported.
pub struct SessionWatch {
    ring: RingBuf<MapData>,
    ports: BpfHashMap<MapData, u16, u8>,
    lost: PerCpuArray<MapData, u64>,
    lost_seen: u64,
    /// Reports were lost, and no dump begun since has been taken in: a
    /// session may be missing, so the set must not be trusted alone.
    incomplete: bool,
    set: SessionSet,
    // Last: the link goes with the object, after the maps' handles.
    _ebpf: Ebpf,
}

/// The inode of the initial cgroup namespace (PROC_CGROUP_INIT_INO,
/// include/linux/proc_ns.h, fixed since Linux 4.6).
const INIT_CGROUP_NS: u64 = 0xEFFF_FFFB;

/// How long the self-test waits for its session to be reported.
const SELF_TEST: Duration = Duration::from_millis(500);

impl SessionWatch {
    /// Loads the program for this network namespace, attaches it to the
    /// root of the cgroup2 hierarchy (every socket of the host), watches
    /// `ports`, and checks with a session of its own that reports arrive.
    pub fn start(ports: &[u16]) -> Result<Self, SessionWatchError> {
        // Attached below the root (in a cgroup namespace, or to a mount of a
        // sub-cgroup), the program would miss sshd's sockets, and the
        // self-test, whose socket is in our own cgroup, could not tell:
        // checked before anything is loaded.
        let ns = std::fs::metadata("/proc/self/ns/cgroup")
            .map_err(io_err("reading this process's cgroup namespace"))?;
        if std::os::unix::fs::MetadataExt::ino(&ns) != INIT_CGROUP_NS {
            return Err(SessionWatchError::CgroupNamespace);
        }
        let cgroup = File::open(cgroup2_root()?).map_err(io_err("opening the cgroup2 root"))?;
        let netns = netns_cookie().map_err(io_err("reading this network namespace's cookie"))?;
        let mut ebpf = EbpfLoader::new()
            .override_global(SESSION_NETNS_GLOBAL, &netns, true)
            .load(object::SESSIONS)?;
        let prog: &mut SockOps = ebpf
            .program_mut(SESSION_PROGRAM)
            .ok_or(SessionWatchError::MissingProgram)?
            .try_into()?;
        prog.load()?;
        // aya attaches with a bpf_link (kernel 5.7 and later), which always
        // runs beside other sock_ops programs (a CNI's, say) and refuses
        // any attach flag (cgroup_bpf_link_attach): hence no ALLOW_MULTI.
        prog.attach(&cgroup, CgroupAttachMode::Single)?;
        let mut watch = Self {
            ring: take_map(&mut ebpf, MAP_SESSION_EVENTS)?,
            ports: take_map(&mut ebpf, MAP_SESSION_PORTS)?,
            lost: take_map(&mut ebpf, MAP_SESSION_LOST)?,
            lost_seen: 0,
            incomplete: false,
            set: SessionSet::default(),
            _ebpf: ebpf,
        };
        watch.self_test()?;
        for &port in ports {
            watch.watch_port(port, true)?;
        }
        Ok(watch)
    }

    fn watch_port(&mut self, port: u16, on: bool) -> Result<(), SessionWatchError> {
        let result = if on {
            self.ports.insert(port, 1, 0)
        } else {
            self.ports.remove(&port)
        };
        result.map_err(|source| SessionWatchError::Map {
            name: MAP_SESSION_PORTS,
            source,
        })
    }

    /// A loopback session on a port of its own must be reported: if the
    /// host's sockets carry no cgroup2 data, the program never runs, and
    /// the guardrail would see no session at all.
    fn self_test(&mut self) -> Result<(), SessionWatchError> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(io_err("the self-test's listener"))?;
        let port = listener
            .local_addr()
            .map_err(io_err("the self-test's port"))?
            .port();
        self.watch_port(port, true)?;
        let result = (|| {
            let _client = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                .map_err(io_err("the self-test's connection"))?;
            let _server = listener
                .accept()
                .map_err(io_err("the self-test's accept"))?;
            let start = Instant::now();
            let me = IpAddr::V4(Ipv4Addr::LOCALHOST);
            while start.elapsed() < SELF_TEST {
                self.drain();
                if self.set.peers.contains_key(&me) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(SessionWatchError::SelfTest(SELF_TEST))
        })();
        self.watch_port(port, false)?;
        // Its end is reported once the sockets close; the daemon's sessions
        // are not on that port anyway.
        self.set = SessionSet::default();
        result
    }

    /// Takes in every report waiting in the ring buffer. Returns whether
    /// the set is incomplete: reports were lost (the ring was full), or
    /// their count could not be read, and no dump has made up for it yet
    /// ([`SessionWatch::complete_with`]).
    pub fn drain(&mut self) -> bool {
        while let Some(item) = self.ring.next() {
            if item.len() >= size_of::<SessionEvent>() {
                // SAFETY: SessionEvent is plain integers (denylist-common),
                // and the item holds at least its size; read unaligned.
                let e = unsafe { item.as_ptr().cast::<SessionEvent>().read_unaligned() };
                self.set.apply(&e);
            }
        }
        // A count that cannot be read counts as a loss: the guardrail
        // must not fail open.
        let lost = self
            .lost
            .get(&0, 0)
            .map(|per_cpu| per_cpu.iter().sum::<u64>())
            .unwrap_or(self.lost_seen + 1);
        if lost != self.lost_seen {
            self.lost_seen = lost;
            self.incomplete = true;
            self.set.distrust();
        }
        self.incomplete
    }

    /// Marks the start of a dump, for [`SessionWatch::complete_with`].
    pub fn begin_dump(&mut self) -> DumpMark {
        DumpMark {
            generation: self.set.begin_dump(),
            losses: self.lost_seen,
        }
    }

    /// Takes in a dump of every live session begun at `mark`. It completes
    /// the set unless more reports were lost since the mark.
    pub fn complete_with(&mut self, dump: &[(u64, IpAddr)], mark: DumpMark) {
        let no_new_losses = self.lost_seen == mark.losses;
        self.set.reconcile(dump, mark.generation, no_new_losses);
        if no_new_losses {
            self.incomplete = false;
        }
    }

    pub fn sessions(&mut self) -> &mut SessionSet {
        &mut self.set
    }
}

/// SO_NETNS_COOKIE of a socket of ours: the namespace whose sessions count.
fn netns_cookie() -> io::Result<u64> {
    // Not in nix 0.32; the option exists since Linux 5.14.
    const SO_NETNS_COOKIE: libc::c_int = 71;
    let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    let mut cookie: u64 = 0;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: the buffer is a u64 and `len` says so; the fd is open for the
    // call's duration.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}

/// Where the cgroup2 hierarchy is mounted: /sys/fs/cgroup on a unified
/// host, /sys/fs/cgroup/unified on a hybrid one.
fn cgroup2_root() -> Result<PathBuf, SessionWatchError> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(io_err("reading /proc/self/mountinfo"))?;
    cgroup2_in(&mounts).ok_or(SessionWatchError::NoCgroup2)
}

/// The mount point (fifth field) of the first cgroup2 mount (the type is
/// the first field after ` - `) of the hierarchy's root (fourth field `/`;
/// a bind mount of a sub-cgroup would not see every socket).
fn cgroup2_in(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let mut fields = left.split_whitespace().skip(3);
        if fields.next()? != "/" {
            return None;
        }
        fields.next().map(PathBuf::from)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn event(cookie: u64, peer: &str, up: bool) -> SessionEvent {
        let mut e = SessionEvent {
            cookie,
            port: 22,
            up: up.into(),
            ..SessionEvent::default()
        };
        match ip(peer) {
            IpAddr::V4(a) => {
                e.family = 4;
                e.addr[..4].copy_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                e.family = 6;
                e.addr = a.octets();
            }
        }
        e
    }

    fn within(set: &SessionSet, targets: &[&str]) -> Vec<IpAddr> {
        let t: Vec<Target> = targets.iter().map(|s| Target::parse(s).unwrap()).collect();
        set.peers_within(&t)
    }

    #[test]
    fn reports_add_and_end_sessions_and_prefixes_find_them() {
        let mut s = SessionSet::default();
        s.apply(&event(1, "198.51.100.7", true));
        s.apply(&event(2, "198.51.100.7", true));
        s.apply(&event(3, "2001:db8::5", true));
        // An IPv4-mapped peer of an IPv6 socket is the IPv4 address.
        s.apply(&event(4, "::ffff:203.0.113.9", true));
        assert_eq!(within(&s, &["198.51.100.0/24"]), [ip("198.51.100.7")]);
        assert_eq!(within(&s, &["203.0.113.9"]), [ip("203.0.113.9")]);
        assert_eq!(
            within(&s, &["2001:db8::/48", "198.51.100.7"]),
            [ip("198.51.100.7"), ip("2001:db8::5")]
        );
        assert!(within(&s, &["198.51.100.8", "2001:db8:1::/48"]).is_empty());
        s.apply(&event(1, "198.51.100.7", false));
        assert_eq!(
            within(&s, &["198.51.100.7"]),
            [ip("198.51.100.7")],
            "one left"
        );
        s.apply(&event(2, "198.51.100.7", false));
        assert!(within(&s, &["198.51.100.7"]).is_empty());
        // An end nobody saw begin changes nothing.
        s.apply(&event(9, "192.0.2.1", false));
        assert_eq!(s.peers(), [ip("203.0.113.9"), ip("2001:db8::5")]);
        assert!(!s.needs_dumps());
    }

    /// A whole dump, begun now.
    fn dump(s: &mut SessionSet, live: &[(u64, &str)], after_losses: bool) {
        let mark = s.begin_dump();
        let live: Vec<(u64, IpAddr)> = live.iter().map(|(c, p)| (*c, ip(p))).collect();
        s.reconcile(&live, mark, after_losses);
    }

    #[test]
    fn dumps_seed_sessions_and_two_later_dumps_without_one_end_it() {
        let mut s = SessionSet::default();
        dump(&mut s, &[(1, "192.0.2.1"), (2, "192.0.2.2")], true);
        assert!(s.needs_dumps());
        assert!(s.any_unconfirmed(&[ip("192.0.2.9"), ip("192.0.2.1")]));
        // Reported too: its end will be reported, so it is trusted.
        s.apply(&event(2, "192.0.2.2", true));
        s.apply(&event(3, "192.0.2.3", true));
        // 1 is missing once: a dump can skip a socket, so it stays.
        dump(&mut s, &[(2, "192.0.2.2")], true);
        assert_eq!(
            s.peers(),
            [ip("192.0.2.1"), ip("192.0.2.2"), ip("192.0.2.3")]
        );
        // Missing twice in a row, it has ended; 3, reported, never needed
        // a dump.
        dump(&mut s, &[(2, "192.0.2.2")], true);
        assert_eq!(s.peers(), [ip("192.0.2.2"), ip("192.0.2.3")]);
        assert!(!s.needs_dumps());
        assert!(!s.any_unconfirmed(&s.peers()));
        let t = [Target::parse("192.0.2.0/24").unwrap()];
        assert_eq!(
            s.reported_peers_within(&t),
            [ip("192.0.2.2"), ip("192.0.2.3")]
        );
    }

    #[test]
    fn a_dump_begun_before_a_session_never_ends_it() {
        let mut s = SessionSet::default();
        // A dump begins; a session starts and is reported; reports are
        // lost, so it is distrusted; then the older dump, which cannot
        // have seen it, comes in, twice over.
        let mark = s.begin_dump();
        s.apply(&event(7, "198.51.100.7", true));
        s.distrust();
        s.reconcile(&[], mark, false);
        s.reconcile(&[], mark, false);
        assert_eq!(s.peers(), [ip("198.51.100.7")]);
        // A dump begun after the losses shows it: reported, it is trusted
        // again; one begun before the losses would not do.
        dump(&mut s, &[(7, "198.51.100.7")], false);
        assert!(s.needs_dumps());
        dump(&mut s, &[(7, "198.51.100.7")], true);
        assert!(!s.needs_dumps());
        // Its end is reported as usual.
        s.apply(&event(7, "198.51.100.7", false));
        assert!(s.peers().is_empty());
    }

    #[test]
    fn the_cgroup2_mount_is_found_in_mountinfo() {
        let hybrid = "24 18 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
                      25 24 0:23 / /sys/fs/cgroup/unified rw,nosuid shared:4 - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_in(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            cgroup2_in("24 18 0:22 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"),
            None
        );
        let sub = "30 29 0:30 /system.slice/x.service /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_in(sub), None, "a sub-cgroup's mount");
    }
}
