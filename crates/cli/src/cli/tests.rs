//! Tests of the command line's shape (the `tests` module of `cli.rs`).

use clap::CommandFactory;

use super::Cli;

/// Every subcommand, depth first, with its path (`hilo workflows import`).
fn walk(cmd: &clap::Command, path: String, out: &mut Vec<(String, clap::Command)>) {
    for sub in cmd.get_subcommands() {
        let p = format!("{path} {}", sub.get_name());
        out.push((p.clone(), sub.clone()));
        walk(sub, p, out);
    }
}

fn commands() -> Vec<(String, clap::Command)> {
    let mut root = Cli::command();
    root.build();
    let mut all = vec![("hilo".to_string(), root.clone())];
    walk(&root, "hilo".into(), &mut all);
    all
}

#[test]
fn every_flag_and_argument_has_help() {
    let mut missing = Vec::new();
    for (path, cmd) in commands() {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            let has = arg
                .get_help()
                .is_some_and(|h| !h.to_string().trim().is_empty())
                || arg.get_long_help().is_some();
            if !has {
                missing.push(format!("{path}: {id}"));
            }
        }
    }
    assert!(missing.is_empty(), "arguments without help: {missing:#?}");
}

/// Commands that print no data (long-running, or a script) or print it in a notation of
/// their own (a diagram, a definition as imported) need no `--json`.
const NO_JSON: &[(&str, &str)] = &[
    ("hilo schema", "prints a JSON Schema already"),
    ("hilo graph", "prints a diagram (Mermaid or DOT)"),
    (
        "hilo workflows show",
        "--format json prints the definition as JSON",
    ),
    (
        "hilo workflows export",
        "prints the definition exactly as imported",
    ),
    ("hilo worker", "runs until stopped; notes only"),
    ("hilo serve", "runs until stopped; notes only"),
    (
        "hilo mcp",
        "stdout is the MCP protocol's; notes go to stderr",
    ),
    ("hilo completions", "prints a shell script"),
    (
        "hilo eval record",
        "prints a dataset: JSON Lines, one case a line, whatever the flags",
    ),
];

#[test]
fn every_command_that_prints_data_takes_json() {
    let mut missing = Vec::new();
    for (path, cmd) in commands() {
        let leaf = !cmd.has_subcommands();
        if !leaf || path.ends_with(" help") || path.contains(" help ") {
            continue;
        }
        if NO_JSON.iter().any(|(p, _)| *p == path) {
            continue;
        }
        if !cmd.get_arguments().any(|a| a.get_id() == "json") {
            missing.push(path);
        }
    }
    assert!(missing.is_empty(), "commands without --json: {missing:#?}");
    // The exceptions are real commands (not stale names).
    let all: Vec<String> = commands().into_iter().map(|(p, _)| p).collect();
    for (p, _) in NO_JSON {
        assert!(all.iter().any(|a| a == p), "{p} is not a command");
    }
}

#[test]
fn help_documents_the_exit_codes_and_conventions() {
    let help = Cli::command().render_long_help().to_string();
    for text in [
        "Exit codes:",
        "0  success",
        "1  the command failed",
        "2  invalid input",
        "3  an execution waits for a human",
        "4  an execution was handed over",
        "--json",
        "NO_COLOR",
        "--quiet",
        "--verbose",
        "RUST_LOG",
    ] {
        assert!(
            help.contains(text),
            "`{text}` is not in hilo --help:\n{help}"
        );
    }
}
