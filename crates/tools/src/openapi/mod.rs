//! OpenAPI documents as tools: a document's operations become a model of tools, and a call's
//! arguments become the parts of its HTTP request. Nothing here sends a request; the
//! executor's HTTP client does, with everything an HTTP tool gets.
//!
//! Three steps:
//!
//! 1. [`load`]`(text) -> `[`Document`]: YAML or JSON, OpenAPI 3.0.x or 3.1.x (Swagger 2.0 and
//!    other versions are refused with what was found and what to do), under bounds on size
//!    and nesting; [`Document::digest`] (`sha256:…` of the text) keys caches and pins runs.
//! 2. [`operations`]`(&Document, &`[`Select`]`) -> `[`Import`]: every operation a tool
//!    ([`Operation`]: name, method, path, class, description, input schema, parameters, body,
//!    security, base URL) or a [`Skipped`] with the reason. Local `$ref`s are followed;
//!    remote ones skip the operation that uses them ([`OpenApiError::RemoteRef`] names the
//!    reference and where it is). Rules: names in `naming.rs`, parameters in `params.rs`,
//!    schemas and their bounds (recursive schemas, reference bombs) in `schema.rs`, security
//!    in `security.rs`.
//! 3. [`Operation::request`]`(&args) -> `[`RequestParts`]: path, query, headers, cookies and
//!    body, per the parameters' styles, every value encoded so that it cannot change the
//!    URL's shape (rules in `request.rs`).
//!
//! What is skipped, and why a demanding user would expect it: an operation whose required
//! request body has no JSON or form (`application/x-www-form-urlencoded`) media type
//! (`multipart/form-data`, `application/octet-stream`, XML, text): hilo's HTTP tools send
//! JSON and forms, and a tool that cannot be called is worse than no tool (an optional
//! body of such a type is never sent, with a note); an operation with a remote `$ref`, a
//! local `$ref` that points nowhere or loops (for parameters and bodies; in a schema that
//! part accepts any value, with a note), a required parameter in a place OpenAPI 3 does not
//! have, or an input schema that cannot be made valid JSON Schema.
//!
//! ```ignore
//! let doc = hilo_tools::openapi::load(&text)?;
//! let import = hilo_tools::openapi::operations(&doc, &Select { prefix: "github".into(), ..Default::default() })?;
//! let op = import.tools.iter().find(|t| t.name == "github.repos_get").unwrap();
//! let parts = op.request(&json!({"owner": "rust-lang", "repo": "rust"}))?;
//! assert_eq!(parts.url(&op.base_url.url), "https://api.github.com/repos/rust-lang/rust");
//! ```

mod document;
mod error;
mod import;
mod naming;
mod params;
mod pointer;
mod request;
mod schema;
mod security;
#[cfg(test)]
mod tests;
mod tool;

pub use document::{
    Document, MAX_DOCUMENT_BYTES, MAX_DOCUMENT_DEPTH, MAX_YAML_NODES, digest_of, load,
};
pub use error::{OpenApiError, codes};
pub use import::{BaseUrl, BaseUrlSource, Import, METHODS, Operation, Select, Skipped, operations};
pub use naming::{MAX_DESCRIPTION, MAX_NAME};
pub use request::{Body, BodyEncoding, Location, Param, RequestBody, RequestParts, Style};
pub use schema::{
    MAX_PATTERN_LENGTH, MAX_PATTERN_REPEAT, MAX_REF_DEPTH, MAX_REF_REPEAT, MAX_SCHEMA_DEPTH,
    MAX_SCHEMA_DESCRIPTION, MAX_SCHEMA_NODES_PER_IMPORT, MAX_SCHEMA_NODES_PER_OPERATION,
};
pub use security::{Scheme, SecurityRequirement};
pub use tool::{Calling, Compiled, OpenApiCheck, OpenApiTool, compile};
