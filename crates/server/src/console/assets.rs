//! The console's files, embedded in the binary at build time (`include_bytes!`): served with
//! an ETag (SHA-256 of the content; `If-None-Match` gets `304`) and `Cache-Control: no-cache`
//! (the browser keeps them and asks again cheaply), compressed by the console's gzip layer.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// (file name, media type, content).
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/api.js"),
    ),
    (
        "graph.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/graph.js"),
    ),
    (
        "form.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/form.js"),
    ),
    (
        "views.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/views.js"),
    ),
    (
        "common.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/common.js"),
    ),
    (
        "executions.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/executions.js"),
    ),
    (
        "execution.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/execution.js"),
    ),
    (
        "builder.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/builder/builder.js"),
    ),
    (
        "builder-lazy.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/builder/builder-lazy.js"),
    ),
    (
        "builder-chunk.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/builder/builder-chunk.js"),
    ),
    (
        "builder.css",
        "text/css; charset=utf-8",
        include_bytes!("../../console/builder/builder.css"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../console/style.css"),
    ),
    (
        "chat.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/chat.js"),
    ),
    (
        "chat.css",
        "text/css; charset=utf-8",
        include_bytes!("../../console/chat.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../../console/favicon.svg"),
    ),
];

const SHELL: &str = include_str!("../../console/index.html");
const CHAT_SHELL: &str = include_str!("../../console/chat.html");

/// The Content-Security-Policy of console pages: this origin only, no inline script.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'";

/// The chat page's policy: as [`CSP`], but any site may frame it (it is a widget).
pub const CHAT_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'self'; form-action 'self'; object-src 'none'";

fn etag_of(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    let hex: String = d.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

fn etags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| FILES.iter().map(|(_, _, b)| etag_of(b)).collect())
}

/// The page shell for `prefix`, with its ETag.
pub struct Shell {
    html: String,
    etag: String,
}

/// The page shell for `prefix` (`<base href>` is the prefix, so every relative URL of the
/// page is under it).
pub fn shell(prefix: &str) -> Shell {
    let html = SHELL.replace("%PREFIX%", prefix);
    let etag = etag_of(html.as_bytes());
    Shell { html, etag }
}

/// The chat widget's page for `prefix`.
pub fn chat_shell(prefix: &str) -> Shell {
    let html = CHAT_SHELL.replace("%PREFIX%", prefix);
    let etag = etag_of(html.as_bytes());
    Shell { html, etag }
}

fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

fn cached(status: StatusCode, media: &'static str, etag: &str, body: Vec<u8>) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    r
}

/// A console page: the shell.
pub fn page(shell: &Shell, headers: &HeaderMap) -> Response {
    let mut r = if not_modified(headers, &shell.etag) {
        cached(
            StatusCode::NOT_MODIFIED,
            "text/html; charset=utf-8",
            &shell.etag,
            Vec::new(),
        )
    } else {
        cached(
            StatusCode::OK,
            "text/html; charset=utf-8",
            &shell.etag,
            shell.html.as_bytes().to_vec(),
        )
    };
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    r
}

/// `GET <prefix>assets/{file}`.
pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let Some(i) = FILES.iter().position(|(name, _, _)| *name == file) else {
        return ApiError::not_found(
            "NOT_FOUND",
            format!(
                "the console has no file `{file}` (its files: {})",
                FILES.iter().map(|f| f.0).collect::<Vec<_>>().join(", ")
            ),
        )
        .into_response();
    };
    let (_, media, bytes) = FILES[i];
    let etag = &etags()[i];
    if not_modified(&headers, etag) {
        return cached(StatusCode::NOT_MODIFIED, media, etag, Vec::new());
    }
    cached(StatusCode::OK, media, etag, bytes.to_vec())
}
