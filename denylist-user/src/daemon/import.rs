//! Bulk staging from a file: parsed by the policy layer's parsers, checked
//! line by line against the guardrails, then staged all or nothing.

use std::{collections::HashMap, time::Instant};

use super::{
    Core, CoreError, GuardedLine,
    deploy::{BULK_BYTES, release_heap},
    edit::{Staging, check_ttl, parse_ttl, valid_source},
};
use crate::{
    model::{Entry, Format, List, Listing, Millis, Sources, Target, now_ms},
    policy::{self, GuardContext, import},
    store::{Audit, Stage},
    wire::{ImportParams, ImportResponse},
};

impl Core {
    /// Bulk staging from a file, all or nothing (one transaction).
    pub fn import(
        &mut self,
        user: &str,
        p: ImportParams,
        body: &[u8],
    ) -> Result<ImportResponse, CoreError> {
        let ctx = self.host_probe().for_import(&p)?;
        self.import_checked(user, p, body, &ctx)
    }

    /// [`Core::import`] with the host already read, by
    /// `HostProbe::for_import` without the core.
    pub fn import_checked(
        &mut self,
        user: &str,
        p: ImportParams,
        body: &[u8],
        ctx: &GuardContext,
    ) -> Result<ImportResponse, CoreError> {
        let result = self.import_inner(user, p, body, ctx);
        if body.len() > BULK_BYTES {
            release_heap();
        }
        result
    }

    fn import_inner(
        &mut self,
        user: &str,
        p: ImportParams,
        body: &[u8],
        ctx: &GuardContext,
    ) -> Result<ImportResponse, CoreError> {
        if p.force && p.skip_guarded {
            return Err(CoreError::ForceAndSkipGuarded);
        }
        let parse_start = Instant::now();
        let mut parsed = import::parse(body, p.format, p.force);
        if parsed.format == Format::Json && p.list.is_some() {
            return Err(CoreError::ListWithJson);
        }
        let now = now_ms();
        // Our own export carries whole entries; fields it leaves out get
        // the values a new entry would get. A bad one is an invalid line.
        let mut restored: Vec<Option<Entry>> = Vec::with_capacity(parsed.json_entries.len());
        for (i, v) in parsed.json_entries.iter().enumerate() {
            let read = serde_json::from_value::<ImportedEntry>(v.clone())
                .map_err(|e| e.to_string())
                .and_then(|e| e.into_entry(user, now).map_err(|e| e.to_string()));
            match read {
                Ok(e) => restored.push(Some(e)),
                Err(e) => {
                    restored.push(None);
                    let text: String = v.to_string().chars().take(200).collect();
                    parsed.invalid.push(import::Invalid {
                        line: parsed.entries[i].line,
                        text,
                        error: e,
                    });
                }
            }
        }
        parsed.invalid.sort_by_key(|i| i.line);
        if !parsed.invalid.is_empty() && !p.skip_invalid {
            return Err(CoreError::InvalidLines {
                lines: parsed.invalid,
            });
        }
        let source_name = p.source.clone().unwrap_or_else(|| "stdin".into());
        if source_name.is_empty() || source_name.contains(char::is_whitespace) {
            return Err(CoreError::BadSource { name: source_name });
        }
        let source = format!("import:{source_name}");
        let ttl = parse_ttl(p.ttl.as_deref())?;
        let list = p.list.unwrap_or(List::Deny);
        let mut ops: Vec<Stage> = Vec::with_capacity(parsed.entries.len());
        let mut index: HashMap<(Target, List), usize> =
            HashMap::with_capacity(parsed.entries.len());
        let mut guarded = Vec::new();
        for (i, line) in parsed.entries.iter().enumerate() {
            let op = if parsed.format == Format::Json {
                let Some(mut e) = restored[i].take() else {
                    continue;
                };
                if let Some(r) = &p.reason {
                    e.reason = Some(r.clone());
                }
                if let Some(t) = ttl {
                    e.ttl = t.secs();
                }
                e.expires_at = None;
                Stage::Restore(e)
            } else {
                Stage::Upsert {
                    target: line.target,
                    list,
                    reason: p.reason.clone().or_else(|| line.reason.clone()),
                    ttl,
                    monitor: None,
                    source: Some(source.clone()),
                    keep_longer_ttl: true,
                }
            };
            let key = op.key();
            if !p.force
                && let Some(refusal) = policy::check(&key.0, key.1, ctx).into_iter().next()
            {
                guarded.push(GuardedLine {
                    line: line.line,
                    target: key.0,
                    refusal,
                });
                continue;
            }
            // Duplicates within the file merge: the later line's fields win.
            match index.get(&key) {
                Some(&at) => ops[at] = op,
                None => {
                    index.insert(key, ops.len());
                    ops.push(op);
                }
            }
        }
        if !guarded.is_empty() && !p.skip_guarded {
            return Err(CoreError::GuardedLines { lines: guarded });
        }
        if p.replace {
            for (target, list) in self.store.draft_keys_from(&source, now_ms())? {
                if !index.contains_key(&(target, list)) {
                    ops.push(Stage::Remove {
                        target,
                        list,
                        sources: Sources::Only(source.clone()),
                    });
                }
            }
        }
        let entries = index.len() as u64;
        let detail = serde_json::json!({
            "source": source, "format": parsed.format, "entries": entries, "replace": p.replace,
            "skipped_invalid": parsed.invalid.len(), "skipped_guarded": guarded.len(),
        });
        let parse_ms = parse_start.elapsed().as_millis() as u64;
        let stage_start = Instant::now();
        let audit_as = Audit::Summary {
            kind: "import".into(),
            detail,
        };
        // Our own export restores whole entries, whoever listed them.
        let sources = if parsed.format == Format::Json {
            Sources::All
        } else {
            Sources::Only(source.clone())
        };
        let staging = Staging {
            sources: &sources,
            deploy: p.deploy,
            message: None,
            audit_as: &audit_as,
        };
        let staged = self.stage(user, ops, Vec::new(), staging)?;
        Ok(ImportResponse {
            seq: staged.seq.unwrap_or_default(),
            format: parsed.format,
            source: source_name,
            entries,
            counts: staged.counts,
            skipped_invalid: parsed.invalid.len() as u64,
            parse_ms,
            stage_ms: stage_start.elapsed().as_millis() as u64,
            skipped_guarded: guarded.iter().map(|g| g.target).collect(),
            deployed: staged.deployed,
        })
    }
}

/// An entry of our JSON export, as an import reads it: every field but
/// the target may be left out.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportedEntry {
    target: Target,
    #[serde(default)]
    list: Option<List>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    ttl: Option<u64>,
    /// Ignored: the expiry is set again by the deploy, from the TTL.
    #[serde(default, rename = "expires_at")]
    _expires_at: Option<serde_json::Value>,
    #[serde(default)]
    monitor: Option<bool>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    added_by: Option<String>,
    #[serde(default, with = "crate::model::time_ms::opt")]
    added_at: Option<Millis>,
    /// Shown by the export, and made again from `listings`.
    #[serde(default, rename = "sources")]
    _sources: Option<serde_json::Value>,
    /// An export since listings: each source's listing (an older export
    /// has none, and its fields are then its one listing).
    #[serde(default)]
    listings: Option<Vec<Listing>>,
}

impl ImportedEntry {
    fn into_entry(self, user: &str, now: Millis) -> Result<Entry, CoreError> {
        if let Some(t) = self.ttl {
            check_ttl(t)?;
        }
        let list = self.list.unwrap_or(List::Deny);
        if let Some(listings) = self.listings.filter(|l| !l.is_empty()) {
            for l in &listings {
                if let Some(t) = l.ttl {
                    check_ttl(t)?;
                }
                if !valid_source(&l.source) {
                    return Err(CoreError::BadSource {
                        name: l.source.clone(),
                    });
                }
            }
            let listings = listings
                .into_iter()
                .map(|l| Listing {
                    expires_at: None,
                    ..l
                })
                .collect();
            return Entry::from_listings(self.target, list, listings).ok_or(CoreError::NoTargets);
        }
        Ok(Entry {
            target: self.target,
            list,
            reason: self.reason,
            ttl: self.ttl,
            expires_at: None,
            monitor: self.monitor.unwrap_or(false) && list == List::Deny,
            source: self.source.unwrap_or_else(|| "manual".into()),
            added_by: self.added_by.unwrap_or_else(|| user.to_string()),
            added_at: self.added_at.unwrap_or(now),
            sources: Vec::new(),
            listings: Vec::new(),
        }
        .normalized())
    }
}
