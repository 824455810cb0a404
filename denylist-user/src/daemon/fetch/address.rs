//! Which addresses a feed may not reach, and the resolver that keeps
//! connections away from them.
//!
//! The check runs on resolved addresses, not names: a public name can
//! point anywhere. The resolver hands the connector only the answers it
//! checked, so no second lookup can swap in another address between the
//! check and the connect.

use std::{
    error::Error,
    fmt, io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use ipnet::{Ipv4Net, Ipv6Net};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// IPv4 ranges that lead to the host itself, its networks, or nowhere
/// public.
const INTERNAL_V4: [Ipv4Net; 14] = [
    // "this network", with the unspecified address
    Ipv4Net::new_assert(Ipv4Addr::new(0, 0, 0, 0), 8),
    Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 0, 0), 8),
    // carrier-grade NAT: the provider's side of the host's network
    Ipv4Net::new_assert(Ipv4Addr::new(100, 64, 0, 0), 10),
    Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8),
    // link-local, with the cloud metadata service at 169.254.169.254
    Ipv4Net::new_assert(Ipv4Addr::new(169, 254, 0, 0), 16),
    Ipv4Net::new_assert(Ipv4Addr::new(172, 16, 0, 0), 12),
    // IETF protocol assignments
    Ipv4Net::new_assert(Ipv4Addr::new(192, 0, 0, 0), 24),
    // documentation
    Ipv4Net::new_assert(Ipv4Addr::new(192, 0, 2, 0), 24),
    Ipv4Net::new_assert(Ipv4Addr::new(192, 168, 0, 0), 16),
    // benchmarking
    Ipv4Net::new_assert(Ipv4Addr::new(198, 18, 0, 0), 15),
    // documentation
    Ipv4Net::new_assert(Ipv4Addr::new(198, 51, 100, 0), 24),
    Ipv4Net::new_assert(Ipv4Addr::new(203, 0, 113, 0), 24),
    // multicast
    Ipv4Net::new_assert(Ipv4Addr::new(224, 0, 0, 0), 4),
    // reserved, with the broadcast address
    Ipv4Net::new_assert(Ipv4Addr::new(240, 0, 0, 0), 4),
];

/// IPv6 ranges of the same kinds. ::/96 (unspecified, loopback and the
/// old IPv4-compatible form) is checked as IPv4 instead, as are the
/// IPv4-mapped addresses.
const INTERNAL_V6: [Ipv6Net; 7] = [
    // discard-only
    Ipv6Net::new_assert(Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64),
    // NAT64 for local use
    Ipv6Net::new_assert(Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48),
    // documentation
    Ipv6Net::new_assert(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32),
    // unique local, with AWS's metadata service at fd00:ec2::254
    Ipv6Net::new_assert(Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7),
    Ipv6Net::new_assert(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
    // site-local, deprecated but still routed inside some sites
    Ipv6Net::new_assert(Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10),
    // multicast
    Ipv6Net::new_assert(Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),
];

/// NAT64's well-known prefix: on a network with a NAT64 gateway these
/// addresses reach the IPv4 address in their last 32 bits.
const NAT64: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96);

/// Whether `addr` is loopback, private, link-local, multicast or another
/// address a feed has no business reaching without --feed-allow-private.
pub fn is_private(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => is_private_v4(v4),
            None => INTERNAL_V6.iter().any(|net| net.contains(&v6)),
        },
    }
}

fn is_private_v4(addr: Ipv4Addr) -> bool {
    INTERNAL_V4.iter().any(|net| net.contains(&addr))
}

/// The IPv4 address an IPv6 address stands for, where it stands for one:
/// a connection to ::ffff:127.0.0.1 reaches 127.0.0.1.
fn embedded_v4(addr: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = addr.to_ipv4() {
        return Some(v4);
    }
    NAT64.contains(&addr).then(|| {
        let [.., a, b, c, d] = addr.octets();
        Ipv4Addr::new(a, b, c, d)
    })
}

/// Resolves with the system's resolver and refuses a name if any of its
/// addresses is private: a name whose answers mix public and private
/// addresses is how DNS rebinding slips past a check of the first answer.
pub(super) struct GuardedResolver {
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host.as_str(), 0)).await {
                Ok(addrs) => addrs.collect(),
                Err(source) => {
                    let host = host.clone();
                    return Err(ResolveFailed { host, source }.into());
                }
            };
            if !allow_private
                && let Some(addr) = addrs.iter().map(SocketAddr::ip).find(|ip| is_private(*ip))
            {
                return Err(PrivateAnswer { host, addr }.into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The resolver's refusal, passed through reqwest to the fetcher, which
/// finds it in the error's chain.
#[derive(Debug)]
pub(super) struct PrivateAnswer {
    pub host: String,
    pub addr: IpAddr,
}

impl fmt::Display for PrivateAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} resolves to the private address {}",
            self.host, self.addr
        )
    }
}

impl Error for PrivateAnswer {}

/// A failed lookup, marked so that the fetcher can tell it from a failed
/// connection.
#[derive(Debug)]
pub(super) struct ResolveFailed {
    pub host: String,
    pub source: io::Error,
}

impl fmt::Display for ResolveFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "resolving {} failed", self.host)
    }
}

impl Error for ResolveFailed {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}
