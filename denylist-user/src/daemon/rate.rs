//! The rate detector's policy (docs/autoblock.md). Once an epoch the
//! detector hands over the sources it reported, counted over every CPU;
//! `top` keeps the heaviest, and each offender is recorded (`monitor`) or
//! listed by `auto:rate` and deployed at once as a revision by `auto`
//! (`enforce`), unless protected. More listings in a minute than the
//! policy allows trip the circuit breaker back to monitor, durably.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use super::{Core, CoreError, edit::Staging};
use crate::{
    dataplane::{DetectLevels, Measured, tai_offset_ms},
    model::{
        AUTO_ACTOR, AUTO_RATE, AutoPolicy, List, Millis, RECENT_DECISIONS, RateAction,
        RateDecision, RateMode, Sources, TopSource, Ttl, Verdict, now_ms,
    },
    policy::{self, RateContext},
    store::{Audit, Stage},
    wire::AutoStatus,
};

/// The detector's epoch: its counts are per second.
pub const EPOCH: Duration = Duration::from_secs(1);
/// Events the kernel may send a second, at each kind of level.
const EVENTS_PER_EPOCH: u32 = 4096;
/// `top` shows sources seen in this many of the last epochs.
const TOP_EPOCHS: u32 = 10;
/// `top`'s rates are over this many of a source's latest epochs.
const TOP_SAMPLES: usize = 5;
/// Sources `top` keeps at most.
const TOP_KEEP: usize = 10_000;
/// A source's same decision is recorded again only after this long, so
/// that one flood does not fill `recent`.
const REPEAT_AFTER_MS: Millis = 60_000;
const MINUTE_MS: Millis = 60_000;

/// An offender: a source over a threshold in the epoch that ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offender {
    pub source: crate::model::Target,
    pub pps: u64,
    pub bps: u64,
}

impl Offender {
    fn decision(&self, at: Millis, action: RateAction, why: Option<String>) -> RateDecision {
        RateDecision {
            source: self.source,
            pps: self.pps,
            bps: self.bps,
            at,
            action,
            why,
        }
    }
}

/// A source's counts in the last epochs it was seen in, newest last.
#[derive(Debug, Clone, Default)]
struct Seen {
    /// (the daemon's tick, packets, bytes, the epoch's length in ms).
    samples: VecDeque<(u32, u64, u64, u64)>,
}

impl Seen {
    /// Packets and bits per second over the samples: one epoch alone
    /// follows a sender's bursts.
    fn rates(&self) -> (u64, u64) {
        let (mut packets, mut bytes, mut ms) = (0u64, 0u64, 0u64);
        for &(_, p, b, m) in &self.samples {
            (packets, bytes, ms) = (packets + p, bytes + b, ms + m);
        }
        per_second(packets, bytes, ms)
    }

    fn last_epoch(&self) -> u32 {
        self.samples.back().map_or(0, |s| s.0)
    }
}

/// What the detector's policy remembers between epochs; none of it needs
/// to outlive the daemon but the tripped breaker, which the store keeps.
#[derive(Debug, Default)]
pub struct RateState {
    recent: VecDeque<RateDecision>,
    top: HashMap<crate::model::Target, Seen>,
    /// When each `auto:rate` listing of the last minute was made.
    listed_at: VecDeque<Millis>,
    last: HashMap<crate::model::Target, (RateAction, Millis)>,
    last_tick: Option<Instant>,
    /// Ticks since the start: `top`'s clock. The kernel's epoch number
    /// starts again with each new generation of maps.
    ticks: u32,
    pub events_dropped: u64,
    pub trips: u64,
}

impl RateState {
    fn record(&mut self, d: RateDecision) {
        if let Some(&(action, at)) = self.last.get(&d.source)
            && action == d.action
            && d.at - at < REPEAT_AFTER_MS
        {
            return;
        }
        self.last.insert(d.source, (d.action, d.at));
        self.recent.push_front(d);
        self.recent.truncate(RECENT_DECISIONS);
    }
}

/// Packets and bits per second of `packets` and `bytes` over `ms`.
fn per_second(packets: u64, bytes: u64, ms: u64) -> (u64, u64) {
    let ms = ms.max(1);
    (packets * 1000 / ms, bytes * 8 * 1000 / ms)
}

/// The kernel's levels for a policy: a zero packet level turns it off.
pub fn levels(p: &AutoPolicy) -> DetectLevels {
    let secs = EPOCH.as_secs().max(1);
    match p.mode {
        RateMode::Off => DetectLevels::default(),
        RateMode::Monitor | RateMode::Enforce => DetectLevels {
            packets: p.pps.saturating_mul(secs).max(1),
            bytes: p.bps.map_or(0, |b| (b / 8).saturating_mul(secs).max(1)),
            events: EVENTS_PER_EPOCH,
        },
    }
}

impl Core {
    /// Ends the detector's epoch: `top` takes in what it measured, and the
    /// offenders come back for [`Core::rate_decide`], which needs the
    /// guardrails' reading of the host, made without the core lock.
    pub fn rate_measure(&mut self) -> Result<Vec<Offender>, CoreError> {
        let now = Instant::now();
        // Never shorter than an epoch: an early tick would overstate
        // rates, a late one counted more time and says so.
        let elapsed = self
            .rate
            .last_tick
            .map_or(EPOCH, |t| now.duration_since(t))
            .max(EPOCH);
        self.rate.last_tick = Some(now);
        let epoch = self.filter.detector_tick()?;
        self.rate.events_dropped = epoch.events_dropped;
        self.rate.ticks = self.rate.ticks.wrapping_add(1);
        let tick = self.rate.ticks;
        let policy = self.store.auto_policy()?;
        let ms = elapsed.as_millis() as u64;
        let mut offenders = Vec::new();
        for Measured {
            source,
            packets,
            bytes,
        } in epoch.sources
        {
            // The decision is on this epoch alone: an offender is blocked
            // the second it is seen.
            let (pps, bps) = per_second(packets, bytes, ms);
            let seen = self.rate.top.entry(source).or_default();
            seen.samples.push_back((tick, packets, bytes, ms));
            if seen.samples.len() > TOP_SAMPLES {
                seen.samples.pop_front();
            }
            let over = pps >= policy.pps || policy.bps.is_some_and(|b| bps >= b);
            if over && policy.mode != RateMode::Off {
                offenders.push(Offender { source, pps, bps });
            }
        }
        let oldest = tick.saturating_sub(TOP_EPOCHS);
        self.rate.top.retain(|_, s| s.last_epoch() >= oldest);
        if self.rate.top.len() > TOP_KEEP {
            let mut by_pps: Vec<u64> = self.rate.top.values().map(|s| s.rates().0).collect();
            by_pps.sort_unstable_by(|a, b| b.cmp(a));
            let floor = by_pps[TOP_KEEP - 1];
            self.rate.top.retain(|_, s| s.rates().0 >= floor);
        }
        Ok(offenders)
    }

    /// Records or lists each offender. `ctx` is the host's reading for
    /// them ([`super::HostProbe::for_rate`]); when it failed, nothing is
    /// listed.
    pub fn rate_decide(
        &mut self,
        offenders: &[Offender],
        ctx: Result<RateContext, CoreError>,
    ) -> Result<(), CoreError> {
        let mut policy = self.store.auto_policy()?;
        let now = now_ms();
        let tai = (now + tai_offset_ms()).max(0) as u64 * 1_000_000;
        self.rate
            .last
            .retain(|_, (_, at)| now - *at < REPEAT_AFTER_MS);
        for o in offenders {
            let ip = o.source.addr();
            let (verdict, _) = self.filter.decide(ip, tai);
            // Dropped already, by its own listing or another: nothing to do.
            if verdict == Verdict::Drop {
                continue;
            }
            let why = match &ctx {
                _ if verdict == Verdict::Allowed => Some("on the allow list".to_string()),
                Err(e) => Some(e.to_string()),
                Ok(ctx) => policy::rate_protection(&o.source, ctx, &policy.protect),
            };
            if let Some(why) = why {
                self.rate
                    .record(o.decision(now, RateAction::Protected, Some(why)));
                continue;
            }
            if policy.mode != RateMode::Enforce {
                self.rate
                    .record(o.decision(now, RateAction::WouldBlock, None));
                continue;
            }
            if let Some(e) = self.store.draft_entry(o.source, List::Deny, now)?
                && e.listing(AUTO_RATE).is_some()
            {
                continue;
            }
            self.rate.listed_at.retain(|&at| now - at < MINUTE_MS);
            if self.rate.listed_at.len() >= policy.max_per_minute as usize {
                self.trip(&mut policy, now)?;
                let why = format!(
                    "more than {} listings in a minute tripped the circuit breaker",
                    policy.max_per_minute
                );
                self.rate
                    .record(o.decision(now, RateAction::Suppressed, Some(why)));
                continue;
            }
            match self.list_offender(o, &policy, now) {
                Ok(()) => {
                    self.rate.listed_at.push_back(now);
                    self.rate.record(o.decision(now, RateAction::Listed, None));
                }
                Err(e) => {
                    tracing::error!(source = %o.source, "listing a rate offender: {e}");
                    self.rate
                        .record(o.decision(now, RateAction::Suppressed, Some(e.to_string())));
                }
            }
        }
        Ok(())
    }

    fn list_offender(
        &mut self,
        o: &Offender,
        policy: &AutoPolicy,
        now: Millis,
    ) -> Result<(), CoreError> {
        let offence = self.store.offence(o.source.addr(), now)?;
        let ttl = policy.ttl_for(offence);
        let reason = match policy.bps {
            Some(b) if o.pps < policy.pps => format!("rate {} bit/s over {b} bit/s", o.bps),
            _ => format!("rate {} pps over {} pps", o.pps, policy.pps),
        };
        let ops = vec![Stage::Upsert {
            target: o.source,
            list: List::Deny,
            reason: Some(reason.clone()),
            ttl: Some(Ttl::Secs(ttl)),
            monitor: Some(false),
            source: Some(AUTO_RATE.to_string()),
            keep_longer_ttl: false,
        }];
        let message = format!("{}: {reason}", o.source);
        let staging = Staging {
            sources: &Sources::Only(AUTO_RATE.to_string()),
            deploy: true,
            message: Some(&message),
            audit_as: &Audit::Each,
        };
        self.stage(AUTO_ACTOR, ops, Vec::new(), staging)?;
        tracing::info!(source = %o.source, ttl, offence, "listed by the rate detector");
        Ok(())
    }

    /// The circuit breaker: back to monitor, durably and audited.
    fn trip(&mut self, policy: &mut AutoPolicy, now: Millis) -> Result<(), CoreError> {
        policy.mode = RateMode::Monitor;
        policy.tripped = true;
        self.store
            .set_auto_policy(policy, AUTO_ACTOR, "auto tripped", now)?;
        self.filter.set_detector(levels(policy));
        self.rate.trips += 1;
        tracing::warn!(
            max_per_minute = policy.max_per_minute,
            "the rate detector's circuit breaker tripped: back to monitor until `denylist auto set --mode enforce`"
        );
        Ok(())
    }

    /// `denylist auto`: the policy and what the detector did.
    pub fn auto_status(&self) -> Result<AutoStatus, CoreError> {
        let policy = self.store.auto_policy()?;
        Ok(AutoStatus {
            active: self.store.deployed_keys_from(AUTO_RATE, now_ms())?.len() as u64,
            recent: self.rate.recent.iter().cloned().collect(),
            events_dropped: self.rate.events_dropped,
            policy,
        })
    }

    /// `denylist top`: the heaviest sources of the last epochs.
    pub fn top(&self, limit: usize) -> Result<Vec<TopSource>, CoreError> {
        if self.store.auto_policy()?.mode == RateMode::Off {
            return Err(CoreError::DetectorOff);
        }
        let mut seen: Vec<_> = self
            .rate
            .top
            .iter()
            .map(|(&source, s)| (source, s.rates()))
            .collect();
        seen.sort_unstable_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(&b.0)));
        Ok(seen
            .into_iter()
            .take(limit)
            .map(|(source, (pps, bps))| {
                let check = self.check(source.addr());
                let verdict = if check.allowed_by.is_some() {
                    Verdict::Allowed
                } else {
                    check.verdict
                };
                TopSource {
                    source,
                    pps,
                    bps,
                    verdict,
                    listed: check.entry.is_some(),
                    sources: check.sources,
                }
            })
            .collect())
    }

    /// Circuit breaker trips since the start, for the metrics.
    pub fn rate_trips(&self) -> u64 {
        self.rate.trips
    }

    /// Events the kernel dropped, for the metrics.
    pub fn rate_events_dropped(&self) -> u64 {
        self.rate.events_dropped
    }
}
