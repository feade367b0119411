//! Defaults of agent nodes that more than one crate needs: `hilo-llm` runs agents with them,
//! and the server checks workflows against a tier's limits with the same values. Here, in
//! core, so that both read one definition.

/// How many model calls a `reasoning` agent makes at most when the node sets no
/// `with.max_iterations`.
pub const DEFAULT_MAX_ITERATIONS: u32 = 8;

/// The LLM profile a `simple` agent uses when the node names none.
pub const SIMPLE_PROFILE: &str = "fast";

/// The LLM profile a `reasoning` agent uses when the node names none.
pub const REASONING_PROFILE: &str = "balanced";

/// The LLM profile a `planner` agent uses when the node names none.
pub const PLANNER_PROFILE: &str = "powerful";

/// How many times a `planner` agent re-plans after a failed step when the node sets no
/// `with.max_retries`.
pub const PLANNER_MAX_RETRIES: u32 = 2;

/// LLM profiles every installation has.
pub const BUILTIN_PROFILES: &[&str] = &[SIMPLE_PROFILE, REASONING_PROFILE, PLANNER_PROFILE];

/// The LLM profile a `code` agent uses when the node names none.
pub const CODE_PROFILE: &str = "balanced";

/// How many times a `code` agent's script, or a planner's emitted workflow, goes back to the
/// model with what was wrong when the node sets no `with.max_repairs`.
pub const DEFAULT_MAX_REPAIRS: u32 = 2;
