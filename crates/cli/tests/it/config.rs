//! hilo.toml as the binary reads it: discovery, environment overrides, typo errors.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::text;

/// `hilo tools list --json` in `cwd`, with `config_home` as the user configuration directory
/// and `env` set; (exit success, stdout, stderr).
fn tools_list(cwd: &Path, config_home: &Path, env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hilo"));
    cmd.args(["tools", "list", "--json", "--db"])
        .arg(cwd.join("hilo.db"))
        .current_dir(cwd)
        .env("XDG_CONFIG_HOME", config_home)
        .env("HOME", config_home);
    for (k, _) in std::env::vars() {
        if k.starts_with("HILO_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().unwrap();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// The `timeout_ms` the tool listing shows for `tool`.
fn timeout_of(stdout: &str, tool: &str) -> Option<u64> {
    let tools: Value = serde_json::from_str(stdout).unwrap();
    tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == tool)
        .and_then(|t| t["timeout_ms"].as_u64())
}

fn settings(timeout: &str) -> String {
    format!("[tools.settings.transform_json]\ntimeout_ms = {timeout}\n")
}

#[test]
fn discovery_order_and_environment_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().join("project");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&cwd).unwrap();
    std::fs::create_dir_all(home.join("hilo")).unwrap();

    // No file anywhere: defaults.
    let (ok, out, err) = tools_list(&cwd, &home, &[]);
    assert!(ok, "{err}");
    assert_eq!(timeout_of(&out, "transform_json"), None);

    // The user configuration directory.
    std::fs::write(home.join("hilo/hilo.toml"), settings("\"1m\"")).unwrap();
    let (ok, out, err) = tools_list(&cwd, &home, &[]);
    assert!(ok, "{err}");
    assert_eq!(timeout_of(&out, "transform_json"), Some(60_000));

    // ./hilo.toml wins over it.
    std::fs::write(cwd.join("hilo.toml"), settings("\"2s\"")).unwrap();
    let (ok, out, err) = tools_list(&cwd, &home, &[]);
    assert!(ok, "{err}");
    assert_eq!(timeout_of(&out, "transform_json"), Some(2_000));

    // HILO_CONFIG wins over ./hilo.toml.
    let explicit = dir.path().join("explicit.toml");
    std::fs::write(&explicit, settings("3000")).unwrap();
    let (ok, out, err) = tools_list(&cwd, &home, &[("HILO_CONFIG", explicit.to_str().unwrap())]);
    assert!(ok, "{err}");
    assert_eq!(timeout_of(&out, "transform_json"), Some(3_000));

    // The environment wins over the file; other keys of the file stay.
    std::fs::write(
        cwd.join("hilo.toml"),
        format!("{}cache_ttl_ms = \"1h\"\n", settings("\"2s\"")),
    )
    .unwrap();
    let (ok, out, err) = tools_list(
        &cwd,
        &home,
        &[("HILO_TOOLS__SETTINGS__TRANSFORM_JSON__TIMEOUT_MS", "7d")],
    );
    assert!(ok, "{err}");
    assert_eq!(timeout_of(&out, "transform_json"), Some(604_800_000));
    let tools: Value = serde_json::from_str(&out).unwrap();
    let t = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "transform_json")
        .unwrap();
    assert_eq!(t["cache_ttl_ms"], 3_600_000);
}

#[test]
fn typos_and_wrong_types_are_errors_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    std::fs::write(
        cwd.join("hilo.toml"),
        "[tools.settings.create_return]\ntimout_ms = 5000\n",
    )
    .unwrap();
    let (ok, _, err) = tools_list(cwd, cwd, &[]);
    assert!(!ok);
    assert!(
        err.contains("in the configuration file hilo.toml: [tools.settings.create_return] timout_ms: unknown key")
            && err.contains("did you mean `timeout_ms`?"),
        "{err}"
    );

    std::fs::write(cwd.join("hilo.toml"), "[server]\nworkers = 4\n").unwrap();
    let (ok, _, err) = tools_list(cwd, cwd, &[("HILO_SERVER__WORKERS", "lots")]);
    assert!(!ok);
    assert!(
        err.contains("[server] workers: invalid type: string \"lots\"")
            && err.contains("set by the environment variable HILO_SERVER__WORKERS"),
        "{err}"
    );

    // Unknown sections are refused too (they were once ignored silently).
    std::fs::write(
        cwd.join("hilo.toml"),
        "[databse.default]\nurl = \"sqlite://x.db\"\n",
    )
    .unwrap();
    let (ok, _, err) = tools_list(cwd, cwd, &[]);
    assert!(!ok);
    assert!(
        err.contains("[databse]: unknown section") && err.contains("did you mean `databases`?"),
        "{err}"
    );
}
