//! Scripts: hilo's sandbox (`hilo-sandbox`) as the process runs it. [`Scripts`] is the one
//! bounded pool of a process with each tenant's maxima (`[code]`, `[tiers.NAME.code]`); it is
//! the engine's [`CodeRunner`] (`code` nodes), the built-in tool `run_javascript`
//! ([`RunJavascript`]) and what the code agent runs its scripts with. [`SandboxCheck`] is the
//! validator's syntax check.
//!
//! A script's errors become node errors with stable codes (`CODE_ERROR`, `TIMEOUT`,
//! `MEMORY_LIMIT`, `OUTPUT_INVALID`, `INVALID_CODE`), never retryable by themselves: the
//! engine retries a code node's `TIMEOUT` and `MEMORY_LIMIT` only when its own `retry` asks.

use std::sync::Arc;

use async_trait::async_trait;
use hilo_core::ToolClass;
use hilo_core::code::{
    AppliedLimits, CodeCheck, CodeLimits, CodeProblem, CodeRequest, CodeRun, CodeRunner,
    SourceOrigin,
};
use hilo_core::exec::{NodeError, codes};
use hilo_core::tool::{Tool, ToolContext, ToolSpec};
use hilo_sandbox::{Call, CodeError, Host, Limits, Sandbox};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// `[code]` in hilo.toml: the pool's size and the maxima of tenants whose tier says nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeConfig {
    /// Scripts running at once in this process (default: twice the cores); more wait.
    pub max_concurrent: Option<usize>,
    // The maxima, as in [`CodeMaxima`] (not flattened: `hilo.toml`'s check lists a table's
    // keys, which serde cannot for a flattened one).
    #[serde(default, deserialize_with = "hilo_core::duration::serde_opt_ms")]
    pub timeout_ms: Option<u64>,
    pub memory_mb: Option<u64>,
    pub stack_kb: Option<u64>,
    pub max_output_bytes: Option<u64>,
}

impl CodeConfig {
    /// The maxima of tenants whose tier sets none.
    pub fn maxima(&self) -> CodeMaxima {
        CodeMaxima {
            timeout_ms: self.timeout_ms,
            memory_mb: self.memory_mb,
            stack_kb: self.stack_kb,
            max_output_bytes: self.max_output_bytes,
        }
    }
}

/// The most a node's `limits` may ask for (`[code]`, `[tiers.NAME.code]`); unset: hilo's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeMaxima {
    #[serde(default, deserialize_with = "hilo_core::duration::serde_opt_ms")]
    pub timeout_ms: Option<u64>,
    pub memory_mb: Option<u64>,
    pub stack_kb: Option<u64>,
    pub max_output_bytes: Option<u64>,
}

impl CodeMaxima {
    /// These over `base`.
    pub fn over(&self, base: &AppliedLimits) -> AppliedLimits {
        AppliedLimits {
            timeout_ms: self.timeout_ms.unwrap_or(base.timeout_ms),
            memory_mb: self.memory_mb.unwrap_or(base.memory_mb),
            stack_kb: self.stack_kb.unwrap_or(base.stack_kb),
            max_output_bytes: self.max_output_bytes.unwrap_or(base.max_output_bytes),
        }
    }
}

/// A tenant's maxima (its tier's, else `[code]`'s).
pub type MaximaOf = Arc<dyn Fn(&str) -> AppliedLimits + Send + Sync>;

/// The process's sandbox with each tenant's maxima. Cheap to clone.
#[derive(Clone)]
pub struct Scripts {
    sandbox: Sandbox,
    maxima: MaximaOf,
}

/// One script to run for a tenant.
pub struct Script<'a> {
    pub tenant: &'a str,
    /// What the errors call it: "code node `score`", "run_javascript".
    pub what: &'a str,
    pub source: Arc<str>,
    pub origin: Option<SourceOrigin>,
    pub args: Value,
    pub state: Value,
    pub limits: CodeLimits,
    pub now_ms: i64,
    pub seed: u64,
    pub host: Option<Arc<dyn Host>>,
}

impl Scripts {
    /// A pool of `config.max_concurrent` (default twice the cores); `maxima` gives each
    /// tenant's (its tier's over `config`'s).
    pub fn new(config: &CodeConfig, maxima: MaximaOf) -> Scripts {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let size = config.max_concurrent.unwrap_or(2 * cores).max(1);
        Scripts {
            sandbox: Sandbox::new(size),
            maxima,
        }
    }

    /// Every tenant gets `config`'s maxima (no tiers).
    pub fn plain(config: &CodeConfig) -> Scripts {
        let max = config.maxima().over(&AppliedLimits::MAXIMA);
        Scripts::new(config, Arc::new(move |_| max))
    }

    /// The limits a script of `tenant` asking for `asked` runs with, and those it asked more
    /// of than the tenant may have.
    pub fn limits(&self, tenant: &str, asked: &CodeLimits) -> (AppliedLimits, Vec<&'static str>) {
        AppliedLimits::resolve(asked, &(self.maxima)(tenant))
    }

    /// Runs a script: its result, and its record (the limits applied, any capped, the time).
    pub async fn run(&self, s: Script<'_>) -> (Result<Value, NodeError>, Value) {
        let (limits, capped) = self.limits(s.tenant, &s.limits);
        let call = Call {
            source: s.source,
            args: s.args,
            state: s.state,
            limits: Limits {
                timeout_ms: limits.timeout_ms,
                memory_bytes: mib_to_bytes(limits.memory_mb),
                stack_bytes: usize::try_from(limits.stack_kb.saturating_mul(1024))
                    .unwrap_or(usize::MAX),
                max_output_bytes: usize::try_from(limits.max_output_bytes).unwrap_or(usize::MAX),
            },
            now_ms: s.now_ms,
            seed: s.seed,
            host: s.host,
        };
        let mut record = json!({"limits": limits});
        if !capped.is_empty() {
            record["capped"] = json!(capped);
            record["note"] = json!(format!(
                "asked for more than the tenant may have ({}); ran with the tenant's maximum",
                capped.join(", ")
            ));
        }
        match self.sandbox.run(call).await {
            Ok(out) => {
                record["elapsed_us"] = json!(out.elapsed_us);
                record["queued_us"] = json!(out.queued_us);
                record["cpu_us"] = json!(out.script_cpu_us);
                if out.host_calls > 0 {
                    record["tool_calls"] = json!(out.host_calls);
                }
                (Ok(out.value), record)
            }
            Err(e) => (Err(node_error(s.what, &e, s.origin)), record),
        }
    }
}

fn mib_to_bytes(mb: u64) -> usize {
    usize::try_from(mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
}

/// A sandbox error as a node error: its code, and a message that says where (the workflow
/// file's line and column when the script's place in it is known) and what to do.
pub fn node_error(what: &str, e: &CodeError, origin: Option<SourceOrigin>) -> NodeError {
    let place = |line: Option<u32>, column: Option<u32>| match (line, column, origin) {
        (Some(l), Some(c), Some(o)) => {
            let (fl, fc) = o.locate(l, c);
            format!(" at line {fl}, column {fc} of the workflow file (line {l} of the script)")
        }
        (Some(l), Some(c), None) => format!(" at line {l}, column {c} of the script"),
        (Some(l), None, _) => format!(" at line {l} of the script"),
        _ => String::new(),
    };
    let (code, message) = match e {
        CodeError::Thrown {
            message,
            line,
            column,
        } => (
            codes::CODE_ERROR,
            format!("{what} threw{}: {message}", place(*line, *column)),
        ),
        CodeError::Syntax(s) => (
            codes::INVALID_CODE,
            format!(
                "{what}: the script does not parse{}: {}",
                place(Some(s.line), Some(s.column)),
                s.message
            ),
        ),
        CodeError::Timeout { .. } => (codes::TIMEOUT, format!("{what}: {e}")),
        CodeError::MemoryLimit { .. } => (codes::MEMORY_LIMIT, format!("{what}: {e}")),
        CodeError::OutputInvalid { .. } => (codes::OUTPUT_INVALID, format!("{what}: {e}")),
        CodeError::Host { code, message } => (
            codes::CODE_ERROR,
            format!("{what}: a tool call the script did not catch failed ({code}): {message}"),
        ),
        CodeError::Internal { .. } => (codes::NOT_CONFIGURED, format!("{what}: {e}")),
    };
    let mut err = NodeError::new(code, message);
    if let CodeError::Thrown {
        line: Some(l),
        column,
        ..
    } = e
    {
        err.detail = Some(json!({"script_line": l, "script_column": column}));
    }
    err
}

#[async_trait]
impl CodeRunner for Scripts {
    async fn run(&self, r: CodeRequest) -> CodeRun {
        let seed = r.seed();
        let what = format!("code node `{}`", r.node_id);
        let now_ms = r.now_ms;
        let (result, mut record) = Scripts::run(
            self,
            Script {
                tenant: &r.tool.tenant,
                what: &what,
                source: r.source,
                origin: r.origin,
                args: r.args,
                state: r.state,
                limits: r.limits,
                now_ms: r.now_ms,
                seed,
                host: None,
            },
        )
        .await;
        // What the script's clock said: the step's first start, the same on every re-run.
        record["now_ms"] = json!(now_ms);
        CodeRun {
            result,
            detail: Some(record),
        }
    }
}

/// The validator's syntax check of `code` nodes: the sandbox's own parser.
pub struct SandboxCheck;

impl CodeCheck for SandboxCheck {
    fn check(&self, source: &str) -> Result<(), CodeProblem> {
        hilo_sandbox::check(source).map_err(|e| CodeProblem {
            message: e.message,
            line: e.line,
            column: e.column,
        })
    }
}

/// `run_javascript`: `{source, args?, limits?}` → the default export's result, run in the
/// sandbox with the calling tenant's maxima. `Math.random()` is seeded by the call's
/// idempotency key; `Date.now()` is the time of the call.
pub struct RunJavascript {
    spec: ToolSpec,
    scripts: Option<Scripts>,
}

impl RunJavascript {
    pub fn new(scripts: Option<Scripts>) -> RunJavascript {
        RunJavascript {
            spec: ToolSpec::new(
                "run_javascript",
                ToolClass::Safe,
                "Runs a JavaScript ES module in a sandbox (no network, files or timers) and returns the JSON result of its default export, called with `args`: for arithmetic, dates, parsing and scoring",
            )
            .with_input(json!({
                "type": "object",
                "required": ["source"],
                "additionalProperties": false,
                "properties": {
                    "source": {"type": "string", "minLength": 1, "maxLength": hilo_core::decode::MAX_CODE_BYTES,
                               "description": "An ES module: `export default function (args) { ... return result; }`"},
                    "args": {"description": "The function's argument (any JSON)"},
                    "limits": {"type": "object", "additionalProperties": false, "properties": {
                        "timeout_ms": {"type": "integer", "minimum": 1},
                        "memory_mb": {"type": "integer", "minimum": 1},
                        "stack_kb": {"type": "integer", "minimum": 16},
                        "max_output_bytes": {"type": "integer", "minimum": 1}
                    }}
                }
            })),
            scripts,
        }
    }
}

#[async_trait]
impl Tool for RunJavascript {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, ctx: &ToolContext, input: Value) -> Result<Value, NodeError> {
        let Some(scripts) = &self.scripts else {
            return Err(NodeError::new(
                codes::NOT_CONFIGURED,
                "run_javascript has no sandbox here: it runs in hilo's own processes (`hilo run`, `hilo serve`, workers)",
            ));
        };
        let source = input
            .get("source")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let limits = input.get("limits").map_or(CodeLimits::default(), |l| {
            let n = |k: &str| l.get(k).and_then(Value::as_u64);
            CodeLimits {
                timeout_ms: n("timeout_ms"),
                memory_mb: n("memory_mb"),
                stack_kb: n("stack_kb"),
                max_output_bytes: n("max_output_bytes"),
            }
        });
        let (result, _) = scripts
            .run(Script {
                tenant: &ctx.tenant,
                what: "run_javascript",
                source: Arc::from(source),
                origin: None,
                args: input.get("args").cloned().unwrap_or(Value::Null),
                state: Value::Null,
                limits,
                now_ms: hilo_core::base::now_ms(),
                seed: hilo_core::code::seed_of(&ctx.idempotency_key),
                host: None,
            })
            .await;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_config_reads_durations_and_refuses_unknown_keys() {
        let c: CodeConfig = serde_json::from_value(
            json!({"max_concurrent": 8, "timeout_ms": "5s", "memory_mb": 64}),
        )
        .unwrap();
        assert_eq!(c.max_concurrent, Some(8));
        assert_eq!(c.maxima().timeout_ms, Some(5_000));
        assert_eq!(c.maxima().memory_mb, Some(64));
        assert!(serde_json::from_value::<CodeConfig>(json!({"timeout": 5})).is_err());
        let m: CodeMaxima = serde_json::from_value(json!({"timeout_ms": 1000})).unwrap();
        assert_eq!(m.over(&AppliedLimits::MAXIMA).timeout_ms, 1000);
        assert_eq!(m.over(&AppliedLimits::MAXIMA).memory_mb, 256);
    }

    #[test]
    fn a_node_asking_more_than_its_tenants_maximum_gets_the_maximum() {
        let max = CodeMaxima {
            timeout_ms: Some(300),
            ..CodeMaxima::default()
        }
        .over(&AppliedLimits::MAXIMA);
        let (l, capped) = AppliedLimits::resolve(
            &CodeLimits {
                timeout_ms: Some(5_000),
                memory_mb: Some(64),
                ..CodeLimits::default()
            },
            &max,
        );
        assert_eq!((l.timeout_ms, l.memory_mb, l.stack_kb), (300, 64, 256));
        assert_eq!(capped, ["timeout_ms"]);
        // A default above the maximum is lowered quietly: the node asked for nothing.
        let tiny = AppliedLimits {
            timeout_ms: 10,
            ..AppliedLimits::MAXIMA
        };
        let (l, capped) = AppliedLimits::resolve(&CodeLimits::default(), &tiny);
        assert_eq!(l.timeout_ms, 10);
        assert!(capped.is_empty());
    }

    #[test]
    fn errors_name_the_place_in_the_file() {
        let origin = SourceOrigin {
            line: 10,
            indent: 6,
            block: true,
        };
        let e = CodeError::Thrown {
            message: "Error: no".into(),
            line: Some(3),
            column: Some(5),
        };
        let n = node_error("code node `s`", &e, Some(origin));
        assert_eq!(n.code, codes::CODE_ERROR);
        assert!(
            n.message
                .contains("line 12, column 11 of the workflow file"),
            "{}",
            n.message
        );
        assert!(!n.retryable);
        let t = node_error("code node `s`", &CodeError::Timeout { ms: 5 }, None);
        assert_eq!((t.code.as_str(), t.retryable), (codes::TIMEOUT, false));
    }
}
