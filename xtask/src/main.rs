//! `cargo xtask`: installs what denylist needs, builds it, tests it, fuzzes
//! it and runs the demo. Every task that builds runs a cheap setup check first.

mod bench;
mod build;
mod cli_alone;
mod cmd;
mod demo;
mod fuzz;
mod host;
mod layers;
mod package;
mod setup;
mod test;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Development tasks for denylist")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need: apt packages, nightly with
    /// rust-src, bpf-linker linked against the nightly toolchain's LLVM,
    /// cargo-fuzz, cargo-deb, and promtool (from Debian's prometheus
    /// package, unpacked without installing it).
    Setup,
    /// Build denylistd and the denylist CLI, their man pages and shell
    /// completions.
    Build {
        /// Build with the release profile.
        #[arg(long)]
        release: bool,
    },
    /// Build the Debian package denylist (target/debian/denylist_*.deb) from
    /// the release build, with cargo-deb.
    Package,
    /// Run every check CI runs; a failed step skips only the steps that need
    /// it.
    ///
    /// The steps: the layer check, fmt, clippy, eBPF clippy, the CLI built
    /// alone with stable, unit tests, 10 s of each fuzz target, the root
    /// tests, the Debian package and its test, and a quick bench. A line per
    /// step at the end says how each
    /// went; the task fails if any step failed.
    Test {
        /// Also run the long root tests (sets DENYLIST_LONG=1).
        #[arg(long)]
        long: bool,
        /// Test name filters, passed to the root tests.
        #[arg(last = true)]
        filters: Vec<String>,
    },
    /// Check that every `crate::` path in denylist-user points down the
    /// layers (docs/architecture.md); `test` runs this first.
    Layers,
    /// Run the benchmarks (needs root).
    Bench {
        /// A short run, for checking that the benchmarks work.
        #[arg(long)]
        quick: bool,
    },
    /// Run the demo (needs root).
    Demo,
    /// Run every cargo-fuzz target in fuzz/ (with nightly), from its seeds in
    /// fuzz/corpus; what the runs find is kept in target/fuzz/corpus.
    Fuzz {
        /// How long to fuzz each target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::run(),
        Task::Build { release } => build::run(release),
        Task::Package => package::run(),
        Task::Test { long, filters } => test::run(long, &filters),
        Task::Layers => layers::check(),
        Task::Bench { quick } => bench::run(quick),
        Task::Demo => demo::run(),
        Task::Fuzz { seconds } => fuzz::run(seconds),
    }
}
