//! Escape and abuse classes: every known way a script in a JS sandbox reaches for the host
//! (stack hooks, error objects, Proxy traps, promise hooks, constructor chains, templates,
//! destructuring, `with`, `import`, `require`, `eval`), a walk of everything reachable from
//! `globalThis`, and prototype pollution between two calls.

use hilo_sandbox::{Call, Sandbox, check};
use serde_json::{Value, json};

use crate::{call, fails, fails_with, ok, still_works, thrown, value};

/// Names a host (Node, Deno, Bun, browsers, quickjs-libc) puts on the global object.
const HOST_NAMES: &[&str] = &[
    "process",
    "require",
    "module",
    "exports",
    "global",
    "Buffer",
    "__dirname",
    "__filename",
    "std",
    "os",
    "print",
    "console",
    "scriptArgs",
    "load",
    "gc",
    "fetch",
    "XMLHttpRequest",
    "WebSocket",
    "setTimeout",
    "setInterval",
    "setImmediate",
    "clearTimeout",
    "clearInterval",
    "performance",
    "navigator",
    "WebAssembly",
    "Deno",
    "Bun",
    "importScripts",
    "postMessage",
    "Worker",
    "WeakRef",
    "FinalizationRegistry",
    "tools",
];

/// A script expression evaluating to an object that says which host names `g` has.
fn host_names_in(g: &str) -> String {
    format!(
        "{:?}.filter((n) => n in {g} || typeof {g}[n] !== 'undefined')",
        HOST_NAMES
    )
}

#[tokio::test]
async fn prepare_stack_trace_hooks_are_never_called() {
    let sandbox = Sandbox::new(1);
    // The hook would see CallSites, whose getFunction() hands out the functions on the stack.
    let v = value(
        &sandbox,
        "export default () => {
           let called = false;
           Error.prepareStackTrace = (e, sites) => { called = true; return sites.map((s) => s.getFunction()); };
           const stack = new Error('x').stack;
           let native;
           try { null.x } catch (e) { native = typeof e.stack }
           const target = {};
           Error.captureStackTrace(target);
           return [called, typeof stack, stack.includes('code.js'), native, typeof target.stack, typeof Error.prepareStackTrace];
         }",
    )
    .await;
    assert_eq!(
        v,
        json!([false, "string", true, "string", "string", "function"])
    );
    // A hook that would never return, or throw, changes nothing either.
    let e = fails_with(
        &sandbox,
        "export default () => {
           Error.prepareStackTrace = () => { for (;;) {} };
           Error.stackTraceLimit = { valueOf() { for (;;) {} } };
           null.x;
         }",
        "CODE_ERROR",
    )
    .await;
    assert!(thrown(&e).starts_with("TypeError: cannot read property 'x' of null"));
    // An error whose `stack` or `message` getter never returns is bounded by the deadline when
    // the sandbox reads it.
    fails_with(
        &sandbox,
        "export default () => { const e = new Error('x'); Object.defineProperty(e, 'stack', { get() { for (;;) {} } }); throw e; }",
        "TIMEOUT",
    )
    .await;
    let e = fails_with(
        &sandbox,
        "export default () => { throw { get message() { throw new Error('no') }, get stack() { return 42 } } }",
        "CODE_ERROR",
    )
    .await;
    assert_eq!(
        thrown(&e),
        "the script threw an object that is not an Error"
    );
}

#[tokio::test]
async fn exception_objects_lead_back_to_the_sandbox_only() {
    let sandbox = Sandbox::new(1);
    let v = value(
        &sandbox,
        &format!(
            "export default () => {{
               const seen = [];
               try {{ null.x }} catch (e) {{
                 const g = e.constructor.constructor('return this')();
                 seen.push(g === globalThis, {});
               }}
               try {{ JSON.parse('{{') }} catch (e) {{
                 seen.push(e.name, Object.getPrototypeOf(e.constructor) === Error);
               }}
               // Even the engine's out-of-memory error is an ordinary object of this realm.
               try {{ 'x'.repeat(2 ** 28) }} catch (e) {{
                 const g = e.constructor.constructor('return this')();
                 seen.push(e.name, g === globalThis);
               }}
               return seen;
             }}",
            host_names_in("g")
        ),
    )
    .await;
    assert_eq!(
        v,
        json!([true, [], "SyntaxError", true, "InternalError", true])
    );
    // The interrupt that ends a call past its deadline cannot be caught.
    fails_with(
        &sandbox,
        "export default () => { try { for (;;) {} } catch (e) { return e.constructor.name } }",
        "TIMEOUT",
    )
    .await;
}

#[tokio::test]
async fn proxy_traps_run_under_the_same_limits() {
    let sandbox = Sandbox::new(1);
    // A Proxy result is serialised through its traps.
    let v = value(
        &sandbox,
        "export default () => new Proxy({}, {
           ownKeys: () => ['a', 'b'],
           getOwnPropertyDescriptor: () => ({ value: 0, enumerable: true, configurable: true }),
           get: (t, k) => k === 'toJSON' ? undefined : k + '!',
         })",
    )
    .await;
    assert_eq!(v, json!({"a": "a!", "b": "b!"}));
    // A trap that never returns, or throws, while the result is serialised.
    fails_with(
        &sandbox,
        "export default () => new Proxy({}, { ownKeys() { for (;;) {} } })",
        "TIMEOUT",
    )
    .await;
    let e = fails_with(
        &sandbox,
        "export default () => new Proxy({}, { ownKeys() { throw new Error('trap') } })",
        "OUTPUT_INVALID",
    )
    .await;
    assert!(e.to_string().contains("Error: trap"), "{e}");
    // A Proxy thrown as the error, read by the sandbox through its traps.
    let e = fails_with(
        &sandbox,
        "export default () => { throw new Proxy(new Error('inner'), { get: (t, k) => k === 'message' ? 'from the trap' : Reflect.get(t, k) }) }",
        "CODE_ERROR",
    )
    .await;
    assert!(thrown(&e).contains("from the trap"), "{e:?}");
    fails_with(
        &sandbox,
        "export default () => { throw new Proxy({}, { get() { for (;;) {} } }) }",
        "TIMEOUT",
    )
    .await;
    let e = fails_with(
        &sandbox,
        "export default () => { const { proxy, revoke } = Proxy.revocable({}, {}); revoke(); throw proxy; }",
        "CODE_ERROR",
    )
    .await;
    assert_eq!(
        thrown(&e),
        "the script threw an object that is not an Error"
    );
    // Proxies around the global object and functions reach nothing new.
    let v = value(
        &sandbox,
        &format!(
            "export default () => {{
               const g = new Proxy(globalThis, {{}});
               const F = new Proxy(Function, {{ apply: (t, self, a) => Reflect.apply(t, self, a) }});
               const h = F('return this')();
               return [h === globalThis, {}];
             }}",
            host_names_in("g")
        ),
    )
    .await;
    assert_eq!(v, json!([true, []]));
}

#[tokio::test]
async fn promise_and_async_hooks() {
    let sandbox = Sandbox::new(1);
    // A `then` on Object.prototype makes every object a thenable: the async result is adopted
    // through it, as the language says, and the pollution dies with the call.
    let v = value(
        &sandbox,
        "export default async () => { Object.prototype.then = function (resolve) { delete Object.prototype.then; resolve(42) }; return {} }",
    )
    .await;
    assert_eq!(v, json!(42));
    // Replacing Promise.prototype.then does not stop the sandbox from reading the result.
    let v = value(
        &sandbox,
        "export default async () => { Promise.prototype.then = function () { for (;;) {} }; return 7 }",
    )
    .await;
    assert_eq!(v, json!(7));
    // An unhandled rejection of another promise does not fail the call.
    let v = value(
        &sandbox,
        "export default () => { Promise.reject(new Error('ignored')); return 1 }",
    )
    .await;
    assert_eq!(v, json!(1));
    // A job that throws (not a promise reaction) is dropped like an unhandled rejection.
    let v = value(
        &sandbox,
        "export default () => { queueMicrotask(() => { throw new Error('x') }); return 2 }",
    )
    .await;
    assert_eq!(v, json!(2));
    // Jobs the call queued run before it is over: they may change the result.
    let v = value(
        &sandbox,
        "export default () => { const r = { a: 1 }; Promise.resolve().then(() => { r.a = 2 }); return r }",
    )
    .await;
    assert_eq!(v, json!({"a": 2}));
    // A rejected result is the script's error, with the place of the throw.
    let e = fails_with(
        &sandbox,
        "export default async () => {\n  await null;\n  throw new TypeError('late');\n}",
        "CODE_ERROR",
    )
    .await;
    assert_eq!(
        e,
        hilo_sandbox::CodeError::Thrown {
            message: "TypeError: late".into(),
            line: Some(3),
            column: Some(13)
        }
    );
    // A promise nothing will settle.
    let e = fails_with(
        &sandbox,
        "export default () => new Promise(() => {})",
        "CODE_ERROR",
    )
    .await;
    assert!(thrown(&e).contains("never settled"), "{e:?}");
    let e = fails_with(
        &sandbox,
        "export default async () => { await new Promise(() => {}); return 1 }",
        "CODE_ERROR",
    )
    .await;
    assert!(thrown(&e).contains("never settled"), "{e:?}");
    // A job chain that never ends, started and not awaited.
    fails_with(
        &sandbox,
        "export default () => { (async () => { for (;;) await null })(); return 1 }",
        "TIMEOUT",
    )
    .await;
}

#[tokio::test]
async fn constructor_chains_reach_only_the_sandbox_global() {
    let sandbox = Sandbox::new(1);
    let v = value(
        &sandbox,
        &format!(
            "export default function () {{
               const globals = [
                 ({{}}).constructor.constructor('return this')(),
                 [].constructor.constructor('return this')(),
                 (() => {{}}).constructor('return this')(),
                 Object.getPrototypeOf(async function () {{}}).constructor('return this'),
                 Object.getPrototypeOf(function* () {{}}).constructor('return this'),
                 Function.prototype.constructor('return this')(),
                 Symbol.constructor.constructor('return this')(),
               ];
               const syncGlobals = [globals[0], globals[1], globals[2], globals[5], globals[6]];
               const gen = (0, globals[4])().next().value;
               return [
                 typeof this,
                 syncGlobals.every((g) => g === globalThis),
                 gen === globalThis,
                 {names},
               ];
             }}",
            names = host_names_in("globalThis")
        ),
    )
    .await;
    assert_eq!(v, json!(["undefined", true, true, []]));
    // `this` at the module's top level is undefined (module code).
    let e = fails_with(
        &sandbox,
        "export default () => this.constructor.constructor('return this')()",
        "CODE_ERROR",
    )
    .await;
    assert!(thrown(&e).contains("of undefined"), "{e:?}");
}

#[tokio::test]
async fn template_literal_tricks() {
    let sandbox = Sandbox::new(1);
    let v = value(
        &sandbox,
        "export default () => {
           const tag = (strings, ...values) => strings.raw.join('|') + values.length;
           const g = `${[].constructor.constructor('return typeof process')()}`;
           const raw = String.raw`\\u{${'x'}}`;
           const hooked = `${{ toString() { return Object.getOwnPropertyNames(globalThis).includes('require') } }}`;
           const frozen = (s) => Object.isFrozen(s) && Object.isFrozen(s.raw);
           return [tag`a${1}b${2}c`, g, raw, hooked, frozen`x`];
         }",
    )
    .await;
    assert_eq!(v, json!(["a|b|c2", "undefined", "\\u{x}", "false", true]));
    // A template whose substitution throws is the script's error.
    let e = fails_with(
        &sandbox,
        "export default () => `${(() => { throw new Error('in a template') })()}`",
        "CODE_ERROR",
    )
    .await;
    assert_eq!(thrown(&e), "Error: in a template");
}

#[tokio::test]
async fn destructuring_reaches_only_the_language() {
    let sandbox = Sandbox::new(1);
    let v = value(
        &sandbox,
        &format!(
            "export default (args, state) => {{
               const {{ constructor: {{ constructor: F }} }} = {{}};
               const [{{ constructor: {{ constructor: G }} }}] = [[]];
               const {{ lookup: {{ rows: [first] }} }} = state;
               const {{ constructor: {{ constructor: H }} }} = state;
               const g = F('return this')();
               return [g === globalThis, G === F, H === F, first.total, {}];
             }}",
            host_names_in("g")
        ),
    )
    .await;
    assert_eq!(v, json!([true, true, true, 10, []]));
}

#[tokio::test]
async fn with_statements() {
    let sandbox = Sandbox::new(1);
    // Module code is strict: `with` does not compile.
    let source = "export default () => {\n  with ({}) { return 1 }\n}";
    let e = fails_with(&sandbox, source, "INVALID_CODE").await;
    let hilo_sandbox::CodeError::Syntax(s) = &e else {
        panic!("{e:?}")
    };
    assert_eq!((s.line, s.column), (2, 3));
    assert_eq!(check(source), Err(s.clone()));
    // Sloppy code made at run time may use it: it sees the same global.
    let v = value(
        &sandbox,
        "export default () => [new Function('with (globalThis) { return typeof process + typeof Math }')(), (0, eval)('with ({ a: 1 }) a')]",
    )
    .await;
    assert_eq!(v, json!(["undefinedobject", 1]));
}

#[tokio::test]
async fn global_this_holds_the_language_only() {
    let sandbox = Sandbox::new(1);
    // Every own property (symbols too) reachable from globalThis, four levels deep.
    let walk = "export default () => {
        void Date; // the deterministic Date is installed on first use
        const seen = new Set();
        const paths = [];
        const notNative = [];
        const visit = (value, path, depth) => {
          if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return;
          if (seen.has(value) || depth > 4) return;
          seen.add(value);
          if (typeof value === 'function') {
            const text = Function.prototype.toString.call(value);
            if (!/\\{\\s*\\[native code\\]\\s*\\}$/.test(text)) notNative.push(path);
          }
          for (const key of Reflect.ownKeys(value)) {
            const name = typeof key === 'symbol' ? `[${key.description}]` : key;
            const d = Reflect.getOwnPropertyDescriptor(value, key);
            paths.push(path + '.' + name);
            for (const v of [d.value, d.get, d.set]) visit(v, path + '.' + name, depth + 1);
          }
        };
        visit(globalThis, 'globalThis', 0);
        return { globals: Reflect.ownKeys(globalThis).map(String), paths, notNative };
      }";
    let v = value(&sandbox, walk).await;
    let globals: Vec<&str> = v["globals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect();
    let mut sorted = globals.clone();
    sorted.sort_unstable();
    let mut expected = vec![
        "AggregateError",
        "Array",
        "ArrayBuffer",
        "AsyncDisposableStack",
        "Atomics",
        "BigInt",
        "BigInt64Array",
        "BigUint64Array",
        "Boolean",
        "DataView",
        "Date",
        "DisposableStack",
        "Error",
        "EvalError",
        "Float16Array",
        "Float32Array",
        "Float64Array",
        "Function",
        "Infinity",
        "Int16Array",
        "Int32Array",
        "Int8Array",
        "InternalError",
        "Iterator",
        "JSON",
        "Map",
        "Math",
        "NaN",
        "Number",
        "Object",
        "Promise",
        "Proxy",
        "RangeError",
        "ReferenceError",
        "Reflect",
        "RegExp",
        "Set",
        "SharedArrayBuffer",
        "String",
        "SuppressedError",
        "Symbol",
        "Symbol(Symbol.toStringTag)",
        "SyntaxError",
        "TypeError",
        "URIError",
        "Uint16Array",
        "Uint32Array",
        "Uint8Array",
        "Uint8ClampedArray",
        "WeakMap",
        "WeakSet",
        "decodeURI",
        "decodeURIComponent",
        "encodeURI",
        "encodeURIComponent",
        "escape",
        "eval",
        "globalThis",
        "isFinite",
        "isNaN",
        "parseFloat",
        "parseInt",
        "queueMicrotask",
        "undefined",
        "unescape",
    ];
    expected.sort_unstable();
    assert_eq!(sorted, expected);
    let paths: Vec<&str> = v["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(paths.len() > 1000, "{}", paths.len());
    for path in &paths {
        let last = path.rsplit('.').next().unwrap();
        let legit = [
            "globalThis.RegExp.prototype.global",
            "globalThis.Atomics.load",
        ]
        .contains(path);
        assert!(legit || !HOST_NAMES.contains(&last), "{path}");
    }
    // Every function is the engine's or the prelude's (compiled without its source text, so it
    // prints as native code too): none is script code left behind.
    assert_eq!(v["notNative"], json!([]));
    still_works(&sandbox).await;
}

#[tokio::test]
async fn the_real_date_is_out_of_reach() {
    let sandbox = Sandbox::new(1);
    // The deterministic Date is installed on first use of the global; every way to it leads
    // to the same constructor, whose clock is the call's.
    let v = value(
        &sandbox,
        "export default () => {
           const d = Object.getOwnPropertyDescriptor(globalThis, 'Date');
           const before = [typeof d.get, typeof d.set, 'value' in d];
           const D = d.get.call(undefined);
           const after = Object.getOwnPropertyDescriptor(globalThis, 'Date');
           const date = new D();
           return [
             before, D === Date, typeof after.value, date.getTime(),
             Object.getPrototypeOf(date).constructor === Date, date.constructor.now(),
             Reflect.getPrototypeOf(Date) === Function.prototype, Date.prototype.constructor === Date,
             new (class extends Date {})().getTime(), Date.prototype.getTime.call(Reflect.construct(Date, [], Object)),
           ];
         }",
    )
    .await;
    let now = 1_700_000_000_000i64;
    assert_eq!(
        v,
        json!([
            ["function", "function", false],
            true,
            "function",
            now,
            true,
            now,
            true,
            true,
            now,
            now
        ])
    );
    // Replaced or deleted before it is read, it is simply gone.
    assert_eq!(
        value(
            &sandbox,
            "export default () => { globalThis.Date = 1; return typeof Date }"
        )
        .await,
        json!("number")
    );
    assert_eq!(
        value(
            &sandbox,
            "export default () => { delete globalThis.Date; return typeof Date }"
        )
        .await,
        json!("undefined")
    );
    // Tampering with the primordials before Date is installed does not hand out the real one.
    let v = value(
        &sandbox,
        "export default () => {
           const seen = [];
           Reflect.apply = (f, self, args) => { seen.push(f); return 0 };
           Object.defineProperty = (o, k, d) => { seen.push(d && d.value); return o };
           Object.setPrototypeOf = (o, p) => { seen.push(p); return o };
           const t = new Date().getTime();
           class Sub extends Date {}
           new Sub();
           return [t, seen.some((f) => typeof f === 'function' && f.name === 'Date' && f !== Date)];
         }",
    )
    .await;
    assert_eq!(v, json!([now, false]));
}

#[tokio::test]
async fn import_is_not_available() {
    let sandbox = Sandbox::new(1);
    let source = "// a comment\nimport fs from 'fs';\nexport default () => fs";
    let e = fails_with(&sandbox, source, "INVALID_CODE").await;
    let hilo_sandbox::CodeError::Syntax(s) = &e else {
        panic!("{e:?}")
    };
    assert!(s.message.starts_with("cannot import 'fs'"), "{s:?}");
    assert!(s.message.contains("`import` is not available"), "{s:?}");
    assert_eq!((s.line, s.column), (2, 16));
    assert_eq!(check(source), Err(s.clone()));
    fails_with(
        &sandbox,
        "export * from \"./other.js\";\nexport default () => 1",
        "INVALID_CODE",
    )
    .await;
    // A dynamic import rejects.
    let e = fails_with(
        &sandbox,
        "export default async () => (await import('os')).default",
        "CODE_ERROR",
    )
    .await;
    assert!(
        thrown(&e).starts_with("ReferenceError: cannot import 'os'"),
        "{e:?}"
    );
    let v = value(
        &sandbox,
        "export default async () => { try { await import('data:text/javascript,export default 1') } catch (e) { return [e.name, Object.keys(import.meta)] } }",
    )
    .await;
    assert_eq!(v, json!(["ReferenceError", []]));
    // The prelude's own module is loaded in every context, so it can be imported; its setup
    // has run (before the heap was saved) and refuses to run again.
    let v = value(
        &sandbox,
        "export default async () => { const m = await import('<sandbox>'); try { m.default(Math.random); return 'ran' } catch (e) { return String(e) } }",
    )
    .await;
    assert_eq!(v, json!("TypeError: the sandbox's prelude has run"));
    still_works(&sandbox).await;
}

#[tokio::test]
async fn require_is_not_defined() {
    let sandbox = Sandbox::new(1);
    let e = fails_with(
        &sandbox,
        "export default () => require('fs').readFileSync('/etc/passwd', 'utf8')",
        "CODE_ERROR",
    )
    .await;
    assert_eq!(thrown(&e), "ReferenceError: require is not defined");
    assert_eq!(
        value(
            &sandbox,
            "export default () => [typeof require, typeof module, typeof exports]"
        )
        .await,
        json!(["undefined", "undefined", "undefined"])
    );
}

#[tokio::test]
async fn eval_and_function_stay_in_the_language() {
    let sandbox = Sandbox::new(1);
    let v = value(
        &sandbox,
        "export default () => [
           eval('typeof process'),
           (0, eval)('this') === globalThis,
           new Function('return globalThis')() === globalThis,
           Function('a', 'b', 'return a + b')(1, 2),
           eval('Date.now()'),
           (0, eval)('var leaked = 1; typeof leaked'),
         ]",
    )
    .await;
    assert_eq!(
        v,
        json!(["undefined", true, true, 3, 1_700_000_000_000i64, "number"])
    );
    // Code compiled at run time has the same limits.
    fails_with(
        &sandbox,
        "export default () => eval('for (;;) {}')",
        "TIMEOUT",
    )
    .await;
    fails_with(
        &sandbox,
        "export default () => new Function('let s = \"x\"; for (;;) s += s')()",
        "MEMORY_LIMIT",
    )
    .await;
    let e = fails_with(&sandbox, "export default () => eval('1 +')", "CODE_ERROR").await;
    assert!(thrown(&e).starts_with("SyntaxError"), "{e:?}");
}

#[tokio::test]
async fn nothing_survives_into_the_next_call() {
    // One worker, so both calls run on the same QuickJS runtime.
    let sandbox = Sandbox::new(1);
    let polluted = value(
        &sandbox,
        "export default () => {
           Object.prototype.x = 1;
           Array.prototype.y = 2;
           JSON.parse = () => 'hijacked';
           JSON.stringify = () => '\"hijacked\"';
           Math.random = () => 0.5;
           Date.now = () => 0;
           globalThis.leaked = 1;
           Object.defineProperty(globalThis, 'sticky', { value: 1, configurable: false });
           Symbol.for('registered');
           String.prototype.trim = () => 'hijacked';
           Object.freeze(Object.prototype);
           return [({}).x, [].y];
         }",
    )
    .await;
    assert_eq!(polluted, json!([1, 2]));
    let clean = value(
        &sandbox,
        "export default () => [
           ({}).x, [].y, JSON.parse('[1]'), JSON.stringify({ a: 1 }), Math.random() === 0.5,
           Date.now(), typeof leaked, typeof sticky, ' a '.trim(), Object.isFrozen(Object.prototype),
         ]",
    )
    .await;
    assert_eq!(
        clean,
        json!([
            null,
            null,
            [1],
            "{\"a\":1}",
            false,
            1_700_000_000_000i64,
            "undefined",
            "undefined",
            "a",
            false
        ])
    );
    // The result is serialised by the engine's own JSON.stringify, whatever the script did.
    let v = value(
        &sandbox,
        "export default () => { JSON.stringify = () => '{\"forged\":true}'; return { real: true } }",
    )
    .await;
    assert_eq!(v, json!({"real": true}));
}

#[tokio::test]
async fn a_call_is_never_given_another_calls_data() {
    let sandbox = Sandbox::new(1);
    let mut first = call("export default (args) => { globalThis.secret = args; return 1 }");
    first.args = json!({"secret": "s3cr3t"});
    assert_eq!(ok(&sandbox, first).await, json!(1));
    let second: Call = call(
        "export default () => [typeof secret, Object.getOwnPropertyNames(globalThis).filter((n) => /secret/.test(n))]",
    );
    assert_eq!(ok(&sandbox, second).await, json!(["undefined", []]));
    let _: Value = value(&sandbox, "export default () => null").await;
    fails(
        &sandbox,
        call("export default () => { throw 1 }"),
        "CODE_ERROR",
    )
    .await;
}
