//! denylist-web: the web console of denylistd. Everything it does lives in
//! the `denylist` library's `web` module; this is the shell.

use anyhow::Context as _;
use clap::Parser as _;
use denylist::web::{Cli, Command};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::User(cmd)) = &cli.command {
        let out = denylist::web::user(cmd, &cli.users, denylist::web::read_password)?;
        if !out.is_empty() {
            println!("{out}");
        }
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        denylist::web::serve(&cli.serve, &cli.users, stop()).await?;
        tracing::info!("denylist-web stopped");
        Ok(())
    })
}

/// SIGTERM (systemd) or SIGINT (a terminal) stops the console.
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
}
