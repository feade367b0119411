//! Every example workflow validates, satisfies the JSON Schema, round-trips, and a JSON twin
//! of a YAML example is the same workflow.

use std::path::PathBuf;

use hilo_core::{Catalog, Format};

fn examples() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_is_valid_and_matches_the_schema() {
    let files = examples();
    assert!(
        files.len() >= 5,
        "expected at least five examples, found {}",
        files.len()
    );
    let schema = jsonschema::validator_for(&hilo_core::schema::workflow_schema()).unwrap();
    let mut types = std::collections::BTreeSet::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let format = Format::detect(path.to_str(), &text);
        let wf = match hilo_core::load(&text, format, &Catalog::default()) {
            Ok(wf) => wf,
            Err(d) => panic!("{} is not valid:\n{d}", path.display()),
        };
        let value = hilo_core::source::parse_value(&text, format).unwrap();
        let errors: Vec<String> = schema
            .iter_errors(&value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{} does not match the schema: {errors:#?}",
            path.display()
        );
        for out in [Format::Yaml, Format::Json] {
            let written = hilo_core::to_text(&wf, out).unwrap();
            assert_eq!(
                hilo_core::load(&written, out, &Catalog::default()).unwrap(),
                wf
            );
        }
        for n in wf.all_nodes() {
            types.insert(n.kind.type_name());
        }
    }
    let missing: Vec<&str> = hilo_core::NODE_TYPES
        .iter()
        .copied()
        .filter(|t| !types.contains(t))
        .collect();
    assert!(
        missing.is_empty(),
        "no example uses these node types: {missing:?}"
    );
}

#[test]
fn json_twins_equal_their_yaml() {
    for path in examples()
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
    {
        let yaml_path = path.with_extension("yaml");
        if !yaml_path.exists() {
            continue;
        }
        let load = |p: &PathBuf| {
            let text = std::fs::read_to_string(p).unwrap();
            hilo_core::load(
                &text,
                Format::detect(p.to_str(), &text),
                &Catalog::default(),
            )
            .unwrap()
        };
        assert_eq!(
            load(path),
            load(&yaml_path),
            "{} differs from its YAML twin",
            path.display()
        );
    }
}
