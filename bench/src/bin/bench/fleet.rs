//! Fleet mode on one PostgreSQL (docs/fleet.md): how fast a deploy
//! reaches every node, a million entries through the fleet against one
//! host, a new node starting from it, and the catch-up after an outage.
//! The nodes are real denylistds on this machine, each with its own
//! state, pins and database role, attached to no interface: these are the
//! control plane's figures.

use std::{
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use denylist::{
    cli::Client,
    wire::{AddRequest, StageItem},
};
use denylist_tests::{
    daemon::{Daemon, Home, TempDir},
    postgres::Postgres,
};
use serde_json::json;

use crate::{
    chart::{self, Series},
    deploy::{self, Denylistd},
    report::{Chart, Goal, Opts, Section, Table, fmt_num},
};

/// How often the nodes' rows are read while a deploy spreads.
const POLL: Duration = Duration::from_millis(2);
/// The longest a deploy may take to reach every node before the bench
/// gives up on it.
const GIVE_UP: Duration = Duration::from_secs(60);

struct Sizes {
    nodes: usize,
    deploys: usize,
    big: u32,
    /// Paired runs of the big list: one host, then a fleet of two.
    pairs: usize,
    outage: Duration,
}

fn sizes(opts: &Opts) -> Sizes {
    if opts.quick {
        Sizes {
            nodes: 3,
            deploys: 5,
            // Enough log for a snapshot to be due (256 KiB of commands).
            big: 100_000,
            pairs: 2,
            outage: Duration::from_secs(2),
        }
    } else {
        Sizes {
            nodes: 20,
            deploys: 100,
            big: 1_000_000,
            pairs: 3,
            outage: Duration::from_secs(60),
        }
    }
}

/// A fleet node: a denylistd following the fleet as `name`.
fn node(pg: &Postgres, name: &str, capacity: u32) -> Denylistd {
    node_with(pg, name, capacity, &[])
}

/// [`node`], with `extra` arguments.
fn node_with(pg: &Postgres, name: &str, capacity: u32, extra: &[&str]) -> Denylistd {
    let home = Home::new(name);
    let url = pg.node_url(name);
    let capacity = capacity.to_string();
    let mut args = vec!["--store", &url, "--node", name, "--capacity", &capacity];
    args.extend_from_slice(extra);
    let daemon = Daemon::start(&home, None, &args);
    Denylistd { daemon, home }
}

/// How the node serving metrics at `addr` planned the deploys it
/// followed: (ahead of their entries, on their entries). A node shows its
/// fleet series from its first heartbeat on, a few seconds after it
/// starts.
fn followed(addr: &str) -> Result<(u64, u64)> {
    let since = Instant::now();
    loop {
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "10", &format!("http://{addr}/metrics")])
            .output()
            .context("running curl")?;
        ensure!(
            out.status.success(),
            "no metrics at {addr}: curl {}",
            out.status
        );
        let out = String::from_utf8_lossy(&out.stdout);
        let count = |planned: &str| {
            let series = format!("denylist_fleet_deploys_followed_total{{planned=\"{planned}\"}} ");
            out.lines()
                .find_map(|l| l.strip_prefix(&series))
                .map(|n| n.trim().parse::<u64>().context("a count"))
        };
        if let (Some(ahead), Some(on_entry)) = (count("ahead"), count("on_entry")) {
            return Ok((ahead?, on_entry?));
        }
        ensure!(
            since.elapsed() < GIVE_UP,
            "no denylist_fleet_deploys_followed_total in the follower's metrics"
        );
        thread::sleep(POLL * 10);
    }
}

/// Waits until every node's row says it applied `revision`; returns, for
/// each, how long after `since` its row first said so.
fn spread(
    pg: &mut postgres::Client,
    revision: u64,
    nodes: usize,
    since: Instant,
) -> Result<Vec<f64>> {
    let mut seen: Vec<Option<f64>> = vec![None; nodes];
    let mut names: Vec<String> = Vec::new();
    loop {
        let rows = pg.query(
            "SELECT node, applied_revision FROM nodes ORDER BY node",
            &[],
        )?;
        let at = since.elapsed().as_secs_f64() * 1000.0;
        for r in rows {
            let name: String = r.get(0);
            let applied = r.get::<_, i64>(1) as u64;
            let i = match names.iter().position(|n| *n == name) {
                Some(i) => i,
                None => {
                    names.push(name);
                    names.len() - 1
                }
            };
            if i < nodes && applied >= revision && seen[i].is_none() {
                seen[i] = Some(at);
            }
        }
        if seen.iter().all(Option::is_some) {
            return Ok(seen.into_iter().flatten().collect());
        }
        ensure!(
            since.elapsed() < GIVE_UP,
            "revision {revision} reached {} of {nodes} nodes in {GIVE_UP:?}",
            seen.iter().flatten().count()
        );
        thread::sleep(POLL);
    }
}

fn add_deploy(c: &Client, first: u32, count: u32) -> Result<u64> {
    let req = AddRequest {
        entries: (first..first + count)
            .map(|i| StageItem {
                target: deploy::exact_v4(i).to_string(),
                list: denylist::model::List::Deny,
                reason: Some("fleet bench".into()),
                ttl: None,
                monitor: None,
            })
            .collect(),
        deploy: true,
        ..AddRequest::default()
    };
    let r: denylist::wire::StageResponse = c
        .post("/v1/entries", &req)
        .map_err(|e| anyhow::anyhow!("add and deploy: {e}"))?;
    r.deployed
        .and_then(|d| d.revision)
        .context("the add deployed no revision")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Seconds until every node of `pg` applied `revision`.
fn until_applied(
    pg: &mut postgres::Client,
    revision: u64,
    nodes: usize,
    since: Instant,
) -> Result<f64> {
    let each = spread(pg, revision, nodes, since)?;
    Ok(each.into_iter().fold(0.0, f64::max) / 1000.0)
}

pub fn run(opts: &Opts) -> Result<Section> {
    deploy::binaries(opts)?;
    let s = sizes(opts);
    let names: Vec<String> = (1..=s.nodes).map(|i| format!("fb{i}")).collect();
    let mut all: Vec<&str> = names.iter().map(String::as_str).collect();
    all.extend(["fbig1", "fbig2", "fbig3"]);
    let pg = Postgres::fleet(&all);
    let mut watch = pg.owner();

    // Convergence: small deploys from the first node.
    let nodes: Vec<Denylistd> = names.iter().map(|n| node(&pg, n, 131_072)).collect();
    let first = nodes[0].home.client();
    let mut lat = Vec::new();
    for d in 0..s.deploys {
        let count = 1 + (d as u32 * 37) % 100;
        let start = Instant::now();
        // Past the big list's entries, which the last part deploys.
        let rev = add_deploy(&first, s.big + d as u32 * 100, count)?;
        // From the deploy's answer, which comes once it committed.
        let committed = Instant::now();
        let mut each = spread(&mut watch, rev, s.nodes, committed)?;
        lat.append(&mut each);
        ensure!(start.elapsed() < GIVE_UP, "deploy {d} took too long");
    }
    lat.sort_by(f64::total_cmp);
    let (p50, p99, max) = (
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat[lat.len() - 1],
    );

    // The catch-up after an outage, with every node running.
    pg.stop();
    thread::sleep(s.outage);
    pg.resume();
    let back = Instant::now();
    let rev = loop {
        match add_deploy(&first, s.big + 200_000, 1) {
            Ok(rev) => break rev,
            Err(_) if back.elapsed() < GIVE_UP => thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(e),
        }
    };
    let mut watch = pg.owner();
    let catch_up = until_applied(&mut watch, rev, s.nodes, back)?;
    drop(nodes);
    // Gone for good: their rows would count as live nodes, and their
    // capacity against the big deploy, for another 15 s.
    watch.execute("DELETE FROM nodes WHERE node = ANY($1)", &[&names])?;

    // A million entries: one host, then through a fleet of two, then a
    // new node starting from the fleet.
    let dir = TempDir::new("bench-fleet");
    let list = dir.path().join("big.txt");
    deploy::write_list(&list, (0..s.big).map(|i| deploy::exact_v4(i).to_string()))?;
    // Room for the small deploys' entries too.
    let capacity = s.big + 16_384;
    // The pairs before the last, each on a database of its own: the last
    // one's fleet goes on to its snapshot and a new node.
    let mut pairs = (1..s.pairs)
        .map(|k| pair_apart(k, &list, s.big, capacity))
        .collect::<Result<Vec<Pair>>>()?;
    let (_single, single) = Denylistd::loaded("fbsingle", capacity, &list, s.big)?;
    let writer = node(&pg, "fbig1", capacity);
    // Its metrics say how it planned the deploy.
    let metrics = format!("127.0.0.1:{}", denylist_tests::web::free_port());
    let follower = node_with(&pg, "fbig2", capacity, &["--metrics", &metrics]);
    let head: i64 = watch
        .query_one("SELECT coalesce(max(revision), 0) FROM log", &[])?
        .get(0);
    let before = followed(&metrics)?;
    let start = Instant::now();
    writer.import_deploy(&list, false, u64::from(s.big), 0)?;
    let rev = head as u64 + 1;
    let through = until_applied_named(&mut watch, rev, &["fbig1", "fbig2"], start)?;
    pairs.push(Pair {
        single: single.total,
        through,
    });
    let ratios = pairs
        .iter()
        .map(|p| format!("{:.2} ×", p.through / p.single))
        .collect::<Vec<_>>()
        .join(", ");
    pairs.sort_by(|a, b| (a.through / a.single).total_cmp(&(b.through / b.single)));
    let median = pairs[pairs.len() / 2];
    let mut singles: Vec<f64> = pairs.iter().map(|p| p.single).collect();
    singles.sort_by(f64::total_cmp);
    let one_host = percentile(&singles, 0.5);
    let (ahead, on_entry) = followed(&metrics)?;
    let planned = match (ahead - before.0, on_entry - before.1) {
        (1, 0) => "the follower planned it ahead of its entry".to_string(),
        (0, 1) => "the follower planned it on its entry".to_string(),
        (a, e) => format!("the follower followed {} deploys, {a} planned ahead", a + e),
    };
    // A node joining later finds the fleet's snapshot of the deploy, which
    // one node takes once the log stood still.
    let snapshot = until_snapshot(&mut watch, start, through).with_context(|| {
        format!(
            "the nodes' logs end:\n{}\n{}",
            log_tail(&writer),
            log_tail(&follower)
        )
    })? - through;
    let snapshot_mb = watch
        .query_one(
            "SELECT octet_length(data) FROM snapshots ORDER BY seq DESC LIMIT 1",
            &[],
        )?
        .get::<_, i32>(0) as f64
        / 1e6;
    let start = Instant::now();
    let _newcomer = node(&pg, "fbig3", capacity);
    let joined = until_applied_named(&mut watch, rev, &["fbig3"], start)?;

    let chart_file = "fleet-convergence.png";
    chart::lines(
        &opts.out_dir.join(chart_file),
        &format!(
            "Fleet convergence to {} nodes, by percentile (up to p99)",
            s.nodes
        ),
        "percentile",
        "ms from the deploy's answer to the node's applied row",
        false,
        &[Series {
            name: format!("{} deploys of 1–100 entries", s.deploys),
            points: (0..=99)
                .map(|p| (f64::from(p), percentile(&lat, f64::from(p) / 100.0)))
                .collect(),
        }],
    )?;
    let ms = |v: f64| format!("{} ms", fmt_num(v));
    let table = Table {
        title: "Fleet mode: one PostgreSQL, denylistd nodes on this machine".into(),
        columns: vec!["measure".into(), "figure".into()],
        rows: vec![
            vec![
                format!("convergence of {} deploys of 1–100 entries to {} nodes, p50 / p99 / max", s.deploys, s.nodes),
                format!("{} / {} / {}", ms(p50), ms(p99), ms(max)),
            ],
            vec![
                format!("{} entries, one host: import + deploy (the median pair's)", s.big),
                format!("{:.2} s", median.single),
            ],
            vec![
                format!("{} entries through a fleet of two: import + deploy until both applied (the median of {} pairs)", s.big, s.pairs),
                format!("{:.2} s ({:.2} ×; the pairs: {ratios}); in the last, {planned}", median.through, median.through / median.single),
            ],
            vec![
                "the fleet's snapshot of it stored, from both nodes applying it (a node takes it once the log stood still for 2 s); its size".into(),
                format!("{snapshot:.2} s; {snapshot_mb:.1} MB"),
            ],
            vec![
                format!("a new node starting from that snapshot until it applied the {} entries", s.big),
                format!("{joined:.2} s ({:.2} × one host's median)", joined / one_host),
            ],
            vec![
                format!("catch-up after a {} database outage: from its return to every node applying a new deploy", humantime::format_duration(s.outage)),
                format!("{catch_up:.2} s"),
            ],
        ],
        notes: vec![
            "Convergence: from the deploy's answer (once it committed) to each node's row saying it applied the revision (its kernel took it), read every 2 ms.".into(),
            format!("The big list: {} pairs, each one host on a fresh daemon, then a fresh fleet of two on a database of its own (the last on the fleet above), each pair's ratio its fleet's time ÷ its one host's; the figure is the median pair. One pair of a million entries alone moved between 1.35 × and 2.01 × on this machine, mostly with the one-host time it is divided by.", s.pairs),
            "The nodes attach to no interface: this is the control plane's cost.".into(),
        ],
    };
    let goal = |name: String, measured: f64, limit: f64, unit: &str| Goal {
        name,
        measured,
        limit,
        unit: unit.into(),
    };
    Ok(Section {
        key: "fleet",
        title: "Fleet mode",
        tables: vec![table],
        goals: vec![
            goal(
                format!("fleet convergence to {} nodes, p99", s.nodes),
                p99,
                500.0,
                "ms",
            ),
            goal(
                format!(
                    "{} entries through the fleet ÷ one host, median of {} pairs",
                    s.big, s.pairs
                ),
                median.through / median.single,
                1.5,
                "×",
            ),
            goal(
                format!(
                    "a new node bootstrapping {} entries ÷ one host's deploy",
                    s.big
                ),
                joined / one_host,
                1.5,
                "×",
            ),
            goal(
                "catch-up after a database outage".into(),
                catch_up,
                5.0,
                "s",
            ),
        ],
        charts: vec![Chart {
            file: chart_file.into(),
            title: "Fleet convergence by percentile".into(),
        }],
        data: json!({
            "nodes": s.nodes, "deploys": s.deploys,
            "convergence_ms": { "p50": p50, "p99": p99, "max": max },
            "big": s.big, "pairs": pairs.iter().map(|p| json!({ "single_s": p.single, "through_s": p.through })).collect::<Vec<_>>(), "single_s": median.single, "through_s": median.through, "snapshot_s": snapshot, "snapshot_mb": snapshot_mb, "joined_s": joined,
            "outage_s": s.outage.as_secs(), "catch_up_s": catch_up,
        }),
    })
}

/// One host's import and deploy of the big list, then a fleet of two's.
#[derive(Clone, Copy)]
struct Pair {
    single: f64,
    through: f64,
}

/// Pair `k` of the big list, on daemons and a database of its own, all
/// gone once it is measured.
fn pair_apart(k: usize, list: &std::path::Path, big: u32, capacity: u32) -> Result<Pair> {
    // Kept, idle, through the fleet's run, as the last pair's is.
    let (_single, single) = Denylistd::loaded(&format!("fbsingle{k}"), capacity, list, big)?;
    let pg = Postgres::fleet(&["fpair1", "fpair2"]);
    let mut watch = pg.owner();
    let writer = node(&pg, "fpair1", capacity);
    let _follower = node(&pg, "fpair2", capacity);
    // Both following, as the last pair's are once its follower's metrics
    // show its first heartbeat.
    until_applied_named(&mut watch, 0, &["fpair1", "fpair2"], Instant::now())?;
    let start = Instant::now();
    writer.import_deploy(list, false, u64::from(big), 0)?;
    let through = until_applied_named(&mut watch, 1, &["fpair1", "fpair2"], start)?;
    Ok(Pair {
        single: single.total,
        through,
    })
}

/// Seconds after `since` until a snapshot holds the last deploy, which
/// both nodes applied `through` seconds after it.
fn until_snapshot(pg: &mut postgres::Client, since: Instant, through: f64) -> Result<f64> {
    let give_up = Duration::from_secs_f64(through) + GIVE_UP;
    loop {
        let held: bool = pg
            .query_one(
                "SELECT coalesce((SELECT max(seq) FROM snapshots), 0)
                     >= (SELECT max(seq) FROM log WHERE kind = 'deploy')",
                &[],
            )?
            .get(0);
        if held {
            return Ok(since.elapsed().as_secs_f64());
        }
        ensure!(
            since.elapsed() < give_up,
            "no snapshot of the last deploy {GIVE_UP:?} after both nodes applied it"
        );
        thread::sleep(POLL * 10);
    }
}

/// Seconds after `since` until each of `names` applied `revision`.
fn until_applied_named(
    pg: &mut postgres::Client,
    revision: u64,
    names: &[&str],
    since: Instant,
) -> Result<f64> {
    loop {
        let done: i64 = pg
            .query_one(
                "SELECT count(*) FROM nodes WHERE node = ANY($1) AND applied_revision >= $2",
                &[&names, &(revision as i64)],
            )?
            .get(0);
        if done as usize == names.len() {
            return Ok(since.elapsed().as_secs_f64());
        }
        ensure!(
            since.elapsed() < GIVE_UP * 10,
            "revision {revision} never reached {names:?}"
        );
        thread::sleep(POLL * 10);
    }
}

/// The last lines a node logged, to say why it did not do its part.
fn log_tail(node: &Denylistd) -> String {
    let text = node.daemon.log_text();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
