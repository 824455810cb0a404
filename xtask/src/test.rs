//! `cargo xtask test`: every check CI runs, in order, stopping at the first
//! failure: fmt, clippy, clippy of the XDP program for the BPF target, the
//! unit tests, a short run of each fuzz target, the root tests against the
//! running kernel, and a quick bench.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{bench, cmd, fuzz, host, setup};

pub fn run(long: bool, filters: &[String]) -> anyhow::Result<()> {
    setup::ensure_fuzz()?;
    let mut steps = Steps::default();
    steps.run(
        "fmt",
        "run `cargo fmt --all`, then rerun `cargo xtask test`",
        &mut cmd::cargo(["fmt", "--all", "--", "--check"])?,
    )?;
    // The fuzz crate is a workspace of its own, which `--all` leaves out.
    steps.run(
        "fmt fuzz",
        "run `cargo fmt --manifest-path fuzz/Cargo.toml`, then rerun `cargo xtask test`",
        &mut cmd::cargo(["fmt", "--manifest-path", "fuzz/Cargo.toml", "--", "--check"])?,
    )?;
    // denylist-ebpf is left out of the host passes: built together with
    // denylist-user, denylist-common gains its `user` feature and with it aya
    // and std, whose panic handler clashes with the XDP program's own.
    steps.run(
        "clippy",
        "fix the warnings above, then rerun `cargo xtask test`",
        &mut cmd::cargo([
            "clippy",
            "--workspace",
            "--exclude",
            "denylist-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])?,
    )?;
    // Its own target directory keeps this pass from evicting the host build
    // from cargo's cache.
    let ebpf_target_dir = host::target_dir().join("ebpf-clippy");
    steps.run(
        "ebpf clippy",
        "fix the warnings above in denylist-ebpf, then rerun `cargo xtask test`",
        cmd::cargo(["+nightly", "clippy", "-p", "denylist-ebpf"])?
            .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
            .arg("--target-dir")
            .arg(&ebpf_target_dir)
            .args(["--", "-D", "warnings"])
            .env_remove("CARGO_ENCODED_RUSTFLAGS"),
    )?;
    steps.run(
        "unit tests",
        "fix the failing test above; `cargo test -p CRATE NAME` reruns just it",
        &mut cmd::cargo([
            "test",
            "--workspace",
            "--exclude",
            "denylist-tests",
            "--exclude",
            "denylist-ebpf",
        ])?,
    )?;
    // Needs no root. Each target replays its committed seeds, then fuzzes
    // for 10 s; `cargo xtask fuzz` runs longer.
    steps.run(
        "fuzz build",
        "fix the build error above; `cargo xtask fuzz --seconds 1` reruns it",
        &mut fuzz::build()?,
    )?;
    for target in fuzz::TARGETS {
        let scratch = fuzz::fresh_scratch(target)?;
        steps.run(
            &format!("fuzz {target}"),
            &fuzz::failed(target),
            &mut fuzz::fuzz(target, 10, &scratch)?,
        )?;
    }
    if !host::is_root()? {
        steps.print_summary("stopped before the root tests");
        bail!(
            "the root tests load XDP programs and create network namespaces: rerun `cargo xtask \
             test` as root"
        );
    }
    // The daemon tests run the real binaries; cargo test builds only the
    // library the tests link against.
    steps.run(
        "build binaries",
        "fix the build error above",
        &mut cmd::cargo(["build", "-p", "denylist-user", "--bins"])?,
    )?;
    // One test at a time: the tests share the kernel's state.
    let mut root_tests = cmd::cargo(["test", "-p", "denylist-tests", "--", "--test-threads=1"])?;
    root_tests.args(filters);
    if long {
        root_tests.env("DENYLIST_LONG", "1");
    }
    steps.run(
        "root tests",
        "fix the failing test above; `cargo xtask test -- NAME` reruns just it",
        &mut root_tests,
    )?;
    // The quick bench checks that every measurement runs and produces
    // output, so the bench cannot rot; it asserts no speed.
    steps.run(
        "build release binaries",
        "fix the build error above",
        &mut bench::build_binaries()?,
    )?;
    steps.run(
        "bench --quick",
        "fix the benchmark above; `cargo xtask bench --quick` reruns it",
        &mut bench::bench(true)?,
    )?;
    steps.print_summary("passed");
    Ok(())
}

/// The steps run so far and how long each took.
#[derive(Default)]
struct Steps {
    done: Vec<(String, Duration)>,
}

impl Steps {
    /// Runs one step; on failure prints the summary and names the step.
    fn run(&mut self, name: &str, hint: &str, command: &mut Command) -> anyhow::Result<()> {
        println!("==> {name}");
        let start = Instant::now();
        let result = cmd::run(command);
        self.done.push((name.to_owned(), start.elapsed()));
        if result.is_err() {
            self.print_summary(&format!("failed at {name}"));
        }
        result.with_context(|| format!("step `{name}` failed: {hint}"))
    }

    fn print_summary(&self, outcome: &str) {
        let steps: Vec<String> = self
            .done
            .iter()
            .map(|(name, took)| format!("{name} {:.1}s", took.as_secs_f64()))
            .collect();
        println!("test {outcome}: {}", steps.join(", "));
    }
}
