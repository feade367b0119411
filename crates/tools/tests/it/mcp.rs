//! MCP tools against the official reference server `@modelcontextprotocol/server-everything`
//! (installed from npm on first use): discovery, classes from annotations, calls through the
//! executor, `isError` results, a server killed mid-call, startup failures, streamable HTTP,
//! and shutdown leaving no process behind.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hilo_core::ToolClass;
use hilo_core::exec::codes;
use hilo_core::tool::{ToolExecutor, ToolRequest, ToolSource};
use hilo_tools::mcp::{McpServerConfig, McpServers, testkit};
use hilo_tools::{Executor, ExecutorConfig};
use serde_json::{Value, json};

fn everything_args(transport: &str) -> Vec<String> {
    let entry = testkit::everything().unwrap_or_else(|e| panic!("{e}"));
    vec![entry.display().to_string(), transport.to_string()]
}

/// server-everything over stdio, with two environment variables: one `get-env` shows, one
/// that keeps `gzip-file-as-resource` off the network.
fn everything() -> McpServerConfig {
    let args = everything_args("stdio");
    let mut c = McpServerConfig::stdio("node", &[&args[0], &args[1]]);
    c.env
        .insert("GZIP_ALLOWED_DOMAINS".into(), "example.invalid".into());
    c.env
        .insert("HILO_MCP_MARK".into(), "from-hilo-toml".into());
    c
}

fn servers(list: &[(&str, McpServerConfig)]) -> BTreeMap<String, McpServerConfig> {
    list.iter()
        .map(|(n, c)| (n.to_string(), c.clone()))
        .collect()
}

async fn start(config: McpServerConfig) -> (McpServers, Executor) {
    let s = McpServers::connect(&servers(&[("everything", config)]))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ex = Executor::builder(ExecutorConfig::default())
        .tools(s.tools())
        .build()
        .unwrap();
    (s, ex)
}

fn req(tool: &str, input: Value) -> ToolRequest {
    crate::call_as(tool, input, "e1:n1")
}

fn alive(pid: u32) -> bool {
    // A zombie is not alive (it only waits for its parent to reap it).
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.split(") ").nth(1).unwrap_or("").starts_with('Z'))
        .unwrap_or(false)
}

async fn gone_within(pid: u32, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    !alive(pid)
}

#[tokio::test]
async fn discovers_tools_with_schemas_classes_and_source() {
    let (s, ex) = start(everything()).await;
    let specs = ex.specs();
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    for known in [
        "mcp.everything.echo",
        "mcp.everything.get-sum",
        "mcp.everything.get-structured-content",
        "mcp.everything.toggle-simulated-logging",
    ] {
        assert!(names.contains(&known), "{known} missing from {names:?}");
    }
    let spec = |n: &str| specs.iter().find(|s| s.name == n).unwrap();
    let echo = spec("mcp.everything.echo");
    assert_eq!(echo.source, ToolSource::Mcp("everything".into()));
    assert_eq!(echo.description, "Echoes back the input string");
    // readOnlyHint: true → safe; readOnlyHint: false (not destructive) → still dangerous.
    assert_eq!(echo.class, ToolClass::Safe);
    assert_eq!(
        spec("mcp.everything.toggle-simulated-logging").class,
        ToolClass::Dangerous
    );
    assert_eq!(
        echo.input_schema.as_ref().unwrap()["properties"]["message"]["type"],
        "string"
    );
    assert!(echo.output_schema.is_none());
    let structured = spec("mcp.everything.get-structured-content");
    assert_eq!(
        structured.output_schema.as_ref().unwrap()["properties"]["temperature"]["type"],
        "number"
    );
    assert!(s.warnings().is_empty(), "{:?}", s.warnings());

    let pid = s.process_id("everything").unwrap();
    assert!(alive(pid));
    let started = Instant::now();
    s.shutdown().await;
    assert!(
        gone_within(pid, Duration::from_secs(2)).await,
        "the server outlived shutdown"
    );
    eprintln!("shutdown took {:?}", started.elapsed());
    let e = ex
        .execute(req("mcp.everything.echo", json!({"message": "late"})))
        .await
        .unwrap_err();
    assert_eq!(e.code, codes::UPSTREAM_ERROR);
}

#[tokio::test]
async fn calls_go_through_the_executor() {
    let (s, ex) = start(everything()).await;

    let out = ex
        .execute(req("mcp.everything.echo", json!({"message": "hi"})))
        .await
        .unwrap();
    assert_eq!(
        out,
        json!({"content": [{"type": "text", "text": "Echo: hi"}]})
    );

    let out = ex
        .execute(req("mcp.everything.get-sum", json!({"a": 2, "b": 40})))
        .await
        .unwrap();
    assert_eq!(out["content"][0]["text"], "The sum of 2 and 40 is 42.");

    // structuredContent is the output, checked against the tool's outputSchema.
    let out = ex
        .execute(req(
            "mcp.everything.get-structured-content",
            json!({"location": "Chicago"}),
        ))
        .await
        .unwrap();
    assert_eq!(out["temperature"], 36);
    assert_eq!(out["conditions"], "Light rain / drizzle");

    // The input schema from the server is enforced before the call.
    let e = ex
        .execute(req("mcp.everything.get-sum", json!({"a": "two", "b": 1})))
        .await
        .unwrap_err();
    assert_eq!(e.code, codes::INVALID_INPUT);
    assert!(e.message.contains("/a"), "{}", e.message);

    // `env` reaches the child.
    let out = ex
        .execute(req("mcp.everything.get-env", json!({})))
        .await
        .unwrap();
    let text = out["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("from-hilo-toml"), "{text}");

    // isError: true → UPSTREAM_REJECTED with the server's text, not retried.
    let e = ex
        .execute(req(
            "mcp.everything.gzip-file-as-resource",
            json!({"name": "x.gz", "data": "ftp://example.invalid/file"}),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code, codes::UPSTREAM_REJECTED);
    assert!(!e.retryable);
    assert!(
        e.message.contains("MCP server `everything`")
            && e.message.contains("Unsupported URL protocol"),
        "{}",
        e.message
    );
    assert_eq!(e.detail.as_ref().unwrap()["content"][0]["type"], "text");

    // A non-text content item comes through as MCP sends it.
    let out = ex
        .execute(req("mcp.everything.get-tiny-image", json!({})))
        .await
        .unwrap();
    let items = out["content"].as_array().unwrap();
    assert!(
        items
            .iter()
            .any(|c| c["type"] == "image" && c["mimeType"] == "image/png"),
        "{out}"
    );

    // The executor's timeout ends a slow call; the session stays usable.
    let mut slow = req(
        "mcp.everything.trigger-long-running-operation",
        json!({"duration": 10, "steps": 2}),
    );
    slow.timeout_ms = Some(300);
    let e = ex.execute(slow).await.unwrap_err();
    assert_eq!(e.code, codes::TIMEOUT);
    let out = ex
        .execute(req("mcp.everything.echo", json!({"message": "still here"})))
        .await
        .unwrap();
    assert_eq!(out["content"][0]["text"], "Echo: still here");
    s.shutdown().await;
}

#[tokio::test]
async fn pagination_annotations_names_meta_and_json_rpc_errors() {
    let script = testkit::paged_server().unwrap_or_else(|e| panic!("{e}"));
    let s = McpServers::connect(&servers(&[(
        "paged",
        McpServerConfig::stdio("node", &[script.to_str().unwrap()]),
    )]))
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let ex = Executor::builder(ExecutorConfig::default())
        .tools(s.tools())
        .build()
        .unwrap();
    // Seven tools over four pages; one name hilo cannot use is left out with a warning.
    let mut names: Vec<String> = s.tools().names().map(str::to_string).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "mcp.paged.explode",
            "mcp.paged.meta",
            "mcp.paged.odd",
            "mcp.paged.peek",
            "mcp.paged.plain",
            "mcp.paged.wipe"
        ]
    );
    assert_eq!(s.warnings().len(), 1, "{:?}", s.warnings());
    assert!(s.warnings()[0].contains("`bad name!` is left out"));
    let class = |n: &str| ex.spec(n, &[]).unwrap().class;
    assert_eq!(class("mcp.paged.peek"), ToolClass::Safe);
    assert_eq!(
        class("mcp.paged.plain"),
        ToolClass::Dangerous,
        "no annotations"
    );
    assert_eq!(class("mcp.paged.wipe"), ToolClass::Dangerous);
    assert_eq!(
        class("mcp.paged.odd"),
        ToolClass::Dangerous,
        "destructive wins"
    );

    // The idempotency key travels in `_meta`.
    let out = ex
        .execute(req("mcp.paged.meta", json!({"x": 1})))
        .await
        .unwrap();
    assert_eq!(out["meta"]["hilo/idempotencyKey"], "e1:n1");
    assert_eq!(out["arguments"], json!({"x": 1}));

    // A JSON-RPC error is a rejection, not retried.
    let e = ex
        .execute(req("mcp.paged.explode", json!({})))
        .await
        .unwrap_err();
    assert_eq!(e.code, codes::UPSTREAM_REJECTED);
    assert!(!e.retryable);
    assert!(
        e.message
            .contains("MCP server `paged` refused the call of `explode`")
            && e.message.contains("exploded on purpose"),
        "{}",
        e.message
    );
    s.shutdown().await;
}

#[tokio::test]
async fn a_server_killed_mid_call_fails_retryably_and_is_started_again() {
    let (s, ex) = start(everything()).await;
    let pid = s.process_id("everything").unwrap();
    let ex2 = ex.clone();
    let slow = tokio::spawn(async move {
        ex2.execute(req(
            "mcp.everything.trigger-long-running-operation",
            json!({"duration": 10, "steps": 2}),
        ))
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let e = slow.await.unwrap().unwrap_err();
    assert_eq!(e.code, codes::UPSTREAM_ERROR, "{}", e.message);
    assert!(e.retryable);
    assert!(
        e.message.contains("MCP server `everything`"),
        "{}",
        e.message
    );

    // The next attempt starts the server again.
    let out = ex
        .execute(req("mcp.everything.echo", json!({"message": "again"})))
        .await
        .unwrap();
    assert_eq!(out["content"][0]["text"], "Echo: again");
    let new_pid = s.process_id("everything").unwrap();
    assert_ne!(new_pid, pid);
    s.shutdown().await;
    assert!(gone_within(new_pid, Duration::from_secs(2)).await);
}

#[tokio::test]
async fn startup_failures_name_the_server_the_command_and_what_to_do() {
    let e = McpServers::connect(&servers(&[(
        "files",
        McpServerConfig::stdio("hilo-no-such-mcp-server", &["--root", "/tmp"]),
    )]))
    .await
    .err()
    .unwrap();
    assert_eq!(e.code(), "MCP_START");
    let m = e.to_string();
    assert!(
        m.contains("MCP server `files` (hilo-no-such-mcp-server --root /tmp)")
            && m.contains("was not found; install it, or give its full path"),
        "{m}"
    );

    // A program that exits before answering initialize: its stderr is quoted.
    let e = McpServers::connect(&servers(&[(
        "broken",
        McpServerConfig::stdio("sh", &["-c", "echo cannot open the database >&2; exit 3"]),
    )]))
    .await
    .err()
    .unwrap();
    let m = e.to_string();
    assert!(
        m.contains("MCP server `broken`")
            && m.contains("before answering `initialize`")
            && m.contains("cannot open the database")
            && m.contains("check that `command` and `args` start an MCP server"),
        "{m}"
    );

    // A program that never answers: the startup timeout, and the child is stopped.
    let mut silent = McpServerConfig::stdio("sleep", &["37.25"]);
    silent.startup_timeout_ms = 400;
    let started = Instant::now();
    let e = McpServers::connect(&servers(&[("silent", silent)]))
        .await
        .err()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        e.to_string().contains("within 400 ms")
            && e.to_string().contains("raise `startup_timeout_ms`"),
        "{e}"
    );
    let start = Instant::now();
    while !processes_with("37.25").is_empty() && start.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        processes_with("37.25").is_empty(),
        "the silent server was left running"
    );

    // An HTTP endpoint nobody listens on.
    let port = free_port();
    let e = McpServers::connect(&servers(&[(
        "remote",
        McpServerConfig::http(format!("http://127.0.0.1:{port}/mcp")),
    )]))
    .await
    .err()
    .unwrap();
    let m = e.to_string();
    assert!(
        m.contains(&format!(
            "MCP server `remote` (http://127.0.0.1:{port}/mcp)"
        )) && m.contains("check that the server is running"),
        "{m}"
    );

    // An optional server that fails is skipped with a warning; the others still start.
    let mut optional = McpServerConfig::stdio("hilo-no-such-mcp-server", &[]);
    optional.optional = true;
    let s = McpServers::connect(&servers(&[
        ("everything", everything()),
        ("extra", optional),
    ]))
    .await
    .unwrap();
    assert_eq!(s.names().collect::<Vec<_>>(), ["everything"]);
    assert_eq!(s.warnings().len(), 1);
    assert!(
        s.warnings()[0].contains("MCP server `extra`")
            && s.warnings()[0].contains("it is optional"),
        "{:?}",
        s.warnings()
    );
    assert!(s.tools().get("mcp.everything.echo").is_some());
    s.shutdown().await;
}

#[tokio::test]
async fn streamable_http_server() {
    let port = free_port();
    let args = everything_args("streamableHttp");
    let mut child = std::process::Command::new("node")
        .args(&args)
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let waiting = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            waiting.elapsed() < Duration::from_secs(20),
            "the HTTP server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut config = McpServerConfig::http(format!("http://127.0.0.1:{port}/mcp"));
    config
        .headers
        .insert("X-Hilo-Test".into(), "header value".into());
    let (s, ex) = start(config).await;
    let echo = ex.spec("mcp.everything.echo", &[]).unwrap();
    assert_eq!(echo.source, ToolSource::Mcp("everything".into()));
    assert_eq!(echo.class, ToolClass::Safe);
    let out = ex
        .execute(req("mcp.everything.echo", json!({"message": "over http"})))
        .await
        .unwrap();
    assert_eq!(out["content"][0]["text"], "Echo: over http");
    let out = ex
        .execute(req("mcp.everything.get-sum", json!({"a": 1.5, "b": 2})))
        .await
        .unwrap();
    assert_eq!(out["content"][0]["text"], "The sum of 1.5 and 2 is 3.5.");
    s.shutdown().await;
    child.kill().unwrap();
    child.wait().unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Live processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(marker) && alive(pid) {
            out.push(pid);
        }
    }
    out
}
