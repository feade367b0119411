//! One test per validation rule. Each asserts the rule's code is reported (and only the
//! expected codes), then snapshots every diagnostic as a user sees it: line:column, code,
//! node, field and message. Refresh snapshots with `INSTA_UPDATE=always cargo test`.

use hilo_core::{Catalog, Code, Format};

/// Validates `text` and renders every diagnostic, one per line.
fn diagnostics(text: &str, format: Format, catalog: &Catalog) -> (Vec<Code>, String) {
    match hilo_core::load(text, format, catalog) {
        Ok(_) => (Vec::new(), "valid".into()),
        Err(d) => (
            d.iter().map(|d| d.code).collect(),
            d.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
    }
}

/// A workflow around `body` (YAML lines for `nodes:` and `edges:`).
fn wf(body: &str) -> String {
    format!("name: t\nversion: 1\n{body}")
}

#[track_caller]
fn check(name: &str, text: &str, expected: &[Code]) {
    check_with(name, text, Format::Yaml, &Catalog::default(), expected);
}

#[track_caller]
fn check_with(name: &str, text: &str, format: Format, catalog: &Catalog, expected: &[Code]) {
    let (codes, rendered) = diagnostics(text, format, catalog);
    let mut got = codes.clone();
    got.sort_by_key(|c| c.as_str());
    got.dedup();
    let mut want = expected.to_vec();
    want.sort_by_key(|c| c.as_str());
    want.dedup();
    assert_eq!(got, want, "{name}: codes differ; diagnostics:\n{rendered}");
    insta::assert_snapshot!(name, rendered);
}

const FINISH: &str = "  - {id: done, type: finish}\n";

#[test]
fn valid_minimal_and_contract_example() {
    check("valid_minimal", &wf(&format!("nodes:\n{FINISH}")), &[]);
    let text = include_str!("../../../cli/tests/fixtures/contract_example.yaml");
    let mut catalog = Catalog::default();
    catalog.tools.insert("create_return".into());
    catalog.tools.insert("cancel_return".into());
    check_with("valid_contract_example", text, Format::Yaml, &catalog, &[]);
}

#[test]
fn syntax_errors_yaml_and_json() {
    check(
        "syntax_yaml",
        "name: t\nversion: [1\nnodes: []\n",
        &[Code::Syntax],
    );
    check_with(
        "syntax_json",
        "{\"name\": \"t\",\n \"version\": 1,,\n}",
        Format::Json,
        &Catalog::default(),
        &[Code::Syntax],
    );
    check(
        "duplicate_yaml_key",
        "name: t\nname: u\nversion: 1\nnodes: []\n",
        &[Code::Syntax],
    );
}

#[test]
fn wrong_types() {
    check("document_not_mapping", "- a\n- b\n", &[Code::InvalidType]);
    check(
        "field_types",
        &wf(
            "nodes:\n  - {id: a, type: tool, tool: http_request, timeout_ms: soon, with: 3}\n  - {id: done, type: finish}\nedges: {from: a}\n",
        ),
        &[Code::InvalidType],
    );
}

#[test]
fn missing_fields_per_node_type() {
    check("missing_top_level", "version: 1\n", &[Code::MissingField]);
    check(
        "missing_node_fields",
        &wf(&format!(
            "nodes:\n  - {{id: a, type: tool}}\n  - {{id: b, type: agent, agent: simple, with: {{profile: fast}}}}\n  - {{id: c, type: switch}}\n  - {{id: d, type: wait}}\n  - {{id: e, type: human}}\n  - {{type: finish}}\n{FINISH}"
        )),
        &[Code::MissingField],
    );
}

#[test]
fn unknown_fields_suggest_the_right_one() {
    check(
        "unknown_fields",
        &wf(&format!(
            "nodse: []\nnodes:\n  - id: a\n    type: tool\n    tool: http_request\n    timout_ms: 100\n    retry: {{max_atempts: 2}}\n{FINISH}edges:\n  - {{from: a, to: done, wehn: x}}\n"
        )),
        &[Code::UnknownField],
    );
}

#[test]
fn invalid_values() {
    check(
        "invalid_name_version_ids",
        "name: Order Returns\nversion: 0\nnodes:\n  - {id: 'my node', type: finish}\n  - {id: input, type: finish}\n  - {id: x, type: finsh}\n",
        &[Code::InvalidValue],
    );
    check(
        "invalid_retry_and_timeout",
        &wf(&format!(
            "defaults: {{timeout_ms: 0}}\nnodes:\n  - id: a\n    type: tool\n    tool: http_request\n    timeout_ms: -5\n    retry: {{max_attempts: 0, multiplier: 0.5, initial_ms: 1000, max_ms: 10, jitter: maybe}}\n{FINISH}edges: [{{from: a, to: done}}]\n"
        )),
        &[Code::InvalidValue, Code::InvalidType],
    );
    check(
        "invalid_enums",
        &wf(&format!(
            "nodes:\n  - {{id: a, type: merge, wait: some, on_error: retry}}\n  - {{id: w, type: wait, until: tomorrow}}\n{FINISH}edges: [{{from: a, to: done}}, {{from: w, to: done}}]\n"
        )),
        &[Code::InvalidValue],
    );
}

#[test]
fn compensate_only_on_side_effects() {
    check(
        "compensate_on_set",
        &wf(&format!(
            "nodes:\n  - {{id: a, type: set, vars: {{x: 1}}, compensate: {{tool: http_request}}}}\n{FINISH}edges: [{{from: a, to: done}}]\n"
        )),
        &[Code::InvalidValue],
    );
}

#[test]
fn variable_names_are_printable() {
    check(
        "control_character_in_variable_name",
        &wf(&format!(
            "nodes:\n  - {{id: a, type: set, vars: {{\"\\x01each[0]/\": 1, ok: 2}}}}\n{FINISH}edges: [{{from: a, to: done}}]\n"
        )),
        &[Code::InvalidValue],
    );
}

#[test]
fn conflicting_fields() {
    check(
        "conflicts",
        &wf(&format!(
            "nodes:\n  - {{id: w, type: wait, duration_ms: 5, until: '2026-01-01T00:00:00Z'}}\n  - id: l\n    type: loop\n    for_each: input.items\n    until: 'true'\n    body: {{nodes: [{{id: f, type: finish}}]}}\n  - id: ag\n    type: agent\n    agent: simple\n    with: {{profile: fast, model: gpt-x, prompt: hi, labels: [a], output_schema: {{type: object}}}}\n{FINISH}edges: [{{from: w, to: done}}, {{from: l, to: done}}, {{from: ag, to: done}}]\n"
        )),
        &[Code::ConflictingFields],
    );
}

#[test]
fn duplicate_ids_across_scopes_and_tools() {
    check(
        "duplicate_ids",
        &wf(&format!(
            "tools:\n  - {{name: t1, http: {{method: GET, url: 'http://x'}}}}\n  - {{name: t1, http: {{method: GET, url: 'http://y'}}}}\nnodes:\n  - {{id: a, type: set, vars: {{x: 1}}}}\n  - id: l\n    type: loop\n    for_each: '[1]'\n    body: {{nodes: [{{id: a, type: finish}}]}}\n{FINISH}edges: [{{from: a, to: l}}, {{from: l, to: done}}]\n"
        )),
        &[Code::DuplicateId],
    );
}

#[test]
fn unknown_nodes_in_edges_cases_branches_and_gotos() {
    check(
        "unknown_nodes",
        &wf(&format!(
            "nodes:\n  - {{id: start, type: set, vars: {{x: 1}}, on_error: {{goto: handler}}}}\n  - {{id: sw, type: switch, cases: [{{when: 'vars.x', to: doen}}], default: nope}}\n  - {{id: par, type: parallel, branches: [ghost]}}\n{FINISH}edges:\n  - {{from: start, to: sw}}\n  - {{from: strat, to: par}}\n"
        )),
        &[Code::UnknownNode, Code::NoPathToSink],
    );
    check(
        "edge_into_loop_body",
        &wf(&format!(
            "nodes:\n  - id: l\n    type: loop\n    for_each: input.items\n    body: {{nodes: [{{id: inner, type: finish}}]}}\n{FINISH}edges: [{{from: l, to: inner}}, {{from: l, to: done}}]\n"
        )),
        &[Code::UnknownNode],
    );
}

#[test]
fn unknown_tools_and_agents() {
    check(
        "unknown_tools",
        &wf(&format!(
            "nodes:\n  - {{id: a, type: tool, tool: http_requets, compensate: {{tool: undo_it}}}}\n  - {{id: m, type: tool, tool: mcp.files.read}}\n  - {{id: r, type: agent, agent: reasoning, with: {{task: do it, tools: [web_search]}}}}\n  - {{id: s, type: agent, agent: simple, with: {{prompt: hi, tools: [http_request]}}}}\n  - {{id: x, type: agent, agent: smart, with: {{prompt: hi, profile: fsat}}}}\n{FINISH}edges: [{{from: a, to: done}}, {{from: m, to: done}}, {{from: r, to: done}}, {{from: s, to: done}}, {{from: x, to: done}}]\n"
        )),
        &[Code::UnknownTool, Code::UnknownAgent, Code::InvalidValue],
    );
    let mut catalog = Catalog::default();
    catalog.mcp_servers.insert("files".into());
    check_with(
        "mcp_tool_of_configured_server",
        &wf(&format!(
            "nodes:\n  - {{id: m, type: tool, tool: mcp.files.read}}\n{FINISH}edges: [{{from: m, to: done}}]\n"
        )),
        Format::Yaml,
        &catalog,
        &[],
    );
    // With a model catalog (hilo.toml's), a node's `model` must be in it.
    let catalog = Catalog {
        models: Some(["gpt-4o-mini".to_string(), "local-router".to_string()].into()),
        ..Catalog::default()
    };
    check_with(
        "unknown_model",
        &wf(&format!(
            "nodes:\n  - {{id: a, type: agent, agent: simple, with: {{prompt: hi, model: gpt-4o-mni}}}}\n  - {{id: b, type: agent, agent: simple, with: {{prompt: hi, model: local-router}}}}\n{FINISH}edges: [{{from: a, to: done}}, {{from: b, to: done}}]\n"
        )),
        Format::Yaml,
        &catalog,
        &[Code::InvalidValue],
    );
}

/// A planner's written workflow runs as a child without the parent's own `tools:`, so such a
/// tool cannot be granted to it; tools of the installation can.
#[test]
fn an_emitting_planner_grants_no_tool_of_its_own_workflow() {
    check(
        "emit_grants_local_tool",
        "name: t\nversion: 1\ntools:\n  - {name: mine, http: {method: GET, url: \"https://example.com\"}}\nnodes:\n  - {id: p, type: agent, agent: planner, with: {goal: g, emit: workflow, max_repairs: 3, tools: [http_request, mine]}}\n  - {id: r, type: agent, agent: reasoning, with: {task: t, tools: [mine]}}\n  - {id: done, type: finish}\nedges: [{from: p, to: done}, {from: r, to: done}]\n",
        &[Code::InvalidValue],
    );
}

#[test]
fn cycles_including_self_loops_and_gotos() {
    check(
        "cycles",
        &wf(&format!(
            "nodes:\n  - {{id: a, type: set, vars: {{x: 1}}}}\n  - {{id: b, type: set, vars: {{x: 2}}}}\n  - {{id: c, type: set, vars: {{x: 3}}, on_error: {{goto: a}}}}\n  - {{id: d, type: set, vars: {{x: 4}}}}\n{FINISH}edges:\n  - {{from: a, to: b}}\n  - {{from: b, to: c}}\n  - {{from: c, to: done}}\n  - {{from: a, to: d}}\n  - {{from: d, to: d}}\n  - {{from: d, to: done}}\n"
        )),
        &[Code::Cycle, Code::NoEntry],
    );
}

#[test]
fn unreachable_nodes() {
    check(
        "unreachable",
        &wf(&format!(
            "nodes:\n  - {{id: a, type: set, vars: {{x: 1}}}}\n  - {{id: b, type: set, vars: {{x: 2}}}}\n  - {{id: c, type: set, vars: {{x: 3}}}}\n{FINISH}edges:\n  - {{from: a, to: done}}\n  - {{from: b, to: c}}\n  - {{from: c, to: b}}\n"
        )),
        &[Code::Unreachable, Code::Cycle, Code::NoPathToSink],
    );
}

#[test]
fn goto_targets_are_reachable_but_not_entries() {
    check(
        "goto_target_reachable",
        &wf(
            "nodes:\n  - {id: call, type: tool, tool: http_request, on_error: {goto: apologise}}\n  - {id: apologise, type: fail, with: {code: CALL_FAILED, message: sorry}}\n  - {id: done, type: finish}\nedges: [{from: call, to: done}]\n",
        ),
        &[],
    );
}

#[test]
fn every_node_needs_a_path_to_a_sink() {
    check(
        "no_path_to_sink",
        &wf(&format!(
            "nodes:\n  - {{id: a, type: condition, when: 'input.x'}}\n  - {{id: dangling, type: set, vars: {{y: 1}}}}\n{FINISH}edges:\n  - {{from: a, to: done, when: 'a.output.result'}}\n  - {{from: a, to: dangling}}\n"
        )),
        &[Code::NoPathToSink],
    );
    check(
        "no_sink_at_all",
        &wf("nodes:\n  - {id: a, type: set, vars: {x: 1}}\n"),
        &[Code::NoPathToSink],
    );
    check(
        "loop_body_without_finish",
        &wf(&format!(
            "nodes:\n  - id: l\n    type: loop\n    for_each: input.items\n    body: {{nodes: [{{id: step, type: set, vars: {{x: '${{ item }}'}}}}]}}\n{FINISH}edges: [{{from: l, to: done}}]\n"
        )),
        &[Code::NoPathToSink],
    );
}

#[test]
fn a_graph_needs_an_entry() {
    check(
        "no_entry",
        &wf(
            "nodes:\n  - {id: a, type: set, vars: {x: 1}, on_error: {goto: done}}\n  - {id: done, type: finish}\nedges: [{from: a, to: done}]\n",
        ),
        &[],
    );
    check(
        "no_entry_all_targets",
        &wf(
            "nodes:\n  - {id: a, type: set, vars: {x: 1}, on_error: {goto: b}}\n  - {id: b, type: set, vars: {x: 1}, on_error: {goto: a}}\n  - {id: done, type: finish}\nedges: [{from: a, to: done}, {from: b, to: done}]\n",
        ),
        &[Code::NoEntry, Code::Cycle],
    );
}

#[test]
fn edges_may_not_leave_switch_parallel_or_sinks() {
    check(
        "invalid_edges",
        &wf(&format!(
            "nodes:\n  - {{id: sw, type: switch, cases: [{{when: 'input.a', to: p}}]}}\n  - {{id: p, type: parallel, branches: [done]}}\n  - {{id: x, type: set, vars: {{a: 1}}}}\n{FINISH}edges:\n  - {{from: sw, to: x}}\n  - {{from: p, to: x}}\n  - {{from: x, to: done}}\n  - {{from: x, to: done}}\n  - {{from: done, to: x}}\n"
        )),
        &[Code::InvalidEdge, Code::Cycle],
    );
}

#[test]
fn expressions_are_compiled() {
    check(
        "invalid_expressions",
        &wf(&format!(
            "nodes:\n  - {{id: c, type: condition, when: 'input.[x'}}\n  - {{id: t, type: transform, expr: 'foo('}}\n  - {{id: l, type: loop, for_each: '${{ input.items[ }}', body: {{nodes: [{{id: f, type: finish, output: '${{ item.. }}'}}]}}}}\n  - {{id: s, type: switch, cases: [{{when: '==', to: done}}]}}\n{FINISH}edges:\n  - {{from: c, to: t, when: 'c.output.result &&'}}\n  - {{from: t, to: l}}\n  - {{from: l, to: s}}\n"
        )),
        &[Code::InvalidExpression],
    );
}

#[test]
fn templates_are_compiled() {
    check(
        "invalid_templates",
        &wf(&format!(
            "nodes:\n  - {{id: h, type: human, prompt: 'Approve {{{{ input.amount ?'}}\n  - {{id: a, type: agent, agent: simple, with: {{prompt: '{{% if x %}}unclosed', labels: [yes, no]}}}}\n  - {{id: n, type: tool, tool: http_request, with: {{url: 'http://x/{{{{ input.id }}}}', body: {{text: '{{{{ }}}}'}}}}}}\n{FINISH}edges: [{{from: h, to: a}}, {{from: a, to: n}}, {{from: n, to: done}}]\n"
        )),
        &[Code::InvalidTemplate],
    );
}

#[test]
fn embedded_schemas_are_checked() {
    check(
        "invalid_schemas",
        &wf(&format!(
            "input: {{type: objekt}}\nnodes:\n  - {{id: h, type: human, prompt: ok?, schema: {{type: object, required: yes}}}}\n  - {{id: a, type: agent, agent: simple, with: {{prompt: x, output_schema: {{minimum: high}}}}}}\n{FINISH}edges: [{{from: h, to: a}}, {{from: a, to: done}}]\n"
        )),
        &[Code::InvalidSchema],
    );
}

#[test]
fn until_loops_need_max_iterations() {
    check(
        "until_without_max",
        &wf(&format!(
            "nodes:\n  - id: poll\n    type: loop\n    until: 'vars.ready'\n    body:\n      nodes: [{{id: check, type: finish}}]\n{FINISH}edges: [{{from: poll, to: done}}]\n"
        )),
        &[Code::LoopWithoutLimit],
    );
}

#[test]
fn all_errors_are_reported_at_once() {
    let text = wf(
        "nodes:\n  - {id: a, type: tool, tool: nope, timout_ms: 5}\n  - {id: b, type: condition, when: 'x.['}\n  - {id: a, type: finish}\nedges: [{from: a, to: b}, {from: b, to: c}]\n",
    );
    let (codes, _) = diagnostics(&text, Format::Yaml, &Catalog::default());
    for code in [
        Code::UnknownField,
        Code::UnknownTool,
        Code::InvalidExpression,
        Code::DuplicateId,
        Code::UnknownNode,
    ] {
        assert!(codes.contains(&code), "{code} missing from {codes:?}");
    }
}

#[test]
fn json_input_has_positions_too() {
    let text = "{\n  \"name\": \"t\",\n  \"version\": 1,\n  \"nodes\": [\n    {\"id\": \"a\", \"type\": \"finish\", \"colour\": 1}\n  ]\n}\n";
    let Err(d) = hilo_core::load(text, Format::Json, &Catalog::default()) else {
        unreachable!()
    };
    let d = &d.0[0];
    assert_eq!(
        (d.code, d.node.as_deref(), d.field.as_deref()),
        (Code::UnknownField, Some("a"), Some("colour"))
    );
    assert_eq!((d.line, d.column), (Some(5), Some(35)));
    assert_eq!(d.path, "/nodes/0/colour");
}

#[test]
fn diagnostics_serialize_for_machines() {
    let Err(d) = hilo_core::load(
        "name: t\nversion: 1\nnodes:\n  - {id: a, type: finish, x: 1}\n",
        Format::Yaml,
        &Catalog::default(),
    ) else {
        unreachable!()
    };
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(
        json,
        serde_json::json!([{
            "code": "UNKNOWN_FIELD",
            "message": "a `finish` node has no field `x`; allowed fields: id, type, description, timeout_ms, retry, on_error, compensate, output",
            "node": "a", "field": "x", "path": "/nodes/0/x", "line": 4, "column": 27
        }])
    );
}

#[test]
fn agent_episodes_context() {
    let agent = |context: &str| {
        wf(&format!(
            "nodes:\n  - {{id: a, type: agent, agent: reasoning, with: {{task: hi, tools: [http_request], context: {context}}}}}\n{FINISH}edges:\n  - {{from: a, to: done}}\n"
        ))
    };
    check("agent_episodes_true", &agent("{episodes: true}"), &[]);
    check(
        "agent_episodes_top_k",
        &agent("{episodes: {top_k: 5}, history: true}"),
        &[],
    );
    check(
        "agent_episodes_bad",
        &agent("{episodes: {top_k: 50, k: 1}}"),
        &[Code::UnknownField, Code::InvalidValue],
    );
}

#[test]
fn agent_history_context() {
    let agent = |context: &str| {
        wf(&format!(
            "nodes:\n  - {{id: a, type: agent, agent: simple, with: {{prompt: hi, context: {context}}}}}\n{FINISH}edges:\n  - {{from: a, to: done}}\n"
        ))
    };
    check("agent_history_true", &agent("{history: true}"), &[]);
    check(
        "agent_history_settings",
        &agent("{history: {messages: \"${ input.chat }\", max_messages: 5, max_tokens: 800}}"),
        &[],
    );
    check(
        "agent_history_bad",
        &agent("{history: {max_message: 5, max_tokens: 0, messages: \"${ input.[ }\"}, memory: 1}"),
        &[
            Code::UnknownField,
            Code::InvalidValue,
            Code::InvalidExpression,
        ],
    );
    check(
        "agent_knowledge",
        &agent(
            "{knowledge: {collection: \"{{ input.brand }}-policies\", query: \"{{ input.message }}\", top_k: 3, min_score: 0.2, filter: {team: support}}}",
        ),
        &[],
    );
    check(
        "agent_knowledge_bad",
        &agent("{knowledge: {colection: policies, top_k: 50, min_score: 2, filter: {team: 3}}}"),
        &[
            Code::UnknownField,
            Code::MissingField,
            Code::InvalidValue,
            Code::InvalidType,
        ],
    );
}

/// A workflow with `triggers` (YAML list items) and an `input` schema.
fn with_triggers(input: &str, triggers: &str) -> String {
    wf(&format!("{input}nodes:\n{FINISH}triggers:\n{triggers}"))
}

#[test]
fn triggers_valid() {
    check(
        "triggers_valid",
        &with_triggers(
            "input: {type: object, required: [report], properties: {report: {type: string}}}\n",
            "  - {type: schedule, id: weekday_report, cron: \"0 9 * * MON-FRI\", timezone: Europe/Madrid, input: {report: daily}, catch_up: last}\n  - {type: schedule, cron: \"*/10 * * * * *\", input: {report: \"{{ not evaluated }}\"}}\n  - {type: webhook, path: orders/created, secret: shop_webhook_secret, input: {report: \"${ body.kind }\", id: \"{{ headers['webhook-id'] }}\"}}\n  - {type: webhook, path: v1.0/orders_~x, secret: SHOP_2}\n",
        ),
        &[],
    );
}

/// The contract's OpenAPI entry in `tools:`: accepted (without the tools crate's support,
/// any `<prefix>.<name>` is a tool), its fields checked, and a connection it names checked
/// against `hilo.toml`'s: configured, of a grant this version uses, `entity` only where there
/// are end users' tokens.
#[test]
fn openapi_entries() {
    let get = "  - {id: get, type: tool, tool: pets.getPetById, with: {petId: 1}}\n";
    check(
        "openapi_entry_valid",
        &wf(&format!(
            "tools:\n  - openapi: specs/pets.yaml\n    prefix: pets\n    operations: [getPetById, store]\n    base_url: https://pets.example.com/v2\n    auth: {{secret: pets_key}}\nnodes:\n{get}{FINISH}edges: [{{from: get, to: done}}]\n"
        )),
        &[],
    );
    check(
        "openapi_entry_structure",
        &wf(&format!(
            "tools:\n  - openapi: specs/pets.yaml\n    operations: []\n    auth: {{secret: k, connection: c}}\n    method: GET\n  - {{openapi: 7, prefix: \"pets.\"}}\nnodes:\n{get}{FINISH}edges: [{{from: get, to: done}}]\n"
        )),
        &[
            Code::MissingField,
            Code::InvalidValue,
            Code::InvalidType,
            Code::UnknownField,
        ],
    );
    let mut catalog = Catalog::default();
    catalog
        .connections
        .insert("petstore".into(), "client_credentials".into());
    catalog
        .connections
        .insert("shop".into(), "authorization_code".into());
    let entry = |auth: &str| {
        wf(&format!(
            "tools:\n  - openapi: specs/pets.yaml\n    prefix: pets\n    auth: {auth}\nnodes:\n{get}{FINISH}edges: [{{from: get, to: done}}]\n"
        ))
    };
    check_with(
        "openapi_connection_valid",
        &entry("{connection: petstore}"),
        Format::Yaml,
        &catalog,
        &[],
    );
    check_with(
        "openapi_connections",
        &wf(&format!(
            "tools:\n  - {{openapi: a.yaml, prefix: pets, auth: {{connection: petstor}}}}\n  - {{openapi: b.yaml, prefix: b, auth: {{connection: petstore, entity: \"${{ input.customer }}\"}}}}\n  - {{openapi: c.yaml, prefix: c, auth: {{connection: shop, entity: \"${{ input.customer }}\"}}}}\nnodes:\n{get}{FINISH}edges: [{{from: get, to: done}}]\n"
        )),
        Format::Yaml,
        &catalog,
        &[Code::InvalidValue],
    );
}

#[test]
fn triggers_structure() {
    check(
        "triggers_not_a_list",
        &with_triggers("", "  schedule: {cron: \"* * * * *\"}\n"),
        &[Code::InvalidType],
    );
    check(
        "triggers_structure",
        &with_triggers(
            "",
            "  - daily\n  - {cron: \"* * * * *\"}\n  - {type: cron, cron: \"* * * * *\"}\n  - {type: schedule, id: \"Daily Report\", timzone: UTC}\n  - {type: schedule, cron: \"0 9 * * *\", catch_up: sometimes}\n  - {type: webhook, path: orders, input: null}\n",
        ),
        &[
            Code::InvalidType,
            Code::MissingField,
            Code::InvalidValue,
            Code::UnknownField,
        ],
    );
}

#[test]
fn triggers_webhook_paths_and_secrets() {
    let long = "a/".repeat(100) + "b";
    check(
        "triggers_webhook_paths_and_secrets",
        &with_triggers(
            "",
            &format!(
                "  - {{type: webhook, path: /orders, secret: s}}\n  - {{type: webhook, path: a//b, secret: s}}\n  - {{type: webhook, path: a/../b, secret: s}}\n  - {{type: webhook, path: \"orders created\", secret: s}}\n  - {{type: webhook, path: {long}, secret: s}}\n  - {{type: webhook, path: ok, secret: shop-secret}}\n  - {{type: webhook, path: ok2, secret: 1password}}\n"
            ),
        ),
        &[Code::InvalidValue],
    );
}

#[test]
fn triggers_cron_and_timezone() {
    check(
        "triggers_cron_and_timezone",
        &with_triggers(
            "",
            "  - {type: schedule, cron: \"0 9 * *\"}\n  - {type: schedule, cron: \"0 9 * * XYZ\"}\n  - {type: schedule, cron: \"@daily\"}\n  - {type: schedule, cron: \"0 0 30 2 *\"}\n  - {type: schedule, cron: \"0 9 * * *\", timezone: Europe/Madird}\n  - {type: schedule, cron: \"0 9 * * *\", timezone: europe/madrid}\n  - {type: schedule, cron: \"0 9 * * *\", timezone: CEST}\n",
        ),
        &[Code::InvalidCron, Code::InvalidTimezone],
    );
}

#[test]
fn triggers_duplicate_ids_and_paths() {
    check(
        "triggers_duplicates",
        &with_triggers(
            "",
            "  - {type: schedule, id: daily, cron: \"0 9 * * *\"}\n  - {type: schedule, id: daily, cron: \"0 10 * * *\"}\n  - {type: webhook, id: schedule-4, path: orders, secret: s}\n  - {type: schedule, cron: \"0 11 * * *\"}\n  - {type: webhook, path: orders, secret: s}\n  - {type: schedule, id: daily, cron: \"0 12 * * *\"}\n",
        ),
        &[Code::DuplicateId],
    );
}

#[test]
fn triggers_inputs() {
    check(
        "triggers_inputs",
        &with_triggers(
            "input: {type: object, required: [report], properties: {report: {type: string}}}\n",
            "  - {type: schedule, cron: \"0 9 * * *\", input: {report: 3}}\n  - {type: schedule, cron: \"0 9 * * *\"}\n  - {type: schedule, cron: \"0 9 * * *\", input: {report: \"${ trigger.scheduled_at }\"}}\n  - {type: webhook, path: a, secret: s, input: \"${ body.[ }\"}\n  - {type: webhook, path: b, secret: s, input: {report: \"{{ body.kind \"}}\n",
        ),
        &[
            Code::InvalidInput,
            Code::InvalidValue,
            Code::InvalidExpression,
            Code::InvalidTemplate,
        ],
    );
}

#[test]
fn trigger_is_a_reserved_node_id() {
    check(
        "trigger_reserved",
        &wf("nodes:\n  - {id: trigger, type: finish}\n"),
        &[Code::InvalidValue],
    );
}

#[test]
fn too_many_triggers() {
    let many: String = (0..101)
        .map(|i| format!("  - {{type: webhook, path: p{i}, secret: s}}\n"))
        .collect();
    check(
        "triggers_too_many",
        &with_triggers("", &many),
        &[Code::LimitExceeded],
    );
}

#[test]
fn expose_lists_known_surfaces_once() {
    let fine = hilo_core::load(
        "name: t\nversion: 1\nexpose: [mcp, a2a]\nnodes:\n  - {id: done, type: finish}\n",
        Format::Yaml,
        &Catalog::default(),
    )
    .unwrap();
    assert!(fine.exposes(hilo_core::Surface::Mcp) && fine.exposes(hilo_core::Surface::A2a));
    check(
        "expose_unknown_and_twice",
        "name: t\nversion: 1\nexpose: [mcp, grpc, mcp]\nnodes:\n  - {id: done, type: finish}\n",
        &[Code::InvalidValue],
    );
    check(
        "expose_not_a_list",
        "name: t\nversion: 1\nexpose: mcp\nnodes:\n  - {id: done, type: finish}\n",
        &[Code::InvalidType],
    );
}

/// Malformed edges, ids and types: the decoder makes their pointers only when it reports a
/// problem, so every problem is checked here, in order, with its position (the same lines as
/// before that change).
#[test]
fn malformed_edges_ids_and_types_each_reported_in_place() {
    let text = wf(
        "nodes:\n  - {id: a, type: set, vars: {x: 1}}\n  - {id: 5, type: finish}\n  - {id: \"\", type: finish}\n  - {id: c, type: 7}\n  - {id: \"bad id\", type: finish}\n  - {id: input, type: finish}\n  - {id: d, type: fnish}\n  - {id: z, type: finish}\nedges:\n  - 3\n  - {from: a, to: z, colour: red}\n  - {from: a}\n  - {to: z}\n  - {from: \"\", to: z}\n  - {from: a, to: [z]}\n  - {from: a, to: z, when: \"\"}\n  - {from: a, to: z, when: 5}\n  - {from: a/b~c, to: z}\n",
    );
    let (_, got) = diagnostics(&text, Format::Yaml, &Catalog::default());
    let expected = [
        r#"5:6: error[INVALID_TYPE] field `nodes[1].id`: a node's `id` must be a string, got a whole number"#,
        r#"6:6: error[INVALID_VALUE] field `nodes[2].id`: a node's `id` must not be empty"#,
        r#"7:13: error[INVALID_TYPE] node `c`, field `type`: a node's `type` must be a string, got a whole number"#,
        r#"8:6: error[INVALID_VALUE] node `bad id`, field `id`: node id "bad id" must match [A-Za-z0-9_-]+ (at most 128 characters) so expressions can refer to it"#,
        r#"9:6: error[INVALID_VALUE] node `input`, field `id`: node id "input" is reserved (the state document uses it); reserved ids: input, vars, item, index, trigger"#,
        r#"10:13: error[INVALID_VALUE] node `d`, field `type`: unknown node type "fnish"; did you mean `finish`?"#,
        r#"13:5: error[INVALID_TYPE] field `edges[0]`: an edge must be a mapping, got a whole number"#,
        r#"14:22: error[UNKNOWN_FIELD] field `edges[1].colour`: an edge has no field `colour`; allowed fields: from, to, when"#,
        r#"15:5: error[MISSING_FIELD] field `edges[2].to`: an edge needs the field `to`"#,
        r#"16:5: error[MISSING_FIELD] field `edges[3].from`: an edge needs the field `from`"#,
        r#"17:6: error[INVALID_VALUE] field `edges[4].from`: `from` must not be empty"#,
        r#"18:15: error[INVALID_TYPE] field `edges[5].to`: `to` must be a string, got a list"#,
        r#"19:5: error[INVALID_EDGE] node `a`, field `edges[6]`: the edge a → z is listed twice"#,
        r#"19:22: error[INVALID_VALUE] field `edges[6].when`: `when` must not be empty"#,
        r#"20:5: error[INVALID_EDGE] node `a`, field `edges[7]`: the edge a → z is listed twice"#,
        r#"20:22: error[INVALID_TYPE] field `edges[7].when`: `when` must be a string, got a whole number"#,
        r#"21:6: error[UNKNOWN_NODE] node `a/b~c`, field `edges[8].from`: this edge's `from` names node `a/b~c`, which does not exist in this graph."#,
    ];
    assert_eq!(got, expected.join("\n"));
}
