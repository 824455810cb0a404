//! Reputation feeds: the presets, and the checks a fetched list must pass
//! before it replaces the last good one. The failures these checks stop
//! are the field's well-known ones: an outage page or an empty download
//! taken for the new list, a list that shrank by mistake, and a parser
//! that skips most of a file it does not understand.

use std::{collections::BTreeSet, time::Duration};

use super::import::{self, Parsed};
use crate::model::{CHANGE_FLOOR, FeedSettings, Format, Held, Target};

/// A well-known list, subscribed to by name alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    pub name: &'static str,
    pub url: &'static str,
    pub format: Format,
    /// How often its publisher asks to be fetched, at most.
    pub every: Duration,
    pub about: &'static str,
}

const HOUR: u64 = 3600;

/// The intervals are those the publishers ask for (or FireHOL's
/// update-ipsets uses where they say nothing): Spamhaus asks for at most
/// hourly fetches of lists that change a few times a day, blocklist.de
/// and Feodo Tracker refresh within minutes, ipsum is rebuilt daily.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "spamhaus-drop",
        url: "https://www.spamhaus.org/drop/drop_v4.json",
        format: Format::SpamhausJson,
        every: Duration::from_secs(12 * HOUR),
        about: "Spamhaus DROP: netblocks hijacked or leased by professional spam and cyber-crime operations (EDROP is merged into it since 2024-04-10)",
    },
    Preset {
        name: "spamhaus-dropv6",
        url: "https://www.spamhaus.org/drop/drop_v6.json",
        format: Format::SpamhausJson,
        every: Duration::from_secs(12 * HOUR),
        about: "Spamhaus DROPv6: the same for IPv6",
    },
    Preset {
        name: "firehol-level1",
        url: "https://iplists.firehol.org/files/firehol_level1.netset",
        format: Format::Firehol,
        every: Duration::from_secs(HOUR),
        about: "FireHOL level 1: attacks, malware and bogons seen across many lists, safe for most sites",
    },
    Preset {
        name: "blocklist-de",
        url: "https://lists.blocklist.de/lists/all.txt",
        format: Format::Plain,
        every: Duration::from_secs(15 * 60),
        about: "blocklist.de all: addresses reported by fail2ban users for attacks in the last 48 hours",
    },
    Preset {
        name: "feodo",
        url: "https://feodotracker.abuse.ch/downloads/ipblocklist.txt",
        format: Format::Plain,
        every: Duration::from_secs(30 * 60),
        about: "abuse.ch Feodo Tracker: botnet command-and-control servers (Dridex, Emotet, QakBot...)",
    },
    Preset {
        name: "ipsum-3",
        url: "https://raw.githubusercontent.com/stamparm/ipsum/master/levels/3.txt",
        format: Format::Plain,
        every: Duration::from_secs(24 * HOUR),
        about: "ipsum level 3: addresses on at least 3 public blocklists, rebuilt daily",
    },
];

pub fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// What a fetched body holds, before the guardrails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedList {
    /// Distinct targets, in order.
    pub targets: BTreeSet<Target>,
    /// Lines that held an entry or tried to: what the invalid share is of.
    pub lines: u64,
    pub invalid: u64,
    /// The first invalid line's number, to look it up in the feed; its
    /// text is never shown, since the feed is not ours to echo.
    pub first_invalid: Option<usize>,
    pub html: bool,
}

/// Reads a fetched body as `format`: never fails, every problem is counted.
pub fn read(body: &[u8], format: Format) -> FeedList {
    let html = looks_like_html(body);
    // A feed's list is its own: the export's JSON fields mean nothing here.
    let Parsed {
        entries, invalid, ..
    } = import::parse(body, format, false);
    FeedList {
        lines: (entries.len() + invalid.len()) as u64,
        invalid: invalid.len() as u64,
        first_invalid: invalid.first().map(|i| i.line),
        targets: entries.into_iter().map(|e| e.target).collect(),
        html,
    }
}

/// An error page served with 200: the first thing in the body is markup.
fn looks_like_html(body: &[u8]) -> bool {
    let head = &body[..body.len().min(1024)];
    let start = head.trim_ascii_start();
    let lower: Vec<u8> = start.iter().take(64).map(u8::to_ascii_lowercase).collect();
    lower.starts_with(b"<!doctype html")
        || lower.starts_with(b"<html")
        || lower.starts_with(b"<head")
        || lower.starts_with(b"<body")
        || (lower.starts_with(b"<") && head.windows(5).any(|w| w.eq_ignore_ascii_case(b"<html")))
}

/// Whether `list`, replacing `previous`, may be deployed; what holds it
/// back otherwise. `list.targets` is what is left after the guardrails.
pub fn check(
    list: &FeedList,
    previous: &BTreeSet<Target>,
    settings: &FeedSettings,
) -> Result<(), Held> {
    let added = list.targets.difference(previous).count() as u64;
    let removed = previous.difference(&list.targets).count() as u64;
    let held = |reason: String| Held {
        added,
        removed,
        reason,
    };
    if list.html {
        return Err(held(
            "the body looks like an HTML page, not a list: the server may be serving an error page"
                .into(),
        ));
    }
    if list.targets.is_empty() && list.invalid == 0 && !settings.allow_empty {
        return Err(held(
            "the list is empty: approve it if the feed really is empty now, or add the feed with --allow-empty".into(),
        ));
    }
    // More than 1% bad lines: the format is wrong, or the file is not a list.
    if list.invalid * 100 > list.lines {
        return Err(held(format!(
            "{} of its {} lines are not addresses or prefixes (the first is line {}): check the feed's --format",
            list.invalid,
            list.lines,
            list.first_invalid.unwrap_or(0)
        )));
    }
    if list.targets.len() as u64 > settings.max_entries {
        return Err(held(format!(
            "the list has {} entries, more than the feed's --max-entries {}",
            list.targets.len(),
            settings.max_entries
        )));
    }
    // A change is what it adds or removes, whichever is more: replacing a
    // whole list is a 100% change, as is doubling it.
    let base = previous.len() as u64;
    if base >= CHANGE_FLOOR && added.max(removed) * 100 > base * u64::from(settings.max_change) {
        return Err(held(format!(
            "it would add {added} and remove {removed} of the feed's {base} entries, more than its --max-change {}%",
            settings.max_change
        )));
    }
    Ok(())
}

/// Whether the guardrails' width limit, widened by `--max-width`, admits
/// `target` for this feed.
pub fn width_allowed(target: &Target, max_width: Option<u8>) -> bool {
    let Some(bits) = max_width else {
        return false;
    };
    let floor = if target.addr().is_ipv4() {
        bits
    } else {
        bits.saturating_add(32)
    };
    target.prefix_len() >= floor
}

#[cfg(test)]
mod tests;
