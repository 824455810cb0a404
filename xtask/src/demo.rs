//! `cargo xtask demo`: builds denylistd and the CLI, then runs the demo
//! binary of denylist-bench, whose exit code is the task's.

use crate::{cmd, setup};

pub fn run() -> anyhow::Result<()> {
    setup::ensure()?;
    cmd::run(&mut cmd::cargo([
        "build",
        "--release",
        "-p",
        "denylist-user",
        "--bins",
    ])?)?;
    Err(cmd::exec(&mut cmd::cargo([
        "run",
        "--release",
        "-p",
        "denylist-bench",
        "--bin",
        "demo",
    ])?))
}
