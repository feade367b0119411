//! PDFs: the text of a real PDF (made by groff's `gropdf`, with an embedded Type 1 font and
//! compressed streams: `tests/fixtures/warranty.pdf`, from `warranty.ms` by
//! `groff -ms -Tpdf warranty.ms > warranty.pdf`) and of a hand-written one is extracted,
//! chunked and found; damaged and hostile PDFs (truncated, garbage, nested without end, a
//! decompression bomb, a page tree that loops, thousands of corrupted copies) are each a
//! `KB_PDF` error naming the file, never a panic or a hang.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hilo_memory::pdf::{PdfLimits, pdf_text};
use hilo_memory::{Format, Knowledge, Mode, NewDocument};

use super::{req, store};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap()
}

/// A one-page PDF of the objects given after the catalog and the page tree (object 3 must be
/// the page), with a correct cross-reference table.
fn pdf_of(page: &str, more: &[Vec<u8>]) -> Vec<u8> {
    let mut objects: Vec<Vec<u8>> = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        page.as_bytes().to_vec(),
    ];
    objects.extend(more.iter().cloned());
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(o);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

const PAGE: &str = "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] \
                    /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>";
const FONT: &[u8] =
    b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>";

fn stream(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut s = format!("<< /Length {}{dict} >>\nstream\n", data.len()).into_bytes();
    s.extend_from_slice(data);
    s.extend_from_slice(b"\nendstream");
    s
}

/// A PDF showing `lines`, one text object each.
fn text_pdf(lines: &[&str]) -> Vec<u8> {
    let mut content = String::new();
    for (i, l) in lines.iter().enumerate() {
        content.push_str(&format!(
            "BT /F1 12 Tf 72 {} Td ({l}) Tj ET\n",
            720 - 20 * i
        ));
    }
    pdf_of(PAGE, &[FONT.to_vec(), stream("", content.as_bytes())])
}

#[tokio::test]
async fn a_real_pdf_is_read_chunked_and_found() {
    let text = pdf_text(
        &fixture("warranty.pdf"),
        "warranty.pdf",
        &PdfLimits::default(),
    )
    .unwrap();
    for phrase in [
        "Warranty terms",
        "Devices are covered by the warranty for two years",
        "eighty percent",
        "Claims are made through the support portal",
    ] {
        assert!(text.contains(phrase), "{phrase:?} in {text:?}");
    }
    // Kerned runs are glued back into words, lines and paragraphs kept.
    assert!(
        !text.contains("co vered") && !text.contains("w arranty"),
        "{text:?}"
    );
    assert!(
        text.contains("\n\n2. Batteries\nBatteries are covered"),
        "{text:?}"
    );
    // The second page starts a paragraph of its own.
    assert!(text.contains("\n\n3. Claims"), "{text:?}");

    let dir = tempfile::tempdir().unwrap();
    let kb = Knowledge::new(store(&dir).await, None);
    let added = kb
        .add(
            "t1",
            &NewDocument {
                collection: "manuals",
                source: "warranty.pdf",
                format: Format::Pdf,
                content: &text,
                metadata: Default::default(),
            },
        )
        .await
        .unwrap();
    assert_eq!(added.document.format, "pdf");
    assert_eq!(added.document.chunking, "pdf/1000/150");
    let found = kb
        .search(
            "t1",
            &req("manuals", "defective battery charge", Mode::Text),
        )
        .await
        .unwrap();
    assert_eq!(found.hits[0].chunk.source, "warranty.pdf");
    assert!(found.hits[0].chunk.text.contains("eighty percent"));
}

#[test]
fn a_hand_written_pdf_gives_its_lines() {
    let pdf = text_pdf(&[
        "Opening hours",
        r"Monday to Friday, 9 to 17 \(caf\351 closed\)",
    ]);
    let text = pdf_text(&pdf, "hours.pdf", &PdfLimits::default()).unwrap();
    assert_eq!(
        text,
        "Opening hours\nMonday to Friday, 9 to 17 (caf\u{e9} closed)"
    );
}

/// `pdf_text` on `bytes` is a `KB_PDF` error naming the file, within `limits.max_time`.
fn refused(bytes: &[u8], limits: &PdfLimits) -> String {
    let start = Instant::now();
    let e = pdf_text(bytes, "hostile.pdf", limits).unwrap_err();
    assert!(start.elapsed() < limits.max_time + Duration::from_secs(1));
    assert_eq!(e.code(), "KB_PDF", "{e}");
    let message = e.to_string();
    assert!(message.starts_with("KB_PDF: hostile.pdf: "), "{message}");
    message
}

#[test]
fn damaged_and_hostile_pdfs_are_errors() {
    let limits = PdfLimits {
        max_stream_bytes: 1 << 20,
        max_time: Duration::from_secs(20),
        ..Default::default()
    };
    let real = fixture("warranty.pdf");

    // Not a PDF; truncated; garbage after the header.
    assert!(refused(b"PK\x03\x04 a zip", &limits).contains("does not start like a PDF"));
    let m = refused(&real[..real.len() / 3], &limits);
    assert!(m.contains("pdftotext"), "{m}");
    refused(
        b"%PDF-1.7\n\x00\xff\xfe garbage that is no object at all",
        &limits,
    );

    // Arrays nested far beyond any parser's stack.
    let mut nested = b"%PDF-1.4\n1 0 obj\n".to_vec();
    nested.extend(std::iter::repeat_n(b'[', 200_000));
    nested.extend_from_slice(b"\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n");
    refused(&nested, &limits);

    // A decompression bomb: 8 MiB of spaces in a few KiB, over the 1 MiB stream limit.
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(b"BT /F1 12 Tf 72 720 Td (boom) Tj ET\n")
        .unwrap();
    z.write_all(&vec![b' '; 8 << 20]).unwrap();
    let bomb = z.finish().unwrap();
    assert!(bomb.len() < 64 << 10);
    let pdf = pdf_of(
        PAGE,
        &[FONT.to_vec(), stream(" /Filter /FlateDecode", &bomb)],
    );
    refused(&pdf, &limits);

    // A page tree whose page is its own parent's parent, and a content stream naming itself.
    let looping = pdf_of(
        "<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 /Parent 2 0 R >>",
        &[FONT.to_vec()],
    );
    let _ = pdf_text(&looping, "hostile.pdf", &limits).map_err(|e| assert_eq!(e.code(), "KB_PDF"));
    let self_content = pdf_of(
        "<< /Type /Page /Parent 2 0 R /Resources << /Font << /F1 4 0 R >> >> /Contents 3 0 R >>",
        &[FONT.to_vec()],
    );
    let _ =
        pdf_text(&self_content, "hostile.pdf", &limits).map_err(|e| assert_eq!(e.code(), "KB_PDF"));

    // Encrypted without a way to open it.
    let encrypted = {
        let mut p = text_pdf(&["secret"]);
        let at = p.windows(7).position(|w| w == b"/Root 1").unwrap();
        p.splice(
            at..at,
            b"/Encrypt << /Filter /Standard /V 9 /R 9 >> "
                .iter()
                .copied(),
        );
        p
    };
    let _ =
        pdf_text(&encrypted, "hostile.pdf", &limits).map_err(|e| assert_eq!(e.code(), "KB_PDF"));
}

#[test]
fn corrupted_copies_of_a_real_pdf_never_panic_or_hang() {
    let real = fixture("warranty.pdf");
    let limits = PdfLimits {
        max_time: Duration::from_secs(20),
        ..Default::default()
    };
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..300 {
        let mut copy = real.clone();
        // A few bytes overwritten, a range dropped or duplicated.
        match next() % 3 {
            0 => {
                for _ in 0..1 + next() % 8 {
                    let at = (next() as usize) % copy.len();
                    copy[at] = next() as u8;
                }
            }
            1 => {
                let at = (next() as usize) % copy.len();
                let len = ((next() as usize) % 512).min(copy.len() - at);
                copy.drain(at..at + len);
            }
            _ => {
                let at = (next() as usize) % copy.len();
                let len = ((next() as usize) % 512).min(copy.len() - at);
                let piece = copy[at..at + len].to_vec();
                copy.splice(at..at, piece);
            }
        }
        let start = Instant::now();
        match pdf_text(&copy, "hostile.pdf", &limits) {
            Ok(_) => ok += 1,
            Err(e) => {
                assert_eq!(e.code(), "KB_PDF", "{e}");
                refused += 1;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(21));
    }
    assert_eq!(ok + refused, 300);
}
