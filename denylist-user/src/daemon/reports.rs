//! Reports from applications, and the listings they set off: an address
//! whose report weight within the window reaches the threshold is listed
//! by `auto:reports`, deployed at once as a revision by `auto`, for a TTL
//! that grows with each re-offence. The guardrails apply as to any entry,
//! and are never forced; allow entries win in the kernel.

use super::{
    Core, CoreError,
    edit::{Staging, check_ttl},
};
use crate::{
    model::{
        AUTO_ACTOR, AUTO_REPORTS, AutoPolicy, List, MAX_REPORT_WEIGHT, RateMode, Report, Sources,
        Target, Ttl, normal_ip, now_ms, parse_duration,
    },
    policy::{self, GuardContext},
    store::{Audit, Stage},
    wire::{AutoSetRequest, ReportRequest, ReportResponse},
};

/// A reason longer than this is an application dumping its log.
const MAX_REASON: usize = 200;

impl Core {
    /// Records a report and, at the threshold, lists the address. `ctx`
    /// is what the guardrails read from the host, without the core; when
    /// that failed, the report is kept and nothing is listed.
    pub fn report(
        &mut self,
        user: &str,
        req: ReportRequest,
        ctx: Result<GuardContext, CoreError>,
    ) -> Result<ReportResponse, CoreError> {
        if req.weight == 0 || req.weight > MAX_REPORT_WEIGHT {
            return Err(CoreError::ReportWeight { weight: req.weight });
        }
        let reason = req.reason.trim().to_string();
        if reason.is_empty() || reason.chars().count() > MAX_REASON {
            return Err(CoreError::ReportReason);
        }
        let ip = normal_ip(req.ip);
        let now = now_ms();
        let policy = self.store.auto_policy()?;
        let report = Report {
            seq: 0,
            ip,
            reason,
            weight: req.weight,
            reporter: user.to_string(),
            at: now,
        };
        let tally = self
            .store
            .report(&report, now - (policy.within as i64) * 1000)?;
        let mut response = ReportResponse {
            seq: tally.seq,
            weight: tally.weight,
            threshold: policy.reports.unwrap_or(0),
            blocked: None,
            ttl: None,
            refused: None,
        };
        let Some(threshold) = policy.reports else {
            return Ok(response);
        };
        if tally.weight < threshold {
            return Ok(response);
        }
        let target = Target::host(ip);
        // Listed already: the listing runs its course; a re-offence after
        // it expires lists the address again, for longer.
        if let Some(e) = self.store.draft_entry(target, List::Deny, now)?
            && let Some(l) = e.listing(AUTO_REPORTS)
        {
            response.blocked = Some(target);
            response.ttl = l.ttl;
            return Ok(response);
        }
        let refusal = match ctx {
            Ok(ctx) => policy::check(&target, List::Deny, &ctx)
                .first()
                .map(ToString::to_string),
            Err(e) => Some(e.to_string()),
        };
        if let Some(refused) = refusal {
            tracing::warn!(%ip, refused, "reports reached the threshold; not listed");
            response.refused = Some(refused);
            return Ok(response);
        }
        let offence = self.store.offence(ip, now)?;
        let ttl = policy.ttl_for(offence);
        let ops = vec![Stage::Upsert {
            target,
            list: List::Deny,
            reason: Some(format!(
                "{} reports: {}",
                tally.weight,
                tally.reasons.join("; ")
            )),
            ttl: Some(Ttl::Secs(ttl)),
            monitor: Some(false),
            source: Some(AUTO_REPORTS.to_string()),
            keep_longer_ttl: false,
        }];
        let message = format!(
            "{ip}: report weight {} within {}s",
            tally.weight, policy.within
        );
        let staging = Staging {
            sources: &Sources::Only(AUTO_REPORTS.to_string()),
            deploy: true,
            message: Some(&message),
            audit_as: &Audit::Each,
        };
        self.stage(AUTO_ACTOR, ops, Vec::new(), staging)?;
        tracing::info!(%ip, ttl, offence, "listed by reports");
        response.blocked = Some(target);
        response.ttl = Some(ttl);
        Ok(response)
    }

    /// The latest reports, only `reporter`'s when given.
    pub fn reports(&self, reporter: Option<&str>) -> Result<Vec<Report>, CoreError> {
        Ok(self.store.reports(reporter, 1000)?)
    }

    pub fn auto_policy(&self) -> Result<AutoPolicy, CoreError> {
        Ok(self.store.auto_policy()?)
    }

    /// Changes the fields given, keeps the others.
    pub fn set_auto(&mut self, user: &str, req: AutoSetRequest) -> Result<AutoPolicy, CoreError> {
        let mut p = self.store.auto_policy()?;
        let secs = |d: &str| -> Result<u64, CoreError> { check_ttl(parse_duration(d)?.as_secs()) };
        if let Some(n) = req.reports {
            // 0 switches listing from reports off; they are still recorded.
            p.reports = (n > 0).then_some(n);
        }
        if let Some(w) = &req.within {
            p.within = secs(w)?;
        }
        if let Some(t) = &req.ttl {
            p.ttl = secs(t)?;
        }
        if let Some(e) = req.escalate {
            if e == 0 {
                return Err(CoreError::BadAutoPolicy {
                    reason: "--escalate multiplies the TTL: give 1 (no escalation) or more",
                });
            }
            p.escalate = e;
        }
        if let Some(m) = &req.max_ttl {
            p.max_ttl = secs(m)?;
        }
        if p.max_ttl < p.ttl {
            return Err(CoreError::BadAutoPolicy {
                reason: "--max-ttl is shorter than --ttl: raise --max-ttl, or lower --ttl",
            });
        }
        if let Some(m) = req.mode {
            p.mode = m;
            // An admin who asks for enforce again has seen the trip.
            if m == RateMode::Enforce {
                p.tripped = false;
            }
        }
        if let Some(n) = req.pps {
            if n == 0 {
                return Err(CoreError::BadAutoPolicy {
                    reason: "--pps 0 would make every source an offender: give a rate, or --mode off",
                });
            }
            p.pps = n;
        }
        if let Some(b) = req.bps {
            p.bps = (b > 0).then_some(b);
        }
        if let Some(n) = req.max_per_minute {
            if n == 0 {
                return Err(CoreError::BadAutoPolicy {
                    reason: "--max-per-minute 0 would trip at the first listing: give 1 or more, or --mode monitor",
                });
            }
            p.max_per_minute = n;
        }
        if let Some(list) = &req.protect {
            p.protect = list
                .iter()
                .map(|t| Target::parse(t))
                .collect::<Result<_, _>>()?;
        }
        self.store.set_auto_policy(&p, user, "auto set", now_ms())?;
        self.filter.set_detector(super::rate::levels(&p));
        Ok(p)
    }
}
