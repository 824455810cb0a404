//! Shared pieces of the tests that need root and a kernel: frames, the
//! network-namespace sandbox, and running the real program.

pub mod daemon;
pub mod frame;
pub mod netns;
pub mod postgres;
pub mod web;

use aya::programs::{TestRun, TestRunOptions};
use denylist::dataplane::{
    Dataplane, Layout,
    sys::{BpfAttr, bpf},
};

pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

/// Fails loudly instead of skipping: a skipped kernel test proves nothing.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "kernel tests need root: run them through `sudo cargo xtask test`"
    );
}

/// CLOCK_TAI now, the clock the XDP program checks expiry against.
pub fn tai_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_TAI, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_TAI)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A loaded, unattached program with small maps.
pub fn dataplane() -> Dataplane {
    require_root();
    Dataplane::load(Layout::new(4096).expect("valid capacity")).expect("load the XDP program")
}

/// One BPF_PROG_TEST_RUN of `frame`; returns the XDP action.
pub fn run(dp: &mut Dataplane, frame: &[u8]) -> u32 {
    let opts = TestRunOptions {
        data_in: Some(frame),
        ..TestRunOptions::new()
    };
    dp.program()
        .test_run(opts)
        .expect("BPF_PROG_TEST_RUN")
        .return_value
}

/// BPF_PROG_TEST_RUN of `frame`, `repeat` times, on a program fd: (verdict,
/// the kernel's mean ns per repeat). A raw syscall, because aya runs only
/// its own `Xdp`: a thread testing while another changes the data plane,
/// or a program another tool loaded (xdp-filter's), has none.
pub fn test_run_fd(
    prog: std::os::fd::BorrowedFd<'_>,
    frame: &[u8],
    repeat: u32,
) -> std::io::Result<(u32, u32)> {
    use std::os::fd::AsRawFd;
    /// `union bpf_attr`'s `test` member (include/uapi/linux/bpf.h).
    #[repr(C)]
    #[derive(Default)]
    struct Attr {
        prog_fd: u32,
        retval: u32,
        data_size_in: u32,
        data_size_out: u32,
        data_in: u64,
        data_out: u64,
        repeat: u32,
        duration: u32,
        ctx_size_in: u32,
        ctx_size_out: u32,
        ctx_in: u64,
        ctx_out: u64,
        flags: u32,
        cpu: u32,
        batch_size: u32,
        pad: u32,
    }
    // SAFETY: the kernel's `test` member, 80 bytes with explicit padding;
    // its only pointer is set from `frame`, which outlives the call.
    unsafe impl BpfAttr for Attr {}
    const BPF_PROG_TEST_RUN: libc::c_long = 10;
    let mut attr = Attr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_in: frame.as_ptr() as u64,
        repeat,
        ..Attr::default()
    };
    bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    Ok((attr.retval, attr.duration))
}
