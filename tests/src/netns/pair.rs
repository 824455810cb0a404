//! Two namespaces joined by a veth pair, and real pings across it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::Netns;
use super::bpf;
use super::vlan::{attach_tcx, vlan_pop_insns, vlan_push_insns};

/// Veth names are fixed: each pair has its own two namespaces, so the names
/// cannot collide. Fixed names also make a leftover sandbox easy to read.
const SENDER_IF: &str = "veth-snd";
pub(super) const RECEIVER_IF: &str = "veth-rcv";

/// Fixed locally administered MACs, so static neighbour entries can be
/// written up front without reading the addresses back.
const SENDER_MAC: &str = "02:64:6c:00:00:02";
const RECEIVER_MAC: &str = "02:64:6c:00:00:01";

/// Documentation prefixes (RFC 5737 / RFC 3849). They can never leak
/// anywhere that matters, and they do not overlap the source ranges tests
/// add (198.51.100.0/24, 203.0.113.0/24, 2001:db8:1::/48, ...).
const RECEIVER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub(super) const SENDER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const RECEIVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const SENDER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

/// Upper bound for links to report carrier. Veth is normally up at once;
/// the bound only keeps a broken setup from hanging a test.
const LINK_UP_TIMEOUT: Duration = Duration::from_secs(2);

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

/// Pulls the reply count out of ping's summary
/// ("5 packets transmitted, 3 received, 40% packet loss", maybe followed by
/// "+2 errors"). Parsing this text works with any iputils version.
pub(super) fn parse_received(stdout: &str) -> Option<u32> {
    stdout
        .lines()
        .filter(|l| l.contains("packets transmitted"))
        .flat_map(|l| l.split(','))
        .find_map(|part| part.trim().strip_suffix(" received")?.trim().parse().ok())
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
