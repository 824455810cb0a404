//! denylistd's options: flags, or the same keys in a TOML file given with
//! `--config`. Flags override the file; a repeated `--iface` adds to the
//! file's list.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::Parser;
use serde::Deserialize;

use crate::{
    dataplane::Layout,
    model::{AttachMode, parse_duration},
    wire::DEFAULT_SOCKET,
};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/denylist";
pub const DEFAULT_BPFFS: &str = "/sys/fs/bpf/denylist";
/// Reserves about 24 MiB of kernel memory up front (docs/dataplane.md).
pub const DEFAULT_CAPACITY: u64 = 131_072;

#[derive(Debug, Parser, Default)]
#[command(
    name = "denylistd",
    version,
    about = "The denylist daemon: owns the list, deploys it into the XDP program, serves the API"
)]
pub struct Args {
    /// A TOML file with any of these options (keys as the flags, without --).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// An interface to filter (repeatable).
    #[arg(long = "iface", value_name = "IFACE")]
    pub iface: Vec<String>,
    /// auto tries native XDP, then falls back to skb with a warning.
    #[arg(long, value_enum)]
    pub xdp_mode: Option<AttachMode>,
    /// The API socket [default: /run/denylist/denylist.sock].
    #[arg(long, env = "DENYLIST_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Where the store lives [default: /var/lib/denylist].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Where the XDP links and the maps are pinned [default: /sys/fs/bpf/denylist].
    #[arg(long)]
    pub bpffs: Option<PathBuf>,
    /// Entries across both lists and both families [default: 131072].
    #[arg(long)]
    pub capacity: Option<u64>,
    /// Members may read and change [default: denylist-admin].
    #[arg(long)]
    pub admin_group: Option<String>,
    /// Members may read [default: denylist].
    #[arg(long)]
    pub viewer_group: Option<String>,
    /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9187.
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// TTL of new deny entries that give none, e.g. 30d.
    #[arg(long, value_parser = parse_duration)]
    pub default_ttl: Option<Duration>,
    /// Refuse to block peers with an established TCP connection to this port (repeatable) [default: 22].
    #[arg(long = "protect-port", value_name = "PORT")]
    pub protect_port: Vec<u16>,
    /// How often expired entries are swept [default: 10s].
    #[arg(long, value_parser = parse_duration)]
    pub expiry_sweep: Option<Duration>,
    /// Detach the program when the daemon exits (default: keep filtering).
    #[arg(long)]
    pub detach_on_exit: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct File {
    #[serde(default)]
    iface: Vec<String>,
    xdp_mode: Option<AttachMode>,
    socket: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    bpffs: Option<PathBuf>,
    capacity: Option<u64>,
    admin_group: Option<String>,
    viewer_group: Option<String>,
    metrics: Option<SocketAddr>,
    default_ttl: Option<String>,
    #[serde(default)]
    protect_port: Vec<u16>,
    expiry_sweep: Option<String>,
    detach_on_exit: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the config file {path} is invalid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// Every option, resolved.
#[derive(Debug, Clone)]
pub struct Config {
    pub ifaces: Vec<String>,
    pub xdp_mode: AttachMode,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub bpffs: PathBuf,
    pub layout: Layout,
    pub admin_group: String,
    pub viewer_group: String,
    pub metrics: Option<SocketAddr>,
    pub default_ttl: Option<Duration>,
    pub protect_ports: Vec<u16>,
    pub expiry_sweep: Duration,
    pub detach_on_exit: bool,
}

impl Config {
    pub fn from_args(args: Args) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => File::default(),
        };
        let dur = |flag: Option<Duration>,
                   file: Option<String>,
                   name: &str|
         -> Result<Option<Duration>, ConfigError> {
            match (flag, file) {
                (Some(d), _) => Ok(Some(d)),
                (None, Some(s)) => parse_duration(&s)
                    .map(Some)
                    .map_err(|e| ConfigError::Invalid(format!("{name}: {e}"))),
                (None, None) => Ok(None),
            }
        };
        let mut ifaces = file.iface;
        for i in args.iface {
            if !ifaces.contains(&i) {
                ifaces.push(i);
            }
        }
        let capacity = args.capacity.or(file.capacity).unwrap_or(DEFAULT_CAPACITY);
        let layout =
            Layout::new(capacity).map_err(|e| ConfigError::Invalid(format!("--capacity: {e}")))?;
        let expiry_sweep = dur(args.expiry_sweep, file.expiry_sweep, "expiry-sweep")?
            .unwrap_or(Duration::from_secs(10));
        if expiry_sweep.is_zero() {
            return Err(ConfigError::Invalid(
                "--expiry-sweep must be longer than 0s".into(),
            ));
        }
        let default_ttl = dur(args.default_ttl, file.default_ttl, "default-ttl")?;
        if default_ttl.is_some_and(|d| d.as_secs() == 0 || d.as_secs() > super::MAX_TTL_SECS) {
            return Err(ConfigError::Invalid(
                "--default-ttl must be between 1s and 100 years (leave it out for entries that never expire)".into(),
            ));
        }
        let mut protect_ports = if args.protect_port.is_empty() {
            file.protect_port
        } else {
            args.protect_port
        };
        if protect_ports.is_empty() {
            protect_ports.push(22);
        }
        Ok(Self {
            ifaces,
            xdp_mode: args.xdp_mode.or(file.xdp_mode).unwrap_or(AttachMode::Auto),
            socket: args
                .socket
                .or(file.socket)
                .unwrap_or_else(|| DEFAULT_SOCKET.into()),
            state_dir: args
                .state_dir
                .or(file.state_dir)
                .unwrap_or_else(|| DEFAULT_STATE_DIR.into()),
            bpffs: args
                .bpffs
                .or(file.bpffs)
                .unwrap_or_else(|| DEFAULT_BPFFS.into()),
            layout,
            admin_group: args
                .admin_group
                .or(file.admin_group)
                .unwrap_or_else(|| "denylist-admin".into()),
            viewer_group: args
                .viewer_group
                .or(file.viewer_group)
                .unwrap_or_else(|| "denylist".into()),
            metrics: args.metrics.or(file.metrics),
            default_ttl,
            protect_ports,
            expiry_sweep,
            detach_on_exit: args.detach_on_exit || file.detach_on_exit.unwrap_or(false),
        })
    }
}

fn read_file(path: &Path) -> Result<File, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.message().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("denylistd").chain(list.iter().copied())).unwrap()
    }

    #[test]
    fn defaults() {
        let c = Config::from_args(args(&[])).unwrap();
        assert_eq!(c.socket, PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(c.layout.capacity as u64, DEFAULT_CAPACITY);
        assert_eq!(c.protect_ports, [22]);
        assert_eq!(c.expiry_sweep, Duration::from_secs(10));
        assert_eq!(c.xdp_mode, AttachMode::Auto);
        assert!(!c.detach_on_exit);
    }

    #[test]
    fn flags_override_the_file_and_ifaces_add_up() {
        let dir = std::env::temp_dir().join(format!("denylist-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("d.toml");
        std::fs::write(
            &path,
            "iface = [\"eth0\"]\ncapacity = 5000\nxdp-mode = \"skb\"\ndefault-ttl = \"7d\"\nprotect-port = [2222]\n",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let c = Config::from_args(args(&[
            "--config",
            p,
            "--iface",
            "eth1",
            "--capacity",
            "6000",
        ]))
        .unwrap();
        assert_eq!(c.ifaces, ["eth0", "eth1"]);
        assert_eq!(c.layout.capacity, 6000);
        assert_eq!(c.xdp_mode, AttachMode::Skb);
        assert_eq!(c.default_ttl, Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(c.protect_ports, [2222]);
        std::fs::write(&path, "colour = \"red\"\n").unwrap();
        let e = Config::from_args(args(&["--config", p]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        assert!(Args::try_parse_from(["denylistd", "--xdp-mode", "turbo"]).is_err());
        assert!(Args::try_parse_from(["denylistd", "--expiry-sweep", "soon"]).is_err());
        let e = Config::from_args(args(&["--capacity", "1"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("choose between"), "{e}");
    }
}
