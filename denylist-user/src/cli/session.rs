//! One command's run: the [`Session`] sends its requests to denylistd, one
//! method per command, and writes the replies, as JSON or in human form.

use std::{
    io::{self, BufWriter, IsTerminal as _, StdoutLock, Write},
    net::IpAddr,
    path::Path,
};

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use super::{
    admin::admin_addr,
    args::{
        AllowCommand, AttachArgs, AuditArgs, BackupArgs, CheckArgs, Command, CompletionsArgs,
        DeployArgs, DetachArgs, ExportArgs, HistoryArgs, ImportArgs, ListArgs, ManArgs, Output,
        RemoveArgs, RollbackArgs, StageArgs, StatsArgs, TargetsArgs,
    },
    client::{Client, Reply},
    command,
    error::{Error, Result},
    input::{Progress, check_targets, read_input},
    man_page, output, query, write_man_pages,
};
use crate::{
    model::{AuditEvent, Entry, ExportFormat, List, Millis, Revision},
    wire::{
        AddRequest, ApiError, AttachRequest, AuditQuery, CheckResponse, DeployRequest,
        DeployResponse, DetachRequest, Diff, ImportParams, ImportResponse, ModeRequest, PageQuery,
        RemoveRequest, RollbackRequest, RollbackResponse, SeqResponse, StageItem, StageResponse,
        StatItem, Status, VerifyResponse,
    },
};

/// What every command needs: the client, the output, and one "now".
pub(super) struct Session {
    pub(super) client: Client,
    pub(super) out: BufWriter<StdoutLock<'static>>,
    /// One "now" for the whole output, so relative times agree.
    pub(super) now: Millis,
}

impl Session {
    pub(super) fn dispatch(&mut self, command: Command) -> Result<()> {
        match command {
            Command::Add(a) => self.stage(List::Deny, a.stage, a.monitor.then_some(true)),
            Command::Remove(a) => self.remove(List::Deny, a),
            Command::Enforce(a) => self.mode(a, false),
            Command::Monitor(a) => self.mode(a, true),
            Command::List(a) => self.list(List::Deny, a),
            Command::Diff(o) => self.diff(o),
            Command::Deploy(a) => self.deploy(a),
            Command::Discard(o) => self.discard(o),
            Command::Check(a) => self.check(a),
            Command::Status(o) => self.status(o),
            Command::Stats(a) => self.stats(a),
            Command::History(o) => self.history(o),
            Command::Audit(a) => self.audit(a),
            Command::Rollback(a) => self.rollback(a),
            Command::Import(a) => self.import(a),
            Command::Export(a) => self.export(a),
            Command::Allow(AllowCommand::Add(a)) => self.stage(List::Allow, a, None),
            Command::Allow(AllowCommand::Remove(a)) => self.remove(List::Allow, a),
            Command::Allow(AllowCommand::List(a)) => self.list(List::Allow, a),
            Command::Attach(a) => self.attach(a),
            Command::Detach(a) => self.detach(a),
            Command::Verify(o) => self.verify(o),
            Command::Backup(a) => self.backup(a),
            Command::Report(a) => self.report(a),
            Command::Reports(o) => self.reports(o),
            Command::Auto(a) => self.auto(a),
            Command::Top(a) => self.top(a),
            Command::Nodes(a) => self.nodes(a),
            Command::Feed(c) => self.feed(c),
            Command::Completions(a) => self.completions(a),
            Command::Man(a) => self.man(a),
        }
    }

    /// The body of a 2xx reply, or the API error the reply carries.
    pub(super) fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        content_type: &str,
    ) -> Result<Vec<u8>> {
        let reply = self.client.request(method, path, body, content_type)?;
        if (200..300).contains(&reply.status) {
            return Ok(reply.body);
        }
        Err(reply.error().into())
    }

    /// A GET whose reply streams: listings and exports of any size.
    fn get_reader(&self, path: &str) -> Result<Box<dyn io::Read + Send>> {
        let (status, mut body) =
            self.client
                .request_reader("GET", path, None, "application/json")?;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        Err(Reply::error_from(status, &mut body).into())
    }

    /// Copies a streamed JSON document to the output, ending the line.
    fn copy_json(&mut self, mut body: Box<dyn io::Read + Send>) -> Result<()> {
        io::copy(&mut body, &mut self.out)?;
        self.out.write_all(b"\n")?;
        Ok(())
    }

    pub(super) fn get(&self, path: &str) -> Result<Vec<u8>> {
        self.send("GET", path, None, "application/json")
    }

    pub(super) fn post(&self, path: &str, body: &impl Serialize) -> Result<Vec<u8>> {
        let body = serde_json::to_vec(body)
            .map_err(|e| ApiError::failure(format!("cannot encode the request: {e}")))?;
        self.send("POST", path, Some(&body), "application/json")
    }

    /// A POST whose route takes no body.
    pub(super) fn post_empty(&self, path: &str) -> Result<Vec<u8>> {
        self.send("POST", path, None, "application/json")
    }

    /// With `--json`, the API's document as is; otherwise `human` renders it.
    fn show<T: DeserializeOwned>(
        &mut self,
        body: &[u8],
        output: Output,
        human: impl FnOnce(&mut BufWriter<StdoutLock<'static>>, T, Millis) -> io::Result<()>,
    ) -> Result<()> {
        if output.json {
            return self.raw_json(body);
        }
        let value = decode(body)?;
        human(&mut self.out, value, self.now)?;
        Ok(())
    }

    pub(super) fn raw_json(&mut self, body: &[u8]) -> Result<()> {
        self.out.write_all(body)?;
        if !body.ends_with(b"\n") {
            self.out.write_all(b"\n")?;
        }
        Ok(())
    }

    fn stage(&mut self, list: List, a: StageArgs, monitor: Option<bool>) -> Result<()> {
        let (targets, notes) = check_targets(&a.targets, Some(a.force))?;
        for n in notes {
            eprintln!("{n}");
        }
        let req = AddRequest {
            entries: targets
                .into_iter()
                .map(|t| StageItem {
                    target: t.to_string(),
                    list,
                    reason: a.reason.clone(),
                    ttl: a.ttl.clone(),
                    monitor,
                })
                .collect(),
            force: a.force,
            deploy: a.deploy,
            message: None,
            admin_addr: admin_addr(),
            source: a.source.clone(),
            dry_run: a.dry_run,
        };
        let body = self.post("/v1/entries", &req)?;
        self.show(&body, a.output, |out, r: StageResponse, _| {
            for w in &r.warnings {
                eprintln!("warning: {w}");
            }
            output::stage(out, &r)
        })
    }

    fn remove(&mut self, list: List, a: RemoveArgs) -> Result<()> {
        let (targets, _) = check_targets(&a.targets.targets, None)?;
        let req = RemoveRequest {
            targets,
            list,
            deploy: a.targets.deploy,
            message: None,
            source: a.source,
        };
        let body = self.post("/v1/entries/remove", &req)?;
        self.show(&body, a.targets.output, |out, r: StageResponse, _| {
            for w in &r.warnings {
                eprintln!("warning: {w}");
            }
            output::stage(out, &r)
        })
    }

    fn mode(&mut self, a: TargetsArgs, monitor: bool) -> Result<()> {
        let (targets, _) = check_targets(&a.targets, None)?;
        let req = ModeRequest {
            targets,
            monitor,
            deploy: a.deploy,
            message: None,
        };
        let body = self.post("/v1/entries/mode", &req)?;
        self.show(&body, a.output, |out, r: StageResponse, _| {
            output::stage(out, &r)
        })
    }

    fn list(&mut self, list: List, a: ListArgs) -> Result<()> {
        if a.paged() {
            return self.list_page(list, a);
        }
        #[derive(Serialize)]
        struct Query<'a> {
            draft: bool,
            list: List,
            source: Option<&'a str>,
            #[serde(rename = "match")]
            matching: Option<IpAddr>,
            limit: Option<usize>,
        }
        let q = query::encode(&Query {
            draft: a.draft,
            list,
            source: a.source.as_deref(),
            matching: a.matching,
            limit: a.limit,
        });
        let body = self.get_reader(&format!("/v1/entries{q}"))?;
        if a.output.json {
            return self.copy_json(body);
        }
        let now = self.now;
        let mut table = output::entry_table(&mut self.out);
        output::each(io::BufReader::new(body), |e: Entry| {
            table.row(output::entry_row(&e, now))
        })?;
        table.finish_or("no entries")?;
        Ok(())
    }

    fn diff(&mut self, o: Output) -> Result<()> {
        let body = self.get("/v1/diff")?;
        self.show(&body, o, |out, d: Diff, _| output::diff(out, &d))
    }

    fn deploy(&mut self, a: DeployArgs) -> Result<()> {
        let req = DeployRequest {
            message: a.message,
            dry_run: a.dry_run,
            only: None,
            expect_seq: a.expect_seq,
        };
        let body = self.post("/v1/deploy", &req)?;
        let revision = match a.wait {
            Some(_) => decode::<DeployResponse>(&body)?.revision,
            None => None,
        };
        self.show(&body, a.output, |out, d: DeployResponse, _| {
            output::deploy(out, &d)
        })?;
        match (a.wait, revision) {
            (Some(within), Some(rev)) => self.wait_applied(rev, within, a.output.json),
            _ => Ok(()),
        }
    }

    fn discard(&mut self, o: Output) -> Result<()> {
        let body = self.post_empty("/v1/discard")?;
        self.show(&body, o, |out, r: SeqResponse, _| {
            let n = r
                .detail
                .as_ref()
                .and_then(|d| d.get("discarded"))
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let n = output::plural(n, "pending change", "pending changes");
            writeln!(out, "discarded {n}")
        })
    }

    fn check(&mut self, a: CheckArgs) -> Result<()> {
        let body = self.get(&format!("/v1/check/{}", a.ip))?;
        self.show(&body, a.output, |out, c: CheckResponse, _| {
            output::check(out, &c)
        })
    }

    fn status(&mut self, o: Output) -> Result<()> {
        let body = self.get("/v1/status")?;
        let status: Status = decode(&body)?;
        if o.json {
            self.raw_json(&body)?;
        } else {
            output::status(&mut self.out, &status)?;
            for w in &status.warnings {
                eprintln!("warning: {w}");
            }
        }
        if status.degraded {
            return Err(ApiError::failure("denylistd is degraded")
                .with_details(Value::from(output::degraded(&status)))
                .into());
        }
        Ok(())
    }

    fn stats(&mut self, a: StatsArgs) -> Result<()> {
        #[derive(Serialize)]
        struct Query {
            top: Option<usize>,
            idle: Option<String>,
        }
        let q = query::encode(&Query {
            top: a.top,
            idle: a.idle,
        });
        let body = self.get(&format!("/v1/stats{q}"))?;
        self.show(&body, a.output, |out, s: Vec<StatItem>, now| {
            output::stats(out, &s, now)
        })
    }

    fn history(&mut self, a: HistoryArgs) -> Result<()> {
        if let Some(rev) = a.revision {
            return self.revision(rev, a);
        }
        let q = query::encode(&PageQuery {
            since: None,
            before: a.before,
            limit: a.limit,
        });
        let body = self.get(&format!("/v1/history{q}"))?;
        self.show(&body, a.output, |out, h: Vec<Revision>, _| {
            output::history(out, &h)
        })
    }

    fn audit(&mut self, a: AuditArgs) -> Result<()> {
        let q = query::encode(&AuditQuery {
            since: a.since,
            before: a.before,
            limit: a.limit,
            actor: a.actor,
            kind: a.kind,
            from: a.from,
            to: a.to,
        });
        let body = self.get(&format!("/v1/audit{q}"))?;
        self.show(&body, a.output, |out, e: Vec<AuditEvent>, _| {
            output::audit(out, &e)
        })
    }

    fn rollback(&mut self, a: RollbackArgs) -> Result<()> {
        let req = RollbackRequest {
            revision: a.revision,
            force: a.force,
            deploy: a.deploy,
            message: a.message,
        };
        let body = self.post("/v1/rollback", &req)?;
        self.show(&body, a.output, |out, r: RollbackResponse, _| {
            output::rollback(out, a.revision, &r)
        })
    }

    fn import(&mut self, a: ImportArgs) -> Result<()> {
        let stdin = a.file == Path::new("-");
        let data = read_input(&a.file, stdin)?;
        // The daemon names standard input `stdin` itself.
        let source = match (a.source, stdin) {
            (Some(name), _) => Some(name),
            (None, true) => None,
            (None, false) => a.file.file_name().map(|n| n.to_string_lossy().into_owned()),
        };
        let params = ImportParams {
            format: a.format,
            source,
            list: None,
            replace: a.replace,
            reason: a.reason,
            ttl: a.ttl,
            force: a.force,
            skip_invalid: a.skip_invalid,
            skip_guarded: a.skip_guarded,
            deploy: a.deploy,
            admin_addr: admin_addr(),
        };
        let path = format!("/v1/import{}", query::encode(&params));
        let progress = io::stderr()
            .is_terminal()
            .then(|| Progress::start(data.len()));
        let body = self.send("POST", &path, Some(&data), "application/octet-stream");
        if let Some(p) = progress {
            p.finish();
        }
        let body = body?;
        self.show(&body, a.output, |out, r: ImportResponse, _| {
            output::import(out, &r)
        })
    }

    fn export(&mut self, a: ExportArgs) -> Result<()> {
        #[derive(Serialize)]
        struct Query {
            draft: bool,
            list: Option<List>,
            format: &'static str,
        }
        // Plain text cannot say which list a target is on, so it never mixes
        // them: re-imported, an allow entry would become a deny entry.
        let list = match a.format {
            ExportFormat::Plain => Some(a.list.unwrap_or(List::Deny)),
            ExportFormat::Json => a.list,
        };
        let q = query::encode(&Query {
            draft: a.draft,
            list,
            format: a.format.name(),
        });
        let mut body = self.get_reader(&format!("/v1/export{q}"))?;
        match a.format {
            ExportFormat::Json => self.copy_json(body),
            ExportFormat::Plain => {
                io::copy(&mut body, &mut self.out)?;
                Ok(())
            }
        }
    }

    fn attach(&mut self, a: AttachArgs) -> Result<()> {
        let req = AttachRequest {
            iface: a.iface.clone(),
            xdp_mode: a.xdp_mode,
        };
        let body = self.post("/v1/attach", &req)?;
        self.show(&body, a.output, |out, r: SeqResponse, _| {
            let mode = r
                .detail
                .as_ref()
                .and_then(|d| d.get("xdp_mode"))
                .and_then(Value::as_str)
                .unwrap_or("?");
            writeln!(out, "attached to {} (xdp {mode})", a.iface)
        })
    }

    fn detach(&mut self, a: DetachArgs) -> Result<()> {
        let req = DetachRequest {
            iface: a.iface.clone(),
        };
        let body = self.post("/v1/detach", &req)?;
        self.show(&body, a.output, |out, _: SeqResponse, _| {
            writeln!(out, "detached from {}", a.iface)
        })
    }

    fn verify(&mut self, o: Output) -> Result<()> {
        let body = self.post_empty("/v1/verify")?;
        let v: VerifyResponse = decode(&body)?;
        if o.json {
            self.raw_json(&body)?;
        } else if v.drift.is_empty() {
            writeln!(self.out, "no drift: the kernel holds the deployed revision")?;
        } else {
            writeln!(
                self.out,
                "drift in {}, {} repaired:",
                output::plural(v.drift.len() as u64, "entry", "entries"),
                v.repaired
            )?;
            for t in &v.drift {
                writeln!(self.out, "  {t}")?;
            }
        }
        let left = (v.drift.len() as u64).saturating_sub(v.repaired);
        if left > 0 {
            return Err(ApiError::failure(format!(
                "{} could not be repaired: see denylistd's log, then run denylist verify again",
                output::plural(left, "entry", "entries")
            ))
            .into());
        }
        Ok(())
    }

    /// The daemon streams a consistent copy of its store; the file is
    /// written here, with the rights of whoever runs the CLI.
    fn backup(&mut self, a: BackupArgs) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&a.file)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => ApiError::invalid(format!(
                    "{} exists: choose a new file name",
                    a.file.display()
                )),
                _ => ApiError::invalid(format!("cannot create {}: {e}", a.file.display())),
            })?;
        let copied = self
            .client
            .request_reader("POST", "/v1/backup", None, "application/json")
            .map_err(Error::from)
            .and_then(|(status, mut body)| {
                if (200..300).contains(&status) {
                    io::copy(&mut body, &mut file)?;
                    file.sync_all()?;
                    return Ok(());
                }
                Err(Reply::error_from(status, &mut body).into())
            });
        if let Err(e) = copied {
            drop(file);
            let _ = std::fs::remove_file(&a.file);
            return Err(e);
        }
        if a.output.json {
            let path = std::path::absolute(&a.file).unwrap_or(a.file.clone());
            writeln!(self.out, "{}", serde_json::json!({ "path": path }))?;
        } else {
            writeln!(self.out, "backup written to {}", a.file.display())?;
        }
        Ok(())
    }

    fn man(&mut self, a: ManArgs) -> Result<()> {
        let Some(dir) = a.dir else {
            return Ok(man_page(&mut self.out)?);
        };
        let written = write_man_pages(&dir).map_err(|e| {
            ApiError::failure(format!(
                "cannot write the man pages in {}: {e}",
                dir.display()
            ))
        })?;
        for path in written {
            writeln!(self.out, "{}", path.display())?;
        }
        Ok(())
    }

    fn completions(&mut self, a: CompletionsArgs) -> Result<()> {
        let shell: clap_complete::Shell = a.shell.into();
        clap_complete::generate(shell, &mut command(), "denylist", &mut self.out);
        Ok(())
    }
}

pub(super) fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::failure(format!(
            "denylistd sent a reply this client cannot read ({e}): are the CLI and the daemon the same version?"
        ))
    })
}
