//! Network-namespace sandbox for the XDP denylist traffic tests.
//!
//! Each test builds two private network namespaces joined by a veth pair,
//! attaches the denylist to the receiving veth and sends real pings from
//! chosen source addresses. Namespaces keep tests from touching the host's
//! interfaces, routes or XDP slots, and from seeing each other.
//!
//! Machine facts this module is built around (checked by hand on the 6.18
//! test kernel):
//!
//! * `ip netns exec` remounts `/sys` in the child, so bpffs pins under
//!   `/sys/fs/bpf` disappear there. Commands therefore go through
//!   `nsenter --net=...`, which only switches the network namespace, and Rust
//!   code goes through [`Netns::enter`], which only switches one thread.
//! * The kernel is built without `CONFIG_VLAN_8021Q` (so `ip link add ...
//!   type vlan` fails with "Unknown device type") and without
//!   `CONFIG_BRIDGE_VLAN_FILTERING`. It is also built without `act_vlan`.
//!   Tagged traffic is therefore made with two tiny tcx BPF programs instead
//!   of VLAN sub-interfaces. See [`PairConfig::vlan`].
//! * Neighbour entries are static and IPv6 DAD is off, so no ARP/ND exchange
//!   is needed before a ping. Traffic is then deterministic and starts the
//!   moment the links are up.

mod blast;
mod bpf;
mod flood;
mod pair;
#[cfg(test)]
mod tests;
mod vlan;

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};

pub use blast::{Blast, Sources, TrafgenReport};
pub use flood::{Flood, assert_no_gap};
pub use pair::{Pair, PairConfig};

/// Where `ip netns add` bind-mounts namespaces. Everything (iproute2,
/// nsenter, setns) finds a namespace by this path.
const NETNS_DIR: &str = "/var/run/netns";

/// Makes namespace names unique inside one test process. The pid makes them
/// unique across processes.
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A named network namespace owned by one test. It is deleted on drop,
/// also when the test panics, so the next run starts clean.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace with a name that is unique per process and
    /// call (`dl<tag>-<pid>-<n>`). The separators stop two processes from
    /// producing the same name (pid 12 call 34 vs pid 123 call 4).
    /// Loopback is brought up because some tools expect it, and it is down
    /// in a new namespace.
    pub fn new(tag: &str) -> Result<Netns> {
        if tag.is_empty() || tag.len() > 12 || !tag.chars().all(|c| c.is_ascii_alphanumeric()) {
            bail!("netns tag {tag:?} must be 1..=12 ASCII alphanumerics");
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("dl{tag}-{}-{n}", std::process::id());
        // A name can only exist already if an earlier process with the same
        // (recycled) pid was killed before its Drop ran. No live process can
        // own it, so clear it out instead of failing.
        if Path::new(NETNS_DIR).join(&name).exists() {
            let _ = run_checked(Command::new("ip").args(["netns", "del", &name]));
        }
        run_checked(Command::new("ip").args(["netns", "add", &name]))?;
        // Build the guard right away so a failure below still deletes the
        // namespace.
        let ns = Netns { name };
        ns.run(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The name that iproute2 (`ip ... netns NAME`) and error messages use.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind-mount path, for anything that needs a namespace fd
    /// (nsenter, setns, `ip link set ... netns`).
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.name)
    }

    /// A command that runs inside the namespace. This uses nsenter, not
    /// `ip netns exec`, so `/sys` and bpffs pins stay visible to it.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path().display()))
            .arg("--")
            .arg(program);
        c
    }

    /// Runs a setup command where any failure is a test-setup bug. The error
    /// carries stderr, so the cause shows up in the test output.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let (program, rest) = args.split_first().context("Netns::run needs a program")?;
        run_checked(self.cmd(program).args(rest)).with_context(|| format!("in netns {}", self.name))
    }

    /// Runs Rust code (e.g. attaching XDP by interface name, or opening
    /// sockets) inside the namespace. setns only moves the calling thread,
    /// so the closure runs on a fresh thread. The test thread and other
    /// tests stay in the host namespace. A panic in `f` is re-raised here,
    /// as if `f` had been called directly.
    pub fn enter<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> Result<R> {
        // Open here and not in the thread, so a missing namespace shows up as
        // a plain error with the path.
        let file = File::open(self.path())
            .with_context(|| format!("opening {}", self.path().display()))?;
        let name = self.name.clone();
        let handle = std::thread::Builder::new()
            .name(format!("netns-{}", self.name))
            .spawn(move || -> Result<R> {
                // SAFETY: plain syscall on a valid, open fd. It affects only this
                // thread, which exits when the closure returns.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    return Err(std::io::Error::last_os_error())
                        .with_context(|| format!("setns into {name}"));
                }
                drop(file);
                Ok(f())
            })
            .context("spawning netns thread")?;
        match handle.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Setup commands read best as one line, and none of their words
    /// (interface names, addresses, numbers) contain spaces.
    fn sh(&self, line: &str) -> Result<String> {
        self.run(&line.split_whitespace().collect::<Vec<_>>())
    }

    /// Sets a sysctl in this namespace. /proc/sys/net follows the writing
    /// thread's namespace, so this needs no procps binary. `path` uses
    /// slashes because interface names may contain dots.
    fn sysctl(&self, path: &str, value: &'static str) -> Result<()> {
        let file = format!("/proc/sys/{path}");
        self.enter(move || std::fs::write(&file, value).with_context(|| format!("writing {file}")))?
            .with_context(|| format!("in netns {}", self.name))
    }
}

impl Drop for Netns {
    /// Deleting the namespace also destroys the veth end and any XDP/tcx
    /// attachment in it, so this one call is the whole cleanup. Errors are
    /// ignored because Drop cannot report them and may run while panicking.
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Runs a command and turns a non-zero exit into an error with its stderr,
/// because a bare "exit status 2" from a setup step cannot be debugged.
fn run_checked(cmd: &mut Command) -> Result<String> {
    let desc = format!("{cmd:?}");
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().with_context(|| format!("spawning {desc}"))?;
    if !status.success() {
        bail!(
            "{desc} failed ({status}): {}{}",
            String::from_utf8_lossy(&stderr).trim_end(),
            String::from_utf8_lossy(&stdout).trim_end()
        );
    }
    String::from_utf8(stdout).with_context(|| format!("non-UTF-8 output from {desc}"))
}

/// Interface index in the calling thread's namespace. Use it inside
/// [`Netns::enter`], because ifindexes are per namespace.
fn ifindex(ifname: &str) -> Result<u32> {
    let c = CString::new(ifname)?;
    // SAFETY: `c` is a valid NUL-terminated string for the call's duration.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("no interface {ifname}"));
    }
    Ok(idx)
}
