//! What the section sends: sets of distinct IPv4 sources, each written as a
//! trafgen config of one frame per source in a random order, and which
//! addresses a table covers, so that a miss is a miss and a hit a hit.

use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
    fs,
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, ensure};
use denylist::model::List;
use denylist_tests::netns::Pair;
use ipnet::{IpNet, Ipv4Net};
use rand::{Rng, seq::SliceRandom};

use crate::{packet::tables::Gen, trafgen::mac};

/// UDP payload: with it a frame is 60 bytes, the least Ethernet carries.
const PAYLOAD: usize = 18;
const FRAME: usize = 14 + 20 + 8 + PAYLOAD;

/// Where every frame goes: the receiving end of a pair. The harness gives
/// every pair the same addresses, so one config serves them all.
#[derive(PartialEq, Eq, Debug)]
pub(super) struct Ends {
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    dst: Ipv4Addr,
}

fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let bytes: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("not a MAC address: {s}"))?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("not a MAC address: {s}"))
}

impl Ends {
    pub(super) fn of(pair: &Pair) -> Result<Self> {
        Ok(Self {
            dst_mac: parse_mac(&mac(&pair.receiver, &pair.receiver_if)?)?,
            src_mac: parse_mac(&mac(&pair.sender, &pair.sender_if)?)?,
            dst: pair.receiver_v4,
        })
    }

    /// A UDP frame from `src` to the receiver's port 9, with a valid IPv4
    /// checksum: what the filters pass reaches the stack as a real frame
    /// would, and ends in an ICMP port unreachable (rate-limited).
    fn frame(&self, src: Ipv4Addr) -> [u8; FRAME] {
        let mut f = [0u8; FRAME];
        f[..6].copy_from_slice(&self.dst_mac);
        f[6..12].copy_from_slice(&self.src_mac);
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((FRAME - 14) as u16).to_be_bytes());
        ip[6] = 0x40; // don't fragment
        ip[8] = 64; // TTL
        ip[9] = 17; // UDP
        ip[12..16].copy_from_slice(&src.octets());
        ip[16..20].copy_from_slice(&self.dst.octets());
        let sum: u32 = ip
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        let folded = (sum & 0xffff) + (sum >> 16);
        let csum = !(((folded & 0xffff) + (folded >> 16)) as u16);
        ip[10..12].copy_from_slice(&csum.to_be_bytes());
        let udp = &mut f[34..42];
        udp[0..2].copy_from_slice(&4000u16.to_be_bytes());
        udp[2..4].copy_from_slice(&9u16.to_be_bytes());
        // UDP over IPv4 may leave its checksum 0: none.
        udp[4..6].copy_from_slice(&((8 + PAYLOAD) as u16).to_be_bytes());
        f
    }
}

/// Traffic from a set of distinct sources.
pub(super) struct Flow {
    pub(super) key: &'static str,
    /// Distinct sources, each in one frame of the config.
    pub(super) sources: usize,
    /// The trafgen config: one frame per source, in a random order, which
    /// trafgen sends round robin. Each source comes back only after all
    /// the others, in the same order every cycle.
    pub(super) conf: PathBuf,
    /// The first frame, which BPF_PROG_TEST_RUN repeats.
    pub(super) frame: Vec<u8>,
}

impl Flow {
    pub(super) fn write(
        dir: &Path,
        key: &'static str,
        mut sources: Vec<Ipv4Addr>,
        ends: &Ends,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let distinct: HashSet<_> = sources.iter().collect();
        ensure!(
            !sources.is_empty() && distinct.len() == sources.len(),
            "{key}: {} sources, {} distinct",
            sources.len(),
            distinct.len()
        );
        sources.shuffle(rng);
        // 32-bit words, in network byte order: trafgen parses a config of
        // 65,536 frames in about two seconds this way, and slower still as
        // single bytes.
        let mut conf = String::with_capacity(sources.len() * 200);
        for &src in &sources {
            conf.push('{');
            for (i, w) in ends.frame(src).chunks(4).enumerate() {
                let w = u32::from_be_bytes(w.try_into().expect("60 is a multiple of 4"));
                let _ = write!(conf, "{}c32({w:#010x})", if i == 0 { "" } else { "," });
            }
            conf.push_str("}\n");
        }
        let path = dir.join(format!("{key}.trafgen"));
        fs::write(&path, conf).with_context(|| format!("writing {}", path.display()))?;
        Ok(Self {
            key,
            sources: sources.len(),
            conf: path,
            frame: ends.frame(sources[0]).to_vec(),
        })
    }
}

/// A table's IPv4 entries, by prefix length: which list, if any, holds an
/// address.
pub(super) struct Cover {
    lengths: Vec<u8>,
    nets: HashMap<Ipv4Net, List>,
}

impl Cover {
    pub(super) fn new(entries: &[(IpNet, List)]) -> Self {
        let nets: HashMap<Ipv4Net, List> = entries
            .iter()
            .filter_map(|&(n, l)| match n {
                IpNet::V4(n) => Some((n, l)),
                IpNet::V6(_) => None,
            })
            .collect();
        let mut lengths: Vec<u8> = nets.keys().map(Ipv4Net::prefix_len).collect();
        lengths.sort_unstable();
        lengths.dedup();
        Self { lengths, nets }
    }

    /// The lists of the entries that cover `a`.
    fn lists(&self, a: Ipv4Addr) -> impl Iterator<Item = List> + '_ {
        self.lengths.iter().filter_map(move |&len| {
            let net = Ipv4Net::new(a, len).expect("length ≤ 32").trunc();
            self.nets.get(&net).copied()
        })
    }

    pub(super) fn covers(&self, a: Ipv4Addr) -> bool {
        self.lists(a).next().is_some()
    }

    pub(super) fn allows(&self, a: Ipv4Addr) -> bool {
        self.lists(a).any(|l| l == List::Allow)
    }
}

/// `n` random unicast addresses that none of `tables` covers: every table
/// passes them, after a lookup as cold as the traffic makes it.
pub(super) fn misses(gen_: &mut Gen, n: usize, tables: &[&Cover]) -> Vec<Ipv4Addr> {
    let mut taken = HashSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        out.extend(
            gen_.hosts_v4(n - out.len(), &mut taken)
                .into_iter()
                .filter_map(|net| match net.addr() {
                    IpAddr::V4(a) => Some(a),
                    IpAddr::V6(_) => None,
                })
                .filter(|&a| !tables.iter().any(|t| t.covers(a))),
        );
    }
    out
}
