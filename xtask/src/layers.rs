//! The layer check of `cargo xtask test`: each folder under
//! denylist-user/src is a layer, and a file in a layer may name
//! `crate::LAYER` only for its own layer and the layers below it.
//! docs/architecture.md explains the layers and the rule.
//!
//! The check reads the sources as text: it finds every `crate::` path
//! outside comments, in `use` declarations (grouped ones included, however
//! they nest and whatever lines they span), in code and in strings (such as
//! `#[serde(with = "crate::model::time_ms")]`), and takes the path's first
//! segment as the layer it names. `super::` paths are not checked.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

use crate::host;

/// The layers, each with the layers it may use besides itself. The arrows
/// point down: cli -> wire -> model; web -> wire -> model; server ->
/// daemon -> {policy, store, dataplane} -> model. lib.rs and the binaries in src/bin are exempt. This
/// table and docs/architecture.md change together.
const LAYERS: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("wire", &["model"]),
    ("policy", &["model"]),
    ("store", &["model"]),
    ("dataplane", &["model"]),
    ("daemon", &["model", "wire", "policy", "store", "dataplane"]),
    ("server", &["model", "wire", "daemon"]),
    ("cli", &["model", "wire"]),
    // The console is a client of the daemon's API, as the CLI is.
    ("web", &["model", "wire"]),
];

/// The folder whose files are checked, relative to the workspace root.
const SOURCES: &str = "denylist-user/src";

/// Checks every file under denylist-user/src, prints each violation as
/// `path:line: ...` and fails if there is any.
pub fn check() -> anyhow::Result<()> {
    let root = host::workspace_root();
    let src = root.join(SOURCES);
    let mut files = Vec::new();
    rust_files(&src, &mut files)?;
    let mut violations = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file)
            .with_context(|| format!("cannot read {}: check that it is UTF-8", file.display()))?;
        let shown = file
            .strip_prefix(root)
            .unwrap_or(file)
            .display()
            .to_string();
        let relative = file.strip_prefix(&src).unwrap_or(file);
        violations.extend(file_violations(&shown, relative, &text));
    }
    if violations.is_empty() {
        println!(
            "layers: {} files under {SOURCES} use only the layers they may",
            files.len()
        );
        return Ok(());
    }
    for violation in &violations {
        println!("{violation}");
    }
    bail!(
        "{} violation(s) of the layer rule, listed above",
        violations.len()
    )
}

/// The violations in one file, whose path is `relative` to src/; each
/// line names the file as `shown`.
fn file_violations(shown: &str, relative: &Path, text: &str) -> Vec<String> {
    let Some(layer) = layer_of(relative) else {
        return Vec::new();
    };
    let Some(allowed) = allowed(layer) else {
        return vec![format!(
            "{shown}: `{layer}/` is not a layer (layers: {})",
            names().join(", ")
        )];
    };
    let allowed_list = if allowed.is_empty() {
        "none".to_owned()
    } else {
        allowed.join(", ")
    };
    crate_paths(text)
        .into_iter()
        .filter(|found| found.segment != layer && !allowed.contains(&found.segment.as_str()))
        .map(|found| {
            format!(
                "{shown}:{}: layer {layer} uses crate::{} (allowed: {allowed_list})",
                found.line, found.segment
            )
        })
        .collect()
}

/// The layers in the table's order.
fn names() -> Vec<&'static str> {
    LAYERS.iter().map(|(name, _)| *name).collect()
}

/// What `layer` may use besides itself; `None` if it is not a layer.
fn allowed(layer: &str) -> Option<&'static [&'static str]> {
    LAYERS
        .iter()
        .find(|(name, _)| *name == layer)
        .map(|(_, uses)| *uses)
}

/// The layer of a file, from its path relative to src/: the first folder,
/// or for a file directly in src/ named after a layer (`store.rs`, a module
/// root beside its folder), that layer. `None` for the files the rule
/// exempts: the rest of src/ (lib.rs) and everything under src/bin.
fn layer_of(relative: &Path) -> Option<&str> {
    let mut parts = relative.iter();
    let first = parts.next()?.to_str()?;
    if parts.next().is_some() {
        return (first != "bin").then_some(first);
    }
    let stem = first.strip_suffix(".rs")?;
    allowed(stem).map(|_| stem)
}

/// Every `.rs` file under `dir`, in a stable order.
fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries = fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("cannot list {}", dir.display()))?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, files)?;
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    Ok(())
}

/// One `crate::` path: the first segment after `crate::` and its line.
#[derive(Debug, PartialEq, Eq)]
struct CratePath {
    line: usize,
    segment: String,
}

/// The first segments of every `crate::` path in `source`, outside
/// comments. In a group (`crate::{model::{A, B}, wire::C}`) each item gives
/// its own first segment; `self`, `*` and names that are not layers are
/// returned as they are, for the caller to refuse.
fn crate_paths(source: &str) -> Vec<CratePath> {
    let code = without_comments(source);
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(start) = find_keyword(&code, at) {
        at = start + "crate".len();
        let mut cursor = Cursor { code: &code, at };
        cursor.skip_space();
        if !cursor.eat("::") {
            continue;
        }
        cursor.skip_space();
        cursor.tree(&mut found);
        at = at.max(cursor.at.min(code.len()));
    }
    found.dedup();
    found
}

/// The offset of the next `crate` in `code`, from `from` on, that is a
/// whole word.
fn find_keyword(code: &str, mut from: usize) -> Option<usize> {
    while let Some(offset) = code[from..].find("crate") {
        let start = from + offset;
        let end = start + "crate".len();
        let before = code[..start].chars().next_back();
        let after = code[end..].chars().next();
        if !before.is_some_and(is_ident) && !after.is_some_and(is_ident) {
            return Some(start);
        }
        from = end;
    }
    None
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// A position in comment-free code, for reading what follows `crate::`.
struct Cursor<'a> {
    code: &'a str,
    at: usize,
}

impl Cursor<'_> {
    fn rest(&self) -> &str {
        &self.code[self.at..]
    }

    fn line(&self) -> usize {
        self.code[..self.at].matches('\n').count() + 1
    }

    fn skip_space(&mut self) {
        let rest = self.rest();
        self.at += rest.len() - rest.trim_start().len();
    }

    fn eat(&mut self, token: &str) -> bool {
        if self.rest().starts_with(token) {
            self.at += token.len();
            true
        } else {
            false
        }
    }

    /// Reads a use tree after `crate::` and records its first segments: a
    /// name (`model`, `self`, `r#type`) or `*`, or a group of trees.
    fn tree(&mut self, found: &mut Vec<CratePath>) {
        if self.eat("{") {
            self.group(found);
            return;
        }
        let line = self.line();
        let rest = self.rest();
        let len = if rest.starts_with('*') {
            1
        } else {
            let raw = if rest.starts_with("r#") { 2 } else { 0 };
            raw + rest[raw..]
                .find(|c: char| !is_ident(c))
                .unwrap_or(rest.len() - raw)
        };
        if len == 0 {
            return;
        }
        found.push(CratePath {
            line,
            segment: rest[..len].to_owned(),
        });
        self.at += len;
    }

    /// Reads the items of a group up to its closing `}`: each item's first
    /// segments are recorded, the rest of the item (`::{A, B}`, `as x`) is
    /// skipped.
    fn group(&mut self, found: &mut Vec<CratePath>) {
        loop {
            self.skip_space();
            if self.rest().is_empty() || self.eat("}") {
                return;
            }
            if self.eat(",") {
                continue;
            }
            let before = self.at;
            self.tree(found);
            self.skip_item();
            if self.at == before {
                // Nothing this reader understands: step over it.
                self.at += self.rest().chars().next().map_or(0, char::len_utf8);
            }
        }
    }

    /// Skips to the `,` or `}` that ends the current group item, over any
    /// nested groups.
    fn skip_item(&mut self) {
        let mut depth = 0_usize;
        for (offset, c) in self.rest().char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    self.at += offset;
                    return;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    self.at += offset;
                    return;
                }
                _ => {}
            }
        }
        self.at = self.code.len();
    }
}

/// `source` with every comment (`//`, `///`, `//!`, `/* */`, nested or not)
/// replaced by spaces, newlines kept so that lines still count. String and
/// character literals are kept, so a `//` inside a string is not a comment
/// and a `crate::` path inside a string is still seen.
fn without_comments(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let prev_ident = i > 0 && is_ident(chars[i - 1]);
        match (c, next) {
            ('/', Some('/')) => {
                while i < chars.len() && chars[i] != '\n' {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
            ('/', Some('*')) => {
                let mut depth = 0_usize;
                while i < chars.len() {
                    if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                        depth += 1;
                        out.push_str("  ");
                        i += 2;
                    } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        out.push_str("  ");
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        blank(&mut out, chars[i]);
                        i += 1;
                    }
                }
            }
            ('"', _) => i = copy_string(&chars, i, 0, &mut out),
            // A raw string: r"..", r#".."#, and with b or c before the r.
            ('r', Some('"' | '#'))
                if !prev_ident
                    || ("bc".contains(chars[i - 1]) && (i == 1 || !is_ident(chars[i - 2]))) =>
            {
                let hashes = chars[i + 1..].iter().take_while(|&&c| c == '#').count();
                if chars.get(i + 1 + hashes) == Some(&'"') {
                    out.push('r');
                    out.extend(std::iter::repeat_n('#', hashes));
                    i = copy_string(&chars, i + 1 + hashes, hashes, &mut out);
                } else {
                    // A raw identifier, r#name.
                    out.push(c);
                    i += 1;
                }
            }
            // A character literal: '\'', '\u{1F600}', '"'. Anything else
            // after a quote is a lifetime or a label.
            ('\'', Some('\\')) => {
                out.push(c);
                i += 1;
                let mut escaped = false;
                while i < chars.len() {
                    let d = chars[i];
                    out.push(d);
                    i += 1;
                    if escaped {
                        escaped = false;
                    } else if d == '\\' {
                        escaped = true;
                    } else if d == '\'' {
                        break;
                    }
                }
            }
            ('\'', Some(d)) if chars.get(i + 2) == Some(&'\'') => {
                out.push(c);
                out.push(d);
                out.push('\'');
                i += 3;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Copies the string literal whose opening `"` is at `start` into `out`,
/// up to its closing `"` and `hashes` `#`s (a raw string has no escapes);
/// returns the index after it.
fn copy_string(chars: &[char], start: usize, hashes: usize, out: &mut String) -> usize {
    out.push('"');
    let mut i = start + 1;
    while i < chars.len() {
        let c = chars[i];
        out.push(c);
        i += 1;
        if c == '\\' && hashes == 0 {
            if let Some(&escaped) = chars.get(i) {
                out.push(escaped);
                i += 1;
            }
        } else if c == '"' && chars[i..].iter().take_while(|&&c| c == '#').count() >= hashes {
            out.extend(std::iter::repeat_n('#', hashes));
            return i + hashes;
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `LINE:SEGMENT` for every `crate::` path in `source`.
    fn paths(source: &str) -> Vec<String> {
        crate_paths(source)
            .iter()
            .map(|path| format!("{}:{}", path.line, path.segment))
            .collect()
    }

    #[test]
    fn single_use() {
        assert_eq!(paths("use crate::model::Target;"), ["1:model"]);
    }

    #[test]
    fn nested_groups_name_each_top_level_item() {
        assert_eq!(
            paths("use crate::{model::{Target, List}, wire::ApiError};"),
            ["1:model", "1:wire"]
        );
        assert_eq!(
            paths("use crate::{model::{self, a::{b, c}}, {wire::X, store}};"),
            ["1:model", "1:wire", "1:store"]
        );
    }

    #[test]
    fn multi_line_use_reports_the_line_of_each_item() {
        let source = "//! Docs.\n\nuse crate::{\n    model::{\n        Target,\n        List,\n    },\n    \
                      wire::{ApiError, Class},\n    daemon::Core as C,\n};\n";
        assert_eq!(paths(source), ["4:model", "8:wire", "9:daemon"]);
    }

    #[test]
    fn self_in_a_group_belongs_to_the_item_it_is_in() {
        assert_eq!(
            paths("use crate::model::{self as verdict, Rule};"),
            ["1:model"]
        );
        // At the top, `self` is the crate root, which is no layer.
        assert_eq!(paths("use crate::{self, model};"), ["1:self", "1:model"]);
    }

    #[test]
    fn inline_paths_in_code_attributes_and_strings() {
        let source = "fn f() {\n    let p = dir.join(crate::store::DB_FILE);\n}\n\
                      #[serde(with = \"crate::model::time_ms\")]\nx: crate::dataplane::layout::Needs,\n";
        assert_eq!(paths(source), ["2:store", "4:model", "5:dataplane"]);
    }

    #[test]
    fn comments_are_ignored() {
        let source = "// crate::daemon::Core\n/// see [`crate::server::X`]\n//! crate::store\n\
                      /* crate::cli /* nested crate::wire */ crate::policy */\nuse crate::model::A; \
                      // crate::daemon\n";
        assert_eq!(paths(source), ["5:model"]);
    }

    #[test]
    fn strings_are_not_comments() {
        let source = "let url = \"http://x\"; let p = crate::model::A;\n\
                      let r = r#\"a \"// quoted\" b\"#; use crate::wire::B;\n\
                      let c = '\"'; let d = '\\''; fn f<'a>(x: &'a str) -> crate::store::S {}\n";
        assert_eq!(paths(source), ["1:model", "2:wire", "3:store"]);
    }

    #[test]
    fn super_self_and_other_crates_are_not_crate_paths() {
        let source = "use super::model::A;\nuse self::b::C;\npub(crate) fn f() {}\n\
                      pub(crate) use super::x;\nextern crate alloc;\nuse mycrate::daemon::D;\n\
                      use denylist_crate::server;\n";
        assert!(crate_paths(source).is_empty());
    }

    #[test]
    fn macro_crate_paths_count() {
        assert_eq!(paths("$crate::wire::request(x)"), ["1:wire"]);
    }

    #[test]
    fn glob_and_unknown_segments_are_returned() {
        assert_eq!(
            paths("use crate::*;\nuse crate::target::Target;\n"),
            ["1:*", "2:target"]
        );
    }

    #[test]
    fn spacing_around_the_path_does_not_matter() {
        assert_eq!(
            paths("use crate :: { model :: A ,\n wire };"),
            ["1:model", "2:wire"]
        );
    }

    #[test]
    fn the_same_segment_twice_on_one_line_is_reported_once() {
        assert_eq!(
            crate_paths("f(crate::store::a(), crate::store::b());").len(),
            1
        );
    }

    #[test]
    fn violations_name_the_file_line_and_layers() {
        let text = "use crate::{model::A, wire::B, daemon::C};\nuse crate::cli::D;\n\
                    fn f() -> crate::target::T {}\n";
        assert_eq!(
            file_violations("src/cli/x.rs", Path::new("cli/x.rs"), text),
            [
                "src/cli/x.rs:1: layer cli uses crate::daemon (allowed: model, wire)",
                "src/cli/x.rs:3: layer cli uses crate::target (allowed: model, wire)",
            ]
        );
        assert_eq!(
            file_violations("m.rs", Path::new("model/m.rs"), "use crate::wire::X;"),
            ["m.rs:1: layer model uses crate::wire (allowed: none)"]
        );
        assert!(file_violations("lib.rs", Path::new("lib.rs"), "use crate::x::Y;").is_empty());
        assert!(file_violations("d.rs", Path::new("bin/d.rs"), "use crate::x::Y;").is_empty());
        assert_eq!(
            file_violations("s/api/a.rs", Path::new("api/a.rs"), ""),
            [
                "s/api/a.rs: `api/` is not a layer (layers: model, wire, policy, store, \
                 dataplane, daemon, server, cli, web)"
            ]
        );
    }

    #[test]
    fn layer_of_a_file() {
        assert_eq!(layer_of(Path::new("model/target.rs")), Some("model"));
        assert_eq!(layer_of(Path::new("daemon/mod.rs")), Some("daemon"));
        assert_eq!(layer_of(Path::new("store.rs")), Some("store"));
        assert_eq!(layer_of(Path::new("unknown/x.rs")), Some("unknown"));
        assert_eq!(layer_of(Path::new("lib.rs")), None);
        assert_eq!(layer_of(Path::new("bin/denylistd.rs")), None);
        assert_eq!(layer_of(Path::new("bin/x/main.rs")), None);
        assert_eq!(allowed("unknown"), None);
    }

    #[test]
    fn the_table_names_only_layers_and_never_a_layer_itself() {
        for (layer, uses) in LAYERS {
            for used in *uses {
                assert!(allowed(used).is_some(), "{layer} uses unknown {used}");
                assert_ne!(layer, used);
            }
        }
    }
}
