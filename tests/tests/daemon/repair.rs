//! Damage behind the daemon's back: drift in the maps, a corrupt store,
//! deleted pins.

use std::{collections::BTreeSet, thread, time::Duration};

use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use denylist::{cli::Client, model::Target, wire::VerifyResponse};
use denylist_common::{ExactValue, MAP_EXACT_V4};
use denylist_tests::{
    daemon::{Daemon, generation, kernel_exact_v4},
    netns::assert_no_gap,
};

use crate::common::{A, COUNT, FREE, add, ip, sandbox, status};

#[test]
fn verify_finds_and_repairs_drift() {
    let sb = sandbox("ver");
    let _d = sb.start(&[]);
    let c = sb.client();
    add(&c, &[A], true);
    assert_eq!(sb.replies(A), 0);
    // Behind the daemon's back: delete A from the pinned map.
    let pinned = generation(&sb.home).join(MAP_EXACT_V4);
    let mut map = Map::HashMap(MapData::from_pin(pinned).unwrap());
    let mut h: BpfHashMap<_, [u8; 4], ExactValue> = BpfHashMap::try_from(&mut map).unwrap();
    h.remove(&[198, 51, 100, 7]).unwrap();
    assert_eq!(sb.replies(A), COUNT, "the drift really lets A through");

    let v: VerifyResponse = c.post("/v1/verify", &serde_json::json!({})).unwrap();
    assert_eq!((v.drift, v.repaired), (vec![Target::parse(A).unwrap()], 1));
    assert_eq!(sb.replies(A), 0, "repaired");
    assert_eq!(status(&c).drift, 0);
    let audit: Vec<serde_json::Value> = c.get("/v1/audit?since=0").unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e["kind"] == "verify repair" && e["target"] == A)
    );
}

#[test]
fn a_corrupt_store_stops_the_daemon_but_not_the_filter() {
    let sb = sandbox("corr");
    let d = sb.start(&[]);
    add(&sb.client(), &[A], true);
    assert!(d.stop().success());
    let db = sb.home.state().join("denylist.db");
    let len = std::fs::metadata(&db).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let before = std::fs::read(&db).unwrap();
    let d = Daemon::spawn(
        &sb.home,
        Some(&sb.pair.receiver),
        &["--iface", &sb.pair.receiver_xdp_if],
    );
    let log = d.log.clone();
    let status = d
        .wait_exit(Duration::from_secs(20))
        .expect("denylistd must refuse to start");
    assert_eq!(status.code(), Some(1));
    let text = std::fs::read_to_string(log).unwrap();
    assert!(text.contains("integrity check"), "a clear error: {text}");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "the store is untouched"
    );
    assert_eq!(sb.replies(A), 0, "filtering goes on with the pinned maps");
    assert_eq!(sb.replies(FREE), COUNT);
}

#[test]
fn deleted_pins_are_restored_and_a_restart_afterwards_has_no_gap() {
    let sb = sandbox("pins");
    let d = sb.start(&[]);
    let c = sb.client();
    add(&c, &[A], true);
    let denied = sb.pair.flood(ip(A), "0.005").unwrap();
    let allowed = sb.pair.flood(ip(FREE), "0.02").unwrap();
    thread::sleep(Duration::from_millis(200));
    // Behind the daemon's back: every pin goes, the links' and the maps'.
    std::fs::remove_dir_all(&sb.home.bpffs).unwrap();
    let link = sb
        .home
        .bpffs
        .join(format!("link-{}", sb.pair.receiver_xdp_if));
    let restored = |c: &Client| {
        let audit: Vec<serde_json::Value> = c.get("/v1/audit?since=0").unwrap();
        audit
            .iter()
            .any(|e| e["kind"] == "pins restored" && e["user"] == "denylistd")
    };
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < until && !restored(&c) {
        thread::sleep(Duration::from_millis(100));
    }
    assert!(restored(&c), "the daemon noticed and pinned them again");
    assert!(link.exists(), "the link is pinned again");
    assert!(
        d.log_text().contains("pins were deleted behind our back"),
        "and said so in its log"
    );
    let gen_dir = std::fs::read_dir(&sb.home.bpffs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("gen-"))
        .expect("the generation is pinned again");
    let mut maps: Vec<String> = std::fs::read_dir(&gen_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    maps.sort();
    let mut all: Vec<String> = denylist_common::ALL_MAPS
        .iter()
        .map(|m| m.to_string())
        .collect();
    all.sort();
    assert_eq!(maps, all, "every map is pinned again");
    assert_eq!(
        kernel_exact_v4(&sb.home),
        BTreeSet::from([A.to_string()]),
        "the pins are the live maps"
    );
    let st = status(&c);
    assert!(!st.degraded && st.drift == 0, "{st:?}");

    // The restored pins carry the filter across a restart and a crash.
    assert!(d.stop().success());
    let d = sb.start(&[]);
    d.kill();
    let d = sb.start(&[]);
    thread::sleep(Duration::from_millis(300));
    assert_no_gap(denied, allowed);
    assert_eq!(
        d.log_text()
            .matches("moved the pinned link to the new program")
            .count(),
        2,
        "both starts moved the restored link rather than attaching anew"
    );
    assert_eq!(kernel_exact_v4(&sb.home), BTreeSet::from([A.to_string()]));
}
