//! The command line of the tool commands: `hilo audit` and `hilo tools …` (list, search,
//! stats, import). Part of [`super`]; kept apart so that no file of the command line grows
//! past what one reads in a sitting.

use clap::{Args, Subcommand};

use crate::input::{Since, parse_since};

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only the calls of this execution (its full id, as `hilo executions list` shows it)
    #[arg(long, value_name = "ID")]
    pub execution: Option<String>,
    /// Only the calls of this tool
    #[arg(long, value_name = "TOOL")]
    pub tool: Option<String>,
    /// Only calls since then: a duration ago (30m, 24h, 7d) or an RFC 3339 time
    #[arg(long, value_name = "DURATION|TIME", value_parser = parse_since)]
    pub since: Option<Since>,
    /// At most N rows (the oldest N that match)
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
    /// Print a JSON array of the audit entries
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ToolsCommand {
    /// List every known tool (built-in, hilo.toml, MCP, extensions) by name.
    List {
        /// Print a JSON array of the tools
        #[arg(long)]
        json: bool,
        /// Also the tools of this workflow file's own `tools:` (HTTP tools and every
        /// operation of its OpenAPI documents)
        #[arg(long, value_name = "FILE")]
        workflow: Option<std::path::PathBuf>,
    },
    /// Show one tool: class, source, description and every input field with its type.
    Show {
        /// The tool's name (`hilo tools list` shows them)
        #[arg(value_name = "NAME")]
        name: String,
        /// Look in this workflow file's own `tools:` too
        #[arg(long, value_name = "FILE")]
        workflow: Option<std::path::PathBuf>,
        /// Print the tool as JSON (its input schema whole)
        #[arg(long)]
        json: bool,
    },
    /// Find tools whose name or description contains every word of QUERY (case-insensitive);
    /// name matches first.
    Search {
        /// Words every match contains
        #[arg(required = true, value_name = "QUERY")]
        query: Vec<String>,
        /// Print a JSON array of the matching tools, best first
        #[arg(long)]
        json: bool,
    },
    /// Per tool usage from the audit trail: calls, success rate, p50/p95 latency, cached calls
    /// (compensations not counted).
    Stats {
        /// The period: a duration ago (30m, 24h, 7d) or an RFC 3339 time
        #[arg(long, value_name = "DURATION|TIME", default_value = "7d", value_parser = parse_since)]
        since: Since,
        /// Print a JSON array: one object per tool
        #[arg(long)]
        json: bool,
    },
    /// Show the tools an OpenAPI 3.0/3.1 document gives (name, method, path, class, input
    /// fields) and every operation it skips, with the reason. Changes nothing: reads the
    /// document (a URL only when given as FILE|URL), needs no database.
    Import(ImportArgs),
}

/// `hilo tools import`: what an OpenAPI document's operations become as tools.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The OpenAPI 3.0 or 3.1 document (YAML or JSON): a file, or an http(s) URL to fetch
    #[arg(value_name = "FILE|URL")]
    pub source: String,
    /// Tools are named PREFIX.<operationId> (letters, digits, `_`, `-`, `.`)
    #[arg(long, value_name = "PREFIX")]
    pub prefix: String,
    /// Only these operations: operationIds, tool names or tags, comma-separated or repeated
    #[arg(long, value_name = "ID|TAG,…", value_delimiter = ',')]
    pub operations: Vec<String>,
    /// The URL calls go to, instead of the document's `servers`
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Print one JSON object: the document, its tools, skipped operations, unmatched filters
    #[arg(long)]
    pub json: bool,
}
