//! `cargo xtask bench`: builds the release binaries the bench runs (the
//! daemon and the CLI, for the deploy and control-plane sections), then runs
//! the `bench` binary of denylist-bench.

use std::process::Command;

use crate::{cmd, setup};

pub fn run(quick: bool) -> anyhow::Result<()> {
    setup::ensure()?;
    cmd::run(&mut build_binaries()?)?;
    Err(cmd::exec(&mut bench(quick)?))
}

/// The release daemon and CLI: the bench is a release build, and finds the
/// binaries beside itself in target/release.
pub fn build_binaries() -> anyhow::Result<Command> {
    cmd::cargo(["build", "--release", "-p", "denylist-user", "--bins"])
}

/// The bench itself; `--quick` runs small sizes and checks only that every
/// measurement produced output.
pub fn bench(quick: bool) -> anyhow::Result<Command> {
    let mut bench = cmd::cargo(["run", "--release", "-p", "denylist-bench", "--bin", "bench"])?;
    if quick {
        bench.args(["--", "--quick"]);
    }
    Ok(bench)
}
