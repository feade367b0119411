//! `tools.call`: only with a host; results, host errors with their code (caught or not), the
//! deadline while the host works (its future is dropped), args that are not JSON, and what
//! the script can see of `tools`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use hilo_sandbox::{Call, CodeError, Host, HostError, Sandbox};
use serde_json::{Value, json};

use crate::{call, fails, ok, still_works, thrown, value};

/// `echo` answers its args, `fail` a rate-limit error, `slow` never (and records when its
/// future is dropped).
#[derive(Default)]
struct Fake {
    dropped: Arc<AtomicBool>,
}

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Host for Fake {
    fn call(&self, name: String, args: Value) -> BoxFuture<'static, Result<Value, HostError>> {
        let dropped = self.dropped.clone();
        Box::pin(async move {
            match name.as_str() {
                "echo" => Ok(json!({"tool": name, "args": args})),
                "fail" => Err(HostError::new(
                    "RATE_LIMITED",
                    "too many calls, retry in 3 s",
                )),
                "slow" => {
                    let _guard = SetOnDrop(dropped);
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(Value::Null)
                }
                "panic" => panic!("the host failed"),
                _ => Err(HostError::new("NOT_FOUND", format!("no tool {name}"))),
            }
        })
    }
}

/// A call of `source` with `host`. Host calls cross threads (the worker, tokio and back), so
/// on a loaded machine a few of them can take longer than the 300 ms the other tests allow:
/// these get 10 s, except where the deadline is what is tested.
fn with_host(source: &str, host: &Arc<Fake>) -> Call {
    let mut c = call(source);
    c.host = Some(host.clone());
    c.limits.timeout_ms = 10_000;
    c
}

#[tokio::test]
async fn without_a_host_there_is_no_tools() {
    let sandbox = Sandbox::new(1);
    assert_eq!(
        value(
            &sandbox,
            "export default () => [typeof tools, 'tools' in globalThis]"
        )
        .await,
        json!(["undefined", false])
    );
    let e = fails(
        &sandbox,
        call("export default () => tools.call('echo', {})"),
        "CODE_ERROR",
    )
    .await;
    assert_eq!(thrown(&e), "ReferenceError: tools is not defined");
}

#[tokio::test]
async fn tool_results_and_errors() {
    let sandbox = Sandbox::new(1);
    let host = Arc::new(Fake::default());
    let outcome = sandbox
        .run(with_host(
            "export default async (args) => {
               const pending = tools.call('echo', { n: args.n, list: [1, 'two'] });
               const isPromise = pending instanceof Promise;
               const r = await pending;
               let caught;
               try { await tools.call('fail', null) } catch (e) { caught = [e instanceof Error, e.code, e.message] }
               const none = await tools.call('echo');
               return { isPromise, r, caught, none };
             }",
            &host,
        ))
        .await
        .unwrap();
    assert_eq!(
        outcome.value,
        json!({
            "isPromise": true,
            "r": {"tool": "echo", "args": {"n": 2, "list": [1, "two"]}},
            "caught": [true, "RATE_LIMITED", "too many calls, retry in 3 s"],
            "none": {"tool": "echo", "args": null},
        })
    );
    assert_eq!(outcome.host_calls, 3);
    // Uncaught, the host's error is the call's, with the host's code.
    let e = fails(
        &sandbox,
        with_host(
            "export default async () => { await tools.call('fail', {}) }",
            &host,
        ),
        "HOST_ERROR",
    )
    .await;
    assert_eq!(
        e,
        CodeError::Host {
            code: "RATE_LIMITED".into(),
            message: "too many calls, retry in 3 s".into()
        }
    );
    assert_eq!(e.host_code(), Some("RATE_LIMITED"));
    // An error that only looks like a host error is the script's.
    let e = fails(
        &sandbox,
        with_host(
            "export default () => { const e = new Error('forged'); e.code = 'RATE_LIMITED'; throw e }",
            &host,
        ),
        "CODE_ERROR",
    )
    .await;
    assert_eq!(thrown(&e), "Error: forged");
    // A host that panics is a rejected call, not a crash.
    let v = ok(
        &sandbox,
        with_host(
            "export default async () => { try { await tools.call('panic', {}) } catch (e) { return e.code } }",
            &host,
        ),
    )
    .await;
    assert_eq!(v, json!("INTERNAL"));
}

#[tokio::test]
async fn the_deadline_bounds_a_waiting_tool_call() {
    let sandbox = Sandbox::new(1);
    let host = Arc::new(Fake::default());
    // Even a script that catches the failure ends with TIMEOUT.
    let mut waiting = with_host(
        "export default async () => { try { await tools.call('slow', {}) } catch (e) { return 'caught ' + e.code } }",
        &host,
    );
    waiting.limits.timeout_ms = 300;
    let e = fails(&sandbox, waiting, "TIMEOUT").await;
    assert_eq!(e, CodeError::Timeout { ms: 300 });
    // The host's future was dropped, so its work stopped.
    for _ in 0..100 {
        if host.dropped.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(host.dropped.load(Ordering::SeqCst));
}

#[tokio::test]
async fn args_cross_as_json_only() {
    let sandbox = Sandbox::new(1);
    let host = Arc::new(Fake::default());
    let v = ok(
        &sandbox,
        with_host(
            "export default async () => {
               const errors = [];
               for (const bad of [1n, (() => { const a = {}; a.a = a; return a })()]) {
                 try { await tools.call('echo', bad) } catch (e) { errors.push(e.name) }
               }
               const proxy = new Proxy({}, { ownKeys: () => ['k'], getOwnPropertyDescriptor: () => ({ value: 1, enumerable: true, configurable: true }), get: () => 'v' });
               const viaProxy = await tools.call('echo', proxy);
               const dropped = await tools.call('echo', { f() {}, u: undefined, d: new Date(0) });
               const named = await tools.call({ toString: () => 'echo' }, 1);
               return { errors, viaProxy: viaProxy.args, dropped: dropped.args, named: named.tool };
             }",
            &host,
        ),
    )
    .await;
    assert_eq!(
        v,
        json!({
            "errors": ["TypeError", "TypeError"],
            "viaProxy": {"k": "v"},
            "dropped": {"d": "1970-01-01T00:00:00.000Z"},
            "named": "echo",
        })
    );
}

#[tokio::test]
async fn tools_is_frozen_and_hides_the_host() {
    let sandbox = Sandbox::new(1);
    let host = Arc::new(Fake::default());
    let v = ok(
        &sandbox,
        with_host(
            "export default () => [
               Object.isFrozen(tools),
               Object.getOwnPropertyNames(tools),
               Object.getOwnPropertyDescriptor(globalThis, 'tools').writable,
               typeof tools.call,
               tools.call.constructor === (async () => {}).constructor,
             ]",
            &host,
        ),
    )
    .await;
    assert_eq!(v, json!([true, ["call"], false, "function", true]));
    fails(
        &sandbox,
        with_host("export default () => { tools.call = () => 1 }", &host),
        "CODE_ERROR",
    )
    .await;
    still_works(&sandbox).await;
}

#[test]
fn a_host_needs_a_tokio_runtime() {
    let sandbox = Sandbox::new(1);
    let host = Arc::new(Fake::default());
    // Polled once outside any runtime, the call is refused at once.
    let result = sandbox
        .run(with_host("export default () => 1", &host))
        .now_or_never();
    match result {
        Some(Err(e)) => assert_eq!(e.code(), "INTERNAL"),
        other => panic!("{other:?}"),
    }
}
