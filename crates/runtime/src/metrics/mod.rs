//! What the runtime feeds the metrics facade (the process's recorder, installed by the
//! binary, exports them):
//!
//! - [`observer`]: the engine observer (executions by workflow and status, nodes by kind,
//!   retries, compensations), installed by [`observe`] with the live-stream wake-ups;
//! - [`sampler`]: gauges read from the store every few seconds (queue depth, waiting and
//!   active executions, human tasks and queue, budget use).

use hilo_core::exec::{Event, EventKind};
use hilo_engine::Engine;
use hilo_engine::driver::Observed;

use crate::callbacks::Wake;
use crate::live::Live;

pub mod observer;
pub mod sampler;

pub use sampler::sample;

/// Installs the observers of `engine`: the metrics one (see [`observer`]), then the one that
/// wakes live streams (through `live`) and the callback sender (through `wake`, when an
/// execution ends). Both are added beside the engine's other execution observers (traces),
/// so the edge's own observer (`hilo worker`'s progress lines) is left in place.
pub fn observe(engine: &Engine, live: &Live, wake: &Wake) {
    observer::install(engine);
    let (live, wake) = (live.clone(), wake.clone());
    engine.add_execution_observer(std::sync::Arc::new(move |o: &Observed<'_>, e: &Event| {
        live.committed(o.id, e.seq);
        if is_terminal(e.kind) {
            wake.forget(o.id, true);
        }
    }));
}

fn is_terminal(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::ExecutionSucceeded
            | EventKind::ExecutionFailed
            | EventKind::ExecutionCompensated
            | EventKind::ExecutionHandedOver
            | EventKind::ExecutionCancelled
    )
}
