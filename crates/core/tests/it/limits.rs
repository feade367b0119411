//! Hostile definitions, expressions, templates and values (issue #29): each is refused or
//! bounded with a diagnostic or an error naming the limit, and never aborts the process.

use hilo_core::expr::limits::{self, Limit};
use hilo_core::expr::{
    ExprError, compile_jmespath, render_template, search_json, template_env, to_var,
};
use hilo_core::{Catalog, Code, Diagnostic, Format};
use serde_json::{Value, json};

fn load_yaml(text: &str) -> Vec<Diagnostic> {
    match hilo_core::load(text, Format::Yaml, &Catalog::default()) {
        Ok(_) => Vec::new(),
        Err(d) => d.0,
    }
}

/// A definition whose `set` node `s` has `vars.x` = `value` (a JSON string, so any text fits).
fn with_var(value: &str) -> String {
    format!(
        "name: t\nversion: 1\nnodes:\n  - id: s\n    type: set\n    vars:\n      x: {}\n  - {{id: done, type: finish}}\nedges:\n  - {{from: s, to: done}}\n",
        serde_json::to_string(value).unwrap()
    )
}

#[track_caller]
fn assert_limit(diags: &[Diagnostic], node: &str, field: &str) {
    let d = diags
        .iter()
        .find(|d| d.code == Code::LimitExceeded)
        .unwrap_or_else(|| panic!("no LIMIT_EXCEEDED in {diags:?}"));
    assert_eq!(d.node.as_deref(), Some(node), "{d:?}");
    assert_eq!(d.field.as_deref(), Some(field), "{d:?}");
    // The message does not echo a huge text back.
    assert!(d.message.len() < 1000, "{}", d.message);
}

#[test]
fn deep_expressions_and_templates_are_refused_at_validation() {
    let bangs = format!("${{ {}input }}", "!".repeat(3000));
    assert_limit(&load_yaml(&with_var(&bangs)), "s", "vars.x");
    let dots = format!("${{ {} }}", vec!["a"; 5000].join("."));
    assert_limit(&load_yaml(&with_var(&dots)), "s", "vars.x");
    let nots = format!("{{{{ {} x }}}}", "not ".repeat(3000));
    assert_limit(&load_yaml(&with_var(&nots)), "s", "vars.x");
    let doubling = "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}";
    assert_limit(&load_yaml(&with_var(doubling)), "s", "vars.x");
    // `[?a]` × 10,000 in an edge's `when`.
    let filters = "[?a]".repeat(10_000);
    let text = format!(
        "name: t\nversion: 1\nnodes:\n  - {{id: a, type: set, vars: {{x: 1}}}}\n  - {{id: done, type: finish}}\nedges:\n  - {{from: a, to: done, when: {}}}\n",
        serde_json::to_string(&filters).unwrap()
    );
    let diags = load_yaml(&text);
    let d = diags.iter().find(|d| d.code == Code::LimitExceeded);
    assert!(
        d.is_some_and(|d| d.field.as_deref() == Some("edges[0].when")),
        "{diags:?}"
    );
}

#[test]
fn ordinary_expressions_and_templates_still_validate() {
    for v in [
        "${ input.items[?status == 'open'].{id: id, name: name} }",
        "${ join(', ', input.tags) }",
        "Dear {{ input.name | title }}, {% for i in input.items %}{{ loop.index }}. {{ i.name }}{% if not loop.last %}, {% endif %}{% endfor %}",
        "{{ input.a ~ '-' ~ input.b | default('x') }}",
    ] {
        assert_eq!(load_yaml(&with_var(v)), Vec::new(), "{v}");
    }
}

fn eval(expr: &str, state: &Value) -> Result<Value, ExprError> {
    let e = compile_jmespath(expr).map_err(|c| ExprError::Eval(c.message))?;
    search_json(&e, &to_var(state)?)
}

#[test]
fn jmespath_growth_is_bounded_at_evaluation() {
    let state = json!({"s": "ab"});
    // join('', [@, @]) piped 40 times is too deep to compile at all.
    let doubling = format!("s{}", " | join('', [@, @])".repeat(40));
    assert_eq!(
        compile_jmespath(&doubling).unwrap_err().limit,
        Some(Limit::Depth)
    );
    // Within the depth limit, eightfold growth twelve times (8^12 ≈ 7·10^10 bytes) is refused
    // when `join` would make it.
    const EIGHT: &str = "[@, @, @, @, @, @, @, @]";
    let growing = format!("s{}", format!(" | join('', {EIGHT})").repeat(12));
    let e = eval(&growing, &state).unwrap_err();
    assert_eq!(e.limit(), Some(Limit::Size), "{e}");
    // Shared lists are cheap to make, and refused when they would be converted.
    let shared = format!("s{}", format!(" | {EIGHT}").repeat(12));
    let e = eval(&shared, &state).unwrap_err();
    assert!(matches!(e.limit(), Some(Limit::Size | Limit::Work)), "{e}");
    // Flattening the shared tree makes real arrays: bounded by the work budget.
    let flat = format!(
        "s{}{}",
        format!(" | {EIGHT}").repeat(10),
        " | []".repeat(10)
    );
    assert_eq!(eval(&flat, &state).unwrap_err().limit(), Some(Limit::Work));
    // Comparing two shared trees, or printing one.
    let eq = format!("(s{0}) == (s{0})", format!(" | {EIGHT}").repeat(12));
    assert!(eval(&eq, &state).unwrap_err().limit().is_some());
    let ts = format!("to_string(s{})", format!(" | {EIGHT}").repeat(12));
    assert!(eval(&ts, &state).unwrap_err().limit().is_some());
    // map runs its expression within the same budget.
    let m = format!("map(&(@{}), [s, s])", format!(" | {EIGHT} | []").repeat(9));
    assert_eq!(eval(&m, &state).unwrap_err().limit(), Some(Limit::Work));
    // Ordinary evaluation is unaffected.
    assert_eq!(eval("join('-', [s, s])", &state).unwrap(), json!("ab-ab"));
    assert_eq!(
        eval("sort_by(@, &n)[].n", &json!([{"n": 3}, {"n": 1}, {"n": 2}])).unwrap(),
        json!([1, 2, 3])
    );
    assert_eq!(
        eval("map(&length(@), ['a', 'bb'])", &json!({})).unwrap(),
        json!([1, 2])
    );
    assert_eq!(
        eval("max_by(@, &n).n", &json!([{"n": 3}, {"n": 5}])).unwrap(),
        json!(5)
    );
}

/// A value nested `depth` deep, built without recursion.
fn deep(depth: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..depth {
        v = json!({ "a": v });
    }
    v
}

#[test]
fn deep_values_are_bounded() {
    // A result deeper than serde_json can read back is refused.
    let state = json!({"d": deep(120)});
    let wrap = format!("d{}", " | {a: @}".repeat(20));
    assert_eq!(
        eval(&wrap, &state).unwrap_err().limit(),
        Some(Limit::ValueDepth)
    );
    assert!(eval("d.a.a", &state).is_ok());
    // Values from outside are parsed, and parsing refuses deep nesting, so no deeper value
    // ever reaches the state (serde_json's own recursion limit, for definitions too).
    let text = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(serde_json::from_str::<Value>(&text).is_err());
    assert!(hilo_core::source::parse_json_strict(&text).is_err());
}

#[test]
fn template_growth_is_bounded_at_evaluation() {
    let env = template_env();
    let doc = json!({"s": "ab", "big": "x".repeat(1 << 20), "lines": "x\n".repeat(1 << 19)});
    // Output cap: a loop writing 1 MiB a thousand times.
    let e = render_template(
        &env,
        "{% for i in range(1000) %}{{ big }}{% endfor %}",
        &doc,
    )
    .unwrap_err();
    assert_eq!(e.limit(), Some(Limit::Size), "{e}");
    // Quadratic growth through replace is refused before it happens.
    let e = render_template(&env, "{{ big | replace('x', big) }}", &doc).unwrap_err();
    assert_eq!(e.limit(), Some(Limit::Size), "{e}");
    let e = render_template(&env, "{{ lines | indent(100000) }}", &doc).unwrap_err();
    assert_eq!(e.limit(), Some(Limit::Size), "{e}");
    // Fuel: a long loop.
    let e = render_template(
        &env,
        "{% for i in range(100000) %}{% for j in range(100000) %}.{% endfor %}{% endfor %}",
        &doc,
    )
    .unwrap_err();
    assert!(matches!(e.limit(), Some(Limit::Work | Limit::Size)), "{e}");
    // namespace is not there, even if validation were skipped.
    let e = render_template(
        &env,
        "{% for i in range(40) %}{{ namespace(s=s) }}{% endfor %}",
        &doc,
    );
    assert!(e.is_err());
    // Ordinary rendering works, filters with keyword arguments too.
    assert_eq!(
        render_template(&env, "{{ s | upper }}-{{ [s, s] | join(',') }}", &doc).unwrap(),
        "AB-ab,ab"
    );
    assert_eq!(
        render_template(&env, "{{ {'a': s} | tojson(indent=2) }}", &doc).unwrap(),
        "{\n  \"a\": \"ab\"\n}"
    );
    assert_eq!(
        render_template(&env, "{{ s | replace('a', 'x') }}", &doc).unwrap(),
        "xb"
    );
    assert_eq!(
        render_template(&env, "{{ 'a\nb' | indent(2, first=true) }}", &doc).unwrap(),
        "  a\n  b"
    );
}

#[test]
fn json_definitions_refuse_duplicate_keys() {
    let text = "{\n  \"name\": \"t\",\n  \"version\": 1,\n  \"name\": \"u\",\n  \"nodes\": [{\"id\": \"done\", \"type\": \"finish\"}]\n}";
    let d = hilo_core::load(text, Format::Json, &Catalog::default()).unwrap_err();
    let d = &d.0[0];
    assert_eq!(d.code, Code::Syntax);
    assert!(d.message.contains("duplicate key `name`"), "{}", d.message);
    assert_eq!(d.line, Some(4), "{d:?}");
    // Nested objects too.
    let nested = "{\"a\": {\"b\": 1, \"b\": 2}}";
    let e = hilo_core::source::parse_json_strict(nested).unwrap_err();
    assert!(e.to_string().contains("duplicate key `b`"), "{e}");
    assert_eq!(
        hilo_core::source::parse_json_strict("{\"a\": [1, {\"b\": null}], \"c\": 1.5}").unwrap(),
        json!({"a": [1, {"b": null}], "c": 1.5})
    );
}

#[test]
fn oversized_definitions_are_refused_before_parsing() {
    let text = format!(
        "name: t\nversion: 1\n# {}\nnodes: []\n",
        "x".repeat(33 << 20)
    );
    let d = hilo_core::load(&text, Format::Yaml, &Catalog::default()).unwrap_err();
    assert_eq!(d.0.len(), 1);
    assert_eq!(d.0[0].code, Code::LimitExceeded);
    assert!(
        d.0[0].message.contains(&text.len().to_string()),
        "{}",
        d.0[0].message
    );
    assert!(
        d.0[0]
            .message
            .contains(&hilo_core::source::MAX_DEFINITION_BYTES.to_string())
    );
}

#[test]
fn absurd_wait_durations_are_refused() {
    let text = "name: t\nversion: 1\nnodes:\n  - {id: w, type: wait, duration_ms: 9223372036854775000}\n  - {id: done, type: finish}\nedges:\n  - {from: w, to: done}\n";
    let diags = load_yaml(text);
    let d = diags
        .iter()
        .find(|d| d.code == Code::InvalidValue)
        .unwrap_or_else(|| panic!("{diags:?}"));
    assert_eq!(d.node.as_deref(), Some("w"));
    assert_eq!(d.field.as_deref(), Some("duration_ms"));
    // Ten years is still fine.
    let ok = text.replace(
        "9223372036854775000",
        &hilo_core::decode::MAX_WAIT_MS.to_string(),
    );
    assert_eq!(load_yaml(&ok), Vec::new());
}

/// `n` nodes in a chain (as YAML), the last one a `finish`.
fn chain(n: usize) -> String {
    let mut s = String::from("name: t\nversion: 1\nnodes:\n");
    for i in 0..n - 1 {
        s.push_str(&format!(
            "  - {{id: n{i}, type: set, vars: {{x: \"${{ input.a }}\"}}}}\n"
        ));
    }
    s.push_str("  - {id: done, type: finish}\nedges:\n");
    for i in 0..n - 1 {
        let to = if i + 2 == n {
            "done".to_string()
        } else {
            format!("n{}", i + 1)
        };
        s.push_str(&format!("  - {{from: n{i}, to: {to}}}\n"));
    }
    s
}

#[test]
fn node_and_edge_counts_are_bounded() {
    let max = hilo_core::validate::MAX_NODES;
    assert!(hilo_core::load(&chain(max), Format::Yaml, &Catalog::default()).is_ok());
    let d = hilo_core::load(&chain(max + 1), Format::Yaml, &Catalog::default()).unwrap_err();
    assert_eq!(d.0.len(), 1, "{d}");
    assert_eq!(d.0[0].code, Code::LimitExceeded);
    assert!(
        d.0[0].message.contains(&format!("{} nodes", max + 1)),
        "{}",
        d.0[0].message
    );
    // Within the budget, a definition full of mistakes still validates in one pass: every
    // edge names a node that does not exist (each one looked up for a suggestion).
    let mut s = String::from("name: t\nversion: 1\nnodes:\n");
    for i in 0..max - 1 {
        s.push_str(&format!("  - {{id: node_number_{i}, type: finish}}\n"));
    }
    s.push_str("  - {id: done, type: finish}\nedges:\n");
    for i in 0..max {
        s.push_str(&format!(
            "  - {{from: node_numbr_{i}, to: node_numbe_{i}}}\n"
        ));
    }
    assert!(s.len() < hilo_core::source::MAX_DEFINITION_BYTES);
    let d = hilo_core::load(&s, Format::Yaml, &Catalog::default()).unwrap_err();
    assert!(d.0.iter().any(|d| d.code == Code::UnknownNode));
}

#[test]
fn format_keys_with_multibyte_characters_are_an_error_not_a_panic() {
    // Found by the `template_render` fuzz target: minijinja's format parser slices inside a
    // multi-byte character.
    let env = template_env();
    let doc = json!({"input": {"n": 1}});
    let e = render_template(&env, "{{ '%(\u{d6}\u{d6})s' | format(input) }}", &doc);
    assert!(e.is_err(), "{e:?}");
    // The second one: a `{…}` that closes, with a `%(` inside it that never does.
    let e = render_template(
        &env,
        "{{ input.f | format }}",
        &json!({"input": {"f": "{k%(&3ef%}np\u{fffd}u_0{pt"}}),
    );
    assert!(e.is_err(), "{e:?}");
    assert_eq!(
        render_template(&env, "{{ 'Größe: %s' | format(input.n) }}", &doc).unwrap(),
        "Größe: 1"
    );
}

#[test]
fn the_deepest_allowed_texts_run_in_a_small_stack() {
    // Everything the limits let through, at the limit, in a thread with a quarter of the
    // stack tokio's workers have (2 MiB): the depth limit leaves a wide margin.
    let t = std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(|| {
            let max = limits::MAX_DEPTH;
            let state = json!({"a": {"a": {"a": 1}}, "s": "x"});
            let mut ok = 0;
            for e in [
                format!("{}a", "!".repeat(max - 2)),
                format!("{}a{}", "[".repeat(max / 2 - 1), "]".repeat(max / 2 - 1)),
                vec!["a"; max - 1].join("."),
                format!("s{}", " | [@]".repeat(max / 3 - 1)),
                format!("s{}", " | {a: @}".repeat(max / 3 - 1)),
            ] {
                if let Ok(c) = compile_jmespath(&e) {
                    let _ = search_json(&c, &to_var(&state).unwrap());
                    ok += 1;
                }
            }
            let env = template_env();
            for t in [
                format!("{{{{ {} s }}}}", "not ".repeat(max - 2)),
                format!("{{{{ {}s }}}}", "-".repeat(max - 2)),
                format!("{{{{ s{} }}}}", ".a".repeat(max - 2)),
                format!("{{{{ s{} }}}}", " | lower".repeat(max - 2)),
                format!("{}x{}", "{% if s %}".repeat(16), "{% endif %}".repeat(16)),
            ] {
                if limits::scan_template(&t).is_ok() {
                    let _ = render_template(&env, &t, &state);
                    ok += 1;
                }
            }
            ok
        })
        .unwrap();
    assert!(t.join().unwrap() >= 8);
}

#[test]
fn nested_projections_found_by_the_fuzzer_hit_the_work_limit() {
    // Found by `expr_eval` (a timeout under the sanitizer): multi-lists projected inside
    // projections multiply the work; the budget ends it.
    let d = include_bytes!("../../../../fuzz/seeds/expr_eval/regression-nested-projections");
    let i = d.iter().position(|b| *b == 0).unwrap();
    let e = std::str::from_utf8(&d[..i]).unwrap();
    let state = json!({"input": String::from_utf8_lossy(&d[i + 1..])});
    assert_eq!(eval(e, &state).unwrap_err().limit(), Some(Limit::Work));
}

#[test]
fn many_projected_multi_lists_found_by_the_fuzzer_end_within_the_budget() {
    // Found by `expr_eval` (a timeout under the sanitizer on a loaded machine): projections
    // of multi-lists over a long string build and drop many small values.
    let d = include_bytes!("../../../../fuzz/seeds/expr_eval/regression-shared-drop");
    let i = d.iter().position(|b| *b == 0).unwrap();
    let e = std::str::from_utf8(&d[..i]).unwrap();
    let state = json!({"input": String::from_utf8_lossy(&d[i + 1..])});
    assert_eq!(eval(e, &state).unwrap_err().limit(), Some(Limit::Work));
}
