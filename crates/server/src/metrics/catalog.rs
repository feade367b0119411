//! Every metric hilo records, in one list: its name, type, unit and help text. [`describe`]
//! gives each its `# HELP` line (the recorder prints one only for a described metric); the
//! dashboards and alerts under `deploy/` read these names, and a test checks that every
//! metric a run produces is listed here.
//!
//! Labels only ever carry values from closed sets (status, node kind, outcome, window) or
//! names an operator configures (workflow, tool, provider, model, profile, tenant): never an
//! execution id, a key, an input or anything a user typed.

use metrics::Unit;

/// What kind of metric a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric: name, kind, unit, labels and help text.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: Option<Unit>,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

const fn m(
    name: &'static str,
    kind: Kind,
    unit: Option<Unit>,
    labels: &'static [&'static str],
    help: &'static str,
) -> Metric {
    Metric {
        name,
        kind,
        unit,
        labels,
        help,
    }
}

use Kind::{Counter as C, Gauge as G, Histogram as H};

const S: Option<Unit> = Some(Unit::Seconds);

/// Every metric hilo records.
pub const METRICS: &[Metric] = &[
    // Executions and nodes (the engine observer).
    m(
        "hilo_executions_started_total",
        C,
        None,
        &["tenant"],
        "Executions created through this server (API, queue, conversations), by tenant.",
    ),
    m(
        "hilo_schedule_fires_total",
        C,
        None,
        &["tenant"],
        "Schedule ticks this process started (a tick another process started is not counted here), by tenant.",
    ),
    m(
        "hilo_webhook_deliveries_total",
        C,
        None,
        &["tenant", "outcome"],
        "Webhook deliveries by tenant and outcome: started, repeated, or the refusal's code (WEBHOOK_UNAUTHORIZED, WEBHOOK_NOT_FOUND, BODY_TOO_LARGE, ...).",
    ),
    m(
        "hilo_executions_finished_total",
        C,
        None,
        &["tenant", "workflow", "status"],
        "Executions that ended, by tenant, workflow and final status (succeeded, failed, compensated, handed_over, cancelled).",
    ),
    m(
        "hilo_executions_pruned_total",
        C,
        None,
        &[],
        "Finished executions deleted by retention (the sweep, `hilo executions prune`), with their history and checkpoints.",
    ),
    m(
        "hilo_execution_duration_seconds",
        H,
        S,
        &["tenant", "workflow", "status"],
        "Time from start to end of executions that started and ended in this process.",
    ),
    m(
        "hilo_execution_waits_total",
        C,
        None,
        &["tenant", "workflow"],
        "Times an execution went to wait (for a person, a timer, a child execution).",
    ),
    m(
        "hilo_nodes_total",
        C,
        None,
        &["kind", "status"],
        "Node runs that ended, by node kind and outcome (succeeded, failed).",
    ),
    m(
        "hilo_node_duration_seconds",
        H,
        S,
        &["kind", "status"],
        "Node run latency by node kind and outcome.",
    ),
    m(
        "hilo_node_retries_total",
        C,
        None,
        &["kind"],
        "Node attempts retried after a retryable failure, by node kind.",
    ),
    m(
        "hilo_compensations_total",
        C,
        None,
        &["status"],
        "Compensations (undo steps) run, by outcome (succeeded, failed).",
    ),
    m(
        "hilo_tier_time_limit_cancels_total",
        C,
        None,
        &["tenant"],
        "Executions cancelled for passing their tier's time limit, by tenant.",
    ),
    // Gauges the sampler reads from the store.
    m(
        "hilo_queue_depth",
        G,
        None,
        &[],
        "Executions (any tenant) a worker could take now: unfinished, runnable, no live lease.",
    ),
    m(
        "hilo_queue_oldest_runnable_age_seconds",
        G,
        S,
        &[],
        "How long the oldest execution a worker could take now has waited for one (0: none waits).",
    ),
    m(
        "hilo_executions_in_process",
        G,
        None,
        &[],
        "Executions this server process is driving now.",
    ),
    m(
        "hilo_executions_active",
        G,
        None,
        &["tenant"],
        "Unfinished executions (pending, running or waiting) by tenant.",
    ),
    m(
        "hilo_executions_waiting",
        G,
        None,
        &["tenant"],
        "Executions waiting (for a person, a timer, a child) by tenant; counted up to 200.",
    ),
    m(
        "hilo_human_tasks_pending",
        G,
        None,
        &["tenant"],
        "Human tasks waiting for an answer, by tenant; counted up to 200.",
    ),
    m(
        "hilo_human_task_oldest_age_seconds",
        G,
        S,
        &["tenant"],
        "Age of the oldest pending human task, by tenant (0 when none).",
    ),
    m(
        "hilo_hil_queue_items",
        G,
        None,
        &["tenant"],
        "Items (handed-over conversations, human tasks) waiting in the human queue for an agent.",
    ),
    m(
        "hilo_hil_queue_oldest_wait_seconds",
        G,
        S,
        &["tenant"],
        "How long the oldest item of the human queue has waited for an agent (0 when none).",
    ),
    m(
        "hilo_llm_budget_used_ratio",
        G,
        None,
        &["tenant", "window"],
        "Share of a tenant's LLM budget spent in the current window (hourly, daily, monthly).",
    ),
    m(
        "hilo_metrics_sample_errors_total",
        C,
        None,
        &[],
        "Store reads of the metrics sampler that failed.",
    ),
    // Tools (the tool executor).
    m(
        "hilo_tool_calls_total",
        C,
        None,
        &["tool", "status"],
        "Tool calls by tool and outcome (ok, error).",
    ),
    m(
        "hilo_tool_duration_seconds",
        H,
        S,
        &["tool"],
        "Tool call latency by tool.",
    ),
    m(
        "hilo_tool_rate_limited_total",
        C,
        None,
        &["tool"],
        "Tool calls refused by the tool's rate limit.",
    ),
    m(
        "hilo_tool_cache_hits_total",
        C,
        None,
        &["tool"],
        "Tool calls answered from the cache.",
    ),
    m(
        "hilo_tool_circuit_state",
        G,
        None,
        &["tool", "tenant"],
        "A tool's circuit breaker for a tenant: 0 closed, 1 half-open, 2 open.",
    ),
    m(
        "hilo_llm_circuit_state",
        G,
        None,
        &["model"],
        "A model's circuit breaker in the LLM router: 0 closed, 1 half-open, 2 open.",
    ),
    m(
        "hilo_audit_write_errors_total",
        C,
        None,
        &[],
        "Audit records of tool calls that could not be written.",
    ),
    // Models (the cost ledger the router writes every call to).
    m(
        "hilo_llm_calls_total",
        C,
        None,
        &["provider", "model", "profile", "status"],
        "Model calls by provider, model, profile and outcome (ok, error, refused).",
    ),
    m(
        "hilo_llm_tokens_total",
        C,
        None,
        &["provider", "model", "profile", "direction"],
        "Tokens of model calls by provider, model, profile and direction (input, output).",
    ),
    m(
        "hilo_llm_cost_nanodollars_total",
        C,
        None,
        &["provider", "model", "profile"],
        "Cost of model calls at the catalog's prices, in nano-dollars (divide by 1e9 for USD).",
    ),
    m(
        "hilo_llm_call_duration_seconds",
        H,
        S,
        &["provider", "model", "profile"],
        "Model call latency by provider, model and profile.",
    ),
    // HTTP, queue and callbacks.
    m(
        "hilo_http_requests_total",
        C,
        None,
        &["method", "route", "status"],
        "HTTP requests by method, route template and status code.",
    ),
    m(
        "hilo_http_request_duration_seconds",
        H,
        S,
        &["method", "route"],
        "HTTP request latency by method and route template.",
    ),
    m(
        "hilo_http_rate_limited_total",
        C,
        None,
        &[],
        "HTTP requests refused by an API key's rate limit.",
    ),
    m(
        "hilo_public_refused_total",
        C,
        None,
        &["limit"],
        "Public (chat widget) requests refused with 429 or 503, by the limit that refused them: connections (the share of connections for public requests), requests (per client address) or handler (a widget, token or conversation limit).",
    ),
    m(
        "hilo_queue_actions_total",
        C,
        None,
        &["outcome"],
        "Actions read from the Redis queue, by outcome.",
    ),
    m(
        "hilo_callbacks_total",
        C,
        None,
        &["outcome"],
        "Execution callbacks, by outcome (delivered, failed, retry).",
    ),
    m(
        "hilo_conversation_callbacks_total",
        C,
        None,
        &["outcome"],
        "Conversation message deliveries, by outcome (delivered, failed, retry).",
    ),
    // Humans in the loop.
    m(
        "hilo_hil_conversations_total",
        C,
        None,
        &["tenant", "workflow"],
        "Conversations started.",
    ),
    m(
        "hilo_hil_conversations_ended_total",
        C,
        None,
        &["tenant", "workflow", "by"],
        "Conversations resolved, by who resolved them (ai, human).",
    ),
    m(
        "hilo_hil_handovers_total",
        C,
        None,
        &["tenant", "workflow", "trigger"],
        "Conversations handed over to a person, by trigger.",
    ),
    m(
        "hilo_hil_assignments_total",
        C,
        None,
        &["tenant", "kind"],
        "Queue items assigned to a person, by kind (conversation, task).",
    ),
    m(
        "hilo_hil_first_response_seconds",
        H,
        S,
        &["tenant", "workflow"],
        "Time from handover to a person's first answer.",
    ),
    m(
        "hilo_hil_resolution_seconds",
        H,
        S,
        &["tenant", "workflow"],
        "Time from a conversation's start to its resolution.",
    ),
];

/// Gives every metric of [`METRICS`] its help text and unit (once the recorder is installed).
pub fn describe() {
    for d in METRICS {
        let (name, help) = (d.name, d.help);
        match (d.kind, d.unit) {
            (Kind::Counter, Some(u)) => metrics::describe_counter!(name, u, help),
            (Kind::Counter, None) => metrics::describe_counter!(name, help),
            (Kind::Gauge, Some(u)) => metrics::describe_gauge!(name, u, help),
            (Kind::Gauge, None) => metrics::describe_gauge!(name, help),
            (Kind::Histogram, Some(u)) => metrics::describe_histogram!(name, u, help),
            (Kind::Histogram, None) => metrics::describe_histogram!(name, help),
        }
    }
}

/// The metric a name of the Prometheus text belongs to (`_bucket`, `_sum` and `_count` lines
/// belong to their histogram).
pub fn find(name: &str) -> Option<&'static Metric> {
    METRICS.iter().find(|d| d.name == name).or_else(|| {
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))?;
        METRICS
            .iter()
            .find(|d| d.name == base && d.kind == Kind::Histogram)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric the code records is listed (the Prometheus test finds a missing one only
    /// when another test of its binary happened to record it first).
    #[test]
    fn every_recorded_metric_is_listed() {
        let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = vec![crates];
        let mut found = 0;
        while let Some(p) = files.pop() {
            if p.is_dir() {
                if p.ends_with("target") || p.ends_with("node_modules") {
                    continue;
                }
                files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            if p.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            for mac in ["counter!(", "gauge!(", "histogram!("] {
                for (at, _) in text.match_indices(mac) {
                    let rest = text[at + mac.len()..].trim_start();
                    let Some(rest) = rest.strip_prefix("\"hilo_") else {
                        continue;
                    };
                    let name = format!("hilo_{}", &rest[..rest.find('"').unwrap()]);
                    found += 1;
                    assert!(
                        METRICS.iter().any(|d| d.name == name),
                        "{} records {name}, which is not in the catalog",
                        p.display()
                    );
                }
            }
        }
        assert!(found > 20, "found only {found} metrics in the sources");
    }

    /// Names follow Prometheus conventions: `hilo_` prefix, counters end in `_total`, timed
    /// histograms and gauges in `_seconds`, no name twice.
    #[test]
    fn names_follow_the_conventions() {
        let mut seen = std::collections::BTreeSet::new();
        for d in METRICS {
            assert!(seen.insert(d.name), "{} listed twice", d.name);
            assert!(d.name.starts_with("hilo_"), "{}", d.name);
            assert_eq!(
                d.kind == Kind::Counter,
                d.name.ends_with("_total"),
                "{}",
                d.name
            );
            if d.unit == Some(Unit::Seconds) {
                assert!(d.name.ends_with("_seconds"), "{}", d.name);
            }
            assert!(!d.help.is_empty());
            for l in d.labels {
                assert!(
                    !["id", "execution", "execution_id", "key", "email", "user"].contains(l),
                    "{}: label {l} would be unbounded",
                    d.name
                );
            }
        }
    }
}
