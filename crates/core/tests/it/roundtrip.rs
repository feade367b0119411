//! Property test: generated valid workflows round-trip through YAML and JSON (parse → write →
//! parse gives an equal value), validate, and satisfy the published JSON Schema.

use hilo_core::*;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Literal strings, including ones a careless YAML writer would turn into other types.
fn literal_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 _:#,.!?'\"\\\\/éñ漢\\-]{0,24}",
        Just("true".to_string()),
        Just("null".to_string()),
        Just("~".to_string()),
        Just("123".to_string()),
        Just("1e3".to_string()),
        Just("0x1F".to_string()),
        Just("no".to_string()),
        Just("- item".to_string()),
        Just("key: value".to_string()),
        Just("line one\nline two\n".to_string()),
        Just("  leading and trailing  ".to_string()),
        Just(String::new()),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        (-1.0e12f64..1.0e12).prop_map(|f| json!(f)),
        literal_string().prop_map(Value::String),
        Just(Value::String("${ input.order_id }".into())),
        Just(Value::String(
            "Hello {{ input.name | default('you') }}".into()
        )),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-z_]{1,8}", json_value(), 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn retry() -> impl Strategy<Value = Option<Retry>> {
    prop::option::of(
        (
            prop::option::of(1u32..=10),
            prop::option::of(0u64..=1000),
            prop::option::of(1.0f64..10.0),
            prop::option::of(1000u64..=60_000),
            prop::option::of(any::<bool>()),
        )
            .prop_map(
                |(max_attempts, initial_ms, multiplier, max_ms, jitter)| Retry {
                    max_attempts,
                    initial_ms,
                    multiplier,
                    max_ms,
                    jitter,
                },
            ),
    )
}

/// A node kind that is not a sink, not a branching node, and needs no graph of its own.
fn step_kind() -> impl Strategy<Value = NodeKind> {
    prop_oneof![
        prop::option::of(object()).prop_map(|with| NodeKind::Tool(ToolNode {
            tool: "http_request".into(),
            with
        })),
        object().prop_map(|v| NodeKind::Set(SetNode {
            vars: v.as_object().cloned().unwrap_or_default()
        })),
        Just(NodeKind::Transform(TransformNode {
            expr: "{total: input.total, items: length(input.items)}".into()
        })),
        Just(NodeKind::Condition(ConditionNode {
            when: "input.total > `100` && !input.vip".into()
        })),
        (0u64..100_000).prop_map(|ms| NodeKind::Wait(WaitNode {
            duration_ms: Some(ms),
            until: None
        })),
        literal_string().prop_map(|p| NodeKind::Human(HumanNode {
            prompt: format!("Approve? {p}"),
            schema: Some(json!({"type": "object", "required": ["approved"], "properties": {"approved": {"type": "boolean"}}})),
            assignee: None,
            skills: Some(vec!["billing".into()]),
        })),
        prop::collection::btree_set("[a-z]{1,6}", 1..4).prop_map(|labels| NodeKind::Agent(
            Box::new(AgentNode {
                agent: AgentKind::Simple,
                with: AgentWith {
                    profile: Some("fast".into()),
                    prompt: Some("Classify: {{ input.message }}".into()),
                    labels: Some(labels.into_iter().collect()),
                    temperature: Some(0.25),
                    ..AgentWith::default()
                },
            })
        )),
        prop::option::of(object()).prop_map(|with| NodeKind::Workflow(WorkflowNode {
            workflow: "child_flow".into(),
            version: Some(2),
            with
        })),
        Just(NodeKind::Merge(MergeNode {
            wait: Some(MergeWait::Any)
        })),
        Just(NodeKind::Loop(LoopNode {
            for_each: Some(Value::String("input.items".into())),
            until: None,
            max_iterations: None,
            concurrency: Some(4),
            body: Graph {
                nodes: vec![
                    Node {
                        id: "body_step".into(),
                        kind: NodeKind::Transform(TransformNode { expr: "item".into() }),
                        description: None,
                        timeout_ms: None,
                        retry: None,
                        on_error: None,
                        compensate: None,
                    },
                    Node {
                        id: "body_done".into(),
                        kind: NodeKind::Finish(FinishNode {
                            output: Some(json!("${ body_step.output }"))
                        }),
                        description: None,
                        timeout_ms: None,
                        retry: None,
                        on_error: None,
                        compensate: None,
                    },
                ],
                edges: vec![Edge {
                    from: "body_step".into(),
                    to: "body_done".into(),
                    when: None
                }],
            },
        })),
    ]
}

fn node(id: String, kind: NodeKind) -> impl Strategy<Value = Node> {
    (
        prop::option::of(literal_string()),
        prop::option::of(1u64..=600_000),
        retry(),
        prop::option::of(prop_oneof![Just(OnError::Fail), Just(OnError::Continue)]),
    )
        .prop_map(move |(description, timeout_ms, retry, on_error)| Node {
            id: id.clone(),
            kind: kind.clone(),
            description,
            timeout_ms,
            retry,
            on_error,
            compensate: None,
        })
}

/// Triggers: schedules (static inputs that fit the generated `input` schema) and webhooks
/// (inputs of any shape, expressions included), with and without explicit ids.
fn triggers() -> impl Strategy<Value = Vec<Trigger>> {
    let static_input = prop::collection::btree_map(
        "[a-h]{1,3}",
        prop_oneof![
            literal_string().prop_map(Value::String),
            any::<i64>().prop_map(|n| json!(n)),
        ],
        0..3,
    )
    .prop_map(|m| Value::Object(m.into_iter().collect()));
    let schedule = (
        prop::sample::select(vec!["0 9 * * MON-FRI", "*/5 * * * * *", "30 2 1 * *"]),
        prop::sample::select(vec!["UTC", "Europe/Madrid", "America/New_York"]),
        prop::option::of(static_input),
        prop::sample::select(vec![CatchUp::None, CatchUp::Last, CatchUp::All]),
    )
        .prop_map(|(cron, tz, input, catch_up)| TriggerKind::Schedule {
            cron: cron.into(),
            timezone: tz.into(),
            input,
            catch_up,
        });
    let webhook = (
        prop::option::of(json_value().prop_filter("not null", |v| !v.is_null())),
        prop::sample::select(vec!["shop_secret", "WEBHOOK_KEY"]),
    )
        .prop_map(|(input, secret)| TriggerKind::Webhook {
            path: String::new(),
            secret: secret.into(),
            input,
        });
    prop::collection::vec((prop_oneof![schedule, webhook], any::<bool>()), 0..4).prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (mut kind, named))| {
                if let TriggerKind::Webhook { path, .. } = &mut kind {
                    *path = format!("hooks/{i}.v1");
                }
                let id = if named {
                    format!("t_{i}")
                } else {
                    Trigger::default_id(kind.type_name(), i + 1)
                };
                Trigger { id, kind }
            })
            .collect()
    })
}

fn workflow() -> impl Strategy<Value = Workflow> {
    let steps = prop::collection::vec(step_kind(), 1..6);
    (
        "[a-z][a-z0-9_-]{0,20}",
        1u64..1_000_000,
        prop::option::of(literal_string()),
        steps,
        prop::option::of(json_value()),
        prop::collection::vec((any::<prop::sample::Index>(), any::<bool>()), 0..4),
        triggers(),
    )
        .prop_flat_map(
            |(name, version, description, kinds, output, extra, triggers)| {
                let mut loop_seen = false;
                let nodes: Vec<_> = kinds
                    .into_iter()
                    .filter(|k| {
                        // The loop body's ids are fixed: at most one loop per workflow.
                        let is_loop = matches!(k, NodeKind::Loop(_));
                        let keep = !(is_loop && loop_seen);
                        loop_seen |= is_loop;
                        keep
                    })
                    .enumerate()
                    .map(|(i, k)| node(format!("step_{i}"), k).boxed())
                    .collect();
                (
                    Just((name, version, description, output, extra, triggers)),
                    nodes,
                )
            },
        )
        .prop_map(
            |((name, version, description, output, extra, triggers), mut nodes)| {
                let n = nodes.len();
                nodes.push(Node {
                    id: "done".into(),
                    kind: NodeKind::Finish(FinishNode { output }),
                    description: None,
                    timeout_ms: None,
                    retry: None,
                    on_error: None,
                    compensate: None,
                });
                // A chain through every step to `done`, plus forward edges with conditions.
                let mut edges: Vec<Edge> = (0..n)
                    .map(|i| Edge {
                        from: nodes[i].id.clone(),
                        to: nodes[i + 1].id.clone(),
                        when: None,
                    })
                    .collect();
                for (idx, conditional) in extra {
                    let from = idx.index(n);
                    let to = n;
                    if from + 1 == to {
                        continue;
                    }
                    let e = Edge {
                        from: nodes[from].id.clone(),
                        to: nodes[to].id.clone(),
                        when: conditional
                            .then(|| format!("{}.status == 'succeeded'", nodes[from].id)),
                    };
                    if !edges.contains(&e) {
                        edges.push(e);
                    }
                }
                Workflow {
                    name,
                    version,
                    description,
                    expose: Vec::new(),
                    input: Some(
                        json!({"type": "object", "properties": {"items": {"type": "array"}}}),
                    ),
                    defaults: Some(Defaults {
                        timeout_ms: Some(30_000),
                        retry: None,
                    }),
                    tools: Vec::new(),
                    nodes,
                    edges,
                    hil: None,
                    triggers,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn generated_workflows_round_trip(wf in workflow()) {
        let catalog = Catalog::default();
        let schema = jsonschema::validator_for(&schema::workflow_schema()).unwrap();
        prop_assert!(schema.is_valid(&to_value(&wf)), "schema rejects {}", to_value(&wf));
        for format in [Format::Yaml, Format::Json] {
            let text = to_text(&wf, format).unwrap();
            let back = load(&text, format, &catalog);
            prop_assert!(back.is_ok(), "{format}:\n{text}\n{}", back.err().map(|d| d.to_string()).unwrap_or_default());
            prop_assert_eq!(back.unwrap(), wf.clone(), "{} text:\n{}", format, text);
        }
        // YAML and JSON forms are equivalent.
        let yaml = to_text(&wf, Format::Yaml).unwrap();
        let json = to_text(&wf, Format::Json).unwrap();
        prop_assert_eq!(parse(&yaml, Format::Yaml).unwrap(), parse(&json, Format::Json).unwrap());
    }
}

#[test]
fn triggers_are_written_without_their_defaults() {
    let text = "name: t\nversion: 1\nnodes:\n  - {id: done, type: finish}\ntriggers:\n  - {type: schedule, id: schedule-1, cron: \"0 9 * * *\", timezone: UTC, catch_up: none}\n  - {type: webhook, path: orders, secret: s}\n  - {type: schedule, id: nightly, cron: \"0 2 * * *\", timezone: Europe/Madrid, catch_up: all, input: {a: 1}}\n";
    let wf = load(text, Format::Yaml, &Catalog::default()).unwrap();
    assert_eq!(wf.triggers[0].id, "schedule-1");
    assert_eq!(wf.triggers[1].id, "webhook-2");
    assert_eq!(wf.trigger("nightly").unwrap().key(&wf.name), "t/nightly");
    assert_eq!(
        to_value(&wf)["triggers"],
        json!([
            {"type": "schedule", "cron": "0 9 * * *"},
            {"type": "webhook", "path": "orders", "secret": "s"},
            {"type": "schedule", "id": "nightly", "cron": "0 2 * * *", "timezone": "Europe/Madrid", "input": {"a": 1}, "catch_up": "all"}
        ])
    );
    assert_eq!(from_value(&to_value(&wf), &Catalog::default()).unwrap(), wf);
    // A workflow without triggers is written without the key.
    let plain = load(
        "name: t\nversion: 1\nnodes:\n  - {id: done, type: finish}\n",
        Format::Yaml,
        &Catalog::default(),
    )
    .unwrap();
    assert!(plain.triggers.is_empty());
    assert!(to_value(&plain).get("triggers").is_none());
}
