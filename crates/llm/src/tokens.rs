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

/// How a model's tokens are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The BPE of the current OpenAI models.
    O200k,
    Cl100k,
    /// One token per 4 bytes (any other model, older OpenAI encodings included).
    Bytes,
}

impl Encoding {
    pub fn of(model: &str) -> Encoding {
        use tiktoken_rs::tokenizer::{Tokenizer, get_tokenizer};
        match get_tokenizer(model) {
            Some(Tokenizer::O200kBase) => Encoding::O200k,
            Some(Tokenizer::Cl100kBase) => Encoding::Cl100k,
            _ => Encoding::Bytes,
        }
    }

    /// The estimate's method, reported in the router's decision.
    pub fn method(self) -> &'static str {
        match self {
            Encoding::Bytes => "bytes/4",
            _ => "tiktoken",
        }
    }

    fn bpe(self) -> Option<&'static tiktoken_rs::CoreBPE> {
        match self {
            Encoding::O200k => Some(tiktoken_rs::o200k_base_singleton()),
            Encoding::Cl100k => Some(tiktoken_rs::cl100k_base_singleton()),
            Encoding::Bytes => None,
        }
    }

    /// Tokens of one text.
    pub fn count(self, text: &str) -> u64 {
        match self.bpe() {
            Some(b) => b.encode_ordinary(text).len() as u64,
            None => (text.len() as u64).div_ceil(4),
        }
    }

    /// Input tokens of a conversation with its tool definitions.
    pub fn estimate(self, messages: &[Message], tools: &[ToolDefinition]) -> u64 {
        let framing = if self == Encoding::Bytes { 4 } else { 3 };
        let mut n = 3;
        for m in messages {
            n += framing + self.count(&m.content);
            for c in &m.tool_calls {
                n += self.count(&c.name) + self.count(&c.arguments.to_string());
            }
        }
        for t in tools {
            n += self.count(&t.name)
                + self.count(&t.description)
                + self.count(&t.parameters.to_string());
        }
        n
    }
}

/// The estimate's method for `model`.
pub fn method(model: &str) -> &'static str {
    Encoding::of(model).method()
}

/// Tokens of one text for `model`.
pub fn count(model: &str, text: &str) -> u64 {
    Encoding::of(model).count(text)
}

/// Input tokens of a conversation with its tool definitions, for `model`.
pub fn estimate(model: &str, messages: &[Message], tools: &[ToolDefinition]) -> u64 {
    Encoding::of(model).estimate(messages, tools)
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
