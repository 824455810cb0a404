//! What the guardrails read from this host: its own addresses and the
//! peers of its live sessions. A refusal that protects the admin's own way
//! in needs the live state, not configuration.

use std::{io, net::IpAddr};

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::{
    SockDiagMessage,
    constants::{AF_INET, AF_INET6, IPPROTO_TCP},
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_SOCK_DIAG};

use crate::model::{Target, normal_ip};

/// Addresses of this host, from getifaddrs (all families), for host_addrs.
pub fn host_addresses() -> io::Result<Vec<IpAddr>> {
    let mut addrs: Vec<IpAddr> = nix::ifaddrs::getifaddrs()?
        .filter_map(|ifa| {
            let a = ifa.address?;
            if let Some(v4) = a.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .map(normal_ip)
        .collect();
    addrs.sort_unstable();
    addrs.dedup();
    Ok(addrs)
}

/// Above this many targets one dump of every peer on the ports costs less
/// than a filter with a condition per target, which the kernel runs on each
/// socket with a protected local port.
pub const MAX_FILTERED_TARGETS: usize = 256;

/// Peers with an ESTABLISHED TCP connection to one of `ports` on this host,
/// in the caller's network namespace, asked of the kernel over sock_diag
/// (NETLINK_SOCK_DIAG): one dump per family and port, of established
/// sockets with that local port only. With `within` (at most
/// [`MAX_FILTERED_TARGETS`] of them), only peers inside one of those
/// targets: the kernel filters them, so a host under attack, with tens of
/// thousands of sessions on the port, sends back only the few that matter.
pub fn live_peers(ports: &[u16], within: Option<&[Target]>) -> io::Result<Vec<IpAddr>> {
    let filter = match within {
        Some([]) => return Ok(Vec::new()),
        Some(targets) if targets.len() <= MAX_FILTERED_TARGETS => Some(peer_filter(targets)),
        _ => None,
    };
    let mut peers: Vec<IpAddr> = sessions(ports, filter.as_deref())?
        .into_iter()
        .map(|(_, peer)| peer)
        .collect();
    peers.sort_unstable();
    peers.dedup();
    Ok(peers)
}

/// Every ESTABLISHED TCP session to one of `ports`, as [`live_peers`] finds
/// them: each socket's cookie (the one eBPF programs see) and its peer.
pub fn live_sessions(ports: &[u16]) -> io::Result<Vec<(u64, IpAddr)>> {
    sessions(ports, None)
}

fn sessions(ports: &[u16], filter: Option<&[u8]>) -> io::Result<Vec<(u64, IpAddr)>> {
    let mut found = Vec::new();
    for family in [AF_INET, AF_INET6] {
        for &port in ports {
            match established_to(family, port, filter) {
                Ok(more) => found.extend(more),
                // A kernel without IPv6 has no IPv6 sessions.
                Err(e) if family == AF_INET6 && e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(found)
}

// inet_diag's filter language (include/uapi/linux/inet_diag.h, unchanged
// since Linux 2.6), which netlink-packet-sock-diag 0.5 does not encode: it
// has no attributes on a request. The kernel runs the ops from the start;
// an op whose condition holds moves on by `yes` bytes, else by `no`, and
// the socket is reported only if that lands exactly on the end
// (inet_diag_bc_run in net/ipv4/inet_diag.c).
const INET_DIAG_REQ_BYTECODE: u16 = 1;
const INET_DIAG_BC_JMP: u8 = 1;
const INET_DIAG_BC_D_COND: u8 = 8;
/// `struct inet_diag_bc_op`: code, yes, no.
const OP_LEN: usize = 4;
/// `struct inet_diag_hostcond` before its address: family, prefix_len, two
/// bytes of padding, and `int port`, -1 for any.
const HOSTCOND_LEN: usize = 8;

fn op(code: u8, yes: usize, no: usize) -> [u8; OP_LEN] {
    let no = u16::try_from(no).expect("the filter is bounded by MAX_FILTERED_TARGETS");
    let yes = u8::try_from(yes).expect("an op moves on by at most one condition");
    let [n0, n1] = no.to_ne_bytes();
    [code, yes, n0, n1]
}

/// A filter passing sockets whose remote address lies in one of `targets`:
/// `D_COND(t1) JMP D_COND(t2) JMP … D_COND(tn)`. A condition that holds
/// goes on to its JMP, which leaps to the end (pass); one that fails skips
/// its JMP to the next condition; the last one fails past the end (drop).
/// Every `yes` steps to the next op, as the kernel's audit of the filter
/// (inet_diag_bc_audit) requires. IPv4 targets also match IPv4-mapped peers
/// of IPv6 sockets: the kernel compares those for an AF_INET condition.
fn peer_filter(targets: &[Target]) -> Vec<u8> {
    let cond_len = |t: &Target| OP_LEN + HOSTCOND_LEN + if t.is_ipv4() { 4 } else { 16 };
    let total: usize = targets.iter().map(|t| cond_len(t) + OP_LEN).sum::<usize>() - OP_LEN;
    let mut bc = Vec::with_capacity(total);
    for (i, t) in targets.iter().enumerate() {
        let len = cond_len(t);
        let last = i + 1 == targets.len();
        let left = total - bc.len();
        // Failing skips this condition's JMP: onto the next condition, or
        // for the last one 4 bytes past the end, which drops.
        bc.extend(op(INET_DIAG_BC_D_COND, len, len + OP_LEN));
        let (family, addr): (u8, Vec<u8>) = match t.addr() {
            IpAddr::V4(a) => (AF_INET, a.octets().to_vec()),
            IpAddr::V6(a) => (AF_INET6, a.octets().to_vec()),
        };
        bc.extend([family, t.prefix_len(), 0, 0]);
        bc.extend((-1i32).to_ne_bytes());
        bc.extend(addr);
        if !last {
            // From the JMP, the rest of the filter: landing on the end passes.
            bc.extend(op(INET_DIAG_BC_JMP, OP_LEN, left - len));
        }
    }
    bc
}

/// Remote addresses of the established TCP sockets of `family` whose local
/// port is `port`, and that pass `filter` if given.
fn established_to(family: u8, port: u16, filter: Option<&[u8]>) -> io::Result<Vec<(u64, IpAddr)>> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut socket_id = if family == AF_INET {
        SocketId::new_v4()
    } else {
        SocketId::new_v6()
    };
    // A dump keeps only sockets with this source port (the local one).
    socket_id.source_port = port;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut packet = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::ESTABLISHED,
            socket_id,
        })
        .into(),
    );
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    if let Some(bc) = filter {
        // The filter as a netlink attribute after the request, and the
        // message's length (its first four bytes) grown to cover it.
        let attr_len = u16::try_from(4 + bc.len()).map_err(io::Error::other)?;
        buf.extend(attr_len.to_ne_bytes());
        buf.extend(INET_DIAG_REQ_BYTECODE.to_ne_bytes());
        buf.extend(bc);
        buf.resize(buf.len().next_multiple_of(4), 0);
        let len = u32::try_from(buf.len()).map_err(io::Error::other)?;
        buf[..4].copy_from_slice(&len.to_ne_bytes());
    }
    socket.send(&buf, 0)?;

    let mut peers = Vec::new();
    let mut reply = vec![0; 64 * 1024];
    loop {
        let n = socket.recv(&mut &mut reply[..], 0)?;
        let mut at = 0;
        while at < n {
            let message: NetlinkMessage<SockDiagMessage> =
                NetlinkMessage::deserialize(&reply[at..n]).map_err(io::Error::other)?;
            let len = message.header.length as usize;
            match message.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => {
                    // Checked here too, whatever the kernel filtered.
                    let id = &r.header.socket_id;
                    if id.source_port == port {
                        // inet_diag's cookie is two u32 in host order,
                        // the low half first (sock_diag_save_cookie).
                        let [a, b, c, d, e, f, g, h] = id.cookie;
                        let low = u32::from_ne_bytes([a, b, c, d]);
                        let high = u32::from_ne_bytes([e, f, g, h]);
                        let cookie = u64::from(low) | (u64::from(high) << 32);
                        peers.push((cookie, normal_ip(id.destination_address)));
                    }
                }
                NetlinkPayload::Done(_) => return Ok(peers),
                NetlinkPayload::Error(e) => return Err(e.to_io()),
                _ => {}
            }
            // A dump ends with NLMSG_DONE; a message claiming no length
            // would leave this loop waiting for it forever.
            if len == 0 {
                return Err(io::Error::other(
                    "sock_diag answered with an empty netlink message",
                ));
            }
            at += len;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn t(s: &str) -> Target {
        Target::parse(s).unwrap()
    }

    /// A connection to 127.0.0.1:`port` from `from`, another loopback
    /// address: std binds no source address before connecting, and the
    /// kernel would pick 127.0.0.1.
    fn connect_from(from: &str, port: u16) -> TcpStream {
        use std::os::fd::AsRawFd as _;

        use nix::sys::socket::{
            AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, setsockopt, socket,
            sockopt::IpBindAddressNoPort,
        };
        let fd = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        // The port is chosen at connect, as for any client: one bound
        // here could be a port another test listens on, on another address.
        setsockopt(&fd, IpBindAddressNoPort, &true).unwrap();
        let src: std::net::SocketAddrV4 = format!("{from}:0").parse().unwrap();
        bind(fd.as_raw_fd(), &SockaddrIn::from(src)).unwrap();
        let dst = std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, port);
        connect(fd.as_raw_fd(), &SockaddrIn::from(dst)).unwrap();
        TcpStream::from(fd)
    }

    #[test]
    fn live_peers_sees_real_connections_to_the_ports_only() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _server = listener.accept().unwrap();
        assert_eq!(live_peers(&[port], None).unwrap(), vec![ip("127.0.0.1")]);

        let v6 = TcpListener::bind("[::1]:0").unwrap();
        let port6 = v6.local_addr().unwrap().port();
        let _client6 = TcpStream::connect(("::1", port6)).unwrap();
        let _server6 = v6.accept().unwrap();
        assert_eq!(live_peers(&[port6], None).unwrap(), vec![ip("::1")]);
        assert_eq!(
            live_peers(&[port, port6], None).unwrap(),
            vec![ip("127.0.0.1"), ip("::1")]
        );

        // Another port's session is not one to protect.
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let unused = other.local_addr().unwrap().port();
        drop(other);
        assert_eq!(live_peers(&[unused], None).unwrap(), Vec::<IpAddr>::new());
    }

    #[test]
    fn the_kernel_filters_peers_by_the_targets() {
        let listener = TcpListener::bind("0.0.0.0:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut held = Vec::new();
        for from in ["127.0.0.1", "127.0.0.2", "127.0.1.9"] {
            held.push(connect_from(from, port));
            held.push(listener.accept().unwrap().0);
        }
        let peers = |targets: &[&str]| {
            let targets: Vec<Target> = targets.iter().map(|s| t(s)).collect();
            live_peers(&[port], Some(&targets)).unwrap()
        };
        assert_eq!(peers(&["127.0.0.2"]), [ip("127.0.0.2")]);
        assert_eq!(peers(&["127.0.0.0/24"]), [ip("127.0.0.1"), ip("127.0.0.2")]);
        assert_eq!(
            peers(&["198.51.100.7", "127.0.1.0/24", "2001:db8::/32", "127.0.0.1"]),
            [ip("127.0.0.1"), ip("127.0.1.9")]
        );
        assert!(peers(&["198.51.100.0/24", "::1"]).is_empty());
        assert!(peers(&[]).is_empty());
        // Past the filter's size, one dump of every peer on the port.
        let many: Vec<String> = (0..=MAX_FILTERED_TARGETS)
            .map(|i| format!("198.18.{}.{}", i / 256, i % 256))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(peers(&many).len(), 3);
        // The largest filter the kernel is sent is one it accepts.
        let v6: Vec<String> = (0..MAX_FILTERED_TARGETS)
            .map(|i| format!("2001:db8::{i:x}"))
            .chain(["127.0.1.9".to_string()])
            .skip(1)
            .collect();
        let v6: Vec<&str> = v6.iter().map(String::as_str).collect();
        assert_eq!(v6.len(), MAX_FILTERED_TARGETS);
        assert_eq!(peers(&v6), [ip("127.0.1.9")]);
    }

    #[test]
    fn host_addresses_include_loopback() {
        let addrs = host_addresses().unwrap();
        assert!(addrs.contains(&ip("127.0.0.1")), "{addrs:?}");
        let mut sorted = addrs.clone();
        sorted.dedup();
        assert_eq!(sorted, addrs);
    }
}
