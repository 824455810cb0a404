//! `cargo xtask bench`: denylist beside xdp-filter, nftables and ipset, every
//! comparison in the same run. Prints Markdown tables, writes
//! target/bench/results.json and the charts, and renders
//! docs/benchmarks.md with docs/img/: into the repository on a full run,
//! into target/bench/docs/ on any other.
//!
//! `--quick` runs small sizes and checks that every measurement ran and
//! produced output; it judges no speed. Section names as arguments (e.g.
//! `packet`) run only those.

mod autoblock;
mod chart;
mod cold;
mod control;
mod deploy;
mod fleet;
mod guard;
mod huge;
mod memory;
mod packet;
mod report;
mod traffic;
mod trafgen;
mod web;

use std::fs;

use anyhow::{Context as _, Result, bail};
use denylist_tests::require_root;
use guard::HOLD;
use report::{Machine, Opts, Section};

type Run = fn(&Opts) -> Result<Section>;

/// In this order: the packet costs first, while the machine is quiet.
const SECTIONS: &[(&str, Run)] = &[
    ("packet", packet::run),
    ("traffic", traffic::run),
    ("cold", cold::run),
    ("deploy", deploy::run),
    ("memory", memory::run),
    ("control", control::run),
    ("guard", guard::run),
    ("autoblock", autoblock::run),
    ("web", web::run),
    ("fleet", fleet::run),
    // Last: ten million entries take most of the machine's memory.
    ("huge", huge::run),
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some((HOLD, rest)) = args.split_first().map(|(a, r)| (a.as_str(), r)) {
        return guard::hold(rest);
    }
    require_root();
    let opts = Opts {
        quick: args.iter().any(|a| a == "--quick"),
        out_dir: report::repo_root().join("target").join("bench"),
    };
    let only: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--quick")
        .collect();
    if let Some(unknown) = only.iter().find(|a| !SECTIONS.iter().any(|(k, _)| k == *a)) {
        bail!(
            "unknown argument {unknown:?}: give --quick and/or section names ({})",
            SECTIONS
                .iter()
                .map(|(k, _)| *k)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("creating {}", opts.out_dir.display()))?;
    let machine = Machine::probe()?;

    let mut sections = Vec::new();
    let mut failed = Vec::new();
    for &(key, run) in SECTIONS {
        if !only.is_empty() && !only.contains(&key) {
            continue;
        }
        eprintln!("bench: {key}");
        // One broken section must not throw away the others' figures.
        match run(&opts).and_then(|s| report::check(&s, &opts.out_dir).map(|()| s)) {
            Ok(section) => {
                println!("## {}\n", section.title);
                for t in &section.tables {
                    println!("{}", t.markdown());
                }
                sections.push(section);
            }
            Err(e) => {
                eprintln!("bench: section {key} failed: {e:#}");
                // Said again at the end: a CI log often keeps only its tail.
                failed.push(format!("{key} ({e:#})"));
            }
        }
    }
    println!("{}", report::goals_table(&sections).markdown());

    let json = report::write_json(&machine, &sections, &opts)?;
    eprintln!("bench: wrote {}", json.display());
    if !failed.is_empty() {
        bail!(
            "bench sections failed: {}; fix them and rerun `cargo xtask bench{}`",
            failed.join("; "),
            if opts.quick { " --quick" } else { "" }
        );
    }
    // Only a full run of every section speaks for the project.
    let docs = if !opts.quick && only.is_empty() {
        report::repo_root().join("docs")
    } else {
        opts.out_dir.join("docs")
    };
    let page = report::write_docs(&machine, &sections, &opts, &docs)?;
    eprintln!("bench: wrote {} and its charts", page.display());
    Ok(())
}
