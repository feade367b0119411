//! Humans in the loop: a workflow's `hil:` triggers (`confidence`, `explicit_request`) end the
//! execution `handed_over` with a handover record, and `hil.skills` fills in the skills.

use std::sync::Arc;

use async_trait::async_trait;
use hilo_core::exec::{
    AgentRequest, AgentRun, AgentRuntime, EventKind, ExecMeta, ExecStatus, ExecutionStore, Loaded,
    NodeStatus,
};
use hilo_engine::{Action, Input, Machine, Outcome, Plan};
use serde_json::{Value, json};

use crate::harness::{Env, env_with_agents, load};

/// An agent that answers with its rendered `prompt`: a test writes the answer it wants as
/// `prompt: "${ … }"`.
struct Echo;

#[async_trait]
impl AgentRuntime for Echo {
    async fn run(&self, request: AgentRequest) -> AgentRun {
        AgentRun {
            result: Ok(request
                .rendered
                .get("prompt")
                .cloned()
                .unwrap_or(Value::Null)),
            trace: None,
            calls: Vec::new(),
        }
    }
}

async fn agents_env() -> Env {
    env_with_agents(Some(Arc::new(Echo))).await
}

/// The `data` of the execution's `execution_handed_over` event.
async fn handed_over_data(env: &Env, o: &Outcome) -> Value {
    let events = ExecutionStore::events(env.store.as_ref(), &o.execution_id)
        .await
        .unwrap();
    let e = events
        .iter()
        .find(|e| e.kind == EventKind::ExecutionHandedOver)
        .expect("an execution_handed_over event");
    e.data.clone()
}

fn ran(o: &Outcome, key: &str) -> bool {
    o.nodes
        .iter()
        .any(|n| n.key == key && n.started_at.is_some())
}

const CLASSIFY: &str = r#"
name: hil_confidence
version: 1
hil:
  triggers:
    - {type: confidence, node: classify, below: 0.7}
    - {type: consecutive_errors, count: 3}
  skills: "{{ 'returns' if classify.output.label == 'return_request' else 'general' }}"
nodes:
  - {id: classify, type: agent, agent: simple, with: {prompt: "${ input.reply }", labels: [return_request, other]}}
  - {id: next, type: tool, tool: test.echo, with: {label: "${ classify.output.label }"}}
  - {id: done, type: finish, output: "${ next.output }"}
edges:
  - {from: classify, to: next}
  - {from: next, to: done}
"#;

#[tokio::test]
async fn low_confidence_hands_over_before_any_successor() {
    let env = agents_env().await;
    let reply = json!({"label": "return_request", "confidence": 0.42});
    let o = env.run(CLASSIFY, json!({"reply": reply})).await;
    assert_eq!(o.status, ExecStatus::HandedOver);
    assert_eq!(
        o.output,
        Some(json!({
            "reason": "confidence 0.42 of node `classify` is below 0.7",
            "trigger": "confidence",
            "node": "classify",
            "skills": ["returns"],
            "confidence": 0.42,
        }))
    );
    assert!(!ran(&o, "next"), "{:?}", o.nodes);
    assert_eq!(
        env.trace(&o.execution_id).await,
        "execution_started\nnode_started classify #1\nnode_succeeded classify #1\nexecution_handed_over\n"
    );
    assert_eq!(
        handed_over_data(&env, &o).await,
        json!({"trigger": "confidence", "node": "classify"})
    );
    // The node's own output is kept as it was.
    let classify = o.nodes.iter().find(|n| n.key == "classify").unwrap();
    assert_eq!(classify.status, NodeStatus::Succeeded);
    assert_eq!(classify.output.as_deref(), Some(&reply));

    // Skills follow the state: another label, another skill.
    let reply = json!({"label": "other", "confidence": 0});
    let o = env.run(CLASSIFY, json!({"reply": reply})).await;
    assert_eq!(o.status, ExecStatus::HandedOver);
    let out = o.output.unwrap();
    assert_eq!(out["skills"], json!(["general"]));
    assert_eq!(out["confidence"], json!(0));
    assert_eq!(
        out["reason"],
        "confidence 0 of node `classify` is below 0.7"
    );
}

#[tokio::test]
async fn confidence_at_or_above_the_threshold_or_not_a_number_runs_on() {
    let env = agents_env().await;
    for reply in [
        json!({"label": "return_request", "confidence": 0.7}),
        json!({"label": "return_request", "confidence": 0.95}),
        json!({"label": "return_request", "confidence": "0.1"}),
        json!({"label": "return_request", "confidence": null}),
        json!({"label": "return_request"}),
        json!("return_request"),
    ] {
        let o = env.run(CLASSIFY, json!({"reply": reply})).await;
        assert_eq!(o.status, ExecStatus::Succeeded, "{reply}: {:?}", o.error);
        let label = reply.get("label").cloned().unwrap_or(Value::Null);
        assert_eq!(o.output, Some(json!({ "label": label })), "{reply}");
        assert!(ran(&o, "next"));
    }
}

#[tokio::test]
async fn a_confidence_trigger_watches_every_iteration_of_a_loop_body() {
    let yaml = r#"
name: hil_loop
version: 1
hil:
  triggers:
    - {type: confidence, node: classify, below: 0.5}
  skills: "${ classify.output.team }"
nodes:
  - id: each
    type: loop
    for_each: "${ input.replies }"
    body:
      nodes:
        - {id: classify, type: agent, agent: simple, with: {prompt: "${ item }"}}
        - {id: after, type: tool, tool: test.echo, with: {i: "${ index }"}}
        - {id: next, type: finish, output: "${ after.output }"}
      edges:
        - {from: classify, to: after}
        - {from: after, to: next}
  - {id: done, type: finish}
edges:
  - {from: each, to: done}
"#;
    let env = agents_env().await;
    let replies = json!([
        {"confidence": 0.9, "team": "a"},
        {"confidence": 0.3, "team": "billing, returns ,"},
        {"confidence": 0.9, "team": "c"},
    ]);
    let o = env.run(yaml, json!({"replies": replies})).await;
    assert_eq!(o.status, ExecStatus::HandedOver, "{:?}", o.error);
    assert_eq!(
        o.output,
        Some(json!({
            "reason": "confidence 0.3 of node `classify` is below 0.5",
            "trigger": "confidence",
            "node": "classify",
            "skills": ["billing", "returns"],
            "confidence": 0.3,
        }))
    );
    assert!(ran(&o, "each[0]/after"));
    assert!(!ran(&o, "each[1]/after"));
    assert!(!ran(&o, "each[2]/classify"));
    assert!(!ran(&o, "done"));
}

const ASK: &str = r#"
name: hil_ask
version: 1
hil:
  triggers:
    - {type: explicit_request, patterns: ["talk to a human", "hablar con una persona", "MIT EINEM MENSCHEN sprechen", "ПОЗОВИТЕ ЧЕЛОВЕКА"]}
  skills: "{{ 'returns' if classify.output.label == 'return_request' else 'general' }}"
nodes:
  - {id: classify, type: agent, agent: simple, with: {prompt: "${ input.reply }"}}
  - {id: done, type: finish, output: {answered: true}}
edges:
  - {from: classify, to: done}
"#;

#[tokio::test]
async fn an_explicit_request_hands_over_before_any_node_runs() {
    let env = agents_env().await;
    for (message, pattern) in [
        ("  I want to   TALK\tto a\nHuman, now ", "talk to a human"),
        ("¿Puedo HABLAR con  una Persona?", "hablar con una persona"),
        (
            "Ich möchte mit einem Menschen sprechen",
            "MIT EINEM MENSCHEN sprechen",
        ),
        ("пожалуйста,  позовите   человека!", "ПОЗОВИТЕ ЧЕЛОВЕКА"),
    ] {
        let o = env
            .run(ASK, json!({"message": message, "reply": {"label": "x"}}))
            .await;
        assert_eq!(o.status, ExecStatus::HandedOver, "{message}");
        // The skills template reads `classify`, which has not run: no skills, still handed
        // over.
        assert_eq!(
            o.output,
            Some(json!({
                "reason": format!("the customer asked for a person (\"{pattern}\")"),
                "trigger": "explicit_request",
                "node": null,
                "skills": [],
                "pattern": pattern,
            })),
            "{message}"
        );
        assert!(o.nodes.is_empty(), "{message}: {:?}", o.nodes);
        assert_eq!(
            env.trace(&o.execution_id).await,
            "execution_started\nexecution_handed_over\n"
        );
        assert_eq!(
            handed_over_data(&env, &o).await,
            json!({"trigger": "explicit_request", "node": null})
        );
    }
}

#[tokio::test]
async fn no_explicit_request_runs_normally() {
    let env = agents_env().await;
    for input in [
        json!({"message": "where is my parcel? a human wrote this", "reply": 1}),
        json!({"message": "talk to the human", "reply": 1}),
        json!({"message": "talk to a\u{00a0}hu man", "reply": 1}),
        json!({"message": ["talk to a human"], "reply": 1}),
        json!({"text": "talk to a human", "reply": 1}),
    ] {
        let o = env.run(ASK, input.clone()).await;
        assert_eq!(o.status, ExecStatus::Succeeded, "{input}: {:?}", o.error);
        assert_eq!(o.output, Some(json!({"answered": true})));
    }
    // Not an object at all.
    let yaml = ASK.replace("${ input.reply }", "hi");
    let o = env.run(&yaml, json!("talk to a human")).await;
    assert_eq!(o.status, ExecStatus::Succeeded, "{:?}", o.error);
}

#[tokio::test]
async fn literal_skills_split_on_commas_or_kept_as_a_list() {
    let env = agents_env().await;
    for (skills, expected) in [
        (r#""billing, , returns ,""#, json!(["billing", "returns"])),
        ("[general, spanish]", json!(["general", "spanish"])),
        (r#""${ input.teams }""#, json!(["vip", "fr"])),
        (r#""${ input.team }""#, json!(["a", "b"])),
        (r#""${ input.none }""#, json!([])),
    ] {
        let yaml = format!(
            r#"
name: hil_skills
version: 1
hil:
  triggers:
    - {{type: explicit_request, patterns: ["agent please"]}}
  skills: {skills}
nodes:
  - {{id: done, type: finish}}
"#
        );
        let input =
            json!({"message": "Agent please", "teams": ["vip", 3, "fr", null], "team": "a,b"});
        let o = env.run(&yaml, input).await;
        assert_eq!(o.status, ExecStatus::HandedOver, "{skills}");
        assert_eq!(o.output.unwrap()["skills"], expected, "{skills}");
    }
}

#[tokio::test]
async fn a_failing_skills_template_still_hands_over_with_no_skills() {
    // `later` has not run when `classify`'s confidence fires: the template fails.
    let yaml = r#"
name: hil_bad_skills
version: 1
hil:
  triggers:
    - {type: confidence, node: classify, below: 0.7}
  skills: "{{ later.output.team }}"
nodes:
  - {id: classify, type: agent, agent: simple, with: {prompt: "${ input.reply }"}}
  - {id: later, type: tool, tool: test.echo, with: {team: x}}
  - {id: done, type: finish}
edges:
  - {from: classify, to: later}
  - {from: later, to: done}
"#;
    let env = agents_env().await;
    let o = env.run(yaml, json!({"reply": {"confidence": 0.1}})).await;
    assert_eq!(o.status, ExecStatus::HandedOver, "{:?}", o.error);
    let out = o.output.clone().unwrap();
    assert_eq!(out["skills"], json!([]));
    assert_eq!(out["trigger"], "confidence");
    assert!(!ran(&o, "later"));
    // The same as a typed expression.
    let o = env
        .run(
            &yaml.replace("{{ later.output.team }}", "${ later.output.team }"),
            json!({"reply": {"confidence": 0.1}}),
        )
        .await;
    assert_eq!(o.status, ExecStatus::HandedOver, "{:?}", o.error);
    assert_eq!(o.output.unwrap()["skills"], json!([]));
}

#[tokio::test]
async fn a_handover_sink_gets_hil_skills_only_when_its_with_names_none() {
    let sink = |with: &str, hil: bool| {
        let hil = if hil {
            "hil:\n  skills: \"{{ input.team }}, general\"\n"
        } else {
            ""
        };
        format!(
            "name: hil_sink\nversion: 1\n{hil}nodes:\n  - {{id: esc, type: handover, with: {with}}}\n"
        )
    };
    let env = agents_env().await;
    let input = json!({"team": "returns"});

    let o = env
        .run(
            &sink(r#"{reason: "asked", skills: [vip]}"#, true),
            input.clone(),
        )
        .await;
    assert_eq!(o.status, ExecStatus::HandedOver);
    assert_eq!(
        o.output,
        Some(json!({"reason": "asked", "skills": ["vip"]}))
    );
    assert_eq!(
        handed_over_data(&env, &o).await,
        json!({"trigger": "handover_node", "node": "esc"})
    );

    let o = env
        .run(&sink(r#"{reason: "asked"}"#, true), input.clone())
        .await;
    assert_eq!(
        o.output,
        Some(json!({"reason": "asked", "skills": ["returns", "general"]}))
    );
    // The sink's node record holds the same output.
    let esc = o.nodes.iter().find(|n| n.key == "esc").unwrap();
    assert_eq!(esc.output.as_deref(), o.output.as_ref());

    // Without `hil.skills`, exactly what `with` says.
    let o = env
        .run(&sink(r#"{reason: "asked"}"#, false), input.clone())
        .await;
    assert_eq!(o.output, Some(json!({"reason": "asked"})));
    assert_eq!(
        handed_over_data(&env, &o).await,
        json!({"trigger": "handover_node", "node": "esc"})
    );
}

/// A checkpoint as a store would load it after `commit` (the first commit of `id`).
fn checkpoint(id: &str, input: &Value, commit: &hilo_core::exec::Commit) -> Loaded {
    crate::harness::loaded(
        id,
        "hil_confidence",
        input,
        &commit.exec,
        commit.nodes.clone(),
        commit.vars.clone(),
    )
}

#[test]
fn a_run_resumed_after_a_crash_hands_over_the_same_way() {
    let wf = Arc::new(load(CLASSIFY));
    let plan = Arc::new(Plan::new(wf, &|_: &str| None));
    let reply = json!({"label": "return_request", "confidence": 0.42});
    let input = json!({"reply": reply});
    let done = |attempt| Input::AgentDone {
        key: "classify".into(),
        attempt,
        result: Ok(reply.clone()),
        trace: None,
        calls: Vec::new(),
    };
    let new = || {
        Machine::new(
            plan.clone(),
            "x1".into(),
            "default".into(),
            input.clone(),
            ExecMeta::default(),
            None,
        )
    };
    let handed_over = |c: &hilo_core::exec::Commit| {
        c.events
            .iter()
            .find(|e| e.kind == EventKind::ExecutionHandedOver)
            .map(|e| e.data.clone())
    };

    // Uninterrupted.
    let mut m = new();
    let actions = m.apply(Input::Start, 1_000);
    assert!(matches!(&actions[..], [Action::RunAgent { key, .. }] if key == "classify"));
    let first = m.take_commit("me");
    assert!(m.apply(done(1), 2_000).is_empty());
    let end = m.take_commit("me");
    assert_eq!(m.status(), ExecStatus::HandedOver);
    let output = m.output().cloned();
    let data = handed_over(&end);
    assert_eq!(
        data,
        Some(json!({"trigger": "confidence", "node": "classify"}))
    );
    // The node's completion and the handover are one commit: no checkpoint holds a completed
    // `classify` in an execution that still runs (so no resume can miss the decision).
    assert_eq!(end.exec.status, ExecStatus::HandedOver);
    assert!(
        end.nodes
            .iter()
            .any(|n| n.key == "classify" && n.status == NodeStatus::Succeeded)
    );
    assert!(
        end.nodes.iter().all(|n| n.key == "classify"),
        "{:?}",
        end.nodes
    );

    // The process died before the second commit was written: restored from the first, the
    // agent runs again under the same key and the same decision follows.
    let mut r = Machine::restore(plan.clone(), &checkpoint("x1", &input, &first));
    let actions = r.apply(Input::Resume, 5_000);
    assert!(
        matches!(&actions[..], [Action::RunAgent { key, attempt: 1, .. }] if key == "classify"),
        "{actions:?}"
    );
    r.take_commit("me");
    assert!(r.apply(done(1), 6_000).is_empty());
    let again = r.take_commit("me");
    assert_eq!(r.status(), ExecStatus::HandedOver);
    assert_eq!(r.output().cloned(), output);
    assert_eq!(handed_over(&again), data);

    // Restored from the final checkpoint: it stays handed over, nothing more happens.
    let mut last = checkpoint("x1", &input, &first);
    last.exec.status = end.exec.status;
    last.exec.output = end.exec.output.clone();
    last.nodes = end.nodes.clone();
    let mut r = Machine::restore(plan, &last);
    assert!(r.apply(Input::Resume, 7_000).is_empty());
    assert_eq!(r.status(), ExecStatus::HandedOver);
    assert_eq!(r.output().cloned(), output);
}
