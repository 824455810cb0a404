//! denylist-web(8), rendered from the clap definitions so that it lists
//! every flag and `user` command there is. `denylist-web --write-man DIR`
//! writes it; the package ships it.

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use clap::CommandFactory as _;
use clap_mangen::{
    Man,
    roff::{Roff, bold, roman},
};

use super::{args::Cli, users::DEFAULT_USERS};

/// denylist-web's exit codes, as bin/denylist-web.rs returns them.
const EXIT_STATUS: [(&str, &str); 3] = [
    (
        "0",
        "stopped cleanly on SIGTERM or SIGINT, or a user command or --write-man did its work",
    ),
    (
        "1",
        "a failure a retry may cure (the port is taken), or a user command that failed; the message says which",
    ),
    (
        "2",
        "a usage or configuration error: a flag that does not parse, an accounts or secret file that others may read, a bad certificate; the unit does not restart it (RestartPreventExitStatus=2)",
    ),
];

const FILES: [(&str, &str); 3] = [
    (
        DEFAULT_USERS,
        "the accounts (--users): each one's role and argon2id password hash; mode 0600, the console's user's",
    ),
    (
        crate::wire::DEFAULT_SOCKET,
        "denylistd's API socket (--socket), the only way the console reaches the daemon",
    ),
    (
        "/usr/lib/systemd/system/denylist-web.service",
        "the unit: the console as the user denylist-web, with no capability",
    ),
];

/// Writes denylist-web.8 into `dir`, creating it; returns the file.
pub fn write_man_page(dir: &Path) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let path = dir.join("denylist-web.8");
    let mut page = Vec::new();
    man_page(&mut page)?;
    fs::write(&path, page)?;
    Ok(path)
}

/// denylist-web(8): the flags, the user commands, the exit status, the
/// files.
pub fn man_page(w: &mut dyn Write) -> io::Result<()> {
    let man = Man::new(Cli::command()).section("8");
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    man.render_subcommands_section(w)?;
    let mut roff = Roff::default();
    roff.control("SH", ["USER COMMANDS"]);
    let cli = Cli::command();
    let user = cli
        .find_subcommand("user")
        .expect("the user command is defined");
    for cmd in user.get_subcommands() {
        roff.control("TP", []);
        let args: Vec<String> = cmd
            .get_arguments()
            .filter(|a| !a.is_hide_set() && a.get_id() != "users")
            .map(|a| match a.get_long() {
                Some(long) => format!("[--{long}]"),
                None => a.get_id().to_string().to_uppercase(),
            })
            .collect();
        roff.text([bold(format!(
            "denylist-web user {} {}",
            cmd.get_name(),
            args.join(" ")
        ))]);
        roff.text([roman(
            cmd.get_about().map(ToString::to_string).unwrap_or_default(),
        )]);
    }
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in EXIT_STATUS {
        roff.control("TP", []);
        roff.text([bold(code)]);
        roff.text([roman(meaning)]);
    }
    roff.control("SH", ["FILES"]);
    for (path, what) in FILES {
        roff.control("TP", []);
        roff.text([bold(path)]);
        roff.text([roman(what)]);
    }
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman("denylistd(8), denylist(1)")]);
    roff.to_writer(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_every_flag_every_user_command_and_the_exit_status() {
        let mut out = Vec::new();
        man_page(&mut out).unwrap();
        let page = String::from_utf8(out).unwrap();
        for arg in Cli::command().get_arguments() {
            if let Some(long) = arg.get_long().filter(|_| !arg.is_hide_set()) {
                // roff escapes each - of a flag as \-.
                let flag = format!("\\-\\-{}", long.replace('-', "\\-"));
                assert!(page.contains(&flag), "{long} in denylist-web(8)");
            }
        }
        for cmd in ["add", "passwd", "remove", "list"] {
            assert!(
                page.contains(&format!("denylist\\-web user {cmd}")),
                "user {cmd}: {page}"
            );
        }
        assert!(page.contains(".TH denylist-web 8"), "{page}");
        assert!(page.contains(".SH \"EXIT STATUS\""), "{page}");
        for (code, _) in EXIT_STATUS {
            assert!(page.contains(&format!("\\fB{code}\\fR")), "exit {code}");
        }
    }
}
