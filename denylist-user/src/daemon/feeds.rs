//! Feed subscriptions in the core: adding and removing them, what the
//! scheduler should fetch, and what a fetch's outcome does. The fetch
//! itself (`fetch`) runs without the core, so a slow server holds up no
//! request; only its result is applied here, under the lock.
//!
//! A refresh changes only the feed's own listings (`feed:NAME`), deploys
//! them as one revision by `feed:NAME` (or stages them, with `--review`),
//! and leaves the kernel as it was on any failure: the last good list
//! stays deployed.

use std::{
    collections::{BTreeSet, HashSet},
    path::{Path, PathBuf},
    time::Duration,
};

use rand::Rng as _;

use super::{
    Core, CoreError,
    edit::{Staging, valid_source},
    fetch::{self, FetchPolicy, Validators},
};
use crate::{
    model::{
        FeedInfo, FeedSettings, FeedState, FeedStatus, List, Millis, Sources, Target, Ttl,
        feed_source, now_ms, parse_duration,
    },
    policy::{self, GuardContext, Refusal, feed},
    store::{Audit, Duty, FeedRecord, HeldList, Only, Stage},
    wire::FeedAddRequest,
};

/// The shortest refresh interval: no publisher wants more, and the
/// deploys would crowd out the admins'.
const MIN_EVERY: Duration = Duration::from_secs(60);
/// Failures back off exponentially up to this many intervals.
const MAX_BACKOFF: u64 = 8;

/// What the scheduler fetches for one feed.
#[derive(Debug, Clone)]
pub struct FeedJob {
    pub name: String,
    pub url: String,
    pub validators: Validators,
    pub header_file: Option<PathBuf>,
}

impl Core {
    /// Where feeds may fetch from, as the daemon was told.
    pub fn fetch_policy(&self) -> FetchPolicy {
        FetchPolicy {
            allow_private: self.config.feed_allow_private,
            feed_dir: self.config.feed_dir.clone(),
            timeout: self.config.feed_timeout,
            max_bytes: fetch::DEFAULT_MAX_BYTES,
        }
    }

    /// Subscribes to a feed; its first fetch is the caller's to start.
    pub fn feed_add(&mut self, user: &str, req: FeedAddRequest) -> Result<(), CoreError> {
        let name = req.name.trim().to_string();
        if !valid_source(&feed_source(&name)) || name.contains(':') || name.contains('/') {
            return Err(CoreError::BadSource { name });
        }
        let preset = feed::preset(&name);
        let url = match (req.url, preset) {
            (Some(u), _) => u,
            (None, Some(p)) => p.url.to_string(),
            (None, None) => return Err(CoreError::FeedNeedsUrl { name }),
        };
        fetch::check_url(&url, &self.fetch_policy())?;
        let every = match req.every.as_deref() {
            Some(d) => parse_duration(d)?,
            None => preset.map_or(Duration::from_secs(3600), |p| p.every),
        };
        if every < MIN_EVERY {
            return Err(CoreError::FeedTooOften);
        }
        let stale_after = match req.stale_after.as_deref() {
            Some(d) => parse_duration(d)?,
            None => every * 3,
        };
        if let Some(file) = &req.header_file {
            self.header_file_in_dir(Path::new(file))?;
        }
        if req.max_change.is_some_and(|c| c == 0 || c > 100) {
            return Err(CoreError::FeedMaxChange);
        }
        if req.max_width.is_some_and(|w| w == 0 || w > 32) {
            return Err(CoreError::FeedMaxWidth);
        }
        let settings = FeedSettings {
            url,
            format: req.format.or(preset.map(|p| p.format)).unwrap_or_default(),
            every: every.as_secs(),
            stale_after: stale_after.as_secs().max(every.as_secs()),
            monitor: req.monitor,
            max_entries: req.max_entries.unwrap_or(100_000),
            max_change: req.max_change.unwrap_or(50),
            max_width: req.max_width,
            allow_empty: req.allow_empty,
            review: req.review,
            header_file: req.header_file,
        };
        let now = now_ms();
        let state = FeedState {
            added_by: user.to_string(),
            added_at: now,
            next_at: now,
            ..FeedState::default()
        };
        // The audit event carries the settings, --max-width included:
        // widening a guardrail is on the record.
        let shown = fetch::redact_url(&settings.url);
        self.store.add_feed(&name, &settings, &shown, &state, now)?;
        Ok(())
    }

    /// A header file is read by root on an admin's behalf: only from the
    /// feed directory, where root put it.
    fn header_file_in_dir(&self, file: &Path) -> Result<PathBuf, CoreError> {
        let refused = || CoreError::FeedHeaderFile {
            path: file.to_path_buf(),
            dir: self.config.feed_dir.clone(),
        };
        let dir = self.config.feed_dir.canonicalize().map_err(|_| refused())?;
        let real = file.canonicalize().map_err(|_| refused())?;
        if !real.starts_with(&dir) {
            return Err(refused());
        }
        Ok(real)
    }

    pub fn feeds(&self) -> Result<Vec<FeedInfo>, CoreError> {
        let now = now_ms();
        self.store
            .feeds()?
            .iter()
            .map(|r| self.feed_info(r, now))
            .collect()
    }

    pub fn feed(&self, name: &str) -> Result<FeedInfo, CoreError> {
        let r = self.feed_record(name)?;
        self.feed_info(&r, now_ms())
    }

    fn feed_record(&self, name: &str) -> Result<FeedRecord, CoreError> {
        self.store
            .feeds()?
            .into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| {
                crate::store::StoreError::NoFeed {
                    name: name.to_string(),
                }
                .into()
            })
    }

    fn feed_info(&self, r: &FeedRecord, now: Millis) -> Result<FeedInfo, CoreError> {
        let (s, st) = (&r.settings, &r.state);
        let review_waiting = s.review && {
            let source = feed_source(&r.name);
            let deployed: HashSet<_> = self
                .store
                .deployed_keys_from(&source, now)?
                .into_iter()
                .collect();
            let drafted: HashSet<_> = self
                .store
                .draft_keys_from(&source, now)?
                .into_iter()
                .collect();
            deployed != drafted
        };
        Ok(FeedInfo {
            name: r.name.clone(),
            url: fetch::redact_url(&s.url),
            format: s.format,
            every: s.every,
            stale_after: s.stale_after,
            mode: if s.monitor { "monitor" } else { "enforce" }.into(),
            entries: st.entries,
            guarded_skipped: st.guarded_skipped,
            state: st.status(s, review_waiting, now),
            last_attempt: st.last_attempt,
            last_success: st.last_success,
            last_error: st.last_error.clone(),
            held: st.held.clone(),
            max_entries: s.max_entries,
            max_change: s.max_change,
            max_width: s.max_width,
            allow_empty: s.allow_empty,
            review: s.review,
            failures_total: st.failures_total,
            added_by: st.added_by.clone(),
            added_at: st.added_at,
        })
    }

    /// The feeds whose next attempt is due.
    pub fn feeds_due(&mut self, now: Millis) -> Result<Vec<FeedJob>, CoreError> {
        // In a fleet one node fetches for all: its outcome reaches the
        // others through the log.
        if !self.store.holds_duty(Duty::Feeds) {
            return Ok(Vec::new());
        }
        let mut jobs = Vec::new();
        for r in self.store.feeds()? {
            if r.state.next_at <= now {
                jobs.push(self.job_of(r)?);
            }
        }
        Ok(jobs)
    }

    /// One feed's fetch, due or not (`feed refresh`, `feed add`).
    pub fn feed_job(&self, name: &str) -> Result<FeedJob, CoreError> {
        let r = self.feed_record(name)?;
        self.job_of(r)
    }

    fn job_of(&self, r: FeedRecord) -> Result<FeedJob, CoreError> {
        let header_file = match &r.settings.header_file {
            Some(f) => Some(self.header_file_in_dir(Path::new(f))?),
            None => None,
        };
        Ok(FeedJob {
            name: r.name,
            url: r.settings.url,
            validators: Validators {
                etag: r.state.etag,
                last_modified: r.state.last_modified,
            },
            header_file,
        })
    }

    /// A failed attempt: the kernel keeps the last good list, and the
    /// next attempt backs off.
    pub fn feed_failed(&mut self, name: &str, error: &str) -> Result<(), CoreError> {
        let mut r = self.feed_record(name)?;
        let now = now_ms();
        let st = &mut r.state;
        st.last_attempt = Some(now);
        st.last_error = Some(error.to_string());
        st.failures += 1;
        st.failures_total += 1;
        let backoff = 1u64 << st.failures.min(4).saturating_sub(1);
        st.next_at = now + jittered(r.settings.every * backoff.min(MAX_BACKOFF));
        tracing::warn!(
            feed = name,
            error,
            "feed refresh failed; the last good list stays deployed"
        );
        self.store.set_feed_state(name, &r.state, HeldList::Keep)?;
        Ok(())
    }

    /// A fetch that got through: `body` is `None` for a 304. The list is
    /// checked, and deployed (or staged for review) when it passes, or held.
    pub fn feed_fetched(
        &mut self,
        name: &str,
        body: Option<&[u8]>,
        validators: Validators,
        ctx: &GuardContext,
    ) -> Result<(), CoreError> {
        let mut r = self.feed_record(name)?;
        let now = now_ms();
        r.state.last_attempt = Some(now);
        r.state.next_at = now + jittered(r.settings.every);
        let Some(body) = body else {
            // Not modified: the deployed list is still the feed's.
            r.state.last_success = Some(now);
            r.state.last_error = None;
            r.state.failures = 0;
            self.store.set_feed_state(name, &r.state, HeldList::Keep)?;
            return Ok(());
        };
        let mut list = feed::read(body, r.settings.format);
        let guarded = self.guard_feed(&mut list.targets, &r.settings, ctx);
        let previous = self.feed_targets(name, true)?;
        r.state.guarded_skipped = guarded;
        if let Err(held) = feed::check(&list, &previous, &r.settings) {
            tracing::warn!(feed = name, reason = held.reason, "feed list held back");
            r.state.last_error = Some(format!("held: {}", held.reason));
            r.state.failures = 0;
            r.state.held = Some(held);
            let targets: Vec<Target> = list.targets.into_iter().collect();
            self.store
                .set_feed_state(name, &r.state, HeldList::Set(&targets))?;
            return Ok(());
        }
        self.feed_apply(&mut r, &list.targets, &previous)?;
        r.state.etag = validators.etag;
        r.state.last_modified = validators.last_modified;
        self.store.set_feed_state(name, &r.state, HeldList::Clear)?;
        Ok(())
    }

    /// Deploys the list a feed's last fetch held back.
    pub fn feed_approve(
        &mut self,
        user: &str,
        name: &str,
        ctx: &GuardContext,
    ) -> Result<FeedInfo, CoreError> {
        let mut r = self.feed_record(name)?;
        let Some(held) = self.store.held_list(name)? else {
            return Err(CoreError::FeedNotHeld {
                name: name.to_string(),
            });
        };
        let mut targets: BTreeSet<Target> = held.into_iter().collect();
        r.state.guarded_skipped += self.guard_feed(&mut targets, &r.settings, ctx);
        let now = now_ms();
        let previous = self.feed_targets(name, true)?;
        self.store.record(
            user,
            "feed approve",
            None,
            Some(serde_json::json!({ "feed": name, "held": r.state.held })),
            now,
        )?;
        self.feed_apply(&mut r, &targets, &previous)?;
        // The held fetch's validators were never kept: the next fetch is a
        // full one, and checks the list again.
        self.store.set_feed_state(name, &r.state, HeldList::Clear)?;
        self.feed_info(&r, now)
    }

    /// Ends a subscription and takes its listings out with it, deployed as
    /// one revision; other sources' listings of the same entries stay.
    pub fn feed_remove(&mut self, user: &str, name: &str) -> Result<u64, CoreError> {
        self.feed_record(name)?;
        let source = feed_source(name);
        let keys = self.store.draft_keys_from(&source, now_ms())?;
        let sources = Sources::Only(source.clone());
        let deployed: HashSet<(Target, List)> = self
            .store
            .deployed_keys_from(&source, now_ms())?
            .into_iter()
            .collect();
        let ops: Vec<Stage> = keys
            .iter()
            .map(|&(target, list)| Stage::Remove {
                target,
                list,
                sources: sources.clone(),
            })
            .collect();
        let audit_as = Audit::Summary {
            kind: "feed listings removed".into(),
            detail: serde_json::json!({ "feed": name, "entries": keys.len() }),
        };
        if !ops.is_empty() || !deployed.is_empty() {
            let staging = Staging {
                sources: &sources,
                deploy: false,
                message: None,
                audit_as: &audit_as,
            };
            self.stage(user, ops, Vec::new(), staging)?;
            let only: Vec<(Target, List)> = deployed.into_iter().collect();
            if !only.is_empty() {
                self.deploy_listings(user, &only, &sources, &format!("feed {name} removed"))?;
            }
        }
        Ok(self.store.remove_feed(name, user, now_ms())?)
    }

    /// Deploys the staged changes of `keys` to the listings of `sources`.
    fn deploy_listings(
        &mut self,
        user: &str,
        keys: &[(Target, List)],
        sources: &Sources,
        message: &str,
    ) -> Result<(), CoreError> {
        let only = Only { keys, sources };
        self.deploy_as(user, Some(only), Some(message), false, "deploy")?;
        Ok(())
    }

    /// What the feed lists now, in the draft or deployed.
    fn feed_targets(&self, name: &str, draft: bool) -> Result<BTreeSet<Target>, CoreError> {
        let source = feed_source(name);
        let now = now_ms();
        let keys = if draft {
            self.store.draft_keys_from(&source, now)?
        } else {
            self.store.deployed_keys_from(&source, now)?
        };
        Ok(keys
            .into_iter()
            .filter(|(_, l)| *l == List::Deny)
            .map(|(t, _)| t)
            .collect())
    }

    /// Takes out of `targets` what the guardrails refuse for this feed (a
    /// feed is never forced), and says how many.
    fn guard_feed(
        &self,
        targets: &mut BTreeSet<Target>,
        settings: &FeedSettings,
        ctx: &GuardContext,
    ) -> u64 {
        let before = targets.len();
        targets.retain(|t| {
            policy::check(t, List::Deny, ctx).iter().all(|r| {
                matches!(r, Refusal::DenyTooWide { .. })
                    && feed::width_allowed(t, settings.max_width)
            })
        });
        (before - targets.len()) as u64
    }

    /// Makes the feed's listings `targets`: stages the difference and,
    /// unless the feed is under review, deploys just those listings as
    /// one revision by `feed:NAME`.
    fn feed_apply(
        &mut self,
        r: &mut FeedRecord,
        targets: &BTreeSet<Target>,
        drafted: &BTreeSet<Target>,
    ) -> Result<(), CoreError> {
        let now = now_ms();
        let name = r.name.clone();
        let source = feed_source(&name);
        let deployed = self.feed_targets(&name, false)?;
        let reason = format!("feed {name}");
        let mut ops = Vec::new();
        for t in targets.difference(drafted) {
            ops.push(Stage::Upsert {
                target: *t,
                list: List::Deny,
                reason: Some(reason.clone()),
                ttl: Some(Ttl::Never),
                monitor: Some(r.settings.monitor),
                source: Some(source.clone()),
                keep_longer_ttl: false,
            });
        }
        let sources = Sources::Only(source.clone());
        for t in drafted.difference(targets) {
            ops.push(Stage::Remove {
                target: *t,
                list: List::Deny,
                sources: sources.clone(),
            });
        }
        let added = targets.difference(&deployed).count();
        let removed = deployed.difference(targets).count();
        let audit_as = Audit::Summary {
            kind: "feed refresh".into(),
            detail: serde_json::json!({
                "feed": name, "entries": targets.len(), "added": added, "removed": removed,
                "guarded_skipped": r.state.guarded_skipped, "review": r.settings.review,
            }),
        };
        let staging = Staging {
            sources: &sources,
            deploy: false,
            message: None,
            audit_as: &audit_as,
        };
        if !ops.is_empty() {
            self.stage(&source, ops, Vec::new(), staging)?;
        }
        // What differs from the kernel is deployed, including what a
        // refresh cut short by a crash had only staged.
        let only: Vec<(Target, List)> = targets
            .symmetric_difference(&deployed)
            .map(|t| (*t, List::Deny))
            .collect();
        if !r.settings.review && !only.is_empty() {
            let message = format!("feed {name}: +{added} −{removed}");
            if let Err(e) = self.deploy_listings(&source, &only, &sources, &message) {
                r.state.last_error = Some(format!("deploy failed: {e}"));
                r.state.failures += 1;
                r.state.failures_total += 1;
                // A held list being approved stays held, for another try.
                self.store.set_feed_state(&name, &r.state, HeldList::Keep)?;
                return Err(e);
            }
        }
        r.state.entries = targets.len() as u64;
        r.state.last_success = Some(now);
        r.state.last_error = None;
        r.state.failures = 0;
        r.state.held = None;
        Ok(())
    }
}

/// `secs` in milliseconds, ±5%, so that many daemons that started together
/// do not fetch together forever.
fn jittered(secs: u64) -> Millis {
    let ms = (secs * 1000) as f64;
    (ms * rand::rng().random_range(0.95..=1.05)) as Millis
}

/// Whether a feed's state is worth an exit code of its own.
pub fn feed_exit_code(state: FeedStatus) -> u8 {
    match state {
        FeedStatus::Ok | FeedStatus::Review | FeedStatus::Pending => 0,
        FeedStatus::Failing | FeedStatus::Stale => 1,
        FeedStatus::Held => 3,
    }
}
