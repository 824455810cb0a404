//! The installed unit, run as systemd would run it on a machine whose PID
//! 1 is not systemd: its ExecStart with only its capabilities, its user,
//! umask and environment, and a NOTIFY_SOCKET this test listens on.

use std::{
    fs,
    os::unix::{fs::PermissionsExt as _, net::UnixDatagram},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub const UNIT: &str = "/usr/lib/systemd/system/denylistd.service";

/// What the test takes from the unit's [Service] section.
#[derive(Debug)]
pub struct Unit {
    pub exec_start: Vec<String>,
    pub user: String,
    pub umask: String,
    pub no_new_privileges: bool,
    pub bounding: Vec<String>,
    pub ambient: Vec<String>,
    pub environment: Vec<(String, String)>,
    /// WatchdogSec=, which systemd passes as WATCHDOG_USEC.
    pub watchdog_usec: Option<u64>,
}

impl Unit {
    pub fn read(path: &Path) -> Unit {
        let text = fs::read_to_string(path).expect("the installed unit");
        let values = |key: &str| -> Vec<String> {
            let prefix = format!("{key}=");
            text.lines()
                .filter_map(|l| l.strip_prefix(&prefix))
                .flat_map(|v| v.split_whitespace().map(String::from))
                .collect()
        };
        let one = |key: &str| -> String {
            let v = values(key);
            assert_eq!(v.len(), 1, "one value of {key}= in the unit: {v:?}");
            v[0].clone()
        };
        let exec_start = values("ExecStart");
        assert!(
            exec_start.first().is_some_and(|p| p.starts_with('/')),
            "ExecStart= names a path, with no prefix such as - or +: {exec_start:?}"
        );
        let environment = values("Environment")
            .into_iter()
            .map(|kv| {
                let kv = kv.trim_matches('"');
                let (k, v) = kv.split_once('=').expect("Environment=KEY=VALUE");
                (k.to_string(), v.to_string())
            })
            .collect();
        let watchdog_usec = values("WatchdogSec").first().map(|v| {
            let secs = v
                .strip_suffix('s')
                .expect("WatchdogSec= in seconds, e.g. 120s");
            secs.parse::<u64>().expect("whole seconds") * 1_000_000
        });
        Unit {
            watchdog_usec,
            exec_start,
            user: one("User"),
            umask: one("UMask"),
            no_new_privileges: one("NoNewPrivileges") == "yes",
            bounding: values("CapabilityBoundingSet"),
            ambient: values("AmbientCapabilities"),
            environment,
        }
    }

    /// The command systemd would run: setpriv sets the user, the
    /// capability sets and no_new_privs; a shell sets the umask and execs,
    /// so the child's pid is the daemon's.
    pub fn command(&self, notify: &Path) -> Command {
        let caps = |set: &[String]| -> String {
            std::iter::once("-all".to_string())
                .chain(set.iter().map(|c| {
                    format!(
                        "+{}",
                        c.strip_prefix("CAP_")
                            .expect("CAP_ name")
                            .to_ascii_lowercase()
                    )
                }))
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "umask \"$0\" && exec \"$@\"", &self.umask, "setpriv"])
            .arg(format!("--reuid={}", self.user))
            .arg(format!("--regid={}", self.user))
            .arg("--init-groups")
            .arg(format!("--bounding-set={}", caps(&self.bounding)))
            .arg(format!("--inh-caps={}", caps(&self.ambient)))
            .arg(format!("--ambient-caps={}", caps(&self.ambient)));
        if self.no_new_privileges {
            cmd.arg("--no-new-privs");
        }
        cmd.arg("--")
            .args(&self.exec_start)
            // systemd starts services with a clean environment of its own.
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin")
            .env("NOTIFY_SOCKET", notify)
            .envs(self.environment.iter().map(|(k, v)| (k, v)));
        if let Some(usec) = self.watchdog_usec {
            cmd.env("WATCHDOG_USEC", usec.to_string());
        }
        cmd
    }
}

/// The daemon started from the unit; killed on drop.
pub struct Service {
    child: Option<Child>,
    notify: UnixDatagram,
    pub log: PathBuf,
}

impl Service {
    /// Starts the unit's ExecStart and waits for READY=1, as `systemctl
    /// start` of a Type=notify unit does.
    pub fn start(unit: &Unit, dir: &Path) -> Service {
        let path = dir.join("notify.sock");
        let _ = fs::remove_file(&path);
        let notify = UnixDatagram::bind(&path).expect("the notify socket");
        // Any service may write to systemd's notify socket, and the
        // console's unit runs as its own user.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let log = dir.join("denylistd.log");
        let out = fs::File::create(&log).expect("the log");
        let child = unit
            .command(&path)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("setpriv (util-linux)");
        let mut service = Service {
            child: Some(child),
            notify,
            log,
        };
        service.wait_for("READY=1");
        service
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Reads notifications until one carries `line`.
    pub fn wait_for(&mut self, line: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.notify.recv(&mut buf) {
                let got = String::from_utf8_lossy(&buf[..n]).into_owned();
                if got.lines().any(|l| l == line) {
                    return got;
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "denylistd exited ({status}) before {line}:\n{}",
                    self.log_text()
                );
            }
        }
        panic!("no {line} within 60 s:\n{}", self.log_text());
    }

    /// SIGTERM, as `systemctl stop` sends (KillSignal=SIGTERM): STOPPING=1,
    /// then exit 0.
    pub fn stop(mut self) {
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.pid() as i32, libc::SIGTERM) };
        self.wait_for("STOPPING=1");
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                assert_eq!(status.code(), Some(0), "a clean stop:\n{}", self.log_text());
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        panic!("denylistd did not stop within 30 s:\n{}", self.log_text());
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
