//! The `hilo` binary: parses the command line, sets up the terminal and the log, builds the
//! process's wiring ([`app::App`]), runs the command (`commands::run`), shuts the wiring
//! down and maps failures to exit codes (`exit::Exit`). The only crate that depends on all
//! the others, and the only place `anyhow` is used.
//!
//! The modules, leaves first: `exit`, `out` (and its macros), `config`, `input`, `cli`, `app`;
//! then one module per group of commands; `commands` dispatches to them.

// First: its `out!`/`outln!`/`errln!`/`noteln!` macros are used by every module after it.
#[macro_use]
mod out;

mod alloc;
mod app;
mod bench;
mod cli;
mod commands;
mod config;
mod costs;
mod demo;
mod diff;
mod eval;
mod exec;
mod exit;
mod hil;
mod init;
mod input;
mod kb;
mod logging;
mod memory;
mod remote;
mod replay;
mod secrets;
mod serve;
mod tools;
mod triggers;
mod workflows;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc: under the HTTP load benchmark glibc's allocator
/// (`malloc`, `free`, `malloc_consolidate` across the runtime's threads) took 18 % of the
/// server's CPU (`perf record` on `hilo serve`). `alloc::tune` sets how soon it gives freed
/// memory back. The `system-alloc` feature keeps the system's allocator, for heap profilers
/// that hook `malloc` (heaptrack; see docs/performance.md).
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    alloc::tune();
    let cli = cli::Cli::parse();
    out::set_color(cli.global.color);
    out::set_quiet(cli.global.quiet);
    // Warnings and errors of the library crates on stderr (`RUST_LOG` picks others: `info`,
    // `hilo_engine=debug`, …); `-q` logs errors only, each `-v` one level more. The format:
    // the flag (or HILO_LOG_FORMAT), else hilo.toml's `[log] format`, else text.
    let format = cli
        .global
        .log_format
        .or_else(|| config::log_format(cli.global.config.as_deref()))
        .unwrap_or(logging::LogFormat::Text);
    // The process's one redactor: the log writer's, the executor's, the router's, the traces'.
    let redactor = hilo_core::redact::Redactor::new();
    logging::init(
        format,
        out::log_level(cli.global.quiet, cli.global.verbose),
        redactor.clone(),
    );
    // The server uses every core; every other command is one task at a time.
    let mut builder = if matches!(cli.command, cli::Command::Serve { .. }) {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            errln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        // One wiring value for the process: shut down after the command, whatever it
        // returned (its MCP servers stopped, its audit entries stored, its store dropped).
        let app = app::App::new(cli.global).with_redactor(redactor);
        let r = commands::run(&app, cli.command).await;
        app.shutdown().await;
        r
    });
    // A reader that closed the pipe early (`| head`) is not an error: exit quietly.
    let written = out::finish();
    match result {
        Ok(()) => match written {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                errln!("error: cannot write to standard output: {e}");
                ExitCode::from(1)
            }
        },
        Err(exit) => {
            if let Some(e) = exit.error
                && !out::is_broken_pipe(&e)
            {
                // No line of an error echoes a huge input whole.
                let text = format!("{e:#}");
                let lines: Vec<String> = text
                    .lines()
                    .map(|l| hilo_server::error::excerpt(l, 1000))
                    .collect();
                errln!("error: {}", lines.join("\n"));
            }
            ExitCode::from(exit.code)
        }
    }
}
