//! What can go wrong between user space and the kernel's maps and links.

use std::path::PathBuf;

use aya::{maps::MapError, pin::PinError, programs::ProgramError};

use super::{PinsError, trie::TrieError};
use crate::model::{List, Target};

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error(
        "loading the XDP program failed: {0} (run as root, on a kernel with BTF, 6.1 or newer)"
    )]
    Load(#[from] aya::EbpfError),
    #[error("the XDP program was rejected: {0}")]
    Program(#[source] ProgramError),
    #[error("cannot read the possible CPUs from /sys/devices/system/cpu/possible: mount sysfs")]
    Cpus,
    #[error("the object has no map {name}: rebuild denylist")]
    MissingMap { name: &'static str },
    #[error("mapping {name} into memory failed: {source}")]
    Mmap {
        name: &'static str,
        source: std::io::Error,
    },
    #[error(
        "duplicating the descriptor of kernel map {name}: {source} (raise the daemon's open-file limit)"
    )]
    Dup {
        name: &'static str,
        source: std::io::Error,
    },
    #[error("kernel map {name}: {source}")]
    Map {
        name: &'static str,
        source: MapError,
    },
    #[error(
        "{needed} entries would exceed the capacity of {capacity}: restart denylistd with a larger --capacity"
    )]
    Capacity { needed: usize, capacity: u32 },
    #[error(transparent)]
    Prefix(#[from] TrieError),
    #[error("{target} is not on the {list:?} list in the kernel")]
    NotInstalled { target: Target, list: List },
    #[error("{target} ({list:?}) appears more than once in one change")]
    Duplicate { target: Target, list: List },
    #[error("cannot attach to {iface}: {source}")]
    Attach { iface: String, source: ProgramError },
    #[error("{iface} is not attached")]
    NotAttached { iface: String },
    #[error("batch {op} of kernel map {name}: {source}")]
    Batch {
        op: &'static str,
        name: &'static str,
        source: std::io::Error,
    },
    #[error("pinning {path}: {source}")]
    Pin { path: PathBuf, source: PinError },
    #[error("creating the pin directory {path}: {source}")]
    PinDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Pins(#[from] PinsError),
    #[error("the pinned link {path} cannot be used: {detail}")]
    Link { path: PathBuf, detail: String },
}
