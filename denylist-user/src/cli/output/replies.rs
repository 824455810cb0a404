//! The human form of each reply: the entry table, diff, check, status,
//! stats, history, audit, deploy, stage, import and rollback.

use std::io::{self, Write};

use super::{
    format::{absolute, counts, expiry, name, plural, relative, ttl, yes_no},
    table::{Align, Table},
};
use crate::{
    model::{AuditEvent, Entry, Millis, Revision, Verdict},
    wire::{
        CheckResponse, Counts, DeployResponse, Diff, ImportResponse, RevisionDiff,
        RollbackResponse, StageResponse, StatItem, Status,
    },
};

const ENTRY_COLUMNS: &[(&str, Align)] = &[
    ("TARGET", Align::Left),
    ("LIST", Align::Left),
    ("EXPIRES", Align::Left),
    ("MONITOR", Align::Left),
    ("SOURCES", Align::Left),
    ("ADDED BY", Align::Left),
    ("ADDED AT", Align::Left),
    // Free text goes last, so a long reason does not push the other
    // columns apart.
    ("REASON", Align::Left),
];

pub(crate) fn entry_row(e: &Entry, now: Millis) -> Vec<String> {
    vec![
        e.target.to_string(),
        e.list.as_str().to_string(),
        expiry(e, now),
        yes_no(e.monitor).to_string(),
        sources(e),
        e.added_by.clone(),
        absolute(e.added_at),
        e.reason.clone().unwrap_or_default(),
    ]
}

pub(crate) fn entry_table<W: Write>(out: &mut W) -> Table<'_, W> {
    Table::new(out, ENTRY_COLUMNS)
}

pub(crate) fn diff(out: &mut impl Write, d: &Diff) -> io::Result<()> {
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

/// Who listed an entry: `manual`, or `manual,feed:spamhaus-drop`.
fn sources(e: &Entry) -> String {
    if e.sources.is_empty() {
        e.source.clone()
    } else {
        e.sources.join(",")
    }
}

/// An entry's settings in one line, for the diff.
fn settings(e: &Entry) -> String {
    let mut parts = vec![format!("ttl {}", ttl(e.ttl))];
    if e.monitor {
        parts.push("monitor".to_string());
    }
    if sources(e) != "manual" {
        parts.push(format!("sources {}", sources(e)));
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
    if sources(before) != sources(after) {
        parts.push(format!("sources {} → {}", sources(before), sources(after)));
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

pub(crate) fn check(out: &mut impl Write, c: &CheckResponse) -> io::Result<()> {
    let why = match (c.verdict, &c.entry, &c.allowed_by) {
        (_, _, Some(allow)) => format!("pass: protected by allow entry {allow}"),
        (Verdict::Drop, Some(e), _) => format!("drop: deny entry {e}"),
        (Verdict::Monitor, Some(e), _) => {
            format!("monitor (would drop, passes): deny entry {e} is in monitor mode")
        }
        (Verdict::Pass, None, None) => "pass: no entry covers it".to_string(),
        (v, Some(e), None) => format!("{}: entry {e}", name(&v)),
        (v, None, None) => format!("{}: entry none", name(&v)),
    };
    if c.sources.is_empty() {
        writeln!(out, "{}: {why}", c.ip)
    } else {
        writeln!(out, "{}: {why}, listed by {}", c.ip, c.sources.join(", "))
    }
}

pub(crate) fn status(out: &mut impl Write, s: &Status) -> io::Result<()> {
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
pub(crate) fn degraded(s: &Status) -> Vec<String> {
    // The daemon says why, knowing what a client cannot (why an attach
    // failed); a daemon from before it did leaves the list empty.
    if !s.degraded_reasons.is_empty() {
        return s.degraded_reasons.clone();
    }
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

pub(crate) fn stats(out: &mut impl Write, items: &[StatItem], now: Millis) -> io::Result<()> {
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
            s.target.to_string(),
            s.list.as_str().to_string(),
            s.packets.to_string(),
            s.bytes.to_string(),
            s.last_hit
                .map_or_else(|| "never".to_string(), |at| relative(at, now)),
        ])?;
    }
    t.finish_or("no entries")
}

pub(crate) fn history(out: &mut impl Write, revisions: &[Revision]) -> io::Result<()> {
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
            counts(&Counts {
                added: r.added,
                removed: r.removed,
                changed: r.changed,
            }),
            r.message.clone().unwrap_or_default(),
        ])?;
    }
    t.finish_or("no revisions yet: denylist deploy makes the first")
}

pub(crate) fn audit(out: &mut impl Write, events: &[AuditEvent]) -> io::Result<()> {
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

pub(crate) fn deploy(out: &mut impl Write, d: &DeployResponse) -> io::Result<()> {
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

pub(crate) fn stage(out: &mut impl Write, s: &StageResponse) -> io::Result<()> {
    // A dry run records nothing, so it has no seq.
    if s.seq.is_none() {
        writeln!(
            out,
            "dry run, nothing staged: would stage {}",
            counts(&s.counts)
        )?;
        for r in &s.refused {
            writeln!(out, "refused: {}", r.reason)?;
        }
        return Ok(());
    }
    staged(out, &s.counts, s.deployed.as_ref())
}

/// What one revision's deploy changed: `+`, `-` and `~` lines.
pub(crate) fn revision(out: &mut impl Write, d: &RevisionDiff) -> io::Result<()> {
    let r = &d.revision;
    let message = r
        .message
        .as_ref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    writeln!(
        out,
        "revision {} deployed {} by {}{message}",
        r.revision,
        absolute(r.deployed_at),
        r.deployed_by
    )?;
    for e in &d.added {
        writeln!(out, "+  {}  {}", e.target, e.list.as_str())?;
    }
    for e in &d.removed {
        writeln!(out, "-  {}  {}", e.target, e.list.as_str())?;
    }
    for c in &d.changed {
        writeln!(out, "~  {}  {}", c.after.target, c.after.list.as_str())?;
    }
    if d.truncated {
        writeln!(
            out,
            "(more than shown: the revision counts {}; give --limit N to see more)",
            counts(&Counts {
                added: r.added,
                removed: r.removed,
                changed: r.changed,
            })
        )?;
    }
    Ok(())
}

pub(crate) fn import(out: &mut impl Write, i: &ImportResponse) -> io::Result<()> {
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

pub(crate) fn rollback(
    out: &mut impl Write,
    revision: u64,
    r: &RollbackResponse,
) -> io::Result<()> {
    writeln!(
        out,
        "the draft's manual and import listings now equal revision {revision}; \
         feed and automatic listings stay as they are"
    )?;
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
    use super::super::{
        fixtures::{NOW, entry, text},
        table::{EachError, each},
    };
    use super::*;
    use crate::{
        model::Target,
        wire::{Change, Staged},
    };

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
            draft_seq: 7,
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
            draft_seq: 0,
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
            entry: entry.map(|t| Target::parse(t).unwrap()),
            allowed_by: allowed_by.map(|t| Target::parse(t).unwrap()),
            sources: Vec::new(),
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
            model::{AttachMode, AttachedMode},
            wire::Interface,
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
            degraded_reasons: Vec::new(),
            draft_seq: 0,
            warnings: Vec::new(),
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

    #[test]
    fn a_dry_run_and_a_revision_say_what_they_would_and_did_change() {
        use crate::wire::{Refusal, RevisionDiff};
        let dry = StageResponse {
            seq: None,
            counts: Counts {
                added: 2,
                removed: 0,
                changed: 0,
            },
            targets: Vec::new(),
            warnings: Vec::new(),
            refused: vec![Refusal {
                target: Target::parse("10.0.0.1").unwrap(),
                reason: "refusing deny entry 10.0.0.1: private".into(),
            }],
            deployed: None,
        };
        let out = text(|o| stage(o, &dry));
        assert!(out.starts_with("dry run, nothing staged"), "{out}");
        assert!(
            out.contains("refused: refusing deny entry 10.0.0.1"),
            "{out}"
        );
        let d = RevisionDiff {
            revision: Revision {
                revision: 4,
                deployed_at: NOW,
                deployed_by: "alice (web)".into(),
                message: Some("scanners".into()),
                added: 3,
                removed: 1,
                changed: 0,
            },
            added: vec![entry("198.51.100.7")],
            removed: vec![entry("203.0.113.0/24")],
            changed: Vec::new(),
            truncated: true,
        };
        let out = text(|o| revision(o, &d));
        assert!(out.starts_with("revision 4 deployed"), "{out}");
        assert!(out.contains("by alice (web): scanners"), "{out}");
        assert!(
            out.contains("+  198.51.100.7  deny\n-  203.0.113.0/24  deny\n"),
            "{out}"
        );
        assert!(out.contains("more than shown"), "{out}");
    }
}
