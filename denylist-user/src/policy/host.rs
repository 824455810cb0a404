//! What the guardrails read from this host: its own addresses and the
//! peers of its live sessions. A refusal that protects the admin's own way
//! in needs the live state, not configuration.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use crate::model::normal_ip;

/// Addresses of this host, from getifaddrs (all families), for host_addrs.
pub fn host_addresses() -> io::Result<Vec<IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `head` is a valid place for getifaddrs to store the list in.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut addrs = Vec::new();
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: every node of the list stays valid until freeifaddrs below.
        let ifa = unsafe { &*cursor };
        // SAFETY: ifa_addr is null or points to a sockaddr of its family.
        if let Some(ip) = unsafe { sockaddr_ip(ifa.ifa_addr) } {
            addrs.push(normal_ip(ip));
        }
        cursor = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs, and nothing refers to it any more.
    unsafe { libc::freeifaddrs(head) };
    addrs.sort_unstable();
    addrs.dedup();
    Ok(addrs)
}

/// The IP address in `sa`, if it is an IPv4 or IPv6 socket address.
///
/// # Safety
/// `sa` is null or points to a socket address as long as its family says.
unsafe fn sockaddr_ip(sa: *const libc::sockaddr) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: the caller promises a sockaddr, and the family fits every one.
    match i32::from(unsafe { (*sa).sa_family }) {
        libc::AF_INET => {
            // SAFETY: an AF_INET address is a sockaddr_in; getifaddrs does not
            // promise its alignment, hence the unaligned read.
            let sin = unsafe { sa.cast::<libc::sockaddr_in>().read_unaligned() };
            Some(IpAddr::V4(Ipv4Addr::from(
                sin.sin_addr.s_addr.to_ne_bytes(),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { sa.cast::<libc::sockaddr_in6>().read_unaligned() };
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

/// Peers with an ESTABLISHED TCP connection to one of `ports` on this host,
/// read from /proc/net/tcp and /proc/net/tcp6 of the caller's network
/// namespace.
pub fn live_peers(ports: &[u16]) -> io::Result<Vec<IpAddr>> {
    let mut peers = Vec::new();
    for (path, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        match std::fs::read_to_string(path) {
            Ok(text) => peers.extend(parse_proc_net_tcp(&text, v6, ports)),
            // A kernel without IPv6 has no tcp6 table, and no IPv6 sessions.
            Err(e) if v6 && e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    peers.sort_unstable();
    peers.dedup();
    Ok(peers)
}

/// The kernel's state number for ESTABLISHED, as /proc/net/tcp prints it.
const TCP_ESTABLISHED: &str = "01";

/// Remote addresses of the ESTABLISHED connections to a local port in
/// `ports`, from the text of /proc/net/tcp (or tcp6 when `v6`). Lines that
/// do not parse, like the header, are skipped.
fn parse_proc_net_tcp(text: &str, v6: bool, ports: &[u16]) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace().skip(1);
            let local = fields.next()?;
            let remote = fields.next()?;
            if fields.next()? != TCP_ESTABLISHED {
                return None;
            }
            let (_, local_port) = local.split_once(':')?;
            if !ports.contains(&u16::from_str_radix(local_port, 16).ok()?) {
                return None;
            }
            let (remote_addr, _) = remote.split_once(':')?;
            proc_addr(remote_addr, v6).map(normal_ip)
        })
        .collect()
}

/// An address as /proc/net/tcp prints it: each 32-bit word of the
/// network-order address, read as a native-endian integer, in hex.
fn proc_addr(hex: &str, v6: bool) -> Option<IpAddr> {
    let words = if v6 { 4 } else { 1 };
    if hex.len() != words * 8 || !hex.is_ascii() {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, chunk) in bytes.chunks_exact_mut(4).take(words).enumerate() {
        let word = u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16).ok()?;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    Some(if v6 {
        IpAddr::V6(Ipv6Addr::from(bytes))
    } else {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const PROC_TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1234 1 0000000000000000 100 0 0 10 0
   1: 010200C0:0016 0500000A:C822 01 00000000:00000000 02:000A7B2C 00000000     0        0 5678 2 0000000000000000 20 4 30 10 -1
   2: 010200C0:0050 0600000A:C823 01 00000000:00000000 02:000A7B2C 00000000     0        0 5679 2 0000000000000000 20 4 30 10 -1
   3: 010200C0:0016 0700000A:C824 06 00000000:00000000 03:00000BB8 00000000     0        0 0 3 0000000000000000
   4: 010200C0:0A8C 0800000A:C825 01 00000000:00000000 02:000A7B2C 00000000     0        0 5680 2 0000000000000000 20 4 30 10 -1
";

    // The kernel prints each address word in the host's byte order; these
    // samples were taken on a little-endian host.
    #[cfg(target_endian = "little")]
    #[test]
    fn proc_net_tcp_yields_established_peers_of_the_ports() {
        assert_eq!(
            parse_proc_net_tcp(PROC_TCP, false, &[22]),
            vec![ip("10.0.0.5")]
        );
        assert_eq!(
            parse_proc_net_tcp(PROC_TCP, false, &[22, 80, 2700]),
            vec![ip("10.0.0.5"), ip("10.0.0.6"), ip("10.0.0.8")]
        );
        assert!(parse_proc_net_tcp(PROC_TCP, false, &[443]).is_empty());
        assert!(parse_proc_net_tcp(PROC_TCP, true, &[22]).is_empty());
        assert!(parse_proc_net_tcp("", false, &[22]).is_empty());
        assert!(parse_proc_net_tcp("garbage\n 0: zz:zz yy:yy 01\n", false, &[22]).is_empty());
    }

    const PROC_TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1000 1 0000000000000000 100 0 0 10 0
   1: B80D0120000000000000000001000000:0016 B80D0120000000000000000005000000:D431 01 00000000:00000000 02:0009C3D5 00000000     0        0 1001 2 0000000000000000 20 4 30 10 -1
   2: 0000000000000000FFFF00000100A8C0:0016 0000000000000000FFFF00000700000A:D432 01 00000000:00000000 02:0009C3D5 00000000     0        0 1002 2 0000000000000000 20 4 30 10 -1
   3: B80D0120000000000000000001000000:0016 B80D0120000000000000000009000000:D433 0A 00000000:00000000 00:00000000 00000000     0        0 1003 1 0000000000000000 100 0 0 10 0
";

    #[cfg(target_endian = "little")]
    #[test]
    fn proc_net_tcp6_yields_v6_peers_and_mapped_ones_as_ipv4() {
        assert_eq!(
            parse_proc_net_tcp(PROC_TCP6, true, &[22]),
            vec![ip("2001:db8::5"), ip("10.0.0.7")]
        );
        assert!(parse_proc_net_tcp(PROC_TCP6, false, &[22]).is_empty());
    }

    #[test]
    fn live_peers_sees_a_real_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _server = listener.accept().unwrap();
        assert_eq!(live_peers(&[port]).unwrap(), vec![ip("127.0.0.1")]);
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
