//! The command line: every command, flag and value check of `denylist`.

use std::{net::IpAddr, path::PathBuf};

use clap::{
    Args, Parser, Subcommand, ValueEnum,
    builder::{PossibleValuesParser, TypedValueParser as _},
};

pub use super::auto_args::{AutoArgs, AutoCommand, ReportArgs, TopArgs};
use crate::{
    model::{AttachMode, ExportFormat, Format, Millis, Target, parse_duration, to_ms},
    wire::{DEFAULT_SOCKET, EntryMode, PageSort},
};

#[derive(Debug, Parser)]
#[command(
    name = "denylist",
    version,
    about = "Stage, review and deploy the XDP IP denylist kept by denylistd",
    long_about = "Stage, review and deploy the XDP IP denylist kept by denylistd.\n\n\
        Changes are staged in a draft: review them with `denylist diff`, then put \
        them into effect with `denylist deploy`.",
    propagate_version = true
)]
pub struct Cli {
    /// denylistd's API socket.
    #[arg(
        long,
        global = true,
        env = "DENYLIST_SOCKET",
        default_value = DEFAULT_SOCKET,
        value_name = "PATH"
    )]
    pub socket: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stage deny entries; re-adding an entry changes only the fields given.
    Add(AddArgs),
    /// Stage removals of deny entries.
    Remove(RemoveArgs),
    /// Switch deny entries to enforcing mode: matching packets are dropped.
    Enforce(TargetsArgs),
    /// Switch deny entries to monitor mode: matches are counted, not dropped.
    Monitor(TargetsArgs),
    /// The deployed deny entries (or the draft), sorted by address.
    List(ListArgs),
    /// The pending changes: the draft against the deployed revision.
    Diff(Output),
    /// Save and Deploy the pending changes as a new revision.
    Deploy(DeployArgs),
    /// Drop all pending changes.
    Discard(Output),
    /// The verdict the kernel gives an address now, and why.
    Check(CheckArgs),
    /// Interfaces, revision, entry counts, capacity and counters; exits 1 when
    /// degraded.
    Status(Output),
    /// Per-entry hits, busiest first.
    Stats(StatsArgs),
    /// The deployed revisions.
    History(HistoryArgs),
    /// The audit log.
    Audit(AuditArgs),
    /// Make the draft equal to an earlier revision.
    Rollback(RollbackArgs),
    /// Stage entries in bulk from a list file.
    Import(ImportArgs),
    /// Write the entries out, as JSON (re-importable) or plain targets.
    Export(ExportArgs),
    /// The allowlist: addresses that are never dropped.
    #[command(subcommand)]
    Allow(AllowCommand),
    /// Attach the XDP filter to an interface.
    Attach(AttachArgs),
    /// Detach the XDP filter from an interface.
    Detach(DetachArgs),
    /// Compare the kernel's maps with the deployed revision and repair drift.
    Verify(Output),
    /// Write a consistent copy of the daemon's store to FILE.
    Backup(BackupArgs),
    /// Report an abusive address (reporters and admins); at the policy's
    /// threshold (`denylist auto`) it is blocked for a while.
    Report(ReportArgs),
    /// The latest reports: your own, or everyone's for an admin.
    Reports(Output),
    /// The automatic blocking policy and the rate detector's decisions;
    /// `auto set` changes it.
    Auto(AutoArgs),
    /// The heaviest sources the rate detector sees: what to block.
    Top(TopArgs),
    /// Fleet mode's nodes: the revision each applied, and whether it keeps
    /// up; `nodes remove NAME` forgets a retired one.
    Nodes(NodesArgs),
    /// Reputation feeds: lists the daemon fetches and deploys on a schedule.
    #[command(subcommand)]
    Feed(FeedCommand),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// Print the man page denylist(1) (roff), or write every page with --dir;
    /// `cargo xtask build` and the package use it.
    #[command(hide = true)]
    Man(ManArgs),
}

#[derive(Debug, Subcommand)]
pub enum AllowCommand {
    /// Stage allow entries.
    Add(StageArgs),
    /// Stage removals of allow entries.
    Remove(RemoveArgs),
    /// The deployed allow entries (or the draft), sorted by address.
    List(ListArgs),
}

#[derive(Debug, Subcommand)]
pub enum FeedCommand {
    /// Subscribe to a feed, by URL or a preset's name (spamhaus-drop,
    /// spamhaus-dropv6, firehol-level1, blocklist-de, feodo, ipsum-3), and
    /// wait for its first fetch: exits 0 when it is ok, 1 when failing, 3
    /// when held.
    Add(FeedAddArgs),
    /// The feeds, with their state.
    List(Output),
    /// Fetch a feed now; exits like `feed add`.
    Refresh(FeedNameArgs),
    /// Deploy the list a feed's last fetch held back.
    Approve(FeedNameArgs),
    /// End a subscription, and take its listings out (deployed at once).
    Remove(FeedNameArgs),
}

#[derive(Debug, Args)]
pub struct FeedAddArgs {
    pub name: String,
    /// http(s)://, or file:// under the daemon's --feed-dir; a preset's
    /// name needs none.
    pub url: Option<String>,
    /// The list's format [default: the preset's, or auto].
    #[arg(
        long,
        value_parser = PossibleValuesParser::new(Format::ALL.map(Format::name))
            .map(|name| name.parse::<Format>().expect("a listed format")),
    )]
    pub format: Option<Format>,
    /// How often to fetch, at least 1m [default: the preset's, or 1h].
    #[arg(long, value_name = "DURATION")]
    pub every: Option<String>,
    /// No success for this long makes the feed stale [default: 3 × every].
    #[arg(long, value_name = "DURATION")]
    pub stale_after: Option<String>,
    /// Its listings count matches without dropping them.
    #[arg(long)]
    pub monitor: bool,
    /// Hold a list with more entries [default: 100000].
    #[arg(long, value_name = "N")]
    pub max_entries: Option<u64>,
    /// Hold a list that adds, or removes, more than this percentage of the
    /// feed's entries, once it has 100 [default: 50].
    #[arg(long, value_name = "PERCENT")]
    pub max_change: Option<u8>,
    /// Let the feed list networks wider than the guardrails' /16 (IPv6:
    /// /48), down to /BITS (IPv6: /BITS+32). Audited.
    #[arg(long, value_name = "BITS")]
    pub max_width: Option<u8>,
    /// An empty list is the feed's real state, not an outage.
    #[arg(long)]
    pub allow_empty: bool,
    /// Stage each refresh's changes for an admin to deploy.
    #[arg(long)]
    pub review: bool,
    /// Request headers (credentials), `Name: value` a line, from a file
    /// under the daemon's --feed-dir (mode 600).
    #[arg(long, value_name = "FILE")]
    pub header_file: Option<String>,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct FeedNameArgs {
    pub name: String,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, Args)]
pub struct Output {
    /// Print the API's JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What `add` and `allow add` share.
#[derive(Debug, Args)]
pub struct StageArgs {
    /// IPv4/IPv6 addresses or CIDR prefixes.
    #[arg(required = true, value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Why the entry is there.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// How long the entry lives, counted from the deploy: 90s, 30m, 24h, 7d,
    /// or never.
    #[arg(long, value_name = "DURATION|never", value_parser = ttl)]
    pub ttl: Option<String>,
    /// Pass the guardrails, and normalize prefixes with host bits set.
    #[arg(long)]
    pub force: bool,
    /// Deploy just these changes now; other pending changes stay staged.
    #[arg(long)]
    pub deploy: bool,
    /// Whose listing: `manual` (the default), or `import:NAME` for a tool
    /// that blocks on your behalf and removes its own listings alone.
    #[arg(long, value_name = "SOURCE")]
    pub source: Option<String>,
    /// Check and count, stage nothing: what the guardrails would refuse is
    /// listed instead of refusing the whole add.
    #[arg(long, conflicts_with = "deploy")]
    pub dry_run: bool,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    #[command(flatten)]
    pub stage: StageArgs,
    /// Count matches without dropping them (`denylist enforce` makes the
    /// entry live).
    #[arg(long)]
    pub monitor: bool,
}

/// What `remove`, `enforce`, `monitor` and `allow remove` take.
#[derive(Debug, Args)]
pub struct TargetsArgs {
    #[arg(required = true, value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Deploy just these changes now; other pending changes stay staged.
    #[arg(long)]
    pub deploy: bool,
    #[command(flatten)]
    pub output: Output,
}

/// What `remove` and `allow remove` take.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    #[command(flatten)]
    pub targets: TargetsArgs,
    /// Remove just this source's listing (`feed:NAME`, `auto:reports`,
    /// `import:NAME`...); without it, the manual and import listings go.
    #[arg(long, value_name = "SOURCE")]
    pub source: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Show the draft (deployed entries plus pending changes).
    #[arg(long)]
    pub draft: bool,
    /// Only entries one of whose listings is from this source: `manual`,
    /// `feed:NAME`, `auto:reports`, or an import's name.
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
    /// Only entries that cover this address.
    #[arg(long = "match", value_name = "IP", value_parser = address)]
    pub matching: Option<IpAddr>,
    /// At most N entries (with --page, 1 to 500; 50 when absent).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// One page at a time, as the web console reads them: the next page's
    /// cursor goes to stderr. The options below imply it.
    #[arg(long)]
    pub page: bool,
    /// The page after the one that printed this cursor.
    #[arg(long, value_name = "CURSOR", help_heading = "Pages")]
    pub cursor: Option<String>,
    /// The order: address (the default), soonest expiry, oldest first.
    #[arg(long, value_enum, help_heading = "Pages")]
    pub sort: Option<PageSort>,
    /// The other way round.
    #[arg(long, help_heading = "Pages")]
    pub desc: bool,
    /// Only entries that enforce, or only those that monitor.
    #[arg(long, value_enum, help_heading = "Pages")]
    pub mode: Option<EntryMode>,
    /// Only entries that expire.
    #[arg(long, help_heading = "Pages")]
    pub expiring: bool,
    /// Only entries with exactly this reason.
    #[arg(long, value_name = "TEXT", help_heading = "Pages")]
    pub reason: Option<String>,
    #[command(flatten)]
    pub output: Output,
}

impl ListArgs {
    /// Whether to read one page rather than stream the list.
    pub fn paged(&self) -> bool {
        self.page
            || self.cursor.is_some()
            || self.sort.is_some()
            || self.desc
            || self.mode.is_some()
            || self.expiring
            || self.reason.is_some()
    }
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Recorded with the revision.
    #[arg(long, value_name = "TEXT")]
    pub message: Option<String>,
    /// Show what would be deployed, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Deploy only if the draft is still the one reviewed: the draft_seq
    /// that `denylist diff --json` showed. Otherwise nothing is deployed
    /// (exit 6).
    #[arg(long, value_name = "N")]
    pub expect_seq: Option<u64>,
    /// In a fleet: return once every live node applied the new revision,
    /// or exit 1 naming those that did not within DURATION [default: 30s].
    #[arg(
        long,
        value_name = "DURATION",
        num_args = 0..=1,
        default_missing_value = "30s",
        value_parser = parse_duration
    )]
    pub wait: Option<std::time::Duration>,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct NodesArgs {
    #[command(subcommand)]
    pub command: Option<NodesCommand>,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum NodesCommand {
    /// Forget a retired node: one offline for 5 minutes.
    Remove {
        name: String,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[arg(value_parser = address)]
    pub ip: IpAddr,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Only the N busiest entries.
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
    /// Only entries without a hit for this long (e.g. 30d), to find stale
    /// blocks.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub idle: Option<String>,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// One revision: what its deploy added, removed and changed.
    #[arg(value_name = "REV")]
    pub revision: Option<u64>,
    /// Only the newest N revisions (of those before --before); with REV,
    /// at most N items of each kind [default: 1000].
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Only revisions before this one: the first revision of the last page,
    /// for the page before it.
    #[arg(long, value_name = "REV")]
    pub before: Option<u64>,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only events after this sequence number.
    #[arg(long, value_name = "SEQ")]
    pub since: Option<u64>,
    /// Only the newest N events (of those between --since and --before).
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Only events before this sequence number: the first event of the last
    /// page, for the page before it.
    #[arg(long, value_name = "SEQ")]
    pub before: Option<u64>,
    /// Only events by this user, exactly as the log names them (`alice`,
    /// `alice (as root)`, `alice (web)`).
    #[arg(long, value_name = "USER")]
    pub actor: Option<String>,
    /// Only events of this kind, or whose kind begins with this word
    /// (`stage` is every `stage ...`).
    #[arg(long, value_name = "KIND")]
    pub kind: Option<String>,
    /// Only events at or after this time (RFC 3339, e.g. 2026-11-28T12:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = time)]
    pub from: Option<Millis>,
    /// Only events before this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = time)]
    pub to: Option<Millis>,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[arg(value_name = "REV")]
    pub revision: u64,
    /// Deploy the result as a new revision.
    #[arg(long)]
    pub deploy: bool,
    /// Overwrite pending changes.
    #[arg(long)]
    pub force: bool,
    /// The new revision's message [default: rollback to REV].
    #[arg(long, value_name = "TEXT")]
    pub message: Option<String>,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The list file, or - for standard input.
    #[arg(value_name = "FILE|-")]
    pub file: PathBuf,
    /// The file's format; auto detects it from the first lines.
    #[arg(
        long,
        default_value = "auto",
        value_parser = PossibleValuesParser::new(Format::ALL.map(Format::name))
            .map(|name| name.parse::<Format>().expect("a listed format")),
    )]
    pub format: Format,
    /// Entries become `import:NAME` [default: the file name, or stdin].
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
    /// Make the draft's entries from this source exactly the file's.
    #[arg(long)]
    pub replace: bool,
    /// The reason of every entry (instead of the file's, e.g. an SBL id).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// The TTL of every entry: 90s, 30m, 24h, 7d, or never.
    #[arg(long, value_name = "DURATION|never", value_parser = ttl)]
    pub ttl: Option<String>,
    /// Let in the lines the guardrails stop.
    #[arg(long, conflicts_with = "skip_guarded")]
    pub force: bool,
    /// Leave out invalid lines instead of rejecting the import.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Leave out the lines the guardrails stop instead of rejecting the
    /// import.
    #[arg(long)]
    pub skip_guarded: bool,
    /// Deploy just this import's changes now.
    #[arg(long)]
    pub deploy: bool,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Export the draft instead of the deployed entries.
    #[arg(long)]
    pub draft: bool,
    #[arg(long, value_enum, default_value_t = ExportFormat::Json)]
    pub format: ExportFormat,
    /// Only this list [default: both for json; deny for plain, which cannot
    /// tell the lists apart].
    #[arg(
        long,
        value_parser = PossibleValuesParser::new(["deny", "allow"])
            .map(|name| name.parse::<crate::model::List>().expect("a listed list")),
    )]
    pub list: Option<crate::model::List>,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    #[arg(value_name = "IFACE")]
    pub iface: String,
    /// auto tries native, then falls back to skb (generic) mode.
    #[arg(long, value_enum, value_name = "MODE")]
    pub xdp_mode: Option<AttachMode>,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct DetachArgs {
    #[arg(value_name = "IFACE")]
    pub iface: String,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where to write it, on the daemon's host; it must not exist yet.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

impl From<Shell> for clap_complete::Shell {
    fn from(s: Shell) -> Self {
        match s {
            Shell::Bash => clap_complete::Shell::Bash,
            Shell::Zsh => clap_complete::Shell::Zsh,
            Shell::Fish => clap_complete::Shell::Fish,
        }
    }
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    pub shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write denylist.1 and a page per command (denylist-add.1,
    /// denylist-allow-add.1, ...) into DIR instead, and print their paths.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// A TTL is checked here so a typo fails before anything is sent; the
/// daemon gets the text as typed.
fn ttl(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s == "never" {
        return Ok(s.to_string());
    }
    if parse_duration(s).map_err(|e| e.to_string())?.as_secs() == 0 {
        return Err("a TTL must be at least 1s (or never)".to_string());
    }
    Ok(s.to_string())
}

/// One address, refused for the same reasons as a TARGET (leading zeros,
/// zone ids, short forms).
fn time(s: &str) -> Result<Millis, String> {
    humantime::parse_rfc3339_weak(s.trim())
        .map(to_ms)
        .map_err(|e| format!("{e}: give an RFC 3339 time, e.g. 2026-11-28T12:00:00Z"))
}

pub(super) fn address(s: &str) -> Result<IpAddr, String> {
    let t = Target::parse(s).map_err(|e| e.to_string())?;
    if !t.is_exact() {
        return Err(format!("{t} is a prefix: give one address"));
    }
    Ok(t.addr())
}

fn duration(s: &str) -> Result<String, String> {
    parse_duration(s)
        .map(|_| s.trim().to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("denylist").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }

    #[test]
    fn add_takes_every_stage_flag() {
        let cli = parse(&[
            "add",
            "198.51.100.7",
            "203.0.113.0/24",
            "--reason",
            "scanner",
            "--ttl",
            "24h",
            "--monitor",
            "--force",
            "--deploy",
            "--json",
        ])
        .unwrap();
        let Command::Add(a) = cli.command else {
            panic!("not add: {:?}", cli.command)
        };
        assert_eq!(a.stage.targets, ["198.51.100.7", "203.0.113.0/24"]);
        assert_eq!(a.stage.reason.as_deref(), Some("scanner"));
        assert_eq!(a.stage.ttl.as_deref(), Some("24h"));
        assert!(a.monitor && a.stage.force && a.stage.deploy && a.stage.output.json);
    }

    #[test]
    fn allow_add_refuses_monitor() {
        let e = parse(&["allow", "add", "198.51.100.7", "--monitor"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnknownArgument);
        assert_eq!(e.exit_code(), 2);
        assert!(parse(&["allow", "add", "198.51.100.7", "--ttl", "never"]).is_ok());
    }

    #[test]
    fn ttls_are_durations_or_never() {
        for ok in ["90s", "30m", "24h", "7d", "1h30m", "never", " 7d "] {
            assert!(parse(&["add", "198.51.100.7", "--ttl", ok]).is_ok(), "{ok}");
        }
        for bad in ["soon", "0s", "-1h", "", "7"] {
            let flag = format!("--ttl={bad}");
            let e = parse(&["add", "198.51.100.7", &flag]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ValueValidation, "{bad}");
            assert_eq!(e.exit_code(), 2);
        }
        assert!(parse(&["stats", "--idle", "30d"]).is_ok());
        assert!(parse(&["stats", "--idle", "a while"]).is_err());
    }

    #[test]
    fn targets_are_required_and_ips_are_checked() {
        assert_eq!(
            parse(&["add"]).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse(&["remove"]).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
        for bad in ["fe80::1%eth0", "01.2.3.4", "1.2.3", "203.0.113.0/24"] {
            assert!(parse(&["check", bad]).is_err(), "{bad}");
            assert!(parse(&["list", "--match", bad]).is_err(), "{bad}");
        }
        let e = parse(&["check", "01.2.3.4"]).unwrap_err().to_string();
        assert!(e.contains("leading zeros"), "{e}");
        let cli = parse(&["check", "::ffff:198.51.100.9"]).unwrap();
        let Command::Check(a) = cli.command else {
            panic!("not check")
        };
        assert_eq!(a.ip.to_string(), "198.51.100.9");
        assert!(parse(&["check", "2001:db8::1/128"]).is_ok());
    }

    #[test]
    fn socket_comes_from_the_flag_then_the_default() {
        assert_eq!(
            parse(&["status"]).unwrap().socket,
            PathBuf::from(DEFAULT_SOCKET)
        );
        let cli = parse(&["status", "--socket", "/tmp/s.sock"]).unwrap();
        assert_eq!(cli.socket, PathBuf::from("/tmp/s.sock"));
        let cli = parse(&["--socket", "/tmp/t.sock", "list"]).unwrap();
        assert_eq!(cli.socket, PathBuf::from("/tmp/t.sock"));
    }

    #[test]
    fn import_formats_and_lists_use_the_api_names() {
        let cli = parse(&["import", "-", "--format", "spamhaus-json"]).unwrap();
        let Command::Import(a) = cli.command else {
            panic!("not import")
        };
        assert_eq!(a.format, Format::SpamhausJson);
        assert_eq!(a.file, PathBuf::from("-"));
        assert!(parse(&["import", "f", "--format", "csv"]).is_err());
        assert!(parse(&["import", "f", "--force", "--skip-guarded"]).is_err());
        let cli = parse(&["export", "--list", "allow", "--format", "plain"]).unwrap();
        let Command::Export(a) = cli.command else {
            panic!("not export")
        };
        assert_eq!(
            (a.list, a.format),
            (Some(crate::model::List::Allow), ExportFormat::Plain)
        );
    }

    #[test]
    fn completions_are_for_three_shells() {
        for shell in ["bash", "zsh", "fish"] {
            assert!(parse(&["completions", shell]).is_ok(), "{shell}");
        }
        assert!(parse(&["completions", "powershell"]).is_err());
    }

    #[test]
    fn the_console_options_parse_and_imply_a_page() {
        let Cli {
            command: Command::List(a),
            ..
        } = parse(&[
            "list",
            "--sort",
            "expires_at",
            "--desc",
            "--mode",
            "monitor",
        ])
        .unwrap()
        else {
            panic!("list")
        };
        assert!(a.paged());
        assert_eq!(
            (a.sort, a.mode),
            (Some(PageSort::ExpiresAt), Some(EntryMode::Monitor))
        );
        let Cli {
            command: Command::List(plain),
            ..
        } = parse(&["list", "--limit", "3"]).unwrap()
        else {
            panic!("list")
        };
        assert!(!plain.paged(), "a plain list streams, as before");
        assert!(parse(&["list", "--sort", "expires"]).is_err());
        let e = parse(&["add", "198.51.100.7", "--dry-run", "--deploy"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ArgumentConflict);
        assert!(parse(&["deploy", "--expect-seq", "42"]).is_ok());
        assert!(parse(&["history", "7", "--limit", "10"]).is_ok());
        let Cli {
            command: Command::Audit(a),
            ..
        } = parse(&[
            "audit",
            "--actor",
            "alice (web)",
            "--kind",
            "stage",
            "--from",
            "2026-11-28T12:00:00Z",
        ])
        .unwrap()
        else {
            panic!("audit")
        };
        assert_eq!(a.from, Some(1_795_867_200_000));
        let e = parse(&["audit", "--to", "yesterday"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ValueValidation);
    }
}
