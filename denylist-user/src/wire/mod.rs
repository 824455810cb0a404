//! The wire: the control API's bodies and errors as both the daemon and
//! its clients read them (docs/api.md). It knows the model and nothing
//! above it, so the CLI builds from model and wire alone.

mod auto;
mod behalf;
mod error;
mod limits;
mod page;
mod request;
mod response;

pub use auto::{AutoSetRequest, AutoStatus, FeedAddRequest, ReportRequest, ReportResponse};
pub use behalf::{
    ON_BEHALF_HEADER, ROLE_HEADER, WEB_USER_MAX, WebRole, WebRoleError, WebUser, WebUserError,
    web_user_name_ok,
};
pub use error::{ApiError, Class};
pub use limits::{BODY_LIMIT, DEFAULT_SOCKET, IMPORT_LIMIT, STALE_HEADER};
pub use page::{
    AuditQuery, EntryMode, EntryPage, EntryPageQuery, Hits, PAGE_DEFAULT, PAGE_MAX, PageEntry,
    PageSort, Pending, REVISION_DIFF_DEFAULT, RevisionDiff, RevisionQuery,
};
pub use request::{
    AddRequest, AttachRequest, DeployRequest, DetachRequest, ImportParams, Key, ModeRequest,
    PageQuery, RemoveRequest, RollbackRequest, StageItem,
};
pub use response::{
    Capacity, Change, CheckResponse, Counts, DeployPhases, DeployResponse, Diff, ImportResponse,
    Interface, ListCounts, Refusal, RollbackResponse, SeqResponse, StageResponse, Staged, StatItem,
    Status, StatusCounters, VerifyResponse,
};
