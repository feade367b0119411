//! Retrieval quality: recall@k and mean reciprocal rank over a question set, each question
//! with the answer it expects (a document, and optionally the heading that answers it).

use serde::{Deserialize, Serialize};

/// One question and where its answer is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Question {
    pub question: String,
    /// The answering document's source, as added (`docs/memory.md`).
    pub source: String,
    /// The heading path's last part that answers it; absent: any chunk of the document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heading: Option<String>,
}

impl Question {
    /// Whether a hit (its source and heading path) answers this question.
    pub fn answered_by(&self, source: &str, heading: &str) -> bool {
        source == self.source
            && self.heading.as_deref().is_none_or(|h| {
                heading == h || heading.ends_with(&format!(" > {h}")) || heading.contains(h)
            })
    }
}

/// Figures of one run over a question set.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Quality {
    pub questions: usize,
    /// Share of the questions answered in the first `k` hits.
    pub recall_at_k: f64,
    /// Mean over the questions of 1 / rank of the first answering hit (0 when none in the
    /// hits looked at).
    pub mrr: f64,
    pub k: usize,
}

/// Recall@k and MRR from each question's rank of its first answering hit (1-based; `None`
/// when no hit answered).
pub fn quality(ranks: &[Option<usize>], k: usize) -> Quality {
    let n = ranks.len();
    if n == 0 {
        return Quality {
            k,
            ..Quality::default()
        };
    }
    let found = ranks.iter().flatten().filter(|r| **r <= k).count();
    let rr = ranks
        .iter()
        .flatten()
        .fold(0.0, |sum, r| sum + 1.0 / *r as f64);
    Quality {
        questions: n,
        recall_at_k: found as f64 / n as f64,
        mrr: rr / n as f64,
        k,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_and_mrr() {
        let q = quality(&[Some(1), Some(2), None, Some(6)], 5);
        assert_eq!(q.recall_at_k, 0.5);
        assert!((q.mrr - (1.0 + 0.5 + 1.0 / 6.0) / 4.0).abs() < 1e-12);
    }

    #[test]
    fn heading_match() {
        let q = Question {
            question: "?".into(),
            source: "docs/a.md".into(),
            heading: Some("Install".into()),
        };
        assert!(q.answered_by("docs/a.md", "Guide > Install"));
        assert!(!q.answered_by("docs/a.md", "Guide > Use"));
        assert!(!q.answered_by("docs/b.md", "Install"));
    }
}
