//! The control API under load: `GET /v1/check/{ip}` from parallel clients,
//! each on its own keep-alive connection to the socket, with the full list
//! deployed; the daemon's memory before, during and after.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    os::unix::net::UnixStream,
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use denylist_tests::daemon::TempDir;
use serde_json::json;

use crate::{
    deploy::{self, Denylistd},
    memory::{self, SETTLE},
    report::{Opts, Section, Table, fmt_num},
};

const CLIENTS: usize = 16;
/// How often the daemon's RSS is read while the clients run.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// One client: `count` checks over one connection, alternating an address
/// on the list (verdict drop) and one off it (pass); the latency of each.
fn client(socket: &Path, first: u32, count: u32, listed: u32) -> Result<Vec<Duration>> {
    let stream = UnixStream::connect(socket)
        .with_context(|| format!("connecting to {}", socket.display()))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut lat = Vec::with_capacity(count as usize);
    let mut line = String::new();
    let mut body = Vec::new();
    for k in first..first + count {
        let hit = k % 2 == 0;
        let ip = if hit {
            deploy::exact_v4(k.wrapping_mul(2_654_435_761) % listed)
        } else {
            // Past the list and past every address the deploy runs add.
            deploy::exact_v4(2 * listed + k)
        };
        let start = Instant::now();
        write!(
            writer,
            "GET /v1/check/{ip} HTTP/1.1\r\nHost: denylistd\r\n\r\n"
        )?;
        line.clear();
        reader.read_line(&mut line)?;
        ensure!(
            line.starts_with("HTTP/1.1 200"),
            "check {ip}: the daemon answered {line:?}"
        );
        let mut length = None;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                bail!("check {ip}: the daemon closed the connection");
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((k, v)) = header.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse::<usize>().ok();
            }
        }
        let length = length.with_context(|| format!("check {ip}: no Content-Length"))?;
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
        lat.push(start.elapsed());
        let want = if hit { "drop" } else { "pass" };
        let reply: serde_json::Value = serde_json::from_slice(&body)?;
        ensure!(
            reply["verdict"] == want,
            "check {ip}: verdict {} instead of {want}",
            reply["verdict"]
        );
    }
    Ok(lat)
}

fn quantile(sorted: &[Duration], q: f64) -> f64 {
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e6
}

pub fn run(opts: &Opts) -> Result<Section> {
    deploy::binaries(opts)?;
    let n = deploy::sizes(opts).full;
    let requests: u32 = if opts.quick { 10_000 } else { 100_000 };
    let per_client = requests / CLIENTS as u32;
    let dir = TempDir::new("bench-control");
    let file = dir.path().join("exact.txt");
    deploy::write_list(&file, (0..n).map(|i| deploy::exact_v4(i).to_string()))?;
    eprintln!("bench: control: {n} deployed, {requests} checks from {CLIENTS} clients");
    let (d, _) = Denylistd::loaded("bcontrol", deploy::capacity(n), &file, n)?;
    let pid = d.daemon.pid();
    thread::sleep(SETTLE);
    let before = memory::proc_mem(pid)?;

    let socket = d.home.socket();
    let done = AtomicBool::new(false);
    let (lat, samples, wall) = thread::scope(|s| -> Result<_> {
        let sampler = s.spawn(|| {
            let mut rss = Vec::new();
            while !done.load(Ordering::Relaxed) {
                // smaps would take the daemon's mmap lock: status only.
                if let Ok(b) = memory::status_bytes(pid, "VmRSS") {
                    rss.push(b);
                }
                thread::sleep(SAMPLE_EVERY);
            }
            rss
        });
        let start = Instant::now();
        let clients: Vec<_> = (0..CLIENTS as u32)
            .map(|c| {
                let socket = &socket;
                s.spawn(move || client(socket, c * per_client, per_client, n))
            })
            .collect();
        let mut lat = Vec::with_capacity(requests as usize);
        let mut failed = None;
        for c in clients {
            match c.join().expect("a client thread panicked") {
                Ok(l) => lat.extend(l),
                Err(e) => failed = Some(e),
            }
        }
        let wall = start.elapsed();
        done.store(true, Ordering::Relaxed);
        let samples = sampler.join().expect("the sampler panicked");
        if let Some(e) = failed {
            return Err(e);
        }
        Ok((lat, samples, wall))
    })?;
    thread::sleep(SETTLE);
    let after = memory::proc_mem(pid)?;
    drop(d);

    let mut sorted = lat;
    sorted.sort();
    ensure!(
        !samples.is_empty(),
        "no RSS sample was taken during the run"
    );
    let during_max = samples.iter().copied().max().unwrap_or(0);
    let during_mean = samples.iter().sum::<u64>() / samples.len() as u64;
    let done_requests = sorted.len();
    let rate = done_requests as f64 / wall.as_secs_f64();
    let (p50, p99, p999) = (
        quantile(&sorted, 0.5),
        quantile(&sorted, 0.99),
        quantile(&sorted, 0.999),
    );
    let max = quantile(&sorted, 1.0);
    let mb = |b: u64| fmt_num(b as f64 / 1e6);

    let latency = Table {
        title: format!("GET /v1/check with {n} deployed"),
        columns: [
            "requests",
            "clients",
            "p50 (µs)",
            "p99 (µs)",
            "p99.9 (µs)",
            "max (µs)",
            "requests/s",
        ]
        .map(String::from)
        .to_vec(),
        rows: vec![vec![
            done_requests.to_string(),
            CLIENTS.to_string(),
            fmt_num(p50),
            fmt_num(p99),
            fmt_num(p999),
            fmt_num(max),
            fmt_num(rate),
        ]],
        notes: vec![
            "Each client keeps one HTTP/1.1 connection to the socket and sends its requests one after another; half ask for a listed address (drop), half for one off the list (pass), and every verdict is checked. Latency: request written to reply read.".into(),
        ],
    };
    let rss = Table {
        title: "Daemon RSS around the load (MB)".into(),
        columns: [
            "before",
            "during (max)",
            "during (mean)",
            "after",
            "peak RSS",
        ]
        .map(String::from)
        .to_vec(),
        rows: vec![vec![
            mb(before.rss),
            mb(during_max),
            mb(during_mean),
            mb(after.rss),
            mb(after.hwm),
        ]],
        notes: vec![format!(
            "VmRSS. During: {} samples, one every {} ms; before and after: {} s after the daemon went idle. Peak RSS (VmHWM) includes the import and deploy. Of the RSS, {} MB before and {} MB after are the mmapped BPF maps (kernel memory; see Memory).",
            samples.len(),
            SAMPLE_EVERY.as_millis(),
            SETTLE.as_secs(),
            mb(before.mapped_maps),
            mb(after.mapped_maps)
        )],
    };
    Ok(Section {
        key: "control",
        title: "Control API under load",
        tables: vec![latency, rss],
        goals: Vec::new(),
        charts: Vec::new(),
        data: json!({
            "entries": n,
            "requests": done_requests,
            "clients": CLIENTS,
            "latency_us": { "p50": p50, "p99": p99, "p999": p999, "max": max },
            "requests_per_s": rate,
            "rss_bytes": {
                "before": before.rss, "during_max": during_max, "during_mean": during_mean,
                "after": after.rss, "peak": after.hwm,
                "mapped_maps_before": before.mapped_maps, "mapped_maps_after": after.mapped_maps,
            },
        }),
    })
}
