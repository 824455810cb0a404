//! systemd's view (`Type=notify`): READY=1 only once the filter is on the
//! configured interface, a STATUS= line per change, STOPPING=1 on SIGTERM,
//! and WATCHDOG=1 pings when systemd asks for them.

use std::{os::unix::net::UnixDatagram, path::PathBuf, time::Duration};

use denylist_tests::daemon::Daemon;

use crate::common::{A, Sandbox, add, sandbox};

/// The next datagram on the notify socket, as text.
fn next(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .expect("a notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).trim_end().to_string()
}

/// The socket systemd would listen on, in the sandbox's home.
fn notify_socket(sb: &Sandbox) -> (PathBuf, UnixDatagram) {
    let path = sb.home.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    (path, sock)
}

#[test]
fn ready_comes_once_the_filter_is_attached_then_a_status_per_change_and_stopping() {
    let sb = sandbox("ntf");
    let ns = &sb.pair.receiver;
    let iface = sb.pair.receiver_xdp_if.clone();
    let (path, sock) = notify_socket(&sb);
    let d = Daemon::spawn_with_env(
        &sb.home,
        Some(ns),
        &["--iface", &iface],
        &[("NOTIFY_SOCKET", path.as_os_str())],
    );

    let ready = next(&sock);
    // Checked the moment READY=1 arrives: the daemon attaches before it says so.
    let xdp = ns
        .run(&["ip", "-j", "-d", "link", "show", "dev", &iface])
        .unwrap();
    let lines: Vec<&str> = ready.lines().collect();
    assert!(lines.contains(&"READY=1"), "{ready}");
    assert!(
        lines.contains(&"STATUS=revision 0, 0 entries, 1 of 1 interfaces attached"),
        "{ready}"
    );
    let v: serde_json::Value = serde_json::from_str(&xdp).unwrap();
    assert_eq!(v[0]["xdp"]["prog"]["name"], "denylist", "attached at READY");
    assert!(sb.home.bpffs.join(format!("link-{iface}")).exists());

    add(&sb.client(), &[A], true);
    assert_eq!(
        next(&sock),
        "STATUS=revision 1, 1 entries, 1 of 1 interfaces attached",
        "a status line after the change"
    );
    assert!(d.stop().success());
    assert_eq!(next(&sock), "STOPPING=1");
}

#[test]
fn watchdog_pings_come_at_half_the_units_interval() {
    let sb = sandbox("wdg");
    let (path, sock) = notify_socket(&sb);
    // WatchdogSec=400ms, as systemd passes it.
    let d = Daemon::spawn_with_env(
        &sb.home,
        Some(&sb.pair.receiver),
        &[],
        &[
            ("NOTIFY_SOCKET", path.as_os_str()),
            ("WATCHDOG_USEC", "400000".as_ref()),
        ],
    );
    assert!(next(&sock).contains("READY=1"));
    let start = std::time::Instant::now();
    for _ in 0..5 {
        assert_eq!(next(&sock), "WATCHDOG=1");
    }
    // Five pings, one every 200 ms after READY=1.
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(d.stop().success());
}
