//! `cargo xtask test`: every check CI runs: the layer check, fmt, clippy,
//! clippy of the XDP program for the BPF target, the CLI built alone with
//! stable, the unit tests, a short run of each fuzz target, the root tests
//! against the running kernel, the Debian package installed and removed on
//! this machine, and a quick bench.
//!
//! Each step names the steps it needs. A step runs when all of those
//! passed; otherwise it is skipped, and so is every step that needs it. A
//! failure does not stop the steps that do not depend on it, so one run
//! shows every problem. At the end a line per step says how it went, and
//! the task fails if any step failed.

use std::{
    collections::HashMap,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::bail;

use crate::{bench, cli_alone, cmd, fuzz, host, layers, package, setup};

pub fn run(long: bool, filters: &[String]) -> anyhow::Result<()> {
    setup::ensure_all()?;
    run_steps(steps(long, filters)?)
}

/// The steps, in the order they run; each needs only steps before it.
fn steps(long: bool, filters: &[String]) -> anyhow::Result<Vec<Step>> {
    let mut plan = Plan::default();
    plan.check(
        "layers",
        &[],
        "a layer uses a layer it may not: move the code, or the type it needs, into a layer it \
         may use; docs/architecture.md has the rule",
        layers::check,
    );
    plan.command(
        "fmt",
        &[],
        "run `cargo fmt --all`, then rerun `cargo xtask test`",
        cmd::cargo(["fmt", "--all", "--", "--check"])?,
    );
    // The fuzz crate is a workspace of its own, which `--all` leaves out.
    plan.command(
        "fmt fuzz",
        &[],
        "run `cargo fmt --manifest-path fuzz/Cargo.toml`, then rerun `cargo xtask test`",
        cmd::cargo(["fmt", "--manifest-path", "fuzz/Cargo.toml", "--", "--check"])?,
    );
    // denylist-ebpf is left out of the host passes: built together with
    // denylist-user, denylist-common gains its `user` feature and with it aya
    // and std, whose panic handler clashes with the XDP program's own.
    plan.command(
        "clippy",
        &[],
        "fix the warnings above, then rerun `cargo xtask test`",
        cmd::cargo([
            "clippy",
            "--workspace",
            "--exclude",
            "denylist-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])?,
    );
    // Its own target directory keeps this pass from evicting the host build
    // from cargo's cache.
    let mut ebpf_clippy = cmd::cargo(["+nightly", "clippy", "-p", "denylist-ebpf"])?;
    ebpf_clippy
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(host::target_dir().join("ebpf-clippy"))
        .args(["--", "-D", "warnings"])
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    plan.command(
        "ebpf clippy",
        &[],
        "fix the warnings above in denylist-ebpf, then rerun `cargo xtask test`",
        ebpf_clippy,
    );
    plan.check(
        "cli alone",
        &[],
        "the denylist CLI must build with stable Rust alone, without aya, SQLite or the XDP \
         program: fix the error above, keeping what needs them behind denylist-user's `daemon` \
         feature; `cargo +stable build -p denylist-user --no-default-features --bin denylist` \
         reruns the build",
        cli_alone::check,
    );
    // The root tests and the bench need root; denylist-ebpf builds only for
    // the BPF target, which the ebpf clippy step covers.
    plan.command(
        "unit tests",
        &[],
        "fix the failing test above; `cargo test -p CRATE NAME` reruns just it",
        cmd::cargo([
            "test",
            "--workspace",
            "--exclude",
            "denylist-tests",
            "--exclude",
            "denylist-bench",
            "--exclude",
            "denylist-ebpf",
        ])?,
    );
    // Needs no root. Each target replays its committed seeds, then fuzzes
    // for 10 s; `cargo xtask fuzz` runs longer.
    plan.command(
        "fuzz build",
        &[],
        "fix the build error above; `cargo xtask fuzz --seconds 1` reruns it",
        fuzz::build()?,
    );
    for target in fuzz::TARGETS {
        plan.check(
            &format!("fuzz {target}"),
            &["fuzz build"],
            &fuzz::failed(target),
            move || {
                let scratch = fuzz::fresh_scratch(target)?;
                cmd::run(&mut fuzz::fuzz(target, 10, &scratch)?)
            },
        );
    }
    // What follows loads XDP programs and creates network namespaces; as
    // another user it is skipped, this step naming the reason.
    plan.check(
        "root",
        &[],
        "the root tests load XDP programs and create network namespaces: rerun `cargo xtask \
         test` as root",
        || {
            if !host::is_root()? {
                bail!("not running as root");
            }
            Ok(())
        },
    );
    // The daemon tests run the real binaries; cargo test builds only the
    // library the tests link against.
    plan.command(
        "build binaries",
        &["root"],
        "fix the build error above",
        cmd::cargo(["build", "-p", "denylist-user", "--bins"])?,
    );
    // One test at a time: the tests share the kernel's state.
    let mut root_tests = cmd::cargo(["test", "-p", "denylist-tests", "--", "--test-threads=1"])?;
    root_tests.args(filters);
    if long {
        root_tests.env("DENYLIST_LONG", "1");
    }
    plan.command(
        "root tests",
        &["root", "build binaries"],
        "fix the failing test above; `cargo xtask test -- NAME` reruns just it",
        root_tests,
    );
    // The quick bench checks that every measurement runs and produces
    // output, so the bench cannot rot; it asserts no speed.
    plan.command(
        "build release binaries",
        &["root"],
        "fix the build error above",
        bench::build_binaries()?,
    );
    // The package is built from the release build, and its test installs
    // it on this machine, so it is no part of `root tests`
    // (`test = false` in tests/Cargo.toml) and runs only here.
    plan.check(
        "package",
        &["build release binaries"],
        "fix the error above; `cargo xtask package` reruns it",
        package::package,
    );
    let mut package_test = cmd::cargo([
        "test",
        "-p",
        "denylist-tests",
        "--test",
        "package",
        "--",
        "--test-threads=1",
    ])?;
    package_test.args(filters);
    plan.command(
        "package test",
        &["root", "package"],
        "fix the failing check above; `cargo test -p denylist-tests --test package` reruns it",
        package_test,
    );
    plan.command(
        "bench --quick",
        &["root", "build release binaries"],
        "fix the benchmark above; `cargo xtask bench --quick` reruns it",
        bench::bench(true)?,
    );
    Ok(plan.0)
}

/// What a step does; an error is its failure.
type Action = Box<dyn FnOnce() -> anyhow::Result<()>>;

/// One step: its name, the steps it needs, what to do when it fails, and
/// what it runs.
struct Step {
    name: String,
    needs: Vec<&'static str>,
    hint: String,
    action: Action,
}

/// The steps, as they are listed.
#[derive(Default)]
struct Plan(Vec<Step>);

impl Plan {
    /// Adds a step that runs `action`.
    fn check(
        &mut self,
        name: &str,
        needs: &[&'static str],
        hint: &str,
        action: impl FnOnce() -> anyhow::Result<()> + 'static,
    ) {
        self.0.push(Step {
            name: name.to_owned(),
            needs: needs.to_vec(),
            hint: hint.to_owned(),
            action: Box::new(action),
        });
    }

    /// Adds a step that runs `command`.
    fn command(&mut self, name: &str, needs: &[&'static str], hint: &str, mut command: Command) {
        self.check(name, needs, hint, move || cmd::run(&mut command));
    }
}

/// How a step went.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    Passed,
    Failed,
    /// Not run, because `needs`, a step it needs, did not pass; `failed` is
    /// the failed step behind that (`needs` itself, or what `needs` was
    /// skipped for).
    Skipped {
        needs: String,
        failed: String,
    },
}

/// Goes through `graph`, a list of steps each with the names of the steps
/// it needs, in order: a step whose needs all passed is run by `run`, which
/// says whether it passed; any other is skipped and given to `skipped`.
/// Returns each step's status, in order. Fails, running nothing, unless
/// every name is unique and every step needs only steps listed before it.
fn schedule(
    graph: &[(&str, &[&str])],
    mut run: impl FnMut(usize) -> bool,
    mut skipped: impl FnMut(usize, &Status),
) -> anyhow::Result<Vec<Status>> {
    let mut index = HashMap::new();
    for (i, (name, needs)) in graph.iter().enumerate() {
        for need in *needs {
            if !index.contains_key(need) {
                bail!("step `{name}` needs `{need}`, which is not a step listed before it");
            }
        }
        if index.insert(*name, i).is_some() {
            bail!("two steps are named `{name}`");
        }
    }
    let mut statuses: Vec<Status> = Vec::with_capacity(graph.len());
    for (i, (_, needs)) in graph.iter().enumerate() {
        let blocked = needs.iter().find_map(|need| match &statuses[index[need]] {
            Status::Passed => None,
            Status::Failed => Some(Status::Skipped {
                needs: (*need).to_owned(),
                failed: (*need).to_owned(),
            }),
            Status::Skipped { failed, .. } => Some(Status::Skipped {
                needs: (*need).to_owned(),
                failed: failed.clone(),
            }),
        });
        let status = match blocked {
            Some(status) => {
                skipped(i, &status);
                status
            }
            None if run(i) => Status::Passed,
            None => Status::Failed,
        };
        statuses.push(status);
    }
    Ok(statuses)
}

/// Why a step was skipped, for the output.
fn skip_reason(needs: &str, failed: &str) -> String {
    if needs == failed {
        format!("`{failed}` failed")
    } else {
        format!("needs `{needs}`, skipped because `{failed}` failed")
    }
}

/// Runs `steps` by [`schedule`], prints a line per step and fails if any
/// step failed, naming each with its hint.
fn run_steps(steps: Vec<Step>) -> anyhow::Result<()> {
    let mut actions: Vec<Option<Action>> = Vec::with_capacity(steps.len());
    let mut listed = Vec::with_capacity(steps.len());
    for step in steps {
        actions.push(Some(step.action));
        listed.push((step.name, step.needs, step.hint));
    }
    let graph: Vec<(&str, &[&str])> = listed
        .iter()
        .map(|(name, needs, _)| (name.as_str(), needs.as_slice()))
        .collect();
    let mut took = vec![None::<Duration>; listed.len()];
    let statuses = schedule(
        &graph,
        |i| {
            let name = graph[i].0;
            println!("==> {name}");
            let action = actions[i].take().expect("schedule runs each step once");
            let start = Instant::now();
            let result = action();
            took[i] = Some(start.elapsed());
            match result {
                Ok(()) => true,
                Err(error) => {
                    println!("==> {name} FAILED: {error:#}");
                    false
                }
            }
        },
        |i, status| {
            if let Status::Skipped { needs, failed } = status {
                println!(
                    "==> {}: skipped ({})",
                    graph[i].0,
                    skip_reason(needs, failed)
                );
            }
        },
    )?;

    let width = graph.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    println!("==> summary");
    for (i, status) in statuses.iter().enumerate() {
        let time = took[i].map_or(String::new(), |took| format!("{:.1}s", took.as_secs_f64()));
        let outcome = match status {
            Status::Passed => format!("passed   {time}"),
            Status::Failed => format!("FAILED   {time}"),
            Status::Skipped { needs, failed } => {
                format!("skipped  ({})", skip_reason(needs, failed))
            }
        };
        println!("  {:width$}  {outcome}", graph[i].0);
    }
    let failed: Vec<String> = statuses
        .iter()
        .zip(&listed)
        .filter(|(status, _)| **status == Status::Failed)
        .map(|(_, (name, _, hint))| format!("`{name}`: {hint}"))
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} of {} steps failed:\n{}",
            failed.len(),
            statuses.len(),
            failed.join("\n")
        );
    }
    println!("test passed: every step");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `schedule` over `graph`, the steps in `failing` failing; returns the
    /// statuses and the steps run, in order.
    fn simulate(graph: &[(&str, &[&str])], failing: &[&str]) -> (Vec<Status>, Vec<String>) {
        let mut ran = Vec::new();
        let mut skipped = Vec::new();
        let statuses = schedule(
            graph,
            |i| {
                ran.push(graph[i].0.to_owned());
                !failing.contains(&graph[i].0)
            },
            |i, status| skipped.push((i, status.clone())),
        )
        .expect("a valid graph");
        // `skipped` heard of exactly the skipped steps.
        let expected: Vec<_> = statuses
            .iter()
            .enumerate()
            .filter(|(_, status)| matches!(status, Status::Skipped { .. }))
            .map(|(i, status)| (i, status.clone()))
            .collect();
        assert_eq!(skipped, expected);
        (statuses, ran)
    }

    fn skipped(needs: &str, failed: &str) -> Status {
        Status::Skipped {
            needs: needs.to_owned(),
            failed: failed.to_owned(),
        }
    }

    const GRAPH: &[(&str, &[&str])] = &[
        ("fmt", &[]),
        ("clippy", &[]),
        ("fuzz build", &[]),
        ("fuzz a", &["fuzz build"]),
        ("fuzz b", &["fuzz build"]),
        ("root", &[]),
        ("build", &["root"]),
        ("root tests", &["root", "build"]),
        ("release", &["root"]),
        ("bench", &["root", "release"]),
    ];

    #[test]
    fn all_pass_all_run_in_order() {
        let (statuses, ran) = simulate(GRAPH, &[]);
        assert!(statuses.iter().all(|status| *status == Status::Passed));
        let names: Vec<_> = GRAPH.iter().map(|(name, _)| *name).collect();
        assert_eq!(ran, names);
    }

    #[test]
    fn a_failure_does_not_stop_independent_steps() {
        let (statuses, ran) = simulate(GRAPH, &["fmt", "clippy"]);
        assert_eq!(statuses[0], Status::Failed);
        assert_eq!(statuses[1], Status::Failed);
        assert!(statuses[2..].iter().all(|status| *status == Status::Passed));
        assert_eq!(ran.len(), GRAPH.len());
    }

    #[test]
    fn a_failure_skips_what_needs_it() {
        let (statuses, ran) = simulate(GRAPH, &["fuzz build", "build"]);
        assert_eq!(
            statuses,
            [
                Status::Passed,
                Status::Passed,
                Status::Failed,
                skipped("fuzz build", "fuzz build"),
                skipped("fuzz build", "fuzz build"),
                Status::Passed,
                Status::Failed,
                skipped("build", "build"),
                Status::Passed,
                Status::Passed,
            ]
        );
        assert_eq!(
            ran,
            [
                "fmt",
                "clippy",
                "fuzz build",
                "root",
                "build",
                "release",
                "bench"
            ]
        );
    }

    #[test]
    fn a_skip_propagates_naming_the_failure_behind_it() {
        let (statuses, ran) = simulate(GRAPH, &["root"]);
        assert_eq!(
            statuses[5..],
            [
                Status::Failed,
                skipped("root", "root"),
                // The first need that did not pass is named.
                skipped("root", "root"),
                skipped("root", "root"),
                skipped("root", "root"),
            ]
        );
        assert_eq!(
            ran,
            ["fmt", "clippy", "fuzz build", "fuzz a", "fuzz b", "root"]
        );

        let chain: &[(&str, &[&str])] = &[("a", &[]), ("b", &["a"]), ("c", &["b"]), ("d", &["c"])];
        let (statuses, ran) = simulate(chain, &["a"]);
        assert_eq!(
            statuses,
            [
                Status::Failed,
                skipped("a", "a"),
                skipped("b", "a"),
                skipped("c", "a")
            ]
        );
        assert_eq!(ran, ["a"]);
    }

    #[test]
    fn a_step_runs_only_when_every_need_passed() {
        let graph: &[(&str, &[&str])] = &[("a", &[]), ("b", &[]), ("c", &["a", "b"])];
        let (statuses, _) = simulate(graph, &["b"]);
        assert_eq!(statuses[2], skipped("b", "b"));
        let (statuses, _) = simulate(graph, &["a", "b"]);
        assert_eq!(statuses[2], skipped("a", "a"));
    }

    #[test]
    fn an_invalid_graph_runs_nothing() {
        let invalid: [&[(&str, &[&str])]; 3] = [
            &[("a", &["b"]), ("b", &[])],
            &[("a", &["nowhere"])],
            &[("a", &[]), ("a", &[])],
        ];
        for graph in invalid {
            let result = schedule(graph, |_| panic!("ran a step"), |_, _| panic!("skipped"));
            assert!(result.is_err(), "{graph:?}");
        }
        let looped: &[(&str, &[&str])] = &[("a", &["a"])];
        assert!(schedule(looped, |_| panic!("ran"), |_, _| {}).is_err());
    }

    #[test]
    fn skip_reasons() {
        assert_eq!(skip_reason("build", "build"), "`build` failed");
        assert_eq!(
            skip_reason("b", "a"),
            "needs `b`, skipped because `a` failed"
        );
    }

    #[test]
    fn run_steps_runs_what_it_can_and_names_every_failure() {
        let mut plan = Plan::default();
        plan.check("a", &[], "hint a", || bail!("a broke"));
        plan.check("b", &[], "hint b", || Ok(()));
        plan.check("c", &["a"], "hint c", || panic!("c needs a, which failed"));
        plan.check("d", &["b"], "hint d", || bail!("d broke"));
        let error = run_steps(plan.0).expect_err("two steps failed");
        assert_eq!(
            error.to_string(),
            "2 of 4 steps failed:\n`a`: hint a\n`d`: hint d"
        );

        let mut plan = Plan::default();
        plan.check("a", &[], "hint a", || Ok(()));
        plan.check("b", &["a"], "hint b", || Ok(()));
        run_steps(plan.0).expect("every step passed");
    }

    #[test]
    fn the_real_steps_form_a_valid_graph() {
        let steps = steps(false, &[]).expect("the steps build");
        let graph: Vec<(&str, &[&str])> = steps
            .iter()
            .map(|step| (step.name.as_str(), step.needs.as_slice()))
            .collect();
        let statuses = schedule(&graph, |_| true, |_, _| {}).expect("a valid graph");
        assert_eq!(statuses.len(), 18);
        assert_eq!(graph[0].0, "layers");
    }
}
