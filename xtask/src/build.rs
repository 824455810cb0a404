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
    let man = bin.join("man");
    std::fs::create_dir_all(&man).with_context(|| format!("creating {}", man.display()))?;
    let page = std::process::Command::new(bin.join("denylist"))
        .arg("man")
        .output()
        .context("running `denylist man` to render the man page")?;
    anyhow::ensure!(
        page.status.success(),
        "`denylist man` failed: {}",
        String::from_utf8_lossy(&page.stderr)
    );
    std::fs::write(man.join("denylist.1"), page.stdout).context("writing the man page")?;
    println!("daemon:   {}", bin.join("denylistd").display());
    println!("CLI:      {}", bin.join("denylist").display());
    println!("man page: {}", man.join("denylist.1").display());
    Ok(())
}
