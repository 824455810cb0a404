//! What can go wrong in the store, each with what to do about it.

use std::path::PathBuf;

use crate::model::{List, Target, TargetError};

use super::sqlite::SCHEMA_VERSION;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the store {path} failed its integrity check ({detail}); denylistd will not start on it and has not changed it: restore a backup (docs/operations.md) or move the file away to start empty. Filtering goes on with the pinned maps."
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "the state directory {path} is not writable ({detail}): fix its permissions or choose another --state-dir"
    )]
    NotWritable { path: PathBuf, detail: String },
    #[error(
        "{path} is a symbolic link, and denylistd opens none of its files through one: remove the link"
    )]
    Symlink { path: PathBuf },
    #[error(
        "the store {path} has schema version {found}, newer than this denylistd understands ({SCHEMA_VERSION}): upgrade denylistd"
    )]
    Schema { path: PathBuf, found: i64 },
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{target} is not on the {} list: nothing was staged", list.as_str())]
    NotFound { target: Target, list: List },
    #[error(
        "{target} is on the {} list, but not listed by {source_name} (it is listed by {}): nothing was staged",
        list.as_str(),
        listed.join(", ")
    )]
    NoListing {
        target: Target,
        list: List,
        source_name: String,
        listed: Vec<String>,
    },
    #[error("{target} ({}) has no pending change to deploy: `denylist diff` lists them", list.as_str())]
    NotPending { target: Target, list: List },
    #[error(
        "revision {rev} does not exist (or the audit retention pruned it): `denylist history` lists the revisions"
    )]
    NoRevision { rev: u64 },
    #[error(
        "there are {count} pending changes that this would overwrite: deploy or discard them, or pass --force"
    )]
    Conflict { count: usize },
    #[error(
        "all 2^32 entry ids have been used: export the entries, start a new store, and import them"
    )]
    IdsExhausted,
    #[error("the store holds an unreadable {what} {value:?}: restore a backup")]
    Unreadable { what: &'static str, value: String },
    #[error("the store holds an unreadable target {value:?} ({source}): restore a backup")]
    UnreadableTarget {
        value: String,
        #[source]
        source: TargetError,
    },
    #[error("a feed named {name:?} exists already: pick another name, or remove it first")]
    FeedExists { name: String },
    #[error("there is no feed named {name:?}: `denylist feed list` shows them")]
    NoFeed { name: String },
    #[error("the store holds a pending {op} without its entry: restore a backup")]
    MissingEntry { op: &'static str },
    #[error("the store's meta table has no {key}: restore a backup")]
    MissingMeta { key: String },
    #[error("a row changed while listing: list again")]
    ListingChanged,
    #[error(
        "the fleet database refused: {}; check this node's role, password and grants (docs/fleet.md)",
        server_says(.0)
    )]
    Postgres(#[from] postgres::Error),
    #[error(
        "the fleet database {database} cannot be reached ({source}), so nothing was changed: filtering goes on at the revision last applied; try again once PostgreSQL is back"
    )]
    FleetUnavailable {
        database: String,
        #[source]
        source: postgres::Error,
    },
    #[error(
        "the fleet database {database} is not the server this node was told to trust ({detail}): check sslrootcert, and that --store names the host its certificate names (docs/fleet.md, TLS); nothing was changed, and filtering goes on at the revision last applied"
    )]
    FleetUntrusted {
        database: String,
        /// What TLS said of the server.
        detail: String,
        #[source]
        source: postgres::Error,
    },
    #[error(
        "the fleet database has no denylist tables: create them once with `denylistd --store URL --init-fleet` as the database's owner (docs/fleet.md)"
    )]
    FleetUninitialized,
    #[error(
        "the fleet database has no role denylist_node: create it first (CREATE ROLE denylist_node NOLOGIN), then one login role in it per node (docs/fleet.md)"
    )]
    FleetNoNodeRole,
    #[error(
        "a node named {node:?} is live already (another denylistd holds its name in the fleet's database): give this one another --node"
    )]
    NodeNameTaken { node: String },
    #[error(
        "the store {path} holds a single host's history, and a fleet node starts from an empty --state-dir: move it away, or start this node with another --state-dir"
    )]
    LocalHistory { path: PathBuf },
    #[error("the store {path} follows a fleet already: there is nothing to move")]
    AlreadyFleet { path: PathBuf },
    #[error(
        "the fleet database holds a fleet already (log entries or a snapshot): a single host's store moves only into an empty one"
    )]
    FleetNotEmpty,
    #[error("cannot write a fleet log entry: {0}")]
    LogEncoding(#[source] serde_json::Error),
    #[error(
        "fleet log entry {seq} cannot be read ({source}): it was written by a newer denylistd; upgrade this one"
    )]
    LogEntryUnreadable {
        seq: u64,
        #[source]
        source: serde_json::Error,
    },
    #[error("there is no node named {node:?}: `denylist nodes` lists them")]
    NoNode { node: String },
    #[error(
        "node {node:?} is live (its last heartbeat is {age_s} s old): stop its denylistd first; a node is forgotten once it has been offline for 5 minutes"
    )]
    NodeLive { node: String, age_s: i64 },
    #[error(
        "the fleet database has schema version {found}, newer than this denylistd understands ({}): upgrade denylistd",
        super::fleet::FLEET_SCHEMA_VERSION
    )]
    FleetSchema { found: i64 },
    #[error(
        "a deploy was written without its plan: plan it again (a denylistd bug; please report it)"
    )]
    NotPlanned,
    #[error(
        "the connection to the fleet database broke during the change, so nothing was changed: try again"
    )]
    FleetConnectionLost,
    #[error(
        "the fleet command {command:?} returned another call's result (a denylistd bug; please report it)"
    )]
    CommandResult { command: &'static str },
    #[error(
        "the fleet's log lacks the entries after {at} up to {next}, which this node has not applied, and no snapshot is past them: restore them, or start this node with an empty state directory"
    )]
    LogGap { at: u64, next: u64 },
    #[error(
        "fleet log entry {seq} failed to apply here ({source}); this node stops following until it loads a fresh snapshot"
    )]
    Diverged {
        seq: u64,
        #[source]
        source: Box<StoreError>,
    },
}

impl StoreError {
    /// The fleet's database is out of reach: nothing this host did wrong.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            StoreError::FleetUnavailable { .. }
                | StoreError::FleetUntrusted { .. }
                | StoreError::FleetConnectionLost
        )
    }

    /// A target read back from the store.
    pub(crate) fn target(value: &str) -> Result<Target, StoreError> {
        Target::parse(value).map_err(|source| StoreError::UnreadableTarget {
            value: value.to_string(),
            source,
        })
    }

    /// A list name read back from the store.
    pub(crate) fn list(value: &str) -> Result<List, StoreError> {
        value.parse().map_err(|_| StoreError::Unreadable {
            what: "list",
            value: value.to_string(),
        })
    }
}

/// What the server said, when it was the server that refused: the
/// client's own `Display` says only "db error".
fn server_says(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}
