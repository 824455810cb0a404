//! What the core refuses or fails at, with the fields a caller needs to
//! explain it. The server turns these into the API's error classes; the
//! core itself knows nothing of HTTP.

use std::path::PathBuf;

use crate::{
    dataplane::DataplaneError,
    model::{DurationError, Target, TargetError},
    policy::{Refusal, import},
    store::StoreError,
};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(Box<StoreError>),
    #[error(transparent)]
    Dataplane(Box<DataplaneError>),
    #[error(
        "the deployed revision holds {entries} entries, more than --capacity {capacity}: start with a larger --capacity (the old filter keeps running meanwhile)"
    )]
    TooSmall { entries: usize, capacity: u32 },
    #[error(transparent)]
    Fleet(#[from] super::FleetError),
}

impl From<StoreError> for StartError {
    fn from(e: StoreError) -> Self {
        StartError::Store(Box::new(e))
    }
}

impl From<DataplaneError> for StartError {
    fn from(e: DataplaneError) -> Self {
        StartError::Dataplane(Box::new(e))
    }
}

/// One guarded line of an import file.
#[derive(Debug)]
pub struct GuardedLine {
    pub line: usize,
    pub target: Target,
    pub refusal: Refusal,
}

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("no targets given")]
    NoTargets,
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Duration(#[from] DurationError),
    #[error("a TTL must be at least 1s")]
    TtlZero,
    #[error("a TTL must be at most 100 years: use never for a permanent entry")]
    TtlTooLong,
    #[error("monitor mode is for deny entries; the allowlist has none")]
    MonitorOnAllow,
    #[error("refused: {}{}", refusals[0].1, more(refusals.len(), "refusals"))]
    Refused { refusals: Vec<(Target, Refusal)> },
    #[error(
        "cannot read {what} ({source}), so the guardrails cannot run: use --force to add without them"
    )]
    GuardUnavailable {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The rate detector's reading of the host failed; `--force` has no
    /// meaning there, so it says what the detector does instead.
    #[error(
        "cannot read {what} ({source}), so the rate detector lists no offender until it can: check the daemon's permissions"
    )]
    RateHostUnreadable {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("a dry run stages nothing, so there is nothing to deploy: leave out deploy")]
    DryRunAndDeploy,
    #[error("force lets guarded lines in and skip_guarded leaves them out: choose one")]
    ForceAndSkipGuarded,
    #[error("a json import carries each entry's list: leave out list")]
    ListWithJson,
    #[error(
        "{} invalid {}, e.g. line {}: {:?}: {}; nothing was staged (fix them, or pass --skip-invalid)",
        lines.len(),
        if lines.len() == 1 { "line" } else { "lines" },
        lines[0].line,
        lines[0].text,
        lines[0].error
    )]
    InvalidLines { lines: Vec<import::Invalid> },
    #[error(
        "{name:?} cannot name a source: it must be non-empty and without spaces; pass --source NAME"
    )]
    BadSource { name: String },
    #[error(
        "{source_name:?} is not a source an admin adds under: use manual (the default) or import:NAME; feeds and the detectors add their own listings"
    )]
    BadAddSource { source_name: String },
    #[error(
        "{name:?} is no preset, so the feed needs a URL: denylist feed add {name} URL (presets: spamhaus-drop, spamhaus-dropv6, firehol-level1, blocklist-de, feodo, ipsum-3)"
    )]
    FeedNeedsUrl { name: String },
    #[error("a feed is fetched at most every minute: give --every 1m or longer")]
    FeedTooOften,
    #[error("--max-change is a percentage: give 1 to 100")]
    FeedMaxChange,
    #[error("--max-width is an IPv4 prefix length: give 1 to 32 (e.g. 12 admits a /12)")]
    FeedMaxWidth,
    #[error(
        "the header file {} is not a file under the feed directory {}: put it there (mode 600), or start denylistd with another --feed-dir",
        path.display(),
        dir.display()
    )]
    FeedHeaderFile { path: PathBuf, dir: PathBuf },
    #[error(
        "feed {name} holds no list back: nothing to approve (denylist feed list shows each feed's state)"
    )]
    FeedNotHeld { name: String },
    #[error(transparent)]
    Fetch(#[from] super::fetch::FetchError),
    #[error("a report's weight is 1 to 10, not {weight}: report again with --weight 1 to 10")]
    ReportWeight { weight: u8 },
    #[error("a report needs a reason of 1 to 200 characters: say what the address did")]
    ReportReason,
    #[error("{reason}")]
    BadAutoPolicy { reason: &'static str },
    #[error(
        "the rate detector is off, so it counts no source: turn it on with `denylist auto set --mode monitor`"
    )]
    DetectorOff,
    #[error(
        "this denylistd keeps its own store and has no fleet: nodes are for daemons started with --store postgres://… (docs/fleet.md)"
    )]
    NotFleet,
    #[error(
        "this deploy would leave {entries} entries, more than node {node} holds (--capacity {capacity}): raise its --capacity first; nothing was changed"
    )]
    FleetCapacity {
        entries: u64,
        node: String,
        capacity: u64,
    },
    #[error(
        "{} lines are refused by the guardrails, e.g. {}; nothing was staged (pass --force to let them in, or --skip-guarded to leave them out)",
        lines.len(),
        lines[0].refusal
    )]
    GuardedLines { lines: Vec<GuardedLine> },
    #[error(
        "the draft changed since you reviewed it (draft_seq {current}, reviewed {reviewed}): review it again (denylist diff); nothing was deployed"
    )]
    DraftChanged { reviewed: u64, current: u64 },
    #[error("a page holds 1 to 500 entries, not {limit}: give limit 1 to 500")]
    PageLimit { limit: u32 },
    #[error(
        "{cursor:?} is no cursor: give the next of the page before, or none for the first page"
    )]
    BadCursor { cursor: String },
    #[error(
        "the cursor {cursor:?} is from a page in another order: start again without it, or keep sort and desc as they were"
    )]
    CursorOrder { cursor: String },
    #[error("{target} is not on the deny list: nothing was staged")]
    NotOnDenyList { target: Target },
    #[error("deploy failed, the kernel is unchanged and the changes stay staged: {source}")]
    DeployFailed {
        #[source]
        source: Box<DataplaneError>,
    },
    #[error(
        "deploy failed: the store could not record it ({source}); the kernel was rolled back and the changes stay staged"
    )]
    CommitFailed {
        #[source]
        source: Box<StoreError>,
    },
    #[error("moving to larger maps failed ({source}); nothing changed and the filter goes on")]
    GrowFailed {
        #[source]
        source: Box<DataplaneError>,
    },
    #[error("there is no interface {iface}")]
    NoInterface { iface: String },
    #[error(
        "denylistd does not look after {iface}: `denylist status` lists the interfaces it does"
    )]
    NotManaged { iface: String },
    #[error("{source}{}", held_by.as_ref().map(|p| format!(": {iface} already carries XDP {p}; detach it first, nothing was replaced")).unwrap_or_default())]
    Attach {
        iface: String,
        #[source]
        source: Box<DataplaneError>,
        /// Another tool's XDP program on the interface.
        held_by: Option<String>,
    },
    #[error("backup failed: {source}; check the free space in {dir}")]
    Backup {
        dir: String,
        #[source]
        source: Box<StoreError>,
    },
    #[error(transparent)]
    Store(Box<StoreError>),
    #[error(transparent)]
    Dataplane(Box<DataplaneError>),
}

// Both boxed: aya's and SQLite's errors are large, and every result of the
// core carries this type.
impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> Self {
        CoreError::Store(Box::new(e))
    }
}

impl From<DataplaneError> for CoreError {
    fn from(e: DataplaneError) -> Self {
        CoreError::Dataplane(Box::new(e))
    }
}

/// " (and N more refusals)" when there is more than one.
fn more(n: usize, what: &str) -> String {
    if n > 1 {
        format!(" (and {} more {what})", n - 1)
    } else {
        String::new()
    }
}
