//! The wire: the control API's bodies and errors as both the daemon and
//! its clients read them (docs/api.md). It knows the model and nothing
//! above it, so the CLI builds from model and wire alone.

mod auto;
mod error;
mod limits;
mod request;
mod response;

pub use auto::{AutoSetRequest, FeedAddRequest, ReportRequest, ReportResponse};
pub use error::{ApiError, Class};
pub use limits::{BODY_LIMIT, DEFAULT_SOCKET, IMPORT_LIMIT};
pub use request::{
    AddRequest, AttachRequest, DeployRequest, DetachRequest, ImportParams, Key, ModeRequest,
    PageQuery, RemoveRequest, RollbackRequest, StageItem,
};
pub use response::{
    Capacity, Change, CheckResponse, Counts, DeployPhases, DeployResponse, Diff, ImportResponse,
    Interface, ListCounts, RollbackResponse, SeqResponse, StageResponse, Staged, StatItem, Status,
    StatusCounters, VerifyResponse,
};
