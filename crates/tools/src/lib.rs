//! hilo-tools: the tool executor — the one path by which hilo changes the outside world — and
//! the tools shipped with hilo.
//!
//! - [`executor`]: [`Executor`], the [`hilo_core::tool::ToolExecutor`] the engine and agents
//!   call: validation, access, rate limits, cache, circuit breakers, timeouts, audit, metrics.
//! - [`audit`]: the batching audit writer; [`redact`]: personal data, credential shapes and
//!   the process's known secret values ([`redact::Redactor`]) out of audit rows and logs.
//! - [`limits`]: token buckets (`governor`) and circuit breakers; [`cache`]: the TTL cache.
//! - [`http`]: `http_request`, declarative HTTP tools and the SSRF guard; [`builtin`]:
//!   `transform_json`, `filter_list`; [`secrets`]: where `secrets.NAME` values come from,
//!   how a call reports the secrets it used, and the [`secrets::Scrubber`] that takes them
//!   (in every encoding) out of what the call returns.
//! - [`email`]: `send_email` (SMTP or an `.eml` outbox).
//! - [`vault`]: the credential store (AES-256-GCM under a master key), a [`Secrets`] source.
//! - [`sql`]: `query_database` and `execute_sql`, with the `sqlparser` statement guard.
//! - [`mcp`]: the tools of MCP servers (`[mcp.servers.NAME]`), through `rmcp`.
//! - [`openapi`]: OpenAPI 3.0/3.1 documents read into operations (names, classes, input
//!   schemas, parameters, security), a call's arguments into the request parts, and
//!   `OpenApiTool`, an operation called through the executor's HTTP client.
//! - [`connections`]: OAuth 2.0 connections (`[connections.NAME]`): tokens bought with the
//!   client credentials grant, kept fresh per tenant.
//! - [`code`]: the process's sandbox ([`code::Scripts`]: `code` nodes, `run_javascript`,
//!   code agents) with each tenant's limits, and the validator's syntax check of scripts.

// A library logs through `tracing`; only the binary prints (ARCHITECTURE.md, Logging).
#![deny(clippy::print_stderr, clippy::print_stdout)]
// `NodeError` is the tool protocol's error (code, message, detail), shared with the engine and
// returned at most once per call: boxing it would buy nothing.
#![allow(clippy::result_large_err)]

pub mod audit;
pub mod builtin;
pub mod cache;
pub mod code;
pub mod connections;
pub mod email;
pub mod executor;
pub mod http;
pub mod limits;
pub mod mcp;
pub mod openapi;
pub use hilo_core::redact;
pub mod secrets;
pub mod sql;
#[cfg(feature = "test-util")]
pub mod testserver;
#[cfg(feature = "test-util")]
pub mod testsmtp;
pub mod vault;

pub use audit::{AuditSink, AuditWatcher};
pub use email::EmailSettings;
pub use executor::{
    Executor, ExecutorBuilder, ExecutorConfig, TenantTools, ToolSettings, ToolsError,
};
pub use http::HttpSettings;
pub use secrets::{EnvSecrets, Secrets};
pub use sql::DatabaseConfig;
pub use vault::{Vault, VaultError};
