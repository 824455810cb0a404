//! Facts about this checkout, this user and this process that the tasks need.

use std::{
    env,
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    sync::LazyLock,
};

use anyhow::{Context as _, bail};

/// The workspace root: the directory that holds xtask/.
///
/// `cargo run` gives the manifest directory of the checkout it runs from;
/// the one compiled in is only a fallback. Two checkouts sharing one
/// CARGO_TARGET_DIR share this binary, and cargo does not rebuild it for a
/// change of path alone, so the compiled-in path can name the other
/// checkout (a bench once built and measured a stale clone that way).
pub fn workspace_root() -> &'static Path {
    static ROOT: LazyLock<PathBuf> = LazyLock::new(|| {
        let manifest = env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
        manifest
            .parent()
            .expect("xtask's manifest directory is inside the workspace")
            .to_path_buf()
    });
    &ROOT
}

/// Where cargo builds: `CARGO_TARGET_DIR` if set, else `target/` in the
/// workspace.
pub fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// `CARGO_HOME`, or `~/.cargo` when it is unset.
pub fn cargo_home() -> anyhow::Result<PathBuf> {
    if let Some(home) = env::var_os("CARGO_HOME") {
        return Ok(PathBuf::from(home));
    }
    let home =
        env::var_os("HOME").context("neither CARGO_HOME nor HOME is set: set one of them")?;
    Ok(PathBuf::from(home).join(".cargo"))
}

/// `PATH` with `$CARGO_HOME/bin` in front when it is not already on it, so
/// that a bpf-linker installed by setup is found by every build.
pub fn search_path() -> anyhow::Result<OsString> {
    let cargo_bin = cargo_home()?.join("bin");
    let path = env::var_os("PATH").unwrap_or_default();
    if env::split_paths(&path).any(|dir| dir == cargo_bin) {
        return Ok(path);
    }
    env::join_paths(std::iter::once(cargo_bin).chain(env::split_paths(&path)))
        .context("cannot add $CARGO_HOME/bin to PATH: remove any ':' from CARGO_HOME")
}

/// Whether this process runs with effective user id 0, read from the `Uid:`
/// line of /proc/self/status (real, effective, saved, filesystem).
pub fn is_root() -> anyhow::Result<bool> {
    let status = fs::read_to_string("/proc/self/status")
        .context("cannot read /proc/self/status: denylist needs Linux with /proc mounted")?;
    let Some(uids) = status.lines().find_map(|line| line.strip_prefix("Uid:")) else {
        bail!("/proc/self/status has no Uid line: denylist needs Linux with /proc mounted");
    };
    let effective = uids
        .split_whitespace()
        .nth(1)
        .context("the Uid line of /proc/self/status has no effective uid")?;
    Ok(effective == "0")
}
