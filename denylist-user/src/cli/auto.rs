//! `denylist report`, `reports`, `auto` and `top`: automatic blocking from
//! what applications report and from the rate detector.

use std::io::Write as _;

use super::{
    args::{AutoArgs, AutoCommand, Output, ReportArgs, TopArgs},
    error::Result,
    output,
    session::{Session, decode},
};
use crate::{
    model::{Report, TopSource},
    wire::{AutoSetRequest, AutoStatus, ReportRequest, ReportResponse},
};

impl Session {
    pub(super) fn report(&mut self, a: ReportArgs) -> Result<()> {
        let req = ReportRequest {
            ip: a.ip,
            reason: a.reason,
            weight: a.weight,
        };
        let body = self.post("/v1/reports", &req)?;
        if a.output.json {
            return self.raw_json(&body);
        }
        let r: ReportResponse = decode(&body)?;
        match (&r.blocked, &r.refused) {
            (Some(t), _) => writeln!(
                self.out,
                "reported {}: weight {} reached {}; {t} is blocked by auto:reports for {}",
                a.ip,
                r.weight,
                r.threshold,
                r.ttl.map_or("its listing's TTL".to_string(), |s| {
                    humantime::format_duration(std::time::Duration::from_secs(s)).to_string()
                })
            )?,
            (None, Some(why)) => {
                writeln!(
                    self.out,
                    "reported {}: weight {}; not blocked: {why}",
                    a.ip, r.weight
                )?;
            }
            (None, None) if r.threshold == 0 => writeln!(
                self.out,
                "reported {}: weight {} (reports block nothing until `denylist auto set --reports N`)",
                a.ip, r.weight
            )?,
            (None, None) => writeln!(
                self.out,
                "reported {}: weight {} of {}",
                a.ip, r.weight, r.threshold
            )?,
        }
        Ok(())
    }

    pub(super) fn reports(&mut self, o: Output) -> Result<()> {
        let body = self.get("/v1/reports")?;
        if o.json {
            return self.raw_json(&body);
        }
        let reports: Vec<Report> = decode(&body)?;
        output::reports(&mut self.out, &reports)?;
        Ok(())
    }

    pub(super) fn auto(&mut self, a: AutoArgs) -> Result<()> {
        let (body, o) = match a.command {
            None => (self.get("/v1/auto")?, a.output),
            Some(AutoCommand::Set(s)) => {
                let req = AutoSetRequest {
                    reports: s.reports,
                    within: s.within,
                    ttl: s.ttl,
                    escalate: s.escalate,
                    max_ttl: s.max_ttl,
                    mode: s.mode.map(Into::into),
                    pps: s.pps,
                    bps: s.bps,
                    max_per_minute: s.max_per_minute,
                    protect: s
                        .protect
                        .map(|p| p.into_iter().filter(|t| !t.trim().is_empty()).collect()),
                };
                (
                    self.post("/v1/auto", &req)?,
                    Output {
                        json: a.output.json || s.output.json,
                    },
                )
            }
        };
        if o.json {
            return self.raw_json(&body);
        }
        let status: AutoStatus = decode(&body)?;
        output::auto(&mut self.out, &status)?;
        Ok(())
    }

    pub(super) fn top(&mut self, a: TopArgs) -> Result<()> {
        let body = self.get(&format!("/v1/top?limit={}", a.limit))?;
        if a.output.json {
            return self.raw_json(&body);
        }
        let top: Vec<TopSource> = decode(&body)?;
        output::top(&mut self.out, &top)?;
        Ok(())
    }
}
