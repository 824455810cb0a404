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

use crate::model::normal_ip;

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

/// Peers with an ESTABLISHED TCP connection to one of `ports` on this host,
/// in the caller's network namespace, asked of the kernel over sock_diag
/// (NETLINK_SOCK_DIAG): one dump per family and port, of established
/// sockets with that local port only, so the cost follows the sessions to
/// protect, not every connection the host has (a host under attack has the
/// most).
pub fn live_peers(ports: &[u16]) -> io::Result<Vec<IpAddr>> {
    let mut peers = Vec::new();
    for family in [AF_INET, AF_INET6] {
        for &port in ports {
            match established_to(family, port) {
                Ok(found) => peers.extend(found),
                // A kernel without IPv6 has no IPv6 sessions.
                Err(e) if family == AF_INET6 && e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
    }
    peers.sort_unstable();
    peers.dedup();
    Ok(peers)
}

/// Remote addresses of the established TCP sockets of `family` whose local
/// port is `port`.
fn established_to(family: u8, port: u16) -> io::Result<Vec<IpAddr>> {
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
                        peers.push(normal_ip(id.destination_address));
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

    #[test]
    fn live_peers_sees_real_connections_to_the_ports_only() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _server = listener.accept().unwrap();
        assert_eq!(live_peers(&[port]).unwrap(), vec![ip("127.0.0.1")]);

        let v6 = TcpListener::bind("[::1]:0").unwrap();
        let port6 = v6.local_addr().unwrap().port();
        let _client6 = TcpStream::connect(("::1", port6)).unwrap();
        let _server6 = v6.accept().unwrap();
        assert_eq!(live_peers(&[port6]).unwrap(), vec![ip("::1")]);
        assert_eq!(
            live_peers(&[port, port6]).unwrap(),
            vec![ip("127.0.0.1"), ip("::1")]
        );

        // Another port's session is not one to protect.
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let unused = other.local_addr().unwrap().port();
        drop(other);
        assert_eq!(live_peers(&[unused]).unwrap(), Vec::<IpAddr>::new());
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
