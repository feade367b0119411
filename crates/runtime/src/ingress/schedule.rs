//! Schedules: every process runs [`run`], and the store decides which one starts each tick.
//!
//! A round reads the schedules of every tenant (a page at a time), and for each one not
//! paused asks [`Schedule::due`] which ticks are due since its last fire (or its activation):
//! ticks within the on-time window always fire; older ones passed while no process ran, and
//! its `catch_up` decides (`none`, `last`, `all` up to `[triggers] max_catch_up`). Each due
//! tick is started through the one start path with a claim `tick:<ms>` of the trigger: the
//! claim row is inserted in the transaction that creates the execution, so however many
//! processes see the same tick, exactly one execution starts; the others find the claim
//! taken. Then the trigger's last fire moves forward (never back).
//!
//! Time is the runtime's [`Clock`](crate::Clock), so tests drive ticks (and daylight-saving
//! days) without waiting. A round sleeps until the next tick of any schedule, at most a second,
//! so a schedule a new version declares is seen within a second.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hilo_core::exec::{StartClaim, StartedBy};
use hilo_core::trigger::Schedule;
use hilo_core::trigger_store::TriggerRow;
use serde_json::{Value, json};

use super::triggers::{Spec, find, spec_of};
use crate::Runtime;
use crate::error::{Refusal, Result as RtResult, RuntimeError};
use crate::runs::{Begin, StartRequest, begin};

/// Schedules read per page of a round.
const PAGE: u32 = 500;

/// The longest sleep between rounds.
const MAX_SLEEP_MS: i64 = 1_000;

/// The most ticks one backfill lists or starts.
pub const MAX_BACKFILL: usize = 10_000;

/// What starting one tick came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fired {
    /// This process started it.
    Started(String),
    /// Another start had it (another process, or an earlier round).
    Taken(String),
}

impl Fired {
    pub fn execution_id(&self) -> &str {
        match self {
            Fired::Started(id) | Fired::Taken(id) => id,
        }
    }
}

/// Parsed specs by tenant, trigger name and the version that declares it.
type Parsed = HashMap<(String, String, u64), Option<Arc<Spec>>>;

/// Runs the schedules of every tenant until `stop` resolves.
pub async fn run(rt: Runtime, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let mut parsed = Parsed::new();
    loop {
        let now = rt.clock().now_ms();
        let next = match round(&rt, now, &mut parsed).await {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!("a round of the schedules failed (the next one retries): {e}");
                None
            }
        };
        let wake = next.unwrap_or(i64::MAX).min(now + MAX_SLEEP_MS);
        let sleep = rt.clock().until(wake);
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(sleep.max(Duration::from_millis(1))) => {}
        }
    }
}

/// One round at `now`: fires what is due; gives the earliest next tick of any schedule.
async fn round(rt: &Runtime, now: i64, parsed: &mut Parsed) -> RtResult<Option<i64>> {
    // The rows of this round take their parsed specs from the last round's; what no row
    // names any more (another version, a removed trigger) is dropped with the old map.
    let mut previous = std::mem::take(parsed);
    let max_catch_up = rt.settings().triggers.max_catch_up as usize;
    let mut next: Option<i64> = None;
    let mut after: Option<(String, String, String)> = None;
    loop {
        let page = rt
            .store()
            .schedule_triggers(
                after
                    .as_ref()
                    .map(|(t, w, i)| (t.as_str(), w.as_str(), i.as_str())),
                PAGE,
            )
            .await?;
        let full = page.len() == PAGE as usize;
        for row in &page {
            if row.paused {
                continue;
            }
            // A row's spec is parsed once per version that declares it (a version is
            // immutable, so its spec is too).
            let key = (row.tenant.clone(), row.name(), row.version);
            let spec = match previous.remove(&key) {
                Some(spec) => spec,
                None => spec_of(row).map(Arc::new),
            };
            parsed.insert(key, spec.clone());
            let Some(spec) = spec else { continue };
            let Spec::Schedule {
                schedule,
                input,
                catch_up,
            } = spec.as_ref()
            else {
                continue;
            };
            let since = row.last_tick_ms.unwrap_or(i64::MIN).max(row.activated_at);
            for tick in schedule.due(since, now, *catch_up, max_catch_up) {
                if let Err(e) = fire(rt, row, schedule, input, tick).await {
                    tracing::warn!(
                        tenant = %row.tenant,
                        trigger = %row.name(),
                        "the tick {} did not start: {e}",
                        schedule.rfc3339_in_zone(tick)
                    );
                    // Not this row's later ticks either: they would move its last fire past
                    // this one.
                    break;
                }
            }
            if let Some(t) = schedule.next_after(now) {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        if !full {
            break;
        }
        after = page.last().map(TriggerRow::cursor);
    }
    Ok(next)
}

/// Starts the execution of `tick` of the trigger `row`, once whatever the number of
/// processes: the claim decides. Records the fire.
pub async fn fire(
    rt: &Runtime,
    row: &TriggerRow,
    schedule: &Schedule,
    input: &Value,
    tick: i64,
) -> RtResult<Fired> {
    let name = row.name();
    let req = StartRequest {
        tenant: row.tenant.clone(),
        workflow: row.workflow.clone(),
        version: Some(row.version),
        input: input.clone(),
        callback_url: None,
        execution_id: None,
        trace_parent: None,
        started_by: StartedBy::Schedule {
            trigger: name.clone(),
            tick: schedule.rfc3339_in_zone(tick),
        },
        definition: None,
        untold: false,
    };
    let claim = StartClaim::tick(name, tick, rt.clock().now_ms());
    let fired = match begin(rt.runner(), req, Some(claim)).await? {
        Begin::Started(s) => {
            metrics::counter!("hilo_schedule_fires_total", "tenant" => row.tenant.clone())
                .increment(1);
            Fired::Started(s.id)
        }
        Begin::Taken { execution_id } => Fired::Taken(execution_id),
    };
    rt.store()
        .record_fire(
            &row.tenant,
            &row.workflow,
            &row.id,
            tick,
            fired.execution_id(),
        )
        .await?;
    Ok(fired)
}

/// One tick of a backfill.
#[derive(Debug, Clone, PartialEq)]
pub struct BackfillTick {
    /// The tick in the trigger's zone.
    pub tick: String,
    pub tick_ms: i64,
    /// The execution that tick started already (skipped), if any.
    pub fired: Option<String>,
    /// The execution this backfill started for it.
    pub started: Option<String>,
}

impl BackfillTick {
    pub fn to_json(&self) -> Value {
        json!({"tick": self.tick, "fired": self.fired, "started": self.started})
    }
}

/// The ticks of schedule `name` in `[from_ms, to_ms]`, each with the execution it already
/// started; with `start`, starts those that have none (through the same claims as the
/// schedule itself, so a tick is never started twice). A paused schedule can be backfilled.
pub async fn backfill(
    rt: &Runtime,
    tenant: &str,
    name: &str,
    from_ms: i64,
    to_ms: i64,
    start: bool,
) -> RtResult<Vec<BackfillTick>> {
    if to_ms < from_ms {
        return Err(RuntimeError::bad_request(
            "INVALID_RANGE",
            "--to is before --from: give the range oldest first",
        ));
    }
    let row = find(rt.store().as_ref(), tenant, name).await?;
    let Some(Spec::Schedule {
        schedule, input, ..
    }) = spec_of(&row)
    else {
        return Err(RuntimeError::new(
            Refusal::Invalid,
            "NOT_A_SCHEDULE",
            format!(
                "trigger `{name}` is a {}, not a schedule: only schedules have ticks to backfill",
                row.kind
            ),
        ));
    };
    let ticks = schedule.ticks_between(from_ms - 1, to_ms, MAX_BACKFILL + 1);
    if ticks.len() > MAX_BACKFILL {
        return Err(RuntimeError::new(
            Refusal::Invalid,
            "BACKFILL_TOO_LARGE",
            format!(
                "schedule `{name}` has more than {MAX_BACKFILL} ticks between --from and --to; backfill a shorter range at a time"
            ),
        ));
    }
    let fired: HashMap<i64, String> = rt
        .store()
        .claimed_ticks(tenant, &row.name(), from_ms, to_ms)
        .await?
        .into_iter()
        .collect();
    let mut out = Vec::with_capacity(ticks.len());
    for t in ticks {
        let mut tick = BackfillTick {
            tick: schedule.rfc3339_in_zone(t),
            tick_ms: t,
            fired: fired.get(&t).cloned(),
            started: None,
        };
        if start && tick.fired.is_none() {
            match fire(rt, &row, &schedule, &input, t).await? {
                Fired::Started(id) => tick.started = Some(id),
                Fired::Taken(id) => tick.fired = Some(id),
            }
        }
        out.push(tick);
    }
    Ok(out)
}
