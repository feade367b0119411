//! A step's work does not grow with the run's history: the pure machine is driven through
//! runs of two sizes and what each step does is counted (JSON values converted for
//! expressions, bytes of the commit it writes, node records held in memory), never timed.

use std::sync::Arc;

use hilo_core::exec::{Commit, ExecMeta, ExecStatus};
use hilo_core::stored::StoredJson;
use hilo_engine::{Action, Input, Machine, MachineWork, Plan};
use serde_json::{Value, json};

use crate::harness::load;

/// A loop over `input.items` whose body calls a tool and reads outer state; before it, a
/// `set`; after it, a finish reading the loop's output.
const LOOP: &str = r#"
name: linear_loop
version: 1
nodes:
  - {id: init, type: set, vars: {seen: 0, label: "run"}}
  - id: each
    type: loop
    for_each: "${input.items}"
    body:
      nodes:
        - {id: call, type: tool, tool: test.echo, with: {item: "${item}", label: "${vars.label}", n: "${index}"}}
        - {id: mark, type: set, vars: {seen: "${index}"}}
        - {id: check, type: condition, when: "${call.output.item == item && init.status == 'succeeded'}"}
        - {id: out, type: finish, output: "{{ call.output.item }}-{{ vars.label }}"}
      edges:
        - {from: call, to: mark}
        - {from: mark, to: check}
        - {from: check, to: out}
  - {id: done, type: finish, output: "${each.output}"}
edges:
  - {from: init, to: each}
  - {from: each, to: done}
"#;

/// A chain of `n` tool steps, each reading the state (input, vars and its predecessor).
fn chain(n: usize) -> String {
    let mut y = "name: linear_chain\nversion: 1\nnodes:\n  - {id: init, type: set, vars: {k: 1}}\n"
        .to_string();
    for i in 0..n {
        let prev = if i == 0 {
            "init".to_string()
        } else {
            format!("s{}", i - 1)
        };
        y.push_str(&format!(
            "  - {{id: s{i}, type: tool, tool: test.echo, with: {{a: \"${{input.items[0]}}\", b: \"${{vars.k}}\", c: \"${{{prev}.status}}\"}}}}\n"
        ));
    }
    y.push_str(
        "  - {id: done, type: finish, output: \"${vars.k}\"}\nedges:\n  - {from: init, to: s0}\n",
    );
    for i in 0..n {
        let to = if i + 1 == n {
            "done".to_string()
        } else {
            format!("s{}", i + 1)
        };
        y.push_str(&format!("  - {{from: s{i}, to: {to}}}\n"));
    }
    y
}

/// The bytes a commit writes (its rows, variables and events as JSON).
fn commit_bytes(c: &Commit) -> usize {
    serde_json::to_vec(&c.nodes).map(|v| v.len()).unwrap_or(0)
        + serde_json::to_vec(&c.vars).map(|v| v.len()).unwrap_or(0)
        + serde_json::to_vec(&c.events).map(|v| v.len()).unwrap_or(0)
}

/// What the steps of a run did: per step (a tool result applied and committed), the JSON
/// values converted and the bytes committed (but by the step that ends the run); the most
/// records held in memory at once.
#[derive(Debug, Default)]
struct Profile {
    steps: usize,
    max_converted: u64,
    max_commit_bytes: usize,
    max_records: usize,
    /// The most node rows one commit wrote.
    max_rows: usize,
    /// Node rows and variables a claim loaded at the restore (`restore_at`).
    loaded: usize,
    /// JSON values converted for expressions and templates over the whole run.
    total_converted: u64,
    /// The most `for_each` items held in running loops' records at once.
    max_items_held: usize,
    /// The most scope checks pending at once.
    max_checks: usize,
    /// The first commit's row of the node `each`, when it wrote one.
    each_row: Option<hilo_core::exec::NodeRecord>,
    status: Option<ExecStatus>,
    output: Option<Value>,
}

/// The plan of `yaml` and a new machine (execution `x1`) for `input`.
fn start(yaml: &str, input: &Value) -> (Arc<Plan>, Machine) {
    let plan = Arc::new(Plan::new(Arc::new(load(yaml)), &|_: &str| None));
    let m = Machine::new(
        plan.clone(),
        "x1".into(),
        "default".into(),
        input.clone(),
        ExecMeta::default(),
        None,
    );
    (plan, m)
}

/// Feeds every tool call its input back as its result until the run ends; `restore_at`
/// rebuilds the machine from its checkpoint (every commit so far, as a store would hold it)
/// after that many steps.
fn drive(yaml: &str, input: Value, restore_at: Option<usize>) -> Profile {
    let (plan, mut m) = start(yaml, &input);
    // The rows a claim loads, as a store keeps them: retired rows are left out (the store
    // keeps them for the history), dropped variables deleted.
    let mut rows = std::collections::BTreeMap::new();
    let mut vars = std::collections::BTreeMap::new();
    let keep = |rows: &mut std::collections::BTreeMap<String, hilo_core::exec::NodeRecord>,
                vars: &mut std::collections::BTreeMap<String, Value>,
                c: &Commit| {
        for n in &c.nodes {
            rows.insert(n.key.clone(), n.clone());
        }
        for k in &c.retired {
            rows.remove(k);
        }
        for (k, v) in &c.vars {
            vars.insert(k.clone(), v.clone());
        }
        for k in &c.dropped_vars {
            vars.remove(k);
        }
    };
    let mut p = Profile::default();
    let mut pending: Vec<Action> = m.apply(Input::Start, 1);
    p.max_items_held = m.work().items_held;
    let first = m.take_commit("me");
    p.max_rows = first.nodes.len();
    p.each_row = first.nodes.iter().find(|n| n.key == "each").cloned();
    keep(&mut rows, &mut vars, &first);
    let mut now = 2;
    while let Some(a) = pending.pop() {
        let step = match a {
            Action::CallTool {
                key,
                input: tool_input,
                attempt,
                ..
            } => Input::ToolDone {
                key,
                attempt,
                compensation: false,
                result: Ok(tool_input),
            },
            Action::Continue => Input::Continue,
            other => panic!("unexpected action {other:?}"),
        };
        let before: MachineWork = m.work();
        pending.extend(m.apply(step, now));
        now += 1;
        let c = m.take_commit("me");
        keep(&mut rows, &mut vars, &c);
        let after = m.work();
        p.max_items_held = p.max_items_held.max(after.items_held);
        p.max_checks = p.max_checks.max(after.checks);
        p.steps += 1;
        // The last step reads the loop's whole output and writes it (the bytes it reads and
        // writes): not counted.
        if !m.status().is_terminal() {
            p.max_converted = p.max_converted.max(after.converted - before.converted);
            p.max_commit_bytes = p.max_commit_bytes.max(commit_bytes(&c));
        }
        p.max_records = p.max_records.max(after.records);
        p.max_rows = p.max_rows.max(c.nodes.len());
        m.committed(c.exec.clone());
        let last = c;
        if restore_at == Some(p.steps) {
            p.loaded = rows.len() + vars.len();
            let loaded = crate::harness::loaded(
                "x1",
                "w",
                &input,
                &last.exec,
                rows.values().cloned().collect(),
                vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            );
            m = Machine::restore(plan.clone(), &loaded);
            pending = m.apply(Input::Resume, now);
            let c = m.take_commit("me");
            keep(&mut rows, &mut vars, &c);
            m.committed(c.exec.clone());
            p.max_records = p.max_records.max(m.work().records);
        }
    }
    p.status = Some(m.status());
    p.output = m.output().cloned();
    p.total_converted = m.work().converted;
    p
}

fn items(n: usize) -> Value {
    json!({"items": (0..n).collect::<Vec<_>>()})
}

/// `big` is within `ratio` of `small` (plus `slack` for the digits a longer run's keys and
/// numbers take).
fn within(what: &str, small: f64, big: f64, ratio: f64, slack: f64) {
    assert!(
        big <= small * ratio + slack,
        "{what} grows with the run: {small} per step at the small size, {big} at the large one"
    );
}

#[test]
fn a_loop_step_does_the_same_work_at_any_iteration_count() {
    let small = drive(LOOP, items(50), None);
    let large = drive(LOOP, items(1_000), None);
    assert_eq!(small.status, Some(ExecStatus::Succeeded));
    assert_eq!(large.status, Some(ExecStatus::Succeeded));
    let expected: Vec<String> = (0..1_000).map(|i| format!("{i}-run")).collect();
    assert_eq!(large.output, Some(json!(expected)));
    assert_eq!((small.steps, large.steps), (50, 1_000));
    // The items are converted once (the loop's `for_each`), then each step reads an item
    // and a few nodes.
    within(
        "values converted",
        small.max_converted as f64,
        large.max_converted as f64,
        1.0,
        0.0,
    );
    within(
        "bytes committed",
        small.max_commit_bytes as f64,
        large.max_commit_bytes as f64,
        1.05,
        64.0,
    );
    // Ended iterations leave memory: the records held stay those of the top level and the
    // iteration in flight.
    within(
        "records held",
        small.max_records as f64,
        large.max_records as f64,
        1.0,
        0.0,
    );
}

#[test]
fn a_chain_step_does_the_same_work_at_any_length() {
    let small = drive(&chain(20), items(3), None);
    let large = drive(&chain(400), items(3), None);
    assert_eq!(large.status, Some(ExecStatus::Succeeded));
    assert_eq!((small.steps, large.steps), (20, 400));
    within(
        "values converted",
        small.max_converted as f64,
        large.max_converted as f64,
        1.0,
        0.0,
    );
    within(
        "bytes committed",
        small.max_commit_bytes as f64,
        large.max_commit_bytes as f64,
        1.05,
        64.0,
    );
}

#[test]
fn a_restored_loop_keeps_its_outputs_and_forgets_ended_iterations() {
    let whole = drive(LOOP, items(300), None);
    let resumed = drive(LOOP, items(300), Some(157));
    assert_eq!(resumed.status, Some(ExecStatus::Succeeded));
    assert_eq!(resumed.output, whole.output);
    assert_eq!(resumed.steps, whole.steps);
    within(
        "records held after a restore",
        whole.max_records as f64,
        resumed.max_records as f64,
        1.0,
        0.0,
    );
}

/// A `for_each` over `input.items` whose body is a transform and a finish, then `tail_nodes`
/// and `tail_edges` (YAML lines).
fn pure_loop(name: &str, tail_nodes: &str, tail_edges: &str) -> String {
    format!(
        r#"
name: {name}
version: 1
nodes:
  - id: each
    type: loop
    for_each: "${{input.items}}"
    body:
      nodes:
        - {{id: t, type: transform, expr: "${{item}}"}}
        - {{id: f, type: finish, output: "${{t.output}}"}}
      edges:
        - {{from: t, to: f}}
{tail_nodes}edges:
{tail_edges}"#
    )
}

fn pure() -> String {
    pure_loop(
        "linear_pure",
        "  - {id: done, type: finish, output: \"${each.output}\"}\n",
        "  - {from: each, to: done}\n",
    )
}

/// Expressions that are paths (`input.items`, `item`, `t.output`, `each.output`) are answered
/// from the JSON they select: the loop's 3,000 items and its 3,000 outputs are never converted
/// for JMESPath (the input once, then the output list once, was twice the list in memory).
#[test]
fn paths_copy_what_they_select_and_convert_nothing() {
    let run = drive(&pure(), items(3_000), None);
    assert_eq!(run.status, Some(ExecStatus::Succeeded));
    assert_eq!(run.output, Some(json!((0..3_000).collect::<Vec<_>>())));
    assert_eq!(run.total_converted, 0);
    // An expression that is not a path still converts what it reads.
    let length = pure_loop(
        "linear_length",
        "  - {id: done, type: finish, output: \"${length(each.output)}\"}\n",
        "  - {from: each, to: done}\n",
    );
    let run = drive(&length, items(3_000), None);
    assert_eq!(run.output, Some(json!(3_000)));
    assert!(run.total_converted > 3_000, "{}", run.total_converted);
}

/// A loop whose body needs no call runs entirely inside the machine: it is committed in
/// pieces of at most `STEP_BUDGET` nodes, and a crash between any two resumes it.
#[test]
fn a_loop_without_calls_commits_in_bounded_pieces_and_resumes_from_any() {
    let n = 2_000;
    let expected = json!({"items": (0..n).collect::<Vec<_>>()})["items"].clone();
    let whole = drive(&pure(), items(n), None);
    assert_eq!(whole.status, Some(ExecStatus::Succeeded));
    assert_eq!(whole.output, Some(expected.clone()));
    let budget = hilo_engine::machine::STEP_BUDGET as usize;
    assert!(whole.steps >= 2 * n / budget, "{} pieces", whole.steps);
    assert!(
        whole.max_rows <= budget + 8,
        "a commit wrote {} node rows",
        whole.max_rows
    );
    assert!(
        whole.max_records <= budget + 8,
        "{} records held",
        whole.max_records
    );
    for at in [1, 2, whole.steps / 2, whole.steps - 1] {
        let resumed = drive(&pure(), items(n), Some(at));
        assert_eq!(
            resumed.status,
            Some(ExecStatus::Succeeded),
            "restored after {at}"
        );
        assert_eq!(
            resumed.output,
            Some(expected.clone()),
            "restored after {at}"
        );
    }
}

/// A `for_each` over a list in the input reads each item there instead of holding a copy of
/// the list, and sees what a copy holds (objects' keys sorted, as evaluating `for_each` gives
/// them): the same outputs, templates included, as a loop over a copy of the list in `vars`,
/// the same row listing the items when the loop starts, and the same after a restore from it.
#[test]
fn a_for_each_over_the_input_reads_its_items_there_without_copying_them() {
    let n = 2_000;
    let body = r#"    body:
      nodes:
        - {id: t, type: transform, expr: "${item}"}
        - {id: f, type: finish, output: {v: "${t.output}", s: "{{ item }}", z: "${item.z}", i: "{{ item.i }}"}}
      edges:
        - {from: t, to: f}
"#;
    let shared = format!(
        r#"name: linear_items_shared
version: 1
nodes:
  - id: each
    type: loop
    for_each: "${{input.items}}"
{body}  - {{id: done, type: finish, output: "${{each.output}}"}}
edges:
  - {{from: each, to: done}}
"#
    );
    let copied = format!(
        r#"name: linear_items_copied
version: 1
nodes:
  - {{id: init, type: set, vars: {{items: "${{input.items}}"}}}}
  - id: each
    type: loop
    for_each: "${{vars.items}}"
{body}  - {{id: done, type: finish, output: "${{each.output}}"}}
edges:
  - {{from: init, to: each}}
  - {{from: each, to: done}}
"#
    );
    // Objects whose keys are out of order, at the top of an item and inside it.
    let input = json!({"items": (0..n)
        .map(|i| json!({"z": {"y": i, "x": [{"q": 1, "p": 2}]}, "i": i, "a": "s"}))
        .collect::<Vec<_>>()});
    let a = drive(&shared, input.clone(), None);
    let b = drive(&copied, input.clone(), None);
    assert_eq!(a.status, Some(ExecStatus::Succeeded));
    assert_eq!(a.output, b.output);
    let first = &a.output.as_ref().unwrap()[0];
    assert_eq!(
        first["v"].to_string(),
        r#"{"a":"s","i":0,"z":{"x":[{"p":2,"q":1}],"y":0}}"#
    );
    assert_eq!(first["s"], b.output.as_ref().unwrap()[0]["s"]);
    assert_eq!(first["z"].to_string(), r#"{"x":[{"p":2,"q":1}],"y":0}"#);
    // No item held in memory; the copy in `vars` is held by its loop (as any copy was).
    assert_eq!((a.max_items_held, b.max_items_held), (0, n));
    // The row written when the loop starts lists the items, as a loop over a copy writes them.
    let items = |p: &Profile| {
        p.each_row
            .as_ref()
            .and_then(|r| r.detail.loop_progress.as_ref())
            .and_then(|l| l.items.clone())
    };
    let outputs = b.output.as_ref().and_then(Value::as_array).unwrap();
    let want: Vec<Value> = outputs.iter().map(|o| o["v"].clone()).collect();
    assert_eq!(items(&a).map(|i| i.len()), Some(n));
    assert_eq!(
        serde_json::to_string(&items(&a)).unwrap(),
        serde_json::to_string(&want).unwrap()
    );
    // Restored from that row in the middle: the same outputs.
    let resumed = drive(&shared, input, Some(a.steps / 2));
    assert_eq!(resumed.output, a.output);
}

/// An iteration that ends takes its pending scope check with it: a loop whose iterations
/// follow one another without a call (they never let the work queue empty, which the checks
/// wait for) kept one per ended iteration until its last.
#[test]
fn a_loop_keeps_no_scope_check_of_an_ended_iteration() {
    let small = drive(&pure(), items(300), None);
    let large = drive(&pure(), items(3_000), None);
    assert_eq!(large.output, Some(json!((0..3_000).collect::<Vec<_>>())));
    assert!(small.max_checks > 0);
    within(
        "scope checks pending",
        small.max_checks as f64,
        large.max_checks as f64,
        1.0,
        0.0,
    );
}

/// The pure loop, then a call: a claim while the call is in flight loads what is live (the
/// loop's row, the call's), not the loop's history.
fn pure_then_call() -> String {
    pure_loop(
        "linear_pure_call",
        "  - {id: after, type: tool, tool: test.echo, with: {n: \"${length(each.output)}\"}}\n  - {id: done, type: finish, output: \"${after.output.n}\"}\n",
        "  - {from: each, to: after}\n  - {from: after, to: done}\n",
    )
}

#[test]
fn a_claim_after_a_loop_loads_what_is_live_not_the_history() {
    for n in [100, 3_000] {
        let whole = drive(&pure_then_call(), items(n), None);
        assert_eq!(whole.output, Some(json!(n)));
        // The last step is the call's result: restore just before it.
        let resumed = drive(&pure_then_call(), items(n), Some(whole.steps - 1));
        assert_eq!(resumed.status, Some(ExecStatus::Succeeded));
        assert_eq!(resumed.output, Some(json!(n)), "{n} items");
        assert!(
            resumed.loaded <= 3,
            "a claim after a loop of {n} loaded {} rows and variables",
            resumed.loaded
        );
    }
}

/// A run resumed at a human node after a loop does not parse the loop's output list (a claim
/// hands large stored values over as their text): restoring and resuming read neither it nor
/// the input; an expression that reads the output afterwards gets it whole.
#[test]
fn a_resume_leaves_stored_values_unparsed_until_read() {
    let yaml = pure_loop(
        "linear_resume_lazy",
        "  - {id: ask, type: human, prompt: ok?}\n  - {id: done, type: finish, output: \"${length(each.output)}\"}\n",
        "  - {from: each, to: ask}\n  - {from: ask, to: done}\n",
    );
    let input = items(2_000);
    let (plan, mut m) = start(&yaml, &input);
    let mut rows = std::collections::BTreeMap::new();
    let mut pending = m.apply(Input::Start, 1);
    let mut last;
    loop {
        let c = m.take_commit("me");
        for n in c.nodes {
            rows.insert(n.key.clone(), n);
        }
        for k in &c.retired {
            rows.remove(k);
        }
        m.committed(c.exec.clone());
        last = c.exec;
        if !pending.iter().any(|a| matches!(a, Action::Continue)) {
            break;
        }
        pending = m.apply(Input::Continue, 2);
    }
    assert_eq!(m.status(), ExecStatus::Waiting);
    // As a store hands them over: values as their text.
    let nodes: Vec<_> = rows
        .into_values()
        .map(|mut r| {
            r.output = r.output.map(|o| StoredJson::from_text(o.to_string()));
            r
        })
        .collect();
    let mut loaded = crate::harness::loaded("x1", "w", &input, &last, nodes, vec![]);
    loaded.exec.input = StoredJson::from_text(input.to_string());
    let mut m = Machine::restore_from(plan, loaded);
    let _ = m.apply(Input::Resume, 3);
    let each = |m: &Machine| m.nodes()["each"].output.clone().unwrap();
    assert!(!m.nodes()["each"].output.as_ref().unwrap().is_parsed());
    assert_eq!(each(&m).get().as_array().map(Vec::len), Some(2_000));
    // The answer: `done` reads the output list.
    let answer = hilo_core::exec::StoredSignal {
        id: 1,
        signal: hilo_core::exec::Signal::Answer {
            node_key: "ask".into(),
            answer: json!(true),
        },
    };
    let _ = m.apply(Input::Signal(answer), 4);
    assert_eq!(m.status(), ExecStatus::Succeeded);
    assert_eq!(m.output(), Some(&json!(2_000)));
}

/// A `parallel` of `n` tool branches joined by a `merge`; every other edge into the join has
/// a `when` that holds for two branches in three.
fn fanout(n: usize) -> String {
    let names: Vec<String> = (0..n).map(|i| format!("b{i}")).collect();
    let mut y = format!(
        "name: linear_fanout\nversion: 1\nnodes:\n  - {{id: fan, type: parallel, branches: [{}]}}\n",
        names.join(", ")
    );
    for (i, b) in names.iter().enumerate() {
        y.push_str(&format!(
            "  - {{id: {b}, type: tool, tool: test.echo, with: {{i: {i}, keep: {}}}}}\n",
            i % 3 != 0
        ));
    }
    y.push_str(
        "  - {id: join, type: merge}\n  - {id: done, type: finish, output: \"${join.output}\"}\nedges:\n",
    );
    for (i, b) in names.iter().enumerate() {
        if i % 2 == 0 {
            y.push_str(&format!(
                "  - {{from: {b}, to: join, when: \"${{{b}.output.keep}}\"}}\n"
            ));
        } else {
            y.push_str(&format!("  - {{from: {b}, to: join}}\n"));
        }
    }
    y.push_str("  - {from: join, to: done}\n");
    y
}

#[test]
fn a_join_is_not_rewritten_as_each_branch_arrives_and_resumes_from_any() {
    // (Both beyond the number of calls dispatched at once: each step completes one branch
    // and starts the next.)
    let small = drive(&fanout(200), items(1), None);
    let large = drive(&fanout(400), items(1), None);
    assert_eq!(large.status, Some(ExecStatus::Succeeded));
    let joined = large.output.clone().unwrap_or_default();
    let joined = joined.as_object().cloned().unwrap_or_default();
    // Live: the odd branches, and the even ones whose `keep` holds.
    let expected = (0..400).filter(|i| i % 2 == 1 || i % 3 != 0).count();
    assert_eq!(joined.len(), expected, "{joined:?}");
    within(
        "bytes committed per branch",
        small.max_commit_bytes as f64,
        large.max_commit_bytes as f64,
        1.05,
        64.0,
    );
    let whole = drive(&fanout(30), items(1), None);
    for at in [1, 2, 11, 20, whole.steps - 1] {
        let resumed = drive(&fanout(30), items(1), Some(at));
        assert_eq!(
            resumed.status,
            Some(ExecStatus::Succeeded),
            "restored after {at}"
        );
        assert_eq!(resumed.output, whole.output, "restored after {at}");
    }
}
