//! How values read on a page: times, durations, sizes. Pages show times in
//! UTC, as the CLI and the audit log do.

use std::time::Duration;

use crate::model::{Millis, rfc3339};

/// `2026-12-05 16:00:00Z`, to the second.
pub fn time(ms: Millis) -> String {
    let s = rfc3339(ms);
    // rfc3339 gives `2026-12-05T16:00:00.000Z`; the milliseconds are noise
    // on a page.
    let s = s.replacen('T', " ", 1);
    match s.split_once('.') {
        Some((head, _)) => format!("{head}Z"),
        None => s,
    }
}

pub fn opt_time(ms: Option<Millis>) -> String {
    ms.map(time).unwrap_or_else(|| "never".to_string())
}

/// `1h 30m`; whole seconds.
pub fn duration(secs: u64) -> String {
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

/// `1.5 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_plainly() {
        assert_eq!(time(0), "1970-01-01 00:00:00Z");
        assert_eq!(time(1_500), "1970-01-01 00:00:01Z");
        assert_eq!(opt_time(None), "never");
        assert_eq!(duration(5400), "1h 30m");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
    }
}
