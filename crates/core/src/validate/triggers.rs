//! Validation of `triggers:` (schedules and webhooks).

// Maps of trigger ids and webhook paths: foldhash, as the validator's other id maps.
use hashbrown::HashMap as FastMap;

use super::Validator;
use crate::diagnostic::{Code, push_pointer};
use crate::expr::{self, Dynamic};
use crate::model::TriggerKind;

impl Validator<'_> {
    /// `triggers:`: unique ids and webhook paths, cron expressions and zones that work, static
    /// inputs that fit `input`, and webhook input expressions that compile.
    pub(super) fn triggers(&mut self) {
        let wf = self.wf;
        let mut ids: FastMap<&str, usize> = FastMap::new();
        let mut paths: FastMap<&str, usize> = FastMap::new();
        let input_schema = wf
            .input
            .as_ref()
            .and_then(|s| jsonschema::validator_for(s).ok());
        for (i, t) in wf.triggers.iter().enumerate() {
            let path = self.partial.item("/triggers", i);
            let field = |k: &str| push_pointer(&path, k);
            let place = |j: usize| {
                crate::diagnostic::pointer_to_field(&self.partial.item("/triggers", j))
                    .unwrap_or_default()
            };
            if let Some(&first) = ids.get(t.id.as_str()) {
                let msg = format!(
                    "trigger id `{}` is already used by {}; trigger ids must be unique in the workflow (a trigger without `id` is named after its type and position, such as `schedule-1`): give one of them another `id`",
                    t.id,
                    place(first)
                );
                self.err(Code::DuplicateId, field("id"), msg);
            } else {
                ids.insert(&t.id, i);
            }
            match &t.kind {
                TriggerKind::Schedule {
                    cron,
                    timezone,
                    input,
                    ..
                } => {
                    if let Err(e) = crate::trigger::Schedule::parse(cron, timezone) {
                        let at = match e {
                            crate::trigger::ScheduleError::Timezone { .. } => field("timezone"),
                            _ => field("cron"),
                        };
                        self.err(e.code(), at, e.to_string());
                    }
                    if let Some(v) = input {
                        let mut found = Vec::new();
                        expr::dynamic_strings(v, &field("input"), &mut found);
                        if let Some(f) = found
                            .iter()
                            .find(|f| matches!(f.dynamic, Dynamic::Expression(_)))
                        {
                            let msg = "a schedule's `input` is a static value: `${ }` expressions in it are not evaluated; nodes read the tick's time as `trigger.scheduled_at`";
                            self.err(Code::InvalidValue, f.path.clone(), msg);
                        }
                    }
                    if let Some(validator) = &input_schema {
                        let default = TriggerKind::schedule_default_input();
                        let given = input.as_ref().unwrap_or(&default);
                        let errors = crate::schema::violations(validator, given);
                        if !errors.is_empty() {
                            let (at, what) = match input {
                                Some(_) => (field("input"), "the schedule's `input`".to_string()),
                                None => (
                                    path.clone(),
                                    "the schedule has no `input`, so its executions start with {}, which"
                                        .to_string(),
                                ),
                            };
                            let msg = format!(
                                "{what} does not fit the workflow's `input` schema: {}; change the input or the schema",
                                errors.join("; ")
                            );
                            self.err(Code::InvalidInput, at, msg);
                        }
                    }
                }
                TriggerKind::Webhook {
                    path: hook, input, ..
                } => {
                    if let Some(&first) = paths.get(hook.as_str()) {
                        let msg = format!(
                            "webhook path `{hook}` is already used by {}; each webhook of a workflow needs its own path",
                            place(first)
                        );
                        self.err(Code::DuplicateId, field("path"), msg);
                    } else {
                        paths.insert(hook, i);
                    }
                    if let Some(v) = input {
                        self.dynamic(v, &field("input"));
                    }
                }
            }
        }
    }
}
