//! The prefix structure's kernel memory: the roots, the nodes stored as
//! runs, and the rules, as loaded, beside what the same prefixes took in
//! the 256-slot nodes of 1 KiB that came before.

use std::path::Path;

use anyhow::Result;

use super::tables::{DENSE_NODE, NodeUse};
use crate::{
    chart::{self, Series},
    report::{Goal, Table, fmt_num},
};

const MIB: f64 = 1024.0 * 1024.0;

/// Large tables: both families' prefixes within this (issue 15).
const LARGE_LIMIT_MIB: f64 = 32.0;
/// A million IPv4 prefixes within this.
const MILLION_LIMIT_MIB: f64 = 64.0;

fn mib(bytes: u64) -> String {
    fmt_num(bytes as f64 / MIB)
}

/// The table, its goals and its chart (memory per prefix against the
/// number of prefixes, for both structures).
pub(super) fn report(
    large: &NodeUse,
    scaling: &[(usize, &NodeUse)],
    chart_png: &Path,
) -> Result<(Table, Vec<Goal>)> {
    let row = |what: String, n: &NodeUse| {
        vec![
            what,
            n.prefixes.to_string(),
            format!("{} / {}", n.v4, n.v6),
            format!("{} / {}", n.slots_v4, n.slots_v6),
            mib(n.memlock),
            mib(n.in_use_bytes()),
            fmt_num(n.memlock as f64 / f64::from(n.prefixes.max(1))),
            mib(n.dense_bytes()),
        ]
    };
    let mut rows = vec![row("large".to_owned(), large)];
    rows.extend(
        scaling
            .iter()
            .map(|(n, u)| row(format!("{n} IPv4 prefixes"), u)),
    );
    let table = Table {
        title: "Prefix structure memory".to_owned(),
        columns: [
            "tables",
            "prefixes",
            "nodes, IPv4 / IPv6",
            "run slots, IPv4 / IPv6",
            "kernel (MiB)",
            "of it in use (MiB)",
            "kernel bytes per prefix",
            "256-slot nodes, before (MiB)",
        ]
        .map(str::to_owned)
        .to_vec(),
        rows,
        notes: vec![
            "kernel: the `memlock` of the prefix maps (ROOT_V4/V6, NODES_V4/V6, SLOTS_V4/V6, RULES) in /proc/self/fdinfo once the tables are loaded. Arrays are allocated whole, sized by `trie::needs` with a quarter more to grow into (the run slots 2.5 times their bound), as denylistd sizes them.".to_owned(),
            format!(
                "of it in use: the two roots (256 rows of 256 slots, {} KiB each), {} bytes a node (one cache line, with up to 5 runs in it), 4 bytes a run slot of the larger nodes and 24 bytes a rule; run slots come in blocks of 16 size classes (1 to 256, each at most a third more than the runs), in pages of one class.",
                DENSE_NODE / 4,
                size_of::<denylist_common::Node>()
            ),
            "Nodes below the roots, counted in the kernel's maps after the load (and equal to the count the bench computes from the prefixes).".to_owned(),
            "256-slot nodes, before: the same node pools and rules in the structure this replaced, where every node was 256 four-byte slots (1 KiB).".to_owned(),
            "IPv6 prefixes cluster in 3,000 /32 allocations inside 2000::/3, as in RIR data; lengths /29–/64, mostly /32, /48, /56 and /64.".to_owned(),
        ],
    };

    let mut goals = vec![Goal {
        name: "prefix structure, large tables (kernel memlock)".to_owned(),
        measured: large.memlock as f64 / MIB,
        limit: LARGE_LIMIT_MIB,
        unit: "MiB".to_owned(),
    }];
    if let Some((_, u)) = scaling.iter().find(|(n, _)| *n == 1_000_000) {
        goals.push(Goal {
            name: "prefix structure, 1000000 IPv4 prefixes (kernel memlock)".to_owned(),
            measured: u.memlock as f64 / MIB,
            limit: MILLION_LIMIT_MIB,
            unit: "MiB".to_owned(),
        });
    }

    let per_prefix = |f: &dyn Fn(&NodeUse) -> u64| -> Vec<(f64, f64)> {
        scaling
            .iter()
            .map(|(n, u)| (*n as f64, f(u) as f64 / f64::from(u.prefixes.max(1))))
            .collect()
    };
    chart::lines(
        chart_png,
        "Kernel memory per IPv4 prefix, by structure",
        "IPv4 prefixes",
        "bytes per prefix",
        true,
        &[
            Series {
                name: "256-slot nodes (before)".to_owned(),
                points: per_prefix(&NodeUse::dense_bytes),
            },
            Series {
                name: "runs (now), as loaded".to_owned(),
                points: per_prefix(&|u| u.memlock),
            },
            Series {
                name: "runs (now), in use".to_owned(),
                points: per_prefix(&NodeUse::in_use_bytes),
            },
        ],
    )?;
    Ok((table, goals))
}
