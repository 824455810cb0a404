//! Frames for BPF_PROG_TEST_RUN, and the reference parser the XDP program's
//! parsing is checked against.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88A8;
pub const ETH_P_ARP: u16 = 0x0806;

/// What to put in a frame.
#[derive(Debug, Clone)]
pub struct Spec {
    pub src: IpAddr,
    /// Outer first: (TPID, VLAN id).
    pub vlans: Vec<(u16, u16)>,
    /// IPv4 options, in 32-bit words (0–10).
    pub ipv4_option_words: u8,
    /// UDP payload bytes.
    pub payload: usize,
}

impl Spec {
    pub fn new(src: IpAddr) -> Self {
        Self {
            src,
            vlans: Vec::new(),
            ipv4_option_words: 0,
            payload: 18,
        }
    }

    pub fn vlan(mut self, tpid: u16, vid: u16) -> Self {
        self.vlans.push((tpid, vid));
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let mut f = Vec::with_capacity(64 + self.payload);
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02]);
        for &(tpid, vid) in &self.vlans {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&vid.to_be_bytes());
        }
        let udp_len = 8 + self.payload;
        match self.src {
            IpAddr::V4(src) => {
                f.extend_from_slice(&ETH_P_IP.to_be_bytes());
                let ihl = 5 + self.ipv4_option_words;
                let total = usize::from(ihl) * 4 + udp_len;
                f.push(0x40 | ihl);
                f.push(0);
                f.extend_from_slice(&(total as u16).to_be_bytes());
                f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
                f.extend_from_slice(&src.octets());
                f.extend_from_slice(&Ipv4Addr::new(192, 0, 2, 1).octets());
                // NOP options.
                f.extend(std::iter::repeat_n(
                    1u8,
                    usize::from(self.ipv4_option_words) * 4,
                ));
            }
            IpAddr::V6(src) => {
                f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
                f.extend_from_slice(&[0x60, 0, 0, 0]);
                f.extend_from_slice(&(udp_len as u16).to_be_bytes());
                f.extend_from_slice(&[17, 64]);
                f.extend_from_slice(&src.octets());
                f.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
            }
        }
        f.extend_from_slice(&[0x30, 0x39, 0x00, 0x35]);
        f.extend_from_slice(&(udp_len as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend(std::iter::repeat_n(0xabu8, self.payload));
        f
    }
}

/// Offsets where a header ends in a frame built from `spec`: truncating
/// there or anywhere before leaves the source unreadable.
pub fn header_boundaries(spec: &Spec) -> Vec<usize> {
    let mut ends = vec![12, 14];
    let mut off = 14;
    for _ in &spec.vlans {
        off += 4;
        ends.push(off);
    }
    match spec.src {
        IpAddr::V4(_) => ends.push(off + 20 + usize::from(spec.ipv4_option_words) * 4),
        IpAddr::V6(_) => ends.push(off + 40),
    }
    ends
}

/// The source address the XDP program must find, or `None` when the frame
/// is unparsable: the contract in docs/dataplane.md, written plainly.
pub fn parse_source(f: &[u8]) -> Option<IpAddr> {
    let mut proto = u16::from_be_bytes(f.get(12..14)?.try_into().ok()?);
    let mut off = 14;
    for _ in 0..2 {
        if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
            break;
        }
        proto = u16::from_be_bytes(f.get(off + 2..off + 4)?.try_into().ok()?);
        off += 4;
    }
    match proto {
        ETH_P_IP => {
            let h = f.get(off..off + 20)?;
            let ihl = usize::from(h[0] & 0x0f) * 4;
            if h[0] >> 4 != 4 || ihl < 20 || f.len() < off + ihl {
                return None;
            }
            Some(IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15])))
        }
        ETH_P_IPV6 => {
            let h = f.get(off..off + 40)?;
            if h[0] >> 4 != 6 {
                return None;
            }
            let a: [u8; 16] = h[8..24].try_into().ok()?;
            let v6 = Ipv6Addr::from(a);
            Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_frames_parse_back() {
        for src in ["198.51.100.7", "2001:db8::7"] {
            let src: IpAddr = src.parse().unwrap();
            let plain = Spec::new(src);
            assert_eq!(parse_source(&plain.build()), Some(src));
            let tagged = Spec::new(src).vlan(ETH_P_8021AD, 10).vlan(ETH_P_8021Q, 20);
            assert_eq!(parse_source(&tagged.build()), Some(src));
            for end in header_boundaries(&tagged) {
                assert_eq!(
                    parse_source(&tagged.build()[..end - 1]),
                    None,
                    "cut at {end}"
                );
            }
        }
        let three = Spec::new("198.51.100.7".parse().unwrap())
            .vlan(ETH_P_8021Q, 1)
            .vlan(ETH_P_8021Q, 2)
            .vlan(ETH_P_8021Q, 3);
        assert_eq!(
            parse_source(&three.build()),
            None,
            "a third tag is not parsed"
        );
    }
}
