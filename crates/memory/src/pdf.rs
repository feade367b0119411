//! The text of a PDF, for the knowledge base (lopdf).
//!
//! A PDF is a program of objects and compressed streams from whoever sent it, and PDF
//! readers are a classic place for crashes, so extraction is fenced in:
//!
//! - **Size**: a file over [`PdfLimits::max_bytes`] is refused before it is parsed; each
//!   stream decompresses to at most [`PdfLimits::max_stream_bytes`] (lopdf's own bound, so a
//!   small file cannot inflate to gigabytes), and the text kept stops at
//!   [`PdfLimits::max_text_bytes`].
//! - **Panics**: the parser runs on a thread of its own under `catch_unwind`: a panic in it is
//!   this function's error (`KB_PDF`, "the PDF reader failed"), never the caller's crash.
//! - **Time**: the caller waits at most [`PdfLimits::max_time`]; past it the answer is an
//!   error and the thread is left to finish on its own (it cannot be stopped from outside;
//!   it holds only its copy of the file).
//!
//! Text comes page by page (pages are separated by a blank line, so each page is at least
//! one paragraph for the chunker). Within a page, lopdf parses the content stream and decodes
//! each run of text with its font's encoding (ToUnicode maps, `Differences`, the standard
//! encodings); the layout is ours: the text matrix is followed through the text operators
//! (`Td`, `TD`, `Tm`, `T*`, `'`, `"`) and each run's advance from its font's widths, so a run
//! that starts where the last ended is glued to it (typesetters kern with such moves), a gap
//! is a space, another line a line end and a skip of more than a line a blank line (a new
//! paragraph). Text in form XObjects is not read. A scanned PDF (images, no text layer) is an
//! error that says so, not an empty document.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::time::Duration;

use crate::MemoryError;

/// What extraction may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PdfLimits {
    /// Largest file read (default 64 MiB).
    pub max_bytes: usize,
    /// Largest size one stream may decompress to (default 64 MiB).
    pub max_stream_bytes: usize,
    /// Most text kept (default 16 MiB); the rest is dropped with a warning in the log.
    pub max_text_bytes: usize,
    /// Longest the caller waits (default 60 s).
    pub max_time: Duration,
}

impl Default for PdfLimits {
    fn default() -> Self {
        PdfLimits {
            max_bytes: 64 << 20,
            max_stream_bytes: 64 << 20,
            max_text_bytes: 16 << 20,
            max_time: Duration::from_secs(60),
        }
    }
}

/// Why a PDF gave no text. The message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PdfProblem {
    #[error(
        "it is {bytes} bytes, over the {max}-byte limit for a PDF: split it, or convert it to text first (`pdftotext FILE.pdf FILE.txt`) and add the text"
    )]
    TooLarge { bytes: usize, max: usize },
    #[error(
        "it does not start like a PDF (`%PDF-`): check the file, or give its real format with --format"
    )]
    NotPdf,
    #[error(
        "it cannot be read as a PDF ({0}): check that it opens in a PDF reader, or convert it to text first (`pdftotext FILE.pdf FILE.txt`)"
    )]
    Unreadable(String),
    #[error(
        "it is encrypted and does not open without a password: save an unprotected copy, or convert it to text first"
    )]
    Encrypted,
    #[error(
        "it has no text to extract (scanned pages are images): run OCR on it first (for example `ocrmypdf`), or add its text"
    )]
    NoText,
    #[error(
        "the PDF reader failed on it ({0}); the file is damaged or uses something the reader does not handle: convert it to text first (`pdftotext FILE.pdf FILE.txt`)"
    )]
    ReaderFailed(String),
    #[error(
        "reading it took longer than {0:?}: convert it to text first (`pdftotext FILE.pdf FILE.txt`), or split it"
    )]
    TimedOut(Duration),
}

/// The text of the PDF in `bytes` (named `source` in errors), within `limits`.
pub fn pdf_text(bytes: &[u8], source: &str, limits: &PdfLimits) -> Result<String, MemoryError> {
    let fail = |problem| MemoryError::Pdf {
        file: source.to_owned(),
        problem,
    };
    if bytes.len() > limits.max_bytes {
        return Err(fail(PdfProblem::TooLarge {
            bytes: bytes.len(),
            max: limits.max_bytes,
        }));
    }
    // A PDF may have a few bytes of junk before its header; readers look in the first KiB.
    let head = &bytes[..bytes.len().min(1024)];
    if !head.windows(5).any(|w| w == b"%PDF-") {
        return Err(fail(PdfProblem::NotPdf));
    }
    let owned = bytes.to_vec();
    let limits_copy = *limits;
    guarded(limits.max_time, move || extract(&owned, &limits_copy)).map_err(fail)
}

/// Runs `work` on a thread of its own, catching its panic, waiting at most `max_time`.
fn guarded(
    max_time: Duration,
    work: impl FnOnce() -> Result<String, PdfProblem> + Send + 'static,
) -> Result<String, PdfProblem> {
    let (tx, rx) = mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("hilo-pdf".into())
        // Deeply nested objects recurse in the parser (lopdf bounds the depth at 100).
        .stack_size(16 << 20)
        .spawn(move || {
            let out = std::panic::catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|p| {
                let what = p
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_owned());
                Err(PdfProblem::ReaderFailed(format!(
                    "panicked: {}",
                    clip(&what)
                )))
            });
            // The caller may have stopped waiting.
            let _ = tx.send(out);
        });
    if let Err(e) = spawned {
        return Err(PdfProblem::ReaderFailed(format!(
            "no thread to read it on: {e}"
        )));
    }
    match rx.recv_timeout(max_time) {
        Ok(out) => out,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            tracing::warn!(
                ?max_time,
                "PDF text extraction timed out; its thread is left to finish"
            );
            Err(PdfProblem::TimedOut(max_time))
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(PdfProblem::ReaderFailed(
            "the reader's thread ended without an answer".into(),
        )),
    }
}

fn extract(bytes: &[u8], limits: &PdfLimits) -> Result<String, PdfProblem> {
    let options = lopdf::LoadOptions {
        max_decompressed_size: Some(limits.max_stream_bytes),
        ..Default::default()
    };
    let doc = lopdf::Document::load_mem_with_options(bytes, options).map_err(|e| match e {
        lopdf::Error::Decryption(_) => PdfProblem::Encrypted,
        e => PdfProblem::Unreadable(clip(&e.to_string())),
    })?;
    if doc.is_encrypted() {
        return Err(PdfProblem::Encrypted);
    }
    let mut text = String::new();
    let mut problems = Problems::default();
    for page in doc.get_pages().values() {
        let page_text = match page_text(&doc, *page, limits.max_stream_bytes, &mut problems) {
            Ok(t) => tidy(&t),
            Err(e) => {
                problems.note(&e);
                continue;
            }
        };
        if page_text.is_empty() {
            continue;
        }
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        if text.len() + page_text.len() > limits.max_text_bytes {
            tracing::warn!(
                max = limits.max_text_bytes,
                "PDF text over the limit: the rest of the document is left out"
            );
            break;
        }
        text.push_str(&page_text);
    }
    if problems.count > 0 {
        tracing::warn!(
            problems = problems.count,
            first = problems.first.as_deref().unwrap_or(""),
            "parts of a PDF's text could not be decoded and are left out"
        );
    }
    if text.trim().is_empty() {
        return Err(match problems.first {
            Some(e) => PdfProblem::Unreadable(e),
            None => PdfProblem::NoText,
        });
    }
    Ok(text)
}

/// What could not be read, counted, the first kept.
#[derive(Default)]
struct Problems {
    count: usize,
    first: Option<String>,
}

impl Problems {
    fn note(&mut self, e: &lopdf::Error) {
        self.count += 1;
        self.first.get_or_insert_with(|| clip(&e.to_string()));
    }
}

/// A font of a page: how its codes become text, and how wide its glyphs are.
struct Font<'a> {
    encoding: lopdf::Encoding<'a>,
    /// A simple font's glyph widths (thousandths of the size) from its first code.
    widths: Option<(i64, Vec<f32>)>,
}

impl Font<'_> {
    /// The advance of `bytes` in text space at size 1, before spacing: the glyph widths of a
    /// simple font, half an em per character otherwise.
    fn advance(&self, bytes: &[u8], chars: usize) -> f32 {
        match &self.widths {
            Some((first, widths)) => bytes
                .iter()
                .map(|b| {
                    usize::try_from(i64::from(*b) - first)
                        .ok()
                        .and_then(|i| widths.get(i))
                        .map_or(0.5, |w| w / 1000.0)
                })
                .sum(),
            None => chars as f32 * 0.5,
        }
    }
}

fn widths(doc: &lopdf::Document, font: &lopdf::Dictionary) -> Option<(i64, Vec<f32>)> {
    if font.get(b"Subtype").and_then(|s| s.as_name()).ok() == Some(b"Type0".as_slice()) {
        return None;
    }
    let first = font.get_deref(b"FirstChar", doc).ok()?.as_i64().ok()?;
    let widths = font.get_deref(b"Widths", doc).ok()?.as_array().ok()?;
    Some((
        first,
        widths
            .iter()
            .map(|w| w.as_float().unwrap_or(500.0))
            .collect(),
    ))
}

/// The text of one page, laid out from where its text operators put it: a space where a run
/// starts apart from where the last one ended (or a `TJ` gap is wider than a space), a line
/// end where it moves to another line, a blank line where it skips more than a line.
fn page_text(
    doc: &lopdf::Document,
    page: lopdf::ObjectId,
    max: usize,
    problems: &mut Problems,
) -> Result<String, lopdf::Error> {
    let mut fonts: std::collections::BTreeMap<Vec<u8>, Font> = Default::default();
    for (name, font) in doc.get_page_fonts(page)? {
        match font.get_font_encoding_with_limit(doc, max) {
            Ok(encoding) => {
                let widths = widths(doc, font);
                fonts.insert(name, Font { encoding, widths });
            }
            Err(e) => problems.note(&e),
        }
    }
    let content = lopdf::content::Content::decode(&doc.get_page_content_with_limit(page, max)?)?;
    let mut l = Layout::new();
    for op in &content.operations {
        let num = |i: usize| op.operands.get(i).and_then(|o| o.as_float().ok());
        match op.operator.as_str() {
            "BT" => {
                l.tm = IDENTITY;
                l.tlm = IDENTITY;
            }
            "Tf" => {
                l.font = op
                    .operands
                    .first()
                    .and_then(|o| o.as_name().ok())
                    .and_then(|n| fonts.get(n));
                l.size = num(1).unwrap_or(l.size);
            }
            "Tc" => l.tc = num(0).unwrap_or(0.0),
            "Tw" => l.tw = num(0).unwrap_or(0.0),
            "Tz" => l.th = num(0).unwrap_or(100.0) / 100.0,
            "TL" => l.leading = num(0).unwrap_or(0.0),
            "Td" => l.move_line(num(0).unwrap_or(0.0), num(1).unwrap_or(0.0)),
            "TD" => {
                let ty = num(1).unwrap_or(0.0);
                l.leading = -ty;
                l.move_line(num(0).unwrap_or(0.0), ty);
            }
            "Tm" => {
                let m: Vec<f32> = (0..6).map_while(num).collect();
                if let [a, b, c, d, e, f] = m[..] {
                    l.tm = [a, b, c, d, e, f];
                    l.tlm = l.tm;
                }
            }
            "T*" => l.move_line(0.0, -l.leading),
            "Tj" => l.show_operand(op.operands.first(), problems),
            "'" => {
                l.move_line(0.0, -l.leading);
                l.show_operand(op.operands.first(), problems);
            }
            "\"" => {
                l.tw = num(0).unwrap_or(l.tw);
                l.tc = num(1).unwrap_or(l.tc);
                l.move_line(0.0, -l.leading);
                l.show_operand(op.operands.get(2), problems);
            }
            "TJ" => {
                let parts = op.operands.first().and_then(|o| o.as_array().ok());
                for part in parts.into_iter().flatten() {
                    match part.as_float() {
                        Ok(n) => l.adjust(n),
                        Err(_) => l.show_operand(Some(part), problems),
                    }
                }
            }
            _ => {}
        }
    }
    Ok(l.out)
}

const IDENTITY: [f32; 6] = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0];

/// The text state of a content stream, as far as laying out its text needs.
struct Layout<'f, 'a> {
    out: String,
    /// The text matrix and the text line matrix.
    tm: [f32; 6],
    tlm: [f32; 6],
    font: Option<&'f Font<'a>>,
    size: f32,
    tc: f32,
    tw: f32,
    th: f32,
    leading: f32,
    /// Where the last run ended (user space), and its em there.
    end: Option<(f32, f32, f32)>,
}

impl<'f, 'a> Layout<'f, 'a> {
    fn new() -> Self {
        Layout {
            out: String::new(),
            tm: IDENTITY,
            tlm: IDENTITY,
            font: None,
            size: 0.0,
            tc: 0.0,
            tw: 0.0,
            th: 1.0,
            leading: 0.0,
            end: None,
        }
    }

    fn move_line(&mut self, tx: f32, ty: f32) {
        let m = self.tlm;
        self.tlm[4] = tx * m[0] + ty * m[2] + m[4];
        self.tlm[5] = tx * m[1] + ty * m[3] + m[5];
        self.tm = self.tlm;
    }

    /// The em in user space.
    fn em(&self) -> f32 {
        let scale = self.tm[2].hypot(self.tm[3]);
        let em = (self.size * scale).abs();
        if em.is_finite() && em > 0.0 { em } else { 1.0 }
    }

    /// Moves along the line by `tx` (text space).
    fn advance(&mut self, tx: f32) {
        self.tm[4] += tx * self.tm[0];
        self.tm[5] += tx * self.tm[1];
    }

    fn push_break(&mut self, s: &str) {
        if self.out.is_empty() || self.out.ends_with('\n') {
            return;
        }
        if s == " " && self.out.ends_with(' ') {
            return;
        }
        if s != " " {
            while self.out.ends_with(' ') {
                self.out.pop();
            }
        }
        self.out.push_str(s);
    }

    /// A `TJ` number: a move back by `n` thousandths of an em; a gap wider than a narrow
    /// space is one.
    fn adjust(&mut self, n: f32) {
        if !n.is_finite() {
            return;
        }
        if -n > 150.0 {
            self.push_break(" ");
        }
        self.advance(-n / 1000.0 * self.size * self.th);
        self.end = Some((self.tm[4], self.tm[5], self.em()));
    }

    fn show_operand(&mut self, o: Option<&lopdf::Object>, problems: &mut Problems) {
        let Some(bytes) = o.and_then(|o| o.as_str().ok()) else {
            return;
        };
        let Some(font) = self.font else {
            return;
        };
        let text = match font.encoding.bytes_to_string(bytes) {
            Ok(t) => t,
            Err(e) => {
                problems.note(&e);
                return;
            }
        };
        let (x, y, em) = (self.tm[4], self.tm[5], self.em());
        if let Some((ex, ey, last_em)) = self.end {
            let em = em.max(last_em);
            let dy = (y - ey).abs();
            if dy > 1.8 * em {
                self.push_break("\n\n");
            } else if dy > 0.5 * em {
                self.push_break("\n");
            } else if x - ex > 0.15 * em || ex - x > em {
                self.push_break(" ");
            }
        }
        self.out.push_str(&text);
        let chars = text.chars().count();
        let spaces = bytes.iter().filter(|b| **b == b' ').count() as f32;
        let width = font.advance(bytes, chars) * self.size
            + self.tc * bytes.len() as f32
            + self.tw * spaces;
        self.advance(width * self.th);
        self.end = Some((self.tm[4], self.tm[5], self.em()));
    }
}

/// A page's text with its lines trimmed, runs of spaces folded, control characters (other than
/// line ends) made spaces, and blank lines kept single (they separate paragraphs).
fn tidy(page: &str) -> String {
    let mut out = String::with_capacity(page.len());
    let mut blank = false;
    for line in page.lines() {
        let line: String = line
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            blank = true;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank { "\n\n" } else { "\n" });
        }
        blank = false;
        out.push_str(&words.join(" "));
    }
    out
}

/// An error text from the reader, kept short.
fn clip(s: &str) -> String {
    const MAX: usize = 200;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_or_a_hang_is_an_error() {
        let e = guarded(Duration::from_secs(5), || panic!("boom")).unwrap_err();
        assert_eq!(e, PdfProblem::ReaderFailed("panicked: boom".into()));
        let e = guarded(Duration::from_millis(50), || {
            std::thread::sleep(Duration::from_secs(2));
            Ok(String::new())
        })
        .unwrap_err();
        assert_eq!(e, PdfProblem::TimedOut(Duration::from_millis(50)));
        assert_eq!(
            guarded(Duration::from_secs(5), || Ok("fine".into())).unwrap(),
            "fine"
        );
    }

    #[test]
    fn size_and_header_are_checked_first() {
        let limits = PdfLimits {
            max_bytes: 10,
            ..Default::default()
        };
        let e = pdf_text(b"%PDF-1.4 and more bytes", "big.pdf", &limits).unwrap_err();
        assert_eq!(e.code(), "KB_PDF");
        assert!(e.to_string().contains("big.pdf"), "{e}");
        assert!(e.to_string().contains("limit"), "{e}");
        let e = pdf_text(b"hello", "a.pdf", &PdfLimits::default()).unwrap_err();
        assert!(e.to_string().contains("%PDF-"), "{e}");
    }

    #[test]
    fn tidy_folds_spaces_and_keeps_one_blank_line() {
        assert_eq!(tidy("  a   b \n\n\n\u{7}c\r\nd\n\n"), "a b\n\nc\nd");
    }
}
