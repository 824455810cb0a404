//! What the rate detector never lists, whatever the traffic: a spoofed
//! flood would otherwise turn it against exactly these. Beside the
//! guardrails of every manual entry (private and CGNAT space, this host's
//! addresses, live SSH peers), the documentation ranges, this host's
//! default gateways and nameservers, and the prefixes the admin protects.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::LazyLock,
};

use super::{GuardContext, check};
use crate::model::{List, Target, normal_ip};

/// RFC 5737 and RFC 3849: examples, never a real source.
static DOCUMENTATION: LazyLock<Vec<Target>> = LazyLock::new(|| {
    [
        "192.0.2.0/24",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "2001:db8::/32",
    ]
    .into_iter()
    .map(|r| Target::parse(r).expect("documentation ranges are valid"))
    .collect()
});

/// What the detector's protection reads from the host, once an epoch and
/// outside the core's lock: the guardrails' context, and this host's
/// default gateways and nameservers ([`infrastructure`]).
#[derive(Clone, Debug, Default)]
pub struct RateContext {
    pub guard: GuardContext,
    pub infrastructure: Vec<IpAddr>,
}

/// Why the detector must not list `source`, or `None` when it may.
/// `protect` is the policy's prefixes.
pub fn rate_protection(source: &Target, ctx: &RateContext, protect: &[Target]) -> Option<String> {
    if let Some(p) = protect
        .iter()
        .find(|p| p.covers(source) || source.covers(p))
    {
        return Some(format!("protected by --protect {p}"));
    }
    if let Some(d) = DOCUMENTATION.iter().find(|d| d.covers(source)) {
        return Some(format!("inside the documentation range {d}"));
    }
    if let Some(a) = ctx
        .infrastructure
        .iter()
        .find(|&&a| source.contains(normal_ip(a)))
    {
        return Some(format!(
            "{a} is a default gateway or nameserver of this host"
        ));
    }
    check(source, List::Deny, &ctx.guard)
        .first()
        .map(ToString::to_string)
}

/// This host's default gateways (from the routing table) and nameservers
/// (from /etc/resolv.conf). A file that cannot be read fails closed: the
/// caller lists nothing it cannot vouch for.
pub fn infrastructure() -> io::Result<Vec<IpAddr>> {
    let mut out = gateways_v4(&std::fs::read_to_string("/proc/net/route")?);
    // No IPv6 in the kernel leaves no such file, and no IPv6 gateway.
    match std::fs::read_to_string("/proc/net/ipv6_route") {
        Ok(t) => out.extend(gateways_v6(&t)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    match std::fs::read_to_string("/etc/resolv.conf") {
        Ok(t) => out.extend(nameservers(&t)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

// The routing table is read from procfs rather than over rtnetlink: two
// fixed-format files, where netlink would bring a crate and a socket for
// the same lines.

/// Gateways of the default routes in /proc/net/route: columns Iface,
/// Destination, Gateway, … as hex in host byte order.
fn gateways_v4(table: &str) -> Vec<IpAddr> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (dest, gw, mask) = (cols.get(1)?, cols.get(2)?, cols.get(7)?);
            if *dest != "00000000" || *mask != "00000000" {
                return None;
            }
            let gw = u32::from_str_radix(gw, 16).ok()?;
            (gw != 0).then(|| IpAddr::V4(Ipv4Addr::from(gw.to_le_bytes())))
        })
        .collect()
}

/// Next hops of the default routes in /proc/net/ipv6_route: destination,
/// its length, source, its length, next hop, … in hex.
fn gateways_v6(table: &str) -> Vec<IpAddr> {
    table
        .lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (dest, len, hop) = (cols.first()?, cols.get(1)?, cols.get(4)?);
            if dest.chars().any(|c| c != '0') || *len != "00" {
                return None;
            }
            let hop = u128::from_str_radix(hop, 16).ok()?;
            (hop != 0).then(|| IpAddr::V6(Ipv6Addr::from(hop)))
        })
        .collect()
}

/// `nameserver` lines of resolv.conf(5).
fn nameservers(conf: &str) -> Vec<IpAddr> {
    conf.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            // A scoped address (fe80::1%eth0) names its interface.
            words.next()?.split('%').next()?.parse().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_default_gateways_and_nameservers() {
        let route = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                     eth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        assert_eq!(
            gateways_v4(route),
            vec!["192.168.2.1".parse::<IpAddr>().unwrap()]
        );
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n\
                  20010db8000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0\n";
        assert_eq!(gateways_v6(v6), vec!["fe80::1".parse::<IpAddr>().unwrap()]);
        let conf =
            "# generated\nnameserver 9.9.9.9\nnameserver fe80::53%eth0\nsearch example.org\n";
        assert_eq!(
            nameservers(conf),
            vec![
                "9.9.9.9".parse::<IpAddr>().unwrap(),
                "fe80::53".parse().unwrap()
            ]
        );
    }

    #[test]
    fn protects_what_a_flood_could_turn_it_against() {
        let t = |s: &str| Target::parse(s).unwrap();
        let ctx = RateContext {
            guard: GuardContext::default(),
            infrastructure: vec!["9.9.9.9".parse().unwrap()],
        };
        let protect = [t("198.18.0.0/15")];
        let why = |s: &str| rate_protection(&t(s), &ctx, &protect);
        assert!(why("198.19.1.1").unwrap().contains("--protect"));
        assert!(why("192.0.2.7").unwrap().contains("documentation"));
        assert!(why("2001:db8:1:2::/64").unwrap().contains("documentation"));
        assert!(why("9.9.9.9").unwrap().contains("nameserver"));
        assert!(why("10.1.2.3").unwrap().contains("private"));
        assert!(why("100.64.0.9").unwrap().contains("carrier-grade"));
        assert_eq!(why("8.8.4.4"), None);
    }
}
