//! Bulk import: the parsers for the list formats `denylist import` reads.
//!
//! Parsing never stops at a bad line: every one is collected with its line
//! number, so the caller can show them all at once and the user can fix the
//! file in one go. Duplicates are kept; the daemon merges them.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use crate::model::{Format, List, Target, TargetError};

/// Longer lines are not entries of any format, and would make the list of
/// bad lines unreadable.
const MAX_LINE: usize = 4096;
/// How much of a bad line is shown back.
const MAX_TEXT_CHARS: usize = 200;
const BOM: &[u8] = b"\xEF\xBB\xBF";
/// The fields of an entry in our own export format.
const ENTRY_FIELDS: [&str; 11] = [
    "target",
    "list",
    "reason",
    "ttl",
    "expires_at",
    "monitor",
    "source",
    "added_by",
    "added_at",
    "sources",
    "listings",
];

/// One entry read from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportLine {
    /// 1-based line number; for [`Format::Json`], the 1-based position in
    /// the array.
    pub line: usize,
    pub target: Target,
    pub reason: Option<String>,
}

/// A line that is not an entry, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// 1-based, counted like [`ImportLine::line`].
    pub line: usize,
    /// The line as given, cut to 200 characters.
    pub text: String,
    pub error: String,
}

/// Everything read from one file.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The format the file was read as: never [`Format::Auto`].
    pub format: Format,
    pub entries: Vec<ImportLine>,
    /// For [`Format::Json`] only: the object of each of `entries`, in the
    /// same order, with `target` rewritten in normal form so that the daemon
    /// needs no `--force` of its own to read it.
    pub json_entries: Vec<Value>,
    pub invalid: Vec<Invalid>,
}

/// Why a line is not an entry.
#[derive(Debug, thiserror::Error)]
enum LineError {
    #[error("line too long ({len} bytes, at most {MAX_LINE}): put one entry on each line")]
    TooLong { len: usize },
    #[error("not UTF-8 text: convert the file to UTF-8")]
    NotUtf8,
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("not a JSON object ({source}): each line of a Spamhaus JSON file is one object")]
    SpamhausJson { source: serde_json::Error },
    #[error("no \"cidr\" field: each Spamhaus JSON record needs one")]
    MissingCidr,
    #[error("not valid JSON ({source}): fix the file, or import it with another format")]
    Document { source: serde_json::Error },
    #[error(
        "the file is JSON but not an array of entries: the json format is what the export writes"
    )]
    NotArray,
    #[error("entry is not a JSON object: each element of the array must be one")]
    NotObject,
    #[error(
        "unknown field {field:?}: entries have target, list, reason, ttl, expires_at, monitor, source, added_by, added_at, sources and listings; remove it or fix its spelling"
    )]
    UnknownField { field: String },
    #[error("no \"target\" field: every entry needs the address or prefix it is about")]
    MissingTarget,
    #[error("field {field:?} must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("\"list\" is {value}: use \"deny\" or \"allow\"")]
    BadList { value: String },
}

/// Reads `input` as `format` (detected first when [`Format::Auto`]).
/// `force` normalizes prefixes with host bits set instead of refusing them.
pub fn parse(input: &[u8], format: Format, force: bool) -> Parsed {
    let format = match format {
        Format::Auto => detect(input),
        given => given,
    };
    let mut parsed = Parsed {
        format,
        entries: Vec::new(),
        json_entries: Vec::new(),
        invalid: Vec::new(),
    };
    match format {
        Format::Json => parse_json(strip_bom(input), force, &mut parsed),
        Format::SpamhausJson => parse_lines(input, &mut parsed, |line| spamhaus_json(line, force)),
        Format::Spamhaus => parse_lines(input, &mut parsed, |line| text_line(line, force, true)),
        Format::Auto | Format::Plain | Format::Firehol => {
            parse_lines(input, &mut parsed, |line| text_line(line, force, false))
        }
    }
    parsed
}

/// Guesses the format from the first significant lines; never
/// [`Format::Auto`].
pub fn detect(input: &[u8]) -> Format {
    for line in lines(input).map(|(_, line)| line.trim_ascii()) {
        match line.first() {
            None => continue,
            Some(b';') if contains_ignore_case(line, b"spamhaus") => return Format::Spamhaus,
            Some(b'#') if contains_ignore_case(line, b"firehol") => return Format::Firehol,
            Some(b';' | b'#') => continue,
            Some(b'[') => return Format::Json,
            Some(b'{') => return Format::SpamhausJson,
            Some(_) if contains_ignore_case(line, b"; SBL") => return Format::Spamhaus,
            Some(_) => return Format::Plain,
        }
    }
    Format::Plain
}

/// Runs `entry` on each line of a line-based format; it answers `None` for a
/// line without an entry (blank, comment, metadata).
fn parse_lines(
    input: &[u8],
    parsed: &mut Parsed,
    entry: impl Fn(&str) -> Option<Result<(Target, Option<String>), LineError>>,
) {
    for (line, raw) in lines(input) {
        let result = if raw.len() > MAX_LINE {
            Some(Err(LineError::TooLong { len: raw.len() }))
        } else {
            match std::str::from_utf8(raw) {
                Ok(text) => entry(text),
                Err(_) => Some(Err(LineError::NotUtf8)),
            }
        };
        match result {
            None => {}
            Some(Ok((target, reason))) => parsed.entries.push(ImportLine {
                line,
                target,
                reason,
            }),
            Some(Err(error)) => parsed.invalid.push(Invalid {
                line,
                text: display_text(raw),
                error: error.to_string(),
            }),
        }
    }
}

/// A plain, FireHOL or Spamhaus line: an entry, then maybe a `#` or `;`
/// comment, which is the reason when `comment_is_reason` (Spamhaus's SBL id).
fn text_line(
    line: &str,
    force: bool,
    comment_is_reason: bool,
) -> Option<Result<(Target, Option<String>), LineError>> {
    let (entry, comment) = match line.find(['#', ';']) {
        Some(at) => (&line[..at], Some(line[at + 1..].trim())),
        None => (line, None),
    };
    let entry = entry.trim();
    if entry.is_empty() {
        return None;
    }
    let reason = comment
        .filter(|c| comment_is_reason && !c.is_empty())
        .map(str::to_string);
    Some(parse_target(entry, force).map(|target| (target, reason)))
}

#[derive(Deserialize)]
struct SpamhausRecord<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    cidr: Option<Cow<'a, str>>,
    #[serde(borrow)]
    sblid: Option<Cow<'a, str>>,
}

/// One line of drop_v4.json/drop_v6.json; the metadata record has no entry.
fn spamhaus_json(line: &str, force: bool) -> Option<Result<(Target, Option<String>), LineError>> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    let record: SpamhausRecord = match serde_json::from_str(line) {
        Ok(record) => record,
        Err(source) => return Some(Err(LineError::SpamhausJson { source })),
    };
    if record.kind.as_deref() == Some("metadata") {
        return None;
    }
    let Some(cidr) = record.cidr else {
        return Some(Err(LineError::MissingCidr));
    };
    let reason = record.sblid.map(Cow::into_owned);
    Some(parse_target(&cidr, force).map(|target| (target, reason)))
}

fn parse_json(input: &[u8], force: bool, parsed: &mut Parsed) {
    let document: Value = match serde_json::from_slice(input) {
        Ok(document) => document,
        Err(source) => {
            let line = source.line().max(1);
            let text = lines(input).nth(line - 1).map_or(&[][..], |(_, raw)| raw);
            parsed.invalid.push(Invalid {
                line,
                text: display_text(text),
                error: LineError::Document { source }.to_string(),
            });
            return;
        }
    };
    let Value::Array(items) = document else {
        parsed.invalid.push(Invalid {
            line: 1,
            text: display_text(document.to_string().as_bytes()),
            error: LineError::NotArray.to_string(),
        });
        return;
    };
    for (index, mut item) in items.into_iter().enumerate() {
        let line = index + 1;
        match json_entry(&mut item, force) {
            Ok((target, reason)) => {
                parsed.entries.push(ImportLine {
                    line,
                    target,
                    reason,
                });
                parsed.json_entries.push(item);
            }
            Err(error) => parsed.invalid.push(Invalid {
                line,
                text: display_text(item.to_string().as_bytes()),
                error: error.to_string(),
            }),
        }
    }
}

/// Checks the fields this module can judge, leaving the rest to the daemon,
/// and puts `target` in normal form.
fn json_entry(item: &mut Value, force: bool) -> Result<(Target, Option<String>), LineError> {
    let Value::Object(fields) = item else {
        return Err(LineError::NotObject);
    };
    if let Some(field) = fields.keys().find(|k| !ENTRY_FIELDS.contains(&k.as_str())) {
        return Err(LineError::UnknownField {
            field: field.clone(),
        });
    }
    let target = match fields.get("target") {
        None => return Err(LineError::MissingTarget),
        Some(Value::String(s)) => parse_target(s, force)?,
        Some(_) => {
            return Err(LineError::WrongType {
                field: "target",
                expected: "a string such as \"192.0.2.0/24\"",
            });
        }
    };
    if let Some(list) = fields.get("list").filter(|list| !list.is_null())
        && List::deserialize(list).is_err()
    {
        return Err(LineError::BadList {
            value: list.to_string(),
        });
    }
    let reason = match fields.get("reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(LineError::WrongType {
                field: "reason",
                expected: "a string or null",
            });
        }
    };
    fields.insert("target".to_string(), Value::String(target.to_string()));
    Ok((target, reason))
}

fn parse_target(text: &str, force: bool) -> Result<Target, LineError> {
    let target = if force {
        Target::parse_forced(text)
    } else {
        Target::parse(text)
    };
    Ok(target?)
}

fn strip_bom(input: &[u8]) -> &[u8] {
    input.strip_prefix(BOM).unwrap_or(input)
}

/// The lines of `input`, numbered from 1, without the BOM and line ends.
fn lines(input: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    strip_bom(input)
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(index, line)| (index + 1, line.strip_suffix(b"\r").unwrap_or(line)))
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle))
}

/// A bad line as shown back: trimmed, lossy UTF-8, cut to 200 characters
/// with an ellipsis saying so.
fn display_text(raw: &[u8]) -> String {
    // No character takes more than 4 bytes, so this is enough to show.
    let head = &raw[..raw.len().min(MAX_TEXT_CHARS * 4 + 1)];
    let text = String::from_utf8_lossy(head);
    let text = text.trim();
    let mut chars = text.char_indices();
    match chars.nth(MAX_TEXT_CHARS - 1) {
        Some((cut, _)) if chars.next().is_some() || head.len() < raw.len() => {
            format!("{}…", &text[..cut])
        }
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::UnknownFormat;

    fn t(s: &str) -> Target {
        Target::parse(s).unwrap()
    }

    /// (line, target, reason) of each entry.
    fn entries(parsed: &Parsed) -> Vec<(usize, String, Option<&str>)> {
        parsed
            .entries
            .iter()
            .map(|e| (e.line, e.target.to_string(), e.reason.as_deref()))
            .collect()
    }

    fn invalid_lines(parsed: &Parsed) -> Vec<usize> {
        parsed.invalid.iter().map(|i| i.line).collect()
    }

    #[test]
    fn plain_addresses_prefixes_comments_and_blanks() {
        let input = b"# blocked scanners\n\
            198.51.100.7\n\
            \n\
            \t 203.0.113.0/24  \n\
            ; another comment\n\
            2001:db8::/48 # trailing hash comment\n\
            192.0.2.9;trailing semicolon comment\n\
            2001:DB8::1/128\n";
        let parsed = parse(input, Format::Plain, false);
        assert_eq!(parsed.format, Format::Plain);
        assert_eq!(
            entries(&parsed),
            vec![
                (2, "198.51.100.7".to_string(), None),
                (4, "203.0.113.0/24".to_string(), None),
                (6, "2001:db8::/48".to_string(), None),
                (7, "192.0.2.9".to_string(), None),
                (8, "2001:db8::1".to_string(), None),
            ]
        );
        assert!(parsed.invalid.is_empty(), "{:?}", parsed.invalid);
        assert!(parsed.json_entries.is_empty());
    }

    #[test]
    fn crlf_and_bom() {
        let input = b"\xEF\xBB\xBF198.51.100.7\r\n# comment\r\n203.0.113.0/24\r\n\r\n192.0.2.1";
        let parsed = parse(input, Format::Plain, false);
        assert_eq!(
            entries(&parsed),
            vec![
                (1, "198.51.100.7".to_string(), None),
                (3, "203.0.113.0/24".to_string(), None),
                (5, "192.0.2.1".to_string(), None),
            ]
        );
        assert!(parsed.invalid.is_empty(), "{:?}", parsed.invalid);
    }

    #[test]
    fn invalid_lines_are_all_collected_with_their_numbers() {
        let mut input = b"198.51.100.7\nnot-an-address\n01.2.3.4 # octal?\n192.0.2.1\n".to_vec();
        input.extend_from_slice(b"192.0.2.\xff\n");
        input.extend(std::iter::repeat_n(b'1', MAX_LINE + 1));
        input.extend_from_slice(b"\n1.2.3.4 extra words\n203.0.113.5\n");
        let parsed = parse(&input, Format::Plain, false);
        assert_eq!(
            entries(&parsed),
            vec![
                (1, "198.51.100.7".to_string(), None),
                (4, "192.0.2.1".to_string(), None),
                (8, "203.0.113.5".to_string(), None),
            ]
        );
        assert_eq!(invalid_lines(&parsed), vec![2, 3, 5, 6, 7]);
        let [bad, octal, utf8, long, words] = &parsed.invalid[..] else {
            panic!("{:?}", parsed.invalid);
        };
        assert_eq!(bad.text, "not-an-address");
        assert!(
            bad.error.contains("not an IPv4 or IPv6 address"),
            "{}",
            bad.error
        );
        assert_eq!(octal.text, "01.2.3.4 # octal?");
        assert!(octal.error.contains("leading zeros"), "{}", octal.error);
        assert_eq!(utf8.text, "192.0.2.\u{FFFD}");
        assert!(utf8.error.contains("not UTF-8"), "{}", utf8.error);
        assert!(
            long.error.contains("line too long (4097 bytes"),
            "{}",
            long.error
        );
        assert_eq!(long.text.chars().count(), MAX_TEXT_CHARS);
        assert!(long.text.ends_with('…'));
        assert_eq!(words.text, "1.2.3.4 extra words");
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_read() {
        let mut input = vec![b' '; MAX_LINE - "192.0.2.1".len()];
        input.extend_from_slice(b"192.0.2.1");
        let parsed = parse(&input, Format::Plain, false);
        assert_eq!(entries(&parsed), vec![(1, "192.0.2.1".to_string(), None)]);
    }

    #[test]
    fn display_text_cuts_long_lines_only() {
        assert_eq!(display_text(b"  short  "), "short");
        let exact = "é".repeat(MAX_TEXT_CHARS);
        assert_eq!(display_text(exact.as_bytes()), exact);
        let long = display_text("é".repeat(MAX_TEXT_CHARS + 1).as_bytes());
        assert_eq!(long.chars().count(), MAX_TEXT_CHARS);
        assert!(long.ends_with("é…"));
        assert_eq!(display_text(b""), "");
    }

    #[test]
    fn host_bits_are_refused_unless_forced() {
        let input = b"203.0.113.77/24\n2001:db8::1/64\n";
        let refused = parse(input, Format::Plain, false);
        assert!(refused.entries.is_empty());
        assert_eq!(invalid_lines(&refused), vec![1, 2]);
        assert!(
            refused.invalid[0].error.contains("host bits set"),
            "{:?}",
            refused.invalid
        );
        assert!(
            refused.invalid[0].error.contains("--force"),
            "{:?}",
            refused.invalid
        );
        let forced = parse(input, Format::Plain, true);
        assert_eq!(
            entries(&forced),
            vec![
                (1, "203.0.113.0/24".to_string(), None),
                (2, "2001:db8::/64".to_string(), None),
            ]
        );
        assert!(forced.invalid.is_empty());
    }

    const SPAMHAUS: &[u8] =
        b"; Spamhaus DROP List 2024/01/01 - (c) 2024 The Spamhaus Project SLS\n\
        ; https://www.spamhaus.org/drop/drop.txt\n\
        ; Last-Modified: Mon, 01 Jan 2024 00:00:00 GMT\n\
        ; Expires: Mon, 01 Jan 2024 01:00:00 GMT\n\
        1.10.16.0/20 ; SBL256894\n\
        2.56.192.0/22 ; SBL459831\n\
        203.0.113.0/24\n";

    #[test]
    fn spamhaus_text_takes_the_sbl_id_as_reason() {
        let parsed = parse(SPAMHAUS, Format::Spamhaus, false);
        assert_eq!(parsed.format, Format::Spamhaus);
        assert_eq!(
            entries(&parsed),
            vec![
                (5, "1.10.16.0/20".to_string(), Some("SBL256894")),
                (6, "2.56.192.0/22".to_string(), Some("SBL459831")),
                (7, "203.0.113.0/24".to_string(), None),
            ]
        );
        assert!(parsed.invalid.is_empty());
    }

    #[test]
    fn spamhaus_edrop_with_crlf() {
        let input = b"; Spamhaus EDROP List\r\n1.19.0.0/16 ; SBL434604\r\n\r\nbogus ; SBL1\r\n";
        let parsed = parse(input, Format::Spamhaus, false);
        assert_eq!(
            entries(&parsed),
            vec![(2, "1.19.0.0/16".to_string(), Some("SBL434604"))]
        );
        assert_eq!(invalid_lines(&parsed), vec![4]);
        assert_eq!(parsed.invalid[0].text, "bogus ; SBL1");
    }

    const SPAMHAUS_JSON: &[u8] = b"{\"cidr\":\"1.10.16.0/20\",\"sblid\":\"SBL256894\",\"rir\":\"apnic\"}\r\n\
        {\"cidr\":\"2001:db8::/32\",\"sblid\":\"SBL1\",\"rir\":\"ripencc\"}\r\n\
        \r\n\
        {\"cidr\":\"1.19.0.0/16\",\"rir\":\"apnic\"}\r\n\
        {\"type\":\"metadata\",\"timestamp\":1700000000,\"size\":1234,\"records\":1000,\"copyright\":\"(c) 2024 The Spamhaus Project SLS\",\"terms\":\"https://www.spamhaus.org/drop/terms/\"}\r\n";

    #[test]
    fn spamhaus_json_lines() {
        let parsed = parse(SPAMHAUS_JSON, Format::SpamhausJson, false);
        assert_eq!(parsed.format, Format::SpamhausJson);
        assert_eq!(
            entries(&parsed),
            vec![
                (1, "1.10.16.0/20".to_string(), Some("SBL256894")),
                (2, "2001:db8::/32".to_string(), Some("SBL1")),
                (4, "1.19.0.0/16".to_string(), None),
            ]
        );
        assert!(parsed.invalid.is_empty(), "{:?}", parsed.invalid);
        assert!(parsed.json_entries.is_empty());
    }

    #[test]
    fn spamhaus_json_bad_lines() {
        let input = b"{\"cidr\":\"1.10.16.1/20\",\"sblid\":\"SBL1\"}\n\
            {\"sblid\":\"SBL2\"}\n\
            not json\n\
            {\"cidr\":\"1.\\u0031.0.0/16\"}\n";
        let parsed = parse(input, Format::SpamhausJson, false);
        assert_eq!(entries(&parsed), vec![(4, "1.1.0.0/16".to_string(), None)]);
        assert_eq!(invalid_lines(&parsed), vec![1, 2, 3]);
        assert!(parsed.invalid[0].error.contains("host bits"));
        assert!(parsed.invalid[1].error.contains("no \"cidr\" field"));
        assert!(
            parsed.invalid[2]
                .error
                .contains("each line of a Spamhaus JSON file")
        );
        let forced = parse(input, Format::SpamhausJson, true);
        assert_eq!(forced.entries[0].target, t("1.10.16.0/20"));
        assert_eq!(forced.entries[0].reason.as_deref(), Some("SBL1"));
    }

    const FIREHOL: &[u8] = b"#\n\
        # firehol_level1\n\
        #\n\
        # ipv4 hash:net ipset\n\
        #\n\
        # (includes: bambenek_c2 dshield feodo fullbogons spamhaus_drop)\n\
        #\n\
        198.51.100.0/24\n\
        203.0.113.9\n";

    #[test]
    fn firehol_netset() {
        let parsed = parse(FIREHOL, Format::Firehol, false);
        assert_eq!(parsed.format, Format::Firehol);
        assert_eq!(
            entries(&parsed),
            vec![
                (8, "198.51.100.0/24".to_string(), None),
                (9, "203.0.113.9".to_string(), None),
            ]
        );
        assert!(parsed.invalid.is_empty());
    }

    const JSON: &str = r#"[
  {"target": "198.51.100.7", "list": "deny", "reason": "scanner", "ttl": null,
   "expires_at": null, "monitor": false, "source": "cli", "added_by": "root",
   "added_at": "2024-01-01T00:00:00Z"},
  {"target": "203.0.113.0/24", "list": "allow"},
  {"target": "198.51.100.0/24", "colour": "red"},
  {"list": "deny"},
  "198.51.100.8",
  {"target": "192.0.2.1", "list": "maybe"},
  {"target": 5},
  {"target": "192.0.2.2", "reason": 7},
  {"target": "2001:db8::1/64", "list": null, "reason": null}
]"#;

    #[test]
    fn json_export_entries() {
        let parsed = parse(JSON.as_bytes(), Format::Json, false);
        assert_eq!(parsed.format, Format::Json);
        assert_eq!(
            entries(&parsed),
            vec![
                (1, "198.51.100.7".to_string(), Some("scanner")),
                (2, "203.0.113.0/24".to_string(), None),
            ]
        );
        assert_eq!(parsed.json_entries.len(), 2);
        assert_eq!(parsed.json_entries[0]["added_by"], "root");
        assert_eq!(parsed.json_entries[1]["list"], "allow");
        assert_eq!(invalid_lines(&parsed), vec![3, 4, 5, 6, 7, 8, 9]);
        let errors: Vec<&str> = parsed.invalid.iter().map(|i| i.error.as_str()).collect();
        assert!(
            errors[0].starts_with("unknown field \"colour\""),
            "{}",
            errors[0]
        );
        assert!(
            errors[1].starts_with("no \"target\" field"),
            "{}",
            errors[1]
        );
        assert!(
            errors[2].starts_with("entry is not a JSON object"),
            "{}",
            errors[2]
        );
        assert!(errors[3].contains("\"list\" is \"maybe\""), "{}", errors[3]);
        assert!(
            errors[4].contains("\"target\" must be a string"),
            "{}",
            errors[4]
        );
        assert!(
            errors[5].contains("\"reason\" must be a string or null"),
            "{}",
            errors[5]
        );
        assert!(errors[6].contains("host bits"), "{}", errors[6]);
        assert_eq!(parsed.invalid[2].text, "\"198.51.100.8\"");
        assert!(parsed.invalid[0].text.contains("\"colour\":\"red\""));
    }

    #[test]
    fn json_force_normalizes_the_target_in_the_object_too() {
        let input =
            br#"[{"target": "2001:db8::1/64", "reason": "r"}, {"target": "::ffff:192.0.2.1"}]"#;
        let parsed = parse(input, Format::Json, true);
        assert!(parsed.invalid.is_empty(), "{:?}", parsed.invalid);
        assert_eq!(
            entries(&parsed),
            vec![
                (1, "2001:db8::/64".to_string(), Some("r")),
                (2, "192.0.2.1".to_string(), None),
            ]
        );
        assert_eq!(parsed.json_entries[0]["target"], "2001:db8::/64");
        assert_eq!(parsed.json_entries[0]["reason"], "r");
        assert_eq!(parsed.json_entries[1]["target"], "192.0.2.1");
    }

    #[test]
    fn json_that_does_not_parse_is_one_invalid_line_where_it_breaks() {
        let input = b"\xEF\xBB\xBF[\n  {\"target\": \"192.0.2.1\"},\n  {\"target\": }\n]\n";
        let parsed = parse(input, Format::Json, false);
        assert!(parsed.entries.is_empty());
        assert_eq!(invalid_lines(&parsed), vec![3]);
        assert_eq!(parsed.invalid[0].text, "{\"target\": }");
        assert!(parsed.invalid[0].error.starts_with("not valid JSON"));

        let object = parse(br#"{"target": "192.0.2.1"}"#, Format::Json, false);
        assert_eq!(invalid_lines(&object), vec![1]);
        assert!(object.invalid[0].error.contains("not an array"));

        let empty = parse(b"[]", Format::Json, false);
        assert!(empty.entries.is_empty() && empty.invalid.is_empty());
    }

    #[test]
    fn detection() {
        assert_eq!(detect(b"198.51.100.7\n"), Format::Plain);
        assert_eq!(detect(b"# my list\n; notes\n198.51.100.7\n"), Format::Plain);
        assert_eq!(detect(b""), Format::Plain);
        assert_eq!(detect(b"# only a comment\n"), Format::Plain);
        assert_eq!(detect(SPAMHAUS), Format::Spamhaus);
        assert_eq!(detect(b"1.10.16.0/20 ; SBL256894\n"), Format::Spamhaus);
        assert_eq!(
            detect(b"\xEF\xBB\xBF\r\n; Spamhaus EDROP List\r\n"),
            Format::Spamhaus
        );
        assert_eq!(detect(SPAMHAUS_JSON), Format::SpamhausJson);
        assert_eq!(detect(FIREHOL), Format::Firehol);
        assert_eq!(detect(b"# FireHOL level1\n1.2.3.4\n"), Format::Firehol);
        assert_eq!(detect(JSON.as_bytes()), Format::Json);
        assert_eq!(
            detect(b"\xEF\xBB\xBF\n\n  [{\"target\":\"192.0.2.1\"}]"),
            Format::Json
        );
        assert_eq!(detect(b"198.51.100.7\n# FireHOL\n"), Format::Plain);
    }

    #[test]
    fn auto_parses_as_the_detected_format() {
        for (input, format) in [
            (SPAMHAUS, Format::Spamhaus),
            (SPAMHAUS_JSON, Format::SpamhausJson),
            (FIREHOL, Format::Firehol),
            (JSON.as_bytes(), Format::Json),
            (&b"198.51.100.7\n"[..], Format::Plain),
        ] {
            let auto = parse(input, Format::Auto, false);
            assert_eq!(auto.format, format);
            assert_eq!(auto, parse(input, format, false), "{format}");
        }
        let auto = parse(SPAMHAUS, Format::Auto, false);
        assert_eq!(auto.entries[0].reason.as_deref(), Some("SBL256894"));
    }

    #[test]
    fn format_names() {
        for format in Format::ALL {
            let name = format.to_string();
            assert_eq!(name.parse::<Format>(), Ok(format));
            let json = serde_json::to_string(&format).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<Format>(&json).unwrap(), format);
        }
        assert_eq!(Format::SpamhausJson.to_string(), "spamhaus-json");
        let err = "csv".parse::<Format>().unwrap_err();
        assert_eq!(
            err,
            UnknownFormat {
                name: "csv".to_string()
            }
        );
        assert!(err.to_string().contains("use one of auto, plain"));
        assert_eq!(Format::default(), Format::Auto);
    }

    #[test]
    fn a_million_lines_parse_quickly() {
        let lines: u32 = if cfg!(debug_assertions) {
            100_000
        } else {
            1_000_000
        };
        let mut input = Vec::with_capacity(lines as usize * 18);
        for i in 0..lines {
            let [_, b, c, d] = (0x0b00_0000 + i).to_be_bytes();
            if i % 2 == 0 {
                input.extend_from_slice(format!("11.{b}.{c}.{d}\n").as_bytes());
            } else {
                input.extend_from_slice(format!("11.{b}.{c}.{d}/32 # x\r\n").as_bytes());
            }
        }
        let start = std::time::Instant::now();
        let parsed = parse(&input, Format::Auto, false);
        let elapsed = start.elapsed();
        assert_eq!(parsed.entries.len(), lines as usize);
        assert!(parsed.invalid.is_empty());
        assert_eq!(parsed.entries.last().unwrap().line, lines as usize);
        if !cfg!(debug_assertions) {
            assert!(elapsed.as_millis() < 500, "{elapsed:?}");
        }
    }
}
