//! Fleet mode's nodes.

use std::io::{self, Write};

use super::{
    format::absolute,
    table::{Align, Table},
};
use crate::model::NodeStatus;

pub(crate) fn nodes(out: &mut impl Write, nodes: &[NodeStatus]) -> io::Result<()> {
    let mut t = Table::new(
        out,
        &[
            ("NODE", Align::Left),
            ("REVISION", Align::Right),
            ("STATE", Align::Left),
            ("HEARTBEAT", Align::Left),
            ("LAG", Align::Right),
            ("DRIFT", Align::Right),
            ("CAPACITY", Align::Right),
            ("ERROR", Align::Left),
        ],
    );
    for n in nodes {
        t.row(vec![
            n.node.clone(),
            n.applied_revision.to_string(),
            n.state.as_str().to_string(),
            absolute(n.heartbeat_at),
            format!("{} ms", n.lag_ms),
            n.drift.to_string(),
            n.capacity.to_string(),
            n.error.clone().unwrap_or_default(),
        ])?;
    }
    t.finish_or("no node has reported yet")
}
