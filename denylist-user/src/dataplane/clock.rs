//! The kernel's clock: the XDP program checks expiry against CLOCK_TAI,
//! which leap seconds never step back.

/// CLOCK_TAI minus CLOCK_REALTIME, in milliseconds: the kernel checks
/// expiry against CLOCK_TAI, while entries carry UTC times.
pub fn tai_offset_ms() -> i64 {
    fn read(clock: libc::clockid_t) -> i128 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: ts is a valid out-pointer; both clocks exist on Linux.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
    }
    ((read(libc::CLOCK_TAI) - read(libc::CLOCK_REALTIME)) / 1_000_000) as i64
}
