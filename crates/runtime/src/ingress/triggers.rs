//! The trigger registry as the runtime keeps it: a workflow's `triggers:` written to the
//! store when a version becomes active ([`sync`]), read back as [`Spec`]s, paused and
//! resumed, listed with their next fire times ([`list`]).

use hilo_core::model::{CatchUp, Trigger, TriggerKind};
use hilo_core::store::Store;
use hilo_core::trigger::Schedule;
use hilo_core::trigger_store::{KIND_SCHEDULE, KIND_WEBHOOK, NewTrigger, TriggerRow};
use serde_json::{Value, json};

use crate::error::{Refusal, Result as RtResult, RuntimeError};

/// A trigger's definition as stored (the `spec` of its row).
#[derive(Debug, Clone)]
pub enum Spec {
    Schedule {
        schedule: Box<Schedule>,
        input: Value,
        catch_up: CatchUp,
    },
    Webhook {
        path: String,
        secret: String,
        input: Option<Value>,
    },
}

/// The row a version's trigger is stored as.
pub fn new_trigger(t: &Trigger) -> NewTrigger {
    let (kind, spec) = match &t.kind {
        TriggerKind::Schedule {
            cron,
            timezone,
            input,
            catch_up,
        } => (
            KIND_SCHEDULE,
            json!({
                "cron": cron,
                "timezone": timezone,
                "input": input.clone().unwrap_or_else(TriggerKind::schedule_default_input),
                "catch_up": catch_up.as_str(),
            }),
        ),
        TriggerKind::Webhook {
            path,
            secret,
            input,
        } => (
            KIND_WEBHOOK,
            json!({"path": path, "secret": secret, "input": input}),
        ),
    };
    NewTrigger {
        id: t.id.clone(),
        kind: kind.to_string(),
        spec,
    }
}

/// Reads a stored row's definition; `None` (logged) for one this build cannot read.
pub fn spec_of(row: &TriggerRow) -> Option<Spec> {
    let s = &row.spec;
    let text = |k: &str| s.get(k).and_then(Value::as_str).map(str::to_string);
    let spec = match row.kind.as_str() {
        KIND_SCHEDULE => {
            let schedule = Schedule::parse(
                &text("cron")?,
                &text("timezone").unwrap_or_else(|| TriggerKind::DEFAULT_TIMEZONE.into()),
            );
            let schedule = match schedule {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(trigger = %row.name(), tenant = %row.tenant, "a stored schedule does not parse: {e}");
                    return None;
                }
            };
            let catch_up = match text("catch_up").as_deref() {
                Some("last") => CatchUp::Last,
                Some("all") => CatchUp::All,
                _ => CatchUp::None,
            };
            Spec::Schedule {
                schedule: Box::new(schedule),
                input: s
                    .get("input")
                    .cloned()
                    .unwrap_or_else(TriggerKind::schedule_default_input),
                catch_up,
            }
        }
        KIND_WEBHOOK => Spec::Webhook {
            path: text("path")?,
            secret: text("secret")?,
            input: s.get("input").filter(|v| !v.is_null()).cloned(),
        },
        _ => return None,
    };
    Some(spec)
}

/// Makes the triggers of `name`'s active version the tenant's triggers of that workflow
/// (call it after a version is imported as active or activated): kept ids keep their pause
/// state and last fire; removed ones stop.
pub async fn sync(store: &dyn Store, tenant: &str, name: &str, now_ms: i64) -> RtResult<()> {
    let active = store.get_workflow(tenant, name, None).await?;
    let rows: Vec<NewTrigger> = active.workflow.triggers.iter().map(new_trigger).collect();
    store
        .replace_triggers(tenant, name, active.workflow.version, &rows, now_ms)
        .await?;
    Ok(())
}

/// Splits `WORKFLOW/ID`.
pub fn parse_name(name: &str) -> RtResult<(&str, &str)> {
    match name.split_once('/') {
        Some((w, id)) if !w.is_empty() && !id.is_empty() && !id.contains('/') => Ok((w, id)),
        _ => Err(RuntimeError::bad_request(
            "INVALID_TRIGGER",
            format!(
                "`{name}` is not a trigger name: write WORKFLOW/ID, such as weekday_report/schedule-1 (`hilo triggers list` shows them)"
            ),
        )),
    }
}

fn not_found(tenant: &str, name: &str) -> RuntimeError {
    RuntimeError::new(
        Refusal::NotFound,
        "TRIGGER_NOT_FOUND",
        format!(
            "tenant `{tenant}` has no trigger `{name}` in an active workflow version; `hilo triggers list` shows them"
        ),
    )
}

/// Pauses (`paused`) or resumes a trigger. A resumed schedule goes on from now: ticks that
/// passed while it was paused do not fire (a backfill starts them).
pub async fn set_paused(
    store: &dyn Store,
    tenant: &str,
    name: &str,
    paused: bool,
    now_ms: i64,
) -> RtResult<()> {
    let (workflow, id) = parse_name(name)?;
    if store
        .set_trigger_paused(tenant, workflow, id, paused, now_ms)
        .await?
    {
        Ok(())
    } else {
        Err(not_found(tenant, name))
    }
}

/// The row of `name`.
pub async fn find(store: &dyn Store, tenant: &str, name: &str) -> RtResult<TriggerRow> {
    let (workflow, id) = parse_name(name)?;
    store
        .list_triggers(tenant)
        .await?
        .into_iter()
        .find(|r| r.workflow == workflow && r.id == id)
        .ok_or_else(|| not_found(tenant, name))
}

/// A trigger as `hilo triggers list` and `GET /api/v1/triggers` show it: workflow, type,
/// cron and zone or path, the next three fire times, the last fire and its execution, paused
/// or not.
pub fn view(row: &TriggerRow, now_ms: i64) -> Value {
    let mut v = json!({
        "name": row.name(),
        "workflow": row.workflow,
        "id": row.id,
        "version": row.version,
        "type": row.kind,
        "paused": row.paused,
        "last_fire": row.last_tick_ms.map(crate::time::rfc3339),
        "last_execution_id": row.last_execution_id,
    });
    match spec_of(row) {
        Some(Spec::Schedule {
            schedule, catch_up, ..
        }) => {
            let next: Vec<String> = if row.paused {
                Vec::new()
            } else {
                schedule
                    .ticks_between(now_ms.max(row.activated_at), i64::MAX, 3)
                    .into_iter()
                    .map(|t| schedule.rfc3339_in_zone(t))
                    .collect()
            };
            v["cron"] = json!(schedule.cron());
            v["timezone"] = json!(schedule.timezone());
            v["catch_up"] = json!(catch_up.as_str());
            v["next"] = json!(next);
            if let Some(t) = row.last_tick_ms {
                v["last_fire"] = json!(schedule.rfc3339_in_zone(t));
            }
        }
        Some(Spec::Webhook { path, secret, .. }) => {
            v["path"] = json!(format!("/hooks/{}/{path}", row.tenant));
            v["secret"] = json!(secret);
        }
        None => {}
    }
    v
}

/// Every trigger of `tenant`, as [`view`] shows them, by name.
pub async fn list(store: &dyn Store, tenant: &str, now_ms: i64) -> RtResult<Vec<Value>> {
    let mut rows = store.list_triggers(tenant).await?;
    rows.sort_by_key(|r| r.name());
    Ok(rows.iter().map(|r| view(r, now_ms)).collect())
}
