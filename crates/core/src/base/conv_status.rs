//! [`ConvStatus`]: the names of a conversation's statuses. Here, in the leaf, because
//! [`HilError`](super::HilError) (and so every store error) names them; which moves between
//! them are allowed (the state machine) is in `hil::status`.

use serde::{Deserialize, Serialize};

use super::named::named;

/// A conversation's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConvStatus {
    /// Created, no message handled yet.
    New,
    /// The AI has it: customer messages run its workflow.
    AiProcessing,
    /// Ended by the AI.
    Finished,
    /// The AI gave it up; on its way to the queue.
    Handover,
    /// In the human queue (assigned to an agent's inbox or not yet), not claimed.
    PendingHuman,
    /// A human agent has claimed it: customer messages go to that agent.
    HumanActive,
    /// Ended by a human agent.
    Resolved,
    /// A human agent sent it back to the AI (with a note); on its way to ai_processing.
    BackToAi,
}

named!(ConvStatus {
    New => "new",
    AiProcessing => "ai_processing",
    Finished => "finished",
    Handover => "handover",
    PendingHuman => "pending_human",
    HumanActive => "human_active",
    Resolved => "resolved",
    BackToAi => "back_to_ai",
});

impl std::fmt::Display for ConvStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
