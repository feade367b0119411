//! The command line: every subcommand, flag and help text of `hilo` (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::input::{Since, parse_since};

mod record;
mod tools;

pub use record::{EvalArgs, EvalCommand, ForkArgs};
pub use tools::{AuditArgs, ImportArgs, ToolsCommand};

/// `hilo --help`'s closing text: where data lives, the conventions, and the exit codes of every
/// command (as `main` maps failures; keep them in step with `exit.rs` and docs/cli.md).
const AFTER_HELP: &str = "Data lives in one SQLite file: --db PATH (or HILO_DB); by default hilo.db in your data directory. Processes on many machines share one PostgreSQL database: --db postgres://USER@HOST/DB.

Every command that prints data takes --json (one JSON document on stdout). Time filters (--since, --until) take a duration ago (30s, 15m, 24h, 7d) or an RFC 3339 time. Colours follow --color, NO_COLOR and the terminal.

The log (warnings and errors of hilo's libraries) goes to stderr: -q keeps errors only, -v adds info, -vv debug, -vvv trace. RUST_LOG, when set, decides instead (RUST_LOG=info, RUST_LOG=hilo_engine=debug).

Exit codes:
  0  success (for executions: succeeded)
  1  the command failed: a store or network error, a conflict, something not found;
     for executions: failed, compensated or cancelled
  2  invalid input: a wrong flag or argument, a definition that does not validate,
     an unreadable file, an input that does not match its schema
  3  an execution waits for a human (`hilo answer` continues it)
  4  an execution was handed over to a person";

#[derive(Debug, Parser)]
#[command(
    name = "hilo",
    version,
    about = "Durable AI-agent workflows with humans in the loop",
    long_about = "hilo runs workflows of agents, tools and people durably.\n\n\
Workflows are YAML or JSON files (see `hilo schema` for editor support). Start with\n  \
hilo validate examples/*.yaml      check definitions, every error at once\n  \
hilo graph examples/order_returns.yaml   draw one as a Mermaid flowchart\n  \
hilo workflows import examples/*.yaml    store them, versioned",
    after_help = AFTER_HELP
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Database: a SQLite file path or sqlite: URL, or a postgres:// URL [default: hilo.db in the platform data directory]
    #[arg(long, global = true, env = "HILO_DB", value_name = "PATH|URL")]
    pub db: Option<String>,
    /// Configuration file with extra tools, MCP servers and LLM profiles [default: ./hilo.toml if present]
    #[arg(long, global = true, env = "HILO_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Tenant to act for
    #[arg(long, global = true, env = "HILO_TENANT", default_value = "default")]
    pub tenant: String,
    /// Colours and styles: auto (a terminal, unless NO_COLOR is set), always or never
    #[arg(
        long,
        global = true,
        env = "HILO_COLOR",
        value_enum,
        default_value = "auto"
    )]
    pub color: crate::out::ColorChoice,
    /// How long an execution stays claimed by a process that stops heartbeating (a dead
    /// process's executions are taken over after this)
    #[arg(
        long,
        global = true,
        env = "HILO_LEASE_MS",
        default_value_t = 30_000,
        value_name = "DURATION",
        value_parser = parse_ms_flag
    )]
    pub lease_ms: u64,
    /// Act through a running `hilo serve` instead of the local database (remote mode):
    /// workflows, run, answer, cancel, resume and executions go over its HTTP API
    #[arg(long, global = true, env = "HILO_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// The API key for --server (`hilo keys create` on the server's database)
    #[arg(
        long,
        global = true,
        env = "HILO_API_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
    /// No notes or progress on stderr (errors still), and only errors in the log
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More detail on stderr: -v logs info, -vv debug, -vvv trace (RUST_LOG, when set, decides)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The log's format on stderr: text (for a terminal) or json (one JSON object a line,
    /// for a log collector) [default: hilo.toml's `[log] format`, else text]
    #[arg(
        long,
        global = true,
        env = "HILO_LOG_FORMAT",
        value_enum,
        value_name = "FORMAT"
    )]
    pub log_format: Option<crate::logging::LogFormat>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A workflow file, or a stored workflow as NAME or NAME@VERSION
    #[arg(value_name = "FILE|NAME[@VERSION]")]
    pub target: String,
    /// The execution input: JSON text, or @FILE to read it from a file
    #[arg(long, short, value_name = "JSON|@FILE", default_value = "{}")]
    pub input: String,
    #[command(flatten)]
    pub out: OutArgs,
}

#[derive(Debug, Args)]
pub struct OutArgs {
    /// Print one JSON object: {"execution_id", "status", "output", "error", "nodes"}
    #[arg(long)]
    pub json: bool,
    /// Return at once with the execution id; a worker (`hilo worker`) runs it
    #[arg(long)]
    pub detach: bool,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// Execution id
    pub id: String,
    #[command(flatten)]
    pub out: OutArgs,
}

#[derive(Debug, Args)]
pub struct AnswerArgs {
    /// Execution id
    pub id: String,
    /// The waiting human node (its id, or its key `loop[2]/id` inside a loop)
    pub node: String,
    /// The answer: JSON text, or @FILE; checked against the node's schema
    #[arg(long, short, value_name = "JSON|@FILE")]
    pub input: String,
    #[command(flatten)]
    pub out: OutArgs,
}

#[derive(Debug, Subcommand)]
pub enum ExecutionsCommand {
    /// List executions, newest first.
    List {
        /// Only executions with this status
        #[arg(long, value_parser = ["pending", "running", "waiting", "succeeded", "failed", "compensated", "handed_over", "cancelled"])]
        status: Option<String>,
        /// Only executions of this workflow (its name)
        #[arg(long, value_name = "NAME")]
        workflow: Option<String>,
        /// At most N executions, newest first
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: u32,
        /// Print a JSON array of the executions
        #[arg(long)]
        json: bool,
    },
    /// Show an execution: per node status, attempts, times, errors; pending tasks; the timeline.
    /// Nodes and events are shown a page at a time (1 000 of each by default); the last lines
    /// say how to see the rest.
    Show {
        /// Execution id
        id: String,
        /// Print one JSON object: the execution, its nodes, tasks and events
        #[arg(long)]
        json: bool,
        /// Nodes (in key order) and events shown at most
        #[arg(long, default_value_t = SHOW_LIMIT, value_name = "N",
              value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        /// Show the nodes whose keys come after KEY (the last key of the previous page)
        #[arg(long, value_name = "KEY")]
        after: Option<String>,
        /// Show the events after sequence number SEQ (the last one of the previous page)
        #[arg(long, value_name = "SEQ")]
        events_after: Option<u64>,
    },
    /// Delete the tenant's finished executions (history, checkpoints, tasks) older than this:
    /// a duration (`12h`, `7d`, `2w`) or a number of days (`30`, `0.5`); or, with
    /// --retention, every tenant's past the retention hilo.toml gives it (`[store]
    /// retention`, tiers' `retention`): the sweep `hilo serve` runs every hour, now. In
    /// batches of --batch executions, each a short transaction.
    Prune {
        /// The age: a duration (`12h`, `7d`, `2w`) or a number of days (`30`, `0.5`)
        #[arg(long, value_name = "DURATION|DAYS", value_parser = parse_age_ms,
              required_unless_present = "retention", conflicts_with = "retention")]
        older_than: Option<u64>,
        /// Every tenant, each by its retention in hilo.toml (instead of --older-than)
        #[arg(long)]
        retention: bool,
        /// Executions deleted per transaction
        #[arg(long, value_name = "N", default_value_t = 500,
              value_parser = clap::value_parser!(u32).range(1..=10_000))]
        batch: u32,
        /// Print JSON {"pruned", "before"} ({"pruned"} with --retention)
        #[arg(long)]
        json: bool,
    },
}

/// `hilo bench …`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Write N finished executions (three workflows, tenants t0…, succeeded, failed and
    /// cancelled, created over the last --days days) into --db through the store's own batch
    /// commits: a large history for bench/scale/run. Refuses a database that has them already.
    Populate {
        /// Finished executions to write
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        executions: u64,
        /// Tenants they belong to (t0, t1, …)
        #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
        tenants: u32,
        /// Days their creation times are spread over, ending a minute ago
        #[arg(long, value_name = "DAYS", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
        days: u32,
        /// Executions per batch commit (one transaction on PostgreSQL)
        #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
        batch: u32,
        /// Batches written at once
        #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
        concurrency: u32,
        /// Print JSON {"executions", "tenants", "days", "seconds", "per_second"}
        #[arg(long)]
        json: bool,
    },
}

/// `hilo triggers …`. A trigger is named `WORKFLOW/ID` (`triggers list` shows the names).
#[derive(Debug, Subcommand)]
pub enum TriggersCommand {
    /// Every trigger of the tenant: workflow, type, cron and time zone or webhook path, the
    /// next three fire times, the last fire and its execution, paused or not.
    List {
        /// Print a JSON array of the triggers
        #[arg(long)]
        json: bool,
    },
    /// Pause a trigger: a paused schedule fires no tick, a paused webhook starts nothing.
    Pause {
        /// The trigger, as WORKFLOW/ID (e.g. weekday_report/schedule-1)
        #[arg(value_name = "WORKFLOW/ID")]
        name: String,
        /// Print the trigger as `triggers list --json` shows it
        #[arg(long)]
        json: bool,
    },
    /// Resume a paused trigger. A schedule goes on from its next tick: the ticks that passed
    /// while it was paused do not fire (`triggers backfill` starts them).
    Resume {
        /// The trigger, as WORKFLOW/ID (e.g. weekday_report/schedule-1)
        #[arg(value_name = "WORKFLOW/ID")]
        name: String,
        /// Print the trigger as `triggers list --json` shows it
        #[arg(long)]
        json: bool,
    },
    /// Start a schedule's ticks between two times (both included), skipping the ticks that
    /// fired already. Without --yes, only lists the ticks and what each would do.
    Backfill {
        /// The schedule, as WORKFLOW/ID (e.g. weekday_report/schedule-1)
        #[arg(value_name = "WORKFLOW/ID")]
        name: String,
        /// The first time of the range, RFC 3339 (2025-03-01T00:00:00Z, 2025-03-01T09:00:00+01:00)
        #[arg(long, value_name = "TIME", value_parser = parse_time_ms)]
        from: i64,
        /// The last time of the range, RFC 3339
        #[arg(long, value_name = "TIME", value_parser = parse_time_ms)]
        to: i64,
        /// Start the ticks that have not fired (without it, nothing starts)
        #[arg(long)]
        yes: bool,
        /// With --yes, how long to wait for the started executions to end; those still
        /// running then are left to `hilo worker` (or `hilo serve`), from their checkpoints
        #[arg(long, default_value = "10m", value_name = "DURATION", value_parser = parse_ms_flag)]
        wait: u64,
        /// Print JSON {"trigger", "from", "to", "ticks": [{"tick", "fired", "started",
        /// "status"}], "would_start", "started"}
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check workflow files: structure, graph rules, expressions, templates, tools. Exit 0 when
    /// all are valid, 2 when any is not.
    Validate {
        /// Workflow files (YAML or JSON); `-` reads standard input
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Print one JSON document with every file's result instead of text
        #[arg(long)]
        json: bool,
        /// Download the OpenAPI documents that `tools:` entries name by URL (by default only
        /// files next to the workflow are read, and a URL is an error)
        #[arg(long)]
        fetch: bool,
    },
    /// Draw a workflow as a Mermaid flowchart (paste it into Markdown) or Graphviz DOT.
    Graph {
        /// A workflow file, or a stored workflow as NAME or NAME@VERSION
        #[arg(value_name = "FILE|NAME[@VERSION]")]
        target: String,
        /// The notation of the drawing
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
    },
    /// Print the JSON Schema of the workflow format (for yaml-language-server and editors).
    Schema,
    /// Manage stored, versioned workflows.
    #[command(subcommand)]
    Workflows(WorkflowsCommand),
    /// Run a workflow with an input. Shows each node transition; prints the output.
    /// Exit codes: 0 succeeded; 1 failed, compensated or cancelled; 2 invalid definition or
    /// input; 3 waiting for a human (`hilo answer` continues it); 4 handed over.
    Run(RunArgs),
    /// Continue an execution (after a crash, or one left to workers) in the foreground.
    Resume(ResumeArgs),
    /// Answer a waiting human node and continue the execution in the foreground.
    Answer(AnswerArgs),
    /// Cancel an execution; completed steps are compensated unless --no-compensate.
    Cancel {
        /// Execution id
        id: String,
        /// Stop without compensating the completed steps
        #[arg(long)]
        no_compensate: bool,
        /// Print one JSON object: {"execution_id", "status", "output", "error", "nodes"}
        #[arg(long)]
        json: bool,
    },
    /// Compare two executions node by node: the path each took, statuses, attempts, outputs
    /// (each place that differs, with both sides), model calls, tokens, cost and latency.
    /// Exit code 0 when they match, 1 when they differ, 2 when they cannot be compared (as
    /// diff(1)).
    Diff {
        /// The first execution (A)
        a: String,
        /// The second execution (B)
        b: String,
        /// Print JSON {"a", "b", "same", "path", "output", "output_changes", "nodes"}
        #[arg(long)]
        json: bool,
    },
    /// Run an execution again from its record, against its own workflow version or another
    /// (--version), with every tool, model, script, child and person answered from what was
    /// recorded: nothing is called, nothing is written, nothing costs. Reports whether the
    /// same path, outputs and decisions came out and where it first diverged. With
    /// --workflow and --since, replays that workflow's executions and sums them up. Exit
    /// code 0 same, 1 diverged, 3 the record has no answer for a request, 2 bad input.
    Replay {
        /// Execution id (or --workflow)
        #[arg(required_unless_present = "workflow", conflicts_with = "workflow")]
        id: Option<String>,
        /// Replay against this version of the execution's workflow
        #[arg(long, value_name = "V")]
        version: Option<u64>,
        /// Replay this workflow's executions (with --since)
        #[arg(long, value_name = "NAME", requires = "since")]
        workflow: Option<String>,
        /// With --workflow: executions created since then (7d, 24h, or an RFC 3339 time)
        #[arg(long, value_name = "DURATION|TIME", value_parser = parse_since)]
        since: Option<Since>,
        /// With --workflow: at most this many executions, newest first
        #[arg(long, default_value_t = 1000, value_name = "N")]
        limit: u32,
        /// Print JSON: one execution's report, or {"workflow", "replayed", "same", "diverged", "no_record", "reports"}
        #[arg(long)]
        json: bool,
    },
    /// A new execution from another's record: everything before the fork node whose request
    /// is unchanged is taken from the record (never performed again), the fork node and what
    /// follows run live, with the change asked for: another model or profile for the node, a
    /// recorded output set (only what depends on it runs again), another input or version.
    Fork(ForkArgs),
    /// Score a workflow version on a dataset (JSON Lines: {"name", "input", "fixtures",
    /// "expect"} a line): each case runs live but for the nodes its fixtures answer, is
    /// checked (output, schema, JMESPath assertions, path, cost, latency, a judged rubric)
    /// and reported with pass rate, pass^k, cost and latency; against --baseline, case by
    /// case. Exit code 1 below --threshold. `hilo eval record` makes a dataset from recorded
    /// executions.
    Eval(EvalArgs),
    /// Inspect and prune executions.
    #[command(subcommand)]
    Executions(ExecutionsCommand),
    /// Run executions from the store: new ones started with --detach, timers that are due,
    /// answered tasks, and those of processes that died (after their lease expires).
    Worker {
        /// Executions driven at once
        #[arg(long, default_value_t = 16, value_name = "N")]
        concurrency: usize,
        /// Serve Prometheus metrics (`/metrics`) and a liveness check (`/health`) on this
        /// address, e.g. `127.0.0.1:9464` (no API key: bind it to a private address)
        #[arg(long, env = "HILO_WORKER_METRICS_ADDR", value_name = "HOST:PORT")]
        metrics_addr: Option<String>,
    },
    /// Schedules and webhooks that start workflows by themselves (the `triggers:` of each
    /// workflow's active version): list them, pause or resume one, backfill a schedule.
    #[command(subcommand)]
    Triggers(TriggersCommand),
    /// Measure the engine: per-step cost with and without persistence, fan-out, throughput,
    /// stored bytes, resume time, peak memory, the code sandbox's cost per call. Median of 5
    /// runs after a warm-up. `hilo bench populate` writes a large history instead.
    #[command(args_conflicts_with_subcommands = true)]
    Bench {
        #[command(subcommand)]
        populate: Option<BenchCommand>,
        /// One JSON object keyed by scenario
        #[arg(long)]
        json: bool,
        /// Fewer repetitions (for smoke tests)
        #[arg(long, hide = true)]
        quick: bool,
        /// Only the scenarios whose key (as in `--json`) starts with this, e.g.
        /// `chain100_memory` (for profiling one scenario)
        #[arg(long, value_name = "KEY")]
        only: Option<String>,
        /// Measured runs per scenario (default 5; the median is reported)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
        reps: Option<u32>,
        /// The size scenarios (`size_…`): the seconds one size may take; a size that would
        /// take longer is reported as skipped. The code scenarios (`code_…`): the seconds
        /// after which a cell stops repeating
        #[arg(long, value_name = "SECONDS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
        max_seconds: u64,
    },
    /// LLM spending from the cost ledger: calls, tokens and USD per period and per model,
    /// workflow or node; with --execution, every call of one execution and why its model
    /// was chosen.
    Costs(CostsArgs),
    /// Run the customer-support demo end to end on the embedded default, no API key: a local
    /// semantic router classifies each message; returns are looked up in an example SQLite
    /// shop, created (compensable) and confirmed into the file outbox; a second message
    /// shows a failure being compensated, a third a handover to a person.
    Demo {
        /// Where the demo's shop database and outbox go (default: a `demo` folder in hilo's
        /// data directory)
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Print one JSON object: the folder, each run's outcome and path, the LLM cost
        #[arg(long)]
        json: bool,
    },
    /// What agents remember: the episodes of reasoning and planner runs (goal, plan, outcome,
    /// cost) that planners recall for similar goals.
    #[command(subcommand)]
    Memory(MemoryCommand),
    /// The knowledge base: documents (Markdown, text, HTML) in named collections, cut into
    /// chunks and found by hybrid search (full text and, with an embedding model, vectors).
    #[command(subcommand)]
    Kb(KbCommand),
    /// List the audit trail of tool calls (inputs and outputs with personal data redacted),
    /// oldest first.
    Audit(AuditArgs),
    /// List, search and measure the tools workflows and agents can call.
    #[command(subcommand)]
    Tools(ToolsCommand),
    /// Keep credentials for declarative tools and SMTP (`{{ secrets.NAME }}`), per tenant,
    /// encrypted with AES-256-GCM under a master key (HILO_MASTER_KEY, or a key file made with
    /// mode 0600 next to the database; HILO_MASTER_KEY_FILE moves it).
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// OAuth 2.0 connections of OpenAPI tools (`[connections.NAME]` in hilo.toml): list them,
    /// or check one by obtaining a token (never printed).
    #[command(subcommand)]
    Connections(ConnectionsCommand),
    /// Serve the HTTP API (REST + Server-Sent Events under /api/v1, OpenAPI at
    /// /api/v1/openapi.json) on the same store, with the worker embedded. Ctrl-C or SIGTERM
    /// stops it gracefully: unfinished executions are handed back, checkpointed.
    Serve {
        /// Address to listen on [default: [server] addr, else 127.0.0.1:8080]
        #[arg(long, value_name = "HOST:PORT")]
        addr: Option<String>,
        /// Executions the embedded worker drives at once (0: none) [default: [server] workers, else 8]
        #[arg(long, value_name = "N")]
        workers: Option<usize>,
        /// Serve the whole process's Prometheus metrics (`/metrics`, every tenant's) and a
        /// liveness check (`/health`) on this address too, e.g. `127.0.0.1:9464` (no API key:
        /// bind it to a private address) [default: [server] metrics_addr, else off]
        #[arg(long, value_name = "HOST:PORT")]
        metrics_addr: Option<String>,
    },
    /// Serve the tenant's exposed workflows (`expose: [mcp]`) as MCP tools over stdio, for an
    /// MCP client that starts hilo itself (Claude Desktop, an IDE): one request per line on
    /// stdin, answers on stdout, the log on stderr. Runs executions with the worker embedded,
    /// on the same store as `hilo serve`; stops when stdin closes.
    Mcp {
        /// Executions the embedded worker drives at once (0: none) [default: [server] workers, else 8]
        #[arg(long, value_name = "N")]
        workers: Option<usize>,
    },
    /// API keys of the HTTP API (for --tenant): shown once when created, stored hashed.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// A human agent's inbox: the handed-over conversations and approvals assigned to them or
    /// claimed (through --server).
    Inbox(InboxArgs),
    /// Claim a handed-over conversation (or, with --task, a human task) for a human agent.
    Claim(ClaimArgs),
    /// Reply to the customer in a conversation the agent has claimed.
    Reply(ReplyArgs),
    /// Resolve a conversation the agent has claimed (it ends).
    Resolve(ResolveArgs),
    /// Send a conversation back to the AI with a note its workflow gets as `input.note`.
    BackToAi(BackToAiArgs),
    /// Humans in the loop: conversations, human agents, the queue, KPIs (through --server).
    #[command(subcommand)]
    Hil(HilCommand),
    /// Start a project in DIR (default: here): a commented hilo.toml, a workflow, a test input,
    /// the workflow JSON Schema for editors and a README of next steps. It runs as written, with
    /// no API key. Exit 2, writing nothing, if a file exists (unless --force).
    Init(crate::init::InitArgs),
    /// Print a shell completion script, e.g. `hilo completions bash > ~/.local/share/bash-completion/completions/hilo`.
    Completions {
        /// The shell to complete for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct AgentArg {
    /// The human agent acting (id or e-mail)
    #[arg(long, env = "HILO_AGENT", value_name = "ID|EMAIL")]
    pub agent: String,
}

#[derive(Debug, Args)]
pub struct InboxArgs {
    #[command(flatten)]
    pub agent: AgentArg,
    /// Print JSON: the inbox's conversations and tasks
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ClaimArgs {
    /// Conversation id (or task id `<execution id>.<node key>` with --task)
    pub id: String,
    #[command(flatten)]
    pub agent: AgentArg,
    /// The id is a human task's, not a conversation's
    #[arg(long)]
    pub task: bool,
    /// Print JSON: the conversation (or task) as it is now
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReplyArgs {
    /// Conversation id
    pub id: String,
    /// The reply's text
    pub text: String,
    #[command(flatten)]
    pub agent: AgentArg,
    /// Print JSON: the conversation (or task) as it is now
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// Conversation id
    pub id: String,
    #[command(flatten)]
    pub agent: AgentArg,
    /// Why, for the record
    #[arg(long)]
    pub note: Option<String>,
    /// Print JSON: the conversation (or task) as it is now
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BackToAiArgs {
    /// Conversation id
    pub id: String,
    #[command(flatten)]
    pub agent: AgentArg,
    /// What the AI needs to know to go on (its workflow gets it as `input.note`)
    #[arg(long)]
    pub note: String,
    /// Print JSON: the conversation (or task) as it is now
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum MemoryCommand {
    /// List the tenant's episodes, newest first.
    Episodes {
        /// Only `reasoning` or only `planner` runs
        #[arg(long, value_parser = ["reasoning", "planner"])]
        agent: Option<String>,
        /// Only runs of this workflow
        #[arg(long)]
        workflow: Option<String>,
        /// Only runs that reached their goal (`--achieved`) or that did not (`--failed`)
        #[arg(long, conflicts_with = "failed")]
        achieved: bool,
        /// Only runs that did not reach their goal
        #[arg(long)]
        failed: bool,
        /// How many (newest first)
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10000))]
        limit: u32,
        /// Print a JSON array of the episodes
        #[arg(long)]
        json: bool,
    },
    /// Show one episode: its goal, plan, steps and outcome.
    Episode {
        /// The episode's id (`<execution>:<node key>:<attempt>`)
        id: String,
        /// Print the episode as one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Forget a customer: delete their conversations, messages, queue items, the executions
    /// that answered them (history, checkpoints, tool-call audit) and those runs' episodes.
    /// The erasure is recorded without the customer id (`hilo memory erasures`). Refused while
    /// one of those executions is still running.
    Forget {
        /// The customer's id, as conversations carry it (`customer_id`)
        #[arg(long, value_name = "ID")]
        customer: String,
        /// Print JSON {"customer", "tenant", "forgotten": {counts}}
        #[arg(long)]
        json: bool,
    },
    /// The tenant's erasures, newest first: when, who asked, what was deleted.
    Erasures {
        /// How many (newest first)
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10000))]
        limit: u32,
        /// Print a JSON array of the erasures
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KbCommand {
    /// Add documents to a collection (created on first use): a file, every Markdown, text
    /// and HTML file under a folder, or text from stdin (`-`). Re-adding an unchanged
    /// document does nothing; a changed one replaces its chunks.
    Add {
        /// The collection's name
        collection: String,
        /// A file, a folder, or `-` for stdin
        #[arg(value_name = "FILE|DIR|-")]
        path: String,
        /// Metadata of every document added (repeatable), filterable in searches
        #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        meta: Vec<(String, String)>,
        /// How to read the file: markdown, text, html or pdf (its text extracted) [default: by extension; stdin: markdown]
        #[arg(long, value_parser = ["markdown", "text", "html", "pdf"])]
        format: Option<String>,
        /// The source name of stdin text (its identity in the collection)
        #[arg(long, value_name = "NAME", default_value = "stdin")]
        name: String,
        /// Most characters per chunk
        #[arg(long, value_name = "CHARS", default_value_t = 1000)]
        chunk_size: usize,
        /// Characters a chunk repeats from the end of the one before
        #[arg(long, value_name = "CHARS", default_value_t = 150)]
        chunk_overlap: usize,
        /// Print JSON: each document added, replaced or unchanged, with its chunks
        #[arg(long)]
        json: bool,
    },
    /// The tenant's collections, or the documents of one.
    List {
        /// List this collection's documents instead of the collections
        collection: Option<String>,
        /// Print JSON: the collections, or the collection's documents
        #[arg(long)]
        json: bool,
    },
    /// One document: its metadata and chunks.
    Show {
        /// The document's id (`hilo kb list COLLECTION` shows them)
        #[arg(value_name = "DOC")]
        doc: String,
        /// Print the document and its chunks as one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Remove a document, or a whole collection.
    Remove {
        /// The document's id
        #[arg(
            value_name = "DOC",
            required_unless_present = "collection",
            conflicts_with = "collection"
        )]
        doc: Option<String>,
        /// Remove this collection and every document in it
        #[arg(long, value_name = "COLLECTION")]
        collection: Option<String>,
        /// Print JSON {"removed", ...}
        #[arg(long)]
        json: bool,
    },
    /// Search a collection: full text and vectors fused by reciprocal rank (hybrid), or one
    /// of them. Without an embedding model, full text only.
    Search {
        /// The collection to search
        collection: String,
        /// What to look for, in plain words
        query: String,
        /// How many hits
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
        top_k: u32,
        /// Leave out hits scoring less (hybrid: 1.0 = first in every list; vector: cosine;
        /// text: the backend's full-text score)
        #[arg(long, value_name = "S")]
        min_score: Option<f64>,
        /// Only documents with this metadata (repeatable: all must hold)
        #[arg(long = "filter", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        filter: Vec<(String, String)>,
        /// hybrid (both lists fused), text (full text only) or vector (embeddings only)
        #[arg(long, default_value = "hybrid", value_parser = ["hybrid", "text", "vector"])]
        mode: String,
        /// Print JSON: the hits with their scores and provenance
        #[arg(long)]
        json: bool,
    },
    /// Keep a collection's documents only so long after they were last added (`hilo kb
    /// expire` and `hilo serve`'s hourly sweep delete older ones, each sweep recorded as an
    /// erasure), or keep them until removed (`off`).
    Retention {
        /// The collection
        collection: String,
        /// How long: `90d`, `12h`, … or `off`
        #[arg(value_name = "AGE|off")]
        age: String,
        /// Print JSON {"collection", "retention_ms"}
        #[arg(long)]
        json: bool,
    },
    /// Delete now the documents past their collection's retention (what `hilo serve` does
    /// every hour); each collection that loses documents is recorded as an erasure.
    Expire {
        /// Print JSON {"expired": [{"collection", "documents", "chunks"}]}
        #[arg(long)]
        json: bool,
    },
}

/// `KEY=VALUE`.
fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

#[derive(Debug, Subcommand)]
pub enum HilCommand {
    /// Automation rate, escalation rate, time to first human response, resolution time, per
    /// workflow.
    Stats {
        /// Conversations created since then: a duration ago (30m, 24h, 7d) or an RFC 3339
        /// time [default: 30 days ago]
        #[arg(long, value_name = "DURATION|TIME", value_parser = parse_since)]
        since: Option<Since>,
        /// … and before then: a duration ago or an RFC 3339 time [default: now]
        #[arg(long, value_name = "DURATION|TIME", value_parser = parse_since)]
        until: Option<Since>,
        /// Print JSON: the KPIs per workflow and in all
        #[arg(long)]
        json: bool,
    },
    /// The queue: handed-over conversations and tasks no agent holds yet, in order.
    Queue {
        /// Print JSON: the queued conversations and tasks
        #[arg(long)]
        json: bool,
    },
    /// Human agents.
    #[command(subcommand)]
    Agents(AgentsCommand),
    /// Conversations, newest first.
    Conversations {
        /// Only conversations with this status
        #[arg(long, value_parser = ["new", "ai_processing", "finished", "handover", "pending_human", "human_active", "resolved", "back_to_ai"])]
        status: Option<String>,
        /// Only conversations held by this human agent
        #[arg(long, value_name = "ID")]
        agent: Option<String>,
        /// At most N conversations, newest first
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: u32,
        /// Print JSON: the conversations
        #[arg(long)]
        json: bool,
    },
    /// One conversation: status, handover context, messages and transitions.
    Show {
        /// Conversation id
        id: String,
        /// Print JSON {"conversation", "messages", "transitions"}
        #[arg(long)]
        json: bool,
    },
    /// Give a claimed or assigned conversation back to the queue.
    Release {
        /// Conversation id
        id: String,
        #[command(flatten)]
        agent: AgentArg,
        /// Why, for the record
        #[arg(long)]
        note: Option<String>,
        /// Print JSON: the conversation as it is now
        #[arg(long)]
        json: bool,
    },
    /// Transfer a conversation to another agent (by its holder, or by a supervisor: reassign).
    Transfer {
        /// Conversation id
        id: String,
        /// Who asks
        #[arg(long, value_name = "ID|EMAIL")]
        by: String,
        /// Who gets it (id or e-mail)
        #[arg(
            long,
            value_name = "ID|EMAIL",
            required_unless_present = "skills",
            conflicts_with = "skills"
        )]
        to: Option<String>,
        /// Or: back to the queue for these skills (comma-separated), routed to whoever has
        /// them all
        #[arg(long, value_name = "SKILL,…", value_delimiter = ',')]
        skills: Vec<String>,
        /// Why, for the record
        #[arg(long)]
        reason: Option<String>,
        /// Print JSON: the conversation as it is now
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// Every agent of the tenant with status, skills and load.
    List {
        /// Print JSON: the agents
        #[arg(long)]
        json: bool,
    },
    /// Create or update an agent.
    Set {
        /// The agent's id
        id: String,
        /// The agent's name, as customers and colleagues see it
        #[arg(long)]
        name: String,
        /// The agent's e-mail address (commands may name the agent by it)
        #[arg(long)]
        email: String,
        /// Skills the queue routes by, comma-separated
        #[arg(long, value_delimiter = ',')]
        skills: Vec<String>,
        /// Conversations and tasks the agent holds at once
        #[arg(long, default_value_t = 5, value_name = "N")]
        capacity: u32,
        /// Whether the agent takes work now
        #[arg(long, value_parser = ["online", "away", "offline"], default_value = "offline")]
        status: String,
        /// Print JSON: the agent as stored
        #[arg(long)]
        json: bool,
    },
    /// Set an agent's status (online takes queued work at once).
    Status {
        /// The agent's id
        id: String,
        /// The new status
        #[arg(value_parser = ["online", "away", "offline"])]
        status: String,
        /// Print JSON: the agent as it is now
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key for --tenant and print it (only this once).
    Create {
        /// What the key may do, comma-separated: read, execute, admin (admin implies execute,
        /// execute implies read)
        #[arg(long, value_delimiter = ',', default_value = "read,execute")]
        scopes: Vec<String>,
        /// A label to recognise the key by
        #[arg(long, default_value = "api")]
        name: String,
        /// The human agent (id) the key belongs to: it acts as that agent only (create the
        /// agent first: `hilo hil agents set`)
        #[arg(long, value_name = "ID")]
        agent: Option<String>,
        /// Print JSON {"id", "key", "tenant", "scopes"}
        #[arg(long)]
        json: bool,
    },
    /// List the keys of --tenant (ids, names, scopes; never the keys).
    List {
        /// Print a JSON array of the keys (never the keys themselves)
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key of --tenant by its id (`key_…`); requests with it get 401 within seconds.
    Revoke {
        /// The key's id (`key_…`, as `hilo keys list` shows it)
        id: String,
        /// Print JSON {"id", "tenant", "revoked"}
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CostPeriod {
    Hourly,
    Daily,
    Monthly,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CostGroup {
    Model,
    Workflow,
    Node,
}

#[derive(Debug, Args)]
pub struct CostsArgs {
    /// The size of each row's period (UTC)
    #[arg(long, value_enum, default_value_t = CostPeriod::Daily)]
    pub period: CostPeriod,
    /// What each row is about
    #[arg(long, value_enum, default_value_t = CostGroup::Model)]
    pub by: CostGroup,
    /// Only calls since then: a duration ago (30m, 24h, 7d) or an RFC 3339 time
    #[arg(long, value_name = "DURATION|TIME", default_value = "30d", value_parser = parse_since)]
    pub since: Since,
    /// Every call of this execution instead: model, purpose, tokens, cost, latency, decision
    #[arg(long, value_name = "ID")]
    pub execution: Option<String>,
    /// Print JSON: the rows (or the execution's calls)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConnectionsCommand {
    /// Every configured connection (grant, endpoint, client, scopes) and every granted one
    /// of the tenant (entity, status, scopes, expiry, last refresh, last error; never a token).
    List {
        /// Print a JSON array of the connections
        #[arg(long)]
        json: bool,
    },
    /// Connect NAME for the tenant: with the authorization code grant, print the URL where a
    /// person grants it (`hilo serve` receives the callback at `[server] public_url`); with
    /// client credentials, obtain a token to check the settings. No token is ever printed.
    Connect {
        /// The connection's name (`[connections.NAME]`)
        name: String,
        /// One end user's connection (e.g. a customer id) instead of the tenant's own
        #[arg(long, value_name = "E")]
        entity: Option<String>,
        /// Print JSON {"connection", "tenant", "entity", "grant", "url"|"ok"}
        #[arg(long)]
        json: bool,
    },
    /// Forget the tenant's (or an end user's) tokens of NAME, revoking them at the
    /// authorization server when it has a revocation endpoint.
    Revoke {
        /// The connection's name
        name: String,
        /// One end user's connection instead of the tenant's own
        #[arg(long, value_name = "E")]
        entity: Option<String>,
        /// Print JSON {"connection", "tenant", "entity", "revoked"}
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Store NAME; the value is read from standard input (one trailing newline is dropped),
    /// e.g. `printf %s "$TOKEN" | hilo secrets set shop_token`.
    Set {
        /// The secret's name (`{{ secrets.NAME }}` in tool definitions)
        name: String,
        /// Print JSON {"name", "tenant", "key_id"} (never the value)
        #[arg(long)]
        json: bool,
    },
    /// List the names of the stored secrets (never their values).
    List {
        /// Print a JSON array of the names, key ids and times (never the values)
        #[arg(long)]
        json: bool,
    },
    /// Remove NAME.
    Delete {
        /// The secret's name
        name: String,
        /// Print JSON {"name", "tenant", "deleted"}
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkflowsCommand {
    /// Validate and store workflow files. A (name, version) is immutable: the same content
    /// again is a no-op, different content under an existing version is refused.
    Import {
        /// Workflow files (YAML or JSON)
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Keep the active version as it is (by default a version newer than all stored ones becomes active)
        #[arg(long, conflicts_with = "activate")]
        no_activate: bool,
        /// Make each imported version active, even if it is older
        #[arg(long)]
        activate: bool,
        /// Download the OpenAPI documents that `tools:` entries name by URL (stored with the
        /// version; by default only files next to the workflow are read)
        #[arg(long)]
        fetch: bool,
        /// Print a JSON array: one object per file {"file", "workflow", "version", "outcome", "active", "error"}
        #[arg(long)]
        json: bool,
    },
    /// List stored workflows with their active and latest versions.
    List {
        /// Print a JSON array of the workflows
        #[arg(long)]
        json: bool,
    },
    /// Print a stored definition (the active version unless @VERSION is given).
    Show {
        /// A stored workflow: NAME (its active version) or NAME@VERSION
        #[arg(value_name = "NAME[@VERSION]")]
        target: String,
        /// The definition's notation (json prints it as one JSON document)
        #[arg(long, value_enum, default_value_t = TextFormat::Yaml)]
        format: TextFormat,
    },
    /// Print a stored definition exactly as it was imported (comments included).
    Export {
        /// A stored workflow: NAME (its active version) or NAME@VERSION
        #[arg(value_name = "NAME[@VERSION]")]
        target: String,
        /// Write to this file instead of standard output
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Also write where the console's builder draws its nodes (a JSON document kept
        /// beside the versions) to this file; `{}` when nobody placed them
        #[arg(long, value_name = "FILE")]
        layout: Option<PathBuf>,
    },
    /// List the versions of a workflow, oldest first.
    Versions {
        /// The workflow's name
        name: String,
        /// Print a JSON array of the versions
        #[arg(long)]
        json: bool,
    },
    /// Make VERSION the active version of NAME (new runs use it; running ones keep theirs).
    Activate {
        /// The workflow's name
        name: String,
        /// The version to make active
        version: u64,
        /// Print JSON {"workflow", "version", "active"}
        #[arg(long)]
        json: bool,
    },
    /// Show what changed between two versions: node summary, then a unified diff.
    Diff {
        /// The workflow's name
        name: String,
        /// The older version
        v1: u64,
        /// The newer version
        v2: u64,
        /// Print JSON {"from", "to", "nodes_added", "nodes_removed", "nodes_changed", "identical", "diff"}
        #[arg(long)]
        json: bool,
    },
}

/// `executions show`'s default `--limit` (remote mode asks the server for a page only when
/// it differs).
pub const SHOW_LIMIT: u32 = 1_000;

/// What `workflows import` does with the active version, from its two flags.
pub fn import_activation(activate: bool, no_activate: bool) -> hilo_core::store::Activation {
    use hilo_core::store::Activation;
    if activate {
        Activation::Always
    } else if no_activate {
        Activation::Never
    } else {
        Activation::IfNewest
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GraphFormat {
    Mermaid,
    Dot,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TextFormat {
    Yaml,
    Json,
}

/// A duration flag: `30s`, `15m`, `24h`, `7d` or milliseconds, as in `hilo.toml`.
fn parse_ms_flag(text: &str) -> Result<u64, String> {
    hilo_core::duration::parse_ms(text).map_err(|e| e.to_string())
}

/// An RFC 3339 time as Unix milliseconds (`--from`, `--to`).
fn parse_time_ms(text: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|e| {
            format!("`{text}` is not an RFC 3339 time ({e}); write it as 2025-03-01T09:00:00Z or 2025-03-01T09:00:00+01:00")
        })
}

/// An age in milliseconds: a duration with its unit (`12h`, `7d`), or a number of days
/// (`30`, `0.5`), which is what `--older-than` always took.
fn parse_age_ms(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if let Ok(days) = t.parse::<f64>() {
        if !days.is_finite() || days < 0.0 {
            return Err(format!(
                "`{t}`: the age must be a positive number of days or a duration such as 7d"
            ));
        }
        let ms = (days * 86_400_000.0).round();
        if ms > i64::MAX as f64 {
            return Err(format!("`{t}`: the age is too large"));
        }
        return Ok(ms as u64);
    }
    hilo_core::duration::parse_ms(t).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
