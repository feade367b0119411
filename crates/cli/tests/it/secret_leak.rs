//! Issue #29: a planted secret never leaves the vault. A workflow's declarative tools put the
//! secret (from `HILO_SECRET_API_TOKEN`) in the URL path and query, in headers and in the body,
//! and fail every way a call can: connect error, 401, 500, a redirect to another origin, a
//! timeout; one has the secret as the password of its URL (`user:SECRET@`, sent as Basic
//! authorization); an e-mail quotes every error. Then the
//! database files (WAL included), the step-log segments, the outbox, `hilo audit`, `executions
//! show`, `run --json`, the HTTP API of `hilo serve` (`GET /executions/{id}`, `/audit`, the
//! execution's SSE stream) and every process's stdout and stderr are searched for the secret
//! and its encoded forms: zero hits. The redirect's other origin got no credential header, no
//! Referer and nothing of the secret.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::Stdio;

use hilo_tools::testserver::TestServer;
use serde_json::{Value, json};

use crate::{hilo_cmd, text};

const SECRET: &str = "s3cr3t/Tok+en=42&x y";

fn b64(data: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

fn pct(s: &str, keep: &[u8]) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || keep.contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The secret and the forms it travels in: percent-encoded (both case), form-encoded, JSON
/// escaped, base64 (both alphabets), and all of these of `user:SECRET` (a Basic header).
fn needles() -> Vec<String> {
    const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut v = Vec::new();
    for s in [SECRET.to_string(), format!("user:{SECRET}")] {
        v.push(s.clone());
        v.push(pct(&s, b""));
        v.push(pct(&s, b"-._~"));
        v.push(pct(&s, b"-._~").to_lowercase());
        v.push(pct(&s, b"-._*").replace("%20", "+"));
        v.push(
            serde_json::to_string(&s)
                .unwrap()
                .trim_matches('"')
                .to_string(),
        );
        v.push(b64(s.as_bytes(), STD, true));
        v.push(b64(s.as_bytes(), URL, false));
    }
    v.sort();
    v.dedup();
    v
}

fn find_in(what: &str, bytes: &[u8], hits: &mut Vec<String>) {
    for n in needles() {
        if bytes.windows(n.len()).any(|w| w == n.as_bytes()) {
            hits.push(format!("{what}: `{n}`"));
        }
    }
}

fn find_in_dir(dir: &Path, hits: &mut Vec<String>) -> usize {
    let mut files = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            files += find_in_dir(&p, hits);
        } else if let Ok(bytes) = std::fs::read(&p) {
            files += 1;
            find_in(&p.display().to_string(), &bytes, hits);
        }
    }
    files
}

/// Searches the database's files (`hilo.db*`, the `hilo.db-steps/` segments); their names.
fn db_files(dir: &Path, hits: &mut Vec<String>) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("hilo.db") {
            continue;
        }
        if p.is_dir() {
            for f in std::fs::read_dir(&p).unwrap() {
                let f = f.unwrap().path();
                if let Ok(bytes) = std::fs::read(&f) {
                    find_in(&f.display().to_string(), &bytes, hits);
                    names.push(f.display().to_string());
                }
            }
        } else if let Ok(bytes) = std::fs::read(&p) {
            find_in(&name, &bytes, hits);
            names.push(name);
        }
    }
    names
}

/// A GET on the server; the body, de-chunked.
fn get(base: &str, path: &str, key: &str) -> (u16, Vec<u8>) {
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&rest[..eol])
                    .split(';')
                    .next()
                    .unwrap()
                    .trim(),
                16,
            )
            .unwrap_or(0);
            if size == 0 {
                break;
            }
            let start = eol + 2;
            out.extend_from_slice(&rest[start..(start + size).min(rest.len())]);
            rest = &rest[(start + size + 2).min(rest.len())..];
        }
        body = out;
    }
    (status, body)
}

fn workflow(a: &str, dead: u16) -> String {
    let http = |url: String| {
        json!({
            "method": "POST",
            "url": url,
            "headers": {"X-Api-Key": "{{ secrets.api_token }}", "Authorization": "Bearer {{ secrets.api_token }}"},
            "body": {"token": "{{ secrets.api_token }}", "note": "t={{ secrets.api_token }}"}
        })
    };
    let q = "k={{ secrets.api_token }}";
    let tools = json!([
        {"name": "t_connect", "class": "dangerous", "http": http(format!("http://127.0.0.1:{dead}/x/{{{{ secrets.api_token }}}}?{q}"))},
        {"name": "t_401", "class": "dangerous", "http": http(format!("{a}/s401?{q}"))},
        {"name": "t_500", "class": "dangerous", "http": http(format!("{a}/s500?{q}"))},
        {"name": "t_redirect", "class": "dangerous", "http": {
            "method": "GET",
            "url": format!("{a}/redir?{q}"),
            "headers": {"X-Api-Key": "{{ secrets.api_token }}", "Authorization": "Bearer {{ secrets.api_token }}"}
        }},
        {"name": "t_slow", "class": "dangerous", "http": http(format!("{a}/slow?{q}"))},
        // The secret as a URL password: sent as Basic authorization, never shown.
        {"name": "t_basic", "class": "dangerous", "http": {
            "method": "GET",
            "url": format!("{}/basic?x=1", a.replace("http://", "http://user:{{ secrets.api_token }}@"))
        }}
    ]);
    let once = json!({"max_attempts": 1});
    let node = |id: &str, tool: &str, with: Value| json!({"id": id, "type": "tool", "tool": tool, "with": with, "on_error": "continue", "retry": once});
    let mut slow = node("slow", "t_slow", json!({}));
    slow["timeout_ms"] = json!(500);
    let ids = ["connect", "s401", "s500", "redirect", "slow", "basic"];
    let report: String = ids
        .iter()
        .map(|id| format!("{id}: {{{{ {id}.error.message if {id}.status == 'failed' else {id}.output.body }}}}\n"))
        .collect();
    let nodes = json!([
        node("connect", "t_connect", json!({})),
        node("s401", "t_401", json!({})),
        node("s500", "t_500", json!({})),
        node("redirect", "t_redirect", json!({})),
        slow,
        node("basic", "t_basic", json!({})),
        {"id": "mail", "type": "tool", "tool": "send_email",
         "with": {"to": "ops@example.com", "subject": "report", "text": report}},
        {"id": "done", "type": "finish", "output": {"report": report}}
    ]);
    let mut edges = Vec::new();
    let order = [
        "connect", "s401", "s500", "redirect", "slow", "basic", "mail", "done",
    ];
    for w in order.windows(2) {
        edges.push(json!({"from": w[0], "to": w[1]}));
    }
    serde_json::to_string_pretty(&json!({
        "name": "leaky",
        "version": 1,
        "tools": tools,
        "nodes": nodes,
        "edges": edges
    }))
    .unwrap()
}

#[test]
fn a_planted_secret_appears_nowhere() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let a = rt.block_on(TestServer::start()).unwrap();
    let b = rt.block_on(TestServer::start()).unwrap();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let echo = json!({"echo": SECRET, "auth": format!("Bearer {SECRET}")});
    for _ in 0..3 {
        a.reply("/s401", 401, echo.clone());
        a.reply("/s500", 500, echo.clone());
        a.redirect("/redir", 302, &b.url("/landing"));
        a.reply_after("/slow", 5_000, 200, echo.clone());
        a.reply("/basic", 500, json!({"seen": "basic"}));
    }
    // The connect error's path holds the secret: it is never sent, but its reply would be.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let outbox = dir.path().join("outbox");
    let config = dir.path().join("hilo.toml");
    std::fs::write(
        &config,
        format!(
            "[tools.http]\nallow_hosts = [\"127.0.0.1\"]\n\n[email]\noutbox = {:?}\n",
            outbox.to_str().unwrap()
        ),
    )
    .unwrap();
    let wf = dir.path().join("leaky.json");
    std::fs::write(&wf, workflow(&a.url(""), dead)).unwrap();
    let env = [
        ("HILO_SECRET_API_TOKEN", SECRET),
        ("HILO_CONFIG", config.to_str().unwrap()),
    ];
    let mut hits = Vec::new();

    let run = hilo_cmd(&["run", wf.to_str().unwrap(), "--json"], &db, &env)
        .output()
        .unwrap();
    find_in("run --json stdout", &run.stdout, &mut hits);
    find_in("run stderr", &run.stderr, &mut hits);
    let v: Value = serde_json::from_slice(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            text(&run.stdout),
            text(&run.stderr)
        )
    });
    let id = v["execution_id"].as_str().unwrap().to_string();
    let report = v["output"]["report"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // Every path failed as meant, and said so (scrubbed).
    for (node, expect) in [
        ("connect", "could not connect"),
        ("s401", "answered 401"),
        ("s500", "answered 500"),
        ("slow", "did not answer within"),
        ("basic", "answered 500"),
    ] {
        let line = report
            .lines()
            .find(|l| l.starts_with(&format!("{node}:")))
            .unwrap_or_else(|| {
                panic!(
                    "{node} missing: {report}\n{}\n{}",
                    text(&run.stdout),
                    text(&run.stderr)
                )
            });
        assert!(line.contains(expect), "{line}");
    }
    assert!(report.contains("[REDACTED_SECRET]"), "{report}");
    assert!(
        report.contains("landing-1"),
        "the redirect was followed: {report}"
    );

    // The other origin: no credential header, no Referer, nothing of the secret.
    let landing = b.requests();
    assert_eq!(landing.len(), 1);
    for h in ["x-api-key", "authorization", "referer", "cookie"] {
        assert!(
            !landing[0].headers.contains_key(h),
            "{h}: {:?}",
            landing[0].headers
        );
    }
    find_in(
        "the other origin's request",
        format!("{landing:?}").as_bytes(),
        &mut hits,
    );
    // The first origin got the credentials it was meant to get, the URL password as Basic
    // authorization (encoded in the URL, decoded on the wire).
    const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let basic = format!(
        "Basic {}",
        b64(format!("user:{SECRET}").as_bytes(), STD, true)
    );
    assert!(
        a.requests()
            .iter()
            .any(|r| r.path == "/basic" && r.headers.get("authorization") == Some(&basic)),
        "{:?}",
        a.requests().iter().find(|r| r.path == "/basic")
    );
    let first = a.requests();
    assert!(
        first
            .iter()
            .any(|r| r.headers.get("x-api-key").map(String::as_str) == Some(SECRET))
    );

    for args in [
        vec!["audit", "--json"],
        vec!["audit"],
        vec!["executions", "show", id.as_str()],
        vec!["executions", "show", id.as_str(), "--json"],
        vec!["executions", "list", "--json"],
    ] {
        let o = hilo_cmd(&args, &db, &env).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o.stderr));
        find_in(&format!("{args:?} stdout"), &o.stdout, &mut hits);
        find_in(&format!("{args:?} stderr"), &o.stderr, &mut hits);
    }
    let audit = hilo_cmd(&["audit", "--json"], &db, &env).output().unwrap();
    let rows: Value = serde_json::from_slice(&audit.stdout).unwrap();
    assert!(rows.as_array().unwrap().len() >= 7, "{rows}");

    // The HTTP API of `hilo serve` on the same database.
    let key_out = hilo_cmd(
        &["keys", "create", "--tenant", "default", "--scopes", "admin"],
        &db,
        &env,
    )
    .output()
    .unwrap();
    assert_eq!(key_out.status.code(), Some(0), "{}", text(&key_out.stderr));
    let key = text(&key_out.stdout).trim().to_string();
    let serve_err = dir.path().join("serve.stderr");
    let serve_out = dir.path().join("serve.stdout");
    let mut server = hilo_cmd(&["serve", "--addr", "127.0.0.1:0"], &db, &env)
        .stderr(Stdio::piped())
        .stdout(std::fs::File::create(&serve_out).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let first_line = lines.next().unwrap().unwrap();
    let base = first_line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .trim_end_matches("/api/v1")
        .to_string();
    let err_path = serve_err.clone();
    let drain = std::thread::spawn(move || {
        let mut all = first_line + "\n";
        for l in lines.map_while(Result::ok) {
            all.push_str(&l);
            all.push('\n');
        }
        std::fs::write(err_path, all).unwrap();
    });
    for path in [
        format!("/api/v1/executions/{id}"),
        "/api/v1/audit".to_string(),
        format!("/api/v1/audit?execution_id={id}"),
        format!("/api/v1/executions/{id}/events"),
        "/api/v1/executions".to_string(),
    ] {
        let (status, body) = get(&base, &path, &key);
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        find_in(&format!("GET {path}"), &body, &mut hits);
    }
    let (_, events) = get(&base, &format!("/api/v1/executions/{id}/events"), &key);
    let events = String::from_utf8_lossy(&events).into_owned();
    assert!(events.contains("node_failed"), "{events}");
    // A run through the server too: its own SSE stream, response and stderr.
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
    let remote = remote(&["run", "leaky", "--json"]);
    assert!(
        text(&remote.stdout).contains("[REDACTED_SECRET]"),
        "{}\n{}",
        text(&remote.stdout),
        text(&remote.stderr)
    );
    find_in("remote run stdout", &remote.stdout, &mut hits);
    find_in("remote run stderr", &remote.stderr, &mut hits);
    let live = db_files(dir.path(), &mut hits);
    assert!(
        live.iter().any(|f| f.ends_with("-wal")) && live.iter().any(|f| f.contains("-steps")),
        "the WAL and the step log are searched: {live:?}"
    );
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();
    drain.join().unwrap();
    find_in(
        "serve stderr",
        &std::fs::read(&serve_err).unwrap(),
        &mut hits,
    );
    find_in(
        "serve stdout",
        &std::fs::read(&serve_out).unwrap(),
        &mut hits,
    );

    // Every file hilo wrote: database, WAL, step-log segments (before the server stopped
    // too, while its WAL and segments were there), outbox.
    let files = db_files(dir.path(), &mut hits);
    assert!(!files.is_empty());
    assert!(
        find_in_dir(&outbox, &mut hits) >= 1,
        "the report e-mail is in the outbox"
    );
    assert!(hits.is_empty(), "the secret leaked:\n{}", hits.join("\n"));
    drop(rt);
}
