//! Another tool's XDP program: left in place, and still filtering.

use std::{
    thread,
    time::{Duration, Instant},
};

use denylist_tests::{
    daemon::Home,
    netns::{Netns, Pair, PairConfig},
    require_root,
};
use serde_json::Value;

use crate::{
    common::{A, B, COUNT, FREE, cli, ip},
    spawn::Spawn,
    unit::{as_the_unit, unit_caps},
};

/// Unloads xdp-filter from an interface on drop, also when the test fails.
struct XdpFilter<'a> {
    ns: &'a Netns,
    iface: String,
}

impl Drop for XdpFilter<'_> {
    fn drop(&mut self) {
        let _ = self.ns.run(&["xdp-filter", "unload", &self.iface, "--all"]);
    }
}

fn xdp_prog_id(ns: &Netns, iface: &str) -> Option<u64> {
    let out = ns
        .run(&["ip", "-j", "-d", "link", "show", "dev", iface])
        .ok()?;
    let v: Value = serde_json::from_str(&out).ok()?;
    v[0]["xdp"]["prog"]["id"].as_u64()
}

#[test]
fn another_tools_xdp_program_is_left_in_place_and_keeps_filtering() {
    require_root();
    let caps = unit_caps();
    let pair = Pair::new("seco", PairConfig::default()).expect("veth pair");
    for s in [A, B, FREE] {
        pair.add_sender_source(ip(s)).unwrap();
    }
    let ns = &pair.receiver;
    let iface = pair.receiver_xdp_if.clone();
    ns.run(&["xdp-filter", "load", &iface, "-m", "skb"])
        .unwrap();
    let filter = XdpFilter {
        ns,
        iface: iface.clone(),
    };
    ns.run(&["xdp-filter", "ip", A, "-m", "src"]).unwrap();
    let held_by = xdp_prog_id(ns, &iface).expect("xdp-filter attached");
    assert_eq!(
        pair.ping(ip(A), COUNT, 56).unwrap(),
        0,
        "xdp-filter drops A"
    );
    assert_eq!(pair.ping(ip(B), COUNT, 56).unwrap(), COUNT);

    // The daemon as the unit runs it, looking after the same interface.
    let home = Home::new("seco");
    let mut sp = Spawn::plain(&home);
    sp.netns = Some(ns);
    sp.wrapper = as_the_unit(&home, &caps);
    let d = sp.start(&["--iface", &iface]);
    let sock = home.socket();
    let r = cli(None, None, &sock, &["add", B, "--deploy"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = cli(None, None, &sock, &["attach", &iface]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("already carries XDP program id {held_by}"))
            && r.stderr
                .contains(&format!("bpftool prog show id {held_by}"))
            && r.stderr.contains("nothing was replaced"),
        "a clear error naming the program: {}",
        r.stderr
    );
    let r = cli(None, None, &sock, &["status"]);
    assert_eq!(
        r.code, 1,
        "degraded while the interface is held: {}",
        r.stdout
    );
    // The daemon retries every second; give it a few tries.
    thread::sleep(Duration::from_secs(3));
    assert_eq!(
        xdp_prog_id(ns, &iface),
        Some(held_by),
        "nothing was replaced"
    );
    assert_eq!(
        pair.ping(ip(A), COUNT, 56).unwrap(),
        0,
        "xdp-filter still drops A"
    );
    assert_eq!(
        pair.ping(ip(B), COUNT, 56).unwrap(),
        COUNT,
        "denylist is not in the way"
    );
    assert_eq!(pair.ping(ip(FREE), COUNT, 56).unwrap(), COUNT);

    // Once the other tool lets go, the looked-after interface is attached.
    drop(filter);
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until && cli(None, None, &sock, &["status"]).code != 0 {
        thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(cli(None, None, &sock, &["status"]).code, 0, "attached");
    assert_eq!(pair.ping(ip(B), COUNT, 56).unwrap(), 0, "denylist drops B");
    assert_eq!(pair.ping(ip(A), COUNT, 56).unwrap(), COUNT);
    d.stop();
}
