//! `denylist nodes` and `deploy --wait`: fleet mode's nodes
//! (docs/fleet.md).

use std::{
    io::Write as _,
    time::{Duration, Instant},
};

use super::{
    args::{NodesArgs, NodesCommand},
    error::Result,
    output,
    session::{Session, decode},
};
use crate::{model::NodeStatus, wire::ApiError};

/// How often `deploy --wait` asks.
const WAIT_POLL: Duration = Duration::from_millis(200);

impl Session {
    pub(super) fn nodes(&mut self, a: NodesArgs) -> Result<()> {
        if let Some(NodesCommand::Remove { name, output }) = a.command {
            let path = format!("/v1/nodes/{name}");
            let body = self.send("DELETE", &path, None, "application/json")?;
            if output.json {
                return self.raw_json(&body);
            }
            writeln!(self.out, "node {name} forgotten")?;
            return Ok(());
        }
        let body = self.get("/v1/nodes")?;
        if a.output.json {
            return self.raw_json(&body);
        }
        let nodes: Vec<NodeStatus> = decode(&body)?;
        output::nodes(&mut self.out, &nodes)?;
        Ok(())
    }

    /// Waits until every live node (heartbeat under 15 s old) applied
    /// `revision`; fails naming those that had not `within`.
    pub(super) fn wait_applied(
        &mut self,
        revision: u64,
        within: Duration,
        json: bool,
    ) -> Result<()> {
        let start = Instant::now();
        loop {
            let nodes: Vec<NodeStatus> = decode(&self.get("/v1/nodes")?)?;
            let behind: Vec<&str> = nodes
                .iter()
                .filter(|n| n.state.is_live() && !n.has_applied(revision))
                .map(|n| n.node.as_str())
                .collect();
            if behind.is_empty() {
                if !json {
                    let live = nodes.iter().filter(|n| n.state.is_live()).count();
                    let n = output::plural(live as u64, "live node", "live nodes");
                    writeln!(self.out, "revision {revision} is applied on all {n}")?;
                }
                return Ok(());
            }
            if start.elapsed() >= within {
                return Err(ApiError::failure(format!(
                    "revision {revision} is not applied on {} after {}: `denylist nodes` shows where they are",
                    behind.join(", "),
                    humantime::format_duration(within)
                ))
                .into());
            }
            std::thread::sleep(WAIT_POLL);
        }
    }
}
