//! `hilo serve` (the HTTP API over the store, with the worker embedded) and `hilo keys`.

use std::sync::Arc;

use anyhow::{Context, anyhow};
use hilo_core::access::Scope;
use hilo_engine::now_ms;
use serde_json::json;

use crate::app::App;
use crate::cli::KeysCommand;
use crate::exit::Exit;
use crate::out::print_json;

/// Resolves on Ctrl-C or SIGTERM.
/// Resolves on SIGTERM or Ctrl-C. The handlers are installed when this is called, not when the
/// future is first polled: a signal that comes once the server answers (a request may be
/// served before the listener's loop first polls its shutdown) must stop it gracefully rather
/// than kill it.
pub(crate) fn stop_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            match (term, int) {
                (Some(mut term), Some(mut int)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                (Some(mut term), None) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Raises the soft limit of open files to the hard one, then keeps `[server]
/// max_connections` within what that limit leaves after a reserve for the store, the step
/// log, tool calls and MCP servers (a quarter, at least 256): connections never take the
/// descriptors the worker needs. A warning to print when the bound was lowered.
fn fit_descriptors(server: &mut hilo_server::config::ServerSettings) -> Option<String> {
    let soft = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            return Some(format!(
                "warning: cannot read or raise the limit of open files: {e}"
            ));
        }
    };
    let reserve = (soft / 4).max(256);
    let room = usize::try_from(soft.saturating_sub(reserve).max(16)).unwrap_or(usize::MAX);
    if server.max_connections <= room {
        return None;
    }
    let asked = server.max_connections;
    server.max_connections = room;
    Some(format!(
        "warning: [server] max_connections = {asked} does not fit in the limit of {soft} open files (minus {reserve} kept for the store and tools): serving at most {room} connections at once; raise the hard limit (ulimit -Hn) to allow more"
    ))
}

pub async fn serve(
    app: &App,
    addr: Option<String>,
    workers: Option<usize>,
    metrics_addr: Option<String>,
) -> Result<(), Exit> {
    let mut config = app.load_config()?;
    if let Some(a) = addr {
        config.server.server.addr = a;
    }
    if let Some(w) = workers {
        config.server.server.workers = w;
    }
    if metrics_addr.is_some() {
        config.server.server.metrics_addr = metrics_addr;
    }
    let fd_note = fit_descriptors(&mut config.server.server);
    // This process serves with the flags' addresses, workers and connection bound.
    let config = app.configure(config)?;
    let store = app.store().await?;
    let addr = config.server.server.addr.clone();
    let listener = hilo_server::listen::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (in use? pick another with --addr)"))
        .map_err(Exit::invalid)?;
    let local = listener.local_addr().map_err(|e| anyhow!(e))?;
    let scrapes = match &config.server.server.metrics_addr {
        Some(addr) => Some(
            hilo_server::listen::bind(addr)
                .await
                .with_context(|| {
                    format!(
                        "cannot serve metrics on {addr} ([server] metrics_addr, --metrics-addr): in use? give a free HOST:PORT"
                    )
                })
                .map_err(Exit::invalid)?,
        ),
        None => None,
    };
    let workers = config.server.server.workers;
    let state = app_state(app, config).await?;
    // A chat widget whose workflow cannot take a chat would fail every customer: refuse it now.
    hilo_runtime::conversations::check_widgets(state.hil(), &config.server.console.chat_widgets)
        .await
        .map_err(|e| Exit::invalid(anyhow!("{e}")))?;
    // Before anything is announced: see stop_signal.
    let stop = stop_signal();
    if let Some(scrapes) = &scrapes {
        let shown = scrapes
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        noteln!(
            "metrics of every tenant on http://{shown}/metrics (no key: keep it private), liveness on http://{shown}/health"
        );
    }
    noteln!(
        "hilo serving http://{local}/api/v1 on {} ({workers} workers); OpenAPI at /api/v1/openapi.json; Ctrl-C stops it",
        store.describe()
    );
    let console = &config.server.console;
    if console.enabled {
        noteln!(
            "console at http://{local}{} (sign in with a key from `hilo keys create`)",
            console.prefix()
        );
    }
    if let Some(note) = fd_note {
        errln!("{note}");
    }
    hilo_server::serve_with_metrics(state, listener, scrapes, stop)
        .await
        .context("the server stopped with an error")?;
    noteln!("stopped");
    Ok(())
}

/// What `hilo serve` and `hilo mcp` serve with: the engine, tools and settings of `config`.
async fn app_state(
    app: &App,
    config: &crate::config::Config,
) -> Result<hilo_server::AppState, Exit> {
    let store = app.store().await?;
    let secrets: Arc<dyn hilo_tools::Secrets> = Arc::new(hilo_tools::secrets::NotingSecrets::new(
        Arc::new(app.vault(&store)),
        app.redactor().clone(),
    ));
    Ok(hilo_server::AppState::new(hilo_server::Parts {
        engine: app.engine().await?,
        catalog: config.catalog.clone(),
        settings: config.server.clone(),
        llm: config.llm.clone(),
        tools: app.tools().await?,
        secrets: Some(secrets),
        knowledge: app.knowledge().await?,
        connections: Some(app.tools().await?.connections()),
    }))
}

/// `hilo mcp`: the tenant's exposed workflows as MCP tools over stdio (stdout carries only the
/// protocol), with the runtime's loops running beside it until stdin closes or a signal
/// comes; then unfinished executions are handed back as `hilo serve` does.
pub async fn mcp(app: &App, workers: Option<usize>) -> Result<(), Exit> {
    let mut config = app.load_config()?;
    if let Some(w) = workers {
        config.server.server.workers = w;
    }
    let config = app.configure(config)?;
    let tenant = app.global().tenant.clone();
    let state = app_state(app, config).await?;
    let handler =
        hilo_server::mcp::Handler::for_tenant(state.runtime().clone(), state.settings(), &tenant);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let runtime = state.runtime().clone();
    let background = tokio::spawn(async move {
        let mut rx = stop_rx;
        runtime
            .run(async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await
    });
    noteln!("hilo MCP server for tenant `{tenant}` on stdio; close stdin or Ctrl-C to stop");
    let stop = stop_signal();
    let served = async { handler.serve_stdio().await.map_err(|e| anyhow!("{e}")) };
    let outcome = tokio::select! {
        r = served => r,
        _ = stop => Ok(()),
    };
    let _ = stop_tx.send(true);
    let _ = background.await;
    outcome.map_err(Exit::from)
}

pub async fn keys(app: &App, cmd: KeysCommand) -> Result<(), Exit> {
    let g = app.global();
    let store = app.store().await?;
    match cmd {
        KeysCommand::Create {
            scopes,
            name,
            agent,
            json,
        } => {
            let mut parsed = Vec::new();
            for s in &scopes {
                let scope = Scope::parse(s).ok_or_else(|| {
                    Exit::invalid(anyhow!(
                        "`{s}` is not a scope; give read, execute and/or admin, comma-separated"
                    ))
                })?;
                if !parsed.contains(&scope) {
                    parsed.push(scope);
                }
            }
            parsed.sort();
            let (key, mut record) =
                hilo_server::auth::generate_key(&g.tenant, &name, parsed, now_ms())
                    .map_err(|e| Exit::from(anyhow!(e)))?;
            if let Some(agent) = agent {
                let a = store.get_agent(&g.tenant, &agent).await.map_err(|e| {
                    Exit::invalid(anyhow!(
                        "{e} (a key for an agent needs the agent first: hilo hil agents set {agent} …)"
                    ))
                })?;
                record.agent = Some(a.id);
            }
            store
                .create_api_key(&record)
                .await
                .map_err(|e| Exit::from(anyhow!(e)))?;
            let scopes: Vec<&str> = record.scopes.iter().map(|s| s.as_str()).collect();
            if json {
                outln!(
                    "{}",
                    json!({"id": record.id, "key": key, "tenant": record.tenant, "scopes": scopes})
                );
            } else {
                outln!("{key}");
                noteln!(
                    "created {} for tenant {} (scopes {}); this is the only time the key is shown: send it as `Authorization: Bearer <key>`",
                    record.id,
                    record.tenant,
                    scopes.join(",")
                );
            }
        }
        KeysCommand::List { json } => {
            let keys = store
                .list_api_keys(&g.tenant)
                .await
                .map_err(|e| Exit::from(anyhow!(e)))?;
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&keys).map_err(|e| anyhow!(e))?
                );
            } else if keys.is_empty() {
                noteln!(
                    "no keys for tenant {}; create one with `hilo keys create`",
                    g.tenant
                );
            } else {
                outln!(
                    "{:<18} {:<16} {:<20} {:<25} STATUS",
                    "ID",
                    "NAME",
                    "SCOPES",
                    "CREATED"
                );
                for k in keys {
                    let scopes: Vec<&str> = k.scopes.iter().map(|s| s.as_str()).collect();
                    let created = chrono::DateTime::from_timestamp_millis(k.created_at)
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                        .unwrap_or_default();
                    outln!(
                        "{:<18} {:<16} {:<20} {:<25} {}",
                        k.id,
                        k.name,
                        scopes.join(","),
                        created,
                        if k.revoked_at.is_some() {
                            "revoked"
                        } else {
                            "active"
                        }
                    );
                }
            }
        }
        KeysCommand::Revoke { id, json } => {
            let found = store
                .revoke_api_key(&g.tenant, &id, now_ms())
                .await
                .map_err(|e| Exit::from(anyhow!(e)))?;
            if !found {
                return Err(Exit::invalid(anyhow!(
                    "tenant {} has no key {id}; `hilo keys list --tenant {}` shows its keys",
                    g.tenant,
                    g.tenant
                )));
            }
            if json {
                print_json(&serde_json::json!({"id": id, "tenant": g.tenant, "revoked": true}))?;
            } else {
                noteln!("revoked {id}");
            }
        }
    }
    Ok(())
}
