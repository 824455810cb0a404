//! Human output: aligned tables that stream, and the wording of each reply.

use std::{
    io::{self, Write},
    marker::PhantomData,
};

use serde::{
    Deserialize,
    de::{DeserializeOwned, Deserializer, Error as _, SeqAccess, Visitor},
};

use crate::{
    entry::{Entry, Millis, from_ms, time_ms},
    proto::{
        CheckResponse, Counts, DeployResponse, Diff, ImportResponse, RollbackResponse,
        StageResponse, StatItem, Status,
    },
    verdict::Verdict,
};

/// Rows are aligned and written this many at a time, so a long list starts
/// showing at once and never sits in memory whole.
const CHUNK: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table written in chunks. Column widths come from the rows seen so far
/// and only grow, so the rows of one chunk always line up and later chunks
/// widen a column only when a longer value arrives (e.g. IPv6 after IPv4).
pub struct Table<'w, W: Write> {
    out: &'w mut W,
    columns: &'static [(&'static str, Align)],
    widths: Vec<usize>,
    rows: Vec<Vec<String>>,
    written: usize,
    /// One line's text, reused from row to row.
    line: String,
}

impl<'w, W: Write> Table<'w, W> {
    pub fn new(out: &'w mut W, columns: &'static [(&'static str, Align)]) -> Self {
        Self {
            out,
            columns,
            widths: columns.iter().map(|(name, _)| width(name)).collect(),
            rows: Vec::with_capacity(CHUNK),
            written: 0,
            line: String::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) -> io::Result<()> {
        debug_assert_eq!(cells.len(), self.columns.len());
        self.rows.push(cells);
        if self.rows.len() >= CHUNK {
            self.write_chunk()?;
        }
        Ok(())
    }

    /// Writes what is left, or `empty` if there were no rows at all.
    pub fn finish_or(mut self, empty: &str) -> io::Result<()> {
        self.write_chunk()?;
        if self.written == 0 {
            writeln!(self.out, "{empty}")?;
        }
        Ok(())
    }

    fn write_chunk(&mut self) -> io::Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        for row in &self.rows {
            for (w, cell) in self.widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        if self.written == 0 {
            let header: Vec<String> = self.columns.iter().map(|(n, _)| n.to_string()).collect();
            self.line(&header)?;
        }
        let rows = std::mem::take(&mut self.rows);
        for row in &rows {
            self.line(row)?;
        }
        self.written += rows.len();
        self.rows = rows;
        self.rows.clear();
        self.out.flush()
    }

    fn line(&mut self, cells: &[String]) -> io::Result<()> {
        let line = &mut self.line;
        line.clear();
        for (i, cell) in cells.iter().enumerate() {
            let pad = self.widths[i] - width(cell);
            if i > 0 {
                line.push_str("  ");
            }
            match self.columns[i].1 {
                Align::Right => {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                }
                Align::Left => {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
        }
        // No trailing blanks, even when the last cells are empty.
        writeln!(self.out, "{}", line.trim_end())
    }
}

/// Characters, not bytes: reasons and arrows are not ASCII.
fn width(s: &str) -> usize {
    s.chars().count()
}

/// Calls `f` on each element of the JSON array `body` as it is decoded, so
/// a reply of 1M entries never becomes a 1M-element `Vec`.
pub fn each<T: DeserializeOwned>(
    body: impl io::Read,
    f: impl FnMut(T) -> io::Result<()>,
) -> Result<(), EachError> {
    struct Each<T, F> {
        f: F,
        failed: Option<io::Error>,
        item: PhantomData<T>,
    }
    impl<'de, T: DeserializeOwned, F: FnMut(T) -> io::Result<()>> Visitor<'de> for &mut Each<T, F> {
        type Value = ();

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(item) = seq.next_element::<T>()? {
                if let Err(e) = (self.f)(item) {
                    self.failed = Some(e);
                    return Err(A::Error::custom("the output failed"));
                }
            }
            Ok(())
        }
    }
    let mut each = Each {
        f,
        failed: None,
        item: PhantomData,
    };
    let mut de = serde_json::Deserializer::from_reader(body);
    let decoded = (&mut de).deserialize_seq(&mut each).and_then(|()| de.end());
    match (each.failed, decoded) {
        (Some(e), _) => Err(EachError::Output(e)),
        (None, Err(e)) => Err(EachError::Reply(e)),
        (None, Ok(())) => Ok(()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EachError {
    #[error(transparent)]
    Output(io::Error),
    #[error("denylistd sent a reply this client cannot read: {0}")]
    Reply(serde_json::Error),
}

/// The two largest units: `45s`, `59m59s`, `23h59m`, `6d23h`.
pub fn span(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) if s == 0 => format!("{m}m"),
        (0, 0, _) => format!("{m}m{s}s"),
        (0, _, 0) => format!("{h}h"),
        (0, _, _) => format!("{h}h{m}m"),
        (_, 0, _) => format!("{d}d"),
        _ => format!("{d}d{h}h"),
    }
}

/// `in 23h59m` or `5m ago`, truncated to whole seconds.
pub fn relative(at: Millis, now: Millis) -> String {
    let secs = (at - now).unsigned_abs() / 1000;
    if secs == 0 {
        "now".to_string()
    } else if at > now {
        format!("in {}", span(secs))
    } else {
        format!("{} ago", span(secs))
    }
}

/// RFC 3339 to the second: the milliseconds the API keeps are noise here.
pub fn absolute(at: Millis) -> String {
    humantime::format_rfc3339_seconds(from_ms(at)).to_string()
}

/// When an entry expires: relative and absolute once deployed; a draft
/// entry's TTL only starts counting at its deploy.
pub fn expiry(e: &Entry, now: Millis) -> String {
    match (e.expires_at, e.ttl) {
        (Some(at), _) => format!("{} ({})", relative(at, now), absolute(at)),
        (None, Some(ttl)) => format!("{} after deploy", span(ttl)),
        (None, None) => "never".to_string(),
    }
}

/// `1 entry`, `2 entries`.
pub fn plural(n: impl Into<u64>, one: &str, many: &str) -> String {
    match n.into() {
        1 => format!("1 {one}"),
        n => format!("{n} {many}"),
    }
}

fn ttl(ttl: Option<u64>) -> String {
    ttl.map_or_else(|| "never".to_string(), span)
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// `+A −R ~C`: added, removed, changed.
pub fn counts(c: &Counts) -> String {
    format!("+{} −{} ~{}", c.added, c.removed, c.changed)
}

const ENTRY_COLUMNS: &[(&str, Align)] = &[
    ("TARGET", Align::Left),
    ("LIST", Align::Left),
    ("EXPIRES", Align::Left),
    ("MONITOR", Align::Left),
    ("SOURCE", Align::Left),
    ("ADDED BY", Align::Left),
    ("ADDED AT", Align::Left),
    // Free text goes last, so a long reason does not push the other
    // columns apart.
    ("REASON", Align::Left),
];

pub fn entry_row(e: &Entry, now: Millis) -> Vec<String> {
    vec![
        e.target.to_string(),
        e.list.as_str().to_string(),
        expiry(e, now),
        yes_no(e.monitor).to_string(),
        e.source.clone(),
        e.added_by.clone(),
        absolute(e.added_at),
        e.reason.clone().unwrap_or_default(),
    ]
}

pub fn entry_table<W: Write>(out: &mut W) -> Table<'_, W> {
    Table::new(out, ENTRY_COLUMNS)
}

pub fn diff(out: &mut impl Write, d: &Diff) -> io::Result<()> {
    let mut t = Table::new(
        out,
        &[
            ("", Align::Left),
            ("TARGET", Align::Left),
            ("LIST", Align::Left),
            ("STAGED BY", Align::Left),
            ("STAGED AT", Align::Left),
            ("DETAIL", Align::Left),
        ],
    );
    let row = |sign: &str, e: &Entry, by: &str, at: Millis, detail: String| {
        vec![
            sign.to_string(),
            e.target.to_string(),
            e.list.as_str().to_string(),
            by.to_string(),
            absolute(at),
            detail,
        ]
    };
    for s in &d.added {
        t.row(row(
            "+",
            &s.item,
            &s.staged_by,
            s.staged_at,
            settings(&s.item),
        ))?;
    }
    for s in &d.removed {
        t.row(row(
            "−",
            &s.item,
            &s.staged_by,
            s.staged_at,
            settings(&s.item),
        ))?;
    }
    for s in &d.changed {
        let detail = changes(&s.item.before, &s.item.after);
        t.row(row("~", &s.item.after, &s.staged_by, s.staged_at, detail))?;
    }
    t.finish_or("no pending changes")
}

/// An entry's settings in one line, for the diff.
fn settings(e: &Entry) -> String {
    let mut parts = vec![format!("ttl {}", ttl(e.ttl))];
    if e.monitor {
        parts.push("monitor".to_string());
    }
    if e.source != "manual" {
        parts.push(format!("source {}", e.source));
    }
    if let Some(r) = &e.reason {
        parts.push(format!("reason {r:?}"));
    }
    parts.join(", ")
}

/// What a change does, field by field: `ttl 1h → 1d, monitor yes → no`.
fn changes(before: &Entry, after: &Entry) -> String {
    let mut parts = Vec::new();
    if before.ttl != after.ttl {
        parts.push(format!("ttl {} → {}", ttl(before.ttl), ttl(after.ttl)));
    }
    if before.monitor != after.monitor {
        parts.push(format!(
            "monitor {} → {}",
            yes_no(before.monitor),
            yes_no(after.monitor)
        ));
    }
    if before.source != after.source {
        parts.push(format!("source {} → {}", before.source, after.source));
    }
    if before.reason != after.reason {
        let r = |r: &Option<String>| {
            r.as_deref()
                .map_or("none".to_string(), |r| format!("{r:?}"))
        };
        parts.push(format!(
            "reason {} → {}",
            r(&before.reason),
            r(&after.reason)
        ));
    }
    parts.join(", ")
}

pub fn check(out: &mut impl Write, c: &CheckResponse) -> io::Result<()> {
    let why = match (c.verdict, &c.entry, &c.allowed_by) {
        (_, _, Some(allow)) => format!("pass: protected by allow entry {allow}"),
        (Verdict::Drop, Some(e), _) => format!("drop: deny entry {e}"),
        (Verdict::Monitor, Some(e), _) => {
            format!("monitor (would drop, passes): deny entry {e} is in monitor mode")
        }
        (Verdict::Pass, None, None) => "pass: no entry covers it".to_string(),
        (v, e, None) => format!("{}: entry {}", name(&v), e.as_deref().unwrap_or("none")),
    };
    writeln!(out, "{}: {why}", c.ip)
}

pub fn status(out: &mut impl Write, s: &Status) -> io::Result<()> {
    let pending = match s.pending_changes {
        0 => "no pending changes".to_string(),
        n => format!(
            "{} (denylist diff)",
            plural(n, "pending change", "pending changes")
        ),
    };
    writeln!(out, "revision    {}, {pending}", s.revision)?;
    if s.interfaces.is_empty() {
        writeln!(out, "interfaces  none (denylist attach IFACE)")?;
    }
    for (i, iface) in s.interfaces.iter().enumerate() {
        let label = if i == 0 { "interfaces" } else { "" };
        let mode = match iface.xdp_mode {
            Some(m) if iface.attached => format!("xdp {}", name(&m)),
            _ => format!("NOT ATTACHED (configured {})", name(&iface.configured)),
        };
        writeln!(out, "{label:<10}  {} {mode}", iface.name)?;
    }
    writeln!(
        out,
        "entries     {} deny, {} allow",
        s.entries.deny, s.entries.allow
    )?;
    writeln!(
        out,
        "capacity    {} of {} used",
        s.capacity.used, s.capacity.total
    )?;
    let c = &s.counters;
    writeln!(
        out,
        "dropped     {} packets, {} bytes",
        c.dropped_packets, c.dropped_bytes
    )?;
    writeln!(
        out,
        "passed      {} packets, {} bytes",
        c.passed_packets, c.passed_bytes
    )?;
    writeln!(out, "monitored   {} packets", c.monitored_packets)?;
    writeln!(out, "allowed     {} packets", c.allowed_packets)?;
    writeln!(out, "unparsable  {} packets", c.unparsable_packets)?;
    if s.drift > 0 {
        writeln!(
            out,
            "drift       {} differ from the deployed revision",
            plural(s.drift, "entry", "entries")
        )?;
    }
    Ok(())
}

/// Why the daemon is degraded, with what to do about it.
pub fn degraded(s: &Status) -> Vec<String> {
    let mut why: Vec<String> = s
        .interfaces
        .iter()
        .filter(|i| !i.attached)
        .map(|i| {
            format!(
                "{} is not attached: is the interface up? (denylist attach {})",
                i.name, i.name
            )
        })
        .collect();
    if s.drift > 0 {
        why.push(format!(
            "{} in the kernel differ from the deployed revision: run denylist verify",
            plural(s.drift, "entry", "entries")
        ));
    }
    why
}

/// The lowercase name an enum has in the API's JSON.
fn name(v: &impl serde::Serialize) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "?".to_string(),
    }
}

pub fn stats(out: &mut impl Write, items: &[StatItem], now: Millis) -> io::Result<()> {
    let mut t = Table::new(
        out,
        &[
            ("TARGET", Align::Left),
            ("LIST", Align::Left),
            ("PACKETS", Align::Right),
            ("BYTES", Align::Right),
            ("LAST HIT", Align::Left),
        ],
    );
    for s in items {
        t.row(vec![
            s.target.clone(),
            s.list.as_str().to_string(),
            s.packets.to_string(),
            s.bytes.to_string(),
            s.last_hit
                .map_or_else(|| "never".to_string(), |at| relative(at, now)),
        ])?;
    }
    t.finish_or("no entries")
}

/// A revision as `GET /v1/history` shows it.
#[derive(Debug, Deserialize)]
pub struct Revision {
    pub revision: u64,
    #[serde(with = "time_ms")]
    pub deployed_at: Millis,
    pub deployed_by: String,
    pub message: Option<String>,
    #[serde(flatten)]
    pub counts: Counts,
}

pub fn history(out: &mut impl Write, revisions: &[Revision]) -> io::Result<()> {
    let mut t = Table::new(
        out,
        &[
            ("REVISION", Align::Right),
            ("DEPLOYED AT", Align::Left),
            ("DEPLOYED BY", Align::Left),
            ("CHANGES", Align::Left),
            ("MESSAGE", Align::Left),
        ],
    );
    for r in revisions {
        t.row(vec![
            r.revision.to_string(),
            absolute(r.deployed_at),
            r.deployed_by.clone(),
            counts(&r.counts),
            r.message.clone().unwrap_or_default(),
        ])?;
    }
    t.finish_or("no revisions yet: denylist deploy makes the first")
}

/// An event as `GET /v1/audit` shows it.
#[derive(Debug, Deserialize)]
pub struct AuditEvent {
    pub seq: u64,
    #[serde(with = "time_ms")]
    pub at: Millis,
    pub user: String,
    pub kind: String,
    pub target: Option<String>,
    pub detail: Option<serde_json::Value>,
}

pub fn audit(out: &mut impl Write, events: &[AuditEvent]) -> io::Result<()> {
    let mut t = Table::new(
        out,
        &[
            ("SEQ", Align::Right),
            ("AT", Align::Left),
            ("USER", Align::Left),
            ("KIND", Align::Left),
            ("TARGET", Align::Left),
            ("DETAIL", Align::Left),
        ],
    );
    for e in events {
        t.row(vec![
            e.seq.to_string(),
            absolute(e.at),
            e.user.clone(),
            e.kind.clone(),
            e.target.clone().unwrap_or_default(),
            e.detail.as_ref().map(|d| d.to_string()).unwrap_or_default(),
        ])?;
    }
    t.finish_or("no events")
}

pub fn deploy(out: &mut impl Write, d: &DeployResponse) -> io::Result<()> {
    if d.nothing_pending {
        writeln!(out, "nothing to deploy")
    } else if d.dry_run {
        writeln!(out, "dry run: would deploy {}", counts(&d.counts))
    } else {
        let rev = d
            .revision
            .map_or_else(|| "?".to_string(), |r| r.to_string());
        writeln!(
            out,
            "revision {rev}: {} ({} ms)",
            counts(&d.counts),
            d.duration_ms
        )
    }
}

/// The staged counts, then the deploy or a hint to review and deploy.
fn staged(out: &mut impl Write, c: &Counts, deployed: Option<&DeployResponse>) -> io::Result<()> {
    match deployed {
        Some(d) => {
            writeln!(out, "staged: {}", counts(c))?;
            deploy(out, d)
        }
        None if *c == Counts::default() => {
            writeln!(out, "nothing changed: the draft already has these settings")
        }
        None => writeln!(
            out,
            "staged: {} (review with denylist diff, apply with denylist deploy)",
            counts(c)
        ),
    }
}

pub fn stage(out: &mut impl Write, s: &StageResponse) -> io::Result<()> {
    staged(out, &s.counts, s.deployed.as_ref())
}

pub fn import(out: &mut impl Write, i: &ImportResponse) -> io::Result<()> {
    writeln!(
        out,
        "staged: {} from {} (format {}, source {})",
        counts(&i.counts),
        plural(i.entries, "entry", "entries"),
        i.format,
        i.source
    )?;
    if i.skipped_invalid > 0 {
        let n = plural(i.skipped_invalid, "invalid line", "invalid lines");
        writeln!(out, "skipped {n}")?;
    }
    if !i.skipped_guarded.is_empty() {
        writeln!(
            out,
            "left out {} the guardrails stop:",
            plural(i.skipped_guarded.len() as u64, "target", "targets")
        )?;
        for t in &i.skipped_guarded {
            writeln!(out, "  {t}")?;
        }
    }
    match &i.deployed {
        Some(d) => deploy(out, d),
        None => writeln!(out, "review with denylist diff, apply with denylist deploy"),
    }
}

pub fn rollback(out: &mut impl Write, revision: u64, r: &RollbackResponse) -> io::Result<()> {
    writeln!(out, "the draft now equals revision {revision}")?;
    if !r.expired.is_empty() {
        writeln!(
            out,
            "left out {} expired since:",
            plural(r.expired.len() as u64, "entry", "entries")
        )?;
        for t in &r.expired {
            writeln!(out, "  {t}")?;
        }
    }
    match &r.deployed {
        Some(d) => deploy(out, d),
        None => writeln!(out, "review with denylist diff, apply with denylist deploy"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        proto::{Change, Staged},
        target::Target,
        verdict::List,
    };

    const NOW: Millis = 1_795_867_200_000; // 2026-11-28T12:00:00Z

    fn entry(target: &str) -> Entry {
        Entry {
            target: Target::parse(target).unwrap(),
            list: List::Deny,
            reason: None,
            ttl: None,
            expires_at: None,
            monitor: false,
            source: "manual".into(),
            added_by: "alice".into(),
            added_at: NOW - 60_000,
        }
    }

    fn text(f: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> String {
        let mut out = Vec::new();
        f(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn spans_keep_the_two_largest_units() {
        assert_eq!(span(0), "0s");
        assert_eq!(span(45), "45s");
        assert_eq!(span(90), "1m30s");
        assert_eq!(span(1800), "30m");
        assert_eq!(span(86_399), "23h59m");
        assert_eq!(span(3600), "1h");
        assert_eq!(span(86_400), "1d");
        assert_eq!(span(7 * 86_400 - 1), "6d23h");
        assert_eq!(span(2 * 86_400 + 59), "2d");
    }

    #[test]
    fn times_are_relative_and_absolute() {
        assert_eq!(relative(NOW + 86_399_999, NOW), "in 23h59m");
        assert_eq!(relative(NOW - 300_000, NOW), "5m ago");
        assert_eq!(relative(NOW + 400, NOW), "now");
        assert_eq!(absolute(NOW + 86_400_000), "2026-11-29T12:00:00Z");
    }

    #[test]
    fn expiry_shows_both_forms_never_or_the_ttl_to_come() {
        let mut e = entry("198.51.100.7");
        assert_eq!(expiry(&e, NOW), "never");
        e.ttl = Some(86_400);
        assert_eq!(expiry(&e, NOW), "1d after deploy");
        e.expires_at = Some(NOW + 86_399_000);
        assert_eq!(expiry(&e, NOW), "in 23h59m (2026-11-29T11:59:59Z)");
    }

    #[test]
    fn tables_align_and_leave_no_trailing_blanks() {
        let out = text(|out| {
            let mut t = Table::new(
                out,
                &[("A", Align::Left), ("N", Align::Right), ("Z", Align::Left)],
            );
            t.row(vec!["long value".into(), "7".into(), "x".into()])?;
            t.row(vec!["v".into(), "1234".into(), "yy".into()])?;
            t.finish_or("none")
        });
        assert_eq!(
            out,
            "A              N  Z\nlong value     7  x\nv           1234  yy\n"
        );
        assert_eq!(
            text(|out| Table::new(out, &[("A", Align::Left)]).finish_or("none")),
            "none\n"
        );
    }

    #[test]
    fn entries_stream_from_a_json_array() {
        let mut a = entry("198.51.100.7");
        a.reason = Some("scanner, per abuse report".into());
        a.monitor = true;
        let b = entry("2001:db8::/48");
        let body = serde_json::to_vec(&[&a, &b]).unwrap();
        let out = text(|out| {
            let mut t = entry_table(out);
            each(body.as_slice(), |e: Entry| t.row(entry_row(&e, NOW))).map_err(|e| match e {
                EachError::Output(e) => e,
                EachError::Reply(e) => panic!("{e}"),
            })?;
            t.finish_or("no entries")
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(
            lines[0].starts_with("TARGET         LIST  EXPIRES  MONITOR"),
            "{out}"
        );
        assert!(
            lines[1].starts_with("198.51.100.7   deny  never    yes"),
            "{out}"
        );
        assert!(
            lines[1].ends_with("2026-11-28T11:59:00Z  scanner, per abuse report"),
            "{out}"
        );
        assert!(
            lines[2].starts_with("2001:db8::/48  deny  never    no"),
            "{out}"
        );
        assert!(matches!(
            each(&b"{}"[..], |_: Entry| Ok(())),
            Err(EachError::Reply(_))
        ));
        assert!(matches!(
            each(&b"[1]"[..], |_: Entry| Ok(())),
            Err(EachError::Reply(_))
        ));
    }

    #[test]
    fn a_failed_write_stops_the_stream() {
        let body = serde_json::to_vec(&[entry("198.51.100.7"), entry("198.51.100.8")]).unwrap();
        let mut calls = 0;
        let r = each(body.as_slice(), |_: Entry| {
            calls += 1;
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        });
        assert!(matches!(r, Err(EachError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe));
        assert_eq!(calls, 1);
    }

    #[test]
    fn diffs_name_what_changes() {
        let mut before = entry("203.0.113.0/24");
        before.ttl = Some(3600);
        let mut after = before.clone();
        after.ttl = Some(86_400);
        after.monitor = true;
        after.reason = Some("scan".into());
        let staged = |item| Staged {
            item,
            staged_by: "bob".into(),
            staged_at: NOW,
        };
        let d = Diff {
            added: vec![staged(entry("198.51.100.7"))],
            removed: vec![],
            changed: vec![Staged {
                item: Change { before, after },
                staged_by: "bob".into(),
                staged_at: NOW,
            }],
        };
        let out = text(|out| diff(out, &d));
        assert!(out.contains("+  198.51.100.7"), "{out}");
        assert!(out.contains("ttl never"), "{out}");
        assert!(
            out.contains("~  203.0.113.0/24  deny  bob        2026-11-28T12:00:00Z  ttl 1h → 1d, monitor no → yes, reason none → \"scan\""),
            "{out}"
        );
        let empty = Diff {
            added: vec![],
            removed: vec![],
            changed: vec![],
        };
        assert_eq!(text(|out| diff(out, &empty)), "no pending changes\n");
    }

    #[test]
    fn deploys_say_what_happened() {
        let d = |revision, nothing_pending, dry_run| DeployResponse {
            seq: None,
            revision,
            counts: Counts {
                added: 3,
                removed: 1,
                changed: 2,
            },
            dry_run,
            nothing_pending,
            duration_ms: 4,
            phases_ms: Default::default(),
        };
        assert_eq!(
            text(|o| deploy(o, &d(Some(7), false, false))),
            "revision 7: +3 −1 ~2 (4 ms)\n"
        );
        assert_eq!(
            text(|o| deploy(o, &d(None, true, false))),
            "nothing to deploy\n"
        );
        assert_eq!(
            text(|o| deploy(o, &d(None, false, true))),
            "dry run: would deploy +3 −1 ~2\n"
        );
    }

    #[test]
    fn verdicts_say_why() {
        let c = |verdict, entry: Option<&str>, allowed_by: Option<&str>| CheckResponse {
            ip: "198.51.100.7".parse().unwrap(),
            verdict,
            entry: entry.map(str::to_string),
            allowed_by: allowed_by.map(str::to_string),
        };
        assert_eq!(
            text(|o| check(o, &c(Verdict::Drop, Some("198.51.100.0/24"), None))),
            "198.51.100.7: drop: deny entry 198.51.100.0/24\n"
        );
        assert_eq!(
            text(|o| check(o, &c(Verdict::Pass, None, Some("198.51.100.0/24")))),
            "198.51.100.7: pass: protected by allow entry 198.51.100.0/24\n"
        );
        assert_eq!(
            text(|o| check(o, &c(Verdict::Pass, None, None))),
            "198.51.100.7: pass: no entry covers it\n"
        );
        assert!(
            text(|o| check(o, &c(Verdict::Monitor, Some("198.51.100.7"), None)))
                .contains("monitor (would drop")
        );
    }

    #[test]
    fn status_shows_interfaces_and_why_it_is_degraded() {
        use crate::{
            dataplane::{AttachMode, AttachedMode},
            proto::Interface,
        };
        let iface = |name: &str, xdp_mode| Interface {
            name: name.into(),
            xdp_mode,
            configured: AttachMode::Auto,
            attached: xdp_mode.is_some(),
        };
        let mut s = Status {
            revision: 3,
            pending_changes: 2,
            interfaces: vec![
                iface("eth0", Some(AttachedMode::Native)),
                iface("eth1", None),
            ],
            entries: Default::default(),
            capacity: Default::default(),
            counters: Default::default(),
            drift: 0,
            degraded: true,
        };
        let out = text(|o| status(o, &s));
        assert!(
            out.starts_with("revision    3, 2 pending changes (denylist diff)\n"),
            "{out}"
        );
        assert!(out.contains("interfaces  eth0 xdp native\n"), "{out}");
        assert!(
            out.contains("            eth1 NOT ATTACHED (configured auto)\n"),
            "{out}"
        );
        assert_eq!(degraded(&s).len(), 1);
        assert!(degraded(&s)[0].contains("denylist attach eth1"));
        s.drift = 4;
        assert!(degraded(&s)[1].contains("denylist verify"));
    }
}
