//! `denylistd --unpin`: takes the filter away when no daemon will look
//! after it any more, as the package does when it is removed. A pinned
//! link keeps its interface filtered after every process has gone, so a
//! removed package would otherwise leave packets dropped by a list nobody
//! can change.

use std::{os::unix::net::UnixStream, path::PathBuf};

use super::{Config, DEFAULT_BPFFS};
use crate::dataplane::{Cleared, PinsError, unpin_all};

#[derive(Debug, thiserror::Error)]
pub enum UnpinError {
    #[error(
        "a denylistd answers on {socket}: stop it first (systemctl stop denylistd), or it would keep the interfaces attached through its own handles and lose its pins"
    )]
    DaemonRunning { socket: PathBuf },
    #[error("cannot unpin the filter: {0}")]
    Pins(#[from] PinsError),
}

/// What [`unpin`] did in one pin directory: `None` when it did not exist.
#[derive(Debug, PartialEq, Eq)]
pub struct Unpinned {
    pub dir: PathBuf,
    pub cleared: Option<Cleared>,
}

/// Unpins every link and map under `config.bpffs`, and under the default
/// directory too (a daemon may have pinned there before the config named
/// another), and removes them, unless a daemon answers on
/// `config.socket`: its open link handles would keep the interfaces
/// attached, unpinned.
pub fn unpin(config: &Config) -> Result<Vec<Unpinned>, UnpinError> {
    // A stale socket left by a stopped daemon refuses the connection.
    if UnixStream::connect(&config.socket).is_ok() {
        return Err(UnpinError::DaemonRunning {
            socket: config.socket.clone(),
        });
    }
    let mut dirs = vec![config.bpffs.clone()];
    if config.bpffs != std::path::Path::new(DEFAULT_BPFFS) {
        dirs.push(DEFAULT_BPFFS.into());
    }
    dirs.into_iter()
        .map(|dir| {
            Ok(Unpinned {
                cleared: unpin_all(&dir)?,
                dir,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use clap::Parser as _;

    use super::*;
    use crate::daemon::Args;

    fn config(dir: &std::path::Path) -> Config {
        let args = Args::try_parse_from([
            "denylistd",
            "--socket",
            dir.join("d.sock").to_str().unwrap(),
            "--bpffs",
            dir.join("pins").to_str().unwrap(),
        ])
        .unwrap();
        Config::from_args(args).unwrap()
    }

    #[test]
    fn refused_while_a_daemon_answers_and_nothing_pinned_is_no_error() {
        let dir = std::env::temp_dir().join(format!("denylist-unpin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let c = config(&dir);
        let listener = UnixListener::bind(&c.socket).unwrap();
        let e = unpin(&c).unwrap_err();
        assert!(matches!(e, UnpinError::DaemonRunning { .. }), "{e}");
        // Gone, the daemon leaves a socket that refuses connections.
        drop(listener);
        let done = unpin(&c).unwrap();
        assert_eq!(done[0].dir, c.bpffs);
        assert!(done.iter().all(|u| u.cleared.is_none()), "{done:?}");
        // A directory that is not on bpffs keeps its files.
        std::fs::create_dir_all(&c.bpffs).unwrap();
        std::fs::write(c.bpffs.join("link-eth0"), "").unwrap();
        let e = unpin(&c).unwrap_err();
        assert!(
            matches!(e, UnpinError::Pins(PinsError::NotBpffs { .. })),
            "{e}"
        );
        assert!(c.bpffs.join("link-eth0").exists());
        let _ = std::fs::remove_dir_all(dir);
    }
}
