//! The command line: every subcommand, flag and help text of `hilo` (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    after_help = "Data lives in one SQLite file: --db PATH (or HILO_DB); by default hilo.db in your data directory."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Database: a SQLite file path or sqlite: URL [default: hilo.db in the platform data directory]
    #[arg(long, global = true, env = "HILO_DB", value_name = "PATH|URL")]
    pub db: Option<String>,
    /// Configuration file with extra tools, MCP servers and LLM profiles [default: ./hilo.toml if present]
    #[arg(long, global = true, env = "HILO_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Tenant to act for
    #[arg(long, global = true, env = "HILO_TENANT", default_value = "default")]
    pub tenant: String,
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
    },
    /// Draw a workflow as a Mermaid flowchart (paste it into Markdown) or Graphviz DOT.
    Graph {
        /// A workflow file, or a stored workflow as NAME or NAME@VERSION
        #[arg(value_name = "FILE|NAME[@VERSION]")]
        target: String,
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
    },
    /// Print the JSON Schema of the workflow format (for yaml-language-server and editors).
    Schema,
    /// Manage stored, versioned workflows.
    #[command(subcommand)]
    Workflows(WorkflowsCommand),
    /// Print a shell completion script, e.g. `hilo completions bash > ~/.local/share/bash-completion/completions/hilo`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkflowsCommand {
    /// Validate and store workflow files. A (name, version) is immutable: the same content
    /// again is a no-op, different content under an existing version is refused.
    Import {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Keep the active version as it is (by default a version newer than all stored ones becomes active)
        #[arg(long, conflicts_with = "activate")]
        no_activate: bool,
        /// Make each imported version active, even if it is older
        #[arg(long)]
        activate: bool,
    },
    /// List stored workflows with their active and latest versions.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Print a stored definition (the active version unless @VERSION is given).
    Show {
        #[arg(value_name = "NAME[@VERSION]")]
        target: String,
        #[arg(long, value_enum, default_value_t = TextFormat::Yaml)]
        format: TextFormat,
    },
    /// Print a stored definition exactly as it was imported (comments included).
    Export {
        #[arg(value_name = "NAME[@VERSION]")]
        target: String,
        /// Write to this file instead of standard output
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// List the versions of a workflow, oldest first.
    Versions {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Make VERSION the active version of NAME (new runs use it; running ones keep theirs).
    Activate { name: String, version: u64 },
    /// Show what changed between two versions: node summary, then a unified diff.
    Diff { name: String, v1: u64, v2: u64 },
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
