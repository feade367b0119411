//! Everything that starts executions from outside a request of the API: the Redis queue
//! ([`queue`]), schedules and webhooks. Each starts an execution through the one start path,
//! [`crate::runs::start`], saying what started it.

pub mod queue;

use std::future::Future;

use tokio::task::JoinHandle;

use crate::Runtime;

/// Starts the ingress loops that run in every process (the queue is started by
/// [`Runtime::run`] when configured).
pub(crate) fn spawn<F, S>(_rt: &Runtime, _stopped: S) -> Vec<JoinHandle<()>>
where
    S: Fn() -> F,
    F: Future<Output = ()> + Send + 'static,
{
    Vec::new()
}
