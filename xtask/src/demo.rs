//! `cargo xtask demo`: runs the demo binary of denylist-tests; its exit code
//! is the task's.

use crate::{cmd, setup};

pub fn run() -> anyhow::Result<()> {
    setup::ensure()?;
    Err(cmd::exec(&mut cmd::cargo([
        "run",
        "--release",
        "-p",
        "denylist-tests",
        "--bin",
        "demo",
    ])?))
}
