//! `cargo xtask package`: the Debian package `denylist`, in target/debian.
//!
//! The release build, its man pages and completions come from
//! [`build::build`], the same as `cargo xtask build --release`; cargo-deb
//! then only packs them (`--no-build`), as `[package.metadata.deb]` in
//! denylist-user/Cargo.toml lists, so it never rebuilds with settings of
//! its own.

use std::{fs, path::Path};

use anyhow::Context as _;

use crate::{build, cmd, setup};

pub fn run() -> anyhow::Result<()> {
    setup::ensure_package()?;
    package()
}

/// Builds and packs; prints the package's path.
pub fn package() -> anyhow::Result<()> {
    let bin = build::build(true)?;
    compress_man_pages(&bin.join("man"))?;
    cmd::run(&mut cmd::cargo([
        "deb",
        "-p",
        "denylist-user",
        "--no-build",
    ])?)
    .context(
        "cargo-deb failed: fix the error above (the assets are listed in \
         [package.metadata.deb] of denylist-user/Cargo.toml), then rerun `cargo xtask package`",
    )?;
    println!("install with: dpkg -i target/debian/denylist_*.deb");
    Ok(())
}

/// Debian ships man pages gzipped; `-n` leaves out the name and time, so
/// the same page compresses to the same bytes.
fn compress_man_pages(man: &Path) -> anyhow::Result<()> {
    let mut pages = Vec::new();
    for entry in fs::read_dir(man).with_context(|| format!("listing {}", man.display()))? {
        let path = entry
            .with_context(|| format!("listing {}", man.display()))?
            .path();
        if path.extension().is_some_and(|e| e != "gz") {
            pages.push(path);
        }
    }
    anyhow::ensure!(!pages.is_empty(), "no man pages in {}", man.display());
    pages.sort();
    cmd::run(
        cmd::new("gzip")?
            .args(["-9", "-n", "-k", "-f"])
            .args(&pages),
    )
    .context("compressing the man pages failed: is gzip installed?")
}
