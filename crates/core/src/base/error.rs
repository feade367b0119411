//! The errors of every store backend ([`StoreError`], with the store's [`Result`]) and of
//! humans-in-the-loop operations ([`HilError`], which a store error can carry). Each has a
//! stable code for APIs and `--json` output.

use super::conv_status::ConvStatus;

/// Errors of any store backend. Codes are stable.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "workflow {name}@{version} already exists with different content; versions are immutable: import the change as version {next} (or higher)",
        next = version + 1
    )]
    VersionConflict { name: String, version: u64 },
    #[error("workflow `{name}` not found; `hilo workflows list` shows the stored workflows")]
    WorkflowNotFound { name: String },
    #[error(
        "workflow {name}@{version} not found; `hilo workflows versions {name}` lists its versions"
    )]
    VersionNotFound { name: String, version: u64 },
    #[error(
        "the stored definition of {name}@{version} no longer decodes ({detail}); the database was changed outside hilo or by a newer hilo"
    )]
    Corrupt {
        name: String,
        version: u64,
        detail: String,
    },
    #[error(
        "workflow `{name}` has {running} execution(s) not yet finished; cancel them or wait for them to end, then delete it"
    )]
    WorkflowInUse { name: String, running: u64 },
    #[error("execution `{id}` not found; `hilo executions list` shows the executions")]
    ExecutionNotFound { id: String },
    #[error(
        "execution `{id}` has no human task at node `{node}`; `hilo executions show {id}` lists its pending tasks"
    )]
    TaskNotFound { id: String, node: String },
    #[error(
        "the human task of execution `{id}` at node `{node}` is {status}, not pending: it cannot be answered again"
    )]
    TaskNotPending {
        id: String,
        node: String,
        status: String,
    },
    #[error("execution `{id}` is {status}: {what}")]
    ExecutionState {
        id: String,
        status: String,
        what: String,
    },
    #[error(
        "customer `{customer}` of tenant `{tenant}` has {running} execution(s) not yet finished (e.g. `{example}`); cancel them (`hilo cancel ID`) or wait for them to end, then forget the customer again"
    )]
    CustomerActive {
        tenant: String,
        customer: String,
        running: u64,
        example: String,
    },
    #[error("cannot open the database {location}: {detail}")]
    Open { location: String, detail: String },
    #[error("database migration failed: {0}")]
    Migration(String),
    #[error("database error: {0}")]
    Backend(String),
    #[error("the store is not healthy: {0}")]
    Unhealthy(String),
    #[error(transparent)]
    Hil(#[from] HilError),
}

impl StoreError {
    /// Stable code for APIs and `--json` output.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::VersionConflict { .. } => "VERSION_CONFLICT",
            StoreError::WorkflowNotFound { .. } => "WORKFLOW_NOT_FOUND",
            StoreError::VersionNotFound { .. } => "VERSION_NOT_FOUND",
            StoreError::Corrupt { .. } => "STORE_CORRUPT",
            StoreError::WorkflowInUse { .. } => "WORKFLOW_IN_USE",
            StoreError::ExecutionNotFound { .. } => "EXECUTION_NOT_FOUND",
            StoreError::TaskNotFound { .. } => "TASK_NOT_FOUND",
            StoreError::TaskNotPending { .. } => "TASK_NOT_PENDING",
            StoreError::ExecutionState { .. } => "EXECUTION_STATE",
            StoreError::CustomerActive { .. } => "CUSTOMER_ACTIVE",
            StoreError::Open { .. } => "STORE_OPEN",
            StoreError::Migration(_) => "STORE_MIGRATION",
            StoreError::Backend(_) => "STORE_BACKEND",
            StoreError::Unhealthy(_) => "STORE_UNHEALTHY",
            StoreError::Hil(e) => e.code(),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Errors of humans-in-the-loop operations. Each names the conversation, item or agent and
/// says what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HilError {
    #[error("conversation `{id}` not found; GET /api/v1/conversations lists them")]
    ConversationNotFound { id: String },
    #[error("conversation `{id}` is {from} and cannot move to {to}: {what}")]
    InvalidTransition {
        id: String,
        from: ConvStatus,
        to: ConvStatus,
        what: String,
    },
    #[error("human agent `{id}` not found; `hilo hil agents list` shows the tenant's agents")]
    AgentNotFound { id: String },
    #[error("a human agent with e-mail `{email}` already exists (id `{id}`); update that one")]
    AgentEmailTaken { email: String, id: String },
    #[error("{item} is not in the human queue; `hilo inbox` lists what is")]
    ItemNotFound { item: String },
    #[error("{item} is held by `{holder}`, not by `{agent}`: {what}")]
    NotHolder {
        item: String,
        agent: String,
        holder: String,
        what: String,
    },
    #[error("agent `{agent}` cannot take {item}: {why}")]
    CannotTake {
        item: String,
        agent: String,
        why: String,
    },
    #[error("invalid {field}: {why}")]
    Invalid { field: String, why: String },
    #[error("conversation `{id}` changed while this was being done; try again")]
    Conflict { id: String },
}

impl HilError {
    /// Stable code for APIs and `--json` output.
    pub fn code(&self) -> &'static str {
        match self {
            HilError::ConversationNotFound { .. } => "CONVERSATION_NOT_FOUND",
            HilError::InvalidTransition { .. } => "INVALID_TRANSITION",
            HilError::AgentNotFound { .. } => "AGENT_NOT_FOUND",
            HilError::AgentEmailTaken { .. } => "AGENT_EMAIL_TAKEN",
            HilError::ItemNotFound { .. } => "ITEM_NOT_FOUND",
            HilError::NotHolder { .. } => "NOT_HOLDER",
            HilError::CannotTake { .. } => "CANNOT_TAKE",
            HilError::Invalid { .. } => "INVALID_HIL_INPUT",
            HilError::Conflict { .. } => "CONFLICT",
        }
    }
}
