//! `/conversations` and `/hil`: conversations between customers, the AI and human agents;
//! the human agents, their inboxes and the queue; the KPIs. The logic is in
//! [`hilo_runtime::conversations`]; this is its HTTP face.
//!
//! - `customer`: `/conversations`, the conversation as its customer's side sees it: start,
//!   list, read, post a message, its messages, transitions and live stream.
//! - `holding`: what a human agent does with one conversation: claim, reply, resolve, hand
//!   back to the AI, release, transfer.
//! - `agents`: `/hil`: the human agents, their inboxes, the queue and the KPIs.
//! - `views`: the shapes the routes of all three answer with.
//!
//! Everything public is re-exported here, so that the routes and views keep their paths
//! (`api::conversations::create`, `api::conversations::ConversationView`, …).

mod agents;
mod customer;
mod holding;
mod views;

pub use agents::*;
pub use customer::*;
pub use holding::*;
pub use views::*;
