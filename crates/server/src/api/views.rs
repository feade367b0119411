//! View types that several handlers answer with (a task is shown on its own, in an
//! execution and in a conversation's queue item). A leaf among the handlers: they import it,
//! not each other.

use hilo_core::exec::HumanTask;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use hilo_runtime::time::rfc3339;

/// A human task.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TaskView {
    /// `<execution id>.<node key>`; percent-encode `/` (loop iterations) in URLs.
    pub id: String,
    pub execution_id: String,
    pub node_key: String,
    pub prompt: String,
    /// JSON Schema the answer must match.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub schema: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    pub skills: Vec<String>,
    /// pending, answered, closed.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub answer: Option<Value>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
}

impl From<HumanTask> for TaskView {
    fn from(t: HumanTask) -> TaskView {
        TaskView {
            id: format!("{}.{}", t.execution_id, t.node_key),
            execution_id: t.execution_id,
            node_key: t.node_key,
            prompt: t.prompt,
            schema: t.schema,
            assignee: t.assignee,
            skills: t.skills,
            status: t.status,
            answer: t.answer,
            created_at: rfc3339(t.created_at),
            deadline: t.deadline.map(rfc3339),
        }
    }
}
