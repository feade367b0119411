//! Token estimates before a call, for the router's context-window and cost filters and the
//! budget check. Actual usage always comes from the provider's answer.
//!
//! - OpenAI-family models (`gpt-*`, `o1`/`o3`/`o4`, …): their real BPE (`tiktoken-rs`,
//!   vocabularies embedded in the binary, loaded once on first use), plus OpenAI's documented
//!   framing of 3 tokens per message and 3 for the reply.
//! - Any other model: the heuristic of one token per 4 bytes of UTF-8 (rounded up), plus 4
//!   per message. It over-counts English a little and under-counts scripts such as Chinese;
//!   it only has to be good enough to pick a model and respect a budget.

use crate::provider::{Message, ToolDefinition};

/// The estimate's method, reported in the router's decision.
pub fn method(model: &str) -> &'static str {
    if bpe(model).is_some() {
        "tiktoken"
    } else {
        "bytes/4"
    }
}

/// The BPE of the current OpenAI models (o200k, cl100k); older or other encodings fall back
/// to the heuristic.
fn bpe(model: &str) -> Option<&'static tiktoken_rs::CoreBPE> {
    use tiktoken_rs::tokenizer::{Tokenizer, get_tokenizer};
    match get_tokenizer(model) {
        Some(Tokenizer::O200kBase) => Some(tiktoken_rs::o200k_base_singleton()),
        Some(Tokenizer::Cl100kBase) => Some(tiktoken_rs::cl100k_base_singleton()),
        _ => None,
    }
}

/// Tokens of one text for `model`.
pub fn count(model: &str, text: &str) -> u64 {
    match bpe(model) {
        Some(b) => b.encode_ordinary(text).len() as u64,
        None => (text.len() as u64).div_ceil(4),
    }
}

/// Input tokens of a conversation with its tool definitions.
pub fn estimate(model: &str, messages: &[Message], tools: &[ToolDefinition]) -> u64 {
    let framing = if method(model) == "tiktoken" { 3 } else { 4 };
    let mut n = 3;
    for m in messages {
        n += framing + count(model, &m.content);
        for c in &m.tool_calls {
            n += count(model, &c.name) + count(model, &c.arguments.to_string());
        }
    }
    for t in tools {
        n += count(model, &t.name)
            + count(model, &t.description)
            + count(model, &t.parameters.to_string());
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_models_use_their_bpe_and_others_the_heuristic() {
        assert_eq!(method("gpt-4o-mini"), "tiktoken");
        assert_eq!(count("gpt-4o-mini", "hello world"), 2);
        assert_eq!(method("claude-haiku-4-5"), "bytes/4");
        assert_eq!(count("claude-haiku-4-5", "hello world"), 3);
        let msgs = [Message::user("hello world")];
        assert_eq!(estimate("gpt-4o-mini", &msgs, &[]), 3 + 3 + 2);
    }
}
