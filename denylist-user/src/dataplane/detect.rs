//! The rate detector's user side (docs/autoblock.md). The XDP program
//! counts each source in this CPU's count-min sketch for the current
//! epoch, and reports a source when its estimate crosses a level. Once an
//! epoch, the daemon zeroes the half of the other parity, advances the
//! epoch, and sums each reported source's cells of the epoch that ended
//! over every CPU: a source that RSS spreads over CPUs is judged whole.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsFd,
    sync::atomic::{AtomicU32, Ordering},
};

use aya::{
    Ebpf,
    maps::{Map, MapData, PerCpuArray, RingBuf},
};
use denylist_common::{
    Cell, DetectEvent, DetectStats, MAP_DETECT, MAP_DETECT_EVENTS, MAP_DETECT_SEEN,
    MAP_DETECT_STATS, MAP_SKETCH, SEEN_HALF_WORDS, SEEN_WORDS, SKETCH_CELLS, SKETCH_ROWS,
    SKETCH_WIDTH, sketch_cell, source_key_v4, source_key_v6,
};
use ipnet::{IpNet, Ipv6Net};

use super::{DataplaneError, region::Region};
use crate::model::Target;

/// Words of [`denylist_common::DetectConfig`], in its field order.
const EPOCH: usize = 0;
const BLOCK: usize = 1;
const WATCH: usize = 2;
const WATCH_EVENTS: usize = 3;
const EVENTS: usize = 4;
const BLOCK_BYTES: usize = 5;
const CONFIG_WORDS: usize = 6;
/// `top` sees sources from this fraction of the threshold.
const WATCH_DIVISOR: u64 = 8;

/// What the detector looks for, per epoch, over every CPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DetectLevels {
    /// Packets in an epoch that make a source an offender; 0 turns the
    /// detector off.
    pub packets: u64,
    /// Bytes in an epoch, 0 for none.
    pub bytes: u64,
    /// Events the kernel may send in an epoch, over every CPU, at each of
    /// the two kinds of level.
    pub events: u32,
}

/// A reported source's count in the epoch that ended, over every CPU: an
/// estimate that can only be high, by what other sources sharing its
/// cells sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measured {
    /// The address, or the /64 of an IPv6 source.
    pub source: Target,
    pub packets: u64,
    pub bytes: u64,
}

/// What one epoch's tick found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Epoch {
    /// The epoch that ended.
    pub number: u32,
    pub sources: Vec<Measured>,
    /// Events the kernel could not send, since the detector was loaded.
    pub events_dropped: u64,
}

/// The detector's maps in one generation of the program.
pub struct Detector {
    config: Region<AtomicU32>,
    /// Each [`Cell`] as two words: packets, bytes.
    sketch: Region<AtomicU32>,
    /// The reported-sets, as 32-bit words: the program's 64-bit words in
    /// halves, which zero the same.
    seen: Region<AtomicU32>,
    ring: RingBuf<MapData>,
    stats: PerCpuArray<MapData, DetectStats>,
    cpus: u32,
    /// Events of the current epoch read before its tick.
    early: Vec<DetectEvent>,
}

const WORDS_PER_CELL: usize = size_of::<Cell>() / size_of::<u32>();

impl Detector {
    /// Maps the detector's maps of a loaded program with `cpus` possible
    /// CPUs. The ring buffer and the statistics are opened by id, so the
    /// object keeps its own handles for pinning.
    pub(super) fn open(ebpf: &Ebpf, cpus: u32) -> Result<Self, DataplaneError> {
        let array = |name: &'static str| match ebpf.map(name) {
            Some(Map::Array(d)) => Ok(d),
            _ => Err(DataplaneError::MissingMap { name }),
        };
        let mmap = |name: &'static str, words: usize| {
            Region::mmap(array(name)?.fd().as_fd(), words)
                .map_err(|source| DataplaneError::Mmap { name, source })
        };
        let config = mmap(MAP_DETECT, CONFIG_WORDS)?;
        let sketch = mmap(
            MAP_SKETCH,
            cpus as usize * SKETCH_CELLS as usize * WORDS_PER_CELL,
        )?;
        let seen = mmap(MAP_DETECT_SEEN, 2 * SEEN_WORDS as usize)?;
        // A second handle on the same map, from a duplicate of the object's
        // descriptor: opening it by id would need CAP_SYS_ADMIN, which the
        // daemon's unit does not grant.
        let reopen = |name: &'static str| -> Result<Map, DataplaneError> {
            let map = ebpf.map(name).ok_or(DataplaneError::MissingMap { name })?;
            let data = match map {
                Map::RingBuf(d) | Map::PerCpuArray(d) => d,
                _ => return Err(DataplaneError::MissingMap { name }),
            };
            let fd = data
                .fd()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|source| DataplaneError::Dup { name, source })?;
            let data =
                MapData::from_fd(fd).map_err(|source| DataplaneError::Map { name, source })?;
            Ok(match map {
                Map::RingBuf(_) => Map::RingBuf(data),
                _ => Map::PerCpuArray(data),
            })
        };
        let ring = RingBuf::try_from(reopen(MAP_DETECT_EVENTS)?).map_err(|source| {
            DataplaneError::Map {
                name: MAP_DETECT_EVENTS,
                source,
            }
        })?;
        let stats = PerCpuArray::try_from(reopen(MAP_DETECT_STATS)?).map_err(|source| {
            DataplaneError::Map {
                name: MAP_DETECT_STATS,
                source,
            }
        })?;
        Ok(Self {
            config,
            sketch,
            seen,
            ring,
            stats,
            cpus,
            early: Vec::new(),
        })
    }

    /// Sets the levels, split over the CPUs, since RSS may spread one
    /// source over all of them: a CPU reports a source at its share, and
    /// the daemon judges the sum.
    pub fn set(&self, levels: DetectLevels) {
        let cpus = u64::from(self.cpus);
        let per_cpu = |n: u64| u32::try_from(n.div_ceil(cpus)).unwrap_or(u32::MAX);
        let packets = per_cpu(levels.packets);
        let c = &self.config;
        c[BLOCK_BYTES].store(per_cpu(levels.bytes), Ordering::Relaxed);
        c[EVENTS].store(per_cpu(u64::from(levels.events)), Ordering::Relaxed);
        c[WATCH_EVENTS].store(per_cpu(u64::from(levels.events)), Ordering::Relaxed);
        // Below the blocking level, so that it is crossed first.
        let watch = per_cpu(levels.packets / WATCH_DIVISOR).clamp(1, packets.max(1));
        c[WATCH].store(if watch < packets { watch } else { 0 }, Ordering::Relaxed);
        // Last: a zero level keeps the program from counting at all.
        c[BLOCK].store(packets, Ordering::Release);
    }

    pub fn epoch(&self) -> u32 {
        self.config[EPOCH].load(Ordering::Relaxed)
    }

    /// Ends the current epoch: zeroes the other half (the sketches and the
    /// reported-sets), moves the program to it, and measures every source
    /// reported in the epoch that ended.
    pub fn tick(&mut self) -> Result<Epoch, DataplaneError> {
        let ended = self.epoch();
        let next = ended.wrapping_add(1);
        // Epoch `ended − 1`'s half, read at the last tick. The program
        // writes only the other one until the store below.
        for cpu in 0..self.cpus {
            let start = (cpu * SKETCH_CELLS + (next & 1) * SKETCH_ROWS * SKETCH_WIDTH) as usize
                * WORDS_PER_CELL;
            let len = (SKETCH_ROWS * SKETCH_WIDTH) as usize * WORDS_PER_CELL;
            for w in &self.sketch[start..start + len] {
                w.store(0, Ordering::Relaxed);
            }
        }
        // So are its reported-sets, both levels.
        let start = 2 * ((next & 1) * SEEN_HALF_WORDS) as usize;
        for w in &self.seen[start..start + 2 * SEEN_HALF_WORDS as usize] {
            w.store(0, Ordering::Relaxed);
        }
        self.config[EPOCH].store(next, Ordering::Release);
        let mut reported: Vec<u64> = Vec::new();
        for e in std::mem::take(&mut self.early) {
            if e.epoch == ended {
                reported.push(e.key);
            }
        }
        while let Some(item) = self.ring.next() {
            if item.len() < size_of::<DetectEvent>() {
                continue;
            }
            // SAFETY: DetectEvent is plain integers (denylist-common), and
            // the item holds at least its size; read unaligned.
            let e = unsafe { item.as_ptr().cast::<DetectEvent>().read_unaligned() };
            if e.epoch == ended {
                reported.push(e.key);
            } else if e.epoch == next {
                self.early.push(e);
            }
        }
        reported.sort_unstable();
        reported.dedup();
        let half = ended & 1;
        let sources = reported
            .into_iter()
            .filter_map(|key| {
                let (packets, bytes) = self.estimate(half, key);
                Some(Measured {
                    source: target_of(key)?,
                    packets,
                    bytes,
                })
            })
            .collect();
        Ok(Epoch {
            number: ended,
            sources,
            events_dropped: self.events_dropped()?,
        })
    }

    /// A source's count in one half: for each row the sum of its cell over
    /// every CPU, and the least of the rows.
    fn estimate(&self, half: u32, key: u64) -> (u64, u64) {
        let (mut packets, mut bytes) = (u64::MAX, u64::MAX);
        for row in 0..SKETCH_ROWS {
            let (mut p, mut b) = (0u64, 0u64);
            for cpu in 0..self.cpus {
                let i = sketch_cell(cpu, half, row, key) as usize * WORDS_PER_CELL;
                p += u64::from(self.sketch[i].load(Ordering::Relaxed));
                b += u64::from(self.sketch[i + 1].load(Ordering::Relaxed));
            }
            packets = packets.min(p);
            bytes = bytes.min(b);
        }
        (packets, bytes)
    }

    /// Events the kernel dropped, over every CPU.
    pub fn events_dropped(&self) -> Result<u64, DataplaneError> {
        let per_cpu = self
            .stats
            .get(&0, 0)
            .map_err(|source| DataplaneError::Map {
                name: MAP_DETECT_STATS,
                source,
            })?;
        Ok(per_cpu.iter().map(|s| s.dropped).sum())
    }
}

/// The source a detector key stands for: an IPv4 address or an IPv6 /64.
pub fn target_of(key: u64) -> Option<Target> {
    if key >> 32 == 0xffff_ffff {
        return Some(Target::host(IpAddr::V4(Ipv4Addr::from(key as u32))));
    }
    let addr = Ipv6Addr::from(u128::from(key) << 64);
    Ipv6Net::new(addr, 64)
        .ok()
        .map(|n| Target::from(IpNet::V6(n)))
}

/// The detector key of a source address.
pub fn key_of(ip: IpAddr) -> u64 {
    match crate::model::normal_ip(ip) {
        IpAddr::V4(a) => source_key_v4(a.octets()),
        IpAddr::V6(a) => source_key_v6(&a.octets()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_the_address_or_the_slash_64() {
        let v4: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(target_of(key_of(v4)), Some(Target::host(v4)));
        let v6: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        assert_eq!(
            target_of(key_of(v6)).unwrap().to_string(),
            "2001:db8:1:2::/64"
        );
        let mapped: IpAddr = "::ffff:198.51.100.7".parse().unwrap();
        assert_eq!(key_of(mapped), key_of(v4));
    }
}
