//! Hostile and careless use of the `hilo` binary (issue 29): slow clients against `hilo
//! serve` on a small descriptor budget, output into a pipe its reader closed, and huge
//! invalid inputs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::serve::{remote, sigterm};
use crate::{fixtures, hilo_cmd, text};

/// `hilo serve` under `ulimit -n fds`; returns the child, its base URL and its stderr lines.
fn serve_with_fds(db: &Path, config: &Path, fds: u32) -> (Child, String, Arc<Mutex<Vec<String>>>) {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -n {fds} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_hilo"))
        .args(["serve", "--addr", "127.0.0.1:0", "--db"])
        .arg(db);
    for var in [
        "HILO_DB",
        "HILO_CRASH_AT",
        "HILO_MASTER_KEY",
        "HILO_MASTER_KEY_FILE",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HILO_CONFIG", config);
    let mut child = cmd
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("unexpected first line: {first}"))
        .trim_end_matches("/api/v1")
        .to_string();
    let seen = Arc::new(Mutex::new(vec![first]));
    let sink = seen.clone();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(l);
        }
    });
    (child, url, seen)
}

/// Open descriptors of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// `GET path` over a fresh connection; the status line.
fn get_status(addr: &str, path: &str) -> String {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    let _ = c.read_to_string(&mut response);
    response.lines().next().unwrap_or("").to_string()
}

/// 300 connections sending a byte a second (the attack of issue 29, which made the embedded
/// worker stop for good with "Too many open files") against `hilo serve` limited to 300
/// descriptors: the server closes every one of them within the header timeout of being
/// accepted, never holds more descriptors than its connection bound allows, and afterwards
/// answers and runs executions.
#[cfg(target_os = "linux")]
#[test]
fn slow_clients_do_not_starve_hilo_serve() {
    const SLOW: usize = 300;
    const FDS: u32 = 300;
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
    let config = dir.path().join("hilo.toml");
    std::fs::write(
        &config,
        "[server]\nheader_read_timeout_ms = 2000\nidle_timeout_ms = 2000\nshutdown_grace_ms = 500\n",
    )
    .unwrap();
    let (mut server, url, log) = serve_with_fds(&db, &config, FDS);
    let addr = url.trim_start_matches("http://").to_string();
    let pid = server.id();
    // The default bound (1024) does not fit in 300 descriptors: lowered, and said so.
    std::thread::sleep(Duration::from_millis(200));
    let bound = {
        let log = log.lock().unwrap();
        let line = log
            .iter()
            .find(|l| l.contains("max_connections"))
            .unwrap_or_else(|| panic!("no warning about max_connections: {log:?}"))
            .clone();
        let at = line.find("serving at most ").unwrap() + "serving at most ".len();
        line[at..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse::<usize>()
            .unwrap()
    };
    assert!(bound < SLOW, "bound {bound}");
    let nap = fixtures().join("serve/nap.yaml");
    let out = remote(
        &db,
        &url,
        &key,
        &["workflows", "import", nap.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let baseline = open_fds(pid);

    // Headers that never end, a byte a second.
    let header = b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let mut conns: Vec<(TcpStream, Option<Instant>)> = (0..SLOW)
        .map(|_| {
            let c = TcpStream::connect(&addr).unwrap();
            c.set_nonblocking(true).unwrap();
            (c, None)
        })
        .collect();
    let start = Instant::now();
    let mut peak = 0;
    let mut sent = 0;
    while start.elapsed() < Duration::from_secs(30) {
        let byte = header.get(sent).copied().unwrap_or(b'a');
        sent += 1;
        for (c, closed) in conns.iter_mut().filter(|(_, closed)| closed.is_none()) {
            let mut buf = [0u8; 512];
            let gone = match c.read(&mut buf) {
                Ok(0) => true,
                Ok(_) => false, // an answer (408): the close follows
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => c.write(&[byte]).is_err(),
                Err(_) => true,
            };
            if gone {
                *closed = Some(Instant::now());
            }
        }
        peak = peak.max(open_fds(pid));
        if conns.iter().all(|(_, closed)| closed.is_some()) {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let open = conns.iter().filter(|(_, c)| c.is_none()).count();
    eprintln!(
        "slow clients: bound {bound}, descriptors baseline {baseline} peak {peak}, open after the attack {open}"
    );
    assert_eq!(open, 0, "slow connections still open after 30 s");
    // Served in waves of `bound`, each closed within the header timeout (2 s) of being
    // accepted: all within a few header timeouts, far from the 30 s the clients would go on.
    let last = conns
        .iter()
        .filter_map(|(_, c)| *c)
        .max()
        .unwrap()
        .duration_since(start);
    let waves = SLOW.div_ceil(bound) as u64;
    assert!(
        last < Duration::from_secs(waves * 2 + 10),
        "the last slow connection closed after {last:?} ({waves} waves of {bound})"
    );
    // Never more descriptors than the bound allows on top of what the server held before.
    assert!(
        peak <= baseline + bound + 32,
        "peak {peak} descriptors, baseline {baseline}, bound {bound}"
    );
    assert!(server.try_wait().unwrap().is_none(), "the server died");

    // New requests succeed, and the worker still runs executions.
    assert_eq!(get_status(&addr, "/api/v1/health"), "HTTP/1.1 200 OK");
    let out = remote(&db, &url, &key, &["run", "nap", "--input", r#"{"ms": 5}"#]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("\"slept\": 5"),
        "{}",
        text(&out.stdout)
    );
    let out = remote(
        &db,
        &url,
        &key,
        &["run", "nap", "--detach", "--input", r#"{"ms": 5}"#],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    let mut status = String::new();
    for _ in 0..100 {
        let out = remote(&db, &url, &key, &["executions", "show", &id, "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        status = v["status"].as_str().unwrap_or("").to_string();
        if status == "succeeded" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(status, "succeeded", "the worker did not run {id}");

    sigterm(&server);
    assert!(server.wait().unwrap().success());
    let log = log.lock().unwrap().join("\n");
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(!log.contains("the worker stopped"), "{log}");
}

/// A small workflow with an integer input; returns its path.
fn typed_workflow(dir: &Path) -> String {
    let path = dir.join("typed.yaml");
    std::fs::write(
        &path,
        "name: typed\nversion: 1\ninput:\n  type: object\n  properties: {n: {type: integer}}\n  required: [n]\nnodes:\n  - {id: done, type: finish, output: '${ input.n }'}\n",
    )
    .unwrap();
    path.display().to_string()
}

/// Output into a pipe whose reader has gone (`hilo executions list | head`): every command
/// exits quietly, with its own status, instead of panicking.
#[test]
fn closed_stdout_is_a_quiet_exit() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let wf = typed_workflow(dir.path());
    for n in 0..3 {
        let input = format!("{{\"n\": {n}}}");
        let out = hilo_cmd(&["run", &wf, "--input", &input], &db, &[])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let commands: [&[&str]; 5] = [
        &["executions", "list"],
        &["executions", "list", "--json"],
        &["schema"],
        &["completions", "bash"],
        &["run", &wf, "--input", "{\"n\": 7}"],
    ];
    for args in commands {
        // The reader closes its end before hilo writes anything.
        let mut child = hilo_cmd(args, &db, &[])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = text(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("error"), "{args:?}: {err}");
    }
    // Both stdout and stderr gone (`2>&1 | head`): `run` prints its progress on stderr, and
    // still finishes and exits 0 (a panic would be 101).
    for args in commands {
        let mut child = hilo_cmd(args, &db, &[])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        drop(child.stderr.take());
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{args:?}");
    }
    let out = hilo_cmd(&["executions", "list", "--json"], &db, &[])
        .output()
        .unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 5, "both `run`s finished");
    // And through a shell pipeline, the way people hit it.
    let out = Command::new("sh")
        .arg("-c")
        .arg("\"$0\" schema --db \"$1\" | head -c 10 >/dev/null; \"$0\" completions bash | head -n 1 >/dev/null; \"$0\" executions list --db \"$1\" | head -n 1")
        .arg(env!("CARGO_BIN_EXE_hilo"))
        .arg(&db)
        .env_remove("HILO_DB")
        .env_remove("HILO_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("panicked"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).starts_with("ID"), "{}", text(&out.stdout));
}

/// A 1 MB invalid `--input` is quoted as an excerpt around the problem, not echoed whole;
/// so is a valid one whose huge value breaks the input schema.
#[test]
fn a_huge_invalid_input_is_quoted_as_an_excerpt() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let wf = typed_workflow(dir.path());
    let big = dir.path().join("big.json");
    let huge = "x".repeat(1 << 20);
    // Not JSON: the problem is at the very end.
    std::fs::write(&big, format!("{{\"n\": \"{huge}\" oops}}")).unwrap();
    let arg = format!("@{}", big.display());
    let out = hilo_cmd(&["run", &wf, "--input", &arg], &db, &[])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", &err[..err.len().min(500)]);
    assert!(err.len() < 1_000, "{} bytes of error", err.len());
    assert!(err.contains("the input is not valid JSON"), "{err}");
    assert!(err.contains("line 1 column"), "{err}");
    assert!(err.contains("oops"), "the excerpt shows the problem: {err}");
    // An answer the same way.
    let out = hilo_cmd(&["answer", "e1", "node", "--input", &arg], &db, &[])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", &err[..err.len().min(500)]);
    assert!(err.len() < 1_000, "{} bytes of error", err.len());
    assert!(err.contains("the answer is not valid JSON"), "{err}");
    // JSON, but the value breaks the schema.
    std::fs::write(&big, format!("{{\"n\": \"{huge}\"}}")).unwrap();
    let out = hilo_cmd(&["run", &wf, "--input", &arg], &db, &[])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", &err[..err.len().min(500)]);
    assert!(err.len() < 3_000, "{} bytes of error", err.len());
    assert!(err.contains("is not of type"), "{err}");
}
