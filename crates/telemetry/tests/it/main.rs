//! hilo-telemetry's integration tests: executions traced end to end, exported over the real
//! OTLP/HTTP protobuf wire to an in-process receiver ([`receiver`]).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod caller;
mod child;
mod genai;
mod phoenix;
mod receiver;
mod restart;
