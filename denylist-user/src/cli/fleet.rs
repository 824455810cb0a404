//! `denylist nodes`: fleet mode's nodes (docs/fleet.md).

use super::{
    args::Output,
    error::Result,
    output,
    session::{Session, decode},
};
use crate::model::NodeStatus;

impl Session {
    pub(super) fn nodes(&mut self, a: Output) -> Result<()> {
        let body = self.get("/v1/nodes")?;
        if a.json {
            return self.raw_json(&body);
        }
        let nodes: Vec<NodeStatus> = decode(&body)?;
        output::nodes(&mut self.out, &nodes)?;
        Ok(())
    }
}
