//! The knowledge base over HTTP: adding documents as text (unchanged is a no-op, a change
//! replaces), listing collections and documents, one document with its chunks, hybrid search
//! (full text here: no embedding model, which the answer says) with provenance and filters,
//! removal, the scopes it needs, and a second tenant that sees and removes nothing.

use hilo_core::access::Scope;
use serde_json::json;

use crate::common::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knowledge_base_over_http_is_kept_to_its_tenant() {
    let s = TestServer::start().await;
    let key = s.key("kb", &[Scope::Admin]).await;
    let reader = s.key("kb", &[Scope::Read]).await;
    let other = s.key("kb-other", &[Scope::Admin]).await;

    let doc = json!({
        "source": "policy.md",
        "content": "# Policies\n\n## Refunds\n\nRefunds are paid within fourteen days.\n\n## Shipping\n\nShipping is free above fifty euros.\n",
        "metadata": {"team": "support"}
    });
    let (code, v) = s
        .post(&key, "/kb/collections/policies/documents", doc.clone())
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["outcome"], "added");
    assert_eq!(v["document"]["chunks"], 2);
    let id = v["document"]["id"].as_str().unwrap().to_owned();
    let (_, v) = s
        .post(&key, "/kb/collections/policies/documents", doc)
        .await;
    assert_eq!(v["outcome"], "unchanged");
    let (code, v) = s
        .post(
            &key,
            "/kb/collections/policies/documents",
            json!({"source": "hours.html", "format": "html",
                   "content": "<h1>Hours</h1><p>The store opens at nine.</p>",
                   "metadata": {"team": "store"}}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    // A reader may not add; a PDF is refused.
    let (code, _) = s
        .post(
            &reader,
            "/kb/collections/policies/documents",
            json!({"source": "x", "content": "x"}),
        )
        .await;
    assert_eq!(code, 403);
    let (code, v) = s
        .post(
            &key,
            "/kb/collections/policies/documents",
            json!({"source": "x.pdf", "content": "x", "format": "pdf"}),
        )
        .await;
    assert_eq!(code, 422, "{v}");
    assert_eq!(v["code"], "KB_UNSUPPORTED_FORMAT");

    let (code, v) = s.get(&reader, "/kb/collections").await;
    assert_eq!(code, 200);
    assert_eq!(v["items"][0]["name"], "policies");
    assert_eq!(v["items"][0]["documents"], 2);
    assert_eq!(v["items"][0]["chunks"], 3);
    let (_, v) = s.get(&reader, "/kb/collections/policies/documents").await;
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    let (code, v) = s.get(&reader, &format!("/kb/documents/{id}")).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["chunk_list"][1]["heading"], "Policies > Shipping");

    let (code, v) = s
        .post(
            &reader,
            "/kb/collections/policies/search",
            json!({"query": "when are refunds paid?"}),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["mode"], "hybrid");
    assert_eq!(v["ranked_by"], json!(["text"]));
    assert!(
        v["note"].as_str().unwrap().contains("full-text only"),
        "{v}"
    );
    let hit = &v["hits"][0];
    assert_eq!(hit["document_id"], id.as_str());
    assert_eq!(hit["source"], "policy.md");
    assert_eq!(hit["heading"], "Policies > Refunds");
    assert_eq!(hit["position"], 0);
    assert_eq!(hit["metadata"]["team"], "support");
    let (_, v) = s
        .post(
            &reader,
            "/kb/collections/policies/search",
            json!({"query": "store opens refunds", "filter": {"team": "store"}, "mode": "text", "top_k": 3}),
        )
        .await;
    let hits = v["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{v}");
    assert_eq!(hits[0]["source"], "hours.html");
    let (code, v) = s
        .post(
            &reader,
            "/kb/collections/policies/search",
            json!({"query": "refunds", "mode": "vector"}),
        )
        .await;
    assert_eq!(code, 400);
    assert_eq!(v["code"], "KB_NO_EMBEDDER");

    // The second tenant sees nothing and removes nothing.
    let (_, v) = s.get(&other, "/kb/collections").await;
    assert_eq!(v["items"].as_array().unwrap().len(), 0);
    let (_, v) = s.get(&other, "/kb/collections/policies/documents").await;
    assert_eq!(v["items"].as_array().unwrap().len(), 0);
    let (code, _) = s.get(&other, &format!("/kb/documents/{id}")).await;
    assert_eq!(code, 404);
    let (code, v) = s
        .post(
            &other,
            "/kb/collections/policies/search",
            json!({"query": "refunds"}),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(v["hits"].as_array().unwrap().len(), 0);
    let (code, _) = s.delete(&other, &format!("/kb/documents/{id}")).await;
    assert_eq!(code, 404);
    let (code, _) = s.delete(&other, "/kb/collections/policies").await;
    assert_eq!(code, 404);

    // Removal.
    let (code, _) = s.delete(&key, &format!("/kb/documents/{id}")).await;
    assert_eq!(code, 204);
    let (code, _) = s.get(&key, &format!("/kb/documents/{id}")).await;
    assert_eq!(code, 404);
    let (code, _) = s.delete(&key, "/kb/collections/policies").await;
    assert_eq!(code, 204);
    let (_, v) = s.get(&key, "/kb/collections").await;
    assert_eq!(v["items"].as_array().unwrap().len(), 0);
}
