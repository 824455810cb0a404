//! `cargo xtask fuzz`: runs each cargo-fuzz target of fuzz/ in turn, from
//! its seeds in fuzz/corpus/TARGET. The targets build with nightly into
//! target/fuzz, beside every other build.
//!
//! libFuzzer writes what it finds to the first corpus directory it is
//! given, so that is a directory under target/fuzz, never the committed
//! seeds: the seeds change only when someone adds one on purpose.

use std::{
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

use crate::{cmd, host, setup};

/// The fuzz targets (fuzz/fuzz_targets/NAME.rs).
pub const TARGETS: [&str; 3] = ["target_parse", "import_parse", "api_decode"];

/// How the targets are built, for `build` and `run` alike so that one build
/// serves both. The code under test is safe Rust, where AddressSanitizer
/// finds nothing that a panic would not show, yet it cut the executions per
/// second to a third and made the cold build half as long again; 16 codegen
/// units let the large library build on every core. Debug assertions stay
/// on, and overflow checks with them.
fn build_options() -> Vec<OsString> {
    vec![
        "--sanitizer=none".into(),
        "--codegen-units=16".into(),
        "--debug-assertions".into(),
        "--target-dir".into(),
        target_dir().into(),
    ]
}

/// `cargo xtask fuzz --seconds N`: every target for N seconds. What the
/// runs find is kept in target/fuzz/corpus, so a longer run goes on from
/// where the last one stopped.
pub fn run(seconds: u64) -> anyhow::Result<()> {
    setup::ensure_fuzz()?;
    cmd::run(&mut build()?).context(
        "building the fuzz targets failed: fix the errors above, then rerun `cargo xtask fuzz`",
    )?;
    for target in TARGETS {
        let found = target_dir().join("corpus").join(target);
        cmd::run(&mut fuzz(target, seconds, &found)?).with_context(|| failed(target))?;
    }
    println!("fuzz: every target ran {seconds}s without a failure");
    Ok(())
}

/// Builds every target, so that a run's seconds go to fuzzing.
pub fn build() -> anyhow::Result<Command> {
    let mut build = cmd::cargo(["+nightly", "fuzz", "build"])?;
    build.args(build_options());
    Ok(build)
}

/// Replays `target`'s seeds and what is in `found`, then fuzzes it for
/// `seconds`, adding new inputs to `found`.
pub fn fuzz(target: &str, seconds: u64, found: &Path) -> anyhow::Result<Command> {
    fs::create_dir_all(found).with_context(|| {
        format!(
            "cannot create {}: check that target/ is writable",
            found.display()
        )
    })?;
    let mut run = cmd::cargo(["+nightly", "fuzz", "run"])?;
    run.args(build_options())
        .arg(target)
        .arg(found)
        .arg(
            host::workspace_root()
                .join("fuzz")
                .join("corpus")
                .join(target),
        )
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        // Every input is small: one that takes this long is a hang.
        .arg("-timeout=10")
        .arg("-print_final_stats=1");
    Ok(run)
}

/// An empty corpus directory for `cargo xtask test`'s short run of
/// `target`, so that the step checks the committed seeds and its own 10 s,
/// not what earlier runs found.
pub fn fresh_scratch(target: &str) -> anyhow::Result<PathBuf> {
    let scratch = target_dir().join("smoke").join(target);
    if scratch.exists() {
        fs::remove_dir_all(&scratch)
            .with_context(|| format!("cannot empty {}: remove it by hand", scratch.display()))?;
    }
    Ok(scratch)
}

/// What to do when `target` fails.
pub fn failed(target: &str) -> String {
    format!(
        "fuzz target {target} failed: the input is saved under fuzz/artifacts/{target}/ and the \
         command above it reproduces it; fix the bug (with a unit test), then copy the input into \
         fuzz/corpus/{target}/"
    )
}

fn target_dir() -> PathBuf {
    host::target_dir().join("fuzz")
}
