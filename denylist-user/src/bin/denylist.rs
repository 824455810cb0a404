//! denylist: the admin CLI of denylistd. Everything it does lives in the
//! `denylist` library's `cli` module; this is the shell.

use clap::Parser as _;

fn main() {
    std::process::exit(denylist::cli::run(denylist::cli::Cli::parse()));
}
