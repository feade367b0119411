//! Decoding what starts or hands over work: `triggers:` (schedules and webhooks, with their
//! default ids) and `hil:` (when a conversation goes to a person).

use serde_json::Value;

use super::*;

/// Fields of a `schedule` trigger.
pub const SCHEDULE_KEYS: &[&str] = &["type", "id", "cron", "timezone", "input", "catch_up"];
/// Fields of a `webhook` trigger.
pub const WEBHOOK_KEYS: &[&str] = &["type", "id", "path", "secret", "input"];
/// Longest webhook `path`, in bytes.
pub const MAX_WEBHOOK_PATH: usize = 200;

/// Checks `[a-z0-9_-]+` (at most 128 characters) for trigger ids: the `ID` of `WORKFLOW/ID`.
pub fn is_valid_trigger_id(id: &str) -> bool {
    is_valid_workflow_name(id)
}

/// Checks a secret's name: letters, digits and `_`, not starting with a digit, at most 128
/// characters, so that templates can say `{{ secrets.NAME }}` (the vault's rule).
pub fn is_valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// What is wrong with a webhook `path`, if anything: it is `/`-separated segments of
/// `[A-Za-z0-9._~-]` (URL characters that never need escaping), none empty, `.` or `..`, at most
/// [`MAX_WEBHOOK_PATH`] bytes in all.
pub fn webhook_path_problem(path: &str) -> Option<String> {
    if path.len() > MAX_WEBHOOK_PATH {
        return Some(format!(
            "is {} bytes long, more than the {MAX_WEBHOOK_PATH} allowed",
            path.len()
        ));
    }
    if path.starts_with('/') {
        return Some(
            "starts with `/`: write it without one (`orders/created` is served at /hooks/<tenant>/orders/created)"
                .into(),
        );
    }
    for segment in path.split('/') {
        if segment.is_empty() {
            return Some("has an empty segment (`//`, or a `/` at the end)".into());
        }
        if segment == "." || segment == ".." {
            return Some(format!("has a `{segment}` segment"));
        }
        if let Some(c) = segment
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-')))
        {
            return Some(format!("has the character {c:?}"));
        }
    }
    None
}

impl Decoder {
    pub(super) fn hil(&mut self, v: &Value, path: &str) -> Option<Hil> {
        let m = self.obj(v, path, "`hil`")?;
        self.keys(m, path, &["triggers", "skills"], "`hil`");
        let mut triggers = Vec::new();
        match m.get("triggers") {
            None => {}
            Some(Value::Array(items)) => {
                let mut kept = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let p = push_pointer(&push_pointer(path, "triggers"), &i.to_string());
                    if let Some(t) = self.hil_trigger(item, &p) {
                        triggers.push(t);
                        kept.push(i);
                    }
                }
                self.record_kept(&push_pointer(path, "triggers"), kept, items.len());
            }
            Some(other) => {
                let msg = format!("`triggers` must be a list, got {}", type_name(other));
                self.err(Code::InvalidType, &push_pointer(path, "triggers"), msg);
            }
        }
        let skills = m.get("skills").and_then(|v| match v {
            Value::String(_) => Some(v.clone()),
            Value::Array(_) => self
                .string_list(v, &push_pointer(path, "skills"), "a skill")
                .map(|_| v.clone()),
            other => {
                let msg = format!(
                    "`skills` must be a template string or a list of skills, got {}",
                    type_name(other)
                );
                self.err(Code::InvalidType, &push_pointer(path, "skills"), msg);
                None
            }
        });
        Some(Hil { triggers, skills })
    }

    fn hil_trigger(&mut self, v: &Value, path: &str) -> Option<HilTrigger> {
        let m = self.obj(v, path, "a trigger")?;
        let ty = self
            .req(m, path, "type", "a trigger")
            .and_then(|v| self.string(v, &push_pointer(path, "type"), "a trigger's `type`"))?;
        const TYPES: [&str; 3] = ["confidence", "explicit_request", "consecutive_errors"];
        let what = format!("a `{ty}` trigger");
        match ty.as_str() {
            "confidence" => {
                self.keys(m, path, &["type", "node", "below"], &what);
                let node = self
                    .req(m, path, "node", &what)
                    .and_then(|v| self.nonempty_string(v, &push_pointer(path, "node"), "`node`"));
                let below = self
                    .req(m, path, "below", &what)
                    .and_then(|v| self.float(v, &push_pointer(path, "below"), "`below`", 0.0, 1.0));
                Some(HilTrigger::Confidence {
                    node: node?,
                    below: below?,
                })
            }
            "explicit_request" => {
                self.keys(m, path, &["type", "patterns"], &what);
                let patterns = self.req(m, path, "patterns", &what).and_then(|v| {
                    self.string_list(v, &push_pointer(path, "patterns"), "a pattern")
                })?;
                if patterns.is_empty() {
                    self.err(
                        Code::InvalidValue,
                        &push_pointer(path, "patterns"),
                        "`patterns` is empty: list the phrases that ask for a person",
                    );
                }
                Some(HilTrigger::ExplicitRequest { patterns })
            }
            "consecutive_errors" => {
                self.keys(m, path, &["type", "count"], &what);
                let count = self
                    .req(m, path, "count", &what)
                    .and_then(|v| self.int(v, &push_pointer(path, "count"), "`count`", 1, 1_000))?;
                Some(HilTrigger::ConsecutiveErrors {
                    count: u32::try_from(count).ok()?,
                })
            }
            other => {
                let hint = match did_you_mean(other, TYPES) {
                    Some(t) => format!("did you mean `{t}`?"),
                    None => format!("trigger types: {}", TYPES.join(", ")),
                };
                self.err(
                    Code::InvalidValue,
                    &push_pointer(path, "type"),
                    format!("unknown trigger type {other:?}; {hint}"),
                );
                None
            }
        }
    }

    /// `triggers:`: every trigger that decodes, each with its id (the default one when the
    /// document gives none, from its position in the document).
    pub(super) fn triggers(&mut self, v: &Value, path: &str) -> Vec<Trigger> {
        let Value::Array(items) = v else {
            let msg = format!(
                "`triggers` must be a list of schedules and webhooks, got {}",
                type_name(v)
            );
            self.err(Code::InvalidType, path, msg);
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut kept = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if let Some(t) = self.workflow_trigger(item, &push_pointer(path, &i.to_string()), i + 1)
            {
                out.push(t);
                kept.push(i);
            }
        }
        self.record_kept(path, kept, items.len());
        out
    }

    fn workflow_trigger(&mut self, v: &Value, path: &str, position: usize) -> Option<Trigger> {
        let m = self.obj(v, path, "a trigger")?;
        let before = self.diagnostics.len();
        let field = |k: &str| push_pointer(path, k);
        let ty = self.req(m, path, "type", "a trigger").and_then(|v| {
            let s = self.string(v, &field("type"), "a trigger's `type`")?;
            if TRIGGER_TYPES.contains(&s.as_str()) {
                return Some(s);
            }
            let hint = match did_you_mean(&s, TRIGGER_TYPES) {
                Some(t) => format!("did you mean `{t}`?"),
                None => format!("trigger types: {}", TRIGGER_TYPES.join(", ")),
            };
            self.err(
                Code::InvalidValue,
                &field("type"),
                format!("unknown trigger type {s:?}; {hint}"),
            );
            None
        });
        let Some(ty) = ty else {
            // Without a type the fields cannot be judged; the id can still be checked.
            if let Some(id) = m.get("id") {
                self.trigger_id(id, &field("id"));
            }
            return None;
        };
        let what = format!("a `{ty}` trigger");
        let keys = if ty == "schedule" {
            SCHEDULE_KEYS
        } else {
            WEBHOOK_KEYS
        };
        self.keys(m, path, keys, &what);
        let id = match m.get("id") {
            Some(id) => self.trigger_id(id, &field("id")),
            None => Some(Trigger::default_id(&ty, position)),
        };
        let kind = if ty == "schedule" {
            let cron = self
                .req(m, path, "cron", &what)
                .and_then(|v| self.nonempty_string(v, &field("cron"), "`cron`"));
            let timezone = match m.get("timezone") {
                Some(v) => self.nonempty_string(v, &field("timezone"), "`timezone`"),
                None => Some(TriggerKind::DEFAULT_TIMEZONE.to_string()),
            };
            let catch_up = match m.get("catch_up") {
                None => Some(CatchUp::default()),
                Some(v) => {
                    let parsed = v.as_str().and_then(CatchUp::parse);
                    if parsed.is_none() {
                        self.err(
                            Code::InvalidValue,
                            &field("catch_up"),
                            format!(
                                "`catch_up` must be one of {} (what to do with ticks missed while no process ran), got {v}",
                                CatchUp::NAMES.join(", ")
                            ),
                        );
                    }
                    parsed
                }
            };
            TriggerKind::Schedule {
                cron: cron?,
                timezone: timezone?,
                input: m.get("input").cloned(),
                catch_up: catch_up?,
            }
        } else {
            let hook_path = self.req(m, path, "path", &what).and_then(|v| {
                let p = field("path");
                let s = self.nonempty_string(v, &p, "`path`")?;
                match webhook_path_problem(&s) {
                    None => Some(s),
                    Some(problem) => {
                        let shown = if s.len() > MAX_WEBHOOK_PATH {
                            String::new()
                        } else {
                            format!(" {s:?}")
                        };
                        self.err(
                            Code::InvalidValue,
                            &p,
                            format!(
                                "webhook path{shown} {problem}; a path is `/`-separated segments of letters, digits and `._~-`, such as `orders/created`"
                            ),
                        );
                        None
                    }
                }
            });
            let secret = self.req(m, path, "secret", &what).and_then(|v| {
                let p = field("secret");
                let s = self.nonempty_string(v, &p, "`secret`")?;
                if is_valid_secret_name(&s) {
                    Some(s)
                } else {
                    self.err(
                        Code::InvalidValue,
                        &p,
                        format!(
                            "`secret` names a stored secret (`hilo secrets set NAME`): letters, digits and `_`, not starting with a digit, at most 128; got {s:?}"
                        ),
                    );
                    None
                }
            });
            let input = m.get("input").and_then(|v| match v {
                Value::Null => {
                    self.err(
                        Code::InvalidType,
                        &field("input"),
                        "a webhook's `input` must be a value or an expression over `body` and `headers` (leave it out for the request body), got null",
                    );
                    None
                }
                _ => Some(v.clone()),
            });
            TriggerKind::Webhook {
                path: hook_path?,
                secret: secret?,
                input,
            }
        };
        if self.diagnostics.len() > before {
            return None;
        }
        Some(Trigger { id: id?, kind })
    }

    fn trigger_id(&mut self, v: &Value, path: &str) -> Option<String> {
        let s = self.nonempty_string(v, path, "a trigger's `id`")?;
        if is_valid_trigger_id(&s) {
            return Some(s);
        }
        self.err(
            Code::InvalidValue,
            path,
            format!(
                "trigger id {s:?} must match [a-z0-9_-]+ (lower case, at most 128 characters): it names the trigger as WORKFLOW/ID"
            ),
        );
        None
    }
}
