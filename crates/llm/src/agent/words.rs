//! Comparing texts without embeddings (episodic memory and tool retrieval fall back to it):
//! their words, lowercased, and how much two word sets overlap.

use std::collections::HashSet;

/// The words of a text, lowercased, for comparisons without embeddings.
pub(crate) fn words(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 1)
        .map(str::to_lowercase)
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
