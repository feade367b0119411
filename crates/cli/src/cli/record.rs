//! The commands that read an execution's record back: `hilo fork` and `hilo eval`'s flags
//! (`hilo replay` and `hilo diff` are variants of [`super::Command`]).

use clap::{Args, Subcommand};

use super::OutArgs;
use crate::input::{Since, parse_since};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct EvalArgs {
    #[command(subcommand)]
    pub command: Option<EvalCommand>,
    /// The workflow: NAME or NAME@VERSION (its active version by default), or a file
    #[arg(value_name = "WORKFLOW[@V]|FILE", required = true)]
    pub target: Option<String>,
    /// The cases: a JSON Lines file
    #[arg(long, value_name = "FILE.jsonl", required = true)]
    pub dataset: Option<std::path::PathBuf>,
    /// Run the cases against this version too, and report what changed
    #[arg(long, value_name = "V")]
    pub baseline: Option<u64>,
    /// Runs per case (a case passes when all of them pass)
    #[arg(long, default_value_t = 1, value_name = "K")]
    pub repeat: u32,
    /// Runs at once
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub concurrency: usize,
    /// The pass rate (0 to 1) under which the command fails (exit code 1)
    #[arg(long, value_name = "P")]
    pub threshold: Option<f64>,
    /// Write the results as JUnit XML here
    #[arg(long, value_name = "FILE")]
    pub junit: Option<std::path::PathBuf>,
    /// The profile of the model that judges rubrics
    #[arg(long, value_name = "P")]
    pub judge_profile: Option<String>,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// The evaluations run so far (by hilo eval or the API), newest first
    List {
        /// Only this workflow's
        #[arg(long, value_name = "NAME")]
        workflow: Option<String>,
        /// At most this many
        #[arg(long, default_value_t = 20, value_name = "N")]
        limit: u32,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Delete an evaluation (its report holds copies of its cases' inputs and outputs)
    Delete {
        /// The evaluation's id
        id: String,
        /// Print JSON {"deleted"}
        #[arg(long)]
        json: bool,
    },
    /// One evaluation's report
    Show {
        /// The evaluation's id
        id: String,
        /// Also write it as JUnit XML here
        #[arg(long, value_name = "FILE")]
        junit: Option<std::path::PathBuf>,
        /// Print JSON {id, workflow, version, status, summary, report, ...}
        #[arg(long)]
        json: bool,
    },
    /// Print recorded executions of a workflow as a dataset (JSON Lines on stdout): their
    /// inputs, their call nodes' outputs as fixtures, their outputs and paths as expected
    Record {
        /// The workflow's name
        #[arg(long, value_name = "NAME")]
        workflow: String,
        /// Executions created since then (7d, 24h, or an RFC 3339 time)
        #[arg(long, value_name = "DURATION|TIME", value_parser = parse_since)]
        since: Since,
        /// At most this many, newest first
        #[arg(long, default_value_t = 1000, value_name = "N")]
        limit: u32,
    },
}

#[derive(Debug, Args)]
pub struct ForkArgs {
    /// The execution to fork
    pub id: String,
    /// The node to run live from: its key (`loop[2]/draft` inside a loop)
    #[arg(long, value_name = "NODE")]
    pub at: String,
    /// A recorded output changed: NODE.output[.FIELD…]=JSON (repeatable)
    #[arg(long, value_name = "PATH=JSON")]
    pub set: Vec<String>,
    /// Another input: JSON text, or @FILE
    #[arg(long, value_name = "JSON|@FILE")]
    pub input: Option<String>,
    /// The fork node (an agent) asks this model instead
    #[arg(long, value_name = "NAME", conflicts_with = "profile")]
    pub model: Option<String>,
    /// The fork node (an agent) asks this profile instead
    #[arg(long, value_name = "P")]
    pub profile: Option<String>,
    /// Another version of the workflow
    #[arg(long, value_name = "V")]
    pub version: Option<u64>,
    #[command(flatten)]
    pub out: OutArgs,
}
