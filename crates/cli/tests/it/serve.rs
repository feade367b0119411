//! `hilo serve` as a real process: keys made by `hilo keys`, the CLI's remote mode against
//! it, and SIGTERM handing an in-flight execution over (checkpointed) to the next start.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::{fixtures, hilo_cmd, text};

/// Starts `hilo serve` on a free port; returns the child and its base URL.
pub(crate) fn serve(db: &Path, env: &[(&str, &str)]) -> (Child, String) {
    let mut child = hilo_cmd(&["serve", "--addr", "127.0.0.1:0"], db, env)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let first = lines.next().unwrap().unwrap();
    // "hilo serving http://127.0.0.1:PORT/api/v1 on …"
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("unexpected first line: {first}"))
        .trim_end_matches("/api/v1")
        .to_string();
    std::thread::spawn(move || for _ in lines {});
    (child, url)
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
