//! Workflow definitions: `hilo validate` (files, no store), `hilo graph` (a file or a stored
//! workflow as Mermaid or DOT) and `hilo workflows import|list|show|export|versions|activate|diff`
//! on the store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use hilo_core::render::{self, GraphFormat};
use hilo_core::store::{ImportOutcome, NewWorkflow};
use hilo_core::{Format, Workflow};
use serde_json::json;

use crate::app::App;
use crate::cli::{self, WorkflowsCommand};
use crate::exit::{Exit, store_err};
use crate::input::{load_file, load_text, parse_target, print_diagnostics, read_source};
use crate::out::{print_json, print_table};

/// `hilo validate`: every file's problems at once; exit 2 when any is not valid.
pub async fn validate(app: &App, files: &[PathBuf], json: bool, fetch: bool) -> Result<(), Exit> {
    let config = app.config()?;
    let mut all_valid = true;
    let mut results = Vec::new();
    for path in files {
        let shown = path.display().to_string();
        let mut outcome = read_source(path).map_err(|e| format!("{e:#}"));
        let mut fetched = Default::default();
        if fetch && let Ok((text, format)) = &outcome {
            match crate::tools::apis::fetch_urls(text, *format).await {
                Ok(f) => fetched = f,
                Err(e) => {
                    outcome = Err(e
                        .error
                        .map(|e| format!("{e:#}"))
                        .unwrap_or_else(|| "cannot fetch an OpenAPI document".into()))
                }
            }
        }
        let outcome = outcome.map(|(text, format)| {
            let catalog = crate::tools::apis::catalog_for(&config.catalog, path, fetched);
            hilo_core::load(&text, format, &catalog)
        });
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

/// `hilo graph`: a workflow file (`-` is standard input) or a stored workflow.
pub async fn graph(app: &App, target: &str, format: cli::GraphFormat) -> Result<(), Exit> {
    let wf = if Path::new(target).exists() || target == "-" {
        load_file(Path::new(target), app.config()?)?.0
    } else {
        let (name, version) = parse_target(target)?;
        let store = app.store().await?;
        store
            .get_workflow(&app.global().tenant, &name, version)
            .await
            .map_err(store_err)?
            .workflow
    };
    let format = match format {
        cli::GraphFormat::Mermaid => GraphFormat::Mermaid,
        cli::GraphFormat::Dot => GraphFormat::Dot,
    };
    out!("{}", render::render(&wf, format));
    Ok(())
}

/// `hilo workflows …` on the store.
pub async fn workflows(app: &App, cmd: WorkflowsCommand) -> Result<(), Exit> {
    let config = app.config()?;
    let store = app.store().await?;
    let tenant = app.global().tenant.as_str();
    match cmd {
        WorkflowsCommand::Import {
            files,
            no_activate,
            activate,
            json,
            fetch,
        } => {
            let activation = cli::import_activation(activate, no_activate);
            let mut worst: Option<Exit> = None;
            let mut results = Vec::new();
            for path in &files {
                let loaded = match read_source(path).map_err(Exit::invalid) {
                    Ok((text, format)) => {
                        let fetched = if fetch {
                            crate::tools::apis::fetch_urls(&text, format).await
                        } else {
                            Ok(Default::default())
                        };
                        fetched.and_then(|f| load_text(path, text, format, config, f))
                    }
                    Err(e) => Err(e),
                };
                let (wf, text, format) = match loaded {
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
                let mut outcome = store.import_workflow(tenant, new, activation).await;
                if outcome.is_ok() {
                    // The active version's triggers become the workflow's.
                    let synced = hilo_runtime::ingress::triggers::sync(
                        store.as_ref(),
                        tenant,
                        &wf.name,
                        hilo_core::store::now_ms(),
                    )
                    .await;
                    if let Err(e) = synced {
                        outcome = Err(match e {
                            hilo_runtime::RuntimeError::Store(s) => s,
                            other => hilo_core::StoreError::Backend(other.to_string()),
                        });
                    }
                }
                match outcome {
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
                print_json(&results)?;
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
        WorkflowsCommand::Export {
            target,
            output,
            layout,
        } => {
            let (name, version) = parse_target(&target)?;
            let stored = store
                .get_workflow(tenant, &name, version)
                .await
                .map_err(store_err)?;
            if let Some(path) = layout {
                let drawn = store.get_layout(tenant, &name).await.map_err(store_err)?;
                write_layout(&path, drawn.map(|(l, _)| l))?;
            }
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
            hilo_runtime::ingress::triggers::sync(
                store.as_ref(),
                tenant,
                &name,
                hilo_core::store::now_ms(),
            )
            .await
            .map_err(|e| Exit::from(anyhow::anyhow!("{name}@{version}: its triggers: {e}")))?;
            if json {
                return print_json(&json!({"workflow": name, "version": version, "active": true}));
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
                return print_json(&json!({
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

/// Writes a workflow's layout (the builder's node positions; `{}` when there is none) to
/// `path`, pretty-printed so that it diffs well beside the workflow.
pub(crate) fn write_layout(
    path: &std::path::Path,
    layout: Option<serde_json::Value>,
) -> Result<(), Exit> {
    let layout = layout.unwrap_or_else(|| json!({}));
    let text = serde_json::to_string_pretty(&layout).map_err(anyhow::Error::from)?;
    std::fs::write(path, text + "\n")
        .with_context(|| format!("cannot write the layout to {}", path.display()))?;
    noteln!("wrote the layout to {}", path.display());
    Ok(())
}
