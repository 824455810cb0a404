//! denylistd: owns the denylist and the XDP program that enforces it.
//! Everything it does lives in the `denylist` library; this is the shell.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use denylist::{
    daemon::{self, Args, Config, Core, Unpinned},
    server,
};

/// What the daemon cannot work without, as bits of CapEff: CAP_BPF to
/// load the program and make its maps, CAP_PERFMON because the verifier
/// refuses the program's packet pointer arithmetic without it, and
/// CAP_NET_ADMIN to attach. Root has them all.
const NEEDED: [(u32, &str); 3] = [(39, "CAP_BPF"), (38, "CAP_PERFMON"), (12, "CAP_NET_ADMIN")];

fn missing_capabilities() -> Vec<&'static str> {
    let caps = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0);
    NEEDED
        .iter()
        .filter(|(bit, _)| caps & (1 << bit) == 0)
        .map(|(_, name)| *name)
        .collect()
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping; the filter stays in place"),
        _ = int.recv() => tracing::info!("SIGINT: stopping; the filter stays in place"),
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        // The socket first: if another daemon serves it, stop before
        // touching its maps and links.
        let listener = server::bind_socket(&config.socket)?;
        let metrics = match config.metrics {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot serve metrics on {addr}"))?,
            ),
            None => None,
        };
        let socket = config.socket.clone();
        let core = tokio::task::spawn_blocking(move || Core::start(config))
            .await
            .context("starting")??;
        server::run(core, listener, metrics, shutdown_signal())
            .await
            .with_context(|| format!("serving {}", socket.display()))?;
        Ok(())
    })
}

/// `--write-man DIR`: the man pages, for packaging; needs no privileges.
fn write_man(dir: &std::path::Path) -> ExitCode {
    match daemon::write_man_pages(dir) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "denylistd: cannot write the man pages in {}: {e}",
                dir.display()
            );
            ExitCode::from(1)
        }
    }
}

/// `--unpin`: detach and unpin everything, as the package's prerm does.
fn unpin(config: &Config) -> ExitCode {
    let done = match daemon::unpin(config) {
        Ok(done) => done,
        Err(e) => {
            eprintln!("denylistd: {e}");
            return ExitCode::from(1);
        }
    };
    for Unpinned { dir, cleared } in done {
        let Some(cleared) = cleared else {
            println!("nothing pinned under {}", dir.display());
            continue;
        };
        for iface in &cleared.links {
            println!("detached {iface}");
        }
        if cleared.kept.is_empty() {
            println!("unpinned and removed {}", dir.display());
        } else {
            eprintln!(
                "denylistd: unpinned the filter, but {} also holds {}: not denylistd's, so left; remove them by hand",
                dir.display(),
                cleared.kept.join(", ")
            );
        }
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(dir) = &args.write_man {
        return write_man(dir);
    }
    server::logging::init();
    let unpin_only = args.unpin;
    let init_fleet = args.init_fleet;
    let move_to_fleet = args.move_to_fleet;
    let config = match Config::from_args(args) {
        Ok(c) => c,
        // Removing the package must not fail on a config it no longer
        // understands: only the pin directory and the socket matter here.
        Err(e) if unpin_only => {
            eprintln!("denylistd: {e}; unpinning with the default paths");
            match Config::from_args(Args::default()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("denylistd: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        Err(e) => {
            eprintln!("denylistd: {e}");
            return ExitCode::from(2);
        }
    };
    if unpin_only {
        return unpin(&config);
    }
    if let (true, Some(fleet)) = (move_to_fleet, &config.fleet) {
        return match fleet.move_into(&config.state_dir, &config.socket) {
            Ok(bytes) => {
                println!(
                    "moved {} ({bytes} bytes) into the fleet at {}: start denylistd with --store to run this host as its first node",
                    config.state_dir.display(),
                    fleet.url
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("denylistd: {e}");
                ExitCode::from(1)
            }
        };
    }
    if let (true, Some(fleet)) = (init_fleet, &config.fleet) {
        return match fleet.init() {
            Ok(()) => {
                println!("the fleet's tables are ready in {}", fleet.url);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("denylistd: {e}");
                ExitCode::from(1)
            }
        };
    }
    let missing = missing_capabilities();
    if !missing.is_empty() {
        eprintln!(
            "denylistd: needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN to load and attach its XDP program, and lacks {}: run it as root or through packaging/denylistd.service",
            missing.join(" and ")
        );
        return ExitCode::from(1);
    }
    match serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("denylistd: {e:#}");
            ExitCode::from(1)
        }
    }
}
