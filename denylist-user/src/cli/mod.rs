//! The `denylist` admin CLI: each command is one request to denylistd's API
//! (docs/api.md), checked here first so a typo fails before anything is sent.
//! The binary only parses the arguments and calls [`run`].
//!
//! Exit codes follow the error classes of [`crate::wire::Class`]: 0 success, 1
//! failure, 2 invalid input or usage, 3 refused by a guardrail, 4 permission
//! denied, 5 not found, 6 conflict.
//!
//! Its parts, each in its own file:
//!
//! - `args`: the command line, every command, flag and value check;
//! - `session`: one command's requests to the daemon, and their replies;
//! - `input`: what a command reads and checks before anything is sent;
//! - `admin`: where the admin is connected from;
//! - `output`: the human form of each reply;
//! - `error`: what a command fails with, and how it is reported;
//! - `man`: the man pages, denylist(1) and one per command;
//! - `client`: the HTTP client for the API socket;
//! - `query`: the query strings it sends.

mod admin;
mod args;
mod auto;
mod auto_args;
mod client;
mod console;
mod error;
mod feed;
mod fleet;
mod input;
mod man;
mod output;
// Public for the API fuzz target, which checks that what the CLI encodes
// decodes to the same request.
pub mod query;
mod session;

use std::io::{self, BufWriter, Write};

use clap::CommandFactory as _;

pub use args::Cli;
pub use client::{Client, Reply};
use error::{Error, detail_lines};
pub use man::{man_page, write_man_pages};
use session::Session;

use crate::model::now_ms;

/// The whole command line, for completions and the man page.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Runs one command; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    let mut session = Session {
        client: Client::new(&cli.socket),
        out: BufWriter::new(io::stdout().lock()),
        now: now_ms(),
    };
    let result = session.dispatch(cli.command);
    let result = result.and_then(|()| session.out.flush().map_err(Error::Output));
    if session.client.saw_stale() {
        eprintln!(
            "denylist: stale: this node cannot reach the fleet's database, so this answer comes from its own copy and may miss changes made on other nodes; changes fail until the database is back"
        );
    }
    match result {
        Ok(()) => 0,
        // The reader went away (`denylist list | head`): not a failure.
        Err(Error::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => 0,
        Err(e @ Error::Output(_)) => {
            eprintln!("denylist: {e}");
            1
        }
        Err(Error::Api(e)) => {
            // Whatever was printed before the error still goes out first.
            let _ = session.out.flush();
            eprintln!("denylist: {}", e.message);
            let details = e.details.as_ref().map(detail_lines).unwrap_or_default();
            // A lone refusal is already the message; say it once.
            for line in details.iter().filter(|l| !e.message.contains(l.as_str())) {
                eprintln!("  {line}");
            }
            e.class.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_man_page_and_completions_render() {
        let mut man = Vec::new();
        man_page(&mut man).unwrap();
        let man = String::from_utf8(man).unwrap();
        assert!(man.contains("denylist"), "{man}");
        let mut bash = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut command(),
            "denylist",
            &mut bash,
        );
        let bash = String::from_utf8(bash).unwrap();
        assert!(bash.contains("rollback") && bash.contains("--skip-guarded"));
    }
}
