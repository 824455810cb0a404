//! Shared pieces of the tests that need root and a kernel: frames, the
//! network-namespace sandbox, and running the real program.

pub mod daemon;
pub mod frame;
pub mod netns;

use aya::programs::{TestRun, TestRunOptions};
use denylist::{dataplane::Dataplane, layout::Layout};

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
