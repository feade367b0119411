//! `hilo kb`: the knowledge base — adding documents (a file, a folder, stdin) to a tenant's
//! collections, listing, showing and removing them, and searching a collection (hybrid, full
//! text or vector) with provenance on every hit.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::anyhow;
use hilo_core::knowledge::{KbDocument, PutOutcome};
use hilo_memory::pdf::{PdfLimits, pdf_text};
use hilo_memory::{ChunkOptions, Format, Knowledge, MemoryError, Mode, NewDocument, SearchRequest};
use serde_json::json;

use crate::app::App;
use crate::cli::KbCommand;
use crate::exit::{Exit, store_err};
use crate::memory::clip;
use crate::out::{print_json, print_table, rfc3339, thousands};

/// The knowledge base of the tenant (`--tenant`) over `store`, with the embedder of
/// `[memory.embeddings]` when one is configured, each of its calls counted in the cost
/// ledger; without one, documents are stored without vectors and search is full text only
/// (and says so).
async fn knowledge(app: &App, store: Arc<dyn hilo_core::Store>) -> Result<Knowledge, Exit> {
    Ok(match app.ledgered_embedder().await? {
        Some(l) => Knowledge::ledgered(store, l),
        None => Knowledge::new(store, None),
    })
}

/// A knowledge-base error as an exit: a request that cannot be carried out as given is
/// invalid input (2), anything else a failure (1).
fn kb_err(e: MemoryError) -> Exit {
    match e {
        MemoryError::Invalid(_) | MemoryError::UnsupportedFormat(_) | MemoryError::NoEmbedder => {
            Exit::invalid(anyhow!(e))
        }
        e => Exit::from(anyhow!(e)),
    }
}

/// `hilo kb …`.
pub async fn kb(app: &App, cmd: KbCommand) -> Result<(), Exit> {
    let tenant = app.global().tenant.clone();
    let store = app.store().await?;
    match cmd {
        KbCommand::Add {
            collection,
            path,
            meta,
            format,
            name,
            chunk_size,
            chunk_overlap,
            json,
        } => {
            let kb = knowledge(app, store)
                .await?
                .with_chunking(ChunkOptions {
                    size: chunk_size,
                    overlap: chunk_overlap,
                })
                .map_err(kb_err)?;
            let format = format
                .as_deref()
                .map(Format::parse)
                .transpose()
                .map_err(kb_err)?;
            let metadata: BTreeMap<String, String> = meta.into_iter().collect();
            add(
                &kb,
                &tenant,
                &collection,
                &path,
                format,
                &name,
                &metadata,
                json,
            )
            .await
        }
        KbCommand::List { collection, json } => match collection {
            None => {
                let colls = store
                    .list_kb_collections(&tenant)
                    .await
                    .map_err(store_err)?;
                if json {
                    return print_json(&json!({"collections": colls}));
                }
                if colls.is_empty() {
                    outln!("no collections yet: `hilo kb add COLLECTION FILE|DIR|-` makes one");
                    return Ok(());
                }
                let rows: Vec<Vec<String>> = colls
                    .iter()
                    .map(|c| {
                        vec![
                            c.name.clone(),
                            thousands(c.documents),
                            thousands(c.chunks),
                            rfc3339(c.updated_at),
                            c.retention_ms.map_or("-".into(), |ms| {
                                hilo_core::duration::format_ms(u64::try_from(ms).unwrap_or(0))
                            }),
                        ]
                    })
                    .collect();
                print_table(
                    &["COLLECTION", "DOCUMENTS", "CHUNKS", "UPDATED", "RETENTION"],
                    &rows,
                );
                Ok(())
            }
            Some(c) => {
                let docs = store
                    .list_kb_documents(&tenant, Some(&c))
                    .await
                    .map_err(store_err)?;
                if json {
                    return print_json(&json!({"collection": c, "documents": docs}));
                }
                if docs.is_empty() {
                    outln!("no documents in collection `{c}` (tenant `{tenant}`)");
                    return Ok(());
                }
                let rows: Vec<Vec<String>> = docs
                    .iter()
                    .map(|d| {
                        vec![
                            d.id.clone(),
                            d.source.clone(),
                            d.format.clone(),
                            thousands(d.chunks),
                            d.embedding_model.clone().unwrap_or_else(|| "-".into()),
                            meta_text(&d.metadata),
                        ]
                    })
                    .collect();
                print_table(
                    &["ID", "SOURCE", "FORMAT", "CHUNKS", "EMBEDDED BY", "META"],
                    &rows,
                );
                Ok(())
            }
        },
        KbCommand::Show { doc, json } => {
            let Some(d) = store
                .get_kb_document(&tenant, &doc)
                .await
                .map_err(store_err)?
            else {
                return Err(Exit::from(anyhow!(
                    "no document `{doc}` in tenant `{tenant}`; `hilo kb list COLLECTION` lists the documents and their ids"
                )));
            };
            let chunks = store
                .kb_document_chunks(&tenant, &doc)
                .await
                .map_err(store_err)?;
            if json {
                let mut v = serde_json::to_value(&d).unwrap_or_default();
                v["chunk_list"] = json!(chunks
                    .iter()
                    .map(|c| json!({"id": c.id, "position": c.position, "heading": c.heading, "text": c.text}))
                    .collect::<Vec<_>>());
                return print_json(&v);
            }
            print_document(&d);
            for c in &chunks {
                let heading = if c.heading.is_empty() {
                    "-"
                } else {
                    &c.heading
                };
                outln!("\n[{}] {heading}", c.position);
                outln!("{}", clip(&c.text, 300));
            }
            Ok(())
        }
        KbCommand::Remove {
            doc,
            collection,
            json,
        } => {
            let kb = Knowledge::new(store, None);
            if let Some(c) = collection {
                let n = kb.remove_collection(&tenant, &c).await.map_err(kb_err)?;
                let Some(n) = n else {
                    return Err(Exit::from(anyhow!(
                        "no collection `{c}` in tenant `{tenant}`; `hilo kb list` lists them"
                    )));
                };
                if json {
                    return print_json(&json!({"collection": c, "removed_documents": n}));
                }
                outln!("removed collection `{c}` ({n} documents)");
                return Ok(());
            }
            let doc = doc.unwrap_or_default();
            if !kb.remove_document(&tenant, &doc).await.map_err(kb_err)? {
                return Err(Exit::from(anyhow!(
                    "no document `{doc}` in tenant `{tenant}`; `hilo kb list COLLECTION` lists the documents and their ids"
                )));
            }
            if json {
                return print_json(&json!({"document": doc, "removed": true}));
            }
            outln!("removed document {doc}");
            Ok(())
        }
        KbCommand::Retention {
            collection,
            age,
            json,
        } => {
            let retention = match age.trim() {
                "off" | "none" => None,
                t => {
                    let ms = hilo_core::duration::parse_ms(t)
                        .map_err(|e| Exit::invalid(anyhow!("`{t}`: {e}; or `off`")))?;
                    if ms == 0 {
                        return Err(Exit::invalid(anyhow!(
                            "a retention of 0 would delete every document at once; give an age such as 90d, or `off`"
                        )));
                    }
                    Some(i64::try_from(ms).unwrap_or(i64::MAX))
                }
            };
            if !store
                .set_kb_retention(&tenant, &collection, retention)
                .await
                .map_err(store_err)?
            {
                return Err(Exit::from(anyhow!(
                    "no collection `{collection}` in tenant `{tenant}`; `hilo kb list` lists them"
                )));
            }
            if json {
                return print_json(&json!({"collection": collection, "retention_ms": retention}));
            }
            match retention {
                Some(ms) => outln!(
                    "collection `{collection}`: documents not added again within {} are deleted (hilo kb expire, hilo serve hourly)",
                    hilo_core::duration::format_ms(u64::try_from(ms).unwrap_or(0))
                ),
                None => outln!("collection `{collection}`: documents are kept until removed"),
            }
            Ok(())
        }
        KbCommand::Expire { json } => {
            let actor = crate::memory::cli_actor();
            let expired = store
                .expire_kb_documents(Some(&tenant), hilo_core::store::now_ms(), &actor)
                .await
                .map_err(store_err)?;
            if json {
                return print_json(&json!({"expired": expired}));
            }
            if expired.is_empty() {
                outln!("nothing past its collection's retention");
            }
            for e in &expired {
                outln!(
                    "collection `{}`: {} document(s), {} chunk(s) deleted (recorded: hilo memory erasures)",
                    e.collection,
                    thousands(e.documents),
                    thousands(e.chunks)
                );
            }
            Ok(())
        }
        KbCommand::Search {
            collection,
            query,
            top_k,
            min_score,
            filter,
            mode,
            json,
        } => {
            let kb = knowledge(app, store).await?;
            let req = SearchRequest {
                collection,
                query,
                top_k: top_k as usize,
                min_score,
                filter: filter.into_iter().collect(),
                mode: Mode::parse(&mode).map_err(kb_err)?,
            };
            let found = kb.search(&tenant, &req).await.map_err(kb_err)?;
            if json {
                return print_json(&found);
            }
            if let Some(note) = &found.note {
                noteln!("note: {note}");
            }
            if found.hits.is_empty() {
                outln!("no matches in collection `{}`", req.collection);
                return Ok(());
            }
            for (i, h) in found.hits.iter().enumerate() {
                let heading = if h.chunk.heading.is_empty() {
                    String::new()
                } else {
                    format!(" › {}", h.chunk.heading)
                };
                outln!(
                    "{}. {:.3}  {}{heading}  (chunk {}, {})",
                    i + 1,
                    h.score,
                    h.chunk.source,
                    h.chunk.position,
                    h.chunk.document_id
                );
                outln!("   {}", clip(&h.chunk.text, 240));
            }
            Ok(())
        }
    }
}

/// What one file gave.
struct FileResult {
    source: String,
    outcome: Result<(PutOutcome, KbDocument), String>,
}

#[allow(clippy::too_many_arguments)]
async fn add(
    kb: &Knowledge,
    tenant: &str,
    collection: &str,
    path: &str,
    format: Option<Format>,
    name: &str,
    metadata: &BTreeMap<String, String>,
    json: bool,
) -> Result<(), Exit> {
    let mut results: Vec<FileResult> = Vec::new();
    if path == "-" {
        let format = format.unwrap_or(Format::Markdown);
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| Exit::invalid(anyhow!("cannot read stdin: {e}")))?;
        let content = document_text(bytes, format, name).await.map_err(|e| {
            Exit::invalid(anyhow!(
                "{}",
                e.replace(
                    "the knowledge base reads",
                    "from stdin, the knowledge base reads"
                )
            ))
        })?;
        let doc = NewDocument {
            collection,
            source: name,
            format,
            content: &content,
            metadata: metadata.clone(),
        };
        let added = kb.add(tenant, &doc).await.map_err(kb_err)?;
        results.push(FileResult {
            source: name.to_owned(),
            outcome: Ok((added.outcome, added.document)),
        });
    } else {
        let p = Path::new(path);
        let meta =
            std::fs::metadata(p).map_err(|e| Exit::invalid(anyhow!("cannot read {path}: {e}")))?;
        let files: Vec<(PathBuf, Format)> = if meta.is_dir() {
            let mut all = Vec::new();
            walk(p, &mut all).map_err(|e| Exit::invalid(anyhow!("cannot list {path}: {e}")))?;
            all.sort();
            let mut files = Vec::new();
            for f in all {
                let shown = f.display().to_string();
                if let Some(fmt) = format.or_else(|| Format::from_path(&shown)) {
                    files.push((f, fmt));
                }
            }
            if files.is_empty() {
                return Err(Exit::invalid(anyhow!(
                    "no Markdown, text, HTML or PDF file under {path} (.md, .markdown, .txt, .html, .htm, .pdf)"
                )));
            }
            files
        } else {
            let fmt = format
                .or_else(|| Format::from_path(path))
                .unwrap_or(Format::Text);
            vec![(p.to_path_buf(), fmt)]
        };
        let bar = progress(files.len());
        for (f, fmt) in files {
            let source = f.display().to_string();
            let outcome = match std::fs::read(&f) {
                Err(e) => Err(format!("cannot read {source}: {e}")),
                Ok(bytes) => match document_text(bytes, fmt, &source).await {
                    Err(e) => Err(e),
                    Ok(content) => {
                        let doc = NewDocument {
                            collection,
                            source: &source,
                            format: fmt,
                            content: &content,
                            metadata: metadata.clone(),
                        };
                        match kb.add(tenant, &doc).await {
                            Ok(a) => Ok((a.outcome, a.document)),
                            Err(e @ MemoryError::Store(_)) | Err(e @ MemoryError::Embed(_)) => {
                                if let Some(b) = &bar {
                                    b.finish_and_clear();
                                }
                                return Err(kb_err(e));
                            }
                            Err(e) => Err(e.to_string()),
                        }
                    }
                },
            };
            match (&bar, &outcome) {
                (Some(b), _) => {
                    b.set_message(source.clone());
                    b.inc(1);
                }
                (None, Ok((o, d))) if !json => {
                    noteln!("{} {source} ({} chunks)", outcome_word(*o), d.chunks);
                }
                (None, Err(e)) if !json => noteln!("skipped: {e}"),
                _ => {}
            }
            results.push(FileResult { source, outcome });
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
    }
    let count = |o: PutOutcome| {
        results
            .iter()
            .filter(|r| matches!(&r.outcome, Ok((x, _)) if *x == o))
            .count()
    };
    let failed: Vec<&FileResult> = results.iter().filter(|r| r.outcome.is_err()).collect();
    if json {
        let items: Vec<_> = results
            .iter()
            .map(|r| match &r.outcome {
                Ok((o, d)) => json!({"source": r.source, "outcome": o, "document": d}),
                Err(e) => json!({"source": r.source, "error": e}),
            })
            .collect();
        print_json(&json!({
            "collection": collection,
            "embedded_by": kb.embedder().map(|i| i.model.clone()),
            "documents": items,
        }))?;
    } else {
        let chunks: u64 = results
            .iter()
            .filter_map(|r| r.outcome.as_ref().ok())
            .map(|(_, d)| d.chunks)
            .sum();
        outln!(
            "collection `{collection}`: {} added, {} replaced, {} unchanged, {} skipped ({} chunks){}",
            count(PutOutcome::Added),
            count(PutOutcome::Replaced),
            count(PutOutcome::Unchanged),
            failed.len(),
            thousands(chunks),
            match kb.embedder() {
                Some(i) => format!(", embedded by {}", i.model),
                None =>
                    ", not embedded (no embedding model configured: search is full text)".into(),
            }
        );
        if results.len() == 1
            && let Ok((_, d)) = &results[0].outcome
        {
            outln!("document {}", d.id);
        }
    }
    if !failed.is_empty() {
        for f in &failed {
            if let Err(e) = &f.outcome {
                errln!("error: {e}");
            }
        }
        return Err(Exit::invalid_reported());
    }
    Ok(())
}

/// The text of a document read as `format` (named `source` in errors): a PDF's extracted
/// text (on a blocking thread; see `hilo_memory::pdf`), anything else as UTF-8.
async fn document_text(bytes: Vec<u8>, format: Format, source: &str) -> Result<String, String> {
    if format == Format::Pdf {
        let name = source.to_owned();
        return tokio::task::spawn_blocking(move || {
            pdf_text(&bytes, &name, &PdfLimits::default()).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| format!("{source}: reading the PDF stopped: {e}"))?;
    }
    String::from_utf8(bytes).map_err(|_| {
        format!(
            "{source} is not UTF-8 text: convert it first (the knowledge base reads Markdown, text, HTML and PDF; give a PDF's format with --format pdf)"
        )
    })
}

fn outcome_word(o: PutOutcome) -> &'static str {
    match o {
        PutOutcome::Added => "added",
        PutOutcome::Replaced => "replaced",
        PutOutcome::Unchanged => "unchanged",
    }
}

/// Every file under `dir`, hidden folders and files left out.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// A bar over the files in a terminal, for more than one file.
fn progress(files: usize) -> Option<indicatif::ProgressBar> {
    if files < 2 || !std::io::stderr().is_terminal() || crate::out::quiet() {
        return None;
    }
    let pb = indicatif::ProgressBar::with_draw_target(
        Some(files as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} files {msg}")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    Some(pb)
}

fn print_document(d: &KbDocument) {
    outln!("document    {}", d.id);
    outln!("collection  {}", d.collection);
    outln!("source      {}", d.source);
    outln!("format      {}", d.format);
    outln!("chunks      {} ({})", d.chunks, d.chunking);
    outln!("bytes       {}", thousands(d.bytes));
    outln!("sha256      {}", d.content_hash);
    outln!(
        "embedded    {}",
        d.embedding_model
            .as_deref()
            .unwrap_or("no (full text only)")
    );
    if !d.metadata.is_empty() {
        outln!("meta        {}", meta_text(&d.metadata));
    }
    outln!("added       {}", rfc3339(d.created_at));
    outln!("updated     {}", rfc3339(d.updated_at));
}

fn meta_text(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}
