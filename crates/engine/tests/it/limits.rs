//! Hostile values at run time (issue #29): expressions and templates that are fine as text but
//! meet state documents — execution inputs, tool outputs — that would make them grow without
//! bound. Each fails its node with `EXPRESSION` naming the limit, and the engine goes on to run
//! the next execution.

use hilo_core::store::DEFAULT_TENANT;
use hilo_engine::Mode;
use serde_json::{Value, json};

use crate::harness::{Env, env};

/// Runs `yaml` with `input` and returns (status, error code, error message).
async fn run(env: &Env, yaml: &str, input: Value) -> (String, String, String) {
    let o = env.run(yaml, input).await;
    let (code, message) = o
        .error
        .map(|e| (e.code.to_string(), e.message))
        .unwrap_or_default();
    (o.status.to_string(), code, message)
}

/// A healthy execution after the hostile one: the engine still runs workflows.
async fn still_healthy(env: &Env) {
    let o = env
        .run(
            r#"
name: ok
version: 1
nodes:
  - {id: a, type: tool, tool: test.echo, with: {n: "${ input.n }"}}
  - {id: done, type: finish, output: {n: "${ a.output.n }", t: "n={{ a.output.n }}"}}
edges:
  - {from: a, to: done}
"#,
            json!({"n": 3}),
        )
        .await;
    assert_eq!(o.output, Some(json!({"n": 3, "t": "n=3"})));
}

const EIGHT: &str = "[@, @, @, @, @, @, @, @]";

#[tokio::test]
async fn growing_expression_over_a_tool_output_is_a_node_error() {
    let env = env().await;
    // The tool's output feeds an expression that multiplies it eightfold twelve times.
    let grow = format!("a.output.s{}", format!(" | join('', {EIGHT})").repeat(12));
    let yaml = format!(
        r#"
name: grow
version: 1
nodes:
  - {{id: a, type: tool, tool: test.echo, with: {{s: "${{ input.s }}"}}}}
  - {{id: t, type: transform, expr: "{grow}"}}
  - {{id: done, type: finish, output: "${{ t.output }}"}}
edges:
  - {{from: a, to: t}}
  - {{from: t, to: done}}
"#
    );
    let (status, code, message) = run(&env, &yaml, json!({"s": "ab"})).await;
    assert_eq!(
        (status.as_str(), code.as_str()),
        ("failed", "EXPRESSION"),
        "{message}"
    );
    assert!(message.contains("size limit"), "{message}");
    assert!(message.contains("node `t`"), "{message}");
    still_healthy(&env).await;
}

#[tokio::test]
async fn shared_values_and_deep_results_are_bounded() {
    let env = env().await;
    // Sharing makes 8^12 nodes out of a few hundred; converting them is refused.
    let yaml = format!(
        r#"
name: shared
version: 1
nodes:
  - {{id: s, type: set, vars: {{x: "${{ input.s{} }}"}}}}
  - {{id: done, type: finish}}
edges:
  - {{from: s, to: done}}
"#,
        format!(" | {EIGHT}").repeat(12)
    );
    let (status, code, message) = run(&env, &yaml, json!({"s": "ab"})).await;
    assert_eq!(
        (status.as_str(), code.as_str()),
        ("failed", "EXPRESSION"),
        "{message}"
    );
    assert!(message.contains("limit"), "{message}");
    // An input nested 120 deep (it parses) wrapped 20 more times would be too deep to read back.
    let mut deep = json!(1);
    for _ in 0..120 {
        deep = json!({ "a": deep });
    }
    let wrap = format!("input.d{}", " | {a: @}".repeat(20));
    let yaml = format!(
        r#"
name: deep
version: 1
nodes:
  - {{id: s, type: set, vars: {{x: "${{ {wrap} }}"}}}}
  - {{id: done, type: finish}}
edges:
  - {{from: s, to: done}}
"#
    );
    let (status, code, message) = run(&env, &yaml, json!({ "d": deep })).await;
    assert_eq!(
        (status.as_str(), code.as_str()),
        ("failed", "EXPRESSION"),
        "{message}"
    );
    assert!(message.contains("value depth limit"), "{message}");
    still_healthy(&env).await;
}

#[tokio::test]
async fn templates_over_large_inputs_are_bounded() {
    let env = env().await;
    let yaml = r#"
name: tmpl
version: 1
nodes:
  - {id: a, type: tool, tool: test.echo, with: {text: "{{ input.big | replace('x', input.big) }}"}}
  - {id: done, type: finish}
edges:
  - {from: a, to: done}
"#;
    let big = "x".repeat(1 << 20);
    let (status, code, message) = run(&env, yaml, json!({ "big": big })).await;
    assert_eq!(
        (status.as_str(), code.as_str()),
        ("failed", "EXPRESSION"),
        "{message}"
    );
    assert!(message.contains("size limit"), "{message}");
    // The message names the template, not the 1 MiB value.
    assert!(message.len() < 2000, "{}", message.len());
    let yaml = r#"
name: loop
version: 1
nodes:
  - {id: a, type: tool, tool: test.echo, with: {text: "{% for i in input.items %}{% for j in input.items %}{{ input.big }}{% endfor %}{% endfor %}"}}
  - {id: done, type: finish}
edges:
  - {from: a, to: done}
"#;
    let items: Vec<u32> = (0..1000).collect();
    let (status, code, message) =
        run(&env, yaml, json!({"items": items, "big": "y".repeat(4096)})).await;
    assert_eq!(
        (status.as_str(), code.as_str()),
        ("failed", "EXPRESSION"),
        "{message}"
    );
    assert!(
        message.contains("size limit") || message.contains("work limit"),
        "{message}"
    );
    still_healthy(&env).await;
}

#[tokio::test]
async fn a_stored_definition_that_skipped_validation_cannot_crash_the_engine() {
    // A definition decoded without validation (as from an older hilo's store) with an
    // expression 5,000 levels deep: compiled when first used, refused, a node error.
    let env = env().await;
    let deep = vec!["a"; 5000].join(".");
    let value = json!({
        "name": "old", "version": 1,
        "nodes": [
            {"id": "t", "type": "transform", "expr": deep},
            {"id": "done", "type": "finish"}
        ],
        "edges": [{"from": "t", "to": "done"}]
    });
    let wf = hilo_core::decode_value(&value).unwrap();
    let id = env
        .engine
        .create(DEFAULT_TENANT, &wf, true, json!({}), false)
        .await
        .unwrap();
    let o = env
        .engine
        .drive(DEFAULT_TENANT, &id, Mode::Foreground, false)
        .await
        .unwrap();
    let e = o.error.unwrap();
    assert_eq!(e.code.to_string(), "EXPRESSION");
    assert!(e.message.contains("nesting limit"), "{}", e.message);
    still_healthy(&env).await;
}
