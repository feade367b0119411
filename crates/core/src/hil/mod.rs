//! Humans in the loop: conversations that move between the AI and human agents.
//!
//! - [`Conversation`], [`Message`] and [`Transition`]: a customer's conversation, its messages
//!   and every change of its status (who, when, why). [`ConvStatus::can_move_to`] is the
//!   state machine: new → ai_processing → finished | handover → pending_human → human_active →
//!   resolved | back_to_ai → ai_processing (and human_active → pending_human when an agent
//!   releases a conversation back to the queue).
//! - [`HumanAgent`]: a person who takes conversations and approvals, with skills, a capacity
//!   and a status; their load is counted from the work they hold, never stored apart.
//! - [`WorkItem`]: a conversation handed over, or a `human` node's pending task, waiting in
//!   the tenant's queue or held by an agent. [`route`] assigns queued items (priority, then
//!   age) to the online agent with every skill and the lowest load below capacity.
//! - [`HilOp`] and [`apply`]: every change to the queue, decided here from a [`HilSnapshot`]
//!   (the tenant's agents and open items) as [`HilChanges`]; the store runs it in one
//!   transaction under a per-tenant lock, so loads stay exact and nothing is assigned twice.
//! - [`HilStore`]: what a backend stores; [`stats`] turns its rows into the KPIs.
//!
//! Pure like the rest of core: no IO, no clock (times come in as milliseconds).
//!
//! Where things are (each file imports only those above it, and `crate::base`):
//!
//! | file | holds |
//! |---|---|
//! | `model.rs` | conversations, messages, transitions, human agents, work items |
//! | `status.rs` | the conversation status machine: `can_move_to`, [`move_conversation`] |
//! | `routing.rs` | [`queue_order`], [`pick_agent`], [`route`] |
//! | `draft.rs` | [`HilSnapshot`], [`HilChanges`], and the draft an operation changes in place |
//! | `lifecycle.rs` | the operations that bring work in and take it out: handover, tasks, resolve, back to AI |
//! | `holding.rs` | the operations on who holds an item: claim, release, transfer (to an agent, to the queue) |
//! | `ops.rs` | [`HilOp`], [`HilError`], [`apply`]: dispatches to one fn per op |
//! | `stats.rs` | the KPIs: [`StatsRow`] → [`HilStats`] |
//! | `store.rs` | the [`HilStore`] trait and [`ConvFilter`] |
//!
//! Everything is re-exported here: callers write `hilo_core::hil::Conversation`.

mod draft;
mod holding;
mod lifecycle;
mod model;
mod ops;
mod routing;
mod stats;
mod status;
mod store;

#[cfg(test)]
mod fixtures;

pub use draft::{HilChanges, HilSnapshot};
pub use model::*;
pub use ops::*;
pub use routing::*;
pub use stats::*;
pub use status::*;
pub use store::*;
