//! denylist-web: the web console of denylistd. Everything it does lives in
//! the `denylist` library's `web` module; this is the shell.
//!
//! Exit codes: 0 stopped (or the man page written), 1 a failure worth
//! retrying (the port is taken),
//! 2 a usage or configuration error (packaging/denylist-web.service does
//! not restart on it).

use std::process::ExitCode;

use clap::Parser as _;
use denylist::web::{Cli, Command, StartError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(dir) = &cli.write_man {
        return match denylist::web::write_man_page(dir) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!(
                    "denylist-web: cannot write the man page into {}: {e}",
                    dir.display()
                );
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::User(cmd)) = &cli.command {
        return match denylist::web::user(cmd, &cli.users, denylist::web::read_password) {
            Ok(out) => {
                if !out.is_empty() {
                    println!("{out}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("denylist-web: {e}");
                ExitCode::FAILURE
            }
        };
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match serve(&cli) {
        Ok(()) => {
            tracing::info!("denylist-web stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e:#}");
            let retry = e
                .downcast_ref::<StartError>()
                .is_none_or(StartError::may_pass_on_retry);
            ExitCode::from(if retry { 1 } else { 2 })
        }
    }
}

fn serve(cli: &Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(denylist::web::serve(&cli.serve, &cli.users, ready, stop()))?;
    Ok(())
}

/// READY=1 for systemd (Type=notify), once browsers can connect.
fn ready() {
    // Outside systemd there is no one to tell, and that is no error.
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!("cannot tell systemd the console is ready: {e}");
    }
}

/// SIGTERM (systemd) or SIGINT (a terminal) stops the console; systemd
/// hears STOPPING=1 while the requests under way finish.
async fn stop() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!("cannot watch for SIGTERM: {e}");
            // Without SIGTERM, Ctrl-C still stops it.
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Stopping]) {
        tracing::warn!("cannot tell systemd the console is stopping: {e}");
    }
}
