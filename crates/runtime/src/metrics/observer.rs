//! The engine's execution observer for metrics: executions finished by tenant, workflow and
//! status (with their duration), nodes by kind and outcome (with their latency), retries,
//! compensations and waits. It also notes the tenants it sees, for the gauge sampler.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use hilo_core::exec::{Event, EventKind};
use hilo_engine::Engine;
use hilo_engine::driver::Observed;

/// Tenants the sampler reads gauges for, at most this many (a bound on label values).
pub const MAX_TENANTS: usize = 1000;

static TENANTS: OnceLock<Mutex<BTreeSet<String>>> = OnceLock::new();

fn tenants() -> &'static Mutex<BTreeSet<String>> {
    TENANTS.get_or_init(|| Mutex::new(BTreeSet::new()))
}

/// Notes that `tenant` has executions or model calls in this process.
pub fn note_tenant(tenant: &str) {
    if let Ok(mut t) = tenants().lock()
        && !t.contains(tenant)
        && t.len() < MAX_TENANTS
    {
        t.insert(tenant.to_string());
    }
}

/// The tenants noted so far.
pub fn known_tenants() -> Vec<String> {
    tenants()
        .lock()
        .map(|t| t.iter().cloned().collect())
        .unwrap_or_default()
}

/// Start times of nodes and executions in flight in this process, for latency histograms.
#[derive(Default)]
struct Clocks {
    started: Mutex<HashMap<(String, String), i64>>,
}

/// Installs the metrics observer on `engine` (the process's recorder, installed by the
/// binary, receives what it records).
pub fn install(engine: &Engine) {
    let clocks = Arc::new(Clocks::default());
    engine.add_execution_observer(Arc::new(move |o: &Observed<'_>, e: &Event| {
        record(&clocks, o, e);
    }));
}

/// The kind of the node an event is about (`tool`, `agent`, …): its key's last segment
/// without an iteration index (`loop[2]/draft` → `draft`) looked up in the plan.
fn node_kind(o: &Observed<'_>, e: &Event) -> &'static str {
    let Some(key) = e.node.as_deref() else {
        return "unknown";
    };
    let last = key.rsplit('/').next().unwrap_or(key);
    let id = last.split('[').next().unwrap_or(last);
    o.plan.node(id).map_or("unknown", |n| n.kind.type_name())
}

fn record(clocks: &Clocks, o: &Observed<'_>, e: &Event) {
    use EventKind as K;
    let id = o.id;
    match e.kind {
        K::ExecutionStarted => {
            note_tenant(o.tenant);
            if let Ok(mut s) = clocks.started.lock() {
                s.insert((id.to_string(), String::new()), e.at);
            }
        }
        K::NodeStarted => {
            if let (Some(node), Ok(mut s)) = (&e.node, clocks.started.lock()) {
                s.insert((id.to_string(), node.clone()), e.at);
            }
        }
        K::NodeSucceeded | K::NodeFailed => {
            let outcome = if e.kind == K::NodeSucceeded {
                "succeeded"
            } else {
                "failed"
            };
            let kind = node_kind(o, e);
            metrics::counter!("hilo_nodes_total", "kind" => kind, "status" => outcome)
                .increment(1);
            if let (Some(node), Ok(mut s)) = (&e.node, clocks.started.lock())
                && let Some(at) = s.remove(&(id.to_string(), node.clone()))
            {
                metrics::histogram!("hilo_node_duration_seconds", "kind" => kind, "status" => outcome)
                    .record((e.at - at).max(0) as f64 / 1000.0);
            }
        }
        K::NodeRetrying => {
            metrics::counter!("hilo_node_retries_total", "kind" => node_kind(o, e)).increment(1)
        }
        K::CompensationSucceeded | K::CompensationFailed => {
            let outcome = if e.kind == K::CompensationSucceeded {
                "succeeded"
            } else {
                "failed"
            };
            metrics::counter!("hilo_compensations_total", "status" => outcome).increment(1);
        }
        K::ExecutionSucceeded
        | K::ExecutionFailed
        | K::ExecutionCompensated
        | K::ExecutionHandedOver
        | K::ExecutionCancelled => {
            note_tenant(o.tenant);
            let status = &e.kind.as_str()["execution_".len()..];
            let (tenant, workflow) = (o.tenant.to_string(), o.plan.workflow.name.clone());
            metrics::counter!("hilo_executions_finished_total", "tenant" => tenant.clone(), "workflow" => workflow.clone(), "status" => status)
                .increment(1);
            if let Ok(mut s) = clocks.started.lock() {
                if let Some(at) = s.remove(&(id.to_string(), String::new())) {
                    metrics::histogram!("hilo_execution_duration_seconds", "tenant" => tenant, "workflow" => workflow, "status" => status)
                        .record((e.at - at).max(0) as f64 / 1000.0);
                }
                // Nodes of this execution that never finished here (cancelled, skipped).
                if s.len() > 4096 {
                    s.retain(|(x, _), _| x != id);
                }
            }
        }
        K::ExecutionWaiting => {
            metrics::counter!("hilo_execution_waits_total", "tenant" => o.tenant.to_string(), "workflow" => o.plan.workflow.name.clone())
                .increment(1)
        }
        _ => {}
    }
}
