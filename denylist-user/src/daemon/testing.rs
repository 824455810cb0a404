//! A core for the tests of the layers above it, which may not reach the
//! data plane themselves: a real store in a temporary directory and the
//! in-memory filter in place of the kernel.

use std::path::{Path, PathBuf};

use super::{Args, Config, Core};
use crate::{dataplane::fake::FakeFilter, store::SqliteStore};

/// A state directory that goes when the test ends, even a failed one.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "denylist-{name}-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).expect("creating a temporary directory");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A small core's flags, with its state, pins and feed directory under
/// `dir`: for a test that sets more of them.
pub fn args(dir: &Path) -> Args {
    Args {
        state_dir: Some(dir.join("state")),
        bpffs: Some(dir.join("bpffs")),
        feed_dir: Some(dir.join("feeds")),
        capacity: Some(1024),
        ..Args::default()
    }
}

/// A small core's configuration, with its state, pins and feed directory
/// under `dir`.
pub fn config(dir: &Path) -> Config {
    Config::from_args(args(dir)).expect("a valid test configuration")
}

/// A core over an empty store in `dir` and a fake filter with no
/// interface.
pub fn core(dir: &TempDir) -> Core {
    let config = config(&dir.0);
    let store = SqliteStore::open(&config.state_dir).expect("opening the test store");
    let filter = FakeFilter::new(config.layout, &[]);
    Core::assemble(config, Box::new(store), Box::new(filter), &[]).expect("assembling the core")
}
