//! Sixteen admins at once, checked against a serial replay of the audit
//! log, the kernel included.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use denylist::{
    dataplane::tai_offset_ms,
    model::{self, AuditEvent, Entry, List, Millis, Target, Verdict, now_ms},
    wire::{CheckResponse, DeployResponse, StageResponse, Status, VerifyResponse},
};
use denylist_common::{FLAG_ALLOW, FLAG_MONITOR, FLAG_PRESENT, word_expiry_ns};
use denylist_tests::{
    XDP_DROP, XDP_PASS,
    daemon::{Daemon, bin},
    frame::Spec,
    tai_now_ns,
};
use rand::{SeedableRng, rngs::StdRng};

use crate::{
    common::{Live, long, pinned_exact, sandbox, target, wait_for},
    ops::{CLIENTS, Done, Op, PROBES},
    replay::{Model, Pending, sorted},
};

#[test]
fn sixteen_admins_at_once_equal_a_serial_replay_of_the_audit_log() {
    let (pair, home) = sandbox("admins");
    let iface = pair.receiver_xdp_if.clone();
    let _d = Daemon::start(&home, Some(&pair.receiver), &["--iface", &iface]);
    let link = home.bpffs.join(format!("link-{iface}"));
    wait_for("the attachment", Duration::from_secs(10), || link.exists());
    let total = if long() { 10_000 } else { 2_000 };
    let seed: u64 = rand::random();
    eprintln!("seed {seed}");
    let cli = bin("denylist");
    let socket = home.socket();
    let started = Instant::now();
    let done: Vec<Done> = thread::scope(|s| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (cli, socket) = (&cli, &socket);
                s.spawn(move || {
                    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(c as u64));
                    (0..total / CLIENTS)
                        .map(|n| {
                            let op = Op::random(&mut rng, c, n);
                            let start = now_ms();
                            let out = Command::new(cli)
                                .arg("--socket")
                                .arg(socket)
                                .args(op.args())
                                .output()
                                .expect("run denylist");
                            let end = now_ms();
                            Done {
                                op,
                                start,
                                end,
                                code: out.status.code().unwrap_or(-1),
                                stdout: String::from_utf8_lossy(&out.stdout).into(),
                                stderr: String::from_utf8_lossy(&out.stderr).into(),
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let elapsed = started.elapsed();
    let c = home.client();
    let audit: Vec<AuditEvent> = c.get("/v1/audit?since=0").unwrap();

    // Every event belongs to exactly one acknowledged op, and every
    // acknowledged change has its events: nothing lost, nothing extra.
    let pos: HashMap<u64, usize> = audit
        .iter()
        .enumerate()
        .map(|(i, e)| (e.seq, i + 1))
        .collect();
    let mut owner: Vec<Option<usize>> = vec![None; audit.len() + 1];
    let mut claimed: Vec<Vec<usize>> = vec![Vec::new(); done.len()];
    let mut claim = |i: usize, seq: u64, ctx: &Done| {
        let p = *pos
            .get(&seq)
            .unwrap_or_else(|| panic!("seq {seq} is not in the audit log: {}", ctx.what()));
        assert!(
            owner[p].is_none(),
            "event {seq} claimed twice: {}",
            ctx.what()
        );
        owner[p] = Some(i);
        claimed[i].push(p);
    };
    let mut failures = 0;
    for (i, d) in done.iter().enumerate() {
        if d.code != 0 {
            failures += 1;
            continue;
        }
        let deployed = match &d.op {
            Op::Add { .. } | Op::Remove { .. } | Op::Mode { .. } => {
                let r: StageResponse =
                    serde_json::from_str(&d.stdout).unwrap_or_else(|e| panic!("{e}: {}", d.what()));
                let staged = d.op.keys().len();
                let seq = r.seq.unwrap_or_else(|| panic!("no seq: {}", d.what()));
                let last = pos[&seq];
                for p in last + 1 - staged..=last {
                    claim(i, audit[p - 1].seq, d);
                }
                r.deployed
            }
            Op::Deploy => Some(
                serde_json::from_str::<DeployResponse>(&d.stdout)
                    .unwrap_or_else(|e| panic!("{e}: {}", d.what())),
            ),
            Op::List { .. } | Op::Check { .. } => None,
        };
        if let Some(seq) = deployed.and_then(|r| r.seq) {
            claim(i, seq, d);
        }
    }
    for (p, o) in owner.iter().enumerate().skip(1) {
        assert!(
            o.is_some(),
            "audit event {:?} belongs to no acknowledged op",
            audit[p - 1]
        );
    }

    // The serial replay, in sequence order, with the state after each event.
    let mut model = Model::default();
    let mut states = vec![model.clone()];
    for (p, ev) in audit.iter().enumerate() {
        let op = &done[owner[p + 1].unwrap()].op;
        model.apply(ev, op);
        states.push(model.clone());
    }

    // Each op ran at one point of that sequence: after every event known
    // to come before it, and before every event known to come after it.
    let ats: Vec<Millis> = audit.iter().map(|e| e.at).collect();
    let mut explained = BTreeMap::<&str, usize>::new();
    for (i, d) in done.iter().enumerate() {
        let mut lo = 0;
        let mut hi = audit.len();
        for (p, &at) in ats.iter().enumerate() {
            let p = p + 1;
            // Its now was read under the lock before this op began.
            if d.op.locked() && at < d.start {
                lo = lo.max(p);
            }
            // Its now was read after this op had ended.
            if at > d.end {
                hi = hi.min(p - 1);
            }
        }
        for (j, other) in done.iter().enumerate() {
            if other.end < d.start {
                lo = lo.max(claimed[j].iter().copied().max().unwrap_or(0));
            }
            if other.start > d.end
                && let Some(&first) = claimed[j].iter().min()
            {
                hi = hi.min(first - 1);
            }
        }
        assert!(
            lo <= hi,
            "the audit order contradicts real time: {}",
            d.what()
        );
        if let (Some(&first), Some(&last)) = (claimed[i].iter().min(), claimed[i].iter().max()) {
            assert!(
                first > lo && last <= hi && last + 1 - first == claimed[i].len(),
                "its events are one run inside its window ({lo}..{hi}): {}",
                d.what()
            );
        }
        let window = &states[lo..=hi];
        let any = |f: &dyn Fn(&Model) -> bool| window.iter().any(f);
        match (&d.op, d.code) {
            (Op::Remove { .. } | Op::Mode { .. }, 5) => {
                let keys = d.op.keys();
                assert!(
                    any(&|m| keys.iter().any(|k| m.draft_entry(k).is_none())),
                    "not found, yet every target was in the draft throughout: {}",
                    d.what()
                );
                *explained
                    .entry("not found: absent from the draft at a point of its window")
                    .or_default() += 1;
            }
            (_, 0) => {}
            _ => panic!("an unexplained error: {}", d.what()),
        }
        if d.code != 0 {
            continue;
        }
        match &d.op {
            Op::Deploy => {
                let r: DeployResponse = serde_json::from_str(&d.stdout).unwrap();
                if r.nothing_pending {
                    assert!(
                        any(&|m| m.pending.is_empty()),
                        "nothing pending, yet there always was: {}",
                        d.what()
                    );
                }
            }
            Op::Check { ip } => {
                let r: CheckResponse = serde_json::from_str(&d.stdout).unwrap();
                let text = |t: Option<Target>| t.map(|t| t.to_string());
                let got = (r.verdict, text(r.entry), text(r.allowed_by));
                assert!(
                    any(&|m| m.check(*ip) == got),
                    "no deployed state of its window gives {got:?}: {}",
                    d.what()
                );
            }
            Op::List { draft } => {
                let got = sorted(serde_json::from_str(&d.stdout).unwrap());
                assert!(
                    any(&|m| {
                        let entries = if *draft {
                            m.draft()
                        } else {
                            m.deployed.clone()
                        };
                        let want: Vec<Entry> = entries
                            .into_values()
                            .filter(|e| e.list == List::Deny)
                            .collect();
                        sorted(want) == got
                    }),
                    "no state of its window lists as it did: {}",
                    d.what()
                );
            }
            _ => {}
        }
    }

    // The final state is the replay's last one: the API, the store file,
    // the kernel maps and the live program.
    let deployed: Vec<Entry> = c.get("/v1/entries").unwrap();
    assert_eq!(
        sorted(deployed),
        model.deployed.values().cloned().collect::<Vec<_>>(),
        "deployed entries"
    );
    let draft: Vec<Entry> = c.get("/v1/entries?draft=true").unwrap();
    assert_eq!(
        sorted(draft),
        model.draft().into_values().collect::<Vec<_>>(),
        "the draft"
    );
    let diff: serde_json::Value = c.get("/v1/diff").unwrap();
    let mut pending = BTreeMap::new();
    for (kind, op) in [
        ("added", "add"),
        ("removed", "remove"),
        ("changed", "change"),
    ] {
        for item in diff[kind].as_array().unwrap() {
            let e = if kind == "changed" {
                &item["after"]
            } else {
                item
            };
            let list: List = serde_json::from_value(e["list"].clone()).unwrap();
            pending.insert((target(e["target"].as_str().unwrap()), list), op);
        }
    }
    let want_pending: BTreeMap<_, _> = model
        .pending
        .iter()
        .map(|(k, p)| {
            let op = match p {
                Pending::Add(_) => "add",
                Pending::Change(_) => "change",
                Pending::Remove => "remove",
            };
            (*k, op)
        })
        .collect();
    assert_eq!(pending, want_pending, "pending changes");
    let st: Status = c.get("/v1/status").unwrap();
    assert_eq!(
        (
            st.revision,
            st.pending_changes as usize,
            st.capacity.used as usize
        ),
        (model.revision, model.pending.len(), model.deployed.len()),
        "status"
    );

    // Kernel: the exact maps hold exactly the deployed exact entries, with
    // their flags, expiry and the store's ids.
    let db = rusqlite::Connection::open_with_flags(
        home.state().join("denylist.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let ids: HashMap<(Target, List), u32> = db
        .prepare("SELECT target, list, id FROM entries")
        .unwrap()
        .query_map([], |r| {
            Ok((
                target(&r.get::<_, String>(0)?),
                r.get::<_, String>(1)?.parse::<List>().unwrap(),
                r.get::<_, u32>(2)?,
            ))
        })
        .unwrap()
        .map(|r| r.unwrap())
        .map(|(t, l, id)| ((t, l), id))
        .collect();
    let kernel = pinned_exact(&home);
    let exact: BTreeSet<IpAddr> = model
        .deployed
        .keys()
        .filter(|(t, _)| t.is_exact())
        .map(|(t, _)| t.addr())
        .collect();
    assert_eq!(
        kernel.keys().copied().collect::<BTreeSet<_>>(),
        exact,
        "the exact maps hold the deployed exact addresses"
    );
    let tai = tai_offset_ms();
    for (&ip, v) in &kernel {
        for list in [List::Deny, List::Allow] {
            let (word, id) = v.get(list == List::Allow);
            let key = (Target::host(ip), list);
            let Some(e) = model.deployed.get(&key) else {
                assert_eq!(word, 0, "{ip} is on no {list:?} list");
                continue;
            };
            let mut flags = FLAG_PRESENT;
            if e.monitor {
                flags |= FLAG_MONITOR;
            }
            if list == List::Allow {
                flags |= FLAG_ALLOW;
            }
            assert_eq!(word & 0xff, flags, "{ip} {list:?}: flags");
            let expiry_ms = (word_expiry_ns(word) / 1_000_000) as i64;
            match e.expires_at {
                None => assert_eq!(expiry_ms, 0, "{ip} {list:?}: never expires"),
                Some(x) => assert!(
                    (expiry_ms - (x + tai)).abs() <= 2,
                    "{ip} {list:?}: kernel expiry {expiry_ms} for {x} + {tai}"
                ),
            }
            assert_eq!(Some(&id), ids.get(&key), "{ip} {list:?}: the store's id");
        }
    }
    // The live program, prefixes included, gives the replay's verdicts.
    let live = Live::open(&link);
    let rules = model.rules();
    for probe in PROBES {
        let ip: IpAddr = probe.parse().unwrap();
        let want = match model::decide(&rules, ip, tai_now_ns()).verdict {
            Verdict::Drop => XDP_DROP,
            _ => XDP_PASS,
        };
        assert_eq!(
            live.run(&Spec::new(ip).build()),
            want,
            "the kernel's verdict for {ip}"
        );
    }
    let v: VerifyResponse = c.post("/v1/verify", &serde_json::json!({})).unwrap();
    assert!(v.drift.is_empty(), "the daemon reads no drift back: {v:?}");

    let counts = done
        .iter()
        .fold(BTreeMap::<String, usize>::new(), |mut m, d| {
            let name = d.op.args()[0].clone();
            let name = if name == "allow" {
                format!("allow {}", d.op.args()[1])
            } else {
                name
            };
            *m.entry(name).or_default() += 1;
            m
        });
    eprintln!(
        "{} ops from {CLIENTS} clients in {:.1} s: {counts:?}; {} audit events, {} revisions, {} deployed, {} pending; errors: {failures}, explained: {explained:?}",
        done.len(),
        elapsed.as_secs_f64(),
        audit.len(),
        model.revision,
        model.deployed.len(),
        model.pending.len()
    );
}
