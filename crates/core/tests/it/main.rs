//! Integration tests of hilo-core: validation rules, round trips, the JSON Schema, examples.

mod examples;
mod roundtrip;
mod rules;
