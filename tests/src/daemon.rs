//! A real `denylistd` for tests: its own state dir, socket and bpffs
//! directory, optionally inside a network namespace, removed on drop even
//! when the test fails.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use std::{collections::BTreeSet, net::IpAddr};

use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use denylist::{cli::Client, dataplane::ensure_bpffs_mounted};
use denylist_common::{ExactValue, MAP_EXACT_V4};

use crate::netns::Netns;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A built binary of the workspace: `cargo xtask test` builds them before
/// the root tests run; DENYLIST_BIN_DIR overrides where to look.
pub fn bin(name: &str) -> PathBuf {
    let dir = match std::env::var_os("DENYLIST_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            // Tests live in target/PROFILE/deps, binaries such as the demo
            // in target/PROFILE: either way the workspace's binaries are in
            // target/PROFILE.
            let exe = std::env::current_exe().expect("the running binary's path");
            let dir = exe.parent().expect("a directory");
            if dir.ends_with("deps") {
                dir.parent()
                    .map_or_else(|| dir.to_path_buf(), Path::to_path_buf)
            } else {
                dir.to_path_buf()
            }
        }
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests through `cargo xtask test`, which builds it",
        path.display()
    );
    path
}

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "denylist-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).expect("create a temp dir");
        Self(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where one daemon keeps everything, stable across its restarts.
pub struct Home {
    pub dir: TempDir,
    pub bpffs: PathBuf,
}

impl Home {
    pub fn new(tag: &str) -> Self {
        ensure_bpffs_mounted().expect("bpffs");
        let dir = TempDir::new(tag);
        let bpffs = PathBuf::from(format!(
            "/sys/fs/bpf/dltest-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        Self { dir, bpffs }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("denylist.sock")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn client(&self) -> Client {
        Client::new(self.socket())
    }
}

impl Drop for Home {
    /// Unpinning the links detaches the program; unpinning the maps frees them.
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.bpffs);
    }
}

/// A running denylistd.
pub struct Daemon {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts denylistd with `extra` arguments (inside `netns` when given)
    /// and waits until its API answers.
    pub fn start(home: &Home, netns: Option<&Netns>, extra: &[&str]) -> Self {
        let d = Self::spawn(home, netns, extra);
        d.wait_ready(home);
        d
    }

    /// Starts denylistd without waiting, e.g. to see it refuse to start.
    pub fn spawn(home: &Home, netns: Option<&Netns>, extra: &[&str]) -> Self {
        Self::spawn_with_env(home, netns, extra, &[])
    }

    /// [`Daemon::spawn`] with more environment, e.g. a `NOTIFY_SOCKET`.
    pub fn spawn_with_env(
        home: &Home,
        netns: Option<&Netns>,
        extra: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Self {
        let exe = bin("denylistd");
        let mut cmd = match netns {
            Some(ns) => ns.cmd(exe.to_str().expect("utf-8 path")),
            None => Command::new(&exe),
        };
        let log = home.dir.path().join("denylistd.log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        cmd.arg("--socket")
            .arg(home.socket())
            .arg("--state-dir")
            .arg(home.state())
            .arg("--bpffs")
            .arg(&home.bpffs)
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log fd"))
            .stderr(out);
        let child = cmd.spawn().expect("spawn denylistd");
        Self {
            child: Some(child),
            log,
        }
    }

    fn wait_ready(&self, home: &Home) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if home.client().get::<serde_json::Value>("/v1/status").is_ok() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("denylistd did not come up:\n{}", self.log_text());
    }

    /// The daemon's pid (nsenter execs it in place), e.g. to read its
    /// memory from /proc.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&mut self, sig: i32) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        // nsenter execs denylistd in place, so the pid is the daemon's.
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(child.id() as i32, sig) };
        child.wait().expect("wait for denylistd")
    }

    /// SIGTERM and wait: the filter must stay in place.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM)
    }

    /// kill -9: no chance to clean up.
    pub fn kill(mut self) {
        self.signal(libc::SIGKILL);
    }

    /// Waits for a daemon that is expected to exit by itself.
    pub fn wait_exit(mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The directory of the live generation's pinned maps (one after a start).
pub fn generation(home: &Home) -> PathBuf {
    let gens: Vec<_> = std::fs::read_dir(&home.bpffs)
        .expect("the pin directory")
        .map(|e| e.expect("a pin").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("gen-"))
        })
        .collect();
    assert_eq!(gens.len(), 1, "one generation after a start: {gens:?}");
    gens.into_iter().next().expect("one")
}

/// The exact IPv4 deny entries in the live generation's pinned map: what
/// the kernel really holds, read without asking the daemon.
pub fn kernel_exact_v4(home: &Home) -> BTreeSet<String> {
    let data = MapData::from_pin(generation(home).join(MAP_EXACT_V4)).expect("the pinned map");
    let map = Map::HashMap(data);
    let h: BpfHashMap<_, [u8; 4], ExactValue> = BpfHashMap::try_from(&map).expect("a hash map");
    h.iter()
        .map(|kv| kv.expect("an element"))
        .filter(|(_, v)| v.deny != 0)
        .map(|(k, _)| IpAddr::from(k).to_string())
        .collect()
}

/// One run of the CLI.
pub struct Run {
    pub what: String,
    pub code: i32,
    pub out: String,
    pub err: String,
}

impl Run {
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.out)
            .unwrap_or_else(|e| panic!("{}: stdout is not JSON ({e}):\n{self}", self.what))
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`denylist {}` exited {}\n--- stdout\n{}--- stderr\n{}",
            self.what, self.code, self.out, self.err
        )
    }
}

/// Runs the CLI against the daemon listening on `socket`. The socket is
/// a path, so the CLI reaches a daemon in any network namespace.
pub fn cli(socket: &Path, args: &[&str]) -> Run {
    let out = Command::new(bin("denylist"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        // The guardrails read where the admin connects from; none here.
        .env_remove("SSH_CONNECTION")
        .env_remove("SSH_CLIENT")
        .env_remove("DENYLIST_SOCKET")
        .stdin(Stdio::null())
        .output()
        .expect("run denylist");
    Run {
        what: args.join(" "),
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
