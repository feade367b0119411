//! Test doubles, behind the `test-util` feature (never in the shipped binary): tools whose
//! behaviour a test scripts through their input, a ledger file that records side effects
//! outside the process, and crash points that SIGKILL the process at the N-th point reached.
//!
//! - `test.echo`: returns its input.
//! - `test.effect`: a side effect recorded in the ledger (`HILO_TEST_LEDGER`). Idempotent by
//!   key, as a well-behaved remote service is: a second call with the same idempotency key
//!   does not repeat the effect, even from another process at the same moment (the effect is
//!   a marker file created exclusively in the directory `<ledger>.effects`, which
//!   [`read_ledger`] reads back as `effect` entries). Every call is recorded too, as a line
//!   `call KEY ATTEMPT PID`, so a test can tell a re-run from a first run and which process
//!   made each call; with a ledger the output carries the `pid` as well (so the audit trail
//!   shows it). `sleep_ms` in the input keeps the call in flight that long after its effect.
//! - `test.flaky`: fails with a retryable `UPSTREAM_ERROR` for its first `fail_times` attempts.
//! - `test.fail`: fails with `code` (retryable when `retryable` is true).
//! - `test.sleep`: sleeps `ms` milliseconds.
//! - `test.undo`: a compensation; records `undo` in the ledger; fails when `fail` is true.
//! - `test.abort`: takes its process down with `std::process::abort()` (a crash that no
//!   error handling survives: what a stack overflow does), after recording `abort KEY PID`
//!   in the ledger; with `unless_file` in the input, returns normally once that file exists.
//!
//! Crash points: with `HILO_CRASH_AT=N` the process kills itself with SIGKILL at the N-th
//! point reached (before and after each commit, before and after a side effect). With
//! `HILO_CRASH_TRACE=FILE` every point reached is appended to FILE.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::OnceLock;

use hilo_core::ToolClass;
use hilo_core::exec::{NodeError, codes};
use hilo_core::tool::{Tool, ToolContext, ToolMap, ToolSource, ToolSpec};
use serde_json::{Value, json};

static POINTS: AtomicU64 = AtomicU64::new(0);

/// Marks a place where a crash test may kill the process.
pub fn crash_point(name: &str) {
    let n = POINTS.fetch_add(1, Ordering::SeqCst) + 1;
    if let Ok(path) = std::env::var("HILO_CRASH_TRACE") {
        append(&path, &format!("{n} {name}\n"));
    }
    let at = std::env::var("HILO_CRASH_AT")
        .ok()
        .and_then(|s| s.parse::<u64>().ok());
    if at == Some(n) {
        let pid = std::process::id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid])
            .status();
        // SIGKILL is not instantaneous for the sender; never continue past this point.
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

fn append(path: &str, line: &str) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

fn ledger() -> Option<String> {
    std::env::var("HILO_TEST_LEDGER").ok()
}

/// The lines of the ledger, as (kind, key), then one `effect` entry per effect made.
pub fn read_ledger(path: &std::path::Path) -> Vec<(String, String)> {
    let mut entries: Vec<(String, String)> = read_ledger_lines(path)
        .into_iter()
        .filter_map(|l| {
            let mut p = l.splitn(3, ' ');
            Some((p.next()?.to_string(), p.next()?.to_string()))
        })
        .collect();
    entries.extend(
        read_effects(path)
            .into_iter()
            .map(|k| ("effect".to_string(), k)),
    );
    entries
}

/// The ledger's lines as written (`call KEY ATTEMPT PID`, `undo KEY INPUT`), in order.
pub fn read_ledger_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// The idempotency keys whose effect was made, sorted.
pub fn read_effects(path: &std::path::Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(effects_dir(path)) else {
        return Vec::new();
    };
    let mut keys: Vec<String> = dir
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            unhex(&name)
        })
        .collect();
    keys.sort();
    keys
}

/// Where the effects of the ledger at `path` are: one file per key (named by the key in hex).
fn effects_dir(path: &std::path::Path) -> std::path::PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".effects");
    std::path::PathBuf::from(p)
}

fn unhex(s: &str) -> Option<String> {
    let bytes = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// Makes the effect of `key` unless it was made already (atomic across processes).
fn make_effect(ledger: &str, key: &str) {
    let dir = effects_dir(std::path::Path::new(ledger));
    let _ = std::fs::create_dir_all(&dir);
    let name: String = key.bytes().map(|b| format!("{b:02x}")).collect();
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dir.join(name));
}

/// The spec of a test tool (test tools take any object as input).
fn spec_of(name: &str) -> &'static ToolSpec {
    static SPECS: OnceLock<HashMap<&'static str, ToolSpec>> = OnceLock::new();
    let specs = SPECS.get_or_init(|| {
        TEST_TOOL_NAMES
            .iter()
            .map(|n| {
                let class = if matches!(*n, "test.echo" | "test.sleep") {
                    ToolClass::Safe
                } else {
                    ToolClass::Dangerous
                };
                (
                    *n,
                    ToolSpec::new(*n, class, "hilo test tool").with_source(ToolSource::Extension),
                )
            })
            .collect()
    });
    static FALLBACK: OnceLock<ToolSpec> = OnceLock::new();
    specs.get(name).unwrap_or_else(|| {
        FALLBACK
            .get_or_init(|| ToolSpec::new("test.unknown", ToolClass::Dangerous, "hilo test tool"))
    })
}

struct Echo;
#[async_trait]
impl Tool for Echo {
    fn spec(&self) -> &ToolSpec {
        spec_of("test.echo")
    }
    async fn call(&self, _: &ToolContext, input: Value) -> Result<Value, NodeError> {
        Ok(input)
    }
}

struct Effect;
#[async_trait]
impl Tool for Effect {
    fn spec(&self) -> &ToolSpec {
        spec_of("test.effect")
    }
    async fn call(&self, ctx: &ToolContext, input: Value) -> Result<Value, NodeError> {
        let Some(path) = ledger() else {
            return Ok(json!({"key": ctx.idempotency_key, "input": input}));
        };
        let pid = std::process::id();
        append(
            &path,
            &format!("call {} {} {pid}\n", ctx.idempotency_key, ctx.attempt),
        );
        crash_point("tool_before");
        make_effect(&path, &ctx.idempotency_key);
        if let Some(ms) = input.get("sleep_ms").and_then(Value::as_u64) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        crash_point("tool_after");
        Ok(json!({"key": ctx.idempotency_key, "input": input, "pid": pid}))
    }
}

struct Flaky;
#[async_trait]
impl Tool for Flaky {
    fn spec(&self) -> &ToolSpec {
        spec_of("test.flaky")
    }
    async fn call(&self, ctx: &ToolContext, input: Value) -> Result<Value, NodeError> {
        let fail_times = input.get("fail_times").and_then(Value::as_u64).unwrap_or(1);
        if let Some(path) = ledger() {
            append(
                &path,
                &format!("call {} {}\n", ctx.idempotency_key, ctx.attempt),
            );
        }
        if u64::from(ctx.attempt) <= fail_times {
            return Err(NodeError::retryable(
                codes::UPSTREAM_ERROR,
                format!("flaky failure on attempt {}", ctx.attempt),
            ));
        }
        Ok(json!({"attempt": ctx.attempt, "input": input}))
    }
}

struct Fail;
#[async_trait]
impl Tool for Fail {
    fn spec(&self) -> &ToolSpec {
        spec_of("test.fail")
    }
    async fn call(&self, _: &ToolContext, input: Value) -> Result<Value, NodeError> {
        let code = input
            .get("code")
            .and_then(Value::as_str)
            .unwrap_or("UPSTREAM_REJECTED");
        let message = input
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("scripted failure");
        if input.get("retryable").and_then(Value::as_bool) == Some(true) {
            Err(NodeError::retryable(code, message))
        } else {
            Err(NodeError::new(code, message))
        }
    }
}

struct Sleep;
#[async_trait]
impl Tool for Sleep {
    fn spec(&self) -> &ToolSpec {
        spec_of("test.sleep")
    }
    async fn call(&self, _: &ToolContext, input: Value) -> Result<Value, NodeError> {
        let ms = input.get("ms").and_then(Value::as_u64).unwrap_or(10);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(json!({"slept_ms": ms}))
    }
}

struct Undo;
#[async_trait]
impl Tool for Undo {
    fn spec(&self) -> &ToolSpec {
        spec_of("test.undo")
    }
    async fn call(&self, ctx: &ToolContext, input: Value) -> Result<Value, NodeError> {
        if let Some(path) = ledger() {
            append(&path, &format!("undo {} {}\n", ctx.idempotency_key, input));
        }
        if input.get("fail").and_then(Value::as_bool) == Some(true) {
            return Err(NodeError::new(
                "UPSTREAM_REJECTED",
                "scripted compensation failure",
            ));
        }
        Ok(json!({"undone": input}))
    }
}

struct Abort;
#[async_trait]
impl Tool for Abort {
    fn spec(&self) -> &ToolSpec {
        spec_of("test.abort")
    }
    async fn call(&self, ctx: &ToolContext, input: Value) -> Result<Value, NodeError> {
        if let Some(f) = input.get("unless_file").and_then(Value::as_str)
            && std::path::Path::new(f).exists()
        {
            return Ok(json!({"aborted": false}));
        }
        if let Some(path) = ledger() {
            append(
                &path,
                &format!("abort {} {}\n", ctx.idempotency_key, std::process::id()),
            );
        }
        std::process::abort()
    }
}

/// Every test tool, by name.
pub fn test_tools() -> ToolMap {
    let mut m = ToolMap::new();
    let tools: [Arc<dyn Tool>; 7] = [
        Arc::new(Echo),
        Arc::new(Effect),
        Arc::new(Flaky),
        Arc::new(Fail),
        Arc::new(Sleep),
        Arc::new(Undo),
        Arc::new(Abort),
    ];
    for t in tools {
        m.insert(t);
    }
    m
}

/// The names of the test tools, for the validation catalog.
pub const TEST_TOOL_NAMES: [&str; 7] = [
    "test.echo",
    "test.effect",
    "test.flaky",
    "test.fail",
    "test.sleep",
    "test.undo",
    "test.abort",
];
