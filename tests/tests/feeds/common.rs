//! The sandbox every feed test runs in: a veth pair, the daemon on the
//! receiver with the filter on its veth, a feed directory, a scripted
//! feed server in the daemon's namespace, and the CLI run against it all.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr},
    process::{Command, Stdio},
};

pub(crate) use denylist_tests::daemon::{Run, cli};
use denylist_tests::{
    daemon::{Daemon, Home, TempDir, kernel_exact_v4},
    netns::{Pair, PairConfig},
    require_root,
};
use serde_json::Value;

use crate::server::Server;

/// Sources the sender can ping from: documentation addresses, so a feed
/// may list them (the guardrails refuse private ones).
pub(crate) const A: &str = "198.51.100.7";
pub(crate) const B: &str = "198.51.100.8";
pub(crate) const C: &str = "198.51.100.9";
pub(crate) const FREE: &str = "198.51.100.20";

/// Pings per traffic check: a dropped source costs ping's one-second
/// wait, so a few are enough to tell all from none.
const PINGS: u32 = 3;

/// A daemon on the receiver of a veth pair, with its feed directory and a
/// feed server beside it. Fields drop in order: the daemon, the server,
/// the feed files, the home (unpinning detaches the filter), the pair.
pub(crate) struct Sandbox {
    daemon: Option<Daemon>,
    pub(crate) server: Server,
    pub(crate) feeds: TempDir,
    pub(crate) home: Home,
    pub(crate) pair: Pair,
    args: Vec<String>,
}

impl Sandbox {
    /// `extra` daemon flags come after the sandbox's own.
    pub(crate) fn start(tag: &str, extra: &[&str]) -> Self {
        require_root();
        let pair = Pair::new(tag, PairConfig::default()).expect("veth pair");
        for s in [A, B, C, FREE] {
            pair.add_sender_source(ip(s)).expect("a sender source");
        }
        let home = Home::new(tag);
        let feeds = TempDir::new(&format!("{tag}-feeds"));
        let server = Server::start(&pair.receiver);
        // Small maps start fast; a test that needs more says so in `extra`.
        let capacity = if extra.contains(&"--capacity") {
            &[][..]
        } else {
            &["--capacity", "4096"][..]
        };
        let mut args: Vec<String> = [
            "--iface",
            pair.receiver_xdp_if.as_str(),
            "--feed-dir",
            feeds.path().to_str().expect("a UTF-8 path"),
            "--feed-allow-private",
            "--feed-timeout",
            "2s",
        ]
        .iter()
        .chain(capacity)
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut sb = Self {
            daemon: None,
            server,
            feeds,
            home,
            pair,
            args,
        };
        sb.boot();
        sb
    }

    fn boot(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.daemon = Some(Daemon::start(&self.home, Some(&self.pair.receiver), &args));
    }

    pub(crate) fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().expect("the daemon runs")
    }

    /// SIGTERM, then a new daemon on the same state and pins.
    pub(crate) fn restart(&mut self) {
        let d = self.daemon.take().expect("the daemon runs");
        assert!(d.stop().success(), "denylistd stops cleanly on SIGTERM");
        self.boot();
    }

    /// kill -9, then a new daemon on the same state and pins.
    pub(crate) fn crash_and_restart(&mut self) {
        self.daemon.take().expect("the daemon runs").kill();
        self.boot();
    }

    pub(crate) fn dl(&self, args: &[&str]) -> Run {
        cli(&self.home.socket(), args)
    }

    /// Runs the CLI and checks its exit code; the daemon's log comes with
    /// a failure, since that is where the reason usually is.
    #[track_caller]
    pub(crate) fn expect(&self, code: i32, args: &[&str]) -> Run {
        let r = self.dl(args);
        assert_eq!(
            r.code,
            code,
            "{r}--- denylistd log\n{}",
            self.daemon().log_text()
        );
        r
    }

    #[track_caller]
    pub(crate) fn ok(&self, args: &[&str]) -> Run {
        self.expect(0, args)
    }

    #[track_caller]
    pub(crate) fn json(&self, args: &[&str]) -> Value {
        self.ok(args).json()
    }

    /// A feed file in the feed directory, and its file:// URL.
    pub(crate) fn feed_file(&self, name: &str, body: &[u8]) -> String {
        let p = self.feeds.path().join(name);
        std::fs::write(&p, body).expect("write a feed file");
        format!("file://{}", p.display())
    }

    /// The feed as `feed list --json` shows it.
    #[track_caller]
    pub(crate) fn feed(&self, name: &str) -> Value {
        let all = self.json(&["feed", "list", "--json"]);
        all.as_array()
            .expect("feed list is an array")
            .iter()
            .find(|f| f["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no feed {name} in {all}"))
    }

    /// The exact IPv4 deny entries the kernel holds, read from the pinned
    /// map.
    pub(crate) fn kernel(&self) -> BTreeSet<String> {
        kernel_exact_v4(&self.home)
    }

    /// The deployed entries' targets, as `list --json` shows them.
    #[track_caller]
    pub(crate) fn listed(&self) -> BTreeSet<String> {
        targets(&self.json(&["list", "--json"]))
    }

    /// Whether real packets from `src` are dropped on the veth: all
    /// answered is false, none is true, anything else a failed test.
    #[track_caller]
    pub(crate) fn dropped(&self, src: &str) -> bool {
        let got = self.pair.ping(ip(src), PINGS, 56).expect("ping");
        assert!(
            got == 0 || got == PINGS,
            "{src}: {got} of {PINGS} pings answered, neither all nor none"
        );
        got == 0
    }

    #[track_caller]
    pub(crate) fn assert_dropped(&self, src: &str, when: &str) {
        assert!(self.dropped(src), "{when}: packets from {src} are dropped");
    }

    #[track_caller]
    pub(crate) fn assert_passes(&self, src: &str, when: &str) {
        assert!(!self.dropped(src), "{when}: packets from {src} pass");
    }

    /// The revision `status --json` reports.
    #[track_caller]
    pub(crate) fn revision(&self) -> u64 {
        self.json(&["status", "--json"])["revision"]
            .as_u64()
            .expect("a revision number")
    }

    /// `verify --json` finds the kernel and the store equal.
    #[track_caller]
    pub(crate) fn assert_no_drift(&self, when: &str) {
        let v = self.json(&["verify", "--json"]);
        assert_eq!(v["drift"], serde_json::json!([]), "{when}: no drift: {v}");
    }
}

pub(crate) fn ip(s: &str) -> IpAddr {
    s.parse().expect("an address")
}

/// The targets of a JSON array of entries.
#[track_caller]
pub(crate) fn targets(entries: &Value) -> BTreeSet<String> {
    entries
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {entries}"))
        .iter()
        .map(|e| e["target"].as_str().expect("a target").to_string())
        .collect()
}

/// `n` distinct public addresses from 44.0.0.0/8 (a range no guardrail
/// refuses), starting at the `from`th, for feeds that must be long.
pub(crate) fn public(from: u32, n: u32) -> Vec<String> {
    (from..from + n)
        .map(|i| Ipv4Addr::from(0x2C00_0000 + 2 * i + 1).to_string())
        .collect()
}

/// A plain list, one target a line.
pub(crate) fn body<S: AsRef<str>>(targets: &[S]) -> Vec<u8> {
    targets
        .iter()
        .map(|t| format!("{}\n", t.as_ref()))
        .collect::<String>()
        .into_bytes()
}

pub(crate) fn set<S: AsRef<str>>(targets: &[S]) -> BTreeSet<String> {
    targets.iter().map(|t| t.as_ref().to_string()).collect()
}

/// The strings of a JSON array, e.g. an entry's `sources`.
#[track_caller]
pub(crate) fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

/// `total` bytes of `line` repeated, gzipped by the gzip tool (level 1:
/// the bomb only needs to be big once unpacked). Written from a thread of
/// its own, so gzip never waits on a full pipe while we wait on it.
pub(crate) fn gzip(line: &[u8], total: usize) -> Vec<u8> {
    use std::io::Write as _;
    let mut child = Command::new("gzip")
        .args(["-1", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run gzip");
    let mut stdin = child.stdin.take().expect("gzip's stdin");
    let chunk: Vec<u8> = line.iter().copied().cycle().take(1 << 20).collect();
    let writer = std::thread::spawn(move || {
        let mut left = total;
        while left > 0 {
            let n = left.min(chunk.len());
            stdin.write_all(&chunk[..n]).expect("feed gzip");
            left -= n;
        }
    });
    let out = child.wait_with_output().expect("gzip's output");
    writer.join().expect("the gzip writer");
    assert!(out.status.success(), "gzip failed");
    out.stdout
}
