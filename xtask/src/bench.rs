//! `cargo xtask bench`: runs the benchmark binary of denylist-tests.

use crate::{cmd, setup};

pub fn run(quick: bool) -> anyhow::Result<()> {
    setup::ensure()?;
    let mut bench = cmd::cargo(["run", "--release", "-p", "denylist-tests", "--bin", "bench"])?;
    if quick {
        bench.args(["--", "--quick"]);
    }
    Err(cmd::exec(&mut bench))
}
