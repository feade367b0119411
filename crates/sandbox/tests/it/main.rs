//! The sandbox's integration tests: real QuickJS in a real pool. Every failing call asserts its
//! code and that the same `Sandbox` still runs the next call (the process is unharmed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod behaviour;
mod escapes;
mod host;
mod limits;

use hilo_sandbox::{Call, CodeError, Outcome, Sandbox};
use serde_json::{Value, json};

/// A call of `source` with small args and state, a fixed clock and seed, and a short timeout
/// (the limit tests wait for it).
pub fn call(source: &str) -> Call {
    let mut call = Call::new(source);
    call.args = json!({"n": 2, "name": "ada"});
    call.state = json!({"lookup": {"rows": [{"total": 10}]}});
    call.now_ms = 1_700_000_000_000;
    call.seed = 42;
    call.limits.timeout_ms = 300;
    call
}

/// Runs `call` and expects a result.
pub async fn ok(sandbox: &Sandbox, call: Call) -> Value {
    match sandbox.run(call).await {
        Ok(Outcome { value, .. }) => value,
        Err(e) => panic!("expected a result, got {} {e:?}", e.code()),
    }
}

/// Runs `source` and expects a result.
pub async fn value(sandbox: &Sandbox, source: &str) -> Value {
    ok(sandbox, call(source)).await
}

/// Runs `call`, expects the error `code`, then checks the sandbox still runs a call.
pub async fn fails(sandbox: &Sandbox, call: Call, code: &str) -> CodeError {
    let error = match sandbox.run(call).await {
        Ok(outcome) => panic!("expected {code}, got the result {}", outcome.value),
        Err(e) => e,
    };
    assert_eq!(error.code(), code, "{error:?}");
    still_works(sandbox).await;
    error
}

/// Runs `source`, expects the error `code`, then checks the sandbox still runs a call.
pub async fn fails_with(sandbox: &Sandbox, source: &str, code: &str) -> CodeError {
    fails(sandbox, call(source), code).await
}

pub async fn still_works(sandbox: &Sandbox) {
    let v = value(
        sandbox,
        "export default (args, state) => ({sum: args.n + state.lookup.rows[0].total, ok: ({}).x === undefined})",
    )
    .await;
    assert_eq!(v, json!({"sum": 12, "ok": true}));
}

/// The message of a `CODE_ERROR`.
pub fn thrown(error: &CodeError) -> &str {
    match error {
        CodeError::Thrown { message, .. } => message,
        other => panic!("not a thrown error: {other:?}"),
    }
}
