//! The daemon run with exactly the unit's capabilities and hardening, the
//! CLI with none, and the kernel's loading needing all three.

use std::{fs, process::Command, thread};

use denylist_tests::{
    daemon::{Home, TempDir, bin, kernel_exact_v4},
    netns::{Pair, PairConfig},
    require_root,
};

use crate::{
    common::{A, Accounts, COUNT, FREE, cli, ip, open_home},
    spawn::Spawn,
    unit::{as_the_unit, cap_bit, proc_caps, unit_caps, unit_text},
};

#[test]
fn the_units_capabilities_and_hardening_suffice_and_the_cli_needs_none() {
    require_root();
    let unit = unit_text();
    for line in ["NoNewPrivileges=yes", "ProtectSystem=strict", "UMask=0077"] {
        assert!(unit.lines().any(|l| l == line), "the unit sets {line}");
    }
    let caps = unit_caps();
    // systemd-analyze checks the unit as it would load it; the binary it
    // names must exist, so point it at the one under test.
    let dir = TempDir::new("secunit");
    let copy = dir.path().join("denylistd.service");
    fs::write(
        &copy,
        unit.replace("/usr/bin/denylistd", bin("denylistd").to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze (apt-get install systemd)");
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "systemd-analyze verify: {said}");
    assert!(!said.contains("denylistd.service"), "no complaint: {said}");

    let mut acc = Accounts::new();
    let admin_group = acc.group("a");
    let admin = acc.user("a", &[&admin_group]);
    let pair = Pair::new("secc", PairConfig::default()).expect("veth pair");
    for s in [A, FREE] {
        pair.add_sender_source(ip(s)).unwrap();
    }
    let home = open_home("secc");
    let mut sp = Spawn::plain(&home);
    sp.netns = Some(&pair.receiver);
    sp.wrapper = as_the_unit(&home, &caps);
    let daemon_args = [
        "--iface",
        pair.receiver_xdp_if.as_str(),
        "--admin-group",
        admin_group.as_str(),
    ];
    let d = sp.start(&daemon_args);
    let want: u64 = caps.iter().map(|c| 1u64 << cap_bit(c)).sum();
    let pid = d.pid();
    assert_eq!(proc_caps(pid, "CapEff"), want, "exactly the unit's set");
    assert_eq!(proc_caps(pid, "CapBnd"), want);
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.lines().any(|l| l == "NoNewPrivs:\t1"), "{status}");
    assert_ne!(
        fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap(),
        fs::read_link("/proc/self/ns/mnt").unwrap(),
        "a mount namespace of its own"
    );
    let mounts = fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let root = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .unwrap();
    assert!(
        root.split_whitespace()
            .nth(5)
            .unwrap()
            .split(',')
            .any(|o| o == "ro"),
        "its / is read-only: {root}"
    );

    // The SSH guardrail's session watch loads and attaches with these
    // capabilities too (ProtectControlGroups leaves cgroup2 readable).
    assert!(
        d.log_text().contains("serving the API") && !d.log_text().contains("walk every socket"),
        "the session watch runs under the unit: {}",
        d.log_text()
    );

    let sock = home.socket();
    let r = cli(Some(&admin), None, &sock, &["add", A, "--deploy"]);
    assert_eq!(
        r.code, 0,
        "an admin without capabilities deploys: {}",
        r.stderr
    );
    let r = cli(Some(&admin), None, &sock, &["status"]);
    assert_eq!(r.code, 0, "attached and healthy: {}{}", r.stdout, r.stderr);
    assert_eq!(pair.ping(ip(A), COUNT, 56).unwrap(), 0, "A is dropped");
    assert_eq!(
        pair.ping(ip(FREE), COUNT, 56).unwrap(),
        COUNT,
        "others flow"
    );
    assert!(
        kernel_exact_v4(&home).contains(A),
        "the pins are on the host's bpffs"
    );

    // The pins outlive the daemon and its namespace, and the next start
    // under the same limits takes them over.
    d.stop();
    assert_eq!(pair.ping(ip(A), COUNT, 56).unwrap(), 0, "still dropped");
    let d = sp.start(&daemon_args);
    let r = cli(Some(&admin), None, &sock, &["status"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(pair.ping(ip(A), COUNT, 56).unwrap(), 0);
    assert_eq!(pair.ping(ip(FREE), COUNT, 56).unwrap(), COUNT);
    let r = cli(Some(&admin), None, &sock, &["remove", A, "--deploy"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(pair.ping(ip(A), COUNT, 56).unwrap(), COUNT, "and unblocks");
    d.stop();

    // Each of the three is needed: without it the daemon says which.
    for drop in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != drop).cloned().collect();
        let other = Home::new("seccx");
        let mut sp = Spawn::plain(&other);
        sp.wrapper = as_the_unit(&other, &fewer);
        sp.refused(&[], &format!("lacks {drop}"));
    }
}

/// Runs `f` on a thread whose effective capabilities are only `caps`.
fn with_only<R: Send + 'static>(caps: &[&str], f: impl FnOnce() -> R + Send + 'static) -> R {
    let mask: u64 = caps.iter().map(|c| 1u64 << cap_bit(c)).sum();
    thread::spawn(move || {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy, Default)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let mut header = Header {
            version: 0x2008_0522,
            pid: 0,
        };
        let mut data = [Data::default(); 2];
        // SAFETY: capget/capset v3 with a header and two data words; they
        // change only this thread's capabilities.
        unsafe {
            assert_eq!(
                libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()),
                0
            );
            data[0].effective = mask as u32 & data[0].permitted;
            data[1].effective = (mask >> 32) as u32 & data[1].permitted;
            assert_eq!(
                libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()),
                0
            );
        }
        f()
    })
    .join()
    .unwrap()
}

/// What the kernel itself asks, apart from the daemon's own check.
#[test]
fn the_kernel_loads_the_program_with_the_three_capabilities_and_not_without_one() {
    require_root();
    const THREE: [&str; 3] = ["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"];
    let load = || {
        denylist::dataplane::Dataplane::load(denylist::dataplane::Layout::new(4096).unwrap())
            .map(drop)
            .map_err(|e| e.to_string())
    };
    let loaded = with_only(&THREE, load);
    assert!(loaded.is_ok(), "no CAP_SYS_ADMIN needed: {loaded:?}");
    for missing in THREE {
        let fewer: Vec<&'static str> = THREE.into_iter().filter(|c| *c != missing).collect();
        let refused = with_only(&fewer, load);
        let e = refused.expect_err(missing);
        eprintln!(
            "without {missing}: {}",
            e.lines().next().unwrap_or_default()
        );
        if missing == "CAP_PERFMON" {
            assert!(e.contains("rejected"), "the verifier refuses: {e}");
        }
    }
}
