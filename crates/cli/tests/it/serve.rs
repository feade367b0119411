//! `hilo serve` as a real process: keys made by `hilo keys`, the CLI's remote mode against
//! it, and SIGTERM handing an in-flight execution over (checkpointed) to the next start.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::{fixtures, hilo_cmd, text};

/// Starts `hilo serve` on a free port; returns the child and its base URL.
pub(crate) fn serve(db: &Path, env: &[(&str, &str)]) -> (Child, String) {
    let (child, url, _) = serve_with(db, &[], env);
    (child, url)
}

/// `hilo serve ARGS` on a free port: the child, the API's base URL and, when it serves one,
/// the address of its metrics listener (both read from its stderr, up to the banner).
fn serve_with(db: &Path, args: &[&str], env: &[(&str, &str)]) -> (Child, String, Option<String>) {
    let mut all = vec!["serve", "--addr", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let mut child = hilo_cmd(&all, db, env)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut metrics = None;
    // "metrics of every tenant on http://HOST:PORT/metrics …", then
    // "hilo serving http://127.0.0.1:PORT/api/v1 on …"
    let url = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some((_, rest)) = line.split_once("metrics of every tenant on http://") {
            metrics = rest.split_once("/metrics").map(|(a, _)| a.to_string());
        } else if let Some(rest) = line.strip_prefix("hilo serving http://") {
            let addr = rest.split_whitespace().next().unwrap();
            break format!("http://{}", addr.trim_end_matches("/api/v1"));
        } else {
            panic!("unexpected line before the banner: {line}");
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, url, metrics)
}

pub(crate) fn remote(db: &Path, url: &str, key: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--server", url, "--api-key", key];
    all.extend_from_slice(args);
    hilo_cmd(&all, db, &[]).output().unwrap()
}

pub(crate) fn sigterm(child: &Child) {
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn remote_mode_and_graceful_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let key_out = hilo_cmd(
        &["keys", "create", "--tenant", "acme", "--scopes", "admin"],
        &db,
        &[],
    )
    .output()
    .unwrap();
    assert_eq!(key_out.status.code(), Some(0), "{}", text(&key_out.stderr));
    let key = text(&key_out.stdout).trim().to_string();
    assert!(key.starts_with("hilo_sk_"), "{key}");
    let listed = hilo_cmd(&["keys", "list", "--tenant", "acme"], &db, &[])
        .output()
        .unwrap();
    assert!(
        !text(&listed.stdout).contains(&key),
        "a key is shown only once"
    );

    let config = dir.path().join("hilo.toml");
    std::fs::write(&config, "[server]\nshutdown_grace_ms = 500\n").unwrap();
    let env = [
        ("HILO_LEASE_MS", "2000"),
        ("HILO_CONFIG", config.to_str().unwrap()),
    ];
    let (mut server, url) = serve(&db, &env);
    let nap = fixtures().join("serve/nap.yaml");
    let out = remote(
        &db,
        &url,
        &key,
        &[
            "--tenant",
            "acme",
            "workflows",
            "import",
            nap.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("nap@1 created"),
        "{}",
        text(&out.stdout)
    );

    // A layout the builder saved goes out with the export, through the server too.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = rt.block_on(async {
        reqwest::Client::new()
            .put(format!("{url}/api/v1/workflows/nap/layout"))
            .bearer_auth(&key)
            .json(&serde_json::json!({"layout": {"nodes": {"nap": {"x": 40, "y": 80}}}}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(status, 200);
    let layout = dir.path().join("nap.layout.json");
    let out = remote(
        &db,
        &url,
        &key,
        &[
            "workflows",
            "export",
            "nap",
            "--layout",
            layout.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&layout).unwrap()).unwrap();
    assert_eq!(
        written,
        serde_json::json!({"nodes": {"nap": {"x": 40, "y": 80}}})
    );

    // A run through the server: output and exit code as in local mode.
    let out = remote(&db, &url, &key, &["run", "nap", "--input", r#"{"ms": 5}"#]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("\"slept\": 5"),
        "{}",
        text(&out.stdout)
    );
    let out = remote(&db, &url, &key, &["executions", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Node records page through the server as they do locally: `done`, then `nap`.
    let run_id = list[0]["id"].as_str().unwrap().to_string();
    let out = remote(
        &db,
        &url,
        &key,
        &["executions", "show", &run_id, "--limit", "1"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let page = text(&out.stdout);
    assert!(
        page.contains("  done ") && !page.contains("  nap "),
        "{page}"
    );
    assert!(
        page.contains(&format!(
            "… 1 more nodes: hilo executions show {run_id} --after 'done'"
        )),
        "{page}"
    );
    let out = remote(
        &db,
        &url,
        &key,
        &[
            "executions",
            "show",
            &run_id,
            "--limit",
            "1",
            "--after",
            "done",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let page = text(&out.stdout);
    assert!(
        page.contains("  nap ") && !page.contains("more nodes"),
        "{page}"
    );

    // Errors come back with the server's message; a bad key is refused.
    let out = remote(&db, &url, &key, &["run", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("WORKFLOW_NOT_FOUND"),
        "{}",
        text(&out.stderr)
    );
    let out = remote(&db, &url, "hilo_sk_wrong", &["executions", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("UNAUTHORIZED"),
        "{}",
        text(&out.stderr)
    );

    // SIGTERM while a step is in flight: the server stops within its grace period and gives
    // the execution up; the next server finishes it.
    let out = remote(
        &db,
        &url,
        &key,
        &["run", "nap", "--detach", "--input", r#"{"ms": 3000}"#],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    sigterm(&server);
    let status = server.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped after its grace period"
    );
    let show = hilo_cmd(
        &["executions", "show", &id, "--json", "--tenant", "acme"],
        &db,
        &[],
    )
    .output()
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(v["status"], "running", "checkpointed, not finished: {v}");

    let (mut second, url2) = serve(&db, &env);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = remote(&db, &url2, &key, &["executions", "show", &id, "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if v["status"] == "succeeded" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the next server never finished {id}: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    sigterm(&second);
    assert!(second.wait().unwrap().success());
}

/// An admin key of `tenant`.
fn admin_key(db: &Path, tenant: &str) -> String {
    let out = hilo_cmd(
        &["keys", "create", "--tenant", tenant, "--scopes", "admin"],
        db,
        &[],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

/// Imports the `nap` workflow as `workflow` with `key` and runs it once through the server.
fn run_as(db: &Path, dir: &Path, url: &str, key: &str, workflow: &str) {
    let yaml = std::fs::read_to_string(fixtures().join("serve/nap.yaml"))
        .unwrap()
        .replace("name: nap", &format!("name: {workflow}"));
    let file = dir.join(format!("{workflow}.yaml"));
    std::fs::write(&file, yaml).unwrap();
    let out = remote(
        db,
        url,
        key,
        &["workflows", "import", file.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = remote(db, url, key, &["run", workflow, "--input", r#"{"ms": 1}"#]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// Stops a server that answers (its signal handler is in place by then) with SIGTERM: it
/// exits cleanly.
fn stop(mut server: Child, url: &str) {
    let (status, _) = get_text(url, "/api/v1/health", "");
    assert_eq!(status, 200);
    sigterm(&server);
    assert!(server.wait().unwrap().success());
}

/// `GET path` on `base` (`http://HOST:PORT`) with `key`: the status and the body as text.
fn get_text(base: &str, path: &str, key: &str) -> (u16, String) {
    let (status, body) = crate::planted::get(base, path, key);
    (status, text(&body))
}

/// Issue 50, the metrics view of a second tenant: tenants alpha and bravo run workflows on one
/// `hilo serve`; bravo's admin key on `GET /api/v1/metrics` gets series labelled with bravo
/// only: its own workflow's counts and its gauges, none labelled alpha, no name of alpha's
/// workflow, and none of the process-wide series that add up every tenant's activity. And the
/// other way round.
#[test]
fn a_second_tenants_metrics_show_nothing_of_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let alpha = admin_key(&db, "alpha");
    let bravo = admin_key(&db, "bravo");
    let (server, url) = serve(&db, &[]);
    run_as(&db, dir.path(), &url, &alpha, "alpha_payroll");
    run_as(&db, dir.path(), &url, &bravo, "bravo_refunds");

    // Until the gauges the store is sampled for (every 5 s) are there for both tenants.
    let deadline = Instant::now() + Duration::from_secs(30);
    let view = loop {
        let (status, view) = get_text(&url, "/api/v1/metrics", &bravo);
        assert_eq!(status, 200, "{view}");
        if view.contains("hilo_executions_active{tenant=\"bravo\"}") {
            break view;
        }
        assert!(Instant::now() < deadline, "no gauges for bravo:\n{view}");
        std::thread::sleep(Duration::from_millis(200));
    };
    for leaked in [
        "alpha",
        "hilo_queue_depth",
        "hilo_http_requests_total",
        "hilo_tool_calls_total",
        "hilo_nodes_total",
    ] {
        assert!(
            !view.contains(leaked),
            "`{leaked}` in bravo's metrics:\n{view}"
        );
    }
    assert!(
        view.contains(
            "hilo_executions_finished_total{tenant=\"bravo\",workflow=\"bravo_refunds\",status=\"succeeded\"} 1"
        ),
        "bravo's own execution is not in its view:\n{view}"
    );
    let samples: Vec<&str> = view
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert!(samples.len() >= 5, "{view}");
    for s in &samples {
        assert!(s.contains("tenant=\"bravo\""), "not bravo's: {s}");
    }
    // Help and type lines only for the families shown.
    for family in view.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = family.split_whitespace().next().unwrap();
        assert!(
            samples.iter().any(|s| s.starts_with(name)),
            "{name} has no sample:\n{view}"
        );
    }

    let (_, view) = get_text(&url, "/api/v1/metrics", &alpha);
    assert!(
        view.contains("workflow=\"alpha_payroll\"") && !view.contains("bravo"),
        "{view}"
    );
    stop(server, &url);
}

/// `[server] metrics_addr` (off by default; set in the file, `HILO_SERVER__METRICS_ADDR` or
/// `--metrics-addr`, each over the one before): the whole process's metrics, every tenant's
/// and the process-wide ones, without a key, on an address of their own that serves nothing
/// of the API; an address it cannot listen on stops `hilo serve` with a message naming it.
#[test]
fn the_metrics_listener_serves_every_tenant_to_the_operator() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let alpha = admin_key(&db, "alpha");
    let bravo = admin_key(&db, "bravo");
    let config = dir.path().join("hilo.toml");
    std::fs::write(&config, "[server]\nmetrics_addr = \"nowhere\"\n").unwrap();
    let file = [("HILO_CONFIG", config.to_str().unwrap())];

    // The file's address cannot be listened on: the server does not start.
    let out = hilo_cmd(&["serve", "--addr", "127.0.0.1:0"], &db, &file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cannot serve metrics on nowhere ([server] metrics_addr"),
        "{}",
        text(&out.stderr)
    );
    // Off by default: no metrics listener.
    let (plain, url, none) = serve_with(&db, &[], &[]);
    stop(plain, &url);
    assert_eq!(none, None);
    // The environment over the file.
    let env = [file[0], ("HILO_SERVER__METRICS_ADDR", "127.0.0.1:0")];
    let (by_env, url, addr) = serve_with(&db, &[], &env);
    let (status, _) = get_text(&format!("http://{}", addr.unwrap()), "/health", "");
    assert_eq!(status, 200, "the variable's address is served");
    stop(by_env, &url);

    // The flag over both.
    let (server, url, addr) = serve_with(&db, &["--metrics-addr", "127.0.0.1:0"], &file);
    let metrics = format!("http://{}", addr.expect("the flag's address is served"));
    run_as(&db, dir.path(), &url, &alpha, "alpha_payroll");
    run_as(&db, dir.path(), &url, &bravo, "bravo_refunds");
    let (status, all) = get_text(&metrics, "/metrics", "");
    assert_eq!(status, 200, "{all}");
    for want in [
        "hilo_executions_finished_total{tenant=\"alpha\",workflow=\"alpha_payroll\",status=\"succeeded\"} 1",
        "hilo_executions_finished_total{tenant=\"bravo\",workflow=\"bravo_refunds\",status=\"succeeded\"} 1",
        "# HELP hilo_queue_depth ",
        "hilo_executions_in_process ",
        "hilo_http_requests_total{",
        "hilo_tool_calls_total{tool=\"test.sleep\"",
    ] {
        assert!(all.contains(want), "`{want}` missing:\n{all}");
    }
    let (status, _) = get_text(&metrics, "/health", "");
    assert_eq!(status, 200);
    // It serves nothing of the API, and the API's `/metrics` still needs a key.
    let (status, _) = get_text(&metrics, "/api/v1/executions", &alpha);
    assert_eq!(status, 404);
    let (status, body) = get_text(&url, "/api/v1/metrics", "");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("UNAUTHORIZED"), "{body}");
    stop(server, &url);
}
