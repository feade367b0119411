//! `hilo kb`: adding a folder (Markdown, HTML and a PDF's text read, a damaged PDF refused
//! with a way out while the other files are added, other files ignored) and stdin text with metadata, listing, showing, searching (full text without
//! an embedding model, and saying so; filters; JSON with provenance), re-adding unchanged
//! documents as a no-op, tenants seeing nothing of each other's, and removing.

use std::io::Write;
use std::process::Stdio;

use serde_json::Value;

use crate::{hilo_cmd, text};

fn run(args: &[&str], db: &std::path::Path) -> (i32, String, String) {
    let out = hilo_cmd(args, db, &[]).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

#[test]
fn kb_add_list_show_search_remove() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kb.db");
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(docs.join("sub")).unwrap();
    std::fs::write(
        docs.join("refunds.md"),
        "# Refunds\n\nRefunds are paid within fourteen days.\n\n## Exceptions\n\nSale items are final.\n",
    )
    .unwrap();
    std::fs::write(
        docs.join("sub/shipping.html"),
        "<html><body><h1>Shipping</h1><p>Shipping is free above fifty euros.</p></body></html>",
    )
    .unwrap();
    // A real PDF (groff's gropdf: an embedded font, compressed streams).
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../memory/tests/fixtures/warranty.pdf"),
        docs.join("warranty.pdf"),
    )
    .unwrap();
    std::fs::write(docs.join("logo.png"), [0u8, 159, 146, 150]).unwrap();
    let d = docs.display().to_string();

    let (code, out, err) = run(
        &["kb", "add", "policies", &d, "--meta", "team=support"],
        &db,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("3 added, 0 replaced, 0 unchanged, 0 skipped"),
        "{out}"
    );
    assert!(out.contains("not embedded"), "{out}");

    // stdin, with its own name and metadata.
    let mut child = hilo_cmd(
        &[
            "kb",
            "add",
            "policies",
            "-",
            "--name",
            "hours",
            "--meta",
            "team=store",
            "--json",
        ],
        &db,
        &[],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"# Opening hours\n\nThe store opens at nine.\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let added: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(added["documents"][0]["outcome"], "added");
    assert_eq!(added["embedded_by"], Value::Null);
    let hours_id = added["documents"][0]["document"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Unchanged: nothing to do.
    let (code, out, _) = run(
        &["kb", "add", "policies", &d, "--meta", "team=support"],
        &db,
    );
    assert_eq!(code, 0);
    assert!(out.contains("0 added, 0 replaced, 3 unchanged"), "{out}");

    let (_, out, _) = run(&["kb", "list"], &db);
    assert!(out.contains("policies") && out.contains("4"), "{out}");
    let (_, out, _) = run(&["kb", "list", "policies", "--json"], &db);
    let listed: Value = serde_json::from_str(&out).unwrap();
    let docs_listed = listed["documents"].as_array().unwrap();
    assert_eq!(docs_listed.len(), 4, "{listed}");
    let warranty = docs_listed
        .iter()
        .find(|x| x["source"].as_str().unwrap().ends_with("warranty.pdf"))
        .unwrap();
    assert_eq!(warranty["format"], "pdf");
    let refunds = docs_listed
        .iter()
        .find(|x| x["source"].as_str().unwrap().ends_with("refunds.md"))
        .unwrap();
    assert_eq!(refunds["metadata"]["team"], "support");
    assert_eq!(refunds["chunks"], 2);
    let refunds_id = refunds["id"].as_str().unwrap().to_owned();

    let (code, out, _) = run(&["kb", "show", &refunds_id], &db);
    assert_eq!(code, 0);
    assert!(
        out.contains("Refunds > Exceptions") && out.contains("Sale items are final."),
        "{out}"
    );

    // Search: full text (and says so), with provenance.
    let (code, out, err) = run(&["kb", "search", "policies", "when are refunds paid"], &db);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("full-text only"), "{err}");
    assert!(out.starts_with("1. "), "{out}");
    assert!(out.contains("refunds.md › Refunds"), "{out}");
    let (_, out, _) = run(
        &[
            "kb",
            "search",
            "policies",
            "shipping fifty euros",
            "--json",
            "--top-k",
            "1",
        ],
        &db,
    );
    let found: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(found["ranked_by"], serde_json::json!(["text"]));
    let hit = &found["hits"][0];
    assert!(
        hit["source"].as_str().unwrap().ends_with("shipping.html"),
        "{found}"
    );
    assert_eq!(hit["heading"], "Shipping");
    assert_eq!(hit["position"], 0);
    assert_eq!(hit["text_rank"], 1);
    assert_eq!(found["hits"].as_array().unwrap().len(), 1);
    // The PDF's text is found.
    let (_, out, _) = run(
        &[
            "kb",
            "search",
            "policies",
            "defective battery charge",
            "--json",
        ],
        &db,
    );
    let found: Value = serde_json::from_str(&out).unwrap();
    let hit = &found["hits"][0];
    assert!(
        hit["source"].as_str().unwrap().ends_with("warranty.pdf"),
        "{found}"
    );
    assert!(
        hit["text"].as_str().unwrap().contains("eighty percent"),
        "{found}"
    );
    // A filter.
    let (_, out, _) = run(
        &[
            "kb",
            "search",
            "policies",
            "store opens shipping refunds",
            "--filter",
            "team=store",
            "--json",
        ],
        &db,
    );
    let found: Value = serde_json::from_str(&out).unwrap();
    let hits = found["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{found}");
    assert_eq!(hits[0]["document_id"], hours_id.as_str());
    // Vector search needs a model: invalid input, with what to do.
    let (code, _, err) = run(
        &["kb", "search", "policies", "refunds", "--mode", "vector"],
        &db,
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("KB_NO_EMBEDDER") && err.contains("[memory.embeddings]"),
        "{err}"
    );

    // Another tenant sees nothing.
    let (_, out, _) = run(
        &["--tenant", "other", "kb", "search", "policies", "refunds"],
        &db,
    );
    assert!(out.contains("no matches"), "{out}");
    let (code, _, _) = run(&["--tenant", "other", "kb", "show", &refunds_id], &db);
    assert_eq!(code, 1);
    let (code, _, _) = run(&["--tenant", "other", "kb", "remove", &refunds_id], &db);
    assert_eq!(code, 1);

    // A damaged PDF in a folder: the other files are added, the PDF is named with a way out,
    // and the command exits 2. Alone, the same.
    let broken = dir.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("manual.pdf"), b"%PDF-1.4 binary").unwrap();
    std::fs::write(broken.join("ok.md"), "# Fine\n\nThis one reads.\n").unwrap();
    let (code, out, err) = run(&["kb", "add", "broken", &broken.display().to_string()], &db);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        out.contains("1 added, 0 replaced, 0 unchanged, 1 skipped"),
        "{out}"
    );
    assert!(
        err.contains("KB_PDF") && err.contains("manual.pdf") && err.contains("pdftotext"),
        "{err}"
    );
    let pdf = broken.join("manual.pdf").display().to_string();
    let (code, _, err) = run(&["kb", "add", "broken", &pdf], &db);
    assert_eq!(code, 2);
    assert!(
        err.contains("KB_PDF") && err.contains("manual.pdf"),
        "{err}"
    );

    // Removing.
    let (code, out, _) = run(&["kb", "remove", &refunds_id], &db);
    assert_eq!(code, 0, "{out}");
    let (_, out, _) = run(&["kb", "search", "policies", "refunds exceptions"], &db);
    assert!(!out.contains("refunds.md"), "{out}");
    let (code, out, _) = run(&["kb", "remove", "--collection", "policies", "--json"], &db);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["removed_documents"],
        3
    );
    let (code, _, _) = run(&["kb", "remove", "--collection", "broken"], &db);
    assert_eq!(code, 0);
    let (_, out, _) = run(&["kb", "list"], &db);
    assert!(out.contains("no collections yet"), "{out}");
}

/// `hilo bench --only memory --quick` runs every knowledge-base scenario for real (small
/// sizes) at the repository's root: indexing throughput, hybrid search over both lists, and
/// the question set over docs/ (full text here: no embedding model is configured).
#[test]
fn bench_memory_runs_its_scenarios() {
    let out = crate::hilo(&["bench", "--json", "--quick", "--only", "memory"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["memory_index"]["chunks_per_s"].as_f64().unwrap() > 0.0,
        "{v}"
    );
    assert!(
        v["memory_index"]["chunks"].as_u64().unwrap() >= 1_000,
        "{v}"
    );
    let s = &v["memory_search_10000"];
    assert!(
        s["chunks"].as_u64().unwrap() >= 1_000,
        "quick: 1,000 chunks: {v}"
    );
    assert!(s["p95_ms"].as_f64().unwrap() >= s["p50_ms"].as_f64().unwrap());
    assert!(
        v.get("memory_search_100000").is_none(),
        "quick skips the largest: {v}"
    );
    let q = &v["memory_quality"];
    assert!(q["questions"].as_u64().unwrap() >= 100, "{v}");
    assert_eq!(q["embedded_by"], Value::Null);
    let recall = q["text"]["recall_at_k"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&recall), "{v}");
    assert!(
        q.get("hybrid").is_none(),
        "no embedder, no hybrid figures: {v}"
    );
}

/// `hilo kb retention` and `hilo kb expire`: a collection's documents older than its
/// retention are deleted, listed as such and recorded as an erasure; `off` keeps them.
#[test]
fn kb_retention_expires_old_documents() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kb.db");
    let mut child = hilo_cmd(&["kb", "add", "news", "-", "--name", "q3.md"], &db, &[])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"# Q3\n\nQuarterly results are out.\n")
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    let (code, _, err) = run(&["kb", "retention", "nope", "30d"], &db);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no collection `nope`"), "{err}");
    let (code, _, err) = run(&["kb", "retention", "news", "0"], &db);
    assert_eq!(code, 2, "{err}");
    let (code, out, err) = run(&["kb", "retention", "news", "30d"], &db);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("within 30d"), "{out}");
    let (_, out, _) = run(&["kb", "list"], &db);
    assert!(out.contains("RETENTION") && out.contains("30d"), "{out}");
    // Nothing is 30 days old.
    let (code, out, _) = run(&["kb", "expire"], &db);
    assert_eq!(code, 0);
    assert!(out.contains("nothing past"), "{out}");
    // With a retention of 1 ms the document is past it at once.
    let (code, _, err) = run(&["kb", "retention", "news", "1ms"], &db);
    assert_eq!(code, 0, "{err}");
    std::thread::sleep(std::time::Duration::from_millis(20));
    let (code, out, err) = run(&["kb", "expire", "--json"], &db);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["expired"][0]["collection"], "news", "{v}");
    assert_eq!(v["expired"][0]["documents"], 1, "{v}");
    let (_, out, _) = run(&["kb", "search", "news", "quarterly", "--json"], &db);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(v["hits"].as_array().unwrap().is_empty(), "{v}");
    let (_, out, _) = run(&["memory", "erasures", "--json"], &db);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["items"][0]["kind"], "kb_retention", "{v}");
    assert!(!out.contains("\"news\""), "{out}");
    let (code, out, _) = run(&["kb", "retention", "news", "off"], &db);
    assert_eq!(code, 0);
    assert!(out.contains("kept until removed"), "{out}");
}
