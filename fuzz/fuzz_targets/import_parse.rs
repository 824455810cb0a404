//! The import parsers (`denylist::policy::import`), which read whole files from
//! `denylist import` and `POST /v1/import`: every input is read as each
//! format, with and without `force`, as the daemon reads it.

#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use denylist::{
    model::{Format, Target},
    policy::import::{self, Parsed},
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const FORMATS: [Format; 5] = [
    Format::Plain,
    Format::Spamhaus,
    Format::SpamhausJson,
    Format::Firehol,
    Format::Json,
];

fuzz_target!(|data: &[u8]| {
    let detected = import::detect(data);
    assert_ne!(detected, Format::Auto, "detect must decide");
    let [strict, forced] = [false, true].map(|force| {
        let parsed = FORMATS.map(|format| import::parse(data, format, force));
        for (format, parsed) in FORMATS.iter().zip(&parsed) {
            assert_eq!(parsed.format, *format);
            well_formed(data, parsed, force);
        }
        let auto = import::parse(data, Format::Auto, force);
        let as_detected = parsed.iter().find(|p| p.format == detected);
        assert_eq!(Some(&auto), as_detected, "auto is not {detected}");
        // FireHOL netsets are plain lists with a header.
        let [plain, _, _, firehol, _] = &parsed;
        assert_eq!(plain.entries, firehol.entries);
        assert_eq!(plain.invalid, firehol.invalid);
        parsed
    });
    for (strict, forced) in strict.iter().zip(&forced) {
        force_only_normalizes(strict, forced);
    }
});

/// What every parse promises, whatever the input.
fn well_formed(data: &[u8], parsed: &Parsed, force: bool) {
    let format = parsed.format;
    for entry in &parsed.entries {
        let shown = entry.target.to_string();
        assert_eq!(Target::parse(&shown), Ok(entry.target), "{format}: {shown}");
        if matches!(format, Format::Plain | Format::Firehol) {
            assert_eq!(entry.reason, None, "{format} has no reasons");
        }
        if format == Format::Spamhaus {
            assert_ne!(entry.reason.as_deref(), Some(""), "an empty SBL id");
        }
    }
    for invalid in &parsed.invalid {
        assert!(
            !invalid.error.is_empty(),
            "{format}: line {} without why",
            invalid.line
        );
        assert!(
            invalid.text.chars().count() <= 200,
            "{format}: {:?}",
            invalid.text
        );
    }
    let entry_lines: Vec<usize> = parsed.entries.iter().map(|e| e.line).collect();
    let invalid_lines: Vec<usize> = parsed.invalid.iter().map(|i| i.line).collect();
    assert!(entry_lines.is_sorted(), "{format}: entries out of order");
    assert!(
        invalid_lines.is_sorted(),
        "{format}: invalid lines out of order"
    );
    let all: BTreeSet<usize> = entry_lines.iter().chain(&invalid_lines).copied().collect();
    assert_eq!(
        all.len(),
        entry_lines.len() + invalid_lines.len(),
        "{format}: a line is both an entry and invalid, or counted twice"
    );
    if format != Format::Json {
        assert!(parsed.json_entries.is_empty());
        let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
        assert!(
            all.iter().all(|line| (1..=lines).contains(line)),
            "{format}: line numbers {all:?} beyond the {lines} lines"
        );
        return;
    }
    assert_eq!(parsed.json_entries.len(), parsed.entries.len());
    let document_error = parsed.entries.is_empty()
        && parsed.invalid.len() == 1
        && parsed.invalid[0].error.starts_with("not valid JSON");
    if !document_error {
        // Array positions: every element is an entry or invalid.
        assert!(
            all.iter().copied().eq(1..=all.len()),
            "json: positions {all:?} have gaps"
        );
    }
    for (entry, object) in parsed.entries.iter().zip(&parsed.json_entries) {
        // The daemon reads the object again, with the CLI's rules and no
        // force of its own: its target must be the normal form.
        let target = object.get("target").cloned().unwrap_or(Value::Null);
        assert_eq!(target, Value::String(entry.target.to_string()));
        let reread = serde_json::from_value::<Target>(target);
        assert_eq!(
            reread.ok(),
            Some(entry.target),
            "json, force {force}: {object}"
        );
        let reason = object.get("reason").and_then(Value::as_str);
        assert_eq!(reason, entry.reason.as_deref(), "json: {object}");
    }
}

/// `force` turns lines refused for host bits into their network, and does
/// nothing else: no line appears, disappears or changes otherwise.
fn force_only_normalizes(strict: &Parsed, forced: &Parsed) {
    let format = strict.format;
    assert_eq!(
        strict.entries.len() + strict.invalid.len(),
        forced.entries.len() + forced.invalid.len(),
        "{format}: force changed which lines count"
    );
    let forced_entries: BTreeMap<usize, _> = forced.entries.iter().map(|e| (e.line, e)).collect();
    for entry in &strict.entries {
        assert_eq!(
            forced_entries.get(&entry.line),
            Some(&entry),
            "{format}: force changed valid line {}",
            entry.line
        );
    }
    // Another error of the same line may show once force accepts its
    // target, so lines are compared, not errors.
    let strict_invalid: BTreeMap<usize, _> =
        strict.invalid.iter().map(|i| (i.line, &i.text)).collect();
    for invalid in &forced.invalid {
        assert_eq!(
            strict_invalid.get(&invalid.line),
            Some(&&invalid.text),
            "{format}: line {} is invalid only with force",
            invalid.line
        );
    }
}
