//! `hilo validate` on hostile definitions (issue #29): a 10,000-deep filter chain and a 33 MB
//! file each get a `LIMIT_EXCEEDED` diagnostic and exit code 2, and the process ends normally.

use crate::{hilo, text};

#[test]
fn validate_refuses_deep_expressions_and_huge_files_with_a_diagnostic() {
    let dir = tempfile::tempdir().unwrap();
    let deep = dir.path().join("deep.yaml");
    let filters = "[?a]".repeat(10_000);
    std::fs::write(
        &deep,
        format!(
            "name: t\nversion: 1\nnodes:\n  - {{id: a, type: transform, expr: \"{filters}\"}}\n  - {{id: done, type: finish}}\nedges: [{{from: a, to: done}}]\n"
        ),
    )
    .unwrap();
    let out = hilo(&["validate", deep.to_str().unwrap()], None);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("error[LIMIT_EXCEEDED] node `a`, field `expr`"),
        "{err}"
    );
    assert!(
        err.len() < 4000,
        "the diagnostic does not echo the expression: {err}"
    );

    let huge = dir.path().join("huge.yaml");
    let mut body = String::from("name: t\nversion: 1\nnodes:\n  - {id: done, type: finish}\n");
    body.push_str(&format!("# {}\n", "x".repeat(33 << 20)));
    std::fs::write(&huge, &body).unwrap();
    let out = hilo(&["validate", huge.to_str().unwrap()], None);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("LIMIT_EXCEEDED"), "{err}");
    assert!(err.contains(&body.len().to_string()), "{err}");
}
