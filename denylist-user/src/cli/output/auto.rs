//! Reports, the automatic blocking policy, the rate detector's decisions
//! and its heaviest sources.

use std::{
    io::{self, Write},
    time::Duration,
};

use super::{
    format::absolute,
    table::{Align, Table},
};
use crate::{
    model::{RateMode, Report, TopSource},
    wire::AutoStatus,
};

fn dur(secs: u64) -> String {
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

pub(crate) fn auto(out: &mut impl Write, status: &AutoStatus) -> io::Result<()> {
    let p = &status.policy;
    match p.reports {
        Some(n) => writeln!(
            out,
            "reports     block an address at weight {n} within {}",
            dur(p.within)
        )?,
        None => writeln!(
            out,
            "reports     recorded, block nothing (denylist auto set --reports N --within DURATION)"
        )?,
    }
    writeln!(
        out,
        "ttl         {}, ×{} per re-offence within 30 days, at most {}",
        dur(p.ttl),
        p.escalate,
        dur(p.max_ttl)
    )?;
    let bps = p.bps.map_or(String::new(), |b| format!(" or {b} bit/s"));
    let tripped = if p.tripped {
        " (the circuit breaker tripped: `denylist auto set --mode enforce` to enforce again)"
    } else {
        ""
    };
    match p.mode {
        RateMode::Off => writeln!(out, "rate        off: nothing is counted")?,
        RateMode::Monitor => writeln!(
            out,
            "rate        monitor: sources over {} pps{bps} are recorded, not blocked{tripped}",
            p.pps
        )?,
        RateMode::Enforce => writeln!(
            out,
            "rate        enforce: sources over {} pps{bps} are blocked by auto:rate, at most {} a minute",
            p.pps, p.max_per_minute
        )?,
    }
    if !p.protect.is_empty() {
        let list: Vec<String> = p.protect.iter().map(ToString::to_string).collect();
        writeln!(out, "protect     {}", list.join(" "))?;
    }
    writeln!(
        out,
        "active      {} rate blocks; {} detector events dropped",
        status.active, status.events_dropped
    )?;
    if status.recent.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    let mut t = Table::new(
        out,
        &[
            ("AT", Align::Left),
            ("SOURCE", Align::Left),
            ("PPS", Align::Right),
            ("BIT/S", Align::Right),
            ("ACTION", Align::Left),
            ("WHY", Align::Left),
        ],
    );
    for d in &status.recent {
        let action = d.action.label();
        t.row(vec![
            absolute(d.at),
            d.source.to_string(),
            d.pps.to_string(),
            d.bps.to_string(),
            action.to_string(),
            d.why.clone().unwrap_or_default(),
        ])?;
    }
    t.finish_or("")
}

pub(crate) fn top(out: &mut impl Write, top: &[TopSource]) -> io::Result<()> {
    let mut t = Table::new(
        out,
        &[
            ("SOURCE", Align::Left),
            ("PPS", Align::Right),
            ("BIT/S", Align::Right),
            ("VERDICT", Align::Left),
            ("LISTED BY", Align::Left),
        ],
    );
    for s in top {
        t.row(vec![
            s.source.to_string(),
            s.pps.to_string(),
            s.bps.to_string(),
            s.verdict.as_str().to_string(),
            s.sources.join(", "),
        ])?;
    }
    t.finish_or(
        "no source over the detector's watch level (an eighth of --pps) in the last 10 seconds",
    )
}

pub(crate) fn reports(out: &mut impl Write, reports: &[Report]) -> io::Result<()> {
    let mut t = Table::new(
        out,
        &[
            ("AT", Align::Left),
            ("IP", Align::Left),
            ("WEIGHT", Align::Right),
            ("REPORTER", Align::Left),
            ("REASON", Align::Left),
        ],
    );
    for r in reports {
        t.row(vec![
            absolute(r.at),
            r.ip.to_string(),
            r.weight.to_string(),
            r.reporter.clone(),
            r.reason.clone(),
        ])?;
    }
    t.finish_or("no reports")
}
