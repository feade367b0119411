//! `hilo tools import FILE|URL --prefix P`: what an OpenAPI 3.0/3.1 document's operations
//! become as tools (`hilo_tools::openapi`), printed for a person or as one JSON object.
//!
//! It changes nothing and needs no database: it reads the file, or fetches the URL given as
//! the argument (the only thing it ever fetches: remote `$ref`s are refused by the module),
//! and prints. Exit codes: 0 when the document was read, however many operations were
//! skipped; 2 for an unreadable file, a document the module refuses, a bad `--prefix` or
//! `--base-url`; 1 when a URL cannot be fetched.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::anyhow;
use hilo_core::ToolClass;
use hilo_tools::openapi::{self, Document, Import, MAX_DOCUMENT_BYTES, Operation, Scheme, Select};
use serde_json::{Value, json};

use crate::cli::ImportArgs;
use crate::exit::Exit;
use crate::out::{colour_stderr, print_json, print_table_capped, thousands};

/// How long fetching a document may take, from the first byte sent to the last received.
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The input fields column stops growing past this many characters (`… +N` says how many
/// fields are left out; `--json` has them all).
const MAX_FIELDS_WIDTH: usize = 48;
/// The widest the name and path columns are padded to: a longer name or path is printed
/// whole and pushes its line's other cells right (GitHub's description: nine names in ten
/// fit in 56 characters, nine paths in ten in 64).
const NAME_WIDTH: usize = 56;
const PATH_WIDTH: usize = 64;

/// Where the document came from.
enum Origin {
    File(String),
    Url(reqwest::Url),
}

impl Origin {
    /// As messages and the output show it: a URL without user, password or query (they may
    /// carry credentials).
    fn shown(&self) -> String {
        match self {
            Origin::File(p) => p.clone(),
            Origin::Url(u) => shown_url(u),
        }
    }
}

fn shown_url(u: &reqwest::Url) -> String {
    let mut u = u.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    let query = u.query().is_some();
    u.set_query(None);
    u.set_fragment(None);
    let mut s = u.to_string();
    if query {
        s.push_str("?…");
    }
    s
}

/// `hilo tools import`.
pub async fn import(args: &ImportArgs) -> Result<(), Exit> {
    let prefix = args.prefix.trim();
    if prefix.is_empty() {
        return Err(Exit::invalid(anyhow!(
            "--prefix is empty: give the name every tool starts with, e.g. `--prefix github` \
             for tools named github.<operationId>"
        )));
    }
    let (text, origin) = read_source(&args.source).await?;
    let doc = openapi::load(&text).map_err(|e| {
        Exit::invalid(anyhow!(
            "cannot import {}: {e} [{}]",
            origin.shown(),
            e.code()
        ))
    })?;
    let select = Select {
        prefix: prefix.to_string(),
        operations: args
            .operations
            .iter()
            .map(|o| o.trim().to_string())
            .filter(|o| !o.is_empty())
            .collect(),
        base_url: args.base_url.clone(),
    };
    let mut import = openapi::operations(&doc, &select).map_err(|e| {
        let flag = match &e {
            openapi::OpenApiError::Settings {
                setting: "prefix", ..
            } => "--prefix",
            _ => "--base-url",
        };
        Exit::invalid(anyhow!("{flag}: {e}"))
    })?;
    if let Origin::Url(url) = &origin {
        resolve_relative(&mut import, url);
    }
    if args.json {
        return print_json(&report(&doc, &origin, &import));
    }
    print_human(&doc, &origin, &import);
    Ok(())
}

/// The document's text: a file's, or a URL's body.
async fn read_source(source: &str) -> Result<(String, Origin), Exit> {
    let lower = source.trim().to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        let url = reqwest::Url::parse(source.trim()).map_err(|e| {
            Exit::invalid(anyhow!(
                "`{source}` is not a URL hilo can fetch ({e}); give an http(s) URL or a file path"
            ))
        })?;
        let text = fetch(&url).await?;
        return Ok((text, Origin::Url(url)));
    }
    if lower.contains("://") {
        return Err(Exit::invalid(anyhow!(
            "`{source}`: hilo fetches only http and https URLs; download the document and give \
             its file path"
        )));
    }
    let too_large = |bytes: u64| {
        Exit::invalid(anyhow!(
            "cannot import {source}: it is {} bytes, more than the {} bytes (64 MiB) hilo reads; \
             import a smaller document (a filtered or split copy of the API's description)",
            thousands(bytes),
            thousands(MAX_DOCUMENT_BYTES as u64)
        ))
    };
    let meta = std::fs::metadata(source)
        .map_err(|e| Exit::invalid(anyhow!("cannot read {source}: {e}; check the path")))?;
    if meta.is_dir() {
        return Err(Exit::invalid(anyhow!(
            "cannot read {source}: it is a directory; give the OpenAPI document's file"
        )));
    }
    if meta.len() > MAX_DOCUMENT_BYTES as u64 {
        return Err(too_large(meta.len()));
    }
    let bytes = std::fs::read(source)
        .map_err(|e| Exit::invalid(anyhow!("cannot read {source}: {e}; check the path")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Exit::invalid(anyhow!(
            "cannot read {source}: it is not UTF-8 text (invalid byte at offset {}); an OpenAPI \
             document is YAML or JSON text",
            e.utf8_error().valid_up_to()
        ))
    })?;
    Ok((text, Origin::File(source.to_string())))
}

/// GETs `url` under a timeout and the module's size bound.
pub(super) async fn fetch(url: &reqwest::Url) -> Result<String, Exit> {
    let shown = shown_url(url);
    let failed = |what: String| {
        Exit::from(anyhow!(
            "cannot fetch {shown}: {what}; check the URL and the network, or download the \
             document and give its file path"
        ))
    };
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(FETCH_TIMEOUT)
        .user_agent(concat!("hilo/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| failed(format!("the HTTP client could not start: {}", cause(&e))))?;
    let mut response = client
        .get(url.clone())
        .header(
            reqwest::header::ACCEPT,
            "application/json, application/yaml, text/yaml, */*;q=0.5",
        )
        .send()
        .await
        .map_err(|e| failed(fetch_error(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(failed(format!("the server answered {status}")));
    }
    let limit = MAX_DOCUMENT_BYTES;
    let too_large = || {
        failed(format!(
            "the document is larger than the {} bytes (64 MiB) hilo reads",
            thousands(limit as u64)
        ))
    };
    if response.content_length().is_some_and(|l| l > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| failed(fetch_error(&e)))?
    {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| {
        Exit::invalid(anyhow!(
            "cannot import {shown}: the response is not UTF-8 text; an OpenAPI document is \
             YAML or JSON text"
        ))
    })
}

fn fetch_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!(
            "no complete answer within {} seconds",
            FETCH_TIMEOUT.as_secs()
        )
    } else {
        cause(e)
    }
}

/// The innermost cause of an error (reqwest's own message is `error sending request`).
fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

/// A relative server URL (or none: `/`) is relative to where the document came from.
fn resolve_relative(import: &mut Import, url: &reqwest::Url) {
    for tool in &mut import.tools {
        if !tool.base_url.relative {
            continue;
        }
        if let Ok(abs) = url.join(&tool.base_url.url) {
            let mut abs = shown_url(&abs);
            while abs.ends_with('/') {
                abs.pop();
            }
            tool.notes.push(format!(
                "the relative server URL `{}` is resolved against the document's URL: {abs}",
                tool.base_url.url
            ));
            tool.base_url.url = abs;
            tool.base_url.relative = false;
        }
    }
}

/// The `--json` object.
fn report(doc: &Document, origin: &Origin, import: &Import) -> Value {
    let tools: Vec<Value> = import
        .tools
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "operation_id": t.operation_id,
                "method": t.method,
                "path": t.path,
                "class": t.class,
                "description": t.description,
                "tags": t.tags,
                "deprecated": t.deprecated,
                "input_schema": t.input_schema,
                "base_url": t.base_url,
                "security": t.security,
                "notes": t.notes,
            })
        })
        .collect();
    let skipped: Vec<Value> = import
        .skipped
        .iter()
        .map(|s| {
            json!({
                "method": s.method,
                "path": s.path,
                "operation_id": s.operation_id,
                "reason": s.reason,
            })
        })
        .collect();
    json!({
        "document": {
            "source": origin.shown(),
            "title": doc.title(),
            "version": info_version(doc),
            "openapi": doc.version(),
            "digest": doc.digest(),
        },
        "tools": tools,
        "skipped": skipped,
        "unmatched": import.unmatched,
        "filtered_out": import.filtered_out,
    })
}

/// `info.version`, a string or (unquoted in YAML) a number.
fn info_version(doc: &Document) -> Option<String> {
    match doc.root().pointer("/info/version")? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn print_human(doc: &Document, origin: &Origin, import: &Import) {
    let title = doc.title().unwrap_or("(untitled)");
    let version = info_version(doc)
        .map(|v| format!(" {v}"))
        .unwrap_or_default();
    outln!("{title}{version} · OpenAPI {}", doc.version());
    outln!("source: {}", origin.shown());
    outln!("digest: {}", doc.digest());
    if let Some(line) = base_urls(&import.tools) {
        outln!("base URL: {line}");
    }
    if let Some(line) = auth(&import.tools) {
        outln!("auth: {line}");
    }
    if !import.tools.is_empty() {
        outln!();
        let rows: Vec<Vec<String>> = import
            .tools
            .iter()
            .map(|t| {
                vec![
                    t.name.clone(),
                    t.method.clone(),
                    t.path.clone(),
                    class(t.class).to_string(),
                    fields(t),
                ]
            })
            .collect();
        print_table_capped(
            &["TOOL", "METHOD", "PATH", "CLASS", "INPUT (* required)"],
            &rows,
            &[NAME_WIDTH, usize::MAX, PATH_WIDTH],
        );
    }
    if !import.skipped.is_empty() {
        outln!();
        outln!("skipped ({}):", import.skipped.len());
        for s in &import.skipped {
            let id = s
                .operation_id
                .as_deref()
                .map(|i| format!(" ({i})"))
                .unwrap_or_default();
            outln!("  {} {}{id}: {}", s.method, s.path, s.reason);
        }
    }
    let noted = import.tools.iter().filter(|t| !t.notes.is_empty()).count();
    if noted > 0 {
        outln!();
        outln!(
            "{} with notes on what the import changed or left out (--json shows them)",
            count(noted, "tool", "tools")
        );
    }
    for typo in &import.unmatched {
        let warning = if colour_stderr() {
            "\x1b[33mwarning\x1b[0m"
        } else {
            "warning"
        };
        errln!(
            "{warning}: --operations `{typo}` matches no operationId, tool name or tag in the document"
        );
    }
    outln!();
    outln!(
        "{}, {} skipped, {} filtered out",
        count(import.tools.len(), "tool", "tools"),
        thousands(import.skipped.len() as u64),
        thousands(import.filtered_out as u64)
    );
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!(
        "{} {}",
        thousands(n as u64),
        if n == 1 { one } else { many }
    )
}

fn class(c: ToolClass) -> &'static str {
    match c {
        ToolClass::Safe => "safe",
        ToolClass::Dangerous => "dangerous",
    }
}

/// The input fields, required ones first and marked `*`, cut at [`MAX_FIELDS_WIDTH`]
/// characters with how many are left out.
fn fields(t: &Operation) -> String {
    let required: Vec<&str> = t
        .input_schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let names: Vec<&String> = t
        .input_schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().collect())
        .unwrap_or_default();
    let mut all: Vec<String> = names
        .iter()
        .filter(|n| required.contains(&n.as_str()))
        .map(|n| format!("{n}*"))
        .collect();
    all.extend(
        names
            .iter()
            .filter(|n| !required.contains(&n.as_str()))
            .map(|n| n.to_string()),
    );
    if all.is_empty() {
        return "-".into();
    }
    let mut out = String::new();
    for (i, f) in all.iter().enumerate() {
        let more = all.len() - i;
        let sep = if i == 0 { "" } else { ", " };
        let fits = out.chars().count() + sep.len() + f.chars().count() <= MAX_FIELDS_WIDTH;
        if i > 0 && !fits {
            out.push_str(&format!(", … +{more}"));
            break;
        }
        out.push_str(sep);
        out.push_str(f);
    }
    out
}

/// The base URL the tools call: one, or how many different ones (relative ones flagged).
fn base_urls(tools: &[Operation]) -> Option<String> {
    let mut urls: BTreeMap<&str, (&Operation, usize)> = BTreeMap::new();
    for t in tools {
        urls.entry(t.base_url.url.as_str()).or_insert((t, 0)).1 += 1;
    }
    let relative = tools.iter().any(|t| t.base_url.relative);
    let hint = if relative {
        " (relative: give --base-url, or the tools cannot be called)"
    } else {
        ""
    };
    match urls.len() {
        0 => None,
        1 => {
            let (url, (t, _)) = urls.iter().next()?;
            let from = match t.base_url.source {
                openapi::BaseUrlSource::Select => "--base-url",
                openapi::BaseUrlSource::Operation
                | openapi::BaseUrlSource::PathItem
                | openapi::BaseUrlSource::Document => "the document's servers",
                openapi::BaseUrlSource::Default => "no servers in the document",
            };
            Some(format!("{url} ({from}){hint}"))
        }
        2 | 3 => {
            let mut by_count: Vec<(&&str, &(&Operation, usize))> = urls.iter().collect();
            by_count.sort_by_key(|u| std::cmp::Reverse(u.1.1));
            let list: Vec<String> = by_count
                .iter()
                .map(|(url, (_, n))| format!("{url} ({})", count(*n, "tool", "tools")))
                .collect();
            Some(format!("{}{hint}", list.join(", ")))
        }
        n => Some(format!(
            "{n} different ones, per operation (--json shows each){hint}"
        )),
    }
}

/// The credentials the tools ask for, each scheme once, in the order first met.
fn auth(tools: &[Operation]) -> Option<String> {
    let mut seen: Vec<String> = Vec::new();
    let mut out: Vec<String> = Vec::new();
    let mut open = false;
    for t in tools {
        if t.security.is_empty() || t.security.iter().any(|r| r.schemes.is_empty()) {
            open = true;
        }
        for r in &t.security {
            for s in &r.schemes {
                let (name, what) = describe(s);
                if !seen.contains(&name) {
                    out.push(format!("{name} ({what})"));
                    seen.push(name);
                }
            }
        }
    }
    if tools.is_empty() {
        return None;
    }
    if out.is_empty() {
        return Some("none asked for by the document".into());
    }
    if open {
        out.push("some operations need none".into());
    }
    Some(out.join(", "))
}

fn describe(s: &Scheme) -> (String, String) {
    match s {
        Scheme::Bearer { scheme, .. } => (scheme.clone(), "bearer token".into()),
        Scheme::Basic { scheme } => (scheme.clone(), "HTTP basic".into()),
        Scheme::ApiKey {
            scheme,
            location,
            name,
        } => (
            scheme.clone(),
            format!("API key in {} `{name}`", location.as_str()),
        ),
        Scheme::OAuth2 { scheme, .. } => (scheme.clone(), "OAuth 2.0".into()),
        Scheme::OpenIdConnect { scheme, .. } => (scheme.clone(), "OpenID Connect".into()),
        Scheme::Other { scheme, kind } => (scheme.clone(), format!("{kind}, not sent by hilo")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn urls_are_shown_without_credentials() {
        let u = reqwest::Url::parse("https://ana:s3cret@api.example.com/spec.yaml?token=abc#x")
            .unwrap();
        assert_eq!(shown_url(&u), "https://api.example.com/spec.yaml?…");
    }

    #[test]
    fn long_field_lists_are_cut_with_a_count() {
        let doc = openapi::load(
            r#"{"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": {"/x/{a}": {"get": {"operationId": "x", "parameters": [
              {"name": "a", "in": "path", "required": true, "schema": {"type": "string"}},
              {"name": "alpha_one", "in": "query", "schema": {"type": "string"}},
              {"name": "beta_two", "in": "query", "schema": {"type": "string"}},
              {"name": "gamma_three", "in": "query", "required": true, "schema": {"type": "string"}},
              {"name": "delta_four", "in": "query", "schema": {"type": "string"}},
              {"name": "epsilon_five", "in": "query", "schema": {"type": "string"}},
              {"name": "zeta_six", "in": "query", "schema": {"type": "string"}}]}}}}"#,
        )
        .unwrap();
        let select = Select {
            prefix: "t".into(),
            ..Default::default()
        };
        let import = openapi::operations(&doc, &select).unwrap();
        let f = fields(&import.tools[0]);
        assert!(
            f.starts_with("a*, gamma_three*, alpha_one, beta_two"),
            "{f}"
        );
        assert!(f.ends_with(", … +3"), "{f}");
        assert!(f.chars().count() <= MAX_FIELDS_WIDTH + 8, "{f}");
    }
}
