//! The SSH guardrail on a host under attack: how long reading the host for
//! one `add` takes (its addresses, and the peers of live sessions on the
//! protected port that the new entry would cover) while tens of thousands
//! of established connections sit on that port: through the daemon's
//! session watch, and through sock_diag, its fallback, beside it.

use std::{
    io::{BufRead as _, BufReader, Read as _},
    net::{IpAddr, Ipv4Addr, SocketAddrV4, TcpListener, TcpStream},
    os::fd::{AsRawFd as _, FromRawFd as _, RawFd},
    process::{Child, ChildStdin, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use denylist::{
    daemon::HostProbe,
    model::{List, Target},
    policy::{MAX_FILTERED_TARGETS, host_addresses, live_peers},
    wire::{AddRequest, ImportParams, StageItem},
};
use nix::{
    fcntl::{FcntlArg, FdFlag, fcntl},
    sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, setsockopt, socket,
        sockopt::{IpBindAddressNoPort, Linger},
    },
};
use serde_json::json;

use crate::report::{Goal, Opts, Section, Table, fmt_num};

/// The bound for one guardrail check at 50,000 connections.
const LIMIT_MS: f64 = 5.0;
/// Connections per source address: the attack comes from many addresses,
/// as a real one does, and no source runs out of ephemeral ports.
const PER_SOURCE: u32 = 250;
/// Connections each holder process makes and accepts: both ends are open
/// descriptors, and without CAP_SYS_RESOURCE (not granted on this VM or in
/// CI) no process may open more than the hard limit, 20,000 here.
const PER_HOLDER: u32 = 8_000;
/// The first argument that makes the bench binary a holder.
pub const HOLD: &str = "--hold-connections";

/// One connection to 127.0.0.1:`port` from loopback address `from`, which
/// closes with a reset: no TIME_WAIT sockets outlive the section.
fn connect_from(from: Ipv4Addr, port: u16) -> Result<TcpStream> {
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // The port is chosen at connect, as for any client, so no holder's end
    // takes the listener's port on its own address.
    setsockopt(&fd, IpBindAddressNoPort, &true)?;
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(from, 0)),
    )
    .with_context(|| format!("binding to {from}"))?;
    setsockopt(
        &fd,
        Linger,
        &libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    )?;
    connect(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)),
    )
    .with_context(|| format!("connecting from {from}"))?;
    Ok(TcpStream::from(fd))
}

/// The `n`-th attacking source: 127.1.0.1 onwards, `PER_SOURCE` each.
fn source(n: u32) -> Ipv4Addr {
    let s = n / PER_SOURCE;
    Ipv4Addr::new(127, 1 + (s / 250) as u8, (s % 250) as u8, 1)
}

/// Median and worst of `runs` timings of `f`, in ms.
fn time(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<(f64, f64)> {
    let mut t = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        f()?;
        t.push(start.elapsed());
    }
    t.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok((ms(t[t.len() / 2]), ms(t[t.len() - 1])))
}

/// A holder: `--hold-connections FD PORT FIRST COUNT` makes COUNT
/// connections to PORT from the sources of FIRST onwards, accepts as many
/// from the listener it inherited as FD, says `ready`, and holds them all
/// until its stdin closes.
pub fn hold(args: &[String]) -> Result<()> {
    let [fd, port, first, count] = args else {
        bail!("{HOLD} takes FD PORT FIRST COUNT");
    };
    let fd: RawFd = fd.parse()?;
    let (port, first, count): (u16, u32, u32) = (port.parse()?, first.parse()?, count.parse()?);
    // SAFETY: the parent left this listening socket open across exec for
    // this process alone to use, under this number.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    let mut held = Vec::with_capacity(2 * count as usize);
    for n in first..first + count {
        held.push(connect_from(source(n), port)?);
        held.push(listener.accept()?.0);
    }
    println!("ready");
    let mut rest = Vec::new();
    std::io::stdin().read_to_end(&mut rest)?;
    Ok(())
}

/// The holders of `conns` connections to the listener's port; each is
/// ready when this returns, and lets its connections go when its stdin
/// (the second of each pair) is dropped.
fn holders(listener: &TcpListener, conns: u32) -> Result<Vec<(Child, ChildStdin)>> {
    let port = listener.local_addr()?.port();
    // Open across exec, for the holders to accept on.
    fcntl(listener, FcntlArg::F_SETFD(FdFlag::empty()))?;
    let exe = std::env::current_exe()?;
    let mut out = Vec::new();
    for first in (0..conns).step_by(PER_HOLDER as usize) {
        let count = PER_HOLDER.min(conns - first);
        let mut child = Command::new(&exe)
            .args([HOLD, &listener.as_raw_fd().to_string(), &port.to_string()])
            .args([first.to_string(), count.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting a connection holder")?;
        let stdin = child.stdin.take().context("the holder's stdin")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("the holder's stdout")?).read_line(&mut line)?;
        if line.trim() != "ready" {
            let status = child.wait()?;
            bail!("a connection holder failed ({status}): see its error above");
        }
        out.push((child, stdin));
    }
    fcntl(listener, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    Ok(out)
}

/// An add of `target`, as the CLI sends it.
fn add_of(target: &Target) -> AddRequest {
    AddRequest {
        entries: vec![StageItem {
            target: target.to_string(),
            list: List::Deny,
            reason: None,
            ttl: None,
            monitor: None,
        }],
        ..AddRequest::default()
    }
}

pub fn run(opts: &Opts) -> Result<Section> {
    let conns: u32 = if opts.quick { 5_000 } else { 50_000 };
    let runs = if opts.quick { 20 } else { 200 };
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let port = listener.local_addr()?.port();
    // Watching before the connections come, as a daemon under attack does.
    let probe = HostProbe::watching(vec![port]).context("starting the session watch")?;
    eprintln!("bench: guard: {conns} established connections to port {port}");
    let start = Instant::now();
    let held = holders(&listener, conns)?;
    let setup = start.elapsed();
    let sources = conns.div_ceil(PER_SOURCE) as usize;
    // The last reports reach the daemon within a drain period.
    let deadline = Instant::now() + Duration::from_secs(5);
    while probe
        .for_import(&ImportParams::default())?
        .live_ssh_peers
        .len()
        < sources
    {
        ensure!(
            Instant::now() < deadline,
            "the watch did not see every source"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    let outside = Target::parse("198.51.100.7")?;
    let inside = Target::parse(&source(conns / 2).to_string())?;
    let watched = |target: &Target, want: usize| -> Result<()> {
        let ctx = probe.for_add(&add_of(target))?;
        ensure!(!ctx.host_addrs.is_empty(), "no host address was read");
        ensure!(
            ctx.live_ssh_peers.len() == want,
            "{target}: {} peers instead of {want}",
            ctx.live_ssh_peers.len()
        );
        Ok(())
    };
    let dumped = |target: &Target, want: usize| -> Result<()> {
        ensure!(!host_addresses()?.is_empty(), "no host address was read");
        let peers = live_peers(&[port], Some(std::slice::from_ref(target)))?;
        ensure!(
            peers.len() == want,
            "{target}: {} peers instead of {want}",
            peers.len()
        );
        Ok(())
    };
    let (miss_med, miss_max) = time(runs, || watched(&outside, 0))?;
    let (hit_med, hit_max) = time(runs, || watched(&inside, 1))?;
    let (import_med, import_max) = time(runs, || {
        let found = probe
            .for_import(&ImportParams::default())?
            .live_ssh_peers
            .len();
        ensure!(found == sources, "{found} sources instead of {sources}");
        Ok(())
    })?;
    let dumps = runs.min(20);
    let (dump_med, dump_max) = time(dumps, || dumped(&outside, 0))?;
    let (all_med, all_max) = time(dumps, || {
        let found = live_peers(&[port], None)?.len();
        ensure!(found == sources, "{found} sources instead of {sources}");
        Ok(())
    })?;
    for (mut child, stdin) in held {
        drop(stdin);
        let status = child.wait()?;
        ensure!(status.success(), "a connection holder failed: {status}");
    }

    let row = |what: &str, med: f64, max: f64| vec![what.to_string(), fmt_num(med), fmt_num(max)];
    let table = Table {
        title: format!(
            "Guardrail check with {conns} established connections on the protected port"
        ),
        columns: ["query", "median (ms)", "max (ms)"]
            .map(String::from)
            .to_vec(),
        rows: vec![
            row(
                "add of an address with no session (watch)",
                miss_med,
                miss_max,
            ),
            row("add of an address with a session (watch)", hit_med, hit_max),
            row(
                &format!("import: every peer on the port, {sources} sources (watch)"),
                import_med,
                import_max,
            ),
            row(
                "add of an address with no session (sock_diag, filtered)",
                dump_med,
                dump_max,
            ),
            row(
                "import: every peer on the port (sock_diag)",
                all_med,
                all_max,
            ),
        ],
        notes: vec![format!(
            "{conns} loopback connections to one port from {sources} sources ({PER_SOURCE} each), made in {:.1} s, so the host has twice as many TCP sockets; {runs} runs each (sock_diag: {dumps}). Each check also reads the host's addresses. The watch is the sessions sock_ops program, which reports sessions as they start and end; sock_diag, its fallback where the program cannot run, walks every TCP socket of the host for each query, filtered by the targets (up to {MAX_FILTERED_TARGETS}) or not. The daemon makes these reads before it takes the core lock.",
            setup.as_secs_f64(),
        )],
    };
    let peer = IpAddr::V4(source(conns / 2));
    Ok(Section {
        key: "guard",
        title: "SSH guardrail under load",
        tables: vec![table],
        goals: vec![Goal {
            name: format!("guardrail check of one target, {conns} connections, median"),
            measured: miss_med.max(hit_med),
            limit: LIMIT_MS,
            unit: "ms".into(),
        }],
        charts: Vec::new(),
        data: json!({
            "connections": conns,
            "sources": sources,
            "setup_s": setup.as_secs_f64(),
            "watch_no_session_ms": { "median": miss_med, "max": miss_max },
            "watch_with_session_ms": { "median": hit_med, "max": hit_max, "peer": peer.to_string() },
            "watch_import_ms": { "median": import_med, "max": import_max },
            "sock_diag_filtered_ms": { "median": dump_med, "max": dump_max },
            "sock_diag_all_peers_ms": { "median": all_med, "max": all_max },
        }),
    })
}
