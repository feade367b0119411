//! Integration tests of hilo-core: validation rules, round trips, the JSON Schema, examples.

// Tests fail by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod examples;
mod limits;
mod roundtrip;
mod rules;
