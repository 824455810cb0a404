//! Ten thousand entries expiring in the kernel on time, across a restart.

use std::{
    collections::{BTreeSet, HashMap},
    net::{IpAddr, Ipv4Addr},
    thread,
    time::{Duration, Instant},
};

use denylist::{
    dataplane::tai_offset_ms,
    model::{AuditEvent, Entry, now_ms},
    wire::ImportResponse,
};
use denylist_common::word_expiry_ns;
use denylist_tests::{XDP_DROP, XDP_PASS, daemon::Daemon, frame::Spec, tai_now_ns};

use crate::common::{Live, linked_program_id, pinned_exact, sandbox, wait_for};

/// What the probes saw of one source.
#[derive(Debug, Clone, Default)]
struct Seen {
    /// CLOCK_TAI ns when the latest probe that dropped began.
    last_drop: Option<u64>,
    /// CLOCK_TAI ns when the first probe that passed ended.
    first_pass: Option<u64>,
    /// The entry's kernel word in the probed program's own map right after
    /// that first pass: still there means the kernel's expiry check passed
    /// it, not the sweep.
    word_at_first_pass: Option<u64>,
}

#[test]
fn ten_thousand_entries_expire_in_the_kernel_on_time_across_a_restart() {
    let (pair, home) = sandbox("expk");
    let iface = pair.receiver_xdp_if.clone();
    let args = [
        "--iface",
        iface.as_str(),
        "--expiry-sweep",
        "1s",
        "--capacity",
        "16384",
    ];
    let d = Daemon::start(&home, Some(&pair.receiver), &args);
    let link = home.bpffs.join(format!("link-{iface}"));
    wait_for("the attachment", Duration::from_secs(10), || link.exists());
    let n: u32 = 10_000;
    let sources: Vec<Ipv4Addr> = (0..n).map(|i| Ipv4Addr::from(0xC612_0000 + i)).collect(); // 198.18.0.0/15
    let body = serde_json::Value::Array(
        sources
            .iter()
            .enumerate()
            .map(|(i, s)| serde_json::json!({ "target": s.to_string(), "ttl": 1 + i % 10 }))
            .collect(),
    );
    let frames: Vec<Vec<u8>> = sources
        .iter()
        .map(|&s| Spec::new(IpAddr::V4(s)).build())
        .collect();
    let reply = home
        .client()
        .request(
            "POST",
            "/v1/import?format=json&force=true&deploy=true",
            Some(body.to_string().as_bytes()),
            "application/json",
        )
        .unwrap();
    let probing_from = tai_now_ns();
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let imported: ImportResponse = reply.json().unwrap();
    assert_eq!(
        imported.deployed.map(|r| r.counts.added),
        Some(u64::from(n))
    );

    // Probe the live program until every entry is 1.5 s past its expiry,
    // restarting the daemon in the middle.
    let mut seen = vec![Seen::default(); n as usize];
    let mut passes = 0;
    let restart_at = Instant::now() + Duration::from_millis(5_500);
    let end = probing_from + 11_500_000_000;
    let (down, up, _d, rebuilt) = thread::scope(|s| {
        let restarter = s.spawn(|| {
            thread::sleep(restart_at.saturating_duration_since(Instant::now()));
            let down = now_ms();
            assert!(d.stop().success());
            let d = Daemon::start(&home, Some(&pair.receiver), &args);
            let rebuilt = pinned_exact(&home);
            (down, now_ms(), d, rebuilt)
        });
        let mut live = Live::open(&link);
        let mut aborted = Vec::new();
        while tai_now_ns() < end {
            if linked_program_id(&link) != live.prog_id {
                live = Live::open(&link);
            }
            for (i, frame) in frames.iter().enumerate() {
                let s = &mut seen[i];
                if s.first_pass
                    .is_some_and(|t| t + 1_500_000_000 < tai_now_ns())
                {
                    continue;
                }
                let t0 = tai_now_ns();
                let v = live.run(frame);
                let t1 = tai_now_ns();
                match v {
                    XDP_DROP => s.last_drop = Some(s.last_drop.map_or(t0, |d| d.max(t0))),
                    XDP_PASS if s.first_pass.is_none() => {
                        s.first_pass = Some(t1);
                        s.word_at_first_pass = live.deny_word(sources[i]);
                    }
                    XDP_PASS => {}
                    other => aborted.push((sources[i], other)),
                }
            }
            passes += 1;
        }
        assert!(aborted.is_empty(), "unexpected XDP actions: {aborted:?}");
        restarter.join().unwrap()
    });

    // Each entry's expiry, from the store's deployed record of it (the
    // import's deploy) and as the kernel had it.
    let audit: Vec<AuditEvent> = home.client().get("/v1/audit?since=0").unwrap();
    let deploy_at = audit
        .iter()
        .find(|e| e.kind == "deploy")
        .expect("the import's deploy")
        .at;
    let tai = tai_offset_ms();
    let expires = |i: usize| deploy_at + (1 + i as i64 % 10) * 1000;
    let expires_tai_ns = |i: usize| ((expires(i) + tai) * 1_000_000) as u64;

    // The restart kept every expiry: the new generation holds each entry
    // the store had not swept yet, with the same expiry in its word.
    let index: HashMap<Ipv4Addr, usize> =
        sources.iter().enumerate().map(|(i, &s)| (s, i)).collect();
    for (ip, v) in &rebuilt {
        let IpAddr::V4(src) = ip else {
            panic!("{ip} was never added")
        };
        let e = expires_tai_ns(index[src]) as i64;
        assert!(
            (word_expiry_ns(v.deny) as i64 - e).abs() <= 2_000_000,
            "{src}: the restart changed its expiry"
        );
    }

    let mut late = Vec::new();
    let mut early = Vec::new();
    let mut never_dropped = Vec::new();
    let mut max_lag_ms = 0i64;
    let mut max_detect_ms = 0i64;
    let mut conclusive = [0u32; 10];
    for (i, s) in seen.iter().enumerate() {
        let e = expires_tai_ns(i);
        let src = sources[i];
        match s.first_pass {
            Some(p) if p + 2_000_000 < e => early.push((src, (e - p) / 1_000_000)),
            Some(p) => max_detect_ms = max_detect_ms.max((p as i64 - e as i64) / 1_000_000),
            None => late.push((src, "never passed".to_string())),
        }
        match s.last_drop {
            Some(t) if t > e + 1_000_000_000 => late.push((
                src,
                format!("dropped {} ms after expiry", (t - e) / 1_000_000),
            )),
            Some(t) => max_lag_ms = max_lag_ms.max((t as i64 - e as i64) / 1_000_000),
            None if e > probing_from + 100_000_000 => never_dropped.push(src),
            None => {}
        }
        if let Some(w) = s.word_at_first_pass {
            let kernel_expiry = word_expiry_ns(w) as i64;
            assert!(
                (kernel_expiry - e as i64).abs() <= 2_000_000,
                "{src}: the kernel's expiry is the store's"
            );
            conclusive[i % 10] += 1;
        }
    }
    assert!(early.is_empty(), "passed before their expiry: {early:?}");
    assert!(
        late.is_empty(),
        "still matched more than 1 s after expiry: {:?}",
        &late[..late.len().min(10)]
    );
    assert!(
        never_dropped.is_empty(),
        "never dropped while live: {:?}",
        &never_dropped[..never_dropped.len().min(10)]
    );
    // The sweep runs once a second, so most first passes come while the
    // entry is still in the kernel's map: the kernel itself let them pass.
    let groups = conclusive.iter().filter(|&&c| c > 0).count();
    assert!(
        groups >= 5,
        "the kernel's own expiry check is seen in {groups} of 10 TTL groups: {conclusive:?}"
    );

    // The sweep takes each from the store and the draft within a period of
    // its expiry, or of the restart for those that expired meanwhile.
    let swept = |audit: &[AuditEvent]| audit.iter().filter(|e| e.kind == "expiry").count();
    let mut audit = audit;
    wait_for("the sweep", Duration::from_secs(10), || {
        audit = home.client().get("/v1/audit?since=0").unwrap();
        swept(&audit) >= n as usize
    });
    let mut worst_sweep_ms = 0;
    let mut seen_swept = BTreeSet::new();
    for e in audit.iter().filter(|e| e.kind == "expiry") {
        let src: Ipv4Addr = e.target.as_deref().unwrap().parse().unwrap();
        assert!(seen_swept.insert(src), "{src} swept twice");
        let x = expires(index[&src]);
        assert!(e.at >= x, "{src} swept before its expiry");
        assert_eq!(
            rebuilt.contains_key(&IpAddr::V4(src)),
            e.at > up,
            "{src}: the restart kept exactly what had not expired by its start"
        );
        // Due while no daemon ran: the start sweeps it.
        let due = if x + 1_000 > down && x < up { up } else { x };
        let after = e.at - due;
        worst_sweep_ms = worst_sweep_ms.max(after);
        assert!(
            after <= 2_500,
            "{src}: swept {after} ms after {} (a 1 s sweep period plus slack)",
            if due == up {
                "the restart"
            } else {
                "its expiry"
            }
        );
    }
    let deployed: Vec<Entry> = home.client().get("/v1/entries").unwrap();
    let draft: Vec<Entry> = home.client().get("/v1/entries?draft=true").unwrap();
    assert!(
        deployed.is_empty() && draft.is_empty(),
        "gone from the store and the draft"
    );
    assert!(pinned_exact(&home).is_empty(), "and from the kernel maps");
    eprintln!(
        "{n} entries, {passes} probe passes: first pass at most {max_detect_ms} ms after expiry, last drop at most {max_lag_ms} ms after it; kernel-decided first passes per TTL group {conclusive:?}; swept at most {worst_sweep_ms} ms after due; restart down {down}..{up} ({} ms)",
        up - down
    );
}
