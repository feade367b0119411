//! Issue 34: planted values never appear in logs, spans or metrics. A vault secret (sent by a
//! declarative HTTP tool whose server answers with it in a 500), a bearer token and an e-mail
//! address (in the run's input, in the arguments a reasoning agent's model gives a tool, in
//! the model's answer) and the provider's API key go through one run on `hilo serve` with
//! JSON logs at `debug`, traces exported (content capture on) to an in-process OTLP/HTTP
//! receiver, and Prometheus metrics scraped; every log line, every exported request body and
//! the metrics text are searched: zero hits. The same outputs show the run was seen: log lines
//! carry the execution's tenant, id, node and trace id, the spans name the execution.
//!
//! Issue 50: hilo's own API keys and vault values with neutral words around them. The run's
//! input quotes the server's real API key (`hilo_sk_…`), a vault secret no call uses and the
//! one the CRM tool uses; the model passes another `hilo_sk_…` key and both vault values to a
//! tool and repeats them in its answer. Beyond the log, the spans and the metrics, the audit
//! trail (`GET /audit`, `hilo audit`) and the cost ledger's rows (`hilo costs --execution`,
//! content captured) are searched: zero hits. The execution's own record keeps them (the run's
//! output quotes the answer whole): records are not sinks.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hilo_llm::testserver::Reply;
use hilo_tools::testserver::TestServer;
use serde_json::{Value, json};

use crate::agents::Fake;
use crate::{hilo_cmd, text};

const SECRET: &str = "vault-Pl4nted-s3cret-value-77";
const BEARER: &str = "pl4ntedBearerTok3n0123456789";
const EMAIL: &str = "planted.person@example.org";
const API_KEY: &str = "sk-pl4nted0123456789abcdefXYZ";
/// A vault secret of the tenant that no call reads: the process holds it all the same.
const HELD: &str = "vault-H3ld-0ther-value-88";
/// A hilo API key's shape (`hilo_sk_` + 43 URL-safe base64 characters), not of this server.
const HILO_KEY: &str = "hilo_sk_pl4ntedK3y0fAn0therServer_0123456789-abcdEF";

/// A minimal OTLP/HTTP receiver: every request's raw body is kept; each is answered 200.
pub(crate) struct Receiver {
    pub(crate) base: String,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Receiver {
    pub(crate) fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = bodies.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let kept = kept.clone();
                std::thread::spawn(move || {
                    let mut r = BufReader::new(conn.try_clone().unwrap());
                    loop {
                        let mut len = 0usize;
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        loop {
                            let mut h = String::new();
                            if r.read_line(&mut h).unwrap_or(0) == 0 {
                                return;
                            }
                            let h = h.trim_end();
                            if h.is_empty() {
                                break;
                            }
                            if let Some((k, v)) = h.split_once(':')
                                && k.eq_ignore_ascii_case("content-length")
                            {
                                len = v.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0; len];
                        if r.read_exact(&mut body).is_err() {
                            return;
                        }
                        kept.lock().unwrap().push(body);
                        let _ = conn.write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
                        );
                    }
                });
            }
        });
        Receiver { base, bodies }
    }

    pub(crate) fn all(&self) -> Vec<u8> {
        self.bodies.lock().unwrap().concat()
    }
}

/// The planted values (and `extra`, known at run time) and the forms they travel in
/// (JSON-escaped, percent-encoded `@`).
fn needles(extra: &[&str]) -> Vec<String> {
    let mut v = Vec::new();
    for s in [SECRET, BEARER, EMAIL, API_KEY, HELD, HILO_KEY]
        .iter()
        .chain(extra)
    {
        v.push(s.to_string());
        v.push(s.replace('@', "%40"));
        v.push(
            serde_json::to_string(s)
                .unwrap()
                .trim_matches('"')
                .to_string(),
        );
    }
    v.sort();
    v.dedup();
    v
}

fn find_in(what: &str, bytes: &[u8], extra: &[&str], hits: &mut Vec<String>) {
    for n in needles(extra) {
        if bytes.windows(n.len()).any(|w| w == n.as_bytes()) {
            hits.push(format!("{what}: `{n}`"));
        }
    }
}

/// A GET on the server; status and body (the server answers metrics with a length).
pub(crate) fn get(base: &str, path: &str, key: &str) -> (u16, Vec<u8>) {
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, raw[split + 4..].to_vec())
}

#[test]
fn planted_secrets_tokens_and_addresses_appear_in_no_log_span_or_metric() {
    let fake = Fake::start();
    let crm = fake.rt.block_on(TestServer::start()).unwrap();
    crm.reply(
        "/crm",
        500,
        json!({"error": format!("token {SECRET} refused"), "contact": EMAIL}),
    );
    let s = fake.server();
    s.script(
        "acme-1",
        Reply::tool_calls(
            vec![(
                "transform_json",
                json!({"data": {
                    "who": EMAIL,
                    "auth": format!("Bearer {BEARER}"),
                    "note": format!("the ticket quotes {HILO_KEY} next to {HELD} and {SECRET} as plain words"),
                }, "expression": "[who, note]"}),
            )],
            300,
            25,
        ),
    );
    s.script(
        "acme-1",
        Reply::text(
            format!("Write to {EMAIL} with Bearer {BEARER}. Ticket key {HILO_KEY}, vault {HELD}."),
            380,
            12,
        ),
    );
    let receiver = Receiver::start();

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let config = dir.path().join("hilo.toml");
    // The whole process's metrics (every tenant's) on a listener of their own.
    let metrics_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        &config,
        format!(
            r#"
[log]
format = "json"

[server]
metrics_addr = "127.0.0.1:{metrics_port}"

[telemetry]
otlp_endpoint = "{otlp}"
capture_content = true

[tools.http]
allow_hosts = ["127.0.0.1"]

[[tools.custom]]
name = "crm_call"
class = "safe"
http = {{ method = "POST", url = "{crm}", headers = {{ Authorization = "Bearer {{{{ secrets.api_token }}}}" }}, body = {{ token = "{{{{ secrets.api_token }}}}", who = "${{ args.who }}" }} }}

[llm.providers.acme_ai]
kind = "openai"
base_url = "{llm}"
api_key_env = "ACME_AI_KEY"

[[llm.models]]
name = "acme-1"
provider = "acme_ai"
input_per_1k = 0.002
output_per_1k = 0.006
context_window = 32000
capabilities = ["chat", "tools", "json_schema"]

[llm.profiles.fast]
primary = "acme-1"
fallback = []

[llm.profiles.balanced]
primary = "acme-1"
fallback = []
"#,
            otlp = receiver.base,
            crm = crm.url("/crm"),
            llm = s.openai_base_url(),
        ),
    )
    .unwrap();
    let wf = dir.path().join("planted.yaml");
    std::fs::write(
        &wf,
        r#"
name: planted
version: 1
input: {type: object, properties: {message: {type: string}, who: {type: string}}}
nodes:
  - id: crm
    type: tool
    tool: crm_call
    with: {who: "${ input.who }"}
    on_error: continue
    retry: {max_attempts: 1}
  - id: look
    type: agent
    agent: reasoning
    with:
      task: "Find who wrote: {{ input.message }}"
      tools: [transform_json]
  - id: done
    type: finish
    output: {answer: "${ look.output.answer }"}
edges:
  - {from: crm, to: look}
  - {from: look, to: done}
"#,
    )
    .unwrap();
    let config_arg = config.to_str().unwrap().to_string();
    let env = [
        ("ACME_AI_KEY", API_KEY),
        ("RUST_LOG", "debug"),
        ("HILO_CONFIG", config_arg.as_str()),
    ];

    // The vault's secrets (one the CRM tool sends, one no call reads) and an API key of the
    // server.
    for (name, value) in [("api_token", SECRET), ("other_token", HELD)] {
        let mut set = hilo_cmd(&["secrets", "set", name], &db, &env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        set.stdin
            .take()
            .unwrap()
            .write_all(format!("{value}\n").as_bytes())
            .unwrap();
        let set = set.wait_with_output().unwrap();
        assert_eq!(set.status.code(), Some(0), "{}", text(&set.stderr));
    }
    let key_out = hilo_cmd(
        &["keys", "create", "--tenant", "default", "--scopes", "admin"],
        &db,
        &env,
    )
    .output()
    .unwrap();
    assert_eq!(key_out.status.code(), Some(0), "{}", text(&key_out.stderr));
    let key = text(&key_out.stdout).trim().to_string();
    assert!(key.starts_with("hilo_sk_") && key.len() == 8 + 43, "{key}");

    // The server, its stderr (the JSON log) kept whole.
    let mut server = hilo_cmd(&["serve", "--addr", "127.0.0.1:0"], &db, &env)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    // The log's lines come first; the banner names the address.
    let mut before = String::new();
    let base = loop {
        let line = lines.next().unwrap().unwrap();
        before.push_str(&line);
        before.push('\n');
        if line.starts_with("hilo serving http://") {
            break line
                .split_whitespace()
                .find(|w| w.starts_with("http://"))
                .unwrap()
                .trim_end_matches(';')
                .trim_end_matches("/api/v1")
                .to_string();
        }
    };
    let log = Arc::new(Mutex::new(before));
    let into = log.clone();
    let drain = std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            let mut all = into.lock().unwrap();
            all.push_str(&l);
            all.push('\n');
        }
    });

    let remote = |args: &[&str]| {
        let mut all = vec!["--server", base.as_str(), "--api-key", key.as_str()];
        all.extend_from_slice(args);
        hilo_cmd(&all, &db, &env).output().unwrap()
    };
    let imported = remote(&["workflows", "import", wf.to_str().unwrap()]);
    assert_eq!(
        imported.status.code(),
        Some(0),
        "{}",
        text(&imported.stderr)
    );
    let input = json!({
        "message": format!(
            "mail me at {EMAIL}, my token is Bearer {BEARER}; the ticket quotes {key} and {HELD} and {SECRET} verbatim"
        ),
        "who": EMAIL,
    })
    .to_string();
    let run = remote(&["run", "planted", "--input", &input, "--json"]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}\n{}",
        text(&run.stdout),
        text(&run.stderr)
    );
    let doc: Value = serde_json::from_slice(&run.stdout).unwrap();
    let id = doc["execution_id"].as_str().unwrap().to_string();
    // The execution's record is complete: the answer quotes the values as the model gave them.
    let answer = doc["output"]["answer"].as_str().unwrap_or_default();
    assert!(
        answer.contains(HILO_KEY) && answer.contains(HELD),
        "{}",
        text(&run.stdout)
    );
    // The audit trail through the API, while the server runs.
    let (status, audit_api) = get(&base, &format!("/api/v1/audit?execution_id={id}"), &key);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&audit_api));
    assert!(
        crm.requests()
            .iter()
            .any(|r| r.headers.values().any(|v| v.contains(SECRET))),
        "the tool really sent the vault's secret"
    );

    // The metrics of the process that ran it: the tenant's view and the whole process's.
    let (status, own) = get(&base, "/api/v1/metrics", &key);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&own));
    let (status, all) = get(&format!("http://127.0.0.1:{metrics_port}"), "/metrics", "");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&all));
    let metrics = [own, all].concat();
    let metrics_text = String::from_utf8_lossy(&metrics).into_owned();
    assert!(
        metrics_text.contains("hilo_tool_calls_total"),
        "{metrics_text}"
    );

    // The trace, exported within a few seconds (batches of at most 2 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !String::from_utf8_lossy(&receiver.all()).contains("invoke_workflow planted") {
        assert!(Instant::now() < deadline, "no trace reached the receiver");
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();
    drain.join().unwrap();
    let spans = receiver.all();
    let spans_text = String::from_utf8_lossy(&spans).into_owned();
    assert!(spans_text.contains(&id), "the spans name the execution");
    assert!(spans_text.contains("execute_tool transform_json"));
    assert!(spans_text.contains("gen_ai.input.messages"));
    assert!(spans_text.contains("[REDACTED_EMAIL]"));

    // The log: JSON lines; the run's lines carry tenant, execution, trace id and node.
    let log = log.lock().unwrap().clone();
    let mut in_run = 0;
    let trace_id = hilo_engine::trace::trace_id_hex(&id, None);
    for line in log.lines().filter(|l| l.starts_with('{')) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let Some(spans) = v["spans"].as_array() else {
            continue;
        };
        let Some(exec) = spans.iter().find(|s| s["name"] == "execution") else {
            continue;
        };
        if exec["execution"] == id.as_str() {
            in_run += 1;
            assert_eq!(exec["tenant"], "default", "{line}");
            assert_eq!(exec["trace_id"], trace_id.as_str(), "{line}");
        }
    }
    assert!(in_run > 0, "no log line inside the run:\n{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("\"node\":\"look\"") && l.contains(&id)),
        "no line names the agent's node:\n{log}"
    );
    assert!(
        log.contains("[REDACTED_EMAIL]"),
        "the planted address was logged (redacted):\n{log}"
    );

    // The audit trail and the cost ledger's rows (prompts and answers captured) in the store:
    // what each command printed, and it as JSON.
    let local = |args: &[&str]| {
        let o = hilo_cmd(args, &db, &env).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        (o, v)
    };
    let (audit, rows) = local(&["audit", "--execution", &id, "--json"]);
    let call = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["tool"] == "transform_json")
        .unwrap_or_else(|| panic!("the agent's tool call is audited: {rows}"));
    assert!(
        call.to_string().contains("[REDACTED_SECRET]"),
        "the values were there, redacted: {call}"
    );
    let (costs, calls) = local(&["costs", "--execution", &id, "--json"]);
    assert!(
        calls.as_array().unwrap().len() >= 2
            && calls
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["input_messages"].is_array()),
        "the ledger's rows keep the prompts: {calls}"
    );
    assert!(calls.to_string().contains("[REDACTED_SECRET]"), "{calls}");

    let mut hits = Vec::new();
    let extra = [key.as_str()];
    find_in("serve's log", log.as_bytes(), &extra, &mut hits);
    find_in("exported spans", &spans, &extra, &mut hits);
    find_in("metrics", &metrics, &extra, &mut hits);
    find_in("the remote client's stderr", &run.stderr, &extra, &mut hits);
    find_in("GET /audit", &audit_api, &extra, &mut hits);
    find_in("hilo audit --json", &audit.stdout, &extra, &mut hits);
    find_in(
        "hilo costs --execution --json",
        &costs.stdout,
        &extra,
        &mut hits,
    );
    assert!(
        hits.is_empty(),
        "planted values leaked:\n{}",
        hits.join("\n")
    );
}
