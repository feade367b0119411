//! The pure machine, driven without a store, a driver or a runtime: each test compiles a small
//! workflow into a `Plan`, feeds `Machine::apply` its inputs (start, tool and agent results,
//! timers, answers, child ends, cancellation) at instants it chooses, and checks the actions each
//! step asks for and the commit it takes (events, node rows, variables, tasks, the execution
//! row). One test or more per node kind, plus retries, `on_error` and compensation.

use std::collections::BTreeMap;
use std::sync::Arc;

use hilo_core::exec::{
    Commit, ExecMeta, ExecStatus, ExecUpdate, NodeError, NodeRecord, NodeStatus, ParentRef, Signal,
    StoredSignal, codes,
};
use hilo_core::tool::Caller;
use hilo_engine::{Action, CallScope, Input, Machine, Plan};
use serde_json::{Value, json};

use crate::harness::load;

/// The instant the runs start at (2023-11-14T22:13:20Z); every step is one second later.
const T0: i64 = 1_700_000_000_000;

/// One execution's machine, its clock, and its checkpoint as a store would hold it after every
/// commit so far (for restores).
struct Run {
    m: Machine,
    now: i64,
    signals: i64,
    plan: Arc<Plan>,
    input: Value,
    rows: BTreeMap<String, NodeRecord>,
    vars: BTreeMap<String, Value>,
    exec: Option<ExecUpdate>,
}

/// What one `apply` did: the actions to perform and the commit to write before them.
struct Step {
    actions: Vec<Action>,
    commit: Commit,
}

impl Run {
    /// A new execution `x1` of `yaml` (optionally a child of `parent`), started at [`T0`].
    fn start_with(yaml: &str, input: Value, parent: Option<ParentRef>) -> (Run, Step) {
        let plan = Arc::new(Plan::new(Arc::new(load(yaml)), &|_: &str| None));
        let m = Machine::new(
            plan.clone(),
            "x1".into(),
            "default".into(),
            input.clone(),
            ExecMeta::default(),
            parent,
        );
        let mut run = Run {
            m,
            now: T0 - 1_000,
            signals: 0,
            plan,
            input,
            rows: BTreeMap::new(),
            vars: BTreeMap::new(),
            exec: None,
        };
        let step = run.apply(Input::Start);
        (run, step)
    }

    fn start(yaml: &str, input: Value) -> (Run, Step) {
        Run::start_with(yaml, input, None)
    }

    /// Applies `input` one second after the last step and takes its commit, as the driver does.
    fn apply(&mut self, input: Input) -> Step {
        self.now += 1_000;
        let actions = self.m.apply(input, self.now);
        let commit = self.m.take_commit("me");
        self.m.committed(commit.exec.clone());
        for n in &commit.nodes {
            self.rows.insert(n.key.clone(), n.clone());
        }
        for k in &commit.retired {
            self.rows.remove(k);
        }
        self.vars.extend(commit.vars.iter().cloned());
        for k in &commit.dropped_vars {
            self.vars.remove(k);
        }
        self.exec = Some(commit.exec.clone());
        Step { actions, commit }
    }

    /// The machine rebuilt from the checkpoint (as after a crash), then resumed.
    fn restore(&mut self) -> Step {
        let Some(exec) = &self.exec else {
            panic!("nothing committed yet");
        };
        let loaded = crate::harness::loaded(
            "x1",
            "w",
            &self.input,
            exec,
            self.rows.values().cloned().collect(),
            self.vars.clone().into_iter().collect(),
        );
        self.m = Machine::restore(self.plan.clone(), &loaded);
        self.apply(Input::Resume)
    }

    fn tool_ok(&mut self, key: &str, attempt: u32, output: Value) -> Step {
        self.apply(Input::ToolDone {
            key: key.into(),
            attempt,
            compensation: false,
            result: Ok(output),
        })
    }

    fn tool_err(&mut self, key: &str, attempt: u32, error: NodeError) -> Step {
        self.apply(Input::ToolDone {
            key: key.into(),
            attempt,
            compensation: false,
            result: Err(error),
        })
    }

    fn undo_done(&mut self, key: &str, attempt: u32, result: Result<Value, NodeError>) -> Step {
        self.apply(Input::ToolDone {
            key: key.into(),
            attempt,
            compensation: true,
            result,
        })
    }

    /// Delivers a signal (numbered in order from 1).
    fn signal(&mut self, signal: Signal) -> Step {
        self.signals += 1;
        self.apply(Input::Signal(StoredSignal {
            id: self.signals,
            signal,
        }))
    }
}

impl Step {
    /// The commit's events, one line each as the snapshots show them: `kind node #attempt [code]`.
    fn trace(&self) -> Vec<String> {
        self.commit
            .events
            .iter()
            .map(|e| {
                let mut s = e.kind.as_str().to_string();
                if let Some(n) = &e.node {
                    s.push(' ');
                    s.push_str(n);
                }
                if e.attempt > 0 {
                    s.push_str(&format!(" #{}", e.attempt));
                }
                if let Some(code) = e.data.get("code").and_then(Value::as_str) {
                    s.push_str(&format!(" [{code}]"));
                }
                s
            })
            .collect()
    }

    /// The row of `key` this commit writes.
    fn row(&self, key: &str) -> &NodeRecord {
        match self.commit.nodes.iter().find(|n| n.key == key) {
            Some(r) => r,
            None => panic!("the commit writes no row `{key}`: {:?}", self.keys()),
        }
    }

    /// The keys of the rows this commit writes, in order.
    fn keys(&self) -> Vec<&str> {
        self.commit.nodes.iter().map(|n| n.key.as_str()).collect()
    }

    fn var(&self, name: &str) -> Option<&Value> {
        self.commit
            .vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    fn status(&self) -> ExecStatus {
        self.commit.exec.status
    }
}

/// The complete call the machine of execution `x1` (tenant `default`, no caller's trace, no
/// `tools:` of its own) asks for.
fn call(key: &str, tool: &str, input: Value, attempt: u32, compensation: bool) -> Action {
    let suffix = if compensation { "#compensate" } else { "" };
    Action::CallTool {
        key: key.into(),
        tool: tool.into(),
        input,
        attempt,
        timeout_ms: hilo_engine::plan::defaults::TIMEOUT_MS,
        compensation,
        caller: if compensation {
            Caller::Compensation {
                undoes: format!("x1:{key}"),
            }
        } else {
            Caller::Node
        },
        scope: CallScope {
            tenant: "default".into(),
            execution_id: "x1".into(),
            idempotency_key: format!("x1:{key}{suffix}"),
            trace: hilo_core::trace::call_parent(
                "x1",
                hilo_core::trace::trace_id("x1", None),
                key,
                attempt,
                compensation,
            ),
            local: Vec::new().into(),
            grant: None,
            input: hilo_core::stored::StoredJson::new(Value::Null),
        },
    }
}

fn timer(key: &str, at: i64) -> Action {
    Action::Timer {
        key: key.into(),
        at,
    }
}

fn lines(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

// ---- tool and agent ---------------------------------------------------------------------

const TOOL: &str = r#"
name: m_tool
version: 1
nodes:
  - {id: fetch, type: tool, tool: test.echo, with: {n: "${ input.n }", label: "n={{ input.n }}", fixed: [1, 2]}}
  - {id: done, type: finish, output: "${ fetch.output }"}
edges:
  - {from: fetch, to: done}
"#;

#[test]
fn a_tool_node_calls_its_tool_with_the_evaluated_input_and_its_result_flows_on() {
    let (mut run, s) = Run::start(TOOL, json!({"n": 2}));
    let input = json!({"n": 2, "label": "n=2", "fixed": [1, 2]});
    assert_eq!(
        s.actions,
        vec![call("fetch", "test.echo", input.clone(), 1, false)]
    );
    assert_eq!(
        s.trace(),
        lines(&["execution_started", "node_started fetch #1"])
    );
    assert_eq!(s.status(), ExecStatus::Running);
    let fetch = s.row("fetch");
    assert_eq!(
        (fetch.status, fetch.attempts, fetch.started_at),
        (NodeStatus::Running, 1, Some(T0))
    );
    // Kept, so that a retry or a re-run after a crash sends the same input.
    assert_eq!(fetch.detail.input, Some(input));
    assert_eq!(run.m.idempotency_key("fetch", false), "x1:fetch");

    // A result for another attempt is stale: nothing happens.
    let stale = run.tool_ok("fetch", 2, json!("old"));
    assert!(stale.actions.is_empty() && stale.commit.events.is_empty());
    assert!(stale.commit.exec.unchanged);

    let s = run.tool_ok("fetch", 1, json!({"echo": 2}));
    assert!(s.actions.is_empty());
    assert_eq!(
        s.trace(),
        lines(&[
            "node_succeeded fetch #1",
            "node_succeeded done",
            "execution_succeeded"
        ])
    );
    assert_eq!(s.keys(), ["done", "fetch"]);
    let fetch = s.row("fetch");
    assert_eq!(fetch.output.as_deref(), Some(&json!({"echo": 2})));
    // Kept after it ended too: the request of the record a replay checks a new run against.
    assert_eq!(
        fetch.detail.input,
        Some(json!({"n": 2, "label": "n=2", "fixed": [1, 2]}))
    );
    assert_eq!(s.status(), ExecStatus::Succeeded);
    assert_eq!(s.commit.exec.output, Some(json!({"echo": 2})));
    assert!(s.commit.exec.release);
    assert_eq!(s.commit.exec.finished_at, Some(T0 + 2_000));
}

#[test]
fn an_agent_node_runs_its_agent_with_rendered_fields_and_keeps_its_trace() {
    let yaml = r#"
name: m_agent
version: 1
nodes:
  - {id: classify, type: agent, agent: simple, with: {prompt: "Classify {{ input.text }}", labels: [a, b]}}
  - {id: done, type: finish, output: "${ classify.output.label }"}
edges:
  - {from: classify, to: done}
"#;
    let (mut run, s) = Run::start(yaml, json!({"text": "hello"}));
    let [
        Action::RunAgent {
            key,
            node,
            rendered,
            attempt,
            ..
        },
    ] = &s.actions[..]
    else {
        panic!("{:?}", s.actions);
    };
    assert_eq!((key.as_str(), *attempt), ("classify", 1));
    assert_eq!(node.agent, hilo_core::AgentKind::Simple);
    assert_eq!(rendered["prompt"], json!("Classify hello"));
    // Label lists are data, not templates.
    assert_eq!(rendered["labels"], json!(["a", "b"]));
    assert_eq!(s.row("classify").detail.input.as_ref(), Some(rendered));

    let s = run.apply(Input::AgentDone {
        key: "classify".into(),
        attempt: 1,
        result: Ok(json!({"label": "b", "confidence": 0.9})),
        trace: Some(json!({"calls": 1})),
        calls: Vec::new(),
    });
    let classify = s.row("classify");
    assert_eq!(classify.status, NodeStatus::Succeeded);
    assert_eq!(classify.detail.trace, Some(json!({"calls": 1})));
    assert_eq!(s.status(), ExecStatus::Succeeded);
    assert_eq!(s.commit.exec.output, Some(json!("b")));
}

// ---- pure nodes -------------------------------------------------------------------------

#[test]
fn set_and_transform_write_vars_and_compute_within_one_step() {
    let yaml = r#"
name: m_set
version: 1
nodes:
  - {id: init, type: set, vars: {total: "${ input.price }", label: "p{{ input.price }}"}}
  - {id: calc, type: transform, expr: "{total: vars.total, label: vars.label, both: [vars.total, input.price]}"}
  - {id: done, type: finish, output: "${ calc.output }"}
edges:
  - {from: init, to: calc}
  - {from: calc, to: done}
"#;
    let (_, s) = Run::start(yaml, json!({"price": 5}));
    // No call: the whole run is one step and one commit.
    assert!(s.actions.is_empty());
    assert_eq!(
        s.trace(),
        lines(&[
            "execution_started",
            "node_succeeded init",
            "node_succeeded calc",
            "node_succeeded done",
            "execution_succeeded",
        ])
    );
    assert_eq!(s.var("total"), Some(&json!(5)));
    assert_eq!(s.var("label"), Some(&json!("p5")));
    assert_eq!(
        s.row("init").output.as_deref(),
        Some(&json!({"total": 5, "label": "p5"}))
    );
    let out = json!({"total": 5, "label": "p5", "both": [5, 5]});
    assert_eq!(s.row("calc").output.as_deref(), Some(&out));
    assert_eq!(s.commit.exec.output, Some(out));
}

#[test]
fn a_set_whose_expression_fails_fails_the_node_and_the_execution() {
    let yaml = r#"
name: m_set_err
version: 1
nodes:
  - {id: init, type: set, vars: {x: "${ later.output }"}}
  - {id: later, type: transform, expr: "`1`"}
  - {id: done, type: finish}
edges:
  - {from: init, to: later}
  - {from: later, to: done}
"#;
    let (_, s) = Run::start(yaml, json!({}));
    let init = s.row("init");
    assert_eq!(init.status, NodeStatus::Failed);
    let err = init.error.as_ref().map(|e| (e.code.as_str(), &e.message));
    assert!(
        matches!(err, Some((codes::EXPRESSION, m)) if m.contains("`init`") && m.contains("vars.x")),
        "{err:?}"
    );
    assert_eq!(s.status(), ExecStatus::Failed);
    assert!(s.var("x").is_none());
}

// ---- branching ----------------------------------------------------------------------------

#[test]
fn a_condition_makes_the_other_branch_dead_and_the_dead_path_is_skipped() {
    let yaml = r#"
name: m_condition
version: 1
nodes:
  - {id: check, type: condition, when: "input.n > `3`"}
  - {id: big, type: tool, tool: test.echo, with: {size: big}}
  - {id: small, type: transform, expr: "'small'"}
  - {id: after_small, type: transform, expr: "'never'"}
  - {id: done, type: finish, output: {check: "${ check.output }", big: "${ big.status }", after: "${ after_small.status }"}}
edges:
  - {from: check, to: big, when: "check.output.result"}
  - {from: check, to: small, when: "!(check.output.result)"}
  - {from: small, to: after_small}
  - {from: big, to: done}
  - {from: after_small, to: done}
"#;
    let (mut run, s) = Run::start(yaml, json!({"n": 5}));
    assert_eq!(
        s.actions,
        vec![call("big", "test.echo", json!({"size": "big"}), 1, false)]
    );
    let check = s.row("check");
    assert_eq!(check.output.as_deref(), Some(&json!({"result": true})));
    // Kept with the source, so that a restore rebuilds its targets' incoming edges.
    assert_eq!(
        serde_json::to_value(&check.detail.edges).ok(),
        Some(json!({"big": true, "small": false}))
    );
    // Dead-path elimination: `small` is skipped, and so is everything only it leads to.
    assert_eq!(s.row("small").status, NodeStatus::Skipped);
    assert_eq!(s.row("after_small").status, NodeStatus::Skipped);
    assert!(s.trace().contains(&"node_skipped after_small".to_string()));

    let s = run.tool_ok("big", 1, json!({}));
    assert_eq!(
        s.commit.exec.output,
        Some(json!({"check": {"result": true}, "big": "succeeded", "after": "skipped"}))
    );
}

const SWITCH: &str = r#"
name: m_switch
version: 1
nodes:
  - id: route
    type: switch
    cases:
      - {when: "input.tier == 'gold'", to: gold}
      - {when: "input.total > `100`", to: big}
    default: plain
  - {id: gold, type: transform, expr: "'gold'"}
  - {id: big, type: transform, expr: "'big'"}
  - {id: plain, type: transform, expr: "'plain'"}
  - {id: pick, type: merge, wait: any}
  - {id: done, type: finish, output: {route: "${ route.output }", pick: "${ pick.output }"}}
edges:
  - {from: gold, to: pick}
  - {from: big, to: pick}
  - {from: plain, to: pick}
  - {from: pick, to: done}
"#;

#[test]
fn a_switch_takes_the_first_case_that_holds_and_skips_the_other_targets() {
    let (_, s) = Run::start(SWITCH, json!({"tier": "silver", "total": 500}));
    assert_eq!(s.status(), ExecStatus::Succeeded);
    assert_eq!(
        s.row("route").output.as_deref(),
        Some(&json!({"case": 1, "to": "big"}))
    );
    assert_eq!(s.row("gold").status, NodeStatus::Skipped);
    assert_eq!(s.row("plain").status, NodeStatus::Skipped);
    assert_eq!(s.row("big").status, NodeStatus::Succeeded);
    // `merge` with `wait: any`: the live branch's output, by its id.
    assert_eq!(
        s.commit.exec.output,
        Some(json!({"route": {"case": 1, "to": "big"}, "pick": {"big": "big"}}))
    );

    // No case holds: the default target.
    let (_, s) = Run::start(SWITCH, json!({"tier": "silver", "total": 1}));
    assert_eq!(
        s.row("route").output.as_deref(),
        Some(&json!({"case": "default", "to": "plain"}))
    );
    assert_eq!(s.row("big").status, NodeStatus::Skipped);
    assert_eq!(
        s.commit.exec.output.as_ref().map(|o| &o["pick"]),
        Some(&json!({"plain": "plain"}))
    );
}

#[test]
fn parallel_starts_every_branch_and_merge_waits_for_all_of_them() {
    let yaml = r#"
name: m_parallel
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
"#;
    let (mut run, s) = Run::start(yaml, json!({}));
    assert_eq!(
        s.actions,
        vec![
            call("sms", "test.echo", json!({"channel": "sms"}), 1, false),
            call("email", "test.echo", json!({"channel": "email"}), 1, false),
        ]
    );
    let fan = s.row("fan");
    assert_eq!(
        (fan.status, fan.output.as_deref()),
        (NodeStatus::Succeeded, Some(&Value::Null))
    );

    // One branch done: the join still waits (its row is written when it leaves `pending`).
    let s = run.tool_ok("email", 1, json!("e"));
    assert!(s.actions.is_empty());
    assert_eq!(s.keys(), ["email"]);
    assert_eq!(s.status(), ExecStatus::Running);

    let s = run.tool_ok("sms", 1, json!("s"));
    let join = s.row("join");
    assert_eq!(
        serde_json::to_value(&join.detail.inbound).ok(),
        Some(json!({"email": true, "sms": true}))
    );
    assert_eq!(
        join.output.as_deref(),
        Some(&json!({"email": "e", "sms": "s"}))
    );
    assert_eq!(s.status(), ExecStatus::Succeeded);
}

// ---- loops --------------------------------------------------------------------------------

#[test]
fn a_for_each_loop_runs_an_iteration_per_item_and_keeps_item_order() {
    let yaml = r#"
name: m_for_each
version: 1
nodes:
  - id: each
    type: loop
    for_each: "${ input.items }"
    concurrency: 2
    body:
      nodes:
        - {id: work, type: tool, tool: test.echo, with: {item: "${ item }", i: "${ index }"}}
        - {id: out, type: finish, output: "{{ item }}!"}
      edges:
        - {from: work, to: out}
  - {id: done, type: finish, output: "${ each.output }"}
edges:
  - {from: each, to: done}
"#;
    let (mut run, s) = Run::start(yaml, json!({"items": ["a", "b", "c"]}));
    // Two iterations at once (its concurrency), each node keyed by its iteration.
    assert_eq!(
        s.actions,
        vec![
            call(
                "each[0]/work",
                "test.echo",
                json!({"item": "a", "i": 0}),
                1,
                false
            ),
            call(
                "each[1]/work",
                "test.echo",
                json!({"item": "b", "i": 1}),
                1,
                false
            ),
        ]
    );
    assert_eq!(
        run.m.idempotency_key("each[1]/work", false),
        "x1:each[1]/work"
    );
    let each = s.row("each");
    assert_eq!(each.status, NodeStatus::Running);
    let items = each
        .detail
        .loop_progress
        .as_ref()
        .and_then(|p| p.items.clone());
    assert_eq!(items, Some(vec![json!("a"), json!("b"), json!("c")]));

    // The second iteration ends first: its end is a mark (the loop's row is left alone), and
    // the third iteration starts.
    let s = run.tool_ok("each[1]/work", 1, json!({}));
    assert_eq!(
        s.actions,
        vec![call(
            "each[2]/work",
            "test.echo",
            json!({"item": "c", "i": 2}),
            1,
            false
        )]
    );
    assert_eq!(s.var("\u{1}each[1]/"), Some(&json!("b!")));
    assert!(!s.keys().contains(&"each"));

    let s = run.tool_ok("each[0]/work", 1, json!({}));
    assert!(s.actions.is_empty());
    assert_eq!(s.var("\u{1}each[0]/"), Some(&json!("a!")));

    // The last one ends the loop: its output, in item order; the marks go.
    let s = run.tool_ok("each[2]/work", 1, json!({}));
    let each = s.row("each");
    assert_eq!(each.status, NodeStatus::Succeeded);
    assert_eq!(each.output.as_deref(), Some(&json!(["a!", "b!", "c!"])));
    let mut dropped = s.commit.dropped_vars.clone();
    dropped.sort();
    assert_eq!(dropped, ["\u{1}each[0]/", "\u{1}each[1]/"]);
    assert!(s.commit.vars.is_empty(), "{:?}", s.commit.vars);
    assert_eq!(s.commit.exec.output, Some(json!(["a!", "b!", "c!"])));
}

const UNTIL: &str = r#"
name: m_until
version: 1
nodes:
  - {id: init, type: set, vars: {n: 0}}
  - id: again
    type: loop
    until: "vars.n >= `2`"
    max_iterations: MAX
    body:
      nodes:
        - {id: ping, type: tool, tool: test.echo, with: {n: "${ vars.n }"}}
        - {id: inc, type: set, vars: {n: "${ ping.output.next }"}}
        - {id: out, type: finish, output: "${ vars.n }"}
      edges:
        - {from: ping, to: inc}
        - {from: inc, to: out}
  - {id: done, type: finish, output: "${ again.output }"}
edges:
  - {from: init, to: again}
  - {from: again, to: done}
"#;

#[test]
fn an_until_loop_repeats_until_its_condition_holds() {
    let (mut run, s) = Run::start(&UNTIL.replace("MAX", "5"), json!({}));
    assert_eq!(
        s.actions,
        vec![call(
            "again[0]/ping",
            "test.echo",
            json!({"n": 0}),
            1,
            false
        )]
    );
    // The body's nodes are fresh in every iteration; `vars` carries over.
    let s = run.tool_ok("again[0]/ping", 1, json!({"next": 1}));
    assert_eq!(
        s.actions,
        vec![call(
            "again[1]/ping",
            "test.echo",
            json!({"n": 1}),
            1,
            false
        )]
    );
    assert_eq!(s.var("n"), Some(&json!(1)));
    let s = run.tool_ok("again[1]/ping", 1, json!({"next": 2}));
    assert!(s.actions.is_empty());
    assert_eq!(s.row("again").output.as_deref(), Some(&json!([1, 2])));
    assert_eq!(s.status(), ExecStatus::Succeeded);
}

#[test]
fn an_until_loop_that_reaches_max_iterations_fails_with_loop_limit() {
    let (mut run, _) = Run::start(&UNTIL.replace("MAX", "1"), json!({}));
    let s = run.tool_ok("again[0]/ping", 1, json!({"next": 1}));
    assert!(s.actions.is_empty());
    let again = s.row("again");
    assert_eq!(again.status, NodeStatus::Failed);
    assert_eq!(
        again.error.as_ref().map(|e| e.code.as_str()),
        Some(codes::LOOP_LIMIT)
    );
    assert_eq!(s.status(), ExecStatus::Failed);
}

// ---- humans and timers --------------------------------------------------------------------

const HUMAN: &str = r#"
name: m_human
version: 1
nodes:
  - {id: ask, type: human, prompt: "Refund {{ input.amount }}?", assignee: "${ input.who }", schema: {type: boolean}, timeout_ms: 60000, on_error: {goto: escalate}}
  - {id: done, type: finish, output: {ok: "${ ask.output }"}}
  - {id: escalate, type: handover, with: {reason: "nobody answered", skills: [refunds]}}
edges:
  - {from: ask, to: done}
"#;

#[test]
fn a_human_node_waits_for_an_answer_with_a_task_and_a_deadline() {
    let (mut run, s) = Run::start(HUMAN, json!({"amount": 30, "who": "ann"}));
    let deadline = T0 + 60_000;
    assert_eq!(s.actions, vec![timer("ask", deadline)]);
    assert_eq!(
        s.trace(),
        lines(&["execution_started", "node_waiting ask", "execution_waiting"])
    );
    assert_eq!(s.status(), ExecStatus::Waiting);
    // Runnable again at the deadline, not before.
    assert_eq!(s.commit.exec.runnable_at, Some(deadline));
    let ask = s.row("ask");
    assert_eq!(
        (ask.status, ask.fire_at),
        (NodeStatus::Waiting, Some(deadline))
    );
    let [task] = &s.commit.new_tasks[..] else {
        panic!("{:?}", s.commit.new_tasks);
    };
    assert_eq!(
        (
            task.node_key.as_str(),
            task.prompt.as_str(),
            task.assignee.as_deref()
        ),
        ("ask", "Refund 30?", Some("ann"))
    );
    assert_eq!(
        (task.deadline, task.status.as_str()),
        (Some(deadline), "pending")
    );

    let s = run.signal(Signal::Answer {
        node_key: "ask".into(),
        answer: json!(true),
    });
    assert!(s.actions.is_empty());
    assert_eq!(s.commit.consumed_signals, [1]);
    assert_eq!(s.commit.closed_tasks, ["ask"]);
    assert_eq!(
        s.trace(),
        lines(&[
            "human_answered ask",
            "node_succeeded ask",
            "node_succeeded done",
            "execution_succeeded"
        ])
    );
    assert_eq!(s.commit.exec.output, Some(json!({"ok": true})));

    // The deadline's timer comes anyway: it is stale now.
    let s = run.apply(Input::Timer {
        key: "ask".into(),
        at: deadline,
    });
    assert!(s.actions.is_empty() && s.commit.events.is_empty());
}

#[test]
fn a_human_node_past_its_deadline_fails_with_timeout_and_on_error_hands_over() {
    let (mut run, _) = Run::start(HUMAN, json!({"amount": 30, "who": "ann"}));
    let deadline = T0 + 60_000;
    // A timer for another instant (an older deadline) changes nothing.
    let s = run.apply(Input::Timer {
        key: "ask".into(),
        at: deadline - 1,
    });
    assert!(s.commit.events.is_empty());

    let s = run.apply(Input::Timer {
        key: "ask".into(),
        at: deadline,
    });
    let trace = s.trace();
    assert_eq!(
        trace[..2],
        lines(&["timer_fired ask", "node_failed ask [TIMEOUT]"])
    );
    assert_eq!(
        trace.last().map(String::as_str),
        Some("execution_handed_over")
    );
    assert_eq!(s.commit.closed_tasks, ["ask"]);
    assert_eq!(s.row("escalate").status, NodeStatus::Succeeded);
    assert!(s.row("escalate").detail.goto_live);
    assert_eq!(s.row("done").status, NodeStatus::Skipped);
    // The `handover` sink: its `with` is the execution's output.
    assert_eq!(s.status(), ExecStatus::HandedOver);
    assert_eq!(
        s.commit.exec.output,
        Some(json!({"reason": "nobody answered", "skills": ["refunds"]}))
    );
}

#[test]
fn a_cancel_ends_a_waiting_execution_and_closes_its_task() {
    let (mut run, _) = Run::start(HUMAN, json!({"amount": 30, "who": "ann"}));
    let s = run.signal(Signal::Cancel { compensate: false });
    assert_eq!(s.status(), ExecStatus::Cancelled);
    assert_eq!(s.commit.closed_tasks, ["ask"]);
    assert_eq!(s.row("ask").status, NodeStatus::Cancelled);
    assert_eq!(
        s.trace(),
        lines(&[
            "cancel_requested",
            "node_cancelled ask",
            "execution_cancelled [CANCELLED]"
        ])
    );
}

#[test]
fn a_wait_node_is_a_durable_timer() {
    let yaml = r#"
name: m_wait
version: 1
nodes:
  - {id: pause, type: wait, duration_ms: 5000}
  - {id: done, type: finish, output: "${ pause.output }"}
edges:
  - {from: pause, to: done}
"#;
    let (mut run, s) = Run::start(yaml, json!({}));
    let at = T0 + 5_000;
    assert_eq!(s.actions, vec![timer("pause", at)]);
    assert_eq!(s.status(), ExecStatus::Waiting);
    assert_eq!(s.commit.exec.runnable_at, Some(at));
    assert_eq!(s.row("pause").fire_at, Some(at));

    let s = run.apply(Input::Timer {
        key: "pause".into(),
        at,
    });
    assert_eq!(
        s.trace(),
        lines(&[
            "timer_fired pause",
            "node_succeeded pause",
            "node_succeeded done",
            "execution_succeeded"
        ])
    );
    assert_eq!(
        s.commit.exec.output,
        Some(json!({"fired_at": "2023-11-14T22:13:25.000Z"}))
    );
}

// ---- child workflows ------------------------------------------------------------------------

const PARENT: &str = r#"
name: m_parent
version: 1
nodes:
  - {id: sub, type: workflow, workflow: child, with: {n: "${ input.n }"}}
  - {id: done, type: finish, output: "${ sub.output }"}
edges:
  - {from: sub, to: done}
"#;

#[test]
fn a_workflow_node_starts_a_child_and_takes_its_output() {
    let (mut run, s) = Run::start(PARENT, json!({"n": 4}));
    assert_eq!(
        s.actions,
        vec![Action::StartChild {
            key: "sub".into(),
            child_id: "x1.sub".into(),
            workflow: "child".into(),
            version: None,
            input: json!({"n": 4}),
            tenant: "default".into(),
            parent_id: "x1".into(),
            definition: None,
            grant: None,
        }]
    );
    let sub = s.row("sub");
    assert_eq!(
        (sub.status, &sub.detail.input),
        (NodeStatus::Running, &Some(json!({"n": 4})))
    );
    assert_eq!(s.status(), ExecStatus::Waiting);

    let s = run.signal(Signal::ChildDone {
        node_key: "sub".into(),
        child_id: "x1.sub".into(),
        status: ExecStatus::Succeeded,
        output: Some(json!({"doubled": 8})),
        error: None,
    });
    assert_eq!(s.trace()[0], "child_finished sub");
    assert_eq!(s.status(), ExecStatus::Succeeded);
    assert_eq!(s.commit.exec.output, Some(json!({"doubled": 8})));
}

#[test]
fn a_failed_or_unstartable_child_fails_the_workflow_node() {
    let (mut run, _) = Run::start(PARENT, json!({"n": -1}));
    let s = run.signal(Signal::ChildDone {
        node_key: "sub".into(),
        child_id: "x1.sub".into(),
        status: ExecStatus::Failed,
        output: None,
        error: Some(NodeError::new("NEGATIVE", "n < 0")),
    });
    let err = s.row("sub").error.clone();
    assert_eq!(
        err.as_ref().map(|e| e.code.as_str()),
        Some(codes::CHILD_FAILED)
    );
    assert!(
        err.is_some_and(|e| e.message.contains("NEGATIVE")),
        "{:?}",
        s.row("sub")
    );
    assert_eq!(s.status(), ExecStatus::Failed);

    let (mut run, _) = Run::start(PARENT, json!({"n": 1}));
    let s = run.apply(Input::ChildFailed {
        key: "sub".into(),
        error: NodeError::new(codes::INVALID_INPUT, "n must be a number"),
    });
    assert_eq!(s.status(), ExecStatus::Failed);
    assert_eq!(
        s.commit.exec.error.map(|e| e.code),
        Some(codes::INVALID_INPUT.to_string())
    );
}

const EMITTER: &str = r#"
name: m_emit
version: 1
nodes:
  - id: plan
    type: agent
    agent: planner
    with: {goal: "Weather in {{ input.city }}", emit: workflow, tools: [test.echo, test.effect, test.echo]}
  - {id: done, type: finish, output: "${ plan.output }"}
edges:
  - {from: plan, to: done}
"#;

/// A planner with `emit: workflow`: its agent's workflow runs as the node's child, under the
/// node's tools narrowed by the execution's own grant; the definition is kept in the node's
/// row, so a restore starts the same child again (never the agent); the child's end ends the
/// node as a `workflow` node's does.
#[test]
fn an_emitting_planner_runs_its_workflow_as_a_child_under_its_grant() {
    let plan = Arc::new(Plan::new(Arc::new(load(EMITTER)), &|_: &str| None));
    let meta = ExecMeta {
        grant: Some(vec!["test.echo".into(), "test.sleep".into()]),
        ..ExecMeta::default()
    };
    let mut m = Machine::new(
        plan,
        "x1".into(),
        "default".into(),
        json!({"city": "Oslo"}),
        meta,
        None,
    );
    let actions = m.apply(Input::Start, T0);
    let [Action::RunAgent { key, scope, .. }] = &actions[..] else {
        panic!("{actions:?}");
    };
    assert_eq!(key, "plan");
    // The agent's own calls carry the execution's grant.
    assert_eq!(
        scope.grant.as_deref(),
        Some(&["test.echo".to_string(), "test.sleep".into()][..])
    );
    let definition =
        json!({"name": "written", "version": 1, "nodes": [{"id": "f", "type": "finish"}]});
    let actions = m.apply(
        Input::AgentDone {
            key: "plan".into(),
            attempt: 1,
            result: Ok(json!({"workflow": definition, "input": {"goal": "g"}, "repairs": 1})),
            trace: Some(json!({"agent": "planner"})),
            calls: Vec::new(),
        },
        T0 + 1_000,
    );
    let start = Action::StartChild {
        key: "plan".into(),
        child_id: "x1.plan".into(),
        workflow: "written".into(),
        version: Some(1),
        input: json!({"goal": "g"}),
        tenant: "default".into(),
        parent_id: "x1".into(),
        definition: Some(Box::new(definition.clone())),
        // The node lists echo, effect, echo; the execution may use echo and sleep.
        grant: Some(vec!["test.echo".into()]),
    };
    assert_eq!(actions, vec![start.clone()]);
    assert_eq!(m.status(), ExecStatus::Waiting);
    let commit = m.take_commit("me");
    m.committed(commit.exec.clone());
    let row = commit.nodes.iter().find(|n| n.key == "plan").unwrap();
    assert_eq!(row.status, NodeStatus::Running);
    assert_eq!(row.detail.trace, Some(json!({"agent": "planner"})));
    let kept = row.detail.emitted.as_ref().unwrap();
    assert_eq!(
        (&kept.definition, &kept.grant),
        (&definition, &vec!["test.echo".to_string()])
    );
    assert_eq!(
        commit.exec.meta.grant,
        Some(vec!["test.echo".into(), "test.sleep".into()])
    );

    // A stale agent result changes nothing while the child runs.
    let again = m.apply(
        Input::AgentDone {
            key: "plan".into(),
            attempt: 1,
            result: Ok(json!({"answer": 1})),
            trace: None,
            calls: Vec::new(),
        },
        T0 + 1_500,
    );
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(m.status(), ExecStatus::Waiting);

    // Restored from its checkpoint, the machine starts the same child again.
    let loaded = crate::harness::loaded(
        "x1",
        "m_emit",
        &json!({"city": "Oslo"}),
        &commit.exec,
        commit.nodes.clone(),
        Vec::new(),
    );
    let mut m = Machine::restore(m.plan().clone(), &loaded);
    let actions = m.apply(Input::Resume, T0 + 2_000);
    assert_eq!(actions, vec![start]);
    let actions = m.apply(
        Input::Signal(StoredSignal {
            id: 1,
            signal: Signal::ChildDone {
                node_key: "plan".into(),
                child_id: "x1.plan".into(),
                status: ExecStatus::Succeeded,
                output: Some(json!({"temp": 21})),
                error: None,
            },
        }),
        T0 + 3_000,
    );
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(m.status(), ExecStatus::Succeeded);
    assert_eq!(m.output(), Some(&json!({"temp": 21})));
}

#[test]
fn an_emitting_planner_without_a_workflow_fails_its_node() {
    let (mut run, _) = Run::start(EMITTER, json!({"city": "Oslo"}));
    let s = run.apply(Input::AgentDone {
        key: "plan".into(),
        attempt: 1,
        result: Ok(json!({"answer": "sunny"})),
        trace: None,
        calls: Vec::new(),
    });
    assert!(s.actions.is_empty(), "{:?}", s.actions);
    let err = s.row("plan").error.clone().unwrap();
    assert_eq!(err.code, codes::OUTPUT_INVALID);
    assert!(
        err.message.contains("`plan` has `emit: workflow`"),
        "{}",
        err.message
    );
    assert_eq!(s.status(), ExecStatus::Failed);
}

#[test]
fn a_child_execution_tells_its_parent_how_it_ended() {
    let parent = ParentRef {
        execution_id: "p1".into(),
        node_key: "sub".into(),
    };
    let (_, s) = Run::start_with(
        "name: child\nversion: 1\nnodes:\n  - {id: done, type: finish, output: {doubled: \"${ input.n }\"}}\n",
        json!({"n": 8}),
        Some(parent),
    );
    assert_eq!(
        s.commit.notify_parent,
        Some((
            "p1".to_string(),
            Signal::ChildDone {
                node_key: "sub".into(),
                child_id: "x1".into(),
                status: ExecStatus::Succeeded,
                output: Some(json!({"doubled": 8})),
                error: None,
            }
        ))
    );
}

// ---- failure and retry ----------------------------------------------------------------------

#[test]
fn a_retryable_failure_is_retried_after_its_backoff_with_the_same_input() {
    let yaml = r#"
name: m_retry
version: 1
nodes:
  - {id: flaky, type: tool, tool: test.flaky, with: {fail_times: 1}, retry: {max_attempts: 3, initial_ms: 100, multiplier: 2.0, max_ms: 1000, jitter: false}}
  - {id: done, type: finish, output: "${ flaky.attempts }"}
edges:
  - {from: flaky, to: done}
"#;
    let (mut run, _) = Run::start(yaml, json!({}));
    let s = run.tool_err(
        "flaky",
        1,
        NodeError::retryable(codes::UPSTREAM_ERROR, "try again"),
    );
    let at = T0 + 1_000 + 100;
    assert_eq!(s.actions, vec![timer("flaky", at)]);
    assert_eq!(
        s.trace(),
        lines(&["node_retrying flaky #1 [UPSTREAM_ERROR]"])
    );
    let flaky = s.row("flaky");
    assert_eq!(
        (flaky.status, flaky.fire_at),
        (NodeStatus::Running, Some(at))
    );
    assert_eq!(
        flaky.detail.last_error.as_ref().map(|e| e.code.as_str()),
        Some(codes::UPSTREAM_ERROR)
    );
    // A retry pending is work in progress, not a wait.
    assert_eq!(s.status(), ExecStatus::Running);

    let s = run.apply(Input::Timer {
        key: "flaky".into(),
        at,
    });
    assert_eq!(
        s.actions,
        vec![call(
            "flaky",
            "test.flaky",
            json!({"fail_times": 1}),
            2,
            false
        )]
    );
    assert_eq!(
        s.trace(),
        lines(&["timer_fired flaky #2", "node_started flaky #2"])
    );
    // The first attempt's late result is stale.
    let s = run.tool_ok("flaky", 1, json!("late"));
    assert!(s.commit.events.is_empty());

    let s = run.tool_ok("flaky", 2, json!("ok"));
    assert_eq!(s.row("flaky").attempts, 2);
    assert_eq!(s.commit.exec.output, Some(json!(2)));
}

#[test]
fn a_failure_that_is_not_retryable_follows_on_error() {
    let yaml = r#"
name: m_on_error
version: 1
nodes:
  - {id: soft, type: tool, tool: test.fail, on_error: continue, retry: {max_attempts: 3}}
  - {id: hard, type: tool, tool: test.fail}
  - {id: done, type: finish}
edges:
  - {from: soft, to: hard}
  - {from: hard, to: done}
"#;
    let (mut run, _) = Run::start(yaml, json!({}));
    // `continue`: failed, its error recorded, its edges live all the same.
    let s = run.tool_err("soft", 1, NodeError::new("UPSTREAM_REJECTED", "no"));
    assert_eq!(
        s.actions,
        vec![call("hard", "test.fail", json!({}), 1, false)]
    );
    let soft = s.row("soft");
    assert_eq!((soft.status, soft.attempts), (NodeStatus::Failed, 1));
    // `fail` (the default): the execution fails with the node's error.
    let s = run.tool_err("hard", 1, NodeError::new("CARD_DECLINED", "declined"));
    assert_eq!(s.status(), ExecStatus::Failed);
    assert_eq!(
        s.commit.exec.error.map(|e| e.code),
        Some("CARD_DECLINED".to_string())
    );
}

// ---- sinks ----------------------------------------------------------------------------------

#[test]
fn a_fail_node_ends_the_execution_failed_with_its_code_and_message() {
    let yaml = r#"
name: m_fail
version: 1
nodes:
  - {id: boom, type: fail, with: {code: OUT_OF_STOCK, message: "no stock for {{ input.sku }}"}}
"#;
    let (_, s) = Run::start(yaml, json!({"sku": "X1"}));
    assert_eq!(s.status(), ExecStatus::Failed);
    let err = s.commit.exec.error.clone();
    assert_eq!(
        err.map(|e| (e.code, e.message)),
        Some(("OUT_OF_STOCK".to_string(), "no stock for X1".to_string()))
    );
    assert_eq!(
        s.trace(),
        lines(&[
            "execution_started",
            "node_failed boom [OUT_OF_STOCK]",
            "execution_failed [OUT_OF_STOCK]"
        ])
    );
}

// ---- compensation ---------------------------------------------------------------------------

const SAGA: &str = r#"
name: m_saga
version: 1
nodes:
  - {id: reserve, type: tool, tool: test.echo, with: {seat: 12}, compensate: {tool: test.undo, with: {seat: "${ result.seat }"}}}
  - {id: charge, type: tool, tool: test.echo, with: {amount: 5}, retry: {max_attempts: 2, initial_ms: 50, jitter: false}, compensate: {tool: test.undo, with: {amount: "${ args.amount }"}}}
  - {id: pay, type: tool, tool: test.fail, with: {code: CARD_DECLINED}}
  - {id: done, type: finish}
edges:
  - {from: reserve, to: charge}
  - {from: charge, to: pay}
  - {from: pay, to: done}
"#;

/// The saga run up to `pay`'s failure, which starts unwinding.
fn saga_failed() -> (Run, Step) {
    let (mut run, _) = Run::start(SAGA, json!({}));
    run.tool_ok("reserve", 1, json!({"seat": 12}));
    run.tool_ok("charge", 1, json!({"charged": true}));
    let s = run.tool_err("pay", 1, NodeError::new("CARD_DECLINED", "declined"));
    (run, s)
}

#[test]
fn a_failed_execution_compensates_completed_steps_latest_first() {
    let (mut run, s) = saga_failed();
    // The latest completion first; `args` is the input the node was called with.
    assert_eq!(
        s.actions,
        vec![call("charge", "test.undo", json!({"amount": 5}), 1, true)]
    );
    assert_eq!(
        s.commit
            .exec
            .meta
            .unwinding
            .as_ref()
            .map(|u| u.error.code.as_str()),
        Some("CARD_DECLINED")
    );
    let comp = s.row("charge").detail.compensation.clone();
    assert_eq!(
        comp.map(|c| (c.status, c.attempts)),
        Some((NodeStatus::Running, 1))
    );
    assert_eq!(
        run.m.idempotency_key("charge", true),
        "x1:charge#compensate"
    );

    // `result` is the output of the call being undone.
    let s = run.undo_done("charge", 1, Ok(json!({})));
    assert_eq!(
        s.actions,
        vec![call("reserve", "test.undo", json!({"seat": 12}), 1, true)]
    );
    let s = run.undo_done("reserve", 1, Ok(json!({})));
    assert!(s.actions.is_empty());
    assert_eq!(
        s.trace(),
        lines(&[
            "compensation_succeeded reserve #1",
            "execution_compensated [CARD_DECLINED]"
        ])
    );
    assert_eq!(s.status(), ExecStatus::Compensated);
}

#[test]
fn a_failing_compensation_is_retried_then_listed_in_the_error() {
    let (mut run, _) = saga_failed();
    // Retryable: retried per its node's policy, after a timer of its own.
    let s = run.undo_done(
        "charge",
        1,
        Err(NodeError::retryable(codes::UPSTREAM_ERROR, "busy")),
    );
    let at = T0 + 4_000 + 50;
    assert_eq!(s.actions, vec![timer("charge#compensate", at)]);
    assert_eq!(
        s.trace(),
        lines(&["node_retrying charge#compensate #1 [UPSTREAM_ERROR]"])
    );
    let s = run.apply(Input::Timer {
        key: "charge#compensate".into(),
        at,
    });
    assert_eq!(
        s.actions,
        vec![call("charge", "test.undo", json!({"amount": 5}), 2, true)]
    );
    // Out of attempts: failed for good; the next compensation still runs.
    let s = run.undo_done(
        "charge",
        2,
        Err(NodeError::retryable(codes::UPSTREAM_ERROR, "busy")),
    );
    assert_eq!(
        s.actions,
        vec![call("reserve", "test.undo", json!({"seat": 12}), 1, true)]
    );
    let s = run.undo_done("reserve", 1, Ok(json!({})));
    assert_eq!(s.status(), ExecStatus::Failed);
    let detail = s.commit.exec.error.and_then(|e| e.detail);
    assert_eq!(
        detail.map(|d| d["failed_compensations"][0]["node"].clone()),
        Some(json!("charge"))
    );
}

// ---- restore --------------------------------------------------------------------------------

#[test]
fn a_restored_machine_reissues_what_was_in_flight_with_the_same_keys() {
    // A call in flight: the same call again, same attempt and input (same idempotency key).
    let (mut run, first) = Run::start(TOOL, json!({"n": 2}));
    let s = run.restore();
    assert_eq!(s.actions, first.actions);
    assert_eq!(
        s.trace(),
        lines(&["execution_resumed", "node_started fetch #1"])
    );
    let s = run.tool_ok("fetch", 1, json!("ok"));
    assert_eq!(s.status(), ExecStatus::Succeeded);

    // A pending retry: its timer again, at the same instant.
    let (mut run, _) = Run::start(SAGA, json!({}));
    let s = run.tool_err(
        "reserve",
        1,
        NodeError::retryable(codes::UPSTREAM_ERROR, "busy"),
    );
    let s2 = run.restore();
    assert_eq!(s2.actions, s.actions);

    // A human task: its deadline's timer again, and no second task.
    let (mut run, first) = Run::start(HUMAN, json!({"amount": 1, "who": "bo"}));
    let s = run.restore();
    assert_eq!(s.actions, first.actions);
    assert!(s.commit.new_tasks.is_empty());
    assert_eq!(s.status(), ExecStatus::Waiting);

    // A loop half done: the iteration in flight again, the ended one's output kept.
    let yaml = r#"
name: m_loop_restore
version: 1
nodes:
  - id: each
    type: loop
    for_each: [x, y]
    concurrency: 2
    body:
      nodes:
        - {id: work, type: tool, tool: test.echo, with: {item: "${ item }"}}
        - {id: out, type: finish, output: "${ work.output }"}
      edges:
        - {from: work, to: out}
  - {id: done, type: finish, output: "${ each.output }"}
edges:
  - {from: each, to: done}
"#;
    let (mut run, _) = Run::start(yaml, json!({}));
    run.tool_ok("each[0]/work", 1, json!("X"));
    let s = run.restore();
    assert_eq!(
        s.actions,
        vec![call(
            "each[1]/work",
            "test.echo",
            json!({"item": "y"}),
            1,
            false
        )]
    );
    let s = run.tool_ok("each[1]/work", 1, json!("Y"));
    assert_eq!(s.commit.exec.output, Some(json!(["X", "Y"])));
}
