//! The `execution.execute` action an entry carries: reading it from the entry's `action` field,
//! or saying everything that is wrong with it (the reason a malformed entry is dead-lettered
//! with).

use serde_json::{Map, Value};

use super::EXECUTE;

/// A well-formed `execution.execute` action.
#[derive(Debug)]
pub(super) struct Action {
    pub(super) action_id: String,
    pub(super) task_id: String,
    pub(super) tenant_id: String,
    pub(super) workflow: String,
    pub(super) version: Option<u64>,
    pub(super) input: Value,
    pub(super) callback_queue: String,
}

/// Reads an entry's action, or says everything that is wrong with it (the dead letter's
/// reason).
pub(super) fn parse(fields: &[(String, Vec<u8>)], action_stream: &str) -> Result<Action, String> {
    let Some((_, raw)) = fields.iter().find(|(k, _)| k == "action") else {
        let names: Vec<String> = fields.iter().map(|(k, _)| format!("`{k}`")).collect();
        return Err(format!(
            "the entry has no field `action` (its fields: {}): put the action, as JSON, in a field named `action`",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ));
    };
    let text = std::str::from_utf8(raw)
        .map_err(|_| "field `action` is not UTF-8 text: it must hold the action as JSON")?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        format!("field `action` is not valid JSON ({e}): it must hold the action as a JSON object")
    })?;
    let Value::Object(obj) = value else {
        return Err(format!(
            "the action is a JSON {}: expected an object with action_id, action_type, task_id, tenant_id, data and callback_queue",
            kind(&value)
        ));
    };
    let mut problems = Vec::new();
    let action_type = text_field(&obj, "action_type", "action_type", "`execution.execute`")
        .map_err(|p| problems.push(p))
        .ok();
    if let Some(t) = action_type
        && t != EXECUTE
    {
        problems.push(format!(
            "field `action_type` is `{t}`: this consumer runs only `{EXECUTE}` actions"
        ));
    }
    let mut required = |map: &Map<String, Value>, key: &str, path: &str, expected: &str| {
        text_field(map, key, path, expected)
            .map_err(|p| problems.push(p))
            .ok()
            .map(str::to_string)
    };
    let action_id = required(&obj, "action_id", "action_id", "the action's unique id");
    let task_id = required(
        &obj,
        "task_id",
        "task_id",
        "the id of the task it belongs to",
    );
    let tenant_id = required(&obj, "tenant_id", "tenant_id", "the tenant to run it for");
    let callback_queue = required(
        &obj,
        "callback_queue",
        "callback_queue",
        "the stream to publish the result on",
    );
    let mut workflow = None;
    let mut version = None;
    let mut input = Value::Null;
    match obj.get("data") {
        Some(Value::Object(data)) => {
            workflow = required(
                data,
                "workflow",
                "data.workflow",
                "the name of a stored workflow",
            );
            match data.get("version") {
                None | Some(Value::Null) => {}
                Some(v) => match v.as_u64().filter(|n| *n > 0) {
                    Some(n) => version = Some(n),
                    None => problems.push(format!(
                        "field `data.version` is {v}: expected a positive integer (or no `version`, for the active version)"
                    )),
                },
            }
            input = data.get("input").cloned().unwrap_or(Value::Null);
        }
        None | Some(Value::Null) => problems.push(
            "field `data` is missing: expected an object with `workflow` (the name of a stored workflow) and optionally `version` and `input`".into(),
        ),
        Some(other) => problems.push(format!(
            "field `data` is a JSON {}: expected an object with `workflow` (the name of a stored workflow) and optionally `version` and `input`",
            kind(other)
        )),
    }
    if callback_queue.as_deref() == Some(action_stream) {
        problems.push(format!(
            "field `callback_queue` is `{action_stream}`, the stream actions are read from: results must go to another stream"
        ));
    }
    match (action_id, task_id, tenant_id, workflow, callback_queue) {
        (Some(action_id), Some(task_id), Some(tenant_id), Some(workflow), Some(callback_queue))
            if problems.is_empty() =>
        {
            Ok(Action {
                action_id,
                task_id,
                tenant_id,
                workflow,
                version,
                input,
                callback_queue,
            })
        }
        _ => Err(problems.join("; ")),
    }
}

/// A non-empty string field, or what is wrong with it.
fn text_field<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    path: &str,
    expected: &str,
) -> Result<&'a str, String> {
    match map.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(Value::String(_)) => Err(format!(
            "field `{path}` is empty: expected {expected} (a non-empty string)"
        )),
        None | Some(Value::Null) => Err(format!(
            "field `{path}` is missing: expected {expected} (a non-empty string)"
        )),
        Some(other) => Err(format!(
            "field `{path}` is a JSON {}: expected {expected} (a non-empty string)",
            kind(other)
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    use serde_json::json;

    fn fields(action: &str) -> Vec<(String, Vec<u8>)> {
        vec![("action".into(), action.as_bytes().to_vec())]
    }

    #[test]
    fn a_full_action_parses() {
        let a = parse(
            &fields(
                r#"{"action_id": "a1", "action_type": "execution.execute", "task_id": "t1",
                    "tenant_id": "acme", "tenant_tier": "pro", "extra": 1,
                    "data": {"workflow": "wf", "version": 2, "input": {"n": 1}},
                    "callback_queue": "out"}"#,
            ),
            "in",
        )
        .unwrap();
        assert_eq!(a.workflow, "wf");
        assert_eq!(a.version, Some(2));
        assert_eq!(a.input, json!({"n": 1}));
        assert_eq!(a.callback_queue, "out");
    }

    #[test]
    fn every_problem_is_named() {
        let err = parse(
            &fields(
                r#"{"action_id": 5, "action_type": "execution.cancel", "tenant_id": "",
                    "data": {"version": -1}, "callback_queue": "in"}"#,
            ),
            "in",
        )
        .unwrap_err();
        for needle in [
            "`action_id` is a JSON number",
            "`action_type` is `execution.cancel`",
            "`task_id` is missing",
            "`tenant_id` is empty",
            "`data.workflow` is missing",
            "`data.version` is -1",
            "`callback_queue` is `in`",
        ] {
            assert!(err.contains(needle), "{needle} not in {err}");
        }
    }

    #[test]
    fn odd_entries_are_reasons_not_panics() {
        assert!(parse(&[], "in").unwrap_err().contains("no field `action`"));
        let bad_utf8 = vec![("action".to_string(), vec![0xff, 0xfe])];
        assert!(parse(&bad_utf8, "in").unwrap_err().contains("UTF-8"));
        assert!(
            parse(&fields("{nope"), "in")
                .unwrap_err()
                .contains("not valid JSON")
        );
        assert!(
            parse(&fields("[1]"), "in")
                .unwrap_err()
                .contains("JSON array")
        );
        assert!(
            parse(&fields(r#"{"data": 3}"#), "in")
                .unwrap_err()
                .contains("`data` is a JSON number")
        );
    }
}
