//! Cutting a document into chunks: Markdown by its headings (each chunk carries its heading
//! path, `Install > From source`), plain text and a PDF's text (see [`crate::pdf`]) by
//! paragraphs, HTML converted to text first
//! (html2text keeps headings as `#` lines, so it is then cut like Markdown; link texts stay,
//! in brackets, their URLs go).
//!
//! Sizes are in **characters** (Unicode scalar values), not model tokens: a chunk holds at
//! most `size` characters (a single word longer than that is the only exception) and starts
//! with up to `overlap` characters from the end of the chunk before it in the same section,
//! cut at a word boundary. Within a section, paragraphs are kept whole when they fit; a longer
//! one is cut between words. Fenced code blocks never start a heading.

use serde::{Deserialize, Serialize};

use crate::MemoryError;

/// How a document's text is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Markdown,
    Text,
    Html,
    /// The text extracted from a PDF ([`crate::pdf::pdf_text`]); chunked as plain text (each
    /// page is at least one paragraph).
    Pdf,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Markdown => "markdown",
            Format::Text => "text",
            Format::Html => "html",
            Format::Pdf => "pdf",
        }
    }

    /// `markdown` (or `md`), `text` (or `txt`), `html`, `pdf`.
    pub fn parse(name: &str) -> Result<Format, MemoryError> {
        match name.to_ascii_lowercase().as_str() {
            "markdown" | "md" => Ok(Format::Markdown),
            "text" | "txt" | "plain" => Ok(Format::Text),
            "html" | "htm" => Ok(Format::Html),
            "pdf" => Ok(Format::Pdf),
            other => Err(MemoryError::Invalid(format!(
                "unknown document format `{other}`: use markdown, text, html or pdf"
            ))),
        }
    }

    /// The format a file's extension names; `None` for an extension the knowledge base does
    /// not read.
    pub fn from_path(path: &str) -> Option<Format> {
        let ext = path
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "md" | "markdown" | "mdx" => Some(Format::Markdown),
            "txt" | "text" | "rst" | "adoc" => Some(Format::Text),
            "html" | "htm" | "xhtml" => Some(Format::Html),
            "pdf" => Some(Format::Pdf),
            _ => None,
        }
    }
}

/// Chunk size and overlap, in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkOptions {
    pub size: usize,
    pub overlap: usize,
}

impl Default for ChunkOptions {
    /// 1,000 characters (about 250 tokens of English, within all-MiniLM-L6-v2's 256), 150 of
    /// overlap.
    fn default() -> Self {
        ChunkOptions {
            size: 1000,
            overlap: 150,
        }
    }
}

impl ChunkOptions {
    /// Refuses sizes that cannot chunk: under 50 characters, or an overlap not under half
    /// the size.
    pub fn check(&self) -> Result<(), MemoryError> {
        if self.size < 50 || self.overlap * 2 > self.size {
            return Err(MemoryError::Invalid(format!(
                "chunk size {} with overlap {} cannot chunk: the size must be at least 50 characters and the overlap at most half of it",
                self.size, self.overlap
            )));
        }
        Ok(())
    }

    /// How documents chunked with these options are described (`markdown/1000/150`): a
    /// document chunked otherwise is chunked again when re-added.
    pub fn signature(&self, format: Format) -> String {
        format!("{}/{}/{}", format.as_str(), self.size, self.overlap)
    }
}

/// One piece of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The heading path, empty when none.
    pub heading: String,
    pub text: String,
}

/// Cuts `content` (in `format`) into chunks, in document order.
pub fn chunk(
    format: Format,
    content: &str,
    opts: &ChunkOptions,
) -> Result<Vec<Chunk>, MemoryError> {
    opts.check()?;
    let sections = match format {
        Format::Markdown => markdown_sections(content),
        Format::Text | Format::Pdf => vec![(String::new(), content.to_owned())],
        Format::Html => markdown_sections(&html_text(content)?),
    };
    let mut out = Vec::new();
    for (heading, body) in sections {
        for text in pack(&body, opts) {
            out.push(Chunk {
                heading: heading.clone(),
                text,
            });
        }
    }
    Ok(out)
}

/// HTML as text, headings as `#` lines, links without footnotes.
pub fn html_text(html: &str) -> Result<String, MemoryError> {
    html2text::config::plain()
        .link_footnotes(false)
        .no_link_wrapping()
        .string_from_read(html.as_bytes(), 100_000)
        .map_err(|e| MemoryError::Invalid(format!("the HTML could not be read: {e}")))
}

/// An ATX heading's level and text (`## Title ##` → 2, `Title`).
fn atx_heading(line: &str) -> Option<(usize, String)> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let rest = &line[indent..];
    let level = rest.len() - rest.trim_start_matches('#').len();
    if !(1..=6).contains(&level) {
        return None;
    }
    let after = &rest[level..];
    if !after.is_empty() && !after.starts_with([' ', '\t']) {
        return None;
    }
    let title = after.trim().trim_end_matches('#').trim().to_owned();
    Some((level, title))
}

fn fence(line: &str) -> Option<&'static str> {
    let t = line.trim_start();
    if t.starts_with("```") {
        Some("```")
    } else if t.starts_with("~~~") {
        Some("~~~")
    } else {
        None
    }
}

/// A Markdown document's sections: (heading path, body), in order; sections without text
/// are left out.
fn markdown_sections(content: &str) -> Vec<(String, String)> {
    let mut sections = Vec::new();
    let mut path: Vec<(usize, String)> = Vec::new();
    let mut body: Vec<&str> = Vec::new();
    let mut in_fence: Option<&str> = None;
    let heading_of = |path: &[(usize, String)]| -> String {
        path.iter()
            .map(|(_, t)| t.as_str())
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join(" > ")
    };
    let mut flush = |path: &[(usize, String)], body: &mut Vec<&str>| {
        let text = body.join("\n");
        if !text.trim().is_empty() {
            sections.push((heading_of(path), text));
        }
        body.clear();
    };
    for line in content.lines() {
        if let Some(open) = in_fence {
            if line.trim_start().starts_with(open) {
                in_fence = None;
            }
            body.push(line);
            continue;
        }
        if let Some(f) = fence(line) {
            in_fence = Some(f);
            body.push(line);
            continue;
        }
        // Setext: a `===` or `---` line under a paragraph's single line.
        let t = line.trim();
        let setext = if t.len() >= 3 && t.chars().all(|c| c == '=') {
            Some(1)
        } else if t.len() >= 3 && t.chars().all(|c| c == '-') {
            Some(2)
        } else {
            None
        };
        if let Some(level) = setext
            && let Some(last) = body.last()
            && !last.trim().is_empty()
            && body
                .len()
                .checked_sub(2)
                .is_none_or(|i| body[i].trim().is_empty())
            && atx_heading(last).is_none()
        {
            let title = last.trim().to_owned();
            body.pop();
            flush(&path, &mut body);
            path.retain(|(l, _)| *l < level);
            path.push((level, title));
            continue;
        }
        if let Some((level, title)) = atx_heading(line) {
            flush(&path, &mut body);
            path.retain(|(l, _)| *l < level);
            path.push((level, title));
            continue;
        }
        body.push(line);
    }
    flush(&path, &mut body);
    sections
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// A section's text in chunks of at most `size` characters, each (after the first) starting
/// with up to `overlap` characters of the one before.
fn pack(body: &str, opts: &ChunkOptions) -> Vec<String> {
    let mut units: Vec<String> = Vec::new();
    for para in body.split("\n\n") {
        let para = para.trim_matches('\n').trim_end();
        if para.trim().is_empty() {
            continue;
        }
        if chars(para) <= opts.size {
            units.push(para.to_owned());
        } else {
            // Pieces leave room for the overlap the next chunk starts with.
            units.extend(split_words(para, opts.size - opts.overlap - 1));
        }
    }
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    for unit in units {
        if current.is_empty() {
            current = unit;
            continue;
        }
        if chars(&current) + 2 + chars(&unit) <= opts.size {
            current.push_str("\n\n");
            current.push_str(&unit);
            continue;
        }
        let room = opts.size.saturating_sub(chars(&unit) + 1);
        let tail = tail(&current, opts.overlap.min(room));
        out.push(std::mem::take(&mut current));
        current = if tail.is_empty() {
            unit
        } else {
            format!("{tail} {unit}")
        };
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}

/// A paragraph longer than `size` in pieces of whole words.
fn split_words(para: &str, size: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut n = 0;
    for word in para.split_whitespace() {
        let w = chars(word);
        if n > 0 && n + 1 + w > size {
            out.push(std::mem::take(&mut current));
            n = 0;
        }
        if n > 0 {
            current.push(' ');
            n += 1;
        }
        current.push_str(word);
        n += w;
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// At most the last `n` characters of `s`, starting at a word.
fn tail(s: &str, n: usize) -> String {
    if n == 0 {
        return String::new();
    }
    let total = chars(s);
    if total <= n {
        return s.split_whitespace().collect::<Vec<_>>().join(" ");
    }
    let start = s
        .char_indices()
        .nth(total - n)
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    let cut = &s[start..];
    // Skip the partial word the cut landed in (unless it landed on a space).
    let from_word = if s[..start].ends_with(char::is_whitespace) {
        cut
    } else {
        cut.split_once(char::is_whitespace).map_or("", |(_, r)| r)
    };
    from_word.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_sections_follow_headings_not_code() {
        let md = "intro line\n\n# Guide\n\nfirst\n\n## Install\n\n```sh\n# not a heading\n```\n\nSetext\n------\n\nbody\n\n# Other\n\nlast";
        let s = markdown_sections(md);
        let heads: Vec<&str> = s.iter().map(|(h, _)| h.as_str()).collect();
        assert_eq!(
            heads,
            ["", "Guide", "Guide > Install", "Guide > Setext", "Other"]
        );
        assert!(s[2].1.contains("# not a heading"));
    }

    #[test]
    fn packing_respects_size_and_overlap() {
        let opts = ChunkOptions {
            size: 60,
            overlap: 20,
        };
        let para = (0..40)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let out = pack(&para, &opts);
        assert!(out.len() > 2);
        for c in &out {
            assert!(chars(c) <= 60, "{c}");
        }
        let words: Vec<&str> = out[0].split(' ').collect();
        assert!(
            out[1].starts_with(words[words.len() - 1]) || out[1].contains(words[words.len() - 1])
        );
    }

    #[test]
    fn formats_from_extensions() {
        assert_eq!(Format::from_path("guide.PDF"), Some(Format::Pdf));
        assert_eq!(Format::parse("pdf").unwrap(), Format::Pdf);
        assert_eq!(Format::from_path("a.md"), Some(Format::Markdown));
        assert_eq!(Format::from_path("a.png"), None);
    }

    #[test]
    fn html_keeps_headings() {
        let c = chunk(
            Format::Html,
            "<html><body><h1>Refunds</h1><p>Paid in <a href='x'>14 days</a>.</p><h2>Exceptions</h2><p>Sale items.</p></body></html>",
            &ChunkOptions::default(),
        )
        .unwrap();
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0].heading, "Refunds");
        // Link text in brackets (html2text's plain decorator), which no tokenizer indexes.
        assert!(c[0].text.contains("Paid in [14 days]"), "{c:?}");
        assert_eq!(c[1].heading, "Refunds > Exceptions");
    }
}
