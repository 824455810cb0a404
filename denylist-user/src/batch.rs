//! BPF_MAP_UPDATE_BATCH and BPF_MAP_DELETE_BATCH (Linux 5.6), which aya
//! 0.14 lacks: one bpf() call writes thousands of hash elements, so a 1M
//! entry deploy spends its time in the kernel's hash code, not in syscalls.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd},
};

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

fn call(cmd: libc::c_long, attr: &mut BatchAttr) -> io::Result<()> {
    // SAFETY: attr is a valid, fully initialised bpf_attr prefix whose
    // pointers refer to live slices for the duration of the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut BatchAttr,
            std::mem::size_of::<BatchAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Inserts or replaces `keys[i] → values[i]` (BPF_ANY), in chunks.
pub fn update<K: Copy, V: Copy>(map: BorrowedFd<'_>, keys: &[K], values: &[V]) -> io::Result<()> {
    assert_eq!(keys.len(), values.len(), "one value per key");
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
