//! The engine's errors: what its API refuses or fails with, each with a stable code.

use hilo_core::store::StoreError;

/// Errors of the engine's API. Codes are stable.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the input of workflow {workflow} is invalid:\n{}", errors.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    InvalidInput {
        workflow: String,
        errors: Vec<String>,
    },
    #[error("the answer to node `{node}` of execution {id} is invalid (the execution keeps waiting):\n{}", errors.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    InvalidAnswer {
        id: String,
        node: String,
        errors: Vec<String>,
    },
    #[error(
        "execution {id} is being run by {owner} (lease until {until}); wait for it, or for its lease to expire if that process died"
    )]
    LeaseHeld {
        id: String,
        owner: String,
        until: String,
    },
    #[error("lost the lease of execution {id}: another worker took it over")]
    LeaseLost { id: String },
    #[error("the definition of execution {id} cannot be loaded: {detail}")]
    Definition { id: String, detail: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl EngineError {
    pub fn code(&self) -> &'static str {
        match self {
            EngineError::InvalidInput { .. } => "INVALID_INPUT",
            EngineError::InvalidAnswer { .. } => "INVALID_ANSWER",
            EngineError::LeaseHeld { .. } => "LEASE_HELD",
            EngineError::LeaseLost { .. } => "LEASE_LOST",
            EngineError::Definition { .. } => "DEFINITION",
            EngineError::Store(e) => e.code(),
        }
    }

    /// Invalid input (exit code 2) rather than a failure.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            EngineError::InvalidInput { .. } | EngineError::InvalidAnswer { .. }
        )
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
