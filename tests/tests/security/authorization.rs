//! Who may run which command: the whole matrix, read from the CLI's own
//! definition, and a group change counted at the next command.

use std::{fs, process::Command};

use denylist::wire::Class;
use denylist_tests::{
    daemon::{Daemon, TempDir},
    require_root,
};

use crate::common::{
    A, Accounts, EVERYONE, FORBIDDEN, IFACE, Users, Who, chmod, cli, iface_netns, open_home,
    run_ok, state,
};

/// Who may run a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    Admin,
    Viewer,
    /// Reporters and admins, not viewers.
    Reporter,
    /// Runs locally and never reaches the daemon.
    Nothing,
}

/// One row of the matrix: the command (as `denylist` spells it), who may
/// run it, its arguments (`{import}`, `{backup}`, `{iface}`, `{feed}` and
/// `{held}` are filled in), what root runs first so that an allowed run
/// can succeed, and the exit code of an allowed run.
struct Case {
    command: &'static str,
    needs: Needs,
    args: &'static [&'static str],
    setup: &'static [&'static [&'static str]],
    allowed_exit: i32,
}

/// The exit code of `not_found` (docs/api.md): what a fleet command gets
/// from this matrix's daemon, which has no fleet, once authorized.
const NOT_FOUND: i32 = 5;

const fn case(
    command: &'static str,
    needs: Needs,
    args: &'static [&'static str],
    setup: &'static [&'static [&'static str]],
) -> Case {
    Case {
        command,
        needs,
        args,
        setup,
        allowed_exit: 0,
    }
}

/// A fleet command: authorized, it answers that there is no fleet.
const fn fleet_case(command: &'static str, needs: Needs, args: &'static [&'static str]) -> Case {
    Case {
        allowed_exit: NOT_FOUND,
        ..case(command, needs, args, &[])
    }
}

const CASES: &[Case] = &[
    case(
        "add",
        Needs::Admin,
        &["add", "198.51.100.30", "--reason", "matrix"],
        &[],
    ),
    case(
        "remove",
        Needs::Admin,
        &["remove", "198.51.100.31"],
        &[&["add", "198.51.100.31", "--deploy"]],
    ),
    case(
        "enforce",
        Needs::Admin,
        &["enforce", "198.51.100.32"],
        &[&["add", "198.51.100.32", "--monitor"]],
    ),
    case(
        "monitor",
        Needs::Admin,
        &["monitor", "198.51.100.32"],
        &[&["add", "198.51.100.32"]],
    ),
    case("list", Needs::Viewer, &["list", "--draft"], &[]),
    case("diff", Needs::Viewer, &["diff"], &[]),
    case(
        "deploy",
        Needs::Admin,
        &["deploy", "--message", "matrix"],
        &[&["add", "198.51.100.33"]],
    ),
    case(
        "discard",
        Needs::Admin,
        &["discard"],
        &[&["add", "198.51.100.34"]],
    ),
    case("check", Needs::Viewer, &["check", A], &[]),
    case("status", Needs::Viewer, &["status"], &[]),
    case("stats", Needs::Viewer, &["stats"], &[]),
    case("history", Needs::Viewer, &["history"], &[]),
    case("audit", Needs::Viewer, &["audit"], &[]),
    case("rollback", Needs::Admin, &["rollback", "1", "--force"], &[]),
    case(
        "import",
        Needs::Admin,
        &["import", "{import}", "--source", "matrix"],
        &[],
    ),
    case("export", Needs::Viewer, &["export"], &[]),
    case(
        "allow add",
        Needs::Admin,
        &["allow", "add", "198.51.100.35"],
        &[],
    ),
    case(
        "allow remove",
        Needs::Admin,
        &["allow", "remove", "198.51.100.36"],
        &[&["allow", "add", "198.51.100.36"]],
    ),
    case(
        "allow list",
        Needs::Viewer,
        &["allow", "list", "--draft"],
        &[],
    ),
    case(
        "attach",
        Needs::Admin,
        &["attach", "{iface}", "--xdp-mode", "skb"],
        &[&["detach", "{iface}"]],
    ),
    case(
        "detach",
        Needs::Admin,
        &["detach", "{iface}"],
        &[&["attach", "{iface}", "--xdp-mode", "skb"]],
    ),
    case("verify", Needs::Admin, &["verify"], &[]),
    case("backup", Needs::Admin, &["backup", "{backup}"], &[]),
    case(
        "report",
        Needs::Reporter,
        &["report", "198.51.100.50", "--reason", "matrix"],
        &[],
    ),
    case("reports", Needs::Reporter, &["reports"], &[]),
    case("auto", Needs::Viewer, &["auto"], &[]),
    case(
        "auto set",
        Needs::Admin,
        &["auto", "set", "--reports", "0"],
        &[],
    ),
    case("top", Needs::Viewer, &["top"], &[]),
    case(
        "feed add",
        Needs::Admin,
        &["feed", "add", "mfeed", "{feed}"],
        &[&["feed", "remove", "mfeed"]],
    ),
    case("feed list", Needs::Viewer, &["feed", "list"], &[]),
    case(
        "feed refresh",
        Needs::Admin,
        &["feed", "refresh", "mfeed"],
        &[&["feed", "add", "mfeed", "{feed}"]],
    ),
    // The HTML page holds the list back again on each refresh.
    case(
        "feed approve",
        Needs::Admin,
        &["feed", "approve", "mheld"],
        &[
            &["feed", "add", "mheld", "{held}"],
            &["feed", "refresh", "mheld"],
        ],
    ),
    case(
        "feed remove",
        Needs::Admin,
        &["feed", "remove", "mgone"],
        &[&["feed", "add", "mgone", "{feed}"]],
    ),
    fleet_case("nodes", Needs::Viewer, &["nodes"]),
    fleet_case("nodes remove", Needs::Admin, &["nodes", "remove", "edge9"]),
    case("completions", Needs::Nothing, &["completions", "bash"], &[]),
    case("man", Needs::Nothing, &["man"], &[]),
];

/// Every command the CLI defines, `allow add` style, read from its clap
/// definition: a new command cannot be left out of the matrix unnoticed.
fn cli_commands() -> Vec<String> {
    let mut out = Vec::new();
    for sub in denylist::cli::command().get_subcommands() {
        // A command that also runs without a subcommand (`nodes`) is a
        // command of its own.
        if !sub.has_subcommands() || !sub.is_subcommand_required_set() {
            out.push(sub.get_name().to_string());
        }
        if !sub.has_subcommands() {
            continue;
        }
        for leaf in sub.get_subcommands() {
            assert!(
                !leaf.has_subcommands(),
                "{} {} nests deeper: walk it here",
                sub.get_name(),
                leaf.get_name()
            );
            out.push(format!("{} {}", sub.get_name(), leaf.get_name()));
        }
    }
    out
}

#[test]
fn every_cli_command_is_authorized_by_group_and_a_group_change_counts_at_once() {
    require_root();
    let users = Users::new();
    let ns = iface_netns("secm");
    let home = open_home("secm");
    // Files any user may read (the import, which is also a feed) and create
    // (the backups).
    let files = TempDir::new("secmf");
    chmod(files.path(), 0o1777);
    let import = files.path().join("feed.txt");
    fs::write(&import, "198.51.100.40\n198.51.100.41\n").unwrap();
    chmod(&import, 0o644);
    let held = files.path().join("held.txt");
    fs::write(&held, "<html><body>down for maintenance</body></html>\n").unwrap();
    let feed_dir = files.path().display().to_string();
    let mut args = users.daemon_args().to_vec();
    args.extend(["--feed-dir", &feed_dir]);
    let _d = Daemon::start(&home, Some(&ns), &args);
    let sock = home.socket();
    let c = home.client();
    let r = cli(None, None, &sock, &["add", A, "--deploy"]);
    assert_eq!(r.code, 0, "revision 1, for rollback: {}", r.stderr);

    let commands = cli_commands();
    let missing: Vec<&String> = commands
        .iter()
        .filter(|name| !CASES.iter().any(|c| c.command == name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "no case in the matrix for {missing:?}: add one to CASES"
    );
    let stale: Vec<&str> = CASES
        .iter()
        .map(|c| c.command)
        .filter(|c| !commands.iter().any(|name| name == c))
        .collect();
    assert!(stale.is_empty(), "CASES names unknown commands {stale:?}");

    assert_eq!(
        Class::Forbidden.exit_code(),
        FORBIDDEN,
        "as docs/api.md says"
    );
    let mut runs = 0;
    for name in &commands {
        let case = CASES.iter().find(|c| c.command == name.as_str()).unwrap();
        for who in EVERYONE {
            let backup = files.path().join(format!("{who:?}.db"));
            let fill = |a: &&str| match *a {
                "{import}" => import.display().to_string(),
                "{backup}" => backup.display().to_string(),
                "{iface}" => IFACE.to_string(),
                "{feed}" => format!("file://{}", import.display()),
                "{held}" => format!("file://{}", held.display()),
                other => other.to_string(),
            };
            let allowed = match case.needs {
                Needs::Nothing => true,
                Needs::Viewer => matches!(who, Who::Viewer | Who::Admin | Who::Root),
                Needs::Reporter => matches!(who, Who::Reporter | Who::Admin | Who::Root),
                Needs::Admin => matches!(who, Who::Admin | Who::Root),
            };
            // A step may find its work done (detaching a detached
            // interface); only the run itself is checked.
            if allowed {
                for step in case.setup {
                    let step: Vec<String> = step.iter().map(fill).collect();
                    let step: Vec<&str> = step.iter().map(String::as_str).collect();
                    cli(None, None, &sock, &step);
                }
            }
            let args: Vec<String> = case.args.iter().map(fill).collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let before = state(&c);
            let r = cli(users.name(who), None, &sock, &args);
            runs += 1;
            let what = format!("{who:?} runs `denylist {}`", args.join(" "));
            if allowed {
                assert_eq!(
                    r.code, case.allowed_exit,
                    "{what}: {}{}",
                    r.stdout, r.stderr
                );
                continue;
            }
            let group = match case.needs {
                Needs::Admin => &users.admin_group,
                Needs::Reporter => &users.reporter_group,
                _ => &users.viewer_group,
            };
            assert_eq!(r.code, FORBIDDEN, "{what}: {}", r.stderr);
            assert!(
                r.stderr.contains("permission denied") && r.stderr.contains(group.as_str()),
                "{what}: the refusal names group {group}: {}",
                r.stderr
            );
            assert!(r.stdout.is_empty(), "{what}: printed {}", r.stdout);
            assert_eq!(state(&c), before, "{what}: a refusal changes nothing");
            assert!(!backup.exists(), "{what}: no backup file is left");
        }
    }
    assert_eq!(runs, commands.len() * EVERYONE.len());
    eprintln!(
        "authorization matrix: {} commands x {} users = {runs} runs",
        commands.len(),
        EVERYONE.len()
    );

    // A user's processes keep the groups of their login; the daemon reads
    // the group database on every request instead.
    let gid = |g: &str| {
        run_ok(Command::new("getent").args(["group", g]))
            .split(':')
            .nth(2)
            .unwrap()
            .to_string()
    };
    let admin_login = format!("{},{}", gid(&users.admin), gid(&users.admin_group));
    run_ok(Command::new("gpasswd").args(["-d", &users.admin, &users.admin_group]));
    let r = cli(Some(&users.admin), Some(&admin_login), &sock, &["discard"]);
    assert_eq!(
        r.code, FORBIDDEN,
        "removed from the admin group: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains(users.admin_group.as_str()),
        "{}",
        r.stderr
    );
    let r = cli(Some(&users.admin), Some(&admin_login), &sock, &["status"]);
    assert_eq!(r.code, FORBIDDEN, "in no group now, not even a viewer");
    assert!(
        r.stderr.contains(users.viewer_group.as_str()),
        "{}",
        r.stderr
    );

    let viewer_login = format!("{},{}", gid(&users.viewer), gid(&users.viewer_group));
    run_ok(Command::new("gpasswd").args(["-a", &users.viewer, &users.admin_group]));
    let r = cli(
        Some(&users.viewer),
        Some(&viewer_login),
        &sock,
        &["discard"],
    );
    assert_eq!(r.code, 0, "added to the admin group: {}", r.stderr);
    run_ok(Command::new("gpasswd").args(["-d", &users.viewer, &users.admin_group]));
    run_ok(Command::new("gpasswd").args(["-d", &users.viewer, &users.viewer_group]));
    let r = cli(Some(&users.viewer), Some(&viewer_login), &sock, &["list"]);
    assert_eq!(r.code, FORBIDDEN, "removed from both groups: {}", r.stderr);
}

/// An admin group as large as a directory serves them: its entry does not
/// fit the 16 KiB a fixed lookup buffer gives, and must still authorize.
#[test]
fn an_admin_group_of_two_thousand_members_still_authorizes_its_members() {
    require_root();
    let mut acc = Accounts::new();
    let group = acc.group("big");
    let admin = acc.user("big", &[&group]);
    let viewer_group = acc.group("bigv");
    // Members need not be local users for the group file; 2,000 names of
    // 16 bytes make the entry about 34 KB. The group goes with `acc`.
    let others: Vec<String> = (0..2000).map(|i| format!("dlsbigmember{i:04}")).collect();
    let file = fs::read_to_string("/etc/group").unwrap();
    let grown: String = file
        .lines()
        .map(|line| {
            if line.starts_with(&format!("{group}:")) {
                format!("{line},{}\n", others.join(","))
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    assert!(grown.len() > file.len() + 30_000, "the group grew");
    fs::write("/etc/group", grown).unwrap();
    let members = run_ok(Command::new("getent").args(["group", &group]));
    assert_eq!(
        members.trim().split(',').count(),
        2001,
        "{admin} and 2,000 more"
    );

    let ns = iface_netns("secb");
    let home = open_home("secb");
    let args = ["--admin-group", &group, "--viewer-group", &viewer_group];
    let _d = Daemon::start(&home, Some(&ns), &args);
    let r = cli(Some(&admin), None, &home.socket(), &["add", A]);
    assert_eq!(
        r.code, 0,
        "a member of a large admin group is an admin: {}",
        r.stderr
    );
    let events = crate::common::audit(&home.client());
    let last = events.last().unwrap();
    assert_eq!(last["user"], admin.as_str(), "{last}");
}
