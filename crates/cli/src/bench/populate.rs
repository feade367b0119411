//! `hilo bench populate`: a large history of finished executions, written through the store's
//! own APIs (`import_workflow`, `create_execution`, `commit_batch`), for measuring how listing,
//! search, claims and retention behave on millions of executions (`bench/scale/run`).
//!
//! Each execution is created held by this process (as an engine's start does), then finished
//! by one commit carrying what a real run of its workflow writes: the node records (with
//! outputs), the history (started, each node started and ended, the end) and the execution's
//! end. Commits of many executions go in one `commit_batch` (one transaction on PostgreSQL),
//! and several batches are in flight at once. The executions are spread over three workflows,
//! the tenants `t0`…, and the statuses succeeded (90 %), failed (7 %) and cancelled (3 %);
//! their `created_at` are spread evenly over the last `--days` days, oldest first, so that
//! retention has something to delete and listings have pages of every age.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, anyhow};
use hilo_core::exec::{
    Commit, CommitOutcome, Event, EventKind, ExecMeta, ExecStatus, ExecUpdate, Lease, NewExecution,
    NodeError, NodeRecord, NodeStatus, StartedBy,
};
use hilo_core::store::Store;
use serde_json::{Value, json};

use super::kit::{chain, deploy_as};

/// The workflows of the history: name and tool steps (each chain ends with a finish node).
const WORKFLOWS: [(&str, usize); 3] = [
    ("order_returns", 5),
    ("support_reply", 3),
    ("nightly_report", 8),
];
/// Who holds the executions while they are written.
const OWNER: &str = "hilo-bench-populate";
const DAY_MS: i64 = 86_400_000;

/// What to write.
#[derive(Debug, Clone)]
pub struct Populate {
    pub executions: u64,
    pub tenants: u32,
    pub days: u32,
    /// Executions per `commit_batch`.
    pub batch: u32,
    /// Batches in flight at once.
    pub concurrency: u32,
}

/// Writes the history into `store`; prints progress on stderr and a JSON summary on stdout
/// when `as_json`.
pub async fn run(store: Arc<dyn Store>, p: Populate, as_json: bool) -> anyhow::Result<()> {
    if p.executions == 0 || p.tenants == 0 || p.batch == 0 || p.concurrency == 0 {
        return Err(anyhow!(
            "--executions, --tenants, --batch and --concurrency must be at least 1"
        ));
    }
    for t in 0..p.tenants {
        for (name, steps) in WORKFLOWS {
            let wf = chain(name, steps, "{n: 1}")?;
            deploy_as(&store, &tenant(t), &wf)
                .await
                .with_context(|| format!("storing workflow {name} for tenant {}", tenant(t)))?;
        }
    }
    let started = Instant::now();
    let now = hilo_core::store::now_ms();
    // Evenly spread over the window, oldest first; the newest a minute ago.
    let span = i64::from(p.days) * DAY_MS;
    let step = (span / p.executions as i64).max(1);
    let first = now - 60_000 - step * p.executions as i64;
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..p.concurrency {
        let (store, next, done, p) = (store.clone(), next.clone(), done.clone(), p.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let from = next.fetch_add(u64::from(p.batch), Ordering::Relaxed);
                if from >= p.executions {
                    return Ok::<(), anyhow::Error>(());
                }
                let to = (from + u64::from(p.batch)).min(p.executions);
                write_batch(&store, &p, from..to, |i| first + step * i as i64).await?;
                let n = done.fetch_add(to - from, Ordering::Relaxed) + (to - from);
                let every = (p.executions / 20).max(1);
                if n / every != (n - (to - from)) / every {
                    noteln!(
                        "populate: {n} of {} executions ({:.0}/s)",
                        p.executions,
                        n as f64 / started.elapsed().as_secs_f64()
                    );
                }
            }
        }));
    }
    for t in tasks {
        t.await
            .map_err(|e| anyhow!("a writer task failed: {e}"))??;
    }
    let secs = started.elapsed().as_secs_f64();
    let summary = json!({
        "executions": p.executions,
        "tenants": p.tenants,
        "days": p.days,
        "seconds": (secs * 10.0).round() / 10.0,
        "per_second": (p.executions as f64 / secs).round(),
    });
    if as_json {
        outln!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        outln!(
            "wrote {} finished executions in {secs:.1} s ({:.0}/s)",
            p.executions,
            p.executions as f64 / secs
        );
    }
    Ok(())
}

fn tenant(i: u32) -> String {
    format!("t{i}")
}

/// Creates executions `range` (held by [`OWNER`]) and finishes them in one `commit_batch`.
async fn write_batch(
    store: &Arc<dyn Store>,
    p: &Populate,
    range: std::ops::Range<u64>,
    created: impl Fn(u64) -> i64,
) -> anyhow::Result<()> {
    let mut commits = Vec::with_capacity(range.clone().count());
    for i in range {
        let at = created(i);
        let (name, steps) = WORKFLOWS[(i % 3) as usize];
        let id = format!("{:012x}{:012x}", at, i);
        let input = json!({"order_id": format!("ord-{i}"), "customer": format!("c{}", i % 9973)});
        let new = NewExecution {
            id: id.clone(),
            tenant: tenant((i / 3 % u64::from(p.tenants)) as u32),
            workflow: name.into(),
            version: 1,
            input,
            parent: None,
            definition: None,
            lease: Some(Lease {
                owner: OWNER.into(),
                expires_at: i64::MAX / 2,
            }),
            meta: ExecMeta::default(),
            created_at: at,
            trace_parent: None,
            started_by: Some(StartedBy::Api),
        };
        let first = vec![event(1, at, EventKind::ExecutionStarted, None, Value::Null)];
        if !store.create_execution(new, first).await? {
            return Err(anyhow!(
                "execution {id} exists already: populate an empty database (or one populated with other settings)"
            ));
        }
        commits.push(finish(&id, at, steps, i));
    }
    for outcome in store.commit_batch(commits).await? {
        if outcome != CommitOutcome::Committed {
            return Err(anyhow!(
                "a populate commit lost its lease: is another process running?"
            ));
        }
    }
    Ok(())
}

/// The status execution `i` ends with: failed 7 %, cancelled 3 %, succeeded the rest.
fn status_of(i: u64) -> ExecStatus {
    match i % 100 {
        0..=6 => ExecStatus::Failed,
        7..=9 => ExecStatus::Cancelled,
        _ => ExecStatus::Succeeded,
    }
}

fn event(seq: u64, at: i64, kind: EventKind, node: Option<&str>, data: Value) -> Event {
    Event {
        seq,
        at,
        kind,
        node: node.map(str::to_string),
        attempt: u32::from(node.is_some()),
        data,
    }
}

/// The one commit that runs execution `i` (of `steps` tool steps) to its end.
fn finish(id: &str, at: i64, steps: usize, i: u64) -> Commit {
    let status = status_of(i);
    // A failed run fails at its last step; a cancelled one stops after its first.
    let ran = match status {
        ExecStatus::Cancelled => 1,
        _ => steps,
    };
    let (mut events, mut nodes) = (Vec::new(), Vec::new());
    let mut seq = 1;
    let mut t = at;
    for s in 0..ran {
        let key = format!("s{s}");
        let fails = status == ExecStatus::Failed && s + 1 == steps;
        seq += 1;
        events.push(event(
            seq,
            t,
            EventKind::NodeStarted,
            Some(&key),
            Value::Null,
        ));
        t += 3 + (i as i64 % 40);
        seq += 1;
        let mut n = NodeRecord::new(key.clone(), &key);
        n.attempts = 1;
        n.started_at = Some(t - 3);
        n.finished_at = Some(t);
        n.done_seq = Some(s as u64);
        if fails {
            let e = NodeError::new("HTTP_503", "the shop answered 503 Service Unavailable");
            events.push(event(
                seq,
                t,
                EventKind::NodeFailed,
                Some(&key),
                json!({"code": e.code}),
            ));
            n.status = NodeStatus::Failed;
            n.error = Some(e);
        } else {
            events.push(event(
                seq,
                t,
                EventKind::NodeSucceeded,
                Some(&key),
                Value::Null,
            ));
            n.status = NodeStatus::Succeeded;
            n.output = Some(json!({"ok": true, "step": s, "order": format!("ord-{i}")}).into());
        }
        nodes.push(n);
    }
    let (kind, output, error) = match status {
        ExecStatus::Failed => (
            EventKind::ExecutionFailed,
            None,
            Some(NodeError::new(
                "HTTP_503",
                "the shop answered 503 Service Unavailable",
            )),
        ),
        ExecStatus::Cancelled => (
            EventKind::ExecutionCancelled,
            None,
            Some(NodeError::new("CANCELLED", "cancelled by a person")),
        ),
        _ => (
            EventKind::ExecutionSucceeded,
            Some(json!({"done": true, "order": format!("ord-{i}")})),
            None,
        ),
    };
    seq += 1;
    t += 1;
    events.push(event(seq, t, kind, None, Value::Null));
    let exec = ExecUpdate {
        status,
        output,
        error,
        last_seq: seq,
        runnable_at: None,
        finished_at: Some(t),
        meta: ExecMeta {
            next_done: ran as u64,
            ..ExecMeta::default()
        },
        updated_at: t,
        release: true,
        unchanged: false,
    };
    Commit {
        events,
        nodes,
        ..Commit::new(id, OWNER, exec)
    }
}
