//! denylistd's man pages, rendered from its clap definitions so that they
//! list every flag and every config key there is: denylistd(8) and
//! denylistd.toml(5). `denylistd --write-man DIR` writes both; the package
//! ships them.

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use clap::{ArgAction, CommandFactory as _};
use clap_mangen::{
    Man,
    roff::{Roff, bold, italic, roman},
};

use super::config::{Args, config_keys};

/// denylistd's exit codes, as bin/denylistd.rs returns them.
const EXIT_STATUS: [(&str, &str); 3] = [
    (
        "0",
        "stopped cleanly on SIGTERM or SIGINT, or --unpin or --write-man did its work",
    ),
    (
        "1",
        "failure: missing capabilities, a store or pin directory it cannot use, another daemon on the socket, or --unpin refused or failed; the message says which",
    ),
    (
        "2",
        "configuration or usage error: a flag, key or value that does not parse; the unit does not restart it (RestartPreventExitStatus=2)",
    ),
];

/// The config file's example: a few keys set, each to a value the daemon
/// accepts (a unit test parses it).
pub(super) const EXAMPLE: &str = r#"iface = ["eth0", "eth1"]
xdp-mode = "auto"
capacity = 262144
admin-group = "denylist-admin"
viewer-group = "denylist"
metrics = "127.0.0.1:19478"
default-ttl = "30d"
protect-port = [22, 2222]
expiry-sweep = "10s"
"#;

const CONFIG_PATH: &str = "/etc/denylist/denylistd.toml";

/// Writes denylistd.8 and denylistd.toml.5 into `dir`, creating it;
/// returns the files written.
pub fn write_man_pages(dir: &Path) -> io::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (name, render) in [
        (
            "denylistd.8",
            daemon_page as fn(&mut dyn Write) -> io::Result<()>,
        ),
        ("denylistd.toml.5", config_page),
    ] {
        let path = dir.join(name);
        let mut page = Vec::new();
        render(&mut page)?;
        fs::write(&path, page)?;
        written.push(path);
    }
    Ok(written)
}

/// denylistd(8): the flags, the exit status, the files.
pub fn daemon_page(w: &mut dyn Write) -> io::Result<()> {
    let man = Man::new(Args::command()).section("8");
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    let mut roff = Roff::default();
    roff.text([roman(format!(
        "Every option but --config and the modes is also a key of the TOML file given with --config (see denylistd.toml(5)); a flag wins over the file, and a repeated --iface adds to the file's list. Without --config no file is read; the package's systemd unit runs denylistd --config {CONFIG_PATH}."
    ))]);
    exit_status(&mut roff);
    roff.control("SH", ["FILES"]);
    for (path, what) in [
        (CONFIG_PATH, "the options, as the package's unit reads them"),
        ("/run/denylist/denylist.sock", "the API socket (--socket)"),
        ("/var/lib/denylist/denylist.db", "the store (--state-dir)"),
        (
            "/sys/fs/bpf/denylist",
            "the pinned links and maps that keep filtering while no daemon runs (--bpffs)",
        ),
    ] {
        roff.control("TP", []);
        roff.text([bold(path)]);
        roff.text([roman(what)]);
    }
    see_also(
        &mut roff,
        &["denylistd.toml(5)", "denylist(1)", "bpftool(8)"],
    );
    roff.to_writer(w)
}

/// denylistd.toml(5): one entry per key, from the flag of the same name.
pub fn config_page(w: &mut dyn Write) -> io::Result<()> {
    let version = env!("CARGO_PKG_VERSION");
    let mut roff = Roff::default();
    roff.control(
        "TH",
        [
            "DENYLISTD.TOML",
            "5",
            "",
            &format!("denylistd {version}"),
            "",
        ],
    );
    roff.control("SH", ["NAME"]);
    roff.text([roman(
        "denylistd.toml - the options of denylistd, as a TOML file",
    )]);
    roff.control("SH", ["SYNOPSIS"]);
    roff.text([bold(CONFIG_PATH)]);
    roff.control("SH", ["DESCRIPTION"]);
    roff.text([roman(
        "denylistd reads this file when started with --config FILE; the package's systemd unit gives it this path. Each key is a flag of denylistd(8) without the leading --, and takes the same value; a flag on the command line wins over the key. An empty file, or one with every key commented out as shipped, means every default. An unknown key, or a value that does not parse, stops the daemon with exit status 2.",
    )]);
    roff.control("PP", []);
    roff.text([roman(
        "Durations are strings such as \"90s\", \"30m\", \"24h\" or \"7d\"; names, paths and addresses are strings; numbers are bare.",
    )]);
    roff.control("SH", ["KEYS"]);
    for arg in config_keys() {
        let key = arg.get_long().unwrap_or_default();
        let value = arg
            .get_value_names()
            .and_then(|names| names.first())
            .map_or_else(|| key.to_uppercase(), ToString::to_string);
        roff.control("TP", []);
        match arg.get_action() {
            ArgAction::SetTrue => roff.text([
                bold(key),
                roman(" = "),
                italic("true"),
                roman(" | "),
                italic("false"),
            ]),
            ArgAction::Append => roff.text([
                bold(key),
                roman(" = ["),
                italic(value.as_str()),
                roman(", ...]"),
            ]),
            _ => roff.text([bold(key), roman(" = "), italic(value.as_str())]),
        };
        // clap drops the final period of a one-line help; the sentences
        // added below need it back.
        let mut help = arg.get_help().map(ToString::to_string).unwrap_or_default();
        if !help.ends_with('.') {
            help.push('.');
        }
        let choices: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| v.get_name().to_string())
            .collect();
        if !choices.is_empty() {
            help.push_str(&format!(" One of: {}.", choices.join(", ")));
        }
        if let Some(var) = arg.get_env() {
            help.push_str(&format!(
                " The environment variable {} wins over this key.",
                var.to_string_lossy()
            ));
        }
        roff.text([roman(help)]);
    }
    roff.control("SH", ["EXAMPLE"]);
    roff.control("nf", []);
    for line in EXAMPLE.lines() {
        roff.text([roman(line)]);
    }
    roff.control("fi", []);
    roff.control("SH", ["FILES"]);
    roff.control("TP", []);
    roff.text([bold(CONFIG_PATH)]);
    roff.text([roman(
        "shipped by the package with every key commented out and its default shown; a conffile, kept on upgrades and on removal, deleted on purge",
    )]);
    see_also(&mut roff, &["denylistd(8)", "denylist(1)"]);
    roff.to_writer(w)
}

fn exit_status(roff: &mut Roff) {
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in EXIT_STATUS {
        roff.control("TP", []);
        roff.text([bold(code)]);
        roff.text([roman(meaning)]);
    }
}

fn see_also(roff: &mut Roff, pages: &[&str]) {
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(pages.join(", "))]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(page: fn(&mut dyn Write) -> io::Result<()>) -> String {
        let mut out = Vec::new();
        page(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_daemon_page_has_every_flag_and_the_exit_status() {
        let page = render(daemon_page);
        for arg in Args::command().get_arguments() {
            if let Some(long) = arg.get_long() {
                // roff escapes each - of a flag as \-.
                let flag = format!("\\-\\-{}", long.replace('-', "\\-"));
                assert!(page.contains(&flag), "{long} in denylistd(8)");
            }
        }
        assert!(page.contains(".TH denylistd 8"), "{page}");
        assert!(page.contains(".SH \"EXIT STATUS\""), "{page}");
        for (code, _) in EXIT_STATUS {
            assert!(page.contains(&format!("\\fB{code}\\fR")), "exit {code}");
        }
    }

    #[test]
    fn the_config_page_has_every_key_and_no_mode() {
        let page = render(config_page);
        let keys = config_keys();
        assert!(keys.len() > 10, "{keys:?}");
        for arg in &keys {
            let key = arg.get_long().unwrap().replace('-', "\\-");
            assert!(page.contains(&format!(".TP\n\\fB{key}\\fR")), "{key}");
        }
        for not_a_key in ["config", "unpin", "write\\-man", "help"] {
            assert!(
                !page.contains(&format!("\\fB{not_a_key}\\fR")),
                "{not_a_key}"
            );
        }
        assert!(
            page.contains("\\fBiface\\fR = [\\fIIFACE\\fR, ...]"),
            "{page}"
        );
        assert!(page.contains("One of: auto, native, skb."), "{page}");
    }
}
