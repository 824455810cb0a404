//! BPF_MAP_LOOKUP_BATCH, BPF_MAP_UPDATE_BATCH and BPF_MAP_DELETE_BATCH
//! (Linux 5.6), which aya 0.14 lacks: one bpf() call reads or writes
//! thousands of hash elements, so a 1M entry deploy or read-back spends its
//! time in the kernel's hash code, not in syscalls.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd},
};

use super::sys::{BpfAttr, bpf};

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;
/// Elements per call: large enough to amortize the syscall, small enough
/// that the kernel's copy of keys and values stays modest.
const CHUNK: usize = 16_384;

/// `union bpf_attr`'s batch member (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

// SAFETY: BatchAttr is the `batch` member, 56 bytes with no padding; its
// pointers are set from slices that outlive each call below.
unsafe impl BpfAttr for BatchAttr {}

fn call(cmd: libc::c_long, attr: &mut BatchAttr) -> io::Result<()> {
    bpf(cmd, attr).map(drop)
}

/// Inserts or replaces `keys[i] → values[i]` (BPF_ANY), in chunks. A large
/// batch is split across the CPUs: the kernel's time is its hash inserts
/// (an allocation and a bucket lock each), which run side by side, and a
/// packet reads one key, so the order among keys is nobody's concern.
pub fn update<K: Copy + Sync, V: Copy + Sync>(
    map: BorrowedFd<'_>,
    keys: &[K],
    values: &[V],
) -> io::Result<()> {
    assert_eq!(keys.len(), values.len(), "one value per key");
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let parts = (keys.len() / (4 * CHUNK)).clamp(1, cpus);
    if parts == 1 {
        return update_chunks(map, keys, values);
    }
    let per = keys.len().div_ceil(parts);
    std::thread::scope(|scope| {
        let threads: Vec<_> = keys
            .chunks(per)
            .zip(values.chunks(per))
            .map(|(k, v)| scope.spawn(move || update_chunks(map, k, v)))
            .collect();
        threads
            .into_iter()
            .try_for_each(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    })
}

fn update_chunks<K: Copy, V: Copy>(
    map: BorrowedFd<'_>,
    keys: &[K],
    values: &[V],
) -> io::Result<()> {
    for (k, v) in keys.chunks(CHUNK).zip(values.chunks(CHUNK)) {
        let mut attr = BatchAttr {
            keys: k.as_ptr() as u64,
            values: v.as_ptr() as u64,
            count: k.len() as u32,
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        call(BPF_MAP_UPDATE_BATCH, &mut attr)?;
    }
    Ok(())
}

/// Deletes `keys`, in chunks; every key must exist.
pub fn delete<K: Copy>(map: BorrowedFd<'_>, keys: &[K]) -> io::Result<()> {
    for k in keys.chunks(CHUNK) {
        let mut attr = BatchAttr {
            keys: k.as_ptr() as u64,
            count: k.len() as u32,
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        call(BPF_MAP_DELETE_BATCH, &mut attr)?;
    }
    Ok(())
}

/// Every element of a hash map, read in chunks. Element by element (aya's
/// iterator: a get_next_key and a lookup per key) 1M entries take seconds,
/// all the while holding the daemon's lock.
pub fn lookup_all<K: Copy + Default, V: Copy + Default>(
    map: BorrowedFd<'_>,
) -> io::Result<Vec<(K, V)>> {
    let mut out = Vec::new();
    let mut keys = vec![K::default(); CHUNK];
    let mut values = vec![V::default(); CHUNK];
    // Where the next call starts: opaque to user space (a bucket index for
    // hash maps); a key-sized buffer always holds it.
    let mut at = [0u64; 4];
    let mut next = [0u64; 4];
    let mut started = false;
    loop {
        let mut attr = BatchAttr {
            in_batch: if started { at.as_ptr() as u64 } else { 0 },
            out_batch: next.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: CHUNK as u32,
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        let result = call(BPF_MAP_LOOKUP_BATCH, &mut attr);
        // The kernel writes back how many it copied, also on the last call.
        let n = (attr.count as usize).min(CHUNK);
        out.extend(keys[..n].iter().copied().zip(values[..n].iter().copied()));
        match result {
            Ok(()) => {
                at = next;
                started = true;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
            Err(e) => return Err(e),
        }
    }
}
