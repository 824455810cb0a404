//! The CLI's man pages, from its clap definitions: denylist(1), and one
//! page per command with every flag, nested commands included
//! (denylist-allow-add(1)). `denylist man --dir DIR` writes them all;
//! `cargo xtask build` and the package use that.

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use clap_mangen::{
    Man,
    roff::{Roff, bold, roman},
};

use super::command;

/// What `denylist` exits with: the classes of `wire::Class::exit_code`,
/// and 2 for clap's usage errors too.
const EXIT_STATUS: [(&str, &str); 8] = [
    ("0", "success"),
    (
        "1",
        "failure: the daemon could not do it, or cannot be reached; status and verify also exit 1 when the filter is degraded",
    ),
    (
        "2",
        "invalid input or usage: a flag, target or file that does not parse",
    ),
    (
        "3",
        "refused by a guardrail (too wide, private or reserved space, this host, a live SSH peer), --force passes; for feed add and feed refresh, the feed's list is held",
    ),
    (
        "4",
        "permission denied: not root, and not in the daemon's admin group (or viewer group, to read)",
    ),
    ("5", "not found: no such entry, revision or interface"),
    (
        "6",
        "conflict: e.g. pending changes that a rollback would overwrite, or a feed name in use",
    ),
    (
        "7",
        "rate limited: too many reports from this user; wait a second and report again",
    ),
];

/// Every page: its file name and its command, denylist(1) first. Hidden
/// commands (`man`) and clap's `help` get none.
fn pages() -> Vec<(String, clap::Command)> {
    fn walk(cmd: &clap::Command, out: &mut Vec<(String, clap::Command)>) {
        let name = cmd.get_display_name().unwrap_or(cmd.get_name());
        out.push((format!("{name}.1"), cmd.clone()));
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub, out);
        }
    }
    let mut top = command().disable_help_subcommand(true);
    // Building names each subcommand for its page: denylist-allow-add.
    top.build();
    let mut out = Vec::new();
    walk(&top, &mut out);
    out
}

/// One page in roff: clap_mangen's sections, then the exit status and the
/// related pages.
fn render(cmd: clap::Command, w: &mut dyn Write) -> io::Result<()> {
    let top = cmd.get_display_name().is_none_or(|n| n == "denylist");
    let subs: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .filter_map(|s| s.get_display_name().map(|n| format!("{n}(1)")))
        .collect();
    let has_args = cmd.get_arguments().any(|a| !a.is_hide_set());
    let man = Man::new(cmd).source(format!("denylist {}", env!("CARGO_PKG_VERSION")));
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    if has_args {
        man.render_options_section(w)?;
    }
    if !subs.is_empty() {
        man.render_subcommands_section(w)?;
    }
    let mut roff = Roff::default();
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in EXIT_STATUS {
        roff.control("TP", []);
        roff.text([bold(code)]);
        roff.text([roman(meaning)]);
    }
    roff.control("SH", ["SEE ALSO"]);
    let mut related = if top {
        Vec::new()
    } else {
        vec!["denylist(1)".to_string()]
    };
    related.extend(subs);
    related.extend(["denylistd(8)".to_string(), "denylistd.toml(5)".to_string()]);
    roff.text([roman(related.join(", "))]);
    roff.to_writer(w)?;
    man.render_version_section(w)
}

/// denylist(1), in roff.
pub fn man_page(out: &mut impl Write) -> io::Result<()> {
    let (_, top) = pages().swap_remove(0);
    render(top, out)
}

/// Writes every page into `dir`, creating it; returns the files written.
pub fn write_man_pages(dir: &Path) -> io::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (name, cmd) in pages() {
        let mut page = Vec::new();
        render(cmd, &mut page)?;
        let path = dir.join(name);
        fs::write(&path, page)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Class;

    #[test]
    fn the_exit_status_table_has_every_class() {
        for class in Class::ALL {
            let code = class.exit_code().to_string();
            assert!(EXIT_STATUS.iter().any(|(c, _)| *c == code), "{class:?}");
        }
        let codes: Vec<i32> = EXIT_STATUS
            .iter()
            .map(|(c, _)| c.parse().unwrap())
            .collect();
        assert_eq!(codes, (0..=7).collect::<Vec<_>>());
    }

    #[test]
    fn a_page_per_command_with_every_flag_and_the_exit_status() {
        let pages = pages();
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        for want in [
            "denylist.1",
            "denylist-add.1",
            "denylist-allow.1",
            "denylist-allow-add.1",
            "denylist-rollback.1",
            "denylist-completions.1",
        ] {
            assert!(names.contains(&want), "{want} in {names:?}");
        }
        assert!(
            !names
                .iter()
                .any(|n| n.contains("man") || n.contains("help"))
        );
        for (name, cmd) in pages {
            let mut page = Vec::new();
            render(cmd.clone(), &mut page).unwrap();
            let page = String::from_utf8(page).unwrap();
            let title = name.trim_end_matches(".1");
            assert!(page.contains(&format!("\n.TH {title} 1 ")), "{name}");
            assert!(page.contains(".SH \"EXIT STATUS\""), "{name}");
            for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
                if let Some(long) = arg.get_long() {
                    let flag = format!("\\-\\-{}", long.replace('-', "\\-"));
                    assert!(page.contains(&flag), "{long} in {name}");
                }
            }
        }
    }
}
