//! `cargo xtask build`: builds denylistd, the denylist CLI and the web
//! console denylist-web; the XDP program is built along with them and
//! embedded in the first two. Then the built binaries
//! render the man pages and the shell completions beside themselves.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

use crate::{cmd, host, setup};

/// The completion scripts `denylist completions SHELL` prints, by file name
/// under `completions/`.
pub const COMPLETIONS: [(&str, &str); 3] = [
    ("bash", "denylist.bash"),
    ("zsh", "_denylist"),
    ("fish", "denylist.fish"),
];

pub fn run(release: bool) -> anyhow::Result<()> {
    setup::ensure()?;
    let bin = build(release)?;
    println!("daemon:      {}", bin.join("denylistd").display());
    println!("CLI:         {}", bin.join("denylist").display());
    println!("web console: {}", bin.join("denylist-web").display());
    println!("man pages:   {}", bin.join("man").display());
    println!("completions: {}", bin.join("completions").display());
    Ok(())
}

/// Builds the binaries, then their man pages and completions; returns the
/// directory that holds them all (target/debug or target/release).
pub fn build(release: bool) -> anyhow::Result<PathBuf> {
    let mut build = cmd::cargo(["build", "-p", "denylist-user"])?;
    if release {
        build.arg("--release");
    }
    cmd::run(&mut build).context(
        "building denylist failed: fix the errors above, then rerun `cargo xtask build`",
    )?;
    let profile = if release { "release" } else { "debug" };
    let bin = host::target_dir().join(profile);
    man_pages(&bin)?;
    completions(&bin)?;
    Ok(bin)
}

/// Every man page into `bin/man`, emptied first so that no page of a
/// command that is gone is left to be packaged.
fn man_pages(bin: &Path) -> anyhow::Result<()> {
    let man = bin.join("man");
    if man.exists() {
        fs::remove_dir_all(&man).with_context(|| format!("emptying {}", man.display()))?;
    }
    let mut cli = Command::new(bin.join("denylist"));
    cli.arg("man").arg("--dir").arg(&man);
    quiet(&mut cli).context("rendering the CLI's man pages")?;
    let mut daemon = Command::new(bin.join("denylistd"));
    daemon.arg("--write-man").arg(&man);
    quiet(&mut daemon).context("rendering the daemon's man pages")?;
    let mut web = Command::new(bin.join("denylist-web"));
    web.arg("--write-man").arg(&man);
    quiet(&mut web).context("rendering the console's man page")?;
    Ok(())
}

fn completions(bin: &Path) -> anyhow::Result<()> {
    let dir = bin.join("completions");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (shell, file) in COMPLETIONS {
        let mut cli = Command::new(bin.join("denylist"));
        cli.args(["completions", shell]);
        let script =
            quiet(&mut cli).with_context(|| format!("rendering the {shell} completions"))?;
        let path = dir.join(file);
        fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Runs a built binary and returns its stdout; fails with its stderr.
fn quiet(command: &mut Command) -> anyhow::Result<Vec<u8>> {
    let out = command
        .output()
        .with_context(|| format!("cannot run {}", command.get_program().to_string_lossy()))?;
    anyhow::ensure!(
        out.status.success(),
        "{} failed: {}",
        command.get_program().to_string_lossy(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout)
}
