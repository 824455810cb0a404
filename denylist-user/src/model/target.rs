//! TARGET: an IPv4/IPv6 address or CIDR prefix, in one normal form.
//!
//! `x/32` and `x/128` are the same entry as `x`; IPv4-mapped IPv6 is IPv4;
//! a prefix never has host bits set. Display follows the same rules, and
//! IPv6 is shown in RFC 5952 form (what `std` prints).

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use ipnet::{IpNet, Ipv4Net};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("invalid target {input:?}: {reason}")]
    Invalid { input: String, reason: &'static str },
    #[error(
        "{input} has host bits set, so it would block {count} addresses: did you mean {address} or {network}? (--force normalizes it to {network})"
    )]
    HostBits {
        input: String,
        address: IpAddr,
        network: IpNet,
        count: u128,
    },
}

/// An address or prefix in normal form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
// In JSON a target is its text (the serde impls below).
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(value_type = String, example = "203.0.113.0/24")
)]
pub struct Target(IpNet);

impl Target {
    /// The single address `ip`.
    pub fn host(ip: IpAddr) -> Self {
        Self::normal(IpNet::from(ip))
    }

    /// Parses, refusing a prefix with host bits set.
    pub fn parse(input: &str) -> Result<Self, TargetError> {
        let (given, net) = parse_net(input)?;
        if net.network() != given {
            return Err(TargetError::HostBits {
                input: input.trim().to_string(),
                address: given,
                network: net,
                count: address_count(&net),
            });
        }
        Ok(net.into())
    }

    /// Parses, clearing host bits: what `--force` accepts.
    pub fn parse_forced(input: &str) -> Result<Self, TargetError> {
        parse_net(input).map(|(_, net)| net.into())
    }

    pub fn net(&self) -> IpNet {
        self.0
    }

    pub fn is_ipv4(&self) -> bool {
        matches!(self.0, IpNet::V4(_))
    }

    /// The address width of the family: 32 or 128.
    pub fn width(&self) -> u8 {
        self.0.max_prefix_len()
    }

    pub fn prefix_len(&self) -> u8 {
        self.0.prefix_len()
    }

    /// A single address (/32 or /128), kept in the exact-match maps.
    pub fn is_exact(&self) -> bool {
        self.0.prefix_len() == self.0.max_prefix_len()
    }

    pub fn addr(&self) -> IpAddr {
        self.0.network()
    }

    /// The first and the last address the target covers.
    pub fn range(&self) -> (IpAddr, IpAddr) {
        (self.0.network(), self.0.broadcast())
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&normal_ip(ip))
    }

    /// Does this target cover `other` (equal counts as covering)?
    pub fn covers(&self, other: &Target) -> bool {
        self.0.contains(&other.0)
    }

    /// How many addresses the target covers (saturating at u128::MAX for ::/0).
    pub fn address_count(&self) -> u128 {
        address_count(&self.0)
    }

    /// The network address as a number, left-aligned in the family's width.
    pub fn bits(&self) -> u128 {
        ip_bits(self.0.network())
    }

    fn normal(net: IpNet) -> Self {
        let net = match net {
            IpNet::V6(n) if n.prefix_len() >= 96 => match n.network().to_ipv4_mapped() {
                Some(v4) => {
                    IpNet::V4(Ipv4Net::new(v4, n.prefix_len() - 96).expect("length is at most 32"))
                }
                None => net,
            },
            _ => net,
        };
        Target(net.trunc())
    }
}

impl From<IpNet> for Target {
    fn from(net: IpNet) -> Self {
        Self::normal(net)
    }
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_exact() {
            write!(f, "{}", self.0.addr())
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl serde::Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// JSON targets follow the CLI's rules: a prefix with host bits set is
/// refused (the API's `force` normalizes before this point).
impl<'de> serde::Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Target::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// IPv4-mapped IPv6 addresses are IPv4.
pub fn normal_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// An address as a number (IPv4 in the low 32 bits).
pub fn ip_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a).into(),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The address of the family `ipv4` whose number is `bits`.
pub fn ip_from_bits(ipv4: bool, bits: u128) -> IpAddr {
    if ipv4 {
        IpAddr::V4(Ipv4Addr::from(bits as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(bits))
    }
}

fn address_count(net: &IpNet) -> u128 {
    let host_bits = u32::from(net.max_prefix_len() - net.prefix_len());
    1u128.checked_shl(host_bits).unwrap_or(u128::MAX)
}

fn invalid(input: &str, reason: &'static str) -> TargetError {
    TargetError::Invalid {
        input: input.to_string(),
        reason,
    }
}

/// The address as given, and the prefix it names with host bits cleared.
fn parse_net(input: &str) -> Result<(IpAddr, IpNet), TargetError> {
    let s = input.trim();
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let ip = parse_addr(s, addr)?;
    let max = match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    let len = match len {
        None => max,
        Some(l) => {
            if l.is_empty() || !l.bytes().all(|b| b.is_ascii_digit()) || l.len() > 3 {
                return Err(invalid(s, "the prefix length is not a number"));
            }
            if l.len() > 1 && l.starts_with('0') {
                return Err(invalid(
                    s,
                    "the prefix length has a leading zero: write /24, not /024",
                ));
            }
            let n: u8 = l
                .parse()
                .map_err(|_| invalid(s, "the prefix length is out of range"))?;
            if n > max {
                return Err(invalid(
                    s,
                    if max == 32 {
                        "the prefix length is out of range (IPv4: /0 to /32)"
                    } else {
                        "the prefix length is out of range (IPv6: /0 to /128)"
                    },
                ));
            }
            n
        }
    };
    let net = IpNet::new(ip, len).expect("length checked against the family");
    let target = Target::normal(net);
    let given = match (ip, target.0) {
        (IpAddr::V6(v6), IpNet::V4(_)) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        _ => ip,
    };
    Ok((given, target.0))
}

fn parse_addr(whole: &str, addr: &str) -> Result<IpAddr, TargetError> {
    if addr.is_empty() {
        return Err(invalid(whole, "it is empty"));
    }
    if addr.contains('%') {
        return Err(invalid(whole, "zone ids (%iface) are not allowed"));
    }
    if let Ok(ip) = addr.parse::<IpAddr>() {
        return Ok(ip);
    }
    if !addr.contains(':') && addr.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let octets: Vec<&str> = addr.split('.').collect();
        if octets.len() != 4 {
            return Err(invalid(
                whole,
                "short forms are not allowed: write all four octets",
            ));
        }
        if octets.iter().any(|o| o.len() > 1 && o.starts_with('0')) {
            return Err(invalid(
                whole,
                "leading zeros are ambiguous (octal?): write 1.2.3.4, not 01.2.3.4",
            ));
        }
        return Err(invalid(whole, "an octet is out of range (0 to 255)"));
    }
    Err(invalid(whole, "not an IPv4 or IPv6 address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> String {
        Target::parse(s).unwrap().to_string()
    }

    #[test]
    fn normal_forms() {
        assert_eq!(t("198.51.100.7"), "198.51.100.7");
        assert_eq!(t("198.51.100.7/32"), "198.51.100.7");
        assert_eq!(t("2001:DB8:0:0:0:0:0:1/128"), "2001:db8::1");
        assert_eq!(t("2001:db8:0:0:1:0:0:1"), "2001:db8::1:0:0:1");
        assert_eq!(t("::ffff:198.51.100.9"), "198.51.100.9");
        assert_eq!(t("::ffff:10.0.0.0/104"), "10.0.0.0/8");
        assert_eq!(t("203.0.113.0/24"), "203.0.113.0/24");
        assert_eq!(t("0.0.0.0/0"), "0.0.0.0/0");
        assert_eq!(t("::/0"), "::/0");
        assert_eq!(
            Target::parse("198.51.100.7/32").unwrap(),
            Target::parse("198.51.100.7").unwrap()
        );
    }

    #[test]
    fn host_bits_are_refused_with_both_suggestions() {
        let e = Target::parse("203.0.113.77/24").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("did you mean 203.0.113.77 or 203.0.113.0/24?"),
            "{msg}"
        );
        assert!(msg.contains("256 addresses"), "{msg}");
        assert_eq!(
            Target::parse_forced("203.0.113.77/24").unwrap().to_string(),
            "203.0.113.0/24"
        );
    }

    #[test]
    fn invalid_forms_are_rejected_with_a_reason() {
        for (input, reason) in [
            ("01.2.3.4", "leading zeros"),
            ("fe80::1%eth0", "zone ids"),
            ("1.2.3", "short forms"),
            ("256.1.1.1", "out of range"),
            ("1.2.3.4/33", "/0 to /32"),
            ("2001:db8::/129", "/0 to /128"),
            ("1.2.3.4/", "not a number"),
            ("1.2.3.4/-1", "not a number"),
            ("", "empty"),
            ("example.com", "not an IPv4 or IPv6"),
            ("1.2.3.4/024x", "not a number"),
            ("198.51.100.0/024", "leading zero"),
        ] {
            let e = Target::parse(input).unwrap_err().to_string();
            assert!(e.contains(reason), "{input}: {e}");
        }
    }

    #[test]
    fn covering_and_counting() {
        let p = Target::parse("203.0.113.0/24").unwrap();
        assert!(p.contains("203.0.113.0".parse().unwrap()));
        assert!(p.contains("203.0.113.255".parse().unwrap()));
        assert!(!p.contains("203.0.114.0".parse().unwrap()));
        assert!(p.contains("::ffff:203.0.113.9".parse().unwrap()));
        assert_eq!(p.address_count(), 256);
        assert_eq!(Target::parse("::/0").unwrap().address_count(), u128::MAX);
        assert!(p.covers(&Target::parse("203.0.113.9").unwrap()));
    }
}
