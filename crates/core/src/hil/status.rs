//! The conversation status machine: which moves [`ConvStatus::can_move_to`] allows, and
//! [`move_conversation`], which makes one and records it as a [`Transition`] (or refuses,
//! naming both states). Every status change of a conversation goes through here.

use super::model::{Conversation, Transition};
use crate::base::{ConvStatus, HilError};

impl ConvStatus {
    /// Whether the state machine allows `self → to`.
    pub fn can_move_to(self, to: ConvStatus) -> bool {
        use ConvStatus::*;
        matches!(
            (self, to),
            (New, AiProcessing)
                | (AiProcessing, Finished)
                | (AiProcessing, Handover)
                | (Handover, PendingHuman)
                | (PendingHuman, HumanActive)
                | (HumanActive, Resolved)
                | (HumanActive, BackToAi)
                | (HumanActive, PendingHuman)
                | (BackToAi, AiProcessing)
        )
    }

    /// Finished and resolved conversations take no more messages.
    pub fn is_ended(self) -> bool {
        matches!(self, ConvStatus::Finished | ConvStatus::Resolved)
    }
}

/// Moves `c` to `to`, recording why, or refuses with an error naming both states.
pub fn move_conversation(
    c: &mut Conversation,
    to: ConvStatus,
    actor: &str,
    reason: &str,
    at: i64,
    out: &mut Vec<Transition>,
) -> std::result::Result<(), HilError> {
    if !c.status.can_move_to(to) {
        let allowed: Vec<&str> = ConvStatus::ALL
            .iter()
            .copied()
            .filter(|s| c.status.can_move_to(*s))
            .map(ConvStatus::as_str)
            .collect();
        return Err(HilError::InvalidTransition {
            id: c.id.clone(),
            from: c.status,
            to,
            what: if allowed.is_empty() {
                format!("{} is final", c.status)
            } else {
                format!(
                    "from {} it can only move to {}",
                    c.status,
                    allowed.join(", ")
                )
            },
        });
    }
    out.push(Transition {
        conversation_id: c.id.clone(),
        from: c.status,
        to,
        actor: actor.to_string(),
        reason: reason.to_string(),
        at,
    });
    c.status = to;
    c.updated_at = at;
    Ok(())
}

/// Refuses, naming both states, a move the conversation's status does not allow.
pub(super) fn check_move(
    conv: &Option<Conversation>,
    id: &str,
    to: ConvStatus,
) -> std::result::Result<(), HilError> {
    match conv {
        Some(c) if c.id == id => {
            let mut probe = c.clone();
            move_conversation(&mut probe, to, "", "", 0, &mut Vec::new())
        }
        _ => Err(HilError::ConversationNotFound { id: id.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hil::fixtures::conversation;

    /// All 64 pairs: the 9 moves of the state machine are recorded with who, when and why;
    /// every other pair is refused with an error naming both states, and changes nothing.
    #[test]
    fn every_transition_is_allowed_or_refused_naming_both_states() {
        use ConvStatus::*;
        let allowed = [
            (New, AiProcessing),
            (AiProcessing, Finished),
            (AiProcessing, Handover),
            (Handover, PendingHuman),
            (PendingHuman, HumanActive),
            (HumanActive, Resolved),
            (HumanActive, BackToAi),
            (HumanActive, PendingHuman),
            (BackToAi, AiProcessing),
        ];
        for &from in ConvStatus::ALL {
            for &to in ConvStatus::ALL {
                let mut c = conversation(from);
                let mut tr = Vec::new();
                let r = move_conversation(&mut c, to, "agent-7", "because", 42, &mut tr);
                if allowed.contains(&(from, to)) {
                    assert!(r.is_ok(), "{from} → {to} should be allowed");
                    assert_eq!(c.status, to);
                    assert_eq!(
                        tr,
                        vec![Transition {
                            conversation_id: "c1".into(),
                            from,
                            to,
                            actor: "agent-7".into(),
                            reason: "because".into(),
                            at: 42,
                        }]
                    );
                } else {
                    let e = r.expect_err("refused");
                    assert_eq!(e.code(), "INVALID_TRANSITION");
                    let text = e.to_string();
                    assert!(
                        text.contains(from.as_str()) && text.contains(to.as_str()),
                        "{text}"
                    );
                    assert_eq!(c.status, from, "a refused move changes nothing");
                    assert!(tr.is_empty());
                }
            }
        }
        assert!(Finished.is_ended() && Resolved.is_ended());
    }
}
