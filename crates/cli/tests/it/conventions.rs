//! The command line's conventions: `--json` output that parses on the commands that gained
//! it, one `--since` (a duration ago or an RFC 3339 time) on every time-filtered command,
//! `NO_COLOR`, and `-q`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::run::hilo_env;
use crate::{text, write_wf};

fn json_of(o: &Output) -> Value {
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", text(&o.stdout), text(&o.stderr)))
}

#[test]
fn json_output_parses_on_the_commands_that_gained_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let v1 = write_wf(dir.path(), "v1.yaml", 1, "hi");
    let v2 = write_wf(dir.path(), "v2.yaml", 2, "hello");

    let v = json_of(&hilo_env(
        &["workflows", "import", &v1, &v2, "--json"],
        &db,
        &[],
    ));
    assert_eq!(v[0]["outcome"], "created", "{v}");
    assert_eq!(v[1]["workflow"], "greet", "{v}");
    assert_eq!(v[1]["version"], 2, "{v}");
    assert_eq!(v[1]["active"], true, "{v}");
    let v = json_of(&hilo_env(&["workflows", "import", &v1, "--json"], &db, &[]));
    assert_eq!(v[0]["outcome"], "unchanged", "{v}");

    let v = json_of(&hilo_env(
        &["workflows", "activate", "greet", "1", "--json"],
        &db,
        &[],
    ));
    assert_eq!(
        v,
        serde_json::json!({"workflow": "greet", "version": 1, "active": true})
    );

    let v = json_of(&hilo_env(
        &["workflows", "diff", "greet", "1", "2", "--json"],
        &db,
        &[],
    ));
    assert_eq!(v["from"], "greet@1");
    assert_eq!(v["nodes_changed"], serde_json::json!(["hello"]), "{v}");
    assert_eq!(v["identical"], false);
    assert!(
        v["diff"].as_str().unwrap().contains("+    msg: hello"),
        "{v}"
    );

    let v = json_of(&hilo_env(
        &["executions", "prune", "--older-than", "30", "--json"],
        &db,
        &[],
    ));
    assert_eq!(v["pruned"], 0, "{v}");
    assert!(v["before"].as_str().unwrap().ends_with('Z'), "{v}");

    // Secrets: the value never appears in the JSON.
    let mut child = crate::hilo_cmd(&["secrets", "set", "shop_token", "--json"], &db, &[])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"s3cr3t-value\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(!text(&o.stdout).contains("s3cr3t-value"));
    let v = json_of(&o);
    assert_eq!(v["name"], "shop_token", "{v}");
    let v = json_of(&hilo_env(
        &["secrets", "delete", "shop_token", "--json"],
        &db,
        &[],
    ));
    assert_eq!(v["deleted"], true, "{v}");

    let created = json_of(&hilo_env(&["keys", "create", "--json"], &db, &[]));
    let id = created["id"].as_str().unwrap();
    let v = json_of(&hilo_env(&["keys", "revoke", id, "--json"], &db, &[]));
    assert_eq!(v["revoked"], true, "{v}");
    assert_eq!(v["id"], id);
}

/// `hilo ARGS --db DB` expecting a command-line error (exit 2) that names `says`.
fn refused(args: &[&str], db: &Path, says: &str) {
    let o = hilo_env(args, db, &[]);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains(says),
        "{args:?}: {}",
        text(&o.stderr)
    );
}

#[test]
fn every_time_filter_takes_a_duration_or_an_rfc3339_time() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let local: &[&[&str]] = &[
        &["audit", "--json", "--since"],
        &["costs", "--json", "--since"],
        &["tools", "stats", "--json", "--since"],
    ];
    for since in [
        "24h",
        "1h30m",
        "2025-01-31T09:00:00Z",
        "2025-01-31T10:00:00+01:00",
    ] {
        for args in local {
            let mut a = args.to_vec();
            a.push(since);
            json_of(&hilo_env(&a, &db, &[]));
        }
        // `hil stats` goes through a server: the flags parse, then it asks for --server.
        for flag in ["--since", "--until"] {
            refused(&["hil", "stats", flag, since], &db, "--server");
        }
    }
    for args in local {
        let mut a = args.to_vec();
        a.push("7");
        refused(&a, &db, "no unit");
        let mut a = args.to_vec();
        a.push("7x");
        refused(&a, &db, "its unit is not one of");
    }
    refused(&["hil", "stats", "--since", "2025-01-31"], &db, "RFC 3339");
    // --older-than takes a duration or, as always, a number of days.
    for age in ["7d", "12h", "30", "0.5"] {
        json_of(&hilo_env(
            &["executions", "prune", "--older-than", age, "--json"],
            &db,
            &[],
        ));
    }
}

/// `hilo ARGS` on a pseudo-terminal (`script`), so that `--color auto` sees a terminal.
fn on_terminal(args: &str, db: &Path, no_color: bool) -> String {
    let mut cmd = Command::new("script");
    cmd.args([
        "-qec",
        &format!(
            "{} --db {} {args}",
            env!("CARGO_BIN_EXE_hilo"),
            db.display()
        ),
        "/dev/null",
    ])
    .env_remove("HILO_COLOR")
    .env_remove("HILO_DB")
    .env_remove("HILO_CONFIG");
    if no_color {
        cmd.env("NO_COLOR", "1");
    } else {
        cmd.env_remove("NO_COLOR");
    }
    let o = cmd
        .output()
        .expect("`script` (util-linux) runs a command on a terminal");
    text(&o.stdout)
}

#[test]
fn no_color_turns_styles_off_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let v1 = write_wf(dir.path(), "v1.yaml", 1, "hi");
    json_of(&hilo_env(&["workflows", "import", &v1, "--json"], &db, &[]));
    let styled = on_terminal("workflows list", &db, false);
    assert!(styled.contains("greet"), "{styled}");
    assert!(
        styled.contains("\x1b["),
        "a terminal gets styles: {styled:?}"
    );
    let plain = on_terminal("workflows list", &db, true);
    assert!(plain.contains("greet"), "{plain}");
    assert!(!plain.contains("\x1b["), "NO_COLOR: {plain:?}");
    // An explicit --color always still wins (as no-color.org allows).
    let forced = on_terminal("--color always workflows list", &db, true);
    assert!(forced.contains("\x1b["), "{forced:?}");
}

#[test]
fn quiet_drops_notes_but_not_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hilo.db");
    let created = json_of(&hilo_env(&["keys", "create", "--json"], &db, &[]));
    let id = created["id"].as_str().unwrap();
    let o = hilo_env(&["keys", "revoke", id], &db, &[]);
    assert!(text(&o.stderr).contains("revoked"), "{}", text(&o.stderr));
    let created = json_of(&hilo_env(&["keys", "create", "--json"], &db, &[]));
    let id = created["id"].as_str().unwrap();
    let o = hilo_env(&["-q", "keys", "revoke", id], &db, &[]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(text(&o.stderr), "", "-q: no notes");
    // Errors still show.
    let o = hilo_env(&["-q", "keys", "revoke", "key_nope"], &db, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("has no key key_nope"),
        "{}",
        text(&o.stderr)
    );
    // A run's progress lines go too; its result stays on stdout.
    let wf = write_wf(dir.path(), "g.yaml", 1, "hi");
    let o = hilo_env(&["run", &wf], &db, &[]);
    // Progress lines are written together (see `out::progress`), yet in order and before what
    // follows them: the start, each transition once.
    let err = text(&o.stderr);
    let at = |needle: &str| {
        assert_eq!(err.matches(needle).count(), 1, "{needle}: {err}");
        err.find(needle).unwrap()
    };
    assert!(at(" of greet@1") < at("✓ hello"), "{err}");
    assert!(at("✓ hello") < at("✓ done"), "{err}");
    let o = hilo_env(&["-q", "run", &wf], &db, &[]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(text(&o.stderr), "", "-q: no progress");
    assert!(text(&o.stdout).contains("succeeded"), "{}", text(&o.stdout));
    // -q and -v together are refused.
    let o = hilo_env(&["-q", "-v", "keys", "list"], &db, &[]);
    assert_eq!(o.status.code(), Some(2));
}
