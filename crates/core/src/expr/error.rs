//! [`ExprError`]: why an evaluation failed. Apart from `expr.rs` so that the evaluators
//! (`interp`, `filters`) can return it without importing their parent.

use std::fmt;

use super::limits::{Limit, LimitError};

/// Why an evaluation failed: a limit (named) or an ordinary error of the expression or
/// template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExprError {
    Limit(LimitError),
    Eval(String),
}

impl ExprError {
    /// The limit that was hit, if one was.
    pub fn limit(&self) -> Option<Limit> {
        match self {
            ExprError::Limit(l) => Some(l.limit),
            ExprError::Eval(_) => None,
        }
    }
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExprError::Limit(l) => l.fmt(f),
            ExprError::Eval(m) => f.write_str(m),
        }
    }
}

impl From<LimitError> for ExprError {
    fn from(l: LimitError) -> Self {
        ExprError::Limit(l)
    }
}
