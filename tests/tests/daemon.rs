//! denylistd end to end: a real daemon in a network namespace, real
//! traffic, restarts and crashes, and the store and kernel read back.

use std::{
    collections::BTreeSet,
    net::IpAddr,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use denylist::{
    client::Client,
    entry::Entry,
    error::Class,
    proto::{
        AddRequest, DeployRequest, DeployResponse, Key, RemoveRequest, StageItem, StageResponse,
        Status, VerifyResponse,
    },
    verdict::List,
};
use denylist_common::{ExactValue, MAP_EXACT_V4};
use denylist_tests::{
    daemon::{Daemon, Home, kernel_exact_v4},
    netns::{Pair, PairConfig, assert_no_gap},
    require_root,
};

const A: &str = "198.51.100.7";
const B: &str = "198.51.100.8";
const C: &str = "198.51.100.9";
const FREE: &str = "198.51.100.20";
const COUNT: u32 = 5;

fn long() -> bool {
    std::env::var_os("DENYLIST_LONG").is_some()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

struct Sandbox {
    pair: Pair,
    home: Home,
}

fn sandbox(tag: &str) -> Sandbox {
    require_root();
    let pair = Pair::new(tag, PairConfig::default()).expect("veth pair");
    for s in [A, B, C, FREE] {
        pair.add_sender_source(ip(s)).unwrap();
    }
    Sandbox {
        pair,
        home: Home::new(tag),
    }
}

impl Sandbox {
    fn start(&self, extra: &[&str]) -> Daemon {
        let iface = self.pair.receiver_xdp_if.clone();
        let mut args = vec!["--iface", iface.as_str(), "--expiry-sweep", "1s"];
        args.extend_from_slice(extra);
        Daemon::start(&self.home, Some(&self.pair.receiver), &args)
    }

    fn replies(&self, src: &str) -> u32 {
        self.pair.ping(ip(src), COUNT, 56).unwrap()
    }

    fn client(&self) -> Client {
        self.home.client()
    }
}

fn item(target: &str) -> StageItem {
    StageItem {
        target: target.into(),
        list: List::Deny,
        reason: Some("test".into()),
        ttl: None,
        monitor: None,
    }
}

fn add(c: &Client, targets: &[&str], deploy: bool) -> StageResponse {
    let req = AddRequest {
        entries: targets.iter().map(|t| item(t)).collect(),
        deploy,
        ..AddRequest::default()
    };
    c.post("/v1/entries", &req).expect("add")
}

fn deploy(c: &Client, only: Option<&[&str]>) -> DeployResponse {
    let req = DeployRequest {
        only: only.map(|o| {
            o.iter()
                .map(|t| Key {
                    target: t.to_string(),
                    list: List::Deny,
                })
                .collect()
        }),
        ..DeployRequest::default()
    };
    c.post("/v1/deploy", &req).expect("deploy")
}

fn status(c: &Client) -> Status {
    c.get("/v1/status").expect("status")
}

#[test]
fn deploy_blocks_remove_unblocks_and_a_partial_deploy_ships_only_what_it_names() {
    let sb = sandbox("dep");
    let _d = sb.start(&[]);
    let c = sb.client();
    let st = status(&c);
    assert!(st.interfaces[0].attached && !st.degraded, "{st:?}");

    add(&c, &[A], false);
    assert_eq!(
        sb.replies(A),
        COUNT,
        "staged only: nothing changes in production"
    );
    let d = deploy(&c, None);
    assert_eq!((d.revision, d.counts.added), (Some(1), 1));
    assert_eq!(sb.replies(A), 0, "deployed: blocked");
    assert_eq!(sb.replies(FREE), COUNT);

    add(&c, &[B, C], false);
    let d = deploy(&c, Some(&[B]));
    assert_eq!((d.revision, d.counts.added), (Some(2), 1));
    assert_eq!(sb.replies(B), 0, "the named change shipped");
    assert_eq!(sb.replies(C), COUNT, "the other stayed staged");
    assert_eq!(status(&c).pending_changes, 1);

    let req = RemoveRequest {
        targets: vec![A.into()],
        list: List::Deny,
        deploy: true,
        message: None,
    };
    let r: StageResponse = c.post("/v1/entries/remove", &req).unwrap();
    assert_eq!(r.deployed.and_then(|d| d.revision), Some(3));
    assert_eq!(sb.replies(A), COUNT, "removed and deployed: flows again");
    assert_eq!(sb.replies(B), 0);
    assert_eq!(
        status(&c).pending_changes,
        1,
        "the --deploy of a remove leaves C staged"
    );

    let nothing: DeployResponse = c
        .post(
            "/v1/deploy",
            &DeployRequest {
                only: Some(vec![]),
                ..DeployRequest::default()
            },
        )
        .unwrap();
    assert!(nothing.nothing_pending);
}

#[test]
fn restarts_and_crashes_never_let_a_denied_packet_through() {
    let sb = sandbox("rst");
    let mut d = sb.start(&[]);
    add(&sb.client(), &[A], true);
    let denied = sb.pair.flood(ip(A), "0.005").unwrap();
    let allowed = sb.pair.flood(ip(FREE), "0.02").unwrap();
    let rounds = if long() { 10 } else { 3 };
    for i in 0..rounds {
        assert!(d.stop().success(), "SIGTERM {i}");
        thread::sleep(Duration::from_millis(100));
        d = sb.start(&[]);
    }
    for _ in 0..rounds {
        d.kill();
        thread::sleep(Duration::from_millis(100));
        d = sb.start(&[]);
    }
    thread::sleep(Duration::from_millis(300));
    assert_no_gap(denied, allowed);
    let st = status(&sb.client());
    assert_eq!(st.revision, 1);
    assert!(!st.degraded);
    assert_eq!(
        std::fs::read_dir(&sb.home.bpffs)
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("gen-"))
            .count(),
        1,
        "old generations are unpinned"
    );
    drop(d);
}

/// The deployed exact deny entries, read from the store file itself.
fn store_exact(home: &Home) -> (BTreeSet<String>, i64) {
    let db = rusqlite::Connection::open_with_flags(
        home.state().join("denylist.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut stmt = db
        .prepare("SELECT target FROM entries WHERE list = 'deny'")
        .unwrap();
    let deployed = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let pending: i64 = db
        .query_row("SELECT count(*) FROM pending", [], |r| r.get(0))
        .unwrap();
    (deployed, pending)
}

/// The store file itself: the deployed exact deny entries, the pending
/// adds and removes, and the revision.
struct StoreFile {
    deployed: BTreeSet<String>,
    adds: BTreeSet<String>,
    removes: BTreeSet<String>,
    revision: u64,
}

fn store_file(home: &Home) -> StoreFile {
    let db = rusqlite::Connection::open_with_flags(
        home.state().join("denylist.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let targets = |sql: &str| -> BTreeSet<String> {
        let mut stmt = db.prepare(sql).unwrap();
        stmt.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    let deployed = targets("SELECT target FROM entries WHERE list = 'deny'");
    let adds = targets("SELECT target FROM pending WHERE op = 'add'");
    let removes = targets("SELECT target FROM pending WHERE op = 'remove'");
    let other: i64 = db
        .query_row(
            "SELECT count(*) FROM pending WHERE op NOT IN ('add', 'remove')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(other, 0, "a replace stages only adds and removes");
    let revision: i64 = db
        .query_row("SELECT value FROM meta WHERE key = 'revision'", [], |r| {
            r.get(0)
        })
        .unwrap();
    StoreFile {
        deployed,
        adds,
        removes,
        revision: revision as u64,
    }
}

/// `n` addresses of their own for each round, staged with `import
/// --replace`: the draft becomes exactly these.
fn stage_round(home: &Home, round: u32, n: u32) -> BTreeSet<String> {
    let base = 0x0A00_0000u32 + (round << 19); // 10.0.0.0 + round * 2^19
    let addrs: Vec<String> = (0..n)
        .map(|i| std::net::Ipv4Addr::from(base + 2 * i + 1).to_string())
        .collect();
    let body: String = addrs.iter().map(|a| format!("{a}\n")).collect();
    let reply = home
        .client()
        .request(
            "POST",
            "/v1/import?format=plain&source=crash&replace=true&force=true",
            Some(body.as_bytes()),
            "text/plain",
        )
        .unwrap();
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    addrs.into_iter().collect()
}

#[test]
fn a_crash_during_a_big_deploy_leaves_kernel_and_store_equal() {
    require_root();
    let home = Home::new("crash");
    let (n, crashes) = if long() { (200_000, 20) } else { (50_000, 2) };
    // The capacity is the list's size: a deploy that replaces the whole
    // list must fit as well.
    let capacity = n.to_string();
    let args = ["--capacity", capacity.as_str()];
    let mut d = Daemon::start(&home, None, &args);
    let mut want = stage_round(&home, 0, n);
    // An uncrashed deploy first: how long one takes bounds the kill times.
    let t = Instant::now();
    deploy(&home.client(), None);
    let mut deploy_ms = t.elapsed().as_millis() as u64;
    let mut deployed = want.clone();
    let mut killed_during = 0;
    for round in 1..=crashes {
        let t = Instant::now();
        want = stage_round(&home, round, n);
        let stage_ms = t.elapsed().as_millis();
        let client = home.client();
        let deployer = thread::spawn(move || {
            client.post::<_, DeployResponse>("/v1/deploy", &DeployRequest::default())
        });
        let kill_at = rand::random_range(0..deploy_ms * 11 / 10 + 1);
        thread::sleep(Duration::from_millis(kill_at));
        d.kill();
        let finished = deployer.join().unwrap().is_ok();
        let t = Instant::now();
        d = Daemon::start(&home, None, &args);
        let restart_ms = t.elapsed().as_millis();
        let kernel = kernel_exact_v4(&home);
        let s = store_file(&home);
        assert_eq!(
            kernel, s.deployed,
            "round {round}: the kernel maps equal the deployed revision"
        );
        let committed = s.deployed == want;
        if committed {
            assert!(
                s.adds.is_empty() && s.removes.is_empty(),
                "round {round}: the deploy committed and left nothing pending"
            );
        } else {
            assert!(!finished, "round {round}: an answered deploy was lost");
            assert_eq!(
                s.deployed, deployed,
                "round {round}: an uncommitted deploy left the last revision"
            );
            assert_eq!(
                (&s.adds, &s.removes),
                (&want, &deployed),
                "round {round}: the draft is intact"
            );
            killed_during += 1;
        }
        let st = status(&home.client());
        assert_eq!(
            (
                st.capacity.used as usize,
                st.revision,
                st.pending_changes as usize
            ),
            (s.deployed.len(), s.revision, s.adds.len() + s.removes.len()),
            "round {round}: status tells the truth"
        );
        assert!(!st.degraded, "round {round}: {st:?}");
        if !committed {
            let t = Instant::now();
            let r = deploy(&home.client(), None);
            deploy_ms = t.elapsed().as_millis() as u64;
            assert_eq!(
                (r.counts.added, r.counts.removed),
                (u64::from(n), u64::from(n)),
                "round {round}: the staged replace deploys whole after the restart"
            );
            assert_eq!(kernel_exact_v4(&home), want, "round {round}");
        }
        deployed = want.clone();
        eprintln!(
            "round {round}: staged {n} in {stage_ms} ms, killed at {kill_at} ms ({}), restarted in {restart_ms} ms, deploy {deploy_ms} ms",
            if committed {
                "after the commit"
            } else {
                "before the commit"
            }
        );
    }
    eprintln!("{killed_during} of {crashes} kills landed before the commit");
    drop(d);
}

#[test]
fn a_new_capacity_migrates_the_maps_under_traffic() {
    let sb = sandbox("cap");
    let d = sb.start(&["--capacity", "4096"]);
    add(&sb.client(), &[A, "203.0.113.0/24"], true);
    let denied = sb.pair.flood(ip(A), "0.005").unwrap();
    let allowed = sb.pair.flood(ip(FREE), "0.02").unwrap();
    assert!(d.stop().success());
    let d = sb.start(&["--capacity", "8192"]);
    thread::sleep(Duration::from_millis(300));
    let (sent, received) = denied.finish().unwrap();
    let (_, free_received) = allowed.finish().unwrap();
    assert_eq!(
        received, 0,
        "{received} of {sent} denied packets passed during the migration"
    );
    assert!(free_received > 0);
    let st = status(&sb.client());
    assert_eq!(st.capacity.total, 8192);
    assert_eq!(st.entries.deny, 2, "nothing was lost");
    drop(d);
}

#[test]
fn verify_finds_and_repairs_drift() {
    let sb = sandbox("ver");
    let _d = sb.start(&[]);
    let c = sb.client();
    add(&c, &[A], true);
    assert_eq!(sb.replies(A), 0);
    // Behind the daemon's back: delete A from the pinned map.
    let gen_dir = std::fs::read_dir(&sb.home.bpffs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("gen-"))
        .unwrap();
    let mut map = Map::HashMap(MapData::from_pin(gen_dir.join(MAP_EXACT_V4)).unwrap());
    let mut h: BpfHashMap<_, [u8; 4], ExactValue> = BpfHashMap::try_from(&mut map).unwrap();
    h.remove(&[198, 51, 100, 7]).unwrap();
    assert_eq!(sb.replies(A), COUNT, "the drift really lets A through");

    let v: VerifyResponse = c.post("/v1/verify", &serde_json::json!({})).unwrap();
    assert_eq!((v.drift, v.repaired), (vec![A.to_string()], 1));
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
fn a_deploy_beyond_capacity_is_refused_and_changes_nothing() {
    let sb = sandbox("full");
    let _d = sb.start(&["--capacity", "16"]);
    let c = sb.client();
    let targets: Vec<String> = (1..=20)
        .map(|i| format!("198.51.100.{}", 100 + i))
        .collect();
    let refs: Vec<&str> = targets.iter().map(String::as_str).collect();
    add(&c, &refs, false);
    let e = c
        .post::<_, DeployResponse>("/v1/deploy", &DeployRequest::default())
        .unwrap_err();
    assert_eq!(e.class, Class::Failure);
    assert!(
        e.message.contains("--capacity"),
        "says how to raise it: {}",
        e.message
    );
    let st = status(&c);
    assert_eq!(
        (st.capacity.used, st.revision, st.pending_changes),
        (0, 0, 20),
        "kernel unchanged, draft intact"
    );
    assert!(kernel_exact_v4(&sb.home).is_empty());
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
fn entries_expire_in_the_kernel_on_time_and_the_sweep_clears_the_draft() {
    let sb = sandbox("exp");
    let _d = sb.start(&[]);
    let c = sb.client();
    let req = AddRequest {
        entries: vec![StageItem {
            ttl: Some("3s".into()),
            ..item(A)
        }],
        deploy: true,
        ..AddRequest::default()
    };
    let _: StageResponse = c.post("/v1/entries", &req).unwrap();
    let entries: Vec<Entry> = c.get("/v1/entries").unwrap();
    let expires = entries[0].expires_at.expect("an expiry");
    let left = expires - denylist::entry::now_ms();
    assert!(
        (2_000..=3_000).contains(&left),
        "the 3 s TTL counts from the deploy: {left} ms left"
    );
    assert_eq!(
        sb.pair.ping(ip(A), 2, 56).unwrap(),
        0,
        "blocked before its expiry"
    );
    // Probe every 100 ms: the first reply must come within 1 s of expiry.
    let flood = sb.pair.flood(ip(A), "0.1").unwrap();
    thread::sleep(Duration::from_secs(6));
    let (sent, received) = flood.finish().unwrap();
    let open_ms = denylist::entry::now_ms() - expires;
    let due = (open_ms / 100) as u32;
    assert!(
        received + 11 >= due,
        "{received} of {sent} got through; {due} were due after the expiry"
    );
    assert!(
        received <= due + 1,
        "nothing passed before the expiry: {received} > {due}"
    );
    let audit: Vec<serde_json::Value> = c.get("/v1/audit?since=0").unwrap();
    let swept = audit
        .iter()
        .find(|e| e["kind"] == "expiry" && e["target"] == A)
        .expect("an expiry event");
    let at = humantime::parse_rfc3339(swept["at"].as_str().unwrap()).unwrap();
    let at = denylist::entry::to_ms(at);
    assert!(
        at - expires <= 2_500,
        "swept within a sweep period (1 s) plus slack: {} ms",
        at - expires
    );
    let (deployed, pending) = store_exact(&sb.home);
    assert!(
        deployed.is_empty() && pending == 0,
        "gone from the deployed set and the draft"
    );
}

/// Users and groups made for one test, removed afterwards.
struct Accounts {
    users: Vec<String>,
    groups: Vec<String>,
}

impl Drop for Accounts {
    fn drop(&mut self) {
        for u in &self.users {
            let _ = Command::new("userdel").arg(u).status();
        }
        for g in &self.groups {
            let _ = Command::new("groupdel").arg(g).status();
        }
    }
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// HTTP status of a request made as `user` with curl, and its body.
fn curl_as(
    user: &str,
    socket: &std::path::Path,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    let out = Command::new("setpriv")
        .args([
            &format!("--reuid={user}"),
            &format!("--regid={user}"),
            "--init-groups",
            "--",
        ])
        .args([
            "curl",
            "-s",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "--unix-socket",
        ])
        .arg(socket)
        .args(["-X", method, "-d", body, &format!("http://denylistd{path}")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn only_admins_change_viewers_read_and_others_get_nothing() {
    require_root();
    let tag = format!("{}", std::process::id() % 100_000);
    let (admin_group, viewer_group) = (format!("dla{tag}"), format!("dlv{tag}"));
    let (admin, viewer, nobody) = (
        format!("dlua{tag}"),
        format!("dluv{tag}"),
        format!("dlun{tag}"),
    );
    let accounts = Accounts {
        users: vec![admin.clone(), viewer.clone(), nobody.clone()],
        groups: vec![admin_group.clone(), viewer_group.clone()],
    };
    for g in &accounts.groups {
        run_ok(Command::new("groupadd").arg(g));
    }
    for u in &accounts.users {
        run_ok(Command::new("useradd").args(["-M", "-U", u]));
    }
    run_ok(Command::new("usermod").args(["-aG", &admin_group, &admin]));
    run_ok(Command::new("usermod").args(["-aG", &viewer_group, &viewer]));

    let home = Home::new("auth");
    std::fs::set_permissions(
        home.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let _d = Daemon::start(
        &home,
        None,
        &[
            "--admin-group",
            &admin_group,
            "--viewer-group",
            &viewer_group,
        ],
    );
    let sock = home.socket();
    let mode = std::fs::metadata(&sock).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o666
    );
    let add = r#"{"entries":[{"target":"198.51.100.7"}]}"#;

    let routes_read = [
        "/v1/status",
        "/v1/entries",
        "/v1/diff",
        "/v1/history",
        "/v1/audit",
        "/v1/stats",
        "/v1/check/198.51.100.7",
        "/v1/export",
    ];
    for path in routes_read {
        assert_eq!(
            curl_as(&admin, &sock, "GET", path, "").0,
            200,
            "admin reads {path}"
        );
        assert_eq!(
            curl_as(&viewer, &sock, "GET", path, "").0,
            200,
            "viewer reads {path}"
        );
        let (code, body) = curl_as(&nobody, &sock, "GET", path, "");
        assert_eq!(code, 403, "nobody reads {path}");
        assert!(
            body.contains(&viewer_group),
            "names the group to join: {body}"
        );
    }
    let (code, body) = curl_as(&viewer, &sock, "POST", "/v1/entries", add);
    assert_eq!(code, 403);
    assert!(body.contains(&admin_group), "{body}");
    for path in [
        "/v1/deploy",
        "/v1/discard",
        "/v1/verify",
        "/v1/entries/remove",
        "/v1/rollback",
        "/v1/import",
        "/v1/attach",
        "/v1/detach",
        "/v1/backup",
        "/v1/entries/mode",
    ] {
        assert_eq!(
            curl_as(&viewer, &sock, "POST", path, "{}").0,
            403,
            "viewer may not POST {path}"
        );
        assert_eq!(
            curl_as(&nobody, &sock, "POST", path, "{}").0,
            403,
            "nobody may not POST {path}"
        );
    }
    assert_eq!(
        curl_as(&admin, &sock, "POST", "/v1/entries", add).0,
        201,
        "admin changes"
    );
    assert_eq!(curl_as(&admin, &sock, "POST", "/v1/deploy", "{}").0, 200);
    let audit: Vec<serde_json::Value> = home.client().get("/v1/audit?since=0").unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e["user"] == admin.as_str() && e["kind"] == "deploy"),
        "the audit names the admin"
    );

    run_ok(Command::new("gpasswd").args(["-d", &admin, &admin_group]));
    assert_eq!(
        curl_as(&admin, &sock, "POST", "/v1/discard", "{}").0,
        403,
        "removal takes effect on the next request"
    );
    drop(accounts);
}

#[test]
fn hits_are_counted_per_entry_and_survive_a_restart() {
    let sb = sandbox("hits");
    let d = sb.start(&[]);
    add(&sb.client(), &[A, "203.0.113.0/24"], true);
    assert_eq!(sb.replies(A), 0);
    let stats: Vec<denylist::proto::StatItem> = sb.client().get("/v1/stats").unwrap();
    assert_eq!(
        (stats[0].target.as_str(), stats[0].packets),
        (A, u64::from(COUNT)),
        "busiest first: {stats:?}"
    );
    assert!(
        stats[0]
            .last_hit
            .is_some_and(|t| (denylist::entry::now_ms() - t).abs() < 10_000)
    );
    assert_eq!(stats[1].packets, 0);
    assert!(d.stop().success());
    let _d = sb.start(&[]);
    assert_eq!(sb.replies(A), 0);
    let stats: Vec<denylist::proto::StatItem> = sb.client().get("/v1/stats?top=1").unwrap();
    assert_eq!(stats.len(), 1);
    assert_eq!(
        stats[0].packets,
        2 * u64::from(COUNT),
        "folded into the store across the restart"
    );
    let idle: Vec<denylist::proto::StatItem> = sb.client().get("/v1/stats?idle=1h").unwrap();
    assert_eq!(
        idle.iter().map(|s| s.target.as_str()).collect::<Vec<_>>(),
        ["203.0.113.0/24"]
    );
}

fn xdp_prog_name(ns: &denylist_tests::netns::Netns, iface: &str) -> Option<String> {
    let out = ns
        .run(&["ip", "-j", "-d", "link", "show", "dev", iface])
        .ok()?;
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    v[0]["xdp"]["prog"]["name"].as_str().map(str::to_string)
}

#[test]
fn late_and_returning_interfaces_are_attached_and_others_programs_are_not_replaced() {
    let sb = sandbox("ifc");
    let ns = &sb.pair.receiver;
    let _d = sb.start(&["--iface", "dl-late"]);
    let c = sb.client();
    let st = status(&c);
    assert!(st.degraded, "a configured interface is missing");
    let late = st.interfaces.iter().find(|i| i.name == "dl-late").unwrap();
    assert!(!late.attached);

    ns.run(&[
        "ip",
        "link",
        "add",
        "dl-late",
        "type",
        "veth",
        "peer",
        "name",
        "dl-late-p",
    ])
    .unwrap();
    ns.run(&["ip", "link", "set", "dl-late", "up"]).unwrap();
    let attached = |c: &Client| {
        status(c)
            .interfaces
            .iter()
            .any(|i| i.name == "dl-late" && i.attached)
    };
    let wait = |want: bool| {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < until && attached(&c) != want {
            thread::sleep(Duration::from_millis(200));
        }
        attached(&c) == want
    };
    assert!(wait(true), "attached once it appeared");
    assert_eq!(xdp_prog_name(ns, "dl-late").as_deref(), Some("denylist"));
    assert!(!status(&c).degraded);

    ns.run(&["ip", "link", "del", "dl-late"]).unwrap();
    assert!(wait(false), "noticed it went away");
    ns.run(&[
        "ip",
        "link",
        "add",
        "dl-late",
        "type",
        "veth",
        "peer",
        "name",
        "dl-late-p",
    ])
    .unwrap();
    assert!(wait(true), "re-attached when it came back");
    assert_eq!(xdp_prog_name(ns, "dl-late").as_deref(), Some("denylist"));

    // Another tool's XDP program: a clear error naming it, and it stays.
    ns.run(&[
        "ip",
        "link",
        "add",
        "dl-other",
        "type",
        "veth",
        "peer",
        "name",
        "dl-other-p",
    ])
    .unwrap();
    ns.run(&[
        "xdp-filter",
        "load",
        "dl-other",
        "-m",
        "skb",
        "-f",
        "ipv4,ipv6",
    ])
    .unwrap();
    let before = xdp_prog_name(ns, "dl-other").expect("xdp-filter loaded");
    let e = c
        .post::<_, serde_json::Value>("/v1/attach", &serde_json::json!({ "iface": "dl-other" }))
        .unwrap_err();
    assert!(
        e.message.contains("already carries XDP program") && e.message.contains(&before),
        "{}",
        e.message
    );
    assert_eq!(
        xdp_prog_name(ns, "dl-other"),
        Some(before),
        "nothing was replaced"
    );
    let _ = ns.run(&["xdp-filter", "unload", "dl-other", "--all"]);
}

#[test]
fn a_peer_with_a_live_ssh_session_is_not_blocked_without_force() {
    let sb = sandbox("ssh");
    let _d = sb.start(&[]);
    let listen = "import socket,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',22))\ns.listen()\nc,_=s.accept()\ntime.sleep(60)";
    let connect = format!(
        "import socket,time\nfor _ in range(50):\n  try:\n    s=socket.socket();s.bind(('{A}',0));s.connect(('{}',22));break\n  except OSError:\n    time.sleep(0.1)\ntime.sleep(60)",
        sb.pair.receiver_v4
    );
    let mut server = sb
        .pair
        .receiver
        .cmd("python3")
        .args(["-c", listen])
        .spawn()
        .unwrap();
    let mut client = sb
        .pair
        .sender
        .cmd("python3")
        .args(["-c", &connect])
        .spawn()
        .unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(10);
    let mut refused = None;
    while std::time::Instant::now() < until {
        let req = AddRequest {
            entries: vec![item(A)],
            ..AddRequest::default()
        };
        match sb.client().post::<_, StageResponse>("/v1/entries", &req) {
            Err(e) if e.class == Class::Guarded => {
                refused = Some(e);
                break;
            }
            Ok(_) => {
                let rm = RemoveRequest {
                    targets: vec![A.into()],
                    list: List::Deny,
                    deploy: false,
                    message: None,
                };
                let _: StageResponse = sb.client().post("/v1/entries/remove", &rm).unwrap();
            }
            Err(e) => panic!("{e}"),
        }
        thread::sleep(Duration::from_millis(200));
    }
    let _ = server.kill();
    let _ = client.kill();
    let _ = server.wait();
    let _ = client.wait();
    let e = refused.expect("refused while the session was up");
    assert!(e.message.contains("live SSH session"), "{}", e.message);
    let forced = AddRequest {
        entries: vec![item(A)],
        force: true,
        ..AddRequest::default()
    };
    let _: StageResponse = sb.client().post("/v1/entries", &forced).unwrap();
}

#[test]
fn metrics_are_served_in_prometheus_text() {
    require_root();
    let home = Home::new("met");
    let port = 20_000 + std::process::id() % 20_000;
    let addr = format!("127.0.0.1:{port}");
    let _d = Daemon::start(&home, None, &["--metrics", &addr]);
    add(&home.client(), &[A], true);
    let out = Command::new("curl")
        .args(["-s", &format!("http://{addr}/metrics")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "denylist_packets_total{verdict=\"dropped\"}",
        "denylist_bytes_total{verdict=\"passed\"}",
        "denylist_revision 1",
        "denylist_entries{list=\"deny\"} 1",
        "denylist_capacity{kind=\"total\"}",
        "denylist_last_deploy_duration_milliseconds",
        "denylist_deploy_failures_total 0",
        "denylist_verify_repairs_total 0",
        "denylist_attached_interfaces 0",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
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
