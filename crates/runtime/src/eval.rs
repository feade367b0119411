//! `hilo eval`: a workflow version scored on a dataset. A dataset is JSON Lines, one case a
//! line: `{"name", "input", "fixtures": {"<node id>": <its output>}, "expect": {"status",
//! "output", "schema", "assert": ["<JMESPath>"], "path": ["<node>"], "max_cost_usd",
//! "max_latency_ms", "rubric"}}`. Each case runs as a real execution (`started_by` `eval`): the nodes its
//! fixtures name are answered with them (never called), every other node runs live. Cases run
//! concurrently, each `repeat` times; a case passes when all its runs pass. A rubric is judged
//! by a model through the router (a simple agent asked for `{pass, reason}`), and its cost is
//! the case's. With a baseline version the same cases run against it too, and the report says
//! case by case what changed. `record` turns recorded executions into cases with fixtures.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::StreamExt;
use hilo_core::exec::{AgentRequest, ExecStatus, NodeStatus, StartedBy};
use hilo_core::tool::ToolContext;
use hilo_core::{AgentKind, AgentNode, AgentWith, NodeKind, Workflow};
use hilo_engine::{Engine, Mode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::diff::json_diff;
use crate::error::{Refusal, Result, RuntimeError};

/// The most cases a dataset may hold.
pub const MAX_CASES: usize = 10_000;

/// One case of a dataset.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    #[serde(default)]
    pub name: String,
    pub input: Value,
    /// Node id → the output it answers with (a person's answer for a `human` node).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub fixtures: Map<String, Value>,
    #[serde(default)]
    pub expect: Expect,
}

/// What a case's run must show; every field optional.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// How the run ends: `succeeded` (the default), `handed_over`, `failed`, `compensated`...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The output, exactly (numbers equal however written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// A JSON Schema the output is valid against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// JMESPath expressions over the output, each truthy.
    #[serde(default, rename = "assert", skip_serializing_if = "Vec::is_empty")]
    pub asserts: Vec<String>,
    /// The nodes that ran, in the order they ended (node keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency_ms: Option<u64>,
    /// What a judge model checks the output against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rubric: Option<String>,
}

/// Reads a JSON Lines dataset: every problem at once, by line; blank lines are skipped, a
/// case without a name is named by its line.
pub fn parse_dataset(text: &str) -> Result<Vec<Case>> {
    let mut cases = Vec::new();
    let mut problems = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Case>(line) {
            Ok(mut c) => {
                if c.name.is_empty() {
                    c.name = format!("line {n}");
                }
                if !names.insert(c.name.clone()) {
                    problems.push(format!("line {n}: a case named `{}` came before", c.name));
                }
                for a in &c.expect.asserts {
                    if let Err(e) = hilo_core::expr::compile_jmespath(a) {
                        problems.push(format!("line {n}: expect.assert `{a}`: {}", e.message));
                    }
                }
                cases.push(c);
            }
            Err(e) => problems.push(format!("line {n}: {e}")),
        }
        if cases.len() > MAX_CASES {
            problems.push(format!("more than {MAX_CASES} cases"));
            break;
        }
    }
    if cases.is_empty() && problems.is_empty() {
        problems.push("the dataset has no case: write one JSON object a line".into());
    }
    if !problems.is_empty() {
        return Err(RuntimeError::bad_request(
            "INVALID_DATASET",
            format!("the dataset is not valid:\n  - {}", problems.join("\n  - ")),
        ));
    }
    Ok(cases)
}

/// How an eval runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Runs per case (≥ 1).
    pub repeat: u32,
    /// Runs at once.
    pub concurrency: usize,
    /// The judge's profile for rubrics (`balanced` by default).
    pub judge_profile: Option<String>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            repeat: 1,
            concurrency: 4,
            judge_profile: None,
        }
    }
}

/// One run of a case.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    pub execution_id: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    pub passed: bool,
    /// What it failed, one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
    pub cost_usd: f64,
    pub latency_ms: i64,
    pub path: Vec<String>,
    /// Nodes answered from the case's fixtures.
    pub fixtures_used: u64,
}

/// A case's runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseResult {
    pub name: String,
    /// All its runs passed.
    pub passed: bool,
    pub runs: Vec<Run>,
    pub cost_usd: f64,
    /// The median of its runs' latencies.
    pub latency_ms: i64,
}

/// A version's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionResult {
    pub workflow: String,
    pub version: u64,
    pub cases: Vec<CaseResult>,
    /// Cases passed (all their runs) over cases.
    pub pass_rate: f64,
    /// Runs passed over runs.
    pub pass_at_1: f64,
    /// The mean over cases of (runs passed / runs)^k: the chance that k runs in a row pass.
    pub pass_hat_k: f64,
    pub repeat: u32,
    pub cost_usd: f64,
    pub latency_ms_median: i64,
}

/// A case's change from the baseline to the candidate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Change {
    pub name: String,
    pub baseline_passed: bool,
    pub passed: bool,
    /// The first runs' outputs where they differ (`a` baseline, `b` candidate).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_changes: Vec<crate::diff::Change>,
    pub cost_usd_delta: f64,
    pub latency_ms_delta: i64,
}

/// An eval's report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub id: String,
    pub candidate: VersionResult,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<VersionResult>,
    /// Cases whose pass, output, cost or latency changed from the baseline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// The candidate's pass rate reaches the threshold (true without one).
    pub passed: bool,
}

/// Runs `cases` against `candidate` (and `baseline`), `tenant`'s versions of one workflow
/// (`adhoc`: the candidate is a file's definition, pinned with each run). Nothing of the
/// evaluation itself is stored (see [`run_stored`]).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    engine: &Engine,
    tenant: &str,
    candidate: Arc<Workflow>,
    adhoc: bool,
    baseline: Option<Arc<Workflow>>,
    cases: &[Case],
    options: &Options,
    threshold: Option<f64>,
) -> Result<Report> {
    let req = Request {
        candidate,
        adhoc,
        baseline,
        cases: cases.to_vec(),
        options: options.clone(),
        threshold,
    };
    let id = hilo_engine::driver::new_id();
    run_with_id(engine, tenant, &id, &req).await
}

/// What an evaluation's request must be: a threshold from 0 to 1, 1 to 100 repeats, fixtures
/// naming nodes the candidate has.
pub fn check_request(req: &Request) -> Result<()> {
    if let Some(t) = req.threshold
        && !(0.0..=1.0).contains(&t)
    {
        return Err(RuntimeError::bad_request(
            "INVALID_INPUT",
            format!("the threshold is a pass rate from 0 to 1, not {t}"),
        ));
    }
    if req.options.repeat == 0 || req.options.repeat > 100 {
        return Err(RuntimeError::bad_request(
            "INVALID_INPUT",
            "repeat is from 1 to 100",
        ));
    }
    if req.cases.is_empty() {
        return Err(RuntimeError::bad_request(
            "INVALID_DATASET",
            "the dataset has no case",
        ));
    }
    for c in &req.cases {
        for id in c.fixtures.keys() {
            if req.candidate.node(id).is_none() {
                return Err(RuntimeError::bad_request(
                    "INVALID_DATASET",
                    format!(
                        "case `{}`: fixtures name node `{id}`, which {} does not have",
                        c.name,
                        req.candidate.reference()
                    ),
                ));
            }
        }
    }
    Ok(())
}

async fn run_with_id(engine: &Engine, tenant: &str, id: &str, req: &Request) -> Result<Report> {
    check_request(req)?;
    let (cases, options) = (&req.cases[..], &req.options);
    let cand = version(
        engine,
        tenant,
        id,
        req.candidate.clone(),
        req.adhoc,
        cases,
        options,
    )
    .await;
    let base = match &req.baseline {
        Some(b) => Some(version(engine, tenant, id, b.clone(), false, cases, options).await),
        None => None,
    };
    let changes = base.as_ref().map(|b| changes(b, &cand)).unwrap_or_default();
    let passed = req.threshold.is_none_or(|t| cand.pass_rate >= t);
    Ok(Report {
        id: id.to_string(),
        candidate: cand,
        baseline: base,
        changes,
        threshold: req.threshold,
        passed,
    })
}

async fn version(
    engine: &Engine,
    tenant: &str,
    eval_id: &str,
    wf: Arc<Workflow>,
    adhoc: bool,
    cases: &[Case],
    options: &Options,
) -> VersionResult {
    let k = options.repeat;
    let jobs: Vec<(usize, u32)> = (0..cases.len())
        .flat_map(|c| (0..k).map(move |r| (c, r)))
        .collect();
    let mut runs: Vec<Vec<Option<Run>>> = cases.iter().map(|_| vec![None; k as usize]).collect();
    let mut stream = futures_util::stream::iter(jobs)
        .map(|(c, r)| {
            let wf = wf.clone();
            async move {
                let run = run_case(engine, tenant, eval_id, wf, adhoc, &cases[c], options).await;
                (c, r, run)
            }
        })
        .buffer_unordered(options.concurrency.max(1));
    while let Some((c, r, run)) = stream.next().await {
        runs[c][r as usize] = Some(run);
    }
    let cases: Vec<CaseResult> = cases
        .iter()
        .zip(runs)
        .map(|(c, runs)| {
            let runs: Vec<Run> = runs.into_iter().flatten().collect();
            let mut lat: Vec<i64> = runs.iter().map(|r| r.latency_ms).collect();
            lat.sort();
            CaseResult {
                name: c.name.clone(),
                passed: runs.iter().all(|r| r.passed),
                cost_usd: runs.iter().map(|r| r.cost_usd).sum(),
                latency_ms: lat.get(lat.len() / 2).copied().unwrap_or(0),
                runs,
            }
        })
        .collect();
    let n = cases.len().max(1) as f64;
    let runs_total: usize = cases.iter().map(|c| c.runs.len()).sum();
    let runs_passed: usize = cases
        .iter()
        .map(|c| c.runs.iter().filter(|r| r.passed).count())
        .sum();
    let mut lat: Vec<i64> = cases.iter().map(|c| c.latency_ms).collect();
    lat.sort();
    VersionResult {
        workflow: wf.name.clone(),
        version: wf.version,
        pass_rate: cases.iter().filter(|c| c.passed).count() as f64 / n,
        pass_at_1: runs_passed as f64 / runs_total.max(1) as f64,
        pass_hat_k: cases
            .iter()
            .map(|c| {
                let p =
                    c.runs.iter().filter(|r| r.passed).count() as f64 / c.runs.len().max(1) as f64;
                p.powi(k as i32)
            })
            .sum::<f64>()
            / n,
        repeat: k,
        cost_usd: cases.iter().map(|c| c.cost_usd).sum(),
        latency_ms_median: lat.get(lat.len() / 2).copied().unwrap_or(0),
        cases,
    }
}

/// One run of one case, checked against what it expects.
async fn run_case(
    engine: &Engine,
    tenant: &str,
    eval_id: &str,
    wf: Arc<Workflow>,
    adhoc: bool,
    case: &Case,
    options: &Options,
) -> Run {
    let started_by = StartedBy::Eval {
        run: eval_id.to_string(),
        case: case.name.clone(),
    };
    let workflow = wf.name.clone();
    let prepared = crate::playback::prepare_fixtures(
        engine,
        tenant,
        wf,
        adhoc,
        case.input.clone(),
        &case.fixtures,
        started_by,
    )
    .await;
    let id = prepared.forked.execution_id.clone();
    let fixtures_used = prepared.forked.answered;
    let mut run = Run {
        execution_id: id.clone(),
        status: "failed".into(),
        output: None,
        passed: false,
        failures: Vec::new(),
        cost_usd: 0.0,
        latency_ms: 0,
        path: Vec::new(),
        fixtures_used,
    };
    let started = std::time::Instant::now();
    let outcome = match prepared.create(engine).await {
        Ok(machine) => engine
            .drive_advanced(machine, Mode::Foreground)
            .await
            .map_err(RuntimeError::from),
        Err(e) => Err(e),
    };
    run.latency_ms = started.elapsed().as_millis() as i64;
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            run.failures.push(format!("the case could not run: {e}"));
            return run;
        }
    };
    run.status = outcome.status.as_str().to_string();
    run.output = outcome.output.clone();
    let store = engine.store();
    if let Ok(nodes) = store.node_records(&id).await {
        let mut ended: Vec<_> = nodes
            .into_iter()
            .filter(|r| matches!(r.status, NodeStatus::Succeeded | NodeStatus::Failed))
            .collect();
        ended.sort_by_key(|r| r.done_seq);
        run.path = ended.into_iter().map(|r| r.key).collect();
    }
    let expected = case.expect.status.as_deref().unwrap_or("succeeded");
    match outcome.status {
        s if s.as_str() == expected => {}
        ExecStatus::Waiting => run.failures.push(
            "it waits for a person: give the human node's answer in the case's fixtures".into(),
        ),
        s => run.failures.push(match &outcome.error {
            Some(e) => format!(
                "it ended {} ({} {}), not {expected}",
                s.as_str(),
                e.code,
                e.message
            ),
            None => format!("it ended {}, not {expected}", s.as_str()),
        }),
    }
    let output = outcome.output.clone().unwrap_or(Value::Null);
    check(&case.expect, &output, &mut run);
    if let Some(rubric) = &case.expect.rubric {
        match judge(engine, tenant, (&id, &workflow), rubric, &output, options).await {
            Ok((true, _)) => {}
            Ok((false, reason)) => run.failures.push(format!("rubric: {reason}")),
            Err(e) => run.failures.push(format!("rubric: the judge failed: {e}")),
        }
    }
    // Cost after the judge: its model call is the case's too.
    if let Ok(calls) = store.llm_calls(tenant, Some(&id), 100_000).await {
        let nanos: i64 = calls.iter().map(|c| c.cost_nanos).sum();
        run.cost_usd = nanos as f64 / 1e9;
    }
    if let Some(max) = case.expect.max_cost_usd
        && run.cost_usd > max
    {
        run.failures.push(format!(
            "cost ${:.6} is over max_cost_usd ${max}",
            run.cost_usd
        ));
    }
    if let Some(max) = case.expect.max_latency_ms
        && run.latency_ms as u64 > max
    {
        run.failures.push(format!(
            "latency {} ms is over max_latency_ms {max}",
            run.latency_ms
        ));
    }
    run.passed = run.failures.is_empty();
    run
}

/// The output, schema, assertions and path a case expects.
fn check(expect: &Expect, output: &Value, run: &mut Run) {
    if let Some(want) = &expect.output {
        let (changes, total) = json_diff(want, output);
        if total > 0 {
            let first = &changes[0];
            run.failures.push(format!(
                "output differs at {} place(s); first at `{}`: expected {} got {}",
                total,
                if first.path.is_empty() {
                    "(whole)"
                } else {
                    &first.path
                },
                first
                    .a
                    .as_ref()
                    .map_or("(absent)".into(), |v| v.to_string()),
                first
                    .b
                    .as_ref()
                    .map_or("(absent)".into(), |v| v.to_string()),
            ));
        }
    }
    if let Some(schema) = &expect.schema {
        for e in hilo_core::schema::schema_errors(schema, output) {
            run.failures.push(format!("schema: {e}"));
        }
    }
    if !expect.asserts.is_empty() {
        let data = hilo_core::expr::to_var(output);
        for a in &expect.asserts {
            let verdict = match (&data, hilo_core::expr::compile_jmespath(a)) {
                (Ok(d), Ok(e)) => hilo_core::expr::search_json(&e, d).map_err(|e| e.to_string()),
                (Err(e), _) => Err(e.to_string()),
                (_, Err(e)) => Err(e.message),
            };
            match verdict {
                Ok(v) if truthy(&v) => {}
                Ok(v) => run.failures.push(format!("assert `{a}` is {v}")),
                Err(e) => run.failures.push(format!("assert `{a}`: {e}")),
            }
        }
    }
    if let Some(path) = &expect.path
        && *path != run.path
    {
        run.failures.push(format!(
            "path {} is not the expected {}",
            run.path.join(" → "),
            path.join(" → ")
        ));
    }
}

/// JMESPath's truth: false, null, and empty strings, lists and objects are false.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

/// Asks a judge model whether `output` meets `rubric`: a simple agent through the router,
/// under the case's execution and workflow (its cost is the case's).
async fn judge(
    engine: &Engine,
    tenant: &str,
    (execution, workflow): (&str, &str),
    rubric: &str,
    output: &Value,
    options: &Options,
) -> std::result::Result<(bool, String), String> {
    let Some(agents) = engine.agent_runtime() else {
        return Err("no model is configured to judge rubrics ([llm] in hilo.toml)".into());
    };
    let prompt = format!(
        "You grade the output of an automated workflow against a rubric.\n\nRubric:\n{rubric}\n\nOutput (JSON):\n{}\n\nDoes the output meet the rubric? Answer with `pass` (true or false) and a one-sentence `reason`.",
        serde_json::to_string_pretty(output).unwrap_or_default()
    );
    let schema = json!({
        "type": "object",
        "properties": {"pass": {"type": "boolean"}, "reason": {"type": "string"}},
        "required": ["pass", "reason"],
    });
    let with = AgentWith {
        profile: Some(
            options
                .judge_profile
                .clone()
                .unwrap_or_else(|| "balanced".into()),
        ),
        prompt: Some(prompt.clone()),
        output_schema: Some(schema.clone()),
        temperature: Some(0.0),
        ..AgentWith::default()
    };
    let rendered = serde_json::to_value(&with).unwrap_or(Value::Null);
    let key = "eval.rubric".to_string();
    let request = AgentRequest {
        tool: ToolContext {
            tenant: tenant.to_string(),
            execution_id: execution.to_string(),
            node_key: key.clone(),
            idempotency_key: format!("{execution}:{key}"),
            attempt: 1,
            compensation: false,
            trace: None,
            grant: Some(Arc::from(Vec::<String>::new())),
            input: None,
        },
        workflow: workflow.to_string(),
        node: AgentNode {
            agent: AgentKind::Simple,
            with,
        },
        rendered,
        local: Arc::from(Vec::new()),
        timeout_ms: 60_000,
        tokens: None,
        playback: None,
    };
    let run = agents.run(request).await;
    let answer = run
        .result
        .map_err(|e| format!("{} {}", e.code, e.message))?;
    let pass = answer
        .get("pass")
        .and_then(Value::as_bool)
        .ok_or_else(|| format!("the judge's answer has no boolean `pass`: {answer}"))?;
    let reason = answer
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Ok((pass, reason))
}

fn changes(base: &VersionResult, cand: &VersionResult) -> Vec<Change> {
    let by_name: BTreeMap<&str, &CaseResult> =
        base.cases.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut out = Vec::new();
    for c in &cand.cases {
        let Some(b) = by_name.get(c.name.as_str()) else {
            continue;
        };
        let (a, bo) = (
            b.runs
                .first()
                .and_then(|r| r.output.clone())
                .unwrap_or(Value::Null),
            c.runs
                .first()
                .and_then(|r| r.output.clone())
                .unwrap_or(Value::Null),
        );
        let (output_changes, _) = json_diff(&a, &bo);
        if b.passed != c.passed || !output_changes.is_empty() {
            out.push(Change {
                name: c.name.clone(),
                baseline_passed: b.passed,
                passed: c.passed,
                output_changes,
                cost_usd_delta: c.cost_usd - b.cost_usd,
                latency_ms_delta: c.latency_ms - b.latency_ms,
            });
        }
    }
    out
}

/// `hilo eval record`: `tenant`'s executions of `workflow` created since `since` (Unix ms),
/// newest first, at most `limit`, that ended, as cases: their input; fixtures from every
/// top-level call node that succeeded (tool, agent, code, child) and every person's answer;
/// the output and path they had as what is expected.
pub async fn record(
    engine: &Engine,
    tenant: &str,
    workflow: &str,
    since: i64,
    limit: u32,
) -> Result<Vec<Case>> {
    let store = engine.store();
    // Only real traffic that ended: not the runs of evals.
    let keep = |e: &hilo_core::exec::ExecRecord| {
        e.status.is_terminal() && !matches!(e.started_by, Some(StartedBy::Eval { .. }))
    };
    let ended_runs =
        crate::playback::executions_since(store.as_ref(), tenant, workflow, since, limit, keep)
            .await?;
    let mut cases = Vec::new();
    for e in ended_runs {
        let rec = crate::playback::load(store.as_ref(), tenant, &e.id).await?;
        let mut fixtures = Map::new();
        let mut ended: Vec<_> = rec
            .nodes
            .values()
            .filter(|r| matches!(r.status, NodeStatus::Succeeded | NodeStatus::Failed))
            .collect();
        ended.sort_by_key(|r| r.done_seq);
        for r in &ended {
            if r.status != NodeStatus::Succeeded || r.key.contains('/') {
                continue;
            }
            let call = matches!(
                rec.workflow.node(&r.node_id).map(|n| &n.kind),
                Some(
                    NodeKind::Tool(_)
                        | NodeKind::Agent(_)
                        | NodeKind::Code(_)
                        | NodeKind::Workflow(_)
                        | NodeKind::Human(_)
                )
            );
            if call {
                fixtures.insert(
                    r.key.clone(),
                    r.output.as_deref().cloned().unwrap_or(Value::Null),
                );
            }
        }
        let expect = Expect {
            // A compensated run's undone nodes are fixtures here, which are never undone
            // (they never acted): the case ends failed, with nothing to compensate.
            status: match e.status {
                ExecStatus::Succeeded => None,
                ExecStatus::Compensated => Some(ExecStatus::Failed.as_str().to_string()),
                s => Some(s.as_str().to_string()),
            },
            output: (e.status == ExecStatus::Succeeded)
                .then(|| e.output.clone())
                .flatten(),
            path: Some(ended.iter().map(|r| r.key.clone()).collect()),
            ..Expect::default()
        };
        cases.push(Case {
            name: e.id.clone(),
            input: rec.execution.input.get().clone(),
            fixtures,
            expect,
        });
    }
    if cases.is_empty() {
        return Err(RuntimeError::new(
            Refusal::NotFound,
            "NOT_FOUND",
            format!("no ended execution of workflow `{workflow}` in that time: nothing to record"),
        ));
    }
    Ok(cases)
}

/// The report as JUnit XML, for CI: a test suite per version (the candidate's first), a test
/// case per eval case with each failed run's failures, times in seconds.
pub fn junit(report: &Report) -> String {
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let suites: Vec<&VersionResult> = std::iter::once(&report.candidate)
        .chain(report.baseline.as_ref())
        .collect();
    let tests: usize = suites.iter().map(|s| s.cases.len()).sum();
    let failures: usize = suites
        .iter()
        .map(|s| s.cases.iter().filter(|c| !c.passed).count())
        .sum();
    x.push_str(&format!(
        "<testsuites name=\"hilo eval {}\" tests=\"{tests}\" failures=\"{failures}\">\n",
        escape(&report.id)
    ));
    for s in suites {
        let time: i64 = s.cases.iter().map(|c| c.latency_ms).sum();
        x.push_str(&format!(
            "  <testsuite name=\"{}@{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" time=\"{:.3}\">\n",
            escape(&s.workflow),
            s.version,
            s.cases.len(),
            s.cases.iter().filter(|c| !c.passed).count(),
            time as f64 / 1000.0
        ));
        x.push_str(&format!(
            "    <properties><property name=\"pass_rate\" value=\"{:.4}\"/><property name=\"pass_at_1\" value=\"{:.4}\"/><property name=\"pass_hat_k\" value=\"{:.4}\"/><property name=\"repeat\" value=\"{}\"/><property name=\"cost_usd\" value=\"{:.6}\"/></properties>\n",
            s.pass_rate, s.pass_at_1, s.pass_hat_k, s.repeat, s.cost_usd
        ));
        for c in &s.cases {
            x.push_str(&format!(
                "    <testcase classname=\"{}@{}\" name=\"{}\" time=\"{:.3}\"",
                escape(&s.workflow),
                s.version,
                escape(&c.name),
                c.latency_ms as f64 / 1000.0
            ));
            if c.passed {
                x.push_str("/>\n");
                continue;
            }
            x.push_str(">\n");
            let failed: Vec<&Run> = c.runs.iter().filter(|r| !r.passed).collect();
            let first = failed
                .first()
                .and_then(|r| r.failures.first())
                .cloned()
                .unwrap_or_default();
            let mut text = String::new();
            for (i, r) in failed.iter().enumerate() {
                text.push_str(&format!("run {} (execution {}):\n", i + 1, r.execution_id));
                for f in &r.failures {
                    text.push_str(&format!("  - {f}\n"));
                }
            }
            x.push_str(&format!(
                "      <failure message=\"{}\" type=\"eval\">{}</failure>\n    </testcase>\n",
                escape(&first),
                escape(&text)
            ));
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

/// Text for XML content and attribute values; characters XML 1.0 cannot hold are dropped.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

/// An evaluation's request, as the API and the CLI give it.
#[derive(Debug, Clone)]
pub struct Request {
    pub candidate: Arc<Workflow>,
    /// The candidate is a file's definition, pinned with each run.
    pub adhoc: bool,
    pub baseline: Option<Arc<Workflow>>,
    pub cases: Vec<Case>,
    pub options: Options,
    pub threshold: Option<f64>,
}

fn summary(req: &Request, report: Option<&Report>) -> Value {
    let mut s = json!({
        "cases": req.cases.len(),
        "repeat": req.options.repeat,
        "baseline": req.baseline.as_ref().map(|b| b.version),
        "threshold": req.threshold,
    });
    if let Some(r) = report {
        s["pass_rate"] = json!(r.candidate.pass_rate);
        s["pass_at_1"] = json!(r.candidate.pass_at_1);
        s["pass_hat_k"] = json!(r.candidate.pass_hat_k);
        s["cost_usd"] = json!(r.candidate.cost_usd);
        s["baseline_pass_rate"] = json!(r.baseline.as_ref().map(|b| b.pass_rate));
        s["changed"] = json!(r.changes.len());
        s["passed"] = json!(r.passed);
    }
    s
}

/// Runs an evaluation and keeps it in the store as it goes: `running` when it starts, then
/// `done` with its report or `failed` with its error. The stored row's id is the report's.
pub async fn run_stored(engine: &Engine, tenant: &str, req: Request) -> Result<Report> {
    let row = begin(engine, tenant, &req).await?;
    let (result, stored) = conclude(engine, &req, row).await;
    stored?;
    result
}

/// Starts an evaluation in a task of its own; answers with its stored row (`running`).
pub async fn start(
    engine: &Engine,
    tenant: &str,
    req: Request,
) -> Result<hilo_core::evals::EvalRun> {
    check_request(&req)?;
    let row = begin(engine, tenant, &req).await?;
    let (engine, first) = (engine.clone(), row.clone());
    tokio::spawn(async move {
        let id = first.id.clone();
        if let (_, Err(e)) = conclude(&engine, &req, first).await {
            tracing::warn!(eval = %id, "the evaluation's result could not be stored: {e}");
        }
    });
    Ok(row)
}

/// Writes the evaluation of `req` as `running`, under a new id.
async fn begin(engine: &Engine, tenant: &str, req: &Request) -> Result<hilo_core::evals::EvalRun> {
    let row = hilo_core::evals::EvalRun {
        id: hilo_engine::driver::new_id(),
        tenant: tenant.to_string(),
        workflow: req.candidate.name.clone(),
        version: req.candidate.version,
        status: "running".into(),
        summary: summary(req, None),
        report: None,
        error: None,
        created_at: hilo_engine::now_ms(),
        finished_at: None,
    };
    engine.store().put_eval(&row).await?;
    Ok(row)
}

/// Runs the evaluation `row` stands for and writes how it ended: `done` with its report, or
/// `failed` with its error. The run's result, and the write's.
async fn conclude(
    engine: &Engine,
    req: &Request,
    mut row: hilo_core::evals::EvalRun,
) -> (Result<Report>, Result<()>) {
    let result = run_with_id(engine, &row.tenant, &row.id, req).await;
    row.finished_at = Some(hilo_engine::now_ms());
    match &result {
        Ok(report) => {
            row.status = "done".into();
            row.summary = summary(req, Some(report));
            row.report = serde_json::to_value(report).ok();
        }
        Err(e) => {
            row.status = "failed".into();
            row.error = Some(e.to_string());
        }
    }
    let stored = engine.store().put_eval(&row).await.map_err(Into::into);
    (result, stored)
}
