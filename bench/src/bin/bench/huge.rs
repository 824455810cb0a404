//! Ten million entries through the daemon: `denylist import` then `denylist
//! deploy` into a denylistd with `--capacity 10000000`, against the same at
//! a tenth and a hundredth of the size, with the kernel's and the daemon's
//! memory at each size. A deploy beyond the capacity must still be refused
//! whole.

use std::process::Command;

use anyhow::{Context as _, Result, ensure};
use denylist_tests::daemon::{TempDir, bin};
use serde_json::json;

use crate::{
    chart::{self, Series},
    deploy::{self, Denylistd, Deployed},
    memory::{self, ProcMem, SETTLE, mb},
    report::{Chart, Goal, Opts, Section, Table},
};

/// The largest list: ten million in a full run; a quick run checks that
/// every measurement runs.
fn largest(quick: bool) -> u32 {
    if quick { 20_000 } else { 10_000_000 }
}

struct Run {
    entries: u32,
    took: Deployed,
    kernel: u64,
    mem: ProcMem,
}

/// A fresh daemon sized exactly for `n` entries, with the first `n` of
/// the bench's addresses imported and deployed, measured after it settled.
/// Returns the daemon too, for the capacity check.
fn load(dir: &std::path::Path, n: u32) -> Result<(Denylistd, Run)> {
    let file = dir.join(format!("exact-{n}.txt"));
    deploy::write_list(&file, (0..n).map(|i| deploy::exact_v4(i).to_string()))?;
    let (d, took) = Denylistd::loaded("bhuge", n, &file, n)?;
    std::fs::remove_file(&file).with_context(|| format!("removing {}", file.display()))?;
    std::thread::sleep(SETTLE);
    let pid = d.daemon.pid();
    let kernel = memory::maps(pid)?.values().map(|m| m.bytes).sum();
    let mem = memory::proc_mem(pid)?;
    Ok((
        d,
        Run {
            entries: n,
            took,
            kernel,
            mem,
        },
    ))
}

/// One address more than the daemon's capacity: `add ADDR --deploy` must
/// fail and leave the address unlisted in the kernel's verdict.
fn refuses_beyond_capacity(d: &Denylistd, n: u32) -> Result<()> {
    let extra = deploy::exact_v4(n).to_string();
    let out = Command::new(bin("denylist"))
        .args(["add", &extra, "--deploy", "--socket"])
        .arg(d.home.socket())
        .output()
        .context("running denylist add")?;
    let said = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && said.contains("capacity"),
        "a deploy beyond --capacity {n} was not refused: {said}"
    );
    let (check, _) = d.cli(&["check", &extra])?;
    ensure!(
        check["verdict"] == "pass",
        "{extra} is not passed after the refused deploy: {check}"
    );
    Ok(())
}

pub fn run(opts: &Opts) -> Result<Section> {
    deploy::binaries(opts)?;
    let dir = TempDir::new("bench-huge");
    let n = largest(opts.quick);
    let sizes = [n / 100, n / 10, n];
    let mut runs = Vec::new();
    for &size in &sizes {
        eprintln!("bench: huge: {size} exact IPv4 addresses, --capacity {size}");
        let (d, run) = load(dir.path(), size)?;
        if size == n {
            eprintln!("bench: huge: one more than the capacity");
            refuses_beyond_capacity(&d, n)?;
        }
        drop(d);
        runs.push(run);
    }
    let [_, tenth, all] = &runs[..] else {
        unreachable!("three sizes ran")
    };
    let growth = all.took.total / tenth.took.total;

    let chart_file = "deploy-huge.png";
    chart::lines(
        &opts.out_dir.join(chart_file),
        &format!("Import + deploy time against list size, up to {n} (exact IPv4)"),
        "entries",
        "seconds",
        true,
        &[Series {
            name: "denylist import + deploy".into(),
            points: runs
                .iter()
                .map(|r| (f64::from(r.entries), r.took.total))
                .collect(),
        }],
    )?;

    let per = |b: u64, r: &Run| format!("{:.0}", b as f64 / f64::from(r.entries));
    let table = Table {
        title: format!("Import + deploy of up to {n} exact IPv4 addresses"),
        columns: [
            "entries",
            "total (s)",
            "parse (s)",
            "store (s)",
            "kernel (s)",
            "commit (s)",
            "kernel maps (MB)",
            "kernel B/entry",
            "steady RSS without maps (MB)",
            "steady B/entry",
            "peak RSS (MB)",
            "peak ÷ steady",
        ]
        .map(String::from)
        .to_vec(),
        rows: runs
            .iter()
            .map(|r| {
                vec![
                    r.entries.to_string(),
                    format!("{:.2}", r.took.total),
                    format!("{:.2}", r.took.parse),
                    format!("{:.2}", r.took.store),
                    format!("{:.2}", r.took.kernel),
                    format!("{:.2}", r.took.commit),
                    mb(r.kernel),
                    per(r.kernel, r),
                    mb(r.mem.own()),
                    per(r.mem.own(), r),
                    mb(r.mem.hwm),
                    format!("{:.2}", r.mem.hwm as f64 / r.mem.rss as f64),
                ]
            })
            .collect(),
        notes: vec![
            "Each size: a fresh denylistd with --capacity equal to the list's size, then `denylist import FILE` and `denylist deploy`; the phases are the daemon's own, as in Deploy speed.".into(),
            format!(
                "Memory: the kernel maps are the sum of `memlock` over the daemon's BPF maps; steady is VmRSS without the mmapped maps, {}s after the deploy; peak is VmHWM (the mmapped maps included), and peak ÷ steady divides it by VmRSS.",
                SETTLE.as_secs()
            ),
            format!(
                "At {n}, `denylist add` of one more address `--deploy` was refused whole (the error names the capacity) and `denylist check` of it still says pass."
            ),
            "Per-packet cost with 10M exact IPv4 entries loaded is in Per-packet cost under traffic, cache-cold (and under BPF_PROG_TEST_RUN there).".into(),
        ],
    };

    Ok(Section {
        key: "huge",
        title: "Ten million entries",
        tables: vec![table],
        goals: vec![Goal {
            name: format!("import + deploy of {n} ÷ of {}", n / 10),
            measured: growth,
            limit: 11.0,
            unit: "×".into(),
        }],
        charts: vec![Chart {
            file: chart_file.into(),
            title: "Import + deploy time against list size".into(),
        }],
        data: json!({
            "runs": runs.iter().map(|r| json!({
                "entries": r.entries,
                "denylist": r.took.json(),
                "kernel_bytes": r.kernel,
                "rss": r.mem.rss, "rss_without_maps": r.mem.own(), "anon": r.mem.anon, "peak": r.mem.hwm,
            })).collect::<Vec<_>>(),
        }),
    })
}
