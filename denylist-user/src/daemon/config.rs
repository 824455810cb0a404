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
    wire::{DEFAULT_SOCKET, WebRole},
};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/denylist";
pub const DEFAULT_BPFFS: &str = "/sys/fs/bpf/denylist";
/// Reserves about 24 MiB of kernel memory up front (docs/dataplane.md).
pub const DEFAULT_CAPACITY: u64 = 131_072;
/// A year and a month: a yearly review still finds the year before.
pub const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(400 * 86_400);

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
    /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:19478.
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
    /// Instead of serving: detach every interface the filter holds, unpin
    /// the links and maps under --bpffs and remove that directory, then exit
    /// (the package runs this on removal). Refused while a daemon answers on
    /// --socket.
    #[arg(long, help_heading = "Modes", conflicts_with = "write_man")]
    pub unpin: bool,
    /// Instead of serving: write the man pages denylistd.8 and
    /// denylistd.toml.5 into DIR, then exit.
    #[arg(long, value_name = "DIR", help_heading = "Modes")]
    pub write_man: Option<PathBuf>,
    /// Instead of serving: create the fleet's tables in the --store
    /// database, or check those it has, then exit. Run it once as the
    /// database's owner; nodes connect with a role that may not
    /// (docs/fleet.md).
    #[arg(long, help_heading = "Modes", requires = "store")]
    pub init_fleet: bool,
    /// Instead of serving: move this host's store (under --state-dir),
    /// history and audit included, into the empty fleet at --store, then
    /// exit; started with --store, this host is then the fleet's first
    /// node. Refused while a denylistd answers on --socket, and when the
    /// database holds a fleet already.
    #[arg(
        long,
        help_heading = "Modes",
        requires = "store",
        conflicts_with = "init_fleet"
    )]
    pub move_to_fleet: bool,
    /// Prune audit events and revisions older than this, keeping the
    /// deployed revision and what a rollback needs [default: 400d].
    #[arg(long, value_parser = parse_duration)]
    pub audit_retention: Option<Duration>,
    /// Members may only report abusive addresses (and read their own
    /// reports) [default: denylist-reporter].
    #[arg(long)]
    pub reporter_group: Option<String>,
    /// The only directory feeds may read file:// lists and header files
    /// from [default: /etc/denylist/feeds].
    #[arg(long)]
    pub feed_dir: Option<PathBuf>,
    /// Let feeds fetch from loopback, private, link-local and metadata
    /// addresses, which are refused by default so that a feed cannot reach
    /// internal services on an admin's behalf.
    #[arg(long)]
    pub feed_allow_private: bool,
    /// How long one feed fetch may take, connection and body [default: 60s].
    #[arg(long, value_parser = parse_duration)]
    pub feed_timeout: Option<Duration>,
    /// Members may act on behalf of a web console's users, naming each in
    /// the Denylist-On-Behalf-Of and Denylist-Role headers; nobody else may
    /// send those headers [default: denylist-web].
    #[arg(long)]
    pub web_group: Option<String>,
    /// The highest role a web user gets, whatever the console asks for:
    /// viewer keeps every change off the console [default: admin].
    #[arg(long, value_enum)]
    pub web_max_role: Option<WebRole>,
    /// Fleet mode: keep the shared state in this PostgreSQL database, e.g.
    /// postgres://denylist_node@db.example/denylist?sslmode=verify-full
    /// (docs/fleet.md). The local store under --state-dir becomes this
    /// node's copy. A URL with a password is refused.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// The database password, alone in a file only its owner may read.
    #[arg(long, value_name = "FILE")]
    pub store_password_file: Option<PathBuf>,
    /// This node's name in the fleet [default: the host name].
    #[arg(long)]
    pub node: Option<String>,
}

/// The flags that are no option of a running daemon, so no keys of the
/// config file either: the file itself, and the modes that replace serving.
const NOT_KEYS: [&str; 5] = [
    "config",
    "unpin",
    "write-man",
    "init-fleet",
    "move-to-fleet",
];

/// The flags that are also keys of the config file, as clap describes them
/// (the key is the long flag's name): what denylistd.toml(5) documents.
pub fn config_keys() -> Vec<clap::Arg> {
    use clap::CommandFactory as _;
    Args::command()
        .get_arguments()
        .filter(|a| {
            a.get_long()
                .is_some_and(|l| !NOT_KEYS.contains(&l) && l != "help" && l != "version")
        })
        .cloned()
        .collect()
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
    audit_retention: Option<String>,
    reporter_group: Option<String>,
    feed_dir: Option<PathBuf>,
    feed_allow_private: Option<bool>,
    feed_timeout: Option<String>,
    web_group: Option<String>,
    web_max_role: Option<WebRole>,
    store: Option<String>,
    store_password_file: Option<PathBuf>,
    node: Option<String>,
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
    #[error(transparent)]
    Fleet(#[from] super::FleetError),
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
    pub audit_retention: Duration,
    pub reporter_group: String,
    pub feed_dir: PathBuf,
    pub feed_allow_private: bool,
    pub feed_timeout: Duration,
    pub web_group: String,
    pub web_max_role: WebRole,
    /// Fleet mode's database and node name; None on a single host.
    pub fleet: Option<super::FleetConfig>,
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
        let audit_retention = dur(
            args.audit_retention,
            file.audit_retention,
            "audit-retention",
        )?
        .unwrap_or(DEFAULT_AUDIT_RETENTION);
        if audit_retention.as_secs() < 86_400 {
            return Err(ConfigError::Invalid(
                "--audit-retention must be at least 1d: the audit log is what says who blocked what".into(),
            ));
        }
        let default_ttl = dur(args.default_ttl, file.default_ttl, "default-ttl")?;
        if default_ttl.is_some_and(|d| d.as_secs() == 0 || d.as_secs() > super::MAX_TTL_SECS) {
            return Err(ConfigError::Invalid(
                "--default-ttl must be between 1s and 100 years (leave it out for entries that never expire)".into(),
            ));
        }
        let feed_timeout = dur(args.feed_timeout, file.feed_timeout, "feed-timeout")?
            .unwrap_or(Duration::from_secs(60));
        if feed_timeout.is_zero() {
            return Err(ConfigError::Invalid(
                "--feed-timeout must be longer than 0s".into(),
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
        let fleet = match args.store.or(file.store) {
            Some(url) => {
                let password_file = args.store_password_file.or(file.store_password_file);
                Some(
                    super::FleetConfig::new(
                        &url,
                        password_file.as_deref(),
                        args.node.or(file.node),
                    )?
                    .with_passfile(pgpass_path()),
                )
            }
            None => None,
        };
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
            audit_retention,
            reporter_group: args
                .reporter_group
                .or(file.reporter_group)
                .unwrap_or_else(|| "denylist-reporter".into()),
            feed_dir: args
                .feed_dir
                .or(file.feed_dir)
                .unwrap_or_else(|| super::fetch::DEFAULT_FEED_DIR.into()),
            feed_allow_private: args.feed_allow_private || file.feed_allow_private.unwrap_or(false),
            feed_timeout,
            web_group: args
                .web_group
                .or(file.web_group)
                .unwrap_or_else(|| "denylist-web".into()),
            web_max_role: args
                .web_max_role
                .or(file.web_max_role)
                .unwrap_or(WebRole::Admin),
            fleet,
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

/// libpq's password file: the one `PGPASSFILE` names, else `~/.pgpass`
/// when there is one.
fn pgpass_path() -> Option<PathBuf> {
    match std::env::var_os("PGPASSFILE") {
        Some(p) => Some(PathBuf::from(p)),
        None => std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".pgpass"))
            .filter(|p| p.exists()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("denylistd").chain(list.iter().copied())).unwrap()
    }

    /// The keys `File` accepts, as serde lists them when it refuses an
    /// unknown one.
    fn file_keys() -> Vec<String> {
        let e = toml::from_str::<File>("not-a-key = 1")
            .unwrap_err()
            .to_string();
        let list = e
            .split("expected one of")
            .nth(1)
            .expect("serde lists the keys");
        let mut keys: Vec<String> = list
            .split('`')
            .skip(1)
            .step_by(2)
            .map(String::from)
            .collect();
        keys.sort();
        keys
    }

    fn flag_keys() -> Vec<String> {
        let mut keys: Vec<String> = config_keys()
            .iter()
            .filter_map(|a| a.get_long().map(String::from))
            .collect();
        keys.sort();
        keys
    }

    #[test]
    fn every_flag_is_a_config_key_and_every_key_a_flag() {
        assert!(file_keys().len() > 10, "{:?}", file_keys());
        assert_eq!(flag_keys(), file_keys());
        // And each takes a value the file can carry: the man page's example
        // and the shipped file, uncommented, set every key.
        let example: File = toml::from_str(super::super::man::EXAMPLE).unwrap();
        assert_eq!(example.iface, ["eth0", "eth1"]);
    }

    #[test]
    fn the_shipped_file_means_every_default_and_names_every_key() {
        let shipped = include_str!("../../../packaging/denylistd.toml");
        let dir = std::env::temp_dir().join(format!("denylist-shipped-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("denylistd.toml");
        std::fs::write(&path, shipped).unwrap();
        let as_shipped = Config::from_args(args(&["--config", path.to_str().unwrap()])).unwrap();
        assert!(as_shipped.ifaces.is_empty(), "names no interface");
        // `# key = value` lines, uncommented: every key, and where the
        // daemon has a default, that default.
        let uncommented: String = shipped
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| {
                l.split_once(" = ")
                    .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let mut keys: Vec<String> = uncommented
            .lines()
            .map(|l| l.split(" = ").next().unwrap().to_string())
            .collect();
        keys.sort();
        assert_eq!(keys, flag_keys(), "each key once");
        std::fs::write(&path, &uncommented).unwrap();
        let set = Config::from_args(args(&["--config", path.to_str().unwrap()])).unwrap();
        let d = Config::from_args(args(&[])).unwrap();
        assert_eq!(set.ifaces, d.ifaces);
        assert_eq!(set.xdp_mode, d.xdp_mode);
        assert_eq!(
            (&set.socket, &set.state_dir, &set.bpffs),
            (&d.socket, &d.state_dir, &d.bpffs)
        );
        assert_eq!(set.layout.capacity, d.layout.capacity);
        assert_eq!(
            (&set.admin_group, &set.viewer_group),
            (&d.admin_group, &d.viewer_group)
        );
        assert_eq!(set.protect_ports, d.protect_ports);
        assert_eq!(set.expiry_sweep, d.expiry_sweep);
        assert_eq!(set.detach_on_exit, d.detach_on_exit);
        assert_eq!(set.audit_retention, d.audit_retention);
        assert_eq!(
            (&set.web_group, set.web_max_role),
            (&d.web_group, d.web_max_role)
        );
        // Off by default, so the file shows an example value instead.
        assert!(set.metrics.is_some() && d.metrics.is_none());
        assert!(set.default_ttl.is_some() && d.default_ttl.is_none());
        assert!(set.fleet.is_some_and(|f| f.node == "edge1") && d.fleet.is_none());
        let _ = std::fs::remove_dir_all(dir);
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
        assert_eq!(c.audit_retention, DEFAULT_AUDIT_RETENTION);
        assert_eq!(
            (c.web_group.as_str(), c.web_max_role),
            ("denylist-web", WebRole::Admin)
        );
    }

    #[test]
    fn flags_override_the_file_and_ifaces_add_up() {
        let dir = std::env::temp_dir().join(format!("denylist-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("d.toml");
        std::fs::write(
            &path,
            "iface = [\"eth0\"]\ncapacity = 5000\nxdp-mode = \"skb\"\ndefault-ttl = \"7d\"\nprotect-port = [2222]\nweb-max-role = \"viewer\"\n",
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
        assert_eq!(c.web_max_role, WebRole::Viewer);
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
        assert!(Args::try_parse_from(["denylistd", "--web-max-role", "root"]).is_err());
        let e = Config::from_args(args(&["--capacity", "1"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("choose between"), "{e}");
        let e = Config::from_args(args(&["--audit-retention", "1h"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 1d"), "{e}");
    }
}
