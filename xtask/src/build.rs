//! `cargo xtask build`: builds denylistd and the denylist CLI; the XDP program
//! is built along with them and embedded in both.

use anyhow::Context as _;

use crate::{cmd, host, setup};

pub fn run(release: bool) -> anyhow::Result<()> {
    setup::ensure()?;
    let mut build = cmd::cargo(["build", "-p", "denylist-user"])?;
    if release {
        build.arg("--release");
    }
    cmd::run(&mut build).context(
        "building denylist failed: fix the errors above, then rerun `cargo xtask build`",
    )?;
    let profile = if release { "release" } else { "debug" };
    let bin = host::target_dir().join(profile);
    println!("daemon: {}", bin.join("denylistd").display());
    println!("CLI:    {}", bin.join("denylist").display());
    Ok(())
}
