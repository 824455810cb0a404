//! denylistd started some other way than the harness's.

use std::{
    fs,
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use denylist::cli::Client;
use denylist_tests::{
    daemon::{Home, bin},
    netns::Netns,
};
use serde_json::Value;

/// A denylistd started some other way than the harness's: under a wrapper
/// (a umask, a mount namespace, a capability set), on any socket and state
/// directory. Killed on drop.
pub(crate) struct Proc {
    pub(crate) child: Option<Child>,
    pub(crate) socket: PathBuf,
    pub(crate) log: PathBuf,
}

pub(crate) struct Spawn<'a> {
    pub(crate) netns: Option<&'a Netns>,
    pub(crate) wrapper: Vec<String>,
    pub(crate) socket: PathBuf,
    pub(crate) state: PathBuf,
    pub(crate) bpffs: PathBuf,
    pub(crate) log: PathBuf,
}

impl Spawn<'_> {
    pub(crate) fn plain(home: &Home) -> Spawn<'_> {
        Spawn {
            netns: None,
            wrapper: Vec::new(),
            socket: home.socket(),
            state: home.state(),
            bpffs: home.bpffs.clone(),
            log: home.dir.path().join("denylistd.log"),
        }
    }

    pub(crate) fn spawn(&self, extra: &[&str]) -> Proc {
        let mut argv: Vec<String> = self.wrapper.clone();
        argv.push(bin("denylistd").display().to_string());
        for (flag, path) in [
            ("--socket", &self.socket),
            ("--state-dir", &self.state),
            ("--bpffs", &self.bpffs),
        ] {
            argv.push(flag.into());
            argv.push(path.display().to_string());
        }
        argv.extend(extra.iter().map(|s| s.to_string()));
        let mut cmd = match self.netns {
            Some(ns) => ns.cmd(&argv[0]),
            None => Command::new(&argv[0]),
        };
        let _ = fs::remove_file(&self.log);
        let out = fs::File::create(&self.log).expect("log file");
        // Every wrapper execs, so the child's pid ends up the daemon's.
        let child = cmd
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn denylistd");
        Proc {
            child: Some(child),
            socket: self.socket.clone(),
            log: self.log.clone(),
        }
    }

    pub(crate) fn start(&self, extra: &[&str]) -> Proc {
        let p = self.spawn(extra);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if Client::new(&p.socket).get::<Value>("/v1/status").is_ok() {
                return p;
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("denylistd did not come up:\n{}", p.log_text());
    }

    /// Starts a daemon that must refuse: exit 1, a log naming `needle`.
    pub(crate) fn refused(&self, extra: &[&str], needle: &str) {
        let mut p = self.spawn(extra);
        let code = p.wait_exit(Duration::from_secs(30));
        let log = p.log_text();
        assert_eq!(code, Some(1), "denylistd must refuse to start:\n{log}");
        assert!(log.contains(needle), "the error names {needle}:\n{log}");
    }
}

impl Proc {
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub(crate) fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// SIGTERM and wait: exits 0, leaving the filter in place.
    pub(crate) fn stop(mut self) {
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.pid() as i32, libc::SIGTERM) };
        let code = self.wait_exit(Duration::from_secs(30));
        assert_eq!(code, Some(0), "a clean stop:\n{}", self.log_text());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
