//! Defaults of agent nodes that more than one crate needs: `hilo-llm` runs agents with them,
//! and the server checks workflows against a tier's limits with the same values. Here, in
//! core, so that both read one definition.

/// How many model calls a `reasoning` agent makes at most when the node sets no
/// `with.max_iterations`.
pub const DEFAULT_MAX_ITERATIONS: u32 = 8;
