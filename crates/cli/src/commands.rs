//! The dispatcher: which module runs each subcommand. Output for people goes to stdout,
//! problems to stderr; `--json` variants print one JSON document on stdout.
//!
//! The layers, so that imports run one way: `main` builds the [`App`] and calls [`run`];
//! this module imports the command modules (`workflows`, `exec`, `tools`, `costs`, `demo`,
//! `secrets`, `serve`, `hil`, `remote`, `init`, `bench`, `triggers`); they import the shared leaves
//! (`app`, `cli`, `config`, `input`, `out`, `exit`), never each other or this module.

use clap::CommandFactory;

use crate::app::App;
use crate::cli::{Cli, Command, ToolsCommand};
use crate::exit::Exit;
use crate::{
    bench, costs, demo, exec, hil, init, kb, memory, out, remote, secrets, serve, tools, triggers,
    workflows,
};
use crate::{diff, eval, replay};

/// Runs `command` with the process's wiring.
pub async fn run(app: &App, command: Command) -> Result<(), Exit> {
    let g = app.global();
    // Writes files only: no store, no configuration, local even with --server.
    if let Command::Init(args) = &command {
        return init::init(args);
    }
    // Reads a document and prints: no store, no configuration, local even with --server.
    if let Command::Tools(ToolsCommand::Import(args)) = &command {
        return tools::import(args).await;
    }
    if hil::is_hil(&command) {
        return hil::run(g, command).await;
    }
    if let Some(server) = g.server.clone() {
        return remote::run(g, &server, command).await;
    }
    match command {
        Command::Validate { files, json, fetch } => {
            workflows::validate(app, &files, json, fetch).await
        }
        Command::Graph { target, format } => workflows::graph(app, &target, format).await,
        Command::Schema => {
            let schema = hilo_core::schema::workflow_schema();
            outln!(
                "{}",
                serde_json::to_string_pretty(&schema).map_err(anyhow::Error::from)?
            );
            Ok(())
        }
        Command::Workflows(cmd) => workflows::workflows(app, cmd).await,
        Command::Run(args) => exec::run(app, args).await,
        Command::Resume(args) => exec::resume(app, args).await,
        Command::Fork(args) => exec::fork(app, args).await,
        Command::Eval(args) => eval::eval(app, args).await,
        Command::Answer(args) => exec::answer(app, args).await,
        Command::Cancel {
            id,
            no_compensate,
            json,
        } => exec::cancel(app, &id, !no_compensate, json).await,
        Command::Executions(cmd) => exec::executions(app, cmd).await,
        Command::Diff { a, b, json } => diff::diff(app, &a, &b, json).await,
        Command::Replay {
            id,
            version,
            workflow,
            since,
            limit,
            json,
        } => replay::replay(app, id, version, workflow, since, limit, json).await,
        Command::Worker {
            concurrency,
            metrics_addr,
        } => exec::worker(app, concurrency, metrics_addr).await,
        Command::Triggers(cmd) => triggers::triggers(app, cmd).await,
        Command::Audit(args) => tools::audit(app, args).await,
        Command::Costs(args) => costs::costs(app, args).await,
        Command::Memory(cmd) => memory::memory(app, cmd).await,
        Command::Kb(cmd) => kb::kb(app, cmd).await,
        Command::Demo { dir, json } => demo::demo(app, dir, json).await,
        Command::Tools(cmd) => tools::tools(app, cmd).await,
        Command::Secrets(cmd) => secrets::secrets(app, cmd).await,
        Command::Connections(cmd) => secrets::connections(app, cmd).await,
        Command::Serve {
            addr,
            workers,
            metrics_addr,
        } => serve::serve(app, addr, workers, metrics_addr).await,
        Command::Mcp { workers } => serve::mcp(app, workers).await,
        Command::Keys(cmd) => serve::keys(app, cmd).await,
        other @ (Command::Inbox(_)
        | Command::Claim(_)
        | Command::Reply(_)
        | Command::Resolve(_)
        | Command::BackToAi(_)
        | Command::Hil(_)) => hil::run(g, other).await,
        Command::Bench {
            populate:
                Some(crate::cli::BenchCommand::Populate {
                    executions,
                    tenants,
                    days,
                    batch,
                    concurrency,
                    json,
                }),
            ..
        } => {
            let p = bench::populate::Populate {
                executions,
                tenants,
                days,
                batch,
                concurrency,
            };
            bench::populate::run(app.store().await?, p, json)
                .await
                .map_err(Exit::from)
        }
        Command::Bench {
            populate: None,
            json,
            quick,
            only,
            reps,
            max_seconds,
        } => bench::run(json, quick, only, reps, max_seconds, app.embedder().await?).await,
        Command::Init(args) => init::init(&args),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "hilo", &mut script);
            out::write_bytes(&script);
            Ok(())
        }
    }
}
