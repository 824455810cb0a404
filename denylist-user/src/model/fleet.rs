//! Fleet mode's view of its nodes: which revision each has applied, and
//! whether it keeps up (docs/fleet.md).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{Millis, time_ms};

/// A node's heartbeat younger than this, by the database's clock, is live.
pub const LIVE_MS: i64 = 15_000;
/// A node silent for longer than this is offline; in between it is stale.
pub const OFFLINE_MS: i64 = 300_000;

/// How a node stands, from its heartbeat's age and what it applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// At the head revision, heartbeat under 15 s old.
    InSync,
    /// Below the head revision, heartbeat under 15 s old.
    Behind,
    /// Heartbeat 15 s to 5 min old.
    Stale,
    /// Heartbeat older than 5 min.
    Offline,
    /// Its last apply failed; `error` says why.
    Error,
}

impl NodeState {
    pub const ALL: [NodeState; 5] = [
        NodeState::InSync,
        NodeState::Behind,
        NodeState::Stale,
        NodeState::Offline,
        NodeState::Error,
    ];

    pub fn of(age_ms: i64, applied: u64, head: u64, failed: bool) -> NodeState {
        if failed {
            NodeState::Error
        } else if age_ms > OFFLINE_MS {
            NodeState::Offline
        } else if age_ms >= LIVE_MS {
            NodeState::Stale
        } else if applied < head {
            NodeState::Behind
        } else {
            NodeState::InSync
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::InSync => "in_sync",
            NodeState::Behind => "behind",
            NodeState::Stale => "stale",
            NodeState::Offline => "offline",
            NodeState::Error => "error",
        }
    }

    /// Counts for `deploy --wait`: a node that answers.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            NodeState::InSync | NodeState::Behind | NodeState::Error
        )
    }
}

/// One node, as `denylist nodes` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeStatus {
    pub node: String,
    /// The last revision its kernel took.
    pub applied_revision: u64,
    pub state: NodeState,
    /// Its last heartbeat, by the database's clock.
    #[serde(with = "time_ms")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub heartbeat_at: Millis,
    /// How long ago the first revision it lacks was deployed; 0 when it
    /// has them all.
    pub lag_ms: u64,
    /// Kernel entries that differed from the revision at its last check
    /// (verify repairs them), or that it could not put right since.
    pub drift: u64,
    /// Why its last apply failed.
    pub error: Option<String>,
    /// Its --capacity: no deploy may leave more entries than the smallest
    /// live node holds.
    pub capacity: u64,
}

impl NodeStatus {
    /// Whether this node's kernel took `revision`: a node whose last apply
    /// failed has not, whatever its row's revision says.
    pub fn has_applied(&self, revision: u64) -> bool {
        self.applied_revision >= revision && self.state != NodeState::Error
    }
}

/// What one node of a fleet protects from every node's deny entries: its
/// guardrails hold wherever an entry is staged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtectedSet {
    pub node: String,
    /// The node's own addresses.
    pub addrs: Vec<IpAddr>,
    /// Peers with a live SSH session to it.
    pub ssh_peers: Vec<IpAddr>,
    /// Its default gateways and nameservers.
    pub infrastructure: Vec<IpAddr>,
}

/// What a node reports of itself with each heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeReport {
    pub drift: u64,
    pub error: Option<String>,
    /// Its --capacity: a deploy larger than the smallest live node's is
    /// refused.
    pub capacity: u64,
    /// What it protects, when it could read it this time.
    pub protected: Option<ProtectedSet>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_s_age_and_the_revision_decide_the_state() {
        assert_eq!(NodeState::of(1_000, 3, 3, false), NodeState::InSync);
        assert_eq!(NodeState::of(1_000, 2, 3, false), NodeState::Behind);
        assert_eq!(NodeState::of(LIVE_MS, 3, 3, false), NodeState::Stale);
        assert_eq!(
            NodeState::of(OFFLINE_MS + 1, 3, 3, false),
            NodeState::Offline
        );
        assert_eq!(NodeState::of(1_000, 3, 3, true), NodeState::Error);
        assert!(!NodeState::Stale.is_live());
    }
}
