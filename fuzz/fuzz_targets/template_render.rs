//! Fuzz target: an arbitrary Jinja template rendered against an arbitrary state document, the
//! way the engine renders them (pre-scanned and compiled under hilo's limits, rendered with
//! fuel, guarded filters and a capped output). Nothing may panic, abort, hang or run out of
//! memory: run with `-rss_limit_mb=2048 -timeout=10`.
//!
//! Input: `<template> NUL <state JSON>` (a state that is not JSON becomes a string).
//!
//! Run: `cd fuzz && cargo +nightly fuzz run template_render /tmp/corpus/template_render seeds/template_render -- -max_total_time=600 -rss_limit_mb=2048 -timeout=10`
#![no_main]

use std::sync::LazyLock;

use hilo_core::expr::limits::MAX_TEMPLATE_BYTES;
use hilo_core::expr::{render_template, template_env};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

static ENV: LazyLock<minijinja::Environment<'static>> = LazyLock::new(template_env);

fuzz_target!(|data: &[u8]| {
    let (tmpl, state) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"{}"[..]),
    };
    let Ok(tmpl) = std::str::from_utf8(tmpl) else {
        return;
    };
    let state: Value = serde_json::from_slice(state)
        .unwrap_or_else(|_| json!({"input": String::from_utf8_lossy(state)}));
    if let Ok(out) = render_template(&ENV, tmpl, &state) {
        assert!(out.len() <= MAX_TEMPLATE_BYTES);
    }
});
