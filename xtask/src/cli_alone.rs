//! The "cli alone" step of `cargo xtask test`: the `denylist` CLI built the
//! way an admin's workstation builds it, with stable Rust alone and without
//! the daemon: what `cargo +stable install --path denylist-user
//! --no-default-features --bin denylist --locked` builds. Neither the XDP
//! program (nightly, bpf-linker) nor aya nor SQLite may be pulled in.

use std::{env, process::Command};

use anyhow::bail;

use crate::cmd;

/// Packages that only the daemon or the web console needs: none of them
/// may be in the CLI's dependency tree.
const DAEMON_ONLY: &[&str] = &[
    "aya",
    "aya-build",
    "aya-obj",
    "rusqlite",
    "libsqlite3-sys",
    // Fleet mode's database client.
    "postgres",
    "tokio-postgres",
    "denylist-ebpf",
    // The OpenAPI document is the daemon's to serve.
    "utoipa",
    // The web console's: templates, password hashes, its HTTP server.
    "askama",
    "argon2",
    "axum",
    "hyper",
];

/// Builds the CLI alone with stable, then fails if its normal or build
/// dependencies include a package in [`DAEMON_ONLY`].
pub fn check() -> anyhow::Result<()> {
    cmd::run(&mut stable([
        "build",
        "-p",
        "denylist-user",
        "--no-default-features",
        "--bin",
        "denylist",
        "--locked",
    ])?)?;
    let tree = cmd::output(&mut stable([
        "tree",
        "-p",
        "denylist-user",
        "--no-default-features",
        "-e",
        "normal,build",
        "--prefix",
        "none",
    ])?)?;
    let found = daemon_only_in(&tree);
    if !found.is_empty() {
        bail!(
            "the CLI alone depends on {}, which only the daemon or the console may use; `cargo tree -p \
             denylist-user --no-default-features -e normal,build -i {}` shows what pulls it in",
            found.join(", "),
            found[0]
        );
    }
    println!(
        "cli alone: built with stable, and none of {} among its dependencies",
        DAEMON_ONLY.join(", ")
    );
    Ok(())
}

/// `cargo +stable ARGS`, from a clean slate: when `cargo xtask` itself runs
/// under rustup, `RUSTUP_TOOLCHAIN` and `CARGO` name the outer toolchain;
/// `+stable` wins over the first, and removing both (and any `RUSTC` or
/// `RUSTDOC`) leaves nothing that could bring another toolchain's cargo,
/// rustc or rustdoc into the build.
fn stable<const N: usize>(args: [&str; N]) -> anyhow::Result<Command> {
    let mut command = cmd::cargo(["+stable"])?;
    command.args(args);
    for var in ["RUSTUP_TOOLCHAIN", "CARGO", "RUSTC", "RUSTDOC"] {
        if env::var_os(var).is_some() {
            command.env_remove(var);
        }
    }
    Ok(command)
}

/// The packages of [`DAEMON_ONLY`] in the output of `cargo tree --prefix
/// none`: one package a line, its name first.
fn daemon_only_in(tree: &str) -> Vec<&'static str> {
    DAEMON_ONLY
        .iter()
        .copied()
        .filter(|name| {
            tree.lines()
                .any(|line| line.split_whitespace().next() == Some(*name))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_daemon_only_packages_by_exact_name() {
        let tree = "denylist-user v0.1.0 (/work/main/denylist-user)\nanyhow v1.0.100\n\
                    aya v0.14.0\naya-obj v0.2.1\naya-log-common v0.1.0\nrusqlite-derive v1.0.0\n\
                    libsqlite3-sys v0.35.0\naya v0.14.0 (*)\n";
        assert_eq!(daemon_only_in(tree), ["aya", "aya-obj", "libsqlite3-sys"]);
    }

    #[test]
    fn a_clean_tree_has_none() {
        let tree = "denylist-user v0.1.0 (/work/main/denylist-user)\nclap v4.5.0\n\
                    denylist-common v0.1.0 (/work/main/denylist-common)\nserde v1.0.229\n";
        assert!(daemon_only_in(tree).is_empty());
    }
}
