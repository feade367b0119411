//! The knowledge base: every backend keeps collections, documents and chunks per tenant,
//! treats re-adding an unchanged document as a no-op and replaces a changed one's chunks,
//! finds chunks by full text (with metadata filters) and gives vectors back bit for bit, and
//! removes a document or a collection with everything in it. Tenants never see each other's;
//! another tenant's better matches never push a collection's own out of its answer, and
//! another tenant's documents never change a collection's ranking or scores (issue 50).

use std::collections::BTreeMap;

use hilo_core::knowledge::{KbDocument, NewChunk, NewKbDocument, PutOutcome, TextHit, TextQuery};
use hilo_core::store::Store;

pub async fn run_all(s: &dyn Store) {
    documents_are_kept_replaced_and_searched_per_tenant(s).await;
    removing_leaves_nothing(s).await;
    retention_expires_what_is_older_and_records_it(s).await;
    frequent_terms_are_cut_off_in_large_collections_only(s).await;
    the_best_hits_do_not_depend_on_other_collections(s).await;
    scores_do_not_depend_on_other_tenants(s).await;
    the_cutoff_counts_only_the_collections_chunks(s).await;
}

pub fn doc(
    tenant: &str,
    collection: &str,
    source: &str,
    body: &[&str],
    lang: &str,
) -> NewKbDocument {
    let content = body.join("\n\n");
    NewKbDocument {
        tenant: tenant.into(),
        document: KbDocument {
            id: format!("{collection}-{source}"),
            collection: collection.into(),
            source: source.into(),
            format: "markdown".into(),
            metadata: BTreeMap::from([("lang".to_string(), lang.to_string())]),
            content_hash: format!("hash-{}", content.len()),
            chunking: "markdown/1000/150".into(),
            embedding_model: Some("mini".into()),
            chunks: body.len() as u64,
            bytes: content.len() as u64,
            created_at: 1_000,
            updated_at: 1_000,
        },
        chunks: body
            .iter()
            .enumerate()
            .map(|(i, t)| NewChunk {
                position: i as u32,
                heading: format!("Policies > Part {i}"),
                text: (*t).into(),
                embedding: Some(vec![i as f32, 0.5, -1.0 / 3.0, f32::MIN_POSITIVE]),
            })
            .collect(),
    }
}

fn all() -> BTreeMap<String, String> {
    BTreeMap::new()
}

async fn search(
    s: &dyn Store,
    tenant: &str,
    coll: &str,
    words: &[&str],
    filter: &BTreeMap<String, String>,
) -> Vec<i64> {
    hits(s, tenant, coll, words, filter, 10)
        .await
        .into_iter()
        .map(|h| h.chunk_id)
        .collect()
}

async fn hits(
    s: &dyn Store,
    tenant: &str,
    coll: &str,
    words: &[&str],
    filter: &BTreeMap<String, String>,
    limit: u32,
) -> Vec<TextHit> {
    let terms: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    s.kb_text_search(
        tenant,
        &TextQuery {
            collection: coll,
            terms: &terms,
            filter,
            limit,
        },
    )
    .await
    .unwrap()
}

async fn documents_are_kept_replaced_and_searched_per_tenant(s: &dyn Store) {
    let a = doc(
        "kb-a",
        "policies",
        "refunds.md",
        &[
            "Refunds are paid within fourteen days.",
            "Shipping is free above fifty euros.",
        ],
        "en",
    );
    assert_eq!(s.put_kb_document(&a).await.unwrap(), PutOutcome::Added);
    assert_eq!(s.put_kb_document(&a).await.unwrap(), PutOutcome::Unchanged);
    let fr = doc(
        "kb-a",
        "policies",
        "remboursements.md",
        &["Refunds en français: remboursement sous quatorze jours."],
        "fr",
    );
    assert_eq!(s.put_kb_document(&fr).await.unwrap(), PutOutcome::Added);
    // Another tenant, same names.
    let b = doc(
        "kb-b",
        "policies",
        "refunds.md",
        &["Refunds are never paid."],
        "en",
    );
    assert_eq!(s.put_kb_document(&b).await.unwrap(), PutOutcome::Added);

    let colls = s.list_kb_collections("kb-a").await.unwrap();
    assert_eq!(colls.len(), 1);
    assert_eq!(
        (colls[0].name.as_str(), colls[0].documents, colls[0].chunks),
        ("policies", 2, 3)
    );
    let rev = colls[0].revision;
    assert!(s.list_kb_collections("kb-c").await.unwrap().is_empty());

    // Round trip of the document and its chunks.
    let got = s
        .get_kb_document("kb-a", "policies-refunds.md")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.metadata, a.document.metadata);
    assert_eq!(got.chunks, 2);
    let chunks = s
        .kb_document_chunks("kb-a", "policies-refunds.md")
        .await
        .unwrap();
    assert_eq!(chunks.len(), 2);
    assert_eq!(chunks[1].heading, "Policies > Part 1");
    assert_eq!(chunks[1].source, "refunds.md");
    assert_eq!(chunks[1].text, "Shipping is free above fifty euros.");
    assert!(
        s.get_kb_document("kb-c", "policies-refunds.md")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.kb_document_chunks("kb-c", "policies-refunds.md")
            .await
            .unwrap()
            .is_empty()
    );

    // Full text: stemmed, ranked, per tenant, filtered by metadata.
    let hits = search(s, "kb-a", "policies", &["refund", "paid"], &all()).await;
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert_eq!(hits[0], chunks[0].id, "the chunk with both words first");
    let en = BTreeMap::from([("lang".to_string(), "en".to_string())]);
    assert_eq!(
        search(s, "kb-a", "policies", &["refunds"], &en).await,
        [chunks[0].id]
    );
    let de = BTreeMap::from([("lang".to_string(), "de".to_string())]);
    assert!(
        search(s, "kb-a", "policies", &["refunds"], &de)
            .await
            .is_empty()
    );
    assert!(
        search(s, "kb-a", "other", &["refunds"], &all())
            .await
            .is_empty()
    );
    let theirs = search(s, "kb-b", "policies", &["refunds"], &all()).await;
    assert_eq!(theirs.len(), 1);
    assert!(!hits.contains(&theirs[0]));
    // The heading is indexed too.
    assert_eq!(search(s, "kb-a", "policies", &["part"], &en).await.len(), 2);

    // Vectors bit for bit, per tenant and model.
    let vectors = s.kb_vectors("kb-a", "policies", "mini").await.unwrap();
    assert_eq!(vectors.len(), 3);
    let first = vectors.iter().find(|v| v.chunk_id == chunks[1].id).unwrap();
    assert_eq!(first.values, vec![1.0, 0.5, -1.0 / 3.0, f32::MIN_POSITIVE]);
    assert_eq!(first.document_id, "policies-refunds.md");
    assert!(
        s.kb_vectors("kb-a", "policies", "big")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.kb_vectors("kb-b", "policies", "mini")
            .await
            .unwrap()
            .len(),
        1
    );

    // Chunks by id: another tenant's ids give nothing.
    let ids: Vec<i64> = chunks.iter().map(|c| c.id).collect();
    assert_eq!(s.get_kb_chunks("kb-a", &ids).await.unwrap().len(), 2);
    assert!(s.get_kb_chunks("kb-b", &ids).await.unwrap().is_empty());

    // A changed document replaces its chunks; it keeps its id and creation time.
    let mut changed = doc(
        "kb-a",
        "policies",
        "refunds.md",
        &["Refunds are paid within thirty days."],
        "en",
    );
    changed.document.created_at = 5_000;
    assert_eq!(
        s.put_kb_document(&changed).await.unwrap(),
        PutOutcome::Replaced
    );
    let after = s
        .kb_document_chunks("kb-a", "policies-refunds.md")
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
    assert!(after[0].text.contains("thirty"));
    assert!(
        search(s, "kb-a", "policies", &["shipping"], &all())
            .await
            .is_empty()
    );
    assert_eq!(
        search(s, "kb-a", "policies", &["thirty"], &all()).await,
        [after[0].id]
    );
    let got = s
        .get_kb_document("kb-a", "policies-refunds.md")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.created_at, 1_000);
    assert_eq!(got.chunks, 1);
    let coll = s
        .get_kb_collection("kb-a", "policies")
        .await
        .unwrap()
        .unwrap();
    assert!(coll.revision > rev, "a change bumps the revision");
    assert_eq!((coll.documents, coll.chunks), (2, 2));
    // Another embedding model is a change too (the vectors must be remade).
    let mut other_model = changed.clone();
    other_model.document.embedding_model = Some("big".into());
    assert_eq!(
        s.put_kb_document(&other_model).await.unwrap(),
        PutOutcome::Replaced
    );
    assert_eq!(
        s.kb_vectors("kb-a", "policies", "big").await.unwrap().len(),
        1
    );

    // Another tenant's document is untouched by all this.
    assert_eq!(
        s.kb_document_chunks("kb-b", "policies-refunds.md")
            .await
            .unwrap()[0]
            .text,
        "Refunds are never paid."
    );
}

async fn removing_leaves_nothing(s: &dyn Store) {
    assert!(
        s.remove_kb_document("kb-a", "policies-refunds.md")
            .await
            .unwrap()
    );
    assert!(
        !s.remove_kb_document("kb-a", "policies-refunds.md")
            .await
            .unwrap()
    );
    assert!(
        s.kb_document_chunks("kb-a", "policies-refunds.md")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        search(s, "kb-a", "policies", &["thirty"], &all())
            .await
            .is_empty()
    );
    assert_eq!(s.list_kb_documents("kb-a", None).await.unwrap().len(), 1);
    // Removing another tenant's document by id does nothing.
    assert!(
        !s.remove_kb_document("kb-b", "policies-remboursements.md")
            .await
            .unwrap()
    );
    // The last document takes its collection with it.
    assert!(
        s.remove_kb_document("kb-a", "policies-remboursements.md")
            .await
            .unwrap()
    );
    assert!(s.list_kb_collections("kb-a").await.unwrap().is_empty());
    // A whole collection.
    s.put_kb_document(&doc("kb-b", "policies", "more.md", &["More text."], "en"))
        .await
        .unwrap();
    assert_eq!(
        s.remove_kb_collection("kb-b", "policies").await.unwrap(),
        Some(2)
    );
    assert_eq!(
        s.remove_kb_collection("kb-b", "policies").await.unwrap(),
        None
    );
    assert!(s.list_kb_documents("kb-b", None).await.unwrap().is_empty());
    assert!(
        s.kb_vectors("kb-b", "policies", "mini")
            .await
            .unwrap()
            .is_empty()
    );
}

/// A collection's retention: documents older than it go (chunks and index entries with
/// them), a sweep that deleted something is an erasure, other collections and tenants keep
/// theirs, and the collection keeps its setting when it empties.
async fn retention_expires_what_is_older_and_records_it(s: &dyn Store) {
    let now = hilo_core::store::now_ms();
    for (tenant, coll, src) in [
        ("kb-r", "news", "old.md"),
        ("kb-r", "news", "older.md"),
        ("kb-r", "manuals", "guide.md"),
        ("kb-r2", "news", "theirs.md"),
    ] {
        s.put_kb_document(&doc(
            tenant,
            coll,
            src,
            &["quarterly results are out"],
            "en",
        ))
        .await
        .unwrap();
    }
    assert!(
        !s.set_kb_retention("kb-r", "nope", Some(1_000))
            .await
            .unwrap()
    );
    assert!(
        !s.set_kb_retention("kb-r2", "manuals", Some(1_000))
            .await
            .unwrap()
    );
    assert!(
        s.set_kb_retention("kb-r", "news", Some(60_000))
            .await
            .unwrap()
    );
    assert!(
        s.set_kb_retention("kb-r2", "news", Some(60_000))
            .await
            .unwrap()
    );
    let colls = s.list_kb_collections("kb-r").await.unwrap();
    let news = colls.iter().find(|c| c.name == "news").unwrap();
    assert_eq!(news.retention_ms, Some(60_000));
    let rev = news.revision;
    // Nothing is old enough yet.
    assert!(
        s.expire_kb_documents(Some("kb-r"), now, "test")
            .await
            .unwrap()
            .is_empty()
    );
    // An hour later: both news documents of kb-r go; its manuals and kb-r2 stay.
    let later = now + 3_600_000;
    let done = s
        .expire_kb_documents(Some("kb-r"), later, "test")
        .await
        .unwrap();
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(
        (
            done[0].collection.as_str(),
            done[0].documents,
            done[0].chunks
        ),
        ("news", 2, 2)
    );
    assert!(
        s.list_kb_documents("kb-r", Some("news"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        search(s, "kb-r", "news", &["quarterly"], &all())
            .await
            .is_empty()
    );
    assert_eq!(
        s.list_kb_documents("kb-r", Some("manuals"))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(s.list_kb_documents("kb-r2", None).await.unwrap().len(), 1);
    let colls = s.list_kb_collections("kb-r").await.unwrap();
    let news = colls.iter().find(|c| c.name == "news").unwrap();
    assert_eq!((news.documents, news.retention_ms), (0, Some(60_000)));
    assert!(news.revision > rev);
    // Recorded as an erasure of kind kb_retention, without the collection's name in clear.
    let erasures = s.list_erasures("kb-r", 10).await.unwrap();
    let e = erasures.iter().find(|e| e.kind == "kb_retention").unwrap();
    assert_eq!((e.counts.kb_documents, e.counts.kb_chunks), (2, 2));
    assert_eq!(e.actor, "test");
    assert_eq!(
        e.subject_sha256,
        hilo_core::forget::subject_hash("kb-r", "news")
    );
    // A sweep of every tenant takes kb-r2's too; clearing the retention of an empty
    // collection drops it.
    let done = s
        .expire_kb_documents(None, later, "retention")
        .await
        .unwrap();
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(done[0].tenant, "kb-r2");
    assert!(s.set_kb_retention("kb-r", "news", None).await.unwrap());
    let names: Vec<String> = s
        .list_kb_collections("kb-r")
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["manuals"]);
}

/// A document of `n` chunks of `text(i)`, without vectors.
fn many(
    tenant: &str,
    collection: &str,
    source: &str,
    n: usize,
    text: impl Fn(usize) -> String,
) -> NewKbDocument {
    let body: Vec<String> = (0..n).map(&text).collect();
    let refs: Vec<&str> = body.iter().map(String::as_str).collect();
    let mut d = doc(tenant, collection, source, &refs, "en");
    for c in &mut d.chunks {
        c.embedding = None;
    }
    d.document.embedding_model = None;
    d
}

/// The common-terms cutoff: in a collection of 20,000 chunks or more, the terms that match
/// too many chunks are left out of the ranked query (the rarest kept), and a query of only
/// frequent terms matches the chunks holding all of them; a small collection is still ranked
/// by any of the words, even when the same words are frequent in the whole index.
async fn frequent_terms_are_cut_off_in_large_collections_only(s: &dyn Store) {
    // Every chunk holds `common`; `alpha` every second, `beta` every third; one `zebra`.
    let big = many("kb-ct", "big", "big.md", 20_000, |i| {
        let mut t = format!("common filler{}", i % 7);
        if i % 2 == 0 {
            t.push_str(" alpha");
        }
        if i % 3 == 0 {
            t.push_str(" beta");
        }
        if i == 12_345 {
            t.push_str(" zebra");
        }
        t
    });
    assert_eq!(s.put_kb_document(&big).await.unwrap(), PutOutcome::Added);
    let small = many("kb-ct", "small", "small.md", 30, |i| {
        if i == 7 {
            "common zebra".to_string()
        } else {
            format!("common small{i}")
        }
    });
    assert_eq!(s.put_kb_document(&small).await.unwrap(), PutOutcome::Added);
    let text_of = |chunks: &[hilo_core::knowledge::KbChunk], id: i64| {
        chunks.iter().find(|c| c.id == id).unwrap().text.clone()
    };

    // Small collection: any of the words, as before: the zebra chunk first, then chunks
    // matching only the frequent word, up to the limit.
    let small_chunks = s
        .kb_document_chunks("kb-ct", "small-small.md")
        .await
        .unwrap();
    let hits = search(s, "kb-ct", "small", &["common", "zebra"], &all()).await;
    assert_eq!(hits.len(), 10, "{hits:?}");
    assert_eq!(text_of(&small_chunks, hits[0]), "common zebra");

    // Large collection: `common` (20,000 chunks) is left out, the rare word ranks alone.
    let big_chunks = s.kb_document_chunks("kb-ct", "big-big.md").await.unwrap();
    let hits = search(s, "kb-ct", "big", &["common", "zebra"], &all()).await;
    assert_eq!(hits.len(), 1, "only the rare word's chunk: {hits:?}");
    assert!(text_of(&big_chunks, hits[0]).contains("zebra"));
    // Every term frequent (10,000 and 6,667 chunks): the chunks holding all of them.
    let hits = search(s, "kb-ct", "big", &["alpha", "beta"], &all()).await;
    assert_eq!(hits.len(), 10, "{hits:?}");
    for h in hits {
        let t = text_of(&big_chunks, h);
        assert!(t.contains("alpha") && t.contains("beta"), "{t}");
    }
    // A term under the budget is kept with the rarest: `filler3` (2,857 chunks) and `zebra`
    // match, `common` does not.
    let hits = search(s, "kb-ct", "big", &["common", "filler3", "zebra"], &all()).await;
    assert_eq!(hits.len(), 10, "{hits:?}");
    for h in hits {
        let t = text_of(&big_chunks, h);
        assert!(t.contains("filler3") || t.contains("zebra"), "{t}");
    }
    // One term is ranked as asked, however frequent.
    assert_eq!(
        search(s, "kb-ct", "big", &["common"], &all()).await.len(),
        10
    );

    assert_eq!(
        s.remove_kb_collection("kb-ct", "big").await.unwrap(),
        Some(1)
    );
    assert_eq!(
        s.remove_kb_collection("kb-ct", "small").await.unwrap(),
        Some(1)
    );
}

/// Full text ranked in the index first (SQLite, when the collection is most of the index):
/// the best hits are the same whatever the limit, and another tenant's stronger matches,
/// which fill the index's best window, do not hide the collection's own.
async fn the_best_hits_do_not_depend_on_other_collections(s: &dyn Store) {
    // Chunks of different lengths, so that BM25 tells them apart; ties in groups of five.
    let mine = many("kb-w", "mine", "mine.md", 300, |i| {
        let filler: Vec<String> = (0..i % 5).map(|j| format!("pad{j}")).collect();
        format!("zebra {}", filler.join(" "))
    });
    assert_eq!(s.put_kb_document(&mine).await.unwrap(), PutOutcome::Added);
    let with_limit = |limit: u32, filter: BTreeMap<String, String>| async move {
        let terms = vec!["zebra".to_string()];
        s.kb_text_search(
            "kb-w",
            &TextQuery {
                collection: "mine",
                terms: &terms,
                filter: &filter,
                limit,
            },
        )
        .await
        .unwrap()
    };
    let whole = with_limit(200, all()).await;
    assert_eq!(whole.len(), 200);
    for w in whole.windows(2) {
        assert!(
            w[0].score > w[1].score || (w[0].score == w[1].score && w[0].chunk_id < w[1].chunk_id),
            "{w:?}"
        );
    }
    let top = with_limit(10, all()).await;
    assert_eq!(top, whole[..10].to_vec());

    // Another tenant's chunks match better (the word three times in fewer words).
    let theirs = many("kb-w2", "theirs", "theirs.md", 120, |_| {
        "zebra zebra zebra".to_string()
    });
    assert_eq!(s.put_kb_document(&theirs).await.unwrap(), PutOutcome::Added);
    let top = with_limit(10, all()).await;
    assert_eq!(top.len(), 10, "{top:?}");
    let whole = with_limit(200, all()).await;
    assert_eq!(top, whole[..10].to_vec());
    let own: std::collections::HashSet<i64> = s
        .kb_document_chunks("kb-w", "mine-mine.md")
        .await
        .unwrap()
        .iter()
        .map(|c| c.id)
        .collect();
    assert!(whole.iter().all(|h| own.contains(&h.chunk_id)));
    // A filter that keeps the collection's chunks still finds them.
    let en = BTreeMap::from([("lang".to_string(), "en".to_string())]);
    assert_eq!(with_limit(10, en).await, top);

    for (t, c) in [("kb-w", "mine"), ("kb-w2", "theirs")] {
        assert_eq!(s.remove_kb_collection(t, c).await.unwrap(), Some(1));
    }
}

/// Every hit of a text search, scores as bits: equal only when bit for bit.
async fn probe(s: &dyn Store, tenant: &str, coll: &str, words: &[&str]) -> Vec<(i64, u64)> {
    hits(s, tenant, coll, words, &all(), 20)
        .await
        .into_iter()
        .map(|h| (h.chunk_id, h.score.to_bits()))
        .collect()
}

/// The cross-tenant ranking probe (issue 50): a tenant's scores and ranking for its own
/// documents are the same, bit for bit, whatever another tenant adds (documents with the
/// query's words, in a collection of the same name, or without them) and removes. A score
/// that moved would tell the tenant whether a word is in another's knowledge base.
async fn scores_do_not_depend_on_other_tenants(s: &dyn Store) {
    let mine = doc(
        "kb-p1",
        "docs",
        "refunds.md",
        &[
            "Refunds are paid within fourteen days of the return.",
            "A refund for a damaged parcel is paid at once, refund or exchange.",
            "Shipping is free above fifty euros; returns take fourteen days.",
            "Warranty claims need the receipt.",
        ],
        "en",
    );
    assert_eq!(s.put_kb_document(&mine).await.unwrap(), PutOutcome::Added);
    let words = ["refund", "fourteen", "receipt"];
    let before = probe(s, "kb-p1", "docs", &words).await;
    assert_eq!(before.len(), 4, "{before:?}");
    assert!(before.iter().all(|(_, bits)| f64::from_bits(*bits) > 0.0));

    // The other tenant: the query's words (same collection name, many chunks), then words
    // that are not the query's, each added and removed.
    let with_words = doc(
        "kb-p2",
        "docs",
        "theirs.md",
        &[
            "refund refund refund",
            "fourteen refunds",
            "a receipt",
            "refund",
            "refund fourteen receipt refund fourteen receipt",
        ],
        "en",
    );
    let without = many("kb-p2", "docs", "other.md", 40, |i| {
        format!("unrelated words about parcels and couriers number {i}")
    });
    for theirs in [&with_words, &without] {
        assert_eq!(s.put_kb_document(theirs).await.unwrap(), PutOutcome::Added);
        assert_eq!(probe(s, "kb-p1", "docs", &words).await, before, "added");
        assert!(
            s.remove_kb_document("kb-p2", &theirs.document.id)
                .await
                .unwrap()
        );
        assert_eq!(probe(s, "kb-p1", "docs", &words).await, before, "removed");
    }
    // Both at once, in another collection of theirs too.
    let mut elsewhere = with_words.clone();
    elsewhere.document.collection = "elsewhere".into();
    elsewhere.document.id = "elsewhere-theirs.md".into();
    for d in [&with_words, &without, &elsewhere] {
        assert_eq!(s.put_kb_document(d).await.unwrap(), PutOutcome::Added);
    }
    assert_eq!(probe(s, "kb-p1", "docs", &words).await, before, "all");

    for (t, c) in [("kb-p1", "docs"), ("kb-p2", "docs"), ("kb-p2", "elsewhere")] {
        assert!(s.remove_kb_collection(t, c).await.unwrap().is_some());
    }
}

/// The common-terms cutoff of a large collection counts the collection's own chunks: another
/// tenant's chunks holding the same word do not make a word of this collection frequent (and
/// leave it out of the ranking), which would tell that the word is in their knowledge base.
async fn the_cutoff_counts_only_the_collections_chunks(s: &dyn Store) {
    // 20,000 chunks: `alpha` in 3,000 of them, `zebra` in 20 (none with both), `common` in
    // every second one.
    let big = many("kb-c1", "big", "big.md", 20_000, |i| {
        let common = if i % 2 == 0 { "common " } else { "" };
        if i % 1_000 == 500 {
            format!("{common}zebra filler{}", i % 7)
        } else if i % 20 < 3 {
            format!("{common}alpha filler{}", i % 7)
        } else {
            format!("{common}filler{}", i % 7)
        }
    });
    assert_eq!(s.put_kb_document(&big).await.unwrap(), PutOutcome::Added);
    // Both words ranked (3,020 chunks); one frequent word (10,000); a frequent word left out.
    let queries: [&[&str]; 3] = [&["alpha", "zebra"], &["common"], &["common", "filler3"]];
    let mut before = Vec::new();
    for words in queries {
        before.push(probe(s, "kb-c1", "big", words).await);
    }
    assert_eq!(before[0].len(), 20, "{before:?}");

    // Another tenant's 3,000 chunks with `alpha` and `common` (6,000 with `alpha` in the
    // whole index).
    let theirs = many("kb-c2", "big", "theirs.md", 3_000, |i| {
        format!("alpha common words of their own {}", i % 3)
    });
    assert_eq!(s.put_kb_document(&theirs).await.unwrap(), PutOutcome::Added);
    for (words, before) in queries.iter().zip(&before) {
        assert_eq!(&probe(s, "kb-c1", "big", words).await, before, "{words:?}");
    }

    for (t, c) in [("kb-c1", "big"), ("kb-c2", "big")] {
        assert_eq!(s.remove_kb_collection(t, c).await.unwrap(), Some(1));
    }
}
