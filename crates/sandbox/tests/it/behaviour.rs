//! What a script can count on: deterministic time and randomness (and UTC as local time),
//! args and state as given (state frozen), async default exports, and the line and column of
//! its errors; `check` compiles without running.

use std::time::{Duration, Instant};

use hilo_sandbox::{CodeError, Sandbox, SyntaxError, check};
use serde_json::json;

use crate::{call, fails, fails_with, ok, still_works, thrown, value};

const CLOCK_AND_DICE: &str = "export default () => ({
  now: Date.now(),
  date: new Date().toISOString(),
  string: Date(),
  random: [Math.random(), Math.random(), Math.random(), Math.random()],
})";

#[tokio::test]
async fn the_same_call_gives_the_same_output() {
    let sandbox = Sandbox::new(2);
    let first = value(&sandbox, CLOCK_AND_DICE).await;
    let second = value(&sandbox, CLOCK_AND_DICE).await;
    assert_eq!(first, second);
    assert_eq!(first["now"], json!(1_700_000_000_000i64));
    assert_eq!(first["date"], json!("2023-11-14T22:13:20.000Z"));
    assert_eq!(first["string"], json!("Tue Nov 14 2023 22:13:20 GMT+0000"));
    let randoms = first["random"].as_array().unwrap();
    for r in randoms {
        let r = r.as_f64().unwrap();
        assert!((0.0..1.0).contains(&r), "{r}");
    }
    // Another sandbox, another worker: the same.
    assert_eq!(value(&Sandbox::new(1), CLOCK_AND_DICE).await, first);
    // Another seed: another sequence; another clock: another time.
    let mut other = call(CLOCK_AND_DICE);
    other.seed = 43;
    other.now_ms = 0;
    let other = ok(&sandbox, other).await;
    assert_ne!(other["random"], first["random"]);
    assert_eq!(other["date"], json!("1970-01-01T00:00:00.000Z"));
    // The clock does not move during a call.
    let v = value(
        &sandbox,
        "export default () => { const a = Date.now(); for (let i = 0; i < 1e5; i++); return Date.now() - a }",
    )
    .await;
    assert_eq!(v, json!(0));
    // The sequence is uniform enough to be useful.
    let v = value(
        &sandbox,
        "export default () => { const b = [0, 0, 0, 0]; for (let i = 0; i < 40000; i++) b[Math.floor(Math.random() * 4)]++; return b.every((n) => n > 9500 && n < 10500) }",
    )
    .await;
    assert_eq!(v, json!(true));
}

/// The values a seed and a clock give, pinned: a call re-run (after a crash, on another version)
/// must give the output the first run gave. Taken from the sandbox as it was when pinned.
#[tokio::test]
async fn a_seed_and_a_clock_always_give_the_same_values() {
    let sandbox = Sandbox::new(1);
    let dice = "export default () => [Math.random(), Math.random(), Math.random(), Math.random(), Date.now(), new Date().getTime()]";
    // A script that names `Map` draws the same numbers.
    let full = "export default () => { new Map(); return [Math.random(), Math.random(), Math.random(), Math.random(), Date.now(), new Date().getTime()] }";
    let expected = [
        (
            0u64,
            0i64,
            json!([
                0.870254774404272,
                0.6697971505310978,
                0.3616586206733957,
                0.759190638670705,
                0,
                0
            ]),
        ),
        (
            42,
            1_700_000_000_000,
            json!([
                0.4137016681565887,
                0.003983993377814743,
                0.6500837027638867,
                0.6846020186141416,
                1_700_000_000_000i64,
                1_700_000_000_000i64
            ]),
        ),
        (
            u64::MAX,
            -1,
            json!([
                0.11122081116347982,
                0.12938300625619603,
                0.014282055722108056,
                0.5770673274801271,
                -1,
                -1
            ]),
        ),
    ];
    for (seed, now_ms, want) in expected {
        for source in [dice, full] {
            let mut c = call(source);
            c.seed = seed;
            c.now_ms = now_ms;
            assert_eq!(ok(&sandbox, c).await, want, "seed {seed}: {source}");
        }
    }
    // Math.random is the language's: a method (no constructor), named, writable and
    // configurable but not enumerable.
    let v = value(
        &sandbox,
        "export default () => { const d = Object.getOwnPropertyDescriptor(Math, 'random'); let made = true; try { new Math.random() } catch (e) { made = !(e instanceof TypeError) } return [Math.random.name, Math.random.length, d.writable, d.enumerable, d.configurable, made, typeof Math.random, Object.getPrototypeOf(Math.random) === Function.prototype] }",
    )
    .await;
    assert_eq!(
        v,
        json!(["random", 0, true, false, true, false, "function", true])
    );
}

#[tokio::test]
async fn local_time_is_utc() {
    let sandbox = Sandbox::new(1);
    // Whatever the host's TZ, every local-time method is its UTC twin.
    let v = value(
        &sandbox,
        "export default () => {
           const d = new Date(2024, 0, 31, 23, 30, 15, 250);
           const e = new Date(0); e.setHours(5); e.setFullYear(2001);
           const f = new Date(0); f.setYear(99);
           class Later extends Date { later() { return this.getTime() + 1 } }
           return [
             d.toISOString(), d.getHours(), d.getDate(), d.getDay(), d.getTimezoneOffset(),
             d.toString(), d.toDateString(), d.toTimeString(),
             d.toLocaleString(), d.toLocaleDateString(), d.toLocaleTimeString(),
             e.toISOString(), f.getYear(), f.getFullYear(),
             new Date('2024-03-10T02:30').toISOString(),
             new Date('2024-03-10T02:30:00+01:00').toISOString(),
             new Date('2024-03-10').toISOString(),
             Date.parse('Sun Mar 10 2024 02:30:00'),
             Date.parse('Sun Mar 10 2024 02:30:00 GMT+0100'),
             Date.parse('March 10, 2024 02:30 PM EST'),
             new Date(new Date(5)).getTime(), new Date({ valueOf: () => 7 }).getTime(),
             new Later().later(), new Later() instanceof Date, Object.getPrototypeOf(new Date()) === Date.prototype,
             new Date(NaN).toString(), new Date(NaN).getTimezoneOffset(), String(new Date(8.64e15 + 1)),
             Date.UTC(2020, 1), typeof Date(), Date.length, Date.name, Date.prototype.constructor === Date,
           ];
         }",
    )
    .await;
    assert_eq!(
        v,
        json!([
            "2024-01-31T23:30:15.250Z",
            23,
            31,
            3,
            0,
            "Wed Jan 31 2024 23:30:15 GMT+0000",
            "Wed Jan 31 2024",
            "23:30:15 GMT+0000",
            "01/31/2024, 11:30:15 PM",
            "01/31/2024",
            "11:30:15 PM",
            "2001-01-01T05:00:00.000Z",
            99,
            1999,
            "2024-03-10T02:30:00.000Z",
            "2024-03-10T01:30:00.000Z",
            "2024-03-10T00:00:00.000Z",
            1_710_037_800_000i64,
            1_710_034_200_000i64,
            1_710_099_000_000i64,
            5,
            7,
            1_700_000_000_001i64,
            true,
            true,
            "Invalid Date",
            null,
            "Invalid Date",
            1_580_515_200_000i64,
            "string",
            7,
            "Date",
            true,
        ])
    );
}

#[tokio::test]
async fn args_and_state_round_trip() {
    let sandbox = Sandbox::new(1);
    let data = json!({
        "text": "héllo \u{1F600} \"quoted\" \\ \n",
        "numbers": [0, -1, 1.5, 1e300, 9007199254740991i64, 1e-7],
        "nested": {"a": {"b": [null, true, false, {}, []]}},
        "order": {"z": 1, "a": 2, "m": 3},
    });
    let mut c = call("export default (args, state) => ({ args, state })");
    c.args = data.clone();
    c.state = json!([data.clone()]);
    let v = ok(&sandbox, c).await;
    assert_eq!(v, json!({"args": data, "state": [data]}));
    // Key order is kept.
    let keys: Vec<&String> = v["args"]["order"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["z", "a", "m"]);
    // Scalars and null are fine as args and state.
    let mut c = call("export default (args, state) => [args, state]");
    c.args = json!("just a string");
    c.state = json!(null);
    assert_eq!(ok(&sandbox, c).await, json!(["just a string", null]));
}

#[tokio::test]
async fn the_state_is_frozen() {
    let sandbox = Sandbox::new(1);
    for source in [
        "export default (args, state) => { state.lookup = 1 }",
        "export default (args, state) => { state.lookup.rows[0].total = 1 }",
        "export default (args, state) => { state.lookup.rows.push(1) }",
        "export default (args, state) => { delete state.lookup }",
    ] {
        let e = fails_with(&sandbox, source, "CODE_ERROR").await;
        assert!(thrown(&e).starts_with("TypeError"), "{source}: {e:?}");
    }
    // Args are the function's own to change.
    let v = value(
        &sandbox,
        "export default (args, state) => { args.n += 1; return [args.n, Object.isFrozen(state.lookup.rows[0])] }",
    )
    .await;
    assert_eq!(v, json!([3, true]));
}

#[tokio::test]
async fn async_default_exports_and_top_level_await() {
    let sandbox = Sandbox::new(1);
    let v = value(
        &sandbox,
        "const base = await Promise.resolve(40);\nexport default async function (args) {\n  const x = await new Promise((r) => queueMicrotask(() => r(args.n)));\n  return base + x;\n}",
    )
    .await;
    assert_eq!(v, json!(42));
    let v = value(&sandbox, "export default async function* () {}").await;
    assert_eq!(v, json!({}));
    // The default export must be a function.
    for (source, what) in [
        ("export const f = () => 1", "undefined"),
        ("export default 42", "a number"),
        ("export default { run() {} }", "an object"),
    ] {
        let e = fails_with(&sandbox, source, "CODE_ERROR").await;
        assert!(
            thrown(&e).contains(&format!("default export is {what}, not a function")),
            "{e:?}"
        );
    }
    // A module that throws while it is evaluated.
    let e = fails_with(
        &sandbox,
        "const x = 1;\nthrow new RangeError('at load');\nexport default () => x",
        "CODE_ERROR",
    )
    .await;
    assert_eq!(
        e,
        CodeError::Thrown {
            message: "RangeError: at load".into(),
            line: Some(2),
            column: Some(11)
        }
    );
}

#[tokio::test]
async fn errors_carry_the_line_and_column_of_the_throw() {
    let sandbox = Sandbox::new(1);
    // An Error's place is where it was made: the column of its constructor's name.
    let source = "// rates\nconst rate = (c) => {\n  if (!c) {\n    throw new Error(`no country`);\n  }\n  return 0.2;\n};\nexport default (args) => ({ gross: args.n * (1 + rate(args.country)) });";
    let e = fails_with(&sandbox, source, "CODE_ERROR").await;
    assert_eq!(
        e,
        CodeError::Thrown {
            message: "Error: no country".into(),
            line: Some(4),
            column: Some(15)
        }
    );
    // An error a built-in throws is placed at the script's call of it.
    let e = fails_with(
        &sandbox,
        "export default () => {\n  return JSON.parse('{oops');\n}",
        "CODE_ERROR",
    )
    .await;
    let CodeError::Thrown { line, column, .. } = e else {
        panic!()
    };
    assert_eq!((line, column), (Some(2), Some(15)));
    let e = fails_with(
        &sandbox,
        "export default (args) => {\n  const rows = args.missing;\n  return rows.length;\n}",
        "CODE_ERROR",
    )
    .await;
    assert_eq!(
        e,
        CodeError::Thrown {
            message: "TypeError: cannot read property 'length' of undefined".into(),
            line: Some(3),
            column: Some(10)
        }
    );
    // Thrown values that are not errors have no place.
    let e = fails_with(
        &sandbox,
        "export default () => { throw 'plain' }",
        "CODE_ERROR",
    )
    .await;
    assert_eq!(
        e,
        CodeError::Thrown {
            message: "plain".into(),
            line: None,
            column: None
        }
    );
    let e = fails_with(&sandbox, "export default () => { throw 42 }", "CODE_ERROR").await;
    assert_eq!(thrown(&e), "the script threw 42");
    let e = fails_with(
        &sandbox,
        "export default () => { throw undefined }",
        "CODE_ERROR",
    )
    .await;
    assert_eq!(thrown(&e), "the script threw undefined");
    // QuickJS's own `null` when memory is exhausted: see CodeError::MemoryLimit.
    fails_with(
        &sandbox,
        "export default () => { throw null }",
        "MEMORY_LIMIT",
    )
    .await;
    // An error from code compiled at run time is placed at the script's line that ran it.
    let e = fails_with(
        &sandbox,
        "export default () => {\n\n  return eval('null.x');\n}",
        "CODE_ERROR",
    )
    .await;
    let CodeError::Thrown { line, .. } = e else {
        panic!()
    };
    assert_eq!(line, Some(3));
    // A very long message is cut.
    let e = fails_with(
        &sandbox,
        "export default () => { throw new Error('m'.repeat(100000)) }",
        "CODE_ERROR",
    )
    .await;
    assert!(thrown(&e).chars().count() < 2100);
}

#[tokio::test]
async fn syntax_errors_carry_their_line_and_column() {
    let sandbox = Sandbox::new(1);
    let source = "export default function (args) {\n  const x = ;\n  return x;\n}";
    let expected = SyntaxError {
        message: "unexpected token in expression: ';'".into(),
        line: 2,
        column: 13,
    };
    assert_eq!(check(source), Err(expected.clone()));
    let e = fails_with(&sandbox, source, "INVALID_CODE").await;
    assert_eq!(e, CodeError::Syntax(expected));
    assert_eq!(
        check("export default () => {\n  return 'unterminated;\n}").map_err(|e| (e.line, e.column)),
        Err((2, 10))
    );
    assert!(check("export default () => { await 1 }").is_err());
    assert!(check("export default 1;\nexport default 2;").is_err());
    // Sloppy-mode-only syntax is an error in a module.
    assert!(check("export default () => { var x = 010; return x }").is_err());
    let e = check("export default () => { delete x }").unwrap_err();
    assert_eq!(e.line, 1);
    fails(&sandbox, call(""), "CODE_ERROR").await;
}

#[tokio::test]
async fn check_never_runs_the_code() {
    let started = Instant::now();
    assert_eq!(check("for (;;) {}\nexport default () => 1"), Ok(()));
    assert_eq!(
        check("await new Promise(() => {});\nexport default async (a, s) => a"),
        Ok(())
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // Deeply nested source is refused, not a crash.
    let deep = format!(
        "export default () => {}1{}",
        "(".repeat(100_000),
        ")".repeat(100_000)
    );
    assert!(check(&deep).is_err());
}

#[tokio::test]
async fn large_string_searches_give_the_languages_results() {
    let sandbox = Sandbox::new(1);
    // Large enough (length × pattern length) for the prelude's own searches.
    let t = format!("needle{}", "x".repeat(2990));
    let s = format!("{}{t}--{t}{}", "ab".repeat(600), "y".repeat(40));
    assert!(s.len() * t.len() > 1 << 22);
    let first = s.find(&t).unwrap();
    let last = s.rfind(&t).unwrap();
    let mut c = call(
        "export default ({ s, t }) => [
           s.indexOf(t), s.indexOf(t, 1201), s.indexOf(t, 1e9), s.indexOf(t, -5),
           s.lastIndexOf(t), s.lastIndexOf(t, 4000), s.lastIndexOf(t, 0), s.lastIndexOf(t, NaN),
           s.includes(t), s.includes(t, 4300), s.includes(t + 'z'),
           s.split(t).map((p) => p.length), s.split(t, 2).length, s.split(t, 0).length,
           s.replace(t, '<$&|$$|$1|$<n>|$>').length - s.length,
           s.replace(t, '[$`]').slice(1200, 1206),
           s.replace(t, \"[$']\").length,
           s.replaceAll(t, (m, p, whole) => `${m.length}@${p}/${whole.length}`).replaceAll('ab', '').slice(0, 40),
           String.prototype.indexOf.length, String.prototype.includes.length, String.prototype.replace.length,
         ]",
    );
    c.args = json!({"s": s, "t": t});
    let v = ok(&sandbox, c).await;
    let (n, m) = (s.len(), t.len());
    let replaced_prefix = format!("[{}", &s[..5]);
    assert_eq!(
        v,
        json!([
            first,
            last,
            -1,
            first,
            last,
            first,
            -1,
            last,
            true,
            false,
            false,
            [first, 2, 40],
            2,
            0,
            // `$&` is the match, `$$` a dollar, the rest stays as written.
            "<|$|$1|$<n>|$>".len() + m - m,
            replaced_prefix,
            n - m + 2 + (n - first - m),
            format!("{m}@{first}/{n}--{m}@{last}/{n}{}", "y".repeat(10)),
            1,
            1,
            2,
        ])
    );
    // The same with a `this` that is not a string, and the errors of the language.
    let e = fails_with(
        &sandbox,
        "export default () => String.prototype.indexOf.call(null, 'x')",
        "CODE_ERROR",
    )
    .await;
    assert!(thrown(&e).starts_with("TypeError"), "{e:?}");
    let e = fails_with(
        &sandbox,
        "export default () => 'abc'.includes(/b/)",
        "CODE_ERROR",
    )
    .await;
    assert!(thrown(&e).starts_with("TypeError"), "{e:?}");
    assert_eq!(
        value(
            &sandbox,
            "export default () => ['a-b-c'.split('-'), 'a-b'.replace(/-/, '+'), 'aXbXc'.replaceAll('X', '$&$&'), 'abc'.split(undefined), 'x'.indexOf()]"
        )
        .await,
        json!([["a", "b", "c"], "a+b", "aXXbXXc", ["abc"], -1])
    );
}

#[tokio::test]
async fn array_methods_keep_the_languages_results() {
    let sandbox = Sandbox::new(1);
    let v = value(
        &sandbox,
        "export default () => {
           class List extends Array {}
           const nested = [1, [2, [3, [4]]]];
           return [
             nested.flat(), nested.flat(2), nested.flat(Infinity), nested.flat(-1), [1, , 3, [4, , 6]].flat(),
             [1, 2].flatMap((x, i, a) => [x, i, a.length]), [[1], [2]].flatMap((x) => x),
             ['a b', 'c'].flatMap((s) => s.split(' ')), [1].flatMap(function () { return [this.k] }, { k: 7 }),
             List.from([1, [2]]).flat() instanceof List, Array.prototype.flat.call({ length: 2, 0: [1], 1: 2 }),
             [Array.prototype.flat.length, Array.prototype.flatMap.length, Array.prototype.join.length,
              Array.prototype.splice.length, Array.prototype.concat.length, Array.prototype.copyWithin.length,
              Array.prototype.unshift.length, Array.prototype.sort.length, Array.prototype.flat.name],
             [1, 2, 3].join('-'), [3, 1, 2].sort(), [3, 1, 2].sort((a, b) => b - a), [1, 2, 3].reverse(),
             [1, 2, 3].splice(1), [1, 2, 3].concat([4], 5, [[6]]), [1, 2, 3, 4].copyWithin(0, 2),
             String([1, [2, 3]]), [1, 2].toLocaleString(),
           ];
         }",
    )
    .await;
    assert_eq!(
        v,
        json!([
            [1, 2, [3, [4]]],
            [1, 2, 3, [4]],
            [1, 2, 3, 4],
            [1, [2, [3, [4]]]],
            [1, 3, 4, 6],
            [1, 0, 2, 2, 1, 2],
            [1, 2],
            ["a", "b", "c"],
            [7],
            true,
            [1, 2],
            [0, 1, 1, 2, 1, 2, 1, 1, "flat"],
            "1-2-3",
            [1, 2, 3],
            [3, 2, 1],
            [3, 2, 1],
            [2, 3],
            [1, 2, 3, 4, 5, [6]],
            [3, 4, 3, 4],
            "1,2,3",
            "1,2",
        ])
    );
    for source in [
        "export default () => [1].flatMap(1)",
        "export default () => Array.prototype.flat.call(null)",
        "export default () => Array.prototype.join.call(undefined)",
    ] {
        let e = fails_with(&sandbox, source, "CODE_ERROR").await;
        assert!(thrown(&e).starts_with("TypeError"), "{source}: {e:?}");
    }
}

/// Every call starts from the same saved heap (see `engine.rs`): every global is there, named
/// or reached by reflection, and nothing a call did (globals, prototypes, built-ins replaced,
/// large strings, a call stopped by its deadline or its heap) is seen by the next on the worker.
#[tokio::test]
async fn a_script_has_every_global_and_sees_nothing_a_previous_call_on_its_worker_did() {
    let sandbox = Sandbox::new(1);
    let plain = "export default (args) => ({ sum: args.xs.reduce((a, b) => a + b, 0), kinds: typeof WeakRef })";
    let full = "export default (args) => { const seen = new Set(args.xs); const bytes = new Uint8Array([...seen]); return { distinct: seen.size, last: bytes[bytes.length - 1], map: new Map([[1, 2]]).get(1) } }";
    let vandal = "export default () => {
  globalThis.leak = 1;
  Object.prototype.polluted = 1;
  Array.prototype.push = null;
  Math.random = () => 4;
  JSON.stringify = () => '\"forged\"';
  delete globalThis.Map;
  const big = 'x'.repeat(8 * 1024 * 1024);
  const objects = [];
  for (let i = 0; i < 20000; i++) objects.push === null ? objects[i] = { i } : 0;
  return big.length + objects.length;
}";
    let pristine = "export default () => [typeof globalThis.leak, ({}).polluted, typeof [].push, Math.random() < 1, typeof Map, JSON.stringify({ a: 1 })]";
    for _ in 0..3 {
        let mut c = call(plain);
        c.args = json!({"xs": [1, 2, 2, 3]});
        assert_eq!(
            ok(&sandbox, c).await,
            json!({"sum": 8, "kinds": "undefined"})
        );
        let mut c = call(full);
        c.args = json!({"xs": [1, 2, 2, 3]});
        assert_eq!(
            ok(&sandbox, c).await,
            json!({"distinct": 3, "last": 3, "map": 2})
        );
        assert_eq!(
            value(&sandbox, vandal).await,
            json!(8 * 1024 * 1024 + 20000)
        );
        assert_eq!(
            value(&sandbox, pristine).await,
            json!(["undefined", null, "function", true, "function", "{\"a\":1}"])
        );
    }
    // After calls stopped by their deadline and by their heap, the same.
    let mut c = call("export default () => { globalThis.leak = 1; for (;;) {} }");
    c.limits.timeout_ms = 50;
    let e = sandbox.run(c).await.expect_err("times out");
    assert_eq!(e.code(), "TIMEOUT");
    let mut c = call(
        "export default () => { globalThis.leak = 1; const a = []; for (;;) a.push('y'.repeat(1000) + a.length); }",
    );
    c.limits.memory_bytes = 4 * 1024 * 1024;
    let e = sandbox.run(c).await.expect_err("runs out of memory");
    assert_eq!(e.code(), "MEMORY_LIMIT");
    assert_eq!(
        value(&sandbox, pristine).await,
        json!(["undefined", null, "function", true, "function", "{\"a\":1}"])
    );
    // Medium-sized blocks (arrays of 1,000 elements, 16 KB each) in the worker's heap: 32 MB
    // of them pass a 32 MiB limit only with room to spare, and do with 64 MiB (a larger heap
    // than the worker ran before), and the next call is as clean.
    let arrays = "export default () => { const all = []; for (let i = 0; i < 2000; i++) all.push(new Array(1000).fill(i)); return all.length; }";
    let e = sandbox.run(call(arrays)).await.expect_err("over 32 MiB");
    assert_eq!(e.code(), "MEMORY_LIMIT");
    let mut c = call(arrays);
    c.limits.memory_bytes = 64 * 1024 * 1024;
    assert_eq!(ok(&sandbox, c).await, json!(2000));
    assert_eq!(
        value(&sandbox, pristine).await,
        json!(["undefined", null, "function", true, "function", "{\"a\":1}"])
    );
    // The Function constructor found by reflection, and names built from pieces: there too.
    let reflective = "export default () => {
  const all = Object.getOwnPropertyDescriptors(Object.getPrototypeOf(() => 0));
  const F = Object.values(all).find((d) => typeof d.value === 'function' && d.value.name === 'Fun' + 'ction').value;
  return F('return [new Ma' + 'p().size, new Da' + 'te().getTime()]')();
}";
    let mut c = call(reflective);
    c.now_ms = 42;
    assert_eq!(ok(&sandbox, c).await, json!([0, 42]));
    let mut c = call("export default () => [typeof Date, Date.now(), new Date().getTime()]");
    c.now_ms = 1_700_000_000_000;
    assert_eq!(
        ok(&sandbox, c).await,
        json!(["function", 1_700_000_000_000u64, 1_700_000_000_000u64])
    );
    still_works(&sandbox).await;
}

/// `script_cpu_us` is the CPU the script's own function used: a busy loop's grows with its
/// work and stays within the call's time on its worker; a trivial function's is next to nothing.
#[tokio::test]
async fn the_scripts_own_cpu_is_measured_where_it_runs() {
    let sandbox = Sandbox::new(1);
    let busy = |n: u64| {
        let mut c = call(
            "export default (args) => { let x = 0; \
             for (let i = 0; i < args.n; i++) x = (x * 31 + i) % 1000003; return x; }",
        );
        c.args = json!({ "n": n });
        c.limits.timeout_ms = 10_000;
        c
    };
    let small = sandbox.run(busy(100_000)).await.unwrap();
    let large = sandbox.run(busy(1_000_000)).await.unwrap();
    assert!(small.script_cpu_us > 0, "{}", small.script_cpu_us);
    assert!(
        large.script_cpu_us > 5 * small.script_cpu_us,
        "ten times the work: {} µs against {} µs",
        large.script_cpu_us,
        small.script_cpu_us
    );
    assert!(
        large.script_cpu_us <= large.elapsed_us,
        "{} µs of CPU in {} µs on the worker",
        large.script_cpu_us,
        large.elapsed_us
    );
    let trivial = sandbox
        .run(call("export default (args) => args.n + 1"))
        .await
        .unwrap();
    assert!(
        trivial.script_cpu_us < 1_000,
        "a trivial function: {} µs",
        trivial.script_cpu_us
    );
}
