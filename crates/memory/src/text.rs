//! Small text functions of the knowledge base: the terms a full-text query searches for,
//! content hashes and document ids.

use sha2::{Digest, Sha256};

/// Most terms one query searches for.
pub const MAX_TERMS: usize = 32;

/// English words too common to help a ranking (a query matching any term would otherwise
/// scan most of the index for them).
const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can", "do", "does", "for",
    "from", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my", "no",
    "not", "of", "on", "or", "our", "so", "than", "that", "the", "their", "them", "then", "there",
    "these", "they", "this", "to", "was", "we", "were", "what", "when", "where", "which", "who",
    "why", "will", "with", "would", "you", "your",
];

/// A query's search terms: lower-cased runs of letters and digits, without stopwords and
/// repeats, at most [`MAX_TERMS`]. Nothing else survives, so a term needs no escaping in any
/// full-text query syntax.
pub fn query_terms(query: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in query.split(|c: char| !c.is_alphanumeric()) {
        if word.is_empty() {
            continue;
        }
        let w = word.to_lowercase();
        if STOPWORDS.contains(&w.as_str()) || out.contains(&w) {
            continue;
        }
        out.push(w);
        if out.len() == MAX_TERMS {
            break;
        }
    }
    out
}

/// SHA-256 of the content, hex.
pub fn content_hash(content: &str) -> String {
    hilo_core::trace::hex(&Sha256::digest(content.as_bytes()))
}

/// The id of the document from `source` in `collection`: the same every time it is added.
pub fn document_id(collection: &str, source: &str) -> String {
    let mut h = Sha256::new();
    h.update(collection.as_bytes());
    h.update([0]);
    h.update(source.as_bytes());
    format!("doc-{}", &hilo_core::trace::hex(&h.finalize())[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_drop_stopwords_and_symbols() {
        assert_eq!(
            query_terms("What is the refund policy? \"Refund\" OR (NEAR*) ünïcode"),
            ["refund", "policy", "near", "ünïcode"]
        );
        assert!(query_terms("the of and").is_empty());
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        assert_eq!(document_id("c", "a.md"), document_id("c", "a.md"));
        assert_ne!(document_id("c", "a.md"), document_id("d", "a.md"));
        assert_eq!(document_id("c", "a.md").len(), 20);
    }
}
