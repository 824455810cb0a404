//! The fleet's log entries: every change to the shared state, as the
//! [`Store`] call that made it.
//!
//! A node appends a command to the log in PostgreSQL and applies it to its
//! own SQLite store; every other node applies the same commands in the
//! same order. The SQLite store is deterministic in its inputs (the caller
//! passes the time), so the nodes' stores agree on entries, revisions and
//! audit sequence numbers, which `expect_seq` and rollbacks rely on. Entry
//! ids are the exception: each node reserves its own, since they name
//! kernel map slots and hit counters and never leave the node.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::{
    model::{
        AutoPolicy, FeedSettings, FeedState, List, Millis, Report, Revision, Sources, Stored,
        Target,
    },
    store::{
        Audit, DeployRecord, HeldList, Only, Op, Plan, Pruned, ReportTally, Stage, Store,
        StoreError,
        sqlite::{KeptDraft, SqliteStore},
    },
};

/// One change to the shared state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    Stage {
        ops: Vec<Stage>,
        user: String,
        now: Millis,
        default_ttl: Option<u64>,
        audit: Audit,
    },
    Discard {
        user: String,
        now: Millis,
    },
    /// A deploy: the plan of the pending changes (those of `only`, when
    /// given) at `now`, written as the record says.
    Deploy {
        only: Option<(Vec<(Target, List)>, Sources)>,
        now: Millis,
        user: String,
        message: Option<String>,
        kind: String,
    },
    Rollback {
        rev: u64,
        force: bool,
        user: String,
        now: Millis,
    },
    /// The expiry sweep at `now`: every listing expired by then.
    Expire {
        now: Millis,
    },
    Record {
        user: String,
        kind: String,
        target: Option<String>,
        detail: Option<serde_json::Value>,
        now: Millis,
    },
    Prune {
        cutoff: Millis,
        user: String,
        now: Millis,
    },
    AddFeed {
        name: String,
        settings: FeedSettings,
        redacted_url: String,
        state: FeedState,
        now: Millis,
    },
    SetFeedState {
        name: String,
        state: FeedState,
        held: Held,
    },
    RemoveFeed {
        name: String,
        user: String,
        now: Millis,
    },
    Report {
        report: Report,
        since: Millis,
    },
    Offence {
        ip: IpAddr,
        now: Millis,
    },
    SetAutoPolicy {
        policy: AutoPolicy,
        user: String,
        action: String,
        now: Millis,
    },
}

/// [`Command::Stage`] as its JSON reads, for [`Command::from_json`].
#[derive(Deserialize)]
struct StageEntry {
    #[serde(rename = "command")]
    _tag: StageTag,
    ops: Vec<Stage>,
    user: String,
    now: Millis,
    default_ttl: Option<u64>,
    audit: Audit,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum StageTag {
    Stage,
}

/// [`HeldList`], owned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Held {
    Keep,
    Clear,
    Set(Vec<Target>),
}

impl From<HeldList<'_>> for Held {
    fn from(h: HeldList<'_>) -> Self {
        match h {
            HeldList::Keep => Held::Keep,
            HeldList::Clear => Held::Clear,
            HeldList::Set(list) => Held::Set(list.to_vec()),
        }
    }
}

/// What applying a command returned: the result of the [`Store`] call it
/// stands for.
#[derive(Debug, Clone)]
pub enum Applied {
    /// The audit sequence number, or the count the call returns.
    Seq(u64),
    Staged(u64, Vec<Option<Op>>),
    Discarded(u64, usize),
    /// The revision and audit seq, and the plan as this node carried it
    /// out (its own entry ids), for its kernel.
    Deployed(Revision, u64, Plan),
    /// The listings the sweep at this time found expired, under this
    /// node's ids.
    Expired(u64, Vec<Stored>, Millis),
    RolledBack(u64, Vec<crate::model::Entry>),
    Pruned(Option<(u64, Pruned)>),
    Tally(ReportTally),
    Offences(u32),
    Done,
}

impl Command {
    /// Reads a command from its JSON. A stage is read straight into its
    /// fields first: serde reads an internally tagged enum into a buffer
    /// of its own (its `Content`) before it reads the variant, and for a
    /// million-entry import that takes most of the time every follower
    /// spends reading the entry (1.15 s against 0.61 s, on one core of
    /// the bench machine). The tag comes first, so any other command fails
    /// that try at once.
    pub fn from_json(json: &[u8]) -> serde_json::Result<Command> {
        match serde_json::from_slice::<StageEntry>(json) {
            Ok(StageEntry {
                ops,
                user,
                now,
                default_ttl,
                audit,
                ..
            }) => Ok(Command::Stage {
                ops,
                user,
                now,
                default_ttl,
                audit,
            }),
            Err(_) => serde_json::from_slice(json),
        }
    }

    /// A short name for logs and the log table's `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Stage { .. } => "stage",
            Command::Discard { .. } => "discard",
            Command::Deploy { .. } => "deploy",
            Command::Rollback { .. } => "rollback",
            Command::Expire { .. } => "expire",
            Command::Record { .. } => "record",
            Command::Prune { .. } => "prune",
            Command::AddFeed { .. } => "feed add",
            Command::SetFeedState { .. } => "feed state",
            Command::RemoveFeed { .. } => "feed remove",
            Command::Report { .. } => "report",
            Command::Offence { .. } => "offence",
            Command::SetAutoPolicy { .. } => "auto set",
        }
    }

    /// A deploy's plan on this node's `store`, with its ids, from the
    /// draft `kept` when there is one; None for any other command.
    pub(crate) fn deploy_plan(
        &self,
        store: &mut SqliteStore,
        kept: Option<KeptDraft>,
    ) -> Result<Option<Plan>, StoreError> {
        let Command::Deploy { only, now, .. } = self else {
            return Ok(None);
        };
        Ok(Some(store.plan_kept(only_of(only), *now, kept)?))
    }

    /// [`Command::apply`] on this node's own `store`, given the draft
    /// `kept` as the entry before left it, if it kept one: a deploy plans
    /// from it, and a stage into an empty draft keeps the draft it leaves,
    /// for the deploy that most often comes next.
    pub(crate) fn apply_local(
        &self,
        store: &mut SqliteStore,
        kept: Option<KeptDraft>,
    ) -> Result<(Applied, Option<KeptDraft>), StoreError> {
        Ok(match self {
            Command::Stage {
                ops,
                user,
                now,
                default_ttl,
                audit,
            } => {
                let staged = store.stage_keeping(ops, user, *now, *default_ttl, audit)?;
                (Applied::Staged(staged.seq, staged.left), staged.kept)
            }
            Command::Deploy { only, now, .. } => {
                let plan = store.plan_kept(only_of(only), *now, kept)?;
                (self.deployed(store, plan)?, None)
            }
            _ => (self.apply(store)?, None),
        })
    }

    /// Writes and commits a deploy planned on `store`.
    fn deployed(&self, store: &mut dyn Store, plan: Plan) -> Result<Applied, StoreError> {
        let (rev, seq) = self.write_planned(store, &plan)?;
        Ok(Applied::Deployed(rev, seq, plan))
    }

    /// Writes and commits a deploy with the plan [`Command::deploy_plan`]
    /// made on the same store; its revision and audit seq.
    pub fn write_planned(
        &self,
        store: &mut dyn Store,
        plan: &Plan,
    ) -> Result<(Revision, u64), StoreError> {
        let Command::Deploy {
            now,
            user,
            message,
            kind,
            ..
        } = self
        else {
            return Err(StoreError::CommandResult {
                command: self.kind(),
            });
        };
        let record = DeployRecord {
            user,
            message: message.as_deref(),
            now: *now,
            kind,
        };
        store.write_deploy(plan, record)?.commit()
    }

    /// Applies the command to `store`, as one call of it; a deploy plans,
    /// writes and commits in one go here (a follower may put the plan into
    /// its kernel before the write: see `FleetStore::follow`).
    pub fn apply(&self, store: &mut dyn Store) -> Result<Applied, StoreError> {
        Ok(match self {
            Command::Stage {
                ops,
                user,
                now,
                default_ttl,
                audit,
            } => {
                let (seq, ops) = store.stage(ops, user, *now, *default_ttl, audit)?;
                Applied::Staged(seq, ops)
            }
            Command::Discard { user, now } => {
                let (seq, n) = store.discard(user, *now)?;
                Applied::Discarded(seq, n)
            }
            Command::Deploy { only, now, .. } => {
                let plan = store.plan(only_of(only), *now)?;
                self.deployed(store, plan)?
            }
            Command::Rollback {
                rev,
                force,
                user,
                now,
            } => {
                let (seq, left) = store.rollback(*rev, *force, user, *now)?;
                Applied::RolledBack(seq, left)
            }
            Command::Expire { now } => {
                let expired = store.expired(*now)?;
                let seq = store.expire(&expired, *now)?;
                Applied::Expired(seq, expired, *now)
            }
            Command::Record {
                user,
                kind,
                target,
                detail,
                now,
            } => Applied::Seq(store.record(user, kind, target.as_deref(), detail.clone(), *now)?),
            Command::Prune { cutoff, user, now } => {
                Applied::Pruned(store.prune(*cutoff, user, *now)?)
            }
            Command::AddFeed {
                name,
                settings,
                redacted_url,
                state,
                now,
            } => Applied::Seq(store.add_feed(name, settings, redacted_url, state, *now)?),
            Command::SetFeedState { name, state, held } => {
                let held = match held {
                    Held::Keep => HeldList::Keep,
                    Held::Clear => HeldList::Clear,
                    Held::Set(list) => HeldList::Set(list),
                };
                store.set_feed_state(name, state, held)?;
                Applied::Done
            }
            Command::RemoveFeed { name, user, now } => {
                Applied::Seq(store.remove_feed(name, user, *now)?)
            }
            Command::Report { report, since } => Applied::Tally(store.report(report, *since)?),
            Command::Offence { ip, now } => Applied::Offences(store.offence(*ip, *now)?),
            Command::SetAutoPolicy {
                policy,
                user,
                action,
                now,
            } => Applied::Seq(store.set_auto_policy(policy, user, action, *now)?),
        })
    }
}

/// A deploy's `only`, as [`Store::plan`] takes it.
fn only_of(only: &Option<(Vec<(Target, List)>, Sources)>) -> Option<Only<'_>> {
    only.as_ref().map(|(keys, sources)| Only { keys, sources })
}

#[cfg(test)]
mod tests {
    use super::{Command, StageEntry};
    use crate::{
        model::{List, Sources, Target, Ttl},
        store::{Audit, Stage},
    };

    #[test]
    fn a_stage_reads_straight_into_its_fields_and_other_commands_as_before() {
        let target = Target::parse("2001:db8::/64").unwrap();
        let stage = Command::Stage {
            ops: vec![
                Stage::Upsert {
                    target,
                    list: List::Deny,
                    reason: Some("r".into()),
                    ttl: Some(Ttl::Never),
                    monitor: Some(true),
                    source: Some("feed:a".into()),
                    keep_longer_ttl: false,
                },
                Stage::Remove {
                    target,
                    list: List::Allow,
                    sources: Sources::Only("feed:a".into()),
                },
            ],
            user: "root".into(),
            now: 1_000,
            default_ttl: Some(600),
            audit: Audit::Summary {
                kind: "import".into(),
                detail: serde_json::json!({ "lines": 2, "file": "a.txt" }),
            },
        };
        let json = serde_json::to_vec(&stage).unwrap();
        assert!(serde_json::from_slice::<StageEntry>(&json).is_ok());
        assert_eq!(Command::from_json(&json).unwrap(), stage);

        let discard = Command::Discard {
            user: "root".into(),
            now: 1_000,
        };
        let json = serde_json::to_vec(&discard).unwrap();
        assert!(serde_json::from_slice::<StageEntry>(&json).is_err());
        assert_eq!(Command::from_json(&json).unwrap(), discard);
        assert!(Command::from_json(br#"{"command":"stage","ops":7}"#).is_err());
    }
}
