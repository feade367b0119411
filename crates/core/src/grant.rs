//! Grants: the tools an execution may use when a node narrowed them for it.
//!
//! A `planner` node with `emit: workflow` writes a workflow that runs as its child execution.
//! That child may use only the tools the node lists in `with.tools` (narrowed further by the
//! node's own execution's grant, if it has one), and so may every execution below it: the
//! grant is stored with the child (`ExecMeta::grant`) and handed on to the children of its
//! `workflow` nodes. It is held twice:
//!
//! - [`check`], before anything runs: a written definition may not declare `tools:` of its
//!   own, and every tool it names (a `tool` node's `tool`, an agent's `with.tools`, a
//!   `compensate` tool, in loop bodies too) must be granted. Each violation is a
//!   [`Diagnostic`] with code `NOT_ALLOWED` at its place, which the planner sends back to the
//!   model with the validator's own.
//! - the tool executor, at every call: a call whose context carries a grant that does not
//!   name its tool is refused with `NOT_ALLOWED` (and audited), whatever the definition says.
//!
//! Pure: no IO; works on the definition as a JSON value, so a definition that does not decode
//! is still checked (the model gets every problem at once).

use serde_json::Value;

use crate::diagnostic::{Code, Diagnostic, Diagnostics, did_you_mean, push_pointer};

/// Whether `grant` (none: no restriction) lets a call of `tool` through.
pub fn allows(grant: Option<&[String]>, tool: &str) -> bool {
    grant.is_none_or(|g| g.iter().any(|t| t == tool))
}

/// The grant of a child started by a node that lists `listed`, in an execution whose own
/// grant is `parent` (none: no restriction): the listed tools the parent may use, in the
/// node's order, each once.
pub fn narrow(parent: Option<&[String]>, listed: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(listed.len());
    for t in listed {
        if allows(parent, t) && !out.contains(t) {
            out.push(t.clone());
        }
    }
    out
}

/// Every way `definition` (a workflow as a JSON value) goes beyond `granted`: a `tools:`
/// section, and each tool it names that is not granted. Located (node and field filled in);
/// empty when the definition keeps to its grant.
pub fn check(definition: &Value, granted: &[String]) -> Diagnostics {
    let mut found = Diagnostics::default();
    let mut nodes = Vec::new();
    if let Some(tools) = definition.get("tools")
        && !matches!(tools, Value::Array(a) if a.is_empty())
    {
        found.push(Diagnostic::new(
            Code::NotAllowed,
            "/tools",
            format!(
                "a workflow an agent writes may not declare `tools:` of its own: remove the section and call only the tools granted to it ({})",
                list(granted)
            ),
        ));
    }
    if let Some(Value::Array(list)) = definition.get("nodes") {
        walk(list, "/nodes", granted, &mut found, &mut nodes);
    }
    found.locate(&nodes);
    found
}

/// The nodes of one graph (the top level's or a loop body's), loop bodies included.
fn walk(
    list: &[Value],
    at: &str,
    granted: &[String],
    found: &mut Diagnostics,
    nodes: &mut Vec<(String, String)>,
) {
    for (i, node) in list.iter().enumerate() {
        let path = push_pointer(at, &i.to_string());
        if let Some(id) = node.get("id").and_then(Value::as_str) {
            nodes.push((path.clone(), id.to_string()));
        }
        let kind = node.get("type").and_then(Value::as_str);
        let mut named: Vec<(String, &str)> = Vec::new();
        if kind == Some("tool")
            && let Some(t) = node.get("tool").and_then(Value::as_str)
        {
            named.push((push_pointer(&path, "tool"), t));
        }
        if kind == Some("agent")
            && let Some(Value::Array(tools)) = node.get("with").and_then(|w| w.get("tools"))
        {
            let base = push_pointer(&push_pointer(&path, "with"), "tools");
            for (j, t) in tools.iter().enumerate() {
                if let Some(t) = t.as_str() {
                    named.push((push_pointer(&base, &j.to_string()), t));
                }
            }
        }
        if let Some(t) = node
            .get("compensate")
            .and_then(|c| c.get("tool"))
            .and_then(Value::as_str)
        {
            named.push((push_pointer(&push_pointer(&path, "compensate"), "tool"), t));
        }
        for (p, t) in named {
            if !allows(Some(granted), t) {
                found.push(Diagnostic::new(Code::NotAllowed, p, refusal(t, granted)));
            }
        }
        if kind == Some("loop")
            && let Some(Value::Array(body)) = node.get("body").and_then(|b| b.get("nodes"))
        {
            let inner = push_pointer(&push_pointer(&path, "body"), "nodes");
            walk(body, &inner, granted, found, nodes);
        }
    }
}

fn refusal(tool: &str, granted: &[String]) -> String {
    // The name is the model's: kept short in the message.
    let shown: String = tool.chars().take(100).collect();
    let hint = did_you_mean(tool, granted.iter().map(String::as_str))
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default();
    format!(
        "tool `{shown}` is not granted to this workflow: it may use only {}{hint}",
        list(granted)
    )
}

fn list(granted: &[String]) -> String {
    if granted.is_empty() {
        "no tools at all".to_string()
    } else {
        granted
            .iter()
            .map(|t| format!("`{t}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn granted() -> Vec<String> {
        vec!["get_weather".into(), "transform_json".into()]
    }

    #[test]
    fn a_definition_within_its_grant_passes() {
        let d = json!({
            "name": "w", "version": 1,
            "nodes": [
                {"id": "a", "type": "tool", "tool": "get_weather", "with": {"city": "Paris"}},
                {"id": "b", "type": "agent", "agent": "reasoning",
                 "with": {"task": "t", "tools": ["transform_json"]}},
                {"id": "l", "type": "loop", "for_each": [1, 2], "body": {"nodes": [
                    {"id": "c", "type": "tool", "tool": "transform_json"},
                    {"id": "f", "type": "finish"},
                ]}},
                {"id": "done", "type": "finish"},
            ],
            "tools": [],
        });
        assert!(check(&d, &granted()).is_empty());
    }

    #[test]
    fn every_ungranted_tool_and_a_tools_section_are_refused_where_they_are() {
        let d = json!({
            "name": "w", "version": 1,
            "tools": [{"name": "mine", "http": {"method": "GET", "url": "https://x"}}],
            "nodes": [
                {"id": "a", "type": "tool", "tool": "send_email",
                 "compensate": {"tool": "execute_sql"}},
                {"id": "b", "type": "agent", "agent": "planner",
                 "with": {"goal": "g", "tools": ["get_weather", "http_request"]}},
                {"id": "l", "type": "loop", "for_each": [1], "body": {"nodes": [
                    {"id": "c", "type": "tool", "tool": "get_wether"},
                ]}},
                // A `tool` field on another type names no tool.
                {"id": "d", "type": "finish", "tool": "send_email"},
            ],
        });
        let found = check(&d, &granted());
        let got: Vec<(&str, Option<&str>, Option<&str>)> = found
            .iter()
            .map(|d| {
                assert_eq!(d.code, Code::NotAllowed);
                (d.path.as_str(), d.node.as_deref(), d.field.as_deref())
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "/nodes/0/compensate/tool",
                    Some("a"),
                    Some("compensate.tool")
                ),
                ("/nodes/0/tool", Some("a"), Some("tool")),
                ("/nodes/1/with/tools/1", Some("b"), Some("with.tools[1]")),
                ("/nodes/2/body/nodes/0/tool", Some("c"), Some("tool")),
                ("/tools", None, Some("tools")),
            ]
        );
        let typo = found
            .iter()
            .find(|d| d.node.as_deref() == Some("c"))
            .unwrap();
        assert!(
            typo.message.contains(
                "may use only `get_weather`, `transform_json` (did you mean `get_weather`?)"
            ),
            "{}",
            typo.message
        );
        // Not an object, or no nodes: nothing to say (the decoder says it).
        assert!(check(&json!("x"), &granted()).is_empty());
        assert!(check(&json!({"tools": []}), &[]).is_empty());
        let none = check(
            &json!({"nodes": [{"id": "a", "type": "tool", "tool": "x"}]}),
            &[],
        );
        assert!(none.0[0].message.contains("no tools at all"), "{none}");
    }

    #[test]
    fn a_grant_narrows_and_never_widens() {
        let listed = vec!["a".to_string(), "b".into(), "a".into(), "c".into()];
        assert_eq!(narrow(None, &listed), ["a", "b", "c"]);
        let parent = vec!["b".to_string(), "c".into(), "d".into()];
        assert_eq!(narrow(Some(&parent), &listed), ["b", "c"]);
        assert_eq!(narrow(Some(&[]), &listed), Vec::<String>::new());
        assert!(allows(None, "anything"));
        assert!(allows(Some(&parent), "d"));
        assert!(!allows(Some(&parent), "a"));
    }
}
