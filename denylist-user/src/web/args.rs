//! `denylist-web`'s command line: the flags of the console, and the
//! `user` commands that manage its accounts file.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::users::{DEFAULT_USERS, Role};
use crate::{model::parse_duration, wire::DEFAULT_SOCKET};

#[derive(Debug, Parser)]
#[command(
    name = "denylist-web",
    version,
    about = "The web console of denylistd: an unprivileged client of its socket",
    long_about = "Serves the denylist web console over HTTP(S). It runs as its own \
        unprivileged user and reaches denylistd only through the daemon's socket, \
        acting on behalf of each signed-in user (docs/web.md).",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// The accounts file: roles and argon2id password hashes, mode 0600.
    #[arg(
        long,
        global = true,
        env = "DENYLIST_WEB_USERS",
        default_value = DEFAULT_USERS,
        value_name = "FILE"
    )]
    pub users: PathBuf,
    /// Write the man page denylist-web.8 into DIR, then exit.
    #[arg(long, value_name = "DIR")]
    pub write_man: Option<PathBuf>,
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// User names and passwords from the accounts file.
    Local,
    /// A reverse proxy signs users in and names them in a header.
    Proxy,
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where to serve: HOST:PORT, or unix:PATH for a proxy on this host.
    #[arg(
        long,
        env = "DENYLIST_WEB_LISTEN",
        default_value = "127.0.0.1:8787",
        value_name = "ADDR"
    )]
    pub listen: String,
    /// The group of the unix:PATH socket (mode 0660): the proxy's.
    #[arg(long, value_name = "GROUP")]
    pub listen_group: Option<String>,
    /// denylistd's API socket.
    #[arg(
        long,
        env = "DENYLIST_SOCKET",
        default_value = DEFAULT_SOCKET,
        value_name = "PATH"
    )]
    pub socket: PathBuf,
    /// How users sign in.
    #[arg(long, value_enum, default_value_t = AuthMode::Local)]
    pub auth: AuthMode,
    /// With --auth proxy: the header the proxy names the user in.
    #[arg(long, default_value = "X-Remote-User", value_name = "NAME")]
    pub proxy_header: String,
    /// With --auth proxy: a file holding the secret the proxy sends in
    /// X-Proxy-Secret (mode 0600). Required unless --listen unix:PATH.
    #[arg(long, value_name = "FILE")]
    pub proxy_secret_file: Option<PathBuf>,
    /// Serve HTTPS with this certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A session ends this long after sign-in, however busy.
    #[arg(long, default_value = "12h", value_parser = duration, value_name = "DURATION")]
    pub session_max: Duration,
    /// A session ends after this long without a request.
    #[arg(long, default_value = "1h", value_parser = duration, value_name = "DURATION")]
    pub session_idle: Duration,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the console's accounts.
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add an account; the password comes from stdin, or a prompt on a
    /// terminal.
    Add {
        /// [a-z_][a-z0-9_.-]{0,31}
        name: String,
        #[arg(long, value_enum)]
        role: Role,
        /// No password: an account only the proxy signs in (--auth proxy).
        #[arg(long)]
        no_password: bool,
    },
    /// Set an account's password (from stdin, or a prompt).
    Passwd {
        name: String,
        /// Remove the password: the proxy alone signs the account in.
        #[arg(long)]
        no_password: bool,
    },
    /// Remove an account.
    Remove { name: String },
    /// List the accounts with their roles.
    List,
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[test]
    fn flags_have_the_documented_defaults() {
        let cli = Cli::try_parse_from(["denylist-web"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.listen, "127.0.0.1:8787");
        assert_eq!(cli.serve.auth, AuthMode::Local);
        assert_eq!(cli.serve.proxy_header, "X-Remote-User");
        assert_eq!(cli.serve.session_max, Duration::from_secs(12 * 3600));
        assert_eq!(cli.serve.session_idle, Duration::from_secs(3600));
        assert_eq!(cli.users, PathBuf::from(DEFAULT_USERS));
        assert!(Cli::try_parse_from(["denylist-web", "--tls-cert", "c.pem"]).is_err());
    }

    #[test]
    fn user_commands_parse() {
        let cli = Cli::try_parse_from([
            "denylist-web",
            "user",
            "add",
            "alice",
            "--role",
            "admin",
            "--users",
            "/tmp/u.toml",
        ])
        .unwrap();
        assert_eq!(cli.users, PathBuf::from("/tmp/u.toml"));
        assert!(matches!(
            cli.command,
            Some(Command::User(UserCommand::Add {
                role: Role::Admin,
                no_password: false,
                ..
            }))
        ));
        assert!(Cli::try_parse_from(["denylist-web", "user", "add", "bob"]).is_err());
    }
}
