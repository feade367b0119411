//! Where the CLI reads OpenAPI documents: entries of a workflow file (`tools: - openapi:`)
//! relative to the file, entries of `hilo.toml` (`[[tools.custom]]`) relative to it. A URL is
//! fetched only when asked (`--fetch`), before validation, so that validating never touches
//! the network by surprise.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use hilo_core::api::{ApiRead, ApiSupport};
use hilo_core::validate::Catalog;
use hilo_core::{Format, ToolDef};
use hilo_tools::openapi::MAX_DOCUMENT_BYTES;
use serde_json::Value;

use crate::exit::Exit;

/// Reads documents next to one file, or from what was fetched for it.
struct FileReader {
    dir: PathBuf,
    fetched: HashMap<String, String>,
}

fn is_url(source: &str) -> bool {
    let lower = source.trim().to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

impl ApiRead for FileReader {
    fn read(&self, source: &str) -> Result<String, String> {
        if is_url(source) {
            return self.fetched.get(source).cloned().ok_or_else(|| {
                format!(
                    "`{source}` is a URL, and hilo fetches documents only when asked: pass --fetch, or download it next to the workflow and name the file"
                )
            });
        }
        read_file(&self.dir.join(source))
    }
}

/// The directory the relative paths of `file` (a workflow or `hilo.toml`) start from.
pub fn dir_of(file: &Path) -> PathBuf {
    file.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn read_file(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read the OpenAPI document {shown}: {e}"))?;
    if meta.len() > MAX_DOCUMENT_BYTES as u64 {
        return Err(format!(
            "the OpenAPI document {shown} is {} bytes, more than the {MAX_DOCUMENT_BYTES} hilo reads",
            meta.len()
        ));
    }
    std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the OpenAPI document {shown} as UTF-8 text: {e}"))
}

/// The catalog to validate the workflow file `path` with: its OpenAPI entries read next to
/// it, URLs from `fetched` (see [`fetch_urls`]).
pub fn catalog_for(base: &Catalog, path: &Path, fetched: HashMap<String, String>) -> Catalog {
    let Some(support) = &base.api else {
        return base.clone();
    };
    let dir = dir_of(path);
    let mut catalog = base.clone();
    catalog.api = Some(ApiSupport {
        check: support.check.clone(),
        read: Some(Arc::new(FileReader { dir, fetched })),
    });
    catalog
}

/// Fetches the documents a definition's OpenAPI entries name by URL (`--fetch`).
pub async fn fetch_urls(text: &str, format: Format) -> Result<HashMap<String, String>, Exit> {
    let mut fetched = HashMap::new();
    for url in urls_in(text, format) {
        let parsed = reqwest::Url::parse(url.trim()).map_err(|e| {
            Exit::invalid(anyhow::anyhow!("`{url}` is not a URL hilo can fetch ({e})"))
        })?;
        let body = super::import::fetch(&parsed).await?;
        fetched.insert(url, body);
    }
    Ok(fetched)
}

/// The `openapi` URLs of a definition's `tools:` (none when it does not parse: validation
/// reports that).
fn urls_in(text: &str, format: Format) -> Vec<String> {
    let Ok(value) = hilo_core::source::parse_value(text, format) else {
        return Vec::new();
    };
    value
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("openapi").and_then(Value::as_str))
        .filter(|s| is_url(s))
        .map(str::to_string)
        .collect()
}

/// Reads the documents of `hilo.toml`'s OpenAPI entries (relative to `dir`, the file's
/// directory) and returns the names of the tools they give.
pub fn read_config_entries(tools: &mut [ToolDef], dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for t in tools.iter_mut() {
        let Some(api) = &mut t.api else { continue };
        if is_url(&api.openapi) {
            bail!(
                "[[tools.custom]] openapi = {:?}: hilo.toml names documents by file path; download it next to hilo.toml and name the file",
                api.openapi
            );
        }
        let text = read_file(&dir.join(&api.openapi)).map_err(anyhow::Error::msg)?;
        let api = Arc::make_mut(api);
        api.document = Some(text.into());
        let compiled = hilo_tools::openapi::compile(api)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("in [[tools.custom]] with prefix `{}`", api.prefix))?;
        names.extend(compiled.import.tools.iter().map(|o| o.name.clone()));
    }
    Ok(names)
}

/// The catalog's OpenAPI support without a reader (the server, agents' written workflows).
pub fn support() -> ApiSupport {
    ApiSupport {
        check: Arc::new(hilo_tools::openapi::OpenApiCheck),
        read: None,
    }
}

/// The definition `text` (the file `path`) with every OpenAPI entry's document in it (as
/// JSON), for a server that cannot read files next to the workflow; `text` itself when it
/// has no such entry.
pub fn inline_documents(
    path: &Path,
    text: String,
    format: Format,
    fetched: HashMap<String, String>,
) -> Result<(String, Format), Exit> {
    let Ok(mut value) = hilo_core::source::parse_value(&text, format) else {
        return Ok((text, format));
    };
    let reader = FileReader {
        dir: dir_of(path),
        fetched,
    };
    let mut changed = false;
    if let Some(Value::Array(tools)) = value.get_mut("tools") {
        for t in tools {
            let Some(m) = t.as_object_mut() else { continue };
            let Some(source) = m.get("openapi").and_then(Value::as_str) else {
                continue;
            };
            if m.contains_key("document") {
                continue;
            }
            let doc = reader
                .read(source)
                .map_err(|e| Exit::invalid(anyhow::anyhow!("{}: {e}", path.display())))?;
            m.insert("document".into(), Value::String(doc));
            changed = true;
        }
    }
    if !changed {
        return Ok((text, format));
    }
    let json = serde_json::to_string(&value).map_err(|e| Exit::invalid(anyhow::anyhow!(e)))?;
    let limit = hilo_core::source::MAX_DEFINITION_BYTES;
    if json.len() > limit {
        return Err(Exit::invalid(anyhow::anyhow!(
            "{}: with its OpenAPI documents inside, the definition is {} bytes, more than the {limit} a server takes; import it where the store is (`hilo workflows import` without --server), or name a smaller copy of the document (only the paths you call)",
            path.display(),
            json.len()
        )));
    }
    Ok((json, Format::Json))
}
