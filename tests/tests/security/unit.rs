//! The systemd unit: what it grants and bounds, and running the daemon as
//! it does.

use std::{fs, path::Path};

use denylist_tests::daemon::Home;

/// The values of one `Key=` line of the systemd unit.
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    let lines: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .collect();
    assert_eq!(lines.len(), 1, "one {key}= line in the unit");
    lines[0].split_whitespace().map(String::from).collect()
}

pub(crate) fn unit_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/denylistd.service");
    fs::read_to_string(path).expect("packaging/denylistd.service")
}

/// CAP_* names as capability bits.
pub(crate) fn cap_bit(name: &str) -> u32 {
    match name {
        "CAP_NET_ADMIN" => 12,
        "CAP_SYS_ADMIN" => 21,
        "CAP_PERFMON" => 38,
        "CAP_BPF" => 39,
        other => panic!("{other}: add its bit here"),
    }
}

/// A hex capability set from /proc/PID/status.
pub(crate) fn proc_caps(pid: u32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let v = status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap();
    u64::from_str_radix(v.trim(), 16).unwrap()
}

/// How the unit runs the daemon, as close as a test can come without
/// systemd: exactly its capability bounding set, no new privileges, its
/// umask, and a private mount namespace (slave, like ProtectSystem=) in
/// which the whole file system is read-only but for the home directory.
pub(crate) fn as_the_unit(home: &Home, caps: &[String]) -> Vec<String> {
    let bounding = std::iter::once("-all".to_string())
        .chain(
            caps.iter()
                .map(|c| format!("+{}", c.strip_prefix("CAP_").unwrap().to_ascii_lowercase())),
        )
        .collect::<Vec<_>>()
        .join(",");
    [
        "unshare",
        "--mount",
        "--propagation",
        "slave",
        "--",
        "sh",
        "-c",
        "mount --bind \"$1\" \"$1\" && mount -o remount,bind,ro / && umask 077 && shift && exec \"$@\"",
        "sh",
        home.dir.path().to_str().unwrap(),
        "setpriv",
        "--no-new-privs",
        &format!("--bounding-set={bounding}"),
        "--inh-caps=-all",
        "--",
    ]
    .map(String::from)
    .to_vec()
}

/// The unit's capabilities, checked against what it documents.
pub(crate) fn unit_caps() -> Vec<String> {
    let unit = unit_text();
    let mut caps = unit_values(&unit, "CapabilityBoundingSet");
    caps.sort();
    let mut ambient = unit_values(&unit, "AmbientCapabilities");
    ambient.sort();
    assert_eq!(caps, ambient, "the unit grants what it bounds");
    assert_eq!(caps, ["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"]);
    caps
}
