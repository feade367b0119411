//! The `hilo` binary: parses the command line, wires the crates together, maps failures to
//! exit codes. The only crate that depends on all the others, and the only place `anyhow`
//! is used.
//!
//! Exit codes (also in `hilo --help`, `cli::AFTER_HELP`): 0 success; 1 a command
//! failed (store error, conflict, not found); 2 invalid input (a definition that does not
//! validate, an unreadable file, an input that does not match the schema, a wrong flag); for
//! executions 3 waiting for a human, 4 handed over.

// First: its `out!`/`outln!`/`errln!`/`noteln!` macros are used by every module after it.
#[macro_use]
mod out;

mod alloc;
mod bench;
mod cli;
mod commands;
mod config;
mod costs;
mod demo;
mod exec;
mod hil;
mod init;
mod remote;
mod secrets;
mod serve;
mod tools;

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

/// An error that carries its exit code.
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub error: Option<anyhow::Error>,
}

impl Exit {
    /// Invalid input: exit code 2.
    pub fn invalid(error: anyhow::Error) -> Exit {
        Exit {
            code: 2,
            error: Some(error),
        }
    }

    /// Invalid input already reported on stderr.
    pub fn invalid_reported() -> Exit {
        Exit {
            code: 2,
            error: None,
        }
    }

    /// Exit with `code`, everything already reported.
    pub fn code(code: u8) -> Exit {
        Exit { code, error: None }
    }

    /// A failure already reported on stderr: exit code 1.
    pub fn failed_reported() -> Exit {
        Exit {
            code: 1,
            error: None,
        }
    }
}

impl From<anyhow::Error> for Exit {
    fn from(error: anyhow::Error) -> Exit {
        Exit {
            code: 1,
            error: Some(error),
        }
    }
}

/// Warnings and errors of the library crates on stderr (`RUST_LOG` picks others: `info`,
/// `hilo_engine=debug`, …); colours as `--color` says (by default on a terminal, never with `NO_COLOR`).
/// `-q` logs errors only, each `-v` one level more (`info`, `debug`, `trace`).
fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let colour = out::colour_stderr();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false)
        .try_init();
}

fn main() -> ExitCode {
    alloc::tune();
    let cli = cli::Cli::parse();
    out::set_color(cli.global.color);
    out::set_quiet(cli.global.quiet);
    init_logging(out::log_level(cli.global.quiet, cli.global.verbose));
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
        let r = commands::run(cli).await;
        exec::shutdown().await;
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
