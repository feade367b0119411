//! What each subcommand does. Output for people goes to stdout, problems to stderr; `--json`
//! variants print one JSON document on stdout.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow};
use clap::CommandFactory;
use hilo_core::render::{self, GraphFormat};
use hilo_core::store::{ImportOutcome, NewWorkflow, Store};
use hilo_core::{Format, Workflow};
use serde_json::json;

use crate::Exit;
use crate::cli::{self, Cli, Command, Global, WorkflowsCommand};
use crate::config::Config;

pub async fn run(cli: Cli) -> Result<(), Exit> {
    let g = &cli.global;
    crate::secrets::set_data_dir(g);
    // Writes files only: no store, no configuration, local even with --server.
    if let Command::Init(args) = &cli.command {
        return crate::init::init(args);
    }
    if crate::hil::is_hil(&cli.command) {
        return crate::hil::run(g, cli.command).await;
    }
    if let Some(server) = g.server.clone() {
        return crate::remote::run(g, &server, cli.command).await;
    }
    match cli.command {
        Command::Validate { files, json } => validate(g, &files, json),
        Command::Graph { target, format } => graph(g, &target, format).await,
        Command::Schema => {
            let schema = hilo_core::schema::workflow_schema();
            outln!(
                "{}",
                serde_json::to_string_pretty(&schema).map_err(anyhow::Error::from)?
            );
            Ok(())
        }
        Command::Workflows(cmd) => workflows(g, cmd).await,
        Command::Run(args) => crate::exec::run(g, args).await,
        Command::Resume(args) => crate::exec::resume(g, args).await,
        Command::Answer(args) => crate::exec::answer(g, args).await,
        Command::Cancel {
            id,
            no_compensate,
            json,
        } => crate::exec::cancel(g, &id, !no_compensate, json).await,
        Command::Executions(cmd) => crate::exec::executions(g, cmd).await,
        Command::Worker { concurrency } => crate::exec::worker(g, concurrency).await,
        Command::Audit(args) => crate::tools::audit(g, args).await,
        Command::Costs(args) => crate::costs::costs(g, args).await,
        Command::Demo { dir, json } => crate::demo::demo(g, dir, json).await,
        Command::Tools(cmd) => crate::tools::tools(g, cmd).await,
        Command::Secrets(cmd) => crate::secrets::secrets(g, cmd).await,
        Command::Serve { addr, workers } => crate::serve::serve(g, addr, workers).await,
        Command::Keys(cmd) => crate::serve::keys(g, cmd).await,
        other @ (Command::Inbox(_)
        | Command::Claim(_)
        | Command::Reply(_)
        | Command::Resolve(_)
        | Command::BackToAi(_)
        | Command::Hil(_)) => crate::hil::run(g, other).await,
        Command::Bench {
            json,
            quick,
            only,
            reps,
            max_seconds,
        } => crate::bench::run(json, quick, only, reps, max_seconds).await,
        Command::Init(args) => crate::init::init(&args),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "hilo", &mut script);
            crate::out::write_bytes(&script);
            Ok(())
        }
    }
}

/// Reads a workflow file (`-` is standard input) and guesses its format.
fn read_source(path: &Path) -> anyhow::Result<(String, Format)> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
        let format = Format::detect(None, &text);
        return Ok((text, format));
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let format = Format::detect(path.file_name().and_then(|n| n.to_str()), &text);
    Ok((text, format))
}

/// Reads and validates one file; problems are printed (`path:line:col: error[…]`) to stderr.
pub fn load_file(path: &Path, config: &Config) -> Result<(Workflow, String, Format), Exit> {
    let (text, format) = read_source(path).map_err(Exit::invalid)?;
    match hilo_core::load(&text, format, &config.catalog) {
        Ok(wf) => Ok((wf, text, format)),
        Err(diags) => {
            print_diagnostics(path, &diags);
            Err(Exit::invalid_reported())
        }
    }
}

fn print_diagnostics(path: &Path, diags: &hilo_core::Diagnostics) {
    for d in diags.iter() {
        // A diagnostic quotes the document (a name, a value): never a huge one whole.
        let line = format!("{}:{d}", path.display());
        errln!("{}", hilo_server::error::excerpt(&line, 1000));
    }
    let n = diags.len();
    errln!(
        "{}: {n} error{} — not valid",
        path.display(),
        if n == 1 { "" } else { "s" }
    );
}

fn validate(g: &Global, files: &[PathBuf], json: bool) -> Result<(), Exit> {
    let config = Config::load(g.config.as_deref()).map_err(Exit::invalid)?;
    let mut all_valid = true;
    let mut results = Vec::new();
    for path in files {
        let shown = path.display().to_string();
        let outcome = read_source(path)
            .map_err(|e| format!("{e:#}"))
            .map(|(text, format)| hilo_core::load(&text, format, &config.catalog));
        match outcome {
            Err(read_error) => {
                all_valid = false;
                if json {
                    results.push(json!({"file": shown, "valid": false, "error": read_error}));
                } else {
                    errln!("{shown}: error: {read_error}");
                }
            }
            Ok(Ok(wf)) => {
                let nodes = wf.all_nodes().len();
                if json {
                    results.push(json!({
                        "file": shown, "valid": true, "workflow": wf.name,
                        "version": wf.version, "nodes": nodes, "errors": []
                    }));
                } else {
                    outln!("{shown}: ok — {} ({nodes} nodes)", wf.reference());
                }
            }
            Ok(Err(diags)) => {
                all_valid = false;
                if json {
                    results.push(json!({"file": shown, "valid": false, "errors": diags}));
                } else {
                    print_diagnostics(path, &diags);
                }
            }
        }
    }
    if json {
        let doc = json!({"valid": all_valid, "files": results});
        outln!(
            "{}",
            serde_json::to_string_pretty(&doc).map_err(anyhow::Error::from)?
        );
    }
    if all_valid {
        Ok(())
    } else {
        Err(Exit::invalid_reported())
    }
}

/// `NAME` or `NAME@VERSION`.
pub fn parse_target(target: &str) -> Result<(String, Option<u64>), Exit> {
    match target.split_once('@') {
        None => Ok((target.to_string(), None)),
        Some((name, v)) => {
            let version = v.parse::<u64>().ok().filter(|v| *v > 0).ok_or_else(|| {
                Exit::invalid(anyhow!(
                    "`{target}`: the version after @ must be a positive whole number, e.g. {name}@2"
                ))
            })?;
            Ok((name.to_string(), Some(version)))
        }
    }
}

pub fn default_db() -> PathBuf {
    dirs::data_dir()
        .map(|d| d.join("hilo").join("hilo.db"))
        .unwrap_or_else(|| PathBuf::from("hilo.db"))
}

pub async fn open_store(g: &Global) -> Result<Arc<dyn Store>, Exit> {
    let config = Config::load(g.config.as_deref()).map_err(Exit::invalid)?;
    open_store_with(g, &config).await
}

pub async fn open_store_with(g: &Global, config: &Config) -> Result<Arc<dyn Store>, Exit> {
    let location = match &g.db {
        Some(db) => hilo_store::Location::parse(db),
        None => hilo_store::Location::SqliteFile(default_db()),
    };
    let options = hilo_store::StoreOptions {
        durability: config.durability,
        payload_threshold: config.payload_threshold,
        running_limits: config.running_limits.clone(),
        max_connections: config.max_connections,
        max_crashes: None,
    };
    hilo_store::open_with(&location, options)
        .await
        .map_err(|e| Exit::from(anyhow!(e)))
}

async fn graph(g: &Global, target: &str, format: cli::GraphFormat) -> Result<(), Exit> {
    let wf = if Path::new(target).exists() || target == "-" {
        let config = Config::load(g.config.as_deref()).map_err(Exit::invalid)?;
        load_file(Path::new(target), &config)?.0
    } else {
        let (name, version) = parse_target(target)?;
        let store = open_store(g).await?;
        store
            .get_workflow(&g.tenant, &name, version)
            .await
            .map_err(|e| Exit::from(anyhow!(e)))?
            .workflow
    };
    let format = match format {
        cli::GraphFormat::Mermaid => GraphFormat::Mermaid,
        cli::GraphFormat::Dot => GraphFormat::Dot,
    };
    out!("{}", render::render(&wf, format));
    Ok(())
}

async fn workflows(g: &Global, cmd: WorkflowsCommand) -> Result<(), Exit> {
    let config = Config::load(g.config.as_deref()).map_err(Exit::invalid)?;
    let store = open_store_with(g, &config).await?;
    let tenant = g.tenant.as_str();
    let store_err = |e: hilo_core::StoreError| Exit::from(anyhow!(e));
    match cmd {
        WorkflowsCommand::Import {
            files,
            no_activate,
            activate,
            json,
        } => {
            let activation = crate::cli::import_activation(activate, no_activate);
            let mut worst: Option<Exit> = None;
            let mut results = Vec::new();
            for path in &files {
                let (wf, text, format) = match load_file(path, &config) {
                    Ok(x) => x,
                    Err(e) => {
                        let error = match e.error {
                            Some(err) => {
                                errln!("{}: error: {err:#}", path.display());
                                format!("{err:#}")
                            }
                            None => "not valid (the problems are on stderr)".to_string(),
                        };
                        results.push(json!({"file": path.display().to_string(), "outcome": "invalid", "error": error}));
                        worst = Some(Exit::invalid_reported());
                        continue;
                    }
                };
                let new = NewWorkflow {
                    workflow: &wf,
                    source: &text,
                    format,
                };
                let file = path.display().to_string();
                match store.import_workflow(tenant, new, activation).await {
                    Ok(ImportOutcome::Created { activated }) if json => results.push(json!({
                        "file": file, "workflow": wf.name, "version": wf.version,
                        "outcome": "created", "active": activated,
                    })),
                    Ok(ImportOutcome::Created { activated }) => outln!(
                        "{file}: imported {}{}",
                        wf.reference(),
                        if activated { " (active)" } else { "" }
                    ),
                    Ok(ImportOutcome::Unchanged) if json => results.push(json!({
                        "file": file, "workflow": wf.name, "version": wf.version,
                        "outcome": "unchanged",
                    })),
                    Ok(ImportOutcome::Unchanged) => outln!(
                        "{file}: {} unchanged (already stored with the same content)",
                        wf.reference()
                    ),
                    Err(e) => {
                        errln!("{file}: error[{}]: {e}", e.code());
                        results.push(json!({
                            "file": file, "workflow": wf.name, "version": wf.version,
                            "outcome": "failed", "error": e.to_string(), "code": e.code(),
                        }));
                        if worst.is_none() {
                            worst = Some(Exit::failed_reported());
                        }
                    }
                }
            }
            if json {
                crate::tools::print_json(&results)?;
            }
            worst.map_or(Ok(()), Err)
        }
        WorkflowsCommand::List { json } => {
            let list = store.list_workflows(tenant).await.map_err(store_err)?;
            if json {
                let items: Vec<_> = list
                    .iter()
                    .map(|w| {
                        json!({
                            "name": w.name, "active_version": w.active_version,
                            "latest_version": w.latest_version, "versions": w.versions,
                            "description": w.description, "updated_at": w.updated_at.to_rfc3339(),
                        })
                    })
                    .collect();
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&items).map_err(anyhow::Error::from)?
                );
            } else if list.is_empty() {
                outln!(
                    "no workflows stored yet (database: {}); add some with `hilo workflows import FILE...`",
                    store.describe()
                );
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|w| {
                        vec![
                            w.name.clone(),
                            w.active_version.to_string(),
                            w.latest_version.to_string(),
                            w.versions.to_string(),
                            w.updated_at.format("%Y-%m-%d %H:%M").to_string(),
                            w.description.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                print_table(
                    &[
                        "NAME",
                        "ACTIVE",
                        "LATEST",
                        "VERSIONS",
                        "UPDATED",
                        "DESCRIPTION",
                    ],
                    &rows,
                );
            }
            Ok(())
        }
        WorkflowsCommand::Show { target, format } => {
            let (name, version) = parse_target(&target)?;
            let stored = store
                .get_workflow(tenant, &name, version)
                .await
                .map_err(store_err)?;
            let format = match format {
                cli::TextFormat::Yaml => Format::Yaml,
                cli::TextFormat::Json => Format::Json,
            };
            out!(
                "{}",
                hilo_core::to_text(&stored.workflow, format).map_err(anyhow::Error::from)?
            );
            Ok(())
        }
        WorkflowsCommand::Export { target, output } => {
            let (name, version) = parse_target(&target)?;
            let stored = store
                .get_workflow(tenant, &name, version)
                .await
                .map_err(store_err)?;
            match output {
                Some(path) => {
                    std::fs::write(&path, &stored.source)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    noteln!(
                        "wrote {} ({}) to {}",
                        stored.workflow.reference(),
                        stored.format,
                        path.display()
                    );
                }
                None => out!("{}", stored.source),
            }
            Ok(())
        }
        WorkflowsCommand::Versions { name, json } => {
            let versions = store
                .list_versions(tenant, &name)
                .await
                .map_err(store_err)?;
            if json {
                let items: Vec<_> = versions
                    .iter()
                    .map(|v| json!({"version": v.version, "active": v.active, "created_at": v.created_at.to_rfc3339(), "nodes": v.nodes}))
                    .collect();
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&items).map_err(anyhow::Error::from)?
                );
            } else {
                let rows: Vec<Vec<String>> = versions
                    .iter()
                    .map(|v| {
                        vec![
                            v.version.to_string(),
                            if v.active { "*".into() } else { String::new() },
                            v.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                            v.nodes.to_string(),
                        ]
                    })
                    .collect();
                print_table(&["VERSION", "ACTIVE", "CREATED", "NODES"], &rows);
            }
            Ok(())
        }
        WorkflowsCommand::Activate {
            name,
            version,
            json,
        } => {
            store
                .activate(tenant, &name, version)
                .await
                .map_err(store_err)?;
            if json {
                return crate::tools::print_json(
                    &json!({"workflow": name, "version": version, "active": true}),
                );
            }
            outln!("{name}@{version} is now the active version");
            Ok(())
        }
        WorkflowsCommand::Diff { name, v1, v2, json } => {
            let a = store
                .get_workflow(tenant, &name, Some(v1))
                .await
                .map_err(store_err)?;
            let b = store
                .get_workflow(tenant, &name, Some(v2))
                .await
                .map_err(store_err)?;
            let d = diff(&a.workflow, &b.workflow)?;
            if json {
                return crate::tools::print_json(&json!({
                    "from": a.workflow.reference(), "to": b.workflow.reference(),
                    "nodes_added": d.added, "nodes_removed": d.removed,
                    "nodes_changed": d.changed, "identical": d.unified.is_none(),
                    "diff": d.unified,
                }));
            }
            out!("{}", d.text(&a.workflow, &b.workflow));
            Ok(())
        }
    }
}

/// What changed between two versions: node ids added, removed and changed, and the unified
/// diff of their canonical YAML (`None` when identical).
struct Diff {
    added: Vec<String>,
    removed: Vec<String>,
    changed: Vec<String>,
    unified: Option<String>,
}

impl Diff {
    /// The summary of node changes, then the unified diff.
    fn text(&self, a: &Workflow, b: &Workflow) -> String {
        let mut out = format!("{} → {}\n", a.reference(), b.reference());
        let list = |v: &[String]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.join(", ")
            }
        };
        out.push_str(&format!("  nodes added:   {}\n", list(&self.added)));
        out.push_str(&format!("  nodes removed: {}\n", list(&self.removed)));
        out.push_str(&format!("  nodes changed: {}\n", list(&self.changed)));
        match &self.unified {
            None => out.push_str("  (the definitions are identical)\n"),
            Some(u) => {
                out.push('\n');
                out.push_str(u);
            }
        }
        out
    }
}

/// Node changes and a unified diff of the canonical YAML of both versions.
fn diff(a: &Workflow, b: &Workflow) -> anyhow::Result<Diff> {
    let index = |w: &Workflow| -> BTreeMap<String, serde_json::Value> {
        w.all_nodes()
            .into_iter()
            .map(|n| (n.id.clone(), serde_json::to_value(n).unwrap_or_default()))
            .collect()
    };
    let (na, nb) = (index(a), index(b));
    let added: Vec<&str> = nb
        .keys()
        .filter(|k| !na.contains_key(*k))
        .map(String::as_str)
        .collect();
    let removed: Vec<&str> = na
        .keys()
        .filter(|k| !nb.contains_key(*k))
        .map(String::as_str)
        .collect();
    let changed: Vec<&str> = na
        .iter()
        .filter(|(k, v)| nb.get(*k).is_some_and(|w| w != *v))
        .map(|(k, _)| k.as_str())
        .collect();
    let owned = |v: Vec<&str>| v.into_iter().map(String::from).collect::<Vec<_>>();
    let (ta, tb) = (
        hilo_core::to_text(a, Format::Yaml)?,
        hilo_core::to_text(b, Format::Yaml)?,
    );
    let unified = (ta != tb).then(|| {
        similar::TextDiff::from_lines(&ta, &tb)
            .unified_diff()
            .context_radius(3)
            .header(&a.reference(), &b.reference())
            .to_string()
    });
    Ok(Diff {
        added: owned(added),
        removed: owned(removed),
        changed: owned(changed),
        unified,
    })
}

pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let bold = crate::out::colour_stdout();
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    let head = line(headers.iter().map(|h| h.to_string()).collect());
    if bold {
        outln!("\x1b[1m{head}\x1b[0m");
    } else {
        outln!("{head}");
    }
    for r in rows {
        outln!("{}", line(r.clone()));
    }
}
