//! Comparing texts without embeddings (episodic memory and tool retrieval fall back to it):
//! their words — as the local router reads them: lowercased, accents folded — and how much
//! two word sets overlap.

use std::collections::HashSet;

/// The words of a text longer than one character, for comparisons without embeddings.
pub(crate) fn words(text: &str) -> HashSet<String> {
    crate::local::words(text)
        .into_iter()
        .filter(|w| w.chars().nth(1).is_some())
        .collect()
}

/// How much two word sets overlap (0..1).
pub(crate) fn jaccard(a: &HashSet<String>, b: &HashSet<String>) -> f32 {
    let union = a.union(b).count();
    if union == 0 {
        return 0.0;
    }
    a.intersection(b).count() as f32 / union as f32
}
