//! The one raw bpf() syscall, for the commands aya 0.14 lacks: batched map
//! operations (batch.rs) and pinning a link by id (pins.rs) here, and in the
//! test harness BPF_PROG_TEST_RUN on any program fd and the tcx programs
//! that push VLAN tags.

use std::io;

/// A member of `union bpf_attr` (include/uapi/linux/bpf.h).
///
/// # Safety
/// The implementing type is `#[repr(C)]` with the kernel's layout for the
/// commands it is passed with, has no implicit padding (the kernel wants
/// every byte past a command's fields zero), and every pointer it holds
/// refers to memory that stays valid while the call runs.
pub unsafe trait BpfAttr {}

/// `bpf(cmd, attr, sizeof attr)`: the kernel's return value, or errno.
pub fn bpf<A: BpfAttr>(cmd: libc::c_long, attr: &mut A) -> io::Result<libc::c_long> {
    // SAFETY: `A: BpfAttr` promises a valid bpf_attr member of exactly this
    // size, whose pointers outlive the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut A, size_of::<A>()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}
