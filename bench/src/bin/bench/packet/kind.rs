//! The kinds of packet the bench sends: the probes' addresses, the
//! entries that give each its path, and the frames.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use denylist::model::List;
use denylist_tests::{
    XDP_DROP, XDP_PASS,
    frame::{ETH_P_8021Q, Spec},
};
use ipnet::IpNet;

// The probes live in the benchmarking ranges (RFC 2544 198.18.0.0/15,
// RFC 5180 2001:2::/48), which the random tables never touch, so each probe
// takes exactly the path it is named after.
pub(super) const V4_EXACT: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
/// Inside DENY_V4_DEEP: a prefix longer than /24 sits at the trie's
/// deepest IPv4 level, the most reads a prefix hit costs.
const V4_PREFIX: Ipv4Addr = Ipv4Addr::new(198, 18, 7, 20);
/// Beside DENY_V4_DEEP in the same /24: the walk goes as deep as a hit's
/// and finds nothing, the dearest miss.
const V4_MISS: Ipv4Addr = Ipv4Addr::new(198, 18, 7, 100);
/// Inside DENY_V4_ALLOWED and ALLOW_V4.
const V4_ALLOWED: Ipv4Addr = Ipv4Addr::new(198, 18, 9, 130);
pub(super) const V6_EXACT: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 1, 1);
/// Inside the /64 DENY_V6_DEEP, the longest common length: the root, the
/// nodes that the random tables' 2001::/16 allocations share, then one
/// shortcut over the rest of the /64's chain.
const V6_PREFIX: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 7, 0, 0, 0, 0x20);
/// Shares DENY_V6_DEEP's walk down to its last byte.
const V6_MISS: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 8, 0, 0, 0, 1);

fn net(s: &str) -> IpNet {
    s.parse().expect("a valid prefix")
}

/// The probes' own entries: (prefix, list).
pub(super) fn probe_entries() -> Vec<(IpNet, List)> {
    vec![
        (IpNet::from(IpAddr::from(V4_EXACT)), List::Deny),
        (net("198.18.7.16/28"), List::Deny),
        (net("198.18.9.0/24"), List::Deny),
        (net("198.18.9.128/25"), List::Allow),
        (IpNet::from(IpAddr::from(V6_EXACT)), List::Deny),
        (net("2001:2:0:7::/64"), List::Deny),
    ]
}

/// Ranges the random tables keep out of: the probes', and the frames'
/// destinations.
pub(super) fn reserved() -> [IpNet; 4] {
    [
        net("198.18.0.0/15"),
        net("192.0.2.0/24"),
        net("2001:2::/48"),
        net("2001:db8::/32"),
    ]
}

/// The kinds of packet the bench sends, each with its frame.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    V4Miss,
    V4Exact,
    V4Prefix,
    V4Allowed,
    V6Miss,
    V6Exact,
    V6Prefix,
    VlanV4,
}

pub(super) const PATHS: [Kind; 8] = [
    Kind::V4Miss,
    Kind::V4Exact,
    Kind::V4Prefix,
    Kind::V4Allowed,
    Kind::V6Miss,
    Kind::V6Exact,
    Kind::V6Prefix,
    Kind::VlanV4,
];

impl Kind {
    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::V4Miss => "IPv4 miss",
            Kind::V4Exact => "IPv4 exact hit",
            Kind::V4Prefix => "IPv4 prefix hit",
            Kind::V4Allowed => "IPv4 allowed",
            Kind::V6Miss => "IPv6 miss",
            Kind::V6Exact => "IPv6 exact hit",
            Kind::V6Prefix => "IPv6 prefix hit",
            Kind::VlanV4 => "VLAN IPv4 exact hit",
        }
    }

    pub(super) fn short(self) -> &'static str {
        match self {
            Kind::V4Miss => "v4 miss",
            Kind::V4Exact => "v4 exact",
            Kind::V4Prefix => "v4 prefix",
            Kind::V4Allowed => "v4 allowed",
            Kind::V6Miss => "v6 miss",
            Kind::V6Exact => "v6 exact",
            Kind::V6Prefix => "v6 prefix",
            Kind::VlanV4 => "VLAN v4",
        }
    }

    pub(super) fn key(self) -> &'static str {
        match self {
            Kind::V4Miss => "v4_miss",
            Kind::V4Exact => "v4_exact",
            Kind::V4Prefix => "v4_prefix",
            Kind::V4Allowed => "v4_allowed",
            Kind::V6Miss => "v6_miss",
            Kind::V6Exact => "v6_exact",
            Kind::V6Prefix => "v6_prefix",
            Kind::VlanV4 => "vlan_v4",
        }
    }

    pub(super) fn spec(self) -> Spec {
        let src = |a: Ipv4Addr| Spec::new(a.into());
        match self {
            Kind::V4Miss => src(V4_MISS),
            Kind::V4Exact => src(V4_EXACT),
            Kind::V4Prefix => src(V4_PREFIX),
            Kind::V4Allowed => src(V4_ALLOWED),
            Kind::V6Miss => Spec::new(V6_MISS.into()),
            Kind::V6Exact => Spec::new(V6_EXACT.into()),
            Kind::V6Prefix => Spec::new(V6_PREFIX.into()),
            Kind::VlanV4 => src(V4_EXACT).vlan(ETH_P_8021Q, 100),
        }
    }

    /// denylist's verdict with the large tables.
    pub(super) fn verdict(self) -> u32 {
        match self {
            Kind::V4Miss | Kind::V4Allowed | Kind::V6Miss => XDP_PASS,
            _ => XDP_DROP,
        }
    }

    /// The path of xdp-filter's this one is held against: an exact list
    /// has no prefixes and no allow entries, so those compare with its
    /// exact hit.
    pub(super) fn xdp_filter_peer(self) -> Kind {
        match self {
            Kind::V4Prefix | Kind::V4Allowed => Kind::V4Exact,
            Kind::V6Prefix => Kind::V6Exact,
            p => p,
        }
    }

    /// Paths xdp-filter can take with the same frame.
    pub(super) fn xdp_filter_has(self) -> bool {
        self.xdp_filter_peer() == self
    }
}
