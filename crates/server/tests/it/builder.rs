//! What the console's builder needs: the validator on a text nothing stores
//! (`POST /workflows/validate`), the format's JSON Schema (`GET /schema/workflow`), and a
//! workflow's layout kept beside its versions (`/workflows/{name}/layout`).

use hilo_core::access::Scope;
use serde_json::json;

use crate::common::{TestServer, read};

const GOOD: &str = "# kept\nname: drawn\nversion: 1\nnodes:\n  - {id: a, type: set, vars: {x: 1}}\n  - {id: done, type: finish, output: \"${ vars.x }\"}\nedges:\n  - {from: a, to: done}\n";

async fn validate(s: &TestServer, key: &str, text: &str, ct: &str) -> (u16, serde_json::Value) {
    let r = s
        .http
        .post(s.url("/workflows/validate"))
        .bearer_auth(key)
        .header("content-type", ct)
        .body(text.to_string())
        .send()
        .await
        .unwrap();
    read(r).await
}

#[tokio::test]
async fn a_definition_is_validated_and_nothing_is_stored() {
    let s = TestServer::start().await;
    let key = s.key("acme", &[Scope::Read]).await;
    let (code, v) = validate(&s, &key, GOOD, "application/yaml").await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        v,
        json!({"valid": true, "name": "drawn", "version": 1, "diagnostics": [], "latest_version": null})
    );
    // Nothing was stored.
    let (code, _) = s.get(&key, "/workflows/drawn").await;
    assert_eq!(code, 404);
    // Problems: each with its code, node, field and line, as an import's.
    let bad = GOOD.replace("to: done", "to: nowhere");
    let (code, v) = validate(&s, &key, &bad, "application/yaml").await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        (v["valid"].clone(), v["name"].clone()),
        (json!(false), json!("drawn"))
    );
    let d = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["code"] == "UNKNOWN_NODE")
        .unwrap();
    assert_eq!(d["line"], 8, "{v}");
    assert!(d["path"].as_str().unwrap().starts_with("/edges/0"), "{v}");
    // JSON too; and text that is no workflow at all is answered, not refused.
    let (code, v) = validate(
        &s,
        &key,
        r#"{"name": "j", "version": 2, "nodes": []}"#,
        "application/json",
    )
    .await;
    assert_eq!(
        (code, v["valid"].clone(), v["version"].clone()),
        (200, json!(false), json!(2)),
        "{v}"
    );
    let (code, v) = validate(&s, &key, "  \n", "application/yaml").await;
    assert_eq!(
        (code, v["code"].as_str()),
        (400, Some("INVALID_REQUEST")),
        "{v}"
    );
    // Text that does not parse at all is refused as an import refuses it, with the diagnostics.
    let (code, v) = validate(&s, &key, "{{{{ not yaml", "application/yaml").await;
    assert_eq!(
        (code, v["code"].as_str()),
        (422, Some("INVALID_WORKFLOW")),
        "{v}"
    );
    assert_eq!(v["details"]["diagnostics"][0]["code"], "SYNTAX", "{v}");
    let (code, v) = validate(&s, &key, "\u{0}", "application/json").await;
    assert_eq!(
        (code, v["code"].as_str()),
        (422, Some("INVALID_WORKFLOW")),
        "{v}"
    );
    let (code, v) = validate(&s, &key, "just words", "application/yaml").await;
    assert_eq!(
        (code, v["details"]["diagnostics"][0]["code"].as_str()),
        (422, Some("INVALID_TYPE")),
        "{v}"
    );
    // A workflow named `validate` is still a workflow like any other.
    let admin = s.key("acme", &[Scope::Admin]).await;
    let (code, v) = s
        .import(&admin, &GOOD.replace("name: drawn", "name: validate"))
        .await;
    assert_eq!(code, 201, "{v}");
    let (code, v) = s.get(&admin, "/workflows/validate").await;
    assert_eq!((code, v["name"].clone()), (200, json!("validate")), "{v}");
    // The validator says which version the name has stored, so a save knows its number.
    let (code, v) = validate(
        &s,
        &admin,
        &GOOD.replace("name: drawn", "name: validate"),
        "application/yaml",
    )
    .await;
    assert_eq!((code, v["latest_version"].clone()), (200, json!(1)), "{v}");
    let (code, v) = s.get(&admin, "/workflows/validate/versions").await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = s.delete(&admin, "/workflows/validate").await;
    assert_eq!(code, 200, "{v}");
    s.stop().await;
}

#[tokio::test]
async fn the_schema_is_the_validators() {
    let s = TestServer::start().await;
    let key = s.key("acme", &[Scope::Read]).await;
    let (code, v) = s.get(&key, "/schema/workflow").await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v, hilo_core::schema::workflow_schema());
    s.stop().await;
}

#[tokio::test]
async fn a_layout_is_kept_beside_the_versions_per_tenant() {
    let s = TestServer::start().await;
    let admin = s.key("acme", &[Scope::Admin]).await;
    let reader = s.key("acme", &[Scope::Read]).await;
    let other = s.key("globex", &[Scope::Admin]).await;
    let put = |key: &str, name: &str, body: serde_json::Value| {
        let (s, key, name) = (&s, key.to_string(), name.to_string());
        async move {
            let r = s
                .http
                .put(s.url(&format!("/workflows/{name}/layout")))
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap();
            read(r).await
        }
    };
    let layout = json!({"nodes": {"a": {"x": 0, "y": 0}, "done": {"x": 200, "y": 0}}});
    // No such workflow yet.
    let (code, v) = put(&admin, "drawn", json!({"layout": layout})).await;
    assert_eq!(
        (code, v["code"].as_str()),
        (404, Some("WORKFLOW_NOT_FOUND")),
        "{v}"
    );
    let (code, _) = s.import(&admin, GOOD).await;
    assert_eq!(code, 201);
    let (code, v) = s.get(&admin, "/workflows/drawn/layout").await;
    assert_eq!((code, v["layout"].clone()), (200, json!(null)), "{v}");
    let (code, v) = s.get(&admin, "/workflows/nowhere/layout").await;
    assert_eq!(
        (code, v["code"].as_str()),
        (404, Some("WORKFLOW_NOT_FOUND")),
        "{v}"
    );
    let (code, v) = put(&admin, "drawn", json!({"layout": layout})).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["layout"], layout);
    let (code, v) = s.get(&reader, "/workflows/drawn/layout").await;
    assert_eq!((code, v["layout"].clone()), (200, layout.clone()), "{v}");
    // A reader may not change it; another tenant sees none of it.
    let (code, _) = put(&reader, "drawn", json!({"layout": {}})).await;
    assert_eq!(code, 403);
    let (code, v) = s.get(&other, "/workflows/drawn/layout").await;
    assert_eq!(
        (code, v["code"].as_str()),
        (404, Some("WORKFLOW_NOT_FOUND")),
        "{v}"
    );
    // The versions do not carry it: the export is the text as imported.
    let r = s
        .http
        .get(s.url("/workflows/drawn/export"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), GOOD);
    // Bad layouts are refused, saying why.
    let (code, v) = put(&admin, "drawn", json!({"layout": [1, 2]})).await;
    assert_eq!(
        (code, v["code"].as_str()),
        (400, Some("INVALID_REQUEST")),
        "{v}"
    );
    let big = "x".repeat(300 * 1024);
    let (code, v) = put(&admin, "drawn", json!({"layout": {"note": big}})).await;
    assert_eq!(code, 400, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("262144"), "{v}");
    // Deleting the workflow deletes its layout.
    let (code, _) = s.delete(&admin, "/workflows/drawn").await;
    assert_eq!(code, 200);
    let (code, _) = s.import(&admin, GOOD).await;
    assert_eq!(code, 201);
    let (code, v) = s.get(&admin, "/workflows/drawn/layout").await;
    assert_eq!((code, v["layout"].clone()), (200, json!(null)), "{v}");
    s.stop().await;
}
