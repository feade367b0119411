//! Gauges that only the store knows, read every [`SAMPLE_EVERY`]: the queue depth (one
//! query across tenants) and, for each tenant this process has seen or with human-queue
//! activity (at most [`MAX_TENANTS`](crate::metrics::observer::MAX_TENANTS)), its unfinished and
//! waiting executions, pending human tasks and the oldest one's age, the human queue and its
//! oldest item's wait, and the share of each LLM budget window spent. Each is one bounded
//! query; a failed read is logged and counted, and the gauge keeps its last value.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hilo_core::exec::{ExecFilter, ExecStatus, TaskFilter};
use hilo_core::hil::ItemState;
use hilo_core::llm::NANOS_PER_USD;
use hilo_core::store::{Store, StoreError};
use hilo_engine::now_ms;

/// How often the gauges are read.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Waiting executions and pending tasks are counted up to this many per tenant (a bound on
/// each read).
const COUNT_CAP: u32 = 200;

/// Reads the gauges every [`SAMPLE_EVERY`] until `stop` resolves.
pub async fn sample(
    store: Arc<dyn Store>,
    llm: hilo_llm::Resolved,
    stop: impl Future<Output = ()>,
) {
    // The error counter exists from the start (0), so that alerts on it have a series.
    metrics::counter!("hilo_metrics_sample_errors_total").increment(0);
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => {}
        }
        sample_once(store.as_ref(), &llm).await;
    }
}

fn failed(what: &str, e: &StoreError) {
    metrics::counter!("hilo_metrics_sample_errors_total").increment(1);
    tracing::warn!(code = e.code(), "metrics: reading {what} failed: {e}");
}

fn age_seconds(now: i64, since: Option<i64>) -> f64 {
    since.map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0)
}

/// Reads every gauge once.
pub async fn sample_once(store: &dyn Store, llm: &hilo_llm::Resolved) {
    let now = now_ms();
    match store.queue_depth(now).await {
        Ok(d) => metrics::gauge!("hilo_queue_depth").set(d as f64),
        Err(e) => failed("the queue depth", &e),
    }
    match store.oldest_runnable_at(now).await {
        // No queue: age 0, so the series exists and alerts read it as "nothing waits".
        Ok(at) => metrics::gauge!("hilo_queue_oldest_runnable_age_seconds")
            .set(at.map_or(0.0, |at| (now - at).max(0) as f64 / 1000.0)),
        Err(e) => failed("the oldest runnable execution", &e),
    }
    let mut tenants = crate::metrics::observer::known_tenants();
    match store.hil_tenants().await {
        Ok(more) => {
            for t in more {
                crate::metrics::observer::note_tenant(&t);
                if !tenants.contains(&t) && tenants.len() < crate::metrics::observer::MAX_TENANTS {
                    tenants.push(t);
                }
            }
        }
        Err(e) => failed("the tenants of the human queue", &e),
    }
    for tenant in &tenants {
        sample_tenant(store, llm, tenant, now).await;
    }
}

async fn sample_tenant(store: &dyn Store, llm: &hilo_llm::Resolved, tenant: &str, now: i64) {
    let label = tenant.to_string();
    match store.active_executions(tenant).await {
        Ok(n) => metrics::gauge!("hilo_executions_active", "tenant" => label.clone()).set(n as f64),
        Err(e) => failed("active executions", &e),
    }
    let waiting = ExecFilter {
        status: Some(ExecStatus::Waiting),
        limit: Some(COUNT_CAP),
        ..ExecFilter::default()
    };
    match store.list_executions(tenant, &waiting).await {
        Ok(list) => metrics::gauge!("hilo_executions_waiting", "tenant" => label.clone())
            .set(list.len() as f64),
        Err(e) => failed("waiting executions", &e),
    }
    let pending = TaskFilter {
        status: Some("pending".into()),
        limit: Some(COUNT_CAP),
        ..TaskFilter::default()
    };
    match store.list_tasks(tenant, &pending).await {
        Ok(tasks) => {
            metrics::gauge!("hilo_human_tasks_pending", "tenant" => label.clone())
                .set(tasks.len() as f64);
            let oldest = tasks.iter().map(|t| t.created_at).min();
            metrics::gauge!("hilo_human_task_oldest_age_seconds", "tenant" => label.clone())
                .set(age_seconds(now, oldest));
        }
        Err(e) => failed("pending human tasks", &e),
    }
    match store
        .list_items(tenant, None, Some(ItemState::Queued))
        .await
    {
        Ok(items) => {
            metrics::gauge!("hilo_hil_queue_items", "tenant" => label.clone())
                .set(items.len() as f64);
            let oldest = items.iter().map(|i| i.queued_at).min();
            metrics::gauge!("hilo_hil_queue_oldest_wait_seconds", "tenant" => label.clone())
                .set(age_seconds(now, oldest));
        }
        Err(e) => failed("the human queue", &e),
    }
    for (window, limit_usd, since) in llm.budgets.for_tenant(tenant).windows(now) {
        if limit_usd <= 0.0 {
            continue;
        }
        match store.llm_spent(tenant, since, None).await {
            Ok(spent) => {
                let ratio = spent as f64 / NANOS_PER_USD as f64 / limit_usd;
                metrics::gauge!("hilo_llm_budget_used_ratio", "tenant" => label.clone(), "window" => window)
                    .set(ratio);
            }
            Err(e) => failed("LLM spending", &e),
        }
    }
}
