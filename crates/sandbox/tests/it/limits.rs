//! Limits: time (loops everywhere a loop can hide), stack, heap (allocation bombs), output
//! (size, shape), the pool's bound under a thousand calls, cancellation and limits out of range.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, join_all};
use hilo_sandbox::{Call, CodeError, Host, HostError, Sandbox};
use serde_json::{Value, json};

use crate::{call, fails, fails_with, ok, still_works, thrown, value};

#[tokio::test]
async fn infinite_loops_time_out() {
    let sandbox = Sandbox::new(1);
    for source in [
        "export default () => { for (;;) {} }",
        "export default () => { while (true) {} }",
        "export default () => { const o = { get x() { for (;;) {} } }; return o.x }",
        // In a getter the sandbox itself calls, while serialising the result.
        "export default () => ({ get x() { for (;;) {} } })",
        "export default () => ({ toJSON() { for (;;) {} } })",
        "export default () => { try { for (;;) {} } finally { for (;;) {} } }",
        "export default () => { try { throw 1 } catch { for (;;) {} } }",
        "export default () => { Promise.resolve().then(() => { for (;;) {} }); return 1 }",
        "export default async () => { await null; for (;;) {} }",
        "export default () => { queueMicrotask(() => { for (;;) {} }); return 1 }",
        "export default () => [1, 2].sort(() => { for (;;) {} })",
        "export default () => 'aaaa'.replace(/a/g, () => { for (;;) {} })",
        "export default () => /(a+)+$/.test('a'.repeat(40) + 'b')",
        "export default () => /(x+x+)+y/.exec('x'.repeat(5000))",
        "for (;;) {}\nexport default () => 1",
        "await new Promise(() => { for (;;) {} });\nexport default () => 1",
    ] {
        let started = Instant::now();
        let e = fails_with(&sandbox, source, "TIMEOUT").await;
        assert_eq!(e, CodeError::Timeout { ms: 300 }, "{source}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{source}: {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn string_searches_of_any_size_keep_the_deadline() {
    let sandbox = Sandbox::new(1);
    // n·m steps of C in QuickJS (hours here) unless the prelude takes over the large ones.
    for search in [
        "s.indexOf(t)",
        "s.includes(t)",
        "s.lastIndexOf(t)",
        "s.split(t)",
        "s.replace(t, 'x')",
        "s.replaceAll(t, () => 'x')",
        "String.prototype.indexOf.call({ toString: () => s }, { toString: () => t })",
        // A script's `concat` must not decide what the guard measures (a template literal calls
        // it in QuickJS): this one made every search look empty.
        "(String.prototype.concat = function (x) { return { length: 0, toString: () => x } }, s.indexOf(t))",
    ] {
        let source = format!(
            "export default () => {{ const s = 'a'.repeat(2e6), t = 'a'.repeat(1e6) + 'b'; return {search} }}"
        );
        let started = Instant::now();
        let e = fails_with(&sandbox, &source, "TIMEOUT").await;
        assert_eq!(e, CodeError::Timeout { ms: 300 }, "{search}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{search}: {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn array_methods_over_huge_lengths_keep_the_deadline() {
    let sandbox = Sandbox::new(1);
    // One uninterrupted C loop per index in QuickJS (2^53 of them: forever): refused.
    for expression in [
        "Array.prototype.join.call({ length: 2 ** 53 - 1 })",
        "new Array(2 ** 32 - 1).join('')",
        "String(new Array(2 ** 32 - 1))",
        "new Array(2 ** 32 - 1).toLocaleString()",
        "new Array(2 ** 32 - 1).reverse()",
        "new Array(2 ** 32 - 1).sort()",
        "Array.prototype.shift.call({ length: 2 ** 53 - 1 })",
        "Array.prototype.unshift.call({ length: 2 ** 53 - 2 }, 1)",
        "Array.prototype.splice.call({ length: 2 ** 53 - 1 }, 0, 1)",
        "Array.prototype.copyWithin.call({ length: 2 ** 53 - 1 }, 0, 1)",
        "[].concat({ length: 2 ** 53 - 1, [Symbol.isConcatSpreadable]: true })",
        "[].concat(...new Array(5).fill(new Array(1e6)))",
    ] {
        let started = Instant::now();
        let e = fails_with(
            &sandbox,
            &format!("export default () => {{ {expression}; return 1 }}"),
            "CODE_ERROR",
        )
        .await;
        assert!(
            thrown(&e).starts_with("RangeError: Array.prototype."),
            "{expression}: {e:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{expression}");
    }
    // `flat` and `flatMap` are JavaScript, so the deadline ends them.
    for expression in [
        "[new Array(2 ** 32 - 1)].flat()",
        "Array.prototype.flat.call({ length: 2 ** 53 - 1 })",
        "[1].flatMap(() => new Array(2 ** 32 - 1))",
    ] {
        let started = Instant::now();
        fails_with(
            &sandbox,
            &format!("export default () => {{ {expression}; return 1 }}"),
            "TIMEOUT",
        )
        .await;
        assert!(started.elapsed() < Duration::from_secs(5), "{expression}");
    }
    // Up to the limit (2^21 for a heap of 32 MiB) they are the engine's own; one more is refused.
    let mut c = call(
        "export default () => { const a = []; a[2 ** 21 - 1] = 'x'; return [a.join('').length, a.reverse()[0], [].concat(a).length] }",
    );
    c.limits.timeout_ms = 10_000;
    assert_eq!(ok(&sandbox, c).await, json!([1, "x", 2_097_152]));
    let e = fails_with(
        &sandbox,
        "export default () => { const a = []; a[2 ** 21] = 'x'; return a.join('') }",
        "CODE_ERROR",
    )
    .await;
    assert!(thrown(&e).contains("over 2097153 indices"), "{e:?}");
}

#[tokio::test]
async fn deep_recursion_is_the_scripts_error() {
    let sandbox = Sandbox::new(1);
    for source in [
        "export default function f() { return f() + 1 }",
        "const o = { get a() { return this.a } };\nexport default () => o.a",
        "export default () => { const f = (n) => [f(n + 1)]; return f(0) }",
        "export default () => { class A { constructor() { new A() } }; new A() }",
        "export default () => { const p = new Proxy({}, { get: (t, k, r) => r[k] }); return p.x }",
        "export default () => JSON.parse('['.repeat(100000) + ']'.repeat(100000))",
        "export default () => new RegExp('('.repeat(100000) + ')'.repeat(100000))",
        "export default () => eval('('.repeat(100000) + '1' + ')'.repeat(100000))",
    ] {
        let e = fails_with(&sandbox, source, "CODE_ERROR").await;
        let message = thrown(&e);
        assert!(
            message.contains("stack") || message.contains("too many"),
            "{source}: {message}"
        );
    }
    let e = fails_with(
        &sandbox,
        "export default function f() { return f() }",
        "CODE_ERROR",
    )
    .await;
    assert!(thrown(&e).contains("limited to 256 KiB"), "{e:?}");
    // Catching it is allowed: it is a RangeError of the language.
    let v = value(
        &sandbox,
        "export default () => { const f = () => f(); try { f() } catch (e) { return e.name } }",
    )
    .await;
    assert_eq!(v, json!("RangeError"));
    // A result nested deeper than the engine's serialiser can go.
    let e = fails_with(
        &sandbox,
        "export default () => { let o = {}; for (let i = 0; i < 100000; i++) o = { o }; return o }",
        "OUTPUT_INVALID",
    )
    .await;
    assert!(
        e.to_string().contains("Maximum call stack size exceeded"),
        "{e}"
    );
}

#[tokio::test]
async fn allocation_bombs_hit_the_memory_limit() {
    let sandbox = Sandbox::new(1);
    for source in [
        "export default () => 'x'.repeat(1 << 30)",
        "export default () => 'x'.repeat(2 ** 28)",
        "export default () => { let s = 'x'; for (;;) s += s }",
        "export default () => { let s = 'ab'; for (;;) s = s + s + 'c' }",
        "export default () => new Array(1e9).fill(0)",
        "export default () => Array.from({ length: 1e8 }, () => 0)",
        "export default () => { const a = []; for (;;) a.push({ a }) }",
        "export default () => { const a = []; for (;;) a.push({}) }",
        "export default () => { let a = null; for (;;) a = { a } }",
        "export default () => { const a = []; for (;;) a.push('x' + Math.random()) }",
        "export default () => { const m = new Map(); for (let i = 0; ; i++) m.set(i, [i]) }",
        "export default () => new Uint8Array(2 ** 31)",
        "export default () => new Uint8Array(2 ** 30)",
        "export default () => new ArrayBuffer(64 * 1024 * 1024)",
        "export default () => JSON.stringify(new Array(1e7).fill('abcdefgh'))",
        "export default () => 'x'.repeat(1e6).split('')",
    ] {
        // Time enough to fill the heap: memory must be what stops them.
        let mut bomb = call(source);
        bomb.limits.timeout_ms = 10_000;
        let e = fails(&sandbox, bomb, "MEMORY_LIMIT").await;
        assert_eq!(
            e,
            CodeError::MemoryLimit {
                bytes: 32 * 1024 * 1024
            },
            "{source}"
        );
        assert!(e.to_string().contains("32 MiB"), "{e}");
    }
    // A smaller heap is enforced as well.
    let mut small = call("export default () => new Array(1e6).fill({})");
    small.limits.memory_bytes = 4 * 1024 * 1024;
    fails(&sandbox, small, "MEMORY_LIMIT").await;
}

#[tokio::test]
async fn a_built_in_that_fails_without_an_error() {
    let sandbox = Sandbox::new(1);
    // QuickJS's `normalize` gives up on this without making an error.
    let mut c = call("export default () => 'é'.repeat(3e6).normalize('NFD').length");
    c.limits.timeout_ms = 10_000;
    let e = fails(&sandbox, c, "CODE_ERROR").await;
    assert!(
        thrown(&e).starts_with("a built-in failed without an error"),
        "{e:?}"
    );
}

#[tokio::test]
async fn outputs_that_are_not_json_or_too_large() {
    let sandbox = Sandbox::new(1);
    for (source, reason) in [
        ("export default () => undefined", "returned undefined"),
        ("export default () => {}", "returned undefined"),
        ("export default () => () => 1", "returned a function"),
        ("export default () => Symbol('s')", "returned a symbol"),
        ("export default () => 1n", "BigInt"),
        ("export default () => ({ a: [1n] })", "BigInt"),
        (
            "export default () => { const a = {}; a.self = a; return a }",
            "circular",
        ),
        (
            "export default () => { const a = []; a.push([a]); return a }",
            "circular",
        ),
        (
            "export default () => { let o = 1; for (let i = 0; i < 128; i++) o = [o]; return o }",
            "nested deeper than 127",
        ),
        (
            "export default () => 'x'.repeat(2 * 1024 * 1024)",
            "larger than the 1048576 bytes",
        ),
        (
            "export default () => 'é'.repeat(600 * 1024)",
            "larger than the 1048576 bytes",
        ),
    ] {
        let e = fails_with(&sandbox, source, "OUTPUT_INVALID").await;
        assert!(e.to_string().contains(reason), "{source}: {e}");
    }
    // Exactly at the limit is fine (the JSON string's quotes count).
    let mut exact = call("export default () => 'x'.repeat(98)");
    exact.limits.max_output_bytes = 100;
    assert_eq!(ok(&sandbox, exact).await, json!("x".repeat(98)));
    let mut over = call("export default () => 'x'.repeat(99)");
    over.limits.max_output_bytes = 100;
    fails(&sandbox, over, "OUTPUT_INVALID").await;
    // 127 levels is the deepest accepted.
    let v = value(
        &sandbox,
        "export default () => { let o = 1; for (let i = 0; i < 127; i++) o = [o]; return o }",
    )
    .await;
    assert!(v.is_array());
    // What JSON.stringify drops or turns to null is dropped or null, as in any JS engine.
    let v = value(
        &sandbox,
        "export default () => ({ a: undefined, f() {}, n: NaN, i: -Infinity, d: new Date(0), l: [undefined, () => 1] })",
    )
    .await;
    assert_eq!(
        v,
        json!({"n": null, "i": null, "d": "1970-01-01T00:00:00.000Z", "l": [null, null]})
    );
}

/// Counts the calls in flight at once (each waits a little inside the host, so overlapping
/// scripts would show).
struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Host for Gauge {
    fn call(&self, _name: String, args: Value) -> BoxFuture<'static, Result<Value, HostError>> {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok(args)
        })
    }
}

struct Leaving(Arc<Gauge>);

impl Host for Leaving {
    fn call(&self, name: String, args: Value) -> BoxFuture<'static, Result<Value, HostError>> {
        if name == "leave" {
            self.0.now.fetch_sub(1, Ordering::SeqCst);
            return Box::pin(async move { Ok(args) });
        }
        self.0.call(name, args)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_calls_on_four_workers() {
    let sandbox = Sandbox::new(4);
    let gauge = Arc::new(Gauge {
        now: AtomicUsize::new(0),
        max: AtomicUsize::new(0),
    });
    let host: Arc<dyn Host> = Arc::new(Leaving(gauge.clone()));
    let started = Instant::now();
    let calls = (0..1000).map(|i| {
        let mut c = call(
            "export default async (args) => {
               const echoed = await tools.call('enter', args);
               await tools.call('leave', null);
               return echoed.i * 2;
             }",
        );
        c.args = json!({"i": i});
        c.host = Some(host.clone());
        c.limits.timeout_ms = 60_000;
        let sandbox = sandbox.clone();
        async move { sandbox.run(c).await }
    });
    let results = join_all(calls).await;
    for (i, result) in results.into_iter().enumerate() {
        let outcome = result.unwrap();
        assert_eq!(outcome.value, json!(i * 2));
        assert_eq!(outcome.host_calls, 2);
    }
    let max = gauge.max.load(Ordering::SeqCst);
    assert!((1..=4).contains(&max), "{max} calls ran at once");
    assert_eq!(gauge.now.load(Ordering::SeqCst), 0);
    assert!(started.elapsed() < Duration::from_secs(60));
    still_works(&sandbox).await;
}

#[tokio::test]
async fn a_caller_that_stops_waiting_stops_the_script() {
    let sandbox = Sandbox::new(1);
    let mut forever = call("export default () => { for (;;) {} }");
    forever.limits.timeout_ms = 600_000;
    let cancelled = tokio::time::timeout(Duration::from_millis(100), sandbox.run(forever)).await;
    assert!(cancelled.is_err());
    // The only worker is free again long before the ten minutes.
    let started = Instant::now();
    still_works(&sandbox).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn limits_out_of_range_are_clamped() {
    let sandbox = Sandbox::new(1);
    let mut zero = call("export default () => 1");
    zero.limits.timeout_ms = 0;
    fails(&sandbox, zero, "TIMEOUT").await;
    let mut no_stack = call("export default function f() { return f() }");
    no_stack.limits.stack_bytes = 0;
    let e = fails(&sandbox, no_stack, "CODE_ERROR").await;
    assert!(thrown(&e).contains("limited to 32 KiB"), "{e:?}");
    let mut huge_stack = call("export default (a) => a.n");
    huge_stack.limits.stack_bytes = usize::MAX;
    assert_eq!(ok(&sandbox, huge_stack).await, json!(2));
    let mut no_memory = call("export default (a) => a.n");
    no_memory.limits.memory_bytes = 0;
    assert_eq!(ok(&sandbox, no_memory).await, json!(2));
    let mut forever = call("export default (a) => a.n");
    forever.limits.timeout_ms = u64::MAX;
    assert_eq!(ok(&sandbox, forever).await, json!(2));
    let mut no_output = call("export default () => 1");
    no_output.limits.max_output_bytes = 0;
    fails(&sandbox, no_output, "OUTPUT_INVALID").await;
    assert_eq!(Sandbox::new(0).max_concurrent(), 1);
    still_works(&Sandbox::new(0)).await;
}

#[tokio::test]
async fn args_and_state_deeper_than_json_allows() {
    let sandbox = Sandbox::new(1);
    let mut deep = json!(1);
    for _ in 0..200 {
        deep = json!([deep]);
    }
    let mut c: Call = call("export default (a) => 1");
    c.state = deep;
    let e = fails(&sandbox, c, "CODE_ERROR").await;
    assert!(
        thrown(&e).contains("`state` is nested deeper than 127"),
        "{e:?}"
    );
}

#[tokio::test]
async fn what_a_call_left_on_its_globals_is_not_counted_against_the_next() {
    // One worker: both calls on the same QuickJS runtime. The second fits alone, so it must
    // fit after the first (whose realm is freed with everything it left).
    let big = |memory_mb: usize| {
        let mut c =
            call("export default () => { globalThis.kept = new Array(1e6).fill(1.5); return 1 }");
        c.limits.memory_bytes = memory_mb * 1024 * 1024;
        c
    };
    let sandbox = Sandbox::new(1);
    for _ in 0..3 {
        assert_eq!(ok(&sandbox, big(24)).await, json!(1));
    }
}
