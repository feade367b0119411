//! Behaviour every store backend must have, run against each one.

use hilo_core::store::{Activation, DEFAULT_TENANT, ImportOutcome, NewWorkflow, Store, StoreError};
use hilo_core::{Catalog, Format};

/// A small valid workflow; `marker` changes its content.
pub fn yaml(name: &str, version: u64, marker: &str) -> String {
    format!(
        "# a comment that export keeps\nname: {name}\nversion: {version}\ndescription: test {marker}\nnodes:\n  - id: start\n    type: set\n    vars: {{marker: {marker}}}\n  - id: done\n    type: finish\n    output: \"${{ vars.marker }}\"\nedges:\n  - {{from: start, to: done}}\n"
    )
}

pub async fn import(
    store: &(impl Store + ?Sized),
    name: &str,
    version: u64,
    marker: &str,
) -> Result<ImportOutcome, StoreError> {
    import_as(
        store,
        DEFAULT_TENANT,
        name,
        version,
        marker,
        Activation::IfNewest,
    )
    .await
}

pub async fn import_as(
    store: &(impl Store + ?Sized),
    tenant: &str,
    name: &str,
    version: u64,
    marker: &str,
    activation: Activation,
) -> Result<ImportOutcome, StoreError> {
    let text = yaml(name, version, marker);
    let wf = hilo_core::load(&text, Format::Yaml, &Catalog::default()).unwrap();
    store
        .import_workflow(
            tenant,
            NewWorkflow {
                workflow: &wf,
                source: &text,
                format: Format::Yaml,
            },
            activation,
        )
        .await
}

pub async fn run_all(store: std::sync::Arc<dyn Store>) {
    let s = store.as_ref();
    import_is_idempotent(s).await;
    conflicting_import_is_refused(s).await;
    versions_are_ordered_and_newest_activates(s).await;
    activate_switches_and_checks(s).await;
    activation_policies(s).await;
    tenants_are_isolated(s).await;
    not_found_errors(s).await;
    layouts_are_kept_beside_versions(s).await;
    crate::conformance_exec::run_all(s).await;
    crate::conformance_exec_search::run_all(s).await;
    crate::conformance_more::run_all(s).await;
    crate::conformance_hil::run_all(s).await;
    crate::conformance_sessions::run_all(s).await;
    crate::conformance_evals::run_all(s).await;
    crate::conformance_episodes::run_all(s).await;
    crate::conformance_knowledge::run_all(s).await;
    crate::conformance_triggers::run_all(s).await;
    crate::conformance_connections::run_all(s).await;
    // Last: its worker claims take any due execution.
    crate::conformance_quarantine::run_all(s).await;
}

async fn import_is_idempotent(s: &dyn Store) {
    assert_eq!(
        import(s, "idem", 1, "a").await.unwrap(),
        ImportOutcome::Created { activated: true }
    );
    assert_eq!(
        import(s, "idem", 1, "a").await.unwrap(),
        ImportOutcome::Unchanged
    );
    // The same content as JSON (no comment, other formatting) is the same version.
    let text = yaml("idem", 1, "a");
    let wf = hilo_core::load(&text, Format::Yaml, &Catalog::default()).unwrap();
    let json = hilo_core::to_text(&wf, Format::Json).unwrap();
    let outcome = s
        .import_workflow(
            DEFAULT_TENANT,
            NewWorkflow {
                workflow: &wf,
                source: &json,
                format: Format::Json,
            },
            Activation::IfNewest,
        )
        .await
        .unwrap();
    assert_eq!(outcome, ImportOutcome::Unchanged);
    // The first import's text is what export gives back.
    let got = s
        .get_workflow(DEFAULT_TENANT, "idem", Some(1))
        .await
        .unwrap();
    assert_eq!(got.source, text);
    assert_eq!(got.format, Format::Yaml);
    assert_eq!(got.workflow, wf);
    assert_eq!(
        s.list_versions(DEFAULT_TENANT, "idem").await.unwrap().len(),
        1
    );
}

async fn conflicting_import_is_refused(s: &dyn Store) {
    import(s, "conflict", 1, "a").await.unwrap();
    let err = import(s, "conflict", 1, "b").await.unwrap_err();
    assert_eq!(err.code(), "VERSION_CONFLICT");
    assert_eq!(
        err.to_string(),
        "workflow conflict@1 already exists with different content; versions are immutable: import the change as version 2 (or higher)"
    );
    // Nothing changed.
    let got = s
        .get_workflow(DEFAULT_TENANT, "conflict", Some(1))
        .await
        .unwrap();
    assert_eq!(got.workflow.description.as_deref(), Some("test a"));
}

async fn versions_are_ordered_and_newest_activates(s: &dyn Store) {
    for v in [3, 1, 2, 10] {
        import(s, "ordered", v, &format!("m{v}")).await.unwrap();
    }
    let versions = s.list_versions(DEFAULT_TENANT, "ordered").await.unwrap();
    let numbers: Vec<u64> = versions.iter().map(|v| v.version).collect();
    assert_eq!(numbers, vec![1, 2, 3, 10], "numeric order, not text order");
    let active: Vec<u64> = versions
        .iter()
        .filter(|v| v.active)
        .map(|v| v.version)
        .collect();
    assert_eq!(active, vec![10], "exactly one active version: the newest");
    assert_eq!(versions[0].nodes, 2);
    let got = s
        .get_workflow(DEFAULT_TENANT, "ordered", None)
        .await
        .unwrap();
    assert_eq!(got.workflow.version, 10);
    let list = s.list_workflows(DEFAULT_TENANT).await.unwrap();
    let ordered = list.iter().find(|w| w.name == "ordered").unwrap();
    assert_eq!(
        (
            ordered.active_version,
            ordered.latest_version,
            ordered.versions
        ),
        (10, 10, 4)
    );
    assert_eq!(ordered.description.as_deref(), Some("test m10"));
    let names: Vec<&str> = list.iter().map(|w| w.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
}

async fn activate_switches_and_checks(s: &dyn Store) {
    import(s, "act", 1, "a").await.unwrap();
    import(s, "act", 2, "b").await.unwrap();
    assert_eq!(
        s.get_workflow(DEFAULT_TENANT, "act", None)
            .await
            .unwrap()
            .workflow
            .version,
        2
    );
    s.activate(DEFAULT_TENANT, "act", 1).await.unwrap();
    let got = s.get_workflow(DEFAULT_TENANT, "act", None).await.unwrap();
    assert_eq!(got.workflow.version, 1);
    assert!(got.active);
    assert!(
        !s.get_workflow(DEFAULT_TENANT, "act", Some(2))
            .await
            .unwrap()
            .active
    );
    let versions = s.list_versions(DEFAULT_TENANT, "act").await.unwrap();
    assert_eq!(versions.iter().filter(|v| v.active).count(), 1);
    let err = s.activate(DEFAULT_TENANT, "act", 7).await.unwrap_err();
    assert_eq!(err.code(), "VERSION_NOT_FOUND");
    assert!(
        err.to_string().contains("hilo workflows versions act"),
        "{err}"
    );
    let err = s.activate(DEFAULT_TENANT, "nope", 1).await.unwrap_err();
    assert_eq!(err.code(), "WORKFLOW_NOT_FOUND");
    // Still version 1 after the failed calls.
    assert_eq!(
        s.get_workflow(DEFAULT_TENANT, "act", None)
            .await
            .unwrap()
            .workflow
            .version,
        1
    );
}

async fn activation_policies(s: &dyn Store) {
    let t = DEFAULT_TENANT;
    assert_eq!(
        import_as(s, t, "pol", 1, "a", Activation::Never)
            .await
            .unwrap(),
        ImportOutcome::Created { activated: true },
        "the first version is always active"
    );
    assert_eq!(
        import_as(s, t, "pol", 2, "b", Activation::Never)
            .await
            .unwrap(),
        ImportOutcome::Created { activated: false }
    );
    assert_eq!(
        import_as(s, t, "pol", 5, "c", Activation::IfNewest)
            .await
            .unwrap(),
        ImportOutcome::Created { activated: true }
    );
    assert_eq!(
        import_as(s, t, "pol", 3, "d", Activation::IfNewest)
            .await
            .unwrap(),
        ImportOutcome::Created { activated: false },
        "an older version does not take over"
    );
    assert_eq!(
        import_as(s, t, "pol", 4, "e", Activation::Always)
            .await
            .unwrap(),
        ImportOutcome::Created { activated: true }
    );
    assert_eq!(
        s.get_workflow(t, "pol", None)
            .await
            .unwrap()
            .workflow
            .version,
        4
    );
}

async fn tenants_are_isolated(s: &dyn Store) {
    import_as(s, "acme", "shared_name", 1, "acme", Activation::IfNewest)
        .await
        .unwrap();
    import_as(
        s,
        "globex",
        "shared_name",
        1,
        "globex",
        Activation::IfNewest,
    )
    .await
    .unwrap();
    let a = s.get_workflow("acme", "shared_name", None).await.unwrap();
    let g = s.get_workflow("globex", "shared_name", None).await.unwrap();
    assert_eq!(a.workflow.description.as_deref(), Some("test acme"));
    assert_eq!(g.workflow.description.as_deref(), Some("test globex"));
    assert_eq!(s.list_workflows("acme").await.unwrap().len(), 1);
    assert!(s.list_workflows("initech").await.unwrap().is_empty());
    let err = s
        .get_workflow("initech", "shared_name", None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "WORKFLOW_NOT_FOUND");
}

async fn not_found_errors(s: &dyn Store) {
    let err = s
        .get_workflow(DEFAULT_TENANT, "missing", None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "WORKFLOW_NOT_FOUND");
    assert!(err.to_string().contains("hilo workflows list"));
    import(s, "present", 1, "a").await.unwrap();
    let err = s
        .get_workflow(DEFAULT_TENANT, "present", Some(9))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "VERSION_NOT_FOUND");
    let err = s
        .list_versions(DEFAULT_TENANT, "missing")
        .await
        .unwrap_err();
    assert_eq!(err.code(), "WORKFLOW_NOT_FOUND");
}

async fn layouts_are_kept_beside_versions(s: &dyn Store) {
    let t = "layouts-acme";
    import_as(s, t, "drawn", 1, "a", Activation::IfNewest)
        .await
        .unwrap();
    assert_eq!(s.get_layout(t, "drawn").await.unwrap(), None);
    let first = serde_json::json!({"nodes": {"start": {"x": 10, "y": 20}}});
    let at = s.put_layout(t, "drawn", &first).await.unwrap();
    assert_eq!(s.get_layout(t, "drawn").await.unwrap(), Some((first, at)));
    // Replaced, not appended; another tenant sees none of it.
    let second = serde_json::json!({"nodes": {"done": {"x": 1.5, "y": -3}}});
    s.put_layout(t, "drawn", &second).await.unwrap();
    assert_eq!(s.get_layout(t, "drawn").await.unwrap().unwrap().0, second);
    assert_eq!(s.get_layout("layouts-globex", "drawn").await.unwrap(), None);
    // A new version leaves it alone; deleting the workflow takes it along.
    import_as(s, t, "drawn", 2, "b", Activation::IfNewest)
        .await
        .unwrap();
    assert_eq!(s.get_layout(t, "drawn").await.unwrap().unwrap().0, second);
    s.delete_workflow(t, "drawn").await.unwrap();
    assert_eq!(s.get_layout(t, "drawn").await.unwrap(), None);
}
