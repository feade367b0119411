//! The JSON Schema of the workflow format (`hilo schema`), for editors: with
//! yaml-language-server, a `# yaml-language-server: $schema=…` line gives completion and checks
//! while typing.
//!
//! It is built from the same field lists the decoder uses ([`crate::decode`]), so the two
//! cannot drift apart on which fields exist; tests check that every example and every
//! generated workflow validates against it. The schema checks structure only: graph rules,
//! expressions and tool names are the validator's job (`hilo validate`).

use serde_json::{Map, Value, json};

use crate::decode::{
    AGENT_WITH_KEYS, COMMON_NODE_KEYS, HTTP_METHODS, MAX_ATTEMPTS, MAX_CONCURRENCY,
    MAX_DURATION_MS, MAX_ITERATIONS, MAX_WAIT_MS, MAX_WEBHOOK_PATH, SCHEDULE_KEYS, WEBHOOK_KEYS,
    node_type_keys,
};
use crate::model::{CatchUp, NODE_TYPES, TRIGGER_TYPES};

/// The `$id` of the schema.
pub const SCHEMA_ID: &str = "https://hilo.dev/schema/workflow-v1.json";

fn duration() -> Value {
    json!({"type": "integer", "minimum": 1, "maximum": MAX_DURATION_MS, "description": "Milliseconds."})
}

fn string(desc: &str) -> Value {
    json!({"type": "string", "minLength": 1, "description": desc})
}

fn input_like(desc: &str) -> Value {
    json!({"type": ["object", "string"], "description": desc})
}

fn node_type_properties(ty: &str) -> Map<String, Value> {
    let mut p = Map::new();
    let expr = || string("JMESPath expression over the state document.");
    match ty {
        "tool" => {
            p.insert("tool".into(), string("Name of the tool to call."));
            p.insert(
                "with".into(),
                input_like("The tool's input; strings may be `${ JMESPath }` or Jinja templates."),
            );
        }
        "agent" => {
            p.insert("agent".into(), json!({"enum": crate::model::AGENT_KINDS}));
            p.insert("with".into(), json!({"$ref": "#/definitions/agent_with"}));
        }
        "condition" => {
            p.insert("when".into(), expr());
        }
        "switch" => {
            p.insert(
                "cases".into(),
                json!({"type": "array", "minItems": 1, "items": {
                    "type": "object", "additionalProperties": false, "required": ["when", "to"],
                    "properties": {"when": expr(), "to": string("Node id made live when `when` holds.")}
                }}),
            );
            p.insert(
                "default".into(),
                string("Node id made live when no case holds."),
            );
        }
        "set" => {
            p.insert(
                "vars".into(),
                json!({"type": "object", "description": "Values written into `vars`."}),
            );
        }
        "transform" => {
            p.insert("expr".into(), expr());
        }
        "loop" => {
            p.insert(
                "for_each".into(),
                json!({"type": ["string", "array"], "description": "JMESPath expression yielding the list to iterate over, or a literal list."}),
            );
            p.insert("until".into(), expr());
            p.insert(
                "max_iterations".into(),
                json!({"type": "integer", "minimum": 1, "maximum": MAX_ITERATIONS}),
            );
            p.insert(
                "concurrency".into(),
                json!({"type": "integer", "minimum": 1, "maximum": MAX_CONCURRENCY}),
            );
            p.insert("body".into(), json!({"$ref": "#/definitions/graph"}));
        }
        "parallel" => {
            p.insert(
                "branches".into(),
                json!({"type": "array", "minItems": 1, "items": string("Node id.")}),
            );
        }
        "merge" => {
            p.insert("wait".into(), json!({"enum": ["all", "any"]}));
        }
        "human" => {
            p.insert(
                "prompt".into(),
                string("What the person is asked (a template)."),
            );
            p.insert(
                "schema".into(),
                json!({"type": ["object", "boolean"], "description": "JSON Schema of the answer."}),
            );
            p.insert("assignee".into(), string("Who should answer."));
            p.insert(
                "skills".into(),
                json!({"type": "array", "items": string("Skill.")}),
            );
        }
        "wait" => {
            p.insert(
                "duration_ms".into(),
                json!({"type": "integer", "minimum": 0, "maximum": MAX_WAIT_MS}),
            );
            p.insert(
                "until".into(),
                string("RFC 3339 instant, or an expression yielding one."),
            );
        }
        "workflow" => {
            p.insert(
                "workflow".into(),
                json!({"type": "string", "pattern": "^[a-z0-9_-]+$"}),
            );
            p.insert("version".into(), json!({"type": "integer", "minimum": 1}));
            p.insert("with".into(), input_like("The child execution's input."));
        }
        "code" => {
            p.insert("language".into(), json!({"enum": crate::code::LANGUAGES}));
            p.insert(
                "source".into(),
                json!({"type": "string", "minLength": 1, "maxLength": crate::decode::MAX_CODE_BYTES,
                       "description": "A JavaScript module whose default export is called with (args, state) and returns JSON."}),
            );
            p.insert(
                "with".into(),
                input_like(
                    "The function's `args`; strings may be `${ JMESPath }` or Jinja templates.",
                ),
            );
            p.insert(
                "reads".into(),
                json!({"type": "array", "items": {"type": "string", "minLength": 1},
                       "description": "State fields (`input`, `vars`, `trigger`, node ids) the function sees as a frozen `state`."}),
            );
            p.insert(
                "limits".into(),
                json!({"type": "object", "additionalProperties": false,
                       "description": "Per-node limits, never above the tenant's maxima (defaults: 1000 ms, 32 MB, 256 KB of stack, 1 MB of output).",
                       "properties": {
                           "timeout_ms": {"type": "integer", "minimum": 1},
                           "memory_mb": {"type": "integer", "minimum": 1},
                           "stack_kb": {"type": "integer", "minimum": 16},
                           "max_output_bytes": {"type": "integer", "minimum": 1}
                       }}),
            );
        }
        "finish" => {
            p.insert(
                "output".into(),
                json!({"description": "The execution's output."}),
            );
        }
        "handover" => {
            p.insert("with".into(), input_like("{reason, skills}"));
        }
        "fail" => {
            p.insert("with".into(), input_like("{code, message}"));
        }
        _ => {}
    }
    p
}

fn common_node_properties() -> Map<String, Value> {
    let mut p = Map::new();
    p.insert(
        "id".into(),
        json!({"type": "string", "pattern": "^[A-Za-z0-9_-]{1,128}$", "description": "Unique node id; expressions refer to the node by it."}),
    );
    p.insert("type".into(), json!({"enum": NODE_TYPES}));
    p.insert("description".into(), json!({"type": "string"}));
    p.insert("timeout_ms".into(), duration());
    p.insert("retry".into(), json!({"$ref": "#/definitions/retry"}));
    p.insert(
        "on_error".into(),
        json!({"oneOf": [
            {"enum": ["fail", "continue"]},
            {"type": "object", "additionalProperties": false, "required": ["goto"],
             "properties": {"goto": string("Node id that becomes live when this node fails.")}}
        ]}),
    );
    p.insert(
        "compensate".into(),
        json!({"$ref": "#/definitions/tool_call"}),
    );
    p
}

fn node_schema() -> Value {
    let common = common_node_properties();
    let mut all_of = Vec::new();
    for ty in NODE_TYPES {
        let mut props = common.clone();
        props.extend(node_type_properties(ty));
        debug_assert!(
            node_type_keys(ty)
                .iter()
                .chain(COMMON_NODE_KEYS)
                .all(|k| props.contains_key(*k))
        );
        let required: Vec<&str> = match ty {
            "tool" => vec!["tool"],
            "agent" => vec!["agent", "with"],
            "condition" => vec!["when"],
            "switch" => vec!["cases"],
            "set" => vec!["vars"],
            "transform" => vec!["expr"],
            "loop" => vec!["body"],
            "parallel" => vec!["branches"],
            "human" => vec!["prompt"],
            "workflow" => vec!["workflow"],
            "code" => vec!["language", "source"],
            _ => vec![],
        };
        let mut then =
            json!({"properties": props, "additionalProperties": false, "required": required});
        if ty == "wait" {
            then["oneOf"] = json!([{"required": ["duration_ms"]}, {"required": ["until"]}]);
        }
        if ty == "loop" {
            then["oneOf"] = json!([
                {"required": ["for_each"]},
                {"required": ["until", "max_iterations"], "not": {"required": ["concurrency"]}}
            ]);
        }
        all_of.push(json!({
            "if": {"properties": {"type": {"const": ty}}, "required": ["type"]},
            "then": then
        }));
    }
    json!({
        "type": "object",
        "required": ["id", "type"],
        "properties": {"type": {"enum": NODE_TYPES}},
        "allOf": all_of
    })
}

/// An entry of `triggers:`: a schedule or a webhook, told apart by `type`.
fn trigger_schema() -> Value {
    let id = json!({"type": "string", "pattern": "^[a-z0-9_-]{1,128}$",
        "description": "Names the trigger as WORKFLOW/ID; default: the type and the trigger's 1-based position (schedule-1, webhook-2)."});
    let schedule = json!({
        "type": {"const": "schedule"},
        "id": id,
        "cron": string("Five fields (minute hour day-of-month month day-of-week), or six with seconds first."),
        "timezone": string("IANA time zone name the cron is read in (default UTC)."),
        "input": {"description": "The execution input, a static value validated against the workflow's `input` (default {})."},
        "catch_up": {"enum": CatchUp::NAMES, "description": "Ticks missed while no process ran: none (skipped, the default), last (the most recent fires once), all (each fires, up to max_catch_up)."}
    });
    let webhook = json!({
        "type": {"const": "webhook"},
        "id": id,
        "path": {"type": "string", "maxLength": MAX_WEBHOOK_PATH,
            "pattern": "^[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*$",
            "description": "Served as POST /hooks/<tenant>/<path>."},
        "secret": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]{0,127}$",
            "description": "Name of the stored secret holding the Standard Webhooks key (whsec_...)."},
        "input": {"not": {"type": "null"},
            "description": "The execution input; `${ }` expressions and templates read `body` and `headers` (default: the body)."}
    });
    debug_assert!(
        SCHEDULE_KEYS.iter().all(|k| schedule.get(*k).is_some())
            && WEBHOOK_KEYS.iter().all(|k| webhook.get(*k).is_some())
    );
    json!({
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"enum": TRIGGER_TYPES}},
        "allOf": [
            {"if": {"properties": {"type": {"const": "schedule"}}, "required": ["type"]},
             "then": {"properties": schedule, "additionalProperties": false, "required": ["cron"]}},
            {"if": {"properties": {"type": {"const": "webhook"}}, "required": ["type"]},
             "then": {"properties": webhook, "additionalProperties": false, "required": ["path", "secret"]}}
        ]
    })
}

/// The JSON Schema (draft-07) of a workflow document.
pub fn workflow_schema() -> Value {
    let agent_with: Map<String, Value> = AGENT_WITH_KEYS
        .iter()
        .map(|k| {
            let v = match *k {
                "output_schema" => json!({"type": ["object", "boolean"]}),
                "labels" | "tools" => json!({"type": "array", "items": {"type": "string", "minLength": 1}}),
                "examples" => json!({"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}}),
                "max_iterations" | "max_tokens" => json!({"type": "integer", "minimum": 1}),
                "max_retries" => json!({"type": "integer", "minimum": 0}),
                "max_repairs" => json!({"type": "integer", "minimum": 0, "maximum": 20, "description": "How often a code agent's script, or a planner's emitted workflow, goes back to the model with what was wrong."}),
                "emit" => json!({"enum": ["workflow"], "description": "A planner that writes a hilo workflow, validated and run as a child that may use only this node's tools."}),
                "temperature" => json!({"type": "number", "minimum": 0, "maximum": 2}),
                "profile" => json!({"type": "string", "examples": crate::agent::BUILTIN_PROFILES}),
                "context" => json!({
                    "type": "object",
                    "additionalProperties": false,
                    "description": "What the agent is given beside its prompt.",
                    "properties": {"history": {
                        "description": "The conversation's recent messages and rolling summary before the prompt (true: the defaults).",
                        "oneOf": [
                            {"type": "boolean"},
                            {"type": "object", "additionalProperties": false, "properties": {
                                "messages": {"type": "string", "description": "Expression giving the messages, oldest first (default ${ input.history })."},
                                "summary": {"type": "string", "description": "Expression giving the summary of older messages (default ${ input.summary })."},
                                "max_messages": {"type": "integer", "minimum": 1, "maximum": 1000},
                                "max_tokens": {"type": "integer", "minimum": 1}
                            }}
                        ]
                    },
                    "episodes": {
                        "description": "How many of the tenant's past reasoning and planner runs with the most similar goals come before the task, successful first (true: 3; false or top_k 0: none; planners recall 3 without it).",
                        "oneOf": [
                            {"type": "boolean"},
                            {"type": "object", "additionalProperties": false, "properties": {
                                "top_k": {"type": "integer", "minimum": 0, "maximum": 20}
                            }}
                        ]
                    },
                    "knowledge": {
                        "description": "The chunks of a knowledge-base collection that a hybrid search for the task finds, put before the prompt with their sources; recorded in the node's trace with their scores.",
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["collection"],
                        "properties": {
                            "collection": {"type": "string", "minLength": 1, "description": "The tenant's collection (a template)."},
                            "query": {"type": "string", "minLength": 1, "description": "What to search for (a template; default: the node's prompt, task or goal)."},
                            "top_k": {"type": "integer", "minimum": 1, "maximum": 20, "description": "How many chunks (default 4)."},
                            "min_score": {"type": "number", "minimum": 0, "maximum": 1, "description": "Chunks with a lower fused score (1.0: first in every ranking) are left out."},
                            "filter": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Document metadata that must match (values are templates)."}
                        }
                    }}
                }),
                _ => json!({"type": "string"}),
            };
            (k.to_string(), v)
        })
        .collect();
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": SCHEMA_ID,
        "title": "hilo workflow",
        "description": "A hilo workflow definition (format v1). Structure only: run `hilo validate` for graph rules, expressions and tools.",
        "type": "object",
        "additionalProperties": false,
        "required": ["name", "version", "nodes"],
        "properties": {
            "name": {"type": "string", "pattern": "^[a-z0-9_-]{1,128}$"},
            "version": {"type": "integer", "minimum": 1},
            "description": {"type": "string"},
            "input": {"type": ["object", "boolean"], "description": "JSON Schema of the execution input."},
            "defaults": {
                "type": "object", "additionalProperties": false,
                "properties": {"timeout_ms": duration(), "retry": {"$ref": "#/definitions/retry"}}
            },
            "tools": {"type": "array", "items": {"oneOf": [{"$ref": "#/definitions/tool"}, {"$ref": "#/definitions/openapi_tools"}]}},
            "nodes": {"type": "array", "minItems": 1, "items": {"$ref": "#/definitions/node"}},
            "edges": {"type": "array", "items": {"$ref": "#/definitions/edge"}},
            "hil": {"$ref": "#/definitions/hil"},
            "triggers": {"type": "array", "items": {"$ref": "#/definitions/trigger"},
                "description": "Schedules and webhooks that start the workflow by themselves."},
            "expose": {"type": "array", "uniqueItems": true, "items": {"enum": ["mcp", "a2a"]},
                "description": "Also offer this workflow as an MCP tool (`mcp`) and an A2A skill (`a2a`)."}
        },
        "definitions": {
            "retry": {
                "type": "object", "additionalProperties": false,
                "properties": {
                    "max_attempts": {"type": "integer", "minimum": 1, "maximum": MAX_ATTEMPTS},
                    "initial_ms": {"type": "integer", "minimum": 0, "maximum": MAX_DURATION_MS},
                    "multiplier": {"type": "number", "minimum": 1, "maximum": 100},
                    "max_ms": {"type": "integer", "minimum": 0, "maximum": MAX_DURATION_MS},
                    "jitter": {"type": "boolean"}
                }
            },
            "tool_call": {
                "type": "object", "additionalProperties": false, "required": ["tool"],
                "properties": {"tool": string("Tool name."), "with": input_like("The tool's input.")}
            },
            "tool": {
                "type": "object", "additionalProperties": false, "required": ["name", "http"],
                "properties": {
                    "name": {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$"},
                    "description": {"type": "string"},
                    "class": {"enum": ["safe", "dangerous"]},
                    "input": {"type": ["object", "boolean"]},
                    "output": {"type": ["object", "boolean"]},
                    "http": {
                        "type": "object", "additionalProperties": false, "required": ["method", "url"],
                        "properties": {
                            "method": {"type": "string", "enum": HTTP_METHODS},
                            "url": string("URL template, rendered against {args, secrets}."),
                            "headers": {"type": "object"},
                            "query": {"type": "object"},
                            "body": {}
                        }
                    },
                    "compensation": {"$ref": "#/definitions/tool_call"},
                    "timeout_ms": duration(),
                    "retry": {"$ref": "#/definitions/retry"}
                }
            },
            "openapi_tools": {
                "type": "object", "additionalProperties": false, "required": ["openapi", "prefix"],
                "properties": {
                    "openapi": string("An OpenAPI 3.0/3.1 document: a file path relative to the workflow, or an https URL (read with --fetch)."),
                    "prefix": {"type": "string", "pattern": "^[A-Za-z0-9_.-]*[A-Za-z0-9_-]$", "description": "Tools are named <prefix>.<operation>."},
                    "operations": {"type": "array", "minItems": 1, "items": {"type": "string"}, "description": "Only these operationIds, tool names or tags (default: all)."},
                    "base_url": string("Overrides the document's servers[0]."),
                    "auth": {
                        "oneOf": [
                            {"type": "object", "additionalProperties": false, "required": ["secret"], "properties": {"secret": string("A secret: bearer token, API key or user:password, placed as the document's security schemes say.")}},
                            {"type": "object", "additionalProperties": false, "required": ["connection"], "properties": {"connection": string("An OAuth 2.0 connection."), "entity": string("Template picking one end user's token.")}}
                        ]
                    },
                    "document": string("The document's text, stored by hilo with the version at import.")
                }
            },
            "agent_with": {
                "type": "object", "additionalProperties": false,
                "properties": agent_with,
                "anyOf": [{"required": ["prompt"]}, {"required": ["task"]}, {"required": ["goal"]}]
            },
            "node": node_schema(),
            "trigger": trigger_schema(),
            "edge": {
                "type": "object", "additionalProperties": false, "required": ["from", "to"],
                "properties": {
                    "from": string("Source node id."),
                    "to": string("Target node id."),
                    "when": string("JMESPath expression; the edge is live only when it holds.")
                }
            },
            "graph": {
                "type": "object", "additionalProperties": false, "required": ["nodes"],
                "properties": {
                    "nodes": {"type": "array", "minItems": 1, "items": {"$ref": "#/definitions/node"}},
                    "edges": {"type": "array", "items": {"$ref": "#/definitions/edge"}}
                }
            },
            "hil": {
                "type": "object", "additionalProperties": false,
                "properties": {
                    "triggers": {"type": "array", "items": {"oneOf": [
                        {"type": "object", "additionalProperties": false, "required": ["type", "node", "below"],
                         "properties": {"type": {"const": "confidence"}, "node": {"type": "string"}, "below": {"type": "number", "minimum": 0, "maximum": 1}}},
                        {"type": "object", "additionalProperties": false, "required": ["type", "patterns"],
                         "properties": {"type": {"const": "explicit_request"}, "patterns": {"type": "array", "items": {"type": "string"}}}},
                        {"type": "object", "additionalProperties": false, "required": ["type", "count"],
                         "properties": {"type": {"const": "consecutive_errors"}, "count": {"type": "integer", "minimum": 1}}}
                    ]}},
                    "skills": {"type": ["string", "array"]}
                }
            }
        }
    })
}

/// Why `instance` breaks a compiled schema: one line per error, each naming the field
/// (a JSON pointer) it is about. Empty when it conforms.
pub fn violations(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| {
            let path = e.instance_path().to_string();
            let at = if path.is_empty() {
                "(root)".to_string()
            } else {
                format!("`{path}`")
            };
            format!("at {at}: {e}")
        })
        .collect()
}

/// [`violations`] against a schema compiled for this one check.
pub fn schema_errors(schema: &Value, instance: &Value) -> Vec<String> {
    match jsonschema::validator_for(schema) {
        Err(e) => vec![format!("the schema itself is invalid: {e}")],
        Ok(v) => violations(&v, instance),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_is_a_valid_schema() {
        let schema = workflow_schema();
        assert!(jsonschema::validator_for(&schema).is_ok());
    }

    #[test]
    fn the_schema_knows_triggers() {
        let v = jsonschema::validator_for(&workflow_schema()).ok();
        let wf = |t: Value| json!({"name": "x", "version": 1, "nodes": [{"id": "a", "type": "finish"}], "triggers": [t]});
        let good = [
            json!({"type": "schedule", "cron": "0 9 * * MON-FRI", "timezone": "Europe/Madrid", "catch_up": "last", "input": {"report": "daily"}}),
            json!({"type": "webhook", "id": "orders", "path": "orders/created", "secret": "shop_secret", "input": "${ body }"}),
        ];
        let bad = [
            json!({"type": "schedule"}),
            json!({"type": "schedule", "cron": "* * * * *", "path": "x"}),
            json!({"type": "schedule", "cron": "* * * * *", "catch_up": "some"}),
            json!({"type": "webhook", "path": "/orders", "secret": "s"}),
            json!({"type": "webhook", "path": "orders", "secret": "1s"}),
            json!({"type": "cron", "cron": "* * * * *"}),
        ];
        assert!(
            v.as_ref()
                .is_some_and(|v| good.iter().all(|t| v.is_valid(&wf(t.clone())))
                    && bad.iter().all(|t| !v.is_valid(&wf(t.clone()))))
        );
    }

    #[test]
    fn the_schema_rejects_unknown_node_fields() {
        let v = jsonschema::validator_for(&workflow_schema()).ok();
        let bad = json!({"name": "x", "version": 1, "nodes": [{"id": "a", "type": "finish", "timout_ms": 1}]});
        let good = json!({"name": "x", "version": 1, "nodes": [{"id": "a", "type": "finish", "timeout_ms": 1}]});
        assert!(
            v.as_ref()
                .is_some_and(|v| !v.is_valid(&bad) && v.is_valid(&good))
        );
    }
}
