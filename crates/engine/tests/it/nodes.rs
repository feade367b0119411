//! One test per node type and semantic rule; each snapshot is the execution's trace.

use serde_json::json;

use crate::harness::env;

async fn snap(name: &str, yaml: &str, input: serde_json::Value) -> hilo_engine::Outcome {
    let env = env().await;
    let o = env.run(yaml, input).await;
    let report = env.report(&o).await;
    insta::assert_snapshot!(name, report);
    o
}

#[tokio::test]
async fn tool_chain_with_typed_expressions_and_templates() {
    let o = snap(
        "tool_chain",
        r#"
name: chain
version: 1
input: {type: object, required: [n], properties: {n: {type: integer}}}
nodes:
  - {id: a, type: tool, tool: test.echo, with: {n: "${ input.n }", text: "n is {{ input.n }}"}}
  - {id: b, type: tool, tool: test.echo, with: {doubled: "${ a.output.n }", list: ["${ a.output }"]}}
  - {id: done, type: finish, output: {n: "${ b.output.doubled }", text: "${ a.output.text }"}}
edges:
  - {from: a, to: b}
  - {from: b, to: done}
"#,
        json!({"n": 7}),
    )
    .await;
    assert_eq!(o.output, Some(json!({"n": 7, "text": "n is 7"})));
}

#[tokio::test]
async fn condition_edges_and_dead_path_elimination() {
    // `big` is dead, so `notify` (only reachable through it) is skipped too; `merge` still
    // runs through the live path.
    let o = snap(
        "dead_paths",
        r#"
name: dpe
version: 1
nodes:
  - {id: check, type: condition, when: "input.amount > `100`"}
  - {id: big, type: tool, tool: test.echo, with: {kind: big}}
  - {id: notify, type: tool, tool: test.echo}
  - {id: small, type: tool, tool: test.echo, with: {kind: small}}
  - {id: join, type: merge}
  - {id: done, type: finish, output: {big: "${ big.status }", small: "${ small.output.kind }", notify: "${ notify.status }"}}
edges:
  - {from: check, to: big, when: "check.output.result"}
  - {from: check, to: small, when: "!(check.output.result)"}
  - {from: big, to: notify}
  - {from: notify, to: join}
  - {from: small, to: join}
  - {from: join, to: done}
"#,
        json!({"amount": 5}),
    )
    .await;
    assert_eq!(
        o.output,
        Some(json!({"big": "skipped", "small": "small", "notify": "skipped"}))
    );
}

#[tokio::test]
async fn switch_set_and_transform() {
    let o = snap(
        "switch_set_transform",
        r#"
name: sw
version: 1
nodes:
  - id: route
    type: switch
    cases:
      - {when: "input.tier == 'gold'", to: gold}
      - {when: "input.tier == 'silver'", to: silver}
    default: basic
  - {id: gold, type: set, vars: {discount: 20}}
  - {id: silver, type: set, vars: {discount: 10, label: "tier {{ input.tier }}"}}
  - {id: basic, type: set, vars: {discount: 0}}
  - {id: pick, type: merge, wait: any}
  - {id: total, type: transform, expr: "{price: input.price, discount: vars.discount, label: vars.label}"}
  - {id: done, type: finish, output: "${ total.output }"}
edges:
  - {from: gold, to: pick}
  - {from: silver, to: pick}
  - {from: basic, to: pick}
  - {from: pick, to: total}
  - {from: total, to: done}
"#,
        json!({"tier": "silver", "price": 50}),
    )
    .await;
    assert_eq!(
        o.output,
        Some(json!({"price": 50, "discount": 10, "label": "tier silver"}))
    );
}

#[tokio::test]
async fn for_each_loop_with_concurrency_keeps_item_order() {
    let o = snap(
        "for_each",
        r#"
name: fe
version: 1
nodes:
  - id: each
    type: loop
    for_each: "${ input.items }"
    concurrency: 3
    body:
      nodes:
        - {id: work, type: tool, tool: test.echo, with: {item: "${ item }", i: "${ index }"}}
        - {id: count, type: set, vars: {last: "${ item }"}}
        - {id: out, type: finish, output: "{{ item }}-{{ work.output.i }}"}
      edges:
        - {from: work, to: count}
        - {from: count, to: out}
  - {id: done, type: finish, output: "${ each.output }"}
edges:
  - {from: each, to: done}
"#,
        json!({"items": ["a", "b", "c", "d"]}),
    )
    .await;
    assert_eq!(o.output, Some(json!(["a-0", "b-1", "c-2", "d-3"])));
}

#[tokio::test]
async fn until_loop_sees_its_last_iteration_and_enforces_max_iterations() {
    let ok = r#"
name: until
version: 1
nodes:
  - id: poll
    type: loop
    until: "step.output.i >= `2`"
    max_iterations: 5
    body:
      nodes:
        - {id: step, type: tool, tool: test.echo, with: {i: "${ index }"}}
        - {id: out, type: finish, output: "${ step.output.i }"}
      edges:
        - {from: step, to: out}
  - {id: done, type: finish, output: "${ poll.output[-1] }"}
edges:
  - {from: poll, to: done}
"#;
    let o = snap("until_ok", ok, json!({})).await;
    assert_eq!(o.output, Some(json!(2)));
    let limit = ok.replace("max_iterations: 5", "max_iterations: 2");
    let o = snap("until_limit", &limit, json!({})).await;
    assert_eq!(o.status.as_str(), "failed");
    assert_eq!(o.error.unwrap().code, "LOOP_LIMIT");
}

#[tokio::test]
async fn parallel_branches_join_with_merge_all() {
    let o = snap(
        "parallel_merge",
        r#"
name: par
version: 1
nodes:
  - {id: fan, type: parallel, branches: [sms, email]}
  - {id: sms, type: tool, tool: test.echo, with: {channel: sms}}
  - {id: email, type: tool, tool: test.echo, with: {channel: email}}
  - {id: join, type: merge, wait: all}
  - {id: done, type: finish, output: "${ join.output }"}
edges:
  - {from: sms, to: join}
  - {from: email, to: join}
  - {from: join, to: done}
"#,
        json!({}),
    )
    .await;
    assert_eq!(
        o.output,
        Some(json!({"email": {"channel": "email"}, "sms": {"channel": "sms"}}))
    );
}

#[tokio::test]
async fn retries_with_backoff_only_for_retryable_errors() {
    let o = snap(
        "retries",
        r#"
name: retry
version: 1
defaults: {retry: {max_attempts: 3, initial_ms: 5, multiplier: 2.0, jitter: true}}
nodes:
  - {id: flaky, type: tool, tool: test.flaky, with: {fail_times: 2}}
  - {id: rejected, type: tool, tool: test.fail, with: {code: UPSTREAM_REJECTED}, on_error: continue}
  - {id: done, type: finish, output: {attempts: "${ flaky.attempts }", rejected: "${ rejected.attempts }"}}
edges:
  - {from: flaky, to: rejected}
  - {from: rejected, to: done}
"#,
        json!({}),
    )
    .await;
    assert_eq!(o.output, Some(json!({"attempts": 3, "rejected": 1})));
}

#[tokio::test]
async fn timeouts_are_retryable_errors() {
    let o = snap(
        "timeout",
        r#"
name: slow
version: 1
nodes:
  - {id: slow, type: tool, tool: test.sleep, with: {ms: 2000}, timeout_ms: 20, retry: {max_attempts: 2, initial_ms: 1}}
  - {id: done, type: finish}
edges:
  - {from: slow, to: done}
"#,
        json!({}),
    )
    .await;
    assert_eq!(o.status.as_str(), "failed");
    let e = o.error.unwrap();
    assert_eq!(e.code, "TIMEOUT");
    assert_eq!(
        o.nodes.iter().find(|n| n.key == "slow").unwrap().attempts,
        2
    );
}

#[tokio::test]
async fn on_error_continue_and_goto() {
    let o = snap(
        "on_error",
        r#"
name: errs
version: 1
nodes:
  - {id: soft, type: tool, tool: test.fail, on_error: continue}
  - {id: hard, type: tool, tool: test.fail, with: {code: BOOM}, on_error: {goto: recover}}
  - {id: never, type: tool, tool: test.echo}
  - {id: recover, type: set, vars: {recovered: "${ hard.error.code }"}}
  - {id: done, type: finish, output: {soft: "${ soft.status }", hard: "${ vars.recovered }"}}
  - {id: end2, type: finish}
edges:
  - {from: soft, to: hard}
  - {from: hard, to: never}
  - {from: never, to: end2}
  - {from: recover, to: done}
"#,
        json!({}),
    )
    .await;
    assert_eq!(o.output, Some(json!({"soft": "failed", "hard": "BOOM"})));
}

#[tokio::test]
async fn saga_compensates_in_reverse_completion_order_across_branches() {
    let o = snap(
        "saga",
        r#"
name: saga
version: 1
nodes:
  - {id: reserve, type: tool, tool: test.echo, with: {seat: 12}, compensate: {tool: test.undo, with: {what: "seat ${ reserve.output.seat }", seat: "${ result.seat }"}}}
  - {id: fan, type: parallel, branches: [hotel, car]}
  - {id: hotel, type: tool, tool: test.echo, with: {room: 7}, compensate: {tool: test.undo, with: {room: "${ args.room }"}}}
  - {id: car, type: tool, tool: test.echo, with: {car: 3}, compensate: {tool: test.undo, with: {car: "${ result.car }"}}}
  - {id: join, type: merge}
  - {id: pay, type: tool, tool: test.fail, with: {code: CARD_DECLINED, message: "card declined"}}
  - {id: done, type: finish}
edges:
  - {from: reserve, to: fan}
  - {from: hotel, to: join}
  - {from: car, to: join}
  - {from: join, to: pay}
  - {from: pay, to: done}
"#,
        json!({}),
    )
    .await;
    assert_eq!(o.status.as_str(), "compensated");
    assert_eq!(o.error.unwrap().code, "CARD_DECLINED");
}

#[tokio::test]
async fn failed_compensations_are_listed_and_the_execution_fails() {
    let o = snap(
        "saga_failed_compensation",
        r#"
name: saga2
version: 1
nodes:
  - {id: a, type: tool, tool: test.echo, compensate: {tool: test.undo, with: {fail: true}}}
  - {id: b, type: tool, tool: test.echo, compensate: {tool: test.undo, with: {n: 2}}}
  - {id: boom, type: fail, with: {code: OUT_OF_STOCK, message: "no stock for {{ input.sku }}"}}
edges:
  - {from: a, to: b}
  - {from: b, to: boom}
"#,
        json!({"sku": "X1"}),
    )
    .await;
    assert_eq!(o.status.as_str(), "failed");
    let e = o.error.unwrap();
    assert_eq!(e.code, "OUT_OF_STOCK");
    assert_eq!(e.message, "no stock for X1");
    assert_eq!(e.detail.unwrap()["failed_compensations"][0]["node"], "a");
}

#[tokio::test]
async fn handover_ends_handed_over() {
    let o = snap(
        "handover",
        r#"
name: ho
version: 1
nodes:
  - {id: esc, type: handover, with: {reason: "customer asked", skills: [returns]}}
"#,
        json!({}),
    )
    .await;
    assert_eq!(o.status.as_str(), "handed_over");
    assert_eq!(o.output.unwrap()["skills"], json!(["returns"]));
}

#[tokio::test]
async fn reading_a_node_that_has_not_run_is_an_expression_error() {
    let o = snap(
        "expression_error",
        r#"
name: expr
version: 1
nodes:
  - {id: a, type: condition, when: "`false`"}
  - {id: b, type: tool, tool: test.echo}
  - {id: c, type: tool, tool: test.echo, with: {x: "${ b.output }"}}
  - {id: done, type: finish}
edges:
  - {from: a, to: b, when: "a.output.result"}
  - {from: a, to: c, when: "!(a.output.result)"}
  - {from: c, to: done}
  - {from: b, to: done}
"#,
        json!({}),
    )
    .await;
    // b was skipped, so it is in the state (status skipped, output null): not an error.
    assert_eq!(o.status.as_str(), "succeeded");
    let o = snap(
        "expression_error_not_run",
        r#"
name: expr2
version: 1
nodes:
  - {id: a, type: tool, tool: test.echo, with: {x: "${ later.output }"}}
  - {id: later, type: tool, tool: test.echo}
  - {id: done, type: finish}
edges:
  - {from: a, to: later}
  - {from: later, to: done}
"#,
        json!({}),
    )
    .await;
    let e = o.error.unwrap();
    assert_eq!(e.code, "EXPRESSION");
    assert!(
        e.message.contains("node `a`") && e.message.contains("`later`"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn agent_nodes_fail_not_configured_without_a_runtime() {
    let o = snap(
        "agent_not_configured",
        r#"
name: ag
version: 1
nodes:
  - {id: classify, type: agent, agent: simple, with: {prompt: "Classify {{ input.text }}", labels: [a, b]}}
  - {id: done, type: finish}
edges:
  - {from: classify, to: done}
"#,
        json!({"text": "hi"}),
    )
    .await;
    assert_eq!(o.error.unwrap().code, "NOT_CONFIGURED");
}

#[tokio::test]
async fn wait_nodes_are_durable_timers() {
    let o = snap(
        "wait",
        r#"
name: wt
version: 1
nodes:
  - {id: pause, type: wait, duration_ms: 50}
  - {id: done, type: finish, output: "${ pause.status }"}
edges:
  - {from: pause, to: done}
"#,
        json!({}),
    )
    .await;
    assert_eq!(o.output, Some(json!("succeeded")));
}

#[tokio::test]
async fn invalid_input_names_the_field() {
    let env = env().await;
    let wf = crate::harness::load(
        r#"
name: typed
version: 1
input: {type: object, required: [order_id], properties: {order_id: {type: integer}}}
nodes:
  - {id: done, type: finish}
"#,
    );
    let err = env
        .engine
        .create("default", &wf, true, json!({"order_id": "x"}), false)
        .await
        .unwrap_err();
    assert!(err.is_invalid_input());
    assert!(err.to_string().contains("/order_id"), "{err}");
}

#[tokio::test]
async fn workflow_nodes_run_child_executions_and_child_failure_fails_the_node() {
    let env = env().await;
    env.import(
        r#"
name: child
version: 1
input: {type: object, required: [n], properties: {n: {type: integer}}}
nodes:
  - {id: check, type: condition, when: "input.n > `0`"}
  - {id: ok, type: finish, output: {doubled: "${ input.n }"}}
  - {id: bad, type: fail, with: {code: NEGATIVE, message: "n must be positive"}}
edges:
  - {from: check, to: ok, when: "check.output.result"}
  - {from: check, to: bad, when: "!(check.output.result)"}
"#,
    )
    .await;
    let parent = r#"
name: parent
version: 1
nodes:
  - {id: sub, type: workflow, workflow: child, with: {n: "${ input.n }"}}
  - {id: done, type: finish, output: "${ sub.output }"}
edges:
  - {from: sub, to: done}
"#;
    let o = env.run(parent, json!({"n": 4})).await;
    insta::assert_snapshot!("child_ok", env.report(&o).await);
    assert_eq!(o.output, Some(json!({"doubled": 4})));
    let o = env.run(parent, json!({"n": -1})).await;
    insta::assert_snapshot!("child_failed", env.report(&o).await);
    let e = o.error.unwrap();
    assert_eq!(e.code, "CHILD_FAILED");
    assert!(e.message.contains("NEGATIVE"), "{}", e.message);
    // The child's input is checked against its schema.
    let o = env.run(parent, json!({"n": "x"})).await;
    assert_eq!(o.error.unwrap().code, "INVALID_INPUT");
}

#[tokio::test]
async fn a_paused_execution_resumes_from_its_checkpoint_in_a_new_engine() {
    let yaml = r#"
name: pause
version: 1
nodes:
  - {id: a, type: tool, tool: test.echo, with: {v: 1}}
  - {id: ask, type: human, prompt: "ok {{ a.output.v }}?", schema: {type: boolean}}
  - {id: done, type: finish, output: {a: "${ a.output.v }", ok: "${ ask.output }"}}
edges:
  - {from: a, to: ask}
  - {from: ask, to: done}
"#;
    let env = env().await;
    let o = env.run(yaml, json!({})).await;
    assert_eq!(o.status.as_str(), "waiting");
    let id = o.execution_id.clone();
    let bad = env
        .engine
        .answer("default", &id, "ask", &json!("yes"))
        .await;
    assert!(bad.unwrap_err().is_invalid_input());
    // A fresh engine on the same store (another process, in effect) continues it.
    let other = hilo_engine::Engine::new(
        env.store.clone(),
        crate::harness::executor(&env.store),
        None,
        hilo_engine::EngineOptions::default(),
    );
    other
        .answer("default", &id, "ask", &json!(true))
        .await
        .unwrap();
    let o = other
        .drive("default", &id, hilo_engine::Mode::Foreground, true)
        .await
        .unwrap();
    assert_eq!(o.output, Some(json!({"a": 1, "ok": true})));
    let o = env.resume(&id).await;
    assert_eq!(o.status.as_str(), "succeeded");
    insta::assert_snapshot!("resumed", env.trace(&id).await);
}
