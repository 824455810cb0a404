//! Editing the draft: staging adds, changes and removals (each through the
//! guardrails), the diff, discarding, and rollback to an old revision.

use std::collections::HashSet;

use super::{Core, CoreError, MAX_TTL_SECS};
use crate::{
    model::{List, MANUAL, Sources, Target, Ttl, is_admin_source, now_ms, parse_duration},
    policy::{self, GuardContext},
    store::{Audit, Only, Op, Stage},
    wire::{
        AddRequest, Change, Counts, Diff, ModeRequest, Refusal, RemoveRequest, RollbackRequest,
        RollbackResponse, SeqResponse, StageItem, StageResponse, Staged,
    },
};

impl Core {
    /// Stages adds and changes; with `deploy`, deploys just these.
    pub fn add(&mut self, user: &str, req: AddRequest) -> Result<StageResponse, CoreError> {
        let ctx = self.host_probe().for_add(&req)?;
        self.add_checked(user, req, &ctx)
    }

    /// [`Core::add`] with the host already read, by `HostProbe::for_add`
    /// without the core.
    pub fn add_checked(
        &mut self,
        user: &str,
        req: AddRequest,
        ctx: &GuardContext,
    ) -> Result<StageResponse, CoreError> {
        if req.entries.is_empty() {
            return Err(CoreError::NoTargets);
        }
        let source = match req.source.as_deref() {
            None => MANUAL.to_string(),
            Some(s) if is_admin_source(s) && valid_source(s) => s.to_string(),
            Some(s) => {
                return Err(CoreError::BadAddSource {
                    source_name: s.to_string(),
                });
            }
        };
        let mut ops = Vec::with_capacity(req.entries.len());
        let mut refused = Vec::new();
        let mut warnings = Vec::new();
        for StageItem {
            target,
            list,
            reason,
            ttl,
            monitor,
        } in &req.entries
        {
            let t = parse_target(target, req.force)?;
            if *list == List::Allow && monitor.is_some() {
                return Err(CoreError::MonitorOnAllow);
            }
            let ttl = parse_ttl(ttl.as_deref())?;
            if !req.force {
                refused.extend(policy::check(&t, *list, ctx).into_iter().map(|r| (t, r)));
            }
            warnings.extend(self.warnings(&t, *list));
            ops.push(Stage::Upsert {
                target: t,
                list: *list,
                reason: reason.clone(),
                ttl,
                monitor: *monitor,
                source: Some(source.clone()),
                keep_longer_ttl: false,
            });
        }
        if req.dry_run {
            if req.deploy {
                return Err(CoreError::DryRunAndDeploy);
            }
            return self.preview_add(ops, warnings, refused);
        }
        if !refused.is_empty() {
            return Err(CoreError::Refused { refusals: refused });
        }
        let staging = Staging {
            sources: &Sources::Only(source),
            deploy: req.deploy,
            message: req.message.as_deref(),
            audit_as: &Audit::Each,
        };
        self.stage(user, ops, warnings, staging)
    }

    /// A dry run's answer: what staging the targets the guardrails let
    /// through would change, and the refusals of the others, with nothing
    /// staged or audited.
    fn preview_add(
        &mut self,
        mut ops: Vec<Stage>,
        warnings: Vec<String>,
        refused: Vec<(Target, policy::Refusal)>,
    ) -> Result<StageResponse, CoreError> {
        let refused_keys: HashSet<Target> = refused.iter().map(|(t, _)| *t).collect();
        ops.retain(|op| !refused_keys.contains(&op.key().0));
        let default_ttl = self.config.default_ttl.map(|d| d.as_secs());
        let left = self.store.stage_preview(&ops, now_ms(), default_ttl)?;
        Ok(StageResponse {
            seq: None,
            counts: counts_of(&left),
            targets: ops.iter().map(|op| op.key().0).collect(),
            warnings,
            refused: refused
                .into_iter()
                .map(|(target, r)| Refusal {
                    target,
                    reason: r.to_string(),
                })
                .collect(),
            deployed: None,
        })
    }

    /// Warnings that need no force: a deny entry an allow entry covers,
    /// and an entry covering existing ones. One pass over the installed
    /// entries keeps only those that matter to `policy::warnings`.
    fn warnings(&self, t: &Target, list: List) -> Vec<String> {
        policy::warnings(t, list, &self.filter.related(t, list))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Stages `ops` in one transaction; with `deploy`, deploys just the
    /// changes they left to the listings of `sources`.
    pub(super) fn stage(
        &mut self,
        user: &str,
        ops: Vec<Stage>,
        warnings: Vec<String>,
        how: Staging<'_>,
    ) -> Result<StageResponse, CoreError> {
        let Staging {
            sources,
            deploy,
            message,
            audit_as,
        } = how;
        let default_ttl = self.config.default_ttl.map(|d| d.as_secs());
        let (seq, left) = self
            .store
            .stage(&ops, user, now_ms(), default_ttl, audit_as)?;
        let keys: Vec<(Target, List)> = ops.iter().map(Stage::key).collect();
        let counts = counts_of(&left);
        let deployed = if deploy {
            let only: Vec<(Target, List)> = keys
                .iter()
                .zip(&left)
                .filter(|(_, op)| op.is_some())
                .map(|(k, _)| *k)
                .collect();
            let only = Only {
                keys: &only,
                sources,
            };
            Some(self.deploy_as(user, Some(only), message, false, "deploy")?)
        } else {
            None
        };
        Ok(StageResponse {
            seq: Some(seq),
            counts,
            targets: keys.iter().map(|(t, _)| *t).collect(),
            warnings,
            refused: Vec::new(),
            deployed,
        })
    }

    pub fn remove(&mut self, user: &str, req: RemoveRequest) -> Result<StageResponse, CoreError> {
        if req.targets.is_empty() {
            return Err(CoreError::NoTargets);
        }
        let sources = match &req.source {
            Some(s) => Sources::Only(s.clone()),
            None => Sources::Admin,
        };
        let ops = req
            .targets
            .iter()
            .map(|&target| Stage::Remove {
                target,
                list: req.list,
                sources: sources.clone(),
            })
            .collect();
        let staging = Staging {
            sources: &sources,
            deploy: req.deploy,
            message: req.message.as_deref(),
            audit_as: &Audit::Each,
        };
        let mut staged = self.stage(user, ops, Vec::new(), staging)?;
        // Other sources may still list what was removed: say which, and
        // how to override them all.
        let now = now_ms();
        for &target in &req.targets {
            if let Some(e) = self.store.draft_entry(target, req.list, now)? {
                let verb = if e.sources.len() == 1 {
                    "lists"
                } else {
                    "list"
                };
                staged.warnings.push(format!(
                    "{target} stays on the {} list: {} still {verb} it; remove those with --source, \
                     or add an allow entry, which overrides every source (denylist allow add {target})",
                    req.list.as_str(),
                    e.sources.join(", "),
                ));
            }
        }
        Ok(staged)
    }

    /// Enforce or monitor: only existing deny entries.
    pub fn mode(&mut self, user: &str, req: ModeRequest) -> Result<StageResponse, CoreError> {
        let draft: HashSet<(Target, List)> = self
            .store
            .draft(now_ms())?
            .iter()
            .map(|e| (e.target, e.list))
            .collect();
        let mut ops = Vec::new();
        for &target in &req.targets {
            if !draft.contains(&(target, List::Deny)) {
                return Err(CoreError::NotOnDenyList { target });
            }
            ops.push(Stage::Upsert {
                target,
                list: List::Deny,
                reason: None,
                ttl: None,
                monitor: Some(req.monitor),
                source: None,
                keep_longer_ttl: false,
            });
        }
        if ops.is_empty() {
            return Err(CoreError::NoTargets);
        }
        let staging = Staging {
            sources: &Sources::All,
            deploy: req.deploy,
            message: req.message.as_deref(),
            audit_as: &Audit::Each,
        };
        self.stage(user, ops, Vec::new(), staging)
    }

    pub fn diff(&self) -> Result<Diff, CoreError> {
        let mut d = Diff {
            added: Vec::new(),
            removed: Vec::new(),
            changed: Vec::new(),
            draft_seq: self.store.draft_seq()?,
        };
        for p in self.store.pending()? {
            let (by, at) = (p.staged_by, p.staged_at);
            match (p.op, p.before, p.after) {
                (Op::Add, _, Some(after)) => d.added.push(Staged {
                    item: after,
                    staged_by: by,
                    staged_at: at,
                }),
                (Op::Remove, Some(before), _) => d.removed.push(Staged {
                    item: before.entry,
                    staged_by: by,
                    staged_at: at,
                }),
                (Op::Change, Some(before), Some(after)) => d.changed.push(Staged {
                    item: Change {
                        before: before.entry,
                        after,
                    },
                    staged_by: by,
                    staged_at: at,
                }),
                (op, _, _) => {
                    return Err(crate::store::StoreError::MissingEntry { op: op.as_str() }.into());
                }
            }
        }
        Ok(d)
    }

    pub fn discard(&mut self, user: &str) -> Result<SeqResponse, CoreError> {
        let (seq, n) = self.store.discard(user, now_ms())?;
        Ok(SeqResponse {
            seq,
            detail: Some(serde_json::json!({ "discarded": n })),
        })
    }

    pub fn rollback(
        &mut self,
        user: &str,
        req: RollbackRequest,
    ) -> Result<RollbackResponse, CoreError> {
        let (seq, expired) = self
            .store
            .rollback(req.revision, req.force, user, now_ms())?;
        tracing::info!(
            to_revision = req.revision,
            left_out_expired = expired.len(),
            user,
            "rollback staged"
        );
        let deployed = if req.deploy {
            let msg = req
                .message
                .clone()
                .unwrap_or_else(|| format!("rollback to {}", req.revision));
            Some(self.deploy_as(user, None, Some(&msg), false, "rollback")?)
        } else {
            None
        };
        Ok(RollbackResponse {
            seq,
            expired: expired.iter().map(|e| e.target).collect(),
            deployed,
        })
    }
}

/// How a staging call is recorded and whether it deploys.
#[derive(Clone, Copy)]
pub(super) struct Staging<'a> {
    /// Whose listings a deploy of the staged changes ships.
    pub sources: &'a Sources,
    pub deploy: bool,
    pub message: Option<&'a str>,
    pub audit_as: &'a Audit,
}

/// A source name as listings carry it: no spaces, nothing empty after the
/// kind.
pub(super) fn valid_source(s: &str) -> bool {
    let name = s.split_once(':').map_or(s, |(_, n)| n);
    !name.is_empty() && name.len() <= 64 && !s.contains(char::is_whitespace)
}

/// The changes a stage left, by kind.
fn counts_of(left: &[Option<Op>]) -> Counts {
    let mut counts = Counts::default();
    for op in left.iter().flatten() {
        match op {
            Op::Add => counts.added += 1,
            Op::Change => counts.changed += 1,
            Op::Remove => counts.removed += 1,
        }
    }
    counts
}

pub(super) fn parse_target(s: &str, force: bool) -> Result<Target, CoreError> {
    Ok(if force {
        Target::parse_forced(s)?
    } else {
        Target::parse(s)?
    })
}

/// A TTL as the API takes it: `never` or a duration; `None` when absent.
pub(super) fn parse_ttl(ttl: Option<&str>) -> Result<Option<Ttl>, CoreError> {
    match ttl {
        None => Ok(None),
        Some("never") => Ok(Some(Ttl::Never)),
        Some(d) => Ok(Some(Ttl::Secs(check_ttl(parse_duration(d)?.as_secs())?))),
    }
}

pub(super) fn check_ttl(secs: u64) -> Result<u64, CoreError> {
    if secs == 0 {
        return Err(CoreError::TtlZero);
    }
    if secs > MAX_TTL_SECS {
        return Err(CoreError::TtlTooLong);
    }
    Ok(secs)
}
