//! Fuzz target: an arbitrary JMESPath expression against an arbitrary state document, the way
//! the engine evaluates them (compiled under hilo's limits, evaluated within the work budget,
//! converted to JSON within the size and depth limits). Nothing may panic, abort, hang or run
//! out of memory: run with `-rss_limit_mb=2048 -timeout=10`.
//!
//! Input: `<expression> NUL <state JSON>` (a state that is not JSON becomes a string).
//!
//! Run: `cd fuzz && cargo +nightly fuzz run expr_eval /tmp/corpus/expr_eval seeds/expr_eval -- -max_total_time=600 -rss_limit_mb=2048 -timeout=10`
#![no_main]

use hilo_core::expr::{compile_jmespath, search_json, search_var, to_var};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

fuzz_target!(|data: &[u8]| {
    let (expr, state) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"{}"[..]),
    };
    let Ok(expr) = std::str::from_utf8(expr) else {
        return;
    };
    let state: Value = serde_json::from_slice(state)
        .unwrap_or_else(|_| json!({"input": String::from_utf8_lossy(state)}));
    let Ok(compiled) = compile_jmespath(expr) else {
        return;
    };
    let Ok(var) = to_var(&state) else {
        return;
    };
    if let Ok(v) = search_json(&compiled, &var) {
        // Every result can be written and read back.
        let text = serde_json::to_string(&v).expect("a result serializes");
        let again: Value = serde_json::from_str(&text).expect("a result parses back");
        assert_eq!(again, v);
    }
    let _ = search_var(&compiled, &var).map(|r| r.is_truthy());
});
