//! What started an execution ([`StartedBy`]): the command line, the API, the queue, a
//! conversation, a parent, a trigger, an MCP or A2A call, a fork, an evaluation case or a
//! retry. Stored once, at creation, as one JSON column; re-exported by [`crate::exec`].

use serde::{Deserialize, Serialize};

/// What started an execution: stored as one JSON column, tagged by `kind`
/// (`{"kind":"schedule","trigger":"nightly/schedule-1","tick":"2025-03-30T09:00:00+02:00"}`).
/// Later kinds are added as variants; a store reads a kind it does not know as `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StartedBy {
    /// `hilo run`.
    Cli,
    /// The HTTP API.
    Api,
    /// The Redis queue.
    Queue,
    /// A conversation's message (the conversation's id).
    Conversation { conversation: String },
    /// A `workflow` node of another execution (the parent's id).
    Child { parent: String },
    /// A schedule's tick: the trigger (`WORKFLOW/ID`) and the tick time (RFC 3339 in the
    /// trigger's time zone).
    Schedule { trigger: String, tick: String },
    /// A webhook delivery: the trigger (`WORKFLOW/ID`) and the delivery's `webhook-id`.
    Webhook { trigger: String, delivery: String },
    /// A call of the workflow's MCP tool (`/mcp`, `hilo mcp`).
    Mcp,
    /// A message to the tenant's A2A agent (`/a2a`).
    A2a,
    /// `hilo fork`: another execution's record up to a node (`at`, a node key), live from
    /// there (`origin`: that execution's id).
    Fork { origin: String, at: String },
    /// `hilo eval`: a case (`case`, its name) of an evaluation (`run`, its id).
    Eval { run: String, case: String },
    /// A retry of a failed or compensated execution (`origin`, its id): from the node that
    /// failed (`at`, its key), the record of everything before it taken as a fork takes it,
    /// or from the start (`at` `None`: a new run of the same version, with the same input or
    /// an edited one).
    Retry {
        origin: String,
        #[serde(default)]
        at: Option<String>,
    },
}

impl StartedBy {
    /// The `kind` tag: `cli`, `api`, `queue`, `conversation`, `child`, `schedule`, `webhook`,
    /// `mcp`, `a2a`, `fork`, `eval`, `retry`.
    pub fn kind(&self) -> &'static str {
        match self {
            StartedBy::Cli => "cli",
            StartedBy::Api => "api",
            StartedBy::Queue => "queue",
            StartedBy::Conversation { .. } => "conversation",
            StartedBy::Child { .. } => "child",
            StartedBy::Schedule { .. } => "schedule",
            StartedBy::Webhook { .. } => "webhook",
            StartedBy::Mcp => "mcp",
            StartedBy::A2a => "a2a",
            StartedBy::Fork { .. } => "fork",
            StartedBy::Eval { .. } => "eval",
            StartedBy::Retry { .. } => "retry",
        }
    }

    /// Every `kind` tag, in the order of [`StartedBy::kind`]'s list.
    pub const KINDS: [&'static str; 12] = [
        "cli",
        "api",
        "queue",
        "conversation",
        "child",
        "schedule",
        "webhook",
        "mcp",
        "a2a",
        "fork",
        "eval",
        "retry",
    ];

    /// Whether the execution's first commit holds steps taken from another execution's
    /// record (a fork, an eval case, a retry from a failed node): one found without that
    /// commit must not run those steps again (see [`ExecMeta::forked`]).
    pub fn is_played(&self) -> bool {
        matches!(
            self,
            StartedBy::Fork { .. } | StartedBy::Eval { .. } | StartedBy::Retry { at: Some(_), .. }
        )
    }
}
