//! Reports and the automatic blocking policy.

use std::{
    io::{self, Write},
    time::Duration,
};

use super::{
    format::absolute,
    table::{Align, Table},
};
use crate::model::{AutoPolicy, Report};

fn dur(secs: u64) -> String {
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

pub(crate) fn auto(out: &mut impl Write, p: &AutoPolicy) -> io::Result<()> {
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
