//! `cargo xtask`: installs what denylist needs, builds it, tests it and runs
//! the demo. Every task that builds runs a cheap setup check first.

mod bench;
mod build;
mod cmd;
mod demo;
mod host;
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
    /// rust-src, and bpf-linker linked against the nightly toolchain's LLVM.
    Setup,
    /// Build denylistd and the denylist CLI.
    Build {
        /// Build with the release profile.
        #[arg(long)]
        release: bool,
    },
    /// Run fmt, clippy, eBPF clippy, unit tests and the root tests, in order.
    Test {
        /// Also run the long root tests (sets DENYLIST_LONG=1).
        #[arg(long)]
        long: bool,
        /// Test name filters, passed to the root tests.
        #[arg(last = true)]
        filters: Vec<String>,
    },
    /// Run the benchmarks (needs root).
    Bench {
        /// A short run, for checking that the benchmarks work.
        #[arg(long)]
        quick: bool,
    },
    /// Run the demo (needs root).
    Demo,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::run(),
        Task::Build { release } => build::run(release),
        Task::Test { long, filters } => test::run(long, &filters),
        Task::Bench { quick } => bench::run(quick),
        Task::Demo => demo::run(),
    }
}
