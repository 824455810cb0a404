//! What denylistd keeps on bpffs so filtering outlives it.
//!
//! Under `--bpffs` (default `/sys/fs/bpf/denylist`):
//! - `link-IFACE`: the pinned XDP link of each attached interface. The kernel
//!   keeps a pinned link attached after its process exits.
//! - `gen-N/`: the maps of generation N, in this release's layout and the
//!   configured capacity.
//!
//! Every start of the daemon builds a new generation from the store, moves
//! the links to it with one BPF_LINK_UPDATE each, then unpins the older
//! generations. The old program keeps filtering with the old maps until the
//! swap, so there is no window in which packets pass, and a new capacity or
//! a new layout needs no special path: it is just the next generation.

use std::{
    ffi::CString,
    fs, io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
};

use super::sys::{BpfAttr, bpf};

/// statfs f_type of bpffs (include/uapi/linux/magic.h).
const BPF_FS_MAGIC: i64 = 0xcafe4a11;
/// Where bpffs belongs; mounted by us only when nothing is mounted there.
const DEFAULT_BPFFS: &str = "/sys/fs/bpf";

#[derive(Debug, thiserror::Error)]
pub enum PinsError {
    #[error(
        "{path} is not on bpffs: mount it (`mount -t bpf bpf /sys/fs/bpf`) or point --bpffs below a bpffs mount"
    )]
    NotBpffs { path: PathBuf },
    #[error(
        "mounting bpffs on {DEFAULT_BPFFS} failed: {source} (run as root, in the host's mount namespace)"
    )]
    Mount { source: io::Error },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("another denylistd holds {path}: stop it first (systemctl stop denylistd)")]
    Held { path: PathBuf },
}

/// A running daemon's claim on its pin directory: an exclusive flock on the
/// directory, which the kernel drops when the process ends, however it
/// ends. `denylistd --unpin` checks it, so it never unpins under a live
/// daemon, whatever socket that daemon serves.
#[derive(Debug)]
pub struct PinsLock {
    _lock: nix::fcntl::Flock<fs::File>,
}

/// Claims `dir`, which must exist; [`PinsError::Held`] while another
/// process holds it.
pub fn lock_pins(dir: &Path) -> Result<PinsLock, PinsError> {
    let file = fs::File::open(dir).map_err(io_err(dir))?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(PinsLock { _lock: lock }),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(PinsError::Held {
            path: dir.to_path_buf(),
        }),
        Err((_, e)) => Err(io_err(dir)(e.into())),
    }
}

/// What [`unpin_all`] took away, and what it left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cleared {
    /// The interfaces whose links were unpinned.
    pub links: Vec<String>,
    /// Files that are neither a link nor a generation: not denylistd's, so
    /// left, with the directory.
    pub kept: Vec<String>,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> PinsError + '_ {
    move |source| PinsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn fs_type(path: &Path) -> io::Result<i64> {
    Ok(nix::sys::statfs::statfs(path)?.filesystem_type().0)
}

/// Mounts bpffs on /sys/fs/bpf when nothing is mounted there; a fresh
/// machine boots without it.
pub fn ensure_bpffs_mounted() -> Result<(), PinsError> {
    let base = Path::new(DEFAULT_BPFFS);
    if fs_type(base).is_ok_and(|t| t == BPF_FS_MAGIC) {
        return Ok(());
    }
    let mounted = fs::read_to_string("/proc/self/mounts")
        .map_err(io_err(Path::new("/proc/self/mounts")))?
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(DEFAULT_BPFFS));
    if mounted {
        // Something else is mounted there: not ours to cover.
        return Ok(());
    }
    nix::mount::mount(
        Some("bpf"),
        DEFAULT_BPFFS,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| PinsError::Mount { source: e.into() })
}

const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;

/// `union bpf_attr` for BPF_OBJ_PIN (include/uapi/linux/bpf.h), with the
/// tail padding spelled out: the kernel wants every byte past the
/// command's fields zero.
#[repr(C)]
struct PinAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    pad: u32,
}

/// `union bpf_attr` for BPF_LINK_GET_FD_BY_ID.
#[repr(C)]
struct GetFdAttr {
    link_id: u32,
    next_id: u32,
    open_flags: u32,
}

// SAFETY: both are their commands' members of bpf_attr with explicit
// padding; PinAttr's path points into a CString kept alive across the call.
unsafe impl BpfAttr for PinAttr {}
// SAFETY: as above; GetFdAttr holds no pointer.
unsafe impl BpfAttr for GetFdAttr {}

/// Pins the BPF link with kernel id `id` at `path`. The link stays as it
/// is: the fd it is pinned through is closed again, and the pin holds it.
pub fn pin_link(id: u32, path: &Path) -> io::Result<()> {
    let mut get = GetFdAttr {
        link_id: id,
        next_id: 0,
        open_flags: 0,
    };
    let raw = bpf(BPF_LINK_GET_FD_BY_ID, &mut get)?;
    // SAFETY: the kernel just returned this fd, and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
    let mut pin = PinAttr {
        pathname: c.as_ptr() as u64,
        bpf_fd: fd.as_raw_fd() as u32,
        file_flags: 0,
        path_fd: 0,
        pad: 0,
    };
    bpf(BPF_OBJ_PIN, &mut pin).map(drop)
}

/// Takes the filter away for good: unpins every link under `dir` (each
/// detaches its interface once no process holds it, so no daemon may run:
/// [`PinsError::Held`] while one does),
/// every generation's maps, and removes `dir`; `None` when `dir` does not
/// exist. Anything in `dir` that is neither a link nor a generation is
/// left, with `dir`, and reported: the filter goes either way.
pub fn unpin_all(dir: &Path) -> Result<Option<Cleared>, PinsError> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(dir)(e)),
        Ok(_) => {}
    }
    // Only bpffs: a `bpffs` key pointing at an ordinary directory must not
    // have its files deleted.
    if fs_type(dir).map_err(io_err(dir))? != BPF_FS_MAGIC {
        return Err(PinsError::NotBpffs {
            path: dir.to_path_buf(),
        });
    }
    // A live daemon holds the directory: unpinning under it would leave
    // its links attached through its handles, and its pin watch would pin
    // them again.
    let pins = Pins {
        dir: dir.to_path_buf(),
        _lock: Some(lock_pins(dir)?),
    };
    let links = pins.links()?;
    for iface in &links {
        pins.remove_link(iface)?;
    }
    for g in pins.generations()? {
        pins.remove_generation(g)?;
    }
    let mut left = Vec::new();
    for e in fs::read_dir(dir).map_err(io_err(dir))? {
        left.push(
            e.map_err(io_err(dir))?
                .file_name()
                .to_string_lossy()
                .into_owned(),
        );
    }
    left.sort();
    if left.is_empty() {
        fs::remove_dir(dir).map_err(io_err(dir))?;
    }
    Ok(Some(Cleared { links, kept: left }))
}

/// The pin directory, checked to be on the host's bpffs.
pub struct Pins {
    dir: PathBuf,
    /// Held by the daemon's pins ([`Pins::open`]) while it runs.
    _lock: Option<PinsLock>,
}

impl Pins {
    /// Creates `dir` (mode 0700), checks that it is on bpffs, and claims
    /// it for this process ([`lock_pins`]) before anything in it changes.
    pub fn open(dir: &Path) -> Result<Self, PinsError> {
        if dir.starts_with(DEFAULT_BPFFS) {
            ensure_bpffs_mounted()?;
        }
        let mut pins = Self {
            dir: dir.to_path_buf(),
            _lock: None,
        };
        pins.ensure_dir()?;
        if fs_type(dir).map_err(io_err(dir))? != BPF_FS_MAGIC {
            return Err(PinsError::NotBpffs {
                path: dir.to_path_buf(),
            });
        }
        pins._lock = Some(lock_pins(dir)?);
        Ok(pins)
    }

    /// Creates the directory (mode 0700) if it is missing, e.g. deleted
    /// behind our back.
    pub fn ensure_dir(&self) -> Result<(), PinsError> {
        if self.dir.exists() {
            return Ok(());
        }
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io_err(&self.dir))
    }

    pub fn link(&self, iface: &str) -> PathBuf {
        self.dir.join(format!("link-{iface}"))
    }

    /// Interfaces with a pinned link.
    pub fn links(&self) -> Result<Vec<String>, PinsError> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let e = e.map_err(io_err(&self.dir))?;
            if let Some(iface) = e.file_name().to_str().and_then(|n| n.strip_prefix("link-")) {
                out.push(iface.to_string());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Existing generations, oldest first.
    pub fn generations(&self) -> Result<Vec<u64>, PinsError> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let e = e.map_err(io_err(&self.dir))?;
            if let Some(n) = e
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("gen-"))
                .and_then(|n| n.parse().ok())
            {
                out.push(n);
            }
        }
        out.sort();
        Ok(out)
    }

    pub fn generation(&self, n: u64) -> PathBuf {
        self.dir.join(format!("gen-{n}"))
    }

    /// A new, empty generation directory after every existing one.
    pub fn new_generation(&self) -> Result<(u64, PathBuf), PinsError> {
        let n = self.generations()?.last().map_or(1, |g| g + 1);
        let path = self.generation(n);
        fs::create_dir(&path).map_err(io_err(&path))?;
        Ok((n, path))
    }

    /// Unpins a generation's maps; the kernel frees them once no program
    /// uses them.
    pub fn remove_generation(&self, n: u64) -> Result<(), PinsError> {
        let path = self.generation(n);
        fs::remove_dir_all(&path).map_err(io_err(&path))
    }

    /// Unpins an interface's link, which detaches it once no fd holds it.
    pub fn remove_link(&self, iface: &str) -> Result<(), PinsError> {
        let path = self.link(iface);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claimed_pin_directory_is_held_until_its_claim_goes() {
        let dir = std::env::temp_dir().join(format!(
            "denylist-pins-lock-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        fs::create_dir_all(&dir).unwrap();
        let first = lock_pins(&dir).unwrap();
        // Another open of the directory, as another process's would be.
        assert!(matches!(lock_pins(&dir), Err(PinsError::Held { .. })));
        drop(first);
        assert!(lock_pins(&dir).is_ok());
        let _ = fs::remove_dir_all(dir);
    }
}
