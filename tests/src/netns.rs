//! Network-namespace sandbox for the XDP denylist traffic tests.
//!
//! Each test builds two private network namespaces joined by a veth pair,
//! attaches the denylist to the receiving veth and sends real pings from
//! chosen source addresses. Namespaces keep tests from touching the host's
//! interfaces, routes or XDP slots, and from seeing each other.
//!
//! Machine facts this module is built around (checked by hand on the 6.18
//! test kernel):
//!
//! * `ip netns exec` remounts `/sys` in the child, so bpffs pins under
//!   `/sys/fs/bpf` disappear there. Commands therefore go through
//!   `nsenter --net=...`, which only switches the network namespace, and Rust
//!   code goes through [`Netns::enter`], which only switches one thread.
//! * The kernel is built without `CONFIG_VLAN_8021Q` (so `ip link add ...
//!   type vlan` fails with "Unknown device type") and without
//!   `CONFIG_BRIDGE_VLAN_FILTERING`. It is also built without `act_vlan`.
//!   Tagged traffic is therefore made with two tiny tcx BPF programs instead
//!   of VLAN sub-interfaces. See [`PairConfig::vlan`].
//! * Neighbour entries are static and IPv6 DAD is off, so no ARP/ND exchange
//!   is needed before a ping. Traffic is then deterministic and starts the
//!   moment the links are up.

use std::ffi::CString;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

/// Where `ip netns add` bind-mounts namespaces. Everything (iproute2,
/// nsenter, setns) finds a namespace by this path.
const NETNS_DIR: &str = "/var/run/netns";

/// Makes namespace names unique inside one test process. The pid makes them
/// unique across processes.
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Veth names are fixed: each pair has its own two namespaces, so the names
/// cannot collide. Fixed names also make a leftover sandbox easy to read.
const SENDER_IF: &str = "veth-snd";
const RECEIVER_IF: &str = "veth-rcv";

/// Fixed locally administered MACs, so static neighbour entries can be
/// written up front without reading the addresses back.
const SENDER_MAC: &str = "02:64:6c:00:00:02";
const RECEIVER_MAC: &str = "02:64:6c:00:00:01";

/// Documentation prefixes (RFC 5737 / RFC 3849). They can never leak
/// anywhere that matters, and they do not overlap the source ranges tests
/// add (198.51.100.0/24, 203.0.113.0/24, 2001:db8:1::/48, ...).
const RECEIVER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const SENDER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const RECEIVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const SENDER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

/// Upper bound for links to report carrier. Veth is normally up at once;
/// the bound only keeps a broken setup from hanging a test.
const LINK_UP_TIMEOUT: Duration = Duration::from_secs(2);

/// A named network namespace owned by one test. It is deleted on drop,
/// also when the test panics, so the next run starts clean.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace with a name that is unique per process and
    /// call (`dl<tag>-<pid>-<n>`). The separators stop two processes from
    /// producing the same name (pid 12 call 34 vs pid 123 call 4).
    /// Loopback is brought up because some tools expect it, and it is down
    /// in a new namespace.
    pub fn new(tag: &str) -> Result<Netns> {
        if tag.is_empty() || tag.len() > 12 || !tag.chars().all(|c| c.is_ascii_alphanumeric()) {
            bail!("netns tag {tag:?} must be 1..=12 ASCII alphanumerics");
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("dl{tag}-{}-{n}", std::process::id());
        // A name can only exist already if an earlier process with the same
        // (recycled) pid was killed before its Drop ran. No live process can
        // own it, so clear it out instead of failing.
        if Path::new(NETNS_DIR).join(&name).exists() {
            let _ = run_checked(Command::new("ip").args(["netns", "del", &name]));
        }
        run_checked(Command::new("ip").args(["netns", "add", &name]))?;
        // Build the guard right away so a failure below still deletes the
        // namespace.
        let ns = Netns { name };
        ns.run(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The name that iproute2 (`ip ... netns NAME`) and error messages use.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind-mount path, for anything that needs a namespace fd
    /// (nsenter, setns, `ip link set ... netns`).
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.name)
    }

    /// A command that runs inside the namespace. This uses nsenter, not
    /// `ip netns exec`, so `/sys` and bpffs pins stay visible to it.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path().display()))
            .arg("--")
            .arg(program);
        c
    }

    /// Runs a setup command where any failure is a test-setup bug. The error
    /// carries stderr, so the cause shows up in the test output.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let (program, rest) = args.split_first().context("Netns::run needs a program")?;
        run_checked(self.cmd(program).args(rest)).with_context(|| format!("in netns {}", self.name))
    }

    /// Runs Rust code (e.g. attaching XDP by interface name, or opening
    /// sockets) inside the namespace. setns only moves the calling thread,
    /// so the closure runs on a fresh thread. The test thread and other
    /// tests stay in the host namespace. A panic in `f` is re-raised here,
    /// as if `f` had been called directly.
    pub fn enter<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> Result<R> {
        // Open here and not in the thread, so a missing namespace shows up as
        // a plain error with the path.
        let file = File::open(self.path())
            .with_context(|| format!("opening {}", self.path().display()))?;
        let name = self.name.clone();
        let handle = std::thread::Builder::new()
            .name(format!("netns-{}", self.name))
            .spawn(move || -> Result<R> {
                // SAFETY: plain syscall on a valid, open fd. It affects only this
                // thread, which exits when the closure returns.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    return Err(std::io::Error::last_os_error())
                        .with_context(|| format!("setns into {name}"));
                }
                drop(file);
                Ok(f())
            })
            .context("spawning netns thread")?;
        match handle.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Setup commands read best as one line, and none of their words
    /// (interface names, addresses, numbers) contain spaces.
    fn sh(&self, line: &str) -> Result<String> {
        self.run(&line.split_whitespace().collect::<Vec<_>>())
    }

    /// Sets a sysctl in this namespace. /proc/sys/net follows the writing
    /// thread's namespace, so this needs no procps binary. `path` uses
    /// slashes because interface names may contain dots.
    fn sysctl(&self, path: &str, value: &'static str) -> Result<()> {
        let file = format!("/proc/sys/{path}");
        self.enter(move || std::fs::write(&file, value).with_context(|| format!("writing {file}")))?
            .with_context(|| format!("in netns {}", self.name))
    }
}

impl Drop for Netns {
    /// Deleting the namespace also destroys the veth end and any XDP/tcx
    /// attachment in it, so this one call is the whole cleanup. Errors are
    /// ignored because Drop cannot report them and may run while panicking.
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Shapes the link so tests can cover the denylist's parsing and size edge
/// cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairConfig {
    /// MTU of both veth ends. 9000 makes packets larger than a page. Native
    /// XDP on veth then only accepts frags-aware (`xdp.frags`) programs,
    /// which is the attacher's concern.
    pub mtu: u32,
    /// When set, every frame from the sender carries an 802.1Q tag with
    /// this VID *in the packet bytes*, where the receiver's XDP program must
    /// parse it.
    ///
    /// How (this kernel has no 8021q/bridge VLAN support, see module docs):
    /// * sender: a tcx-egress BPF program on the veth calls
    ///   `bpf_skb_vlan_push`. That only puts the tag into skb metadata
    ///   (`vlan_tci`), so `ethtool -K veth-snd txvlan off` is also set. Then
    ///   `validate_xmit_vlan` writes the tag into the frame before veth hands
    ///   it to the peer. With txvlan left on, the tag stays in metadata and
    ///   XDP on the receiver sees a plain untagged frame (verified: an XDP
    ///   probe that drops ethertype 0x8100 then lets every ping through).
    /// * receiver: nothing is needed for XDP to see the tag. `rxvlan` is
    ///   irrelevant on veth, because veth never strips tags itself. Both
    ///   native and generic XDP run before the core's `skb_vlan_untag`
    ///   (verified with rxvlan on and off). After XDP_PASS, a tcx-ingress
    ///   program calls `bpf_skb_vlan_pop`. Without it, the stack would mark
    ///   the frame PACKET_OTHERHOST (non-zero VID, no VLAN device) and drop
    ///   it, and no reply would come back.
    /// * Replies from the receiver are untagged. Only the receiver's ingress
    ///   is under test.
    ///
    /// The traffic interface is the veth itself in both cases, so addresses
    /// and routes are the same with or without a VLAN.
    pub vlan: Option<u16>,
}

impl Default for PairConfig {
    /// Plain Ethernet at the usual MTU is the baseline every other case is
    /// compared against.
    fn default() -> Self {
        PairConfig {
            mtu: 1500,
            vlan: None,
        }
    }
}

/// Two namespaces joined by a veth pair: `sender` (side "a") and `receiver`
/// (side "b"). The receiver is the host the denylist protects. The sender
/// can send from any source address a test adds, so one pair can stand in
/// for many clients.
#[derive(Debug)]
pub struct Pair {
    /// tcx links that do the VLAN push/pop. Holding the fds keeps the
    /// programs attached for as long as the pair lives. This field comes
    /// first so the links close before the namespaces go away.
    _vlan_links: Vec<OwnedFd>,
    /// Where pings come from (`ping()` runs here).
    pub sender: Netns,
    /// Where the XDP program under test lives.
    pub receiver: Netns,
    /// The sender's veth end. Tests may inspect or tweak it.
    pub sender_if: String,
    /// The receiver's veth end.
    pub receiver_if: String,
    /// The receiver's base veth. XDP attaches here even with a VLAN
    /// configured, because the point is that the program parses the tag.
    pub receiver_xdp_if: String,
    /// Ping target for IPv4 sources.
    pub receiver_v4: Ipv4Addr,
    /// Ping target for IPv6 sources.
    pub receiver_v6: Ipv6Addr,
}

impl Pair {
    /// Builds the whole sandbox, ready for traffic. If any step fails, the
    /// namespaces made so far are dropped, and with them everything else.
    pub fn new(tag: &str, cfg: PairConfig) -> Result<Pair> {
        if let Some(vid) = cfg.vlan
            && !(1..=4094).contains(&vid)
        {
            bail!("VLAN id {vid} out of range 1..=4094");
        }
        let sender = Netns::new(&format!("{tag}s"))?;
        let receiver = Netns::new(&format!("{tag}r"))?;

        // Set the defaults before the veth exists so it inherits them. The
        // per-interface values are set again below to be explicit.
        for ns in [&sender, &receiver] {
            ns.sysctl("net/ipv6/conf/all/accept_dad", "0")?;
            ns.sysctl("net/ipv6/conf/default/accept_dad", "0")?;
            ns.sysctl("net/ipv4/conf/all/rp_filter", "0")?;
            ns.sysctl("net/ipv4/conf/default/rp_filter", "0")?;
        }

        // Create the pair from inside the sender namespace with the peer
        // placed straight into the receiver, so no name ever appears in the
        // host namespace.
        let mtu = cfg.mtu;
        sender.sh(&format!(
            "ip link add {SENDER_IF} address {SENDER_MAC} mtu {mtu} type veth \
             peer name {RECEIVER_IF} address {RECEIVER_MAC} mtu {mtu} netns {}",
            receiver.name()
        ))?;

        for (ns, ifname) in [(&sender, SENDER_IF), (&receiver, RECEIVER_IF)] {
            ns.sysctl(&format!("net/ipv6/conf/{ifname}/accept_dad"), "0")?;
            ns.sysctl(&format!("net/ipv4/conf/{ifname}/rp_filter"), "0")?;
        }

        let mut vlan_links = Vec::new();
        if let Some(vid) = cfg.vlan {
            // See PairConfig::vlan for why each half is needed.
            sender.sh(&format!("ethtool -K {SENDER_IF} txvlan off"))?;
            vlan_links.push(attach_tcx(
                &sender,
                SENDER_IF,
                bpf::TCX_EGRESS,
                vlan_push_insns(vid),
                "dl_vlan_push",
            )?);
            vlan_links.push(attach_tcx(
                &receiver,
                RECEIVER_IF,
                bpf::TCX_INGRESS,
                vlan_pop_insns(),
                "dl_vlan_pop",
            )?);
        }

        for (ns, ifname, v4, v6) in [
            (&sender, SENDER_IF, SENDER_V4, SENDER_V6),
            (&receiver, RECEIVER_IF, RECEIVER_V4, RECEIVER_V6),
        ] {
            ns.sh(&format!("ip addr add {v4}/24 dev {ifname}"))?;
            ns.sh(&format!("ip -6 addr add {v6}/64 dev {ifname} nodad"))?;
            ns.sh(&format!("ip link set {ifname} up"))?;
        }
        wait_up(&sender, SENDER_IF)?;
        wait_up(&receiver, RECEIVER_IF)?;

        // Add these after the links are up: taking a link down flushes even
        // permanent entries.
        for (ns, ifname, v4, v6, mac) in [
            (&sender, SENDER_IF, RECEIVER_V4, RECEIVER_V6, RECEIVER_MAC),
            (&receiver, RECEIVER_IF, SENDER_V4, SENDER_V6, SENDER_MAC),
        ] {
            for addr in [IpAddr::V4(v4), IpAddr::V6(v6)] {
                ns.sh(&format!(
                    "ip neigh replace {addr} lladdr {mac} dev {ifname} nud permanent"
                ))?;
            }
        }

        // Any source a test puts on the sender routes back to it, including
        // ones added by hand rather than through add_sender_source.
        receiver.sh(&format!(
            "ip route replace default via {SENDER_V4} dev {RECEIVER_IF}"
        ))?;
        receiver.sh(&format!(
            "ip -6 route replace default via {SENDER_V6} dev {RECEIVER_IF}"
        ))?;

        Ok(Pair {
            _vlan_links: vlan_links,
            sender,
            receiver,
            sender_if: SENDER_IF.to_string(),
            receiver_if: RECEIVER_IF.to_string(),
            receiver_xdp_if: RECEIVER_IF.to_string(),
            receiver_v4: RECEIVER_V4,
            receiver_v6: RECEIVER_V6,
        })
    }

    /// Lets a test act as any client: `addr` becomes a local address of the
    /// sender, so `ping -I addr` can use it as source. Calling it twice is
    /// harmless (`replace`). The receiver gets a host route back via the
    /// sender's base address. This is needed when `addr` falls inside the
    /// on-link 192.0.2.0/24 or 2001:db8::/64: without it the receiver would
    /// ARP/ND for it instead of using the static neighbour entry.
    pub fn add_sender_source(&self, addr: IpAddr) -> Result<()> {
        match addr {
            IpAddr::V4(a) => {
                if a == SENDER_V4 {
                    return Ok(());
                }
                if a == RECEIVER_V4 {
                    bail!("{a} is the receiver's own address");
                }
                self.sender
                    .sh(&format!("ip addr replace {a}/32 dev {SENDER_IF}"))?;
                self.receiver.sh(&format!(
                    "ip route replace {a}/32 via {SENDER_V4} dev {RECEIVER_IF}"
                ))?;
            }
            IpAddr::V6(a) => {
                if a == SENDER_V6 {
                    return Ok(());
                }
                if a == RECEIVER_V6 {
                    bail!("{a} is the receiver's own address");
                }
                self.sender
                    .sh(&format!("ip -6 addr replace {a}/128 dev {SENDER_IF} nodad"))?;
                self.receiver.sh(&format!(
                    "ip -6 route replace {a}/128 via {SENDER_V6} dev {RECEIVER_IF}"
                ))?;
            }
        }
        Ok(())
    }

    /// Real traffic through the receiver's XDP hook. The reply count tells a
    /// test whether `src` was let through (all replies) or dropped (none).
    /// `size` is the ICMP payload, so tests can send jumbo or fragmented
    /// packets. Loss is a result, not an error. Only a failure to run ping
    /// at all is an error.
    pub fn ping(&self, src: IpAddr, count: u32, size: u32) -> Result<u32> {
        if count == 0 {
            // `ping -c 0` means "forever".
            bail!("ping count must be at least 1");
        }
        let (family, dst) = match src {
            IpAddr::V4(_) => ("-4", IpAddr::V4(self.receiver_v4)),
            IpAddr::V6(_) => ("-6", IpAddr::V6(self.receiver_v6)),
        };
        let args = format!("{family} -n -q -c {count} -i 0.01 -W 1 -s {size} -I {src} {dst}");
        let out = self
            .sender
            .cmd("ping")
            .args(args.split_whitespace())
            .output()
            .context("spawning ping")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        // iputils: 0 = all or some replies, 1 = none (or loss with a
        // deadline), 2 = real error (bad address, no route, ...).
        match out.status.code() {
            Some(0) | Some(1) => parse_received(&stdout).with_context(|| {
                format!(
                    "no 'N received' in ping output from {src}:\n{stdout}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            }),
            _ => bail!(
                "ping from {src} to {dst} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                stdout
            ),
        }
    }
}

/// A ping left running while a test does something else (restarts the
/// daemon, deploys), so a gap in filtering would show as replies.
pub struct Flood {
    child: std::process::Child,
    src: IpAddr,
}

impl Pair {
    /// Starts pinging from `src` every `interval` seconds (e.g. "0.01")
    /// until [`Flood::finish`].
    pub fn flood(&self, src: IpAddr, interval: &str) -> Result<Flood> {
        let (family, dst) = match src {
            IpAddr::V4(_) => ("-4", IpAddr::V4(self.receiver_v4)),
            IpAddr::V6(_) => ("-6", IpAddr::V6(self.receiver_v6)),
        };
        let child = self
            .sender
            .cmd("ping")
            .args([family, "-n", "-q", "-i", interval, "-W", "1", "-I"])
            .arg(src.to_string())
            .arg(dst.to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("spawning ping")?;
        Ok(Flood { child, src })
    }
}

/// Stops two floods that ran across some disruption and asserts there was
/// no gap: not one packet of the `denied` stream came back, and the
/// `allowed` one kept flowing (at least 90% answered).
pub fn assert_no_gap(denied: Flood, allowed: Flood) {
    let (sent, received) = denied.finish().expect("the denied flood");
    let (free_sent, free_received) = allowed.finish().expect("the allowed flood");
    assert!(sent > 100, "the denied stream ran throughout ({sent} sent)");
    assert_eq!(
        received, 0,
        "{received} of {sent} denied packets got through"
    );
    assert!(
        free_received * 10 >= free_sent * 9,
        "the allowed stream kept flowing: {free_received}/{free_sent}"
    );
}

impl Flood {
    /// Stops the ping (SIGINT, so it prints its summary) and returns
    /// (sent, received).
    pub fn finish(self) -> Result<(u32, u32)> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let out = self.child.wait_with_output().context("waiting for ping")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let sent = stdout
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("no summary from ping {}: {stdout}", self.src))?;
        let received = parse_received(&stdout)
            .with_context(|| format!("no summary from ping {}: {stdout}", self.src))?;
        Ok((sent, received))
    }
}

/// Pulls the reply count out of ping's summary
/// ("5 packets transmitted, 3 received, 40% packet loss", maybe followed by
/// "+2 errors"). Parsing this text works with any iputils version.
fn parse_received(stdout: &str) -> Option<u32> {
    stdout
        .lines()
        .filter(|l| l.contains("packets transmitted"))
        .flat_map(|l| l.split(','))
        .find_map(|part| part.trim().strip_suffix(" received")?.trim().parse().ok())
}

/// Runs a command and turns a non-zero exit into an error with its stderr,
/// because a bare "exit status 2" from a setup step cannot be debugged.
fn run_checked(cmd: &mut Command) -> Result<String> {
    let desc = format!("{cmd:?}");
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().with_context(|| format!("spawning {desc}"))?;
    if !status.success() {
        bail!(
            "{desc} failed ({status}): {}{}",
            String::from_utf8_lossy(&stderr).trim_end(),
            String::from_utf8_lossy(&stdout).trim_end()
        );
    }
    String::from_utf8(stdout).with_context(|| format!("non-UTF-8 output from {desc}"))
}

/// Traffic sent before carrier is up is silently lost and would show up as
/// denylist drops. Polls `ip link` because operstate is what the stack
/// uses.
fn wait_up(ns: &Netns, ifname: &str) -> Result<()> {
    let deadline = Instant::now() + LINK_UP_TIMEOUT;
    loop {
        let out = ns.sh(&format!("ip -o link show dev {ifname}"))?;
        if out.contains("LOWER_UP") && out.contains("state UP") {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{ifname} in {} not up after {LINK_UP_TIMEOUT:?}: {}",
                ns.name(),
                out.trim_end()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Interface index in the calling thread's namespace. Use it inside
/// [`Netns::enter`], because ifindexes are per namespace.
fn ifindex(ifname: &str) -> Result<u32> {
    let c = CString::new(ifname)?;
    // SAFETY: `c` is a valid NUL-terminated string for the call's duration.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("no interface {ifname}"));
    }
    Ok(idx)
}

/// Loads `insns` as a tc program and attaches it with a tcx link inside
/// `ns`. tcx (kernel >= 6.6) needs no qdisc, no tc binary and no bpffs pin,
/// and it detaches by itself when the fd closes or the device dies.
fn attach_tcx(
    ns: &Netns,
    ifname: &str,
    attach_type: u32,
    insns: Vec<bpf::Insn>,
    name: &'static str,
) -> Result<OwnedFd> {
    let ifname = ifname.to_string();
    ns.enter(move || -> Result<OwnedFd> {
        let idx = ifindex(&ifname)?;
        let prog = bpf::prog_load(bpf::PROG_TYPE_SCHED_CLS, attach_type, 0, &insns, name)?;
        bpf::link_create(&prog, idx, attach_type, 0)
            .with_context(|| format!("attaching {name} to {ifname}"))
    })?
}

/// `bpf_skb_vlan_push(skb, htons(0x8100), vid); return TCX_PASS;`
fn vlan_push_insns(vid: u16) -> Vec<bpf::Insn> {
    use bpf::*;
    vec![
        Insn::mov64_imm(2, i32::from(0x8100u16.to_be())),
        Insn::mov64_imm(3, i32::from(vid)),
        Insn::call(FUNC_SKB_VLAN_PUSH),
        Insn::mov64_imm(0, TCX_PASS),
        Insn::exit(),
    ]
}

/// `bpf_skb_vlan_pop(skb); return TCX_PASS;`. This runs after XDP and
/// after the core moved the tag into metadata, so popping just clears it.
fn vlan_pop_insns() -> Vec<bpf::Insn> {
    use bpf::*;
    vec![
        Insn::call(FUNC_SKB_VLAN_POP),
        Insn::mov64_imm(0, TCX_PASS),
        Insn::exit(),
    ]
}

/// Just enough raw bpf(2) to load and attach hand-assembled programs. The
/// harness may only depend on std/libc/anyhow, and the Debian uapi headers
/// on the test machine predate tcx, so the constants are spelled out here.
mod bpf {
    use super::*;

    const CMD_PROG_LOAD: libc::c_long = 5;
    const CMD_LINK_CREATE: libc::c_long = 28;
    pub const PROG_TYPE_SCHED_CLS: u32 = 3;
    #[cfg_attr(not(test), allow(dead_code))]
    pub const PROG_TYPE_XDP: u32 = 6;
    #[cfg_attr(not(test), allow(dead_code))]
    pub const ATTACH_XDP: u32 = 37;
    pub const TCX_INGRESS: u32 = 46;
    pub const TCX_EGRESS: u32 = 47;
    pub const TCX_PASS: i32 = 0;
    pub const FUNC_SKB_VLAN_PUSH: i32 = 18;
    pub const FUNC_SKB_VLAN_POP: i32 = 19;

    /// `struct bpf_insn`.
    #[derive(Debug, Clone, Copy)]
    #[repr(C)]
    pub struct Insn {
        code: u8,
        regs: u8,
        off: i16,
        imm: i32,
    }

    impl Insn {
        pub fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
            // `dst_reg:4, src_reg:4` bitfields: the first field takes the low
            // nibble on little-endian targets and the high nibble on
            // big-endian ones.
            let regs = if cfg!(target_endian = "little") {
                dst | (src << 4)
            } else {
                (dst << 4) | src
            };
            Insn {
                code,
                regs,
                off,
                imm,
            }
        }
        pub fn mov64_imm(dst: u8, imm: i32) -> Insn {
            Insn::new(0xb7, dst, 0, 0, imm)
        }
        pub fn call(helper: i32) -> Insn {
            Insn::new(0x85, 0, 0, 0, helper)
        }
        pub fn exit() -> Insn {
            Insn::new(0x95, 0, 0, 0, 0)
        }
    }

    /// `union bpf_attr`, zeroed. The kernel rejects non-zero bytes in fields
    /// it does not know, and accepts a size smaller than its own union.
    #[repr(C, align(8))]
    struct Attr([u8; 128]);

    impl Attr {
        fn new() -> Attr {
            Attr([0; 128])
        }
        fn u32(&mut self, off: usize, v: u32) -> &mut Attr {
            self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
            self
        }
        fn u64(&mut self, off: usize, v: u64) -> &mut Attr {
            self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
            self
        }
    }

    fn sys_bpf(cmd: libc::c_long, attr: &mut Attr) -> std::io::Result<OwnedFd> {
        // SAFETY: `attr` is a live, properly sized buffer. Every pointer
        // stored in it is kept alive by the caller across this call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                attr.0.as_mut_ptr(),
                attr.0.len() as libc::c_long,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: on success these commands return a new fd that we own.
        Ok(unsafe { OwnedFd::from_raw_fd(rc as libc::c_int) })
    }

    /// On failure, loads again with the verifier log so the error says why.
    /// The first attempt goes without a log because a successful load can
    /// fail with ENOSPC when the log buffer is too small.
    pub fn prog_load(
        prog_type: u32,
        expected_attach: u32,
        flags: u32,
        insns: &[Insn],
        name: &str,
    ) -> Result<OwnedFd> {
        let license = c"GPL";
        let mut prog_name = [0u8; 16];
        let n = name.len().min(15);
        prog_name[..n].copy_from_slice(&name.as_bytes()[..n]);
        let build = |log: Option<&mut Vec<u8>>| {
            let mut a = Attr::new();
            a.u32(0, prog_type)
                .u32(4, insns.len() as u32)
                .u64(8, insns.as_ptr() as u64)
                .u64(16, license.as_ptr() as u64)
                .u32(44, flags)
                .u32(68, expected_attach);
            a.0[48..64].copy_from_slice(&prog_name);
            if let Some(buf) = log {
                a.u32(24, 1)
                    .u32(28, buf.len() as u32)
                    .u64(32, buf.as_mut_ptr() as u64);
            }
            a
        };
        match sys_bpf(CMD_PROG_LOAD, &mut build(None)) {
            Ok(fd) => Ok(fd),
            Err(err) => {
                let mut log = vec![0u8; 64 * 1024];
                let _ = sys_bpf(CMD_PROG_LOAD, &mut build(Some(&mut log)));
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                Err(anyhow!(
                    "BPF_PROG_LOAD {name}: {err}\n{}",
                    String::from_utf8_lossy(&log[..end])
                ))
            }
        }
    }

    /// The returned link fd is the attachment: closing it detaches.
    pub fn link_create(
        prog: &OwnedFd,
        ifindex: u32,
        attach_type: u32,
        flags: u32,
    ) -> Result<OwnedFd> {
        let mut a = Attr::new();
        a.u32(0, prog.as_raw_fd() as u32)
            .u32(4, ifindex)
            .u32(8, attach_type)
            .u32(12, flags);
        sys_bpf(CMD_LINK_CREATE, &mut a)
            .map_err(|e| anyhow!("BPF_LINK_CREATE (attach type {attach_type}): {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4_SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
    const V6_SRC: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 7));

    /// Shared body for each link shape: traffic flows both families with no
    /// XDP attached, and drop leaves nothing behind.
    fn check_pair(tag: &str, cfg: PairConfig, sizes: &[u32]) {
        let pair = Pair::new(tag, cfg).expect("pair");
        let paths = [pair.sender.path(), pair.receiver.path()];
        for p in &paths {
            assert!(p.exists(), "{} should exist", p.display());
        }
        for src in [V4_SRC, V6_SRC] {
            pair.add_sender_source(src).unwrap();
            // Idempotent, so tests can re-add freely.
            pair.add_sender_source(src).unwrap();
            for &size in sizes {
                assert_eq!(
                    pair.ping(src, 5, size).unwrap(),
                    5,
                    "{tag}: ping from {src} size {size}"
                );
            }
        }
        drop(pair);
        for p in &paths {
            assert!(!p.exists(), "{} should be gone after drop", p.display());
        }
        let list = run_checked(Command::new("ip").args(["netns", "list"])).unwrap();
        for p in &paths {
            let name = p.file_name().unwrap().to_str().unwrap();
            assert!(
                !list
                    .lines()
                    .any(|l| l.split_whitespace().next() == Some(name)),
                "{name} still listed"
            );
        }
    }

    #[test]
    fn plain_pair_passes_traffic() {
        crate::require_root();
        check_pair("plain", PairConfig::default(), &[56, 1400]);
    }

    #[test]
    fn vlan_pair_passes_traffic() {
        crate::require_root();
        check_pair(
            "vlan",
            PairConfig {
                vlan: Some(100),
                ..Default::default()
            },
            &[56, 1400],
        );
    }

    #[test]
    fn jumbo_pair_passes_traffic() {
        crate::require_root();
        // 8000 fits one 9000 frame. 12000 checks that fragments come back.
        check_pair(
            "jumbo",
            PairConfig {
                mtu: 9000,
                vlan: None,
            },
            &[56, 8000, 12000],
        );
    }

    #[test]
    fn running_twice_works() {
        crate::require_root();
        for _ in 0..2 {
            let pair = Pair::new("twice", PairConfig::default()).unwrap();
            pair.add_sender_source(V4_SRC).unwrap();
            assert_eq!(pair.ping(V4_SRC, 2, 56).unwrap(), 2);
        }
    }

    #[test]
    fn source_inside_onlink_subnet_routes_back() {
        crate::require_root();
        let pair = Pair::new("onlink", PairConfig::default()).unwrap();
        for src in [
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 77)),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x77)),
            IpAddr::V4(SENDER_V4),
        ] {
            pair.add_sender_source(src).unwrap();
            assert_eq!(pair.ping(src, 3, 56).unwrap(), 3, "from {src}");
        }
    }

    #[test]
    fn enter_runs_in_the_namespace() {
        crate::require_root();
        let pair = Pair::new("enter", PairConfig::default()).unwrap();
        let r = pair
            .receiver
            .enter(|| ifindex(RECEIVER_IF).is_ok())
            .unwrap();
        let s = pair.sender.enter(|| ifindex(RECEIVER_IF).is_ok()).unwrap();
        assert!(r && !s);
        // The calling thread stays where it was.
        assert!(ifindex(RECEIVER_IF).is_err());
    }

    #[test]
    fn enter_propagates_panics() {
        crate::require_root();
        let ns = Netns::new("panic").unwrap();
        let path = ns.path();
        let r =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ns.enter(|| panic!("boom"))));
        assert!(r.is_err());
        drop(ns);
        assert!(!path.exists());
    }

    /// XDP probe: drop every frame whose ethertype at offset 12 is 0x8100,
    /// pass everything else. Marked frags-aware so it also attaches natively
    /// at MTU 9000.
    fn attach_tag_probe(pair: &Pair, xdp_flags: u32) -> OwnedFd {
        use bpf::*;
        let insns = vec![
            Insn::new(0x61, 2, 1, 0, 0),                            // r2 = ctx->data
            Insn::new(0x61, 3, 1, 4, 0),                            // r3 = ctx->data_end
            Insn::new(0xbf, 4, 2, 0, 0),                            // r4 = r2
            Insn::new(0x07, 4, 0, 0, 14),                           // r4 += 14
            Insn::mov64_imm(0, 2),                                  // r0 = XDP_PASS
            Insn::new(0x2d, 4, 3, 3, 0),                            // if r4 > r3 goto exit
            Insn::new(0x69, 5, 2, 12, 0),                           // r5 = *(u16 *)(r2 + 12)
            Insn::new(0x55, 5, 0, 1, i32::from(0x8100u16.to_be())), // if r5 != 0x8100 goto exit
            Insn::mov64_imm(0, 1),                                  // r0 = XDP_DROP
            Insn::exit(),
        ];
        let ifname = pair.receiver_xdp_if.clone();
        pair.receiver
            .enter(move || -> Result<OwnedFd> {
                let prog = prog_load(PROG_TYPE_XDP, ATTACH_XDP, 1 << 5, &insns, "dl_tag_probe")?;
                link_create(&prog, ifindex(&ifname)?, ATTACH_XDP, xdp_flags)
            })
            .unwrap()
            .unwrap()
    }

    const XDP_FLAGS_SKB_MODE: u32 = 2;
    const XDP_FLAGS_DRV_MODE: u32 = 4;

    /// The reason VLAN mode exists: the tag must be in the bytes XDP sees,
    /// in both native and generic mode, at both MTUs.
    #[test]
    fn vlan_tag_is_visible_to_xdp() {
        crate::require_root();
        for mtu in [1500, 9000] {
            for mode in [XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE] {
                let tagged = Pair::new(
                    "tag",
                    PairConfig {
                        mtu,
                        vlan: Some(100),
                    },
                )
                .unwrap();
                let plain = Pair::new("untag", PairConfig { mtu, vlan: None }).unwrap();
                for pair in [&tagged, &plain] {
                    for src in [V4_SRC, V6_SRC] {
                        pair.add_sender_source(src).unwrap();
                    }
                }
                let _l1 = attach_tag_probe(&tagged, mode);
                let _l2 = attach_tag_probe(&plain, mode);
                for src in [V4_SRC, V6_SRC] {
                    assert_eq!(
                        tagged.ping(src, 3, 56).unwrap(),
                        0,
                        "tag not seen: mtu {mtu} mode {mode} {src}"
                    );
                    assert_eq!(
                        plain.ping(src, 3, 56).unwrap(),
                        3,
                        "probe broke plain: mtu {mtu} mode {mode} {src}"
                    );
                }
            }
        }
    }

    #[test]
    fn parse_received_variants() {
        let ok = "PING x\n\n--- 192.0.2.1 ping statistics ---\n5 packets transmitted, 5 received, 0% packet loss, time 41ms\nrtt min/avg/max/mdev = 0.1/0.1/0.1/0.0 ms\n";
        assert_eq!(parse_received(ok), Some(5));
        let none = "--- 192.0.2.1 ping statistics ---\n3 packets transmitted, 0 received, 100% packet loss, time 20ms\n";
        assert_eq!(parse_received(none), Some(0));
        let errs = "4 packets transmitted, 1 received, +3 errors, 75% packet loss, time 30ms\n";
        assert_eq!(parse_received(errs), Some(1));
        assert_eq!(parse_received("garbage"), None);
    }

    #[test]
    fn netns_rejects_bad_tags() {
        assert!(Netns::new("").is_err());
        assert!(Netns::new("a/b").is_err());
        assert!(Netns::new("waytoolongtagname").is_err());
    }
}
