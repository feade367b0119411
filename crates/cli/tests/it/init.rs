//! `hilo init`: the starter project runs as generated (validate, run with its test input, the
//! unsure path waiting for a person and answered), and existing files are never overwritten
//! without `--force`.

use std::path::Path;
use std::process::{Command, Output};

use crate::text;

/// `hilo ARGS` run in `dir`, with none of the caller's `HILO_*` settings.
pub fn hilo_in(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hilo"));
    cmd.args(args).current_dir(dir);
    for var in [
        "HILO_DB",
        "HILO_CONFIG",
        "HILO_SERVER",
        "HILO_API_KEY",
        "HILO_TENANT",
        "HILO_CRASH_AT",
        "HILO_MASTER_KEY",
        "HILO_MASTER_KEY_FILE",
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
    ] {
        cmd.env_remove(var);
    }
    cmd.output().unwrap()
}

const FILES: [&str; 5] = [
    "hilo.toml",
    "workflows/triage.yaml",
    "inputs/triage.json",
    "hilo.schema.json",
    "README.md",
];

/// `hilo init DIR` on a clean folder, then what its README says to do, in that folder.
pub fn init_and_run(base: &Path) {
    let out = hilo_in(base, &["init", "proj"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let proj = base.join("proj");
    for f in FILES {
        assert!(proj.join(f).is_file(), "{f} not written");
        assert!(
            stdout.contains(&format!("wrote {}", Path::new("proj").join(f).display())),
            "{stdout}"
        );
    }
    assert!(stdout.contains("cd proj"), "{stdout}");
    assert!(
        stdout.contains("hilo run workflows/triage.yaml --input @inputs/triage.json"),
        "{stdout}"
    );

    // The editor line points at the schema it wrote, which is `hilo schema`'s.
    let wf = std::fs::read_to_string(proj.join("workflows/triage.yaml")).unwrap();
    assert!(
        wf.starts_with("# yaml-language-server: $schema=../hilo.schema.json\n"),
        "{wf}"
    );
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(proj.join("hilo.schema.json")).unwrap())
            .unwrap();
    let printed = hilo_in(&proj, &["schema"]);
    assert_eq!(
        schema,
        serde_json::from_slice::<serde_json::Value>(&printed.stdout).unwrap()
    );

    // validate, then run with the test input: no API key, no network.
    let out = hilo_in(&proj, &["validate", "workflows/triage.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ok — triage@1"));
    let out = hilo_in(
        &proj,
        &[
            "--db",
            "hilo.db",
            "run",
            "workflows/triage.yaml",
            "--input",
            "@inputs/triage.json",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["output"]["category"], "complaint", "{run}");
    assert_eq!(run["output"]["priority"], "high", "{run}");
    assert_eq!(
        run["output"]["reply"],
        "Dear Ada, we are sorry. A person will look at this today."
    );
    assert!(proj.join("hilo.db").is_file());
}

#[test]
fn init_makes_a_project_that_validates_and_runs_as_generated() {
    let base = tempfile::tempdir().unwrap();
    init_and_run(base.path());
    let proj = base.path().join("proj");

    // The path its README shows: an unsure message waits for a person (exit 3), who answers.
    let out = hilo_in(
        &proj,
        &[
            "--db",
            "hilo.db",
            "run",
            "workflows/triage.yaml",
            "--input",
            r#"{"message": "hmm"}"#,
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["nodes"]["ask_a_person"]["status"], "waiting", "{run}");
    let id = run["execution_id"].as_str().unwrap();
    let out = hilo_in(
        &proj,
        &[
            "--db",
            "hilo.db",
            "answer",
            id,
            "ask_a_person",
            "--input",
            r#"{"reply": "We will call you back."}"#,
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["output"]["reply"], "We will call you back.");

    // The commented hilo.toml is what the run read: `hilo serve`'s address comes from it.
    let toml = std::fs::read_to_string(proj.join("hilo.toml")).unwrap();
    assert!(toml.contains("addr = \"127.0.0.1:8080\""), "{toml}");
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path();
    std::fs::write(dir.join("hilo.toml"), "# mine\n").unwrap();

    let out = hilo_in(dir, &["init"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("already exists")
            && err.contains("hilo.toml")
            && err.contains("nothing was written")
            && err.contains("--force"),
        "{err}"
    );
    // Nothing was written, the existing file kept.
    assert_eq!(
        std::fs::read_to_string(dir.join("hilo.toml")).unwrap(),
        "# mine\n"
    );
    assert!(!dir.join("workflows").exists());

    let out = hilo_in(dir, &["init", "--force", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["dir"], ".");
    assert_eq!(doc["files"].as_array().unwrap().len(), FILES.len());
    assert_eq!(doc["next"][0], "hilo validate workflows/triage.yaml");
    assert!(
        std::fs::read_to_string(dir.join("hilo.toml"))
            .unwrap()
            .contains("[store]")
    );

    // A second init finds every file.
    let out = hilo_in(dir, &["init"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    for f in FILES {
        assert!(err.contains(f), "{err}");
    }
}
